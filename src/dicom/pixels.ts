import { readFile } from 'node:fs/promises';
import dcmjs from 'dcmjs';
import codecs from 'dcmjs-codecs';
import { MalformedDataset, NeedMoreData, scanFileMeta, scanHeader } from './header-scan.js';
import { ACCEPTED_TRANSFER_SYNTAXES, TransferSyntax, UNCOMPRESSED_TRANSFER_SYNTAXES } from './uids.js';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
const { NativeCodecs, Transcoder } = codecs;

/** One decoded frame: modality values (RescaleSlope/Intercept applied), row-major, `rows × columns`. */
export interface DecodedFrame {
  rows: number;
  columns: number;
  data: Float32Array;
}

/** A Part 10 file: its path, or its bytes. */
export type PixelSource = string | Uint8Array | ArrayBuffer;

/** Pixel data that cannot be decoded: missing, truncated, or in a form this service does not handle. */
export class PixelDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PixelDataError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

let codecsReady: Promise<void> | undefined;

/** Initialises the dcmjs-codecs WebAssembly once per process (retried if a previous attempt failed). */
export function initCodecs(): Promise<void> {
  if (!codecsReady) {
    // dcmjs-codecs logs through loglevel; keep its chatter off stdout (stdout is reserved for CLI output).
    codecs.log?.setLevel?.('error');
    const init: Promise<void> = NativeCodecs.isInitialized() ? Promise.resolve() : NativeCodecs.initializeAsync();
    codecsReady = init.catch((err: unknown) => {
      codecsReady = undefined;
      throw new PixelDataError(`cannot initialise dcmjs-codecs: ${(err as Error).message}`);
    });
  }
  return codecsReady;
}

async function toArrayBuffer(src: PixelSource): Promise<ArrayBuffer> {
  if (typeof src === 'string') {
    const buf = await readFile(src);
    return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  }
  if (src instanceof Uint8Array) return src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength) as ArrayBuffer;
  return src;
}

/**
 * dcmjs's validation logger reports Implicit VR pixel data (dictionary VR "OB or OW") as an error on every
 * read although it is legal; it is silenced for the (synchronous) pixel read only. Headers are validated
 * where they are read (src/dicom/meta.ts).
 */
const validationLog: any = dcmjs.log?.getLogger?.('validation.dcmjs');

function readPart10(ab: ArrayBuffer): { meta: Record<string, any>; dataset: Record<string, any> } {
  let dict: any;
  const level = validationLog?.getLevel?.();
  try {
    validationLog?.setLevel?.('silent', false);
    dict = DicomMessage.readFile(ab);
  } catch (err) {
    throw new PixelDataError(`not a readable DICOM Part 10 file: ${(err as Error).message}`);
  } finally {
    if (level !== undefined) validationLog?.setLevel?.(level, false);
  }
  return {
    meta: DicomMetaDictionary.naturalizeDataset(dict.meta),
    dataset: DicomMetaDictionary.naturalizeDataset(dict.dict),
  };
}

function num(v: unknown): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const x = Array.isArray(v) ? v[0] : v;
  const n = typeof x === 'number' ? x : Number(x);
  return Number.isFinite(n) ? n : undefined;
}

/** Concatenates the pixel data value (dcmjs gives an array of ArrayBuffers) into one ArrayBuffer. */
function pixelBytes(value: unknown): ArrayBuffer | undefined {
  const parts = (Array.isArray(value) ? value : [value]).filter(
    (p): p is ArrayBuffer | ArrayBufferView => p instanceof ArrayBuffer || ArrayBuffer.isView(p),
  );
  if (parts.length === 0) return undefined;
  const views = parts.map((p) =>
    p instanceof ArrayBuffer ? new Uint8Array(p) : new Uint8Array(p.buffer, p.byteOffset, p.byteLength),
  );
  if (views.length === 1) {
    const v = views[0]!;
    return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer;
  }
  const total = views.reduce((s, v) => s + v.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const v of views) {
    out.set(v, off);
    off += v.byteLength;
  }
  return out.buffer;
}

interface Rescale {
  slope: number;
  intercept: number;
}

/** RescaleSlope/Intercept of a frame: per-frame functional group, then shared, then the top level. */
function rescaleFor(ds: Record<string, any>, frame: number): Rescale {
  const fromGroup = (g: any): Rescale | undefined => {
    const t = g?.PixelValueTransformationSequence?.[0];
    if (!t) return undefined;
    const slope = num(t.RescaleSlope);
    const intercept = num(t.RescaleIntercept);
    if (slope === undefined && intercept === undefined) return undefined;
    return { slope: slope ?? 1, intercept: intercept ?? 0 };
  };
  return (
    fromGroup(ds.PerFrameFunctionalGroupsSequence?.[frame]) ??
    fromGroup(ds.SharedFunctionalGroupsSequence?.[0]) ?? {
      slope: num(ds.RescaleSlope) ?? 1,
      intercept: num(ds.RescaleIntercept) ?? 0,
    }
  );
}

