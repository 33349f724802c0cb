/**
 * The I/O helper that fills a SourceInfo from the source files (src/dicom/meta.ts `parseHeader` for the
 * UIDs and patient/study attributes, src/dicom/pixels.ts for the pixels). The builders themselves stay pure.
 */
import { readFile } from 'node:fs/promises';
import { parseHeader } from '../dicom/meta.js';
import { decodeFrame, decodeFrames } from '../dicom/pixels.js';
import type { PhaseKey, Result } from '../inference/result.js';
import type { CineStack } from '../stack/types.js';
import { SrInputError } from './errors.js';
import { patientStudyFromDataset, PHASES, type PatientStudyAttributes, type SourceImage, type SourceInfo } from './source.js';

/** One source image on disk: a file, and the 0-based frame for a multi-frame instance. */
export interface SourceFileRef {
  readonly path: string;
  /** 0-based frame index in a multi-frame file (as in src/stack FrameRef); absent for a single-frame file. */
  readonly frame?: number;
}

export interface SourceInfoFromFilesOptions {
  /**
   * Decode the pixels (needed for the secondary captures).
   * @defaultValue true
   */
  pixels?: boolean;
  /**
   * Pixels already decoded, per phase apex → base (classifyStack's `images`): used instead of decoding
   * the files again. Each must have `rows × columns` values.
   */
  images?: ReadonlyMap<PhaseKey, readonly Float32Array[]> | Readonly<Partial<Record<PhaseKey, readonly Float32Array[]>>>;
}

function uidOf(ds: Record<string, unknown>, key: string, path: string): string {
  const v = Array.isArray(ds[key]) ? (ds[key] as unknown[])[0] : ds[key];
  if (typeof v !== 'string' || v === '') throw new SrInputError(`${path}: no ${key}`);
  return v;
}

/**
 * The source files of each phase of a result (apex → base) from its stack: slice `index` of the result is
 * `stack.slices[index]`, its frame the phase's `phaseIndex`. Throws when the stack does not match.
 */
export function sourceFilesFromStack(stack: CineStack, result: Result): Record<PhaseKey, SourceFileRef[]> {
  const out = {} as Record<PhaseKey, SourceFileRef[]>;
  for (const phase of PHASES) {
    const p = result.phases[phase];
    out[phase] = p.slices.map((s, i) => {
      const slice = stack.slices.find((x) => x.index === s.index);
      const frame = slice?.frames[p.phaseIndex];
      if (!frame) throw new SrInputError(`${phase} slice ${i}: stack ${stack.stackId} has no slice ${s.index} at phase ${p.phaseIndex}`);
      if (frame.sopInstanceUID !== s.sopInstanceUID) {
        throw new SrInputError(`${phase} slice ${i}: the stack's frame is ${frame.sopInstanceUID}, the result's ${s.sopInstanceUID}`);
      }
      return frame.frame === undefined ? { path: frame.path } : { path: frame.path, frame: frame.frame };
    });
  }
  return out;
}

/**
 * Reads the headers (and, by default, the pixels) of the source images of a result. `files[phase][i]` is
 * the file of `result.phases[phase].slices[i]`. Patient and study attributes come from the first ED file.
 */
export async function sourceInfoFromFiles(
  result: Result,
  files: Readonly<Record<PhaseKey, readonly SourceFileRef[]>>,
  opts: SourceInfoFromFilesOptions = {},
): Promise<SourceInfo> {
  const wantPixels = opts.pixels ?? true;
  const given = (phase: PhaseKey): readonly Float32Array[] | undefined => {
    const m = opts.images;
    if (!m) return undefined;
    const list = m instanceof Map ? m.get(phase) : (m as Partial<Record<PhaseKey, readonly Float32Array[]>>)[phase];
    return list && list.length > 0 ? list : undefined;
  };
  const headers = new Map<string, Record<string, any>>();
  const header = async (path: string) => {
    let ds = headers.get(path);
    if (!ds) {
      ds = parseHeader(await readFile(path)).dataset;
      headers.set(path, ds);
    }
    return ds;
  };
  const multiFrame = new Map<string, Float32Array[]>();
  let patientStudy: PatientStudyAttributes | undefined;
  const images = {} as Record<PhaseKey, SourceImage[]>;
  for (const phase of PHASES) {
    const refs = files[phase];
    const n = result.phases[phase].slices.length;
    if (!refs || refs.length !== n) throw new SrInputError(`files.${phase} has ${refs?.length ?? 'no'} entries, the result ${n} slices`);
    const decoded = given(phase);
    if (decoded && decoded.length !== n) throw new SrInputError(`opts.images.${phase} has ${decoded.length} images, the result ${n} slices`);
    images[phase] = [];
    for (let i = 0; i < n; i++) {
      const ref = refs[i];
      const ds = await header(ref.path);
      patientStudy ??= patientStudyFromDataset(ds);
      const rows = Number(ds.Rows);
      const columns = Number(ds.Columns);
      let pixels: Float32Array | undefined;
      if (wantPixels) {
        if (decoded) pixels = decoded[i];
        else if (ref.frame === undefined) pixels = (await decodeFrame(ref.path)).data;
        else {
          let frames = multiFrame.get(ref.path);
          if (!frames) multiFrame.set(ref.path, (frames = (await decodeFrames(ref.path)).map((f) => f.data)));
          pixels = frames[ref.frame];
          if (!pixels) throw new SrInputError(`${ref.path}: no frame ${ref.frame}`);
        }
      }
      images[phase].push({
        sopClassUID: uidOf(ds, 'SOPClassUID', ref.path),
        sopInstanceUID: uidOf(ds, 'SOPInstanceUID', ref.path),
        seriesInstanceUID: uidOf(ds, 'SeriesInstanceUID', ref.path),
        ...(ref.frame !== undefined ? { frameNumber: ref.frame + 1 } : {}),
        rows,
        columns,
        ...(pixels ? { pixels } : {}),
      });
    }
  }
  return { patientStudy: patientStudy!, images };
}
