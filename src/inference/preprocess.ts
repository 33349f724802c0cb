/**
 * The one preprocessing module, shared by inference and training (pure: no tfjs needed except for the
 * thin `toTensor4d` helper, which takes the tfjs module as an argument).
 *
 * Pipeline (`preprocessStack`), per slice: percentile clip → central zoom (crop) → bilinear resize → channels
 * → per-network normalisation. Images are row-major Float32Arrays (`rows × cols`, index `r * cols + c`);
 * network inputs are HWC-interleaved Float32Arrays (`size × size × 3`, index `(r * size + c) * 3 + ch`).
 *
 * Relation to the paper's official code (notes/paper.md §6, §13): there each image was clipped to
 * [p2, p98] and byte-scaled to uint8 (JPEG), nearest-resized to 224²/299², and then zoomed ×1/0.6 about
 * the centre with a bilinear affine warp (keras `apply_transform({zx: 0.6, zy: 0.6})`), i.e. the central
 * 60 % × 60 % of the field of view enlarged to the network input. We keep the same field of view (central
 * 60 % in each axis) and the same value range, but resample once (crop, then bilinear) instead of twice
 * (nearest, then bilinear), and keep float precision (no uint8/JPEG round trip). The models shipped here are
 * trained with this module, so training and inference see exactly the same pixels; the ≤ 1-pixel
 * differences to Keras' warp only matter when importing weights fine-tuned by the original code.
 */

import type * as TF from '@tensorflow/tfjs';

export type ChannelMode = 'gray3' | '2.5d';
export type Normalization = 'caffe' | 'torch' | 'tf';

/** Serialisable preprocessing parameters (stored in the model card). */
export interface PreprocessParams {
  /** Network input edge length in pixels (square input). */
  inputSize: number;
  /** Fraction of each axis kept around the centre (0.6 = the paper's central 60 %). 1 = no crop. */
  zoom: number;
  /** Lower and upper intensity percentiles (0–100) mapped to 0 and 255. */
  clip: [number, number];
  /** 'gray3': the slice copied to three channels; '2.5d': slice below, the slice, slice above. */
  channelMode: ChannelMode;
  /** The network's own `preprocess_input` mode. */
  normalization: Normalization;
}

export const DEFAULT_ZOOM = 0.6;
export const DEFAULT_CLIP: [number, number] = [2, 98];

/** ImageNet means in BGR order, as subtracted by Keras' 'caffe' mode (after RGB→BGR). */
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68] as const;
/** ImageNet mean and std in RGB order, Keras' 'torch' mode (after scaling to 0–1). */
export const TORCH_MEAN_RGB = [0.485, 0.456, 0.406] as const;
export const TORCH_STD_RGB = [0.229, 0.224, 0.225] as const;

// ---------------------------------------------------------------------------------------------------------
// Percentiles and clipping

/**
 * Percentiles of `values` with numpy's default method (`np.percentile(..., method='linear')`): sort
 * ascending, position h = p/100 · (n − 1), result = v[⌊h⌋] + (h − ⌊h⌋) · (v[⌊h⌋+1] − v[⌊h⌋]).
 * NaNs are ignored. Returns NaN for every p when there are no finite values.
 */
export function percentiles(values: ArrayLike<number>, ps: readonly number[]): number[] {
  for (const p of ps) if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
  const buf = new Float64Array(values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isNaN(v)) buf[n++] = v;
  }
  if (n === 0) return ps.map(() => Number.NaN);
  const v = buf.subarray(0, n);
  // Order statistics by quickselect (expected O(n)) instead of a full sort: this runs on every slice at
  // inference time. Same values as sorting, since only the k-th smallest elements are read.
  return ps.map((p) => {
    const h = (p / 100) * (n - 1);
    const lo = Math.floor(h);
    const a = select(v, lo);
    if (h === lo || lo + 1 >= n) return a;
    // After select(v, lo), every element right of lo is >= v[lo]: the next order statistic is their minimum.
    let b = Infinity;
    for (let i = lo + 1; i < n; i++) if (v[i]! < b) b = v[i]!;
    return a + (h - lo) * (b - a);
  });
}

