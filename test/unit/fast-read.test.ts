/**
 * The tag-walker fast paths (src/dicom/header-scan.ts) against the dcmjs paths they replace:
 * - headers: parseHeaderFast / readInstanceMeta deep-equal metaFromDataset(parseHeader(…)), or decline;
 * - pixels: decodeFrameFast is bit-identical to decodeFrame through dcmjs, or declines.
 * On phantom studies in every phantom transfer syntax and both layouts, on an Enhanced MR, and on crafted
 * files whose values dcmjs reads differently from the walker (those must be declined).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { instanceMetaFromBuffer, metaFromDataset, parseHeader, parseHeaderFast, readInstanceMeta, type InstanceMeta } from '../../src/dicom/meta.js';
import { decodeFrame, decodeFrameFast, decodeFrames, type DecodedFrame } from '../../src/dicom/pixels.js';
import { scanFileMeta, scanHeader } from '../../src/dicom/header-scan.js';
import { SopClass, TransferSyntax, UNCOMPRESSED_TRANSFER_SYNTAXES } from '../../src/dicom/uids.js';
import { generatePhantomStudy, PHANTOM_LAYOUTS, PHANTOM_TRANSFER_SYNTAXES } from '../../src/phantom/index.js';
import { makeTestEnhancedMr, makeTestMr } from '../helpers/dcmtk.js';

const tmp = mkdtempSync(join(tmpdir(), 'sax-fast-read-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Today's path: dcmjs. */
function slowMeta(bytes: Uint8Array, path: string): InstanceMeta[] {
  const { meta, dataset } = parseHeader(bytes);
  return metaFromDataset(dataset, meta, path);
}

/** The outcome of a call: its value, or its error's class and message. */
function outcome<T>(fn: () => T): { value?: T; error?: string } {
  try {
    return { value: fn() };
  } catch (err) {
    return { error: `${(err as Error).name}: ${(err as Error).message}` };
  }
}

function bits(f: DecodedFrame): Buffer {
  return Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength);
}

function expectSameFrame(a: DecodedFrame, b: DecodedFrame): void {
  expect([a.rows, a.columns]).toEqual([b.rows, b.columns]);
  expect(a.data).toBeInstanceOf(Float32Array);
  expect(a.data.length).toBe(b.data.length);
  expect(bits(a).equals(bits(b))).toBe(true);
}

describe('phantom studies: every phantom transfer syntax, both layouts', () => {
  for (const ts of PHANTOM_TRANSFER_SYNTAXES) {
    for (const layout of PHANTOM_LAYOUTS) {
      const native = UNCOMPRESSED_TRANSFER_SYNTAXES.includes(ts);
      it(`${ts}, ${layout}: headers deep-equal dcmjs's${native ? ', frames bit-identical' : ''}`, async () => {
        const { files } = await generatePhantomStudy({ seed: 7, slices: 6, phases: 20, rows: 64, layout, transferSyntax: ts });
        expect(files).toHaveLength(120);
        for (const f of files) {
          const fast = parseHeaderFast(f.data, f.name);
          expect(fast, f.name).toBeDefined();
          expect(fast).toStrictEqual(slowMeta(f.data, f.name));
          expect(fast![0]!.transferSyntaxUID).toBe(ts);
        }
        // readInstanceMeta from disk, both ways, on a few files.
        for (const f of files.slice(0, 3)) {
          const p = join(tmp, `${layout}-${ts}.dcm`);
          writeFileSync(p, f.data);
          expect(await readInstanceMeta(p)).toStrictEqual(await readInstanceMeta(p, { fastPath: false }));
          expect(await readInstanceMeta(p)).toStrictEqual(slowMeta(f.data, p));
        }
        if (native) {
          for (const f of files) {
            const fast = decodeFrameFast(f.data);
            expect(fast, f.name).toBeDefined();
            expectSameFrame(fast!, await decodeFrame(f.data, 0, { fastPath: false }));
          }
        } else {
          // Compressed: the fast path declines; decodeFrame decodes through dcmjs-codecs as before.
          for (const f of files.slice(0, 2)) {
            expect(decodeFrameFast(f.data)).toBeUndefined();
            expectSameFrame(await decodeFrame(f.data), await decodeFrame(f.data, 0, { fastPath: false }));
          }
        }
      });
    }
  }
});

