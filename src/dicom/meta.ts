import { open, readFile } from 'node:fs/promises';
import dcmjs from 'dcmjs';
import { MalformedDataset, NeedMoreData, scanFileMeta, scanHeader } from './header-scan.js';
import { ACCEPTED_TRANSFER_SYNTAXES, TransferSyntax } from './uids.js';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;

/**
 * What the service needs to know about one received image, read from its header only.
 * One entry per frame: an Enhanced MR multi-frame instance expands to one entry per frame (`frame` ≥ 0),
 * a classic single-frame instance has `frame` undefined.
 */
export interface InstanceMeta {
  path: string;
  transferSyntaxUID: string;
  sopClassUID: string;
  sopInstanceUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  seriesNumber?: number;
  seriesDescription?: string;
  modality?: string;
  frameOfReferenceUID?: string;
  /** Six direction cosines (row, column). */
  imageOrientationPatient?: number[];
  imagePositionPatient?: number[];
  /** [row spacing, column spacing] in mm. */
  pixelSpacing?: number[];
  sliceThickness?: number;
  sliceLocation?: number;
  triggerTime?: number;
  instanceNumber?: number;
  temporalPositionIdentifier?: number;
  cardiacNumberOfImages?: number;
  rows: number;
  columns: number;
  numberOfFrames: number;
  /** 0-based frame index for multi-frame instances. */
  frame?: number;
  imageType?: string[];
}

/** An instance that cannot be used: the message says why, in words a sender's log can carry. */
export class InvalidInstanceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInstanceError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

function num(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const x = Array.isArray(v) ? v[0] : v;
  const n = typeof x === 'number' ? x : Number(x);
  return Number.isFinite(n) ? n : undefined;
}

function nums(v: unknown, length: number): number[] | undefined {
  if (!Array.isArray(v) || v.length < length) return undefined;
  const out = v.slice(0, length).map((x) => (typeof x === 'number' ? x : Number(x)));
  return out.every(Number.isFinite) ? out : undefined;
}

function str(v: unknown): string | undefined {
  const x = Array.isArray(v) ? v[0] : v;
  return typeof x === 'string' && x.length > 0 ? x : undefined;
}

function requireUid(ds: Record<string, unknown>, key: string): string {
  const v = str(ds[key]);
  if (!v) throw new InvalidInstanceError(`missing ${key}`);
  if (!/^[0-9.]{1,64}$/.test(v)) throw new InvalidInstanceError(`invalid ${key}`);
  return v;
}

/**
 * Parses a Part 10 buffer up to (not including) the pixel data. Throws InvalidInstanceError on anything
 * that is not a readable DICOM file.
 */
export function parseHeader(buffer: ArrayBuffer | Uint8Array): { meta: Record<string, unknown>; dataset: Record<string, any> } {
  const ab =
    buffer instanceof Uint8Array ? buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) : buffer;
  let dict: any;
  try {
    dict = DicomMessage.readFile(ab, { untilTag: '7FE00010', includeUntilTagValue: false });
  } catch (err) {
    throw new InvalidInstanceError(`not a readable DICOM Part 10 file: ${(err as Error).message}`);
  }
  const dataset = DicomMetaDictionary.naturalizeDataset(dict.dict);
  const meta = DicomMetaDictionary.naturalizeDataset(dict.meta);
  return { meta, dataset };
}

/** Per-frame geometry of an Enhanced MR instance (functional groups). */
function enhancedFrames(ds: Record<string, any>): Array<Partial<InstanceMeta>> {
  const n = num(ds.NumberOfFrames) ?? 1;
  const shared = (ds.SharedFunctionalGroupsSequence ?? [])[0] ?? {};
  const perFrame: any[] = ds.PerFrameFunctionalGroupsSequence ?? [];
  const pick = (frame: any, seq: string) => (frame?.[seq] ?? shared?.[seq] ?? [])[0];
  const frames: Array<Partial<InstanceMeta>> = [];
  for (let i = 0; i < n; i++) {
    const f = perFrame[i] ?? {};
    const orient = pick(f, 'PlaneOrientationSequence');
    const pos = pick(f, 'PlanePositionSequence');
    const measures = pick(f, 'PixelMeasuresSequence');
    const cardiac = pick(f, 'CardiacSynchronizationSequence');
    const content = pick(f, 'FrameContentSequence');
    frames.push({
      frame: i,
      imageOrientationPatient: nums(orient?.ImageOrientationPatient, 6),
      imagePositionPatient: nums(pos?.ImagePositionPatient, 3),
      pixelSpacing: nums(measures?.PixelSpacing, 2),
      sliceThickness: num(measures?.SliceThickness),
      triggerTime: num(cardiac?.NominalCardiacTriggerDelayTime),
      temporalPositionIdentifier: num(content?.TemporalPositionIndex),
      instanceNumber: num(ds.InstanceNumber),
    });
  }
  return frames;
}

