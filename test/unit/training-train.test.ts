import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/inference/backend.js';
import { loadModelDir, ModelCardSchema } from '../../src/inference/model-dir.js';
import { preprocessParamsFor, type PreprocessParams } from '../../src/inference/preprocess.js';
import { loadPhantom, prepareStacks } from '../../src/training/data/index.js';
import { loadProtocol, loadProtocolFile, parseProtocol, type Protocol } from '../../src/training/protocol.js';
import { formatDuration, TrainingProgress } from '../../src/training/progress.js';
import { parseCvPredictions } from '../../src/training/cv-predictions.js';
import { fitPriorOnCv } from '../../src/training/decoding-prior.js';
import { seedDropout, stepScheduleScale } from '../../src/training/step.js';
import { buildTrainingModel } from '../../src/training/models/index.js';
import {
  categoricalCrossentropy,
  KerasSgd,
  predictPreparedStacks,
  runTraining,
  selectionScore,
  trainJob,
  type CompactSummary,
  type JobContext,
  type JobSpec,
} from '../../src/training/train.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-training-'));
  await selectBackend('wasm');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const CI: Protocol = parseProtocol({
  name: 'unit-ci',
  architecture: 'cbr_compact',
  inputSize: 32,
  channelMode: 'gray3',
  epochs: 3,
  batchSize: 16,
  learningRate: 0.01,
  oversample: 3,
  rotationDegrees: 45,
  folds: 2,
  seed: 1,
  finalModel: true,
});

describe('protocol files', () => {
  it('config/protocols/ci.json and quick.json (a grid) validate', async () => {
    const ci = await loadProtocol('config/protocols/ci.json');
    expect(ci.folds).toBe(2);
    const quick = await loadProtocolFile('config/protocols/quick.json');
    if (quick.kind !== 'grid') throw new Error('quick.json should be a grid');
    expect(quick.grid.folds).toBe(5);
    expect(quick.grid.momentum).toBe(0.9);
    expect(quick.grid.nesterov).toBe(true);
  });

  it('defaults and clear errors (unknown keys refused)', () => {
    expect(CI.momentum).toBe(0.9);
    expect(CI.decay).toBe(1e-6);
    expect(CI.selectionMetric).toBe('balancedAccuracy');
    expect(() => parseProtocol({ ...CI, epochz: 3 })).toThrow(/Unrecognized key.*epochz/);
    expect(() => parseProtocol({ ...CI, batchSize: 0 })).toThrow(/batchSize/);
    expect(() => parseProtocol({ ...CI, channelMode: 'rgb' })).toThrow(/channelMode/);
  });
});

describe('epoch selection', () => {
  it('rangeExact scores the range-decoded labels; logLoss is turned so that larger is better', () => {
    const m = (rangeExact: number) => ({ accuracy: 0.9, balancedAccuracy: 0.8, macroF1: 0.7, softAccuracy: 0.95, rangeExact, f1: { OAP: 0, IN: 1, OBS: 0 }, recall: { OAP: 0, IN: 1, OBS: 0 } });
    const s: CompactSummary = { logLoss: 0.25, all: { argmax: m(0.1), decoded: m(0.7) } };
    expect(selectionScore(s, 'rangeExact')).toBe(0.7);
    expect(selectionScore(s, 'balancedAccuracy')).toBe(0.8);
    expect(selectionScore(s, 'logLoss')).toBe(-0.25);
    expect(parseProtocol({ ...CI, selectionMetric: 'rangeExact' }).selectionMetric).toBe('rangeExact');
  });
});

