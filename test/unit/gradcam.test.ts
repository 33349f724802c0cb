import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/inference/backend.js';
import {
  camToSliceGrid,
  featureGridMapping,
  findLastConvLayer,
  GradCamError,
  gradCamMaps,
  headScores,
  splitForGradCam,
  stretchMapping,
} from '../../src/inference/gradcam.js';
import { centralCropBox, preprocessParamsFor, preprocessStack, toTensor4d } from '../../src/inference/preprocess.js';
import { createPhantomModel } from '../../src/phantom/index.js';

type ST = tf.SymbolicTensor;

beforeAll(async () => {
  await selectBackend('wasm');
});

/** Seeded uniform numbers in [-1, 1). */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function randomBatch(n: number, size: number, seed: number): tf.Tensor4D {
  const r = uniform(seed);
  return tf.tensor4d(Float32Array.from({ length: n * size * size * 3 }, () => r() * 100), [n, size, size, 3]);
}

/** A small CBR-like model: conv-BN-ReLU-pool blocks, GAP, Dense(32, relu), Dropout, Dense(3, softmax). */
function cbrLike(size: number, seed: number): tf.LayersModel {
  const inp = tf.input({ shape: [size, size, 3] });
  let h: ST = inp;
  [8, 16].forEach((f, b) => {
    h = tf.layers.conv2d({ filters: f, kernelSize: 5, padding: 'valid', useBias: false, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + b }), name: `block${b + 1}_conv` }).apply(h) as ST;
    h = tf.layers.batchNormalization({ name: `block${b + 1}_bn`, movingMeanInitializer: 'zeros', movingVarianceInitializer: 'ones' }).apply(h) as ST;
    h = tf.layers.reLU({ name: `block${b + 1}_relu` }).apply(h) as ST;
    h = tf.layers.maxPooling2d({ poolSize: 2, name: `block${b + 1}_pool` }).apply(h) as ST;
  });
  h = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(h) as ST;
  h = tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 10 }), name: 'fc' }).apply(h) as ST;
  h = tf.layers.dropout({ rate: 0.5, name: 'drop' }).apply(h) as ST;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 11 }), name: 'pred' }).apply(h) as ST;
  return tf.model({ inputs: inp, outputs: out });
}

describe('splitForGradCam', () => {
  it('finds the last conv block output (conv → BN → ReLU) when the card names no layer', () => {
    const model = cbrLike(32, 1);
    expect(findLastConvLayer(model)).toBe('block2_relu');
    const split = splitForGradCam(model);
    expect(split.layerName).toBe('block2_relu');
    expect(split.featureShape).toEqual([10, 10, 16]);
    expect(split.scoreKind).toBe('logit');
    model.dispose();
  });

  it('rebuilds a head that reproduces the model: softmax(head logits(A)) = predictions', () => {
    const model = cbrLike(32, 2);
    const split = splitForGradCam(model, 'block2_relu');
    const x = randomBatch(3, 32, 7);
    const [a, p] = split.dual.predict(x) as tf.Tensor[];
    const direct = model.predict(x) as tf.Tensor;
    const viaHead = tf.softmax(headScores(split, a as tf.Tensor4D));
    expect(Array.from(p.dataSync())).toEqual(Array.from(direct.dataSync()));
    const d = tf.max(tf.abs(tf.sub(viaHead, direct))).dataSync()[0];
    expect(d).toBeLessThan(1e-6);
    tf.dispose([x, a, p, direct, viaHead]);
    model.dispose();
  });

  it('takes the logit from the input of a separate softmax layer', () => {
    const inp = tf.input({ shape: [16, 16, 3] });
    let h = tf.layers.conv2d({ filters: 4, kernelSize: 3, name: 'c' }).apply(inp) as ST;
    h = tf.layers.globalAveragePooling2d({}).apply(h) as ST;
    h = tf.layers.dense({ units: 3, name: 'logits' }).apply(h) as ST;
    const out = tf.layers.activation({ activation: 'softmax' }).apply(h) as ST;
    const model = tf.model({ inputs: inp, outputs: out });
    const split = splitForGradCam(model);
    expect(split.scoreKind).toBe('logit');
    expect(split.denseLogit).toBeUndefined();
    expect(split.head.outputs[0].sourceLayer.name).toBe('logits');
    model.dispose();
  });

  it('refuses a split across a skip connection and an unknown layer name', () => {
    const inp = tf.input({ shape: [8, 8, 3] });
    const c = tf.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'c' }).apply(inp) as ST;
    const added = tf.layers.add().apply([c, inp]) as ST;
    const g = tf.layers.globalAveragePooling2d({}).apply(added) as ST;
    const out = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(g) as ST;
    const model = tf.model({ inputs: inp, outputs: out });
    expect(() => splitForGradCam(model, 'c')).toThrow(GradCamError);
    expect(() => splitForGradCam(model, 'nope')).toThrow(/no layer 'nope'/);
    model.dispose();
  });
});

