import { boxBlur, connectedComponents, dilate, otsuThreshold } from './image.js';
import type { CineStack } from './types.js';

/** How a phase was chosen (the `method` of the result JSON's `phases.ED` / `phases.ES`). */
export type PhaseMethod = 'min-trigger-time' | 'instance-number' | 'min-blood-pool-area';

export interface PhaseChoice {
  /** 0-based index into every slice's `frames`. */
  phaseIndex: number;
  /** Trigger time (ms) of that phase: median over slices; undefined without TriggerTime. */
  triggerTime?: number;
  method: PhaseMethod;
  /** ES only: blood-pool area (pixels, summed over the slices used) per phase. */
  areas?: number[];
  /** ES only: the slice indices whose images were measured. */
  slicesUsed?: number[];
  /** ES only: the phase of largest blood-pool area (an image-based ED estimate, for cross-checking ED). */
  maxAreaPhaseIndex?: number;
  /** ES only: why the image-based choice is not meaningful (single phase, no change over the cycle). */
  warning?: string;
}

/** Median trigger time of a phase over the slices of a stack (undefined when no slice has one). */
export function phaseTriggerTime(stack: Pick<CineStack, 'slices'>, phaseIndex: number): number | undefined {
  const tts = stack.slices
    .map((s) => s.frames[phaseIndex]?.triggerTime)
    .filter((t): t is number => t !== undefined)
    .sort((a, b) => a - b);
  if (!tts.length) return undefined;
  const m = tts.length >> 1;
  return tts.length % 2 ? tts[m]! : (tts[m - 1]! + tts[m]!) / 2;
}

/**
 * End-diastole: the phase with the smallest trigger time (phase 0: phases are sorted by TriggerTime), or the
 * first by InstanceNumber when the images carry no TriggerTime.
 */
export function chooseEdPhase(stack: Pick<CineStack, 'slices' | 'phaseOrder'>): PhaseChoice {
  const hasTrigger = stack.phaseOrder === 'trigger-time';
  const choice: PhaseChoice = { phaseIndex: 0, method: hasTrigger ? 'min-trigger-time' : 'instance-number' };
  const tt = phaseTriggerTime(stack, 0);
  if (tt !== undefined) choice.triggerTime = tt;
  return choice;
}

/**
 * The mid-ventricular slices of a stack of n slices: the middle third (at least one slice). Which end is the
 * apex does not matter.
 */
export function midVentricularSlices(n: number): number[] {
  if (n <= 0) return [];
  if (n <= 2) return [...Array(n).keys()];
  const start = Math.floor(n / 3);
  const end = Math.max(start + 1, Math.ceil((2 * n) / 3));
  return [...Array(end - start).keys()].map((i) => start + i);
}

/** The dimensions chooseEsPhase needs (a CineStack has them all). */
export interface EsDims {
  /** Number of slices in the stack. */
  slices: number;
  phases: number;
  rows: number;
  columns: number;
  /** Trigger time per phase, to fill `triggerTime` in the answer. */
  triggerTimes?: Array<number | undefined>;
}

export interface EsOptions {
  /** Slices to measure; default: midVentricularSlices. */
  sliceIndices?: number[];
  /**
   * Fraction of the image (each axis, centred) searched for the beating heart. Default 0.6: cine short-axis
   * fields of view are centred on the heart.
   */
  centralFraction?: number;
}

/** Per-slice measurements of chooseEsPhase, for diagnostics. */
export interface SliceBloodPool {
  slice: number;
  /** Pixels in the heart region (where the image changes over the cycle). */
  regionPixels: number;
  threshold: number;
  areas: number[];
}

function dimsOf(d: CineStack | EsDims): EsDims {
  if ('stackId' in d) {
    return {
      slices: d.slices.length,
      phases: d.phases,
      rows: d.rows,
      columns: d.columns,
      triggerTimes: [...Array(d.phases).keys()].map((p) => phaseTriggerTime(d, p)),
    };
  }
  return d;
}

/**
 * Blood-pool area per phase on one slice (all phases of the slice in `frames`). The beating heart is where
 * the intensity varies most over the cycle: per-pixel temporal standard deviation (SD), smoothed, thresholded
 * (Otsu) inside the central box, the connected component with the largest centre-weighted summed SD, dilated.
 * Within it the bright blood pool is measured per phase as a motion-weighted partial-volume area (see below).
 * Invariant to intensity scale and offset and to transposing the images.
 */