describe('step learning-rate schedule', () => {
  it('multiplies the rate by the factor once per drop epoch reached, and a run records it per epoch', async () => {
    expect([1, 2, 3, 4, 5].map((e) => stepScheduleScale(e, [3, 5], 0.1))).toEqual([1, 1, 0.1, 0.1, 0.1 ** 2]);
    expect(stepScheduleScale(7, undefined, 0.1)).toBe(1);
    const out = join(root, 'lr-drop');
    const r = await runTraining({ protocol: { ...CI, folds: 1, epochs: 3, lrDropEpochs: [2], lrDropFactor: 0.5 }, dataset: 'phantom:2:4', out, backend: 'wasm', progress: false, phantomRows: 96 });
    const st = JSON.parse(await readFile(join(out, 'checkpoints', 'final', 'state.json'), 'utf8'));
    const lrs = st.result.records.map((x: { learningRate: number }) => x.learningRate);
    expect(lrs[0]).toBeCloseTo(0.01, 4);
    expect(lrs[1]).toBeCloseTo(0.005, 4);
    expect(lrs[2]).toBeCloseTo(0.005, 4);
    expect(await readFile(join(out, 'report.md'), 'utf8')).toMatch(/learning rate ×0.5 from epoch 2/);
    expect(r.card?.training.protocol).toMatchObject({ lrDropEpochs: [2], lrDropFactor: 0.5 });
  }, 60_000);
});

describe('optimizer and loss', () => {
  it('Keras SGD with Nesterov momentum and time-based decay (hand-computed)', async () => {
    const p = tf.variable(tf.scalar(1), true, 'sgd_p');
    const opt = new KerasSgd([p], { learningRate: 0.1, momentum: 0.9, nesterov: true, decay: 0.5 });
    const g = { [p.name]: tf.scalar(0.5) };
    opt.apply(g); // lr 0.1: v = −0.05; p = 1 + 0.9·(−0.05) − 0.05 = 0.905
    expect(p.dataSync()[0]).toBeCloseTo(0.905, 6);
    expect(opt.currentLearningRate()).toBeCloseTo(0.1 / 1.5, 12);
    opt.apply(g); // lr 0.1/1.5: v = 0.9·(−0.05) − 0.5·lr = −0.078333; p = 0.905 + 0.9·v − 0.5·lr
    const lr = 0.1 / 1.5;
    const v = 0.9 * -0.05 - 0.5 * lr;
    expect(p.dataSync()[0]).toBeCloseTo(0.905 + 0.9 * v - 0.5 * lr, 6);
    const st = await opt.getState();
    expect(st.iterations).toBe(2);
    expect(st.data[0]).toBeCloseTo(v, 6);
    const q = tf.variable(tf.scalar(0), true, 'sgd_q');
    const opt2 = new KerasSgd([q], opt.opts);
    opt2.setState(st);
    expect((await opt2.getState()).data[0]).toBeCloseTo(v, 6);
    opt.dispose();
    opt2.dispose();
    p.dispose();
    q.dispose();
    g[Object.keys(g)[0]].dispose();
  });

  it('categorical cross-entropy = mean −Σ y·ln p', () => {
    const y = tf.tensor2d([
      [0, 1, 0],
      [1, 0, 0],
    ]);
    const p = tf.tensor2d([
      [0.2, 0.5, 0.3],
      [0.1, 0.6, 0.3],
    ]);
    expect(categoricalCrossentropy(y, p).dataSync()[0]).toBeCloseTo(-(Math.log(0.5) + Math.log(0.1)) / 2, 5);
  });

  it('progress lines carry job and overall ETA', () => {
    let t = 0;
    const lines: string[] = [];
    const pr = new TrainingProgress({ totalBatches: 20, every: 5, write: (l) => lines.push(l), now: () => t });
    for (let b = 1; b <= 10; b++) {
      t += 2;
      pr.batch({ job: 'fold-1', jobNumber: 1, jobs: 2, epoch: 1, epochs: 1, batch: b, batches: 10, loss: 0.5, lr: 0.01, samples: 4, seconds: 2 });
    }
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^\[fold-1 1\/2\] epoch 1\/1 batch 10\/10 loss 0\.5000 lr 0\.01000 2\.0 samples\/s \| job 100% ETA 0s \| all 50% ETA 20s$/);
    expect(formatDuration(3725)).toBe('1h02m');
  });
});

