/**
 * The training core: `runTraining` (behind `sax-range train --protocol FILE --dataset SPEC --out DIR`).
 *
 * 1. Load the dataset spec, optionally take a group-balanced subset (`maxSubjects`), clip every plane once.
 * 2. k-fold patient-level CV (k = protocol.folds > 1, stratified by group): per fold, train from a seeded
 *    initialisation for `epochs` epochs, evaluating the validation fold after every epoch (argmax and
 *    range-decoded metrics, ED and ES separately). Folds run in-process, or `parallelFolds` at a time in
 *    worker threads (tfjs-wasm is single-threaded in Node: one tfjs instance per worker uses one core each).
 * 3. Pick the epoch that maximises the mean validation curve over folds (`selectionMetric`, default argmax
 *    balanced accuracy; ties → the earliest), and pool the out-of-fold predictions at that epoch: every
 *    subject is predicted once, by the fold model that did not see it.
 * 4. With `finalModel`, train on all subjects for the selected number of epochs and write `<out>/model/`
 *    (model dir + card holding the CV metrics and how they were measured).
 * Outputs: `<out>/cv.json`, `<out>/cv-predictions.csv`, `<out>/report.md`, `<out>/model/`,
 * `<out>/checkpoints/<job>/` (per job: `state.json`, the last epoch's model dir + optimizer state, `best/`).
 *
 * Optimisation (notes/paper.md §8): Keras 2.2 SGD exactly — lr_t = lr0 / (1 + decay·t) with t the number of
 * updates so far; v ← μ·v − lr_t·g; w ← w + μ·v − lr_t·g (Nesterov) or w ← w + v; categorical cross-entropy
 * of the softmax (Keras clipping at 1e-7). Written as its own small optimizer so that its state (t, v) is
 * checkpointed and `resume` continues exactly where it stopped.
 * Determinism: initial weights, the split, the epoch plans (order, oversampling, rotations) are seeded;
 * dropout masks are not (tfjs' seeded dropout would reuse one mask for every batch), so two runs differ
 * slightly after the first update.
 */

import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isMainThread, parentPort, Worker, workerData, type WorkerOptions } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { readBack, selectBackend, type BackendName, type BackendPreference } from '../inference/backend.js';
import { LABELS } from '../inference/decode.js';
import { loadModelDir, saveModelDir, type ModelCard, type ModelCardInput } from '../inference/model-dir.js';
import { preprocessParamsFor, type PreprocessParams } from '../inference/preprocess.js';
import { hashSeed } from '../phantom/prng.js';
import { packageVersion } from '../version.js';
import { buildBatch, epochPlan, evalPlan, prepareStacks, type PlanItem, type PreparedStack } from './data/samples.js';
import { combinedLicense, loadDataset } from './data/spec.js';
import { foldSets, kFoldSplit, subsetSubjects } from './data/split.js';
import { labelCounts, type DatasetPartInfo, type LabelledDataset, type LabelledSubject, type SliceLabel } from './data/types.js';
import { evaluatePredictions, meanStd, type EvaluationSummary, type StackMetrics, type StackPrediction } from './metrics.js';
import { installFastBatchNormGradient } from './models/batchnorm-gradient.js';
import { applyDepth } from './models/freeze.js';
import { loadImagenetWeights } from './models/imagenet-weights.js';
import { buildTrainingModel, canonicalArchitecture, countMacs, countParams, isImagenetArchitecture, lastConvLayerName } from './models/index.js';
import { recalibrateBatchNorm } from './precise-bn.js';
import { cardDecoding, fitPriorOnCv, type CvDecodingPrior } from './decoding-prior.js';
import { formatCvPredictions, type FoldStackPrediction } from './cv-predictions.js';
import { applyGradients, batchTensors, KerasSgd, seedDropout, stepScheduleScale, trainableVariables, trainStep } from './step.js';
import { ReplicaPool } from './replicas.js';
import { spawnModuleWorker } from './worker-spawn.js';
import { effectiveDepth, loadProtocol, parseProtocol, ProtocolError, type Protocol } from './protocol.js';
import { formatDuration, TrainingProgress, type BatchEvent } from './progress.js';

// ---------------------------------------------------------------------------------------------------------
// Optimizer, loss and one step (src/training/step.ts; re-exported for existing importers)

export { categoricalCrossentropy, KerasSgd, trainableVariables, trainStep, type SgdOptions } from './step.js';

/** Predicts an NHWC buffer in batches; returns n × 3 probabilities (OAP, IN, OBS). */
export async function predictBuffer(model: tf.LayersModel, x: Float32Array, n: number, size: number, batchSize: number): Promise<Float32Array> {
  const per = size * size * 3;
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i += batchSize) {
    const m = Math.min(batchSize, n - i);
    const p = tf.tidy(() => model.predict(tf.tensor4d(x.subarray(i * per, (i + m) * per), [m, size, size, 3])) as tf.Tensor);
    out.set((await readBack(p)) as Float32Array, i * 3);
    p.dispose();
  }
  return out;
}

/**
 * Predicts every slice of prepared stacks (unrotated; what `evaluate`/`predict` need): one StackPrediction
 * per stack, probability rows [pOAP, pIN, pOBS] apex → base. Builds inputs batch by batch (bounded memory).
 */
export async function predictPreparedStacks(model: tf.LayersModel, stacks: readonly PreparedStack[], params: PreprocessParams, batchSize = 64): Promise<StackPrediction[]> {
  const plan = evalPlan(stacks);
  const probs = new Float32Array(plan.length * 3);
  for (let i = 0; i < plan.length; i += batchSize) {
    const items = plan.slice(i, i + batchSize);
    const { x } = buildBatch(stacks, items, params);
    probs.set(await predictBuffer(model, x, items.length, params.inputSize, batchSize), i * 3);
  }
  let o = 0;
  return stacks.map((s) => ({
    subject: s.subject,
    phase: s.phase,
    truth: [...s.labels],
    probs: s.labels.map(() => {
      const row = [probs[o * 3], probs[o * 3 + 1], probs[o * 3 + 2]];
      o++;
      return row;
    }),
  }));
}

// ---------------------------------------------------------------------------------------------------------
// Jobs (one CV fold or the final model)

export interface JobSpec {
  /** 'fold-1' … 'fold-k' or 'final'. */
  name: string;
  /** 0-based fold index; k for the final model. */
  index: number;
  /** 1-based position and job count (progress labels). */
  number: number;
  jobs: number;
  train: string[];
  val: string[];
  epochs: number;
  /** Initialisation seed. */
  seed: number;
  /** Checkpoint folder of the job. */
  dir: string;
  /** Hash of everything that determines the job's result (resume refuses a mismatch). */
  fingerprint: string;
}

/** Compact per-epoch validation metrics (the full ones are kept for the selected epoch). */
export interface CompactMetrics {
  accuracy: number;
  balancedAccuracy: number;
  macroF1: number;
  softAccuracy: number;
  rangeExact: number;
  f1: Record<SliceLabel, number>;
  recall: Record<SliceLabel, number>;
}

export interface CompactSummary {
  logLoss: number;
  all: { argmax: CompactMetrics; decoded: CompactMetrics };
  ED?: { argmax: CompactMetrics; decoded: CompactMetrics };
  ES?: { argmax: CompactMetrics; decoded: CompactMetrics };
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  /** Learning rate of the epoch's last update. */
  learningRate: number;
  iterations: number;
  samples: number;
  seconds: number;
  samplesPerSecond: number;
  /** Validation metrics after the epoch (CV folds only). */
  val?: CompactSummary;
  /** tf.memory() after the epoch (a growing numTensors would be a leak). */
  memory: { numTensors: number; numBytes: number };
}

