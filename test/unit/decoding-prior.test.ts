import { mkdtemp, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardWithPrior, runFitDecoding } from '../../src/commands/fit-decoding.js';
import { classLogPriorOf } from '../../src/inference/classifier.js';
import type { SliceLabel } from '../../src/inference/decode.js';
import { parseModelCard, readModelCard } from '../../src/inference/model-dir.js';
import { buildResult } from '../../src/inference/result.js';
import { formatCvPredictions, parseCvPredictions, type FoldStackPrediction } from '../../src/training/cv-predictions.js';
import { fitClassLogPrior, fitPriorOnCv, nestedPriorFits, scoreDecoding } from '../../src/training/decoding-prior.js';
import { evaluatePredictions } from '../../src/training/metrics.js';

const IN = [0.02, 0.96, 0.02];

/** An apex → base stack of `n` slices: truth all IN except `oap` apical OAP slices; slice 0 gets `apex` probabilities. */
function stack(fold: string, subject: string, apex: number[], oap = 0, n = 6): FoldStackPrediction {
  const truth: SliceLabel[] = Array.from({ length: n }, (_, i) => (i < oap ? 'OAP' : 'IN'));
  const probs = truth.map((t, i) => (i === 0 ? apex : t === 'OAP' ? [0.9, 0.08, 0.02] : IN));
  return { fold, subject, phase: 'ED', truth, probs, sourceSlices: truth.map((_, i) => n - 1 - i) };
}

/** Model that over-calls OAP at the apex: 3 false OAP at p = 0.7 for every true one it finds at p = 0.95. */
function overcalling(fold: string, k: number): FoldStackPrediction[] {
  return [
    stack(fold, `${fold}-a${k}`, [0.7, 0.29, 0.01]),
    stack(fold, `${fold}-b${k}`, [0.7, 0.29, 0.01]),
    stack(fold, `${fold}-c${k}`, [0.7, 0.29, 0.01]),
    stack(fold, `${fold}-d${k}`, [0.95, 0.04, 0.01], 1),
  ];
}

describe('fitClassLogPrior', () => {
  it('finds the OAP penalty that removes weak false OAP calls and keeps the confident true ones', () => {
    const stacks = [0, 1, 2].flatMap((k) => overcalling('fold-1', k));
    expect(scoreDecoding(stacks).exactStacks).toBe(3); // only the true-OAP stacks are right without a prior
    const fit = fitClassLogPrior(stacks);
    expect(fit.none.exactStacks).toBe(3);
    expect(fit.fitted.exactStacks).toBe(12);
    // log(0.29 / 0.7) = −0.88 must be beaten, log(0.04 / 0.95) = −3.17 must not: the smallest grid value that works is −1.
    expect(fit.prior).toEqual([-1, 0, 0]);
    expect(scoreDecoding(stacks, fit.prior)).toEqual(fit.fitted);
  });

  it('keeps [0, 0, 0] when no prior decodes better', () => {
    const clean = [stack('f', 's1', [0.95, 0.04, 0.01], 1), stack('f', 's2', IN)];
    expect(fitClassLogPrior(clean).prior).toEqual([0, 0, 0]);
  });

  it('rejects no stacks, mismatched rows and a bad grid', () => {
    expect(() => fitClassLogPrior([])).toThrow(/no labelled stacks/);
    expect(() => scoreDecoding([{ probs: [IN, IN], truth: ['IN'] }])).toThrow(/2 probability rows but 1 labels/);
    expect(() => fitClassLogPrior([stack('f', 's', IN)], { min: 0, max: -1, step: 1 })).toThrow(/prior grid/);
  });
});

describe('nested estimate', () => {
  it("fits each fold's prior without that fold's stacks", () => {
    // fold-1 alone over-calls OAP; fold-2 and fold-3 are clean. The prior fitted for fold-1 (on folds 2 and 3)
    // cannot know about its false calls; those fitted for folds 2 and 3 (fold-1 included) do.
    const stacks = [...overcalling('fold-1', 0), stack('fold-2', 'x', IN), stack('fold-2', 'y', [0.95, 0.04, 0.01], 1), stack('fold-3', 'z', IN)];
    const fits = nestedPriorFits(stacks);
    expect(fits.get('fold-1')!.prior).toEqual([0, 0, 0]);
    expect(fits.get('fold-2')!.prior).toEqual([-1, 0, 0]);
    expect(fits.get('fold-3')!.prior).toEqual([-1, 0, 0]);
    const cv = fitPriorOnCv(stacks);
    expect(cv.prior).toEqual([-1, 0, 0]);
    expect(cv.perFold).toEqual({ 'fold-1': [0, 0, 0], 'fold-2': [-1, 0, 0], 'fold-3': [-1, 0, 0] });
    // The nested estimate decodes fold-1 without a prior: its three false calls stay wrong.
    expect(cv.nested.all.decoded.rangeExact).toBeCloseTo(4 / 7, 12);
    expect(evaluatePredictions(stacks, () => cv.prior).all.decoded.rangeExact).toBe(1);
    expect(() => nestedPriorFits([stack('only', 's', IN)])).toThrow(/at least 2 folds/);
  });
});

