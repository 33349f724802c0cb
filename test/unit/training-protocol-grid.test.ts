import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelDir } from '../../src/inference/model-dir.js';
import { APPLICATIONS } from '../../src/training/models/applications.js';
import { imagenetWeightsPath, parseSha256Sums } from '../../src/training/models/imagenet-weights.js';
import { buildModel, canonicalArchitecture } from '../../src/training/models/index.js';
import { effectiveDepth, expandGrid, loadProtocol, loadProtocolFile, parseGridProtocol, parseProtocol, type Protocol } from '../../src/training/protocol.js';
import { runTraining } from '../../src/training/train.js';
import { kerasLayoutOf, patternFill, writeKerasH5 } from '../helpers/keras-h5-writer.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'grid-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('protocol schema (single runs and grids)', () => {
  it('the existing protocols still parse, with the new fields at their defaults', async () => {
    for (const f of ['ci', 'shipped']) {
      const p = await loadProtocol(`config/protocols/${f}.json`);
      expect(p.weights).toBe('none');
      expect(p.startFrom).toBe('init');
      expect(p.heldOutTest).toBe('none');
      expect(effectiveDepth(p)).toBe('full');
    }
  });

  it('config/protocols/paper.json states the paper\'s protocol as a grid of 63 cells', async () => {
    const file = await loadProtocolFile('config/protocols/paper.json');
    expect(file.kind).toBe('grid');
    if (file.kind !== 'grid') return;
    const cells = expandGrid(file.grid);
    expect(cells).toHaveLength(9 * 3 + 9 * 3 + 3 * 3);
    for (const c of cells) {
      expect(c).toMatchObject({ epochs: 50, batchSize: 32, momentum: 0.9, nesterov: true, decay: 1e-6, oversample: 6, rotationDegrees: 45, folds: 5, seed: 1 });
      expect(c).toMatchObject({ zoom: 0.6, clip: [2, 98], channelMode: 'gray3', finalModel: true, selectionMetric: 'accuracy', heldOutTest: 'test-dataset' });
      const key = canonicalArchitecture(c.architecture);
      expect(c.inputSize, c.name).toBe(['inceptionv3', 'xception', 'inceptionresnetv2'].includes(key) ? 299 : 224);
    }
    const lrs = (pred: (c: Protocol) => boolean) => [...new Set(cells.filter(pred).map((c) => c.learningRate))].sort();
    expect(lrs((c) => effectiveDepth(c) === 0)).toEqual([1e-4, 1e-3, 1e-2]);
    expect(lrs((c) => c.architecture.startsWith('cbr'))).toEqual([1e-4, 1e-3, 1e-2]);
    expect(lrs((c) => effectiveDepth(c) === 1)).toEqual([1e-5, 1e-4, 1e-3]);
    const d0 = cells.filter((c) => effectiveDepth(c) === 0);
    expect(new Set(d0.map((c) => canonicalArchitecture(c.architecture)))).toEqual(new Set(Object.keys(APPLICATIONS)));
    expect(d0.every((c) => c.weights === 'imagenet')).toBe(true);
    expect(cells.filter((c) => effectiveDepth(c) === 1).every((c) => c.startFrom === 'depth0-final')).toBe(true);
    expect(cells.find((c) => c.name === 'paper/D1/vgg16/lr0.0001')).toBeDefined();
    expect(cells.filter((c) => c.architecture === 'mobilenet').every((c) => c.alpha === 0.25)).toBe(true);
    await expect(loadProtocol('config/protocols/paper.json')).rejects.toThrow(/grid protocol \(63 cells\)/);
  });

  it('refuses depth 0/1 without pretrained weights, and unknown grid keys, naming the field', () => {
    const base = { name: 'x', architecture: 'vgg16', inputSize: 32, channelMode: 'gray3', epochs: 1, batchSize: 2, learningRate: 0.1, oversample: 1, rotationDegrees: 0, folds: 1, seed: 1, finalModel: true };
    expect(() => parseProtocol({ ...base, depth: 0 })).toThrow(/depth: depth 0 freezes a pretrained base/);
    expect(parseProtocol({ ...base, depth: 0, weights: 'imagenet' }).depth).toBe(0);
    expect(() => parseProtocol({ ...base, depth: 'full', startFrom: 'depth0-final' })).toThrow(/startFrom/);
    const { name, channelMode, epochs, batchSize, oversample, rotationDegrees, folds, seed, finalModel } = base;
    const grid = { name, channelMode, epochs, batchSize, oversample, rotationDegrees, folds, seed, finalModel };
    expect(() => parseGridProtocol({ ...grid, grid: [{ name: 'G', architectures: [{ architecture: 'vgg16', inputSize: 32, width: 2 }], learningRates: [0.1] }] })).toThrow(/grid\.0\.architectures\.0/);
    expect(() => parseGridProtocol({ ...grid, grid: [] })).toThrow(/grid/);
  });

  it('weights folder: release file names, SHA256SUMS parsing', () => {
    expect(imagenetWeightsPath('VGG16', '/w')).toBe('/w/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5');
    expect(imagenetWeightsPath('nasnet_mobile', '/w')).toBe('/w/NASNet-mobile-no-top.h5');
    expect(() => imagenetWeightsPath('cbr_small')).toThrow(/no ImageNet weights/);
    expect(imagenetWeightsPath('mobilenet', '/w', 0.25)).toBe('/w/mobilenet_2_5_224_tf_no_top.h5');
    expect(imagenetWeightsPath('mobilenet_v2_a35', '/w', 0.35)).toBe('/w/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5');
    expect(imagenetWeightsPath('mobilenetv2', '/w')).toBe('/w/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5');
    expect(() => imagenetWeightsPath('mobilenet', '/w', 0.3)).toThrow(/alpha 0.25, 0.5, 0.75, 1/);
    const sums = parseSha256Sums(`${'a'.repeat(64)}  vgg16.h5\n${'B'.repeat(64)} *x.h5\nnoise\n`);
    expect(sums.get('vgg16.h5')).toBe('a'.repeat(64));
    expect(sums.get('x.h5')).toBe('b'.repeat(64));
    for (const s of Object.values(APPLICATIONS)) expect(s.weightsUrl).toMatch(/^https:\/\/storage\.googleapis\.com\/tensorflow\/keras-applications\/[\w_]+\/[\w.-]+\.h5$/);
  });
});

