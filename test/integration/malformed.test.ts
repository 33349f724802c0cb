/**
 * A seeded slice of the malformed-input corpus (test/helpers/malformed.ts; the whole corpus is
 * bench/malformed.ts) against a real `sax-range serve` process: every input gets a failure status, a
 * rejection, an abort or a close — never Success where a failure is due, never silence where an answer is
 * owed; the service never exits, leaves no temp file and stores none of them; `sax-range classify` gives a
 * clear error (no stack trace) for the bad files, alone or inside a valid study; and a valid phantom study
 * sent afterwards is stored and processed. Plus one regression test per SCP bug the corpus found.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis } from '../../src/queue/redis.js';
import { writePhantomStudy } from '../../src/phantom/index.js';
import { StoreStatus } from '../../src/scp/policy.js';
import { AssocConnection, associateRq, cStoreRq, datasetPdus, parseAssociateAc, parseResponse, pdataTf, pdu, PduType, pdvs } from '../helpers/assoc-client.js';
import { datasetOffset, EXPLICIT_LE, hasTool, makeTestMr, MR_IMAGE_STORAGE, storescu } from '../helpers/dcmtk.js';
import { FAMILIES, FILE_FAMILIES, generateCorpus, type MalformedCase } from '../helpers/malformed.js';
import {
  classifyInStudy,
  classifyOk,
  deliverDimse,
  deliverStorescu,
  judge,
  listTree,
  runClassifyCli,
  startService,
  writeCaseFiles,
  type CaseResult,
  type ServiceProcess,
} from '../helpers/malformed-run.js';

/** Stops the service, removes its Redis keys and its folder. */
async function stopAndClean(svc: ServiceProcess | undefined, root: string | undefined): Promise<void> {
  await svc?.stop();
  if (svc) {
    const redis = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const keys = await redis.keys(`${svc.queuePrefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
  if (root) await rm(root, { recursive: true, force: true });
}

const SEED = 20250611;
/** 14 per family × 9 families = 126 inputs. */
const PER_FAMILY = 14;

describe('malformed input (seeded corpus slice)', () => {
  let root: string;
  let svc: ServiceProcess;
  const cases: MalformedCase[] = [...generateCorpus({ seed: SEED, perFamily: PER_FAMILY })];
  let files: Map<string, string>;
  const results: CaseResult[] = [];

  beforeAll(async () => {
    for (const t of ['storescu']) if (!(await hasTool(t))) throw new Error(`${t} not installed (.ci/run installs dcmtk)`);
    root = await mkdtemp(join(tmpdir(), 'sax-range-malformed-'));
    files = await writeCaseFiles(cases, join(root, 'cases'));
    svc = await startService(root);
  });

  afterAll(async () => {
    await stopAndClean(svc, root);
  });

  it(`covers every family with ${PER_FAMILY} inputs (${FAMILIES.length * PER_FAMILY} in all)`, () => {
    expect(cases.length).toBe(FAMILIES.length * PER_FAMILY);
    for (const f of FAMILIES) expect(cases.filter((c) => c.family === f).length).toBe(PER_FAMILY);
    // Deterministic: the same seed gives the same bytes.
    const again = [...generateCorpus({ seed: SEED, perFamily: PER_FAMILY })];
    expect(again.map((c) => c.variant)).toEqual(cases.map((c) => c.variant));
    expect(again[5].file!.equals(cases[5].file!)).toBe(true);
  });

  it('answers every input over DIMSE with a failure status, a rejection, an abort or a close, and stays up', async () => {
    for (const c of cases) {
      const r = await deliverDimse(c, svc.dicomPort);
      results.push({ id: c.id, family: c.family, variant: c.variant, ...r, ...judge(c, r) });
      expect(svc.exit, `service exited after ${c.id} (${c.variant})`).toBeUndefined();
    }
    const bad = results.filter((r) => !r.ok).map((r) => `${r.id} (${r.variant}): ${r.why} ${r.comment ?? ''}`);
    expect(bad).toEqual([]);
    // The file-level families reach the SCP's checks (a status with a comment), not only the framing.
    for (const f of ['truncated-part10', 'absurd-length', 'short-pixel-data', 'wrong-vr']) {
      const rs = results.filter((r) => r.family === f);
      expect(rs.every((r) => r.outcome === 'failure-status' && r.comment && r.comment.length > 3), f).toBe(true);
    }
    expect(svc.text.filter((l) => /^(\w*Error\b|Uncaught|Unhandled)/.test(l))).toEqual([]);
  });

  it('stores none of the inputs that had to fail and leaves no temp file', async () => {
    await new Promise((r) => setTimeout(r, 1000));
    const stored = new Set((await listTree(join(svc.dataDir, 'spool', 'studies'))).map((p) => p.split('/').pop()));
    const wrongly = cases.filter((c) => c.mustFail && !c.mayStore && stored.has(`${c.sopInstanceUID}.dcm`)).map((c) => `${c.id} (${c.variant})`);
    expect(wrongly).toEqual([]);
    // Only the spare temp file (opened ahead for the next store).
    expect((await readdir(join(svc.dataDir, 'spool', 'tmp'))).length).toBeLessThanOrEqual(1);
  });

  it('storescu: the file-level inputs it can read are refused by the SCP', async () => {
    // storescu parses and re-encodes a file before sending it; what it sends is checked like any instance.
    const picked = cases.filter((c) => c.file && ['absurd-length', 'truncated-part10', 'non-image-sop'].includes(c.family)).slice(0, 3 * 4);
    for (const c of picked) {
      const r = await deliverStorescu(files.get(c.id)!, svc.dicomPort);
      expect(['failure-status', 'association-rejected', 'not-sent'], `${c.id} (${c.variant}): ${r.detail}`).toContain(r.outcome);
    }
    expect(svc.exit).toBeUndefined();
  });

  it('a valid phantom study sent afterwards is stored and processed; memory was sampled throughout', async () => {
    const dir = join(root, 'phantom');
    const { truth, paths } = await writePhantomStudy(dir, { seed: 5, slices: 8, phases: 20, rows: 64 });
    const sent = await storescu({ port: svc.dicomPort, calledAE: 'SAXRANGE' }, paths);
    expect(sent.code, sent.output).toBe(0);
    let results: unknown[] = [];
    for (let i = 0; i < 120 && results.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const res = await fetch(`http://127.0.0.1:${svc.httpPort}/api/studies/${truth.studyInstanceUID}/results`);
      if (res.ok) results = (await res.json()) as unknown[];
    }
    expect(results.length).toBe(1);
    expect(svc.exit).toBeUndefined();
    // Figures go to BENCHMARKS.md (bench/malformed.ts); here only that sampling worked.
    expect(svc.rss.samples.length).toBeGreaterThan(10);
  });

  it('classify: each bad file alone exits non-zero with one clear line; one bad instance in a valid study never crashes it', async () => {
    const alone = FILE_FAMILIES.map((f) => cases.find((c) => c.family === f)!);
    for (const c of alone) {
      const run = await runClassifyCli([files.get(c.id)!]);
      expect(run.code, `${c.id}: ${run.stderr}`).toBe(2);
      expect(classifyOk(run, false), `${c.id}: ${run.stderr}`).toBe(true);
      expect(run.message).toMatch(/^sax-range: no cine short-axis stack/);
    }
    const study = join(root, 'study');
    const { paths } = await writePhantomStudy(study, { seed: 6, slices: 8, phases: 20, rows: 64 });
    // Corruptions that keep the header readable reach the pixel decoder: the stack fails with the file named.
    for (const [family, n] of [
      ['short-pixel-data', 0],
      ['unknown-transfer-syntax', 1],
      ['truncated-part10', 1],
      ['absurd-length', 0],
    ] as const) {
      const { variant, run } = await classifyInStudy(study, paths[25], family, 7, n, join(root, 'in-study'));
      expect(classifyOk(run, true), `${family}#${n} (${variant}): exit ${run.code}\n${run.stderr}`).toBe(true);
    }
  });
});

