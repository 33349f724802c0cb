import { describe, it, expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import {
  CAFFE_MEAN_BGR,
  architecturePreprocessing,
  centralCropBox,
  centralZoom,
  normalize,
  percentile,
  percentileClip,
  percentiles,
  preprocessParamsFor,
  preprocessStack,
  resize,
  toBatch,
  toChannels,
  toTensor4d,
  validatePreprocessParams,
  type PreprocessParams,
} from '../../src/inference/preprocess.js';

const range = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i);

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, digits = 5): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(actual[i], `index ${i}`).toBeCloseTo(expected[i], digits);
}

describe('percentiles (numpy linear)', () => {
  it('matches np.percentile on 0..99', () => {
    const v = range(100);
    // h = p/100 · 99: p2 → 1.98, p98 → 97.02, p50 → 49.5
    expectClose(percentiles(v, [0, 2, 50, 98, 100]), [0, 1.98, 49.5, 97.02, 99], 10);
  });

  it('does not depend on input order and ignores NaN', () => {
    const v = Float32Array.from([5, 1, Number.NaN, 3, 2, 4]);
    expect(percentile(v, 50)).toBeCloseTo(3, 10);
    expect(percentile(v, 25)).toBeCloseTo(2, 10);
    expect(percentile(v, 10)).toBeCloseTo(1.4, 10);
  });

  it('rejects percentiles outside 0..100', () => {
    expect(() => percentile(range(3), 101)).toThrow(RangeError);
  });
});

describe('percentileClip', () => {
  it('maps [p2, p98] of 0..99 to 0..255', () => {
    const out = percentileClip(range(100));
    const scale = 255 / (97.02 - 1.98);
    expect(out[0]).toBe(0);
    expect(out[1]).toBe(0); // 1 < 1.98
    expect(out[2]).toBeCloseTo((2 - 1.98) * scale, 3);
    expect(out[50]).toBeCloseTo((50 - 1.98) * scale, 3); // 128.84
    expect(out[97]).toBeCloseTo((97 - 1.98) * scale, 3); // 254.95
    expect(out[98]).toBe(255);
    expect(out[99]).toBe(255);
  });

  it('accepts other bounds and returns zeros for a constant image', () => {
    const out = percentileClip(range(11), 0, 100);
    expectClose(out, Array.from({ length: 11 }, (_, i) => i * 25.5));
    expect(Array.from(percentileClip(new Float32Array(9).fill(7)))).toEqual(new Array(9).fill(0));
  });
});

describe('centralZoom', () => {
  it('keeps rows/cols 2..7 of a 10×10 ramp at zoom 0.6', () => {
    const img = range(100); // value = r·10 + c
    const z = centralZoom(img, 10, 10, 0.6);
    expect(z.box).toEqual({ top: 2, left: 2, rows: 6, cols: 6 });
    expect(z.rows).toBe(6);
    expect(z.cols).toBe(6);
    const expected: number[] = [];
    for (let r = 2; r <= 7; r++) for (let c = 2; c <= 7; c++) expected.push(r * 10 + c);
    expect(Array.from(z.data)).toEqual(expected);
  });

  it('rounds the margin and stays centred', () => {
    expect(centralCropBox(256, 216)).toEqual({ top: 51, left: 43, rows: 154, cols: 130 });
    expect(centralCropBox(12, 5)).toEqual({ top: 2, left: 1, rows: 8, cols: 3 }); // margins round(2.4)=2, round(1)=1
    expect(centralCropBox(10, 10, 1)).toEqual({ top: 0, left: 0, rows: 10, cols: 10 });
    expect(centralCropBox(1, 2, 0.1)).toEqual({ top: 0, left: 0, rows: 1, cols: 2 });
    expect(() => centralCropBox(10, 10, 0)).toThrow(RangeError);
  });
});

describe('resize (bilinear, half-pixel centres)', () => {
  it('enlarges a 2×2 to 4×4 as computed by hand', () => {
    // source coordinates (o + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25 → clamped weights 0, .25, .75, 1
    const out = resize(Float32Array.from([0, 1, 2, 3]), 2, 2, 4, 4);
    expectClose(out, [
      0, 0.25, 0.75, 1, //
      0.5, 0.75, 1.25, 1.5, //
      1.5, 1.75, 2.25, 2.5, //
      2, 2.25, 2.75, 3,
    ]);
  });

  it('is the identity at the same size and keeps a constant image constant', () => {
    const img = range(12);
    expect(Array.from(resize(img, 3, 4, 3, 4))).toEqual(Array.from(img));
    expect(Array.from(resize(new Float32Array(6).fill(3), 2, 3, 5, 7))).toEqual(new Array(35).fill(3));
  });

  it('matches tf.image.resizeBilinear(alignCorners=false, halfPixelCenters=true)', async () => {
    await tf.setBackend('cpu');
    const rows = 5;
    const cols = 7;
    const img = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 1.7) * 100);
    for (const [h, w] of [
      [11, 3],
      [13, 9],
      [4, 4],
    ]) {
      const ref = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(img, [rows, cols, 1]), [h, w], false, true).dataSync());
      expectClose(resize(img, rows, cols, h, w), ref, 3);
    }
  });
});

