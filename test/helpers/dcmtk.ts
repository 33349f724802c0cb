/**
 * Test and bench helpers around DCMTK (storescu, echoscu, storescp), a synthetic MR writer (dcmjs) and a
 * minimal raw C-STORE SCU for the cases DCMTK refuses to send (truncated data, a SOP class that does not
 * match the presentation context).
 */
import { spawn } from 'node:child_process';
import { createServer, Socket } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import dcmjs from 'dcmjs';

const { DicomDict, DicomMetaDictionary } = dcmjs.data;

export const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
export const SECONDARY_CAPTURE_STORAGE = '1.2.840.10008.5.1.4.1.1.7';
export const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const IMPLICIT_LE = '1.2.840.10008.1.2';

/** A TCP port that was free a moment ago (bind to 0, read it back, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout + stderr, for assertions on DCMTK's messages. */
  output: string;
  ms: number;
}

/** Runs a DCMTK tool with TCP_NODELAY=1 (without it every C-STORE waits ~40 ms for Nagle). */
export function runTool(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: { ...process.env, TCP_NODELAY: '1', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, output: stdout + stderr, ms: performance.now() - t0 });
    });
  });
}

export interface ScuTarget {
  host?: string;
  port: number;
  calledAE: string;
  callingAE?: string;
}

/** storescu → target. `extra` goes before host/port (e.g. ['-xt'], ['-nh'], ['-v']). */
export function storescu(target: ScuTarget, files: string[], extra: string[] = [], timeoutMs = 120_000): Promise<ToolResult> {
  return runTool(
    'storescu',
    ['-aec', target.calledAE, '-aet', target.callingAE ?? 'STORESCU', ...extra, target.host ?? '127.0.0.1', String(target.port), ...files],
    { timeoutMs },
  );
}

/** echoscu → target. */
export function echoscu(target: ScuTarget, extra: string[] = []): Promise<ToolResult> {
  return runTool('echoscu', ['-aec', target.calledAE, '-aet', target.callingAE ?? 'ECHOSCU', ...extra, target.host ?? '127.0.0.1', String(target.port)], {
    timeoutMs: 30_000,
  });
}

