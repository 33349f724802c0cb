import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { storescu } from '../helpers/dcmtk.js';
import { startServeProcess, type ServeProcess } from '../helpers/process.js';
import { removeServiceKeys } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

/**
 * Issue 8: the roles as separate processes. One `scp,api` process and two `worker` processes share Redis and
 * a spool folder; storescu sends the studies. Every study must be classified exactly once, the jobs must be
 * spread over both workers, and a worker killed mid-job must lose nothing: its job finishes on the other
 * worker once the lock expires and the stall check takes it back.
 */
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LOCK_MS = 4000;

interface Study {
  truth: PhantomTruth;
  paths: string[];
}

interface JobView {
  id: string;
  queue: string;
  state: string;
  processedBy: { host: string; pid: number } | null;
}

let root: string;
let prefix: string;
let front: ServeProcess;
const workers: ServeProcess[] = [];
const studies: Study[] = [];
let big: Study;

async function studyView(uid: string): Promise<{ jobs: JobView[]; results: unknown[] } | undefined> {
  const r = await fetch(`http://127.0.0.1:${front.httpPort}/api/studies/${uid}`);
  if (r.status === 404) return undefined;
  return (await r.json()) as { jobs: JobView[]; results: unknown[] };
}

async function completed(uid: string): Promise<{ jobs: JobView[]; results: unknown[] } | undefined> {
  const v = await studyView(uid);
  const classify = v?.jobs.filter((j) => j.queue === 'classify') ?? [];
  return classify.length && classify.every((j) => j.state === 'completed') && v!.results.length ? v : undefined;
}

function logsAbout(procs: ServeProcess[], msg: string, uid: string): Array<{ proc: ServeProcess; line: Record<string, unknown> }> {
  return procs.flatMap((proc) => proc.logs.filter((l) => l.msg === msg && l.studyInstanceUID === uid).map((line) => ({ proc, line })));
}

function send(s: Study) {
  return storescu({ host: '127.0.0.1', port: front.dicomPort!, calledAE: 'SAXRANGE', callingAE: 'SCALE' }, s.paths);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-scale-'));
  prefix = `test-scale-${randomUUID()}`;
  for (let i = 0; i < 6; i++) {
    const dir = join(root, `study-${i}`);
    studies.push(await writePhantomStudy(dir, { seed: 800 + i, slices: 8, phases: 20, rows: 128 }));
  }
  // A larger study, so that a job is surely still running when its worker is killed.
  big = await writePhantomStudy(join(root, 'big'), { seed: 899, slices: 16, phases: 30 });

  const env = {
    SAX_RANGE_DATA_DIR: join(root, 'shared-data'),
    SAX_RANGE_QUEUE_PREFIX: prefix,
    REDIS_URL,
    SAX_RANGE_STABLE_SECONDS: '2',
    SAX_RANGE_BACKEND: 'wasm',
    SAX_RANGE_MODEL_DIR: resolve('models/default'),
    SAX_RANGE_INFERENCE_THREADS: '1',
    SAX_RANGE_JOB_LOCK_MS: String(LOCK_MS),
    SAX_RANGE_STALLED_INTERVAL_MS: '1000',
    SAX_RANGE_EXPORT: 'none',
    SAX_RANGE_DICOM_PORT: '0',
    SAX_RANGE_HTTP_PORT: '0',
  };
  front = await startServeProcess('front', { ...env, SAX_RANGE_ROLES: 'scp,api' });
  for (const n of [1, 2]) workers.push(await startServeProcess(`worker-${n}`, { ...env, SAX_RANGE_ROLES: 'worker' }));
  for (const w of workers) await w.waitForLog((l) => l.msg === 'classify worker ready', 60_000, 'worker ready');
  expect(front.dicomPort).toBeGreaterThan(0);
  // A worker-only process serves no DICOM, but answers probes and scrapes on its HTTP port (src/api/ops.ts).
  expect(workers.every((w) => w.dicomPort === null && (w.httpPort ?? 0) > 0)).toBe(true);
});

afterAll(async () => {
  for (const p of [front, ...workers]) await p?.stop();
  await removeServiceKeys(loadConfig({ env: {}, overrides: { redisUrl: REDIS_URL, queuePrefix: prefix } }));
  await rm(root, { recursive: true, force: true });
});

