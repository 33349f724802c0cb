import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadModelDir,
  ModelCardSchema,
  ModelDirError,
  parseModelCard,
  saveModelDir,
  type ModelCardInput,
} from '../../src/inference/model-dir.js';
import { preprocessParamsFor } from '../../src/inference/preprocess.js';
import { buildModel, countMacs, lastConvLayerName } from '../../src/training/models/index.js';

let dir: string;

beforeAll(async () => {
  await tf.setBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'sax-model-dir-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function card(inputSize: number): ModelCardInput {
  return {
    schema: 'sax-range/model-card@1',
    id: 'test-cbr-compact',
    version: '1',
    architecture: 'cbr_compact',
    inputSize,
    channelMode: 'gray3',
    preprocessing: preprocessParamsFor('cbr_compact', { inputSize }),
    classes: ['OAP', 'IN', 'OBS'],
    training: {
      protocol: { name: 'unit' },
      datasets: ['phantom:1:1'],
      subjects: 1,
      epochs: 0,
      batchSize: 1,
      optimizer: { name: 'sgd' },
      seed: 1,
      backend: 'cpu',
      durationSeconds: 0,
      versions: { node: process.version },
    },
    metrics: {},
    evaluation: { method: 'none (unit test)' },
    license: { data: 'synthetic', citation: '' },
    createdAt: new Date().toISOString(),
  };
}

describe('model directory', () => {
  it('round-trips: same predictions after save/load, card validated, sha256 recorded', async () => {
    const model = buildModel('cbr_compact', { inputSize: 32, seed: 3 });
    const out = join(dir, 'm1');
    const saved = await saveModelDir(out, model, card(32), { macs: countMacs, lastConvLayer: lastConvLayerName });
    expect(saved.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(saved.lastConvLayer).toBe('block4_relu');
    expect(saved.macs).toBe(countMacs(model));
    const json = JSON.parse(await readFile(join(out, 'model.json'), 'utf8'));
    expect(json.format).toBe('layers-model');
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);

    const { model: loaded, card: c } = await loadModelDir(out);
    expect(ModelCardSchema.safeParse(c).success).toBe(true);
    expect(c.sha256).toBe(saved.sha256);
    const x = tf.randomUniform([2, 32, 32, 3], -100, 100, 'float32', 7);
    const a = (model.predict(x) as tf.Tensor).arraySync();
    const b = (loaded.predict(x) as tf.Tensor).arraySync();
    expect(b).toEqual(a);
    expect(loaded.getLayer('predictions')).toBeTruthy();
    x.dispose();
    model.dispose();
    loaded.dispose();
  });

  it('refuses tampered weights, naming weights.bin', async () => {
    const model = buildModel('cbr_compact', { inputSize: 32, seed: 4 });
    const out = join(dir, 'm2');
    await saveModelDir(out, model, card(32), { macs: countMacs, lastConvLayer: lastConvLayerName });
    model.dispose();
    const w = await readFile(join(out, 'weights.bin'));
    w[100] ^= 0xff;
    await writeFile(join(out, 'weights.bin'), w);
    await expect(loadModelDir(out)).rejects.toThrow(/weights\.bin: sha256 .* does not match/);
  });

  it('names a missing file', async () => {
    const model = buildModel('cbr_compact', { inputSize: 32, seed: 5 });
    const out = join(dir, 'm3');
    await saveModelDir(out, model, card(32), { macs: countMacs, lastConvLayer: lastConvLayerName });
    model.dispose();
    await rm(join(out, 'weights.bin'));
    await expect(loadModelDir(out)).rejects.toThrow(ModelDirError);
    await expect(loadModelDir(out)).rejects.toThrow(/weights\.bin: missing/);
    await expect(loadModelDir(join(dir, 'nope'))).rejects.toThrow(/model-card\.json: missing/);
  });

  it('validates the card: bad fields named, inconsistent preprocessing refused', async () => {
    expect(() => parseModelCard({ schema: 'other' })).toThrow(/model-card\.json: invalid model card: schema/);
    const good = { ...card(32), sha256: 'a'.repeat(64), macs: 1, lastConvLayer: 'block4_relu' };
    expect(parseModelCard(good).id).toBe('test-cbr-compact');
    expect(() => parseModelCard({ ...good, classes: ['IN', 'OAP', 'OBS'] })).toThrow(/classes/);
    expect(() => parseModelCard({ ...good, inputSize: 64 })).toThrow(/inputSize 64 differs/);
    const model = buildModel('cbr_compact', { inputSize: 32, seed: 6 });
    await expect(saveModelDir(join(dir, 'm4'), model, card(64), { macs: countMacs, lastConvLayer: lastConvLayerName })).rejects.toThrow(
      /does not match the model input/,
    );
    model.dispose();
  });
});
