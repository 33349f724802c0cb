import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from './config.js';
import { cStoreFiles } from './export/dimse-scu.js';
import { createLogger } from './log.js';
import { startService } from './main.js';
import type { ClassifyResult } from './pipeline/classify.js';
import { writePhantomStudy } from './phantom/index.js';

/**
 * The README's demo: a phantom study goes over DICOM into a service started in this process (SCP, tracker,
 * queue, worker, API on free ports), and what the service made of it is printed next to the phantom's truth.
 */
export async function runDemo(opts: { out?: string; seed?: number }): Promise<ClassifyResult> {
  const out = resolve(opts.out ?? (await mkdtemp(join(tmpdir(), 'sax-range-demo-'))));
  const say = (msg: string) => console.log(`[demo] ${msg}`);
  const seed = opts.seed ?? 1;

  say(`writing a phantom study (seed ${seed}) to ${join(out, 'phantom')}`);
  const { truth, paths } = await writePhantomStudy(join(out, 'phantom'), { seed });
  say(`${paths.length} instances: ${truth.slices} slices x ${truth.phases} phases`);

  const config = loadConfig({
    overrides: {
      dataDir: join(out, 'data'),
      dicomPort: 0,
      httpPort: 0,
      stableSeconds: 1,
      queuePrefix: `sax-range-demo-${randomUUID().slice(0, 8)}`,
      roles: ['scp', 'worker', 'api'],
    },
  });
  const logger = createLogger('sax-range', process.env.LOG_LEVEL ?? 'warn');
  const service = await startService(config, logger);
  try {
    say(`service up: DICOM ${config.aeTitle}@127.0.0.1:${service.dicomPort}, HTTP http://127.0.0.1:${service.httpPort}`);
    const t0 = Date.now();
    const outcomes = await cStoreFiles(
      { host: '127.0.0.1', port: service.dicomPort!, callingAE: 'SAXDEMO', calledAE: config.aeTitle },
      paths,
    );
    const ok = outcomes.filter((o) => o.status === 0).length;
    say(`C-STORE: ${ok}/${paths.length} answered Success in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (ok !== paths.length) throw new Error(`${paths.length - ok} instances were not stored`);

    say(`waiting for the study to go quiet (${config.stableSeconds} s) and for its classify job`);
    const result = await waitForResult(service, truth.studyInstanceUID, 120_000);
    const study = await fetch(`http://127.0.0.1:${service.httpPort}/api/studies/${truth.studyInstanceUID}`).then((r) => r.json());
    await writeFile(join(out, 'study.json'), JSON.stringify({ study, result }, null, 2));

    for (const s of result.stacks) {
      say(`stack ${s.stackId}: ${s.slices} slices x ${s.phases} phases from ${s.seriesInstanceUIDs.length} series`);
      say(`  slice order apex->base by ${s.order.method} (confidence ${s.order.confidence}): [${s.order.sliceIndices.join(', ')}]`);
      say(`  ED = phase ${s.ED.phaseIndex} (${s.ED.method}), truth ${truth.ed} ${s.ED.phaseIndex === truth.ed ? 'OK' : 'MISMATCH'}`);
      say(`  ES = phase ${s.ES.phaseIndex} (${s.ES.method}), truth ${truth.es} ${s.ES.phaseIndex === truth.es ? 'OK' : 'MISMATCH'}`);
      for (const p of s.problems) say(`  problem: ${p}`);
    }
    say(`truth labels apex->base  ED: ${truth.labels.ED.join(' ')}`);
    say(`                         ES: ${truth.labels.ES.join(' ')}`);
    say('slice classification (OAP/IN/OBS), SR, Grad-CAM SC and KOS: not in this build yet (issues 3 and 4)');
    say(`study record and job result written to ${join(out, 'study.json')}`);
    return result;
  } finally {
    await service.close();
  }
}

async function waitForResult(service: Awaited<ReturnType<typeof startService>>, studyUID: string, timeoutMs: number): Promise<ClassifyResult> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const state = await service.tracker.get(studyUID);
    if (state?.lastJobId) {
      const job = await service.classifyQueue.getJob(state.lastJobId);
      const s = await job?.getState();
      if (s === 'completed') return job!.returnvalue as unknown as ClassifyResult;
      if (s === 'failed' && job!.attemptsMade >= (job!.opts.attempts ?? 1)) throw new Error(`classify job failed: ${job!.failedReason}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no result for study ${studyUID} within ${timeoutMs / 1000} s`);
}
