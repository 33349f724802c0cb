/**
 * Training and evaluation samples, built AFTER the patient-level split, with the one preprocessing module
 * (src/inference/preprocess.ts) so that training sees exactly the pixels inference will see.
 *
 * Per slice the pipeline is preprocess.ts' `preprocessPlane`: percentile clip → [augmentation] → central
 * zoom → bilinear resize; then channels (gray3 or 2.5D neighbours) → normalisation. The clip (a sort of the
 * whole plane, ≈ 10 ms for 256²) does not depend on the augmentation, so it is done once per slice
 * (`prepareStacks`) and the per-sample steps call the same exported functions (`centralZoom`, `resize`,
 * `toChannels`, `normalize`) on the clipped plane; test/unit/training-data.test.ts checks the result equals
 * `preprocessStack` (with the rotation as its `beforeZoom` hook) value for value.
 *
 * Augmentation (notes/paper.md §6): a rotation by θ ~ U(−R°, R°) on the clipped native plane before the zoom
 * (the paper's Keras generator rotated before its zoom), bilinear, edge pixels replicated (fill_mode
 * 'nearest'). Every training sample gets its own angle each epoch (as Keras' generator did); OAP and OBS
 * slices are repeated `oversample` times per epoch, each copy with its own angle (the paper's BALANCE=5
 * copies + random rotation). Validation/evaluation samples are neither rotated nor repeated. All draws are
 * seeded: the same (seed, epoch) gives the same plan.
 */

import { LABELS, type SliceLabel } from '../../inference/decode.js';
import {
  centralZoom,
  normalize,
  percentileClip,
  resize,
  toChannels,
  validatePreprocessParams,
  type PreprocessParams,
} from '../../inference/preprocess.js';
import { Rng } from '../../phantom/prng.js';
import { shuffleInPlace } from './split.js';
import type { LabelledStack, Phase } from './types.js';

/** A stack with its planes already percentile-clipped (0–255, native grid), apex → base. */
export interface PreparedStack {
  subject: string;
  phase: Phase;
  labels: SliceLabel[];
  rows: number;
  columns: number;
  planes: Float32Array[];
  sourceSlices: number[];
}

/** Class index of a label in the model's output order (OAP, IN, OBS). */
export function classIndex(label: SliceLabel): number {
  const k = LABELS.indexOf(label);
  if (k < 0) throw new RangeError(`unknown label '${String(label)}'`);
  return k;
}

/**
 * Clips every plane once (`percentileClip` with the given percentiles). With `shared`, each stack's planes
 * live in one SharedArrayBuffer, so that worker threads can read them without copies.
 */
export function prepareStacks(stacks: readonly LabelledStack[], clip: readonly [number, number], opts: { shared?: boolean } = {}): PreparedStack[] {
  return stacks.map((s) => {
    const n = s.rows * s.columns;
    const buf = opts.shared ? new SharedArrayBuffer(n * 4 * s.images.length) : undefined;
    const planes = s.images.map((img, i) => {
      if (img.length !== n) throw new RangeError(`${s.subject} ${s.phase} slice ${i}: ${img.length} values, expected ${s.rows}×${s.columns}`);
      const c = percentileClip(img, clip[0], clip[1]);
      if (!buf) return c;
      const view = new Float32Array(buf, i * n * 4, n);
      view.set(c);
      return view;
    });
    if (s.labels.length !== s.images.length) throw new RangeError(`${s.subject} ${s.phase}: ${s.labels.length} labels for ${s.images.length} slices`);
    return {
      subject: s.subject,
      phase: s.phase,
      labels: [...s.labels],
      rows: s.rows,
      columns: s.columns,
      planes,
      sourceSlices: s.sourceSlices ? [...s.sourceSlices] : s.images.map((_, i) => i),
    };
  });
}

/**
 * Rotates a row-major plane by `degrees` about its centre ((cols − 1)/2, (rows − 1)/2): output pixel p samples
 * the input at R(θ)·(p − c) + c, bilinear, coordinates clamped to the image (edge pixels replicated, like
 * Keras' fill_mode 'nearest'). θ = 0 returns an exact copy.
 */
