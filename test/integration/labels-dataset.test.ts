import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Result } from '../../src/inference/result.js';
import { createLogger } from '../../src/log.js';
import { startService } from '../../src/main.js';
import { writePhantomStudy } from '../../src/phantom/index.js';
import { isRangeLabelling } from '../../src/training/data/types.js';
import { loadDataset } from '../../src/training/data/spec.js';
import { storescu } from '../helpers/dcmtk.js';
import { writeUntrainedModelDir } from '../helpers/model.js';
import { createTestSchema, type TestSchema } from '../helpers/postgres.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

/**
 * From the labeller to training: a phantom study is classified by the service, a person confirms every ED
 * slice (with the phantom's truth) and only some ES slices through the API, and `labels:DATADIR` then loads
 * the ED stack with those labels and the spooled images, and skips the ES stack saying why.
 */

const TOKEN = 't0k3n';
const SLICES = 7;
const logger = createLogger('test', process.env.LOG_LEVEL ?? 'warn');
let root: string;
let modelDir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-labels-ds-'));
  modelDir = await writeUntrainedModelDir(join(root, 'model'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe.each(['sqlite', 'postgres'] as const)('labels: dataset on %s', (driver) => {
  let schema: TestSchema | undefined;
  afterAll(async () => {
    await schema?.drop();
  });

  it('loads fully confirmed stacks with their images and skips the others with the reason', async () => {
    if (driver === 'postgres') schema = await createTestSchema();
    const { truth, paths } = await writePhantomStudy(join(root, `phantom-${driver}`), { seed: 61, slices: SLICES, phases: 20 });
    const config = testServiceConfig(root, { roles: ['scp', 'worker', 'api'], modelDir, apiToken: TOKEN, inferenceThreads: 1, databaseUrl: schema?.url });
    const service = await startService(config, logger);
    let result: Result;
    try {
      const base = `http://127.0.0.1:${service.httpPort}`;
      const auth = { authorization: `Bearer ${TOKEN}` };
      expect((await storescu({ port: service.dicomPort!, calledAE: config.aeTitle }, paths)).code).toBe(0);
      [result] = await until(
        'the result',
        async () => {
          const d = (await (await fetch(`${base}/api/studies/${truth.studyInstanceUID}/results`, { headers: auth })).json()) as Result[];
          return d.length ? d : undefined;
        },
        120_000,
      );
      // The truth label of each slice of the result, by SOP Instance UID.
      const truthOf = (phase: 'ED' | 'ES', sop: string) => truth.labels[phase][truth.sopInstanceUIDs[phase].indexOf(sop)]!;
      const labels = (['ED', 'ES'] as const).flatMap((phase) =>
        result!.phases[phase].slices
          .filter((_, i) => phase === 'ED' || i < 3)
          .map((s) => ({ stackId: result!.stackId, phase, index: s.index, sopInstanceUID: s.sopInstanceUID, label: truthOf(phase, s.sopInstanceUID) })),
      );
      const put = await fetch(`${base}/api/studies/${truth.studyInstanceUID}/labels`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ labels }) });
      expect(put.status).toBe(200);
    } finally {
      await service.close();
      await removeServiceKeys(config);
    }

    const ds = await loadDataset(`labels:${config.dataDir}`, { databaseUrl: schema?.url });
    expect(ds.subjects.map((s) => [s.id, s.source])).toEqual([[`labels-${truth.studyInstanceUID}`, 'labels']]);
    const [stack, ...others] = ds.subjects[0]!.stacks;
    expect(others).toEqual([]);
    const ed = result!.phases.ED.slices;
    expect(stack!.phase).toBe('ED');
    expect(stack!.labels).toEqual(ed.map((s) => truth.labels.ED[truth.sopInstanceUIDs.ED.indexOf(s.sopInstanceUID)]));
    expect(isRangeLabelling(stack!.labels)).toBe(true);
    expect(stack!.sourceSlices).toEqual(ed.map((s) => s.index));
    expect(stack!.images).toHaveLength(SLICES);
    for (const img of stack!.images) {
      expect(img.length).toBe(stack!.rows * stack!.columns);
      expect(Math.max(...img)).toBeGreaterThan(0);
    }
    expect(ds.parts[0]).toMatchObject({ kind: 'labels', subjects: 1, stacks: 1, slices: SLICES, skipped: [`study ${truth.studyInstanceUID} stack ${result!.stackId} ES: 3 of ${SLICES} slices confirmed`] });
  });
});
