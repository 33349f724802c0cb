/**
 * The model directory (DESIGN.md "Model directory"): TensorFlow.js layers format plus a model card.
 *
 *   model.json        { format: 'layers-model', generatedBy, convertedBy: null, modelTopology,
 *                       weightsManifest: [{ paths: ['weights.bin'], weights: [...] }] }
 *   weights.bin       all weights, one shard (little-endian float32 as tfjs writes them)
 *   model-card.json   `ModelCardSchema` below (sax-range/model-card@1)
 *
 * Written and read with plain node:fs (pure tfjs has no file:// handler; tfjs-node is optional):
 * `tf.io.withSaveHandler` collects the artifacts, `tf.io.fromMemory` loads them. Loading checks the card
 * against the schema, the sha256 of the weights against the card, and the model's input and output shapes
 * against the card, and names the file at fault in every error.
 */

import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { validatePreprocessParams, type PreprocessParams } from './preprocess.js';
// Custom layer classes (InceptionResNetV2's CustomScaleLayer) must be registered before a model loads.
import '../training/models/keras-layers.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const MODEL_CARD = 'model-card.json';
export const MODEL_CARD_SCHEMA_ID = 'sax-range/model-card@1';

/** Class order of the model's output (= src/inference/decode.ts LABELS). */
export const MODEL_CLASSES = ['OAP', 'IN', 'OBS'] as const;

export const ACDC_LICENSE = 'CC BY-NC-SA 4.0';
export const ACDC_CITATION =
  'O. Bernard, A. Lalande, C. Zotti, F. Cervenansky, et al., "Deep Learning Techniques for Automatic MRI Cardiac ' +
  'Multi-structures Segmentation and Diagnosis: Is the Problem Solved?", IEEE TMI 37(11), 2514-2525, 2018, ' +
  'doi:10.1109/TMI.2018.2837502';

const PreprocessParamsSchema = z.object({
  inputSize: z.number().int().positive(),
  zoom: z.number().gt(0).lte(1),
  clip: z.tuple([z.number().min(0).max(100), z.number().min(0).max(100)]),
  channelMode: z.enum(['gray3', '2.5d']),
  normalization: z.enum(['caffe', 'torch', 'tf']),
});

const finite = z.number().refine(Number.isFinite, 'expected a finite number');

/**
 * How range decoding uses the model's probabilities: `classLogPrior` `[OAP, IN, OBS]` is added to each
 * slice's log-probabilities (src/inference/decode.ts). Fitted on labelled predictions the model did not
 * train on (src/training/decoding-prior.ts); `fittedOn` and `estimate` say on what and how well.
 */
export const DecodingSchema = z.looseObject({
  classLogPrior: z.tuple([finite, finite, finite]),
  fittedOn: z.string().min(1),
});

const OptimizerSchema = z.looseObject({
  name: z.string(),
  learningRate: z.number().optional(),
  momentum: z.number().optional(),
  nesterov: z.boolean().optional(),
  decay: z.number().optional(),
});

/**
 * The model card. `metrics` is free-form but, for models made by `sax-range train`, holds
 * `{ cv?: { folds, selectedEpoch, selection, pooled: { all|ED|ES: { argmax, decoded } }, foldMean }, final?: {...} }`
 * where each metrics block is a `MetricsSummary` of src/training/metrics.ts (confusion matrix, per-class
 * precision/recall/F1, accuracy, balanced accuracy, soft accuracy, range-exact rate); `evaluation.method`
 * says in words how those numbers were measured (and on which model: CV fold models vs the shipped one).
 */