export interface ValStack {
  subject: string;
  phase: string;
  truth: SliceLabel[];
  sourceSlices: number[];
}

export interface JobResult {
  name: string;
  index: number;
  trainSubjects: number;
  valSubjects: number;
  trainSlices: number;
  samplesPerEpoch: number;
  records: EpochRecord[];
  valStacks: ValStack[];
  /** Validation probabilities per epoch: [epoch − 1][stack][slice] = [pOAP, pIN, pOBS]. */
  valProbs: number[][][][];
  bestEpoch?: number;
  /** Training seconds over all sessions. */
  seconds: number;
  iterations: number;
}

interface JobState {
  schema: 'sax-range/train-job@1';
  fingerprint: string;
  job: Omit<JobSpec, 'dir'>;
  epochsDone: number;
  /** Folder (relative to the job dir) of the last epoch's checkpoint. */
  current?: string;
  done: boolean;
  result: JobResult;
  bestScore?: number;
}

export interface JobHooks {
  batch(ev: BatchEvent): void;
  note(line: string): void;
  log(level: 'info' | 'warn' | 'debug', obj: Record<string, unknown>, msg: string): void;
}

export interface JobContext {
  protocol: Protocol;
  params: PreprocessParams;
  stacks: PreparedStack[];
  backend: string;
  datasets: string[];
  license: { data: string; citation: string };
  resume: boolean;
  hooks: JobHooks;
  /** Model dir a job starts from instead of a fresh build (a depth-1 grid cell: the depth-0 final model). */
  initialModel?: string;
  /** RunTrainingOptions.randomImagenetBase. */
  randomImagenetBase?: boolean;
  /** Helper threads for data-parallel steps (protocol `replicas` > 1): src/training/replicas.ts. */
  replicas?: ReplicaPool;
}

function compact(m: StackMetrics['argmax']): CompactMetrics {
  const f1 = {} as Record<SliceLabel, number>;
  const recall = {} as Record<SliceLabel, number>;
  for (const l of LABELS) {
    f1[l] = round(m.perClass[l].f1);
    recall[l] = round(m.perClass[l].recall);
  }
  return {
    accuracy: round(m.accuracy),
    balancedAccuracy: round(m.balancedAccuracy),
    macroF1: round(m.macroF1),
    softAccuracy: round(m.softAccuracy),
    rangeExact: round(m.rangeExact),
    f1,
    recall,
  };
}

export function compactSummary(s: EvaluationSummary): CompactSummary {
  const c = (m: StackMetrics) => ({ argmax: compact(m.argmax), decoded: compact(m.decoded) });
  const out: CompactSummary = { logLoss: round(s.all.logLoss), all: c(s.all) };
  if (s.ED) out.ED = c(s.ED);
  if (s.ES) out.ES = c(s.ES);
  return out;
}

function round(x: number, digits = 6): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The selection metric's value (logLoss: lower is better; rangeExact: range-decoded; the others: argmax). */
function selectionValue(s: CompactSummary, metric: Protocol['selectionMetric']): number {
  if (metric === 'logLoss') return s.logLoss;
  if (metric === 'rangeExact') return s.all.decoded.rangeExact;
  return s.all.argmax[metric];
}