describe('test-helper instances', () => {
  it('classic MR (Explicit and Implicit VR LE, UTF-8 character set): fast headers and frames equal dcmjs', async () => {
    for (const ts of [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian]) {
      const bytes = makeTestMr({ studyInstanceUID: '2.25.10', seriesInstanceUID: '2.25.10.1', sopInstanceUID: '2.25.10.1.1', transferSyntaxUID: ts, seriesDescription: 'cine sax – Kurzachse ♥' });
      const fast = parseHeaderFast(bytes, 'x.dcm');
      expect(fast).toBeDefined();
      expect(fast).toStrictEqual(slowMeta(bytes, 'x.dcm'));
      expect(fast![0]!.seriesDescription).toBe('cine sax – Kurzachse ♥');
      expectSameFrame(decodeFrameFast(bytes)!, await decodeFrame(bytes, 0, { fastPath: false }));
    }
  });

  it('Enhanced MR (functional groups): both fast paths decline; readInstanceMeta and decodeFrame(s) equal dcmjs', async () => {
    const bytes = makeTestEnhancedMr({ studyInstanceUID: '2.25.11', seriesInstanceUID: '2.25.11.1', sopInstanceUID: '2.25.11.1.1', frames: 4 });
    expect(parseHeaderFast(bytes)).toBeUndefined();
    const p = join(tmp, 'enhanced.dcm');
    writeFileSync(p, bytes);
    const metas = await readInstanceMeta(p);
    expect(metas).toHaveLength(4);
    expect(metas).toStrictEqual(slowMeta(bytes, p));
    expect(metas).toStrictEqual(await readInstanceMeta(p, { fastPath: false }));
    expect(instanceMetaFromBuffer(bytes, p)).toStrictEqual(metas);
    for (let f = 0; f < 4; f++) {
      expect(decodeFrameFast(bytes, f)).toBeUndefined();
      expectSameFrame(await decodeFrame(bytes, f), await decodeFrame(bytes, f, { fastPath: false }));
    }
    const all = await decodeFrames(bytes);
    const slow = await decodeFrames(bytes, { fastPath: false });
    all.forEach((fr, i) => expectSameFrame(fr, slow[i]!));
  });
});

// ---------------------------------------------------------------------------------------------------------
// Crafted files: a byte-exact Part 10 writer, so that values can be as odd as senders make them.
// ---------------------------------------------------------------------------------------------------------

const LONG = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

/** An element value: bytes as given, or a string written as latin1 and padded to even length (UI: NUL, else space). */
type Value = string | Buffer;

function us(...v: number[]): Buffer {
  const b = Buffer.alloc(2 * v.length);
  v.forEach((x, i) => b.writeUInt16LE(x & 0xffff, 2 * i));
  return b;
}

function valueBytes(vr: string, v: Value): Buffer {
  if (Buffer.isBuffer(v)) return v;
  const b = Buffer.from(v, 'latin1');
  return b.length % 2 ? Buffer.concat([b, Buffer.from([vr === 'UI' ? 0 : 0x20])]) : b;
}

function element(tag: number, vr: string, value: Value, explicit: boolean, undefinedLength = false): Buffer {
  const v = valueBytes(vr, value);
  const len = undefinedLength ? 0xffffffff : v.length;
  let h: Buffer;
  if (!explicit) {
    h = Buffer.alloc(8);
    h.writeUInt32LE(len, 4);
  } else if (LONG.has(vr)) {
    h = Buffer.alloc(12);
    h.write(vr, 4, 'latin1');
    h.writeUInt32LE(len, 8);
  } else {
    h = Buffer.alloc(8);
    h.write(vr, 4, 'latin1');
    h.writeUInt16LE(len, 6);
  }
  h.writeUInt16LE(tag >>> 16, 0);
  h.writeUInt16LE(tag & 0xffff, 2);
  return Buffer.concat([h, v]);
}