/** Whether an executable is on PATH (tests skip what they cannot run). */
export async function hasTool(cmd: string): Promise<boolean> {
  try {
    const r = await runTool('sh', ['-c', `command -v ${cmd}`], { timeoutMs: 5000 });
    return r.code === 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Synthetic MR
// ---------------------------------------------------------------------------------------------------------

export interface TestMrOptions {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
  sopClassUID?: string;
  rows?: number;
  columns?: number;
  instanceNumber?: number;
  sliceIndex?: number;
  phaseIndex?: number;
  transferSyntaxUID?: string;
  seriesDescription?: string;
  /** Seed for the pixel pattern. */
  seed?: number;
}

/** A small valid cine MR instance (dcmjs): geometry, timing, 16-bit pixels. Returns the Part 10 bytes. */
export function makeTestMr(o: TestMrOptions): Buffer {
  const rows = o.rows ?? 64;
  const columns = o.columns ?? 64;
  const slice = o.sliceIndex ?? 0;
  const phase = o.phaseIndex ?? 0;
  const seed = o.seed ?? slice * 31 + phase;
  const px = new Uint16Array(rows * columns);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7 + seed * 13 + ((i / columns) | 0) * 3) % 1500;
  const isSc = (o.sopClassUID ?? MR_IMAGE_STORAGE) === SECONDARY_CAPTURE_STORAGE;
  const ds: Record<string, unknown> = {
    SpecificCharacterSet: 'ISO_IR 192',
    ImageType: ['ORIGINAL', 'PRIMARY', 'OTHER'],
    SOPClassUID: o.sopClassUID ?? MR_IMAGE_STORAGE,
    SOPInstanceUID: o.sopInstanceUID,
    StudyDate: '20240101',
    StudyTime: '120000',
    AccessionNumber: '',
    Modality: isSc ? 'OT' : 'MR',
    Manufacturer: 'sax-range test',
    ReferringPhysicianName: '',
    SeriesDescription: o.seriesDescription ?? 'cine sax',
    PatientName: 'Test^Patient',
    PatientID: 'TEST-0001',
    PatientBirthDate: '',
    PatientSex: 'O',
    ScanningSequence: 'GR',
    SequenceVariant: 'SS',
    ScanOptions: 'CG',
    MRAcquisitionType: '2D',
    SliceThickness: 8,
    RepetitionTime: 40,
    EchoTime: 1.5,
    EchoTrainLength: 1,
    TriggerTime: phase * 40,
    CardiacNumberOfImages: 25,
    StudyInstanceUID: o.studyInstanceUID,
    SeriesInstanceUID: o.seriesInstanceUID,
    StudyID: '1',
    SeriesNumber: 5,
    InstanceNumber: o.instanceNumber ?? 1,
    ImagePositionPatient: [-100, -100, slice * 10],
    ImageOrientationPatient: [1, 0, 0, 0, 1, 0],
    FrameOfReferenceUID: `${o.studyInstanceUID}.9`,
    PositionReferenceIndicator: '',
    SliceLocation: slice * 10,
    TemporalPositionIdentifier: phase + 1,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: rows,
    Columns: columns,
    PixelSpacing: [1.5, 1.5],
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: 0,
    PixelData: [px.buffer],
    _vrMap: { PixelData: 'OW' },
  };
  if (isSc) ds.ConversionType = 'WSD';
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: ds.SOPClassUID,
    MediaStorageSOPInstanceUID: o.sopInstanceUID,
    TransferSyntaxUID: o.transferSyntaxUID ?? EXPLICIT_LE,
    ImplementationClassUID: '2.25.1',
    ImplementationVersionName: 'SAXRANGE-TEST',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
  return Buffer.from(dict.write());
}

export const ENHANCED_MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4.1';

/** A small Enhanced MR (multi-frame, functional groups): `frames` phases of one slice. Part 10 bytes. */
export function makeTestEnhancedMr(o: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string; frames?: number; rows?: number; columns?: number }): Buffer {
  const rows = o.rows ?? 32;
  const columns = o.columns ?? 32;
  const frames = o.frames ?? 3;
  const px = new Uint16Array(rows * columns * frames);
  for (let i = 0; i < px.length; i++) px[i] = i % 1000;
  const ds: Record<string, unknown> = {
    SpecificCharacterSet: 'ISO_IR 192',
    ImageType: ['ORIGINAL', 'PRIMARY', 'M', 'NONE'],
    SOPClassUID: ENHANCED_MR_IMAGE_STORAGE,
    SOPInstanceUID: o.sopInstanceUID,
    Modality: 'MR',
    StudyInstanceUID: o.studyInstanceUID,
    SeriesInstanceUID: o.seriesInstanceUID,
    SeriesNumber: 7,
    InstanceNumber: 1,
    FrameOfReferenceUID: `${o.studyInstanceUID}.9`,
    PatientName: 'Test^Enhanced',
    PatientID: 'TEST-0002',
    SharedFunctionalGroupsSequence: [
      {
        PixelMeasuresSequence: [{ PixelSpacing: [1.25, 1.25], SliceThickness: 8 }],
        PlaneOrientationSequence: [{ ImageOrientationPatient: [1, 0, 0, 0, 1, 0] }],
      },
    ],
    PerFrameFunctionalGroupsSequence: Array.from({ length: frames }, (_, f) => ({
      PlanePositionSequence: [{ ImagePositionPatient: [-50, -50, 20] }],
      CardiacSynchronizationSequence: [{ NominalCardiacTriggerDelayTime: f * 40 }],
      FrameContentSequence: [{ TemporalPositionIndex: f + 1 }],
    })),
    NumberOfFrames: frames,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: rows,
    Columns: columns,
    BitsAllocated: 16,
    BitsStored: 12,
    HighBit: 11,
    PixelRepresentation: 0,
    PixelData: [px.buffer],
    _vrMap: { PixelData: 'OW' },
  };
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: ENHANCED_MR_IMAGE_STORAGE,
    MediaStorageSOPInstanceUID: o.sopInstanceUID,
    TransferSyntaxUID: EXPLICIT_LE,
    ImplementationClassUID: '2.25.1',
    ImplementationVersionName: 'SAXRANGE-TEST',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
  return Buffer.from(dict.write());
}

/** Writes `count` MR instances (one series, slices × phases) into `dir`; returns the file paths. */
export async function writeTestSeries(dir: string, count: number, base = '2.25.4242', opts: Partial<TestMrOptions> = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  const phases = 25;
  for (let i = 0; i < count; i++) {
    const p = join(dir, `mr${String(i).padStart(5, '0')}.dcm`);
    await writeFile(
      p,
      makeTestMr({
        studyInstanceUID: `${base}.1`,
        seriesInstanceUID: `${base}.1.2`,
        sopInstanceUID: `${base}.1.2.${i + 1}`,
        instanceNumber: i + 1,
        sliceIndex: Math.floor(i / phases),
        phaseIndex: i % phases,
        ...opts,
      }),
    );
    files.push(p);
  }
  return files;
}

/**
 * Offset of the dataset in a Part 10 file (just after the File Meta group), or 0 when the buffer has no
 * preamble. Compare datasets byte for byte from here on.
 */
