/**
 * Model registry: `buildModel(arch, { inputSize, seed })` and model introspection (`countMacs`,
 * `lastConvLayerName`). Two families: the CBR baselines (cbr.ts) and the paper's nine ImageNet architectures
 * under Keras Applications' layer names (applications.ts; ImageNet weights come from keras-h5.ts, depth-0/1
 * freezing from freeze.ts).
 */

import * as tf from '@tensorflow/tfjs';
import { APPLICATIONS, applicationKey, buildApplication } from './applications.js';
import { effectiveDepth, type Protocol } from '../protocol.js';
import { buildCbr, cbrKey, CBR_SPECS, type Padding } from './cbr.js';
import { applyDepth } from './freeze.js';

export { CBR_SPECS, cbrKey, cbrFeatureSizes, minInputSize, HEAD_UNITS, HEAD_DROPOUT, NUM_CLASSES, type CbrSpec, type Padding } from './cbr.js';

export interface BuildModelOptions {
  /** Square input edge (pixels). */
  inputSize: number;
  /** Initialisation seed: the same seed gives the same initial weights. */
  seed: number;
  /** CBR only: overrides the architecture's conv padding. */
  padding?: Padding;
  /** MobileNet V1/V2 only: width multiplier (Keras default 1; the paper used 0.25 and 0.35). */
  alpha?: number;
  /** Head dropout rate (default HEAD_DROPOUT, the paper's 0.5). */
  dropout?: number;
}

/** Canonical architecture key for `buildModel` (throws a RangeError naming the known ones). */
export function canonicalArchitecture(arch: string): string {
  const key = cbrKey(arch) ?? applicationKey(arch);
  if (key) return key;
  throw new RangeError(`unknown architecture '${arch}' for training (known: ${trainableArchitectures().join(', ')})`);
}

/** The architectures `buildModel` can build. */
export function trainableArchitectures(): string[] {
  return [...Object.keys(CBR_SPECS), ...Object.keys(APPLICATIONS)];
}

/** True for the ImageNet architectures (those with Keras Applications weights and depth rules). */
export function isImagenetArchitecture(arch: string): boolean {
  return applicationKey(arch) !== undefined;
}

/**
 * Builds an untrained model: input [null, inputSize, inputSize, 3] (preprocessed as in
 * src/inference/preprocess.ts, 'caffe' normalisation for CBR), output layer 'predictions' = softmax over
 * [OAP, IN, OBS] (the order of src/inference/decode.ts LABELS). Deterministic for (arch, inputSize, seed).
 */
export function buildModel(arch: string, opts: BuildModelOptions): tf.LayersModel {
  if (!(Number.isInteger(opts.inputSize) && opts.inputSize > 0)) throw new RangeError(`inputSize: positive integer expected, got ${opts.inputSize}`);
  if (!Number.isInteger(opts.seed)) throw new RangeError(`seed: integer expected, got ${opts.seed}`);
  const key = canonicalArchitecture(arch);
  if (APPLICATIONS[key]) return buildApplication(key, opts);
  return buildCbr(key, opts);
}

/**
 * The model a training job starts from: `buildModel` with the protocol's architecture, input size, padding,
 * alpha and head dropout, then the protocol's fine-tuning depth (frozen base for ImageNet architectures).
 */
export function buildTrainingModel(P: Pick<Protocol, 'architecture' | 'inputSize' | 'padding' | 'alpha' | 'headDropout' | 'depth' | 'weights' | 'startFrom'>, seed: number): tf.LayersModel {
  const model = buildModel(P.architecture, { inputSize: P.inputSize, seed, padding: P.padding, alpha: P.alpha, dropout: P.headDropout });
  if (isImagenetArchitecture(P.architecture)) applyDepth(model, P.architecture, effectiveDepth(P));
  return model;
}

function shapeOf(s: tf.Shape | tf.Shape[]): (number | null)[] {
  return (Array.isArray(s[0]) || s[0] === undefined ? (s as tf.Shape[])[0] ?? [] : s) as (number | null)[];
}

function prod(xs: readonly (number | null)[]): number {
  return xs.reduce<number>((a, b) => a * (b ?? 1), 1);
}

/**
 * Multiply–accumulates of one forward pass for one image, from the layer shapes: Conv2D
 * (out H·W·kh·kw·Cin·Cout), DepthwiseConv2D (out H·W·kh·kw·Cin·mult), SeparableConv2D (depthwise + pointwise)
 * and Dense (in·out per position). BN, activations and pooling are not counted.
 */
export function countMacs(model: tf.LayersModel): number {
  let macs = 0;
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const out = shapeOf(layer.outputShape);
    const w = layer.getWeights();
    if (w.length === 0) continue;
    const k = w[0].shape as number[];
    if (cls === 'Conv2D') {
      macs += prod(out.slice(1, 3)) * k[0] * k[1] * k[2] * k[3];
    } else if (cls === 'DepthwiseConv2D') {
      macs += prod(out.slice(1, 3)) * k[0] * k[1] * k[2] * k[3];
    } else if (cls === 'SeparableConv2D') {
      const pw = w[1].shape as number[];
      macs += prod(out.slice(1, 3)) * (k[0] * k[1] * k[2] * k[3] + pw[2] * pw[3]);
    } else if (cls === 'Dense') {
      macs += prod(out.slice(1, -1)) * k[0] * k[1];
    }
  }
  return macs;
}

/**
 * Name of the layer whose output Grad-CAM uses: the last rank-4 activation (ReLU/Activation) output before the
 * global pooling, else the last Conv2D-like layer. Throws if the model has no convolutional feature map.
 */
export function lastConvLayerName(model: tf.LayersModel): string {
  // The ImageNet bases end in a feature map (ReLU, concatenation, …) that feeds the global pooling directly:
  // that is the Grad-CAM layer. A pooling layer there (CBR, VGG16) means: look further back.
  const gap = model.layers.find((l) => l.getClassName() === 'GlobalAveragePooling2D');
  const feeding = gap?.inboundNodes[0]?.inboundLayers[0];
  if (feeding && !/Pooling2D$/.test(feeding.getClassName())) return feeding.name;
  let lastAct: string | undefined;
  let lastConv: string | undefined;
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const rank = shapeOf(layer.outputShape).length;
    if (rank !== 4) continue;
    if (cls === 'ReLU' || cls === 'Activation' || cls === 'LeakyReLU' || cls === 'ELU') lastAct = layer.name;
    if (cls === 'Conv2D' || cls === 'SeparableConv2D' || cls === 'DepthwiseConv2D') lastConv = layer.name;
  }
  const name = lastAct ?? lastConv;
  if (!name) throw new Error(`model '${model.name}' has no convolutional feature map for Grad-CAM`);
  return name;
}

/** Trainable parameter count. */
export function countParams(model: tf.LayersModel, trainableOnly = true): number {
  const ws = trainableOnly ? model.trainableWeights : model.weights;
  return ws.reduce((a, w) => a + prod(w.shape), 0);
}
