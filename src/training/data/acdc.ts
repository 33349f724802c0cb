/**
 * `acdc:DIR` — the ACDC training subjects (NIfTI), labelled from the expert segmentations.
 *
 * Layout (see the data folder's README): `DIR/patientNNN/Info.cfg` (ED, ES 1-based frame numbers, Group),
 * `patientNNN_frameEE.nii.gz` (int16, x × y × slices) and `patientNNN_frameEE_gt.nii.gz` (uint8: 0 background,
 * 1 RV cavity, 2 LV myocardium, 3 LV cavity), same for ES.
 *
 * Labels (the README's rule, slice 0 = BASE): IN = the slice has LV-cavity pixels (label 3); OBS = no cavity and
 * basal of the first IN slice; OAP = no cavity and apical of the last IN slice. A cavity-free slice *between* IN
 * slices (none in the 100 subjects) is labelled IN: the valid range is contiguous. A stack without any cavity
 * is skipped (reported in `skipped`). Stacks are then reversed to apex → base.
 *
 * Pixel layout: NIfTI stores x fastest; a plane is taken as rows = y (ny), columns = x (nx), i.e. the stored
 * memory order, which is the DICOM pixel order of the converted series (RV to the left of the LV in image
 * columns, as in a DICOM short-axis display). Intensities are scaled by scl_slope/scl_inter when set.
 * Files are gunzipped with node:zlib (threadpool) and subjects are loaded a few at a time.
 */

import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import * as nifti from 'nifti-reader-js';
import { ACDC_CITATION, ACDC_LICENSE } from '../../inference/model-dir.js';
import type { LabelledStack, LabelledSubject, Phase, SliceLabel } from './types.js';

const gunzip = promisify(gunzipCb);

export const ACDC_LV_CAVITY = 3;

export interface NiftiVolume {
  /** [nx, ny, nz, nt] (missing dims = 1). */
  dims: [number, number, number, number];
  /** Voxel sizes [dx, dy, dz] (mm). */
  spacing: [number, number, number];
  datatype: number;
  /** Voxels as stored (x fastest), scaled by scl_slope / scl_inter. */
  data: Float32Array;
}

/** Parses a NIfTI-1/2 file (gzipped or not). */
export async function readNifti(bytes: Uint8Array, name = 'NIfTI file'): Promise<NiftiVolume> {
  let buf: Uint8Array = bytes;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) buf = await gunzip(buf);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  if (!nifti.isNIFTI(ab)) throw new Error(`${name}: not a NIfTI file`);
  const h = nifti.readHeader(ab);
  if (!h) throw new Error(`${name}: unreadable NIfTI header`);
  const img = nifti.readImage(h, ab);
  const d = h.dims as number[];
  const rank = d[0];
  const dim = (i: number) => (i <= rank && d[i] > 0 ? d[i] : 1);
  const dims: [number, number, number, number] = [dim(1), dim(2), dim(3), dim(4)];
  const n = dims[0] * dims[1] * dims[2] * dims[3];
  const T = h.datatypeCode;
  const N = nifti.NIFTI1;
  const le = h.littleEndian;
  const view = new DataView(img);
  const out = new Float32Array(n);
  const slope = h.scl_slope && Number.isFinite(h.scl_slope) ? h.scl_slope : 1;
  const inter = h.scl_slope && Number.isFinite(h.scl_inter) ? h.scl_inter : 0;
  const native = le === (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1);
  let typed: ArrayLike<number> | undefined;
  if (native && img.byteLength >= n) {
    if (T === N.TYPE_INT16 && img.byteLength >= 2 * n) typed = new Int16Array(img, 0, n);
    else if (T === N.TYPE_UINT8) typed = new Uint8Array(img, 0, n);
    else if (T === N.TYPE_UINT16 && img.byteLength >= 2 * n) typed = new Uint16Array(img, 0, n);
    else if (T === N.TYPE_INT32 && img.byteLength >= 4 * n) typed = new Int32Array(img, 0, n);
    else if (T === N.TYPE_FLOAT32 && img.byteLength >= 4 * n) typed = new Float32Array(img, 0, n);
    else if (T === N.TYPE_FLOAT64 && img.byteLength >= 8 * n) typed = new Float64Array(img, 0, n);
  }
  if (typed) {
    for (let i = 0; i < n; i++) out[i] = typed[i] * slope + inter;
  } else {
    const read: Record<number, [number, (o: number) => number]> = {
      [N.TYPE_UINT8]: [1, (o) => view.getUint8(o)],
      [N.TYPE_INT8]: [1, (o) => view.getInt8(o)],
      [N.TYPE_INT16]: [2, (o) => view.getInt16(o, le)],
      [N.TYPE_UINT16]: [2, (o) => view.getUint16(o, le)],
      [N.TYPE_INT32]: [4, (o) => view.getInt32(o, le)],
      [N.TYPE_FLOAT32]: [4, (o) => view.getFloat32(o, le)],
      [N.TYPE_FLOAT64]: [8, (o) => view.getFloat64(o, le)],
    };
    const r = read[T];
    if (!r) throw new Error(`${name}: NIfTI datatype ${T} not supported`);
    if (img.byteLength < n * r[0]) throw new Error(`${name}: image data truncated (${img.byteLength} bytes for ${n} voxels)`);
    for (let i = 0; i < n; i++) out[i] = r[1](i * r[0]) * slope + inter;
  }
  const p = h.pixDims as number[];
  return { dims, spacing: [p[1] ?? 1, p[2] ?? 1, p[3] ?? 1], datatype: T, data: out };
}

