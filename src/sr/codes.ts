/**
 * Every coded concept the SR, SC and KOS builders write, as `{ value, scheme, meaning }` constants.
 *
 * Standard codes are used only where a reference confirms them. Unless noted, each was checked against
 * DCMTK 3.6.7's generated code tables (Debian `libdcmtk-dev` 3.6.7-9~deb12u4, generated from PS3.16-2022b):
 * `/usr/include/dcmtk/dcmsr/codes/{dcm,sct,ucum}.h` and the context-group headers under
 * `/usr/include/dcmtk/dcmsr/cmr/` (cid5000.h, cid7181.h). The one exception is the SNOMED CT procedure code
 * (see `CODES.MRIOfHeart`).
 *
 * OAP/IN/OBS and the per-class probabilities have no standard codes: they live in the private coding
 * scheme `99SAXRANGE` (PS3.16 §8.2: designators beginning with "99" are private), which every object that
 * uses it declares in its Coding Scheme Identification Sequence (`PRIVATE_CODING_SCHEME`).
 */

/** A coded concept: Code Value, Coding Scheme Designator, Code Meaning (PS3.3 Table 8.8-1). */
export interface Code {
  readonly value: string;
  readonly scheme: string;
  readonly meaning: string;
}

/** The naturalized Code Sequence item of a code (dcmjs keywords). */
export interface CodeItem {
  CodeValue: string;
  CodingSchemeDesignator: string;
  CodeMeaning: string;
}

/** Designator of the private coding scheme for sax-range's own concepts. */
export const PRIVATE_SCHEME = '99SAXRANGE';

/** Coding Scheme Identification Sequence item declaring the private scheme (PS3.3 C.12.1.1.3.1). */
export const PRIVATE_CODING_SCHEME = {
  CodingSchemeDesignator: PRIVATE_SCHEME,
  CodingSchemeName: 'sax-range short-axis slice classification codes',
  CodingSchemeResponsibleOrganization: 'sax-range',
} as const;

function code(value: string, scheme: string, meaning: string): Code {
  if (value.length === 0 || value.length > 16) throw new Error(`code value '${value}' must have 1–16 characters (SH)`);
  if (meaning.length === 0 || meaning.length > 64) throw new Error(`code meaning '${meaning}' must have 1–64 characters (LO)`);
  return Object.freeze({ value, scheme, meaning });
}

/** Standard codes (DCM, SCT, UCUM, RFC5646). */
export const CODES = Object.freeze({
  // --- TID 1500 Measurement Report (dcm.h; the title is in cmr/cid7021.h, CID 7021) ---
  ImagingMeasurementReport: code('126000', 'DCM', 'Imaging Measurement Report'),
  LanguageOfContentItemAndDescendants: code('121049', 'DCM', 'Language of Content Item and Descendants'),
  /** cmr/cid5000.h (CID 5000 Languages): `(en-US,RFC5646,"English (US)")`. */
  EnglishUS: code('en-US', 'RFC5646', 'English (US)'),
  ProcedureReported: code('121058', 'DCM', 'Procedure reported'),
  /**
   * Not in DCMTK's tables (sct.h lists only a few SNOMED codes). Confirmed as SNOMED CT 241620005
   * "Magnetic resonance imaging of heart (procedure)" by a SNOMED CT terminology-server listing, and listed in
   * pydicom's PS3.16-generated concept dictionary (keyword CardiacMRI; notes/peers.md). CID 100 (the TID 1500
   * row-4 context group) is extensible (cmr/cid100.h: "type: extensible").
   */
  MRIOfHeart: code('241620005', 'SCT', 'Magnetic resonance imaging of heart'),
  ImageLibrary: code('111028', 'DCM', 'Image Library'),
  ImageLibraryGroup: code('126200', 'DCM', 'Image Library Group'),
  ImagingMeasurements: code('126010', 'DCM', 'Imaging Measurements'),
  MeasurementGroup: code('125007', 'DCM', 'Measurement Group'),
  TrackingIdentifier: code('112039', 'DCM', 'Tracking Identifier'),
  TrackingUniqueIdentifier: code('112040', 'DCM', 'Tracking Unique Identifier'),
  Finding: code('121071', 'DCM', 'Finding'),
  SourceOfMeasurement: code('121112', 'DCM', 'Source of Measurement'),

  // --- TID 1002/1004 Observer context (dcm.h) ---
  ObserverType: code('121005', 'DCM', 'Observer Type'),
  Device: code('121007', 'DCM', 'Device'),
  DeviceObserverUID: code('121012', 'DCM', 'Device Observer UID'),
  DeviceObserverName: code('121013', 'DCM', 'Device Observer Name'),
  DeviceObserverManufacturer: code('121014', 'DCM', 'Device Observer Manufacturer'),
  DeviceObserverModelName: code('121015', 'DCM', 'Device Observer Model Name'),

  // --- TID 4019 Algorithm Identification (dcm.h) ---
  AlgorithmFamily: code('111000', 'DCM', 'Algorithm Family'),
  AlgorithmName: code('111001', 'DCM', 'Algorithm Name'),
  AlgorithmParameters: code('111002', 'DCM', 'Algorithm Parameters'),
  AlgorithmVersion: code('111003', 'DCM', 'Algorithm Version'),
  ArtificialIntelligence: code('123110', 'DCM', 'Artificial Intelligence'),

  // --- TID 2010 Key Object Selection (dcm.h; 113000 is a CID 7010 document title) ---
  OfInterest: code('113000', 'DCM', 'Of Interest'),
  KeyObjectDescription: code('113012', 'DCM', 'Key Object Description'),

  // --- Units (ucum.h; "1" is in cmr/cid7181.h) ---
  NoUnits: code('1', 'UCUM', 'no units'),
  Millimeter: code('mm', 'UCUM', 'millimeter'),
});

