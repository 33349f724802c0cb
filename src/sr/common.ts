/**
 * What every object sax-range writes shares: the options, the Patient / General Study / General Series /
 * General Equipment / SOP Common attributes (the zero-error set of notes/dicom-interop.md §6), deterministic
 * UIDs and series numbers, and the evidence sequence.
 */
import type { Result } from '../inference/result.js';
import { PRIVATE_CODING_SCHEME } from './codes.js';
import { referencedSopItem } from './content.js';
import { SrInputError } from './errors.js';
import type { HeatmapOptions } from './render.js';
import type { PatientStudyAttributes, SourceImage } from './source.js';
import type { OutputSeriesKind, UidContext } from './uid.js';

/** Options of the DICOM builders. */
export interface BuildOptions {
  /** sax-range's version: SoftwareVersions, Device Observer Model Name, the SC footers. Required. */
  softwareVersion: string;
  /**
   * Manufacturer (0008,0070) and Device Observer Manufacturer.
   * @defaultValue 'sax-range'
   */
  manufacturer?: string;
  /** Institution Name (0008,0080); omitted when unset. */
  institutionName?: string;
  /**
   * Series Number of the first output series: SR = base, KOS = base + 1, montages = base + 2,
   * Grad-CAM ED = base + 3, Grad-CAM ES = base + 4.
   * @defaultValue 900
   */
  seriesNumberBase?: number;
  /**
   * Source of "now" for ContentDate/Time, InstanceCreationDate/Time and the SC capture date (local time).
   * @defaultValue () => new Date()
   */
  clock?: () => Date;
  /**
   * Burned In Annotation (0028,0301) of the secondary captures. PS3.3 Table C.7-9 (General Image Module) defines it as "enough
   * burned-in annotation to identify the patient and the date"; the SCs carry class labels and
   * probabilities but no patient data, so 'NO' is the literal reading; 'YES' (the default, as the brief
   * asks) makes de-identification tools treat the pixels conservatively.
   * @defaultValue 'YES'
   */
  burnedInAnnotation?: 'YES' | 'NO';
  /** Grad-CAM overlay of the slice SCs. */
  heatmap?: HeatmapOptions;
  /**
   * Edge of one montage tile in pixels (even, 64–512).
   * @defaultValue 160
   */
  montageTileSize?: number;
}

export interface ResolvedOptions {
  readonly softwareVersion: string;
  readonly manufacturer: string;
  readonly institutionName?: string;
  readonly seriesNumberBase: number;
  readonly clock: () => Date;
  readonly burnedInAnnotation: 'YES' | 'NO';
  readonly heatmap: HeatmapOptions;
  readonly montageTileSize: number;
}

/** Fills defaults and checks the options; each failure names the option. */
export function resolveOptions(opts: BuildOptions): ResolvedOptions {
  if (!opts || typeof opts.softwareVersion !== 'string' || opts.softwareVersion.trim() === '') {
    throw new SrInputError('opts.softwareVersion is required (the sax-range version)');
  }
  const o: ResolvedOptions = {
    manufacturer: 'sax-range',
    seriesNumberBase: 900,
    clock: () => new Date(),
    burnedInAnnotation: 'YES',
    heatmap: {},
    montageTileSize: 160,
    ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
  } as ResolvedOptions;
  if (o.softwareVersion.length > 64) throw new SrInputError('opts.softwareVersion must have at most 64 characters (LO)');
  if (typeof o.manufacturer !== 'string' || o.manufacturer.length === 0 || o.manufacturer.length > 64) {
    throw new SrInputError('opts.manufacturer must have 1–64 characters (LO)');
  }
  if (o.institutionName !== undefined && (typeof o.institutionName !== 'string' || o.institutionName.length > 64)) {
    throw new SrInputError('opts.institutionName must have at most 64 characters (LO)');
  }
  if (!Number.isInteger(o.seriesNumberBase) || o.seriesNumberBase < 1 || o.seriesNumberBase > 2 ** 31 - 10) {
    throw new SrInputError(`opts.seriesNumberBase must be a positive integer, got ${o.seriesNumberBase}`);
  }
  if (typeof o.clock !== 'function') throw new SrInputError('opts.clock must be a function returning a Date');
  if (o.burnedInAnnotation !== 'YES' && o.burnedInAnnotation !== 'NO') {
    throw new SrInputError(`opts.burnedInAnnotation must be 'YES' or 'NO', got ${o.burnedInAnnotation}`);
  }
  if (!Number.isInteger(o.montageTileSize) || o.montageTileSize < 64 || o.montageTileSize > 512 || o.montageTileSize % 2 !== 0) {
    throw new SrInputError(`opts.montageTileSize must be an even integer in 64..512, got ${o.montageTileSize}`);
  }
  return o;
}

/** The moment an object is built, checked. */
export function now(o: ResolvedOptions): Date {
  const d = o.clock();
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) throw new SrInputError('opts.clock() must return a valid Date');
  return d;
}

const pad = (x: number, n = 2) => String(x).padStart(n, '0');

