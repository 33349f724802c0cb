import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import dcmjs from 'dcmjs';
import codecs from 'dcmjs-codecs';
import { decodeFrame, decodeFrameFast, decodeFrames, initCodecs, PixelDataError, type DecodedFrame } from '../../src/dicom/pixels.js';
import { SopClass, TransferSyntax } from '../../src/dicom/uids.js';

const { DicomDict, DicomMetaDictionary, DicomMessage } = dcmjs.data;
const { Transcoder } = codecs;

interface BuildOpts {
  rows?: number;
  columns?: number;
  frames?: number;
  bitsAllocated?: 8 | 16;
  bitsStored?: number;
  signed?: boolean;
  slope?: number;
  intercept?: number;
  transferSyntax?: string;
  /** Raw sample values, frame after frame (defaults to a ramp). */
  samples?: number[];
  /** Bytes of pixel data to keep (truncate); undefined = all. */
  truncateTo?: number;
  noPixelData?: boolean;
}

/** A Part 10 MR image built with dcmjs (DicomDict + denaturalizeDataset). */
function buildDicom(o: BuildOpts = {}): { bytes: Uint8Array; samples: number[] } {
  const rows = o.rows ?? 4;
  const columns = o.columns ?? 5;
  const frames = o.frames ?? 1;
  const bits = o.bitsAllocated ?? 16;
  const n = rows * columns * frames;
  const samples = o.samples ?? [...Array(n).keys()].map((i) => (o.signed ? i * 37 - 300 : i * 37));
  const buf = new ArrayBuffer(n * (bits / 8));
  const view = new DataView(buf);
  samples.forEach((v, i) => {
    if (bits === 8) view.setUint8(i, v & 0xff);
    else view.setUint16(i * 2, v & 0xffff, true);
  });
  const pixel = o.truncateTo !== undefined ? buf.slice(0, o.truncateTo) : buf;
  const sop = `2.25.${1000 + Math.floor(Math.random() * 1e9)}`;
  const ds: Record<string, unknown> = {
    SOPClassUID: SopClass.MRImageStorage,
    SOPInstanceUID: sop,
    StudyInstanceUID: '2.25.1',
    SeriesInstanceUID: '2.25.2',
    Modality: 'MR',
    Rows: rows,
    Columns: columns,
    BitsAllocated: bits,
    BitsStored: o.bitsStored ?? bits,
    HighBit: (o.bitsStored ?? bits) - 1,
    PixelRepresentation: o.signed ? 1 : 0,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    ...(frames > 1 ? { NumberOfFrames: String(frames) } : {}),
    ...(o.slope !== undefined ? { RescaleSlope: String(o.slope) } : {}),
    ...(o.intercept !== undefined ? { RescaleIntercept: String(o.intercept) } : {}),
    ...(o.noPixelData ? {} : { PixelData: [pixel] }),
    _vrMap: { PixelData: bits === 8 ? 'OB' : 'OW' },
  };
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: SopClass.MRImageStorage,
    MediaStorageSOPInstanceUID: sop,
    TransferSyntaxUID: o.transferSyntax ?? TransferSyntax.ExplicitVRLittleEndian,
    ImplementationClassUID: '2.25.99',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
  return { bytes: new Uint8Array(dict.write()), samples };
}

/** Transcodes a Part 10 file with dcmjs-codecs (the encoder side of a round trip). */
async function transcode(bytes: Uint8Array, ts: string): Promise<Uint8Array> {
  await initCodecs();
  const t = new Transcoder(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  t.transcode(ts);
  return new Uint8Array(t.getDicomPart10());
}

function transferSyntaxOf(bytes: Uint8Array): string {
  const dict = DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), {
    untilTag: '7FE00010',
  });
  return DicomMetaDictionary.naturalizeDataset(dict.meta).TransferSyntaxUID;
}

