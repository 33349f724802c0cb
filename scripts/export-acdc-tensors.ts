/**
 * Exports the ACDC stacks, preprocessed by the product's own preprocessing module, as flat uint8 tensors for
 * experiments outside tfjs (scripts/gpu/ceiling.py runs architecture arms on a lent GPU with PyTorch).
 *
 *   node --import tsx scripts/export-acdc-tensors.ts --acdc ../shared/data/acdc --size 96 --out .gpu
 *
 * Per slice (apex → base, as training sees them): percentile clip [2, 98] → central zoom → bilinear resize,
 * exactly `planeToInput` without rotation, but with a field of view √2 larger than the model's (zoom 0.6·√2)
 * and an edge of ⌈size·√2⌉, so that an experiment can rotate by any angle and crop the central `size²` (the
 * product rotates the native plane before its 0.6 zoom; cropping after rotating gives the same field of view).
 * The segmentation is resampled the same way, nearest neighbour. Folds are the product's own patient-level split
 * (`kFoldSplit`, seed 1, 5 folds) over the same subject list as the shipped protocol (ACDC + phantom:24:7), so
 * an arm's out-of-fold figures compare with docs/model.md.
 *
 * Output: `acdc-<size>.images.u8` and `acdc-<size>.masks.u8` (N × E × E, E = ⌈size·√2⌉) and
 * `acdc-<size>.json` (per slice: stack, position, label, LV-cavity and myocardium pixels at native
 * resolution; per stack: subject, phase, group, fold).
 */

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { centralCropBox, centralZoom, resize } from '../src/inference/preprocess.js';
import { loadDataset } from '../src/training/data/spec.js';
import { kFoldSplit } from '../src/training/data/split.js';
import { prepareStacks } from '../src/training/data/samples.js';
import { ACDC_LV_CAVITY, readNifti, type AcdcSubject } from '../src/training/data/acdc.js';

const { values } = parseArgs({
  options: {
    acdc: { type: 'string', default: '../shared/data/acdc' },
    size: { type: 'string', default: '96' },
    out: { type: 'string', default: '.gpu' },
  },
});
const size = Number(values.size);
const edge = Math.ceil(size * Math.SQRT2);
const zoom = Math.min(1, 0.6 * Math.SQRT2);
const acdcDir = resolve(values.acdc!);

const ds = await loadDataset(`acdc:${acdcDir}+phantom:24:7`);
const folds = kFoldSplit(ds.subjects, 5, 1);
const foldOf = new Map<string, number>();
folds.forEach((ids, f) => ids.forEach((id) => foldOf.set(id, f)));

/** Nearest-neighbour crop + resize of a label plane onto the same grid as `resize(centralZoom(...))`. */
function maskToGrid(mask: Float32Array, rows: number, cols: number): Uint8Array {
  const box = centralCropBox(rows, cols, zoom);
  const out = new Uint8Array(edge * edge);
  for (let r = 0; r < edge; r++) {
    const sr = Math.min(box.rows - 1, Math.floor(((r + 0.5) * box.rows) / edge));
    for (let c = 0; c < edge; c++) {
      const sc = Math.min(box.cols - 1, Math.floor(((c + 0.5) * box.cols) / edge));
      out[r * edge + c] = Math.round(mask[(box.top + sr) * cols + box.left + sc]);
    }
  }
  return out;
}

const images: Uint8Array[] = [];
const masks: Uint8Array[] = [];
const slices: { stack: number; pos: number; label: string; cavity: number; myo: number }[] = [];
const stacks: { subject: string; phase: string; group: string; fold: number; n: number }[] = [];

for (const subject of ds.subjects.filter((s) => s.source === 'acdc')) {
  const dir = join(acdcDir, subject.id);
  const { info } = subject as AcdcSubject; // the loader kept Info.cfg (ED/ES frame numbers)
  const prepared = prepareStacks(subject.stacks, [2, 98]);
  for (const st of prepared) {
    const frame = String(Number(info[st.phase])).padStart(2, '0');
    const gt = await readNifti(await readFile(join(dir, `${subject.id}_frame${frame}_gt.nii.gz`)));
    const plane = st.rows * st.columns;
    const si = stacks.length;
    stacks.push({ subject: subject.id, phase: st.phase, group: subject.group ?? '', fold: foldOf.get(subject.id)!, n: st.planes.length });
    st.planes.forEach((p, pos) => {
      const z = st.sourceSlices[pos];
      const m = gt.data.subarray(z * plane, (z + 1) * plane);
      let cavity = 0;
      let myo = 0;
      for (const v of m) {
        if (Math.round(v) === ACDC_LV_CAVITY) cavity++;
        else if (Math.round(v) === 2) myo++;
      }
      const zc = centralZoom(p, st.rows, st.columns, zoom);
      const img = resize(zc.data, zc.rows, zc.cols, edge, edge);
      images.push(Uint8Array.from(img, (v) => Math.max(0, Math.min(255, Math.round(v)))));
      masks.push(maskToGrid(m, st.rows, st.columns));
      slices.push({ stack: si, pos, label: st.labels[pos], cavity, myo });
    });
  }
}

await mkdir(values.out!, { recursive: true });
const base = join(values.out!, `acdc-${size}`);
const cat = (xs: Uint8Array[]) => {
  const out = new Uint8Array(xs.length * edge * edge);
  xs.forEach((x, i) => out.set(x, i * edge * edge));
  return out;
};
await writeFile(`${base}.images.u8`, cat(images));
await writeFile(`${base}.masks.u8`, cat(masks));
await writeFile(`${base}.json`, JSON.stringify({ size, edge, zoom, clip: [2, 98], order: 'apex->base', folds: 5, seed: 1, stacks, slices }));
console.log(`${slices.length} slices of ${stacks.length} stacks → ${base}.{images,masks}.u8 (${edge}×${edge}), ${base}.json`);