describe('gradCamMaps', () => {
  it('equals the class activation map ReLU(Σ W[k,c]·A_k) for GAP + Dense(softmax): the gradient is of the logit', () => {
    const inp = tf.input({ shape: [24, 24, 3] });
    let h = tf.layers.conv2d({ filters: 6, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }), name: 'last' }).apply(inp) as ST;
    h = tf.layers.globalAveragePooling2d({}).apply(h) as ST;
    const dense = tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) });
    const model = tf.model({ inputs: inp, outputs: dense.apply(h) as ST });
    const split = splitForGradCam(model, 'last');
    const x = randomBatch(3, 24, 11);
    const a = (split.dual.predict(x) as tf.Tensor[])[0] as tf.Tensor4D;
    const classes = [0, 1, 2];
    const cams = gradCamMaps(split, a, classes);
    const W = dense.getWeights()[0];
    const expected = tf.tidy(() => {
      const per = classes.map((c, i) => {
        const wc = W.slice([0, c], [6, 1]).reshape([1, 1, 6]);
        const m = tf.relu(tf.sum(tf.mul(a.slice([i, 0, 0, 0], [1, -1, -1, -1]).squeeze([0]), wc), 2));
        return tf.div(m, tf.maximum(tf.max(m), 1e-12));
      });
      return tf.stack(per);
    });
    expect(cams.shape).toEqual([3, 22, 22]);
    const d = tf.max(tf.abs(tf.sub(cams, expected))).dataSync()[0];
    expect(d).toBeLessThan(1e-5);
    expect(tf.max(cams).dataSync()[0]).toBeCloseTo(1, 5);
    tf.dispose([x, a, cams, expected]);
    model.dispose();
  });

  it('returns values in 0–1 through BN, ReLU, pooling and a hidden layer, without leaking tensors', () => {
    const model = cbrLike(32, 5);
    const split = splitForGradCam(model);
    const x = randomBatch(4, 32, 13);
    const a = (split.dual.predict(x) as tf.Tensor[])[0] as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const cams = gradCamMaps(split, a, [1, 1, 0, 2]);
    expect(tf.memory().numTensors).toBe(before + 1);
    const v = cams.dataSync();
    expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...v)).toBeLessThanOrEqual(1 + 1e-6);
    expect(() => gradCamMaps(split, a, [1, 1, 0])).toThrow(RangeError);
    expect(() => gradCamMaps(split, a, [1, 1, 0, 3])).toThrow(RangeError);
    tf.dispose([x, a, cams]);
    expect(tf.memory().numTensors).toBe(before - 2);
    model.dispose();
  });
});

describe('featureGridMapping', () => {
  it('locates receptive-field centres through valid and same convolutions and pools', () => {
    const inp = tf.input({ shape: [64, 64, 3] });
    let h = tf.layers.conv2d({ filters: 2, kernelSize: 7, padding: 'valid' }).apply(inp) as ST; // x_in = x + 3
    h = tf.layers.batchNormalization({}).apply(h) as ST;
    h = tf.layers.maxPooling2d({ poolSize: 2 }).apply(h) as ST; // x_in = 2x + 0.5
    h = tf.layers.conv2d({ filters: 2, kernelSize: 3, strides: 2, padding: 'same' }).apply(h) as ST; // 29 → 15
    const m = featureGridMapping(h, [64, 64]);
    // Conv 3×3 stride 2 'same' on 29: out 15, total pad (15−1)·2 + 3 − 29 = 2, before 1 → x_in = 2x + 1 − 1 = 2x.
    // Pool: 2·(2x) + 0.5 = 4x + 0.5; first conv: 4x + 3.5.
    expect(m.method).toBe('receptive-field');
    expect(m.scale).toEqual([4, 4]);
    expect(m.offset).toEqual([3.5, 3.5]);
  });

  it('falls back to a stretch for a branching path', () => {
    const inp = tf.input({ shape: [16, 16, 3] });
    const a = tf.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same' }).apply(inp) as ST;
    const b = tf.layers.conv2d({ filters: 2, kernelSize: 1 }).apply(inp) as ST;
    const c = tf.layers.concatenate().apply([a, b]) as ST;
    expect(featureGridMapping(c, [16, 16])).toEqual(stretchMapping(16, 16, 16));
  });
});

