/**
 * The Comprehensive SR (SOP class 1.2.840.10008.5.1.4.1.1.88.33) of one classified stack, shaped after
 * DCMR TID 1500 "Measurement Report" (DESIGN.md "DICOM objects written"):
 *
 * ```
 * CONTAINER (126000,DCM,"Imaging Measurement Report")                 TID 1500
 *   HAS CONCEPT MOD CODE  Language = (en-US,RFC5646)                   row 2 (TID 1204)
 *   HAS OBS CONTEXT       Observer Type = Device, Device Observer UID/Name/Manufacturer/Model Name (TID 1002/1004)
 *   HAS CONCEPT MOD CODE  Procedure reported = (241620005,SCT,"Magnetic resonance imaging of heart")
 *   CONTAINS CONTAINER    Image Library (TID 1600): one Image Library Group per phase, one IMAGE per slice
 *   CONTAINS CONTAINER    Imaging Measurements
 *     CONTAINER Measurement Group (TID 1501), one per phase × slice (apex → base):
 *       HAS OBS CONTEXT   Tracking Identifier "ED slice 3/12", Tracking Unique Identifier
 *       CONTAINS CODE     Finding = (SLICE_CLASSIF,99SAXRANGE)
 *       HAS CONCEPT MOD   Cardiac phase = ED|ES; Algorithm Name/Version/Family/Parameters (TID 4019)
 *       CONTAINS CODE     slice class (range decoded) = OAP|IN|OBS; slice class (argmax)
 *       CONTAINS NUM      P(OAP), P(IN), P(OBS) (UCUM "1"); slice number, stack index ("1"); position (mm)
 *       CONTAINS IMAGE    Source of Measurement → the source slice
 *     CONTAINER Measurement Group, one per phase: the IN range
 *       Finding = (IN_RANGE,99SAXRANGE); first/last IN slice, IN count, slice count (NUM "1");
 *       IMAGE first and last IN slice; TEXT summary
 * ```
 *
 * The tree is TID 1500-shaped; neither dciodvfy nor dsrdump checks template conformance row by row.
 */
