/**
 * Grad-CAM (Selvaraju et al., ICCV 2017) through the classifier head only.
 *
 * The model is split at its last convolutional layer: the base (input → feature maps A, plus the
 * predictions, in one forward pass) and the head (A → class scores, rebuilt from the same layer objects, so
 * the weights are shared). For each slice and its target class c:
 *
 *   α_k = mean_{i,j} ∂y_c / ∂A_k(i, j)          (channel weights: spatial mean of the gradient)
 *   L   = ReLU(Σ_k α_k · A_k)                    (the map, on the feature grid)
 *   L  /= max L                                  (0–1 per slice; an all-zero map stays zero)
 *
 * y_c is the PRE-SOFTMAX logit whenever the model ends in a softmax (a Dense layer with softmax activation
 * or a Softmax/Activation('softmax') layer): the logit is recomputed from the last Dense layer's own kernel
 * and bias. Only when no softmax can be found is y_c the model output itself (`scoreKind: 'output'`).
 * The class is selected by multiplying with a one-hot mask, not by `gather`, whose gradient
 * (UnsortedSegmentSum) the WASM backend lacks. The backward pass never enters the conv base: it is cheap
 * and works on every backend (notes/ml-backends.md §4).
 *
 * Differences from the paper's code (keras-vis, notes/paper.md §10): keras-vis took the gradient of the
 * softmax output divided by its maximum and normalised with (x − min)/(max − min); we use the logit and
 * x / max. It also skipped the central zoom; here the CAM is computed on exactly the pixels the classifier
 * saw and mapped back through the zoom (`camToSliceGrid`).
 */
import * as tf from '@tensorflow/tfjs';
import { centralCropBox } from './preprocess.js';

type SymbolicTensor = tf.SymbolicTensor;
type Layer = tf.layers.Layer;

/** What the class score y_c is: the logit before the softmax, or the model output as is. */
export type CamScoreKind = 'logit' | 'output';

/**
 * Affine map from feature-grid coordinates to network-input pixel coordinates, per axis:
 * input = scale · feature + offset (pixel centres at integer coordinates). Derived from the strides,
 * kernels and paddings on the path from the input to the split layer (receptive-field centres).
 */
export interface FeatureGridMapping {
  scale: [number, number];
  offset: [number, number];
  /** 'receptive-field': derived from the layers; 'stretch': the plain resize of the map to the input. */
  method: 'receptive-field' | 'stretch';
}

/** A model split at its last convolutional layer for Grad-CAM. Dispose with `dispose()`. */
export interface GradCamSplit {
  /** Name of the layer whose output is A. */
  layerName: string;
  /** Input → [A, predictions]: shares every layer (and weight) with the original model. */
  dual: tf.LayersModel;
  /** A → the head's last tensor before the score (the logits, or the Dense input when `denseLogit`). */
  head: tf.LayersModel;
  /** When the model ends in Dense(softmax): that layer, whose kernel and bias give the logits. */
  denseLogit?: Layer;
  scoreKind: CamScoreKind;
  /** Feature map shape [h, w, channels]. */
  featureShape: [number, number, number];
  mapping: FeatureGridMapping;
  dispose(): void;
}

