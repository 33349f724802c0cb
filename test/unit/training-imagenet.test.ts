import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APPLICATIONS, buildApplicationBase, HEAD_LAYERS } from '../../src/training/models/applications.js';
import { applyDepth, isBnInInferenceMode, isTrainableAt } from '../../src/training/models/freeze.js';
import { CustomScaleLayer } from '../../src/training/models/keras-layers.js';
import { makeDivisible } from '../../src/training/models/mobilenet.js';
import { buildModel, canonicalArchitecture, countParams, lastConvLayerName, trainableArchitectures } from '../../src/training/models/index.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Head parameters for F base features: Dense(F→256) + Dense(256→3). */
const head = (f: number) => f * 256 + 256 + 256 * 3 + 3;

/** The paper's `depths` lists (notes/paper.md §7): [d0, d1] = layer indices of Keras' model.layers. */
const PAPER_DEPTHS: Record<string, [number, number]> = {
  vgg16: [20, 15],
  xception: [133, 125],
  inceptionv3: [312, 279],
  inceptionresnetv2: [781, 761],
  resnet50v2: [191, 177],
  densenet121: [428, 313],
  nasnetmobile: [770, 723],
  mobilenet: [88, 81],
  mobilenetv2: [156, 144],
};

const bases = new Map<string, tf.LayersModel>();
function base(key: string): tf.LayersModel {
  let m = bases.get(key);
  if (!m) {
    m = buildApplicationBase(key, { inputSize: APPLICATIONS[key].defaultInputSize, seed: 1 });
    bases.set(key, m);
  }
  return m;
}
afterAll(() => {
  for (const m of bases.values()) m.dispose();
});

