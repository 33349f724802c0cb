import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../../src/training/models/index.js';
import { assignKerasWeights, KerasWeightsError, layerKey, loadKerasWeights, readKerasH5, shortWeightName } from '../../src/training/models/keras-h5.js';
import { kerasLayoutOf, patternFill, writeKerasH5, type WriterLayer } from '../helpers/keras-h5-writer.js';

let dir: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'keras-h5-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every weight of every layer named in `layout` equals the layout's values. */
function expectWeightsFrom(model: tf.LayersModel, layout: WriterLayer[], rename: (n: string) => string = (n) => n): number {
  let checked = 0;
  for (const l of layout) {
    if (!l.weights.length) continue;
    const layer = model.getLayer(rename(l.name));
    const ws = layer.getWeights();
    expect(ws.length, l.name).toBe(l.weights.length);
    ws.forEach((w, i) => {
      expect(w.shape, `${l.name}/${i}`).toEqual(l.weights[i].shape);
      const got = w.dataSync() as Float32Array;
      const want = l.weights[i].values;
      // Compare all values cheaply: any mismatch makes the sums or a sample differ.
      let diff = 0;
      for (let j = 0; j < want.length; j++) diff = Math.max(diff, Math.abs(got[j] - want[j]));
      expect(diff, `${l.name}/${l.weights[i].name}`).toBe(0);
      checked++;
    });
  }
  return checked;
}

/** A truncated VGG16: block 1 under Keras' names, plus the paper's head. */
function vggBlock1(seed: number): tf.LayersModel {
  const input = tf.input({ shape: [8, 8, 3] });
  let x = tf.layers.conv2d({ name: 'block1_conv1', filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed }) }).apply(input) as tf.SymbolicTensor;
  x = tf.layers.conv2d({ name: 'block1_conv2', filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }) }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ name: 'block1_pool', poolSize: 2 }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.dense({ name: 'fc1', units: 5 }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ name: 'predictions', units: 3, activation: 'softmax' }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

