/**
 * One training step's maths: Keras' SGD (Nesterov momentum, time-based decay), Keras' categorical
 * cross-entropy, the gradients of a batch and their application. Used by trainJob (src/training/train.ts)
 * on one thread and by the data-parallel replicas (src/training/replicas.ts).
 */

import * as tf from '@tensorflow/tfjs';
import { readBack } from '../inference/backend.js';
import type { PreprocessParams } from '../inference/preprocess.js';
import { buildBatch, type PlanItem, type PreparedStack } from './data/samples.js';

/** The gradient of a batch's mean loss per trainable variable, with the loss and the correct argmax count. */
export interface BatchGradients {
  grads: tf.Tensor[];
  loss: number;
  correct: number;
  n: number;
}

export interface SgdOptions {
  learningRate: number;
  momentum: number;
  nesterov: boolean;
  decay: number;
}

/** Keras 2.2 `SGD(lr, momentum, decay, nesterov)` over an explicit variable list, with serialisable state. */
export class KerasSgd {
  iterations = 0;
  /** Multiplier of the base learning rate (a step schedule sets it per epoch: `stepScheduleScale`). */
  scale = 1;
  private readonly velocities: tf.Variable[];

  constructor(
    readonly variables: tf.Variable[],
    readonly opts: SgdOptions,
  ) {
    this.velocities = variables.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
  }

  /** Learning rate of the next update. */
  currentLearningRate(): number {
    return (this.scale * this.opts.learningRate) / (1 + this.opts.decay * this.iterations);
  }

  /** Applies one update from gradients keyed by variable name (missing ones are skipped). */
  apply(grads: tf.NamedTensorMap): void {
    const lr = this.currentLearningRate();
    const mu = this.opts.momentum;
    tf.tidy(() => {
      this.variables.forEach((p, i) => {
        const g = grads[p.name];
        if (!g) return;
        const m = this.velocities[i];
        const v = tf.sub(tf.mul(m, mu), tf.mul(g, lr));
        m.assign(v);
        p.assign(this.opts.nesterov ? tf.add(p, tf.sub(tf.mul(v, mu), tf.mul(g, lr))) : tf.add(p, v));
      });
    });
    this.iterations++;
  }

  /** State for checkpoints: the velocities as one float32 buffer (variable order) and the update count. */
  async getState(): Promise<{ iterations: number; shapes: number[][]; data: Float32Array }> {
    return { iterations: this.iterations, shapes: this.velocities.map((v) => [...v.shape]), data: await flattenVariables(this.velocities) };
  }

  setState(state: { iterations: number; shapes: number[][]; data: Float32Array }): void {
    if (state.shapes.length !== this.velocities.length) throw new Error(`optimizer state has ${state.shapes.length} slots, the model ${this.velocities.length}`);
    let o = 0;
    this.velocities.forEach((v, i) => {
      if (state.shapes[i].join('x') !== v.shape.join('x')) throw new Error(`optimizer slot ${i}: shape ${state.shapes[i]} ≠ ${v.shape}`);
      tf.tidy(() => v.assign(tf.tensor(state.data.subarray(o, o + v.size), v.shape)));
      o += v.size;
    });
    this.iterations = state.iterations;
  }

  dispose(): void {
    for (const v of this.velocities) v.dispose();
  }
}

/** The values of `vars` as one flat float32 buffer (variable order). */
export async function flattenVariables(vars: readonly tf.Tensor[]): Promise<Float32Array> {
  const total = vars.reduce((a, v) => a + v.size, 0);
  const out = new Float32Array(total);
  let o = 0;
  for (const v of vars) {
    out.set((await readBack(v)) as Float32Array, o);
    o += v.size;
  }
  return out;
}

/**
 * The learning-rate multiplier of a step schedule in `epoch` (1-based): `factor` to the number of drop epochs
 * already reached (a drop at epoch d applies from epoch d on). No drops: 1.
 */
export function stepScheduleScale(epoch: number, drops: readonly number[] | undefined, factor: number): number {
  return factor ** (drops ?? []).filter((d) => epoch >= d).length;
}

