/**
 * The slice classifier: a loaded model with its card, warmed up once, that turns the raw slices of one
 * stack into [pOAP, pIN, pOBS] rows (and, on request, one Grad-CAM heat map per slice on the slice's own
 * pixel grid).
 *
 * Lifecycle (house style §8): `SliceClassifier.load(dir)` or `SliceClassifier.fromModel(model, card)` checks
 * the card against the model, builds the Grad-CAM split (a dual-output model [last conv activations,
 * predictions] sharing every layer, and the head rebuilt on the feature maps), runs one dummy batch, and
 * returns a ready classifier. Each worker loads it once and calls `classify` per stack. `dispose()` frees
 * the model's weights when the classifier owns them.
 *
 * Preprocessing is `preprocessStack` with the card's parameters over the whole stack in the order given
 * (apex → base), because the 2.5D channel mode takes each slice's neighbours.
 */
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from '../log.js';
import { readBack } from './backend.js';
import { argmaxLabels, LABELS, NO_PRIOR, type ClassLogPrior } from './decode.js';
import { loadModelDir, serializeModel, sha256Hex } from './model-dir.js';
import { camToSliceGrid, gradCamMaps, splitForGradCam, type CamScoreKind, type GradCamSplit } from './gradcam.js';
import { preprocessStack, toTensor4d, validatePreprocessParams, type ChannelMode, type PreprocessParams } from './preprocess.js';
import type { ModelRef } from './result.js';

/**
 * What the classifier needs from a model card (src/inference/model-dir.ts's ModelCard has these fields
 * and more). `classes` is the order of the model's output columns; any order of OAP / IN / OBS
 * (case-insensitive) is accepted and mapped to [OAP, IN, OBS].
 */
export interface ClassifierCard {
  id: string;
  version: string;
  /** sha256 of the weights (64 hex digits). */
  sha256: string;
  architecture: string;
  inputSize: number;
  channelMode: ChannelMode;
  preprocessing: PreprocessParams;
  classes: readonly string[];
  /** Layer whose output Grad-CAM uses; default: the last conv block (`findLastConvLayer`). */
  lastConvLayer?: string;
  /** Range decoding settings (model card `decoding`): the class log-prior fitted for this model. */
  decoding?: { readonly classLogPrior?: ClassLogPrior };
}

/** The class log-prior range decoding uses with this card's model (none when the card has none). */
export function classLogPriorOf(card: Pick<ClassifierCard, 'decoding'>): ClassLogPrior {
  return card.decoding?.classLogPrior ?? NO_PRIOR;
}

export interface ClassifierOptions {
  /**
   * Images per forward pass. A stack is cut into equal-sized batches of at most this many slices.
   * @defaultValue 8
   */
  batchSize?: number;
  /**
   * Run one dummy image through the model (and the Grad-CAM head) at load, so that the first real
   * stack does not pay for kernel setup.
   * @defaultValue true
   */
  warmup?: boolean;
  /** Where to log the load (model id, Grad-CAM layer, score kind, warm-up time). */
  logger?: Pick<Logger, 'info' | 'debug'>;
}

export interface CamOptions {
  /**
   * Chooses each slice's Grad-CAM class (0 = OAP, 1 = IN, 2 = OBS) from the probabilities of the whole
   * stack (rows [pOAP, pIN, pOBS], in the order classified). Default: the argmax (`predicted`).
   */
  target?: (probabilities: number[][]) => number[];
}

export interface CamClassification {
  /** [pOAP, pIN, pOBS] per slice, in the order given. */
  probabilities: number[][];
  /** One heat map per slice, rows × columns, 0–1; 0 outside the central crop the network saw. */
  cams: Float32Array[];
  /** The class (0 = OAP, 1 = IN, 2 = OBS) each CAM explains. */
  camClasses: number[];
  /** What the CAM's class score was: the pre-softmax logit, or the model output. */
  camScore: CamScoreKind;
}

