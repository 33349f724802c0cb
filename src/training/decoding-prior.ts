/**
 * Fitting the class log-prior of range decoding (pure; src/inference/decode.ts `ClassLogPrior`).
 *
 * Range decoding picks the labelling OAP* IN+ OBS* with the largest Σ log p. A model trained with OAP/OBS
 * oversampling over-calls the rare end classes: one confident false OAP at the apex end moves the whole
 * range. Adding a log-prior `[a, 0, b]` to each slice's log-probabilities (a, b ≤ 0 in practice) asks for
 * more evidence before a range is cut short. `a` and `b` are chosen on a grid to maximise the range-exact
 * rate (every slice of the stack right) over labelled predictions; ties go to more slices right, then to
 * the prior nearest 0.
 *
 * Fit it on predictions the model did not train on: the out-of-fold predictions of a cross-validation
 * (`sax-range train` does this when the protocol says `decodingPrior: "fit"`), or `sax-range predict` on
 * held-out labelled scans (`sax-range fit-decoding`). The fitted prior's own effect is estimated by nested
 * cross-validation (`nestedPriorFits`): each fold is decoded with the prior fitted on the other folds.
 */

import { decodeRange, NO_PRIOR, type ClassLogPrior, type SliceLabel } from '../inference/decode.js';
import { evaluatePredictions, type EvaluationSummary, type StackPrediction } from './metrics.js';

/** Probabilities `[pOAP, pIN, pOBS]` of one stack, apex → base, with the true labels. */
export interface LabelledStackProbs {
  probs: readonly (readonly number[])[];
  truth: readonly SliceLabel[];
}

export interface PriorGrid {
  /** Smallest and largest value tried for the OAP and OBS terms (IN stays 0), and the step. */
  min: number;
  max: number;
  step: number;
}

/** −6 … +2 in steps of 0.25 (33 × 33 candidates). */
export const DEFAULT_PRIOR_GRID: PriorGrid = { min: -6, max: 2, step: 0.25 };

export interface DecodingScore {
  /** Stacks whose decoded labels are all right. */
  exactStacks: number;
  stacks: number;
  /** Slices decoded right. */
  correctSlices: number;
  slices: number;
}

export interface PriorFit {
  prior: ClassLogPrior;
  /** Decoding with `prior` on the stacks it was fitted on. */
  fitted: DecodingScore;
  /** Decoding without a prior on the same stacks. */
  none: DecodingScore;
}

/** How well range decoding with `prior` labels the stacks. */
export function scoreDecoding(stacks: readonly LabelledStackProbs[], prior: ClassLogPrior = NO_PRIOR): DecodingScore {
  const s: DecodingScore = { exactStacks: 0, stacks: 0, correctSlices: 0, slices: 0 };
  for (const st of stacks) {
    if (st.probs.length === 0) continue;
    if (st.truth.length !== st.probs.length) throw new RangeError(`a stack has ${st.probs.length} probability rows but ${st.truth.length} labels`);
    const labels = decodeRange(st.probs, prior).labels;
    let right = 0;
    labels.forEach((l, i) => (right += l === st.truth[i] ? 1 : 0));
    s.stacks++;
    s.slices += labels.length;
    s.correctSlices += right;
    if (right === labels.length) s.exactStacks++;
  }
  return s;
}

function gridValues(g: PriorGrid): number[] {
  if (!(g.step > 0) || !(g.max >= g.min) || !Number.isFinite(g.min) || !Number.isFinite(g.max)) throw new RangeError(`prior grid: bad ${JSON.stringify(g)}`);
  const n = Math.round((g.max - g.min) / g.step);
  return Array.from({ length: n + 1 }, (_, i) => Math.round((g.min + i * g.step) * 1e9) / 1e9);
}

/** True when score `a` (with prior `pa`) beats `b` (with `pb`): more exact stacks, more right slices, prior nearer 0. */
function better(a: DecodingScore, pa: ClassLogPrior, b: DecodingScore, pb: ClassLogPrior): boolean {
  if (a.exactStacks !== b.exactStacks) return a.exactStacks > b.exactStacks;
  if (a.correctSlices !== b.correctSlices) return a.correctSlices > b.correctSlices;
  const na = Math.abs(pa[0]) + Math.abs(pa[2]);
  const nb = Math.abs(pb[0]) + Math.abs(pb[2]);
  if (na !== nb) return na < nb;
  // Deterministic last resort: the larger OAP term, then the larger OBS term.
  return pa[0] !== pb[0] ? pa[0] > pb[0] : pa[2] > pb[2];
}