export class GradCamError extends Error {
  readonly code = 'GRADCAM_UNSUPPORTED';
  constructor(message: string) {
    super(message);
    this.name = 'GradCamError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const CONV_CLASSES = new Set(['Conv2D', 'SeparableConv2D', 'DepthwiseConv2D']);
const POOL_CLASSES = new Set(['MaxPooling2D', 'AveragePooling2D']);
/** Element-wise layers that may follow the last conv and still count as its "block output". */
const ELEMENTWISE_CLASSES = new Set(['BatchNormalization', 'Activation', 'ReLU', 'LeakyReLU', 'ELU', 'PReLU', 'ThresholdedReLU']);

function consumers(model: tf.LayersModel, layer: Layer): Layer[] {
  // Layers of this model that take `layer`'s output as input.
  const members = new Set(model.layers);
  const out: Layer[] = [];
  for (const node of layer.outboundNodes) if (members.has(node.outboundLayer)) out.push(node.outboundLayer);
  return out;
}

/**
 * The layer whose output Grad-CAM should use when the model card does not name one: the last Conv2D /
 * SeparableConv2D / DepthwiseConv2D of the model (in topological order), extended through the element-wise
 * layers (BatchNormalization, activations) that follow it alone, i.e. the output of the last conv block
 * before any pooling. Throws GradCamError when the model has no conv layer at top level.
 */
export function findLastConvLayer(model: tf.LayersModel): string {
  let idx = -1;
  model.layers.forEach((l, i) => {
    if (CONV_CLASSES.has(l.getClassName())) idx = i;
  });
  if (idx < 0) {
    const nested = model.layers.filter((l) => l instanceof tf.LayersModel).map((l) => l.name);
    throw new GradCamError(
      `no convolutional layer at the top level of model '${model.name}'` +
        (nested.length ? ` (nested models ${nested.join(', ')} are not searched: flatten the model)` : ''),
    );
  }
  let layer = model.layers[idx];
  for (;;) {
    const next = consumers(model, layer);
    if (next.length !== 1 || !ELEMENTWISE_CLASSES.has(next[0].getClassName())) break;
    layer = next[0];
  }
  return layer.name;
}

function isSoftmaxDense(layer: Layer): boolean {
  if (layer.getClassName() !== 'Dense') return false;
  const act = (layer.getConfig() as { activation?: unknown }).activation;
  return act === 'softmax';
}

function isSoftmaxLayer(layer: Layer): boolean {
  const cls = layer.getClassName();
  if (cls === 'Softmax') return true;
  return cls === 'Activation' && (layer.getConfig() as { activation?: unknown }).activation === 'softmax';
}

/**
 * Rebuilds the part of the graph that computes `target` from `split` on a new input (the layers are
 * re-applied, so they share weights). Throws when `target` depends on the model input other than through
 * `split` (e.g. a skip connection across the split), which a head-only gradient cannot handle.
 */
function replay(target: SymbolicTensor, split: SymbolicTensor, input: SymbolicTensor): SymbolicTensor {
  const memo = new Map<number, SymbolicTensor>();
  const visit = (t: SymbolicTensor): SymbolicTensor => {
    if (t.id === split.id) return input;
    const hit = memo.get(t.id);
    if (hit) return hit;
    if (t.inputs.length === 0) {
      throw new GradCamError(`the head depends on '${t.name}' other than through the split layer: cannot split the model there`);
    }
    const ins = t.inputs.map(visit);
    const out = t.sourceLayer.apply(ins.length === 1 ? ins[0] : ins, t.callArgs) as SymbolicTensor | SymbolicTensor[];
    const res = Array.isArray(out) ? out[t.outputTensorIndex ?? 0] : out;
    memo.set(t.id, res);
    return res;
  };
  return visit(target);
}

function pairOf(v: unknown, name: string): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length >= 2 && typeof v[0] === 'number' && typeof v[1] === 'number') return [v[0], v[1]];
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'number') return [v[0], v[0]];
  throw new GradCamError(`unexpected ${name} ${JSON.stringify(v)}`);
}

