/**
 * "Precise BN" (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021; fvcore's `update_bn_stats`): after an
 * epoch, replace every BatchNormalization layer's moving mean and variance by the plain average of its batch
 * statistics over a number of training batches, computed with the epoch's final weights.
 *
 * Why: tf.layers' moving statistics are an exponential average (momentum 0.99, i.e. the last ≈ 100 steps),
 * taken while the weights were still moving. With a few hundred steps per epoch and lr 0.01 they lag the
 * weights, and the inference-mode network differs from the one trained: the shipped model's validation curves
 * jumped from epoch to epoch and its final model (no validation to catch it) called most IN slices of unseen
 * phantom studies OBS (docs/model.md).
 *
 * How: the network runs forward in training mode (each BN normalises with its batch's statistics, so every
 * layer sees what it saw in training) with each BN layer's momentum set to 1 − 1/k on the k-th batch, which
 * makes the moving value after k batches the mean of the k batch values. Momentum is restored afterwards;
 * nothing else changes (dropout's randomness in training mode does not reach any BN layer's input in a CBR
 * or ImageNet network; its output is discarded).
 */

import * as tf from '@tensorflow/tfjs';

/** The BatchNormalization layers whose statistics training updates (trainable ones; frozen bases keep theirs). */
export function batchNormLayers(model: tf.LayersModel): tf.layers.Layer[] {
  return model.layers.filter((l) => l.getClassName() === 'BatchNormalization' && l.trainable);
}

/**
 * Recomputes the moving statistics of `model`'s trainable BatchNormalization layers as the mean of their batch
 * statistics over `batches` (each batch is disposed by the caller). Returns how many layers were recalibrated.
 */
export async function recalibrateBatchNorm(model: tf.LayersModel, batches: AsyncIterable<tf.Tensor4D> | Iterable<tf.Tensor4D>): Promise<number> {
  const layers = batchNormLayers(model) as unknown as Array<tf.layers.Layer & { momentum: number }>;
  if (!layers.length) return 0;
  const saved = layers.map((l) => l.momentum);
  let k = 0;
  try {
    for await (const x of batches) {
      k++;
      for (const l of layers) l.momentum = 1 - 1 / k;
      tf.tidy(() => {
        model.apply(x, { training: true });
      });
    }
  } finally {
    layers.forEach((l, i) => (l.momentum = saved[i]!));
  }
  return k === 0 ? 0 : layers.length;
}