/** Parses Info.cfg (`Key: value` lines). */
export function parseInfoCfg(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([\w-]+)\s*:\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/**
 * Labels of a stack in ACDC order (index 0 = base) from "has LV cavity" per slice; null when no slice has a
 * cavity. Between the first and last cavity slice everything is IN.
 */
export function acdcLabelsBaseToApex(hasCavity: readonly boolean[]): SliceLabel[] | null {
  const first = hasCavity.indexOf(true);
  const last = hasCavity.lastIndexOf(true);
  if (first < 0) return null;
  return hasCavity.map((_, i) => (i < first ? 'OBS' : i > last ? 'OAP' : 'IN'));
}

export interface AcdcLoadOptions {
  /** Only these subject ids (folder names). */
  subjects?: readonly string[];
  phases?: readonly Phase[];
  /** Subjects loaded at once (default 8). */
  concurrency?: number;
}

export interface AcdcSubject extends LabelledSubject {
  info: Record<string, string>;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function frameFile(dir: string, id: string, frame: number, suffix: string): Promise<string> {
  const base = join(dir, `${id}_frame${String(frame).padStart(2, '0')}${suffix}`);
  for (const ext of ['.nii.gz', '.nii']) if (await exists(base + ext)) return base + ext;
  throw new Error(`${base}.nii.gz not found`);
}

/** Loads one subject folder; returns the subject and the reasons any stack was skipped. */
export async function loadAcdcSubject(dir: string, id: string, phases: readonly Phase[] = ['ED', 'ES']): Promise<{ subject: AcdcSubject; skipped: string[] }> {
  const info = parseInfoCfg(await readFile(join(dir, 'Info.cfg'), 'utf8'));
  const skipped: string[] = [];
  const stacks: LabelledStack[] = [];
  for (const phase of phases) {
    const frame = Number(info[phase]);
    if (!Number.isInteger(frame) || frame < 1) throw new Error(`${join(dir, 'Info.cfg')}: no valid ${phase} frame`);
    const [imgPath, gtPath] = await Promise.all([frameFile(dir, id, frame, ''), frameFile(dir, id, frame, '_gt')]);
    const [img, gt] = await Promise.all([
      readFile(imgPath).then((b) => readNifti(b, imgPath)),
      readFile(gtPath).then((b) => readNifti(b, gtPath)),
    ]);
    const [nx, ny, nz] = img.dims;
    if (gt.dims[0] !== nx || gt.dims[1] !== ny || gt.dims[2] !== nz) {
      throw new Error(`${gtPath}: size ${gt.dims.slice(0, 3).join('×')} differs from the image ${nx}×${ny}×${nz}`);
    }
    const plane = nx * ny;
    const hasCavity: boolean[] = [];
    for (let z = 0; z < nz; z++) {
      let found = false;
      for (let i = z * plane, end = i + plane; i < end; i++) {
        if (Math.round(gt.data[i]) === ACDC_LV_CAVITY) {
          found = true;
          break;
        }
      }
      hasCavity.push(found);
    }
    const labels = acdcLabelsBaseToApex(hasCavity);
    if (!labels) {
      skipped.push(`${id} ${phase}: no LV-cavity pixels in any slice`);
      continue;
    }
    const images: Float32Array[] = [];
    const sourceSlices: number[] = [];
    for (let z = nz - 1; z >= 0; z--) {
      images.push(img.data.slice(z * plane, (z + 1) * plane));
      sourceSlices.push(z);
    }
    stacks.push({
      subject: id,
      phase,
      images,
      rows: ny,
      columns: nx,
      labels: labels.slice().reverse(),
      pixelSpacing: [img.spacing[1], img.spacing[0]],
      sourceSlices,
    });
  }
  const subject: AcdcSubject = { id, group: info.Group, source: 'acdc', stacks, info };
  return { subject, skipped };
}

/** Subject folders of an ACDC directory (sub-folders holding an Info.cfg), sorted. */
export async function listAcdcSubjects(dir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new Error(`acdc dataset: cannot read ${dir} (${(err as Error).message})`);
  }
  const out: string[] = [];
  for (const e of entries.sort()) if (await exists(join(dir, e, 'Info.cfg'))) out.push(e);
  return out;
}

/** Loads `acdc:DIR`. */
export async function loadAcdc(dir: string, opts: AcdcLoadOptions = {}): Promise<{ subjects: AcdcSubject[]; skipped: string[]; license: { data: string; citation: string } }> {
  let ids = await listAcdcSubjects(dir);
  if (ids.length === 0) throw new Error(`acdc dataset: no subject folders with Info.cfg under ${dir}`);
  if (opts.subjects) {
    const want = new Set(opts.subjects);
    const missing = [...want].filter((s) => !ids.includes(s));
    if (missing.length) throw new Error(`acdc dataset: subjects not found under ${dir}: ${missing.join(', ')}`);
    ids = ids.filter((s) => want.has(s));
  }
  const phases = opts.phases ?? ['ED', 'ES'];
  const results: { subject: AcdcSubject; skipped: string[] }[] = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const i = next++;
      results[i] = await loadAcdcSubject(join(dir, ids[i]), ids[i], phases);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 8, ids.length)) }, worker));
  const subjects = results.map((r) => r.subject).filter((s) => s.stacks.length > 0);
  const skipped = results.flatMap((r) => r.skipped);
  return { subjects, skipped, license: { data: ACDC_LICENSE, citation: ACDC_CITATION } };
}