export function datasetOffset(buf: Buffer): number {
  if (buf.length < 144 || buf.toString('latin1', 128, 132) !== 'DICM') return 0;
  let pos = 132;
  while (pos + 8 <= buf.length && buf.readUInt16LE(pos) === 0x0002) {
    const vr = buf.toString('latin1', pos + 4, pos + 6);
    if (['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV'].includes(vr)) pos += 12 + buf.readUInt32LE(pos + 8);
    else pos += 8 + buf.readUInt16LE(pos + 6);
  }
  return pos;
}

// ---------------------------------------------------------------------------------------------------------
// Raw C-STORE SCU: sends exactly the bytes given, on the presentation context given.
// ---------------------------------------------------------------------------------------------------------

export interface RawContext {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface RawStore {
  pcId: number;
  /** AffectedSOPClassUID of the command (may differ from the context's abstract syntax on purpose). */
  sopClassUID: string;
  sopInstanceUID: string;
  /** The dataset bytes, in the accepted transfer syntax, sent as is. */
  dataset: Buffer;
}

export interface RawResult {
  /** 'accepted' or 'rejected' (A-ASSOCIATE-RJ) or 'aborted'. */
  association: 'accepted' | 'rejected' | 'aborted' | 'closed';
  reject?: { result: number; source: number; reason: number };
  /** Per presentation context: result (0 = acceptance) and accepted transfer syntax. */
  contexts: Array<{ id: number; result: number; transferSyntax?: string }>;
  responses: Array<{ status?: number; errorComment?: string; sopInstanceUID?: string }>;
}

function padUid(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return b.length % 2 ? Buffer.concat([b, Buffer.from([0])]) : b;
}

function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt8(type, 0);
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function aeField(ae: string): Buffer {
  return Buffer.from(ae.padEnd(16, ' ').slice(0, 16), 'latin1');
}

function associateRq(calling: string, called: string, contexts: RawContext[], maxPdu: number): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(68);
  head.writeUInt16BE(1, 0); // protocol version
  aeField(called).copy(head, 4);
  aeField(calling).copy(head, 20);
  parts.push(head);
  parts.push(item(0x10, Buffer.from('1.2.840.10008.3.1.1.1', 'latin1')));
  for (const pc of contexts) {
    const sub = [item(0x30, Buffer.from(pc.abstractSyntax, 'latin1')), ...pc.transferSyntaxes.map((t) => item(0x40, Buffer.from(t, 'latin1')))];
    parts.push(item(0x20, Buffer.concat([Buffer.from([pc.id, 0, 0, 0]), ...sub])));
  }
  const max = Buffer.alloc(4);
  max.writeUInt32BE(maxPdu, 0);
  parts.push(item(0x50, Buffer.concat([item(0x51, max), item(0x52, Buffer.from('2.25.1', 'latin1'))])));
  return pdu(0x01, Buffer.concat(parts));
}

function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function pdataTf(pcId: number, control: number, value: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt32BE(value.length + 2, 0);
  h.writeUInt8(pcId, 4);
  h.writeUInt8(control, 5);
  return pdu(0x04, Buffer.concat([h, value]));
}

function implicitElement(group: number, element: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}

function us(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v, 0);
  return b;
}