/** Keras `categorical_crossentropy` on probabilities: renormalise, clip to [1e-7, 1 − 1e-7], mean over the batch. */
export function categoricalCrossentropy(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const p = tf.clipByValue(tf.div(yPred, tf.sum(yPred, -1, true)), 1e-7, 1 - 1e-7);
    return tf.mean(tf.neg(tf.sum(tf.mul(yTrue, tf.log(p)), -1))) as tf.Scalar;
  });
}

/** The model's trainable tf.Variables, in layer order. */
export function trainableVariables(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

/**
 * Loss and gradients of one batch in training mode (BN batch statistics, dropout), not yet applied: the
 * gradient tensors are kept, in the order of `vars` (the caller disposes them). Reads back with `data()`, not
 * `dataSync()`: the webgpu backend cannot read synchronously in Node (it needs an OffscreenCanvas).
 */
export async function batchGradients(model: tf.LayersModel, vars: readonly tf.Variable[], x: tf.Tensor4D, y: tf.Tensor2D): Promise<BatchGradients> {
  let probs: tf.Tensor | undefined;
  const { value, grads } = tf.tidy(() => {
    const r = tf.variableGrads(() => {
      const p = model.apply(x, { training: true }) as tf.Tensor;
      probs = tf.keep(p);
      return categoricalCrossentropy(y, p);
    }, [...vars]);
    // A variable the loss does not reach gets a zero gradient (an entry per variable keeps the order).
    return { value: r.value, grads: vars.map((v) => r.grads[v.name] ?? tf.zerosLike(v)) };
  });
  try {
    const loss = (await readBack(value))[0]!;
    const c = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(probs!, 1), tf.argMax(y, 1)), 'int32')));
    const correct = (await readBack(c))[0]!;
    c.dispose();
    return { grads, loss, correct, n: x.shape[0] };
  } catch (err) {
    grads.forEach((g) => g.dispose());
    throw err;
  } finally {
    value.dispose();
    probs?.dispose();
  }
}

/** One SGD step on a batch; returns the batch loss and the number of correct argmax predictions. */
export async function trainStep(model: tf.LayersModel, opt: KerasSgd, x: tf.Tensor4D, y: tf.Tensor2D): Promise<{ loss: number; correct: number }> {
  const r = await batchGradients(model, opt.variables, x, y);
  applyGradients(opt, r.grads);
  return { loss: r.loss, correct: r.correct };
}

/**
 * Seeds every Dropout layer of `model` (nested models too) for the next training forward pass. tf.layers'
 * Dropout draws its mask from Math.random unless the layer has a seed, and a fixed seed would draw the same
 * mask at every step: the trainer sets a new seed before each step, derived from the job's seed, the epoch,
 * the batch and the shard, so that a run repeats exactly on the same backend. Returns the layers seeded.
 */
export function seedDropout(model: tf.LayersModel, seed: number): number {
  const s = seed >>> 0 || 1; // tfjs turns the seed into a string; keep it a positive integer
  let n = 0;
  const visit = (layers: readonly tf.layers.Layer[]) => {
    for (const layer of layers) {
      if (layer.getClassName() === 'Dropout') {
        (layer as unknown as { seed?: number }).seed = s;
        n++;
      }
      const inner = (layer as unknown as { layers?: tf.layers.Layer[] }).layers;
      if (Array.isArray(inner)) visit(inner);
    }
  };
  visit(model.layers);
  return n;
}

/** Applies gradients given in the order of `opt.variables` and disposes them. */
export function applyGradients(opt: KerasSgd, grads: readonly tf.Tensor[]): void {
  const named: tf.NamedTensorMap = {};
  opt.variables.forEach((v, i) => (named[v.name] = grads[i]!));
  try {
    opt.apply(named);
  } finally {
    grads.forEach((g) => g.dispose());
  }
}

/** A training batch as tensors: the samples `items` of `stacks` (buildBatch) and their one-hot classes. */
export function batchTensors(stacks: readonly PreparedStack[], items: readonly PlanItem[], params: PreprocessParams): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const b = buildBatch(stacks, items, params);
  return { x: tf.tensor4d(b.x, b.shape), y: tf.tidy(() => tf.oneHot(tf.tensor1d(b.y, 'int32'), 3).toFloat()) as tf.Tensor2D };
}
