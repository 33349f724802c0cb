/**
 * Inference latency of the classifier on the WASM backend (not a test; `node --import tsx bench/inference.ts`).
 *
 * Model: models/default when it exists (or `--model DIR`), else the compact CBR (`cbr_compact`, `--input-size`,
 * default 96) with RANDOM weights — said so in the output: speed does not depend on the weights.
 * Study: a phantom with 20 slices of 256², ED + ES = 40 images, classified with Grad-CAMs, as `classify`
 * does (preprocessing + forward pass + Grad-CAM head gradient + CAM mapped back to 256²). Measured:
 *   - one slice alone (batch 1), without and with CAM;
 *   - one study (2 × 20 slices) with CAMs, in-process (1 thread) and through the worker pool (1 and 2
 *     threads, one WASM backend each);
 *   - the study's preprocessing alone and its forward passes alone (prepared inputs, no CAM);
 *   - achieved GMAC/s = model MACs × 40 images / time, for the forward passes alone and for the whole study
 *     with CAMs (preprocessing and the CAM head are extra work there, so it understates the conv throughput).
 * Medians over `--reps` runs (default 5) after one warm-up. Prints markdown table rows with the machine.
 *
 * Options: --model DIR, --arch NAME, --input-size N, --reps N, --threads 1,2, --slices N.
 */
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/inference/backend.js';
import { SliceClassifier, weightsSha256, type ClassifierCard } from '../src/inference/classifier.js';
import { ClassifierPool } from '../src/inference/pool.js';
import { preprocessParamsFor } from '../src/inference/preprocess.js';
import { phantomSubjects } from '../src/phantom/index.js';
import { buildModel, countMacs, lastConvLayerName } from '../src/training/models/index.js';
import type { StackClassifier } from '../src/inference/classify-stack.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median and minimum of `reps` timed runs after one warm-up (the minimum is the least disturbed run on a shared machine). */
async function timeBoth(reps: number, f: () => Promise<unknown>): Promise<{ median: number; min: number }> {
  await f(); // warm-up
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await f();
    ts.push(performance.now() - t);
  }
  return { median: median(ts), min: Math.min(...ts) };
}

async function time(reps: number, f: () => Promise<unknown>): Promise<number> {
  return (await timeBoth(reps, f)).median;
}

const reps = Number(arg('reps', '5'));
const threadList = arg('threads', '1,2').split(',').map(Number);
const nSlices = Number(arg('slices', '20'));
const modelDir = arg('model', 'models/default');

const backend = await selectBackend('wasm');
let classifier: SliceClassifier;
let source: { modelDir: string } | { model: tf.LayersModel; card: ClassifierCard };
let macs: number;
let modelNote: string;
if (existsSync(`${modelDir}/model-card.json`)) {
  classifier = await SliceClassifier.load(modelDir);
  source = { modelDir };
  const { readModelCard } = await import('../src/inference/model-dir.js');
  const card = await readModelCard(modelDir);
  macs = card.macs;
  modelNote = `${card.id} ${card.version} (${modelDir})`;
} else {
  const arch = arg('arch', 'cbr_compact');
  const inputSize = Number(arg('input-size', '96'));
  const model = buildModel(arch, { inputSize, seed: 1 });
  const card: ClassifierCard = {
    id: `${arch}-random`,
    version: '0',
    sha256: await weightsSha256(model),
    architecture: arch,
    inputSize,
    channelMode: 'gray3',
    preprocessing: preprocessParamsFor(arch, { inputSize }),
    classes: ['OAP', 'IN', 'OBS'],
    lastConvLayer: lastConvLayerName(model),
  };
  classifier = await SliceClassifier.fromModel(model, card);
  source = { model, card };
  macs = countMacs(model);
  modelNote = `${arch} ${inputSize}² RANDOM weights (no ${modelDir})`;
}
const card = classifier.card;

