/**
 * The report's per-cell inputs beside `result.json` (docs/training.md, "Report inputs"):
 *
 * - `features.json` + `features.bin`: penultimate (GAP) features of the evaluated slices, n × dim float32
 *   little-endian row-major, for the t-SNE figure (the paper's tSNE.ipynb embedded VGG16's 512-d GAP output).
 * - `gradcam.json` + `gradcam.bin`: Grad-CAM tiles picked by (truth, prediction), for the Fig. 6 grid; per tile
 *   size² uint8 of the network input (channel 0 rescaled to 0–255), then size² uint8 of the CAM (0–255 ≙ 0–1).
 *
 * The grid runner computes them on the final model with `penultimateFeatures` and `gradCamTiles` and writes
 * them with `writeCellFeatures` / `writeCellGradCam`; the report reads them with `readCellFeatures` /
 * `readCellGradCam` (undefined when a cell has none).
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBack } from '../../inference/backend.js';
import { LABELS, type SliceLabel } from '../../inference/decode.js';
import { camToSliceGrid, gradCamMaps, splitForGradCam } from '../../inference/gradcam.js';

export const FEATURES_SCHEMA = 'sax-range/features@1';
export const GRADCAM_SCHEMA = 'sax-range/gradcam@1';

/** Which slices the artefacts describe: the held-out test set, or the out-of-fold CV predictions. */
export type ArtifactSource = 'test' | 'cv';

/** One evaluated slice. */
export interface SliceRef {
  subject: string;
  phase: string;
  /** Position in the stack's labelled slices, apex → base (the CSVs' `apex_index`). */
  apexIndex: number;
  truth: SliceLabel;
  predicted: SliceLabel;
}

export interface CellFeatures {
  layer: string;
  dim: number;
  source: ArtifactSource;
  rows: SliceRef[];
  /** rows.length × dim, row-major. */
  values: Float32Array;
}

export interface GradCamTile extends SliceRef {
  /** Softmax probability of the predicted class. */
  probability: number;
}

export interface CellGradCam {
  size: number;
  layer: string;
  source: ArtifactSource;
  tiles: GradCamTile[];
  /** Per tile: size² grey values of the network input (0–255). */
  images: Uint8Array[];
  /** Per tile: size² CAM values (0–255 ≙ 0–1). */
  cams: Uint8Array[];
}