function fileMeta(ts: string, opts: { noGroupLength?: boolean } = {}): Buffer {
  const els = Buffer.concat([
    element(0x00020001, 'OB', Buffer.from([0, 1]), true),
    element(0x00020002, 'UI', SopClass.MRImageStorage, true),
    element(0x00020003, 'UI', '2.25.77.1', true),
    element(0x00020010, 'UI', ts, true),
    element(0x00020012, 'UI', '2.25.99', true),
  ]);
  const gl = Buffer.alloc(4);
  gl.writeUInt32LE(els.length, 0);
  const preamble = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1')]);
  return Buffer.concat([preamble, opts.noGroupLength ? Buffer.alloc(0) : element(0x00020000, 'UL', gl, true), els]);
}

const PIXELS = us(...Array.from({ length: 16 }, (_, i) => i * 300 + 5));

/** A 4×4 MR image (sorted elements); `edit` replaces (value), removes (null) or adds elements by tag. */
function crafted(
  edit: Record<number, [string, Value] | null> = {},
  opts: { ts?: string; noGroupLength?: boolean; after?: Buffer; raw?: Buffer[] } = {},
): Buffer {
  const ts = opts.ts ?? TransferSyntax.ExplicitVRLittleEndian;
  const explicit = ts !== TransferSyntax.ImplicitVRLittleEndian;
  const base = new Map<number, [string, Value]>([
    [0x00080008, ['CS', 'ORIGINAL\\PRIMARY\\OTHER']],
    [0x00080016, ['UI', SopClass.MRImageStorage]],
    [0x00080018, ['UI', '2.25.77.1']],
    [0x00080060, ['CS', 'MR']],
    [0x0008103e, ['LO', 'cine sax']],
    [0x00100010, ['PN', 'Doe^Jane']],
    [0x00180050, ['DS', '8']],
    [0x00181060, ['DS', '40.5']],
    [0x00181090, ['IS', '25']],
    [0x0020000d, ['UI', '2.25.77']],
    [0x0020000e, ['UI', '2.25.77.2']],
    [0x00200011, ['IS', '5']],
    [0x00200013, ['IS', '3']],
    [0x00200032, ['DS', '-100\\-100.5\\20']],
    [0x00200037, ['DS', '1\\0\\0\\0\\1\\0']],
    [0x00200052, ['UI', '2.25.77.9']],
    [0x00200100, ['IS', '2']],
    [0x00201041, ['DS', '20']],
    [0x00280002, ['US', us(1)]],
    [0x00280004, ['CS', 'MONOCHROME2']],
    [0x00280010, ['US', us(4)]],
    [0x00280011, ['US', us(4)]],
    [0x00280030, ['DS', '1.5\\1.5']],
    [0x00280100, ['US', us(16)]],
    [0x00280101, ['US', us(12)]],
    [0x00280102, ['US', us(11)]],
    [0x00280103, ['US', us(0)]],
    [0x00281052, ['DS', '-3.25']],
    [0x00281053, ['DS', '0.7']],
    [0x7fe00010, ['OW', PIXELS]],
  ]);
  for (const [tag, v] of Object.entries(edit)) {
    if (v === null) base.delete(Number(tag));
    else base.set(Number(tag), v);
  }
  const els = [...base.entries()].sort((a, b) => a[0] - b[0]).map(([tag, [vr, v]]) => element(tag, vr, v, explicit));
  const pixelIndex = [...base.keys()].sort((a, b) => a - b).indexOf(0x7fe00010);
  if (opts.raw) els.splice(pixelIndex === -1 ? els.length : pixelIndex, 0, ...opts.raw);
  return Buffer.concat([fileMeta(ts, opts), ...els, opts.after ?? Buffer.alloc(0)]);
}

/** Fast path taken and equal to dcmjs. */
function expectFastEqual(bytes: Buffer): InstanceMeta[] {
  const fast = parseHeaderFast(bytes, 'c.dcm');
  expect(fast).toBeDefined();
  expect(fast).toStrictEqual(slowMeta(bytes, 'c.dcm'));
  return fast!;
}