export function bloodPoolAreas(
  frames: Float32Array[],
  rows: number,
  columns: number,
  centralFraction = 0.6,
): Omit<SliceBloodPool, 'slice'> {
  const n = rows * columns;
  const P = frames.length;
  for (const f of frames) {
    if (f.length !== n) throw new Error(`image has ${f.length} pixels, expected ${rows}×${columns}`);
  }
  const y0 = Math.floor((rows * (1 - centralFraction)) / 2);
  const y1 = Math.ceil(rows - y0);
  const x0 = Math.floor((columns * (1 - centralFraction)) / 2);
  const x1 = Math.ceil(columns - x0);

  // Temporal mean and standard deviation per pixel.
  const mean = new Float32Array(n);
  const sd = new Float32Array(n);
  for (const f of frames) for (let i = 0; i < n; i++) mean[i]! += f[i]! / P;
  for (const f of frames) for (let i = 0; i < n; i++) sd[i]! += (f[i]! - mean[i]!) ** 2 / P;
  for (let i = 0; i < n; i++) sd[i] = Math.sqrt(sd[i]!);
  const r = Math.max(1, Math.round(Math.min(rows, columns) / 80));
  const sdS = boxBlur(sd, rows, columns, r);

  // Motion region: smoothed SD above its Otsu threshold inside the central box; the component with the
  // largest summed SD, weighted toward the centre.
  const central: number[] = [];
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) central.push(sdS[y * columns + x]!);
  const tSd = otsuThreshold(central);
  const mask = new Uint8Array(n);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (sdS[y * columns + x]! > tSd) mask[y * columns + x] = 1;
  const { labels, sizes } = connectedComponents(mask, rows, columns);
  const score = new Float64Array(sizes.length);
  const cy = (rows - 1) / 2;
  const cx = (columns - 1) / 2;
  const sigma = 0.25 * Math.min(rows, columns);
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    if (!l) continue;
    const y = (i / columns) | 0;
    const x = i - y * columns;
    score[l]! += sdS[i]! * Math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma * sigma));
  }
  let best = 0;
  for (let l = 1; l < sizes.length; l++) if (score[l]! > score[best]!) best = l;
  const areas = new Array<number>(P).fill(0);
  if (!best) return { regionPixels: 0, threshold: NaN, areas };
  const comp = new Uint8Array(n);
  for (let i = 0; i < n; i++) comp[i] = labels[i] === best ? 1 : 0;
  const region = dilate(comp, rows, columns, 2 * r);

  // Bright blood pool inside the region, one threshold for all phases of the slice.
  const values: number[] = [];
  for (const f of frames) for (let i = 0; i < n; i++) if (region[i]) values.push(f[i]!);
  const threshold = otsuThreshold(values);
  // Blood fraction per pixel (partial volume): 0 at the mean of the dark Otsu class, 1 at the mean of the
  // bright class, linear between; less quantised than counting pixels above the threshold. Each pixel is
  // weighted by its temporal SD relative to the region's mean SD (a matched filter: pixels that swing over the
  // cycle — the moving endocardial border — count most, flickering noise and static bright tissue least), so
  // the area stays in pixel units (the weights sum to the region's pixel count).
  let s0 = 0;
  let n0 = 0;
  let s1 = 0;
  let n1 = 0;
  for (const v of values) {
    if (v > threshold) {
      s1 += v;
      n1++;
    } else {
      s0 += v;
      n0++;
    }
  }
  const mu0 = n0 ? s0 / n0 : threshold;
  const mu1 = n1 ? s1 / n1 : threshold;
  const span = mu1 - mu0;
  let regionPixels = 0;
  let sdSum = 0;
  for (let i = 0; i < n; i++) {
    if (!region[i]) continue;
    regionPixels++;
    sdSum += sdS[i]!;
  }
  const sdMean = sdSum / regionPixels;
  frames.forEach((f, p) => {
    let a = 0;
    for (let i = 0; i < n; i++) {
      if (!region[i]) continue;
      const w = sdMean > 0 ? sdS[i]! / sdMean : 1;
      const frac = span > 0 ? Math.min(1, Math.max(0, (f[i]! - mu0) / span)) : f[i]! > threshold ? 1 : 0;
      a += w * frac;
    }
    areas[p] = a;
  });
  return { regionPixels, threshold, areas };
}

/**
 * End-systole: the phase minimising the blood-pool area summed over the mid-ventricular slices (see
 * bloodPoolAreas). Pure: `images(slice, phase)` returns the decoded frame (rows × columns, row-major).
 */
export function chooseEsPhase(
  images: (sliceIdx: number, phaseIdx: number) => Float32Array,
  stackOrDims: CineStack | EsDims,
  options: EsOptions = {},
): PhaseChoice & { perSlice: SliceBloodPool[] } {
  const dims = dimsOf(stackOrDims);
  const { phases, rows, columns } = dims;
  const slicesUsed = options.sliceIndices ?? midVentricularSlices(dims.slices);
  const total = new Array<number>(phases).fill(0);
  const perSlice: SliceBloodPool[] = [];
  if (phases >= 2) {
    for (const s of slicesUsed) {
      const frames = [...Array(phases).keys()].map((p) => images(s, p));
      const m = bloodPoolAreas(frames, rows, columns, options.centralFraction);
      perSlice.push({ ...m, slice: s });
      m.areas.forEach((a, p) => (total[p]! += a));
    }
  }
  let phaseIndex = 0;
  let maxAreaPhaseIndex = 0;
  for (let p = 1; p < phases; p++) {
    if (total[p]! < total[phaseIndex]!) phaseIndex = p;
    if (total[p]! > total[maxAreaPhaseIndex]!) maxAreaPhaseIndex = p;
  }
  const choice: PhaseChoice & { perSlice: SliceBloodPool[] } = {
    phaseIndex,
    method: 'min-blood-pool-area',
    areas: total,
    maxAreaPhaseIndex,
    slicesUsed,
    perSlice,
  };
  if (phases < 2) choice.warning = 'a single phase: ED and ES are the same image';
  else if (total.every((a) => a === total[0])) choice.warning = 'no change of blood-pool area found over the cycle';
  const tt = dims.triggerTimes?.[phaseIndex];
  if (tt !== undefined) choice.triggerTime = tt;
  return choice;
}