const subject = phantomSubjects(1, 7, { slices: nSlices, rows: 256 }).next().value!;
const rows = subject.ED.rows;
const columns = subject.ED.columns;
const study = async (c: StackClassifier, cams: boolean) => {
  for (const phase of [subject.ED, subject.ES]) {
    if (cams) await c.classifyWithCam(phase.images, rows, columns);
    else await c.classify(phase.images, rows, columns);
  }
};

const one = [subject.ED.images[Math.floor(nSlices / 2)]];
const slice = await time(reps * 2, () => classifier.classify(one, rows, columns));
const sliceCam = await time(reps * 2, () => classifier.classifyWithCam(one, rows, columns));
const prepOnly = await time(reps, async () => {
  for (const phase of [subject.ED, subject.ES]) classifier.prepare(phase.images, rows, columns);
});
const prepared = [subject.ED, subject.ES].map((phase) => classifier.prepare(phase.images, rows, columns));
const modelOnly = await time(reps, async () => {
  for (const inputs of prepared) await classifier.classifyPrepared(inputs);
});
const tfBefore = tf.memory().numTensors;
const inProcess = await timeBoth(reps, () => study(classifier, true));
const inProcessNoCam = await time(reps, () => study(classifier, false));
if (tf.memory().numTensors !== tfBefore) console.error(`warning: tensor count changed ${tfBefore} → ${tf.memory().numTensors}`);

const pooled: Array<{ threads: number; ms: { median: number; min: number }; msNoCam: number }> = [];
for (const threads of threadList) {
  const pool = await ClassifierPool.create(source, { threads, backend: 'wasm' });
  try {
    pooled.push({ threads, ms: await timeBoth(reps, () => study(pool, true)), msNoCam: await time(reps, () => study(pool, false)) });
  } finally {
    await pool.close();
  }
}

const images = 2 * nSlices;
const gmacs = (ms: number) => ((macs * images) / (ms / 1000) / 1e9).toFixed(2);
const cpu = cpus();
const machine = `${cpu.length}× ${cpu[0]?.model.trim() ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${loadavg()[0].toFixed(1)}, Node ${process.versions.node}, tfjs ${tf.version.tfjs} ${backend.name}`;
const f0 = (x: number) => x.toFixed(0);

console.log(`\nModel: ${modelNote}; ${card.architecture} input ${card.inputSize}², ${(macs / 1e6).toFixed(1)} MMAC/image; CAM layer ${classifier.camLayer} (${classifier.camScore}).`);
console.log(`Study: phantom ${nSlices} slices × 2 phases (ED, ES) = ${images} images of ${rows}×${columns}; medians of ${reps} runs after a warm-up.`);
console.log(`Machine: ${machine}\n`);
console.log(
  '| Machine (load) | Model | MMAC/img | Threads | 1 slice (ms) | 1 slice + CAM (ms) | Study: preprocessing (ms) | Study: model only, no CAM (ms) | Study, no CAM (ms) | Study + CAMs, median (min) (ms) | GMAC/s model only | GMAC/s whole study + CAMs | ≤ 1 s/study + CAMs |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
const mach = `${cpu.length}× ${cpu[0]?.model.trim() ?? ''} (load ${loadavg()[0].toFixed(1)})`;
const modelCell = `${card.architecture} ${card.inputSize}²${'model' in source ? ' (random)' : ''}`;
const row = (label: string, ms: { median: number; min: number }, noCam: number, single: string, singleCam: string, prep: string, model: string, gm: string) =>
  console.log(
    `| ${mach} | ${modelCell} | ${(macs / 1e6).toFixed(1)} | ${label} | ${single} | ${singleCam} | ${prep} | ${model} | ${f0(noCam)} | ${f0(ms.median)} (${f0(ms.min)}) | ${gm} | ${gmacs(ms.median)} | ${ms.median <= 1000 ? 'yes' : 'no'} |`,
  );
row('1 (in-process)', inProcess, inProcessNoCam, f0(slice), f0(sliceCam), f0(prepOnly), f0(modelOnly), gmacs(modelOnly));
for (const p of pooled) row(`${p.threads} (pool)`, p.ms, p.msNoCam, '–', '–', '–', '–', '–');
classifier.dispose();
