/**
 * One training epoch timed on the selected backend (issue 5 item 7: so that a GPU host can record the paper's
 * workload; not a test). `node --import tsx bench/train-epoch.ts [options]`
 *
 * Runs the real training path — `runTraining` of src/training/train.ts with data loading, augmentation,
 * batches, SGD and the checkpoint — on one protocol (a single-run file, or one cell of a grid file) reduced
 * to the final model only (folds 1, no CV) for `--epochs` epochs, and reads the per-epoch records the trainer
 * writes (checkpoints/final/state.json). The first epoch includes one-off costs (WebGPU shader compilation,
 * XNNPACK packing), so the default is 2 epochs and the last one is the figure to record.
 *
 * Output: the per-epoch records as JSON, then a markdown table header and row: machine (cores, CPU model,
 * GPU adapter or backend detail), Node, backend, cell, input, batch, samples per epoch, epoch seconds,
 * samples/s.
 *
 * Options: --backend NAME (auto; webgpu, tensorflow, wasm, cpu), --protocol FILE (config/protocols/ci.json),
 *   --cell TEXT (grid files: the first cell whose name contains TEXT, e.g. `scratch/mobilenet`; default the
 *   first cell), --dataset SPEC (phantom:8), --epochs N (2), --input N (overrides the protocol's inputSize),
 *   --batch N (overrides batchSize), --out DIR (default a temporary folder, removed afterwards), --weights none
 *   (start an ImageNet cell from random weights: the time of a step does not depend on the weights' values, so
 *   a host without the Keras files can still time the paper's depth-0/depth-1 cells).
 *
 * A GPU host: `node --import tsx bench/train-epoch.ts --backend webgpu --protocol config/protocols/paper.json
 *   --cell D0/vgg16 --dataset acdc:../shared/data/acdc` (tfjs-node-gpu: `--backend tensorflow`).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { adapterDescription, BACKEND_PREFERENCES, type BackendPreference } from '../src/inference/backend.js';
import { expandGrid, loadProtocolFile, type Protocol } from '../src/training/protocol.js';
import { runTraining, type EpochRecord } from '../src/training/train.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

function intArg(name: string, fallback: number | undefined, min: number): number | undefined {
  const raw = arg(name, fallback === undefined ? '' : String(fallback));
  if (raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) {
    console.error(`--${name}: integer ≥ ${min} expected, got ${raw}`);
    process.exit(2);
  }
  return v;
}

const backend = arg('backend', 'auto') as BackendPreference;
if (!BACKEND_PREFERENCES.includes(backend)) {
  console.error(`--backend: one of ${BACKEND_PREFERENCES.join(', ')} expected, got ${backend}`);
  process.exit(2);
}
const protocolFile = arg('protocol', 'config/protocols/ci.json');
const cellText = arg('cell', '');
const dataset = arg('dataset', 'phantom:8');
const epochs = intArg('epochs', 2, 1)!;
const input = intArg('input', undefined, 16);
const batch = intArg('batch', undefined, 1);
const weightsArg = arg('weights', '');
if (weightsArg !== '' && weightsArg !== 'none') {
  console.error(`--weights: only 'none' can be given (the protocol's own weights are the default), got ${weightsArg}`);
  process.exit(2);
}

const file = await loadProtocolFile(protocolFile);
let base: Protocol;
if (file.kind === 'grid') {
  const cells = expandGrid(file.grid);
  const found = cells.find((c) => c.name.includes(cellText));
  if (!found) {
    console.error(`--cell ${cellText}: no cell of ${protocolFile} matches (cells: ${cells.map((c) => c.name).join(', ')})`);
    process.exit(2);
  }
  base = found;
} else {
  base = file.protocol;
}
const protocol: Protocol = {
  ...base,
  name: `${base.name.replace(/\//g, '-')}-epoch-bench`,
  epochs,
  folds: 1,
  finalModel: true,
  heldOutTest: 'none',
  parallelFolds: 1,
  ...(input ? { inputSize: input } : {}),
  ...(batch ? { batchSize: batch } : {}),
  // A depth-1 cell needs the depth-0 model of a grid run: time it as a depth-1 run from ImageNet weights.
  ...(base.startFrom === 'depth0-final' ? { startFrom: 'init' as const, weights: 'imagenet' as const } : {}),
};

const outArg = arg('out', '');
const out = outArg ? resolve(outArg) : await mkdtemp(join(tmpdir(), 'sax-range-epoch-bench-'));
let records: EpochRecord[];
let backendName: string;
try {
  const r = await runTraining({ protocol, dataset, out, backend, progress: true, randomImagenetBase: weightsArg === 'none' });
  backendName = r.backend;
  const state = JSON.parse(await readFile(join(out, 'checkpoints', 'final', 'state.json'), 'utf8')) as { result: { records: EpochRecord[] } };
  records = state.result.records;
} finally {
  if (!outArg) await rm(out, { recursive: true, force: true });
}

const last = records[records.length - 1];
const adapter = await gpuAdapter(backendName);
const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
console.log(JSON.stringify({ backend: backendName, adapter, protocol: base.name, dataset, records }, null, 2));
console.log('');
console.log('| machine | node | backend | cell | input | batch | samples/epoch | epoch s (last of ' + records.length + ') | samples/s |');
console.log('|---|---|---|---|---|---|---|---|---|');
console.log(
  `| ${cpus().length} cores, ${cpuModel}${adapter ? `; ${adapter}` : ''} | ${process.version} | ${backendName} | ${base.name} | ${protocol.inputSize}² | ${protocol.batchSize} | ${last.samples} | ${last.seconds} | ${last.samplesPerSecond} |`,
);

/** The WebGPU adapter's description when that backend ran (the tfjs backend itself does not expose it). */
async function gpuAdapter(name: string): Promise<string | undefined> {
  if (name !== 'webgpu') return undefined;
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<{ info?: Record<string, unknown> } | null> } } }).navigator?.gpu;
  return adapterDescription(await gpu?.requestAdapter()) || undefined;
}
