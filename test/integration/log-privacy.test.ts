import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { startService } from '../../src/main.js';
import { PHANTOM_PATIENT_NAME, writePhantomStudy } from '../../src/phantom/index.js';
import { freePort, storescu } from '../helpers/dcmtk.js';
import { writeUntrainedModelDir } from '../helpers/model.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

/**
 * Logs name UIDs, never the patient: a phantom study goes through the whole service (SCP, tracker,
 * classification, SR/SC/KOS, C-STORE export to a dcmtk storescp) with every log line captured at debug
 * level, and neither the phantom's PatientName nor its PatientID may appear in any of them.
 */

const SEED = 51;
const PATIENT_ID = `PHANTOM-${SEED}`;
let root: string;
let storescp: ChildProcess | undefined;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-logs-'));
});
afterAll(async () => {
  storescp?.kill('SIGTERM');
  await rm(root, { recursive: true, force: true });
});

describe('log privacy', () => {
  it("a study's PatientName and PatientID appear in no log line, from receipt to export", async () => {
    const { truth, paths } = await writePhantomStudy(join(root, 'phantom'), { seed: SEED, slices: 6, phases: 20 });
    // The test means something only if the data carries them.
    const sample = (await readFile(paths[0]!)).toString('latin1');
    expect(sample).toContain(PHANTOM_PATIENT_NAME);
    expect(sample).toContain(PATIENT_ID);

    const received = join(root, 'storescp');
    await mkdir(received);
    const pacsPort = await freePort();
    storescp = spawn('storescp', ['-od', received, '+xa', String(pacsPort)], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));

    const lines: string[] = [];
    const logger = createLogger('sax-range', 'debug', { write: (s: string) => void lines.push(s) });
    const config = testServiceConfig(root, {
      roles: ['scp', 'worker', 'api'],
      modelDir: await writeUntrainedModelDir(join(root, 'model')),
      inferenceThreads: 1,
      export: 'dimse',
      orthancHost: '127.0.0.1',
      orthancDicomPort: pacsPort,
      orthancAeTitle: 'STORESCP',
    });
    const service = await startService(config, logger);
    try {
      const sent = await storescu({ port: service.dicomPort!, calledAE: config.aeTitle }, paths);
      expect(sent.code, sent.output).toBe(0);
      // SR + one SC per slice and phase + two montages + two KOS, delivered to the PACS.
      const objects = 1 + 6 * 2 + 2 + 2;
      await until('the export', async () => ((await readdir(received)).length >= objects ? true : undefined), 120_000);
      await until('the export job to complete', async () => ((await service.exportQueue.getJobCounts('completed')).completed === 1 ? true : undefined));
    } finally {
      await service.close();
      await removeServiceKeys(config);
    }

    const text = lines.join('');
    // The capture works and saw every stage, down to debug lines.
    expect(lines.filter((l) => l.includes('"instance stored"'))).toHaveLength(paths.length);
    for (const msg of ['association accepted', 'study ready: classify job queued', 'stack classified', 'exported']) expect(text, msg).toContain(`"msg":"${msg}"`);
    expect(text).toContain(truth.studyInstanceUID);
    // And never the patient.
    for (const secret of [PHANTOM_PATIENT_NAME, PATIENT_ID, PHANTOM_PATIENT_NAME.replace('^', ' ')]) {
      expect(text.toLowerCase().includes(secret.toLowerCase()), `log contains ${secret}`).toBe(false);
    }
  });
});
