import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { parseHeader } from '../../src/dicom/meta.js';
import type { Result } from '../../src/inference/result.js';
import { writePhantomStudy } from '../../src/phantom/index.js';
import { createRedis } from '../../src/queue/redis.js';
import { datasetOffset, echoscu, freePort, runTool } from '../helpers/dcmtk.js';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc.js';
import { startServeProcess, type ServeProcess } from '../helpers/process.js';
import { removeServiceKeys } from '../helpers/service.js';
import { listTree } from '../helpers/files.js';
import { storescuVerbose } from '../helpers/storescu-log.js';
import { until } from '../helpers/wait.js';

/**
 * Issue 7, faults, with the real processes: the service runs as `sax-range serve` child processes and is
 * killed, starved of disk, or loses Redis or Orthanc under it. What must hold each time: every instance
 * answered Success is on disk, every study is processed exactly once, every result object reaches Orthanc
 * exactly once, and nothing half-written is left behind.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
let root: string;
let orthanc: OrthancHandle;
const procs: ServeProcess[] = [];
const prefixes: string[] = [];

function baseEnv(name: string, over: Record<string, string> = {}): Record<string, string> {
  const prefix = `test-faults-${name}-${randomUUID()}`;
  prefixes.push(prefix);
  return {
    SAX_RANGE_DATA_DIR: join(root, `data-${name}`),
    SAX_RANGE_QUEUE_PREFIX: prefix,
    REDIS_URL,
    SAX_RANGE_BACKEND: 'wasm',
    SAX_RANGE_MODEL_DIR: resolve('models/default'),
    SAX_RANGE_INFERENCE_THREADS: '1',
    SAX_RANGE_DICOM_PORT: '0',
    SAX_RANGE_HTTP_PORT: '0',
    SAX_RANGE_STABLE_SECONDS: '2',
    SAX_RANGE_EXPORT: 'none',
    ...over,
  };
}

async function serve(name: string, env: Record<string, string>): Promise<ServeProcess> {
  const p = await startServeProcess(name, env);
  procs.push(p);
  return p;
}

async function api<T>(p: ServeProcess, path: string): Promise<T | undefined> {
  const r = await fetch(`http://127.0.0.1:${p.httpPort}${path}`);
  return r.ok ? ((await r.json()) as T) : undefined;
}

interface StudyView {
  instancesReceived: number;
  jobs: Array<{ id: string; queue: string; state: string; attempts: number; processedBy: { pid: number } | null }>;
  results: Result[];
}

/** The study once its classify job completed and (when `exports`) every export job too. */
async function processed(p: ServeProcess, uid: string, exports = false): Promise<StudyView | undefined> {
  const v = await api<StudyView>(p, `/api/studies/${uid}`);
  if (!v) return undefined;
  const classify = v.jobs.filter((j) => j.queue === 'classify');
  const exp = v.jobs.filter((j) => j.queue === 'export');
  if (!classify.length || !classify.every((j) => j.state === 'completed') || !v.results.length) return undefined;
  if (exports && (!exp.length || !exp.every((j) => j.state === 'completed'))) return undefined;
  return v;
}

function completions(ps: ServeProcess[], uid: string): number {
  return ps.reduce((n, p) => n + p.logs.filter((l) => l.msg === 'classify job completed' && l.studyInstanceUID === uid).length, 0);
}

/** Orthanc's instances of a study, SOP Instance UID by modality. */
async function orthancObjects(uid: string): Promise<Record<string, string[]>> {
  const found = await orthanc.api<Array<{ ID: string; Type: string }>>('/tools/lookup', { method: 'POST', body: new TextEncoder().encode(uid) });
  const studyId = found.find((x) => x.Type === 'Study')?.ID;
  if (!studyId) return {};
  const out: Record<string, string[]> = {};
  for (const s of await orthanc.api<Array<{ ID: string; MainDicomTags: { Modality: string } }>>(`/studies/${studyId}/series`)) {
    const inst = await orthanc.api<Array<{ MainDicomTags: { SOPInstanceUID: string } }>>(`/series/${s.ID}/instances`);
    (out[s.MainDicomTags.Modality] ??= []).push(...inst.map((i) => i.MainDicomTags.SOPInstanceUID));
  }
  return out;
}

