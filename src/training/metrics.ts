/**
 * Classification metrics (pure; notes/paper.md §9, data README "report per-class recall, F1 and balanced
 * accuracy"). Labels are OAP, IN, OBS in that order (src/inference/decode.ts LABELS); stacks are apex → base.
 *
 * Conventions (those of scikit-learn with zero_division=0):
 * - confusion[t][p] counts slices of true class t predicted as p.
 * - precision_k = TP/(TP+FP), recall_k = TP/(TP+FN), F1_k = 2PR/(P+R); a zero denominator gives 0.
 * - accuracy = Σ TP / n; balanced accuracy = mean recall over the classes present in the truth
 *   (sklearn `balanced_accuracy_score`); macro F1 = mean F1 over the classes present in truth or prediction.
 * - soft accuracy (the paper's `_get_soft_accuracy`): slice i of a stack counts as correct if its prediction
 *   equals the truth of slice i, i−1 or i+1 of the same stack.
 * - range-exact rate: the fraction of stacks whose every slice is right (with range decoding: the decoded
 *   IN range is exactly the true one).
 * Each `StackMetrics` is computed twice: on the raw per-slice argmax (`argmax`) and after range decoding
 * (`decoded`, src/inference/decode.ts `decodeRange`, with the class log-prior `priorFor` gives a stack; none
 * by default).
 */

import { argmaxLabels, decodeRange, LABELS, NO_PRIOR, type ClassLogPrior, type SliceLabel } from '../inference/decode.js';

export type Confusion = number[][];

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  /** True slices of the class. */
  support: number;
  /** Slices predicted as the class. */
  predicted: number;
}

export interface ClassificationMetrics {
  n: number;
  /** rows = truth, columns = prediction, in OAP, IN, OBS order. */
  confusion: Confusion;
  perClass: Record<SliceLabel, ClassMetrics>;
  accuracy: number;
  balancedAccuracy: number;
  macroF1: number;
  softAccuracy: number;
  /** Fraction of stacks with every slice right. */
  rangeExact: number;
  stacks: number;
}

export interface BoundaryErrors {
  /** Mean |predicted − true| index of the first (most apical) IN slice, in slices. */
  firstAbsError: number;
  /** Mean |predicted − true| index of the last (most basal) IN slice. */
  lastAbsError: number;
  /** Fraction of stacks whose first / last IN slice is exactly right. */
  firstExact: number;
  lastExact: number;
  /**
   * Fraction of stacks whose first and last IN slice are both within one slice of the truth: how often a
   * consumer that pads the decoded range by one slice at each end covers the true range.
   */
  withinOne: number;
}

export interface StackMetrics {
  argmax: ClassificationMetrics;
  decoded: ClassificationMetrics & { boundary: BoundaryErrors };
  /** Mean categorical cross-entropy of the probabilities (natural log, p clamped at 1e-7). */
  logLoss: number;
}

/** A stack's truth and predicted probabilities ([pOAP, pIN, pOBS] rows), apex → base. */
export interface StackPrediction {
  subject: string;
  phase: string;
  truth: SliceLabel[];
  probs: number[][];
}

export interface EvaluationSummary {
  all: StackMetrics;
  ED?: StackMetrics;
  ES?: StackMetrics;
}

function idx(l: SliceLabel): number {
  const k = LABELS.indexOf(l);
  if (k < 0) throw new RangeError(`unknown label '${String(l)}'`);
  return k;
}

const div = (a: number, b: number) => (b > 0 ? a / b : 0);

/** 3×3 confusion matrix (rows truth, columns prediction). */
export function confusionMatrix(truth: readonly SliceLabel[], pred: readonly SliceLabel[]): Confusion {
  if (truth.length !== pred.length) throw new RangeError(`truth (${truth.length}) and prediction (${pred.length}) differ in length`);
  const m = LABELS.map(() => LABELS.map(() => 0));
  truth.forEach((t, i) => m[idx(t)][idx(pred[i])]++);
  return m;
}

/** Per-class precision, recall, F1 from a confusion matrix. */
export function classMetrics(c: Confusion): Record<SliceLabel, ClassMetrics> {
  const out = {} as Record<SliceLabel, ClassMetrics>;
  LABELS.forEach((l, k) => {
    const tp = c[k][k];
    const support = c[k].reduce((a, b) => a + b, 0);
    const predicted = c.reduce((a, row) => a + row[k], 0);
    const precision = div(tp, predicted);
    const recall = div(tp, support);
    out[l] = { precision, recall, f1: div(2 * precision * recall, precision + recall), support, predicted };
  });
  return out;
}

export function accuracyOf(c: Confusion): number {
  const n = c.flat().reduce((a, b) => a + b, 0);
  return div(
    c.reduce((a, row, k) => a + row[k], 0),
    n,
  );
}

/** Mean recall over the classes that occur in the truth. */
export function balancedAccuracyOf(c: Confusion): number {
  const pc = classMetrics(c);
  const present = LABELS.filter((l) => pc[l].support > 0);
  return present.length ? present.reduce((a, l) => a + pc[l].recall, 0) / present.length : 0;
}

/** Mean F1 over the classes that occur in the truth or the prediction. */
export function macroF1Of(c: Confusion): number {
  const pc = classMetrics(c);
  const present = LABELS.filter((l) => pc[l].support > 0 || pc[l].predicted > 0);
  return present.length ? present.reduce((a, l) => a + pc[l].f1, 0) / present.length : 0;
}