describe('ImageNet architectures (Keras Applications, include_top=False)', () => {
  it.each(Object.keys(APPLICATIONS))('%s: parameter count equals Keras Applications', (key) => {
    const published: Record<string, number> = {
      vgg16: 14_714_688,
      mobilenet: 3_228_864,
      mobilenetv2: 2_257_984,
      resnet50v2: 23_564_800,
      densenet121: 7_037_504,
      inceptionv3: 21_802_784,
      xception: 20_861_480,
      inceptionresnetv2: 54_336_736,
      nasnetmobile: 4_269_716,
    };
    expect(APPLICATIONS[key].kerasNotopParams).toBe(published[key]);
    expect(countParams(base(key), false)).toBe(published[key]);
  });

  it.each(Object.keys(APPLICATIONS))('%s: as many layers as the Keras model (the paper\'s depth-0 index = base layers + GAP)', (key) => {
    expect(base(key).layers.length + 1).toBe(PAPER_DEPTHS[key][0]);
  });

  it('uses Keras layer names', () => {
    const names = (k: string) => new Set(base(k).layers.map((l) => l.name));
    const expectNames = (k: string, ns: string[]) => {
      const have = names(k);
      for (const n of ns) expect(have.has(n), `${k}: ${n}`).toBe(true);
    };
    expect(base('vgg16').layers.map((l) => l.name)).toEqual([
      'input',
      ...[
        [1, 2],
        [2, 2],
        [3, 3],
        [4, 3],
        [5, 3],
      ].flatMap(([b, n]) => [...Array.from({ length: n }, (_, i) => `block${b}_conv${i + 1}`), `block${b}_pool`]),
    ]);
    expectNames('mobilenet', ['conv1', 'conv1_bn', 'conv1_relu', 'conv_dw_1', 'conv_dw_1_bn', 'conv_pw_1', 'conv_pw_1_bn', 'conv_pad_2', 'conv_pw_13_relu']);
    expectNames('mobilenetv2', ['Conv1', 'bn_Conv1', 'expanded_conv_depthwise', 'expanded_conv_project_BN', 'block_1_expand', 'block_1_pad', 'block_2_add', 'block_16_project_BN', 'Conv_1', 'Conv_1_bn', 'out_relu']);
    expectNames('resnet50v2', ['conv1_pad', 'conv1_conv', 'pool1_pool', 'conv2_block1_preact_bn', 'conv2_block1_0_conv', 'conv2_block3_2_pad', 'conv4_block6_out', 'conv5_block3_3_conv', 'post_bn', 'post_relu']);
    expectNames('densenet121', ['conv1_conv', 'conv1_bn', 'pool1', 'conv2_block1_0_bn', 'conv2_block6_concat', 'pool2_conv', 'pool4_pool', 'conv5_block16_concat', 'bn', 'relu']);
    expectNames('inceptionv3', [...Array.from({ length: 11 }, (_, i) => `mixed${i}`), 'mixed9_0', 'mixed9_1', 'conv2d_1', 'conv2d_94', 'batch_normalization_94']);
    expectNames('xception', ['block1_conv1', 'block1_conv1_bn', 'block2_sepconv1', 'block13_pool', 'block14_sepconv2', 'block14_sepconv2_act', 'conv2d_4', 'add_12']);
    expectNames('inceptionresnetv2', ['mixed_5b', 'block35_1', 'block35_10_ac', 'mixed_6a', 'block17_20', 'mixed_7a', 'block8_9_ac', 'block8_10', 'block8_10_conv', 'conv_7b', 'conv_7b_bn', 'conv_7b_ac', 'conv2d_203']);
    expectNames('nasnetmobile', ['stem_conv1', 'stem_bn1', 'reduction_conv_1_stem_1', 'adjust_bn_stem_2', 'normal_concat_0', 'reduction_concat_reduce_4', 'separable_conv_1_normal_left1_12', 'adjust_conv_projection_12', 'normal_concat_12']);
    // Auto-named layers follow Keras 2 creation order: InceptionV3's last conv is mixed10's pool branch.
    const iv3 = base('inceptionv3');
    expect(iv3.getLayer('conv2d_94').inboundNodes[0].inboundLayers[0].getClassName()).toBe('AveragePooling2D');
    expect(iv3.layers.filter((l) => l.getClassName() === 'Conv2D')).toHaveLength(94);
    expect(base('inceptionresnetv2').layers.filter((l) => /^conv2d_\d+$/.test(l.name))).toHaveLength(203);
  });

  it('output feature maps as in Keras (shape at the paper\'s input size)', () => {
    const feat: Record<string, number[]> = {
      vgg16: [7, 7, 512],
      mobilenet: [7, 7, 1024],
      mobilenetv2: [7, 7, 1280],
      resnet50v2: [7, 7, 2048],
      densenet121: [7, 7, 1024],
      inceptionv3: [8, 8, 2048],
      xception: [10, 10, 2048],
      inceptionresnetv2: [8, 8, 1536],
      nasnetmobile: [7, 7, 1056],
    };
    for (const [k, shape] of Object.entries(feat)) expect(base(k).outputs[0].shape, k).toEqual([null, ...shape]);
  });

  it('full model = base + the paper\'s head; Grad-CAM layer is the base\'s last feature map', () => {
    const m = buildModel('VGG16', { inputSize: 64, seed: 1 });
    expect(countParams(m, false)).toBe(14_714_688 + head(512));
    expect(m.layers.slice(-4).map((l) => l.name)).toEqual(HEAD_LAYERS);
    expect(lastConvLayerName(m)).toBe('block5_conv3');
    m.dispose();
    const mn = buildModel('mobilenet_v2', { inputSize: 64, seed: 1 });
    expect(lastConvLayerName(mn)).toBe('out_relu');
    expect(countParams(mn, false)).toBe(2_257_984 + head(1280));
    mn.dispose();
    const iv3 = buildModel('inception_v3', { inputSize: 75, seed: 1 });
    expect(lastConvLayerName(iv3)).toBe('mixed10');
    iv3.dispose();
  });

  it('registry: paper-code keys resolve; sizes below Keras minimum are refused', () => {
    expect(canonicalArchitecture('densenet_121')).toBe('densenet121');
    expect(canonicalArchitecture('NASNetMobile')).toBe('nasnetmobile');
    expect(canonicalArchitecture('inception_resnet_v2')).toBe('inceptionresnetv2');
    expect(trainableArchitectures()).toEqual(expect.arrayContaining(['cbr_small', 'vgg16', 'nasnetmobile']));
    expect(() => buildModel('xception', { inputSize: 64, seed: 1 })).toThrow(/below its minimum 71/);
  });

  it('the same seed gives the same initial weights, another seed different ones', () => {
    const a = buildModel('mobilenet', { inputSize: 32, seed: 7, alpha: 0.25 });
    const b = buildModel('mobilenet', { inputSize: 32, seed: 7, alpha: 0.25 });
    const c = buildModel('mobilenet', { inputSize: 32, seed: 8, alpha: 0.25 });
    const w = (m: tf.LayersModel) => Array.from(m.getLayer('conv_pw_3').getWeights()[0].dataSync().slice(0, 16));
    expect(w(a)).toEqual(w(b));
    expect(w(a)).not.toEqual(w(c));
    for (const m of [a, b, c]) m.dispose();
  });

  it('MobileNet alpha: Keras widths (the paper\'s α = 0.25 V1: 256 features; α = 0.35 V2: 1280 features)', () => {
    expect(makeDivisible(32 * 0.35, 8)).toBe(16);
    expect(makeDivisible(16 * 0.35, 8)).toBe(8);
    const v1 = buildApplicationBase('mobilenet', { inputSize: 224, seed: 1, alpha: 0.25 });
    expect(v1.outputs[0].shape).toEqual([null, 7, 7, 256]);
    v1.dispose();
    const v2 = buildApplicationBase('mobilenetv2', { inputSize: 224, seed: 1, alpha: 0.35 });
    expect(v2.outputs[0].shape).toEqual([null, 7, 7, 1280]);
    expect(v2.getLayer('Conv1').getWeights()[0].shape).toEqual([3, 3, 3, 16]);
    v2.dispose();
  });

  it('small models run forward and give probabilities (MobileNet 32², NASNetMobile 32²)', () => {
    for (const arch of ['mobilenet', 'nasnetmobile']) {
      const m = buildModel(arch, { inputSize: 32, seed: 1 });
      const before = tf.memory().numTensors;
      const p = tf.tidy(() => m.predict(tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 3)) as tf.Tensor);
      expect(p.shape).toEqual([2, 3]);
      const sums = tf.tidy(() => tf.sum(p, 1).arraySync() as number[]);
      for (const s of sums) expect(s).toBeCloseTo(1, 5);
      p.dispose();
      expect(tf.memory().numTensors).toBe(before);
      m.dispose();
    }
  });
});