/** input coordinate = s · output coordinate + t, per axis, for one layer; undefined when unknown. */
function layerCoordinateMap(layer: Layer, inShape: readonly (number | null)[], outShape: readonly (number | null)[]): { s: [number, number]; t: [number, number] } | undefined {
  const cls = layer.getClassName();
  const cfg = layer.getConfig() as Record<string, unknown>;
  const spatialIn = [inShape[1], inShape[2]];
  const spatialOut = [outShape[1], outShape[2]];
  if (CONV_CLASSES.has(cls) || POOL_CLASSES.has(cls)) {
    const k = pairOf(CONV_CLASSES.has(cls) ? cfg.kernelSize : cfg.poolSize, 'kernel size');
    const strides = pairOf(cfg.strides ?? k, 'strides');
    const dil = CONV_CLASSES.has(cls) ? pairOf(cfg.dilationRate ?? 1, 'dilation') : ([1, 1] as [number, number]);
    const s: [number, number] = [0, 0];
    const t: [number, number] = [0, 0];
    for (let a = 0; a < 2; a++) {
      const kEff = (k[a] - 1) * dil[a] + 1;
      let padBefore = 0;
      if (cfg.padding === 'same') {
        const n = spatialIn[a];
        const o = spatialOut[a];
        if (typeof n !== 'number' || typeof o !== 'number') return undefined;
        padBefore = Math.floor(Math.max((o - 1) * strides[a] + kEff - n, 0) / 2);
      } else if (cfg.padding !== 'valid') {
        return undefined;
      }
      s[a] = strides[a];
      t[a] = (kEff - 1) / 2 - padBefore;
    }
    return { s, t };
  }
  if (cls === 'ZeroPadding2D') {
    const p = cfg.padding as number[][] | number[] | number;
    const top = Array.isArray(p) ? (Array.isArray(p[0]) ? (p[0] as number[])[0] : (p[0] as number)) : p;
    const left = Array.isArray(p) ? (Array.isArray(p[1]) ? (p[1] as number[])[0] : (p[1] as number)) : p;
    return { s: [1, 1], t: [-top, -left] };
  }
  if (cls === 'Cropping2D') {
    const c = cfg.cropping as number[][] | number[] | number;
    const top = Array.isArray(c) ? (Array.isArray(c[0]) ? (c[0] as number[])[0] : (c[0] as number)) : c;
    const left = Array.isArray(c) ? (Array.isArray(c[1]) ? (c[1] as number[])[0] : (c[1] as number)) : c;
    return { s: [1, 1], t: [top, left] };
  }
  // Anything else that keeps the spatial size is taken as point-wise (BN, activations, 1×1-like ops).
  if (spatialIn[0] === spatialOut[0] && spatialIn[1] === spatialOut[1]) return { s: [1, 1], t: [0, 0] };
  return undefined;
}

/** The plain resize mapping of an h × w map onto a size × size input (half-pixel centres). */
export function stretchMapping(h: number, w: number, inputH: number, inputW = inputH): FeatureGridMapping {
  const sy = inputH / h;
  const sx = inputW / w;
  return { scale: [sy, sx], offset: [sy / 2 - 0.5, sx / 2 - 0.5], method: 'stretch' };
}

/**
 * Where each feature-map pixel of `featureTensor` sits on the network input (its receptive-field centre),
 * from the strides, kernels and paddings of the single-input chain from the model input to that tensor.
 * Falls back to `stretchMapping` when the path branches or holds a layer it does not know that changes the
 * spatial size.
 */
export function featureGridMapping(featureTensor: SymbolicTensor, inputSize: [number, number]): FeatureGridMapping {
  const h = featureTensor.shape[1];
  const w = featureTensor.shape[2];
  if (typeof h !== 'number' || typeof w !== 'number') throw new GradCamError(`feature map shape ${JSON.stringify(featureTensor.shape)} is not [N, h, w, C]`);
  const fallback = stretchMapping(h, w, inputSize[0], inputSize[1]);
  let A: [number, number] = [1, 1];
  let B: [number, number] = [0, 0];
  let t: SymbolicTensor = featureTensor;
  for (let guard = 0; t.inputs.length > 0; guard++) {
    if (t.inputs.length !== 1 || guard > 10_000) return fallback;
    const input = t.inputs[0];
    const m = layerCoordinateMap(t.sourceLayer, input.shape, t.shape);
    if (!m) return fallback;
    // x_in = s · (A · x + B) + t
    A = [m.s[0] * A[0], m.s[1] * A[1]];
    B = [m.s[0] * B[0] + m.t[0], m.s[1] * B[1] + m.t[1]];
    t = input;
  }
  return { scale: A, offset: B, method: 'receptive-field' };
}

