/**
 * Classifies the ED and ES images of one cine stack and builds its result document.
 *
 * Slice order (DESIGN.md "Labels and range decoding"): apex → base comes from the geometry (`apexToBase`:
 * the stack normal against the expected LV long axis), cross-checked by the range-decoding likelihood of
 * both orders (`chooseOrientation`, summed over ED and ES). The geometry is trusted unless it is ambiguous
 * (|cos| < 0.3); then the likelihood decides (method 'likelihood'). A disagreement is always reported in
 * `order` (`geometryAgrees: false`, the margin in nats, and a message), never hidden.
 *
 * Pure apart from the injected frame source: no file or network access here.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { angleDeg, APEX_DIRECTION } from '../stack/geometry.js';
import { apexToBase } from '../stack/index.js';
import type { CineStack } from '../stack/types.js';
import { classLogPriorOf, type CamClassification, type CamOptions, type ClassifierCard } from './classifier.js';
import { chooseOrientation } from './decode.js';
import type { PreprocessParams } from './preprocess.js';
import { buildResult, type ModelRef, type OrderInfo, type OutputRef, type PhaseKey, type Result } from './result.js';

/** How a phase was chosen (a PhaseChoice from src/stack, or the job's PhaseSummary). */
export interface PhaseSelection {
  /** 0-based index into every slice's `frames`. */
  phaseIndex: number;
  triggerTime?: number;
  method: string;
}

/** Decoded pixels (rows × columns modality values) of stack slice `sliceIndex` at phase `phaseIndex`. */
export type FrameSource = (sliceIndex: number, phaseIndex: number) => Promise<Float32Array> | Float32Array;

/** What classifyStack needs of a classifier: a SliceClassifier or the worker pool. */
export interface StackClassifier {
  readonly modelRef: ModelRef;
  readonly card: { readonly preprocessing: Pick<PreprocessParams, 'channelMode'>; readonly decoding?: ClassifierCard['decoding'] };
  classify(images: readonly Float32Array[], rows: number, columns: number): Promise<number[][]>;
  classifyWithCam(images: readonly Float32Array[], rows: number, columns: number, opts?: CamOptions): Promise<CamClassification>;
}

export interface ClassifyStackOptions {
  /**
   * Compute one Grad-CAM per slice and phase (for the secondary captures).
   * @defaultValue true
   */
  cams?: boolean;
  /** References of DICOM objects already written for this stack (SR, SC, KOS). */
  outputs?: readonly OutputRef[];
  /**
   * Extra timings (ms) to record next to this function's own: `framesMs` (frame source), `inferenceMs`
   * (preprocessing, model and Grad-CAM, both phases) and `classifyStackMs` (all of it).
   */
  timings?: Record<string, number>;
  logger?: Pick<Logger, 'info' | 'warn'>;
}

export interface StackClassification {
  /** The validated `sax-range/result@1` document. */
  result: Result;
  /** Per phase, one heat map per slice (rows × columns, 0–1), apex → base like `result.phases[p].slices`; empty without CAMs. */
  cams: Map<PhaseKey, Float32Array[]>;
  /** Per phase, the decoded slices (rows × columns), apex → base: the pixels the SC overlays need. */
  images: Map<PhaseKey, Float32Array[]>;
}

const PHASES: readonly PhaseKey[] = ['ED', 'ES'];

