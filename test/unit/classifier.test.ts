import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NoStackError, runClassify } from '../../src/commands/classify.js';
import { predictionRows, PREDICT_CSV_HEADER } from '../../src/commands/predict.js';
import { selectBackend } from '../../src/inference/backend.js';
import { saveModelDir } from '../../src/inference/model-dir.js';
import { createLogger } from '../../src/log.js';
import { batchRanges, classLogPriorOf, ClassifierCardError, SliceClassifier, weightsSha256, type CamOptions, type ClassifierCard } from '../../src/inference/classifier.js';
import { classifyStack, type StackClassifier } from '../../src/inference/classify-stack.js';
import { ClassifierPool } from '../../src/inference/pool.js';
import { parseResult } from '../../src/inference/result.js';
import { createPhantomModel, writePhantomStudy } from '../../src/phantom/index.js';
import type { CineStack } from '../../src/stack/types.js';
import { centralCropBox, preprocessParamsFor, preprocessStack, toTensor4d, type ChannelMode } from '../../src/inference/preprocess.js';
import { buildModel, countMacs, lastConvLayerName } from '../../src/training/models/index.js';

const SIZE = 48;
let model: tf.LayersModel;

function card(overrides: Partial<ClassifierCard> = {}, channelMode: ChannelMode = 'gray3'): ClassifierCard {
  const preprocessing = preprocessParamsFor('cbr_compact', { inputSize: SIZE, channelMode });
  return {
    id: 'test-cbr-compact',
    version: '0.0.1',
    sha256: 'a'.repeat(64),
    architecture: 'cbr_compact',
    inputSize: SIZE,
    channelMode,
    preprocessing,
    classes: ['OAP', 'IN', 'OBS'],
    lastConvLayer: 'block4_relu',
    ...overrides,
  };
}

/** A stack of n random rows × cols slices (seeded). */
function stack(n: number, rows: number, cols: number, seed: number): Float32Array[] {
  let a = seed >>> 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: n }, (_, k) => {
    const img = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const d = Math.hypot(r - rows / 2, c - cols / 2);
        img[r * cols + c] = (d < 6 + k ? 1500 : 300) + 200 * rnd();
      }
    }
    return img;
  });
}

function direct(images: Float32Array[], rows: number, cols: number, c: ClassifierCard): number[][] {
  const x = toTensor4d(tf, preprocessStack(images, rows, cols, c.preprocessing), SIZE);
  const p = model.predict(x) as tf.Tensor;
  const out = p.arraySync() as number[][];
  tf.dispose([x, p]);
  return out;
}

beforeAll(async () => {
  await selectBackend('wasm');
  model = buildModel('cbr_compact', { inputSize: SIZE, seed: 3 });
});

afterAll(() => {
  model.dispose();
});

describe('batchRanges', () => {
  it('cuts a stack into nearly equal batches', () => {
    expect(batchRanges(20, 8)).toEqual([
      [0, 7],
      [7, 14],
      [14, 20],
    ]);
    expect(batchRanges(3, 8)).toEqual([[0, 3]]);
    expect(batchRanges(0, 8)).toEqual([]);
  });
});