/** sax-range's private concepts (scheme `99SAXRANGE`). */
export const SAX_CODES = Object.freeze({
  // Class values (the qualitative evaluation's value).
  OAP: code('OAP', PRIVATE_SCHEME, 'Out of apical (below the LV apex)'),
  IN: code('IN', PRIVATE_SCHEME, 'Apical-to-basal (LV myocardium and blood pool)'),
  OBS: code('OBS', PRIVATE_SCHEME, 'Out of basal (above the LV base)'),
  // Qualitative evaluation names.
  SliceClass: code('SLICE_CLASS', PRIVATE_SCHEME, 'Short-axis slice class (range decoded)'),
  SliceClassArgmax: code('SLICE_CLASS_MAX', PRIVATE_SCHEME, 'Short-axis slice class (argmax)'),
  // Findings that tell the two kinds of measurement group apart.
  SliceClassification: code('SLICE_CLASSIF', PRIVATE_SCHEME, 'Short-axis slice classification'),
  InRange: code('IN_RANGE', PRIVATE_SCHEME, 'Apical-to-basal (IN) slice range'),
  // Probabilities (NUM, UCUM "1").
  ProbabilityOAP: code('P_OAP', PRIVATE_SCHEME, 'Probability of OAP'),
  ProbabilityIN: code('P_IN', PRIVATE_SCHEME, 'Probability of IN'),
  ProbabilityOBS: code('P_OBS', PRIVATE_SCHEME, 'Probability of OBS'),
  // Slice geometry.
  SlicePosition: code('SLICE_POS', PRIVATE_SCHEME, 'Slice position along the stack normal'),
  SliceNumber: code('SLICE_NUM', PRIVATE_SCHEME, 'Slice number, apex to base, 0-based'),
  StackIndex: code('STACK_INDEX', PRIVATE_SCHEME, 'Slice index in the stack, 0-based'),
  // Cardiac phase (DCM 109022 "End diastole" / 109070 "End of systole" are retired: dcm.h marks them RETIRED).
  CardiacPhase: code('PHASE', PRIVATE_SCHEME, 'Cardiac phase'),
  ED: code('ED', PRIVATE_SCHEME, 'End diastole'),
  ES: code('ES', PRIVATE_SCHEME, 'End systole'),
  // IN range summary.
  FirstInSlice: code('IN_FIRST', PRIVATE_SCHEME, 'First IN slice, apex to base, 0-based'),
  LastInSlice: code('IN_LAST', PRIVATE_SCHEME, 'Last IN slice, apex to base, 0-based'),
  InSliceCount: code('IN_COUNT', PRIVATE_SCHEME, 'Number of IN slices'),
  SliceCount: code('SLICE_COUNT', PRIVATE_SCHEME, 'Number of slices in the stack'),
  FirstInImage: code('IN_FIRST_IMAGE', PRIVATE_SCHEME, 'Image of the first IN slice'),
  LastInImage: code('IN_LAST_IMAGE', PRIVATE_SCHEME, 'Image of the last IN slice'),
  RangeSummary: code('IN_SUMMARY', PRIVATE_SCHEME, 'IN range summary'),
});

/** The value code of a slice label. */
export function labelCode(label: 'OAP' | 'IN' | 'OBS'): Code {
  return SAX_CODES[label];
}

/** The value code of a phase. */
export function phaseCode(phase: 'ED' | 'ES'): Code {
  return SAX_CODES[phase];
}

/** A Code Sequence item (naturalized) from a code. */
export function codeItem(c: Code): CodeItem {
  return { CodeValue: c.value, CodingSchemeDesignator: c.scheme, CodeMeaning: c.meaning };
}