export class CellArtifactError extends Error {
  readonly code = 'CELL_ARTIFACT_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'CellArtifactError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

function checkLabel(l: string, where: string): SliceLabel {
  if (!(LABELS as readonly string[]).includes(l)) throw new CellArtifactError(`${where}: unknown label '${l}'`);
  return l as SliceLabel;
}

/** Writes `features.json` and `features.bin` into a cell folder. */
export async function writeCellFeatures(cellDir: string, f: CellFeatures): Promise<void> {
  if (f.values.length !== f.rows.length * f.dim) throw new CellArtifactError(`features: ${f.values.length} values for ${f.rows.length} rows × ${f.dim}`);
  const bytes = new Uint8Array(f.values.length * 4);
  const view = new DataView(bytes.buffer);
  f.values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  await writeFile(join(cellDir, 'features.bin'), bytes);
  await writeFile(join(cellDir, 'features.json'), `${JSON.stringify({ schema: FEATURES_SCHEMA, layer: f.layer, dim: f.dim, n: f.rows.length, source: f.source, rows: f.rows })}\n`);
}

/** Reads a cell's features; undefined when the cell has none. */
export async function readCellFeatures(cellDir: string): Promise<CellFeatures | undefined> {
  const jf = join(cellDir, 'features.json');
  if (!existsSync(jf)) return undefined;
  const meta = JSON.parse(await readFile(jf, 'utf8')) as { schema: string; layer: string; dim: number; n: number; source: ArtifactSource; rows: SliceRef[] };
  if (meta.schema !== FEATURES_SCHEMA) throw new CellArtifactError(`${jf}: schema '${meta.schema}', expected '${FEATURES_SCHEMA}'`);
  if (meta.rows.length !== meta.n) throw new CellArtifactError(`${jf}: n = ${meta.n} but ${meta.rows.length} rows`);
  const buf = await readFile(join(cellDir, 'features.bin'));
  if (buf.length !== meta.n * meta.dim * 4) throw new CellArtifactError(`${join(cellDir, 'features.bin')}: ${buf.length} bytes, expected ${meta.n} × ${meta.dim} float32 = ${meta.n * meta.dim * 4}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const values = new Float32Array(meta.n * meta.dim);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(i * 4, true);
  meta.rows.forEach((r, i) => {
    checkLabel(r.truth, `${jf} row ${i}`);
    checkLabel(r.predicted, `${jf} row ${i}`);
  });
  return { layer: meta.layer, dim: meta.dim, source: meta.source, rows: meta.rows, values };
}

/** Writes `gradcam.json` and `gradcam.bin` into a cell folder. */
export async function writeCellGradCam(cellDir: string, g: CellGradCam): Promise<void> {
  const px = g.size * g.size;
  if (g.images.length !== g.tiles.length || g.cams.length !== g.tiles.length) throw new CellArtifactError('gradcam: images, cams and tiles differ in count');
  const bin = new Uint8Array(g.tiles.length * 2 * px);
  g.tiles.forEach((_, i) => {
    if (g.images[i].length !== px || g.cams[i].length !== px) throw new CellArtifactError(`gradcam tile ${i}: expected ${g.size}² values`);
    bin.set(g.images[i], 2 * i * px);
    bin.set(g.cams[i], (2 * i + 1) * px);
  });
  await writeFile(join(cellDir, 'gradcam.bin'), bin);
  await writeFile(join(cellDir, 'gradcam.json'), `${JSON.stringify({ schema: GRADCAM_SCHEMA, size: g.size, layer: g.layer, source: g.source, tiles: g.tiles })}\n`);
}

/** Reads a cell's Grad-CAM tiles; undefined when the cell has none. */
export async function readCellGradCam(cellDir: string): Promise<CellGradCam | undefined> {
  const jf = join(cellDir, 'gradcam.json');
  if (!existsSync(jf)) return undefined;
  const meta = JSON.parse(await readFile(jf, 'utf8')) as { schema: string; size: number; layer: string; source: ArtifactSource; tiles: GradCamTile[] };
  if (meta.schema !== GRADCAM_SCHEMA) throw new CellArtifactError(`${jf}: schema '${meta.schema}', expected '${GRADCAM_SCHEMA}'`);
  const px = meta.size * meta.size;
  const bin = new Uint8Array(await readFile(join(cellDir, 'gradcam.bin')));
  if (bin.length !== meta.tiles.length * 2 * px) throw new CellArtifactError(`${join(cellDir, 'gradcam.bin')}: ${bin.length} bytes, expected ${meta.tiles.length} tiles × 2 × ${meta.size}²`);
  meta.tiles.forEach((t, i) => {
    checkLabel(t.truth, `${jf} tile ${i}`);
    checkLabel(t.predicted, `${jf} tile ${i}`);
  });
  return {
    size: meta.size,
    layer: meta.layer,
    source: meta.source,
    tiles: meta.tiles,
    images: meta.tiles.map((_, i) => bin.slice(2 * i * px, (2 * i + 1) * px)),
    cams: meta.tiles.map((_, i) => bin.slice((2 * i + 1) * px, (2 * i + 2) * px)),
  };
}

/**
 * Picks up to `perPair` slice indices for every (truth, prediction) pair, in the order given (callers pass
 * slices sorted as they like, e.g. by confidence); pairs that never occur get none.
 */
export function pickByPair(refs: readonly Pick<SliceRef, 'truth' | 'predicted'>[], perPair: number): number[] {
  const taken = new Map<string, number>();
  const out: number[] = [];
  refs.forEach((r, i) => {
    const key = `${r.truth}>${r.predicted}`;
    const k = taken.get(key) ?? 0;
    if (k < perPair) {
      taken.set(key, k + 1);
      out.push(i);
    }
  });
  return out;
}

/**
 * Output of `layer` (default the head's `gap`) for network inputs x [n, s, s, 3], flattened to [n, dim].
 * Runs in batches; frees every tensor it makes.
 */
export async function penultimateFeatures(model: tf.LayersModel, x: tf.Tensor4D, layer = 'gap', batchSize = 32): Promise<{ dim: number; values: Float32Array }> {
  const sub = tf.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as tf.SymbolicTensor });
  const n = x.shape[0];
  const parts: Float32Array[] = [];
  let dim = 0;
  for (let i = 0; i < n; i += batchSize) {
    const y = tf.tidy(() => {
      const out = sub.predict(x.slice([i, 0, 0, 0], [Math.min(batchSize, n - i), -1, -1, -1])) as tf.Tensor;
      return out.reshape([out.shape[0], -1]);
    });
    dim = y.shape[1] as number;
    parts.push((await readBack(y)) as Float32Array);
    y.dispose();
  }
  const values = new Float32Array(n * dim);
  let o = 0;
  for (const p of parts) {
    values.set(p, o);
    o += p.length;
  }
  return { dim, values };
}

/**
 * Grad-CAM tiles of network inputs x [n, s, s, 3] for target classes `classIndices` (model output columns):
 * the input's channel 0 rescaled to 0–255 (every `preprocess_input` mode is a monotone affine map per
 * channel, so this is the grey image the network saw) and the CAM mapped onto the input grid
 * (`camToSliceGrid` with zoom 1), both s² uint8.
 */
export async function gradCamTiles(model: tf.LayersModel, x: tf.Tensor4D, classIndices: readonly number[]): Promise<{ layer: string; size: number; images: Uint8Array[]; cams: Uint8Array[] }> {
  const split = splitForGradCam(model);
  try {
    const [n, s] = x.shape;
    const [h, w] = split.featureShape;
    const images: Uint8Array[] = [];
    const cams: Uint8Array[] = [];
    const feats = tf.tidy(() => (split.dual.predict(x) as tf.Tensor[])[0] as tf.Tensor4D);
    const maps = gradCamMaps(split, feats, classIndices);
    const mapData = await readBack(maps);
    const ch0 = tf.tidy(() => x.slice([0, 0, 0, 0], [-1, -1, -1, 1]).reshape([n, s * s]));
    const pix = await readBack(ch0);
    feats.dispose();
    maps.dispose();
    ch0.dispose();
    for (let i = 0; i < n; i++) {
      const img = pix.subarray(i * s * s, (i + 1) * s * s);
      let lo = Infinity;
      let hi = -Infinity;
      for (const v of img) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      const span = hi > lo ? hi - lo : 1;
      images.push(Uint8Array.from(img, (v) => Math.round((255 * (v - lo)) / span)));
      const cam = camToSliceGrid(mapData.subarray(i * h * w, (i + 1) * h * w) as Float32Array, h, w, split.mapping, s, s, s, 1);
      cams.push(Uint8Array.from(cam, (v) => Math.round(255 * Math.min(Math.max(v, 0), 1))));
    }
    return { layer: split.layerName, size: s, images, cams };
  } finally {
    split.dispose();
  }
}