/**
 * Splits `model` at `layerName` (default: `findLastConvLayer`) into the dual-output model
 * [A, predictions] and the head A → score, sharing all layers and weights.
 */
export function splitForGradCam(model: tf.LayersModel, layerName?: string): GradCamSplit {
  const name = layerName ?? findLastConvLayer(model);
  let layer: Layer;
  try {
    layer = model.getLayer(name);
  } catch {
    throw new GradCamError(`model '${model.name}' has no layer '${name}' at its top level (Grad-CAM split layer)`);
  }
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new GradCamError(`Grad-CAM expects a model with one input and one output, got ${model.inputs.length} and ${model.outputs.length}`);
  }
  const featureSym = layer.output as SymbolicTensor | SymbolicTensor[];
  if (Array.isArray(featureSym)) throw new GradCamError(`layer '${name}' has several outputs (shared layer?)`);
  const fs = featureSym.shape;
  if (fs.length !== 4 || fs.slice(1).some((d) => typeof d !== 'number')) {
    throw new GradCamError(`layer '${name}' output shape ${JSON.stringify(fs)} is not [N, h, w, C]`);
  }
  const featureShape: [number, number, number] = [fs[1] as number, fs[2] as number, fs[3] as number];
  const output = model.outputs[0];

  // Where does the score come from? Dense(softmax) → its kernel/bias on its input; Softmax layer → its input.
  let headTarget: SymbolicTensor = output;
  let denseLogit: Layer | undefined;
  let scoreKind: CamScoreKind = 'output';
  if (output.id !== featureSym.id && isSoftmaxDense(output.sourceLayer) && output.inputs.length === 1) {
    denseLogit = output.sourceLayer;
    headTarget = output.inputs[0];
    scoreKind = 'logit';
  } else if (output.id !== featureSym.id && isSoftmaxLayer(output.sourceLayer) && output.inputs.length === 1) {
    headTarget = output.inputs[0];
    scoreKind = 'logit';
  }
  const headInput = tf.input({ shape: featureShape, name: `${name}_gradcam_features` });
  const headOut = headTarget.id === featureSym.id ? headInput : replay(headTarget, featureSym, headInput);
  const head = tf.model({ inputs: headInput, outputs: headOut, name: `${model.name}_gradcam_head` });
  const dual = tf.model({ inputs: model.inputs, outputs: [featureSym, output], name: `${model.name}_gradcam_dual` });
  const inShape = model.inputs[0].shape;
  const mapping = featureGridMapping(featureSym, [inShape[1] as number, inShape[2] as number]);
  return {
    layerName: name,
    dual,
    head,
    denseLogit,
    scoreKind,
    featureShape,
    mapping,
    dispose() {
      // The sub-models own no weights of their own (all shared with `model`): nothing to free.
    },
  };
}

/**
 * Class scores y (the logits, or the model output; see `scoreKind`) of the head for features A.
 * Runs inside the caller's tidy/grad scope.
 */
export function headScores(split: GradCamSplit, features: tf.Tensor4D): tf.Tensor2D {
  let y = split.head.apply(features, { training: false }) as tf.Tensor;
  if (split.denseLogit) {
    const [kernel, bias] = split.denseLogit.getWeights();
    y = tf.matMul(y as tf.Tensor2D, kernel as tf.Tensor2D);
    if (bias) y = tf.add(y, bias);
  }
  if (y.rank !== 2) throw new GradCamError(`head output rank ${y.rank}, expected [N, classes]`);
  return y as tf.Tensor2D;
}

/** Number of class scores the head produces. */
export function numClasses(split: GradCamSplit): number {
  const n = split.denseLogit ? split.denseLogit.getWeights()[0].shape[1] : split.head.outputs[0].shape[1];
  if (typeof n !== 'number') throw new GradCamError('cannot tell the number of classes of the head');
  return n;
}

