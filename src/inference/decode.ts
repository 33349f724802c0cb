/**
 * Range decoding (pure). Along apex → base a stack's true labels have the form OAP* IN+ OBS*; decoding
 * picks the labelling of that form with the largest summed log-probability (DESIGN.md "Labels and range
 * decoding"), in linear time. `argmaxLabels` keeps the raw per-slice argmax (`predicted`).
 *
 * Probability rows are `[pOAP, pIN, pOBS]` (this order, not Keras' alphabetical in/oap/obs).
 */

export type SliceLabel = 'OAP' | 'IN' | 'OBS';

/** Column order of a probability row. */
export const LABELS: readonly SliceLabel[] = ['OAP', 'IN', 'OBS'];

/** Probabilities are clamped to [PROB_FLOOR, 1] before taking logs. */
export const PROB_FLOOR = 1e-7;

/**
 * A class log-prior `[OAP, IN, OBS]` added to every slice's log-probabilities before decoding: the decoding
 * then maximises Σ (log p + prior) instead of Σ log p. Negative OAP/OBS values make the decoder ask for more
 * evidence before it ends the IN range early. A model's card carries the prior fitted on its out-of-fold
 * predictions (`decoding.classLogPrior`, src/training/decoding-prior.ts); absent, it is `[0, 0, 0]`.
 */
export type ClassLogPrior = readonly [number, number, number];

export const NO_PRIOR: ClassLogPrior = [0, 0, 0];

export interface RangeDecoding {
  /** One label per slice, in the order decoded (apex → base). */
  labels: SliceLabel[];
  /** Index of the first IN slice. */
  first: number;
  /** Index of the last IN slice (inclusive). */
  last: number;
  /** Summed log-probability of `labels` (natural log, probabilities clamped at 1e-7). */
  logLikelihood: number;
  /** What the decoding maximised: `logLikelihood` plus the class log-prior of every slice's label. */
  score: number;
}

/** Which end of the file order is the apex. */
export type FileOrder = 'apex-first' | 'apex-last';

export interface OrientationChoice {
  /** The order the decoding likelihood prefers (on an exact tie: `geometryOrder` if given, else apex-first). */
  order: FileOrder;
  /** log L(order) − log L(other order), ≥ 0. Near 0 the likelihood says little about the orientation. */
  margin: number;
  /**
   * Decoding of each order, each in its own apex → base order: 'apex-first' indexes the slices as given,
   * 'apex-last' indexes the reversed list (its index i is file index n − 1 − i).
   */
  decodings: Record<FileOrder, RangeDecoding>;
  /** The geometry's order, when given. */
  geometryOrder?: FileOrder;
  /**
   * Whether the likelihood agrees with the geometry: null without geometry; true on an exact tie;
   * otherwise `order === geometryOrder`. Callers report a disagreement (they may weigh it by `margin`).
   */
  agreesWithGeometry: boolean | null;
}

function checkPrior(prior: ClassLogPrior): void {
  if (prior.length !== 3 || !prior.every((v) => Number.isFinite(v))) throw new RangeError(`class log-prior: three finite numbers expected, got ${JSON.stringify(prior)}`);
}

/** Per-row log-probabilities, clamped; validates the input. */
function logRows(probs: readonly (readonly number[])[]): Float64Array {
  const out = new Float64Array(probs.length * 3);
  probs.forEach((row, i) => {
    if (!row || row.length !== 3) throw new RangeError(`row ${i}: expected [pOAP, pIN, pOBS], got ${JSON.stringify(row)}`);
    for (let k = 0; k < 3; k++) {
      const p = row[k];
      if (typeof p !== 'number' || Number.isNaN(p)) throw new RangeError(`row ${i}: probability ${k} is not a number (${String(p)})`);
      out[i * 3 + k] = Math.log(Math.min(Math.max(p, PROB_FLOOR), 1));
    }
  });
  return out;
}

/**
 * The labelling OAP* IN+ OBS* (at least one IN) maximising Σ (log p + prior), by a 3-state Viterbi pass
 * (OAP → OAP|IN, IN → IN|OBS, OBS → OBS; start in OAP or IN; end in IN or OBS).
 * Ties are broken toward the wider IN range: the largest `last`, then the smallest `first`.
 * A single slice is always IN. Throws on an empty stack, a malformed row or prior.
 */