function cStoreCommand(messageId: number, sopClass: string, sopInstance: string): Buffer {
  const body = Buffer.concat([
    implicitElement(0x0000, 0x0002, padUid(sopClass)),
    implicitElement(0x0000, 0x0100, us(0x0001)),
    implicitElement(0x0000, 0x0110, us(messageId)),
    implicitElement(0x0000, 0x0700, us(0)),
    implicitElement(0x0000, 0x0800, us(0x0000)),
    implicitElement(0x0000, 0x1000, padUid(sopInstance)),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([implicitElement(0x0000, 0x0000, len), body]);
}

/** Status, Error Comment and Affected SOP Instance UID of a DIMSE response command set (implicit VR LE). */
export function parseCommand(buf: Buffer): { status?: number; errorComment?: string; sopInstanceUID?: string } {
  const out: { status?: number; errorComment?: string; sopInstanceUID?: string } = {};
  let pos = 0;
  while (pos + 8 <= buf.length) {
    const g = buf.readUInt16LE(pos);
    const e = buf.readUInt16LE(pos + 2);
    const len = buf.readUInt32LE(pos + 4);
    const v = buf.subarray(pos + 8, pos + 8 + len);
    if (g === 0 && e === 0x0900 && v.length >= 2) out.status = v.readUInt16LE(0);
    if (g === 0 && e === 0x0902) out.errorComment = v.toString('latin1').replace(/[\0 ]+$/, '');
    if (g === 0 && e === 0x1000) out.sopInstanceUID = v.toString('latin1').replace(/[\0 ]+$/, '');
    pos += 8 + len;
  }
  return out;
}

/**
 * Associates, sends each store (command + dataset split into `fragment`-byte PDVs) and waits for its response,
 * then releases. For protocol-level tests only.
 */
export async function rawStoreScu(opts: {
  host?: string;
  port: number;
  callingAE: string;
  calledAE: string;
  contexts: RawContext[];
  stores: RawStore[];
  fragment?: number;
  /** Split each command into PDVs of this many bytes (exercises dcmjs-dimse's own path). */
  commandFragment?: number;
  /** Called while the association is still open, before the release (to hold it). */
  beforeRelease?: () => Promise<void>;
  /** Send only this many dataset bytes of the last store, then drop the connection. */
  dropAfterBytes?: number;
  timeoutMs?: number;
}): Promise<RawResult> {
  const socket = new Socket();
  socket.setNoDelay(true);
  const result: RawResult = { association: 'closed', contexts: [], responses: [] };
  let acc = Buffer.alloc(0);
  const waiters: Array<(p: { type: number; body: Buffer } | undefined) => void> = [];
  const queue: Array<{ type: number; body: Buffer }> = [];
  let closed = false;
  const nextPdu = () =>
    new Promise<{ type: number; body: Buffer } | undefined>((resolve) => {
      if (queue.length) resolve(queue.shift());
      else if (closed) resolve(undefined);
      else waiters.push(resolve);
    });
  socket.on('data', (d: Buffer) => {
    acc = Buffer.concat([acc, d]);
    while (acc.length >= 6 && acc.length >= 6 + acc.readUInt32BE(2)) {
      const len = acc.readUInt32BE(2);
      const p = { type: acc[0], body: acc.subarray(6, 6 + len) };
      acc = acc.subarray(6 + len);
      const w = waiters.shift();
      if (w) w(p);
      else queue.push(p);
    }
  });
  const onEnd = () => {
    closed = true;
    for (const w of waiters.splice(0)) w(undefined);
  };
  socket.on('close', onEnd);
  socket.on('error', onEnd);
  const timer = setTimeout(() => socket.destroy(), opts.timeoutMs ?? 30_000);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(opts.port, opts.host ?? '127.0.0.1', () => resolve());
    });
    socket.write(associateRq(opts.callingAE, opts.calledAE, opts.contexts, 1 << 20));
    const ac = await nextPdu();
    if (!ac) return result;
    if (ac.type === 0x03) {
      result.association = 'rejected';
      result.reject = { result: ac.body[1], source: ac.body[2], reason: ac.body[3] };
      return result;
    }
    if (ac.type !== 0x02) {
      result.association = 'aborted';
      return result;
    }
    result.association = 'accepted';
    let pos = 68;
    while (pos + 4 <= ac.body.length) {
      const type = ac.body[pos];
      const len = ac.body.readUInt16BE(pos + 2);
      if (type === 0x21) {
        const id = ac.body[pos + 4];
        const res = ac.body[pos + 6];
        const ts = ac.body.readUInt16BE(pos + 10);
        result.contexts.push({ id, result: res, transferSyntax: res === 0 ? ac.body.toString('latin1', pos + 12, pos + 12 + ts) : undefined });
      }
      pos += 4 + len;
    }
    const frag = opts.fragment ?? 16_000;
    let messageId = 1;
    for (const [index, st] of opts.stores.entries()) {
      const command = cStoreCommand(messageId++, st.sopClassUID, st.sopInstanceUID);
      const cf = opts.commandFragment ?? command.length;
      for (let off = 0; off < command.length; off += cf) {
        const last = off + cf >= command.length;
        socket.write(pdataTf(st.pcId, last ? 0x03 : 0x01, command.subarray(off, off + cf)));
      }
      if (opts.dropAfterBytes !== undefined && index === opts.stores.length - 1) {
        socket.write(pdataTf(st.pcId, 0x00, st.dataset.subarray(0, opts.dropAfterBytes)));
        await new Promise((r) => setTimeout(r, 100));
        socket.destroy();
        return result;
      }
      for (let off = 0; off < st.dataset.length || off === 0; off += frag) {
        const last = off + frag >= st.dataset.length;
        socket.write(pdataTf(st.pcId, last ? 0x02 : 0x00, st.dataset.subarray(off, off + frag)));
        if (last) break;
      }
      for (;;) {
        const rsp = await nextPdu();
        if (!rsp) return result;
        if (rsp.type === 0x07) {
          result.association = 'aborted';
          return result;
        }
        if (rsp.type !== 0x04) continue;
        // One command PDV expected (small response).
        const pdvLen = rsp.body.readUInt32BE(0);
        const control = rsp.body[5];
        if (control & 0x01) {
          result.responses.push(parseCommand(rsp.body.subarray(6, 4 + pdvLen)));
          break;
        }
      }
    }
    if (opts.beforeRelease) await opts.beforeRelease();
    socket.write(pdu(0x05, Buffer.alloc(4)));
    await nextPdu();
    return result;
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}