const tmp = mkdtempSync(join(tmpdir(), 'sax-pixels-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('decodeFrame: native transfer syntaxes', () => {
  it('decodes unsigned 16-bit Explicit VR LE with RescaleSlope/Intercept applied', async () => {
    const { bytes, samples } = buildDicom({ slope: 2, intercept: -100 });
    const f = await decodeFrame(bytes);
    expect(f.rows).toBe(4);
    expect(f.columns).toBe(5);
    expect(f.data).toBeInstanceOf(Float32Array);
    expect(Array.from(f.data)).toEqual(samples.map((v) => v * 2 - 100));
  });

  it('decodes signed 16-bit (negative values) in Implicit VR LE', async () => {
    const { bytes, samples } = buildDicom({ signed: true, transferSyntax: TransferSyntax.ImplicitVRLittleEndian });
    expect(transferSyntaxOf(bytes)).toBe(TransferSyntax.ImplicitVRLittleEndian);
    const f = await decodeFrame(bytes);
    expect(Math.min(...f.data)).toBeLessThan(0);
    expect(Array.from(f.data)).toEqual(samples);
  });

  it('decodes unsigned and signed 8-bit', async () => {
    const u = buildDicom({ bitsAllocated: 8, samples: [0, 1, 127, 128, 255, 7] , rows: 2, columns: 3 });
    expect(Array.from((await decodeFrame(u.bytes)).data)).toEqual([0, 1, 127, 128, 255, 7]);
    const s = buildDicom({ bitsAllocated: 8, signed: true, samples: [0, 1, 127, -128, -1, -7], rows: 2, columns: 3 });
    expect(Array.from((await decodeFrame(s.bytes)).data)).toEqual([0, 1, 127, -128, -1, -7]);
  });

  it('masks bits above BitsStored (unsigned) and sign-extends from BitsStored (signed)', async () => {
    const u = buildDicom({ bitsStored: 12, samples: [0xf123, 0x0fff, 0x1000, 5], rows: 2, columns: 2 });
    expect(Array.from((await decodeFrame(u.bytes)).data)).toEqual([0x123, 0xfff, 0, 5]);
    const s = buildDicom({ bitsStored: 12, signed: true, samples: [0x0fff, 0x0800, 0x07ff, 0xffff], rows: 2, columns: 2 });
    expect(Array.from((await decodeFrame(s.bytes)).data)).toEqual([-1, -2048, 2047, -1]);
  });

  it('picks the requested frame of a multi-frame instance; decodeFrames returns them all', async () => {
    const { bytes, samples } = buildDicom({ frames: 3, slope: 0.5 });
    const per = 20;
    const f2 = await decodeFrame(bytes, 2);
    expect(Array.from(f2.data)).toEqual(samples.slice(2 * per, 3 * per).map((v) => v * 0.5));
    const all = await decodeFrames(bytes);
    expect(all).toHaveLength(3);
    expect(Array.from(all[1]!.data)).toEqual(samples.slice(per, 2 * per).map((v) => v * 0.5));
    await expect(decodeFrame(bytes, 3)).rejects.toThrow(/frame 3 out of range: the file has 3 frame/);
  });

  it('reads from a path as well as from bytes', async () => {
    const { bytes, samples } = buildDicom({ intercept: 10 });
    const path = join(tmp, 'native.dcm');
    writeFileSync(path, bytes);
    expect(Array.from((await decodeFrame(path)).data)).toEqual(samples.map((v) => v + 10));
  });
});

describe('decodeFrame: errors', () => {
  it('says so when the pixel data is missing', async () => {
    const { bytes } = buildDicom({ noPixelData: true });
    await expect(decodeFrame(bytes)).rejects.toBeInstanceOf(PixelDataError);
    await expect(decodeFrame(bytes)).rejects.toThrow(/no pixel data/);
  });

  it('says so when the pixel data is shorter than Rows × Columns × frames × bytes', async () => {
    const { bytes } = buildDicom({ frames: 2, truncateTo: 60 });
    await expect(decodeFrame(bytes)).rejects.toThrow(/pixel data too short: 60 bytes for 2 frame\(s\) of 4×5×1 at 16 bits \(80 bytes expected\)/);
  });

  it('rejects a file that is not DICOM and a transfer syntax outside the accepted list', async () => {
    await expect(decodeFrame(new Uint8Array(300))).rejects.toThrow(/not a readable DICOM/);
    const { bytes } = buildDicom({ transferSyntax: '1.2.840.10008.1.2.2' });
    await expect(decodeFrame(bytes)).rejects.toThrow(/1\.2\.840\.10008\.1\.2\.2 is not supported/);
  });
});

