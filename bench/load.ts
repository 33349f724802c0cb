/**
 * Load benchmark (issue 7): 50 concurrent associations, each storescu sending its own phantom study, into one
 * `sax-range serve` process (all roles) that exports to a real Orthanc over REST. Checks that every instance
 * is stored, every study classified and every result object delivered; reports throughput, end-to-end latency
 * (last C-STORE acknowledged → last export job finished, the stable wait included and also shown without
 * it), and the peak RSS of the service.
 * Usage: node --import tsx bench/load.ts [--studies 50] [--slices 6] [--phases 20] [--rows 128] [--workers 1]
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { writePhantomStudy } from '../src/phantom/index.js';
import { createRedis } from '../src/queue/redis.js';
import { storescu } from '../test/helpers/dcmtk.js';
import { startOrthanc } from '../test/helpers/orthanc.js';
import { startServeProcess, type ServeProcess } from '../test/helpers/process.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const n = Number(arg('--studies', '50'));
const slices = Number(arg('--slices', '6'));
const phases = Number(arg('--phases', '20'));
const rows = Number(arg('--rows', '128'));
const extraWorkers = Number(arg('--workers', '1')) - 1;
const STABLE_S = 2;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU';
console.log(`machine: ${cpus().length} cores, ${cpu}, Node ${process.version}, load ${loadavg()[0]!.toFixed(2)}`);
console.log(`${n} concurrent associations, one phantom study each (${slices} slices × ${phases} phases, ${rows}², ${slices * phases} instances); stable wait ${STABLE_S} s; export: Orthanc REST`);

const root = await mkdtemp(join(tmpdir(), 'sax-bench-load-'));
const prefix = `bench-load-${randomUUID()}`;
const orthanc = await startOrthanc(join(root, 'orthanc'));
const procs: ServeProcess[] = [];
try {
  const studies = [];
  for (let i = 0; i < n; i++) studies.push(await writePhantomStudy(join(root, `s${i}`), { seed: 3000 + i, slices, phases, rows }));
  const env = {
    SAX_RANGE_DATA_DIR: join(root, 'data'),
    SAX_RANGE_QUEUE_PREFIX: prefix,
    REDIS_URL,
    SAX_RANGE_STABLE_SECONDS: String(STABLE_S),
    SAX_RANGE_BACKEND: 'wasm',
    SAX_RANGE_MODEL_DIR: resolve('models/default'),
    SAX_RANGE_INFERENCE_THREADS: '1',
    SAX_RANGE_MAX_ASSOCIATIONS: String(Math.max(64, n + 8)),
    SAX_RANGE_EXPORT: 'rest',
    ORTHANC_URL: orthanc.url,
    ORTHANC_USERNAME: orthanc.auth.username,
    ORTHANC_PASSWORD: orthanc.auth.password,
    SAX_RANGE_DICOM_PORT: '0',
    SAX_RANGE_HTTP_PORT: '0',
  };
  const svc = await startServeProcess('service', env);
  procs.push(svc);
  for (let w = 0; w < extraWorkers; w++) procs.push(await startServeProcess(`worker-${w}`, { ...env, SAX_RANGE_ROLES: 'worker' }));
  await svc.waitForLog((l) => l.msg === 'classify worker ready', 120_000, 'worker ready');

  // RSS sampled every 200 ms across the run (VmHWM gives the peak too; the samples show the shape).
  let rssMax = 0;
  const sampler = setInterval(() => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${svc.pid}/status`, 'utf8'));
      if (m) rssMax = Math.max(rssMax, Number(m[1]) * 1024);
    } catch {
      /* exited */
    }
  }, 200);

  const t0 = Date.now();
  const sent = await Promise.all(
    studies.map(async (s) => {
      const r = await storescu({ port: svc.dicomPort!, calledAE: 'SAXRANGE', callingAE: 'LOAD' }, s.paths, [], 600_000);
      return { code: r.code, output: r.output, doneAt: Date.now() };
    }),
  );
  const ingestS = (Math.max(...sent.map((s) => s.doneAt)) - t0) / 1000;
  const failedSends = sent.filter((s) => s.code !== 0);
  if (failedSends.length) throw new Error(`${failedSends.length} storescu runs failed: ${failedSends[0]!.output.slice(-400)}`);

  interface View {
    instancesReceived: number;
    jobs: Array<{ queue: string; state: string; finishedOn: number | null }>;
    results: Array<{ outputs: unknown[] }>;
  }
  const latencies: number[] = [];
  let objects = 0;
  const deadline = Date.now() + 30 * 60_000;
  for (const [i, s] of studies.entries()) {
    for (;;) {
      const r = await fetch(`http://127.0.0.1:${svc.httpPort}/api/studies/${s.truth.studyInstanceUID}`);
      const v = r.ok ? ((await r.json()) as View) : undefined;
      const exp = v?.jobs.filter((j) => j.queue === 'export') ?? [];
      const cls = v?.jobs.filter((j) => j.queue === 'classify') ?? [];
      if (v && cls.length && cls.every((j) => j.state === 'completed') && exp.length && exp.every((j) => j.state === 'completed')) {
        if (v.instancesReceived !== s.paths.length) throw new Error(`study ${i}: ${v.instancesReceived}/${s.paths.length} instances`);
        if (exp.some((j) => j.state === 'failed') || cls.some((j) => j.state === 'failed')) throw new Error(`study ${i}: a job failed`);
        latencies.push(Math.max(...exp.map((j) => j.finishedOn!)) - sent[i]!.doneAt);
        objects += v.results.reduce((a, d) => a + d.outputs.length, 0);
        break;
      }
      if (Date.now() > deadline) throw new Error(`study ${i} not done in 30 min`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const totalS = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  const peak = await svc.peakRss();
  // Orthanc holds every object once.
  const stats = await orthanc.api<{ CountInstances: number; CountStudies: number }>('/statistics');
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)]! / 1000;
  const instances = n * slices * phases;
  console.log(`\nstored ${instances}/${instances} instances (${(instances / ingestS).toFixed(0)} instances/s while ${n} associations sent), ${n}/${n} studies classified and exported`);
  console.log(`Orthanc: ${stats.CountInstances} instances in ${stats.CountStudies} studies; our objects ${objects} (expected equal: each delivered once)`);
  console.log('\n| studies × instances | concurrent associations | ingest s | all done s | studies/min | e2e p50 | e2e p95 | p95 without the stable wait | peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${n} × ${slices * phases} | ${n} | ${ingestS.toFixed(1)} | ${totalS.toFixed(1)} | ${((n / totalS) * 60).toFixed(1)} | ${q(0.5).toFixed(1)} s | ${q(0.95).toFixed(1)} s | ${(q(0.95) - STABLE_S).toFixed(1)} s | ${(Math.max(peak, rssMax) / 2 ** 20).toFixed(0)} MB |`,
  );
  if (stats.CountInstances !== objects) throw new Error(`Orthanc has ${stats.CountInstances} instances, we made ${objects}`);
} finally {
  for (const p of procs) await p.stop();
  await orthanc.stop();
  const redis = createRedis(REDIS_URL);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  await rm(root, { recursive: true, force: true });
}
