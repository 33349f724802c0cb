/**
 * A small grid run folder in the shape of docs/training.md ("Run folder"): two cells (an ImageNet-style
 * depth-0 cell with held-out test predictions, and a CBR cell with CV predictions only), 2 folds × 3 epochs,
 * tiny features and Grad-CAM tiles. The VGG-like cell's features and tiles come from a real (tiny, random)
 * tf.layers model through `penultimateFeatures` / `gradCamTiles`, as the grid runner makes them.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LABELS, type SliceLabel } from '../../src/inference/decode.js';
import { Rng } from '../../src/phantom/prng.js';
import { gradCamTiles, penultimateFeatures, pickByPair, writeCellFeatures, writeCellGradCam, type SliceRef } from '../../src/training/report/cell-artifacts.js';
import type { EpochRecord } from '../../src/training/train.js';

const PATTERN: SliceLabel[] = ['OAP', 'IN', 'IN', 'IN', 'IN', 'IN', 'OBS', 'OBS'];

interface Row extends SliceRef {
  probs: number[];
}

/** Noisy probabilities around the truth; about one slice in five is wrong. */
function predictions(subjects: string[], rng: Rng): Row[] {
  const rows: Row[] = [];
  for (const subject of subjects) {
    for (const phase of ['ED', 'ES']) {
      PATTERN.forEach((truth, apexIndex) => {
        const logits = LABELS.map((l) => (l === truth ? 1.6 : 0) + 2.2 * rng.next());
        const e = logits.map(Math.exp);
        const s = e.reduce((a, b) => a + b, 0);
        const probs = e.map((v) => Math.round((v / s) * 1e6) / 1e6);
        const predicted = LABELS[probs.indexOf(Math.max(...probs))];
        rows.push({ subject, phase, apexIndex, truth, predicted, probs });
      });
    }
  }
  return rows;
}

function csv(rows: Row[], fold?: (subject: string) => string): string {
  const head = `${fold ? 'fold,' : ''}subject,phase,slice,apex_index,p_oap,p_in,p_obs,predicted,label,truth`;
  const lines = rows.map((r) => `${fold ? `${fold(r.subject)},` : ''}${r.subject},${r.phase},${r.apexIndex},${r.apexIndex},${r.probs.join(',')},${r.predicted},${r.predicted},${r.truth}`);
  return `${[head, ...lines].join('\n')}\n`;
}

function compact(acc: number) {
  const f = { OAP: acc, IN: acc, OBS: acc };
  const m = { accuracy: acc, balancedAccuracy: acc, macroF1: acc, softAccuracy: acc, rangeExact: acc / 2, f1: f, recall: f };
  return { argmax: m, decoded: m };
}

function records(fold: number, epochs: number): EpochRecord[] {
  return Array.from({ length: epochs }, (_, k) => {
    const e = k + 1;
    const acc = 0.5 + 0.1 * e + 0.02 * fold;
    return {
      epoch: e,
      trainLoss: 1.1 - 0.2 * e,
      trainAccuracy: acc + 0.05,
      learningRate: 0.001,
      iterations: 4 * e,
      samples: 120,
      seconds: 2 + fold,
      samplesPerSecond: 60 / (1 + fold),
      val: { logLoss: 1.0 - 0.15 * e + 0.03 * fold, all: compact(acc) },
      memory: { numTensors: 10, numBytes: 1000 },
    };
  });
}