export function rotatePlane(img: Float32Array, rows: number, cols: number, degrees: number): Float32Array {
  if (img.length !== rows * cols) throw new RangeError(`rotatePlane: ${img.length} values, expected ${rows}×${cols}`);
  if (degrees === 0) return img.slice();
  const t = (degrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const cx = (cols - 1) / 2;
  const cy = (rows - 1) / 2;
  const out = new Float32Array(rows * cols);
  const maxX = cols - 1;
  const maxY = rows - 1;
  for (let r = 0; r < rows; r++) {
    const dy = r - cy;
    let sx = cx - sin * dy - cos * cx; // at c = 0: cx + cos·(0 − cx) − sin·dy
    let sy = cy + cos * dy - sin * cx; // at c = 0: cy + sin·(0 − cx) + cos·dy
    const o = r * cols;
    for (let c = 0; c < cols; c++, sx += cos, sy += sin) {
      const x = sx < 0 ? 0 : sx > maxX ? maxX : sx;
      const y = sy < 0 ? 0 : sy > maxY ? maxY : sy;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const x1 = x0 < maxX ? x0 + 1 : maxX;
      const y1 = y0 < maxY ? y0 + 1 : maxY;
      const fx = x - x0;
      const fy = y - y0;
      const a = img[y0 * cols + x0];
      const b = img[y0 * cols + x1];
      const d = img[y1 * cols + x0];
      const e = img[y1 * cols + x1];
      const top = a + (b - a) * fx;
      const bot = d + (e - d) * fx;
      out[o + c] = top + (bot - top) * fy;
    }
  }
  return out;
}

/** `preprocessPlane`'s `beforeZoom` hook rotating every slice by the same angle. */
export function rotationHook(degrees: number): (img: Float32Array, rows: number, cols: number) => Float32Array {
  return (img, rows, cols) => rotatePlane(img, rows, cols, degrees);
}

/** Clipped plane → [rotation] → central zoom → resize: one channel, inputSize² values (0–255). */
export function planeToInput(plane: Float32Array, rows: number, cols: number, params: PreprocessParams, degrees = 0): Float32Array {
  const x = degrees === 0 ? plane : rotatePlane(plane, rows, cols, degrees);
  const z = centralZoom(x, rows, cols, params.zoom);
  return resize(z.data, z.rows, z.cols, params.inputSize, params.inputSize);
}

/** The network input (HWC, inputSize² × 3, normalised) of slice `index` of a prepared stack. */
export function sampleInput(stack: PreparedStack, index: number, params: PreprocessParams, degrees = 0): Float32Array {
  const n = stack.planes.length;
  if (index < 0 || index >= n) throw new RangeError(`slice ${index} out of 0..${n - 1}`);
  const one = (i: number) => planeToInput(stack.planes[i], stack.rows, stack.columns, params, degrees);
  let hwc: Float32Array;
  if (params.channelMode === '2.5d') {
    const mid = one(index);
    const below = index > 0 ? one(index - 1) : mid;
    const above = index < n - 1 ? one(index + 1) : mid;
    hwc = toChannels([below, mid, above], 1, '2.5d');
  } else {
    hwc = toChannels([one(index)], 0, 'gray3');
  }
  return normalize(hwc, params.normalization, hwc);
}

/** One sample of an epoch: which slice, its class and its rotation. */
export interface PlanItem {
  stack: number;
  slice: number;
  /** Class index (0 OAP, 1 IN, 2 OBS). */
  label: number;
  degrees: number;
}

export interface EpochPlanOptions {
  /** Copies of each OAP/OBS slice per epoch (1 = none). */
  oversample: number;
  /** Rotation range ±R degrees (0 = none). */
  rotationDegrees: number;
  seed: number;
  /** Shuffle the plan (default true). */
  shuffle?: boolean;
}

/** The samples of one training epoch (deterministic for the seed). */
export function epochPlan(stacks: readonly PreparedStack[], opts: EpochPlanOptions): PlanItem[] {
  if (!(Number.isInteger(opts.oversample) && opts.oversample >= 1)) throw new RangeError(`oversample must be an integer ≥ 1, got ${opts.oversample}`);
  if (!(opts.rotationDegrees >= 0 && opts.rotationDegrees <= 180)) throw new RangeError(`rotationDegrees must be in [0, 180], got ${opts.rotationDegrees}`);
  const rng = new Rng(opts.seed >>> 0);
  const R = opts.rotationDegrees;
  const items: PlanItem[] = [];
  stacks.forEach((s, si) => {
    s.labels.forEach((l, i) => {
      const copies = l === 'IN' ? 1 : opts.oversample;
      for (let c = 0; c < copies; c++) items.push({ stack: si, slice: i, label: classIndex(l), degrees: R > 0 ? rng.range(-R, R) : 0 });
    });
  });
  return opts.shuffle === false ? items : shuffleInPlace(items, rng);
}

/** Every slice once, unrotated, in stack order (evaluation). */
export function evalPlan(stacks: readonly PreparedStack[]): PlanItem[] {
  return stacks.flatMap((s, si) => s.labels.map((l, i) => ({ stack: si, slice: i, label: classIndex(l), degrees: 0 })));
}

/** Builds an NHWC batch buffer and its class indices. */
export function buildBatch(
  stacks: readonly PreparedStack[],
  items: readonly PlanItem[],
  params: PreprocessParams,
): { x: Float32Array; y: Int32Array; shape: [number, number, number, number] } {
  validatePreprocessParams(params);
  const per = params.inputSize * params.inputSize * 3;
  const x = new Float32Array(items.length * per);
  const y = new Int32Array(items.length);
  items.forEach((it, i) => {
    x.set(sampleInput(stacks[it.stack], it.slice, params, it.degrees), i * per);
    y[i] = it.label;
  });
  return { x, y, shape: [items.length, params.inputSize, params.inputSize, 3] };
}
