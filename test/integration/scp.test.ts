/**
 * The DICOM SCP against real peers: DCMTK storescu/echoscu (TCP_NODELAY=1), gdcmconv for JPEG-LS, and a raw
 * C-STORE SCU (test/helpers/dcmtk.ts) for what DCMTK refuses to send (truncated data, mismatched classes).
 */
import { symlinkSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readInstanceMeta, type InstanceMeta } from '../../src/dicom/meta.js';
import { createLogger } from '../../src/log.js';
import { DicomReceiver, type ReceiverOptions } from '../../src/scp/receiver.js';
import { StoreStatus } from '../../src/scp/policy.js';
import { Spool, type SpoolOptions } from '../../src/spool/spool.js';
import { TransferSyntax } from '../../src/dicom/uids.js';
import { writePhantomStudy } from '../../src/phantom/index.js';
import {
  datasetOffset,
  echoscu,
  ENHANCED_MR_IMAGE_STORAGE,
  EXPLICIT_LE,
  hasTool,
  IMPLICIT_LE,
  makeTestEnhancedMr,
  makeTestMr,
  MR_IMAGE_STORAGE,
  rawStoreScu,
  runTool,
  SECONDARY_CAPTURE_STORAGE,
  storescu,
  writeTestSeries,
  type RawContext,
} from '../helpers/dcmtk.js';

const AE = 'SAXRANGE';
const STUDY = '2.25.90001';
const SERIES = `${STUDY}.1`;

/** The dataset part (after the File Meta group) of a Part 10 buffer. */
const datasetOf = (buf: Buffer) => buf.subarray(datasetOffset(buf));