/** A tiny VGG-like model with the paper's head names (`gap`, `fc1`, `predictions`). */
function tinyModel(size: number): tf.LayersModel {
  const input = tf.input({ shape: [size, size, 3] });
  let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'block1_conv1', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ poolSize: 2, name: 'block1_pool' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'block2_conv1', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.dense({ units: 8, activation: 'relu', name: 'fc1', kernelInitializer: tf.initializers.glorotUniform({ seed: 5 }) }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'predictions', kernelInitializer: tf.initializers.glorotUniform({ seed: 6 }) }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

export interface FixtureRun {
  dir: string;
  cellIds: string[];
  /** Slices whose features each cell saved. */
  featureRows: Record<string, number>;
}

/** Writes the fixture run folder under `dir`. Needs a tfjs backend selected (the tiny model runs). */
export async function writeFixtureRun(dir: string): Promise<FixtureRun> {
  const rng = new Rng(7);
  const trainVal = ['s01', 's02', 's03', 's04'];
  const test = ['t01', 't02'];
  const folds = [
    ['s01', 's03'],
    ['s02', 's04'],
  ];
  const foldOf = (s: string) => `fold-${folds.findIndex((f) => f.includes(s)) + 1}`;
  const cells = [
    { id: 'D0-vgg16-lr0.001', name: 'fixture/D0/vgg16/lr0.001', group: 'D0', architecture: 'vgg16', inputSize: 32, depth: 0, weights: 'imagenet', learningRate: 0.001, startFrom: 'init', dependsOn: [] },
    { id: 'CBR-cbr_tiny-lr0.01', name: 'fixture/CBR/cbr_tiny/lr0.01', group: 'CBR', architecture: 'cbr_tiny', inputSize: 32, depth: 'full', weights: 'none', learningRate: 0.01, startFrom: 'init', dependsOn: [] },
  ];
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'run.json'),
    JSON.stringify({
      schema: 'sax-range/grid-run@1',
      protocol: { name: 'fixture', description: 'report test fixture', epochs: 3, folds: 2 },
      protocolFile: null,
      dataset: { spec: 'phantom:6:1', parts: [] },
      testDataset: null,
      split: { method: 'split', testFraction: 0.33, seed: 1, trainVal, test, folds },
      seeds: { protocol: 1, testSplit: 2, cvSplit: 1 },
      cells,
      backend: 'wasm',
      versions: { 'sax-range': '0.1.0', node: process.version },
      host: { platform: 'linux', arch: 'x64', cpus: 2, cpuModel: 'fixture CPU', totalMemoryGB: 24 },
      fingerprint: 'fixture',
      sessions: [],
      status: 'done',
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
    }),
  );
  const featureRows: Record<string, number> = {};
  for (const [k, cell] of cells.entries()) {
    const cdir = join(dir, 'cells', cell.id);
    await mkdir(cdir, { recursive: true });
    const cvRows = predictions(trainVal, rng);
    await writeFile(join(cdir, 'cv-predictions.csv'), csv(cvRows, foldOf));
    const hasTest = k === 0;
    const testRows = hasTest ? predictions(test, rng) : [];
    if (hasTest) await writeFile(join(cdir, 'test-predictions.csv'), csv(testRows));
    const evalRows = hasTest ? testRows : cvRows;
    const curve = [1, 2, 3].map((e) => ({ epoch: e, mean: 0.5 + 0.1 * e + 0.01 * k, std: 0.01 }));
    await writeFile(
      join(cdir, 'result.json'),
      JSON.stringify({
        schema: 'sax-range/grid-cell@1',
        ...cell,
        protocol: { name: cell.name, architecture: cell.architecture, learningRate: cell.learningRate },
        startFrom: null,
        model: { params: 1000 + k, trainableParams: 100 + k, macs: 5000 },
        selection: { metric: 'accuracy (argmax, ED+ES; mean over folds)', epoch: 3, curve },
        cv: { folds: 2, foldSubjects: folds, epochs: [1, 2].map((f) => ({ fold: f, records: records(f, 3) })), pooled: {}, foldMean: {} },
        final: { epochs: 3, trainLoss: 0.5, trainAccuracy: 0.8, seconds: 5, model: 'model' },
        test: hasTest ? { subjects: test, summary: {}, predictions: 'test-predictions.csv' } : null,
        timings: { wallSeconds: 30 + k, cvTrainSeconds: 12, finalTrainSeconds: 5, testSeconds: hasTest ? 0.5 : undefined, testImages: testRows.length, secondsPerImageTest: hasTest ? 0.5 / testRows.length : undefined, meanEpochSeconds: 2.5, meanSamplesPerSecond: 48 },
        backend: 'wasm',
        versions: {},
        createdAt: '2026-01-01T00:00:00.000Z',
      }),
    );
    const refs: SliceRef[] = evalRows.map(({ probs: _p, ...r }) => r);
    if (hasTest) {
      // Features and Grad-CAM tiles from a real model on synthetic 32² inputs, as the grid runner makes them.
      const model = tinyModel(32);
      const x = tf.tidy(() => tf.randomUniform([refs.length, 32, 32, 3], -1, 1, 'float32', 11) as tf.Tensor4D);
      const f = await penultimateFeatures(model, x, 'gap', 16);
      await writeCellFeatures(cdir, { layer: 'gap', dim: f.dim, source: 'test', rows: refs, values: f.values });
      const pick = pickByPair(refs, 2);
      const xs = tf.tidy(() => tf.gather(x, pick) as tf.Tensor4D);
      const g = await gradCamTiles(model, xs, pick.map((i) => LABELS.indexOf(refs[i].predicted)));
      await writeCellGradCam(cdir, {
        size: g.size,
        layer: g.layer,
        source: 'test',
        tiles: pick.map((i) => ({ ...refs[i], probability: Math.max(...evalRows[i].probs) })),
        images: g.images,
        cams: g.cams,
      });
      x.dispose();
      xs.dispose();
      model.dispose();
    } else {
      // Class-dependent random features (no model).
      const dim = 5;
      const values = new Float32Array(refs.length * dim);
      refs.forEach((r, i) => {
        for (let j = 0; j < dim; j++) values[i * dim + j] = (j === LABELS.indexOf(r.truth) ? 3 : 0) + rng.next();
      });
      await writeCellFeatures(cdir, { layer: 'gap', dim, source: 'cv', rows: refs, values });
    }
    featureRows[cell.id] = refs.length;
  }
  return { dir, cellIds: cells.map((c) => c.id), featureRows };
}
