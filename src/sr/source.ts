/**
 * What the builders need to know about the source images, and the checks that tie a result document to
 * its sources. Pure: `sourceInfoFromFiles` (source-files.ts) is the I/O helper that fills these types.
 */
import { parseResult, type PhaseKey, type Result } from '../inference/result.js';
import { SrInputError } from './errors.js';

export type { PhaseKey };
export const PHASES: readonly PhaseKey[] = ['ED', 'ES'];

/** A DICOM person name as dcmjs naturalizes it (`[{ Alphabetic: 'Doe^John' }]`) or as a plain string. */
export type PersonName = string | ReadonlyArray<{ readonly Alphabetic?: string; readonly Ideographic?: string; readonly Phonetic?: string }>;

/**
 * Patient and study attributes copied verbatim from one source header into every object written
 * (PS3.3 C.7.1.1 Patient, C.7.2.1 General Study). Type 2 attributes are '' when the source lacks them.
 */
export interface PatientStudyAttributes {
  readonly PatientName: PersonName;
  readonly PatientID: string;
  readonly PatientBirthDate: string;
  readonly PatientSex: string;
  readonly StudyInstanceUID: string;
  readonly StudyDate: string;
  readonly StudyTime: string;
  readonly ReferringPhysicianName: PersonName;
  readonly StudyID: string;
  readonly AccessionNumber: string;
  readonly IssuerOfPatientID?: string;
  readonly PatientAge?: string;
  readonly StudyDescription?: string;
  /** Of the source series; the SCs repeat it (their General Series module needs it or Laterality). */
  readonly BodyPartExamined?: string;
}

/** One source image (a slice at a phase) as the objects reference and draw it. */
export interface SourceImage {
  readonly sopClassUID: string;
  readonly sopInstanceUID: string;
  readonly seriesInstanceUID: string;
  /** 1-based frame number inside a multi-frame source (ReferencedFrameNumber); absent for a single-frame instance. */
  readonly frameNumber?: number;
  readonly rows: number;
  readonly columns: number;
  /** `rows × columns` modality values, row-major. Needed for the secondary captures only. */
  readonly pixels?: Float32Array;
}

/** The sources of one result document. */
export interface SourceInfo {
  readonly patientStudy: PatientStudyAttributes;
  /** Per phase, one entry per slice in the result's order (apex → base): `images.ED[i]` is `result.phases.ED.slices[i]`. */
  readonly images: Readonly<Record<PhaseKey, readonly SourceImage[]>>;
}

/** Per phase, one Grad-CAM per slice (`rows × columns` values in [0, 1], apex → base); an empty list means none. */
export type CamInput = ReadonlyMap<PhaseKey, readonly Float32Array[]> | Readonly<Partial<Record<PhaseKey, readonly Float32Array[]>>>;

function str(v: unknown): string | undefined {
  const x = Array.isArray(v) ? v[0] : v;
  if (typeof x === 'number') return String(x);
  return typeof x === 'string' ? x : undefined;
}

function personName(v: unknown): PersonName {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((p) => p && typeof p === 'object')) return v as PersonName;
  return '';
}

/**
 * The patient/study attributes of a naturalized source header (as src/dicom/meta.ts `parseHeader` returns
 * it). Throws SrInputError when StudyInstanceUID is missing.
 */
export function patientStudyFromDataset(ds: Readonly<Record<string, unknown>>): PatientStudyAttributes {
  const study = str(ds.StudyInstanceUID);
  if (!study) throw new SrInputError('source header has no StudyInstanceUID');
  const optional = (k: string): string | undefined => {
    const v = str(ds[k]);
    return v === undefined || v === '' ? undefined : v;
  };
  return {
    PatientName: personName(ds.PatientName),
    PatientID: str(ds.PatientID) ?? '',
    PatientBirthDate: str(ds.PatientBirthDate) ?? '',
    PatientSex: str(ds.PatientSex) ?? '',
    StudyInstanceUID: study,
    StudyDate: str(ds.StudyDate) ?? '',
    StudyTime: str(ds.StudyTime) ?? '',
    ReferringPhysicianName: personName(ds.ReferringPhysicianName),
    StudyID: str(ds.StudyID) ?? '',
    AccessionNumber: str(ds.AccessionNumber) ?? '',
    IssuerOfPatientID: optional('IssuerOfPatientID'),
    PatientAge: optional('PatientAge'),
    StudyDescription: optional('StudyDescription'),
    BodyPartExamined: optional('BodyPartExamined'),
  };
}

const UID_RE = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

function checkUid(value: unknown, what: string): void {
  if (typeof value !== 'string' || value.length > 64 || !UID_RE.test(value)) {
    throw new SrInputError(`${what} must be a valid UID (digits and dots, ≤ 64 characters), got ${JSON.stringify(value)}`);
  }
}

