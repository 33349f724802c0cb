import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import type { Result } from '../../src/inference/result.js';
import { createLogger } from '../../src/log.js';
import { startService, type Service } from '../../src/main.js';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { storescu } from '../helpers/dcmtk.js';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

/**
 * End to end with real peers: storescu → our SCP → classification with the shipped model → SR, SCs and KOS
 * in Orthanc, in the source study. The shipped model must get the phantom's IN range right.
 */
const MODEL_DIR = resolve(process.env.SAX_RANGE_TEST_MODEL ?? 'models/default');
const logger = createLogger('test', process.env.LOG_LEVEL ?? 'warn');
let root: string;


function config(orthanc: OrthancHandle, overrides: Partial<Config> = {}): Config {
  return testServiceConfig(root, {
    roles: ['scp', 'worker', 'api'],
    modelDir: MODEL_DIR,
    export: 'rest',
    orthancUrl: orthanc.url,
    orthancUsername: orthanc.auth.username,
    orthancPassword: orthanc.auth.password,
    ...overrides,
  });
}

const cleanup = removeServiceKeys;

async function resultsOf(service: Service, study: string): Promise<Result[] | undefined> {
  const r = await fetch(`http://127.0.0.1:${service.httpPort}/api/studies/${study}/results`);
  const docs = (await r.json()) as Result[];
  return docs.length ? docs : undefined;
}