describe('camToSliceGrid', () => {
  it('undoes the central zoom: the map lands on the crop, zero outside', () => {
    // 100 × 100 slice, zoom 0.6 → crop rows/cols 20..79 (60 px) = the 60 × 60 input, identity feature grid.
    const h = 60;
    const cam = new Float32Array(h * h);
    cam[10 * h + 40] = 1;
    const out = camToSliceGrid(cam, h, h, { scale: [1, 1], offset: [0, 0], method: 'receptive-field' }, 60, 100, 100, 0.6);
    expect(out.length).toBe(100 * 100);
    expect(out[(20 + 10) * 100 + (20 + 40)]).toBeCloseTo(1, 6);
    let sum = 0;
    for (const v of out) sum += v;
    expect(sum).toBeCloseTo(1, 6);
    const full = camToSliceGrid(new Float32Array(h * h).fill(1), h, h, stretchMapping(h, h, 60), 60, 100, 100, 0.6);
    const box = centralCropBox(100, 100, 0.6);
    for (let r = 0; r < 100; r++) {
      for (let c = 0; c < 100; c++) {
        const inside = r >= box.top && r < box.top + box.rows && c >= box.left && c < box.left + box.cols;
        expect(full[r * 100 + c]).toBe(inside ? 1 : 0);
      }
    }
  });

  it('handles non-square slices and a coarse map', () => {
    const cam = Float32Array.from([0, 0, 0, 1]); // 2 × 2, hot bottom-right
    const out = camToSliceGrid(cam, 2, 2, stretchMapping(2, 2, 32), 32, 50, 80, 0.6);
    const box = centralCropBox(50, 80, 0.6);
    const at = (r: number, c: number) => out[(box.top + r) * 80 + box.left + c];
    expect(at(box.rows - 1, box.cols - 1)).toBe(1);
    expect(at(0, 0)).toBe(0);
    expect(at(0, box.cols - 1)).toBe(0);
    // Bilinear between the four feature centres: f = u·v, so the four pixels around the crop centre average 1/4.
    const [r0, c0] = [box.rows / 2 - 1, box.cols / 2 - 1];
    expect((at(r0, c0) + at(r0 + 1, c0) + at(r0, c0 + 1) + at(r0 + 1, c0 + 1)) / 4).toBeCloseTo(0.25, 6);
    expect(() => camToSliceGrid(cam, 3, 2, stretchMapping(3, 2, 32), 32, 50, 80, 0.6)).toThrow(RangeError);
  });
});

