/**
 * The CBR family (conv–BatchNorm–ReLU–maxpool blocks; Raghu et al., "Transfusion", NeurIPS 2019) as Ho & Kim
 * built it in Keras (notes/paper.md §12): each block Conv2D(f, k×k, stride 1, padding 'valid', with bias) →
 * BatchNormalization → ReLU → MaxPooling2D(2×2, stride 2); then GlobalAveragePooling → Dense(256, ReLU) →
 * Dropout(0.5) → Dense(3, softmax). Random initialisation (Keras defaults: Glorot-uniform kernels, zero biases,
 * BN γ = 1, β = 0), seeded per layer so that a seed fixes the initial weights.
 *
 * | key          | paper name  | convs                       |
 * |--------------|-------------|-----------------------------|
 * | cbr_large_t  | CBR-LargeT  | 7×7: 32, 64, 128, 256, 512  |
 * | cbr_large_w  | (code only) | 7×7: 64, 128, 256, 512      |
 * | cbr_small    | CBR-Small   | 7×7: 32, 64, 128, 256       |
 * | cbr_tiny     | CBR-Tiny    | 5×5: 64, 128, 256, 512      |
 * | cbr_compact  | — (ours)    | 3×3 'same': 16, 32, 64, 128 |
 * | cbr_compact_w| — (ours)    | 3×3 'same': 32, 64, 128, 256|
 *
 * `cbr_compact*` are the CPU-sized variants (same block structure, 3×3 'same' convs so that 64²–96² inputs
 * keep a 4×4–6×6 map before GAP): what fits a 2-core CPU training run (issue 3 allows "any compact variant").
 *
 * Layer names (stable, so that Grad-CAM and weight import can find them): `block{i}_conv`, `block{i}_bn`,
 * `block{i}_relu`, `block{i}_pool` (i from 1), `gap`, `fc1`, `dropout`, `predictions`. Grad-CAM uses the last
 * block's ReLU output (`block{n}_relu`, the last conv feature map before pooling).
 */

import * as tf from '@tensorflow/tfjs';

export type Padding = 'valid' | 'same';

export interface CbrSpec {
  /** Paper / display name. */
  displayName: string;
  filters: readonly number[];
  kernel: number;
  padding: Padding;
  /** Max-pool window and stride. */
  pool: number;
}

export const CBR_SPECS: Readonly<Record<string, CbrSpec>> = {
  cbr_large_t: { displayName: 'CBR-LargeT', filters: [32, 64, 128, 256, 512], kernel: 7, padding: 'valid', pool: 2 },
  cbr_large_w: { displayName: 'CBR-LargeW', filters: [64, 128, 256, 512], kernel: 7, padding: 'valid', pool: 2 },
  cbr_small: { displayName: 'CBR-Small', filters: [32, 64, 128, 256], kernel: 7, padding: 'valid', pool: 2 },
  cbr_tiny: { displayName: 'CBR-Tiny', filters: [64, 128, 256, 512], kernel: 5, padding: 'valid', pool: 2 },
  cbr_compact: { displayName: 'CBR-Compact (3×3, 16-32-64-128)', filters: [16, 32, 64, 128], kernel: 3, padding: 'same', pool: 2 },
  cbr_compact_w: { displayName: 'CBR-CompactW (3×3, 32-64-128-256)', filters: [32, 64, 128, 256], kernel: 3, padding: 'same', pool: 2 },
};

/** Head sizes (Ho & Kim: Dense 256 → Dropout 0.5 → Dense 3). */
export const HEAD_UNITS = 256;
export const HEAD_DROPOUT = 0.5;
export const NUM_CLASSES = 3;

/**
 * Canonical CBR key of a name: case-insensitive, '-' = '_', the paper code's `cbt_*` keys and the paper's
 * names (`CBR-LargeT`, `CBR-Small`, …) accepted. Returns undefined when the name is not a CBR model.
 */
export function cbrKey(name: string): string | undefined {
  let key = name.trim().toLowerCase().replace(/-/g, '_');
  key = key.replace(/^cbt_/, 'cbr_');
  if (key === 'cbr_larget') key = 'cbr_large_t';
  if (key === 'cbr_largew') key = 'cbr_large_w';
  if (key === 'cbr_compactw') key = 'cbr_compact_w';
  return CBR_SPECS[key] ? key : undefined;
}