/** log L(order as given) − log L(reversed), of the range decoding of one phase (plain likelihood: `chooseOrientation`). */
function orderLogRatio(probs: number[][]): number {
  const o = chooseOrientation(probs, 'apex-first');
  return o.decodings['apex-first'].logLikelihood - o.decodings['apex-last'].logLikelihood;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Classifies stack slices at the ED and ES phases and builds the result document (see the module comment
 * for the order decision). `frames(slice, phase)` must return `stack.rows × stack.columns` values.
 */
export async function classifyStack(
  stack: CineStack,
  phases: Record<PhaseKey, PhaseSelection>,
  frames: FrameSource,
  classifier: StackClassifier,
  opts: ClassifyStackOptions = {},
): Promise<StackClassification> {
  const t0 = performance.now();
  const withCams = opts.cams ?? true;
  const { rows, columns } = stack;
  if (stack.slices.length === 0) throw new RangeError(`stack ${stack.stackId} has no slices`);
  for (const p of PHASES) {
    const idx = phases[p].phaseIndex;
    if (!(Number.isInteger(idx) && idx >= 0 && idx < stack.phases)) {
      throw new RangeError(`${p} phase index ${idx} out of 0..${stack.phases - 1} for stack ${stack.stackId}`);
    }
  }

  // 1. Geometry order and the frames in that order.
  const geometry = apexToBase(stack);
  let order = geometry.order;
  const images = new Map<PhaseKey, Float32Array[]>();
  for (const p of PHASES) {
    const list: Float32Array[] = [];
    for (const s of order) {
      const img = await frames(s, phases[p].phaseIndex);
      if (img.length !== rows * columns) {
        throw new RangeError(`slice ${s} phase ${phases[p].phaseIndex}: ${img.length} pixels, expected ${rows}×${columns}`);
      }
      list.push(img);
    }
    images.set(p, list);
  }
  const t1 = performance.now();

  // 2. Classify in the geometry order.
  const run = async (p: PhaseKey): Promise<{ probabilities: number[][]; cams: Float32Array[] }> => {
    const imgs = images.get(p)!;
    if (withCams) {
      const r = await classifier.classifyWithCam(imgs, rows, columns);
      return { probabilities: r.probabilities, cams: r.cams };
    }
    return { probabilities: await classifier.classify(imgs, rows, columns), cams: [] };
  };
  const out = new Map<PhaseKey, { probabilities: number[][]; cams: Float32Array[] }>();
  for (const p of PHASES) out.set(p, await run(p));

  // 3. Cross-check the apex end by the decoding likelihood of both orders, summed over ED and ES.
  const ratio = PHASES.reduce((a, p) => a + orderLogRatio(out.get(p)!.probabilities), 0);
  const margin = Math.abs(ratio);
  const geometryAgrees = ratio >= 0;
  const useLikelihood = geometry.ambiguous && ratio !== 0;
  const reverse = useLikelihood && ratio < 0;
  const angle = angleDeg(stack.normal.map((v) => v / Math.hypot(stack.normal[0], stack.normal[1], stack.normal[2])), APEX_DIRECTION);
  const orderInfo: OrderInfo = {
    direction: 'apex-to-base',
    method: useLikelihood ? 'likelihood' : 'geometry',
    geometryAgrees: stack.slices.length > 1 ? geometryAgrees : null,
    margin: round(margin, 3),
  };
  if (geometry.ambiguous) {
    orderInfo.message = useLikelihood
      ? `geometry is ambiguous (stack normal ${angle.toFixed(0)}° from the expected LV long axis); the apex end was taken from the ` +
        `range-decoding likelihood, which ${geometryAgrees ? 'agrees with' : 'reverses'} the geometric order (margin ${margin.toFixed(2)} nats over ED and ES)`
      : `geometry is ambiguous (stack normal ${angle.toFixed(0)}° from the expected LV long axis) and the likelihood cannot tell the ends apart: geometric order kept`;
  } else if (!geometryAgrees) {
    orderInfo.message =
      `the range-decoding likelihood prefers the opposite apex end (margin ${margin.toFixed(2)} nats over ED and ES); ` +
      `the geometric order is kept (stack normal ${angle.toFixed(0)}° from the expected LV long axis): check the labels`;
  }
  if (orderInfo.message) opts.logger?.warn({ stackId: stack.stackId, order: orderInfo }, 'slice order: geometry ambiguous or contradicted');

  // 4. Apply the decision: reverse the lists; a 2.5D model must see its neighbours in the final order.
  if (reverse) {
    order = [...order].reverse();
    for (const p of PHASES) images.set(p, [...images.get(p)!].reverse());
    if (classifier.card.preprocessing.channelMode === '2.5d') {
      for (const p of PHASES) out.set(p, await run(p));
    } else {
      for (const p of PHASES) {
        const o = out.get(p)!;
        out.set(p, { probabilities: [...o.probabilities].reverse(), cams: [...o.cams].reverse() });
      }
    }
  }
  const t2 = performance.now();

  // 5. The document.
  const phaseInput = (p: PhaseKey) => {
    const sel = phases[p];
    const probs = out.get(p)!.probabilities;
    return {
      phaseIndex: sel.phaseIndex,
      triggerTime: sel.triggerTime ?? null,
      method: sel.method,
      slices: order.map((s, i) => {
        const slice = stack.slices[s];
        return { index: slice.index, position: round(slice.position, 4), sopInstanceUID: slice.frames[sel.phaseIndex].sopInstanceUID, probabilities: probs[i] };
      }),
    };
  };
  const result = buildResult({
    studyInstanceUID: stack.studyInstanceUID,
    stackId: stack.stackId,
    seriesInstanceUIDs: stack.seriesInstanceUIDs,
    model: classifier.modelRef,
    classLogPrior: classLogPriorOf(classifier.card),
    order: orderInfo,
    phases: { ED: phaseInput('ED'), ES: phaseInput('ES') },
    outputs: opts.outputs ?? [],
    timings: { ...opts.timings, framesMs: t1 - t0, inferenceMs: t2 - t1, classifyStackMs: performance.now() - t0 },
  });
  const cams = new Map<PhaseKey, Float32Array[]>(PHASES.map((p) => [p, out.get(p)!.cams]));
  return { result, cams, images };
}