/**
 * Validates a result document and its sources together and returns the parsed document. Checks: the
 * document matches `sax-range/result@1`; the sources are of the same study; each phase has one source
 * image per slice, with the slice's SOP Instance UID, a series of the stack and valid UIDs; image sizes
 * are positive; pixels (when `needPixels`) are present with `rows × columns` finite values.
 */
export function checkSources(result: Result, sources: SourceInfo, needPixels: boolean): Result {
  let doc: Result;
  try {
    doc = parseResult(result);
  } catch (err) {
    throw new SrInputError((err as Error).message);
  }
  if (!sources || typeof sources !== 'object' || !sources.patientStudy || !sources.images) {
    throw new SrInputError('sources must have patientStudy and images');
  }
  const ps = sources.patientStudy;
  checkUid(ps.StudyInstanceUID, 'patientStudy.StudyInstanceUID');
  if (ps.StudyInstanceUID !== doc.studyInstanceUID) {
    throw new SrInputError(`sources are of study ${ps.StudyInstanceUID}, the result of study ${doc.studyInstanceUID}`);
  }
  for (const k of ['PatientID', 'PatientBirthDate', 'PatientSex', 'StudyDate', 'StudyTime', 'StudyID', 'AccessionNumber'] as const) {
    if (typeof ps[k] !== 'string') throw new SrInputError(`patientStudy.${k} must be a string ('' when unknown)`);
  }
  const series = new Set(doc.seriesInstanceUIDs);
  for (const phase of PHASES) {
    const slices = doc.phases[phase].slices;
    const images = sources.images[phase];
    if (!Array.isArray(images) || images.length !== slices.length) {
      throw new SrInputError(`sources.images.${phase} has ${Array.isArray(images) ? images.length : 'no'} entries, the result ${slices.length} slices`);
    }
    images.forEach((img, i) => {
      const at = `sources.images.${phase}[${i}]`;
      checkUid(img.sopClassUID, `${at}.sopClassUID`);
      checkUid(img.sopInstanceUID, `${at}.sopInstanceUID`);
      checkUid(img.seriesInstanceUID, `${at}.seriesInstanceUID`);
      if (img.sopInstanceUID !== slices[i].sopInstanceUID) {
        throw new SrInputError(`${at}.sopInstanceUID ${img.sopInstanceUID} is not the result's slice ${slices[i].sopInstanceUID}`);
      }
      if (!series.has(img.seriesInstanceUID)) {
        throw new SrInputError(`${at}.seriesInstanceUID ${img.seriesInstanceUID} is not one of the stack's series`);
      }
      if (img.frameNumber !== undefined && !(Number.isInteger(img.frameNumber) && img.frameNumber >= 1)) {
        throw new SrInputError(`${at}.frameNumber must be a positive integer (1-based), got ${img.frameNumber}`);
      }
      if (!(Number.isInteger(img.rows) && img.rows > 0 && Number.isInteger(img.columns) && img.columns > 0)) {
        throw new SrInputError(`${at}: rows and columns must be positive integers, got ${img.rows}×${img.columns}`);
      }
      if (needPixels) {
        if (!(img.pixels instanceof Float32Array)) throw new SrInputError(`${at}.pixels is missing (a Float32Array is needed for the secondary captures)`);
        if (img.pixels.length !== img.rows * img.columns) {
          throw new SrInputError(`${at}.pixels has ${img.pixels.length} values, expected ${img.rows}×${img.columns}`);
        }
      }
    });
  }
  return doc;
}

/** The CAMs of one phase from either form of CamInput; `undefined` when there are none. */
export function camsOf(cams: CamInput | undefined, phase: PhaseKey): readonly Float32Array[] | undefined {
  if (!cams) return undefined;
  const list = cams instanceof Map ? cams.get(phase) : (cams as Partial<Record<PhaseKey, readonly Float32Array[]>>)[phase];
  return list && list.length > 0 ? list : undefined;
}

/** Checks one CAM against its image: same grid, values in [0, 1]. */
export function checkCam(cam: Float32Array, image: SourceImage, at: string): void {
  if (!(cam instanceof Float32Array)) throw new SrInputError(`${at} must be a Float32Array`);
  if (cam.length !== image.rows * image.columns) {
    throw new SrInputError(`${at} has ${cam.length} values, expected the slice's ${image.rows}×${image.columns}`);
  }
  for (let i = 0; i < cam.length; i++) {
    const v = cam[i];
    if (!(v >= 0 && v <= 1)) throw new SrInputError(`${at}[${i}] = ${v} is outside [0, 1]`);
  }
}
