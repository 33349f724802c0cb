/**
 * Markdown tables of cross-validated metrics from a training run's cv-predictions.csv, per data source
 * (ACDC subjects `patient*`, phantom subjects `phantom-*`) and phase, raw argmax vs range decoding, and the
 * baseline that calls every slice IN (no model) on the same stacks.
 * Usage: node --import tsx scripts/cv-table.ts RUN_DIR/cv-predictions.csv [--json]
 * --json prints the same figures as the model card's `metrics.crossValidation` block instead (rounded).
 */
import { readFileSync } from 'node:fs';
import type { SliceLabel } from '../src/inference/decode.js';
import { evaluatePredictions, type StackMetrics, type StackPrediction } from '../src/training/metrics.js';

const file = process.argv[2];
if (!file) throw new Error('usage: cv-table.ts cv-predictions.csv [--json]');
const asJson = process.argv.includes('--json');
const [header, ...lines] = readFileSync(file, 'utf8').trim().split('\n');
const cols = header!.split(',');
const at = (name: string) => cols.indexOf(name);
const stacks = new Map<string, { subject: string; phase: string; rows: Array<{ apex: number; probs: number[]; truth: SliceLabel }> }>();
for (const line of lines) {
  const f = line.split(',');
  const key = `${f[at('subject')]}/${f[at('phase')]}`;
  let s = stacks.get(key);
  if (!s) stacks.set(key, (s = { subject: f[at('subject')]!, phase: f[at('phase')]!, rows: [] }));
  s.rows.push({
    apex: Number(f[at('apex_index')]),
    probs: [Number(f[at('p_oap')]), Number(f[at('p_in')]), Number(f[at('p_obs')])],
    truth: f[at('truth')] as SliceLabel,
  });
}
const preds: StackPrediction[] = [...stacks.values()].map((s) => {
  const rows = s.rows.sort((a, b) => a.apex - b.apex);
  return { subject: s.subject, phase: s.phase, truth: rows.map((r) => r.truth), probs: rows.map((r) => r.probs) };
});
const pct = (x: number) => (100 * x).toFixed(1);
function rows(name: string, m: StackMetrics | undefined, phase: string, kinds: readonly ('argmax' | 'decoded')[] = ['argmax', 'decoded'], label?: string): string[] {
  if (!m) return [];
  return kinds.map((k) => {
    const c = m[k];
    return `| ${name} | ${phase} | ${label ?? (k === 'argmax' ? 'raw argmax' : 'range decoded')} | ${c.stacks} | ${pct(c.accuracy)} | ${pct(c.balancedAccuracy)} | ${pct(c.softAccuracy)} | ${c.perClass.OAP.precision.toFixed(2)}/${c.perClass.OAP.recall.toFixed(2)}/**${c.perClass.OAP.f1.toFixed(2)}** | ${c.perClass.IN.precision.toFixed(2)}/${c.perClass.IN.recall.toFixed(2)}/**${c.perClass.IN.f1.toFixed(2)}** | ${c.perClass.OBS.precision.toFixed(2)}/${c.perClass.OBS.recall.toFixed(2)}/**${c.perClass.OBS.f1.toFixed(2)}** | ${pct(c.rangeExact)} |`;
  });
}
const r3 = (x: number) => Math.round(x * 1000) / 1000;
function compact(c: StackMetrics['argmax'], withPrecision = true) {
  const per = (k: 'precision' | 'recall' | 'f1') => Object.fromEntries((['OAP', 'IN', 'OBS'] as const).map((l) => [l, r3(c.perClass[l][k])]));
  return {
    stacks: c.stacks,
    accuracy: r3(c.accuracy),
    balancedAccuracy: r3(c.balancedAccuracy),
    softAccuracy: r3(c.softAccuracy),
    ...(withPrecision ? { precision: per('precision'), recall: per('recall') } : {}),
    f1: per('f1'),
    rangeExact: r3(c.rangeExact),
  };
}
const json: Record<string, unknown> = {};
if (!asJson) {
  console.log('| data | phase | labels | stacks | accuracy % | balanced acc % | soft acc % | OAP P/R/F1 | IN P/R/F1 | OBS P/R/F1 | range exact % |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
}
for (const [name, filter] of [
  ['ACDC', (s: StackPrediction) => s.subject.startsWith('patient')],
  ['phantom', (s: StackPrediction) => s.subject.startsWith('phantom')],
] as const) {
  const sub = preds.filter(filter);
  if (!sub.length) continue;
  const e = evaluatePredictions(sub);
  const allIn = evaluatePredictions(sub.map((p) => ({ ...p, probs: p.probs.map(() => [0, 1, 0]) })));
  const block: Record<string, unknown> = {};
  for (const phase of ['ED', 'ES'] as const) {
    const m = e[phase];
    if (m) block[phase] = { argmax: compact(m.argmax), decoded: compact(m.decoded), allIn: compact(allIn[phase]!.argmax, false) };
    if (!asJson) for (const line of [...rows(name, e[phase], phase), ...rows(name, allIn[phase], phase, ['argmax'], 'all IN (no model)')]) console.log(line);
  }
  json[name] = block;
}
if (asJson) console.log(JSON.stringify(json, null, 1));