/** Committed instance files of a spool. */
async function spoolFiles(spool: Spool): Promise<string[]> {
  const out: string[] = [];
  for (const s of await spool.listStudies()) out.push(...(await spool.listInstances(s)));
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A spool whose temp files are links to /dev/full: every write fails with ENOSPC. */
class FullDiskSpool extends Spool {
  private n = 0;
  override tmpPath(): string {
    const link = join(this.tmpDir, `full-${this.n++}.part`);
    symlinkSync('/dev/full', link);
    return link;
  }
}

/**
 * Both commit paths run every test: through the spool's journal (the service's default: small instances are
 * kept in memory and made durable by one journal sync) and classic (temp file, fsync, rename, folder fsync).
 */
const MODES: Array<[string, SpoolOptions]> = [
  ['journal', { journalSegmentBytes: 4 * 1024 * 1024 }],
  ['classic', {}],
];

/** Receiver with a temp spool on an ephemeral port; `onStored` can be swapped per test. */
async function startReceiver(dir: string, config: Partial<ReceiverOptions['config']> = {}, SpoolClass: typeof Spool = Spool, spoolOpts: SpoolOptions = {}) {
  const spool = new SpoolClass(join(dir, 'spool'), spoolOpts);
  await spool.init();
  const seen: InstanceMeta[] = [];
  const hooks: { onStored?: ReceiverOptions['onStored'] } = {};
  const receiver = new DicomReceiver({
    config: { aeTitle: AE, dicomPort: 0, allowedAEs: ['STORESCU', 'ECHOSCU', 'RAWSCU'], maxInstanceBytes: 64 * 1024 * 1024, maxAssociations: 8, maxPduLength: 65536, ...config },
    spool,
    logger: createLogger('scp-test', process.env.LOG_LEVEL ?? 'silent'),
    host: '127.0.0.1',
    onStored: async (metas, info) => {
      seen.push(...metas);
      if (hooks.onStored) await hooks.onStored(metas, info);
    },
  });
  const port = await receiver.listen();
  return { spool, receiver, port, seen, hooks };
}

describe.each(MODES)('DICOM SCP (storescu, echoscu, raw SCU), %s commit', (_mode, spoolOpts) => {
  let dir: string;
  let rx: Awaited<ReturnType<typeof startReceiver>>;
  let files: string[];
  beforeAll(async () => {
    // The real peers are required: a missing tool fails the suite instead of passing it silently.
    for (const t of ['storescu', 'echoscu', 'gdcmconv']) if (!(await hasTool(t))) throw new Error(`${t} not installed (.ci/run installs dcmtk and libgdcm-tools)`);
    dir = await mkdtemp(join(tmpdir(), 'sax-range-scp-'));
    files = await writeTestSeries(join(dir, 'mr'), 12, '2.25.90002');
    rx = await startReceiver(dir, {}, Spool, spoolOpts);
  });

  afterAll(async () => {
    await rx?.receiver.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const target = () => ({ port: rx.port, calledAE: AE });
  const raw = (contexts: RawContext[], stores: Parameters<typeof rawStoreScu>[0]['stores'], extra: Partial<Parameters<typeof rawStoreScu>[0]> = {}) =>
    rawStoreScu({ port: rx.port, callingAE: 'RAWSCU', calledAE: AE, contexts, stores, ...extra });
  const mrContext: RawContext = { id: 1, abstractSyntax: MR_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] };
  const mr = (uid: string, extra: Parameters<typeof makeTestMr>[0] extends infer T ? Partial<T> : never = {}) =>
    makeTestMr({ studyInstanceUID: STUDY, seriesInstanceUID: SERIES, sopInstanceUID: uid, ...extra });

  it('answers C-ECHO', async () => {
    const r = await echoscu(target());
    expect(r.code, r.output).toBe(0);
    const repeated = await echoscu(target(), ['--repeat', '3', '-v']);
    expect(repeated.code, repeated.output).toBe(0);
    expect(repeated.output.match(/Received Echo Response \(Success\)/g)?.length).toBe(3);
  });

  it('stores every instance sent by storescu byte-identical (dataset), with a Part 10 header, and reports it', async () => {
    const before = rx.receiver.stats.stored;
    const r = await storescu(target(), files, ['-v']);
    expect(r.code, r.output).toBe(0);
    expect(r.output.match(/Received Store Response \(Success\)/g)?.length).toBe(files.length);
    expect(rx.receiver.stats.stored - before).toBe(files.length);
    const stored = await spoolFiles(rx.spool);
    expect(stored.filter((p) => p.includes('2.25.90002.1.2')).length).toBe(files.length);
    for (const f of files) {
      const orig = await readFile(f);
      const [src] = await readInstanceMeta(f, { fastPath: false });
      const uid = src.sopInstanceUID;
      const path = rx.spool.instancePath(src.studyInstanceUID, src.seriesInstanceUID, uid);
      const copy = await readFile(path);
      expect(copy.toString('latin1', 128, 132)).toBe('DICM');
      expect(datasetOf(copy).equals(datasetOf(orig))).toBe(true);
      // What onStored got (own header walker) is what dcmjs reads from the stored file.
      const fromDcmjs = await readInstanceMeta(path, { fastPath: false });
      expect(rx.seen.filter((m) => m.sopInstanceUID === uid)).toContainEqual(fromDcmjs[0]);
    }
    const dump = await runTool('dcmdump', ['-M', '+P', '0002,0010', '+P', '0002,0013', '+P', '0002,0016', rx.spool.instancePath('2.25.90002.1', '2.25.90002.1.2', '2.25.90002.1.2.1')]);
    expect(dump.output).toContain('LittleEndianExplicit');
    expect(dump.output).toContain('[SAXRANGE]');
    expect(dump.output).toContain('[STORESCU]');
  });

  it('stores Implicit VR Little Endian (storescu -xi) and reads its header', async () => {
    const f = join(dir, 'implicit-src.dcm');
    await writeFile(f, mr(`${STUDY}.7.1`, { sliceIndex: 3, phaseIndex: 4 }));
    const r = await storescu(target(), [f], ['-xi']);
    expect(r.code, r.output).toBe(0);
    const path = rx.spool.instancePath(STUDY, SERIES, `${STUDY}.7.1`);
    const fromDcmjs = await readInstanceMeta(path, { fastPath: false });
    expect(fromDcmjs[0].transferSyntaxUID).toBe(IMPLICIT_LE);
    expect(rx.seen.find((m) => m.sopInstanceUID === `${STUDY}.7.1`)).toEqual(fromDcmjs[0]);
  });

  it('stores a JPEG-LS instance in JPEG-LS (storescu -xt)', async () => {
    const src = join(dir, 'jls-src.dcm');
    const jls = join(dir, 'jls.dcm');
    await writeFile(src, mr(`${STUDY}.8.1`));
    const conv = await runTool('gdcmconv', ['--jpegls', src, jls]);
    expect(conv.code, conv.output).toBe(0);
    const r = await storescu(target(), [jls], ['-xt']);
    expect(r.code, r.output).toBe(0);
    const path = rx.spool.instancePath(STUDY, SERIES, `${STUDY}.8.1`);
    const [meta] = await readInstanceMeta(path, { fastPath: false });
    expect(meta.transferSyntaxUID).toBe('1.2.840.10008.1.2.4.80');
    expect(datasetOf(await readFile(path)).equals(datasetOf(await readFile(jls)))).toBe(true);
  });

  // A phantom cine study in every transfer syntax the phantom writes, each sent with the storescu option that
  // proposes it (so storescu sends the file as is): stored byte-identical, header read as dcmjs reads it.
  const phantomCases: Array<[string, string[]]> = [
    [TransferSyntax.ExplicitVRLittleEndian, []],
    [TransferSyntax.ImplicitVRLittleEndian, ['-xi']],
    [TransferSyntax.JpegLsLossless, ['-xt']],
    [TransferSyntax.JpegLosslessSV1, ['-xs']],
    [TransferSyntax.Jpeg2000Lossless, ['-xv']],
    [TransferSyntax.RleLossless, ['-xr']],
  ];
  it.each(phantomCases)('stores phantom instances in %s byte-identical', async (ts, option) => {
    const out = join(dir, `phantom-${ts}`);
    const { paths } = await writePhantomStudy(out, { seed: 7, slices: 6, phases: 20, rows: 64, transferSyntax: ts });
    const sent = paths.filter((_, i) => i % 17 === 0);
    const r = await storescu(target(), sent, option);
    expect(r.code, r.output).toBe(0);
    for (const f of sent) {
      const [src] = await readInstanceMeta(f, { fastPath: false });
      expect(src.transferSyntaxUID).toBe(ts);
      const path = rx.spool.instancePath(src.studyInstanceUID, src.seriesInstanceUID, src.sopInstanceUID);
      expect(datasetOf(await readFile(path)).equals(datasetOf(await readFile(f)))).toBe(true);
      const stored = await readInstanceMeta(path, { fastPath: false });
      expect(stored[0].transferSyntaxUID).toBe(ts);
      expect(rx.seen.filter((m) => m.sopInstanceUID === src.sopInstanceUID).at(-1)).toEqual(stored[0]);
    }
  });

  it('stores an Enhanced MR (functional groups, one meta per frame)', async () => {
    const uid = `${STUDY}.9.1`;
    const buf = makeTestEnhancedMr({ studyInstanceUID: STUDY, seriesInstanceUID: `${STUDY}.9`, sopInstanceUID: uid, frames: 3 });
    const ctx: RawContext = { id: 1, abstractSyntax: ENHANCED_MR_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] };
    const res = await raw([ctx], [{ pcId: 1, sopClassUID: ENHANCED_MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(buf) }]);
    expect(res.responses).toEqual([expect.objectContaining({ status: StoreStatus.success })]);
    const metas = rx.seen.filter((m) => m.sopInstanceUID === uid);
    expect(metas.map((m) => m.frame)).toEqual([0, 1, 2]);
    expect(metas.map((m) => m.triggerTime)).toEqual([0, 40, 80]);
    expect(metas).toEqual(await readInstanceMeta(rx.spool.instancePath(STUDY, `${STUDY}.9`, uid), { fastPath: false }));
  });

  it('rejects an unknown calling AE and a wrong called AE; nothing is stored', async () => {
    const before = (await spoolFiles(rx.spool)).length;
    const f = join(dir, 'intruder.dcm');
    await writeFile(f, mr(`${STUDY}.10.1`));
    const r1 = await storescu({ ...target(), callingAE: 'INTRUDER' }, [f]);
    expect(r1.code).not.toBe(0);
    expect(r1.output).toMatch(/Calling AE Title Not Recognized/i);
    const r2 = await storescu({ port: rx.port, calledAE: 'SOMEONE' }, [f]);
    expect(r2.code).not.toBe(0);
    expect(r2.output).toMatch(/Called AE Title Not Recognized/i);
    const r3 = await echoscu({ ...target(), callingAE: 'INTRUDER' });
    expect(r3.code).not.toBe(0);
    expect((await spoolFiles(rx.spool)).length).toBe(before);
  });

  it('refuses a Secondary Capture (context rejected; a C-STORE on the MR context gets 0x0122), then works again', async () => {
    const uid = `${STUDY}.11.1`;
    const sc = makeTestMr({ studyInstanceUID: STUDY, seriesInstanceUID: SERIES, sopInstanceUID: uid, sopClassUID: SECONDARY_CAPTURE_STORAGE });
    const f = join(dir, 'sc.dcm');
    await writeFile(f, sc);
    const r = await storescu(target(), [f]);
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/No presentation context|Association Rejected/i);
    // Proposed alone, the SC context is rejected and so is the association (no acceptable context).
    const onlySc = await raw([{ id: 1, abstractSyntax: SECONDARY_CAPTURE_STORAGE, transferSyntaxes: [EXPLICIT_LE] }], []);
    expect(onlySc.association).toBe('rejected');
    // Sent anyway on the MR context: 0x0122 with a comment; the association goes on.
    const res = await raw(
      [mrContext, { id: 3, abstractSyntax: SECONDARY_CAPTURE_STORAGE, transferSyntaxes: [EXPLICIT_LE] }],
      [
        { pcId: 1, sopClassUID: SECONDARY_CAPTURE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(sc) },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.11.2`, dataset: datasetOf(mr(`${STUDY}.11.2`)) },
      ],
    );
    expect(res.contexts).toEqual([
      { id: 1, result: 0, transferSyntax: EXPLICIT_LE },
      { id: 3, result: 3, transferSyntax: undefined },
    ]);
    expect(res.responses[0].status).toBe(StoreStatus.sopClassNotSupported);
    expect(res.responses[0].errorComment).toMatch(/SOP class/);
    expect(res.responses[1].status).toBe(StoreStatus.success);
    await expect(readFile(rx.spool.instancePath(STUDY, SERIES, uid))).rejects.toThrow();
  });

  it('answers failures with a status and a comment, removes the temp file and keeps the association', async () => {
    const good = mr(`${STUDY}.12.9`);
    const ds = datasetOf(good);
    const px = ds.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
    const dsSc = datasetOf(makeTestMr({ studyInstanceUID: STUDY, seriesInstanceUID: SERIES, sopInstanceUID: `${STUDY}.12.3`, sopClassUID: SECONDARY_CAPTURE_STORAGE }));
    // Pixel Data declared shorter than Rows × Columns × 2.
    const short = Buffer.from(ds.subarray(0, px + 12 + 100));
    short.writeUInt32LE(100, px + 8);
    const res = await raw(
      [mrContext],
      [
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.1`, dataset: datasetOf(mr(`${STUDY}.12.1`)).subarray(0, 5000) },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.2`, dataset: ds.subarray(0, 300) },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.3`, dataset: dsSc },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.4`, dataset: ds },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.9`, dataset: ds.subarray(0, px) },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.9`, dataset: short },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.9`, dataset: Buffer.from('not a dataset at all') },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.12.9`, dataset: ds },
      ],
    );
    const statuses = res.responses.map((r) => r.status);
    expect(statuses).toEqual([
      StoreStatus.cannotUnderstand, // truncated inside the pixel data
      StoreStatus.cannotUnderstand, // truncated inside the header
      StoreStatus.datasetDoesNotMatchSopClass, // dataset is an SC, command says MR
      StoreStatus.cannotUnderstand, // SOP Instance UID differs from the command
      StoreStatus.datasetDoesNotMatchSopClass, // no Pixel Data
      StoreStatus.cannotUnderstand, // Pixel Data too short
      StoreStatus.cannotUnderstand, // garbage
      StoreStatus.success,
    ]);
    for (const r of res.responses.slice(0, -1)) expect(r.errorComment?.length).toBeGreaterThan(3);
    expect(res.responses[0].errorComment).toMatch(/truncated/);
    for (const uid of ['12.1', '12.2', '12.3', '12.4']) await expect(readFile(rx.spool.instancePath(STUDY, SERIES, `${STUDY}.${uid}`))).rejects.toThrow();
    // Only the spare temp file (opened ahead for the next store) is left in tmp/.
    expect((await readdir(rx.spool.tmpDir)).length).toBeLessThanOrEqual(1);
  });

  it('handles a command split over PDVs (dcmjs-dimse stock path) and small data PDVs', async () => {
    const uid = `${STUDY}.13.1`;
    const res = await raw([mrContext], [{ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(mr(uid)) }], { commandFragment: 20, fragment: 333 });
    expect(res.responses.map((r) => r.status)).toEqual([StoreStatus.success]);
    expect(datasetOf(await readFile(rx.spool.instancePath(STUDY, SERIES, uid))).equals(datasetOf(mr(uid)))).toBe(true);
  });

  it('discards a store whose association drops mid-dataset; the server stays up', async () => {
    const uid = `${STUDY}.14.1`;
    await raw([mrContext], [{ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(mr(uid)) }], { dropAfterBytes: 4000 });
    await sleep(200);
    await expect(readFile(rx.spool.instancePath(STUDY, SERIES, uid))).rejects.toThrow();
    expect((await readdir(rx.spool.tmpDir)).length).toBeLessThanOrEqual(1);
    const again = await raw([mrContext], [{ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(mr(uid)) }]);
    expect(again.responses.map((r) => r.status)).toEqual([StoreStatus.success]);
  });

  it('drops a connection that speaks garbage and stays up', async () => {
    const sock = new Socket();
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.connect(rx.port, '127.0.0.1', () => r()));
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    const uid = `${STUDY}.17.1`;
    const res = await raw([mrContext], [{ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(mr(uid)) }]);
    expect(res.responses.map((r) => r.status)).toEqual([StoreStatus.success]);
  });

  it('replaces an instance sent again with the same SOP Instance UID', async () => {
    const uid = `${STUDY}.15.1`;
    const a = join(dir, 'rep-a.dcm');
    const b = join(dir, 'rep-b.dcm');
    await writeFile(a, mr(uid, { seed: 1 }));
    await writeFile(b, mr(uid, { seed: 2, seriesDescription: 'resent' }));
    expect((await storescu(target(), [a])).code).toBe(0);
    expect((await storescu(target(), [b])).code).toBe(0);
    const path = rx.spool.instancePath(STUDY, SERIES, uid);
    expect(datasetOf(await readFile(path)).equals(datasetOf(await readFile(b)))).toBe(true);
    expect((await spoolFiles(rx.spool)).filter((p) => p.endsWith(`${uid}.dcm`)).length).toBe(1);
  });

  it('answers 0xA700 when onStored fails, and keeps the committed file', async () => {
    const uid = `${STUDY}.16.1`;
    rx.hooks.onStored = async () => {
      throw new Error('queue down');
    };
    try {
      const res = await raw([mrContext], [{ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(mr(uid)) }]);
      expect(res.responses[0].status).toBe(StoreStatus.outOfResources);
      expect(res.responses[0].errorComment).toMatch(/retry/);
    } finally {
      rx.hooks.onStored = undefined;
    }
    await expect(readFile(rx.spool.instancePath(STUDY, SERIES, uid))).resolves.toBeInstanceOf(Buffer);
  });
});

describe.each(MODES)('DICOM SCP limits and shutdown, %s commit', (_mode, spoolOpts) => {
  let dir: string;
  let rx: Awaited<ReturnType<typeof startReceiver>>;
  const mrContext: RawContext = { id: 1, abstractSyntax: MR_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] };
  const mr = (uid: string) => makeTestMr({ studyInstanceUID: STUDY, seriesInstanceUID: SERIES, sopInstanceUID: uid });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-range-scp2-'));
    rx = await startReceiver(dir, { maxAssociations: 1, maxInstanceBytes: 20_000, allowedAEs: ['*'] }, Spool, spoolOpts);
  });

  afterAll(async () => {
    await rx?.receiver.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rejects associations beyond maxAssociations (transient), accepts again once one ends', async () => {
    let second: Awaited<ReturnType<typeof rawStoreScu>> | undefined;
    const first = await rawStoreScu({
      port: rx.port,
      callingAE: 'ONE',
      calledAE: AE,
      contexts: [mrContext],
      stores: [],
      beforeRelease: async () => {
        second = await rawStoreScu({ port: rx.port, callingAE: 'TWO', calledAE: AE, contexts: [mrContext], stores: [] });
      },
    });
    expect(first.association).toBe('accepted');
    expect(second?.association).toBe('rejected');
    expect(second?.reject).toEqual({ result: 2, source: 3, reason: 2 });
    await sleep(100);
    const third = await rawStoreScu({ port: rx.port, callingAE: 'THREE', calledAE: AE, contexts: [mrContext], stores: [] });
    expect(third.association).toBe('accepted');
  });

  it('answers 0xA700 for an instance over maxInstanceBytes', async () => {
    const big = makeTestMr({ studyInstanceUID: STUDY, seriesInstanceUID: SERIES, sopInstanceUID: `${STUDY}.20.1`, rows: 128, columns: 128 });
    const res = await rawStoreScu({
      port: rx.port,
      callingAE: 'ANY',
      calledAE: AE,
      contexts: [mrContext],
      stores: [
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.20.1`, dataset: datasetOf(big) },
        { pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.20.2`, dataset: datasetOf(mr(`${STUDY}.20.2`)) },
      ],
    });
    expect(res.responses.map((r) => r.status)).toEqual([StoreStatus.outOfResources, StoreStatus.success]);
    expect(res.responses[0].errorComment).toMatch(/larger than/);
  });

  it('answers 0xA700 when the disk is full (ENOSPC) and stays up', async () => {
    const full = await startReceiver(join(dir, 'full'), { allowedAEs: ['*'] }, FullDiskSpool, spoolOpts);
    try {
      const res = await rawStoreScu({
        port: full.port,
        callingAE: 'ANY',
        calledAE: AE,
        contexts: [mrContext],
        stores: [1, 2].map((i) => ({ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: `${STUDY}.22.${i}`, dataset: datasetOf(mr(`${STUDY}.22.${i}`)) })),
      });
      expect(res.responses.map((r) => r.status)).toEqual([StoreStatus.outOfResources, StoreStatus.outOfResources]);
      expect(res.responses[0].errorComment).toMatch(/ENOSPC/);
      expect(full.receiver.stats.failed).toBe(2);
    } finally {
      await full.receiver.close();
    }
    // The links were removed, never /dev/full itself.
    expect(await readdir(full.spool.tmpDir)).toEqual([]);
    expect((await lstat('/dev/full')).isCharacterDevice()).toBe(true);
  });

  it('close() while a store is in flight still answers it, then refuses new connections', async () => {
    let entered!: () => void;
    const inOnStored = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    rx.hooks.onStored = async () => {
      entered();
      await released;
    };
    const uid = `${STUDY}.21.1`;
    const sending = rawStoreScu({ port: rx.port, callingAE: 'ANY', calledAE: AE, contexts: [mrContext], stores: [{ pcId: 1, sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: datasetOf(mr(uid)) }] });
    await inOnStored;
    let closed = false;
    const closing = rx.receiver.close().then(() => (closed = true));
    await sleep(300);
    expect(closed).toBe(false);
    release();
    const res = await sending;
    expect(res.responses.map((r) => r.status)).toEqual([StoreStatus.success]);
    await closing;
    await expect(readFile(rx.spool.instancePath(STUDY, SERIES, uid))).resolves.toBeInstanceOf(Buffer);
    const after = await rawStoreScu({ port: rx.port, callingAE: 'ANY', calledAE: AE, contexts: [mrContext], stores: [] }).catch(() => ({ association: 'closed' }));
    expect(after.association).not.toBe('accepted');
    expect(await readdir(rx.spool.tmpDir)).toEqual([]);
  });
});

describe('DICOM SCP with the spool journal', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-range-scp3-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps small instances in memory and commits them through the journal; a larger one spills to a temp file; after a crash the journal restores them', async () => {
    // 64×64 instances (≈ 9 KB) fit the 50 kB limit; 256×256 ones (≈ 131 KB) do not.
    const small = await writeTestSeries(join(dir, 'small'), 6, '2.25.91001', { rows: 64, columns: 64 });
    const large = await writeTestSeries(join(dir, 'large'), 3, '2.25.91002', { rows: 256, columns: 256 });
    const opts: SpoolOptions = { journalSegmentBytes: 4 * 1024 * 1024, journalMaxInstanceBytes: 50_000, journalIdleCheckpointMs: 0 };
    const rx = await startReceiver(join(dir, 'a'), { allowedAEs: ['*'] }, Spool, opts);
    let paths: string[];
    try {
      const r = await storescu({ port: rx.port, calledAE: AE }, [...small, ...large], ['-v']);
      expect(r.code, r.output).toBe(0);
      expect(r.output.match(/Received Store Response \(Success\)/g)?.length).toBe(9);
      expect(rx.spool.journalStats).toMatchObject({ appended: 6 });
      paths = await spoolFiles(rx.spool);
      expect(paths.length).toBe(9);
      for (const f of [...small, ...large]) {
        const [src] = await readInstanceMeta(f, { fastPath: false });
        const copy = await readFile(rx.spool.instancePath(src.studyInstanceUID, src.seriesInstanceUID, src.sopInstanceUID));
        expect(datasetOf(copy).equals(datasetOf(await readFile(f)))).toBe(true);
      }
    } finally {
      // A crash: the receiver stops, the spool is never closed (no checkpoint).
      await rx.receiver.close();
    }
    // Nothing left in tmp/ (the receiver's spare temp file is removed at close).
    expect(await readdir(rx.spool.tmpDir)).toEqual([]);
    // What a power cut may do to files written without a sync: gone. The six journalled ones come back.
    const journalled = paths.filter((p) => p.includes('2.25.91001'));
    for (const p of journalled) await rm(p);
    const again = new Spool(join(dir, 'a', 'spool'), opts);
    await again.init();
    try {
      expect(again.replayed).toBe(6);
      expect((await spoolFiles(again)).sort()).toEqual([...paths].sort());
      for (const f of small) {
        const [src] = await readInstanceMeta(f, { fastPath: false });
        const copy = await readFile(again.instancePath(src.studyInstanceUID, src.seriesInstanceUID, src.sopInstanceUID));
        expect(datasetOf(copy).equals(datasetOf(await readFile(f)))).toBe(true);
      }
    } finally {
      await again.close();
    }
  });
});
