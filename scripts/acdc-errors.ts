/**
 * Where the classifier errs on ACDC: joins a run's out-of-fold predictions (cv-predictions.csv) with the
 * segmentation pixel counts of ../shared/data/acdc/slice_labels.csv and prints, per phase, how large the LV
 * cavity is on the IN slices that range decoding (plain, and with the nested prior) calls OAP or OBS, against
 * all IN slices; and whether the IN range at ES lies inside the one at ED (truth and decoded), the constraint a
 * joint ED/ES decoder would add.
 * Usage: node --import tsx scripts/acdc-errors.ts RUN_DIR/cv-predictions.csv [ACDC_DIR]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeRange, type SliceLabel } from '../src/inference/decode.js';
import { parseCvPredictions } from '../src/training/cv-predictions.js';
import { fitPriorOnCv } from '../src/training/decoding-prior.js';

const file = process.argv[2];
if (!file) throw new Error('usage: acdc-errors.ts cv-predictions.csv [ACDC_DIR]');
const acdcDir = process.argv[3] ?? join('..', 'shared', 'data', 'acdc');

// slice_labels.csv: subject,split,phase,frame,slice,n_slices,label,lv_px,myo_px,rv_px
const [head, ...lines] = readFileSync(join(acdcDir, 'slice_labels.csv'), 'utf8').trim().split('\n');
const col = head!.split(',');
const at = (n: string) => col.indexOf(n);
const lvPx = new Map<string, number>();
for (const l of lines) {
  const f = l.split(',');
  lvPx.set(`${f[at('subject')]}/${f[at('phase')]}/${f[at('slice')]}`, Number(f[at('lv_px')]));
}

const stacks = parseCvPredictions(readFileSync(file, 'utf8')).filter((s) => s.subject.startsWith('patient'));
const nested = fitPriorOnCv(parseCvPredictions(readFileSync(file, 'utf8')));
const quartiles = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return `${q(0.25)} / ${q(0.5)} / ${q(0.75)}`;
};

console.log('| phase | decoding | IN slices called OAP/OBS | their LV cavity px (q1 / median / q3) | of them < 100 px | all IN slices: LV cavity px (q1 / median / q3) |');
console.log('|---|---|---|---|---|---|');
for (const phase of ['ED', 'ES']) {
  const ofPhase = stacks.filter((s) => s.phase === phase);
  const allIn: number[] = [];
  for (const s of ofPhase) s.truth.forEach((t, i) => t === 'IN' && allIn.push(lvPx.get(`${s.subject}/${phase}/${s.sourceSlices[i]}`)!));
  for (const [name, prior] of [['plain', undefined], ['prior (nested)', 'nested']] as const) {
    const wrong: number[] = [];
    for (const s of ofPhase) {
      const labels = decodeRange(s.probs, prior ? nested.perFold[s.fold] : undefined).labels;
      labels.forEach((l, i) => {
        if (s.truth[i] === 'IN' && l !== 'IN') wrong.push(lvPx.get(`${s.subject}/${phase}/${s.sourceSlices[i]}`)!);
      });
    }
    console.log(`| ${phase} | ${name} | ${wrong.length} | ${quartiles(wrong)} | ${wrong.filter((x) => x < 100).length} | ${quartiles(allIn)} |`);
  }
}

// ES IN range inside the ED one?
const inRange = (labels: readonly SliceLabel[]) => new Set(labels.flatMap((l, i) => (l === 'IN' ? [i] : [])));
const inside = (a: Set<number>, b: Set<number>) => [...a].every((i) => b.has(i));
let truthInside = 0;
let decodedInside = 0;
let subjects = 0;
for (const ed of stacks.filter((s) => s.phase === 'ED')) {
  const es = stacks.find((s) => s.phase === 'ES' && s.subject === ed.subject);
  if (!es || es.truth.length !== ed.truth.length) continue;
  subjects++;
  if (inside(inRange(es.truth), inRange(ed.truth))) truthInside++;
  const p = nested.perFold[ed.fold];
  if (inside(inRange(decodeRange(es.probs, p).labels), inRange(decodeRange(ed.probs, p).labels))) decodedInside++;
}
console.log(`\nES IN range inside the ED IN range: truth ${truthInside}/${subjects} subjects; decoded with the nested prior ${decodedInside}/${subjects}.`);