describe('CustomScaleLayer (InceptionResNetV2 residual scaling)', () => {
  it('computes x + scale · r and survives a JSON round trip', async () => {
    const x = tf.input({ shape: [2, 2, 1] });
    const r = tf.input({ shape: [2, 2, 1] });
    const out = new CustomScaleLayer({ name: 'block8_10', scale: 0.2 }).apply([x, r]) as tf.SymbolicTensor;
    const m = tf.model({ inputs: [x, r], outputs: out });
    const a = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    const b = tf.tensor4d([10, 20, 30, 40], [1, 2, 2, 1]);
    expect(Array.from((m.predict([a, b]) as tf.Tensor).dataSync())).toEqual([3, 6, 9, 12]);
    const json = m.toJSON(undefined, false) as object;
    const back = await tf.models.modelFromJSON({ modelTopology: json } as tf.io.ModelArtifacts as never);
    const layer = back.getLayer('block8_10') as CustomScaleLayer;
    expect(layer.getClassName()).toBe('CustomScaleLayer');
    expect(layer.scale).toBe(0.2);
    expect(Array.from((back.predict([a, b]) as tf.Tensor).dataSync())).toEqual([3, 6, 9, 12]);
    tf.dispose([a, b]);
    m.dispose();
    back.dispose();
  });
});