/** Hoare quickselect: puts the k-th smallest at index k (smaller left, larger-or-equal right); returns it. */
function select(a: Float64Array, k: number): number {
  let left = 0;
  let right = a.length - 1;
  while (right > left) {
    const pivot = a[(left + right) >> 1]!;
    let i = left;
    let j = right;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else break;
  }
  return a[k]!;
}

/** One percentile (numpy 'linear'); see `percentiles`. */
export function percentile(values: ArrayLike<number>, p: number): number {
  return percentiles(values, [p])[0];
}

/**
 * Clips `img` to its [lo, hi] percentiles (numpy 'linear' method, see `percentiles`) and maps that range
 * linearly to 0–255 (float, not rounded). A constant image (p_lo = p_hi) becomes all zeros; NaN → 0.
 */
export function percentileClip(img: Float32Array, lo = DEFAULT_CLIP[0], hi = DEFAULT_CLIP[1]): Float32Array {
  if (!(lo <= hi)) throw new RangeError(`clip percentiles must satisfy lo <= hi, got [${lo}, ${hi}]`);
  const [vlo, vhi] = percentiles(img, [lo, hi]);
  const out = new Float32Array(img.length);
  const range = vhi - vlo;
  if (!(range > 0)) return out;
  const scale = 255 / range;
  for (let i = 0; i < img.length; i++) {
    const v = img[i];
    out[i] = v > vlo ? (v < vhi ? (v - vlo) * scale : 255) : 0; // NaN → 0
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Central zoom (crop)

export interface CropBox {
  top: number;
  left: number;
  rows: number;
  cols: number;
}

/**
 * The central crop keeping `zoom` of each axis. Per axis of length n: margin m = round(n · (1 − zoom) / 2)
 * (Math.round, halves up), kept length n − 2m (at least 1), so the box is always exactly centred (same
 * margin on both sides). E.g. n = 10 → rows 2..7; n = 256 → 51..204 (154 px); n = 216 → 43..172 (130 px).
 */
export function centralCropBox(rows: number, cols: number, zoom = DEFAULT_ZOOM): CropBox {
  if (!(zoom > 0 && zoom <= 1)) throw new RangeError(`zoom must be in (0, 1], got ${zoom}`);
  const axis = (n: number): [number, number] => {
    let m = Math.round((n * (1 - zoom)) / 2);
    if (n - 2 * m < 1) m = Math.floor((n - 1) / 2);
    return [m, n - 2 * m];
  };
  const [top, r] = axis(rows);
  const [left, c] = axis(cols);
  return { top, left, rows: r, cols: c };
}

/** Crops the central `zoom` fraction of each axis (see `centralCropBox` for the rounding). */
export function centralZoom(
  img: Float32Array,
  rows: number,
  cols: number,
  zoom = DEFAULT_ZOOM,
): { data: Float32Array; rows: number; cols: number; box: CropBox } {
  checkSize(img, rows, cols);
  const box = centralCropBox(rows, cols, zoom);
  const data = new Float32Array(box.rows * box.cols);
  for (let r = 0; r < box.rows; r++) {
    const src = (box.top + r) * cols + box.left;
    data.set(img.subarray(src, src + box.cols), r * box.cols);
  }
  return { data, rows: box.rows, cols: box.cols, box };
}

// ---------------------------------------------------------------------------------------------------------
// Resize

/**
 * Bilinear resize with half-pixel centres: output pixel centre o maps to source coordinate
 * (o + 0.5) · in/out − 0.5, clamped to [0, in − 1] (edge pixels replicate). This is
 * `tf.image.resizeBilinear(x, size, alignCorners = false, halfPixelCenters = true)`, OpenCV INTER_LINEAR and
 * PIL BILINEAR when enlarging; no antialiasing when shrinking (the zoomed crop is normally enlarged).
 */
export function resize(img: Float32Array, rows: number, cols: number, outH: number, outW: number): Float32Array {
  checkSize(img, rows, cols);
  if (!(Number.isInteger(outH) && Number.isInteger(outW) && outH > 0 && outW > 0)) {
    throw new RangeError(`output size must be positive integers, got ${outH}×${outW}`);
  }
  const out = new Float32Array(outH * outW);
  if (outH === rows && outW === cols) {
    out.set(img);
    return out;
  }
  const x0 = new Int32Array(outW);
  const x1 = new Int32Array(outW);
  const fx = new Float32Array(outW);
  const sx = cols / outW;
  for (let o = 0; o < outW; o++) {
    const s = Math.min(Math.max((o + 0.5) * sx - 0.5, 0), cols - 1);
    const f = Math.floor(s);
    x0[o] = f;
    x1[o] = Math.min(f + 1, cols - 1);
    fx[o] = s - f;
  }
  const sy = rows / outH;
  for (let o = 0; o < outH; o++) {
    const s = Math.min(Math.max((o + 0.5) * sy - 0.5, 0), rows - 1);
    const y0 = Math.floor(s);
    const y1 = Math.min(y0 + 1, rows - 1);
    const wy = s - y0;
    const r0 = y0 * cols;
    const r1 = y1 * cols;
    const base = o * outW;
    for (let c = 0; c < outW; c++) {
      const w = fx[c];
      const top = img[r0 + x0[c]] + (img[r0 + x1[c]] - img[r0 + x0[c]]) * w;
      const bot = img[r1 + x0[c]] + (img[r1 + x1[c]] - img[r1 + x0[c]]) * w;
      out[base + c] = top + (bot - top) * wy;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Channels and normalisation

/**
 * Builds the 3-channel HWC image of slice `index` from same-sized single-channel images.
 * 'gray3': channels (s, s, s). '2.5d': (slices[index − 1], slices[index], slices[index + 1]) with the
 * neighbour index clamped to the stack, i.e. the edge slice is repeated at both ends. "Below" = the previous
 * index in the order given (apex → base in this service).
 */
export function toChannels(slices: readonly Float32Array[], index: number, mode: ChannelMode): Float32Array {
  if (index < 0 || index >= slices.length) throw new RangeError(`slice index ${index} out of 0..${slices.length - 1}`);
  const mid = slices[index];
  const below = mode === '2.5d' ? slices[Math.max(index - 1, 0)] : mid;
  const above = mode === '2.5d' ? slices[Math.min(index + 1, slices.length - 1)] : mid;
  if (below.length !== mid.length || above.length !== mid.length) throw new RangeError('slices differ in size');
  const n = mid.length;
  const out = new Float32Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    out[j] = below[i];
    out[j + 1] = mid[i];
    out[j + 2] = above[i];
  }
  return out;
}

/**
 * Keras `preprocess_input` on an HWC 3-channel image with values 0–255 (channels read as R, G, B):
 * 'caffe': RGB→BGR, then subtract [103.939, 116.779, 123.68]; 'torch': /255, subtract
 * [0.485, 0.456, 0.406], divide by [0.229, 0.224, 0.225]; 'tf': /127.5 − 1 (range [−1, 1]).
 * Writes into `out` (may be `hwc` itself) and returns it.
 */
export function normalize(hwc: Float32Array, mode: Normalization, out: Float32Array = new Float32Array(hwc.length)): Float32Array {
  if (hwc.length % 3 !== 0) throw new RangeError('normalize expects a 3-channel HWC array');
  if (out.length !== hwc.length) throw new RangeError('output length differs from input');
  switch (mode) {
    case 'caffe':
      for (let j = 0; j < hwc.length; j += 3) {
        const r = hwc[j];
        const g = hwc[j + 1];
        const b = hwc[j + 2];
        out[j] = b - CAFFE_MEAN_BGR[0];
        out[j + 1] = g - CAFFE_MEAN_BGR[1];
        out[j + 2] = r - CAFFE_MEAN_BGR[2];
      }
      return out;
    case 'torch':
      for (let j = 0; j < hwc.length; j += 3) {
        for (let c = 0; c < 3; c++) out[j + c] = (hwc[j + c] / 255 - TORCH_MEAN_RGB[c]) / TORCH_STD_RGB[c];
      }
      return out;
    case 'tf':
      for (let j = 0; j < hwc.length; j++) out[j] = hwc[j] / 127.5 - 1;
      return out;
    default:
      throw new RangeError(`unknown normalization '${String(mode)}'`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Architectures

export interface ArchitecturePreprocessing {
  normalization: Normalization;
  inputSize: number;
}

/** Canonical architecture names → normalisation mode and input size (notes/paper.md §6). */
export const ARCHITECTURES: Readonly<Record<string, ArchitecturePreprocessing>> = {
  vgg16: { normalization: 'caffe', inputSize: 224 },
  densenet121: { normalization: 'torch', inputSize: 224 },
  mobilenet: { normalization: 'tf', inputSize: 224 },
  mobilenetv2: { normalization: 'tf', inputSize: 224 },
  resnet50v2: { normalization: 'tf', inputSize: 224 },
  nasnetmobile: { normalization: 'tf', inputSize: 224 },
  inceptionv3: { normalization: 'tf', inputSize: 299 },
  xception: { normalization: 'tf', inputSize: 299 },
  inceptionresnetv2: { normalization: 'tf', inputSize: 299 },
};

/** CBR models (cbr_small, cbr_tiny, cbr_large_t, cbr_large_w, …): caffe mode, input size as configured. */
export const CBR_DEFAULT_INPUT_SIZE = 224;

/** Names used by the paper's code (`FineModel` keys) → canonical names. */
const ALIASES: Readonly<Record<string, string>> = {
  densenet_121: 'densenet121',
  mobilenet_a25: 'mobilenet',
  mobilenet_v1: 'mobilenet',
  mobilenet_v2: 'mobilenetv2',
  mobilenet_v2_a35: 'mobilenetv2',
  resnet50_v2: 'resnet50v2',
  inception_v3: 'inceptionv3',
  inception_resnet_v2: 'inceptionresnetv2',
  nasnet_mobile: 'nasnetmobile',
};

/**
 * Normalisation and input size of an architecture. Names are case-insensitive; the paper's code keys
 * (`densenet_121`, `inception_v3`, `cbt_small`, …) are accepted. CBR (`cbr_*`, `cbt_*`) takes
 * `cbrInputSize` (default 224, e.g. 128 for fast CPU training). Throws on unknown names.
 */
export function architecturePreprocessing(arch: string, cbrInputSize = CBR_DEFAULT_INPUT_SIZE): ArchitecturePreprocessing {
  const key = arch.trim().toLowerCase().replace(/-/g, '_');
  if (/^cb[rt](_|$)/.test(key)) return { normalization: 'caffe', inputSize: cbrInputSize };
  const canonical = ARCHITECTURES[key] ? key : ALIASES[key];
  const entry = canonical ? ARCHITECTURES[canonical] : undefined;
  if (!entry) {
    throw new RangeError(`unknown architecture '${arch}' (known: ${Object.keys(ARCHITECTURES).join(', ')}, cbr_*)`);
  }
  return { ...entry };
}

/**
 * Full preprocessing parameters for an architecture: its normalisation and input size, zoom 0.6,
 * clip [2, 98], gray3, unless overridden. `overrides.inputSize` also sets a CBR model's input size.
 */
export function preprocessParamsFor(arch: string, overrides: Partial<PreprocessParams> = {}): PreprocessParams {
  const a = architecturePreprocessing(arch, overrides.inputSize ?? CBR_DEFAULT_INPUT_SIZE);
  const params: PreprocessParams = {
    inputSize: a.inputSize,
    zoom: DEFAULT_ZOOM,
    clip: [DEFAULT_CLIP[0], DEFAULT_CLIP[1]],
    channelMode: 'gray3',
    normalization: a.normalization,
    ...overrides,
  };
  validatePreprocessParams(params);
  return params;
}

/** Throws a RangeError naming the bad field (e.g. for a model card read from disk). */
export function validatePreprocessParams(p: PreprocessParams): void {
  if (!(Number.isInteger(p.inputSize) && p.inputSize > 0)) throw new RangeError(`inputSize: positive integer expected, got ${p.inputSize}`);
  if (!(p.zoom > 0 && p.zoom <= 1)) throw new RangeError(`zoom: expected (0, 1], got ${p.zoom}`);
  if (!Array.isArray(p.clip) || p.clip.length !== 2 || !(p.clip[0] >= 0 && p.clip[0] <= p.clip[1] && p.clip[1] <= 100)) {
    throw new RangeError(`clip: expected [lo, hi] with 0 <= lo <= hi <= 100, got ${JSON.stringify(p.clip)}`);
  }
  if (p.channelMode !== 'gray3' && p.channelMode !== '2.5d') throw new RangeError(`channelMode: expected gray3 or 2.5d, got ${String(p.channelMode)}`);
  if (p.normalization !== 'caffe' && p.normalization !== 'torch' && p.normalization !== 'tf') {
    throw new RangeError(`normalization: expected caffe, torch or tf, got ${String(p.normalization)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The pipeline

export interface PreprocessOptions {
  /**
   * Called per slice after clipping (values 0–255, native grid) and before the zoom: the place for training
   * augmentation such as the paper's rotation (it rotated before zooming). Must return rows × cols values.
   * In 2.5D mode it is called once per slice of the stack; apply the same transform to every slice.
   */
  beforeZoom?: (img: Float32Array, rows: number, cols: number, index: number) => Float32Array;
}

/**
 * Clip → zoom → resize one slice to `inputSize²` (single channel, 0–255). Exposed for callers that cache
 * per-slice results; `preprocessStack` is the full pipeline.
 */
export function preprocessPlane(
  img: Float32Array,
  rows: number,
  cols: number,
  params: PreprocessParams,
  index = 0,
  options: PreprocessOptions = {},
): Float32Array {
  checkSize(img, rows, cols);
  let x = percentileClip(img, params.clip[0], params.clip[1]);
  if (options.beforeZoom) {
    x = options.beforeZoom(x, rows, cols, index);
    checkSize(x, rows, cols);
  }
  const z = centralZoom(x, rows, cols, params.zoom);
  return resize(z.data, z.rows, z.cols, params.inputSize, params.inputSize);
}

/**
 * The full pipeline for the slices of one stack (all `rows × cols`, ordered apex → base for 2.5D):
 * per slice clip → zoom → resize, then channels (gray3 or 2.5D neighbours) → normalisation.
 * Returns one HWC Float32Array (inputSize × inputSize × 3) per slice.
 */
export function preprocessStack(
  slices: readonly Float32Array[],
  rows: number,
  cols: number,
  params: PreprocessParams,
  options: PreprocessOptions = {},
): Float32Array[] {
  validatePreprocessParams(params);
  const planes = slices.map((s, i) => preprocessPlane(s, rows, cols, params, i, options));
  return planes.map((_, i) => {
    const hwc = toChannels(planes, i, params.channelMode);
    return normalize(hwc, params.normalization, hwc);
  });
}

/** Packs HWC images into one NHWC batch buffer. */
export function toBatch(images: readonly Float32Array[], size: number): { data: Float32Array; shape: [number, number, number, number] } {
  const per = size * size * 3;
  const data = new Float32Array(images.length * per);
  images.forEach((img, i) => {
    if (img.length !== per) throw new RangeError(`image ${i} has ${img.length} values, expected ${per}`);
    data.set(img, i * per);
  });
  return { data, shape: [images.length, size, size, 3] };
}

/** Thin tfjs helper: an NHWC float32 batch tensor from HWC images (pass the tfjs module). */
export function toTensor4d(tf: typeof TF, images: readonly Float32Array[], size: number): TF.Tensor4D {
  const { data, shape } = toBatch(images, size);
  return tf.tensor4d(data, shape, 'float32');
}

function checkSize(img: ArrayLike<number>, rows: number, cols: number): void {
  if (!(Number.isInteger(rows) && Number.isInteger(cols) && rows > 0 && cols > 0)) {
    throw new RangeError(`image size must be positive integers, got ${rows}×${cols}`);
  }
  if (img.length !== rows * cols) throw new RangeError(`image has ${img.length} values, expected ${rows}×${cols}`);
}
