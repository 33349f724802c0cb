/**
 * Keras `.h5` weight files (the keras-applications `*_notop.h5` releases) → a tf.layers model, by layer name.
 *
 * Layout read (Keras 2 `save_weights`, also inside `model_weights/` of a whole-model file): root attribute
 * `layer_names`; one group per layer with attribute `weight_names` (e.g. `block1_conv1/kernel:0`, or Keras 1's
 * `block1_conv1_W_1:0`); each weight a float32 dataset at `<layer>/<weight name>`. Weight order inside a
 * layer is Keras' (kernel, bias; γ, β, moving mean, moving variance; depthwise, pointwise), which is also
 * tf.layers' order, so weights are matched by position and checked by shape (and by their short name when
 * both sides have a recognisable one).
 *
 * Names are compared after mapping '/' to '_': Keras 2's DenseNet spells `conv1/conv`, Keras 3 `conv1_conv`.
 *
 * Split: `readKerasH5` does the file I/O (h5wasm); `assignKerasWeights` is pure (checks, then assigns).
 */

import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { HEAD_LAYERS } from './applications.js';

/** One weight as stored in the file. */
export interface H5Weight {
  /** Name as stored (`block1_conv1/kernel:0`). */
  name: string;
  shape: number[];
  values: Float32Array;
}

/** A Keras weight file read into memory: layer name (as stored) → weights in file order. */
export interface KerasWeightFile {
  source: string;
  /** Layers in `layer_names` order, including weightless ones (empty lists). */
  layers: Map<string, H5Weight[]>;
  /** Root attributes `keras_version` and `backend` when present. */
  kerasVersion?: string;
  backend?: string;
}

/** A weight file that does not fit the model; names the layer and, for shapes, both shapes. */
export class KerasWeightsError extends Error {
  readonly code = 'KERAS_WEIGHTS_MISMATCH';
  constructor(
    message: string,
    readonly layer?: string,
  ) {
    super(message);
    this.name = 'KerasWeightsError';
  }
}

export interface AssignOptions {
  /**
   * Layers of the model that must get weights from the file. Default: every layer with weights except the
   * head (`gap`, `fc1`, `dropout`, `predictions`), i.e. the whole base.
   */
  include?: (layerName: string) => boolean;
}

export interface AssignReport {
  /** Model layers that received weights. */
  assigned: string[];
  /** Number of weight tensors and of values written. */
  tensors: number;
  values: number;
  /** File layers with weights that no model layer asked for (e.g. the top of a full-model file). */
  unused: string[];
}

/** Name key: '/' and '_' are the same (Keras 2 `conv1/conv` = Keras 3 `conv1_conv`). */
export function layerKey(name: string): string {
  return name.replace(/\//g, '_');
}

/** Short weight name: `block1_conv1/kernel:0` → `kernel`; Keras 1 `block1_conv1_W_1:0` → undefined. */
export function shortWeightName(name: string): string | undefined {
  const last = name.replace(/:\d+$/, '').split('/').pop() ?? '';
  const bare = last.replace(/_\d+$/, '');
  return ['kernel', 'bias', 'gamma', 'beta', 'moving_mean', 'moving_variance', 'depthwise_kernel', 'pointwise_kernel'].includes(bare) ? bare : undefined;
}

function toStrings(v: unknown): string[] {
  if (v == null) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.map((x) => String(x));
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>, (x) => String(x)); // empty list: h5py writes a 0-length float array
  return [String(v)];
}

