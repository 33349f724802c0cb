import { describe, expect, it } from 'vitest';
import { evaluateModel, macroAuc, microAuc, oneVsRestAuc, rocAuc, weightedAuc } from '../../src/training/evaluate.js';
import type { StackPrediction } from '../../src/training/metrics.js';
import type { SliceLabel } from '../../src/inference/decode.js';

describe('rocAuc', () => {
  it('is the fraction of (positive, negative) pairs ranked right', () => {
    // sklearn's doc example: pos {0.35, 0.8} vs neg {0.1, 0.4}: 3 of 4 pairs right.
    expect(rocAuc([false, false, true, true], [0.1, 0.4, 0.35, 0.8])).toBeCloseTo(0.75, 12);
    expect(rocAuc([true, false], [0.9, 0.1])).toBe(1);
    expect(rocAuc([true, false], [0.1, 0.9])).toBe(0);
  });

  it('counts a tied pair as one half', () => {
    // pos {0.5, 0.9}, neg {0.5, 0.1}: (0.5 vs 0.5) = ½, the other three pairs right → 3.5 / 4.
    expect(rocAuc([true, false, true, false], [0.5, 0.5, 0.9, 0.1])).toBeCloseTo(0.875, 12);
    expect(rocAuc([true, false, true, false], [0.3, 0.3, 0.3, 0.3])).toBeCloseTo(0.5, 12);
  });

  it('is NaN with only one class and refuses mismatched lengths', () => {
    expect(rocAuc([true, true], [0.1, 0.2])).toBeNaN();
    expect(rocAuc([false, false], [0.1, 0.2])).toBeNaN();
    expect(() => rocAuc([true], [0.1, 0.2])).toThrow(RangeError);
  });
});

// Four slices in two stacks, worked by hand (columns OAP, IN, OBS):
//   s1 OAP [0.6, 0.3, 0.1] → OAP ✓   s2 IN [0.2, 0.5, 0.3] → IN ✓
//   s3 OBS [0.45, 0.3, 0.25] → OAP ✗  s4 IN [0.1, 0.3, 0.6] → OBS ✗
const truth: SliceLabel[] = ['OAP', 'IN', 'OBS', 'IN'];
const probs = [
  [0.6, 0.3, 0.1],
  [0.2, 0.5, 0.3],
  [0.45, 0.3, 0.25],
  [0.1, 0.3, 0.6],
];

describe('multi-class AUC', () => {
  it('one vs rest per class', () => {
    const auc = oneVsRestAuc(truth, probs);
    expect(auc.OAP).toBeCloseTo(1, 12); // 0.6 above 0.2, 0.45, 0.1
    expect(auc.IN).toBeCloseTo(0.75, 12); // pos {0.5, 0.3} vs neg {0.3, 0.3}: 2 + 2·½ of 4
    expect(auc.OBS).toBeCloseTo(1 / 3, 12); // 0.25 above 0.1 only, of {0.1, 0.3, 0.6}
  });

  it('micro = one AUC over the raveled one-hot truth and probabilities', () => {
    // positives 0.6, 0.5, 0.25, 0.3 against the 8 negatives {0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.45, 0.6}:
    // 7.5 + 7 + 3 + 4.5 = 22 of 32 pairs.
    expect(microAuc(truth, probs)).toBeCloseTo(22 / 32, 12);
  });

  it('weighted by class size vs macro', () => {
    const auc = oneVsRestAuc(truth, probs);
    expect(weightedAuc(auc, { OAP: 1, IN: 2, OBS: 1 })).toBeCloseTo((1 + 2 * 0.75 + 1 / 3) / 4, 12);
    expect(macroAuc(auc)).toBeCloseTo((1 + 0.75 + 1 / 3) / 3, 12);
    // An undefined class AUC is left out of both averages.
    expect(weightedAuc({ OAP: Number.NaN, IN: 0.5, OBS: 1 }, { OAP: 0, IN: 3, OBS: 1 })).toBeCloseTo(0.625, 12);
    expect(macroAuc({ OAP: Number.NaN, IN: 0.5, OBS: 1 })).toBeCloseTo(0.75, 12);
  });

  it('refuses rows that are not three probabilities', () => {
    expect(() => microAuc(['IN'], [[0.5, 0.5]])).toThrow(/3/);
    expect(() => oneVsRestAuc(['IN', 'OAP'], [[0.2, 0.5, 0.3]])).toThrow(RangeError);
  });
});