describe('sax-range train: one ImageNet cell end to end (WASM)', () => {
  const cell: Protocol = parseProtocol({
    name: 'mobilenet-smoke',
    architecture: 'mobilenet',
    alpha: 0.25,
    inputSize: 32,
    channelMode: 'gray3',
    epochs: 1,
    batchSize: 16,
    learningRate: 0.01,
    oversample: 1,
    rotationDegrees: 45,
    folds: 1,
    seed: 1,
    finalModel: true,
  });

  it('from scratch: trains, writes a model directory that loads, card says mobilenet', async () => {
    const out = join(root, 'scratch');
    const r = await runTraining({ protocol: cell, dataset: 'phantom:2:4', out, backend: 'wasm', progress: false, phantomRows: 96 });
    expect(r.card?.architecture).toBe('mobilenet');
    expect(r.card?.architectureOptions).toEqual({ alpha: 0.25, weights: 'none', depth: 'full' });
    const { model } = await loadModelDir(join(out, 'model'));
    expect(model.getLayer('conv_pw_13_relu')).toBeDefined();
    model.dispose();
  }, 120_000);

  it('ImageNet weights at depth 0: the head trains, the base (BN statistics included) stays as imported', async () => {
    const weightsDir = join(root, 'imagenet');
    const src = buildModel('mobilenet', { inputSize: 32, seed: 3, alpha: 0.25 });
    const layout = kerasLayoutOf(src, (li, wi, n) => patternFill(li, wi, n).map((v) => 0.01 * (v % 1) + (wi === 3 ? 1 : 0)))
      .filter((l) => !['fc1', 'predictions'].includes(l.name));
    src.dispose();
    const { mkdirSync } = await import('node:fs');
    mkdirSync(weightsDir, { recursive: true });
    await writeKerasH5(imagenetWeightsPath('mobilenet', weightsDir, 0.25), layout);
    const out = join(root, 'd0');
    const r = await runTraining({ protocol: { ...cell, weights: 'imagenet', weightsDir, depth: 0 }, dataset: 'phantom:2:4', out, backend: 'wasm', progress: false, phantomRows: 96 });
    expect(r.card?.architectureOptions).toMatchObject({ weights: 'imagenet', depth: 0 });
    const { model } = await loadModelDir(join(out, 'model'));
    for (const name of ['conv1', 'conv1_bn', 'conv_dw_7', 'conv_pw_13_bn']) {
      const want = layout.find((l) => l.name === name)!.weights;
      model.getLayer(name).getWeights().forEach((w, i) => expect(Array.from(w.dataSync()), `${name}/${i}`).toEqual(Array.from(want[i].values)));
    }
    const fresh = buildModel('mobilenet', { inputSize: 32, seed: 3, alpha: 0.25 });
    expect(Array.from(model.getLayer('fc1').getWeights()[0].dataSync().slice(0, 32))).not.toEqual(Array.from(fresh.getLayer('fc1').getWeights()[0].dataSync().slice(0, 32)));
    fresh.dispose();
    model.dispose();
    const card = JSON.parse(await readFile(join(out, 'model', 'model-card.json'), 'utf8')) as { training: { protocol: Protocol } };
    expect(card.training.protocol.weights).toBe('imagenet');
  }, 120_000);

  it('grid-only settings are refused by a single run with a clear message', async () => {
    await expect(runTraining({ protocol: { ...cell, heldOutTest: 'test-dataset' }, dataset: 'phantom:2:4', out: join(root, 'x1'), progress: false })).rejects.toThrow(/heldOutTest/);
    await expect(runTraining({ protocol: { ...cell, weights: 'imagenet', weightsDir: join(root, 'nowhere') }, dataset: 'phantom:2:4', out: join(root, 'x2'), backend: 'wasm', progress: false, phantomRows: 96 })).rejects.toThrow(
      /mobilenet_2_5_224_tf_no_top\.h5 not found \(get https:\/\/storage\.googleapis\.com\/tensorflow\/keras-applications\/mobilenet\/mobilenet_2_5_224_tf_no_top\.h5;/,
    );
  }, 60_000);
});
