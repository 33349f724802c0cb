/**
 * DICOM encoding of phantom images: classic MR Image Storage instances (one frame each) that pass
 * dciodvfy with 0 errors and 0 warnings, written as Part 10 by `part10.ts`, compressed losslessly with
 * dcmjs-codecs when a compressed transfer syntax is asked for. No file I/O here.
 */
import codecs from 'dcmjs-codecs';
import { SopClass, TransferSyntax } from '../dicom/uids.js';
import type { PhantomModel } from './anatomy.js';
import { writePart10 } from './part10.js';
import { uidFromName } from '../dicom/uid.js';

const { NativeCodecs, Transcoder } = codecs;

/** Transfer syntaxes the phantom writes; all lossless, so the pixels read back are exactly the model's. */
export const PHANTOM_TRANSFER_SYNTAXES: readonly string[] = [
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.JpegLsLossless,
  TransferSyntax.JpegLosslessSV1,
  TransferSyntax.Jpeg2000Lossless,
  TransferSyntax.RleLossless,
];

const UNCOMPRESSED = new Set<string>([TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian]);

export const PHANTOM_IMPLEMENTATION_CLASS_UID = uidFromName('phantom/implementation/1');
export const PHANTOM_IMPLEMENTATION_VERSION = 'SAXRANGE_PH1';
export const PHANTOM_MANUFACTURER = 'sax-range phantom';
export const PHANTOM_PATIENT_NAME = 'PHANTOM^SAX';

let codecsReady: Promise<void> | undefined;

/** Loads the dcmjs-codecs WebAssembly once per process (≈60 ms); only needed for compressed syntaxes. */
export function ensureCodecs(): Promise<void> {
  if (!codecsReady) {
    codecsReady = NativeCodecs.isInitialized() ? Promise.resolve() : NativeCodecs.initializeAsync();
    codecsReady.catch(() => {
      codecsReady = undefined;
    });
  }
  return codecsReady;
}

export function isCompressed(transferSyntaxUID: string): boolean {
  return !UNCOMPRESSED.has(transferSyntaxUID);
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Rounds and clamps rendered intensities to 12-bit unsigned pixels (host order = little endian). */
export function toPixels12(pixels: Float32Array): Uint16Array {
  if (!LITTLE_ENDIAN_HOST) throw new Error('the phantom writer assumes a little-endian host');
  const out = new Uint16Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.round(pixels[i]);
    out[i] = v < 0 ? 0 : v > 4095 ? 4095 : v;
  }
  return out;
}

/** Everything that is the same for all instances of one study, plus the layout decisions. */
export interface StudyContext {
  /** Name prefix the UIDs are derived from (seed and all options that change the files). */
  key: string;
  studyInstanceUID: string;
  frameOfReferenceUID: string;
  seriesPerSlice: boolean;
  /** SeriesNumber of the (first) series. */
  firstSeriesNumber: number;
  studyDate: string;
  /** Seconds after midnight. */
  studyStart: number;
}

export function sopInstanceUID(ctx: StudyContext, slice: number, phase: number): string {
  return uidFromName(`${ctx.key}/sop/${slice}/${phase}`);
}

/** Acquisition index of an apex → base slice index: slices are acquired base → apex (index 0 = most basal). */
export function acquisitionIndex(model: PhantomModel, slice: number): number {
  return model.slices - 1 - slice;
}

export function seriesInstanceUID(ctx: StudyContext, model: PhantomModel, slice: number): string {
  return uidFromName(`${ctx.key}/series/${ctx.seriesPerSlice ? acquisitionIndex(model, slice) : 0}`);
}

export function seriesNumber(ctx: StudyContext, model: PhantomModel, slice: number): number {
  return ctx.firstSeriesNumber + (ctx.seriesPerSlice ? acquisitionIndex(model, slice) : 0);
}

/** InstanceNumber: phase + 1 within a per-slice series; acquisition-slice-major in a single series. */
export function instanceNumber(ctx: StudyContext, model: PhantomModel, slice: number, phase: number): number {
  return ctx.seriesPerSlice ? phase + 1 : acquisitionIndex(model, slice) * model.phases + phase + 1;
}

function dicomTime(seconds: number): string {
  const s = ((seconds % 86400) + 86400) % 86400;
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const whole = Math.floor(ss);
  const frac = Math.round((ss - whole) * 100);
  const pad = (x: number) => String(x).padStart(2, '0');
  return `${pad(hh)}${pad(mm)}${pad(whole)}.${pad(Math.min(frac, 99))}`;
}