describe('decodeFrame: compressed transfer syntaxes (round trip through dcmjs-codecs)', () => {
  const lossless: Array<[string, string]> = [
    ['RLE Lossless', TransferSyntax.RleLossless],
    ['JPEG-LS Lossless', TransferSyntax.JpegLsLossless],
    ['JPEG Lossless SV1', TransferSyntax.JpegLosslessSV1],
    ['JPEG 2000 Lossless', TransferSyntax.Jpeg2000Lossless],
  ];
  for (const [name, ts] of lossless) {
    it(`${name}: unsigned 16-bit multi-frame with rescale decodes exactly`, async () => {
      const rows = 16;
      const columns = 12;
      const samples = [...Array(rows * columns * 2).keys()].map((i) => (i * 97) % 4000);
      const { bytes } = buildDicom({ rows, columns, frames: 2, bitsStored: 12, samples, slope: 1.5, intercept: 3 });
      const enc = await transcode(bytes, ts);
      expect(transferSyntaxOf(enc)).toBe(ts);
      const f1 = await decodeFrame(enc, 1);
      expect(Array.from(f1.data)).toEqual(samples.slice(rows * columns).map((v) => v * 1.5 + 3));
      const all = await decodeFrames(enc);
      expect(Array.from(all[0]!.data)).toEqual(samples.slice(0, rows * columns).map((v) => v * 1.5 + 3));
    });
  }

  it('RLE Lossless: signed 16-bit decodes exactly', async () => {
    const samples = [...Array(64).keys()].map((i) => i * 101 - 3000);
    const { bytes } = buildDicom({ rows: 8, columns: 8, signed: true, samples });
    const enc = await transcode(bytes, TransferSyntax.RleLossless);
    expect(Array.from((await decodeFrame(enc)).data)).toEqual(samples);
  });

  it('JPEG-LS near-lossless stays within the allowed error', async () => {
    const samples = [...Array(256).keys()].map((i) => (i * 13) % 1000);
    const { bytes } = buildDicom({ rows: 16, columns: 16, samples });
    const enc = await transcode(bytes, TransferSyntax.JpegLsNearLossless);
    expect(transferSyntaxOf(enc)).toBe(TransferSyntax.JpegLsNearLossless);
    const f = await decodeFrame(enc);
    const err = Math.max(...Array.from(f.data).map((v, i) => Math.abs(v - samples[i]!)));
    expect(err).toBeLessThanOrEqual(10);
  });
});