describe('SCP regressions found by the malformed corpus', () => {
  let root: string;
  let svc: ServiceProcess;
  const uid = (n: number) => `2.25.777000${n}`;
  const mr = (n: number) => {
    const f = makeTestMr({ studyInstanceUID: `${uid(n)}.1`, seriesInstanceUID: `${uid(n)}.2`, sopInstanceUID: uid(n) });
    return f.subarray(datasetOffset(f));
  };
  const ctx = [{ id: 1, abstractSyntax: MR_IMAGE_STORAGE, transferSyntaxes: [EXPLICIT_LE] }];
  const open = async () => {
    const conn = await AssocConnection.open({ port: svc.dicomPort });
    conn.write(associateRq({ callingAE: 'REGRESS', calledAE: 'SAXRANGE', contexts: ctx }));
    const ac = await conn.next(10_000);
    if (typeof ac === 'string' || ac.type !== PduType.associateAc) throw new Error('not accepted');
    return conn;
  };
  const answer = async (conn: AssocConnection) => {
    for (;;) {
      const p = await conn.next(10_000);
      if (typeof p === 'string') return p;
      if (p.type === PduType.abort) return 'aborted';
      const cmd = p.type === PduType.pData ? pdvs(p.body).find((v) => v.control & 1) : undefined;
      if (cmd) return parseResponse(cmd.value);
    }
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'sax-range-malformed-reg-'));
    svc = await startService(root, { SAX_RANGE_ROLES: 'scp', SAX_RANGE_MAX_ASSOCIATIONS: '2' });
  });
  afterAll(async () => {
    await stopAndClean(svc, root);
  });

  it('a data PDV on a presentation context never proposed aborts the association; the service stays up (was: uncaught exception, process exit)', async () => {
    const conn = await open();
    const data = datasetPdus(1, mr(1), 4000);
    data[1][10] = 19; // PDV presentation context id
    conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, uid(1))));
    for (const d of data) conn.write(d);
    expect(await answer(conn)).toBe('aborted');
    conn.destroy();
    const first = datasetPdus(1, mr(2), 4000);
    first[0][10] = 19; // on the first fragment
    const c2 = await open();
    c2.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, uid(2))));
    for (const d of first) c2.write(d);
    expect(await answer(c2)).toBe('aborted');
    c2.destroy();
    expect(svc.exit).toBeUndefined();
  });

  it('a second A-ASSOCIATE-RQ within an association is aborted and does not count twice against maxAssociations (was: accepted again, slot leaked)', async () => {
    for (let i = 0; i < 3; i++) {
      const conn = await open();
      conn.write(associateRq({ callingAE: 'REGRESS', calledAE: 'SAXRANGE', contexts: ctx }));
      expect(await answer(conn)).toBe('aborted');
      conn.destroy();
    }
    await new Promise((r) => setTimeout(r, 300));
    // maxAssociations is 2: had each left a slot behind, this one would be rejected.
    const conn = await open();
    conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, uid(3))));
    for (const d of datasetPdus(1, mr(3), 16_000)) conn.write(d);
    expect(await answer(conn)).toMatchObject({ status: StoreStatus.success });
    conn.destroy();
  });

  it('an empty P-DATA-TF aborts the association (was: ignored, the peer waited forever)', async () => {
    const conn = await open();
    conn.write(pdu(PduType.pData, Buffer.alloc(0)));
    expect(await answer(conn)).toBe('aborted');
    conn.destroy();
  });

  it('Pixel Data with a VR other than OB/OW/UN gets 0xC000 and is not stored (was: Success)', async () => {
    for (const [n, vr] of [
      [4, 'UT'],
      [5, 'SQ'],
    ] as const) {
      const ds = Buffer.from(mr(n));
      const px = ds.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57])); // (7FE0,0010) OW
      ds.write(vr, px + 4, 'latin1');
      const conn = await open();
      conn.write(pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, uid(n))));
      for (const d of datasetPdus(1, ds, 16_000)) conn.write(d);
      const r = await answer(conn);
      expect(r).toMatchObject({ status: StoreStatus.cannotUnderstand, errorComment: `PixelData with VR ${vr}` });
      conn.destroy();
    }
    const stored = (await listTree(join(svc.dataDir, 'spool', 'studies'))).map((p) => p.split('/').pop());
    expect(stored).not.toContain(`${uid(4)}.dcm`);
    expect(stored).not.toContain(`${uid(5)}.dcm`);
  });

  it('classify: a UID whose VR became UN (its text read as a ~0.9 GB length) is skipped with a clear error (was: V8 out of memory, abort)', async () => {
    const f = makeTestMr({ studyInstanceUID: '2.25.8881', seriesInstanceUID: '2.25.8881.1', sopInstanceUID: '2.25.8881.1.1' });
    const at = f.indexOf(Buffer.from([0x20, 0x00, 0x0e, 0x00, 0x55, 0x49])); // (0020,000E) UI
    const bad = Buffer.from(f);
    bad.write('UN', at + 4, 'latin1');
    const path = join(root, 'ui-as-un.dcm');
    await writeFile(path, bad);
    const run = await runClassifyCli([path]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stackTrace).toBe(false);
    expect(run.message).toMatch(/no cine short-axis stack .*: 1 files, 0 DICOM images, 1 not DICOM/);
  });

  it('the A-ASSOCIATE-AC announces maxPduLength', async () => {
    const conn = await AssocConnection.open({ port: svc.dicomPort });
    conn.write(associateRq({ callingAE: 'REGRESS', calledAE: 'SAXRANGE', contexts: ctx }));
    const ac = await conn.next(10_000);
    if (typeof ac === 'string') throw new Error(ac);
    expect(parseAssociateAc(ac.body).maxPduLength).toBe(65536);
    conn.destroy();
  });
});
