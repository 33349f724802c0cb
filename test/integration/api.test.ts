import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import { parseLabelsCsv } from '../../src/db/index.js';
import type { Result } from '../../src/inference/result.js';
import { createLogger } from '../../src/log.js';
import { startService, type Service } from '../../src/main.js';
import { metricsRegistry } from '../../src/metrics.js';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { storescu } from '../helpers/dcmtk.js';
import { writeUntrainedModelDir } from '../helpers/model.js';
import { createTestSchema, type TestSchema } from '../helpers/postgres.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';
import { until } from '../helpers/wait.js';
import { createRedis } from '../../src/queue/redis.js';

/**
 * The HTTP API over a real service (SCP, worker with an untrained model, API, Redis) and a real database:
 * the same suite on SQLite and on PostgreSQL. A phantom study goes in by storescu; then auth, the study
 * list, labels and their CSV, validation, the model card, the docs and /metrics are checked.
 */

const TOKEN = 'test-token-1234';
const logger = createLogger('test', process.env.LOG_LEVEL ?? 'warn');
const SLICES = 8;
const PHASES = 20;
let root: string;
let modelDir: string;
let truth: PhantomTruth;
let paths: string[];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-api-'));
  modelDir = await writeUntrainedModelDir(join(root, 'model'));
  ({ truth, paths } = await writePhantomStudy(join(root, 'phantom'), { seed: 41, slices: SLICES, phases: PHASES }));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The value of one sample in Prometheus text format (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return 0;
}

