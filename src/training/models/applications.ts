/**
 * The ImageNet architectures of Ho & Kim (2021), built with tf.layers under Keras Applications' layer names:
 * registry of base builders, their default input sizes, Keras' published parameter counts without the top,
 * the ImageNet weight files (keras-applications releases) and the depth-1 fine-tuning rule of each.
 *
 * A model = base (`include_top=False`) → `gap` (GlobalAveragePooling2D) → `fc1` Dense 256 ReLU → `dropout`
 * 0.5 → `predictions` Dense 3 softmax (the paper's head; the same names as the CBR models).
 * Pure: builds graphs, does no I/O.
 */

import * as tf from '@tensorflow/tfjs';
import { HEAD_DROPOUT, HEAD_UNITS, NUM_CLASSES } from './cbr.js';
import { densenet121Base } from './densenet.js';
import { inceptionResnetV2Base, inceptionV3Base } from './inception.js';
import { KerasGraph, type Sym } from './keras-graph.js';
import { mobilenetBase, mobilenetV2Base } from './mobilenet.js';
import { nasnetBase } from './nasnet.js';
import { resnet50v2Base } from './resnet-v2.js';
import { vgg16Base } from './vgg.js';
import { xceptionBase } from './xception.js';

/** Where the keras-applications release files live (Keras' own download URLs). */
export const KERAS_APPLICATIONS_URL = 'https://storage.googleapis.com/tensorflow/keras-applications';

export interface BaseBuildOptions {
  /** Width multiplier (MobileNet V1/V2 only; Keras default 1). */
  alpha?: number;
}

export interface ApplicationSpec {
  /** Registry key (= src/inference/preprocess.ts ARCHITECTURES key). */
  key: string;
  /** Keras Applications name. */
  kerasName: string;
  /** Input edge the ImageNet weights were trained at (the paper's input size). */
  defaultInputSize: number;
  /** Smallest square input Keras accepts (`obtain_input_shape` min_size). */
  minInputSize: number;
  /** Keras Applications' parameter count of the base without its top (α = 1). */
  kerasNotopParams: number;
  /** `*_notop.h5` file name of the keras-applications release and its URL. */
  weightsFile: string;
  weightsUrl: string;
  /** md5 of the weight file as Keras' source checks it (`file_hash`), where Keras gives one. */
  weightsMd5?: string;
  /**
   * Depth 1 (notes/paper.md §7): base layers made trainable again — the last convolutional block. Layer names
   * matching this expression; every other base layer stays frozen.
   */
  depth1: RegExp;
  /** The depth-1 block in words (docs/training.md). */
  depth1Block: string;
  build(input: Sym, g: KerasGraph, opts: BaseBuildOptions): Sym;
}

const url = (dir: string, file: string) => `${KERAS_APPLICATIONS_URL}/${dir}/${file}`;

function spec(s: Omit<ApplicationSpec, 'weightsUrl'> & { dir: string }): ApplicationSpec {
  const { dir, ...rest } = s;
  return { ...rest, weightsUrl: url(dir, s.weightsFile) };
}

