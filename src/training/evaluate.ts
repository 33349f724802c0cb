/**
 * Evaluation of one model's predictions the way the paper reports them (notes/paper.md §9, issue 5 item 6):
 * accuracy, soft accuracy, per-class precision/recall/F1, per-class one-vs-rest ROC AUC, micro- and
 * class-size-weighted AUC, confusion matrices and the range-exact rate. Pure functions; the counting metrics
 * come from `metrics.ts`, this module adds the ranking metrics (AUC) and puts everything in one record.
 *
 * AUC definitions (scikit-learn `roc_auc_score` on one-hot truth Y (n × 3) and probabilities P (n × 3)):
 * - binary AUC = P(score of a random positive > score of a random negative) + ½ P(tie)
 *             = (R₊ − n₊(n₊+1)/2) / (n₊ n₋), R₊ = sum of the positives' ranks, tied scores sharing their
 *   average rank (Mann–Whitney U). This is exactly the trapezoidal area under the ROC curve sklearn computes.
 *   Undefined (NaN) when the truth has only one class.
 * - per class k (one vs rest): binary AUC of column k of Y against column k of P.
 * - micro (`average='micro'`, the paper's `auc_micro`): binary AUC of ravel(Y) against ravel(P), i.e. all
 *   3n (truth, score) pairs pooled as one binary problem.
 * - weighted (`average='weighted'`): Σ_k support_k · AUC_k / Σ_k support_k over classes with a defined AUC
 *   (support_k = slices of true class k) — the "AUC weighted by class size".
 * - macro (`average='macro'`, the paper's `auc_macro`): unweighted mean of the defined per-class AUCs.
 */

import { argmaxLabels, decodeRange, LABELS, NO_PRIOR, type ClassLogPrior, type SliceLabel } from '../inference/decode.js';
import { boundaryErrors, classificationMetrics, type Confusion, type StackPrediction } from './metrics.js';

/**
 * Binary ROC AUC of `scores` for `positive` (true = positive class), ties counted ½ (average ranks).
 * NaN when there are no positives or no negatives.
 */