describe('fast path (native little endian, straight from the bytes) = dcmjs path, bit for bit', () => {
  const bitsOf = (f: DecodedFrame) => Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);

  /** decodeFrameFast is taken for every frame and equals decodeFrame through dcmjs; so do decodeFrame(s). */
  async function expectBothPaths(bytes: Uint8Array, frames = 1): Promise<void> {
    const slowAll = await decodeFrames(bytes, { fastPath: false });
    const fastAll = await decodeFrames(bytes);
    expect(fastAll).toHaveLength(frames);
    for (let f = 0; f < frames; f++) {
      const fast = decodeFrameFast(bytes, f);
      expect(fast, `frame ${f}`).toBeDefined();
      const slow = await decodeFrame(bytes, f, { fastPath: false });
      expect([fast!.rows, fast!.columns]).toEqual([slow.rows, slow.columns]);
      expect(bitsOf(fast!).equals(bitsOf(slow))).toBe(true);
      expect(bitsOf(await decodeFrame(bytes, f)).equals(bitsOf(slow))).toBe(true);
      expect(bitsOf(fastAll[f]!).equals(bitsOf(slowAll[f]!))).toBe(true);
    }
    expect(decodeFrameFast(bytes, frames)).toBeUndefined();
    expect(decodeFrameFast(bytes, -1)).toBeUndefined();
    expect(decodeFrameFast(bytes, 0.5)).toBeUndefined();
  }

  // The native cases above, replayed through both paths.
  const cases: Array<[string, BuildOpts, number?]> = [
    ['unsigned 16-bit, slope 2, intercept -100', { slope: 2, intercept: -100 }],
    ['signed 16-bit, Implicit VR LE', { signed: true, transferSyntax: TransferSyntax.ImplicitVRLittleEndian }],
    ['unsigned 8-bit', { bitsAllocated: 8, samples: [0, 1, 127, 128, 255, 7], rows: 2, columns: 3 }],
    ['signed 8-bit', { bitsAllocated: 8, signed: true, samples: [0, 1, 127, -128, -1, -7], rows: 2, columns: 3 }],
    ['BitsStored 12 unsigned (masked)', { bitsStored: 12, samples: [0xf123, 0x0fff, 0x1000, 5], rows: 2, columns: 2 }],
    ['BitsStored 12 signed (sign-extended)', { bitsStored: 12, signed: true, samples: [0x0fff, 0x0800, 0x07ff, 0xffff], rows: 2, columns: 2 }],
    ['3 frames, slope 0.5', { frames: 3, slope: 0.5 }, 3],
    ['intercept 10', { intercept: 10 }],
    // More of the same kind.
    ['fractional rescale (float32 rounding)', { slope: 0.37, intercept: -1024.3, bitsStored: 12, samples: [...Array(20).keys()].map((i) => i * 211) }],
    ['signed 8-bit, BitsStored 6, Implicit VR LE', { bitsAllocated: 8, bitsStored: 6, signed: true, samples: [0, 31, 32, 63, 64, -1], rows: 2, columns: 3, transferSyntax: TransferSyntax.ImplicitVRLittleEndian }],
    ['unsigned 8-bit, BitsStored 7, 2 frames', { bitsAllocated: 8, bitsStored: 7, frames: 2, samples: [...Array(40).keys()].map((i) => i * 7) }, 2],
    ['signed 16-bit, full range, slope -1', { signed: true, slope: -1, samples: [-32768, 32767, -1, 0, 1, ...Array(15).fill(12345)] }],
  ];
  for (const [name, opts, frames] of cases) {
    it(name, async () => {
      await expectBothPaths(buildDicom(opts).bytes, frames ?? 1);
    });
  }

  it('a buffer at an odd byte offset (16-bit samples copied rather than viewed)', async () => {
    const { bytes } = buildDicom({ frames: 2, signed: true, bitsStored: 12, slope: 1.5 });
    const backing = new Uint8Array(bytes.length + 1);
    backing.set(bytes, 1);
    const odd = backing.subarray(1);
    expect(odd.byteOffset % 2).toBe(1);
    await expectBothPaths(odd, 2);
    expect(bitsOf(decodeFrameFast(odd, 1)!).equals(bitsOf(decodeFrameFast(bytes, 1)!))).toBe(true);
  });

  it('an ArrayBuffer and a path decode the same as bytes', async () => {
    const { bytes } = buildDicom({ intercept: 3 });
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    const path = join(tmp, 'fast.dcm');
    writeFileSync(path, bytes);
    const ref = bitsOf(await decodeFrame(bytes, 0, { fastPath: false }));
    expect(bitsOf(decodeFrameFast(ab)!).equals(ref)).toBe(true);
    expect(bitsOf(await decodeFrame(path)).equals(ref)).toBe(true);
  });

  it('declines what the dcmjs path handles or rejects: compressed, errors, Big Endian, not DICOM', async () => {
    const { bytes } = buildDicom({ rows: 8, columns: 8, samples: [...Array(64).keys()] });
    expect(decodeFrameFast(await transcode(bytes, TransferSyntax.RleLossless))).toBeUndefined();
    expect(decodeFrameFast(buildDicom({ noPixelData: true }).bytes)).toBeUndefined();
    expect(decodeFrameFast(buildDicom({ frames: 2, truncateTo: 60 }).bytes)).toBeUndefined();
    expect(decodeFrameFast(buildDicom({ transferSyntax: '1.2.840.10008.1.2.2' }).bytes)).toBeUndefined();
    expect(decodeFrameFast(new Uint8Array(300))).toBeUndefined();
  });
});