/** DA of a Date in local time: YYYYMMDD. */
export function dicomDate(d: Date): string {
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`;
}

/** TM of a Date in local time: HHMMSS.FFF. */
export function dicomTime(d: Date): string {
  return `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The UID context of a result: what every output UID is derived from. */
export function uidContext(result: Result): UidContext {
  return {
    studyInstanceUID: result.studyInstanceUID,
    stackId: result.stackId,
    seriesInstanceUIDs: result.seriesInstanceUIDs,
    modelSha256: result.model.sha256,
  };
}

const SERIES_OFFSET: Readonly<Record<OutputSeriesKind, number>> = {
  sr: 0,
  kos: 1,
  'sc-montage': 2,
  'sc-slice-ED': 3,
  'sc-slice-ES': 4,
};

/** Series Number of an output series. */
export function seriesNumber(o: ResolvedOptions, kind: OutputSeriesKind): number {
  return o.seriesNumberBase + SERIES_OFFSET[kind];
}

/** Identity of one object being built. */
export interface InstanceIdentity {
  sopClassUID: string;
  sopInstanceUID: string;
  seriesInstanceUID: string;
  seriesNumber: number;
  instanceNumber: number;
  modality: string;
  seriesDescription: string;
}

/**
 * Patient, General Study, General Series, General Equipment and SOP Common attributes, plus ContentDate/Time.
 * Patient/study attributes are copied from the source; the series is new.
 */
export function commonAttributes(ps: PatientStudyAttributes, o: ResolvedOptions, at: Date, id: InstanceIdentity): Record<string, unknown> {
  if (id.seriesDescription.length > 64) throw new SrInputError(`SeriesDescription '${id.seriesDescription}' exceeds 64 characters`);
  const ds: Record<string, unknown> = {
    SpecificCharacterSet: 'ISO_IR 192',
    InstanceCreationDate: dicomDate(at),
    InstanceCreationTime: dicomTime(at),
    SOPClassUID: id.sopClassUID,
    SOPInstanceUID: id.sopInstanceUID,
    StudyDate: ps.StudyDate,
    SeriesDate: dicomDate(at),
    ContentDate: dicomDate(at),
    StudyTime: ps.StudyTime,
    SeriesTime: dicomTime(at),
    ContentTime: dicomTime(at),
    AccessionNumber: ps.AccessionNumber,
    Modality: id.modality,
    Manufacturer: o.manufacturer,
    ReferringPhysicianName: ps.ReferringPhysicianName,
    SeriesDescription: id.seriesDescription,
    ManufacturerModelName: 'sax-range',
    PatientName: ps.PatientName,
    PatientID: ps.PatientID,
    PatientBirthDate: ps.PatientBirthDate,
    PatientSex: ps.PatientSex,
    SoftwareVersions: o.softwareVersion,
    StudyInstanceUID: ps.StudyInstanceUID,
    SeriesInstanceUID: id.seriesInstanceUID,
    StudyID: ps.StudyID,
    SeriesNumber: id.seriesNumber,
    InstanceNumber: id.instanceNumber,
  };
  if (o.institutionName) ds.InstitutionName = o.institutionName;
  if (ps.IssuerOfPatientID) ds.IssuerOfPatientID = ps.IssuerOfPatientID;
  if (ps.PatientAge) ds.PatientAge = ps.PatientAge;
  if (ps.StudyDescription) ds.StudyDescription = ps.StudyDescription;
  return ds;
}

/** Coding Scheme Identification Sequence declaring the private scheme (PS3.3 C.12.1.1.3.1). */
export function codingSchemeIdentification(): Record<string, unknown>[] {
  return [{ ...PRIVATE_CODING_SCHEME }];
}

/**
 * Hierarchical SOP Instance Reference Macro (PS3.3 Table C.17-3) for a set of images of one study:
 * one item per study, its series, and each SOP instance once (frames of one multi-frame instance collapse).
 */
export function evidenceSequence(studyInstanceUID: string, images: readonly SourceImage[]): Record<string, unknown>[] {
  const bySeries = new Map<string, Map<string, SourceImage>>();
  for (const img of images) {
    let sops = bySeries.get(img.seriesInstanceUID);
    if (!sops) bySeries.set(img.seriesInstanceUID, (sops = new Map()));
    if (!sops.has(img.sopInstanceUID)) sops.set(img.sopInstanceUID, img);
  }
  return [
    {
      StudyInstanceUID: studyInstanceUID,
      ReferencedSeriesSequence: [...bySeries].map(([series, sops]) => ({
        SeriesInstanceUID: series,
        ReferencedSOPSequence: [...sops.values()].map((img) => referencedSopItem({ sopClassUID: img.sopClassUID, sopInstanceUID: img.sopInstanceUID })),
      })),
    },
  ];
}

/** The reference form of a source image. */
export function imageRef(img: SourceImage): { sopClassUID: string; sopInstanceUID: string; frameNumber?: number } {
  return { sopClassUID: img.sopClassUID, sopInstanceUID: img.sopInstanceUID, ...(img.frameNumber !== undefined ? { frameNumber: img.frameNumber } : {}) };
}

/** A probability as text with 3 decimals. */
export function prob3(p: number): string {
  return p.toFixed(3);
}