/** Checks that Orthanc holds exactly the objects the result documents list, once each, beside the source images. */
async function expectOutputsOnceInOrthanc(uid: string, results: Result[], sourceCount: number): Promise<void> {
  const objects = await orthancObjects(uid);
  const expected = results.flatMap((r) => r.outputs.map((o) => o.sopInstanceUID));
  const ours = [...(objects.SR ?? []), ...(objects.OT ?? []), ...(objects.KO ?? [])];
  expect(ours.sort()).toEqual([...expected].sort());
  expect(new Set(ours).size).toBe(ours.length);
  expect(objects.MR ?? []).toHaveLength(sourceCount);
}

async function sopOf(path: string): Promise<string> {
  return parseHeader(await readFile(path)).dataset.SOPInstanceUID as string;
}

/** Non-empty files in the spool's temp folder: bytes of an instance never committed. (The SCP keeps one empty spare.) */
async function partialFiles(spoolDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of await listTree(join(spoolDir, 'tmp'))) if ((await stat(f)).size > 0) out.push(f);
  return out;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-faults-'));
  orthanc = await startOrthanc(join(root, 'orthanc'));
});

afterAll(async () => {
  for (const p of procs) await p.stop();
  await orthanc?.stop();
  for (const queuePrefix of prefixes) await removeServiceKeys(loadConfig({ env: {}, overrides: { redisUrl: REDIS_URL, queuePrefix } }));
  await rm(root, { recursive: true, force: true });
});