/** Fast path declined; the public entry gives exactly what dcmjs gives (a value or the same error). */
function expectDeclined(bytes: Buffer): { value?: InstanceMeta[]; error?: string } {
  expect(parseHeaderFast(bytes, 'c.dcm')).toBeUndefined();
  const viaEntry = outcome(() => instanceMetaFromBuffer(bytes, 'c.dcm'));
  expect(viaEntry).toStrictEqual(outcome(() => slowMeta(bytes, 'c.dcm')));
  return viaEntry;
}

describe('crafted headers: regular values take the fast path and equal dcmjs', () => {
  it('the base file, in Explicit and Implicit VR LE; all wanted pixel attributes are read', () => {
    const m = expectFastEqual(crafted())[0]!;
    expect(m).toMatchObject({ rows: 4, columns: 4, sliceThickness: 8, triggerTime: 40.5, imagePositionPatient: [-100, -100.5, 20], seriesDescription: 'cine sax' });
    expectFastEqual(crafted({}, { ts: TransferSyntax.ImplicitVRLittleEndian }));
    const bytes = crafted();
    const fm = scanFileMeta(bytes)!;
    expect(fm.transferSyntaxUID).toBe(TransferSyntax.ExplicitVRLittleEndian);
    const scan = scanHeader(bytes.subarray(fm.datasetOffset), true);
    expect(scan.irregular).toEqual([]);
    expect(scan.dataset).toMatchObject({ BitsStored: 12, HighBit: 11, PixelRepresentation: 0, PhotometricInterpretation: 'MONOCHROME2', RescaleSlope: 0.7, RescaleIntercept: -3.25 });
    expect(scan.dataset).not.toHaveProperty('PatientName');
  });

  it('padding and spacing dcmjs strips the same way', () => {
    expectFastEqual(crafted({ 0x0020000d: ['UI', Buffer.from('2.25.77 ', 'latin1')] }));
    expectFastEqual(crafted({ 0x0020000d: ['UI', Buffer.from('2.25.7\0\0', 'latin1')] }));
    expectFastEqual(crafted({ 0x00180050: ['DS', ' 8.0 '], 0x00200013: ['IS', '+7'], 0x00200032: ['DS', ' 1e1\\-2E-1 \\3'] }));
    expectFastEqual(crafted({ 0x0008103e: ['LO', '  cine sax  '], 0x00080060: ['CS', ' MR '] }));
    expectFastEqual(crafted({ 0x0008103e: ['LO', ''], 0x00181060: ['DS', ''], 0x00080008: ['CS', ''] }));
    expectFastEqual(crafted({ 0x00080008: ['CS', 'ORIGINAL\\PRIMARY\\\\'] }));
  });

  it('non-ASCII text in Latin-1 and UTF-8', () => {
    const latin1 = expectFastEqual(crafted({ 0x00080005: ['CS', 'ISO_IR 100'], 0x0008103e: ['LO', Buffer.from('Kardio-MR é', 'latin1')] }));
    expect(latin1[0]!.seriesDescription).toBe('Kardio-MR é');
    const utf8 = expectFastEqual(crafted({ 0x00080005: ['CS', 'ISO_IR 192'], 0x0008103e: ['LO', Buffer.from('Kurzachse ♥ ', 'utf8')] }));
    expect(utf8[0]!.seriesDescription).toBe('Kurzachse ♥');
    // ASCII text under a character set the walker does not decode, but dcmjs accepts.
    expectFastEqual(crafted({ 0x00080005: ['CS', 'ISO_IR 144'] }));
  });

  it('wanted tags inside sequences (defined and undefined length) are not top-level values', () => {
    const item = Buffer.concat([element(0x00280010, 'US', us(99), true), element(0x00200032, 'DS', '9\\9\\9', true)]);
    const itemHdr = Buffer.alloc(8);
    itemHdr.writeUInt32LE(0xe000fffe, 0);
    itemHdr.writeUInt32LE(item.length, 4);
    const undefItem = Buffer.alloc(8);
    undefItem.writeUInt32LE(0xe000fffe, 0);
    undefItem.writeUInt32LE(0xffffffff, 4);
    const itemEnd = Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
    const seqEnd = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    const sqDefined = element(0x00081140, 'SQ', Buffer.concat([itemHdr, item]), true);
    const sqUndefined = Buffer.concat([element(0x00081250, 'SQ', Buffer.alloc(0), true, true), undefItem, item, itemEnd, seqEnd]);
    const m = expectFastEqual(crafted({}, { raw: [sqDefined, sqUndefined] }))[0]!;
    expect(m.rows).toBe(4);
    expect(m.imagePositionPatient).toEqual([-100, -100.5, 20]);
  });
});

