import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fastBatchNormGradientInstalled,
  installFastBatchNormGradient,
  uninstallFastBatchNormGradient,
} from '../../src/training/models/batchnorm-gradient.js';
import {
  buildModel,
  canonicalArchitecture,
  CBR_SPECS,
  cbrFeatureSizes,
  countMacs,
  countParams,
  lastConvLayerName,
  minInputSize,
} from '../../src/training/models/index.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});
afterAll(() => {
  uninstallFastBatchNormGradient();
});

describe('CBR models', () => {
  it('names: paper keys, code keys and display names map to the canonical key', () => {
    expect(canonicalArchitecture('CBR-Small')).toBe('cbr_small');
    expect(canonicalArchitecture('cbt_large_t')).toBe('cbr_large_t');
    expect(canonicalArchitecture('CBR-LargeT')).toBe('cbr_large_t');
    expect(canonicalArchitecture('cbr-tiny')).toBe('cbr_tiny');
    expect(() => canonicalArchitecture('vgg17')).toThrow(/unknown architecture 'vgg17'.*cbr_small/);
  });

  it('paper CBR at 224² (valid convs, 2×2 pools): map sizes and parameter counts of notes/paper.md §12', () => {
    expect(cbrFeatureSizes(CBR_SPECS.cbr_small, 224)).toEqual([109, 51, 22, 8]);
    expect(cbrFeatureSizes(CBR_SPECS.cbr_large_t, 224)).toEqual([109, 51, 22, 8, 1]);
    expect(cbrFeatureSizes(CBR_SPECS.cbr_tiny, 224)).toEqual([110, 53, 24, 10]);
    const expected: Record<string, number> = { cbr_small: 2_181_059, cbr_tiny: 4_442_499, cbr_large_t: 8_671_683 };
    for (const [arch, total] of Object.entries(expected)) {
      const m = buildModel(arch, { inputSize: 224, seed: 1 });
      expect(countParams(m, false), arch).toBe(total);
      m.dispose();
    }
  });

  it('layer names for Grad-CAM and the head', () => {
    const m = buildModel('cbr_compact', { inputSize: 32, seed: 1 });
    expect(lastConvLayerName(m)).toBe('block4_relu');
    expect(m.layers.map((l) => l.name)).toEqual([
      'input',
      ...[1, 2, 3, 4].flatMap((i) => [`block${i}_conv`, `block${i}_bn`, `block${i}_relu`, `block${i}_pool`]),
      'gap',
      'fc1',
      'dropout',
      'predictions',
    ]);
    expect(m.outputs[0].shape).toEqual([null, 3]);
    m.dispose();
    const big = buildModel('cbr_large_t', { inputSize: 224, seed: 1 });
    expect(lastConvLayerName(big)).toBe('block5_relu');
    big.dispose();
  });

  it('counts MACs from the layer shapes (hand-computed for cbr_compact at 32²)', () => {
    const m = buildModel('cbr_compact', { inputSize: 32, seed: 1 });
    // 3×3 'same': 32²·9·3·16 + 16²·9·16·32 + 8²·9·32·64 + 4²·9·64·128 + dense 128·256 + 256·3
    const expected = 32 * 32 * 9 * 3 * 16 + 16 * 16 * 9 * 16 * 32 + 8 * 8 * 9 * 32 * 64 + 4 * 4 * 9 * 64 * 128 + 128 * 256 + 256 * 3;
    expect(countMacs(m)).toBe(expected);
    m.dispose();
  });

  it('refuses inputs too small for valid convs, with the minimum size; padding same allows them', () => {
    expect(minInputSize(CBR_SPECS.cbr_small)).toBe(106);
    expect(() => buildModel('cbr_small', { inputSize: 64, seed: 1 })).toThrow(/needs ≥ 106 px/);
    const m = buildModel('cbr_small', { inputSize: 64, seed: 1, padding: 'same' });
    expect(m.inputs[0].shape).toEqual([null, 64, 64, 3]);
    m.dispose();
  });

  it('initialisation is deterministic for a seed', () => {
    const w = (seed: number) => {
      const m = buildModel('cbr_compact', { inputSize: 32, seed });
      const v = m.getWeights().map((t) => Array.from(t.dataSync()));
      m.dispose();
      return v;
    };
    const a = w(11);
    expect(w(11)).toEqual(a);
    expect(w(12)[0]).not.toEqual(a[0]);
  });
});

describe('fast BatchNorm gradient', () => {
  it('matches tfjs’ own gradient (training-mode BN layer, all variables and the input)', () => {
    const grads = () => {
      const x = tf.randomNormal([3, 5, 4, 6], 0.5, 2, 'float32', 21);
      const bn = tf.layers.batchNormalization({ name: 'bn_t', gammaInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed: 3 }) });
      bn.build([null, 5, 4, 6]);
      const vars = bn.trainableWeights.map((w) => w.read() as tf.Variable);
      const f = (xx: tf.Tensor) => tf.sum(tf.mul(bn.apply(xx, { training: true }) as tf.Tensor, tf.linspace(-1, 2, 6)));
      const { grads: g } = tf.variableGrads(() => f(x) as tf.Scalar, vars);
      const dx = tf.grad(f)(x);
      const out = [...vars.map((v) => Array.from(g[v.name].dataSync())), Array.from(dx.dataSync())];
      return out;
    };
    uninstallFastBatchNormGradient();
    const ref = grads();
    expect(installFastBatchNormGradient()).toBe(true);
    expect(fastBatchNormGradientInstalled()).toBe(true);
    const fast = grads();
    expect(fast.length).toBe(ref.length);
    fast.forEach((arr, i) => arr.forEach((v, j) => expect(v).toBeCloseTo(ref[i][j], 4)));
  });
});
