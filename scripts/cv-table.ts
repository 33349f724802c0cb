/**
 * Markdown tables of cross-validated metrics from a training run's cv-predictions.csv, per data source
 * (ACDC subjects `patient*`, phantom subjects `phantom-*`) and phase, raw argmax vs range decoding, and the
 * baseline that calls every slice IN (no model) on the same stacks. "range ±1 slice": both ends of the IN
 * range within one slice of the truth (what a consumer padding the range by one slice at each end covers).
 * Usage: node --import tsx scripts/cv-table.ts RUN_DIR/cv-predictions.csv [--json]
 * --json prints the same figures as the model card's `metrics.crossValidation` block instead (rounded).
 * "range decoded + prior (nested)": decoding with the class log-prior fitted on the other folds
 * (src/training/decoding-prior.ts), whatever the run's protocol said.
 */
import { readFileSync } from 'node:fs';
import { parseCvPredictions, type FoldStackPrediction } from '../src/training/cv-predictions.js';
import { fitPriorOnCv } from '../src/training/decoding-prior.js';
import { evaluatePredictions, type StackMetrics, type StackPrediction } from '../src/training/metrics.js';

const file = process.argv[2];
if (!file) throw new Error('usage: cv-table.ts cv-predictions.csv [--json]');
const asJson = process.argv.includes('--json');
const preds = parseCvPredictions(readFileSync(file, 'utf8'));
// The decoding prior as `sax-range train` fits it (decodingPrior: 'fit'), each fold decoded with the prior
// fitted on the other folds: the nested estimate, whatever the run's protocol said.
const folds = new Set(preds.map((p) => p.fold)).size;
const nested = folds >= 2 ? fitPriorOnCv(preds) : undefined;
const priorFor = (s: FoldStackPrediction) => nested!.perFold[s.fold]!;
const pct = (x: number) => (100 * x).toFixed(1);
function rows(name: string, m: StackMetrics | undefined, phase: string, kinds: readonly ('argmax' | 'decoded')[] = ['argmax', 'decoded'], label?: string, withinOne?: number): string[] {
  if (!m) return [];
  return kinds.map((k) => {
    const c = m[k];
    // "range ±1": both ends of the IN range within one slice of the truth; undefined for raw argmax labels,
    // which need not form a range
    const w1 = k === 'decoded' ? m.decoded.boundary.withinOne : withinOne;
    return `| ${name} | ${phase} | ${label ?? (k === 'argmax' ? 'raw argmax' : 'range decoded')} | ${c.stacks} | ${pct(c.accuracy)} | ${pct(c.balancedAccuracy)} | ${pct(c.softAccuracy)} | ${c.perClass.OAP.precision.toFixed(2)}/${c.perClass.OAP.recall.toFixed(2)}/**${c.perClass.OAP.f1.toFixed(2)}** | ${c.perClass.IN.precision.toFixed(2)}/${c.perClass.IN.recall.toFixed(2)}/**${c.perClass.IN.f1.toFixed(2)}** | ${c.perClass.OBS.precision.toFixed(2)}/${c.perClass.OBS.recall.toFixed(2)}/**${c.perClass.OBS.f1.toFixed(2)}** | ${pct(c.rangeExact)} | ${w1 === undefined ? '–' : pct(w1)} |`;
  });
}
const r3 = (x: number) => Math.round(x * 1000) / 1000;
function compact(c: StackMetrics['argmax'], withPrecision = true, withinOne?: number) {
  const per = (k: 'precision' | 'recall' | 'f1') => Object.fromEntries((['OAP', 'IN', 'OBS'] as const).map((l) => [l, r3(c.perClass[l][k])]));
  return {
    stacks: c.stacks,
    accuracy: r3(c.accuracy),
    balancedAccuracy: r3(c.balancedAccuracy),
    softAccuracy: r3(c.softAccuracy),
    ...(withPrecision ? { precision: per('precision'), recall: per('recall') } : {}),
    f1: per('f1'),
    rangeExact: r3(c.rangeExact),
    ...(withinOne === undefined ? {} : { rangeWithinOne: r3(withinOne) }),
  };
}
const json: Record<string, unknown> = {};
if (!asJson) {
  console.log('| data | phase | labels | stacks | accuracy % | balanced acc % | soft acc % | OAP P/R/F1 | IN P/R/F1 | OBS P/R/F1 | range exact % | range ±1 slice % |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
}
for (const [name, filter] of [
  ['ACDC', (s: StackPrediction) => s.subject.startsWith('patient')],
  ['phantom', (s: StackPrediction) => s.subject.startsWith('phantom')],
] as const) {
  const sub = preds.filter(filter);
  if (!sub.length) continue;
  const e = evaluatePredictions(sub);
  const ep = nested ? evaluatePredictions(sub, priorFor) : undefined;
  const allIn = evaluatePredictions(sub.map((p) => ({ ...p, probs: p.probs.map(() => [0, 1, 0]) })));
  const block: Record<string, unknown> = {};
  for (const phase of ['ED', 'ES'] as const) {
    const m = e[phase];
    const mp = ep?.[phase];
    // the all-IN probabilities decode to all IN, so their decoded boundary is the baseline's
    const allInWithinOne = allIn[phase]?.decoded.boundary.withinOne;
    if (m) {
      block[phase] = {
        argmax: compact(m.argmax),
        decoded: compact(m.decoded, true, m.decoded.boundary.withinOne),
        ...(mp ? { decodedWithPrior: compact(mp.decoded, true, mp.decoded.boundary.withinOne) } : {}),
        allIn: compact(allIn[phase]!.argmax, false, allInWithinOne),
      };
    }
    if (!asJson) {
      const lines = [
        ...rows(name, e[phase], phase),
        ...rows(name, mp, phase, ['decoded'], 'range decoded + prior (nested)'),
        ...rows(name, allIn[phase], phase, ['argmax'], 'all IN (no model)', allInWithinOne),
      ];
      for (const line of lines) console.log(line);
    }
  }
  json[name] = block;
}
if (nested) json.decodingPrior = { fitted: nested.prior, perFold: nested.perFold };
if (asJson) console.log(JSON.stringify(json, null, 1));
else if (nested) console.log(`\nprior fitted on all stacks: [${nested.prior.join(', ')}]; per fold (fitted on the others): ${Object.entries(nested.perFold).map(([f, p]) => `${f} [${p.join(', ')}]`).join('; ')}`);