describe('crafted headers: values dcmjs reads otherwise are declined (result = dcmjs)', () => {
  it('LO with a backslash, a NUL, a windows-1252 byte, invalid UTF-8, a no-break space', () => {
    expect(expectDeclined(crafted({ 0x0008103e: ['LO', 'cine\\sax'] })).value![0]!.seriesDescription).toBe('cine');
    expectDeclined(crafted({ 0x0008103e: ['LO', Buffer.from('cine sa\0', 'latin1')] }));
    expectDeclined(crafted({ 0x0008103e: ['LO', Buffer.from('cine \x96 sax', 'latin1')] }));
    expectDeclined(crafted({ 0x00080005: ['CS', 'ISO_IR 192'], 0x0008103e: ['LO', Buffer.from([0x63, 0xc3, 0x28, 0x20])] }));
    expectDeclined(crafted({ 0x00080005: ['CS', 'ISO_IR 100'], 0x0008103e: ['LO', Buffer.from('cine\xa0', 'latin1')] }));
  });

  it('UIDs, CS, DS and IS with characters dcmjs drops or keeps', () => {
    expect(expectDeclined(crafted({ 0x0020000d: ['UI', '2.25.a77'] })).value![0]!.studyInstanceUID).toBe('2.25.77');
    expectDeclined(crafted({ 0x0020000d: ['UI', '2.25.77\\2.25.78'] }));
    expectDeclined(crafted({ 0x00080060: ['CS', Buffer.from('MR\0\0', 'latin1')] }));
    expect(expectDeclined(crafted({ 0x00180050: ['DS', '8mm'] })).value![0]!.sliceThickness).toBe(8);
    expect(expectDeclined(crafted({ 0x00200032: ['DS', '1\\\\3'] })).value![0]!.imagePositionPatient).toEqual([1, 0, 3]);
    expectDeclined(crafted({ 0x00200013: ['IS', '3 4'] }));
  });

  it('VRs other than the dictionary\'s, odd or empty US, unknown VRs, undefined-length values', () => {
    expectDeclined(crafted({ 0x00280010: ['SS', us(4)] }));
    expectDeclined(crafted({ 0x00180050: ['FD', Buffer.alloc(8)] }));
    expectDeclined(crafted({ 0x00280010: ['US', Buffer.alloc(0)] }));
    expectDeclined(crafted({ 0x00280010: ['US', Buffer.from([4, 0, 0, 0]).subarray(0, 3)] }));
    expectDeclined(crafted({ 0x00291010: ['ZZ', Buffer.from('ab')] }));
    const unUndefined = Buffer.concat([element(0x00280030, 'UN', Buffer.alloc(0), true, true), Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0])]);
    expectDeclined(crafted({ 0x00280030: null }, { raw: [unUndefined] }));
  });

  it('Specific Character Sets dcmjs refuses: both throw the same InvalidInstanceError', () => {
    for (const cs of ['ISO_IR 999', '\\ISO 2022 IR 100']) {
      const r = expectDeclined(crafted({ 0x00080005: ['CS', cs] }));
      expect(r.error).toMatch(/^InvalidInstanceError: /);
    }
  });

  it('file meta without group length, Big Endian / Deflated / unknown syntaxes, truncation, not DICOM', () => {
    expect(expectDeclined(crafted({}, { noGroupLength: true })).error).toMatch(/InvalidInstanceError: .*meta length/);
    expectDeclined(crafted({}, { ts: '1.2.840.10008.1.2.2' }));
    expectDeclined(crafted({}, { ts: '1.2.840.10008.1.2.1.99' }));
    expectDeclined(crafted({}, { ts: '1.2.3.4' }));
    const whole = crafted({ 0x7fe00010: null });
    expectDeclined(whole.subarray(0, whole.length - 5));
    expectDeclined(Buffer.alloc(100));
    expect(outcome(() => instanceMetaFromBuffer(Buffer.alloc(100), 'x')).error).toMatch(/^InvalidInstanceError/);
  });
});

