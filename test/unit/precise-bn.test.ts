import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { batchNormLayers, recalibrateBatchNorm } from '../../src/training/precise-bn.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** input [2, 2, 3] → conv 1×1 (fixed weights) → BN → GAP → dense 3 softmax. */
function tinyModel(): tf.LayersModel {
  const input = tf.input({ shape: [2, 2, 3] });
  const conv = tf.layers.conv2d({ filters: 2, kernelSize: 1, useBias: false, name: 'conv', kernelInitializer: 'ones' });
  const bn = tf.layers.batchNormalization({ name: 'bn' });
  const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }).apply(
    tf.layers.globalAveragePooling2d({}).apply(bn.apply(conv.apply(input))),
  ) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

/** Per-channel mean and biased variance of conv(x) = [Σc x, Σc x] over N, H, W. */
function stats(x: number[][][][]): { mean: number; variance: number } {
  const v = x.flatMap((img) => img.flatMap((row) => row.map((px) => px.reduce((a, b) => a + b, 0))));
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  return { mean, variance: v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length };
}

describe('recalibrateBatchNorm (precise BN)', () => {
  it("sets the moving statistics to the mean of the batches' statistics and restores the momentum", async () => {
    const model = tinyModel();
    const a = [
      [[[1, 0, 0], [2, 0, 0]], [[3, 0, 0], [4, 0, 0]]],
      [[[0, 5, 0], [0, 6, 0]], [[0, 0, 7], [0, 0, 8]]],
    ];
    const b = [[[[10, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, -2]]]];
    const bn = model.getLayer('bn') as tf.layers.Layer & { momentum: number };
    const before = bn.momentum;
    const xs = [tf.tensor4d(a), tf.tensor4d(b)];
    const n = await recalibrateBatchNorm(model, xs);
    expect(n).toBe(1);
    expect(bn.momentum).toBe(before);
    const [, , movingMean, movingVariance] = bn.getWeights(); // gamma, beta, moving mean, moving variance
    const sa = stats(a);
    const sb = stats(b);
    const mean = await movingMean!.data();
    const variance = await movingVariance!.data();
    for (const c of [0, 1]) {
      expect(mean[c]).toBeCloseTo((sa.mean + sb.mean) / 2, 5);
      expect(variance[c]).toBeCloseTo((sa.variance + sb.variance) / 2, 4);
    }
    // The default EMA would have moved the statistics by only 1 − 0.99² of the way.
    expect(mean[0]).toBeGreaterThan(1);
    xs.forEach((t) => t.dispose());
    model.dispose();
  });

  it('changes nothing for an empty batch list, leaves frozen BN layers alone and leaks no tensors', async () => {
    const model = tinyModel();
    const bn = model.getLayer('bn');
    const w0 = await Promise.all(bn.getWeights().map((w) => w.data()));
    expect(await recalibrateBatchNorm(model, [])).toBe(0);
    bn.trainable = false;
    expect(batchNormLayers(model)).toHaveLength(0);
    const x = tf.ones([1, 2, 2, 3]) as tf.Tensor4D;
    const tensors = tf.memory().numTensors;
    expect(await recalibrateBatchNorm(model, [x])).toBe(0);
    expect(tf.memory().numTensors).toBe(tensors);
    const w1 = await Promise.all(bn.getWeights().map((w) => w.data()));
    expect(w1).toEqual(w0);
    bn.trainable = true;
    expect(await recalibrateBatchNorm(model, [x])).toBe(1);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(Array.from(await bn.getWeights()[2]!.data())).toEqual([3, 3]);
    x.dispose();
    model.dispose();
  });
});