import type { PhaseKey, Result } from '../inference/result.js';
import { SopClass } from '../dicom/uids.js';
import { CODES, codeItem, labelCode, phaseCode, SAX_CODES } from './codes.js';
import {
  codingSchemeIdentification,
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
import { codeContent, container, imageContent, numContent, template, textContent, uidrefContent, type ContentItem } from './content.js';
import { writePart10 } from './part10.js';
import { checkSources, PHASES, type SourceInfo } from './source.js';
import { deviceObserverUid, outputSeriesUid, srInstanceUid, trackingUid, type UidContext } from './uid.js';

/** A built DICOM object: the naturalized dataset, its Part 10 bytes and its UIDs. */
export interface BuiltObject {
  dataset: Record<string, unknown>;
  part10: Uint8Array;
  sopInstanceUID: string;
  seriesInstanceUID: string;
}

/** Device observer context (TID 1002 → TID 1004), shared by the SR and the KOS. */
export function observerContext(o: ResolvedOptions): ContentItem[] {
  return [
    codeContent('HAS OBS CONTEXT', CODES.ObserverType, CODES.Device),
    uidrefContent('HAS OBS CONTEXT', CODES.DeviceObserverUID, deviceObserverUid()),
    textContent('HAS OBS CONTEXT', CODES.DeviceObserverName, 'sax-range'),
    textContent('HAS OBS CONTEXT', CODES.DeviceObserverManufacturer, o.manufacturer),
    textContent('HAS OBS CONTEXT', CODES.DeviceObserverModelName, `sax-range ${o.softwareVersion}`),
  ];
}

/** TID 4019 Algorithm Identification, included with HAS CONCEPT MOD (TID 1501). */
function algorithmIdentification(result: Result): ContentItem[] {
  return [
    textContent('HAS CONCEPT MOD', CODES.AlgorithmName, result.model.id),
    textContent('HAS CONCEPT MOD', CODES.AlgorithmVersion, result.model.version),
    codeContent('HAS CONCEPT MOD', CODES.AlgorithmFamily, CODES.ArtificialIntelligence),
    textContent('HAS CONCEPT MOD', CODES.AlgorithmParameters, `model sha256=${result.model.sha256}`),
  ];
}

function sliceGroup(result: Result, sources: SourceInfo, ctx: UidContext, phase: PhaseKey, i: number): ContentItem {
  const p = result.phases[phase];
  const s = p.slices[i];
  const n = p.slices.length;
  return container(
    'CONTAINS',
    CODES.MeasurementGroup,
    [
      textContent('HAS OBS CONTEXT', CODES.TrackingIdentifier, `${phase} slice ${i + 1}/${n} (apex to base)`),
      uidrefContent('HAS OBS CONTEXT', CODES.TrackingUniqueIdentifier, trackingUid(ctx, phase, i)),
      codeContent('CONTAINS', CODES.Finding, SAX_CODES.SliceClassification),
      codeContent('HAS CONCEPT MOD', SAX_CODES.CardiacPhase, phaseCode(phase)),
      ...algorithmIdentification(result),
      codeContent('CONTAINS', SAX_CODES.SliceClass, labelCode(s.label)),
      codeContent('CONTAINS', SAX_CODES.SliceClassArgmax, labelCode(s.predicted)),
      numContent('CONTAINS', SAX_CODES.ProbabilityOAP, s.probabilities.OAP, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.ProbabilityIN, s.probabilities.IN, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.ProbabilityOBS, s.probabilities.OBS, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.SliceNumber, i, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.StackIndex, s.index, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.SlicePosition, Math.round(s.position * 1000) / 1000, CODES.Millimeter),
      imageContent('CONTAINS', CODES.SourceOfMeasurement, imageRef(sources.images[phase][i])),
    ],
    { templateId: '1501' },
  );
}

function rangeGroup(result: Result, sources: SourceInfo, ctx: UidContext, phase: PhaseKey): ContentItem {
  const p = result.phases[phase];
  const r = p.inRange;
  const n = p.slices.length;
  const trigger = p.triggerTime === null ? 'no trigger time' : `trigger time ${p.triggerTime} ms`;
  const summary =
    `${phase}: IN slices ${r.first + 1} to ${r.last + 1} of ${n} (1-based, apex to base), ${r.count} slice${r.count === 1 ? '' : 's'}; ` +
    `phase index ${p.phaseIndex} (${p.method}), ${trigger}; slice order by ${result.order.method}.`;
  return container(
    'CONTAINS',
    CODES.MeasurementGroup,
    [
      textContent('HAS OBS CONTEXT', CODES.TrackingIdentifier, `${phase} IN range`),
      uidrefContent('HAS OBS CONTEXT', CODES.TrackingUniqueIdentifier, trackingUid(ctx, phase, 'range')),
      codeContent('CONTAINS', CODES.Finding, SAX_CODES.InRange),
      codeContent('HAS CONCEPT MOD', SAX_CODES.CardiacPhase, phaseCode(phase)),
      ...algorithmIdentification(result),
      numContent('CONTAINS', SAX_CODES.FirstInSlice, r.first, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.LastInSlice, r.last, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.InSliceCount, r.count, CODES.NoUnits),
      numContent('CONTAINS', SAX_CODES.SliceCount, n, CODES.NoUnits),
      imageContent('CONTAINS', SAX_CODES.FirstInImage, imageRef(sources.images[phase][r.first])),
      imageContent('CONTAINS', SAX_CODES.LastInImage, imageRef(sources.images[phase][r.last])),
      textContent('CONTAINS', SAX_CODES.RangeSummary, summary),
    ],
    { templateId: '1501' },
  );
}

/** The SR content tree (root item attributes and ContentSequence). */
function contentTree(result: Result, sources: SourceInfo, o: ResolvedOptions): Record<string, unknown> {
  const ctx = uidContext(result);
  const library = container(
    'CONTAINS',
    CODES.ImageLibrary,
    PHASES.map((phase) =>
      container(
        'CONTAINS',
        CODES.ImageLibraryGroup,
        sources.images[phase].map((img) => imageContent('CONTAINS', undefined, imageRef(img))),
      ),
    ),
  );
  const groups: ContentItem[] = [];
  for (const phase of PHASES) {
    result.phases[phase].slices.forEach((_, i) => groups.push(sliceGroup(result, sources, ctx, phase, i)));
  }
  for (const phase of PHASES) groups.push(rangeGroup(result, sources, ctx, phase));
  return {
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [codeItem(CODES.ImagingMeasurementReport)],
    ContinuityOfContent: 'SEPARATE',
    ContentTemplateSequence: template('1500'),
    ContentSequence: [
      codeContent('HAS CONCEPT MOD', CODES.LanguageOfContentItemAndDescendants, CODES.EnglishUS),
      ...observerContext(o),
      codeContent('HAS CONCEPT MOD', CODES.ProcedureReported, CODES.MRIOfHeart),
      library,
      container('CONTAINS', CODES.ImagingMeasurements, groups),
    ],
  };
}

/** Builds the SR once inputs are checked (used by buildOutputs to check once for all objects). */
export function buildSrChecked(result: Result, sources: SourceInfo, o: ResolvedOptions): BuiltObject {
  const ctx = uidContext(result);
  const at = now(o);
  const sopInstanceUID = srInstanceUid(ctx);
  const seriesInstanceUID = outputSeriesUid(ctx, 'sr');
  const allImages = PHASES.flatMap((phase) => sources.images[phase]);
  const dataset: Record<string, unknown> = {
    ...commonAttributes(sources.patientStudy, o, at, {
      sopClassUID: SopClass.ComprehensiveSRStorage,
      sopInstanceUID,
      seriesInstanceUID,
      seriesNumber: seriesNumber(o, 'sr'),
      instanceNumber: 1,
      modality: 'SR',
      seriesDescription: 'sax-range SAX slice classification (SR)',
    }),
    // SR Document Series (PS3.3 C.17.1) and SR Document General (C.17.2).
    ReferencedPerformedProcedureStepSequence: [],
    CompletionFlag: 'COMPLETE',
    VerificationFlag: 'UNVERIFIED',
    PerformedProcedureCodeSequence: [],
    CurrentRequestedProcedureEvidenceSequence: evidenceSequence(result.studyInstanceUID, allImages),
    CodingSchemeIdentificationSequence: codingSchemeIdentification(),
    ...contentTree(result, sources, o),
  };
  return { dataset, part10: writePart10(dataset), sopInstanceUID, seriesInstanceUID };
}

/**
 * Builds the Comprehensive SR of a result document (see the module comment for the content tree).
 * Checks the document against `sax-range/result@1` and the sources against it; throws SrInputError naming
 * the first problem.
 */
export function buildSr(result: Result, sources: SourceInfo, opts: BuildOptions): BuiltObject {
  const o = resolveOptions(opts);
  const doc = checkSources(result, sources, false);
  return buildSrChecked(doc, sources, o);
}