describe('readInstanceMeta from disk', () => {
  it('a header longer than the first read (64 kB): reads on and still takes the fast path', async () => {
    const big = element(0x00291010, 'OB', Buffer.alloc(100_000, 0x41), true);
    const bytes = crafted({}, { raw: [big] });
    const p = join(tmp, 'long-header.dcm');
    writeFileSync(p, bytes);
    expect(parseHeaderFast(bytes, p)).toBeDefined();
    expect(await readInstanceMeta(p)).toStrictEqual(slowMeta(bytes, p));
  });

  it('files that are not DICOM, or too short, fail as before', async () => {
    for (const [name, bytes] of [['short.dcm', Buffer.alloc(50)], ['zeros.dcm', Buffer.alloc(300)]] as const) {
      const p = join(tmp, name);
      writeFileSync(p, bytes);
      const fast = await readInstanceMeta(p).then(
        (v) => ({ v }),
        (e: Error) => ({ e: `${e.name}: ${e.message}` }),
      );
      const slow = await readInstanceMeta(p, { fastPath: false }).then(
        (v) => ({ v }),
        (e: Error) => ({ e: `${e.name}: ${e.message}` }),
      );
      expect(fast).toStrictEqual(slow);
      expect('e' in fast).toBe(true);
    }
  });
});

describe('crafted pixels: the fast path declines what it cannot match exactly', () => {
  it('the base file decodes fast and bit-identically (BitsStored 12, fractional rescale)', async () => {
    for (const ts of [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian]) {
      const bytes = crafted({}, { ts });
      const fast = decodeFrameFast(bytes);
      expect(fast).toBeDefined();
      expectSameFrame(fast!, await decodeFrame(bytes, 0, { fastPath: false }));
    }
  });

  it('trailing data after Pixel Data, Float Pixel Data, colour, 32 bits, odd values: declined, decodeFrame = dcmjs', async () => {
    const cases: Buffer[] = [
      crafted({}, { after: element(0xfffcfffc, 'OB', Buffer.alloc(4), true) }),
      crafted({ 0x7fe00010: null, 0x7fe00008: ['OF', Buffer.alloc(64)] }),
      crafted({ 0x00280002: ['US', us(3)], 0x00280006: ['US', us(0)], 0x7fe00010: ['OW', Buffer.alloc(96)] }),
      crafted({ 0x00280100: ['US', us(32)], 0x00280101: ['US', us(32)], 0x7fe00010: ['OW', Buffer.alloc(64)] }),
      crafted({ 0x00281053: ['DS', '0.7mm'] }),
      crafted({ 0x00280101: ['US', us(0)] }),
      crafted({ 0x7fe00010: ['OW', PIXELS.subarray(0, 20)] }),
    ];
    for (const bytes of cases) {
      expect(decodeFrameFast(bytes)).toBeUndefined();
      const fast = await decodeFrame(bytes).then((f) => ({ f }), (e: Error) => ({ e: e.message }));
      const slow = await decodeFrame(bytes, 0, { fastPath: false }).then((f) => ({ f }), (e: Error) => ({ e: e.message }));
      if ('f' in fast && 'f' in slow) expectSameFrame(fast.f, slow.f);
      else expect(fast).toStrictEqual(slow);
    }
  });
});