export const APPLICATIONS: Readonly<Record<string, ApplicationSpec>> = {
  vgg16: spec({
    key: 'vgg16',
    kerasName: 'VGG16',
    defaultInputSize: 224,
    minInputSize: 32,
    kerasNotopParams: 14_714_688,
    dir: 'vgg16',
    weightsFile: 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    weightsMd5: '6d6bbae143d832006294945121d1f1fc',
    depth1: /^block5_/,
    depth1Block: 'block 5: block5_conv1–3, block5_pool',
    build: (x, g) => vgg16Base(x, g),
  }),
  mobilenet: spec({
    key: 'mobilenet',
    kerasName: 'MobileNet',
    defaultInputSize: 224,
    minInputSize: 32,
    kerasNotopParams: 3_228_864,
    dir: 'mobilenet',
    weightsFile: 'mobilenet_1_0_224_tf_no_top.h5',
    depth1: /^conv_(dw|pw)_13(_|$)/,
    depth1Block: 'the last depthwise-separable block: conv_dw_13 (+ _bn, _relu), conv_pw_13 (+ _bn, _relu)',
    build: (x, g, o) => mobilenetBase(x, g, o.alpha ?? 1),
  }),
  mobilenetv2: spec({
    key: 'mobilenetv2',
    kerasName: 'MobileNetV2',
    defaultInputSize: 224,
    minInputSize: 32,
    kerasNotopParams: 2_257_984,
    dir: 'mobilenet_v2',
    weightsFile: 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5',
    depth1: /^(block_16_|Conv_1(_bn)?$|out_relu$)/,
    depth1Block: 'the last inverted-residual block and the final 1×1 conv: block_16_* (expand, depthwise, project + BNs), Conv_1, Conv_1_bn, out_relu',
    build: (x, g, o) => mobilenetV2Base(x, g, o.alpha ?? 1),
  }),
  resnet50v2: spec({
    key: 'resnet50v2',
    kerasName: 'ResNet50V2',
    defaultInputSize: 224,
    minInputSize: 32,
    kerasNotopParams: 23_564_800,
    dir: 'resnet',
    weightsFile: 'resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
    depth1: /^(conv5_block3_|post_)/,
    depth1Block: 'the last bottleneck block: conv5_block3_* (preact_bn, 1_conv, 2_conv, 3_conv + BNs), post_bn, post_relu',
    build: (x, g) => resnet50v2Base(x, g),
  }),
  densenet121: spec({
    key: 'densenet121',
    kerasName: 'DenseNet121',
    defaultInputSize: 224,
    minInputSize: 32,
    kerasNotopParams: 7_037_504,
    dir: 'densenet',
    weightsFile: 'densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5',
    depth1: /^(conv5_block\d+_|bn$|relu$)/,
    depth1Block: 'the last dense block (dense block 4): conv5_block1 … conv5_block16, then bn, relu',
    build: (x, g) => densenet121Base(x, g),
  }),
  inceptionv3: spec({
    key: 'inceptionv3',
    kerasName: 'InceptionV3',
    defaultInputSize: 299,
    minInputSize: 75,
    kerasNotopParams: 21_802_784,
    dir: 'inception_v3',
    weightsFile: 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5',
    depth1: /^((conv2d|batch_normalization|activation)_(8[6-9]|9[0-4])|average_pooling2d_9|mixed9_1|concatenate_2|mixed10)$/,
    depth1Block: 'the last Inception module (mixed9 → mixed10): conv2d_86–94, batch_normalization_86–94, mixed9_1, mixed10',
    build: (x, g) => inceptionV3Base(x, g),
  }),
  xception: spec({
    key: 'xception',
    kerasName: 'Xception',
    defaultInputSize: 299,
    minInputSize: 71,
    kerasNotopParams: 20_861_480,
    dir: 'xception',
    weightsFile: 'xception_weights_tf_dim_ordering_tf_kernels_notop.h5',
    weightsMd5: 'b0042744bf5b25fce3cb969f33bebb97',
    depth1: /^block14_/,
    depth1Block: 'exit-flow block 14: block14_sepconv1, block14_sepconv2 (+ _bn, _act)',
    build: (x, g) => xceptionBase(x, g),
  }),
  inceptionresnetv2: spec({
    key: 'inceptionresnetv2',
    kerasName: 'InceptionResNetV2',
    defaultInputSize: 299,
    minInputSize: 75,
    kerasNotopParams: 54_336_736,
    dir: 'inception_resnet_v2',
    weightsFile: 'inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
    weightsMd5: 'd19885ff4a710c122648d3b5c3b684e4',
    depth1: /^(block8_10(_\w+)?|conv_7b(_bn|_ac)?|(conv2d|batch_normalization|activation)_(20[0-3]))$/,
    depth1Block: 'the last Inception-ResNet-C block and the final 1×1 conv: block8_10 (branch convs conv2d_200–203 + BNs, block8_10_conv), conv_7b (+ _bn, _ac)',
    build: (x, g) => inceptionResnetV2Base(x, g),
  }),
  nasnetmobile: spec({
    key: 'nasnetmobile',
    kerasName: 'NASNetMobile',
    defaultInputSize: 224,
    minInputSize: 32,
    kerasNotopParams: 4_269_716,
    dir: 'nasnet',
    weightsFile: 'NASNet-mobile-no-top.h5',
    weightsMd5: '1ed92395b5b598bdda52abe5c0dbfd63',
    depth1: /^(adjust_\w+|normal_\w+|separable_conv_[12]_(bn_)?normal_\w+)_12$/,
    depth1Block: 'the last normal cell (block id 12): adjust_*_12, normal_conv_1_12, normal_bn_1_12, separable_conv_*_normal_*_12 (+ BNs)',
    build: (x, g) => nasnetBase(x, g),
  }),
};

/**
 * Release file name of an architecture's notop weights at width `alpha` (MobileNet V1/V2 have one file per
 * α, as Keras names them: `mobilenet_2_5_224_tf_no_top.h5` for α 0.25, `…_0.35_224_no_top.h5` for V2 α 0.35;
 * the 224-row files, whose notop weights Keras also loads for other input sizes).
 */