/** Soft accuracy over stacks (prediction equals the truth of the slice or of an adjacent slice). */
export function softAccuracy(stacks: readonly { truth: readonly SliceLabel[]; pred: readonly SliceLabel[] }[]): number {
  let ok = 0;
  let n = 0;
  for (const { truth, pred } of stacks) {
    if (truth.length !== pred.length) throw new RangeError('truth and prediction differ in length');
    for (let i = 0; i < truth.length; i++) {
      n++;
      const p = pred[i];
      if (p === truth[i] || (i > 0 && p === truth[i - 1]) || (i < truth.length - 1 && p === truth[i + 1])) ok++;
    }
  }
  return div(ok, n);
}

/** Fraction of stacks whose labels are all right. */
export function rangeExactRate(stacks: readonly { truth: readonly SliceLabel[]; pred: readonly SliceLabel[] }[]): number {
  return div(stacks.filter((s) => s.truth.length === s.pred.length && s.truth.every((t, i) => t === s.pred[i])).length, stacks.length);
}

/** All classification metrics of labelled stacks (apex → base). */
export function classificationMetrics(stacks: readonly { truth: readonly SliceLabel[]; pred: readonly SliceLabel[] }[]): ClassificationMetrics {
  const truth = stacks.flatMap((s) => [...s.truth]);
  const pred = stacks.flatMap((s) => [...s.pred]);
  const confusion = confusionMatrix(truth, pred);
  return {
    n: truth.length,
    confusion,
    perClass: classMetrics(confusion),
    accuracy: accuracyOf(confusion),
    balancedAccuracy: balancedAccuracyOf(confusion),
    macroF1: macroF1Of(confusion),
    softAccuracy: softAccuracy(stacks),
    rangeExact: rangeExactRate(stacks),
    stacks: stacks.length,
  };
}

function inBounds(labels: readonly SliceLabel[]): { first: number; last: number } {
  return { first: labels.indexOf('IN'), last: labels.lastIndexOf('IN') };
}

/** Errors of the decoded IN range's ends against the truth (stacks whose truth has no IN are skipped). */
export function boundaryErrors(stacks: readonly { truth: readonly SliceLabel[]; pred: readonly SliceLabel[] }[]): BoundaryErrors {
  let n = 0;
  let fe = 0;
  let le = 0;
  let fx = 0;
  let lx = 0;
  let w1 = 0;
  for (const s of stacks) {
    const t = inBounds(s.truth);
    if (t.first < 0) continue;
    const p = inBounds(s.pred);
    const pf = p.first < 0 ? s.pred.length : p.first;
    const pl = p.last < 0 ? -1 : p.last;
    n++;
    fe += Math.abs(pf - t.first);
    le += Math.abs(pl - t.last);
    if (pf === t.first) fx++;
    if (pl === t.last) lx++;
    if (Math.abs(pf - t.first) <= 1 && Math.abs(pl - t.last) <= 1) w1++;
  }
  return { firstAbsError: div(fe, n), lastAbsError: div(le, n), firstExact: div(fx, n), lastExact: div(lx, n), withinOne: div(w1, n) };
}

/** Mean categorical cross-entropy (p clamped to [1e-7, 1]). */
export function logLoss(stacks: readonly StackPrediction[]): number {
  let s = 0;
  let n = 0;
  for (const st of stacks) {
    st.truth.forEach((t, i) => {
      s -= Math.log(Math.min(Math.max(st.probs[i][idx(t)], 1e-7), 1));
      n++;
    });
  }
  return div(s, n);
}

/** The class log-prior to decode a stack with (e.g. by its fold, for a nested estimate). */
export type PriorFor<S extends StackPrediction = StackPrediction> = (stack: S) => ClassLogPrior;

const noPrior: PriorFor = () => NO_PRIOR;

/** Argmax and range-decoded metrics of predicted stacks. */
export function stackMetrics<S extends StackPrediction>(stacks: readonly S[], priorFor: PriorFor<S> = noPrior): StackMetrics {
  const raw = stacks.map((s) => ({ truth: s.truth, pred: argmaxLabels(s.probs) }));
  const dec = stacks.map((s) => ({ truth: s.truth, pred: s.probs.length ? decodeRange(s.probs, priorFor(s)).labels : [] }));
  return {
    argmax: classificationMetrics(raw),
    decoded: { ...classificationMetrics(dec), boundary: boundaryErrors(dec) },
    logLoss: logLoss(stacks),
  };
}

/** Metrics over all stacks and separately for ED and ES (when present). */
export function evaluatePredictions<S extends StackPrediction>(stacks: readonly S[], priorFor: PriorFor<S> = noPrior): EvaluationSummary {
  const out: EvaluationSummary = { all: stackMetrics(stacks, priorFor) };
  for (const phase of ['ED', 'ES'] as const) {
    const sub = stacks.filter((s) => s.phase === phase);
    if (sub.length) out[phase] = stackMetrics(sub, priorFor);
  }
  return out;
}

/** Mean and (sample) standard deviation of numbers. */
export function meanStd(xs: readonly number[]): { mean: number; std: number; n: number } {
  const n = xs.length;
  if (!n) return { mean: 0, std: 0, n: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}