describe.each(['sqlite', 'postgres'] as const)('HTTP API on %s', (driver) => {
  let schema: TestSchema | undefined;
  let config: Config;
  let service: Service;
  let base: string;
  let metricsBefore: string;
  let result: Result;

  const call = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const { token = TOKEN, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (token !== null) headers.set('authorization', `Bearer ${token}`);
    return fetch(`${base}${path}`, { ...rest, headers });
  };
  const putLabels = (study: string, body: unknown, raw = false) =>
    call(`/api/studies/${study}/labels`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: raw ? (body as string) : JSON.stringify(body) });

  beforeAll(async () => {
    if (driver === 'postgres') schema = await createTestSchema();
    config = testServiceConfig(root, { roles: ['scp', 'worker', 'api'], modelDir, apiToken: TOKEN, inferenceThreads: 1, databaseUrl: schema?.url });
    metricsBefore = await metricsRegistry.metrics();
    service = await startService(config, logger);
    base = `http://127.0.0.1:${service.httpPort}`;
    const sent = await storescu({ port: service.dicomPort!, calledAE: config.aeTitle }, paths);
    expect(sent.code, sent.output).toBe(0);
    const docs = await until(
      'the result document',
      async () => {
        const r = await call(`/api/studies/${truth.studyInstanceUID}/results`);
        const d = (await r.json()) as Result[];
        return d.length ? d : undefined;
      },
      120_000,
    );
    result = docs[0]!;
  });
  afterAll(async () => {
    await service?.close();
    await removeServiceKeys(config);
    await schema?.drop();
  });

  it('saves the result document in the database as well as in the results folder', async () => {
    expect(service.db?.driver).toBe(driver);
    const stored = await service.db!.getResults(truth.studyInstanceUID);
    expect(stored.map((s) => s.document)).toEqual([result]);
    const file = JSON.parse(await readFile(join(config.dataDir, 'results', truth.studyInstanceUID, `${result.stackId}.json`), 'utf8'));
    expect(file).toEqual(result);
  });

  it('wants the bearer token everywhere but /healthz, /readyz, the pages and the docs', async () => {
    for (const path of ['/api/studies', `/api/studies/${truth.studyInstanceUID}/labels`, '/api/labels.csv', '/api/model', '/metrics', `/api/studies/${truth.studyInstanceUID}/results`]) {
      expect((await call(path, { token: null })).status, `${path} without a token`).toBe(401);
      expect((await call(path, { token: 'wrong' })).status, `${path} with a wrong token`).toBe(401);
      expect((await call(path)).status, `${path} with the token`).toBe(200);
    }
    const put = await fetch(`${base}/api/studies/${truth.studyInstanceUID}/labels`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"labels":[]}' });
    expect(put.status).toBe(401);
    for (const path of ['/healthz', '/api/docs', '/api/docs/openapi.json']) expect((await call(path, { token: null })).status, path).toBe(200);
  });

  it('lists the study newest first with its processing time, instance count and IN ranges', async () => {
    const body = (await (await call('/api/studies')).json()) as { studies: Array<Record<string, any>>; total: number };
    const mine = body.studies.find((s) => s.studyInstanceUID === truth.studyInstanceUID);
    expect(mine).toBeDefined();
    expect(Date.parse(mine!.processedAt)).toBeGreaterThan(Date.now() - 300_000);
    expect(Date.parse(mine!.lastReceivedAt)).toBeLessThanOrEqual(Date.parse(mine!.processedAt));
    expect(mine!.instancesReceived).toBe(SLICES * PHASES);
    expect(mine!.stacks).toEqual([
      {
        stackId: result.stackId,
        processedAt: mine!.processedAt,
        model: result.model,
        slices: SLICES,
        ED: { phaseIndex: result.phases.ED.phaseIndex, inRange: result.phases.ED.inRange },
        ES: { phaseIndex: result.phases.ES.phaseIndex, inRange: result.phases.ES.inRange },
      },
    ]);
    expect(body.total).toBeGreaterThanOrEqual(1);
    const paged = (await (await call('/api/studies?limit=1&offset=0')).json()) as { studies: unknown[]; limit: number };
    expect(paged.studies).toHaveLength(1);
    expect(paged.limit).toBe(1);
  });

  it("gives the model's label of every ED and ES slice before anyone labels", async () => {
    const body = (await (await call(`/api/studies/${truth.studyInstanceUID}/labels`)).json()) as { studyInstanceUID: string; labels: Array<Record<string, unknown>> };
    expect(body.studyInstanceUID).toBe(truth.studyInstanceUID);
    expect(body.labels).toHaveLength(2 * SLICES);
    for (const phase of ['ED', 'ES'] as const) {
      const mine = body.labels.filter((l) => l.phase === phase).sort((a, b) => Number(a.index) - Number(b.index));
      const slices = [...result.phases[phase].slices].sort((a, b) => a.index - b.index);
      expect(mine.map((l) => [l.index, l.sopInstanceUID, l.label, l.source])).toEqual(slices.map((s) => [s.index, s.sopInstanceUID, s.label, 'model']));
    }
  });

  it('saves human labels (PUT, upsert), returns them, and exports only those as labels.csv', async () => {
    const ed = result.phases.ED.slices;
    const put = await putLabels(truth.studyInstanceUID, {
      labels: [
        { stackId: result.stackId, phase: 'ED', index: ed[0]!.index, sopInstanceUID: ed[0]!.sopInstanceUID, label: 'OAP' },
        { stackId: result.stackId, phase: 'ED', index: ed[1]!.index, sopInstanceUID: ed[1]!.sopInstanceUID, label: 'IN', source: 'human' },
      ],
    });
    expect(put.status).toBe(200);
    const saved = (await put.json()) as { saved: number; labels: Array<Record<string, unknown>> };
    expect(saved.saved).toBe(2);
    expect(saved.labels[0]).toEqual({ stackId: result.stackId, phase: 'ED', index: ed[0]!.index, sopInstanceUID: ed[0]!.sopInstanceUID, label: 'OAP', source: 'human', updatedAt: expect.any(String) });

    // A second PUT of the same slice replaces its label.
    expect((await putLabels(truth.studyInstanceUID, { labels: [{ stackId: result.stackId, phase: 'ED', index: ed[1]!.index, sopInstanceUID: ed[1]!.sopInstanceUID, label: 'OBS' }] })).status).toBe(200);
    const all = (await (await call(`/api/studies/${truth.studyInstanceUID}/labels`)).json()) as { labels: Array<Record<string, unknown>> };
    expect(all.labels).toHaveLength(2 * SLICES);
    const human = all.labels.filter((l) => l.source === 'human');
    expect(human.map((l) => [l.index, l.label])).toEqual([
      [ed[0]!.index, 'OAP'],
      [ed[1]!.index, 'OBS'],
    ].sort((a, b) => Number(a[0]) - Number(b[0])));

    const csv = await call(`/api/labels.csv?study=${truth.studyInstanceUID}`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    const text = await csv.text();
    expect(text.split('\r\n')[0]).toBe('SOPInstanceUID,label,studyInstanceUID,stackId,phase,slice,source');
    const rows = parseLabelsCsv(text);
    expect(rows.map((r) => [r.sopInstanceUID, r.label, r.studyInstanceUID, r.stackId, r.phase, r.slice, r.source]).sort()).toEqual(
      [
        [ed[0]!.sopInstanceUID, 'OAP', truth.studyInstanceUID, result.stackId, 'ED', ed[0]!.index, 'human'],
        [ed[1]!.sopInstanceUID, 'OBS', truth.studyInstanceUID, result.stackId, 'ED', ed[1]!.index, 'human'],
      ].sort(),
    );
    // Every labelled SOP instance is one the phantom sent (what a dicom: dataset joins on).
    const sent = new Set([...truth.sopInstanceUIDs.ED, ...truth.sopInstanceUIDs.ES]);
    expect(rows.every((r) => sent.has(r.sopInstanceUID))).toBe(true);
    // Without ?study: every study's human labels (here the same two).
    expect(parseLabelsCsv(await (await call('/api/labels.csv')).text())).toHaveLength(2);
  });

  it('answers 400 with {error} naming the problem for bad UIDs, phases, labels, indices and bodies', async () => {
    const s = result.phases.ES.slices[2]!;
    const ok = { stackId: result.stackId, phase: 'ES', index: s.index, sopInstanceUID: s.sopInstanceUID, label: 'IN' };
    const cases: Array<[string, () => Promise<Response>, RegExp]> = [
      ['study UID in the path', () => call('/api/studies/not-a-uid/labels'), /studyUID/],
      ['study UID too long', () => call(`/api/studies/${'1.'.repeat(40)}1/labels`), /64/],
      ['study UID of the study route', () => call('/api/studies/1..2'), /studyUID/],
      ['study UID of the results route', () => call('/api/studies/abc/results'), /studyUID/],
      ['study UID of reprocess', () => call('/api/studies/abc/reprocess', { method: 'POST' }), /studyUID/],
      ['phase', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, phase: 'MID' }] }), /phase/],
      ['label', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, label: 'APEX' }] }), /label/],
      ['negative index', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, index: -1 }] }), /index/],
      ['fractional index', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, index: 1.5 }] }), /index/],
      ['source', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, source: 'robot' }] }), /source/],
      ['SOP instance UID', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, sopInstanceUID: 'x' }] }), /sopInstanceUID/],
      ['unknown field', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, colour: 'red' }] }), /colour/],
      ['no labels array', () => putLabels(truth.studyInstanceUID, {}), /labels/],
      ['malformed JSON', () => putLabels(truth.studyInstanceUID, '{"labels": [', true), /JSON|Unexpected|unterminated/i],
      ['unknown stack', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, stackId: 'ffffffffffffffff' }] }), /is not a stack of this study/],
      ['index not in the stack', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, index: 999 }] }), /no slice with index 999/],
      ['SOP instance of another slice', () => putLabels(truth.studyInstanceUID, { labels: [{ ...ok, index: result.phases.ES.slices[3]!.index }] }), /is SOP instance/],
      ['the same slice twice', () => putLabels(truth.studyInstanceUID, { labels: [ok, ok] }), /given twice/],
      ['?study of labels.csv', () => call('/api/labels.csv?study=abc'), /study/],
      ['?limit of the study list', () => call('/api/studies?limit=0'), /limit/],
    ];
    for (const [what, send, message] of cases) {
      const r = await send();
      expect(r.status, what).toBe(400);
      const body = (await r.json()) as { error: string };
      expect(body.error, what).toMatch(message);
    }
    // None of the refused PUTs changed anything.
    const labels = (await (await call(`/api/studies/${truth.studyInstanceUID}/labels`)).json()) as { labels: Array<Record<string, unknown>> };
    expect(labels.labels.find((l) => l.phase === 'ES' && l.index === s.index)).toMatchObject({ source: 'model' });
  });

  it('serves the model card of the configured model', async () => {
    const card = (await (await call('/api/model')).json()) as { schema: string; id: string; sha256: string };
    expect(card.schema).toBe('sax-range/model-card@1');
    expect(card.id).toBe('untrained-test-model');
    expect(card.sha256).toBe(result.model.sha256);
  });

  it('serves the OpenAPI document and its HTML page', async () => {
    const doc = (await (await call('/api/docs/openapi.json', { token: null })).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/studies', '/api/studies/{studyUID}/labels', '/api/labels.csv', '/metrics', '/api/model']));
    const page = await call('/api/docs', { token: null });
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain('/api/studies/{studyUID}/labels');
  });

  it('counts the study in /metrics: instances, association, job states, stage durations', async () => {
    const r = await call('/metrics');
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await r.text();
    const delta = (name: string, labels: Record<string, string> = {}) => sample(text, name, labels) - sample(metricsBefore, name, labels);
    expect(delta('sax_range_instances_received_total', { status: '0x0000' })).toBe(SLICES * PHASES);
    expect(delta('sax_range_associations_total', { result: 'accepted' })).toBeGreaterThanOrEqual(1);
    // The service's spool has its journal: every (≈ 131 kB) instance was made durable through it.
    expect(delta('sax_range_spool_commits_total', { path: 'journal' })).toBe(SLICES * PHASES);
    expect(delta('sax_range_spool_commits_total', { path: 'classic' })).toBe(0);
    expect(sample(text, 'sax_range_jobs', { queue: 'classify', state: 'completed' })).toBe(1);
    expect(sample(text, 'sax_range_jobs', { queue: 'classify', state: 'failed' })).toBe(0);
    expect(text).toMatch(/^sax_range_jobs\{queue="export",state="waiting"\} 0$/m);
    expect(delta('sax_range_stage_duration_seconds_count', { stage: 'receive_to_ready' })).toBe(1);
    expect(delta('sax_range_stage_duration_seconds_count', { stage: 'classify' })).toBe(1);
    // The quiet period alone is stableSeconds (1 s).
    expect(delta('sax_range_stage_duration_seconds_sum', { stage: 'receive_to_ready' })).toBeGreaterThanOrEqual(config.stableSeconds);
    expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  // Last: it removes the study from the tracker.
  it('answers GET /api/studies/:uid from the stored results once the tracker has forgotten the study (Redis wiped)', async () => {
    const uid = truth.studyInstanceUID;
    const redis = createRedis(config.redisUrl);
    try {
      expect(await redis.del(`${config.queuePrefix}:tracker:study:${uid}`)).toBe(1);
    } finally {
      redis.disconnect();
    }
    const r = await call(`/api/studies/${uid}`);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { studyInstanceUID: string; results: Result[]; jobs: unknown[]; instancesReceived: number | null };
    expect(body.studyInstanceUID).toBe(uid);
    expect(body.results).toEqual([result]);
    expect(body.jobs).toEqual([]);
    expect(body.instancesReceived).toBeNull();
    expect((await call('/api/studies/1.2.3.4.5.6.7.8.9')).status).toBe(404); // known nowhere
  });
});