describe('evaluateModel', () => {
  const stacks: StackPrediction[] = [
    { subject: 'a', phase: 'ED', truth: ['OAP', 'IN'], probs: probs.slice(0, 2) },
    { subject: 'b', phase: 'ED', truth: ['OBS', 'IN'], probs: probs.slice(2) },
  ];
  const m = evaluateModel(stacks);

  it('puts every table metric in one record', () => {
    expect(m.n).toBe(4);
    expect(m.stacks).toBe(2);
    expect(m.accuracy).toBeCloseTo(0.5, 12);
    // s4 (predicted OBS) is the truth of its neighbour s3 in the same stack; s3 (OAP) is no neighbour's truth.
    expect(m.softAccuracy).toBeCloseTo(0.75, 12);
    expect(m.microAuc).toBeCloseTo(22 / 32, 12);
    expect(m.weightedAuc).toBeCloseTo((1 + 1.5 + 1 / 3) / 4, 12);
    expect(m.macroAuc).toBeCloseTo((1 + 0.75 + 1 / 3) / 3, 12);
    expect(m.confusion).toEqual([
      [1, 0, 0],
      [0, 1, 1],
      [1, 0, 0],
    ]);
    expect(m.perClass.OAP).toMatchObject({ precision: 0.5, recall: 1, support: 1, auc: 1 });
    expect(m.perClass.OAP.f1).toBeCloseTo(2 / 3, 12);
    expect(m.perClass.IN).toMatchObject({ precision: 1, recall: 0.5, support: 2 });
    expect(m.perClass.IN.f1).toBeCloseTo(2 / 3, 12);
    expect(m.perClass.OBS).toMatchObject({ precision: 0, recall: 0, f1: 0, support: 1 });
    expect(m.rangeExact.argmax).toBeCloseTo(0.5, 12); // stack a right, stack b not
    expect(m.confusionDecoded.flat().reduce((a, b) => a + b, 0)).toBe(4);
  });

  it('counts decoded ranges whose ends are within one slice of the truth', () => {
    // The network calls every slice IN: the range starts two slices early in stack a, one slice early in b.
    const allIn = [0.1, 0.8, 0.1];
    const five = (truth: SliceLabel[], subject: string): StackPrediction => ({ subject, phase: 'ES', truth, probs: truth.map(() => allIn) });
    const e = evaluateModel([five(['OAP', 'OAP', 'IN', 'IN', 'IN'], 'a'), five(['OAP', 'IN', 'IN', 'IN', 'IN'], 'b')]);
    expect(e.rangeExact.decoded).toBe(0);
    expect(e.rangeWithinOne).toBe(0.5);
  });

  it('does not let soft accuracy cross from one stack to the next', () => {
    // As one stack, s3 (predicted OAP) would not gain either; but s2 predicted OBS would count against s3's truth.
    const one = evaluateModel([{ subject: 'a', phase: 'ED', truth: ['OAP', 'IN', 'OBS'], probs: [probs[0], probs[3], probs[2]] }]);
    // s1 ✓, s2 IN→OBS = truth of s3 ✓(soft), s3 OBS→OAP ✗ → 2/3.
    expect(one.softAccuracy).toBeCloseTo(2 / 3, 12);
    const split = evaluateModel([
      { subject: 'a', phase: 'ED', truth: ['OAP', 'IN'], probs: [probs[0], probs[3]] },
      { subject: 'a', phase: 'ES', truth: ['OBS'], probs: [probs[2]] },
    ]);
    expect(split.softAccuracy).toBeCloseTo(1 / 3, 12);
  });
});