describe('BatchNormalization without γ or β trains (InceptionV3 and InceptionResNetV2 use scale: false)', () => {
  it('a training step normalises with γ = 1 / β = 0, updates the moving statistics and adds no weight', async () => {
    const x = tf.input({ shape: [4, 4, 2] });
    let h = tf.layers.conv2d({ filters: 3, kernelSize: 1, useBias: false, name: 'c', kernelInitializer: 'ones' }).apply(x) as tf.SymbolicTensor;
    h = tf.layers.batchNormalization({ scale: false, name: 'bn_noscale' }).apply(h) as tf.SymbolicTensor;
    h = tf.layers.batchNormalization({ center: false, name: 'bn_nocenter' }).apply(h) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'd' }).apply(tf.layers.globalAveragePooling2d({}).apply(h)) as tf.SymbolicTensor;
    const m = tf.model({ inputs: x, outputs: out });
    const weightCount = m.getWeights().length; // c kernel; β, μ, σ²; γ, μ, σ²; dense kernel, bias
    expect(weightCount).toBe(9);
    const noScale = m.getLayer('bn_noscale') as unknown as { gamma: unknown; beta: unknown };
    expect(noScale.gamma == null).toBe(true);
    const xs = tf.randomNormal([4, 4, 4, 2], 0, 1, 'float32', 3);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 2, 0], 'int32'), 3).toFloat();
    // Training-mode output of the scale-less layer = (h − batch mean) / √(batch var + ε) + β, with β = 0 at start.
    const sub = tf.model({ inputs: x, outputs: m.getLayer('bn_noscale').output as tf.SymbolicTensor });
    const y = sub.apply(xs, { training: true }) as tf.Tensor;
    const hv = (m.getLayer('c').apply(xs) as tf.Tensor);
    const { mean, variance } = tf.moments(hv, [0, 1, 2]);
    const expected = tf.div(tf.sub(hv, mean), tf.sqrt(tf.add(variance, 1e-3)));
    expect(tf.max(tf.abs(tf.sub(y, expected))).dataSync()[0]).toBeLessThan(1e-4);
    const beforeMean = Array.from(m.getLayer('bn_noscale').getWeights()[1].dataSync());
    const { trainStep, KerasSgd, trainableVariables } = await import('../../src/training/train.js');
    const opt = new KerasSgd(trainableVariables(m), { learningRate: 0.1, momentum: 0.9, nesterov: true, decay: 0 });
    const betaBefore = Array.from(m.getLayer('bn_noscale').getWeights()[0].dataSync());
    const { loss } = await trainStep(m, opt, xs as tf.Tensor4D, ys as tf.Tensor2D);
    expect(Number.isFinite(loss)).toBe(true);
    expect(Array.from(m.getLayer('bn_noscale').getWeights()[0].dataSync())).not.toEqual(betaBefore); // β trained
    expect(Array.from(m.getLayer('bn_noscale').getWeights()[1].dataSync())).not.toEqual(beforeMean); // moving mean updated
    expect(noScale.gamma == null).toBe(true); // nothing left behind
    expect(m.getWeights().length).toBe(weightCount);
    // A model loaded from JSON (as from a model directory) trains too: the fix lives on the class.
    const back = await tf.models.modelFromJSON({ modelTopology: m.toJSON(undefined, false) } as tf.io.ModelArtifacts as never);
    const opt2 = new KerasSgd(trainableVariables(back), { learningRate: 0.1, momentum: 0.9, nesterov: true, decay: 0 });
    expect(Number.isFinite((await trainStep(back, opt2, xs as tf.Tensor4D, ys as tf.Tensor2D)).loss)).toBe(true);
    tf.dispose([xs, ys, y, hv, mean, variance, expected]);
    opt.dispose();
    opt2.dispose();
    m.dispose();
    back.dispose();
  });

  it('InceptionV3 takes a training step, whole and at depth 0 (both failed in tf.layers on the missing γ)', async () => {
    const { trainStep, KerasSgd, trainableVariables } = await import('../../src/training/train.js');
    const { selectBackend } = await import('../../src/inference/backend.js');
    await selectBackend('wasm'); // the cpu backend takes about a minute for this step
    const m = buildModel('inceptionv3', { inputSize: 75, seed: 1 });
    const opt = new KerasSgd(trainableVariables(m), { learningRate: 0.01, momentum: 0.9, nesterov: true, decay: 0 });
    const xs = tf.randomNormal([1, 75, 75, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const ys = tf.tensor2d([[0, 1, 0]]);
    expect(Number.isFinite((await trainStep(m, opt, xs, ys)).loss)).toBe(true);
    // Depth 0: the frozen base runs its BN layers in inference mode, where the kernel got no scale and the
    // gradient tape failed on it ("reading 'dtype'" on wasm, "'dataId'" on webgpu).
    const d0 = buildModel('inceptionv3', { inputSize: 75, seed: 2 });
    applyDepth(d0, 'inceptionv3', 0);
    const opt0 = new KerasSgd(trainableVariables(d0), { learningRate: 0.01, momentum: 0.9, nesterov: true, decay: 0 });
    expect(Number.isFinite((await trainStep(d0, opt0, xs, ys)).loss)).toBe(true);
    tf.dispose([xs, ys]);
    opt.dispose();
    opt0.dispose();
    m.dispose();
    d0.dispose();
    await tf.setBackend('cpu');
  }, 90_000);
});