/** Spatial size after each block for a square input; throws a RangeError when a block would get < 1 pixel. */
export function cbrFeatureSizes(spec: CbrSpec, inputSize: number, padding: Padding = spec.padding): number[] {
  const sizes: number[] = [];
  let s = inputSize;
  spec.filters.forEach((_, i) => {
    const conv = padding === 'valid' ? s - spec.kernel + 1 : s;
    const pooled = Math.floor((conv - spec.pool) / spec.pool) + 1;
    if (conv < spec.pool || pooled < 1) {
      throw new RangeError(
        `${spec.displayName} with '${padding}' padding: input ${inputSize}² leaves ${Math.max(conv, 0)} px before pool ${i + 1} ` +
          `(needs ≥ ${minInputSize(spec, padding)} px; use a larger inputSize or padding 'same')`,
      );
    }
    s = pooled;
    sizes.push(s);
  });
  return sizes;
}

/** Smallest square input for which every block keeps ≥ 1 pixel. */
export function minInputSize(spec: CbrSpec, padding: Padding = spec.padding): number {
  // Invert the blocks from the end: need ≥ 1 px after the last pool.
  let s = 1;
  for (let i = spec.filters.length - 1; i >= 0; i--) {
    const conv = s * spec.pool; // floor((conv − pool)/pool) + 1 ≥ s ⇔ conv ≥ s·pool
    s = padding === 'valid' ? conv + spec.kernel - 1 : conv;
  }
  return s;
}

/** Deterministic per-layer seed (32-bit mix of the model seed and the layer's index). */
export function layerSeed(seed: number, index: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  // tfjs seeds random generators with seed.toString(); keep it a plain non-negative integer.
  return h % 2147483647;
}

export interface CbrBuildOptions {
  inputSize: number;
  seed: number;
  /** Overrides the spec's padding (e.g. 'same' to run CBR-Small at 64²). */
  padding?: Padding;
  /** Head dropout rate (default HEAD_DROPOUT, the paper's 0.5). */
  dropout?: number;
}

/** Builds a CBR model (functional, input [null, s, s, 3], output 'predictions' = softmax over OAP, IN, OBS). */
export function buildCbr(key: string, opts: CbrBuildOptions): tf.LayersModel {
  const spec = CBR_SPECS[key];
  if (!spec) throw new RangeError(`unknown CBR model '${key}' (known: ${Object.keys(CBR_SPECS).join(', ')})`);
  const padding = opts.padding ?? spec.padding;
  cbrFeatureSizes(spec, opts.inputSize, padding); // throws early with a clear message
  let li = 0;
  const glorot = () => tf.initializers.glorotUniform({ seed: layerSeed(opts.seed, li++) });
  const input = tf.input({ shape: [opts.inputSize, opts.inputSize, 3], name: 'input', dtype: 'float32' });
  let x: tf.SymbolicTensor = input;
  spec.filters.forEach((f, i) => {
    const b = `block${i + 1}`;
    x = tf.layers
      .conv2d({ name: `${b}_conv`, filters: f, kernelSize: spec.kernel, strides: 1, padding, useBias: true, kernelInitializer: glorot(), biasInitializer: 'zeros' })
      .apply(x) as tf.SymbolicTensor;
    x = tf.layers.batchNormalization({ name: `${b}_bn`, axis: -1, momentum: 0.99, epsilon: 1e-3 }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.reLU({ name: `${b}_relu` }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.maxPooling2d({ name: `${b}_pool`, poolSize: spec.pool, strides: spec.pool, padding: 'valid' }).apply(x) as tf.SymbolicTensor;
  });
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.dense({ name: 'fc1', units: HEAD_UNITS, activation: 'relu', kernelInitializer: glorot(), biasInitializer: 'zeros' }).apply(x) as tf.SymbolicTensor;
  x = tf.layers.dropout({ name: 'dropout', rate: opts.dropout ?? HEAD_DROPOUT }).apply(x) as tf.SymbolicTensor;
  const out = tf.layers
    .dense({ name: 'predictions', units: NUM_CLASSES, activation: 'softmax', kernelInitializer: glorot(), biasInitializer: 'zeros' })
    .apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: key });
}