export const ModelCardSchema = z.object({
  schema: z.literal(MODEL_CARD_SCHEMA_ID),
  id: z.string().min(1),
  version: z.string().min(1),
  description: z.string().optional(),
  architecture: z.string().min(1),
  /** Build options beyond the architecture name (e.g. `{ padding: 'same' }`). */
  architectureOptions: z.record(z.string(), z.unknown()).optional(),
  inputSize: z.number().int().positive(),
  channelMode: z.enum(['gray3', '2.5d']),
  preprocessing: PreprocessParamsSchema,
  classes: z.tuple([z.literal('OAP'), z.literal('IN'), z.literal('OBS')]),
  /** Layer whose output Grad-CAM uses. */
  lastConvLayer: z.string().min(1),
  /** Multiply–accumulates per image (forward pass). */
  macs: z.number().nonnegative(),
  params: z.number().int().nonnegative().optional(),
  training: z.looseObject({
    /** The training protocol (at least its name; `sax-range train` stores the whole protocol object). */
    protocol: z.looseObject({ name: z.string() }),
    /** Dataset specs as given (`acdc:DIR`, `phantom:COUNT:SEED`, joined with `+` → one entry each). */
    datasets: z.array(z.string()),
    /** Number of subjects (patients) the weights were trained on. */
    subjects: z.number().int().nonnegative(),
    epochs: z.number().int().nonnegative(),
    batchSize: z.number().int().positive(),
    optimizer: OptimizerSchema,
    seed: z.number().int(),
    /** tfjs backend that trained it. */
    backend: z.string(),
    durationSeconds: z.number().nonnegative(),
    /** Versions of node, tfjs, sax-range, … */
    versions: z.record(z.string(), z.string()),
  }),
  metrics: z.record(z.string(), z.unknown()),
  /** Range decoding settings; absent: plain maximum-likelihood decoding (no prior). */
  decoding: DecodingSchema.optional(),
  evaluation: z.looseObject({ method: z.string().min(1) }),
  license: z.looseObject({
    /** Licence of the training data the weights inherit ('CC BY-NC-SA 4.0' for ACDC). */
    data: z.string().min(1),
    citation: z.string(),
  }),
  /** sha256 (hex) of weights.bin. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.iso.datetime({ offset: true }),
});

export type ModelCard = z.infer<typeof ModelCardSchema>;
/** A card before saving: `sha256` (and `macs`/`lastConvLayer` when omitted) are filled in by `saveModelDir`. */
export type ModelCardInput = Omit<ModelCard, 'sha256' | 'macs' | 'lastConvLayer'> & Partial<Pick<ModelCard, 'macs' | 'lastConvLayer'>>;

/** Thrown for a missing or invalid model directory; `file` names the file at fault. */
export class ModelDirError extends Error {
  constructor(
    readonly dir: string,
    readonly file: string,
    message: string,
  ) {
    super(`model directory ${dir}: ${file}: ${message}`);
    this.name = 'ModelDirError';
  }
}

export function sha256Hex(data: Uint8Array | ArrayBuffer): string {
  return createHash('sha256')
    .update(data instanceof Uint8Array ? data : new Uint8Array(data))
    .digest('hex');
}

/** Validates a card object; throws a ModelDirError listing the bad fields. */
export function parseModelCard(value: unknown, dir = '(memory)'): ModelCard {
  const r = ModelCardSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ModelDirError(dir, MODEL_CARD, `invalid model card: ${issues}`);
  }
  const card = r.data;
  try {
    validatePreprocessParams(card.preprocessing as PreprocessParams);
  } catch (err) {
    throw new ModelDirError(dir, MODEL_CARD, `invalid preprocessing: ${(err as Error).message}`);
  }
  if (card.preprocessing.inputSize !== card.inputSize) {
    throw new ModelDirError(dir, MODEL_CARD, `inputSize ${card.inputSize} differs from preprocessing.inputSize ${card.preprocessing.inputSize}`);
  }
  if (card.preprocessing.channelMode !== card.channelMode) {
    throw new ModelDirError(dir, MODEL_CARD, `channelMode ${card.channelMode} differs from preprocessing.channelMode ${card.preprocessing.channelMode}`);
  }
  return card;
}

function toBytes(data: tf.io.WeightData | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  const buf = Array.isArray(data) ? tf.io.CompositeArrayBuffer.join(data) : data;
  return new Uint8Array(buf);
}

/** Serialises a model to `{ modelJson, weights }` (what `saveModelDir` writes). */
export async function serializeModel(model: tf.LayersModel): Promise<{ modelJson: Record<string, unknown>; weights: Uint8Array }> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!artifacts?.modelTopology) throw new Error('model.save produced no topology');
  const weights = toBytes(artifacts.weightData);
  const modelJson: Record<string, unknown> = {
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: artifacts.convertedBy ?? null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
  };
  return { modelJson, weights };
}

async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/**
 * Writes `model.json`, `weights.bin` and `model-card.json` into `dir` (created if needed; existing files
 * replaced). Fills in the card's `sha256`, and `macs` / `lastConvLayer` when the caller left them out (pass
 * them from src/training/models when available). Returns the validated card as written.
 */
export async function saveModelDir(
  dir: string,
  model: tf.LayersModel,
  card: ModelCardInput,
  introspect?: { macs?: (m: tf.LayersModel) => number; lastConvLayer?: (m: tf.LayersModel) => string },
): Promise<ModelCard> {
  const { modelJson, weights } = await serializeModel(model);
  const full = {
    ...card,
    macs: card.macs ?? introspect?.macs?.(model) ?? 0,
    lastConvLayer: card.lastConvLayer ?? introspect?.lastConvLayer?.(model) ?? '',
    sha256: sha256Hex(weights),
  };
  const valid = parseModelCard(full, dir);
  const inputShape = model.inputs[0]?.shape;
  if (inputShape && (inputShape[1] !== valid.inputSize || inputShape[2] !== valid.inputSize)) {
    throw new ModelDirError(dir, MODEL_CARD, `card inputSize ${valid.inputSize} does not match the model input ${JSON.stringify(inputShape)}`);
  }
  await mkdir(dir, { recursive: true });
  await writeAtomic(join(dir, WEIGHTS_BIN), weights);
  await writeAtomic(join(dir, MODEL_JSON), `${JSON.stringify(modelJson)}\n`);
  await writeAtomic(join(dir, MODEL_CARD), `${JSON.stringify(valid, null, 2)}\n`);
  return valid;
}