/** Extracts InstanceMeta entries (one per frame) from a naturalized header. */
export function metaFromDataset(
  dataset: Record<string, any>,
  fileMeta: Record<string, unknown>,
  path: string,
): InstanceMeta[] {
  const rows = num(dataset.Rows);
  const columns = num(dataset.Columns);
  if (!rows || !columns) throw new InvalidInstanceError('missing Rows/Columns: not an image');
  const base: InstanceMeta = {
    path,
    transferSyntaxUID: str(fileMeta.TransferSyntaxUID) ?? '1.2.840.10008.1.2',
    sopClassUID: requireUid(dataset, 'SOPClassUID'),
    sopInstanceUID: requireUid(dataset, 'SOPInstanceUID'),
    studyInstanceUID: requireUid(dataset, 'StudyInstanceUID'),
    seriesInstanceUID: requireUid(dataset, 'SeriesInstanceUID'),
    seriesNumber: num(dataset.SeriesNumber),
    seriesDescription: str(dataset.SeriesDescription),
    modality: str(dataset.Modality),
    frameOfReferenceUID: str(dataset.FrameOfReferenceUID),
    imageOrientationPatient: nums(dataset.ImageOrientationPatient, 6),
    imagePositionPatient: nums(dataset.ImagePositionPatient, 3),
    pixelSpacing: nums(dataset.PixelSpacing, 2),
    sliceThickness: num(dataset.SliceThickness),
    sliceLocation: num(dataset.SliceLocation),
    triggerTime: num(dataset.TriggerTime),
    instanceNumber: num(dataset.InstanceNumber),
    temporalPositionIdentifier: num(dataset.TemporalPositionIdentifier),
    cardiacNumberOfImages: num(dataset.CardiacNumberOfImages),
    rows,
    columns,
    numberOfFrames: num(dataset.NumberOfFrames) ?? 1,
    imageType: Array.isArray(dataset.ImageType) ? dataset.ImageType.map(String) : undefined,
  };
  if (dataset.PerFrameFunctionalGroupsSequence || dataset.SharedFunctionalGroupsSequence) {
    return enhancedFrames(dataset).map((f) => {
      const out: InstanceMeta = { ...base };
      for (const [k, v] of Object.entries(f)) if (v !== undefined) (out as any)[k] = v;
      return out;
    });
  }
  return [base];
}

/**
 * InstanceMeta from a Part 10 file of which `buffer` holds the first bytes (`fileSize` in all), through the
 * tag walker (src/dicom/header-scan.ts); undefined where the walker might not give exactly what dcmjs gives
 * (functional groups, unusual text or values, a transfer syntax it does not walk, anything malformed).
 * Throws NeedMoreData when the header runs beyond `buffer`, InvalidInstanceError as metaFromDataset does.
 */
/** Declared bytes missing from a file beyond which it is refused instead of handed to dcmjs (see fastMeta). */
const ABSURD_SHORTFALL = 64 * 1024 * 1024;