describe('SliceClassifier', () => {
  it('gives the model softmax for the preprocessed stack as [pOAP, pIN, pOBS], in any batch size', async () => {
    const images = stack(7, 40, 56, 1);
    const c = card();
    const want = direct(images, 40, 56, c);
    for (const batchSize of [1, 3, 8]) {
      const clf = await SliceClassifier.fromModel(model, c, { batchSize });
      const got = await clf.classify(images, 40, 56);
      expect(got).toHaveLength(7);
      got.forEach((row, i) => {
        expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
        row.forEach((p, k) => expect(p).toBeCloseTo(want[i][k], 5));
      });
      clf.dispose();
    }
  });

  it('maps the card class order onto [OAP, IN, OBS]', async () => {
    const images = stack(3, 40, 40, 2);
    const want = direct(images, 40, 40, card());
    const clf = await SliceClassifier.fromModel(model, card({ classes: ['in', 'oap', 'obs'] }), { warmup: false });
    const got = await clf.classify(images, 40, 40);
    got.forEach((row, i) => {
      expect(row[0]).toBeCloseTo(want[i][1], 6);
      expect(row[1]).toBeCloseTo(want[i][0], 6);
      expect(row[2]).toBeCloseTo(want[i][2], 6);
    });
    clf.dispose();
  });

  it('feeds 2.5D models the neighbours in the order given', async () => {
    const images = stack(5, 40, 40, 3);
    const changed: Float32Array[] = images.map((im) => im.slice());
    changed[3] = stack(1, 40, 40, 99)[0];
    const gray = await SliceClassifier.fromModel(model, card(), { warmup: false });
    const g0 = await gray.classify(images, 40, 40);
    const g1 = await gray.classify(changed, 40, 40);
    const d25 = await SliceClassifier.fromModel(model, card({}, '2.5d'), { warmup: false });
    const t0 = await d25.classify(images, 40, 40);
    const t1 = await d25.classify(changed, 40, 40);
    // gray3: only slice 3 itself changes; 2.5D: slices 2 and 4 see it as a neighbour too.
    expect(g1[2]).toEqual(g0[2]);
    expect(g1[4]).toEqual(g0[4]);
    expect(t1[2]).not.toEqual(t0[2]);
    expect(t1[4]).not.toEqual(t0[4]);
    expect(t1[0]).toEqual(t0[0]);
    gray.dispose();
    d25.dispose();
  });

  it('refuses a card that does not fit the model, naming the field', async () => {
    await expect(SliceClassifier.fromModel(model, card({ inputSize: 64 }))).rejects.toThrow(/inputSize 64 differs/);
    await expect(
      SliceClassifier.fromModel(model, card({ inputSize: 64, preprocessing: preprocessParamsFor('cbr_compact', { inputSize: 64 }) })),
    ).rejects.toThrow(/does not match the card's \[null, 64, 64, 3\]/);
    await expect(SliceClassifier.fromModel(model, card({ classes: ['OAP', 'IN', 'MID'] }))).rejects.toThrow(ClassifierCardError);
    await expect(SliceClassifier.fromModel(model, card({ sha256: 'xyz' }))).rejects.toThrow(/sha256/);
    await expect(SliceClassifier.fromModel(model, card({ lastConvLayer: 'nope' }))).rejects.toThrow(/no layer 'nope'/);
  });

  it('returns one CAM per slice on the slice grid, for the argmax class, with the same probabilities', async () => {
    const images = stack(6, 50, 60, 4);
    const clf = await SliceClassifier.fromModel(model, card(), { batchSize: 4 });
    expect(clf.camScore).toBe('logit');
    expect(clf.camLayer).toBe('block4_relu');
    const probs = await clf.classify(images, 50, 60);
    const res = await clf.classifyWithCam(images, 50, 60);
    expect(res.probabilities).toEqual(probs);
    expect(res.camClasses).toEqual(probs.map((r) => r.indexOf(Math.max(...r))));
    expect(res.cams).toHaveLength(6);
    const box = centralCropBox(50, 60, 0.6);
    const maxima: number[] = [];
    for (const cam of res.cams) {
      expect(cam.length).toBe(50 * 60);
      let max = 0;
      for (let r = 0; r < 50; r++) {
        for (let c = 0; c < 60; c++) {
          const v = cam[r * 60 + c];
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThanOrEqual(1 + 1e-6);
          const inside = r >= box.top && r < box.top + box.rows && c >= box.left && c < box.left + box.cols;
          if (!inside) expect(v).toBe(0);
          max = Math.max(max, v);
        }
      }
      maxima.push(max);
    }
    // Normalised on the feature grid (max 1); the slice grid samples between feature centres.
    expect(Math.max(...maxima)).toBeGreaterThan(0.5);
    const custom = await clf.classifyWithCam(images, 50, 60, { target: (p) => p.map(() => 2) });
    expect(custom.camClasses).toEqual([2, 2, 2, 2, 2, 2]);
    await expect(clf.classifyWithCam(images, 50, 60, { target: () => [7] })).rejects.toThrow(/one class 0..2 per slice/);
    clf.dispose();
  });

  it('does not leak tensors over 100 stack classifications, with and without CAMs', async () => {
    const images = stack(5, 32, 32, 5);
    const clf = await SliceClassifier.fromModel(model, card(), { batchSize: 2 });
    await clf.classify(images, 32, 32);
    await clf.classifyWithCam(images, 32, 32);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) {
      await clf.classify(images, 32, 32);
      expect(tf.memory().numTensors).toBe(before);
    }
    for (let i = 0; i < 100; i++) {
      await clf.classifyWithCam(images, 32, 32);
      expect(tf.memory().numTensors).toBe(before);
    }
    // A failing target must not leak the kept feature maps either.
    await expect(clf.classifyWithCam(images, 32, 32, { target: () => [] })).rejects.toThrow();
    expect(tf.memory().numTensors).toBe(before);
    clf.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await expect(clf.classify(images, 32, 32)).rejects.toThrow(/after dispose/);
  }, 60_000);

  it('hashes the weights reproducibly', async () => {
    const a = await weightsSha256(model);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    const other = buildModel('cbr_compact', { inputSize: SIZE, seed: 4 });
    expect(await weightsSha256(other)).not.toBe(a);
    expect(await weightsSha256(model)).toBe(a);
    other.dispose();
  });
});