/** The grid prior `[a, 0, b]` that decodes `stacks` best (see the module comment). Throws on no stacks. */
export function fitClassLogPrior(stacks: readonly LabelledStackProbs[], grid: PriorGrid = DEFAULT_PRIOR_GRID): PriorFit {
  const usable = stacks.filter((s) => s.probs.length > 0);
  if (usable.length === 0) throw new RangeError('fitClassLogPrior: no labelled stacks');
  const values = gridValues(grid);
  let best: { prior: ClassLogPrior; score: DecodingScore } | undefined;
  for (const a of values) {
    for (const b of values) {
      const prior: ClassLogPrior = [a, 0, b];
      const score = scoreDecoding(usable, prior);
      if (!best || better(score, prior, best.score, best.prior)) best = { prior, score };
    }
  }
  return { prior: best!.prior, fitted: best!.score, none: scoreDecoding(usable) };
}

/**
 * Nested estimate: for each fold, the prior fitted on the stacks of all other folds. Decoding fold k's
 * stacks with `fits.get(k).prior` measures the fitting procedure on data it did not see.
 */
export function nestedPriorFits<S extends LabelledStackProbs & { fold: string }>(stacks: readonly S[], grid: PriorGrid = DEFAULT_PRIOR_GRID): Map<string, PriorFit> {
  const folds = [...new Set(stacks.map((s) => s.fold))].sort();
  if (folds.length < 2) throw new RangeError(`nestedPriorFits: at least 2 folds needed, got ${folds.length}`);
  return new Map(folds.map((f) => [f, fitClassLogPrior(stacks.filter((s) => s.fold !== f), grid)]));
}

/** The prior of a cross-validated run: fitted on all out-of-fold predictions, estimated by nested CV. */
export interface CvDecodingPrior {
  /** Fitted on every out-of-fold stack: the prior the final model ships with. */
  prior: ClassLogPrior;
  fit: PriorFit;
  /** Per validation fold, the prior fitted on the other folds' stacks. */
  perFold: Record<string, ClassLogPrior>;
  /** The out-of-fold predictions decoded with their fold's nested prior: the estimate of the fitted prior's effect. */
  nested: EvaluationSummary;
  grid: PriorGrid;
}

/** Fits the decoding prior on a CV's out-of-fold predictions and measures it by nested CV. */
export function fitPriorOnCv<S extends StackPrediction & { fold: string }>(oof: readonly S[], grid: PriorGrid = DEFAULT_PRIOR_GRID): CvDecodingPrior {
  const fits = nestedPriorFits(oof, grid);
  const perFold = Object.fromEntries([...fits].map(([f, fit]) => [f, fit.prior]));
  const fit = fitClassLogPrior(oof, grid);
  return { prior: fit.prior, fit, perFold, nested: evaluatePredictions(oof, (s) => fits.get(s.fold)!.prior), grid };
}

/** Range-decoded range-exact rate and accuracy (4 decimals) per scope (all, ED, ES) of a summary. */
export function decodedRates(s: EvaluationSummary): Record<string, { rangeExact: number; accuracy: number; stacks: number }> {
  const r = (m: EvaluationSummary['all']['decoded']) => ({ rangeExact: round4(m.rangeExact), accuracy: round4(m.accuracy), stacks: m.stacks });
  const out: Record<string, { rangeExact: number; accuracy: number; stacks: number }> = { all: r(s.all.decoded) };
  if (s.ED) out.ED = r(s.ED.decoded);
  if (s.ES) out.ES = r(s.ES.decoded);
  return out;
}

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** The model card's `decoding` section for a prior fitted on cross-validated predictions (`fittedOn` says which). */
export function cardDecoding(cv: CvDecodingPrior, fittedOn: string, withoutPrior: EvaluationSummary) {
  return {
    classLogPrior: [...cv.prior] as [number, number, number],
    fittedOn,
    method:
      `class log-prior [OAP, IN, OBS] added to each slice's log-probabilities before range decoding; OAP and OBS terms chosen on the ` +
      `grid ${cv.grid.min}…${cv.grid.max} step ${cv.grid.step} to maximise the range-exact rate (ties: more slices right, then the prior nearest 0). ` +
      `estimate: nested cross-validation, each fold decoded with the prior fitted on the other folds`,
    perFold: cv.perFold,
    estimate: { withPrior: decodedRates(cv.nested), withoutPrior: decodedRates(withoutPrior) },
  };
}