/** The decoded (native, little-endian) dataset of a file, transcoding compressed syntaxes with dcmjs-codecs. */
async function nativeDataset(src: PixelSource): Promise<Record<string, any>> {
  const ab = await toArrayBuffer(src);
  const { meta, dataset } = readPart10(ab);
  const ts: string = (typeof meta.TransferSyntaxUID === 'string' && meta.TransferSyntaxUID) || TransferSyntax.ImplicitVRLittleEndian;
  if (!ACCEPTED_TRANSFER_SYNTAXES.includes(ts)) {
    throw new PixelDataError(`transfer syntax ${ts} is not supported for pixel decoding`);
  }
  if (UNCOMPRESSED_TRANSFER_SYNTAXES.includes(ts)) return dataset;
  if (dataset.PixelData === undefined) throw new PixelDataError('no pixel data (7FE0,0010) in the file');
  await initCodecs();
  let native: ArrayBuffer;
  try {
    const t = new Transcoder(ab);
    t.transcode(TransferSyntax.ExplicitVRLittleEndian);
    native = t.getDicomPart10();
  } catch (err) {
    throw new PixelDataError(`cannot decode ${ts} pixel data: ${(err as Error)?.message ?? String(err)}`);
  }
  return readPart10(native).dataset;
}

interface PixelModule {
  rows: number;
  columns: number;
  frames: number;
  samplesPerPixel: number;
  planar: boolean;
  bitsAllocated: number;
  bitsStored: number;
  signed: boolean;
  float: boolean;
  bytes: ArrayBuffer;
}

function pixelModule(ds: Record<string, any>): PixelModule {
  const rows = num(ds.Rows);
  const columns = num(ds.Columns);
  if (!rows || !columns) throw new PixelDataError('missing Rows/Columns: not an image');
  const frames = Math.max(1, num(ds.NumberOfFrames) ?? 1);
  const samplesPerPixel = num(ds.SamplesPerPixel) ?? 1;
  let float = false;
  let raw: unknown = ds.PixelData;
  let bitsAllocated = num(ds.BitsAllocated) ?? 16;
  if (raw === undefined && ds.FloatPixelData !== undefined) {
    raw = ds.FloatPixelData;
    float = true;
    bitsAllocated = 32;
  }
  const bytes = raw === undefined ? undefined : pixelBytes(raw);
  if (!bytes || bytes.byteLength === 0) throw new PixelDataError('no pixel data (7FE0,0010) in the file');
  if (![8, 16, 32].includes(bitsAllocated)) {
    throw new PixelDataError(`BitsAllocated ${bitsAllocated} is not supported (8, 16 or 32)`);
  }
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) {
    throw new PixelDataError(`SamplesPerPixel ${samplesPerPixel} is not supported (1 or 3)`);
  }
  const bitsStored = Math.min(bitsAllocated, num(ds.BitsStored) ?? bitsAllocated);
  const needed = rows * columns * samplesPerPixel * frames * (bitsAllocated / 8);
  if (bytes.byteLength < needed) {
    throw new PixelDataError(
      `pixel data too short: ${bytes.byteLength} bytes for ${frames} frame(s) of ${rows}×${columns}×${samplesPerPixel} ` +
        `at ${bitsAllocated} bits (${needed} bytes expected)`,
    );
  }
  return {
    rows,
    columns,
    frames,
    samplesPerPixel,
    planar: num(ds.PlanarConfiguration) === 1,
    bitsAllocated,
    bitsStored,
    signed: num(ds.PixelRepresentation) === 1,
    float,
    bytes,
  };
}

