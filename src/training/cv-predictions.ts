/**
 * `cv-predictions.csv`, the out-of-fold predictions of a cross-validated training run (pure): one row per
 * slice and phase, `fold,subject,phase,slice,apex_index,p_oap,p_in,p_obs,predicted,label,truth` — `slice` as
 * in the source (NIfTI index), `apex_index` the position apex → base, `predicted` the argmax, `label` the range
 * decoding without a prior, `truth` the label. Written by `sax-range train`; read by `sax-range fit-decoding`
 * and scripts/cv-table.ts.
 */

import { argmaxLabels, decodeRange, LABELS, type SliceLabel } from '../inference/decode.js';
import type { StackPrediction } from './metrics.js';

export const CV_PREDICTIONS_HEADER = 'fold,subject,phase,slice,apex_index,p_oap,p_in,p_obs,predicted,label,truth';

/** A stack of out-of-fold predictions: apex → base, with the fold that predicted it and the source slice indices. */
export type FoldStackPrediction = StackPrediction & { fold: string; sourceSlices: number[] };

export function formatCvPredictions(stacks: readonly FoldStackPrediction[]): string {
  const lines = [CV_PREDICTIONS_HEADER];
  for (const s of stacks) {
    const pred = argmaxLabels(s.probs);
    const dec = decodeRange(s.probs).labels;
    s.probs.forEach((p, i) => {
      lines.push([s.fold, s.subject, s.phase, s.sourceSlices[i], i, p[0].toFixed(6), p[1].toFixed(6), p[2].toFixed(6), pred[i], dec[i], s.truth[i]].join(','));
    });
  }
  return `${lines.join('\n')}\n`;
}

/** Parses the CSV back into stacks (apex → base). Throws naming the line on a malformed row. */
export function parseCvPredictions(text: string): FoldStackPrediction[] {
  const [header, ...lines] = text.trim().split(/\r?\n/);
  const cols = (header ?? '').split(',');
  const at = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new Error(`cv predictions: no '${name}' column (header: ${header})`);
    return i;
  };
  const c = { fold: at('fold'), subject: at('subject'), phase: at('phase'), slice: at('slice'), apex: at('apex_index'), oap: at('p_oap'), in: at('p_in'), obs: at('p_obs'), truth: at('truth') };
  const stacks = new Map<string, { fold: string; subject: string; phase: string; rows: { apex: number; slice: number; probs: number[]; truth: SliceLabel }[] }>();
  lines.forEach((line, n) => {
    if (!line.trim()) return;
    const f = line.split(',');
    const where = `cv predictions line ${n + 2}`;
    const truth = f[c.truth] as SliceLabel;
    if (!LABELS.includes(truth)) throw new Error(`${where}: truth '${f[c.truth]}' is not OAP, IN or OBS`);
    const probs = [Number(f[c.oap]), Number(f[c.in]), Number(f[c.obs])];
    const apex = Number(f[c.apex]);
    if (probs.some((p) => !Number.isFinite(p)) || !Number.isInteger(apex)) throw new Error(`${where}: malformed row '${line}'`);
    const key = `${f[c.fold]}/${f[c.subject]}/${f[c.phase]}`;
    let s = stacks.get(key);
    if (!s) stacks.set(key, (s = { fold: f[c.fold]!, subject: f[c.subject]!, phase: f[c.phase]!, rows: [] }));
    s.rows.push({ apex, slice: Number(f[c.slice]), probs, truth });
  });
  return [...stacks.values()].map((s) => {
    const rows = s.rows.sort((a, b) => a.apex - b.apex);
    rows.forEach((r, i) => {
      if (r.apex !== i) throw new Error(`cv predictions: ${s.subject} ${s.phase} has apex_index ${rows.map((x) => x.apex).join(',')}, expected 0…${rows.length - 1}`);
    });
    return { fold: s.fold, subject: s.subject, phase: s.phase, truth: rows.map((r) => r.truth), probs: rows.map((r) => r.probs), sourceSlices: rows.map((r) => r.slice) };
  });
}