describe('Grad-CAM on phantom slices', () => {
  /**
   * A hand-set LV detector: a 21 × 21 centre-surround filter (+ inside radius 7 px, − in the ring 7–10 px of
   * the 64² input, i.e. the blood pool against the darker myocardium) → ReLU → 2 × 2 max pool → 1 × 1 conv
   * (the last conv layer) → GAP → Dense(softmax) whose IN logit grows with the response. The valid 21 × 21
   * convolution shifts the feature grid by 10 px, so a wrong mapping back to the slice misplaces the peak.
   */
  function lvDetector(size: number): tf.LayersModel {
    const K = 21;
    const c = (K - 1) / 2;
    const w = new Float32Array(K * K * 3);
    let nIn = 0;
    let nOut = 0;
    const ring = (y: number, x: number) => {
      const d = Math.hypot(y - c, x - c);
      return d <= 7 ? 1 : d <= 10 ? -1 : 0;
    };
    for (let y = 0; y < K; y++) {
      for (let x = 0; x < K; x++) {
        if (ring(y, x) > 0) nIn++;
        else if (ring(y, x) < 0) nOut++;
      }
    }
    for (let y = 0; y < K; y++) {
      for (let x = 0; x < K; x++) {
        const v = ring(y, x) > 0 ? 1 / nIn : ring(y, x) < 0 ? -1 / nOut : 0;
        for (let ch = 0; ch < 3; ch++) w[(y * K + x) * 3 + ch] = v / 3;
      }
    }
    const inp = tf.input({ shape: [size, size, 3] });
    let h = tf.layers.conv2d({ filters: 1, kernelSize: K, name: 'blob', weights: [tf.tensor4d(w, [K, K, 3, 1]), tf.zeros([1])] }).apply(inp) as ST;
    h = tf.layers.activation({ activation: 'relu', name: 'blob_relu' }).apply(h) as ST;
    h = tf.layers.maxPooling2d({ poolSize: 2, name: 'pool' }).apply(h) as ST;
    h = tf.layers.conv2d({ filters: 1, kernelSize: 1, activation: 'relu', name: 'last_conv', weights: [tf.ones([1, 1, 1, 1]), tf.zeros([1])] }).apply(h) as ST;
    h = tf.layers.globalAveragePooling2d({}).apply(h) as ST;
    const out = tf.layers.dense({ units: 3, activation: 'softmax', weights: [tf.tensor2d([[-0.05, 0.05, -0.05]]), tf.zeros([3])] }).apply(h) as ST;
    return tf.model({ inputs: inp, outputs: out });
  }

  /** Circular shift of a rows × cols image by (dy, dx). */
  function roll(img: Float32Array, rows: number, cols: number, dy: number, dx: number): Float32Array {
    const out = new Float32Array(img.length);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) out[((r + dy + rows) % rows) * cols + ((c + dx + cols) % cols)] = img[r * cols + c];
    }
    return out;
  }

  it('peaks on the LV blood pool, also when the heart is far off the image centre', async () => {
    const size = 64;
    const rows = 128;
    const model = lvDetector(size);
    const split = splitForGradCam(model, 'last_conv');
    expect(split.mapping).toEqual({ scale: [2, 2], offset: [10.5, 10.5], method: 'receptive-field' });
    const params = preprocessParamsFor('cbr_small', { inputSize: size });
    const box = centralCropBox(rows, rows, params.zoom);
    const cases: Array<{ seed: number; shift: [number, number] }> = [
      { seed: 1, shift: [0, 0] },
      { seed: 5, shift: [0, 0] },
      { seed: 10, shift: [0, 0] },
      { seed: 3, shift: [16, 16] },
      { seed: 7, shift: [-16, 14] },
    ];
    for (const { seed, shift } of cases) {
      const m = createPhantomModel({ seed, slices: 12, rows });
      const labels = Array.from({ length: m.slices }, (_, k) => m.label(k, m.ed));
      const first = labels.indexOf('IN');
      const k = first + Math.floor(labels.filter((l) => l === 'IN').length / 2);
      const img = roll(m.render(k, m.ed), rows, rows, shift[0], shift[1]);
      const lvRow = m.lvCenterPixel[1] + shift[0];
      const lvCol = m.lvCenterPixel[0] + shift[1];
      const radius = m.cavityRadius(m.sliceHeights[k], m.contraction(m.ed)) / m.pixelSpacing;
      const x = toTensor4d(tf, preprocessStack([img], rows, rows, params), size);
      const [a, p] = split.dual.predict(x) as tf.Tensor[];
      const maps = gradCamMaps(split, a as tf.Tensor4D, [1]);
      const [h, w] = split.featureShape;
      const cam = camToSliceGrid((await maps.data()) as Float32Array, h, w, split.mapping, size, rows, rows, params.zoom);
      tf.dispose([x, a, p, maps]);
      let best = 0;
      let inLv = 0;
      let nLv = 0;
      let inCrop = 0;
      for (let i = 0; i < cam.length; i++) {
        if (cam[i] > cam[best]) best = i;
        const r = Math.floor(i / rows);
        const c = i % rows;
        if (Math.hypot(r - lvRow, c - lvCol) <= radius) {
          inLv += cam[i];
          nLv++;
        }
        inCrop += cam[i];
      }
      const pr = Math.floor(best / rows);
      const pc = best % rows;
      const what = `seed ${seed} shift ${shift}: peak (${pr}, ${pc}), LV (${lvRow.toFixed(1)}, ${lvCol.toFixed(1)}), radius ${radius.toFixed(1)} px`;
      expect(Math.hypot(pr - lvRow, pc - lvCol), what).toBeLessThan(0.5 * radius);
      // The blood pool is hot: its mean heat is well above the mean over the crop.
      expect(inLv / nLv, what).toBeGreaterThan(2 * (inCrop / (box.rows * box.cols)));
      // Not on the border of the crop the network saw, and nothing outside it.
      expect(pr > box.top + 2 && pr < box.top + box.rows - 3 && pc > box.left + 2 && pc < box.left + box.cols - 3, what).toBe(true);
      expect(cam[0]).toBe(0);
      expect(cam[(box.top - 1) * rows + box.left]).toBe(0);
    }
    model.dispose();
  });
});