function decodeOne(pm: PixelModule, frame: number, rescale: Rescale): DecodedFrame {
  const { rows, columns, samplesPerPixel: spp, bitsAllocated, bitsStored, signed } = pm;
  const n = rows * columns;
  const bpp = bitsAllocated / 8;
  const frameBytes = n * spp * bpp;
  const chunk = pm.bytes.slice(frame * frameBytes, (frame + 1) * frameBytes);
  let samples: ArrayLike<number>;
  if (pm.float) samples = new Float32Array(chunk);
  else if (bitsAllocated === 8) samples = signed ? new Int8Array(chunk) : new Uint8Array(chunk);
  else if (bitsAllocated === 16) samples = signed ? new Int16Array(chunk) : new Uint16Array(chunk);
  else samples = signed ? new Int32Array(chunk) : new Uint32Array(chunk);

  // Bits above BitsStored are not part of the value: mask them (unsigned) or sign-extend from BitsStored (signed).
  const fix =
    pm.float || bitsStored >= bitsAllocated
      ? undefined
      : signed
        ? (v: number) => ((v << (32 - bitsStored)) >> (32 - bitsStored))
        : (v: number) => (bitsStored >= 32 ? v : (v & ((2 ** bitsStored) - 1)) >>> 0);

  const value = (i: number): number => {
    const v = samples[i]!;
    return fix ? fix(v) : v;
  };
  const out = new Float32Array(n);
  const { slope, intercept } = rescale;
  if (spp === 1) {
    for (let i = 0; i < n; i++) out[i] = value(i) * slope + intercept;
  } else {
    // Colour: luminance (ITU-R BT.601), for robustness only — cine MR is monochrome.
    for (let i = 0; i < n; i++) {
      const [r, g, b] = pm.planar ? [value(i), value(n + i), value(2 * n + i)] : [value(3 * i), value(3 * i + 1), value(3 * i + 2)];
      out[i] = (0.299 * r + 0.587 * g + 0.114 * b) * slope + intercept;
    }
  }
  return { rows, columns, data: out };
}

// ---------------------------------------------------------------------------------------------------------
// Fast path: native little-endian pixels straight from the file's bytes (the tag walker finds Pixel Data).
// ---------------------------------------------------------------------------------------------------------

/** What the fast path needs of a native file: the pixel module, the rescale and where the pixels are. */
interface NativePixels {
  bytes: Uint8Array;
  /** Offset of the Pixel Data value in `bytes`. */
  offset: number;
  rows: number;
  columns: number;
  frames: number;
  bitsAllocated: 8 | 16;
  bitsStored: number;
  signed: boolean;
  rescale: Rescale;
}

function positiveInt(v: number | undefined): v is number {
  return v !== undefined && Number.isInteger(v) && v > 0;
}

/**
 * The pixel module of a Part 10 file in Explicit/Implicit VR Little Endian, read with the tag walker, when
 * decoding from it gives exactly what the dcmjs path gives: one sample per pixel, 8 or 16 bits allocated,
 * Pixel Data (OB/OW, defined length) last in the file and long enough, no functional groups (per-frame
 * rescale), nothing that dcmjs would read otherwise. Undefined for anything else, errors included: the dcmjs
 * path then decodes (or says what is wrong) as before.
 */
function nativePixels(bytes: Uint8Array): NativePixels | undefined {
  const fm = scanFileMeta(bytes);
  if (!fm || !UNCOMPRESSED_TRANSFER_SYNTAXES.includes(fm.transferSyntaxUID)) return undefined;
  const dsOffset = fm.datasetOffset;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset + dsOffset, bytes.byteLength - dsOffset);
  let scan;
  try {
    scan = scanHeader(buf, fm.transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian);
  } catch (err) {
    if (err instanceof MalformedDataset || err instanceof NeedMoreData) return undefined;
    throw err;
  }
  // needsFullParse is about text the walker does not decode: irrelevant to the pixels.
  if (scan.functionalGroups || scan.irregular.length > 0) return undefined;
  const px = scan.pixelData;
  if (!px || px.length === undefined || (px.vr !== 'OB' && px.vr !== 'OW')) return undefined;
  // Anything after Pixel Data (trailing padding, a truncated value) is left to dcmjs, which reads it all.
  if (px.valueOffset + px.length !== buf.length) return undefined;
  const ds = scan.dataset;
  const rows = num(ds.Rows);
  const columns = num(ds.Columns);
  const frames = Math.max(1, num(ds.NumberOfFrames) ?? 1);
  if (!positiveInt(rows) || !positiveInt(columns) || !Number.isInteger(frames)) return undefined;
  if ((num(ds.SamplesPerPixel) ?? 1) !== 1) return undefined;
  const bitsAllocated = num(ds.BitsAllocated) ?? 16;
  if (bitsAllocated !== 8 && bitsAllocated !== 16) return undefined;
  const bitsStored = Math.min(bitsAllocated, num(ds.BitsStored) ?? bitsAllocated);
  if (!positiveInt(bitsStored)) return undefined;
  if (px.length < rows * columns * frames * (bitsAllocated / 8)) return undefined;
  return {
    bytes,
    offset: dsOffset + px.valueOffset,
    rows,
    columns,
    frames,
    bitsAllocated,
    bitsStored,
    signed: num(ds.PixelRepresentation) === 1,
    rescale: { slope: num(ds.RescaleSlope) ?? 1, intercept: num(ds.RescaleIntercept) ?? 0 },
  };
}