export function weightsFileFor(key: string, alpha = 1): string {
  const s = APPLICATIONS[key];
  if (!s) throw new RangeError(`unknown ImageNet architecture '${key}'`);
  if (key === 'mobilenet') {
    const text: Record<number, string> = { 1: '1_0', 0.75: '7_5', 0.5: '5_0', 0.25: '2_5' };
    if (!text[alpha]) throw new RangeError(`MobileNet: ImageNet weights exist for alpha 0.25, 0.5, 0.75, 1 (got ${alpha})`);
    return `mobilenet_${text[alpha]}_224_tf_no_top.h5`;
  }
  if (key === 'mobilenetv2') {
    if (![0.35, 0.5, 0.75, 1, 1.3, 1.4].includes(alpha)) throw new RangeError(`MobileNetV2: ImageNet weights exist for alpha 0.35, 0.5, 0.75, 1, 1.3, 1.4 (got ${alpha})`);
    return `mobilenet_v2_weights_tf_dim_ordering_tf_kernels_${Number.isInteger(alpha) ? alpha.toFixed(1) : String(alpha)}_224_no_top.h5`;
  }
  if (alpha !== 1) throw new RangeError(`${s.kerasName} has no width multiplier (alpha ${alpha})`);
  return s.weightsFile;
}

/** Paper-code and Keras spellings → registry key (case-insensitive, '-' = '_'). */
const ALIASES: Readonly<Record<string, string>> = {
  vgg_16: 'vgg16',
  mobilenet_v1: 'mobilenet',
  mobilenetv1: 'mobilenet',
  mobilenet_a25: 'mobilenet',
  mobilenet_v2: 'mobilenetv2',
  mobilenet_v2_a35: 'mobilenetv2',
  resnet50_v2: 'resnet50v2',
  densenet_121: 'densenet121',
  inception_v3: 'inceptionv3',
  inception_resnet_v2: 'inceptionresnetv2',
  nasnet_mobile: 'nasnetmobile',
};

/** Registry key of an ImageNet architecture name, or undefined. */
export function applicationKey(name: string): string | undefined {
  const k = name.trim().toLowerCase().replace(/-/g, '_');
  if (APPLICATIONS[k]) return k;
  return ALIASES[k];
}

/** Layer names of the classification head (never part of a base, never frozen). */
export const HEAD_LAYERS: readonly string[] = ['gap', 'fc1', 'dropout', 'predictions'];

export interface ApplicationBuildOptions extends BaseBuildOptions {
  inputSize: number;
  seed: number;
  /** Head dropout rate (default HEAD_DROPOUT, the paper's 0.5). */
  dropout?: number;
}

/** Builds the base alone (`include_top=False`, no pooling): input → the base's last feature map. */
export function buildApplicationBase(key: string, opts: ApplicationBuildOptions): tf.LayersModel {
  const s = APPLICATIONS[key];
  if (!s) throw new RangeError(`unknown ImageNet architecture '${key}' (known: ${Object.keys(APPLICATIONS).join(', ')})`);
  if (opts.inputSize < s.minInputSize) throw new RangeError(`${s.kerasName}: input ${opts.inputSize}² is below its minimum ${s.minInputSize}²`);
  const g = new KerasGraph(opts.seed);
  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input', dtype: 'float32' });
  return tf.model({ inputs: input, outputs: s.build(input, g, opts), name: `${key}_base` });
}

/** Base + the paper's head: `gap` → `fc1` (256, ReLU) → `dropout` (0.5) → `predictions` (3, softmax). */
export function buildApplication(key: string, opts: ApplicationBuildOptions): tf.LayersModel {
  const s = APPLICATIONS[key];
  if (!s) throw new RangeError(`unknown ImageNet architecture '${key}' (known: ${Object.keys(APPLICATIONS).join(', ')})`);
  if (opts.inputSize < s.minInputSize) throw new RangeError(`${s.kerasName}: input ${opts.inputSize}² is below its minimum ${s.minInputSize}²`);
  const g = new KerasGraph(opts.seed);
  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input', dtype: 'float32' });
  let x = s.build(input, g, opts);
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as Sym;
  x = tf.layers.dense({ name: 'fc1', units: HEAD_UNITS, activation: 'relu', kernelInitializer: g.init(), biasInitializer: 'zeros' }).apply(x) as Sym;
  x = tf.layers.dropout({ name: 'dropout', rate: opts.dropout ?? HEAD_DROPOUT }).apply(x) as Sym;
  const out = tf.layers.dense({ name: 'predictions', units: NUM_CLASSES, activation: 'softmax', kernelInitializer: g.init(), biasInitializer: 'zeros' }).apply(x) as Sym;
  return tf.model({ inputs: input, outputs: out, name: key });
}