/** The naturalized MR Image dataset of one slice (apex → base index) at one phase. */
export function buildMrDataset(model: PhantomModel, ctx: StudyContext, slice: number, phase: number, pixels: Uint16Array): Record<string, unknown> {
  const acq = acquisitionIndex(model, slice);
  const seriesStart = ctx.studyStart + 60 + (ctx.seriesPerSlice ? acq * 15 : 0);
  const acquisitionStart = ctx.studyStart + 60 + acq * 15;
  const content = acquisitionStart + 12 + model.triggerTimes[phase] / 1000;
  const blood = model.intensities.blood;
  const ps = model.pixelSpacing;
  const iop = [...model.rowCosines, ...model.columnCosines];
  return {
    SpecificCharacterSet: 'ISO_IR 192',
    ImageType: ['ORIGINAL', 'PRIMARY', 'OTHER'],
    InstanceCreationDate: ctx.studyDate,
    InstanceCreationTime: dicomTime(content + 1),
    SOPClassUID: SopClass.MRImageStorage,
    SOPInstanceUID: sopInstanceUID(ctx, slice, phase),
    StudyDate: ctx.studyDate,
    SeriesDate: ctx.studyDate,
    AcquisitionDate: ctx.studyDate,
    ContentDate: ctx.studyDate,
    StudyTime: dicomTime(ctx.studyStart),
    SeriesTime: dicomTime(seriesStart),
    AcquisitionTime: dicomTime(acquisitionStart),
    ContentTime: dicomTime(content),
    AccessionNumber: '',
    Modality: 'MR',
    Manufacturer: PHANTOM_MANUFACTURER,
    InstitutionName: 'sax-range',
    ReferringPhysicianName: '',
    StationName: 'PHANTOM',
    StudyDescription: 'Cardiac cine (sax-range phantom)',
    SeriesDescription: 'cine SAX',
    ManufacturerModelName: 'sax-range phantom',
    PatientName: PHANTOM_PATIENT_NAME,
    PatientID: `PHANTOM-${model.seed}`,
    PatientBirthDate: '',
    PatientSex: 'O',
    BodyPartExamined: 'HEART',
    ScanningSequence: 'GR',
    SequenceVariant: ['SK', 'SS'],
    ScanOptions: 'CG',
    MRAcquisitionType: '2D',
    SequenceName: `*tfi2d1_${model.phases}`,
    AngioFlag: 'N',
    SliceThickness: model.sliceThickness,
    RepetitionTime: Math.round((model.rrMs / model.phases) * 100) / 100,
    EchoTime: 1.2,
    NumberOfAverages: 1,
    ImagingFrequency: 63.68,
    ImagedNucleus: '1H',
    EchoNumbers: 1,
    MagneticFieldStrength: 1.5,
    SpacingBetweenSlices: model.sliceSpacing,
    EchoTrainLength: 1,
    PercentSampling: 100,
    PercentPhaseFieldOfView: Math.round((100 * Math.min(model.rows, model.columns)) / Math.max(model.rows, model.columns)),
    PixelBandwidth: 930,
    SoftwareVersions: 'sax-range phantom 1',
    ProtocolName: 'cine SAX',
    TriggerTime: model.triggerTimes[phase],
    NominalInterval: model.rrMs,
    CardiacNumberOfImages: model.phases,
    HeartRate: Math.round(60000 / model.rrMs),
    ReceiveCoilName: 'Body',
    TransmitCoilName: 'Body',
    AcquisitionMatrix: [0, model.columns, model.rows, 0],
    InPlanePhaseEncodingDirection: 'ROW',
    FlipAngle: 60,
    PatientPosition: 'HFS',
    StudyInstanceUID: ctx.studyInstanceUID,
    SeriesInstanceUID: seriesInstanceUID(ctx, model, slice),
    StudyID: '1',
    SeriesNumber: seriesNumber(ctx, model, slice),
    AcquisitionNumber: 1,
    InstanceNumber: instanceNumber(ctx, model, slice, phase),
    ImagePositionPatient: [...model.imagePositions[slice]],
    ImageOrientationPatient: iop,
    FrameOfReferenceUID: ctx.frameOfReferenceUID,
    PositionReferenceIndicator: '',
    SliceLocation: model.sliceLocations[slice],
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: model.rows,
    Columns: model.columns,
    PixelSpacing: [ps, ps],
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: 0,
    WindowCenter: Math.round(blood * 0.6),
    WindowWidth: Math.round(blood * 1.3),
    PixelData: [pixels.buffer.slice(pixels.byteOffset, pixels.byteOffset + pixels.byteLength)],
    _vrMap: { PixelData: 'OW' },
  };
}

/**
 * Encodes a naturalized dataset (native pixels, 16 bits allocated) as Part 10 in `transferSyntaxUID`,
 * compressing losslessly where asked. Call `ensureCodecs()` first for a compressed syntax.
 */
export function encodePart10(dataset: Record<string, unknown>, transferSyntaxUID: string): Uint8Array {
  if (!PHANTOM_TRANSFER_SYNTAXES.includes(transferSyntaxUID)) {
    throw new RangeError(`unsupported transfer syntax ${transferSyntaxUID}; use one of ${PHANTOM_TRANSFER_SYNTAXES.join(', ')}`);
  }
  let elements: Record<string, unknown> = dataset;
  if (isCompressed(transferSyntaxUID)) {
    if (!NativeCodecs.isInitialized()) throw new Error('dcmjs-codecs not initialised: await ensureCodecs() first');
    const transcoder = new Transcoder(dataset, TransferSyntax.ExplicitVRLittleEndian);
    transcoder.transcode(transferSyntaxUID);
    elements = transcoder.getElements() as Record<string, unknown>;
    // The codecs report PlanarConfiguration back even for one sample per pixel, where the IOD forbids it.
    if (Number(elements.SamplesPerPixel) === 1) delete elements.PlanarConfiguration;
  }
  return writePart10(elements, {
    mediaStorageSOPClassUID: String(dataset.SOPClassUID),
    mediaStorageSOPInstanceUID: String(dataset.SOPInstanceUID),
    transferSyntaxUID,
    implementationClassUID: PHANTOM_IMPLEMENTATION_CLASS_UID,
    implementationVersionName: PHANTOM_IMPLEMENTATION_VERSION,
  });
}