describe('channels', () => {
  const a = Float32Array.from([1, 2]);
  const b = Float32Array.from([10, 20]);
  const c = Float32Array.from([100, 200]);

  it('gray3 copies the slice to three channels (HWC interleaved)', () => {
    expect(Array.from(toChannels([a, b, c], 1, 'gray3'))).toEqual([10, 10, 10, 20, 20, 20]);
  });

  it('2.5d stacks below, slice, above and repeats the edge slice at both ends', () => {
    expect(Array.from(toChannels([a, b, c], 0, '2.5d'))).toEqual([1, 1, 10, 2, 2, 20]);
    expect(Array.from(toChannels([a, b, c], 1, '2.5d'))).toEqual([1, 10, 100, 2, 20, 200]);
    expect(Array.from(toChannels([a, b, c], 2, '2.5d'))).toEqual([10, 100, 100, 20, 200, 200]);
    expect(Array.from(toChannels([a], 0, '2.5d'))).toEqual([1, 1, 1, 2, 2, 2]);
  });
});

describe('normalize', () => {
  const px = Float32Array.from([10, 20, 30]); // R, G, B

  it('caffe: RGB→BGR minus the ImageNet means', () => {
    expectClose(normalize(px, 'caffe'), [30 - 103.939, 20 - 116.779, 10 - 123.68]);
    expect(CAFFE_MEAN_BGR).toEqual([103.939, 116.779, 123.68]);
  });

  it('torch: /255, minus mean, over std (RGB)', () => {
    expectClose(normalize(px, 'torch'), [(10 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224, (30 / 255 - 0.406) / 0.225]);
  });

  it('tf: scales 0..255 to −1..1', () => {
    expectClose(normalize(Float32Array.from([0, 127.5, 255]), 'tf'), [-1, 0, 1]);
  });

  it('can work in place', () => {
    const x = Float32Array.from([0, 127.5, 255]);
    expect(normalize(x, 'tf', x)).toBe(x);
    expectClose(x, [-1, 0, 1]);
  });
});

describe('architectures', () => {
  it('maps each network to its normalisation and input size', () => {
    expect(architecturePreprocessing('vgg16')).toEqual({ normalization: 'caffe', inputSize: 224 });
    expect(architecturePreprocessing('densenet121')).toEqual({ normalization: 'torch', inputSize: 224 });
    for (const a of ['mobilenet', 'mobilenetv2', 'resnet50v2', 'nasnetmobile']) {
      expect(architecturePreprocessing(a)).toEqual({ normalization: 'tf', inputSize: 224 });
    }
    for (const a of ['inceptionv3', 'xception', 'inceptionresnetv2']) {
      expect(architecturePreprocessing(a)).toEqual({ normalization: 'tf', inputSize: 299 });
    }
    expect(architecturePreprocessing('cbr_small')).toEqual({ normalization: 'caffe', inputSize: 224 });
    expect(architecturePreprocessing('cbr_tiny', 128)).toEqual({ normalization: 'caffe', inputSize: 128 });
  });

  it('accepts the paper code keys and rejects unknown names', () => {
    expect(architecturePreprocessing('densenet_121').normalization).toBe('torch');
    expect(architecturePreprocessing('inception_resnet_v2').inputSize).toBe(299);
    expect(architecturePreprocessing('cbt_large_t').normalization).toBe('caffe');
    expect(architecturePreprocessing('VGG16').normalization).toBe('caffe');
    expect(() => architecturePreprocessing('alexnet')).toThrow(/unknown architecture/);
  });

  it('builds serialisable parameters with the paper defaults', () => {
    const p = preprocessParamsFor('cbr_small', { inputSize: 128 });
    expect(p).toEqual({ inputSize: 128, zoom: 0.6, clip: [2, 98], channelMode: 'gray3', normalization: 'caffe' });
    expect(JSON.parse(JSON.stringify(p))).toEqual(p);
    expect(preprocessParamsFor('xception', { channelMode: '2.5d' }).inputSize).toBe(299);
  });

  it('validates parameters field by field', () => {
    const ok: PreprocessParams = preprocessParamsFor('vgg16');
    expect(() => validatePreprocessParams({ ...ok, zoom: 0 })).toThrow(/zoom/);
    expect(() => validatePreprocessParams({ ...ok, clip: [98, 2] })).toThrow(/clip/);
    expect(() => validatePreprocessParams({ ...ok, inputSize: 0 })).toThrow(/inputSize/);
    expect(() => validatePreprocessParams({ ...ok, channelMode: 'rgb' as never })).toThrow(/channelMode/);
    expect(() => validatePreprocessParams({ ...ok, normalization: 'x' as never })).toThrow(/normalization/);
  });
});

describe('preprocessStack', () => {
  const rows = 10;
  const cols = 10;
  const ramp = (k: number): Float32Array => Float32Array.from({ length: 100 }, (_, i) => i + k);

  it('clips, crops, resizes, copies to 3 channels and normalises', () => {
    const params: PreprocessParams = { inputSize: 6, zoom: 0.6, clip: [0, 100], channelMode: 'gray3', normalization: 'tf' };
    const [out] = preprocessStack([ramp(0)], rows, cols, params);
    expect(out.length).toBe(6 * 6 * 3);
    // 0..99 → 0..255, crop rows/cols 2..7 (6×6 → 6×6: no resampling), tf: x/127.5 − 1 = v·2/99 − 1
    for (let r = 0; r < 6; r++) {
      for (let c = 0; c < 6; c++) {
        const v = (r + 2) * 10 + (c + 2);
        for (let ch = 0; ch < 3; ch++) expect(out[(r * 6 + c) * 3 + ch]).toBeCloseTo((v * 2) / 99 - 1, 5);
      }
    }
  });

  it('2.5d uses the neighbouring slices after their own clipping', () => {
    const params: PreprocessParams = { inputSize: 6, zoom: 0.6, clip: [0, 100], channelMode: '2.5d', normalization: 'tf' };
    // Each slice is clipped to its own percentiles; the middle slice is the inverted ramp.
    const a = ramp(0);
    const b = Float32Array.from(ramp(0), (v) => 99 - v);
    const out = preprocessStack([a, b, a], rows, cols, params);
    expect(out).toHaveLength(3);
    const at = (img: Float32Array, ch: number): number => img[ch]; // pixel (0,0) = source (2,2) = 22
    const fwd = (22 * 2) / 99 - 1;
    const inv = ((99 - 22) * 2) / 99 - 1;
    expectClose([at(out[0], 0), at(out[0], 1), at(out[0], 2)], [fwd, fwd, inv]);
    expectClose([at(out[1], 0), at(out[1], 1), at(out[1], 2)], [fwd, inv, fwd]);
    expectClose([at(out[2], 0), at(out[2], 1), at(out[2], 2)], [inv, fwd, fwd]);
  });

  it('calls the beforeZoom hook on the clipped native image', () => {
    const params = preprocessParamsFor('vgg16', { inputSize: 8 });
    const seen: number[] = [];
    const out = preprocessStack([ramp(0), ramp(5)], rows, cols, params, {
      beforeZoom: (img, r, c, index) => {
        seen.push(index);
        expect([r, c]).toEqual([rows, cols]);
        expect(Math.max(...img)).toBe(255);
        return new Float32Array(img.length).fill(100);
      },
    });
    expect(seen).toEqual([0, 1]);
    expectClose(out[1].subarray(0, 3), [100 - 103.939, 100 - 116.779, 100 - 123.68], 4);
  });

  it('packs a batch and builds a tensor', async () => {
    const params = preprocessParamsFor('mobilenet', { inputSize: 4 });
    const imgs = preprocessStack([ramp(0), ramp(1), ramp(2)], rows, cols, params);
    const batch = toBatch(imgs, 4);
    expect(batch.shape).toEqual([3, 4, 4, 3]);
    expect(batch.data.subarray(48, 96)).toEqual(imgs[1]);
    await tf.setBackend('cpu');
    const t = toTensor4d(tf, imgs, 4);
    expect(t.shape).toEqual([3, 4, 4, 3]);
    t.dispose();
    expect(() => toBatch(imgs, 5)).toThrow(RangeError);
  });

  it('rejects mismatched image sizes', () => {
    expect(() => preprocessStack([new Float32Array(99)], rows, cols, preprocessParamsFor('vgg16'))).toThrow(RangeError);
  });
});

describe('percentiles by quickselect', () => {
  it('equals the sort-based numpy linear percentile on random data with ties', () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let t = 0; t < 500; t++) {
      const n = 1 + Math.floor(rnd() * 50);
      const values = Array.from({ length: n }, () => (rnd() < 0.3 ? Math.floor(rnd() * 4) : rnd() * 100));
      const ps = [0, 2, 50, 98, 100, rnd() * 100];
      const sorted = [...values].sort((a, b) => a - b);
      const expected = ps.map((p) => {
        const h = (p / 100) * (n - 1);
        const lo = Math.floor(h);
        const hi = Math.min(lo + 1, n - 1);
        return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
      });
      const got = percentiles(values, ps);
      got.forEach((g, i) => expect(g).toBeCloseTo(expected[i]!, 9));
    }
  });
});
