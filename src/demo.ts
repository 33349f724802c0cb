import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { loadConfig, type Config } from './config.js';
import { readPart10 } from './sr/index.js';
import { cStoreFiles } from './export/dimse-scu.js';
import { parseResult, type Result } from './inference/result.js';
import { createLogger } from './log.js';
import { startService, type Service } from './main.js';
import type { ClassifyResult } from './pipeline/classify.js';
import { writePhantomStudy, type PhantomTruth } from './phantom/index.js';

/**
 * The README's demo: a phantom study goes over DICOM into a service started in this process (SCP, tracker,
 * queues, worker, API on free ports); the service classifies it and writes the SR, Grad-CAM SCs, KOS and the
 * result JSON; this prints them next to the phantom's truth and writes summary.html. With ORTHANC_URL set
 * (and SAX_RANGE_EXPORT=rest, the default here when ORTHANC_URL is set) the objects are also delivered there.
 */
export async function runDemo(opts: { out?: string; seed?: number; modelDir?: string }): Promise<{ out: string; results: Result[] }> {
  const out = resolve(opts.out ?? (await mkdtemp(join(tmpdir(), 'sax-range-demo-'))));
  const say = (msg: string) => console.log(`[demo] ${msg}`);
  const seed = opts.seed ?? 1;

  say(`writing a phantom study (seed ${seed}) to ${join(out, 'phantom')}`);
  const { truth, paths } = await writePhantomStudy(join(out, 'phantom'), { seed });
  say(`${paths.length} instances: ${truth.slices} slices x ${truth.phases} phases`);

  const orthanc = process.env.ORTHANC_URL;
  const config = loadConfig({
    overrides: {
      dataDir: join(out, 'data'),
      dicomPort: 0,
      httpPort: 0,
      stableSeconds: 1,
      queuePrefix: `sax-range-demo-${randomUUID().slice(0, 8)}`,
      roles: ['scp', 'worker', 'api'],
      ...(opts.modelDir ? { modelDir: opts.modelDir } : {}),
      ...(orthanc && !process.env.SAX_RANGE_EXPORT ? { export: 'rest' as const } : {}),
    },
  });
  const logger = createLogger('sax-range', process.env.LOG_LEVEL ?? 'warn');
  const service = await startService(config, logger);
  try {
    say(`service up: DICOM ${config.aeTitle}@127.0.0.1:${service.dicomPort}, HTTP http://127.0.0.1:${service.httpPort}`);
    const t0 = Date.now();
    const outcomes = await cStoreFiles({ host: '127.0.0.1', port: service.dicomPort!, callingAE: 'SAXDEMO', calledAE: config.aeTitle }, paths);
    const ok = outcomes.filter((o) => o.status === 0).length;
    say(`C-STORE: ${ok}/${paths.length} answered Success in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (ok !== paths.length) throw new Error(`${paths.length - ok} instances were not stored`);

    say(`waiting for the study to go quiet (${config.stableSeconds} s), then for classification`);
    const job = await waitForJob(service, truth.studyInstanceUID, 180_000);
    const results: Result[] = [];
    for (const s of job.stacks) results.push(parseResult(JSON.parse(await readFile(s.resultPath, 'utf8'))));
    let delivered = 'not delivered (set ORTHANC_URL to deliver to Orthanc)';
    if (config.export !== 'none') delivered = await waitForExport(service, truth.studyInstanceUID, config);

    for (const r of results) report(r, truth, say);
    const summary = await writeSummary(out, results, truth, job);
    say(`results: ${join(out, 'data', 'results', truth.studyInstanceUID)}`);
    say(`  ${results.reduce((n, r) => n + r.outputs.length, 0)} DICOM objects (SR, SCs, KOS) and the result JSON of each stack`);
    say(`  Orthanc: ${delivered}`);
    say(`summary: ${summary}`);
    return { out, results };
  } finally {
    await service.close();
  }
}

function report(r: Result, truth: PhantomTruth, say: (m: string) => void) {
  say(`stack ${r.stackId}: ${r.phases.ED.slices.length} slices, order apex->base by ${r.order.method}${r.order.geometryAgrees === false ? ' (geometry disagrees!)' : ''}`);
  for (const p of ['ED', 'ES'] as const) {
    const ph = r.phases[p];
    const want = truth[p === 'ED' ? 'ed' : 'es'];
    const labels = ph.slices.map((s) => s.label);
    const correct = labels.filter((l, i) => l === truth.labels[p][i]).length;
    say(`  ${p}: phase ${ph.phaseIndex} by ${ph.method} (truth ${want}) ${ph.phaseIndex === want ? 'OK' : 'MISMATCH'}`);
    say(`      predicted  ${labels.map((l) => l.padEnd(3)).join(' ')}`);
    say(`      truth      ${truth.labels[p].map((l) => l.padEnd(3)).join(' ')}   ${correct}/${labels.length} slices right`);
    say(`      IN range ${ph.inRange.first}..${ph.inRange.last} (${ph.inRange.count} slices)`);
  }
}

async function waitForJob(service: Service, studyUID: string, timeoutMs: number): Promise<ClassifyResult> {
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

async function waitForExport(service: Service, studyUID: string, config: Config): Promise<string> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const jobs = await service.exportQueue.getJobs(['completed', 'failed']);
    const mine = jobs.filter((j) => j.data.studyInstanceUID === studyUID);
    const failed = mine.find((j) => j.finishedOn && j.failedReason);
    if (failed) return `export failed: ${failed.failedReason}`;
    const done = mine.filter((j) => j.returnvalue);
    if (done.length) return `${done.reduce((n, j) => n + (j.returnvalue as { sent: number }).sent, 0)} objects delivered to ${config.orthancUrl}`;
    await new Promise((r) => setTimeout(r, 300));
  }
  return 'export still pending after 60 s (see /admin/queues)';
}

/** RGB Secondary Capture → PNG (for the HTML summary). */
async function scToPng(scPath: string, pngPath: string): Promise<void> {
  const { dataset } = readPart10(new Uint8Array(await readFile(scPath)));
  const px = dataset.PixelData as ArrayBuffer | ArrayBuffer[];
  const buf = Buffer.from(Array.isArray(px) ? px[0]! : px);
  await sharp(buf, { raw: { width: dataset.Columns as number, height: dataset.Rows as number, channels: 3 } }).png().toFile(pngPath);
}

async function writeSummary(out: string, results: Result[], truth: PhantomTruth, job: ClassifyResult): Promise<string> {
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const sections: string[] = [];
  for (const r of results) {
    for (const p of ['ED', 'ES'] as const) {
      const ph = r.phases[p];
      const montage = await findMontage(r, p);
      let img = '';
      if (montage) {
        const png = join(out, `montage-${r.stackId}-${p}.png`);
        await scToPng(montage, png);
        img = `<img src="${esc(basename(png))}" alt="${p} montage">`;
      }
      const rows = ph.slices
        .map(
          (s, i) =>
            `<tr><td>${i + 1}</td><td>${s.position.toFixed(1)}</td><td>${s.probabilities.OAP.toFixed(3)}</td><td>${s.probabilities.IN.toFixed(3)}</td><td>${s.probabilities.OBS.toFixed(3)}</td><td>${s.predicted}</td><td class="${s.label}">${s.label}</td><td>${truth.labels[p][i] ?? ''}</td></tr>`,
        )
        .join('\n');
      sections.push(`<h2>${esc(r.stackId)} — ${p} (phase ${ph.phaseIndex}, ${esc(ph.method)}; IN ${ph.inRange.first}–${ph.inRange.last})</h2>
${img}
<table><tr><th>#</th><th>mm</th><th>P(OAP)</th><th>P(IN)</th><th>P(OBS)</th><th>argmax</th><th>label</th><th>truth</th></tr>
${rows}</table>`);
    }
  }
  const html = `<!doctype html><meta charset="utf-8"><title>sax-range demo</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}
.OAP{background:#ffa500}.IN{background:#2ecc71}.OBS{background:#e056fd}img{max-width:100%}</style>
<h1>sax-range demo: phantom study</h1>
<p>Study ${esc(truth.studyInstanceUID)}: ${truth.slices} slices × ${truth.phases} phases; truth ED ${truth.ed}, ES ${truth.es}.
Processed by ${esc(job.processedBy.host)} pid ${job.processedBy.pid} in ${job.timings.totalMs} ms.
Objects and result JSON: <code>${esc(relative(out, join(out, 'data', 'results', truth.studyInstanceUID)))}</code>.</p>
${sections.join('\n')}
<p>Not for diagnostic use. Model: ${esc(results[0]?.model.id ?? '')} ${esc(results[0]?.model.version ?? '')}.</p>`;
  const path = join(out, 'summary.html');
  await writeFile(path, html);
  return path;
}

/** The montage SC of a phase among a stack's outputs: the montage series holds ED as instance 1, ES as 2. */
async function findMontage(r: Result, phase: 'ED' | 'ES'): Promise<string | undefined> {
  for (const o of r.outputs) {
    if (o.kind !== 'sc' || !o.path) continue;
    const { dataset } = readPart10(new Uint8Array(await readFile(o.path)));
    if (String(dataset.SeriesDescription ?? '').includes('montage') && dataset.InstanceNumber === (phase === 'ED' ? 1 : 2)) return o.path;
  }
  return undefined;
}