/** Orthanc's instances of a study by modality. */
async function orthancInstances(orthanc: OrthancHandle, studyUID: string) {
  const found = await orthanc.api<string[]>('/tools/lookup', { method: 'POST', body: new TextEncoder().encode(studyUID) });
  const studyId = (found as unknown as Array<{ ID: string; Type: string }>).find((x) => x.Type === 'Study')?.ID;
  if (!studyId) return { studyId: undefined, byModality: {} as Record<string, string[]> };
  const instances = await orthanc.api<Array<{ ID: string; ParentSeries: string }>>(`/studies/${studyId}/instances`);
  const series = await orthanc.api<Array<{ ID: string; MainDicomTags: { Modality: string } }>>(`/studies/${studyId}/series`);
  const mod = new Map(series.map((s) => [s.ID, s.MainDicomTags.Modality]));
  const byModality: Record<string, string[]> = {};
  for (const i of instances) (byModality[mod.get(i.ParentSeries) ?? '?'] ??= []).push(i.ID);
  return { studyId, byModality };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-e2e-'));
  if (!existsSync(join(MODEL_DIR, 'model-card.json'))) throw new Error(`no model at ${MODEL_DIR}: the shipped model is part of the repository`);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('end to end: storescu → sax-range → Orthanc', () => {
  let orthanc: OrthancHandle;
  let truth: PhantomTruth;
  let paths: string[];

  beforeAll(async () => {
    ({ truth, paths } = await writePhantomStudy(join(root, 'phantom'), { seed: 21, slices: 10, phases: 20 }));
    orthanc = await startOrthanc(join(root, 'orthanc'));
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  it('delivers SR, one SC per slice and phase, two montages and two KOS into the source study; the IN ranges match the truth', async () => {
    // The MR goes to Orthanc too, so that the results land in a study it already holds.
    const toOrthanc = await storescu({ port: orthanc.dicomPort, calledAE: 'ORTHANC' }, paths);
    expect(toOrthanc.code, toOrthanc.output).toBe(0);
    const c = config(orthanc);
    const service = await startService(c, logger);
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: c.aeTitle }, paths);
      expect(sent.code, sent.output).toBe(0);
      const [result] = await until('the result document', () => resultsOf(service, truth.studyInstanceUID), 120_000);
      for (const p of ['ED', 'ES'] as const) {
        const ph = result!.phases[p];
        expect(ph.phaseIndex).toBe(p === 'ED' ? truth.ed : truth.es);
        expect(ph.slices.map((s) => s.sopInstanceUID)).toEqual(truth.sopInstanceUIDs[p]);
        const first = truth.labels[p].indexOf('IN');
        const last = truth.labels[p].lastIndexOf('IN');
        expect({ phase: p, first: ph.inRange.first, last: ph.inRange.last }).toEqual({ phase: p, first, last });
      }
      const got = await until(
        'all objects in Orthanc',
        async () => {
          const x = await orthancInstances(orthanc, truth.studyInstanceUID);
          const n = (x.byModality.SR?.length ?? 0) + (x.byModality.KO?.length ?? 0) + (x.byModality.OT?.length ?? 0);
          return n >= 1 + 2 + 10 * 2 + 2 ? x : undefined;
        },
        60_000,
      );
      expect(got.byModality.MR).toHaveLength(200);
      expect(got.byModality.SR).toHaveLength(1);
      expect(got.byModality.KO).toHaveLength(2);
      expect(got.byModality.OT).toHaveLength(10 * 2 + 2);
      for (const id of got.byModality.OT!) {
        const png = await orthanc.api<Uint8Array>(`/instances/${id}/preview`, { raw: true });
        expect([...png.subarray(1, 4)].map((b) => String.fromCharCode(b)).join('')).toBe('PNG');
      }
      const sr = await orthanc.api<Record<string, string>>(`/instances/${got.byModality.SR![0]}/simplified-tags`);
      expect(sr.StudyInstanceUID).toBe(truth.studyInstanceUID);
    } finally {
      await service.close();
      await cleanup(c);
    }
  });

  it('exports while Orthanc is down are retried and delivered once when it is back', async () => {
    // Another study, so that everything in Orthanc for it comes from this export.
    const other = await writePhantomStudy(join(root, 'phantom-down'), { seed: 22, slices: 8, phases: 20 });
    await orthanc.stop();
    const c = config(orthanc);
    const service = await startService(c, logger);
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: c.aeTitle }, other.paths);
      expect(sent.code, sent.output).toBe(0);
      const failedOnce = await until('a failed export attempt', async () => {
        const jobs = await service.exportQueue.getJobs(['delayed', 'waiting', 'active', 'failed', 'completed']);
        return jobs.find((j) => j.attemptsMade >= 1) ?? undefined;
      });
      expect(failedOnce.failedReason).toMatch(/ECONNREFUSED|connect|network/i);
      await orthanc.start();
      const done = await until(
        'the export to complete',
        async () => {
          const [j] = await service.exportQueue.getJobs(['completed']);
          return j;
        },
        120_000,
      );
      expect(done.attemptsMade).toBeGreaterThanOrEqual(2);
      expect(done.returnvalue).toMatchObject({ sent: 1 + 8 * 2 + 2 + 2 });
      // Delivered once: exactly the 21 objects, whatever the attempts did before Orthanc came back.
      const after = await orthancInstances(orthanc, other.truth.studyInstanceUID);
      expect(after.byModality).toEqual({ SR: [expect.any(String)], KO: [expect.any(String), expect.any(String)], OT: expect.any(Array) });
      expect(after.byModality.OT).toHaveLength(8 * 2 + 2);
      expect((await service.exportQueue.getJobs(['completed', 'failed'])).length).toBe(1);
    } finally {
      await service.close();
      await cleanup(c);
    }
  });
});