describe('cv-predictions.csv', () => {
  it('round-trips through format and parse (apex → base order, source slices, folds)', () => {
    const stacks = [...overcalling('fold-1', 0), { ...stack('fold-2', 'p2', IN, 0, 3), phase: 'ES' }];
    const rounded = stacks.map((s) => ({ ...s, probs: s.probs.map((r) => r.map((p) => Number(p.toFixed(6)))) }));
    expect(parseCvPredictions(formatCvPredictions(stacks))).toEqual(rounded);
  });

  it('names the line of a malformed row', () => {
    const text = formatCvPredictions([stack('fold-1', 's', IN, 0, 2)]);
    expect(() => parseCvPredictions(text.replace(/,IN\n$/, ',XX\n'))).toThrow(/line 3: truth 'XX'/);
    expect(() => parseCvPredictions('subject,phase\n')).toThrow(/no 'fold' column/);
  });
});

describe('the prior in the model card and in results', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-prior-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fit-decoding writes the fitted prior into the card, which the classifier then uses', async () => {
    const stacks = [0, 1].flatMap((k) => [...overcalling('fold-1', k), ...overcalling('fold-2', k)]);
    const csv = join(dir, 'cv-predictions.csv');
    await writeFile(csv, formatCvPredictions(stacks));
    const model = join(dir, 'model');
    await cp('models/default', model, { recursive: true });
    const before = await readModelCard(model);

    const dry = await runFitDecoding({ predictions: csv });
    expect(dry.classLogPrior).toEqual([-1, 0, 0]);
    expect(dry.rangeExact.all).toEqual({ withoutPrior: 0.25, withPrior: 1 });
    expect(dry.card).toBeUndefined();
    expect((await readModelCard(model)).version).toBe(before.version);
    await expect(runFitDecoding({ predictions: csv, write: true })).rejects.toThrow(/--write needs --model/);

    const r = await runFitDecoding({ predictions: csv, modelDir: model, write: true, fittedOn: 'unit test stacks' });
    const card = await readModelCard(model);
    expect(r.version).toBe(card.version);
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    expect(card.version).toBe(`${before.version.replace(/\+prior\.\d{8}$/, '')}+prior.${today}`);
    expect(card.sha256).toBe(before.sha256);
    expect(card.decoding).toMatchObject({ classLogPrior: [-1, 0, 0], fittedOn: 'unit test stacks', perFold: { 'fold-1': [-1, 0, 0], 'fold-2': [-1, 0, 0] } });
    expect(classLogPriorOf(card)).toEqual([-1, 0, 0]);
    expect(JSON.parse(await readFile(join(model, 'model-card.json'), 'utf8')).decoding.classLogPrior).toEqual([-1, 0, 0]);
    // Refitting replaces the version suffix instead of stacking a second one.
    expect(cardWithPrior(card, fitPriorOnCv(stacks), evaluatePredictions(stacks), 'again').version).toBe(card.version);
    // A card with a malformed prior is refused.
    expect(() => parseModelCard({ ...card, decoding: { classLogPrior: [0, 'x', 0], fittedOn: 'y' } })).toThrow(/decoding\.classLogPrior/);
  });

  it('buildResult decodes with the model prior', () => {
    const slices = [
      [0.7, 0.29, 0.01],
      [0.02, 0.96, 0.02],
      [0.02, 0.96, 0.02],
    ].map((p, i) => ({ index: i, position: i * 8, sopInstanceUID: `1.2.3.${i}`, probabilities: p }));
    const phase = { phaseIndex: 0, triggerTime: 0, method: 'first-trigger-time', slices };
    const input = {
      studyInstanceUID: '1.2.3',
      stackId: 's',
      seriesInstanceUIDs: ['1.2.3.4'],
      model: { id: 'm', version: '1', sha256: 'a'.repeat(64) },
      order: { direction: 'apex-to-base' as const, method: 'geometry' as const },
      phases: { ED: phase, ES: phase },
    };
    expect(buildResult(input).phases.ED.inRange.first).toBe(1);
    const r = buildResult({ ...input, classLogPrior: [-1, 0, 0] });
    expect(r.phases.ED.inRange.first).toBe(0);
    expect(r.phases.ED.slices[0]).toMatchObject({ predicted: 'OAP', label: 'IN' });
  });
});