export function rocAuc(positive: ArrayLike<boolean>, scores: ArrayLike<number>): number {
  const n = scores.length;
  if (positive.length !== n) throw new RangeError(`rocAuc: ${positive.length} labels for ${n} scores`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let nPos = 0;
  let rankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const avgRank = (i + j) / 2 + 1; // 1-based ranks i+1 … j+1 share their mean
    for (let k = i; k <= j; k++) {
      if (positive[order[k]]) {
        nPos++;
        rankSum += avgRank;
      }
    }
    i = j + 1;
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return Number.NaN;
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

function checkRows(truth: readonly SliceLabel[], probs: readonly (readonly number[])[]): void {
  if (truth.length !== probs.length) throw new RangeError(`${truth.length} labels for ${probs.length} probability rows`);
  probs.forEach((p, i) => {
    if (p.length !== LABELS.length) throw new RangeError(`probability row ${i} has ${p.length} values, expected ${LABELS.length} (OAP, IN, OBS)`);
  });
}

/** One-vs-rest AUC per class (NaN for a class absent from, or the only class in, the truth). */
export function oneVsRestAuc(truth: readonly SliceLabel[], probs: readonly (readonly number[])[]): Record<SliceLabel, number> {
  checkRows(truth, probs);
  const out = {} as Record<SliceLabel, number>;
  LABELS.forEach((l, k) => {
    out[l] = rocAuc(
      truth.map((t) => t === l),
      probs.map((p) => p[k]),
    );
  });
  return out;
}

/** Micro-averaged AUC: one binary AUC over all (one-hot truth, probability) pairs (sklearn `average='micro'`). */
export function microAuc(truth: readonly SliceLabel[], probs: readonly (readonly number[])[]): number {
  checkRows(truth, probs);
  const pos: boolean[] = [];
  const s: number[] = [];
  truth.forEach((t, i) =>
    LABELS.forEach((l, k) => {
      pos.push(t === l);
      s.push(probs[i][k]);
    }),
  );
  return rocAuc(pos, s);
}

/** Support-weighted mean of the defined per-class AUCs (sklearn `average='weighted'`). */
export function weightedAuc(perClass: Record<SliceLabel, number>, support: Record<SliceLabel, number>): number {
  let w = 0;
  let s = 0;
  for (const l of LABELS) {
    if (!Number.isFinite(perClass[l]) || support[l] <= 0) continue;
    w += support[l];
    s += support[l] * perClass[l];
  }
  return w > 0 ? s / w : Number.NaN;
}

/** Unweighted mean of the defined per-class AUCs (sklearn `average='macro'`). */
export function macroAuc(perClass: Record<SliceLabel, number>): number {
  const xs = LABELS.map((l) => perClass[l]).filter((x) => Number.isFinite(x));
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;
}

export interface ClassEvaluation {
  precision: number;
  recall: number;
  f1: number;
  /** One-vs-rest ROC AUC (NaN when undefined). */
  auc: number;
  /** True slices of the class. */
  support: number;
}

/** Everything the results table shows for one model (argmax labels unless said otherwise). */
export interface ModelEvaluation {
  /** Slices and stacks evaluated. */
  n: number;
  stacks: number;
  accuracy: number;
  /** The paper's soft accuracy: a wrong label counts when it is the truth of an adjacent labelled slice of the same stack. */
  softAccuracy: number;
  balancedAccuracy: number;
  /** The paper's `auc_micro` (sklearn average='micro'). */
  microAuc: number;
  /** Class-size-weighted mean of the one-vs-rest AUCs (sklearn average='weighted'). */
  weightedAuc: number;
  /** The paper's `auc_macro`. */
  macroAuc: number;
  perClass: Record<SliceLabel, ClassEvaluation>;
  /** Rows truth, columns prediction (OAP, IN, OBS), argmax labels. */
  confusion: Confusion;
  /** The same after range decoding (OAP* IN+ OBS*). */
  confusionDecoded: Confusion;
  /** Fraction of stacks with every slice right: argmax labels, and after range decoding. */
  rangeExact: { argmax: number; decoded: number };
  /** Fraction of stacks whose decoded IN range has both ends within one slice of the truth. */
  rangeWithinOne: number;
}

/**
 * Evaluates predicted stacks (truth and [pOAP, pIN, pOBS] rows, labelled slices apex → base); the decoded
 * figures use the model's class log-prior `prior`.
 */
export function evaluateModel(stacks: readonly StackPrediction[], prior: ClassLogPrior = NO_PRIOR): ModelEvaluation {
  const truth = stacks.flatMap((s) => s.truth);
  const probs = stacks.flatMap((s) => s.probs);
  checkRows(truth, probs);
  const raw = classificationMetrics(stacks.map((s) => ({ truth: s.truth, pred: argmaxLabels(s.probs) })));
  const decodedStacks = stacks.map((s) => ({ truth: s.truth, pred: s.probs.length ? decodeRange(s.probs, prior).labels : [] }));
  const dec = classificationMetrics(decodedStacks);
  const auc = oneVsRestAuc(truth, probs);
  const support = {} as Record<SliceLabel, number>;
  const perClass = {} as Record<SliceLabel, ClassEvaluation>;
  for (const l of LABELS) {
    const c = raw.perClass[l];
    support[l] = c.support;
    perClass[l] = { precision: c.precision, recall: c.recall, f1: c.f1, auc: auc[l], support: c.support };
  }
  return {
    n: raw.n,
    stacks: raw.stacks,
    accuracy: raw.accuracy,
    softAccuracy: raw.softAccuracy,
    balancedAccuracy: raw.balancedAccuracy,
    microAuc: microAuc(truth, probs),
    weightedAuc: weightedAuc(auc, support),
    macroAuc: macroAuc(auc),
    perClass,
    confusion: raw.confusion,
    confusionDecoded: dec.confusion,
    rangeExact: { argmax: raw.rangeExact, decoded: dec.rangeExact },
    rangeWithinOne: boundaryErrors(decodedStacks).withinOne,
  };
}
