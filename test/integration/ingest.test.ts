import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startService, type Service } from '../../src/main.js';
import type { ClassifyResult } from '../../src/pipeline/classify.js';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import type { ClassifyJobData } from '../../src/queue/jobs.js';
import { storescu } from '../helpers/dcmtk.js';
import { writeUntrainedModelDir } from '../helpers/model.js';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

const logger = createLogger('test', process.env.LOG_LEVEL ?? 'warn');
let root: string;
let modelDir: string;

function testConfig(overrides: Partial<Config> = {}): Config {
  return testServiceConfig(root, { roles: ['scp', 'api'], modelDir, ...overrides });
}


/** The classify jobs the service queued (any state). */
async function jobsOf(service: Service) {
  return service.classifyQueue.getJobs(['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized']);
}

const cleanup = removeServiceKeys;

function datasetPart(buf: Buffer): Buffer {
  // Part 10: 128-byte preamble, 'DICM', then group 0002 whose length is in (0002,0000) UL.
  const groupLength = buf.readUInt32LE(132 + 8);
  return buf.subarray(132 + 12 + groupLength);
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-ingest-'));
  modelDir = await writeUntrainedModelDir(join(root, 'model'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ingest: storescu → SCP → spool → tracker → classify job', () => {
  for (const layout of ['single-series', 'series-per-slice'] as const) {
    it(`queues one job with the right stack for a ${layout} study, every instance byte-identical in the spool`, async () => {
      const study = await writePhantomStudy(join(root, `phantom-${layout}`), { seed: 3, slices: 8, phases: 20, layout });
      const config = testConfig();
      const service = await startService(config, logger);
      try {
        const sent = await storescu({ port: service.dicomPort!, calledAE: config.aeTitle, callingAE: 'MODALITY' }, study.paths);
        expect(sent.code, sent.output).toBe(0);

        const [job] = await until('a classify job', async () => {
          const jobs = await jobsOf(service);
          return jobs.length ? jobs : undefined;
        });
        const data = job!.data as ClassifyJobData;
        expect(data.studyInstanceUID).toBe(study.truth.studyInstanceUID);
        expect(data.instanceCount).toBe(8 * 20);
        expect(data.stacks).toHaveLength(1);
        expect(data.stacks[0]).toMatchObject({ slices: 8, phases: 20 });
        expect(data.stacks[0]!.seriesInstanceUIDs).toHaveLength(layout === 'single-series' ? 1 : 8);
        expect(data.setAside).toEqual([]);
        // Still exactly one job a moment later: the tracker does not enqueue a quiet study twice.
        await new Promise((r) => setTimeout(r, 1500));
        expect(await jobsOf(service)).toHaveLength(1);

        // Every instance answered Success is in the spool, its dataset byte-identical to what was sent.
        const spooled = await service.spool.listInstances(study.truth.studyInstanceUID);
        expect(spooled).toHaveLength(study.paths.length);
        for (const p of study.paths.filter((_, i) => i % 7 === 0)) {
          const sentBytes = await readFile(p);
          const sop = (await import('../../src/dicom/meta.js')).parseHeader(sentBytes).dataset.SOPInstanceUID as string;
          const match = spooled.find((s) => s.endsWith(`${sop}.dcm`));
          expect(match, sop).toBeDefined();
          expect(datasetPart(await readFile(match!)).equals(datasetPart(sentBytes))).toBe(true);
        }

        const res = await fetch(`http://127.0.0.1:${service.httpPort}/api/studies/${study.truth.studyInstanceUID}`);
        expect(res.status).toBe(200);
        const body = (await res.json()) as any;
        expect(body.instancesReceived).toBe(160);
        expect(body.stacks).toEqual([expect.objectContaining({ slices: 8, phases: 20 })]);
        expect(body.jobs).toEqual([expect.objectContaining({ id: job!.id, queue: 'classify', state: 'waiting' })]);
      } finally {
        await service.close();
        await cleanup(config);
      }
    });
  }

  it('a worker processes the job: ED and ES equal the phantom truth; API and healthz answer', async () => {
    const study = await writePhantomStudy(join(root, 'phantom-worker'), { seed: 5, slices: 10, phases: 25 });
    const config = testConfig({ roles: ['scp', 'worker', 'api'] });
    const service = await startService(config, logger);
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: config.aeTitle }, study.paths);
      expect(sent.code, sent.output).toBe(0);
      const result = await until('the completed job', async () => {
        const [job] = await service.classifyQueue.getJobs(['completed']);
        return job?.returnvalue as ClassifyResult | undefined;
      });
      expect(result.stacks).toHaveLength(1);
      expect(result.stacks[0]!.ED).toMatchObject({ phaseIndex: study.truth.ed, method: 'min-trigger-time' });
      expect(result.stacks[0]!.ES).toMatchObject({ phaseIndex: study.truth.es, method: 'min-blood-pool-area' });
      // The untrained model's labels mean nothing here; the plumbing does: a result document per stack,
      // 1 SR + 2×slices SCs + 2 montages + 2 KOS written, results served by the API.
      expect(result.stacks[0]!.outputs).toBe(1 + 2 * 10 + 2 + 2);
      expect(result.processedBy.pid).toBe(process.pid);

      const base = `http://127.0.0.1:${service.httpPort}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as any).checks).toMatchObject({ redis: true, spool: true });
      const rec = (await (await fetch(`${base}/api/studies/${study.truth.studyInstanceUID}`)).json()) as any;
      expect(rec.jobs[0]).toMatchObject({ state: 'completed', attempts: 1, processedBy: { pid: process.pid } });
      expect((await fetch(`${base}/api/studies/not-a-uid`)).status).toBe(400);
      expect((await fetch(`${base}/api/studies/1.2.3.4.5`)).status).toBe(404);
      expect((await fetch(`${base}/admin/queues`)).status).toBe(200);
      const results = (await (await fetch(`${base}/api/studies/${study.truth.studyInstanceUID}/results`)).json()) as any[];
      expect(results).toHaveLength(1);
      expect(results[0]).toMatchObject({ schema: 'sax-range/result@1', studyInstanceUID: study.truth.studyInstanceUID });
      expect(results[0].phases.ED.slices).toHaveLength(10);
      expect(results[0].phases.ED.slices.map((s: any) => s.sopInstanceUID)).toEqual(study.truth.sopInstanceUIDs.ED);
    } finally {
      await service.close();
      await cleanup(config);
    }
  });

  it('survives a restart: a study spooled before a stop is queued by the next start', async () => {
    const study = await writePhantomStudy(join(root, 'phantom-restart'), { seed: 7, slices: 6, phases: 20 });
    const dataDir = join(root, 'restart-data');
    const prefix = `test-${randomUUID()}`;
    // First life: a long stable time, so the study is not ready before the stop.
    const first = testConfig({ dataDir, queuePrefix: prefix, stableSeconds: 3600 });
    const s1 = await startService(first, logger);
    const sent = await storescu({ port: s1.dicomPort!, calledAE: first.aeTitle }, study.paths);
    expect(sent.code, sent.output).toBe(0);
    await s1.close();
    // Redis state lost too (a Redis without persistence restarted): recovery comes from the spool.
    await cleanup(first);

    const second = testConfig({ dataDir, queuePrefix: prefix, stableSeconds: 1 });
    const s2 = await startService(second, logger);
    try {
      const jobs = await until('a job after restart', async () => {
        const j = await jobsOf(s2);
        return j.length ? j : undefined;
      });
      expect(jobs).toHaveLength(1);
      expect(jobs[0]!.data.instanceCount).toBe(6 * 20);
      expect(jobs[0]!.data.stacks[0]).toMatchObject({ slices: 6, phases: 20 });
    } finally {
      await s2.close();
      await cleanup(second);
    }
  });
});

describe('ingest from Orthanc', () => {
  let orthanc: OrthancHandle;
  let truth: PhantomTruth;
  let paths: string[];

  beforeAll(async () => {
    const study = await writePhantomStudy(join(root, 'phantom-orthanc'), { seed: 11, slices: 8, phases: 20, layout: 'series-per-slice' });
    truth = study.truth;
    paths = study.paths;
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  it('receives a study Orthanc sends with POST /modalities/{id}/store', async () => {
    orthanc = await startOrthanc(join(root, 'orthanc-store'));
    const config = testConfig();
    const service = await startService(config, logger);
    try {
      for (const p of paths) await orthanc.api('/instances', { method: 'POST', body: new Uint8Array(await readFile(p)) });
      await orthanc.api('/modalities/saxrange', { method: 'PUT', body: { AET: config.aeTitle, Host: '127.0.0.1', Port: service.dicomPort } });
      const studies = await orthanc.api<string[]>('/studies');
      expect(studies).toHaveLength(1);
      await orthanc.api('/modalities/saxrange/store', { method: 'POST', body: { Resources: studies, Synchronous: true } });
      const [job] = await until('a classify job', async () => {
        const j = await jobsOf(service);
        return j.length ? j : undefined;
      });
      expect(job!.data.studyInstanceUID).toBe(truth.studyInstanceUID);
      expect(job!.data.instanceCount).toBe(160);
      expect(job!.data.stacks).toEqual([expect.objectContaining({ slices: 8, phases: 20 })]);
    } finally {
      await service.close();
      await cleanup(config);
      await orthanc.stop();
    }
  });

  it("routes through the shipped Lua OnStableSeries script: storescu → Orthanc → our AE", async () => {
    const config = testConfig();
    const service = await startService(config, logger);
    try {
      orthanc = await startOrthanc(join(root, 'orthanc-lua'), {
        LuaScripts: [join(process.cwd(), 'config/orthanc/autoroute.lua')],
        DicomModalities: { saxrange: { AET: config.aeTitle, Host: '127.0.0.1', Port: service.dicomPort } },
        StableAge: 1,
      });
      const sent = await storescu({ port: orthanc.dicomPort, calledAE: 'ORTHANC' }, paths);
      expect(sent.code, sent.output).toBe(0);
      const [job] = await until(
        'a classify job routed by Lua',
        async () => {
          const j = await jobsOf(service);
          // Orthanc routes series by series; wait until the whole study has arrived and gone quiet.
          return j.find((x) => x.data.instanceCount === 160) ? j : undefined;
        },
        90_000,
      );
      expect(job!.data.studyInstanceUID).toBe(truth.studyInstanceUID);
      const full = (await jobsOf(service)).find((x) => x.data.instanceCount === 160)!;
      expect(full.data.stacks).toEqual([expect.objectContaining({ slices: 8, phases: 20 })]);
    } finally {
      await service.close();
      await cleanup(config);
      await orthanc.stop();
    }
  });
});