/** Reads a Keras weight file with h5wasm (all layers, float32). Throws naming the file when it is not one. */
export async function readKerasH5(path: string): Promise<KerasWeightFile> {
  const { default: h5wasm } = await import('h5wasm/node');
  await h5wasm.ready;
  try {
    await access(path, constants.R_OK);
  } catch (err) {
    throw new KerasWeightsError(`weights ${path}: cannot read (${(err as Error).message})`);
  }
  let file: InstanceType<typeof h5wasm.File> | undefined;
  try {
    // h5wasm's Node build opens host paths directly (read-only here); a non-HDF5 file gives an invalid id.
    const opened = new h5wasm.File(path, 'r');
    if (opened.file_id < 0n) throw new KerasWeightsError(`weights ${path}: not an HDF5 file`);
    file = opened;
    let root: InstanceType<typeof h5wasm.Group> = file;
    if (!('layer_names' in root.attrs)) {
      const mw = file.get('model_weights');
      if (mw instanceof h5wasm.Group && 'layer_names' in mw.attrs) root = mw;
      else throw new KerasWeightsError(`weights ${path}: no 'layer_names' attribute (not a Keras weight file)`);
    }
    const names = toStrings(root.attrs.layer_names.value);
    const layers = new Map<string, H5Weight[]>();
    for (const layerName of names) {
      const g = root.get(layerName);
      if (!(g instanceof h5wasm.Group)) throw new KerasWeightsError(`weights ${path}: layer '${layerName}' is listed but has no group`, layerName);
      const weightNames = 'weight_names' in g.attrs ? toStrings(g.attrs.weight_names.value) : [];
      const weights: H5Weight[] = weightNames.map((wn) => {
        const ds = g.get(wn);
        if (!(ds instanceof h5wasm.Dataset)) throw new KerasWeightsError(`weights ${path}: '${layerName}/${wn}' is listed but missing`, layerName);
        const raw = ds.value;
        const values = raw instanceof Float32Array ? raw : Float32Array.from(raw as ArrayLike<number>);
        return { name: wn, shape: ds.shape ?? [], values };
      });
      layers.set(layerName, weights);
    }
    const attr = (k: string) => (k in file!.attrs ? String(file!.attrs[k].value) : undefined);
    return { source: path, layers, kerasVersion: attr('keras_version'), backend: attr('backend') };
  } finally {
    file?.close();
  }
}

/**
 * Checks that every selected model layer has a layer of the same name in `file` with the same number of
 * weights and the same shapes, then assigns them all (nothing is assigned when any check fails).
 */
export function assignKerasWeights(model: tf.LayersModel, file: KerasWeightFile, opts: AssignOptions = {}): AssignReport {
  const include = opts.include ?? ((n: string) => !HEAD_LAYERS.includes(n));
  const byKey = new Map<string, { name: string; weights: H5Weight[] }>();
  for (const [name, weights] of file.layers) byKey.set(layerKey(name), { name, weights });

  const plan: { variable: tf.LayerVariable; weight: H5Weight }[] = [];
  const assigned: string[] = [];
  const used = new Set<string>();
  for (const layer of model.layers) {
    const vars = layer.weights;
    if (vars.length === 0 || !include(layer.name)) continue;
    const found = byKey.get(layerKey(layer.name));
    if (!found) throw new KerasWeightsError(`weights ${file.source}: layer '${layer.name}' (${layer.getClassName()}) is not in the file`, layer.name);
    if (found.weights.length !== vars.length) {
      throw new KerasWeightsError(
        `weights ${file.source}: layer '${layer.name}' has ${vars.length} weights [${vars.map((v) => v.originalName).join(', ')}], ` +
          `the file ${found.weights.length} [${found.weights.map((w) => w.name).join(', ')}]`,
        layer.name,
      );
    }
    vars.forEach((v, i) => {
      const w = found.weights[i];
      const ours = shortWeightName(v.originalName);
      const theirs = shortWeightName(w.name);
      if (ours && theirs && ours !== theirs) {
        throw new KerasWeightsError(`weights ${file.source}: layer '${layer.name}' weight ${i}: model has '${ours}', the file '${w.name}'`, layer.name);
      }
      if (w.shape.join('x') !== v.shape.join('x')) {
        throw new KerasWeightsError(
          `weights ${file.source}: layer '${layer.name}' weight '${w.name}': shape [${w.shape.join(', ')}] in the file, [${v.shape.join(', ')}] in the model`,
          layer.name,
        );
      }
      if (w.values.length !== v.shape.reduce<number>((a, b) => a * (b ?? 1), 1)) {
        throw new KerasWeightsError(`weights ${file.source}: layer '${layer.name}' weight '${w.name}': ${w.values.length} values for shape [${w.shape.join(', ')}]`, layer.name);
      }
      plan.push({ variable: v, weight: w });
    });
    used.add(found.name);
    assigned.push(layer.name);
  }
  let values = 0;
  for (const { variable, weight } of plan) {
    const t = tf.tensor(weight.values, variable.shape as number[], 'float32');
    variable.write(t);
    t.dispose();
    values += weight.values.length;
  }
  const unused = [...file.layers].filter(([name, ws]) => ws.length > 0 && !used.has(name)).map(([name]) => name);
  return { assigned, tensors: plan.length, values, unused };
}

/** Reads `path` and assigns it to `model` (see `assignKerasWeights`). */
export async function loadKerasWeights(model: tf.LayersModel, path: string, opts: AssignOptions = {}): Promise<AssignReport> {
  return assignKerasWeights(model, await readKerasH5(path), opts);
}