describe('scale-out: scp,api + two worker processes on one Redis and one spool', () => {
  it('classifies six studies exactly once each, spread over both workers', async () => {
    const sent = await Promise.all(studies.map(send));
    for (const r of sent) expect(r.code, r.stderr).toBe(0);

    const pids = new Set(workers.map((w) => w.pid));
    const used = new Set<number>();
    for (const s of studies) {
      const uid = s.truth.studyInstanceUID;
      const v = await until(`study ${uid} classified`, () => completed(uid), 90_000);
      const classify = v.jobs.filter((j) => j.queue === 'classify');
      expect(classify).toHaveLength(1);
      expect(v.results).toHaveLength(1);
      const by = classify[0]!.processedBy;
      expect(by, 'processedBy in the job record').not.toBeNull();
      expect(pids.has(by!.pid), `processedBy.pid ${by!.pid} is one of the workers`).toBe(true);
      used.add(by!.pid);
      // Exactly once across both processes: one start and one completion in all the logs.
      expect(logsAbout(workers, 'classify job started', uid)).toHaveLength(1);
      expect(logsAbout(workers, 'classify job completed', uid)).toHaveLength(1);
    }
    expect([...used].sort(), 'both workers took jobs').toEqual([...pids].sort());
  });

  it('each worker process answers /healthz and /readyz and serves its own /metrics (the jobs it ran)', async () => {
    let classified = 0;
    for (const w of workers) {
      const base = `http://127.0.0.1:${w.httpPort}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = (await (await fetch(`${base}/readyz`)).json()) as { status: string; checks: Record<string, boolean> };
      expect(ready).toEqual({ status: 'ready', checks: { redis: true, spool: true, model: true } });
      const text = await (await fetch(`${base}/metrics`)).text();
      const m = /^sax_range_stage_duration_seconds_count\{stage="classify"\} (\d+)$/m.exec(text);
      expect(m, `classify stage count in worker ${w.pid}'s /metrics`).not.toBeNull();
      expect(Number(m![1]), 'this worker classified some of the studies').toBeGreaterThan(0);
      classified += Number(m![1]);
      expect(text).not.toMatch(/^sax_range_instances_received_total\{[^}]*\} [1-9]/m); // the SCP counts those, not a worker
      expect((await fetch(`${base}/api/studies`)).status).toBe(404); // no api role here
    }
    expect(classified, 'the workers counted each of the six studies once').toBe(studies.length);
  });

  it('a worker SIGKILLed mid-job: the job finishes once on the other worker after stall detection', async () => {
    const uid = big.truth.studyInstanceUID;
    const r = await send(big);
    expect(r.code, r.stderr).toBe(0);
    const started = await Promise.race(
      workers.map((w) => w.waitForLog((l) => l.msg === 'classify job started' && l.studyInstanceUID === uid, 60_000, 'the big job').then(() => w)),
    );
    started.kill('SIGKILL');
    const killedAt = Date.now();
    const survivor = workers.find((w) => w !== started)!;
    await started.exited;

    const v = await until(`study ${uid} classified after the kill`, () => completed(uid), 90_000, 100);
    const recoveryMs = Date.now() - killedAt;
    const classify = v.jobs.filter((j) => j.queue === 'classify');
    expect(classify).toHaveLength(1);
    expect(classify[0]!.processedBy?.pid).toBe(survivor.pid);
    expect(logsAbout([started], 'classify job completed', uid), 'the killed worker did not finish it').toHaveLength(0);
    expect(logsAbout([survivor], 'classify job completed', uid)).toHaveLength(1);
    expect(survivor.logs.some((l) => l.msg?.toString().startsWith('classify job stalled')), 'the survivor saw the stall').toBe(true);
    // The lock has to run out before the job is taken back: recovery cannot be quicker than that.
    expect(recoveryMs).toBeGreaterThanOrEqual(LOCK_MS - 1000);
    console.log(`stall recovery: ${(recoveryMs / 1000).toFixed(1)} s from SIGKILL to result (lock ${LOCK_MS} ms, stall check every 1 s)`);
  });
});
