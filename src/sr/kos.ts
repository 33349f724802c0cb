/**
 * Key Object Selection Document (SOP class 1.2.840.10008.5.1.4.1.1.88.59), one per phase, listing the IN
 * slices for segmentation pipelines (DCMR TID 2010 "Key Object Selection"):
 *
 * ```
 * CONTAINER (113000,DCM,"Of Interest")            document title, CID 7010
 *   HAS CONCEPT MOD CODE Language = (en-US,RFC5646)
 *   HAS OBS CONTEXT      Device observer (TID 1002)
 *   CONTAINS TEXT        (113012,DCM,"Key Object Description") "IN slices at ED (apex to base): 4-9 of 12"
 *   CONTAINS IMAGE       each IN slice, apex → base
 * ```
 *
 * IOD modules (PS3.3 A.35.4): Patient, General Study, Key Object Document Series (C.17.6.1), General
 * Equipment, Key Object Document (C.17.6.2), SR Document Content, SOP Common.
 */
import type { PhaseKey, Result } from '../inference/result.js';
import { SopClass } from '../dicom/uids.js';
import { CODES, codeItem } from './codes.js';
import {
  commonAttributes,
  evidenceSequence,
  imageRef,
  now,
  resolveOptions,
  seriesNumber,
  uidContext,
  type BuildOptions,
  type ResolvedOptions,
} from './common.js';
import { codeContent, imageContent, template, textContent } from './content.js';
import { SrInputError } from './errors.js';
import { writePart10 } from './part10.js';
import { checkSources, type SourceInfo } from './source.js';
import { kosInstanceUid, outputSeriesUid } from './uid.js';
import { observerContext, type BuiltObject } from './sr.js';

/** The Key Object Description text of a phase. */
export function kosDescription(result: Result, phase: PhaseKey): string {
  const p = result.phases[phase];
  const r = p.inRange;
  return `IN slices at ${phase} (apex to base): ${r.first + 1}-${r.last + 1} of ${p.slices.length} (${r.count} slice${r.count === 1 ? '' : 's'})`;
}

/** Builds the KOS of one phase once inputs are checked. */
export function buildKosChecked(result: Result, sources: SourceInfo, phase: PhaseKey, o: ResolvedOptions): BuiltObject {
  if (phase !== 'ED' && phase !== 'ES') throw new SrInputError(`phase must be 'ED' or 'ES', got ${String(phase)}`);
  const ctx = uidContext(result);
  const at = now(o);
  const p = result.phases[phase];
  const inImages = sources.images[phase].slice(p.inRange.first, p.inRange.last + 1);
  const sopInstanceUID = kosInstanceUid(ctx, phase);
  const seriesInstanceUID = outputSeriesUid(ctx, 'kos');
  const dataset: Record<string, unknown> = {
    ...commonAttributes(sources.patientStudy, o, at, {
      sopClassUID: SopClass.KeyObjectSelectionDocumentStorage,
      sopInstanceUID,
      seriesInstanceUID,
      seriesNumber: seriesNumber(o, 'kos'),
      instanceNumber: phase === 'ED' ? 1 : 2,
      modality: 'KO',
      seriesDescription: 'sax-range IN slices (KOS)',
    }),
    ReferencedPerformedProcedureStepSequence: [],
    CurrentRequestedProcedureEvidenceSequence: evidenceSequence(result.studyInstanceUID, inImages),
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [codeItem(CODES.OfInterest)],
    ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: template('2010'),
    ContentSequence: [
      codeContent('HAS CONCEPT MOD', CODES.LanguageOfContentItemAndDescendants, CODES.EnglishUS),
      ...observerContext(o),
      textContent('CONTAINS', CODES.KeyObjectDescription, kosDescription(result, phase)),
      ...inImages.map((img) => imageContent('CONTAINS', undefined, imageRef(img))),
    ],
  };
  return { dataset, part10: writePart10(dataset), sopInstanceUID, seriesInstanceUID };
}

/**
 * Builds the Key Object Selection Document of one phase: its IN slices, apex → base. Checks the result
 * and sources; throws SrInputError naming the first problem.
 */
export function buildKos(result: Result, sources: SourceInfo, phase: PhaseKey, opts: BuildOptions): BuiltObject {
  const o = resolveOptions(opts);
  const doc = checkSources(result, sources, false);
  return buildKosChecked(doc, sources, phase, o);
}
