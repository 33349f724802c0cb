/**
 * A cheaper gradient for the `FusedBatchNorm` kernel (the op behind tf.layers.batchNormalization), for every
 * backend. Same maths as tfjs-core's own gradient (tfjs-core/src/gradients/FusedBatchNorm_grad.ts), but:
 * - the per-channel factor rsqrt(var + ε)·γ is broadcast instead of `tile`d to the full activation shape
 *   (tile alone was ≈ 30 % of a CBR-Compact training step on the WASM backend);
 * - the reductions Σdy and Σdy·(x − μ) are computed once and shared by the mean, variance, scale and
 *   offset gradients, instead of each multiplying full-size tensors before reducing.
 * Only the channels-last case with 1-D statistics (what BatchNormalization layers use) is replaced; any
 * other call falls back to the original gradient function.
 *
 * Gradients (per channel c, reductions over every axis but the last):
 *   dx = dy · γ·r,   dμ = −γ·r·Σdy,   dσ² = −½·γ·r³·Σdy·(x − μ),   dγ = r·Σdy·(x − μ),   dβ = Σdy
 * with r = 1/√(σ² + ε). Checked against the original on the cpu backend (test/unit/training-models.test.ts).
 */

import * as tf from '@tensorflow/tfjs';
import type { GradConfig, NamedAttrMap, Tensor } from '@tensorflow/tfjs';

const KERNEL = 'FusedBatchNorm';

let original: GradConfig | undefined;
let installed = false;

function fastGrad(dy: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap): Record<string, () => Tensor> {
  const [x, mean, variance, scale] = saved;
  const g = dy as Tensor;
  if (mean.rank !== 1 || x.rank < 2 || mean.shape[0] !== x.shape[x.rank - 1]) {
    return original!.gradFunc(dy, saved, attrs) as Record<string, () => Tensor>;
  }
  const eps = (attrs as unknown as { varianceEpsilon: number }).varianceEpsilon;
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  // Computed here (not inside the closures) so that the shared reductions are made once; the engine's
  // gradient tidy disposes them after back-propagation.
  const r = tf.rsqrt(tf.add(variance, tf.scalar(eps)));
  const gamma = scale ?? tf.onesLike(mean);
  const gr = tf.mul(gamma, r);
  const sumDy = tf.sum(g, axes);
  const sumDyXmm = tf.sum(tf.mul(g, tf.sub(x, mean)), axes);
  return {
    x: () => tf.mul(g, gr),
    mean: () => tf.neg(tf.mul(gr, sumDy)),
    variance: () => tf.mul(tf.mul(tf.mul(gr, tf.mul(r, r)), tf.scalar(-0.5)), sumDyXmm),
    scale: () => tf.mul(r, sumDyXmm),
    offset: () => tf.clone(sumDy),
  };
}

/** Installs the faster gradient (idempotent). Returns true when it was installed by this call. */
export function installFastBatchNormGradient(): boolean {
  if (installed) return false;
  original = tf.getGradient(KERNEL);
  if (!original) throw new Error(`no gradient registered for ${KERNEL}: import @tensorflow/tfjs first`);
  tf.registerGradient({ kernelName: KERNEL, inputsToSave: ['x', 'mean', 'variance', 'scale'], gradFunc: fastGrad });
  installed = true;
  return true;
}

/** Restores tfjs' own gradient (tests). */
export function uninstallFastBatchNormGradient(): void {
  if (!installed || !original) return;
  tf.registerGradient(original);
  installed = false;
}

export function fastBatchNormGradientInstalled(): boolean {
  return installed;
}
