/**
 * Writes weight files in the Keras 2 `save_weights` layout with h5wasm, for the importer tests: root
 * attributes `layer_names` (fixed-length byte strings, as h5py writes them), `backend`, `keras_version`;
 * per layer a group with attribute `weight_names` and one float32 dataset per weight at
 * `<layer>/<weight name>` (names with '/' become nested groups, as in h5py).
 */

import h5wasm from 'h5wasm/node';
import * as tf from '@tensorflow/tfjs';

export interface WriterWeight {
  name: string;
  shape: number[];
  values: Float32Array;
}

export interface WriterLayer {
  name: string;
  weights: WriterWeight[];
}

type H5Group = InstanceType<typeof h5wasm.Group>;

function ensureGroup(root: H5Group, path: string): H5Group {
  let g = root;
  for (const part of path.split('/')) {
    const existing = g.get(part);
    g = existing instanceof h5wasm.Group ? existing : g.create_group(part);
  }
  return g;
}

function fixedStrings(names: string[]): { data: string[]; dtype: string } {
  const width = Math.max(1, ...names.map((n) => Buffer.byteLength(n)));
  return { data: names, dtype: `S${width}` };
}

/** Writes `layers` to `path` (overwrites). `wrap: true` nests them under `model_weights/` like `model.save`. */
export async function writeKerasH5(path: string, layers: WriterLayer[], opts: { wrap?: boolean } = {}): Promise<void> {
  await h5wasm.ready;
  const f = new h5wasm.File(path, 'w');
  try {
    const root = opts.wrap ? f.create_group('model_weights') : f;
    const ln = fixedStrings(layers.map((l) => l.name));
    root.create_attribute('layer_names', ln.data, null, ln.dtype);
    f.create_attribute('backend', 'tensorflow');
    f.create_attribute('keras_version', '2.2.4');
    for (const layer of layers) {
      const g = ensureGroup(root, layer.name);
      const wn = fixedStrings(layer.weights.map((w) => w.name));
      if (layer.weights.length) g.create_attribute('weight_names', wn.data, null, wn.dtype);
      else g.create_attribute('weight_names', new Float32Array(0), [0], '<f');
      for (const w of layer.weights) {
        const parts = w.name.split('/');
        const leaf = parts.pop()!;
        const parent = parts.length ? ensureGroup(g, parts.join('/')) : g;
        parent.create_dataset({ name: leaf, data: w.values, shape: w.shape, dtype: '<f' });
      }
    }
  } finally {
    f.close();
  }
}

/**
 * The Keras layout of a tf.layers model's weights: one entry per layer (weightless ones too), weight names
 * `<layer>/<short>:0`, values from `fill(layerIndex, weightIndex, size)`.
 */
export function kerasLayoutOf(model: tf.LayersModel, fill: (li: number, wi: number, size: number) => Float32Array, rename: (n: string) => string = (n) => n): WriterLayer[] {
  return model.layers.map((layer, li) => ({
    name: rename(layer.name),
    weights: layer.weights.map((v, wi) => {
      const shape = v.shape as number[];
      const size = shape.reduce((a, b) => a * b, 1);
      const short = v.originalName.split('/').pop()!;
      return { name: `${rename(layer.name)}/${short}:0`, shape, values: fill(li, wi, size) };
    }),
  }));
}

/** Deterministic distinct values per (layer, weight): li·1000 + wi·100 + j·1e-6 pattern, cheap to check. */
export function patternFill(li: number, wi: number, size: number): Float32Array {
  const a = new Float32Array(size);
  const base = li * 10 + wi;
  for (let j = 0; j < size; j++) a[j] = base + ((j % 997) / 997);
  return a;
}