describe('end-to-end training on phantom:6:1 (WASM)', () => {
  it('CV + final model: loss decreases, model dir loads, card validates, metrics and reports present', async () => {
    const out = join(root, 'e2e');
    const lines: string[] = [];
    const withPrior: Protocol = { ...CI, decodingPrior: 'fit' };
    const r = await runTraining({ protocol: withPrior, dataset: 'phantom:6:1', out, backend: 'wasm', progress: (l) => lines.push(l), phantomRows: 128 });
    expect(r.backend).toBe('wasm');
    expect(r.subjects).toBe(6);
    expect(r.cv?.folds).toBe(2);
    expect(r.selectedEpoch).toBeGreaterThanOrEqual(1);
    expect(r.selectedEpoch).toBeLessThanOrEqual(3);

    const cv = JSON.parse(await readFile(join(out, 'cv.json'), 'utf8'));
    expect(cv.folds).toHaveLength(2);
    for (const f of cv.folds) {
      expect(f.epochs).toHaveLength(3);
      const losses = f.epochs.map((e: { trainLoss: number }) => e.trainLoss);
      expect(Math.min(losses[1], losses[2])).toBeLessThan(losses[0]);
      // No tensor leak: the count after each epoch is constant.
      expect(new Set(f.epochs.map((e: { memory: { numTensors: number } }) => e.memory.numTensors)).size).toBe(1);
      expect(f.epochs[0].val.all.argmax.balancedAccuracy).toBeGreaterThan(0);
    }
    // Val folds partition the subjects.
    expect([...cv.folds[0].val, ...cv.folds[1].val].sort()).toHaveLength(6);
    expect(cv.selection.curve).toHaveLength(3);
    for (const k of ['ED', 'ES', 'all']) {
      expect(cv.atSelectedEpoch.pooled[k].argmax.perClass.IN.f1).toBeGreaterThanOrEqual(0);
      expect(cv.atSelectedEpoch.pooled[k].decoded.rangeExact).toBeGreaterThanOrEqual(0);
    }
    const report = await readFile(join(out, 'report.md'), 'utf8');
    expect(report).toMatch(/\| ED \| argmax \|/);
    expect(report).toMatch(/\| ES \| decoded \|/);
    const csv = (await readFile(join(out, 'cv-predictions.csv'), 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('fold,subject,phase,slice,apex_index,p_oap,p_in,p_obs,predicted,label,truth');
    expect(csv.length - 1).toBe(cv.atSelectedEpoch.pooled.all.argmax.n);
    // decodingPrior 'fit': the prior fitted on the CSV's out-of-fold predictions is the card's, with its nested estimate.
    const oof = parseCvPredictions(csv.join('\n'));
    const refit = fitPriorOnCv(oof);
    expect(cv.atSelectedEpoch.decodingPrior.prior).toEqual([...refit.prior]);
    expect(report).toMatch(/\| ED \| decoded \+ prior \(nested\) \|/);
    expect(lines.some((l) => /ETA/.test(l))).toBe(true);

    const { model, card } = await loadModelDir(join(out, 'model'));
    expect(ModelCardSchema.safeParse(card).success).toBe(true);
    expect(card.architecture).toBe('cbr_compact');
    expect(card.inputSize).toBe(32);
    expect(card.lastConvLayer).toBe('block4_relu');
    expect(card.training.epochs).toBe(r.selectedEpoch);
    expect(card.training.subjects).toBe(6);
    expect(card.evaluation.method).toMatch(/2-fold patient-level cross-validation/);
    expect((card.metrics.cv as { pooled: { ED: unknown; ES: unknown } }).pooled.ES).toBeTruthy();
    expect(card.decoding?.classLogPrior).toEqual(cv.atSelectedEpoch.decodingPrior.prior);
    expect(card.decoding?.fittedOn).toMatch(/out-of-fold predictions of this run's 2-fold cross-validation/);
    expect((card.metrics.cv as { pooledWithPrior?: { ES?: unknown } }).pooledWithPrior?.ES).toBeTruthy();
    const held = prepareStacks(loadPhantom(1, 99, { rows: 96 })[0].stacks, card.preprocessing.clip);
    const preds = await predictPreparedStacks(model, held, card.preprocessing as PreprocessParams, 7);
    expect(preds.map((p) => p.phase)).toEqual(['ED', 'ES']);
    for (const p of preds) {
      expect(p.probs).toHaveLength(p.truth.length);
      for (const row of p.probs) expect(row[0] + row[1] + row[2]).toBeCloseTo(1, 5);
    }
    model.dispose();

    // Existing checkpoints: refused without resume; with resume every job is reused.
    await expect(runTraining({ protocol: withPrior, dataset: 'phantom:6:1', out, backend: 'wasm', progress: false, phantomRows: 128 })).rejects.toThrow(/--resume/);
    const again = await runTraining({ protocol: withPrior, dataset: 'phantom:6:1', out, backend: 'wasm', progress: false, phantomRows: 128, resume: true });
    expect(again.selectedEpoch).toBe(r.selectedEpoch);
    expect(again.durationSeconds).toBeLessThan(r.durationSeconds);
  }, 120_000);

  it('repeats exactly: the same protocol and data give the same weights, run after run (dropout seeded per step)', async () => {
    const P: Protocol = { ...CI, folds: 1, epochs: 2 };
    const run = (dir: string) => runTraining({ protocol: P, dataset: 'phantom:2:4', out: join(root, dir), backend: 'wasm', progress: false, phantomRows: 96 });
    const a = await run('repeat-a');
    const b = await run('repeat-b');
    expect(a.card?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b.card?.sha256).toBe(a.card?.sha256);
  }, 60_000);

  it('seedDropout: one mask per seed in training, none at inference', () => {
    const model = buildTrainingModel({ ...CI, inputSize: 32 }, 3);
    const x = tf.randomUniform([4, 32, 32, 3], 0, 255, 'float32', 5);
    const out = (seed: number) => {
      expect(seedDropout(model, seed)).toBe(1); // the head's one Dropout layer
      return tf.tidy(() => (model.apply(x, { training: true }) as tf.Tensor).dataSync().slice());
    };
    const a = out(11);
    expect(out(11)).toEqual(a);
    expect(out(12)).not.toEqual(a);
    const p1 = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync().slice());
    seedDropout(model, 13);
    expect(tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync().slice())).toEqual(p1);
    x.dispose();
    model.dispose();
  });

  it('folds = 1: final model only, card says it was not evaluated', async () => {
    const out = join(root, 'nocv');
    const r = await runTraining({ protocol: { ...CI, folds: 1, epochs: 1 }, dataset: 'phantom:2:4', out, backend: 'wasm', progress: false, phantomRows: 96 });
    expect(r.cv).toBeUndefined();
    expect(r.selectedEpoch).toBe(1);
    expect(existsSync(join(out, 'cv.json'))).toBe(false);
    expect(r.card?.evaluation.method).toMatch(/not evaluated/);
    expect(r.card?.license.data).toMatch(/synthetic/);
    await expect(runTraining({ protocol: { ...CI, folds: 1, finalModel: false }, dataset: 'phantom:2:4', out: join(root, 'x'), progress: false })).rejects.toThrow(
      /nothing to train/,
    );
    await expect(runTraining({ protocol: { ...CI, folds: 1, decodingPrior: 'fit' }, dataset: 'phantom:2:4', out: join(root, 'y'), progress: false })).rejects.toThrow(
      /decodingPrior 'fit' needs cross-validation/,
    );
  }, 60_000);

  it('bnRecalibrationBatches: the run recomputes the BN statistics after the epoch and says so', async () => {
    const P = { ...CI, folds: 1, epochs: 1 };
    await runTraining({ protocol: P, dataset: 'phantom:2:4', out: join(root, 'bn-plain'), backend: 'wasm', progress: false, phantomRows: 96 });
    const precise = await runTraining({ protocol: { ...P, bnRecalibrationBatches: 3 }, dataset: 'phantom:2:4', out: join(root, 'bn-precise'), backend: 'wasm', progress: false, phantomRows: 96 });
    expect((precise.card?.training.protocol as Record<string, unknown>).bnRecalibrationBatches).toBe(3);
    expect(await readFile(join(root, 'bn-precise', 'report.md'), 'utf8')).toMatch(/precise BN/);
    expect(await readFile(join(root, 'bn-plain', 'report.md'), 'utf8')).not.toMatch(/precise BN/);
    // A one-epoch run of a few steps: tf.layers' moving average (momentum 0.99) has moved the first BN layer's
    // mean only a few % of the way from 0; precise BN sets it to the batches' mean.
    const a = (await loadModelDir(join(root, 'bn-plain', 'model'))).model;
    const b = (await loadModelDir(join(root, 'bn-precise', 'model'))).model;
    const bnA = a.layers.find((l) => l.getClassName() === 'BatchNormalization')!;
    const meanAbs = async (m: tf.LayersModel) => {
      const v = await m.getLayer(bnA.name).getWeights()[2]!.data();
      return Array.from(v as Float32Array).reduce((s, x) => s + Math.abs(x), 0) / v.length;
    };
    expect(await meanAbs(b)).toBeGreaterThan(5 * (await meanAbs(a)));
    a.dispose();
    b.dispose();
  }, 60_000);

  it('an interrupted job resumes from its last epoch checkpoint', async () => {
    const params = preprocessParamsFor('cbr_compact', { inputSize: 32 });
    const subjects = loadPhantom(3, 2, { rows: 96 });
    const stacks = prepareStacks(
      subjects.flatMap((s) => s.stacks),
      params.clip,
    );
    const P = { ...CI, epochs: 2, batchSize: 32 };
    const job: JobSpec = {
      name: 'fold-1',
      index: 0,
      number: 1,
      jobs: 1,
      train: subjects.slice(0, 2).map((s) => s.id),
      val: [subjects[2].id],
      epochs: 2,
      seed: 5,
      dir: join(root, 'resume', 'fold-1'),
      fingerprint: 'fp',
    };
    let crash = true;
    const ctx = (resume: boolean): JobContext => ({
      protocol: P,
      params,
      stacks,
      backend: 'wasm',
      datasets: ['phantom:3:2'],
      license: { data: 'synthetic', citation: '' },
      resume,
      hooks: {
        batch: (ev) => {
          if (crash && ev.epoch === 2) throw new Error('simulated crash');
        },
        note: () => {},
        log: () => {},
      },
    });
    await expect(trainJob(job, ctx(false))).rejects.toThrow(/simulated crash/);
    const state = JSON.parse(await readFile(join(job.dir, 'state.json'), 'utf8'));
    expect(state.epochsDone).toBe(1);
    expect(existsSync(join(job.dir, state.current, 'optimizer.bin'))).toBe(true);
    await expect(trainJob(job, ctx(false))).rejects.toThrow(/holds a checkpoint/);
    await expect(trainJob({ ...job, fingerprint: 'other' }, ctx(true))).rejects.toThrow(/another protocol/);
    crash = false;
    const res = await trainJob(job, ctx(true));
    expect(res.records).toHaveLength(2);
    expect(res.records[0]).toEqual(state.result.records[0]);
    expect(res.records[1].iterations).toBe(2 * res.records[0].iterations);
    expect(res.valProbs).toHaveLength(2);
    expect(existsSync(join(job.dir, 'best', 'model.json'))).toBe(true);
    expect(existsSync(join(job.dir, 'epoch-001'))).toBe(false);
  }, 60_000);
});
