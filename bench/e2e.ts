/**
 * End-to-end benchmark (issue 4): the last C-STORE of a 12-slice × 25-phase phantom study → the SR stored in
 * Orthanc, the stable wait excluded. storescu (TCP_NODELAY=1) → sax-range (in-process: SCP, tracker, worker,
 * export over Orthanc REST) → a real Orthanc on free ports. Stages from the job records: assemble, ED/ES,
 * frames, inference + Grad-CAM, build (SR/SC/KOS), export. Target ≤ 3 s on 2 cores.
 * Usage: node --import tsx bench/e2e.ts [--runs 3] [--model models/default]
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../src/config.js';
import type { Result } from '../src/inference/result.js';
import { createLogger } from '../src/log.js';
import { startService } from '../src/main.js';
import { writePhantomStudy } from '../src/phantom/index.js';
import { createRedis } from '../src/queue/redis.js';
import { storescu } from '../test/helpers/dcmtk.js';
import { startOrthanc } from '../test/helpers/orthanc.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const runs = Number(arg('--runs', '3'));
const modelDir = resolve(arg('--model', 'models/default'));
const root = await mkdtemp(join(tmpdir(), 'sax-bench-e2e-'));
const orthanc = await startOrthanc(join(root, 'orthanc'));
const stableSeconds = 1;
const rows: string[] = [];
try {
  for (let run = 0; run < runs; run++) {
    const { truth, paths } = await writePhantomStudy(join(root, `phantom-${run}`), { seed: 100 + run, slices: 12, phases: 25 });
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: join(root, `data-${run}`),
        dicomPort: 0,
        httpPort: 0,
        stableSeconds,
        queuePrefix: `bench-${randomUUID()}`,
        modelDir,
        backend: 'wasm',
        export: 'rest',
        orthancUrl: orthanc.url,
        orthancUsername: orthanc.auth.username,
        orthancPassword: orthanc.auth.password,
      },
    });
    const service = await startService(config, createLogger('bench', 'warn'));
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: config.aeTitle }, paths);
      if (sent.code !== 0) throw new Error(sent.output);
      const lastStore = Date.now();
      // Poll Orthanc for the SR of this study.
      let srAt = 0;
      while (!srAt) {
        const found = (await orthanc.api('/tools/find', { method: 'POST', body: { Level: 'Series', Query: { StudyInstanceUID: truth.studyInstanceUID, Modality: 'SR' } } })) as string[];
        if (found.length) srAt = Date.now();
        else await new Promise((r) => setTimeout(r, 20));
        if (Date.now() - lastStore > 120_000) throw new Error('no SR in Orthanc after 120 s');
      }
      const [job] = await service.classifyQueue.getJobs(['completed']);
      const [exp] = await service.exportQueue.getJobs(['completed', 'active']);
      const res = JSON.parse(readFileSync((job!.returnvalue as any).stacks[0].resultPath, 'utf8')) as Result;
      const t = res.timings as Record<string, number>;
      const total = (srAt - lastStore) / 1000 - stableSeconds;
      const exportMs = exp?.finishedOn && exp.processedOn ? exp.finishedOn - exp.processedOn : NaN;
      const queueWait = job!.processedOn! - (lastStore + stableSeconds * 1000);
      rows.push(
        `| ${run + 1} | ${total.toFixed(2)} | ${queueWait} | ${(job!.returnvalue as any).timings.assembleMs} | ${Math.round(t.phasesMs ?? NaN)} | ${Math.round(t.framesMs ?? NaN)} | ${Math.round(t.inferenceMs ?? NaN)} | ${Math.round(t.buildMs ?? NaN)} | ${exportMs} |`,
      );
      console.log(rows.at(-1));
      const redis = createRedis(config.redisUrl);
      const keys = await redis.keys(`${config.queuePrefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    } finally {
      await service.close();
    }
  }
} finally {
  await orthanc.stop();
  await rm(root, { recursive: true, force: true });
}
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? '?';
console.log(`\nmachine: ${cpus().length} cores ${cpu}, Node ${process.version}, backend wasm, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
console.log('| run | last C-STORE → SR in Orthanc, minus stable wait (s) | queue pickup (ms) | assemble | ED/ES | frames | inference+CAM | build SR/SC/KOS | export (ms) |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
