/**
 * How the model does on phantom studies it never saw: for seeds 1–20, a phantom study goes through the same
 * path as `sax-range classify` (headers, stacks, ED/ES, classification, range decoding); prints the
 * range-decoded slice accuracy and the exact-IN-range rate per phase, as JSON and a markdown row.
 * Usage: node --import tsx scripts/phantom-accuracy.ts [MODEL_DIR] [--seeds 1-20]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runClassify } from '../src/commands/classify.js';
import { selectBackend } from '../src/inference/backend.js';
import { SliceClassifier } from '../src/inference/classifier.js';
import { createLogger } from '../src/log.js';
import { writePhantomStudy } from '../src/phantom/index.js';

const modelDir = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'models/default';
const seedsArg = process.argv.includes('--seeds') ? process.argv[process.argv.indexOf('--seeds') + 1]! : '1-20';
const [lo, hi] = seedsArg.split('-').map(Number) as [number, number];
const logger = createLogger('phantom-accuracy', 'warn');
await selectBackend('wasm', logger);
const classifier = await SliceClassifier.load(modelDir);
const tally = { ED: { right: 0, total: 0, exact: 0, stacks: 0 }, ES: { right: 0, total: 0, exact: 0, stacks: 0 } };
const misses: string[] = [];
for (let seed = lo; seed <= (hi ?? lo); seed++) {
  const dir = await mkdtemp(join(tmpdir(), 'sax-phacc-'));
  try {
    const { truth } = await writePhantomStudy(dir, { seed });
    const [r] = await runClassify({ paths: [dir], modelDir, json: false, backend: 'wasm', logger, classifier, stdout: () => undefined });
    for (const p of ['ED', 'ES'] as const) {
      const labels = r!.phases[p].slices.map((s) => s.label);
      const t = truth.labels[p];
      const right = labels.filter((l, i) => l === t[i]).length;
      tally[p].right += right;
      tally[p].total += t.length;
      tally[p].stacks++;
      if (right === t.length) tally[p].exact++;
      else misses.push(`seed ${seed} ${p}: ${labels.join(' ')} vs ${t.join(' ')}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
classifier.dispose();
const out = Object.fromEntries(
  (['ED', 'ES'] as const).map((p) => [p, { sliceAccuracy: +(tally[p].right / tally[p].total).toFixed(4), rangeExact: +(tally[p].exact / tally[p].stacks).toFixed(3), stacks: tally[p].stacks }]),
);
console.log(JSON.stringify({ modelDir, seeds: seedsArg, ...out }));
for (const m of misses) console.log(m);