describe('Keras .h5 weight import', () => {
  it('names: "/" = "_" and short weight names (Keras 2 and Keras 1 spellings)', () => {
    expect(layerKey('conv1/conv')).toBe(layerKey('conv1_conv'));
    expect(shortWeightName('block1_conv1/kernel:0')).toBe('kernel');
    expect(shortWeightName('conv1/bn/moving_variance:0')).toBe('moving_variance');
    expect(shortWeightName('separable_conv_1_x/depthwise_kernel_1:0')).toBe('depthwise_kernel');
    expect(shortWeightName('block1_conv1_W_1:0')).toBeUndefined();
  });

  it('CBR model: every weight lands, BN moving statistics included; the head is not required', async () => {
    const src = buildModel('cbr_compact', { inputSize: 32, seed: 1 });
    const layout = kerasLayoutOf(src, patternFill).filter((l) => !['fc1', 'predictions'].includes(l.name));
    const path = join(dir, 'cbr.h5');
    await writeKerasH5(path, layout);
    const dst = buildModel('cbr_compact', { inputSize: 32, seed: 2 });
    const headBefore = Array.from(dst.getLayer('fc1').getWeights()[0].dataSync().slice(0, 8));
    const report = await loadKerasWeights(dst, path);
    expect(report.assigned).toEqual([1, 2, 3, 4].flatMap((i) => [`block${i}_conv`, `block${i}_bn`]));
    expect(report.tensors).toBe(4 * (2 + 4));
    expect(report.unused).toEqual([]);
    expect(expectWeightsFrom(dst, layout)).toBe(24);
    expect(Array.from(dst.getLayer('fc1').getWeights()[0].dataSync().slice(0, 8))).toEqual(headBefore);
    src.dispose();
    dst.dispose();
  });

  it('MobileNetV2 (full Keras layer list, 2.26 M values): every weight lands; a whole-model file (model_weights/) works too', async () => {
    const src = buildModel('mobilenetv2', { inputSize: 32, seed: 1 });
    const layout = kerasLayoutOf(src, patternFill).filter((l) => !['fc1', 'predictions'].includes(l.name));
    const path = join(dir, 'mobilenet_v2_no_top.h5');
    await writeKerasH5(path, [...layout, { name: 'Logits', weights: [{ name: 'Logits/kernel:0', shape: [1280, 2], values: new Float32Array(2560) }] }], { wrap: true });
    const file = await readKerasH5(path);
    expect(file.kerasVersion).toBe('2.2.4');
    const dst = buildModel('mobilenetv2', { inputSize: 32, seed: 2 });
    const report = assignKerasWeights(dst, file);
    expect(report.values).toBe(2_257_984);
    expect(report.unused).toEqual(['Logits']);
    expect(expectWeightsFrom(dst, layout)).toBe(report.tensors);
    expect(report.tensors).toBe(dst.weights.length - 4);
    src.dispose();
    dst.dispose();
  });

  it('Keras 1 weight names (VGG16 file style) and Keras 2 DenseNet slash names are matched by position and layer name', async () => {
    const src = vggBlock1(1);
    const layout = kerasLayoutOf(src, patternFill)
      .filter((l) => l.name.startsWith('block1'))
      .map((l) => ({ ...l, weights: l.weights.map((w, i) => ({ ...w, name: `${l.name}_${i === 0 ? 'W' : 'b'}_1:0` })) }));
    const path = join(dir, 'vgg16_block1.h5');
    await writeKerasH5(path, layout);
    const dst = vggBlock1(9);
    expect((await loadKerasWeights(dst, path)).assigned).toEqual(['block1_conv1', 'block1_conv2']);
    expectWeightsFrom(dst, layout);
    dst.dispose();

    const slashed = kerasLayoutOf(src, patternFill, (n) => n.replace('block1_', 'block1/')).filter((l) => l.name.startsWith('block1'));
    const p2 = join(dir, 'slashed.h5');
    await writeKerasH5(p2, slashed);
    const dst2 = vggBlock1(5);
    await loadKerasWeights(dst2, p2);
    expectWeightsFrom(dst2, slashed, (n) => n.replace('/', '_'));
    src.dispose();
    dst2.dispose();
  });

  it('a missing layer is an error naming it, and nothing is assigned', async () => {
    const src = buildModel('cbr_compact', { inputSize: 32, seed: 1 });
    const layout = kerasLayoutOf(src, patternFill).filter((l) => l.name !== 'block3_bn' && !['fc1', 'predictions'].includes(l.name));
    const path = join(dir, 'missing.h5');
    await writeKerasH5(path, layout);
    const dst = buildModel('cbr_compact', { inputSize: 32, seed: 2 });
    const before = Array.from(dst.getLayer('block1_conv').getWeights()[0].dataSync());
    const err = await loadKerasWeights(dst, path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KerasWeightsError);
    expect((err as KerasWeightsError).layer).toBe('block3_bn');
    expect((err as Error).message).toMatch(/layer 'block3_bn' \(BatchNormalization\) is not in the file/);
    expect(Array.from(dst.getLayer('block1_conv').getWeights()[0].dataSync())).toEqual(before);
    src.dispose();
    dst.dispose();
  });

  it('a shape mismatch names the layer, the weight and both shapes', async () => {
    const src = buildModel('cbr_compact', { inputSize: 32, seed: 1 });
    const layout = kerasLayoutOf(src, patternFill).filter((l) => !['fc1', 'predictions'].includes(l.name));
    const l2 = layout.find((l) => l.name === 'block2_conv')!;
    l2.weights[0] = { name: 'block2_conv/kernel:0', shape: [5, 5, 16, 32], values: new Float32Array(5 * 5 * 16 * 32) };
    const path = join(dir, 'shape.h5');
    await writeKerasH5(path, layout);
    const dst = buildModel('cbr_compact', { inputSize: 32, seed: 2 });
    await expect(loadKerasWeights(dst, path)).rejects.toThrow(/layer 'block2_conv' weight 'block2_conv\/kernel:0': shape \[5, 5, 16, 32\] in the file, \[3, 3, 16, 32\] in the model/);
    src.dispose();
    dst.dispose();
  });

  it('a weight-count or weight-kind mismatch is an error', async () => {
    const src = vggBlock1(1);
    const layout = kerasLayoutOf(src, patternFill).filter((l) => l.name.startsWith('block1'));
    const swapped = layout.map((l) => (l.name === 'block1_conv2' ? { ...l, weights: [...l.weights].reverse().map((w, i) => ({ ...w, shape: l.weights[i].shape, values: l.weights[i].values })) } : l));
    const p1 = join(dir, 'kind.h5');
    await writeKerasH5(p1, swapped);
    const dst = vggBlock1(2);
    await expect(loadKerasWeights(dst, p1)).rejects.toThrow(/layer 'block1_conv2' weight 0: model has 'kernel', the file 'block1_conv2\/bias:0'/);
    const short = layout.map((l) => (l.name === 'block1_conv1' ? { ...l, weights: l.weights.slice(0, 1) } : l));
    const p2 = join(dir, 'count.h5');
    await writeKerasH5(p2, short);
    await expect(loadKerasWeights(dst, p2)).rejects.toThrow(/layer 'block1_conv1' has 2 weights .* the file 1/);
    src.dispose();
    dst.dispose();
  });

  it('files that are not Keras weight files are refused with the path', async () => {
    const notKeras = join(dir, 'plain.h5');
    await writeKerasH5(notKeras, []);
    // overwrite with an h5 file without layer_names
    const { default: h5wasm } = await import('h5wasm/node');
    await h5wasm.ready;
    const f = new h5wasm.File(notKeras, 'w');
    f.create_dataset({ name: 'x', data: new Float32Array([1]), shape: [1], dtype: '<f' });
    f.close();
    await expect(readKerasH5(notKeras)).rejects.toThrow(/plain\.h5: no 'layer_names' attribute/);
    await expect(readKerasH5(join(dir, 'absent.h5'))).rejects.toThrow(/absent\.h5: cannot read/);
    const junk = join(dir, 'junk.h5');
    writeFileSync(junk, 'not hdf5');
    await expect(readKerasH5(junk)).rejects.toThrow(/junk\.h5: not an HDF5 file/);
  });
});