/** The value of the selection metric in a compact summary, oriented so that larger is better. */
export function selectionScore(s: CompactSummary, metric: Protocol['selectionMetric']): number {
  const v = selectionValue(s, metric);
  return metric === 'logLoss' ? -v : v;
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 1)}\n`);
  await rename(tmp, path);
}

async function readJobState(dir: string): Promise<JobState | undefined> {
  const p = join(dir, 'state.json');
  if (!existsSync(p)) return undefined;
  return JSON.parse(await readFile(p, 'utf8')) as JobState;
}

const OPTIMIZER_BIN = 'optimizer.bin';
const OPTIMIZER_JSON = 'optimizer.json';

async function saveOptimizer(dir: string, opt: KerasSgd): Promise<void> {
  const s = await opt.getState();
  await writeFile(join(dir, OPTIMIZER_BIN), new Uint8Array(s.data.buffer, s.data.byteOffset, s.data.byteLength));
  await writeFile(join(dir, OPTIMIZER_JSON), JSON.stringify({ iterations: s.iterations, shapes: s.shapes, options: opt.opts }));
}

async function loadOptimizer(dir: string, opt: KerasSgd): Promise<void> {
  const meta = JSON.parse(await readFile(join(dir, OPTIMIZER_JSON), 'utf8')) as { iterations: number; shapes: number[][] };
  const bin = await readFile(join(dir, OPTIMIZER_BIN));
  const data = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  opt.setState({ iterations: meta.iterations, shapes: meta.shapes, data });
}

export function versions(): Record<string, string> {
  return { 'sax-range': packageVersion(), node: process.version, tfjs: tf.version.tfjs };
}

export interface CardParts {
  id: string;
  protocol: Protocol;
  params: PreprocessParams;
  model: tf.LayersModel;
  backend: string;
  datasets: string[];
  subjects: number;
  epochs: number;
  seconds: number;
  metrics: Record<string, unknown>;
  evaluation: { method: string } & Record<string, unknown>;
  license: { data: string; citation: string };
  description?: string;
  /** Range decoding settings (`cardDecoding`). */
  decoding?: ModelCard['decoding'];
}

/** A model card for a model trained by this module. */
export function makeCard(p: CardParts): ModelCardInput {
  const createdAt = new Date().toISOString();
  const card: ModelCardInput = {
    schema: 'sax-range/model-card@1',
    id: p.id,
    version: `${createdAt.slice(0, 10).replace(/-/g, '')}-${packageVersion()}`,
    architecture: canonicalArchitecture(p.protocol.architecture),
    inputSize: p.params.inputSize,
    channelMode: p.params.channelMode,
    preprocessing: p.params,
    classes: ['OAP', 'IN', 'OBS'],
    lastConvLayer: lastConvLayerName(p.model),
    macs: countMacs(p.model),
    params: countParams(p.model, false),
    training: {
      protocol: { ...p.protocol },
      datasets: p.datasets,
      subjects: p.subjects,
      epochs: p.epochs,
      batchSize: p.protocol.batchSize,
      optimizer: {
        name: 'sgd',
        learningRate: p.protocol.learningRate,
        momentum: p.protocol.momentum,
        nesterov: p.protocol.nesterov,
        decay: p.protocol.decay,
        schedule: 'keras time-based: lr0 / (1 + decay * updates)',
      },
      seed: p.protocol.seed,
      backend: p.backend,
      durationSeconds: round(p.seconds, 1),
      versions: versions(),
    },
    metrics: p.metrics,
    evaluation: p.evaluation,
    license: p.license,
    createdAt,
  };
  const archOptions: Record<string, unknown> = {};
  if (p.protocol.padding) archOptions.padding = p.protocol.padding;
  if (p.protocol.alpha !== undefined) archOptions.alpha = p.protocol.alpha;
  if (isImagenetArchitecture(p.protocol.architecture)) Object.assign(archOptions, { weights: p.protocol.weights, depth: effectiveDepth(p.protocol) });
  if (Object.keys(archOptions).length) card.architectureOptions = archOptions;
  if (p.description) card.description = p.description;
  if (p.decoding) card.decoding = p.decoding;
  return card;
}

/** Trains one job (fold or final model), with per-epoch checkpoints; resumes from them when asked. */
export async function trainJob(job: JobSpec, ctx: JobContext): Promise<JobResult> {
  const { protocol: P, params, hooks } = ctx;
  const trainSet = new Set(job.train);
  const valSet = new Set(job.val);
  const train = ctx.stacks.filter((s) => trainSet.has(s.subject));
  const val = ctx.stacks.filter((s) => valSet.has(s.subject));
  if (!train.length) throw new Error(`${job.name}: no training stacks`);
  const trainSlices = train.reduce((a, s) => a + s.labels.length, 0);
  const samplesPerEpoch = train.reduce((a, s) => a + s.labels.reduce((b, l) => b + (l === 'IN' ? 1 : P.oversample), 0), 0);
  await mkdir(job.dir, { recursive: true });

  let state = await readJobState(job.dir);
  if (state && !ctx.resume) throw new Error(`${job.dir} holds a checkpoint: resume it (--resume) or use a new --out`);
  if (state && state.fingerprint !== job.fingerprint) {
    throw new Error(`${job.dir}: the checkpoint was made with another protocol, dataset or split; use a new --out`);
  }
  if (state?.done) {
    hooks.log('info', { job: job.name, epochs: state.epochsDone }, 'job already done (resumed from checkpoint)');
    return state.result;
  }
  const valStacks: ValStack[] = val.map((s) => ({ subject: s.subject, phase: s.phase, truth: [...s.labels], sourceSlices: [...s.sourceSlices] }));
  if (!state) {
    state = {
      schema: 'sax-range/train-job@1',
      fingerprint: job.fingerprint,
      job: (({ dir: _dir, ...rest }) => rest)(job),
      epochsDone: 0,
      done: false,
      result: {
        name: job.name,
        index: job.index,
        trainSubjects: job.train.length,
        valSubjects: job.val.length,
        trainSlices,
        samplesPerEpoch,
        records: [],
        valStacks,
        valProbs: [],
        seconds: 0,
        iterations: 0,
      },
    };
  }

  let model: tf.LayersModel;
  if (state.current && state.epochsDone > 0) {
    ({ model } = await loadModelDir(join(job.dir, state.current)));
    hooks.log('info', { job: job.name, epoch: state.epochsDone }, 'resuming from checkpoint');
  } else if (ctx.initialModel) {
    ({ model } = await loadModelDir(ctx.initialModel));
    hooks.log('info', { job: job.name, from: ctx.initialModel }, 'starting from a trained model');
  } else {
    model = buildTrainingModel(P, job.seed);
    if (P.weights === 'imagenet' && ctx.randomImagenetBase) {
      hooks.log('warn', { job: job.name, architecture: P.architecture }, 'ImageNet weights NOT loaded: the base keeps random weights (randomImagenetBase; for timing only)');
    } else if (P.weights === 'imagenet') {
      const w = await loadImagenetWeights(model, P.architecture, P.weightsDir, P.alpha ?? 1);
      hooks.log('info', { job: job.name, weights: w.path, layers: w.assigned.length, verified: w.verified }, 'ImageNet weights loaded');
    }
  }
  // What trains (depth 0/1 freeze the base; 'full' trains everything). Set before the optimizer takes the
  // trainable variables, and again after a resume (the flags are not part of the checkpoint's contract).
  if (isImagenetArchitecture(P.architecture)) applyDepth(model, P.architecture, effectiveDepth(P));
  const opt = new KerasSgd(trainableVariables(model), { learningRate: P.learningRate, momentum: P.momentum, nesterov: P.nesterov, decay: P.decay });
  if (state.current && state.epochsDone > 0) await loadOptimizer(join(job.dir, state.current), opt);
  const replicas = ctx.replicas;
  if (replicas) await replicas.startJob(job.train, model);
  const batchFor = (items: readonly PlanItem[]) => batchTensors(train, items, params);

  // Validation inputs never change: build them once.
  const vPlan = evalPlan(val);
  const vBatch = val.length ? buildBatch(val, vPlan, params) : undefined;
  const batches = Math.ceil(samplesPerEpoch / P.batchSize);
  const every = P.progressEvery ?? Math.max(1, Math.round(batches / 10));
  const result = state.result;

  try {
    for (let epoch = state.epochsDone + 1; epoch <= job.epochs; epoch++) {
      const t0 = performance.now();
      opt.scale = stepScheduleScale(epoch, P.lrDropEpochs, P.lrDropFactor ?? 0.1);
      const plan = epochPlan(train, { oversample: P.oversample, rotationDegrees: P.rotationDegrees, seed: hashSeed(P.seed, 0x65706f63, job.index, epoch) });
      let lossSum = 0;
      let correct = 0;
      for (let b = 0; b < batches; b++) {
        const tb = performance.now();
        const items = plan.slice(b * P.batchSize, (b + 1) * P.batchSize);
        const lr = opt.currentLearningRate();
        let r: { loss: number; correct: number };
        const dropoutSeed = hashSeed(job.seed, 0x64726f70, epoch, b);
        try {
          if (replicas) {
            const g = await replicas.gradients(model, opt.variables, items, batchFor, dropoutSeed);
            applyGradients(opt, g.grads);
            r = g;
          } else {
            seedDropout(model, dropoutSeed);
            const { x, y } = batchFor(items);
            try {
              r = await trainStep(model, opt, x, y);
            } finally {
              x.dispose();
              y.dispose();
            }
          }
        } catch (err) {
          throw wasmHint(err, P);
        }
        if (!Number.isFinite(r.loss)) throw new Error(`${job.name} epoch ${epoch} batch ${b + 1}: loss is ${r.loss} (learning rate ${lr} too high?)`);
        lossSum += r.loss * items.length;
        correct += r.correct;
        hooks.batch({ job: job.name, jobNumber: job.number, jobs: job.jobs, epoch, epochs: job.epochs, batch: b + 1, batches, loss: r.loss, lr, samples: items.length, seconds: (performance.now() - tb) / 1000 });
        if ((b + 1) % every === 0) await new Promise((res) => setImmediate(res)); // let messages/log lines out
      }
      if (P.bnRecalibrationBatches) {
        const calib = epochPlan(train, { oversample: P.oversample, rotationDegrees: P.rotationDegrees, seed: hashSeed(P.seed, 0x62726563, job.index, epoch) });
        const n = Math.min(P.bnRecalibrationBatches, Math.ceil(calib.length / P.batchSize));
        await recalibrateBatchNorm(model, (function* () {
          for (let b = 0; b < n; b++) {
            const { x, y } = batchFor(calib.slice(b * P.batchSize, (b + 1) * P.batchSize));
            y.dispose();
            try {
              yield x;
            } finally {
              x.dispose();
            }
          }
        })());
      }
      const trainSeconds = (performance.now() - t0) / 1000;
      const rec: EpochRecord = {
        epoch,
        trainLoss: round(lossSum / plan.length),
        trainAccuracy: round(correct / plan.length),
        learningRate: opt.currentLearningRate(),
        iterations: opt.iterations,
        samples: plan.length,
        seconds: round(trainSeconds, 2),
        samplesPerSecond: round(plan.length / trainSeconds, 2),
        memory: { numTensors: 0, numBytes: 0 },
      };
      if (vBatch) {
        const probs = await predictBuffer(model, vBatch.x, vPlan.length, params.inputSize, P.evalBatchSize);
        const perStack: number[][][] = [];
        let o = 0;
        for (const s of val) {
          const rows: number[][] = [];
          for (let i = 0; i < s.labels.length; i++, o++) rows.push([round(probs[o * 3]), round(probs[o * 3 + 1]), round(probs[o * 3 + 2])]);
          perStack.push(rows);
        }
        result.valProbs.push(perStack);
        const summary = evaluatePredictions(val.map((s, i) => ({ subject: s.subject, phase: s.phase, truth: s.labels, probs: perStack[i] })));
        rec.val = compactSummary(summary);
      }
      const mem = tf.memory();
      rec.memory = { numTensors: mem.numTensors, numBytes: mem.numBytes };
      result.records.push(rec);
      result.seconds = round(result.seconds + trainSeconds, 2);
      result.iterations = opt.iterations;
      hooks.note(epochLine(job, rec));
      hooks.log('info', { job: job.name, ...rec, val: rec.val ? { ...rec.val.all.argmax, logLoss: rec.val.logLoss } : undefined }, 'epoch done');

      // Checkpoint: the new epoch folder first, then state.json pointing at it, then drop the old one.
      const folder = `epoch-${String(epoch).padStart(3, '0')}`;
      const cardFor = (id: string) =>
        makeCard({
          id,
          protocol: P,
          params,
          model,
          backend: ctx.backend,
          datasets: ctx.datasets,
          subjects: job.train.length,
          epochs: epoch,
          seconds: result.seconds,
          metrics: rec.val ? { validation: rec.val } : {},
          evaluation: {
            method: rec.val
              ? `checkpoint of ${job.name} after epoch ${epoch}; metrics on its validation fold (${job.val.length} subjects)`
              : `checkpoint of ${job.name} after epoch ${epoch}; not evaluated`,
          },
          license: ctx.license,
        });
      await saveModelDir(join(job.dir, folder), model, cardFor(`${P.name}-${job.name}-epoch${epoch}`));
      await saveOptimizer(join(job.dir, folder), opt);
      if (rec.val) {
        const score = selectionScore(rec.val, P.selectionMetric);
        if (state.bestScore === undefined || score > state.bestScore) {
          state.bestScore = score;
          result.bestEpoch = epoch;
          await saveModelDir(join(job.dir, 'best'), model, cardFor(`${P.name}-${job.name}-best`));
        }
      }
      const previous = state.current;
      state.current = folder;
      state.epochsDone = epoch;
      state.done = epoch === job.epochs;
      await writeJsonAtomic(join(job.dir, 'state.json'), state);
      if (previous && previous !== folder) await rm(join(job.dir, previous), { recursive: true, force: true });
    }
    if (!state.done) {
      state.done = true;
      await writeJsonAtomic(join(job.dir, 'state.json'), state);
    }
  } finally {
    opt.dispose();
    model.dispose();
  }
  return result;
}

function epochLine(job: JobSpec, r: EpochRecord): string {
  const v = r.val
    ? ` | val BA ${r.val.all.argmax.balancedAccuracy.toFixed(3)} F1 OAP/IN/OBS ${LABELS.map((l) => r.val!.all.argmax.f1[l].toFixed(2)).join('/')} ` +
      `soft ${r.val.all.argmax.softAccuracy.toFixed(3)} range-exact ${r.val.all.decoded.rangeExact.toFixed(3)} logloss ${r.val.logLoss.toFixed(3)}`
    : '';
  return (
    `[${job.name} ${job.number}/${job.jobs}] epoch ${r.epoch}/${job.epochs} done in ${formatDuration(r.seconds)}: ` +
    `loss ${r.trainLoss.toFixed(4)} acc ${r.trainAccuracy.toFixed(3)} ${r.samplesPerSecond.toFixed(1)} samples/s tensors ${r.memory.numTensors}${v}`
  );
}

function wasmHint(err: unknown, P: Protocol): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  if (/Aborted|out of bounds|out of memory|Cannot enlarge memory/i.test(e.message)) {
    e.message += ` (the WASM heap is limited to 2–4 GB: lower batchSize ${P.batchSize} or inputSize ${P.inputSize})`;
  }
  return e;
}

// ---------------------------------------------------------------------------------------------------------
// Runners: in-process or a pool of worker threads

interface JobRunner {
  run(job: JobSpec): Promise<JobResult>;
  close(): Promise<void>;
}

const WORKER_MARK = 'saxRangeTrainingWorker';

interface WorkerInit {
  [WORKER_MARK]: true;
  backend: BackendName;
  stacks: PreparedStack[];
  protocol: Protocol;
  params: PreprocessParams;
  datasets: string[];
  license: { data: string; citation: string };
  resume: boolean;
  initialModel?: string;
  randomImagenetBase?: boolean;
}

type FromWorker =
  | { type: 'ready'; backend: string }
  | { type: 'batch'; ev: BatchEvent }
  | { type: 'note'; line: string }
  | { type: 'log'; level: 'info' | 'warn' | 'debug'; obj: Record<string, unknown>; msg: string }
  | { type: 'done'; result: JobResult }
  | { type: 'error'; message: string; stack?: string };

function inProcessRunner(ctx: JobContext): JobRunner {
  return { run: (job) => trainJob(job, ctx), close: async () => {} };
}

function spawnTrainingWorker(options: WorkerOptions): Worker {
  return spawnModuleWorker(import.meta.url, options);
}

function poolRunner(size: number, init: Omit<WorkerInit, typeof WORKER_MARK>, hooks: JobHooks): JobRunner {
  interface Slot {
    worker: Worker;
    ready: Promise<void>;
    busy?: { resolve: (r: JobResult) => void; reject: (e: Error) => void };
    dead?: Error;
  }
  const queue: { job: JobSpec; resolve: (r: JobResult) => void; reject: (e: Error) => void }[] = [];
  const slots: Slot[] = [];
  const pump = (slot: Slot) => {
    if (slot.busy || slot.dead) return;
    const next = queue.shift();
    if (!next) return;
    slot.busy = { resolve: next.resolve, reject: next.reject };
    slot.ready.then(
      () => slot.worker.postMessage({ type: 'run', job: next.job }),
      (err: Error) => next.reject(err),
    );
  };
  const spawn = (): Slot => {
    const worker = spawnTrainingWorker({ workerData: { ...init, [WORKER_MARK]: true } satisfies WorkerInit });
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const slot: Slot = { worker, ready: new Promise<void>((res, rej) => ((readyResolve = res), (readyReject = rej))) };
    slot.ready.catch(() => {});
    const fail = (err: Error) => {
      if (slot.dead) return;
      slot.dead = err;
      readyReject(err);
      if (slot.busy) {
        const b = slot.busy;
        slot.busy = undefined;
        b.reject(err);
      }
      // Jobs still queued go to live workers; with none left they fail.
      if (slots.every((s) => s.dead)) while (queue.length) queue.shift()!.reject(err);
    };
    worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ready':
          readyResolve();
          break;
        case 'batch':
          hooks.batch(m.ev);
          break;
        case 'note':
          hooks.note(m.line);
          break;
        case 'log':
          hooks.log(m.level, m.obj, m.msg);
          break;
        case 'done': {
          const b = slot.busy;
          slot.busy = undefined;
          b?.resolve(m.result);
          pump(slot);
          break;
        }
        case 'error': {
          const e = new Error(m.message);
          if (m.stack) e.stack = m.stack;
          const b = slot.busy;
          if (!b) {
            fail(e); // start-up failure: the worker exits next
            break;
          }
          slot.busy = undefined;
          b.reject(e);
          pump(slot);
          break;
        }
      }
    });
    worker.on('error', (err) => fail(err instanceof Error ? err : new Error(String(err))));
    worker.on('exit', (code) => fail(new Error(`training worker exited (code ${code})`)));
    return slot;
  };
  for (let i = 0; i < size; i++) slots.push(spawn());
  return {
    run(job) {
      return new Promise<JobResult>((resolvePromise, reject) => {
        const live = slots.filter((s) => !s.dead);
        if (!live.length) return reject(slots[0]?.dead ?? new Error('no training worker alive'));
        queue.push({ job, resolve: resolvePromise, reject });
        for (const s of live) pump(s);
      });
    },
    async close() {
      await Promise.all(
        slots.map(async (s) => {
          if (s.dead) return;
          s.dead = new Error('closed');
          await s.worker.terminate();
        }),
      );
    },
  };
}

async function workerMain(): Promise<void> {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const post = (m: FromWorker) => port.postMessage(m);
  try {
    const sel = await selectBackend(init.backend);
    installFastBatchNormGradient();
    post({ type: 'ready', backend: sel.name });
  } catch (err) {
    post({ type: 'error', message: `worker backend: ${(err as Error).message}` });
    process.exit(1);
  }
  const hooks: JobHooks = {
    batch: (ev) => post({ type: 'batch', ev }),
    note: (line) => post({ type: 'note', line }),
    log: (level, obj, msg) => post({ type: 'log', level, obj, msg }),
  };
  const ctx: JobContext = {
    protocol: init.protocol,
    params: init.params,
    stacks: init.stacks,
    backend: init.backend,
    datasets: init.datasets,
    license: init.license,
    resume: init.resume,
    hooks,
    initialModel: init.initialModel,
    randomImagenetBase: init.randomImagenetBase,
  };
  const replicas = init.protocol.replicas ?? 1;
  if (replicas > 1) ctx.replicas = new ReplicaPool(replicas - 1, { backend: init.backend, stacks: init.stacks, protocol: init.protocol, params: init.params });
  port.on('message', (m: { type: 'run'; job: JobSpec }) => {
    if (m.type !== 'run') return;
    trainJob(m.job, ctx).then(
      (result) => post({ type: 'done', result }),
      (err: Error) => post({ type: 'error', message: err.message, stack: err.stack }),
    );
  });
}

if (!isMainThread && (workerData as Partial<WorkerInit> | undefined)?.[WORKER_MARK]) {
  void workerMain();
}

// ---------------------------------------------------------------------------------------------------------
// runTraining

type LogFn = (obj: Record<string, unknown>, msg: string) => void;
/** What runTraining needs of a logger (pino's Logger fits). */
export interface TrainingLogger {
  info: LogFn;
  warn: LogFn;
  debug?: LogFn;
}

export interface RunTrainingOptions {
  /** A protocol object or the path of a protocol JSON file. */
  protocol: Protocol | Record<string, unknown> | string;
  /** Dataset spec (`acdc:DIR`, `phantom:COUNT[:SEED]`, joined with `+`). */
  dataset: string;
  out: string;
  backend?: BackendPreference;
  logger?: TrainingLogger;
  /** Continue from `<out>/checkpoints` (finished jobs are reused, unfinished ones continue). */
  resume?: boolean;
  /** Overrides protocol.parallelFolds. */
  workers?: number;
  /** Progress lines: true (default: stderr), false, or a line sink. */
  progress?: boolean | ((line: string) => void);
  /** Phantom image size override (tests: smaller, faster phantoms). */
  phantomRows?: number;
  /**
   * Benchmarks only: a protocol with `weights: 'imagenet'` keeps the base's seeded random weights instead of
   * reading the Keras file (a warning is logged). The time of a step does not depend on the weights' values,
   * so a GPU host without the files can time the paper's depth-0 cells (bench/train-epoch.ts --weights none).
   */
  randomImagenetBase?: boolean;
  /** Set by the grid runner (grid.ts): the dataset already loaded (and split), a start model, the test done by the caller. */
  gridCell?: {
    /** The subjects to train on (`dataset` then only names them in records). */
    data: LabelledDataset;
    /** Start from this model dir (startFrom 'depth0-final'); `id` identifies it in checkpoint fingerprints. */
    initialModel?: { dir: string; id: string };
  };
}

export interface SelectedCurvePoint {
  epoch: number;
  mean: number;
  std: number;
}

export interface CvResult {
  folds: number;
  split: string[][];
  selection: { metric: string; orientation: 'max' | 'min'; curve: SelectedCurvePoint[]; epoch: number };
  /** Metrics of the pooled out-of-fold predictions at the selected epoch. */
  pooled: EvaluationSummary;
  /** Per fold, at the selected epoch. */
  perFold: CompactSummary[];
  /** Mean ± sd over folds of the main metrics at the selected epoch. */
  foldMean: Record<string, { mean: number; std: number; n: number }>;
  /** Protocol `decodingPrior: 'fit'`: the class log-prior fitted on the out-of-fold predictions, with its nested estimate. */
  decodingPrior?: CvDecodingPrior;
  jobs: JobResult[];
}

export interface TrainingRunResult {
  out: string;
  protocol: Protocol;
  backend: string;
  subjects: number;
  cv?: Omit<CvResult, 'jobs'>;
  selectedEpoch: number;
  modelDir?: string;
  card?: ModelCard;
  durationSeconds: number;
}

function sha(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** The protocol fields that change results (not parallelism, progress or eval batch size). */
function resultProtocol(P: Protocol): Record<string, unknown> {
  const { parallelFolds: _pf, progressEvery: _pe, evalBatchSize: _eb, description: _d, weightsDir: _wd, ...rest } = P;
  // Fields added with the ImageNet architectures: left out at their defaults, so that earlier checkpoints resume.
  const r: Record<string, unknown> = rest;
  if (r.weights === 'none') delete r.weights;
  if (r.startFrom === 'init') delete r.startFrom;
  if (r.heldOutTest === 'none') delete r.heldOutTest;
  return r;
}

function pickEpoch(jobs: JobResult[], metric: Protocol['selectionMetric']): CvResult['selection'] {
  const epochs = Math.min(...jobs.map((j) => j.records.length));
  const curve: SelectedCurvePoint[] = [];
  for (let e = 1; e <= epochs; e++) {
    const xs = jobs.map((j) => {
      const v = j.records[e - 1].val;
      if (!v) throw new Error(`${j.name} epoch ${e} has no validation metrics`);
      return selectionValue(v, metric);
    });
    const ms = meanStd(xs);
    curve.push({ epoch: e, mean: round(ms.mean), std: round(ms.std) });
  }
  const better = (a: number, b: number) => (metric === 'logLoss' ? a < b : a > b);
  let best = curve[0];
  for (const p of curve) if (better(p.mean, best.mean)) best = p;
  const scope = metric === 'logLoss' ? 'validation' : metric === 'rangeExact' ? 'range decoded, ED+ES' : 'argmax, ED+ES';
  return { metric: `${metric} (${scope}; mean over folds)`, orientation: metric === 'logLoss' ? 'min' : 'max', curve, epoch: best.epoch };
}

function oofPredictions(jobs: JobResult[], epoch: number): FoldStackPrediction[] {
  return jobs.flatMap((j) =>
    j.valStacks.map((s, i) => ({ subject: s.subject, phase: s.phase, truth: s.truth, probs: j.valProbs[epoch - 1][i], fold: j.name, sourceSlices: s.sourceSlices })),
  );
}

function foldMeans(perFold: CompactSummary[]): CvResult['foldMean'] {
  const out: CvResult['foldMean'] = {};
  const add = (key: string, xs: number[]) => {
    const m = meanStd(xs);
    out[key] = { mean: round(m.mean), std: round(m.std), n: m.n };
  };
  for (const scope of ['all', 'ED', 'ES'] as const) {
    for (const kind of ['argmax', 'decoded'] as const) {
      const ms = perFold.map((p) => p[scope]?.[kind]).filter((x): x is CompactMetrics => !!x);
      if (!ms.length) continue;
      for (const k of ['accuracy', 'balancedAccuracy', 'macroF1', 'softAccuracy', 'rangeExact'] as const) add(`${scope}.${kind}.${k}`, ms.map((m) => m[k]));
      for (const l of LABELS) add(`${scope}.${kind}.f1.${l}`, ms.map((m) => m.f1[l]));
    }
  }
  add('logLoss', perFold.map((p) => p.logLoss));
  return out;
}

function pct(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '–' : (100 * x).toFixed(1);
}

/** The Markdown report (CV metrics at the selected epoch, ED and ES, argmax vs range-decoded). */
export function renderReport(p: {
  protocol: Protocol;
  dataset: string;
  parts: DatasetPartInfo[];
  subjects: number;
  counts: Record<SliceLabel, number>;
  backend: string;
  cv?: Omit<CvResult, 'jobs'>;
  jobs?: JobResult[];
  modelDir?: string;
  durationSeconds: number;
}): string {
  const P = p.protocol;
  const L: string[] = [];
  L.push(`# Training report: ${P.name}`, '');
  L.push(`- Architecture: ${P.architecture}${P.padding ? ` (padding ${P.padding})` : ''}, input ${P.inputSize}², channels ${P.channelMode}`);
  L.push(`- Data: \`${p.dataset}\` — ${p.subjects} subjects, slices OAP ${p.counts.OAP} / IN ${p.counts.IN} / OBS ${p.counts.OBS}`);
  for (const part of p.parts) L.push(`  - \`${part.spec}\`: ${part.subjects} subjects, ${part.stacks} stacks, ${part.slices} slices; data licence ${part.license.data}${part.skipped.length ? `; skipped: ${part.skipped.join('; ')}` : ''}`);
  L.push(
    `- SGD lr ${P.learningRate}, momentum ${P.momentum}${P.nesterov ? ' (Nesterov)' : ''}, decay ${P.decay}; batch ${P.batchSize}; ` +
      `OAP/OBS ×${P.oversample}; rotation ±${P.rotationDegrees}°; seed ${P.seed}` +
      (P.lrDropEpochs?.length ? `; learning rate ×${P.lrDropFactor ?? 0.1} from epoch${P.lrDropEpochs.length > 1 ? 's' : ''} ${P.lrDropEpochs.join(', ')}` : '') +
      (P.bnRecalibrationBatches ? `; BN statistics recomputed after each epoch over ${P.bnRecalibrationBatches} training batches (precise BN)` : ''),
  );
  L.push(`- Backend: ${p.backend}; wall time ${formatDuration(p.durationSeconds)}`, '');
  if (p.cv) {
    const cv = p.cv;
    L.push(`## ${cv.folds}-fold patient-level cross-validation`, '');
    L.push(
      `Epoch ${cv.selection.epoch} of ${cv.selection.curve.length} selected by ${cv.selection.metric}. Metrics below pool the ` +
        `out-of-fold predictions at that epoch: every subject predicted once, by the fold model that did not train on it ` +
        `(validation slices unrotated, not oversampled). "argmax" = raw per-slice class; "decoded" = after range decoding ` +
        `(OAP* IN+ OBS*). Values in %.`,
      '',
    );
    L.push('| phase | method | n | accuracy | balanced acc. | soft acc. | F1 OAP | F1 IN | F1 OBS | recall OAP | recall OBS | macro F1 | range-exact |');
    L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const scope of ['ED', 'ES', 'all'] as const) {
      const s = cv.pooled[scope];
      if (!s) continue;
      const rows: [string, StackMetrics['argmax']][] = [
        ['argmax', s.argmax],
        ['decoded', s.decoded],
      ];
      const withPrior = cv.decodingPrior?.nested[scope];
      if (withPrior) rows.push(['decoded + prior (nested)', withPrior.decoded]);
      for (const [kind, m] of rows) {
        L.push(
          `| ${scope === 'all' ? 'ED+ES' : scope} | ${kind} | ${m.n} | ${pct(m.accuracy)} | ${pct(m.balancedAccuracy)} | ${pct(m.softAccuracy)} | ` +
            `${pct(m.perClass.OAP.f1)} | ${pct(m.perClass.IN.f1)} | ${pct(m.perClass.OBS.f1)} | ${pct(m.perClass.OAP.recall)} | ${pct(m.perClass.OBS.recall)} | ` +
            `${pct(m.macroF1)} | ${pct(m.rangeExact)} (${m.stacks} stacks) |`,
        );
      }
    }
    if (cv.decodingPrior) {
      const d = cv.decodingPrior;
      const fmt = (p: readonly number[]) => `[${p.join(', ')}]`;
      L.push(
        '',
        `"decoded + prior (nested)": range decoding with a class log-prior [OAP, IN, OBS] added to the log-probabilities, each fold decoded ` +
          `with the prior fitted on the other folds' out-of-fold predictions (${Object.entries(d.perFold).map(([f, p]) => `${f} ${fmt(p)}`).join('; ')}). ` +
          `Fitted on all of them, for the final model: **${fmt(d.prior)}** (range exact on those stacks ${pct(d.fit.fitted.exactStacks / d.fit.fitted.stacks)} % ` +
          `vs ${pct(d.fit.none.exactStacks / d.fit.none.stacks)} % without a prior).`,
      );
    }
    const b = cv.pooled.all.decoded.boundary;
    L.push('', `Decoded range ends (ED+ES): first IN slice exact ${pct(b.firstExact)} %, mean error ${b.firstAbsError.toFixed(2)} slices; last IN slice exact ${pct(b.lastExact)} %, mean error ${b.lastAbsError.toFixed(2)} slices; both ends within one slice in ${pct(b.withinOne)} % of stacks.`, '');
    const fm = cv.foldMean;
    const f = (k: string) => (fm[k] ? `${pct(fm[k].mean)} ± ${pct(fm[k].std)}` : '–');
    L.push('Fold mean ± sd (argmax, ED+ES): ' + `balanced accuracy ${f('all.argmax.balancedAccuracy')}, accuracy ${f('all.argmax.accuracy')}, macro F1 ${f('all.argmax.macroF1')}, soft accuracy ${f('all.argmax.softAccuracy')}.`, '');
    L.push('Confusion (ED+ES, argmax; rows truth OAP/IN/OBS, columns prediction): ' + JSON.stringify(cv.pooled.all.argmax.confusion), '');
    L.push('### Validation curve (mean over folds)', '', '| epoch | ' + cv.selection.metric + ' |', '|---|---|');
    for (const c of cv.selection.curve) L.push(`| ${c.epoch}${c.epoch === cv.selection.epoch ? ' ←' : ''} | ${c.mean.toFixed(4)} ± ${c.std.toFixed(4)} |`);
    L.push('');
  }
  if (p.jobs?.length) {
    L.push('### Throughput', '', '| job | epochs | samples/epoch | mean samples/s | mean epoch time |', '|---|---|---|---|---|');
    for (const j of p.jobs) {
      const sps = meanStd(j.records.map((r) => r.samplesPerSecond)).mean;
      const sec = meanStd(j.records.map((r) => r.seconds)).mean;
      L.push(`| ${j.name} | ${j.records.length} | ${j.samplesPerEpoch} | ${sps.toFixed(1)} | ${formatDuration(sec)} |`);
    }
    L.push('');
  }
  if (p.modelDir) L.push(`Final model: \`${p.modelDir}\` (trained on all ${p.subjects} subjects; its card carries the CV metrics above as an estimate).`, '');
  return `${L.join('\n')}\n`;
}