describe('the full loop with Orthanc as the only PACS', () => {
  it('storescu → Orthanc → Lua OnStableSeries → sax-range → results back in the same Orthanc study', async () => {
    const { truth, paths } = await writePhantomStudy(join(root, 'phantom-loop'), { seed: 23, slices: 8, phases: 20, layout: 'series-per-slice' });
    // sax-range first (its DICOM port goes into Orthanc's config), exporting to an Orthanc started next.
    let orthanc: OrthancHandle | undefined;
    const dir = join(root, 'orthanc-loop');
    const { freePort } = await import('../helpers/dcmtk.js');
    const httpPort = await freePort();
    const c = config({ url: `http://127.0.0.1:${httpPort}`, auth: { username: 'ci', password: 'ci-secret' } } as OrthancHandle, { stableSeconds: 2 });
    const service = await startService(c, logger);
    try {
      orthanc = await startOrthanc(dir, {
        HttpPort: httpPort,
        LuaScripts: [resolve('config/orthanc/autoroute.lua')],
        DicomModalities: { saxrange: { AET: c.aeTitle, Host: '127.0.0.1', Port: service.dicomPort } },
        StableAge: 1,
      });
      const sent = await storescu({ port: orthanc.dicomPort, calledAE: 'ORTHANC' }, paths);
      expect(sent.code, sent.output).toBe(0);
      const got = await until(
        'the results back in Orthanc',
        async () => {
          const x = await orthancInstances(orthanc!, truth.studyInstanceUID);
          return (x.byModality.OT?.length ?? 0) === 8 * 2 + 2 && x.byModality.SR?.length === 1 && x.byModality.KO?.length === 2 ? x : undefined;
        },
        150_000,
      );
      expect(got.byModality.MR).toHaveLength(8 * 20);
      // Orthanc routed only the MR to us: nothing of ours came back to sax-range as input.
      const state = await service.tracker.get(truth.studyInstanceUID);
      expect(state?.instancesReceived).toBe(8 * 20);
    } finally {
      await service.close();
      await cleanup(c);
      await orthanc?.stop();
    }
  });
});

describe('export paths and permanent failures', () => {
  let orthanc: OrthancHandle;
  beforeAll(async () => {
    orthanc = await startOrthanc(join(root, 'orthanc-paths'));
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  it('exports by C-STORE (SAX_RANGE_EXPORT=dimse) into Orthanc', async () => {
    const { truth, paths } = await writePhantomStudy(join(root, 'phantom-dimse'), { seed: 24, slices: 6, phases: 20 });
    const c = config(orthanc, { export: 'dimse', orthancHost: '127.0.0.1', orthancDicomPort: orthanc.dicomPort, orthancAeTitle: 'ORTHANC' });
    const service = await startService(c, logger);
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: c.aeTitle }, paths);
      expect(sent.code, sent.output).toBe(0);
      const got = await until(
        'objects stored by C-STORE',
        async () => {
          const x = await orthancInstances(orthanc, truth.studyInstanceUID);
          return x.byModality.OT?.length === 6 * 2 + 2 && x.byModality.SR?.length === 1 && x.byModality.KO?.length === 2 ? x : undefined;
        },
        90_000,
      );
      expect(Object.keys(got.byModality).sort()).toEqual(['KO', 'OT', 'SR']);
      const [job] = await service.exportQueue.getJobs(['completed']);
      expect(job?.returnvalue).toMatchObject({ sent: 1 + 6 * 2 + 2 + 2, target: `ORTHANC@127.0.0.1:${orthanc.dicomPort}` });
    } finally {
      await service.close();
      await cleanup(c);
    }
  });

  it('a permanent export failure (wrong password) is not retried and keeps its error, visible in the API', async () => {
    const { truth, paths } = await writePhantomStudy(join(root, 'phantom-auth'), { seed: 25, slices: 6, phases: 20 });
    const c = config(orthanc, { orthancPassword: 'wrong' });
    const service = await startService(c, logger);
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: c.aeTitle }, paths);
      expect(sent.code, sent.output).toBe(0);
      const failed = await until('the failed export job', async () => {
        const [j] = await service.exportQueue.getJobs(['failed']);
        return j;
      });
      expect(failed.attemptsMade).toBe(1);
      expect(failed.failedReason).toMatch(/401|auth/i);
      const study = (await (await fetch(`http://127.0.0.1:${service.httpPort}/api/studies/${truth.studyInstanceUID}`)).json()) as any;
      const exportJob = study.jobs.find((j: any) => j.queue === 'export');
      expect(exportJob).toMatchObject({ state: 'failed', attempts: 1 });
      expect(exportJob.error).toMatch(/401|auth/i);
      // The classification itself succeeded and its result is kept.
      expect(study.results).toHaveLength(1);
      expect((await orthancInstances(orthanc, truth.studyInstanceUID)).byModality).toEqual({});
    } finally {
      await service.close();
      await cleanup(c);
    }
  });
});
