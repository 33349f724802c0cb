/**
 * Scale-out benchmark (issue 8): studies per minute with one and with two `worker` processes on this machine,
 * the same studies each time, plus CPU seconds per study. Each configuration gets a fresh `scp,api`
 * process, its own Redis prefix and spool; the studies are sent by storescu while the classify queue is
 * paused, then the queue is resumed and the clock runs from resume to the last completed job (ingest is not
 * in the figure). Export is off: the figure is classification with SR/SC/KOS building, what a worker does.
 * Usage: node --import tsx bench/scale.ts [--studies 24] [--configs 1x1,2x1,1x2,1x2x2]   (PROCESSESxTHREADS[xCONCURRENCY])
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import { writePhantomStudy } from '../src/phantom/index.js';
import { createRedis } from '../src/queue/redis.js';
import { storescu } from '../test/helpers/dcmtk.js';
import { startServeProcess, type ServeProcess } from '../test/helpers/process.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const n = Number(arg('--studies', '24'));
const configs = arg('--configs', '1x1,2x1,1x2,1x2x2')
  .split(',')
  .map((c) => c.split('x').map(Number))
  .map(([p, t, c]) => [p!, t!, c ?? 1] as const);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const root = await mkdtemp(join(tmpdir(), 'sax-bench-scale-'));

const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU';
console.log(`machine: ${cpus().length} cores, ${cpu}, Node ${process.version}, load ${loadavg()[0]!.toFixed(2)}`);
console.log(`studies: ${n} phantom studies, 12 slices × 25 phases, 256², explicit VR LE; backend wasm; export off`);

const studies: string[][] = [];
for (let i = 0; i < n; i++) studies.push((await writePhantomStudy(join(root, `study-${i}`), { seed: 500 + i, slices: 12, phases: 25 })).paths);

interface Row {
  config: string;
  seconds: number;
  perMinute: number;
  cpuPerStudy: number;
  spread: string;
  peakRssMb: number;
}
const rows: Row[] = [];

for (const [procs, threads, concurrency] of configs) {
  const prefix = `bench-scale-${randomUUID()}`;
  const env = {
    SAX_RANGE_DATA_DIR: join(root, `data-${procs}x${threads}x${concurrency}`),
    SAX_RANGE_QUEUE_PREFIX: prefix,
    REDIS_URL,
    SAX_RANGE_STABLE_SECONDS: '1',
    SAX_RANGE_BACKEND: 'wasm',
    SAX_RANGE_MODEL_DIR: resolve('models/default'),
    SAX_RANGE_INFERENCE_THREADS: String(threads),
    SAX_RANGE_WORKER_CONCURRENCY: String(concurrency),
    SAX_RANGE_EXPORT: 'none',
    SAX_RANGE_DICOM_PORT: '0',
    SAX_RANGE_HTTP_PORT: '0',
    LOG_LEVEL: 'info',
  };
  const redis = createRedis(REDIS_URL, 'bench-scale');
  const queue = new Queue('classify', { connection: redis, prefix });
  const all: ServeProcess[] = [];
  try {
    const front = await startServeProcess('front', { ...env, SAX_RANGE_ROLES: 'scp,api' });
    all.push(front);
    const workers: ServeProcess[] = [];
    for (let w = 0; w < procs; w++) workers.push(await startServeProcess(`worker-${w}`, { ...env, SAX_RANGE_ROLES: 'worker' }));
    all.push(...workers);
    for (const w of workers) await w.waitForLog((l) => l.msg === 'classify worker ready', 120_000, 'worker ready');
    await queue.pause();

    for (let i = 0; i < studies.length; i += 4) {
      const batch = studies.slice(i, i + 4);
      const sent = await Promise.all(batch.map((paths) => storescu({ port: front.dicomPort!, calledAE: 'SAXRANGE' }, paths)));
      for (const s of sent) if (s.code !== 0) throw new Error(s.output);
    }
    for (;;) {
      if ((await queue.getWaitingCount()) >= n) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const cpu0 = await Promise.all(workers.map((w) => w.cpuSeconds()));
    const t0 = performance.now();
    await queue.resume();
    for (;;) {
      const c = await queue.getJobCounts('completed', 'failed');
      if ((c.failed ?? 0) > 0) throw new Error(`${c.failed} classify jobs failed`);
      if ((c.completed ?? 0) >= n) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = await Promise.all(workers.map((w) => w.cpuSeconds()));
    const cpuTotal = cpu1.reduce((a, b, i) => a + b - cpu0[i]!, 0);
    const done = await queue.getJobs(['completed'], 0, n);
    const byPid = new Map<number, number>();
    for (const j of done) {
      const pid = (j.returnvalue as { processedBy?: { pid: number } }).processedBy?.pid ?? 0;
      byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
    }
    const rss = Math.max(...(await Promise.all(workers.map((w) => w.peakRss()))));
    const row: Row = {
      config: `${procs} worker process${procs > 1 ? 'es' : ''} × ${threads} inference thread${threads > 1 ? 's' : ''}, ${concurrency} job${concurrency > 1 ? 's' : ''} at a time`,
      seconds,
      perMinute: (n / seconds) * 60,
      cpuPerStudy: cpuTotal / n,
      spread: [...byPid.values()].join('/'),
      peakRssMb: rss / 2 ** 20,
    };
    rows.push(row);
    console.log(`${row.config}: ${n} studies in ${seconds.toFixed(1)} s, ${row.perMinute.toFixed(1)} studies/min, ${row.cpuPerStudy.toFixed(2)} CPU s/study, jobs per worker ${row.spread}, peak worker RSS ${row.peakRssMb.toFixed(0)} MB`);
  } finally {
    for (const p of all) await p.stop();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

const base = rows[0]!;
console.log('\n| configuration | studies/min | ratio vs first | CPU s per study | jobs per worker | peak worker RSS |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.config} | ${r.perMinute.toFixed(1)} | ${(r.perMinute / base.perMinute).toFixed(2)} | ${r.cpuPerStudy.toFixed(2)} | ${r.spread} | ${r.peakRssMb.toFixed(0)} MB |`);
}
await rm(root, { recursive: true, force: true });
