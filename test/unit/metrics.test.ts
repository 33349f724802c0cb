import { describe, expect, it } from 'vitest';
import {
  accuracyOf,
  balancedAccuracyOf,
  boundaryErrors,
  classificationMetrics,
  classMetrics,
  confusionMatrix,
  evaluatePredictions,
  logLoss,
  macroF1Of,
  meanStd,
  rangeExactRate,
  softAccuracy,
  stackMetrics,
} from '../../src/training/metrics.js';
import type { SliceLabel } from '../../src/inference/decode.js';

// Two stacks (apex → base), hand-computed below.
const A = { truth: ['OAP', 'IN', 'IN', 'IN', 'OBS'] as SliceLabel[], pred: ['IN', 'IN', 'IN', 'OBS', 'OBS'] as SliceLabel[] };
const B = { truth: ['IN', 'IN', 'OBS'] as SliceLabel[], pred: ['IN', 'OAP', 'OBS'] as SliceLabel[] };

describe('classification metrics (hand-computed)', () => {
  const truth = [...A.truth, ...B.truth];
  const pred = [...A.pred, ...B.pred];
  const c = confusionMatrix(truth, pred);

  it('confusion matrix: rows truth, columns prediction, OAP/IN/OBS', () => {
    expect(c).toEqual([
      [0, 1, 0],
      [1, 3, 1],
      [0, 0, 2],
    ]);
  });

  it('per-class precision, recall, F1 (zero division → 0)', () => {
    const pc = classMetrics(c);
    expect(pc.OAP).toEqual({ precision: 0, recall: 0, f1: 0, support: 1, predicted: 1 });
    expect(pc.IN.precision).toBeCloseTo(0.75, 12);
    expect(pc.IN.recall).toBeCloseTo(0.6, 12);
    expect(pc.IN.f1).toBeCloseTo(2 / 3, 12);
    expect(pc.OBS.precision).toBeCloseTo(2 / 3, 12);
    expect(pc.OBS.recall).toBe(1);
    expect(pc.OBS.f1).toBeCloseTo(0.8, 12);
  });

  it('accuracy, balanced accuracy, macro F1', () => {
    expect(accuracyOf(c)).toBeCloseTo(5 / 8, 12);
    expect(balancedAccuracyOf(c)).toBeCloseTo((0 + 0.6 + 1) / 3, 12);
    expect(macroF1Of(c)).toBeCloseTo((0 + 2 / 3 + 0.8) / 3, 12);
  });

  it('balanced accuracy ignores classes absent from the truth', () => {
    const c2 = confusionMatrix(['IN', 'IN', 'OBS'], ['IN', 'OAP', 'OBS']);
    expect(balancedAccuracyOf(c2)).toBeCloseTo((0.5 + 1) / 2, 12);
  });

  it('soft accuracy counts a prediction equal to an adjacent slice’s truth', () => {
    // A: all 5 soft-correct (slice 0 IN = truth of slice 1; slice 3 OBS = truth of slice 4). B: slice 1 OAP wrong.
    expect(softAccuracy([A, B])).toBeCloseTo(7 / 8, 12);
    expect(softAccuracy([B])).toBeCloseTo(2 / 3, 12);
  });

  it('range-exact rate', () => {
    const C = { truth: ['IN', 'OBS'] as SliceLabel[], pred: ['IN', 'OBS'] as SliceLabel[] };
    expect(rangeExactRate([A, B, C])).toBeCloseTo(1 / 3, 12);
    expect(rangeExactRate([])).toBe(0);
  });

  it('boundary errors of the IN range ends', () => {
    // A: truth first 1 last 3, pred first 0 last 2. B: truth 0..1, pred 0..0.
    expect(boundaryErrors([A, B])).toEqual({ firstAbsError: 0.5, lastAbsError: 1, firstExact: 0.5, lastExact: 0, withinOne: 1 });
  });

  it('range within one slice: both ends off by at most one', () => {
    // truth IN = 1..3 of 6; predictions with ends off by (0, 1), (1, 1), (2, 0), (0, 2) slices
    const truth: SliceLabel[] = ['OAP', 'IN', 'IN', 'IN', 'OBS', 'OBS'];
    const ofRange = (first: number, last: number): SliceLabel[] => truth.map((_, i) => (i < first ? 'OAP' : i > last ? 'OBS' : 'IN'));
    const stacks = [ofRange(1, 4), ofRange(0, 4), ofRange(3, 3), ofRange(1, 5)].map((pred) => ({ truth, pred }));
    expect(boundaryErrors(stacks).withinOne).toBe(0.5);
    expect(boundaryErrors(stacks.slice(0, 2)).withinOne).toBe(1);
    expect(boundaryErrors(stacks.slice(2)).withinOne).toBe(0);
  });

  it('classificationMetrics bundles them', () => {
    const m = classificationMetrics([A, B]);
    expect(m.n).toBe(8);
    expect(m.stacks).toBe(2);
    expect(m.accuracy).toBeCloseTo(0.625, 12);
    expect(m.softAccuracy).toBeCloseTo(0.875, 12);
    expect(m.rangeExact).toBe(0);
  });

  it('rejects mismatched lengths and unknown labels', () => {
    expect(() => confusionMatrix(['IN'], [])).toThrow(/differ in length/);
    expect(() => confusionMatrix(['XX' as SliceLabel], ['IN'])).toThrow(/unknown label/);
  });
});

describe('stack metrics from probabilities', () => {
  // One stack whose argmax is not a valid range (IN OAP IN OBS): decoding fixes slice 1.
  const probs = [
    [0.3, 0.6, 0.1],
    [0.45, 0.4, 0.15],
    [0.1, 0.8, 0.1],
    [0.05, 0.15, 0.8],
  ];
  const truth: SliceLabel[] = ['IN', 'IN', 'IN', 'OBS'];

  it('argmax vs range-decoded', () => {
    const m = stackMetrics([{ subject: 's', phase: 'ED', truth, probs }]);
    expect(m.argmax.accuracy).toBeCloseTo(3 / 4, 12);
    expect(m.argmax.rangeExact).toBe(0);
    expect(m.decoded.accuracy).toBe(1);
    expect(m.decoded.rangeExact).toBe(1);
    expect(m.decoded.boundary).toEqual({ firstAbsError: 0, lastAbsError: 0, firstExact: 1, lastExact: 1, withinOne: 1 });
  });

  it('log loss = mean −ln p(true class)', () => {
    const expected = -(Math.log(0.6) + Math.log(0.4) + Math.log(0.8) + Math.log(0.8)) / 4;
    expect(logLoss([{ subject: 's', phase: 'ED', truth, probs }])).toBeCloseTo(expected, 12);
  });

  it('evaluatePredictions splits ED and ES', () => {
    const s = evaluatePredictions([
      { subject: 'a', phase: 'ED', truth, probs },
      { subject: 'a', phase: 'ES', truth: ['IN'], probs: [[0.1, 0.8, 0.1]] },
    ]);
    expect(s.all.argmax.n).toBe(5);
    expect(s.ED?.argmax.n).toBe(4);
    expect(s.ES?.argmax.n).toBe(1);
    expect(s.ES?.argmax.accuracy).toBe(1);
  });

  it('meanStd uses the sample standard deviation', () => {
    const r = meanStd([1, 2, 3, 4]);
    expect(r.mean).toBe(2.5);
    expect(r.std).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(meanStd([])).toEqual({ mean: 0, std: 0, n: 0 });
  });
});