/**
 * Grad-CAM maps on the feature grid, [N, h, w], each normalised to 0–1 (x / max after the ReLU).
 * `classIndices[i]` is the target class of slice i (model output column).
 */
export function gradCamMaps(split: GradCamSplit, features: tf.Tensor4D, classIndices: readonly number[]): tf.Tensor3D {
  const n = features.shape[0];
  if (classIndices.length !== n) throw new RangeError(`gradCamMaps: ${classIndices.length} class indices for ${n} feature maps`);
  return tf.tidy(() => {
    const nClasses = numClasses(split);
    classIndices.forEach((c, i) => {
      if (!(Number.isInteger(c) && c >= 0 && c < nClasses)) throw new RangeError(`class index ${c} of slice ${i} out of 0..${nClasses - 1}`);
    });
    const mask = tf.oneHot(tf.tensor1d([...classIndices], 'int32'), nClasses).toFloat();
    // Σ_i y_{i, c_i}: each slice's score depends only on its own features (no batch coupling in
    // inference mode), so one gradient call gives every slice's ∂y_c/∂A.
    const score = (a: tf.Tensor) => tf.sum(tf.mul(headScores(split, a as tf.Tensor4D), mask));
    const grads = tf.grad(score)(features) as tf.Tensor4D;
    const alpha = tf.mean(grads, [1, 2], true); // [N, 1, 1, C]
    const cam = tf.relu(tf.sum(tf.mul(features, alpha), 3)); // [N, h, w]
    const max = tf.max(cam, [1, 2], true);
    return tf.div(cam, tf.maximum(max, 1e-12)) as tf.Tensor3D;
  });
}

/**
 * Maps a feature-grid CAM (h × w, row-major) back onto the slice's own pixel grid (rows × columns):
 * the network input is the central crop (`centralCropBox(rows, columns, zoom)`) resized to
 * inputSize × inputSize, so each crop pixel is located on the input, then on the feature grid through
 * `mapping`, and sampled bilinearly there (coordinates clamped to the map: the border features stand for
 * the margin their receptive fields cover). Pixels outside the crop were never seen by the network: 0.
 */
export function camToSliceGrid(
  cam: Float32Array,
  h: number,
  w: number,
  mapping: FeatureGridMapping,
  inputSize: number,
  rows: number,
  columns: number,
  zoom: number,
): Float32Array {
  if (cam.length !== h * w) throw new RangeError(`cam has ${cam.length} values, expected ${h}×${w}`);
  const box = centralCropBox(rows, columns, zoom);
  const out = new Float32Array(rows * columns);
  // Column lookup tables (identical for every row).
  const x0 = new Int32Array(box.cols);
  const x1 = new Int32Array(box.cols);
  const fx = new Float32Array(box.cols);
  for (let c = 0; c < box.cols; c++) {
    const u = ((c + 0.5) * inputSize) / box.cols - 0.5; // input pixel coordinate
    const j = Math.min(Math.max((u - mapping.offset[1]) / mapping.scale[1], 0), w - 1);
    const f = Math.floor(j);
    x0[c] = f;
    x1[c] = Math.min(f + 1, w - 1);
    fx[c] = j - f;
  }
  for (let r = 0; r < box.rows; r++) {
    const v = ((r + 0.5) * inputSize) / box.rows - 0.5;
    const i = Math.min(Math.max((v - mapping.offset[0]) / mapping.scale[0], 0), h - 1);
    const y0 = Math.floor(i);
    const y1 = Math.min(y0 + 1, h - 1);
    const wy = i - y0;
    const base = (box.top + r) * columns + box.left;
    for (let c = 0; c < box.cols; c++) {
      const top = cam[y0 * w + x0[c]] + (cam[y0 * w + x1[c]] - cam[y0 * w + x0[c]]) * fx[c];
      const bot = cam[y1 * w + x0[c]] + (cam[y1 * w + x1[c]] - cam[y1 * w + x0[c]]) * fx[c];
      out[base + c] = top + (bot - top) * wy;
    }
  }
  return out;
}
