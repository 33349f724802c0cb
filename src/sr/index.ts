/**
 * DICOM builders (pure): the Comprehensive SR, the Grad-CAM and montage Secondary Captures and the Key
 * Object Selection documents of one classified stack (DESIGN.md "DICOM objects written").
 * `sourceInfoFromFiles` is the one helper here that reads files.
 */
import type { Result } from '../inference/result.js';
import { resolveOptions, type BuildOptions } from './common.js';
import { buildKosChecked } from './kos.js';
import { buildMontageScChecked, buildSliceScChecked } from './sc.js';
import { checkSources, PHASES, type CamInput, type SourceInfo } from './source.js';
import { buildSrChecked } from './sr.js';

export type { BuildOptions } from './common.js';
export { CODES, SAX_CODES, PRIVATE_SCHEME, PRIVATE_CODING_SCHEME, type Code } from './codes.js';
export { SrInputError } from './errors.js';
export { buildSr, type BuiltObject } from './sr.js';
export { buildSliceSc, buildMontageSc } from './sc.js';
export { buildKos, kosDescription } from './kos.js';
export { LABEL_COLOURS } from './render.js';
export {
  patientStudyFromDataset,
  type CamInput,
  type PatientStudyAttributes,
  type PersonName,
  type SourceImage,
  type SourceInfo,
} from './source.js';
export { sourceInfoFromFiles, sourceFilesFromStack, type SourceFileRef, type SourceInfoFromFilesOptions } from './source-files.js';
export { writePart10, readPart10 } from './part10.js';
export * from './uid.js';

/** One object to export. */
export interface OutputObject {
  kind: 'sr' | 'sc' | 'kos';
  sopInstanceUID: string;
  seriesInstanceUID: string;
  sopClassUID: string;
  part10: Uint8Array;
  /** One line for logs and job reports, e.g. "SC Grad-CAM ED slice 3/12 (IN)". */
  description: string;
}

/**
 * Builds every object of one classified stack: 1 SR, one Grad-CAM SC per slice and phase, one montage SC
 * per phase and one KOS per phase (for 12 slices: 1 + 24 + 2 + 2 = 29 objects), in that order. Inputs are
 * checked once (SrInputError names the first problem). `cams` may be undefined, or hold empty lists, for
 * SCs without an overlay.
 */
export function buildOutputs(result: Result, sources: SourceInfo, cams: CamInput | undefined, opts: BuildOptions): OutputObject[] {
  const o = resolveOptions(opts);
  const doc = checkSources(result, sources, true);
  const out: OutputObject[] = [];
  const push = (kind: OutputObject['kind'], built: { dataset: Record<string, unknown>; part10: Uint8Array; sopInstanceUID: string; seriesInstanceUID: string }, description: string) =>
    out.push({
      kind,
      sopInstanceUID: built.sopInstanceUID,
      seriesInstanceUID: built.seriesInstanceUID,
      sopClassUID: built.dataset.SOPClassUID as string,
      part10: built.part10,
      description,
    });
  push('sr', buildSrChecked(doc, sources, o), 'SR slice classification (TID 1500)');
  for (const phase of PHASES) {
    const slices = doc.phases[phase].slices;
    slices.forEach((s, i) =>
      push('sc', buildSliceScChecked(doc, sources, cams, phase, i, o), `SC Grad-CAM ${phase} slice ${i + 1}/${slices.length} (${s.label})`),
    );
  }
  for (const phase of PHASES) push('sc', buildMontageScChecked(doc, sources, phase, o), `SC montage ${phase}`);
  for (const phase of PHASES) {
    const r = doc.phases[phase].inRange;
    push('kos', buildKosChecked(doc, sources, phase, o), `KOS IN slices ${phase} (${r.first + 1}-${r.last + 1})`);
  }
  return out;
}