async function readOrThrow(dir: string, file: string): Promise<Buffer> {
  try {
    return await readFile(join(dir, file));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelDirError(dir, file, 'missing');
    throw new ModelDirError(dir, file, `unreadable (${(err as Error).message})`);
  }
}

function parseJson(dir: string, file: string, buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new ModelDirError(dir, file, `not valid JSON (${(err as Error).message})`);
  }
}

/** Reads and validates only the card (e.g. for `GET /api/model`). */
export async function readModelCard(dir: string): Promise<ModelCard> {
  return parseModelCard(parseJson(dir, MODEL_CARD, await readOrThrow(dir, MODEL_CARD)), dir);
}

/**
 * Loads a model directory: validates the card, reads model.json and its weight shards (normally the one
 * `weights.bin`), checks their sha256 against the card, loads the layers model with `tf.io.fromMemory`
 * (any backend) and checks the input/output shapes against the card. Throws ModelDirError naming the file.
 */
export async function loadModelDir(dir: string): Promise<{ model: tf.LayersModel; card: ModelCard }> {
  const card = await readModelCard(dir);
  const json = parseJson(dir, MODEL_JSON, await readOrThrow(dir, MODEL_JSON)) as {
    modelTopology?: unknown;
    weightsManifest?: { paths?: unknown; weights?: unknown }[];
  };
  if (!json || typeof json !== 'object' || !json.modelTopology) throw new ModelDirError(dir, MODEL_JSON, 'no modelTopology');
  if (!Array.isArray(json.weightsManifest)) throw new ModelDirError(dir, MODEL_JSON, 'no weightsManifest');
  const specs: tf.io.WeightsManifestEntry[] = [];
  const shards: Buffer[] = [];
  for (const group of json.weightsManifest) {
    if (!Array.isArray(group.paths) || !Array.isArray(group.weights)) throw new ModelDirError(dir, MODEL_JSON, 'malformed weightsManifest group');
    for (const p of group.paths) {
      if (typeof p !== 'string' || p.includes('..') || p.startsWith('/')) throw new ModelDirError(dir, MODEL_JSON, `bad weight path ${JSON.stringify(p)}`);
      shards.push(await readOrThrow(dir, p));
    }
    specs.push(...(group.weights as tf.io.WeightsManifestEntry[]));
  }
  const weights = shards.length === 1 ? shards[0] : Buffer.concat(shards);
  const shardName = json.weightsManifest.flatMap((g) => g.paths as string[]).join('+') || WEIGHTS_BIN;
  const sha = sha256Hex(weights);
  if (sha !== card.sha256) {
    throw new ModelDirError(dir, shardName, `sha256 ${sha} does not match the model card (${card.sha256}): weights changed or belong to another model`);
  }
  const expectedBytes = specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1) * (s.dtype === 'float32' || s.dtype === 'int32' ? 4 : 1), 0);
  if (specs.every((s) => !s.quantization) && expectedBytes !== weights.byteLength) {
    throw new ModelDirError(dir, shardName, `holds ${weights.byteLength} bytes, model.json's manifest needs ${expectedBytes}`);
  }
  const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer;
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology as object, weightSpecs: specs, weightData }));
  } catch (err) {
    throw new ModelDirError(dir, MODEL_JSON, `tfjs could not load the model: ${(err as Error).message}`);
  }
  const inShape = model.inputs[0]?.shape;
  const outShape = model.outputs[0]?.shape;
  if (!inShape || inShape[1] !== card.inputSize || inShape[2] !== card.inputSize || inShape[3] !== 3) {
    model.dispose();
    throw new ModelDirError(dir, MODEL_JSON, `model input ${JSON.stringify(inShape)} does not match the card (${card.inputSize}×${card.inputSize}×3)`);
  }
  if (!outShape || outShape[outShape.length - 1] !== card.classes.length) {
    model.dispose();
    throw new ModelDirError(dir, MODEL_JSON, `model output ${JSON.stringify(outShape)} does not have ${card.classes.length} classes`);
  }
  return { model, card };
}

/** Removes a model directory's three files (not the folder's other content). */
export async function removeModelDir(dir: string): Promise<void> {
  await Promise.all([MODEL_JSON, WEIGHTS_BIN, MODEL_CARD].map((f) => rm(join(dir, f), { force: true })));
}