// ---------------------------------------------------------------------------------------------------------

const UID = '1.2.826.0.1.3680043.8.498';

/**
 * A hand-made stack of n slices at positions 10·i (ascending, as assembled), with `normal` as given.
 * The pixel value of every frame encodes its true label (0 OAP, 1 IN, 2 OBS) so that a fake classifier can
 * answer from the pixels; truth is given apex → base in `truthApexToBase` and placed on the stack so that
 * the apex is at the low-position end when `apexAtLow`.
 */
function fakeStack(n: number, normal: number[], apexAtLow: boolean, truthApexToBase: number[]): { stack: CineStack; frames: (s: number, p: number) => Float32Array } {
  const slices = Array.from({ length: n }, (_, i) => ({
    index: i,
    position: 10 * i,
    imagePositionPatient: [0, 0, 10 * i],
    frames: [0, 1].map((p) => ({ sopInstanceUID: `${UID}.${100 + 10 * i + p}`, seriesInstanceUID: `${UID}.2`, path: `/x/${i}-${p}`, triggerTime: p * 300 })),
  }));
  const stack: CineStack = {
    stackId: 'fake',
    studyInstanceUID: `${UID}.1`,
    seriesInstanceUIDs: [`${UID}.2`],
    imageOrientationPatient: [1, 0, 0, 0, 1, 0],
    normal,
    rows: 4,
    columns: 4,
    sliceSpacing: 10,
    slices,
    phases: 2,
    phaseOrder: 'trigger-time',
    problems: [],
  };
  const frames = (s: number, _p: number) => new Float32Array(16).fill(truthApexToBase[apexAtLow ? s : n - 1 - s]);
  return { stack, frames };
}

/** Answers from the pixel value: 0.9 on the encoded class. Counts calls. */
function fakeClassifier(channelMode: ChannelMode = 'gray3'): StackClassifier & { calls: number } {
  const probs = (images: readonly Float32Array[]) =>
    images.map((im) => {
      const row = [0.05, 0.05, 0.05];
      row[im[0]] = 0.9;
      return row;
    });
  return {
    calls: 0,
    modelRef: { id: 'fake', version: '1', sha256: 'b'.repeat(64) },
    card: { preprocessing: { channelMode } },
    async classify(images) {
      this.calls++;
      return probs(images);
    },
    async classifyWithCam(images, rows, columns, _opts?: CamOptions) {
      this.calls++;
      const p = probs(images);
      return { probabilities: p, cams: images.map((im) => new Float32Array(rows * columns).fill(im[0] / 2)), camClasses: p.map((r) => r.indexOf(0.9)), camScore: 'logit' as const };
    },
  };
}

const APEX = [1 / Math.sqrt(3), -1 / Math.sqrt(3), -1 / Math.sqrt(3)];
const truth = [0, 1, 1, 1, 1, 2]; // OAP IN IN IN IN OBS, apex → base
const phases = { ED: { phaseIndex: 0, triggerTime: 0, method: 'min-trigger-time' }, ES: { phaseIndex: 1, method: 'min-blood-pool-area' } };