export class ClassifierCardError extends Error {
  readonly code = 'MODEL_CARD_MISMATCH';
  constructor(message: string) {
    super(message);
    this.name = 'ClassifierCardError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/**
 * sha256 (hex) of a model's serialised weights: the bytes `saveModelDir` writes to weights.bin, so an
 * in-memory model gets the same hash as its saved copy (the card's `sha256`).
 */
export async function weightsSha256(model: tf.LayersModel): Promise<string> {
  return sha256Hex((await serializeModel(model)).weights);
}

/** Splits n items into ceil(n / max) batches of (nearly) equal size. */
export function batchRanges(n: number, max: number): Array<[number, number]> {
  if (n === 0) return [];
  const count = Math.ceil(n / max);
  const size = Math.ceil(n / count);
  const out: Array<[number, number]> = [];
  for (let s = 0; s < n; s += size) out.push([s, Math.min(s + size, n)]);
  return out;
}

export class SliceClassifier {
  /** [OAP, IN, OBS] → model output column. */
  private readonly columns: [number, number, number];
  private readonly split: GradCamSplit;
  private readonly batchSize: number;
  private disposed = false;

  private constructor(
    private readonly model: tf.LayersModel,
    readonly card: Readonly<ClassifierCard>,
    private readonly ownsModel: boolean,
    opts: ClassifierOptions,
  ) {
    this.batchSize = opts.batchSize ?? 8;
    if (!(Number.isInteger(this.batchSize) && this.batchSize >= 1)) throw new RangeError(`batchSize must be a positive integer, got ${opts.batchSize}`);
    this.columns = checkCard(model, card);
    this.split = splitForGradCam(model, card.lastConvLayer);
  }

  /**
   * A classifier over an in-memory model (tests, training, the worker pool). The model stays the
   * caller's: `dispose()` does not free it.
   */
  static async fromModel(model: tf.LayersModel, card: ClassifierCard, opts: ClassifierOptions = {}): Promise<SliceClassifier> {
    const c = new SliceClassifier(model, card, false, opts);
    await c.init(opts);
    return c;
  }

  /**
   * Loads a model directory (`loadModelDir`: card validated, weights checked against the card's sha256)
   * on the active tfjs backend. The classifier owns the model: `dispose()` frees it.
   */
  static async load(modelDir: string, opts: ClassifierOptions = {}): Promise<SliceClassifier> {
    const { model, card } = await loadModelDir(modelDir);
    try {
      const c = new SliceClassifier(model, card, true, opts);
      await c.init(opts);
      return c;
    } catch (err) {
      model.dispose();
      throw err;
    }
  }

  private async init(opts: ClassifierOptions): Promise<void> {
    const t0 = performance.now();
    if (opts.warmup ?? true) {
      const s = this.card.preprocessing.inputSize;
      // One dummy image through the dual model and the CAM head: kernel setup happens here, not on a study.
      const held: tf.Tensor[] = [tf.zeros([1, s, s, 3])];
      try {
        const [a, p] = this.split.dual.predict(held[0]) as tf.Tensor[];
        held.push(a, p);
        const cam = gradCamMaps(this.split, a as tf.Tensor4D, [0]);
        held.push(cam);
        await Promise.all([readBack(p), readBack(cam)]);
      } finally {
        tf.dispose(held);
      }
    }
    opts.logger?.info(
      {
        model: this.card.id,
        version: this.card.version,
        architecture: this.card.architecture,
        gradCamLayer: this.split.layerName,
        camScore: this.split.scoreKind,
        camMapping: this.split.mapping.method,
        backend: tf.getBackend(),
        warmupMs: Math.round(performance.now() - t0),
      },
      'classifier loaded',
    );
  }

  /** The model reference of result documents. */
  get modelRef(): ModelRef {
    return { id: this.card.id, version: this.card.version, sha256: this.card.sha256 };
  }

  /** What the Grad-CAM class score is ('logit' for softmax models). */
  get camScore(): CamScoreKind {
    return this.split.scoreKind;
  }

  /** The layer whose activations Grad-CAM uses. */
  get camLayer(): string {
    return this.split.layerName;
  }

  /** Network inputs (HWC, inputSize² × 3) for the slices of one stack, in the order given. */
  prepare(images: readonly Float32Array[], rows: number, columns: number): Float32Array[] {
    return preprocessStack(images, rows, columns, this.card.preprocessing);
  }

  /**
   * Probabilities [pOAP, pIN, pOBS] for the raw slices of one stack (rows × columns each, ordered apex →
   * base: the 2.5D mode reads the neighbours in this order).
   */
  async classify(images: readonly Float32Array[], rows: number, columns: number): Promise<number[][]> {
    this.checkAlive();
    return this.classifyPrepared(this.prepare(images, rows, columns));
  }

  /** Probabilities for already preprocessed network inputs (from `prepare`). */
  async classifyPrepared(inputs: readonly Float32Array[]): Promise<number[][]> {
    this.checkAlive();
    const size = this.card.preprocessing.inputSize;
    const out: number[][] = [];
    for (const [s, e] of batchRanges(inputs.length, this.batchSize)) {
      const p = tf.tidy(() => this.model.predict(toTensor4d(tf, inputs.slice(s, e), size)) as tf.Tensor);
      try {
        out.push(...this.rows(await readBack(p), e - s));
      } finally {
        p.dispose();
      }
    }
    return out;
  }

  /**
   * Probabilities and one Grad-CAM per slice (see gradcam.ts), mapped back onto the rows × columns grid of
   * the slice. One forward pass per batch; the features stay in memory until the targets are known
   * (the default target, the argmax, needs only the slice itself; a custom `target` may use the stack).
   */
  async classifyWithCam(images: readonly Float32Array[], rows: number, columns: number, opts: CamOptions = {}): Promise<CamClassification> {
    this.checkAlive();
    return this.classifyPreparedWithCam(this.prepare(images, rows, columns), rows, columns, opts);
  }

  /**
   * `classifyWithCam` for already preprocessed inputs (from `prepare`) of slices of rows × columns: the
   * CAMs are mapped back onto that grid.
   */
  async classifyPreparedWithCam(inputs: readonly Float32Array[], rows: number, columns: number, opts: CamOptions = {}): Promise<CamClassification> {
    this.checkAlive();
    const { inputSize, zoom } = this.card.preprocessing;
    const ranges = batchRanges(inputs.length, this.batchSize);
    const features: tf.Tensor4D[] = [];
    const probabilities: number[][] = [];
    try {
      for (const [s, e] of ranges) {
        const x = toTensor4d(tf, inputs.slice(s, e), inputSize);
        let outs: tf.Tensor[];
        try {
          outs = this.split.dual.predict(x) as tf.Tensor[];
        } finally {
          x.dispose();
        }
        features.push(outs[0] as tf.Tensor4D);
        try {
          probabilities.push(...this.rows(await readBack(outs[1]), e - s));
        } finally {
          outs[1].dispose();
        }
      }
      const camClasses = opts.target ? opts.target(probabilities) : argmaxLabels(probabilities).map((l) => LABELS.indexOf(l));
      if (camClasses.length !== inputs.length || camClasses.some((c) => !(c === 0 || c === 1 || c === 2))) {
        throw new RangeError(`target must give one class 0..2 per slice, got ${JSON.stringify(camClasses)}`);
      }
      const [h, w] = this.split.featureShape;
      const cams: Float32Array[] = [];
      for (let b = 0; b < ranges.length; b++) {
        const [s, e] = ranges[b];
        const maps = gradCamMaps(this.split, features[b], camClasses.slice(s, e).map((k) => this.columns[k]));
        let data: Float32Array;
        try {
          data = (await readBack(maps)) as Float32Array;
        } finally {
          maps.dispose();
        }
        for (let i = 0; i < e - s; i++) {
          cams.push(camToSliceGrid(data.subarray(i * h * w, (i + 1) * h * w), h, w, this.split.mapping, inputSize, rows, columns, zoom));
        }
      }
      return { probabilities, cams, camClasses, camScore: this.split.scoreKind };
    } finally {
      tf.dispose(features);
    }
  }

  /** Frees the model's weights when this classifier loaded them (idempotent). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.split.dispose();
    if (this.ownsModel) this.model.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error('SliceClassifier used after dispose()');
  }

  /** Model output rows (n × classes) → [pOAP, pIN, pOBS] rows. */
  private rows(data: ArrayLike<number>, n: number): number[][] {
    const k = data.length / n;
    const [a, b, c] = this.columns;
    return Array.from({ length: n }, (_, i) => [data[i * k + a], data[i * k + b], data[i * k + c]]);
  }
}

/** Checks a card against its model; returns the output column of OAP, IN and OBS. */
function checkCard(model: tf.LayersModel, card: ClassifierCard): [number, number, number] {
  for (const f of ['id', 'version', 'architecture'] as const) {
    if (typeof card[f] !== 'string' || card[f].length === 0) throw new ClassifierCardError(`model card: ${f} is missing`);
  }
  if (!/^[0-9a-f]{64}$/.test(card.sha256)) throw new ClassifierCardError(`model card: sha256 must be 64 lowercase hex digits, got '${card.sha256}'`);
  try {
    validatePreprocessParams(card.preprocessing);
  } catch (err) {
    throw new ClassifierCardError(`model card: preprocessing.${(err as Error).message}`);
  }
  if (card.inputSize !== card.preprocessing.inputSize) {
    throw new ClassifierCardError(`model card: inputSize ${card.inputSize} differs from preprocessing.inputSize ${card.preprocessing.inputSize}`);
  }
  if (card.channelMode !== card.preprocessing.channelMode) {
    throw new ClassifierCardError(`model card: channelMode '${card.channelMode}' differs from preprocessing.channelMode '${card.preprocessing.channelMode}'`);
  }
  const shape = model.inputs[0]?.shape;
  const s = card.preprocessing.inputSize;
  if (!shape || shape.length !== 4 || shape[1] !== s || shape[2] !== s || shape[3] !== 3) {
    throw new ClassifierCardError(`model input shape ${JSON.stringify(shape)} does not match the card's [null, ${s}, ${s}, 3]`);
  }
  const classes = card.classes.map((c) => String(c).toUpperCase());
  const outShape = model.outputs[0]?.shape;
  if (!outShape || outShape[outShape.length - 1] !== classes.length) {
    throw new ClassifierCardError(`model output shape ${JSON.stringify(outShape)} does not match the card's ${classes.length} classes`);
  }
  const cols = LABELS.map((l) => classes.indexOf(l));
  if (classes.length !== 3 || cols.some((c) => c < 0)) {
    throw new ClassifierCardError(`model card: classes must be OAP, IN and OBS in some order, got ${JSON.stringify(card.classes)}`);
  }
  return cols as [number, number, number];
}