/**
 * Runs a training protocol: k-fold CV (when folds > 1), epoch selection, final model (when finalModel).
 * Writes cv.json, cv-predictions.csv, report.md and model/ under `out`.
 */
export async function runTraining(opts: RunTrainingOptions): Promise<TrainingRunResult> {
  const t0 = performance.now();
  const P: Protocol = typeof opts.protocol === 'string' ? await loadProtocol(opts.protocol) : parseProtocol(opts.protocol);
  canonicalArchitecture(P.architecture);
  const grid = opts.gridCell;
  if (P.startFrom === 'depth0-final' && !grid?.initialModel) throw new ProtocolError(`protocol ${P.name}: startFrom 'depth0-final' needs the grid runner (it trains the depth-0 cells first), not a single run`);
  if (P.heldOutTest !== 'none' && !grid) throw new ProtocolError(`protocol ${P.name}: heldOutTest '${P.heldOutTest}' needs the grid runner (a grid protocol: docs/training.md), not a single run`);
  if (P.weights === 'imagenet' && !isImagenetArchitecture(P.architecture)) throw new ProtocolError(`protocol ${P.name}: '${P.architecture}' has no ImageNet weights`);
  if (P.folds === 1 && !P.finalModel) throw new ProtocolError(`protocol ${P.name}: folds = 1 and finalModel = false leaves nothing to train`);
  if (P.folds === 1 && P.decodingPrior === 'fit') throw new ProtocolError(`protocol ${P.name}: decodingPrior 'fit' needs cross-validation (folds ≥ 2): it is fitted on out-of-fold predictions`);
  const out = resolve(opts.out);
  const log = opts.logger;
  const ckDir = join(out, 'checkpoints');
  if (!opts.resume && existsSync(ckDir) && (await readdir(ckDir)).length > 0) {
    throw new Error(`${ckDir} already holds checkpoints: pass --resume to continue that run, or choose another --out`);
  }
  await mkdir(out, { recursive: true });

  const sel = await selectBackend(opts.backend ?? 'auto', log as Parameters<typeof selectBackend>[1]);
  installFastBatchNormGradient();

  const tLoad = performance.now();
  const ds = grid?.data ?? (await loadDataset(opts.dataset, { phantomRows: opts.phantomRows }));
  let subjects: LabelledSubject[] = ds.subjects;
  if (P.maxSubjects && P.maxSubjects < subjects.length) {
    const keep = new Set(subsetSubjects(subjects, P.maxSubjects, P.seed));
    subjects = subjects.filter((s) => keep.has(s.id));
  }
  const stacksRaw = subjects.flatMap((s) => s.stacks);
  const counts = labelCounts(stacksRaw);
  const params = preprocessParamsFor(P.architecture, {
    inputSize: P.inputSize,
    channelMode: P.channelMode,
    ...(P.zoom !== undefined ? { zoom: P.zoom } : {}),
    ...(P.clip !== undefined ? { clip: [P.clip[0], P.clip[1]] as [number, number] } : {}),
  });
  const workers = Math.max(1, Math.min(opts.workers ?? P.parallelFolds ?? 1, P.folds > 1 ? P.folds : 1));
  const replicas = P.replicas ?? 1;
  const stacks = prepareStacks(stacksRaw, params.clip, { shared: workers > 1 || replicas > 1 });
  const loadSeconds = (performance.now() - tLoad) / 1000;
  log?.info({ dataset: opts.dataset, subjects: subjects.length, stacks: stacks.length, counts, loadSeconds: round(loadSeconds, 1), backend: sel.name, workers, replicas }, 'training data ready');

  const license = combinedLicense(ds.parts);
  const datasets = ds.parts.map((p) => p.spec);
  const writeLine = opts.progress === false ? () => {} : typeof opts.progress === 'function' ? opts.progress : undefined;
  const samplesPerEpoch = (ids: Set<string>) =>
    stacks.filter((s) => ids.has(s.subject)).reduce((a, s) => a + s.labels.reduce((b, l) => b + (l === 'IN' ? 1 : P.oversample), 0), 0);
  const batchesPerEpoch = (ids: Set<string>) => Math.ceil(samplesPerEpoch(ids) / P.batchSize);

  const baseFp = {
    protocol: resultProtocol(P),
    dataset: opts.dataset,
    subjects: subjects.map((s) => s.id),
    ...(grid?.initialModel ? { initialModel: grid.initialModel.id } : {}),
  };
  const split = P.folds > 1 ? kFoldSplit(subjects, P.folds, P.seed) : [];
  const jobsTotal = (P.folds > 1 ? P.folds : 0) + (P.finalModel ? 1 : 0);
  const cvJobs: JobSpec[] = split.map((_, i) => {
    const { train, val } = foldSets(split, i);
    return {
      name: `fold-${i + 1}`,
      index: i,
      number: i + 1,
      jobs: jobsTotal,
      train,
      val,
      epochs: P.epochs,
      seed: hashSeed(P.seed, 0x696e6974, i),
      dir: join(ckDir, `fold-${i + 1}`),
      fingerprint: sha({ ...baseFp, job: `fold-${i + 1}`, train, val, epochs: P.epochs }),
    };
  });
  const allIds = new Set(subjects.map((s) => s.id));
  const totalBatches = cvJobs.reduce((a, j) => a + j.epochs * batchesPerEpoch(new Set(j.train)), 0) + (P.finalModel ? P.epochs * batchesPerEpoch(allIds) : 0);
  let alreadyDone = 0;
  if (opts.resume) {
    for (const j of cvJobs) {
      const st = await readJobState(j.dir);
      if (st?.fingerprint === j.fingerprint) alreadyDone += st.epochsDone * batchesPerEpoch(new Set(j.train));
    }
  }
  const progress = new TrainingProgress({ totalBatches, alreadyDone, every: P.progressEvery ?? 10, write: writeLine });
  const hooks: JobHooks = {
    batch: (ev) => progress.batch(ev),
    note: (line) => progress.note(line),
    log: (level, obj, msg) => (level === 'debug' ? log?.debug?.(obj, msg) : log?.[level](obj, msg)),
  };
  const initialModel = grid?.initialModel?.dir;
  const ctx: JobContext = { protocol: P, params, stacks, backend: sel.name, datasets, license, resume: !!opts.resume, hooks, initialModel, randomImagenetBase: opts.randomImagenetBase };
  if (workers === 1 && replicas > 1) ctx.replicas = new ReplicaPool(replicas - 1, { backend: sel.name, stacks, protocol: P, params });
  const runner: JobRunner =
    workers > 1
      ? poolRunner(workers, { backend: sel.name, stacks, protocol: P, params, datasets, license, resume: !!opts.resume, initialModel, randomImagenetBase: opts.randomImagenetBase }, hooks)
      : inProcessRunner(ctx);

  let cv: CvResult | undefined;
  let selectedEpoch = P.epochs;
  let card: ModelCard | undefined;
  let modelDir: string | undefined;
  const finish = async () => {
    await runner.close();
    await ctx.replicas?.close();
  };
  try {
    if (cvJobs.length) {
      const results = await Promise.all(cvJobs.map((j) => runner.run(j)));
      const selection = pickEpoch(results, P.selectionMetric);
      selectedEpoch = selection.epoch;
      const oof = oofPredictions(results, selectedEpoch);
      const pooled = evaluatePredictions(oof);
      const perFold = results.map((j) =>
        compactSummary(evaluatePredictions(j.valStacks.map((s, i) => ({ subject: s.subject, phase: s.phase, truth: s.truth, probs: j.valProbs[selectedEpoch - 1][i] })))),
      );
      cv = { folds: P.folds, split, selection, pooled, perFold, foldMean: foldMeans(perFold), jobs: results };
      if (P.decodingPrior === 'fit') {
        cv.decodingPrior = fitPriorOnCv(oof);
        log?.info({ classLogPrior: cv.decodingPrior.prior, perFold: cv.decodingPrior.perFold, nestedRangeExact: round(cv.decodingPrior.nested.all.decoded.rangeExact, 4) }, 'decoding prior fitted');
      }
      await writeFile(join(out, 'cv-predictions.csv'), formatCvPredictions(oof));
      await writeJsonAtomic(join(out, 'cv.json'), {
        schema: 'sax-range/cv@1',
        protocol: P,
        dataset: { spec: opts.dataset, parts: ds.parts },
        subjects: subjects.length,
        counts,
        backend: sel.name,
        versions: versions(),
        folds: results.map((j, i) => ({ fold: i + 1, val: split[i], trainSubjects: j.trainSubjects, samplesPerEpoch: j.samplesPerEpoch, seconds: j.seconds, bestEpoch: j.bestEpoch, epochs: j.records })),
        selection,
        atSelectedEpoch: { pooled, perFold, foldMean: cv.foldMean, ...(cv.decodingPrior ? { decodingPrior: cv.decodingPrior } : {}) },
        createdAt: new Date().toISOString(),
      });
      log?.info({ selectedEpoch, metric: selection.metric, pooled: compactSummary(pooled).all }, 'cross-validation done');
    }

    let finalJob: JobResult | undefined;
    if (P.finalModel) {
      const ids = [...allIds].sort();
      const job: JobSpec = {
        name: 'final',
        index: P.folds > 1 ? P.folds : 0,
        number: jobsTotal,
        jobs: jobsTotal,
        train: ids,
        val: [],
        epochs: selectedEpoch,
        seed: hashSeed(P.seed, 0x696e6974, 0x66696e61),
        dir: join(ckDir, 'final'),
        fingerprint: sha({ ...baseFp, job: 'final', epochs: selectedEpoch }),
      };
      progress.totalBatches += (selectedEpoch - P.epochs) * batchesPerEpoch(allIds);
      finalJob = await runner.run(job);
      // Load the final checkpoint and write it as <out>/model with the full card.
      const st = await readJobState(job.dir);
      if (!st?.current) throw new Error(`final model: no checkpoint in ${job.dir}`);
      const { model } = await loadModelDir(join(job.dir, st.current));
      try {
        const metrics: Record<string, unknown> = {};
        let method: string;
        if (cv) {
          metrics.cv = {
            folds: cv.folds,
            selectedEpoch,
            selection: { metric: cv.selection.metric, curve: cv.selection.curve },
            pooled: cv.pooled,
            ...(cv.decodingPrior ? { pooledWithPrior: cv.decodingPrior.nested } : {}),
            foldMean: cv.foldMean,
          };
          method =
            `${cv.folds}-fold patient-level cross-validation on ${subjects.length} subjects (${datasets.join(' + ')}; split seeded ${P.seed}` +
            `${subjects.some((s) => s.group) ? ', stratified by group' : ''}). Epoch ${selectedEpoch} was chosen from the mean validation ` +
            `curve (${cv.selection.metric}); metrics.cv.pooled are the out-of-fold predictions of the ${cv.folds} fold models at that epoch ` +
            `(each subject predicted once, unrotated, not oversampled), for ED, ES and both, argmax and range-decoded. This model was then ` +
            `retrained on all subjects for ${selectedEpoch} epochs: the CV numbers estimate its performance; they were not measured on it.`;
        } else {
          method = 'not evaluated: trained without cross-validation (folds = 1); run `sax-range evaluate` on held-out data';
        }
        metrics.final = { trainLoss: finalJob.records.at(-1)?.trainLoss, trainAccuracy: finalJob.records.at(-1)?.trainAccuracy, epochs: finalJob.records.length };
        modelDir = join(out, 'model');
        card = await saveModelDir(
          modelDir,
          model,
          makeCard({
            id: `${P.name}-${canonicalArchitecture(P.architecture)}-${P.inputSize}`,
            protocol: P,
            params,
            model,
            backend: sel.name,
            datasets,
            subjects: ids.length,
            epochs: selectedEpoch,
            seconds: finalJob.seconds,
            metrics,
            evaluation: { method, selectionMetric: P.selectionMetric, folds: P.folds },
            license,
            description: `${isImagenetArchitecture(P.architecture) ? canonicalArchitecture(P.architecture) : 'CBR'} slice classifier (OAP/IN/OBS) after Ho & Kim, Sci Rep 11:1839 (2021), protocol ${P.name}`,
            ...(cv?.decodingPrior ? { decoding: cardDecoding(cv.decodingPrior, `out-of-fold predictions of this run's ${cv.folds}-fold cross-validation`, cv.pooled) } : {}),
          }),
        );
      } finally {
        model.dispose();
      }
    }

    const durationSeconds = (performance.now() - t0) / 1000;
    const jobsForReport = [...(cv?.jobs ?? []), ...(finalJob ? [finalJob] : [])];
    const cvOut = cv ? (({ jobs: _j, ...rest }) => rest)(cv) : undefined;
    await writeFile(
      join(out, 'report.md'),
      renderReport({ protocol: P, dataset: opts.dataset, parts: ds.parts, subjects: subjects.length, counts, backend: sel.name, cv: cvOut, jobs: jobsForReport, modelDir, durationSeconds }),
    );
    log?.info({ out, selectedEpoch, modelDir, durationSeconds: round(durationSeconds, 1) }, 'training done');
    return { out, protocol: P, backend: sel.name, subjects: subjects.length, cv: cvOut, selectedEpoch, modelDir, card, durationSeconds };
  } finally {
    await finish();
  }
}