export function decodeRange(probs: readonly (readonly number[])[], prior: ClassLogPrior = NO_PRIOR): RangeDecoding {
  const n = probs.length;
  if (n === 0) throw new RangeError('decodeRange: empty stack');
  checkPrior(prior);
  const raw = logRows(probs);
  const lp = new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) lp[i] = raw[i] + prior[i % 3];
  // Scores of the best prefix ending at i in each state, and back-pointers for IN and OBS.
  const sOAP = new Float64Array(n);
  const sIN = new Float64Array(n);
  const sOBS = new Float64Array(n);
  const inFromIN = new Uint8Array(n); // IN at i preceded by IN (else by OAP)
  const obsFromOBS = new Uint8Array(n); // OBS at i preceded by OBS (else by IN)
  sOAP[0] = lp[0];
  sIN[0] = lp[1];
  sOBS[0] = Number.NEGATIVE_INFINITY;
  for (let i = 1; i < n; i++) {
    const a = lp[i * 3];
    const b = lp[i * 3 + 1];
    const c = lp[i * 3 + 2];
    sOAP[i] = sOAP[i - 1] + a;
    // Prefer IN → IN on ties: keeps `first` small (wider range).
    if (sIN[i - 1] >= sOAP[i - 1]) {
      sIN[i] = sIN[i - 1] + b;
      inFromIN[i] = 1;
    } else {
      sIN[i] = sOAP[i - 1] + b;
    }
    // Prefer IN → OBS on ties: the OBS run starts as late as possible (wider range).
    if (sIN[i - 1] >= sOBS[i - 1]) {
      sOBS[i] = sIN[i - 1] + c;
    } else {
      sOBS[i] = sOBS[i - 1] + c;
      obsFromOBS[i] = 1;
    }
  }
  const labels: SliceLabel[] = new Array<SliceLabel>(n);
  let i = n - 1;
  let score: number;
  if (sIN[i] >= sOBS[i]) {
    score = sIN[i];
  } else {
    score = sOBS[i];
    while (i >= 0) {
      labels[i] = 'OBS';
      const fromOBS = obsFromOBS[i] === 1;
      i--;
      if (!fromOBS) break;
    }
  }
  const last = i;
  while (i >= 0) {
    labels[i] = 'IN';
    const fromIN = i > 0 && inFromIN[i] === 1;
    i--;
    if (!fromIN) break;
  }
  const first = i + 1;
  for (; i >= 0; i--) labels[i] = 'OAP';
  let logLikelihood = 0;
  labels.forEach((l, j) => (logLikelihood += raw[j * 3 + LABELS.indexOf(l)]));
  return { labels, first, last, logLikelihood, score };
}

/** Summed clamped log-probability of a given labelling (for comparisons and tests). */
export function labellingLogLikelihood(probs: readonly (readonly number[])[], labels: readonly SliceLabel[]): number {
  if (labels.length !== probs.length) throw new RangeError('labels and probabilities differ in length');
  const lp = logRows(probs);
  let s = 0;
  labels.forEach((l, i) => {
    const k = LABELS.indexOf(l);
    if (k < 0) throw new RangeError(`unknown label '${String(l)}'`);
    s += lp[i * 3 + k];
  });
  return s;
}

/**
 * Decodes the stack in both orders — as given (apex-first) and reversed (apex-last) — and returns the more
 * likely one with the log-likelihood margin, so that the caller can cross-check the geometry's apex end.
 * Plain maximum likelihood, never a class prior: a prior that asks for more evidence before calling OAP/OBS
 * would also hide the weak evidence that tells the two ends apart.
 */
export function chooseOrientation(probsInFileOrder: readonly (readonly number[])[], geometryOrder?: FileOrder): OrientationChoice {
  const forward = decodeRange(probsInFileOrder);
  const reverse = decodeRange([...probsInFileOrder].reverse());
  const diff = forward.logLikelihood - reverse.logLikelihood;
  let order: FileOrder;
  if (diff > 0) order = 'apex-first';
  else if (diff < 0) order = 'apex-last';
  else order = geometryOrder ?? 'apex-first';
  const choice: OrientationChoice = {
    order,
    margin: Math.abs(diff),
    decodings: { 'apex-first': forward, 'apex-last': reverse },
    agreesWithGeometry: geometryOrder === undefined ? null : diff === 0 || order === geometryOrder,
  };
  if (geometryOrder !== undefined) choice.geometryOrder = geometryOrder;
  return choice;
}

/** Raw per-slice argmax (`predicted`); on exact ties the earlier class in OAP, IN, OBS order wins. */
export function argmaxLabels(probs: readonly (readonly number[])[]): SliceLabel[] {
  return probs.map((row, i) => {
    if (!row || row.length !== 3) throw new RangeError(`row ${i}: expected [pOAP, pIN, pOBS]`);
    let k = 0;
    if (row[1] > row[k]) k = 1;
    if (row[2] > row[k]) k = 2;
    return LABELS[k];
  });
}