/** One frame of native pixels: the same arithmetic as decodeOne, on a view of the file's bytes. */
function decodeNative(np: NativePixels, frame: number): DecodedFrame {
  const { rows, columns, bitsAllocated, bitsStored, signed } = np;
  const n = rows * columns;
  const bpp = bitsAllocated / 8;
  const start = np.bytes.byteOffset + np.offset + frame * n * bpp;
  let samples: Uint8Array | Int8Array | Uint16Array | Int16Array;
  if (bitsAllocated === 8) {
    samples = signed ? new Int8Array(np.bytes.buffer, start, n) : new Uint8Array(np.bytes.buffer, start, n);
  } else {
    // A 16-bit view needs an even offset; copy the frame otherwise.
    const aligned = start % 2 === 0 ? np.bytes.buffer : np.bytes.buffer.slice(start, start + 2 * n);
    const at = start % 2 === 0 ? start : 0;
    samples = signed ? new Int16Array(aligned, at, n) : new Uint16Array(aligned, at, n);
  }
  const out = new Float32Array(n);
  const { slope, intercept } = np.rescale;
  if (bitsStored >= bitsAllocated) {
    for (let i = 0; i < n; i++) out[i] = samples[i]! * slope + intercept;
  } else if (signed) {
    // Sign-extend from BitsStored.
    const sh = 32 - bitsStored;
    for (let i = 0; i < n; i++) out[i] = ((samples[i]! << sh) >> sh) * slope + intercept;
  } else {
    // Mask the bits above BitsStored.
    const mask = 2 ** bitsStored - 1;
    for (let i = 0; i < n; i++) out[i] = ((samples[i]! & mask) >>> 0) * slope + intercept;
  }
  return { rows, columns, data: out };
}

/**
 * The fast path alone: one frame of a native little-endian Part 10 file, decoded from its bytes; undefined
 * where the file (or the frame number) is left to the dcmjs path. Where it returns, the frame is bit-identical
 * to the dcmjs path's.
 */
export function decodeFrameFast(bytes: Uint8Array | ArrayBuffer, frame = 0): DecodedFrame | undefined {
  const np = nativePixels(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  if (!np || !Number.isInteger(frame) || frame < 0 || frame >= np.frames) return undefined;
  return decodeNative(np, frame);
}

export interface DecodeOptions {
  /** false: always decode through dcmjs (benchmarks and tests). Default true. */
  fastPath?: boolean;
}

async function sourceBytes(src: PixelSource): Promise<Uint8Array> {
  if (typeof src === 'string') return readFile(src);
  return src instanceof Uint8Array ? src : new Uint8Array(src);
}

/**
 * Decodes one frame (0-based; default 0) of a Part 10 file in any accepted transfer syntax to Float32
 * modality values. Throws PixelDataError when the pixel data is missing, truncated or unsupported.
 * Native little-endian files are decoded straight from their bytes (decodeFrameFast); the others, and
 * anything unusual, through dcmjs (and dcmjs-codecs for compressed syntaxes).
 */
export async function decodeFrame(src: PixelSource, frame = 0, opts: DecodeOptions = {}): Promise<DecodedFrame> {
  if (opts.fastPath !== false) {
    const bytes = await sourceBytes(src);
    const fast = decodeFrameFast(bytes, frame);
    if (fast) return fast;
    // The file is read once: the dcmjs path takes these bytes (an ArrayBuffer source as given).
    if (typeof src === 'string') src = bytes;
  }
  const ds = await nativeDataset(src);
  const pm = pixelModule(ds);
  if (!Number.isInteger(frame) || frame < 0 || frame >= pm.frames) {
    throw new PixelDataError(`frame ${frame} out of range: the file has ${pm.frames} frame(s)`);
  }
  return decodeOne(pm, frame, rescaleFor(ds, frame));
}

/** Decodes every frame of a Part 10 file (one transcode for a compressed multi-frame instance). */
export async function decodeFrames(src: PixelSource, opts: DecodeOptions = {}): Promise<DecodedFrame[]> {
  if (opts.fastPath !== false) {
    const bytes = await sourceBytes(src);
    const np = nativePixels(bytes);
    if (np) return Array.from({ length: np.frames }, (_, f) => decodeNative(np, f));
    // The file is read once: the dcmjs path takes these bytes (an ArrayBuffer source as given).
    if (typeof src === 'string') src = bytes;
  }
  const ds = await nativeDataset(src);
  const pm = pixelModule(ds);
  const out: DecodedFrame[] = [];
  for (let f = 0; f < pm.frames; f++) out.push(decodeOne(pm, f, rescaleFor(ds, f)));
  return out;
}