describe('faults', () => {
  it('SIGKILL during a 500-instance ingest: every instance answered Success survives; the study is processed once; Orthanc gets each object once', async () => {
    const study = await writePhantomStudy(join(root, 'kill-study'), { seed: 910, slices: 20, phases: 25, rows: 128 });
    expect(study.paths).toHaveLength(500);
    const dicomPort = await freePort();
    const httpPort = await freePort();
    // The production stable time: the restarted process must not take the half-sent study for a whole one.
    const env = baseEnv('kill', {
      SAX_RANGE_DICOM_PORT: String(dicomPort),
      SAX_RANGE_HTTP_PORT: String(httpPort),
      SAX_RANGE_STABLE_SECONDS: '10',
      SAX_RANGE_EXPORT: 'rest',
      ORTHANC_URL: orthanc.url,
      ORTHANC_USERNAME: orthanc.auth.username,
      ORTHANC_PASSWORD: orthanc.auth.password,
    });
    const first = await serve('kill-1', env);
    let killedAt = 0;
    const sent = await storescuVerbose({ port: dicomPort, calledAE: 'SAXRANGE' }, study.paths, {
      onSuccessCount: (n) => {
        if (n === 200 && !killedAt) {
          first.kill('SIGKILL');
          killedAt = n;
        }
      },
    });
    await first.exited;
    const acked = [...sent.responses].filter(([, s]) => s === 'Success').map(([f]) => f);
    expect(killedAt).toBe(200);
    expect(acked.length).toBeGreaterThanOrEqual(200);
    expect(acked.length, 'the kill interrupted the transfer').toBeLessThan(500);

    const second = await serve('kill-2', env);
    // Every instance answered Success is in the spool, its dataset byte-identical to what was sent.
    const spooled = new Map<string, string>();
    for (const f of await listTree(join(env.SAX_RANGE_DATA_DIR!, 'spool', 'studies'))) spooled.set(f.slice(f.lastIndexOf('/') + 1, -4), f);
    for (const f of acked) {
      const sop = await sopOf(f);
      const inSpool = spooled.get(sop);
      expect(inSpool, `acknowledged ${sop} is in the spool`).toBeDefined();
      const a = await readFile(f);
      const b = await readFile(inSpool!);
      expect(b.subarray(datasetOffset(b)).equals(a.subarray(datasetOffset(a))), sop).toBe(true);
    }
    // Nothing half-written: the spool's temp folder was emptied at start, no partial files in the studies.
    expect(await partialFiles(join(env.SAX_RANGE_DATA_DIR!, 'spool'))).toEqual([]);
    expect([...spooled.values()].every((f) => f.endsWith('.dcm'))).toBe(true);

    // The sender retries what was not acknowledged, as a scanner does.
    const rest = study.paths.filter((p) => !acked.includes(p));
    const resent = await storescuVerbose({ port: dicomPort, calledAE: 'SAXRANGE' }, rest);
    expect([...resent.responses.values()].every((s) => s === 'Success'), resent.output.slice(-500)).toBe(true);
    expect(resent.responses.size).toBe(rest.length);

    const uid = study.truth.studyInstanceUID;
    const v = await until('the study processed and exported', () => processed(second, uid, true), 120_000, 500);
    expect(v.instancesReceived).toBe(500);
    expect(v.jobs.filter((j) => j.queue === 'classify')).toHaveLength(1);
    expect(completions([first, second], uid)).toBe(1);
    expect(v.results[0]!.phases.ED.inRange.count).toBeGreaterThan(0);
    await expectOutputsOnceInOrthanc(uid, v.results, 0);
    console.log(`SIGKILL at the 200th Success: ${acked.length} answered Success, ${acked.length} in the spool byte-identical; ${rest.length} resent; 500/500 received, 1 classify job, ${v.results[0]!.outputs.length} objects in Orthanc once each`);
  });

  it('Redis restarted mid-run: no instance and no job lost, each study processed once', async () => {
    // A Redis of our own (persistent, fsync on every write) so that restarting it does not touch anyone else's.
    const port = await freePort();
    const dir = join(root, 'redis');
    await mkdir(dir, { recursive: true });
    const startRedis = (): ChildProcess =>
      spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
    let redis = startRedis();
    const probe = createRedis(`redis://127.0.0.1:${port}`);
    probe.on('error', () => undefined);
    try {
      await until('private redis up', async () => ((await probe.ping().catch(() => null)) === 'PONG' ? true : undefined), 20_000, 100);
      const svc = await serve('redis', baseEnv('redis', { REDIS_URL: `redis://127.0.0.1:${port}`, SAX_RANGE_ROLES: 'scp,worker,api' }));
      const studies = [];
      for (let i = 0; i < 3; i++) studies.push(await writePhantomStudy(join(root, `redis-study-${i}`), { seed: 920 + i, slices: 8, phases: 20, rows: 128 }));
      const target = { port: svc.dicomPort!, calledAE: 'SAXRANGE' };

      const s0 = await storescuVerbose(target, studies[0]!.paths);
      expect(s0.code).toBe(0);
      // Redis goes away while study 1 is arriving and comes back 3 s later; study 2 follows.
      let restarted: Promise<void> | undefined;
      const s1 = await storescuVerbose(target, studies[1]!.paths, {
        onSuccessCount: (n) => {
          if (n !== 60 || restarted) return;
          restarted = (async () => {
            redis.kill('SIGTERM');
            await new Promise((r) => redis.once('exit', r));
            await new Promise((r) => setTimeout(r, 3000));
            redis = startRedis();
          })();
        },
      });
      await restarted;
      const s2 = await storescuVerbose(target, studies[2]!.paths);
      console.log(`Redis restart during study 1: ${[...s1.responses.values()].filter((x) => x === 'Success').length}/${studies[1]!.paths.length} answered Success, ${[...s1.responses.values()].filter((x) => x !== 'Success').length} refused (resent)`);
      for (const [i, s] of [s0, s1, s2].entries()) {
        expect(s.responses.size, `study ${i}: every instance answered`).toBe(studies[i]!.paths.length);
        // Stores during the outage are answered once the tracker could record them (or refused, to be resent):
        // never Success without being recorded.
        const failed = [...s.responses].filter(([, st]) => st !== 'Success').map(([f]) => f);
        if (failed.length) {
          const again = await storescuVerbose(target, failed);
          expect([...again.responses.values()].every((st) => st === 'Success')).toBe(true);
        }
      }
      expect(svc.logs.some((l) => l.msg === 'redis connection error'), 'the outage was seen and logged').toBe(true);
      for (const st of studies) {
        const uid = st.truth.studyInstanceUID;
        const v = await until(`study ${uid} processed`, () => processed(svc, uid), 90_000, 300);
        expect(v.instancesReceived).toBe(st.paths.length);
        expect(v.jobs.filter((j) => j.queue === 'classify')).toHaveLength(1);
        expect(completions([svc], uid)).toBe(1);
      }
    } finally {
      probe.disconnect();
      redis.kill('SIGTERM');
    }
  });

  it('Orthanc down for a minute: exports are retried with backoff and delivered once after it returns', async () => {
    const svc = await serve(
      'orthanc-down',
      baseEnv('orthanc-down', { SAX_RANGE_EXPORT: 'rest', ORTHANC_URL: orthanc.url, ORTHANC_USERNAME: orthanc.auth.username, ORTHANC_PASSWORD: orthanc.auth.password }),
    );
    const study = await writePhantomStudy(join(root, 'down-study'), { seed: 930, slices: 8, phases: 20, rows: 128 });
    await orthanc.stop();
    const downAt = Date.now();
    let upAt = 0;
    try {
      const s = await storescuVerbose({ port: svc.dicomPort!, calledAE: 'SAXRANGE' }, study.paths);
      expect(s.code).toBe(0);
      const uid = study.truth.studyInstanceUID;
      // The export fails and is retried while Orthanc is away.
      await until(
        'a failed export attempt',
        async () => ((await api<StudyView>(svc, `/api/studies/${uid}`))?.jobs.some((j) => j.queue === 'export' && j.attempts >= 2) ? true : undefined),
        60_000,
        500,
      );
      await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - downAt))));
      await orthanc.start();
      upAt = Date.now();
      const v = await until('exported after Orthanc returned', () => processed(svc, uid, true), 240_000, 1000);
      const exp = v.jobs.filter((j) => j.queue === 'export');
      expect(exp.every((j) => j.attempts >= 3), JSON.stringify(exp)).toBe(true);
      await expectOutputsOnceInOrthanc(uid, v.results, 0);
      const retries = svc.logs.filter((l) => l.msg === 'export failed').length;
      expect(retries).toBeGreaterThanOrEqual(3);
      console.log(`orthanc down ${((upAt - downAt) / 1000).toFixed(0)} s: ${retries} failed export attempts, delivered ${((Date.now() - upAt) / 1000).toFixed(0)} s after it returned`);
    } finally {
      if (!upAt) await orthanc.start();
    }
  });

  it('disk full on the spool: C-STORE is answered Out of Resources, nothing half-written, the service stays up', async () => {
    const mnt = join(root, 'small-disk');
    await mkdir(mnt, { recursive: true });
    const m = await runTool('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
    expect(m.code, `mounting a 3 MiB tmpfs for the spool (the test runs as root): ${m.output}`).toBe(0);
    try {
      const svc = await serve('disk', baseEnv('disk', { SAX_RANGE_DATA_DIR: join(mnt, 'data'), SAX_RANGE_ROLES: 'scp,api' }));
      // 120 instances of 128² 16-bit (≈ 33 kB each): about 4 MB, more than the disk holds.
      const study = await writePhantomStudy(join(root, 'disk-study'), { seed: 940, slices: 6, phases: 20, rows: 128 });
      const target = { port: svc.dicomPort!, calledAE: 'SAXRANGE' };
      const s = await storescuVerbose(target, study.paths);
      const ok = [...s.responses].filter(([, st]) => st === 'Success').map(([f]) => f);
      const refused = [...s.responses].filter(([, st]) => st !== 'Success');
      expect(ok.length).toBeGreaterThan(0);
      expect(refused.length).toBeGreaterThan(0);
      for (const [, st] of refused) expect(st).toMatch(/OutOfResources|Out of Resources|A7/i);
      const studyDir = join(mnt, 'data', 'spool', 'studies', study.truth.studyInstanceUID);
      const spooled = await listTree(studyDir);
      expect(spooled.map((f) => f.slice(f.lastIndexOf('/') + 1, -4)).sort()).toEqual((await Promise.all(ok.map(sopOf))).sort());
      expect(await partialFiles(join(mnt, 'data', 'spool')), 'no partial files left').toEqual([]);
      expect((await echoscu(target)).code, 'the service is still up').toBe(0);
      console.log(`disk full: ${ok.length} answered Success and stored, ${refused.length} refused with ${refused[0]![1]}, 0 partial files`);
      expect(svc.logs.some((l) => /ENOSPC/.test(JSON.stringify(l))), 'the cause is in the log').toBe(true);

      // Space comes back: the refused instances go through on a retry, nothing accepted before was lost.
      const r = await runTool('mount', ['-o', 'remount,size=64m', mnt]);
      expect(r.code, r.output).toBe(0);
      const again = await storescuVerbose(target, refused.map(([f]) => f));
      expect([...again.responses.values()].every((st) => st === 'Success'), again.output.slice(-400)).toBe(true);
      expect(await listTree(studyDir)).toHaveLength(study.paths.length);
      await svc.stop();
    } finally {
      await runTool('umount', ['-l', mnt]);
    }
  });
});
