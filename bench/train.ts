/**
 * Training throughput: samples/s of one SGD step on the WASM backend vs the same model in PyTorch on the CPU
 * (issue 3 item 8; not a test). `node --import tsx bench/train.ts [options]`. On a GPU host the same pair runs
 * as tfjs-webgpu vs PyTorch CUDA: `--backend webgpu --torch-device cuda`.
 *
 * tfjs side: `buildModel(arch, { inputSize, seed })`, `selectBackend('wasm')` (registers the WASM gradient
 * kernels), `installFastBatchNormGradient()` (as training does), and `trainStep(model, KerasSgd, x, y)` of
 * src/training/train.ts (Keras SGD, lr 0.01, momentum 0.9, Nesterov, decay 1e-6; softmax + categorical
 * cross-entropy) on one fixed random batch: x ~ N(0, 1) [batch, s, s, 3], random one-hot labels. `--warmup`
 * steps (default 3), then `--steps` timed steps → samples/s = batch · steps / time. tfjs-wasm runs on one
 * thread in Node.
 * PyTorch side: then (never at the same time) spawns `<python> bench/train_torch.py` with the same arch, input,
 * batch, warm-up and steps; it builds the same layers in PyTorch (NCHW), SGD Nesterov momentum 0.9,
 * cross-entropy, torch.set_num_threads(os.cpu_count()), and prints JSON.
 * The two models' trainable parameter counts are compared (exit code 1 when they differ).
 *
 * Output: both JSON results, then a markdown table header and row: machine (cores, CPU model), Node, torch
 * version + threads, arch, input, batch, tfjs-wasm samples/s, torch samples/s, ratio wasm/torch, load average
 * (1/5/15 min) at start, and the CPU other processes used during each side's timed steps (/proc/stat busy time
 * minus the benchmark's own, % of one core: a noisy machine shows there).
 *
 * Options: --arch NAME (cbr_small), --input N (128), --batch N (16), --steps N (20), --warmup N (3), --seed N (1),
 *   --backend NAME (tfjs backend: wasm by default; webgpu, tensorflow, cpu), --torch-device cpu|cuda (cpu),
 *   --python PATH (default: $SAX_PYTHON, else /usr/bin/python3 when it exists — where Debian's python3-torch
 *   lives; a pyenv/venv `python3` first on PATH usually lacks torch — else `python3`), --threads N (torch
 *   threads; default the core count), --no-torch (tfjs side only), --replicas N (tfjs: data-parallel steps on N
 *   threads, src/training/replicas.ts; default 1).
 *
 * With --replicas N > 1 the tfjs side trains as `sax-range train` with protocol `replicas: N` does: each step's
 * batch (the first `batch` slices of two phantom subjects, preprocessed every step as in training) is split into
 * N shards whose gradients N threads compute at once; rank 0 averages them and takes the SGD step.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import { BACKEND_PREFERENCES, selectBackend, type BackendPreference } from '../src/inference/backend.js';
import { installFastBatchNormGradient } from '../src/training/models/batchnorm-gradient.js';
import { buildModel, canonicalArchitecture, countParams, NUM_CLASSES } from '../src/training/models/index.js';
import { preprocessParamsFor } from '../src/inference/preprocess.js';
import { loadPhantom, prepareStacks } from '../src/training/data/index.js';
import { evalPlan, type PlanItem } from '../src/training/data/samples.js';
import { parseProtocol } from '../src/training/protocol.js';
import { ReplicaPool } from '../src/training/replicas.js';
import { applyGradients, batchTensors } from '../src/training/step.js';
import { KerasSgd, trainableVariables, trainStep } from '../src/training/train.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

function intArg(name: string, fallback: number, min: number): number {
  const v = Number(arg(name, String(fallback)));
  if (!Number.isInteger(v) || v < min) {
    console.error(`--${name}: integer ≥ ${min} expected, got ${arg(name, '')}`);
    process.exit(2);
  }
  return v;
}

/** Machine-wide busy CPU time (all cores, seconds) from /proc/stat; NaN when unavailable. */
function cpuBusySeconds(): number {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = v[3] + (v[4] ?? 0);
    return (v.slice(0, 8).reduce((a, b) => a + b, 0) - idle) / 100; // USER_HZ = 100 on Linux
  } catch {
    return NaN;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface TorchResult {
  torch: string;
  threads: number;
  trainableParams: number;
  totalParams: number;
  samplesPerSec: number;
  medianStepMs: number;
  minStepMs: number;
  seconds: number;
  featureSizes: number[];
  loadAvgStart: number[];
  ownCpuPct: number;
  otherCpuPct: number | null;
  model?: string;
}

const arch = canonicalArchitecture(arg('arch', 'cbr_small'));
const inputSize = intArg('input', 128, 1);
const batch = intArg('batch', 16, 1);
const steps = intArg('steps', 20, 1);
const warmup = intArg('warmup', 3, 0);
const seed = intArg('seed', 1, 0);
const threads = intArg('threads', cpus().length, 1);
const noTorch = process.argv.includes('--no-torch');
const replicas = intArg('replicas', 1, 1);
const backendPref = arg('backend', 'wasm') as BackendPreference;
if (!BACKEND_PREFERENCES.includes(backendPref)) {
  console.error(`--backend: one of ${BACKEND_PREFERENCES.join(', ')} expected, got ${backendPref}`);
  process.exit(2);
}
const torchDevice = arg('torch-device', 'cpu');
if (torchDevice !== 'cpu' && torchDevice !== 'cuda') {
  console.error(`--torch-device: cpu or cuda expected, got ${torchDevice}`);
  process.exit(2);
}
const python = arg('python', process.env.SAX_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'));

const cpuModel = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown CPU';
const machine = `${cpus().length} cores, ${cpuModel}`;
const loadStart = loadavg();
const started = new Date().toISOString();

// ---------------------------------------------------------------------------------------------------------
// tfjs (wasm unless --backend says otherwise)

const backend = await selectBackend(backendPref);
installFastBatchNormGradient();
const model = buildModel(arch, { inputSize, seed });
const params = countParams(model);
const paramsAll = countParams(model, false);
const opt = new KerasSgd(trainableVariables(model), { learningRate: 0.01, momentum: 0.9, nesterov: true, decay: 1e-6 });
const x = tf.randomNormal([batch, inputSize, inputSize, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
const y = tf.tidy(() => tf.cast(tf.oneHot(tf.randomUniform([batch], 0, NUM_CLASSES, 'int32', seed + 1) as tf.Tensor1D, NUM_CLASSES), 'float32')) as tf.Tensor2D;

let pool: ReplicaPool | undefined;
let step = async () => (await trainStep(model, opt, x, y)).loss;
if (replicas > 1) {
  const P = parseProtocol({ name: 'bench', architecture: arch, inputSize, channelMode: 'gray3', epochs: 1, batchSize: batch, learningRate: 0.01, oversample: 1, rotationDegrees: 0, folds: 1, seed, finalModel: true, replicas });
  const pp = preprocessParamsFor(arch, { inputSize, channelMode: 'gray3' });
  const subjects = loadPhantom(Math.max(2, Math.ceil(batch / 24)), seed);
  const stacks = prepareStacks(
    subjects.flatMap((s) => s.stacks),
    pp.clip,
    { shared: true },
  );
  const items = evalPlan(stacks).slice(0, batch);
  const batchFor = (its: readonly PlanItem[]) => batchTensors(stacks, its, pp);
  pool = new ReplicaPool(replicas - 1, { backend: backend.name, stacks, protocol: P, params: pp });
  await pool.startJob(
    subjects.map((s) => s.id),
    model,
  );
  step = async () => {
    const g = await pool!.gradients(model, opt.variables, items, batchFor);
    applyGradients(opt, g.grads);
    return g.loss;
  };
}
for (let i = 0; i < warmup; i++) await step();
const tensorsBefore = tf.memory().numTensors;
const stepMs: number[] = [];
let lastLoss = NaN;
const busy0 = cpuBusySeconds();
const own0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < steps; i++) {
  const t = performance.now();
  lastLoss = await step();
  stepMs.push(performance.now() - t);
}
const wasmSeconds = (performance.now() - t0) / 1000;
const ownCpu = process.cpuUsage(own0);
const ownSeconds = (ownCpu.user + ownCpu.system) / 1e6;
// CPU used by other processes during the timed steps, in % of one core (approximate: 10 ms ticks).
const otherCpuPct = (100 * Math.max(0, cpuBusySeconds() - busy0 - ownSeconds)) / wasmSeconds;
const leaked = tf.memory().numTensors - tensorsBefore;
const wasm = {
  framework: `tfjs-${backend.name}`,
  backendReason: backend.reason,
  tfjs: tf.version.tfjs,
  backend: backend.name,
  threads: backend.name === 'wasm' ? replicas : null,
  replicas,
  node: process.version,
  arch,
  input: inputSize,
  batch,
  warmup,
  steps,
  trainableParams: params,
  totalParams: paramsAll,
  seconds: wasmSeconds,
  samplesPerSec: (batch * steps) / wasmSeconds,
  medianStepMs: median(stepMs),
  minStepMs: Math.min(...stepMs),
  lastLoss,
  leakedTensors: leaked,
  loadAvgStart: loadStart,
  ownCpuPct: (100 * ownSeconds) / wasmSeconds,
  otherCpuPct,
  started,
};
console.log(JSON.stringify(wasm));
await pool?.close();
x.dispose();
y.dispose();
opt.dispose();
model.dispose();

// ---------------------------------------------------------------------------------------------------------
// PyTorch (after the tfjs run, so that the two never share the cores)

let torchRes: TorchResult | undefined;
let exitCode = 0;
if (!noTorch) {
  const script = fileURLToPath(new URL('./train_torch.py', import.meta.url));
  const argv = [script, '--arch', arch, '--input', String(inputSize), '--batch', String(batch), '--steps', String(steps), '--warmup', String(warmup), '--seed', String(seed), '--threads', String(threads), '--device', torchDevice];
  const r = spawnSync(python, argv, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.error || r.status !== 0) {
    console.error(`${python} ${argv.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
    console.error('PyTorch missing? Debian: apt-get install python3-torch, then --python /usr/bin/python3');
    exitCode = 1;
  } else {
    torchRes = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as TorchResult;
    const { model: torchModel, ...rest } = torchRes;
    console.log(JSON.stringify({ framework: 'pytorch', ...rest }));
    if (process.argv.includes('--print-model') && torchModel) console.log(torchModel);
    if (torchRes.trainableParams !== params) {
      console.error(`PARAMETER MISMATCH: tfjs ${params} trainable, PyTorch ${torchRes.trainableParams}`);
      exitCode = 1;
    } else {
      console.log(`trainable parameters match: ${params} (with BN moving statistics: tfjs ${paramsAll}, PyTorch ${torchRes.totalParams})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Markdown row

const f1 = (v: number) => v.toFixed(1);
const la = loadStart.map((v) => v.toFixed(2)).join(' / ');
console.log('');
console.log(
  `| machine | Node | torch (threads, device) | arch | input | batch | tfjs-${backend.name}${replicas > 1 ? ` ×${replicas} threads` : ''} samples/s | torch samples/s | ${backend.name}/torch | load avg at start (1/5/15 min) | other CPU during tfjs / torch |`,
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
const pct = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? '—' : `${v.toFixed(0)} %`);
console.log(
  `| ${machine} | ${process.version} | ${torchRes ? `${torchRes.torch} (${torchRes.threads}, ${torchDevice})` : '—'} | ${arch} | ${inputSize}² | ${batch} | ` +
    `${f1(wasm.samplesPerSec)} | ${torchRes ? f1(torchRes.samplesPerSec) : '—'} | ${torchRes ? (wasm.samplesPerSec / torchRes.samplesPerSec).toFixed(2) : '—'} | ${la} | ` +
    `${pct(otherCpuPct)} / ${pct(torchRes?.otherCpuPct)} |`,
);
process.exit(exitCode);