describe('fine-tuning depth', () => {
  it('VGG16 depth 0: only the head trains; depth 1: block 5 + head (7,079,424 + 132,099)', () => {
    const m = buildModel('vgg16', { inputSize: 32, seed: 1 });
    const d0 = applyDepth(m, 'vgg16', 0);
    expect(d0.trainableLayers).toEqual(['fc1', 'predictions']);
    expect(countParams(m)).toBe(head(512));
    const d1 = applyDepth(m, 'vgg16', 1);
    expect(d1.trainableLayers).toEqual(['block5_conv1', 'block5_conv2', 'block5_conv3', 'fc1', 'predictions']);
    // block 5: 3 × (3·3·512·512 + 512)
    expect(countParams(m)).toBe(3 * (3 * 3 * 512 * 512 + 512) + 132_099);
    expect(countParams(m)).toBe(7_079_424 + 132_099);
    applyDepth(m, 'vgg16', 'full');
    expect(countParams(m)).toBe(14_714_688 + 132_099);
    m.dispose();
  });

  it.each(Object.keys(PAPER_DEPTHS))('%s depth 1 trains exactly the weighted layers the paper\'s index range [d1, d0) unfroze', (key) => {
    const b = base(key);
    const [d0, d1] = PAPER_DEPTHS[key];
    const weighted = (ls: tf.layers.Layer[]) => ls.filter((l) => l.weights.length > 0).map((l) => l.name).sort();
    const paper = weighted(b.layers.slice(d1, d0 - 1));
    const ours = weighted(b.layers.filter((l) => isTrainableAt(key, l.name, 1)));
    expect(paper.length).toBeGreaterThan(0);
    expect(ours).toEqual(paper);
  });

  it('BN layers in the unfrozen block train their γ/β only (moving statistics are never trainable)', () => {
    const m = buildModel('resnet50v2', { inputSize: 32, seed: 1 });
    applyDepth(m, 'resnet50v2', 1);
    const names = m.trainableWeights.map((w) => w.originalName);
    expect(names).toContain('post_bn/gamma');
    expect(names).not.toContain('post_bn/moving_mean');
    expect(names).not.toContain('conv5_block2_3_conv/kernel');
    // conv5_block3: preact_bn γ β, 1_conv kernel, 1_bn γ β, 2_conv kernel, 2_bn γ β, 3_conv kernel + bias
    expect(names.filter((n) => n.startsWith('conv5_block3_'))).toHaveLength(10);
    m.dispose();
  });

  it('frozen BatchNormalization runs in inference mode (moving statistics kept); unfrozen it updates them', () => {
    const m = buildModel('mobilenet', { inputSize: 32, seed: 1, alpha: 0.25 });
    const bn = m.getLayer('conv1_bn');
    const mean = () => Array.from(bn.getWeights()[2].dataSync());
    const x = tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 5);
    const before = mean();
    applyDepth(m, 'mobilenet', 0);
    expect(isBnInInferenceMode(bn)).toBe(true);
    const frozenOut = tf.tidy(() => Array.from((m.apply(x, { training: true }) as tf.Tensor).dataSync()));
    const inferOut = tf.tidy(() => Array.from((m.apply(x, { training: false }) as tf.Tensor).dataSync()));
    expect(mean()).toEqual(before);
    expect(frozenOut.map((v) => v.toFixed(5))).toEqual(inferOut.map((v) => v.toFixed(5)));
    applyDepth(m, 'mobilenet', 'full');
    expect(isBnInInferenceMode(bn)).toBe(false);
    tf.tidy(() => m.apply(x, { training: true }) as tf.Tensor);
    expect(mean()).not.toEqual(before);
    x.dispose();
    m.dispose();
  });

  it('CBR models have no pretrained base: depth 0/1 refused, full trains everything', () => {
    const m = buildModel('cbr_compact', { inputSize: 32, seed: 1 });
    expect(() => applyDepth(m, 'cbr_compact', 0)).toThrow(/no pretrained base/);
    applyDepth(m, 'cbr_compact', 'full');
    expect(countParams(m)).toBe(countParams(m, false) - 2 * (16 + 32 + 64 + 128));
    m.dispose();
  });
});