function fastMeta(buffer: Uint8Array, fileSize: number, path: string): InstanceMeta[] | undefined {
  const fm = scanFileMeta(buffer);
  if (!fm) return undefined;
  const ts = fm.transferSyntaxUID;
  // The accepted syntaxes all encode the dataset in Implicit or Explicit VR LE (dcmjs reads the compressed
  // ones as Explicit VR LE too); Big Endian, Deflated and anything unknown go to dcmjs.
  if (!ACCEPTED_TRANSFER_SYNTAXES.includes(ts)) return undefined;
  const ds = Buffer.from(buffer.buffer, buffer.byteOffset + fm.datasetOffset, buffer.byteLength - fm.datasetOffset);
  let scan;
  try {
    scan = scanHeader(ds, ts !== TransferSyntax.ImplicitVRLittleEndian, fileSize - fm.datasetOffset);
  } catch (err) {
    // An element declared far past the end of the file (e.g. a UI turned UN: its text read as a 4-byte length):
    // dcmjs cannot read it either, and would first allocate the declared length (hundreds of MB from a 3 kB
    // file, enough to kill the process). Slight truncations still go to dcmjs, which reads what is there.
    const m = err instanceof MalformedDataset ? /^dataset truncated: needs (\d+) bytes, has (\d+)/.exec((err as Error).message) : null;
    if (m && Number(m[1]) - Number(m[2]) > ABSURD_SHORTFALL) throw new InvalidInstanceError(`not a readable DICOM Part 10 file: ${(err as Error).message}`);
    if (err instanceof MalformedDataset) return undefined;
    throw err;
  }
  if (scan.functionalGroups || scan.needsFullParse || scan.irregular.length > 0) return undefined;
  return metaFromDataset(scan.dataset, { TransferSyntaxUID: ts }, path);
}

/**
 * The per-frame metadata of a whole Part 10 file in memory, through the tag walker; undefined where the
 * file needs dcmjs (Enhanced MR functional groups, unusual values, transfer syntaxes other than the
 * accepted ones, malformed data). Where it returns, the result deep-equals
 * `metaFromDataset(parseHeader(buffer).dataset, parseHeader(buffer).meta, path)`, errors included.
 */
export function parseHeaderFast(buffer: Uint8Array, path = ''): InstanceMeta[] | undefined {
  return fastMeta(buffer, buffer.byteLength, path);
}

/** The per-frame metadata of a Part 10 file in memory: the tag walker, else dcmjs. */
export function instanceMetaFromBuffer(buffer: Uint8Array, path: string): InstanceMeta[] {
  const fast = parseHeaderFast(buffer, path);
  if (fast) return fast;
  const { meta, dataset } = parseHeader(buffer);
  return metaFromDataset(dataset, meta, path);
}

/** Bytes read first by readInstanceMeta: the header of a cine MR instance is a few kB, rarely over 64 kB. */
const HEAD_BYTES = 64 * 1024;

export interface ReadMetaOptions {
  /** false: always parse with dcmjs (benchmarks and tests). Default true. */
  fastPath?: boolean;
}

/**
 * Reads the header of a spooled file and returns its per-frame metadata. The tag walker reads the first
 * 64 kB (more when the header is longer); files it leaves to dcmjs are read whole and parsed as before.
 */
export async function readInstanceMeta(path: string, opts: ReadMetaOptions = {}): Promise<InstanceMeta[]> {
  if (opts.fastPath !== false) {
    const fh = await open(path, 'r');
    let size: number;
    let head: Buffer;
    try {
      size = (await fh.stat()).size;
      head = Buffer.allocUnsafe(Math.min(size, HEAD_BYTES));
      let got = 0;
      while (got < head.length) {
        const { bytesRead } = await fh.read(head, got, head.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      head = head.subarray(0, got);
    } finally {
      await fh.close();
    }
    let needMore = false;
    try {
      const fast = fastMeta(head, size, path);
      if (fast) return fast;
    } catch (err) {
      if (!(err instanceof NeedMoreData)) throw err;
      needMore = true;
    }
    const whole = head.length === size ? head : await readFile(path);
    // A header longer than the first read: the walker again, on the whole file.
    const fast = needMore ? parseHeaderFast(whole, path) : undefined;
    if (fast) return fast;
    const { meta, dataset } = parseHeader(whole);
    return metaFromDataset(dataset, meta, path);
  }
  const buf = await readFile(path);
  const { meta, dataset } = parseHeader(buf);
  return metaFromDataset(dataset, meta, path);
}