describe('classifyStack', () => {
  it('orders the slices apex → base from the geometry and reports agreement', async () => {
    // Normal pointing toward the apex: larger positions are more apical → apex is at the high end.
    const { stack, frames } = fakeStack(6, APEX, false, truth);
    const clf = fakeClassifier();
    const { result, cams, images } = await classifyStack(stack, phases, frames, clf);
    expect(parseResult(result)).toEqual(result);
    expect(result.order).toMatchObject({ direction: 'apex-to-base', method: 'geometry', geometryAgrees: true });
    expect(result.order.message).toBeUndefined();
    expect(result.order.margin).toBeGreaterThan(1);
    const ed = result.phases.ED;
    expect(ed.slices.map((s) => s.index)).toEqual([5, 4, 3, 2, 1, 0]);
    expect(ed.slices.map((s) => s.position)).toEqual([50, 40, 30, 20, 10, 0]);
    expect(ed.slices.map((s) => s.label)).toEqual(['OAP', 'IN', 'IN', 'IN', 'IN', 'OBS']);
    expect(ed.inRange).toEqual({ first: 1, last: 4, count: 4, firstSopInstanceUID: `${UID}.140`, lastSopInstanceUID: `${UID}.110` });
    expect(result.phases.ES.slices[0].sopInstanceUID).toBe(`${UID}.151`);
    expect(result.phases.ES.triggerTime).toBeNull();
    expect(result.phases.ED.triggerTime).toBe(0);
    expect(cams.get('ED')!.map((c) => c[0])).toEqual([0, 0.5, 0.5, 0.5, 0.5, 1]);
    expect(images.get('ES')!.map((c) => c[0])).toEqual(truth);
    expect(Object.keys(result.timings)).toEqual(expect.arrayContaining(['framesMs', 'inferenceMs', 'classifyStackMs']));
  });

  it('keeps the geometry but reports it when the likelihood disagrees', async () => {
    // The geometry says apex at the high end, but the images have the apex at the low end.
    const { stack, frames } = fakeStack(6, APEX, true, truth);
    const { result } = await classifyStack(stack, phases, frames, fakeClassifier(), { cams: false });
    expect(result.order.method).toBe('geometry');
    expect(result.order.geometryAgrees).toBe(false);
    expect(result.order.margin).toBeGreaterThan(1);
    expect(result.order.message).toMatch(/prefers the opposite apex end/);
    expect(result.phases.ED.slices.map((s) => s.index)).toEqual([5, 4, 3, 2, 1, 0]);
    expect(result.phases.ED.slices.map((s) => s.predicted)).toEqual(['OBS', 'IN', 'IN', 'IN', 'IN', 'OAP']);
  });

  it('lets the likelihood decide when the geometry is ambiguous, and re-runs a 2.5D model in the new order', async () => {
    // Normal 83° from the LV axis (cos +0.115: the geometry weakly puts the apex at the high end).
    // The images have the apex at the low-position end.
    const perp = [0.8, 0.6, 0];
    const { stack, frames } = fakeStack(6, perp, true, truth);
    for (const mode of ['gray3', '2.5d'] as const) {
      const clf = fakeClassifier(mode);
      const { result, cams } = await classifyStack(stack, phases, frames, clf);
      expect(result.order.method).toBe('likelihood');
      expect(result.order.geometryAgrees).toBe(false);
      expect(result.order.message).toMatch(/geometry is ambiguous.*reverses/);
      expect(result.phases.ES.slices.map((s) => s.index)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(result.phases.ES.slices.map((s) => s.label)).toEqual(['OAP', 'IN', 'IN', 'IN', 'IN', 'OBS']);
      expect(cams.get('ES')!.map((c) => c[0])).toEqual([0, 0.5, 0.5, 0.5, 0.5, 1]);
      expect(clf.calls).toBe(mode === '2.5d' ? 4 : 2);
    }
  });

  it('checks phase indices and frame sizes', async () => {
    const { stack, frames } = fakeStack(4, APEX, false, [0, 1, 1, 2]);
    await expect(classifyStack(stack, { ...phases, ES: { phaseIndex: 2, method: 'x' } }, frames, fakeClassifier())).rejects.toThrow(/ES phase index 2/);
    await expect(classifyStack(stack, phases, () => new Float32Array(3), fakeClassifier())).rejects.toThrow(/3 pixels, expected 4×4/);
  });

  it('classifies phantom slices end to end with a real model (untrained: shape and contract only)', async () => {
    const m = createPhantomModel({ seed: 2, slices: 8, phases: 20, rows: 64 });
    // The phantom's normal points apex → base, so apex = low position: the geometry must say so.
    const slices = Array.from({ length: m.slices }, (_, i) => ({
      index: i,
      position: m.sliceLocations[i],
      imagePositionPatient: [...m.imagePositions[i]],
      frames: Array.from({ length: m.phases }, (_, p) => ({ sopInstanceUID: `${UID}.${1000 + i * 100 + p}`, seriesInstanceUID: `${UID}.3`, path: '' })),
    }));
    const stack: CineStack = {
      stackId: 'phantom-2',
      studyInstanceUID: `${UID}.1`,
      seriesInstanceUIDs: [`${UID}.3`],
      imageOrientationPatient: [...m.rowCosines, ...m.columnCosines],
      normal: [...m.normal],
      rows: 64,
      columns: 64,
      sliceSpacing: m.sliceSpacing,
      slices,
      phases: m.phases,
      phaseOrder: 'trigger-time',
      problems: [],
    };
    const clf = await SliceClassifier.fromModel(model, card(), { batchSize: 8 });
    const before = tf.memory().numTensors;
    const { result, cams } = await classifyStack(
      stack,
      { ED: { phaseIndex: m.ed, method: 'min-trigger-time' }, ES: { phaseIndex: m.es, method: 'min-blood-pool-area' } },
      (s, p) => m.render(s, p),
      clf,
    );
    expect(tf.memory().numTensors).toBe(before);
    expect(result.phases.ED.slices.map((s) => s.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(result.model).toEqual({ id: 'test-cbr-compact', version: '0.0.1', sha256: 'a'.repeat(64) });
    expect(cams.get('ED')).toHaveLength(8);
    expect(cams.get('ES')![0].length).toBe(64 * 64);
    clf.dispose();
  });
});

describe('ClassifierPool', () => {
  it('gives the in-process results from 2 worker threads, also for 2.5D chunks that need neighbours', async () => {
    const images = stack(7, 40, 52, 8);
    // 2.5D: the chunk edges (slices 3 | 4) need the other chunk's slice as context.
    for (const mode of ['2.5d'] as const) {
      const c = { ...card({}, mode), decoding: { classLogPrior: [-2, 0, -1.5] as const } };
      const local = await SliceClassifier.fromModel(model, c, { warmup: false });
      const want = await local.classifyWithCam(images, 40, 52);
      const pool = await ClassifierPool.create({ model, card: c }, { threads: 2, batchSize: 3 });
      try {
        expect(pool.threads).toBe(2);
        expect(pool.modelRef).toEqual(local.modelRef);
        // The card's decoding prior reaches the pipeline through the pool as it does in-process.
        expect(classLogPriorOf(pool.card)).toEqual([-2, 0, -1.5]);
        expect(classLogPriorOf(local.card)).toEqual([-2, 0, -1.5]);
        const got = await pool.classifyWithCam(images, 40, 52);
        expect(got.camClasses).toEqual(want.camClasses);
        got.probabilities.forEach((row, i) => row.forEach((p, k) => expect(p).toBeCloseTo(want.probabilities[i][k], 5)));
        got.cams.forEach((cam, i) => {
          let d = 0;
          for (let j = 0; j < cam.length; j++) d = Math.max(d, Math.abs(cam[j] - want.cams[i][j]));
          expect(d).toBeLessThan(1e-4);
        });
        expect(await pool.classify(images, 40, 52)).toEqual(got.probabilities);
        await expect(pool.classifyWithCam(images, 40, 52, { target: () => [] })).rejects.toThrow(/not supported/);
      } finally {
        await pool.close();
        local.dispose();
      }
      await expect(pool.classify(images, 40, 52)).rejects.toThrow(/after close/);
    }
  }, 60_000);

  it('fails to start with the reason the worker gives', async () => {
    await expect(ClassifierPool.create({ modelDir: '/nonexistent/model' }, { threads: 1 })).rejects.toThrow(/failed to start: model directory \/nonexistent\/model/);
  }, 30_000);
});

describe('runClassify', () => {
  it('classifies a phantom study from DICOM files: JSON on stdout, <stackId>.json in --out, the output hook', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sax-classify-'));
    try {
      const modelDir = join(dir, 'model');
      const saved = await saveModelDir(
        modelDir,
        model,
        {
          schema: 'sax-range/model-card@1',
          id: 'test-random',
          version: '0.0.0',
          architecture: 'cbr_compact',
          inputSize: SIZE,
          channelMode: 'gray3',
          preprocessing: card().preprocessing,
          classes: ['OAP', 'IN', 'OBS'],
          training: { protocol: { name: 'none' }, datasets: [], subjects: 0, epochs: 0, batchSize: 1, optimizer: { name: 'none' }, seed: 3, backend: 'wasm', durationSeconds: 0, versions: {} },
          metrics: {},
          evaluation: { method: 'none: random weights for a test' },
          license: { data: 'none', citation: '' },
          createdAt: new Date().toISOString(),
        },
        { macs: countMacs, lastConvLayer: lastConvLayerName },
      );
      expect(saved.sha256).toBe(await weightsSha256(model));
      const { truth } = await writePhantomStudy(join(dir, 'study'), { seed: 4, slices: 8, phases: 20, rows: 64 });
      await writeFile(join(dir, 'study', 'notes.txt'), 'not DICOM');
      let printed = '';
      const hookCalls: string[] = [];
      const results = await runClassify({
        paths: [join(dir, 'study')],
        modelDir,
        out: join(dir, 'out'),
        json: true,
        backend: 'wasm',
        logger: createLogger('test', 'silent'),
        stdout: (t) => (printed += t),
        writeOutputs: async ({ result, cams, images }) => {
          hookCalls.push(result.stackId);
          expect(cams.get('ED')).toHaveLength(8);
          expect(images.get('ES')).toHaveLength(8);
          return [{ kind: 'kos', sopInstanceUID: '1.2.3.4', seriesInstanceUID: '1.2.3' }];
        },
      });
      expect(results).toHaveLength(1);
      const r = results[0];
      expect(JSON.parse(printed)).toEqual(results);
      expect(hookCalls).toEqual([r.stackId]);
      expect(r.outputs).toEqual([{ kind: 'kos', sopInstanceUID: '1.2.3.4', seriesInstanceUID: '1.2.3' }]);
      expect(r.model).toEqual({ id: 'test-random', version: '0.0.0', sha256: saved.sha256 });
      expect(r.studyInstanceUID).toBe(truth.studyInstanceUID);
      expect(r.order).toMatchObject({ method: 'geometry' });
      expect(r.phases.ED.phaseIndex).toBe(truth.ed);
      expect(r.phases.ED.slices.map((s) => s.sopInstanceUID)).toEqual(truth.sopInstanceUIDs.ED);
      expect(r.phases.ES.slices.map((s) => s.sopInstanceUID)).toEqual(truth.sopInstanceUIDs.ES);
      expect(parseResult(JSON.parse(await readFile(join(dir, 'out', `${r.stackId}.json`), 'utf8')))).toEqual(r);
      await expect(
        runClassify({ paths: [join(dir, 'out')], modelDir, json: false, backend: 'wasm', logger: createLogger('test', 'silent') }),
      ).rejects.toThrow(NoStackError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('predictionRows', () => {
  it('writes NIfTI slice numbers (ACDC: 0 = base) in ascending order, argmax and decoded labels', () => {
    // Apex → base probabilities of a 4-slice stack whose NIfTI indices are 3, 2, 1, 0.
    const probs = [
      [0.8, 0.1, 0.1],
      [0.2, 0.7, 0.1],
      [0.1, 0.2, 0.7], // argmax OBS between IN slices: decoded IN
      [0.1, 0.8, 0.1],
    ];
    const rows = predictionRows('patient001', 'ED', probs, [3, 2, 1, 0]);
    expect(PREDICT_CSV_HEADER).toBe('subject,phase,slice,p_oap,p_in,p_obs,predicted,label');
    expect(rows).toEqual([
      'patient001,ED,0,0.100000,0.800000,0.100000,IN,IN',
      'patient001,ED,1,0.100000,0.200000,0.700000,OBS,IN',
      'patient001,ED,2,0.200000,0.700000,0.100000,IN,IN',
      'patient001,ED,3,0.800000,0.100000,0.100000,OAP,OAP',
    ]);
    expect(() => predictionRows('p', 'ES', probs, [0, 1])).toThrow(RangeError);
  });
});
