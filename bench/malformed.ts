/**
 * Malformed-input benchmark (issue 7): the whole seeded corpus of test/helpers/malformed.ts against a real
 * `sax-range serve` process (scp + worker + api, from the sources):
 *   1. every case over DIMSE with the raw association client (test/helpers/assoc-client.ts);
 *   2. every file-level case with storescu (where storescu can read the file at all);
 *   3. every file-level case through `sax-range classify` (own process each, 2 at a time), and once all of
 *      them mixed into a valid phantom study;
 *   4. a valid phantom study sent with storescu afterwards: it must be stored and processed (result JSON).
 * Prints counts by family and outcome, violations (Success where a failure was due, no answer, a crash, a
 * stack trace, a bad instance in the spool, temp files left), the service's peak RSS (sampled every 100 ms)
 * and the durations.
 *
 * Usage: node --import tsx bench/malformed.ts [--seed 7] [--per-family 120] [--no-storescu] [--no-classify] [--json FILE]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePhantomStudy } from '../src/phantom/index.js';
import { storescu } from '../test/helpers/dcmtk.js';
import { FAMILIES, FILE_FAMILIES, generateCorpus, type MalformedCase } from '../test/helpers/malformed.js';
import {
  classifyInStudy,
  classifyOk,
  deliverDimse,
  deliverStorescu,
  judge,
  listTree,
  runClassifyCli,
  startService,
  tally,
  writeCaseFiles,
  type CaseResult,
  type ClassifyRun,
} from '../test/helpers/malformed-run.js';

const arg = (name: string, dflt?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const seed = Number(arg('seed', '7'));
const perFamily = Number(arg('per-family', '120'));
const withStorescu = !process.argv.includes('--no-storescu');
const withClassify = !process.argv.includes('--no-classify');
const inStudyPerFamily = Number(arg('in-study', '10'));
const MiB = 1024 * 1024;

async function pool<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const root = await mkdtemp(join(tmpdir(), 'sax-range-malformed-bench-'));
  const cases: MalformedCase[] = [...generateCorpus({ seed, perFamily })];
  const files = await writeCaseFiles(cases, join(root, 'cases'));
  console.log(`corpus: seed ${seed}, ${cases.length} inputs (${perFamily} per family × ${FAMILIES.length}), ${files.size} files; generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const svc = await startService(root);
  const rssStart = svc.rss.sample();
  const violations: string[] = [];
  const results: CaseResult[] = [];
  const tDimse = performance.now();
  for (const c of cases) {
    const r = await deliverDimse(c, svc.dicomPort);
    const j = judge(c, r);
    results.push({ id: c.id, family: c.family, variant: c.variant, ...r, ...j });
    if (!j.ok) violations.push(`${c.id} (${c.variant}): ${j.why} ${r.comment ?? ''}`);
    if (svc.exit) {
      violations.push(`service exited after ${c.id} (${c.variant}): ${JSON.stringify(svc.exit)}\n${svc.text.slice(-30).map((l) => l.slice(0, 300)).join('\n')}`);
      break;
    }
  }
  const dimseS = (performance.now() - tDimse) / 1000;

  // Nothing that had to fail is in the spool; no temp file is left but the spare (checked before storescu,
  // which re-encodes what it can parse and so may send a valid dataset).
  await new Promise((r) => setTimeout(r, 1500));
  const spoolFiles = new Set((await listTree(join(svc.dataDir, 'spool', 'studies'))).map((p) => p.split('/').pop()));
  for (const c of cases) {
    if (c.mustFail && !c.mayStore && spoolFiles.has(`${c.sopInstanceUID}.dcm`)) violations.push(`${c.id} (${c.variant}): stored in the spool`);
  }
  const tmpLeft = await listTree(join(svc.dataDir, 'spool', 'tmp'));
  if (tmpLeft.length > 1) violations.push(`temp files left in the spool: ${tmpLeft.length}`);

  const storescuResults: Array<{ id: string; family: string; outcome: string; detail: string }> = [];
  let storescuS = 0;
  if (withStorescu && !svc.exit) {
    const t = performance.now();
    for (const c of cases) {
      const f = files.get(c.id);
      if (!f) continue;
      const r = await deliverStorescu(f, svc.dicomPort);
      storescuResults.push({ id: c.id, family: c.family, ...r });
      if (svc.exit) {
        violations.push(`service exited after storescu ${c.id}`);
        break;
      }
    }
    storescuS = (performance.now() - t) / 1000;
  }

  const tmpAfter = await listTree(join(svc.dataDir, 'spool', 'tmp'));
  if (tmpAfter.length > 1) violations.push(`temp files left in the spool after storescu: ${tmpAfter.length}`);

  // A valid study afterwards: stored and processed.
  const tValid = performance.now();
  const phantomDir = join(root, 'phantom');
  const { truth, paths } = await writePhantomStudy(phantomDir, { seed: 3, slices: 10, phases: 20, rows: 96 });
  const sent = await storescu({ port: svc.dicomPort, calledAE: 'SAXRANGE' }, paths);
  if (sent.code !== 0) violations.push(`valid phantom study: storescu exit ${sent.code}: ${sent.output.slice(-500)}`);
  let processed = false;
  for (let i = 0; i < 240 && !processed && !svc.exit; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const res = await fetch(`http://127.0.0.1:${svc.httpPort}/api/studies/${truth.studyInstanceUID}/results`).catch(() => undefined);
    if (res?.ok && ((await res.json()) as unknown[]).length > 0) processed = true;
  }
  if (!processed) violations.push('valid phantom study: no result within 120 s');
  const validS = (performance.now() - tValid) / 1000;
  const rssEnd = svc.rss.sample();
  const peakRss = svc.rss.peak;
  const alive = !svc.exit;
  // dcmjs logs the parse errors it recovers from with their stack ("WARN: Error: …"); what counts is an
  // uncaught exception (the process would have exited too) or an error printed outside the logger.
  const traces = svc.text.filter((l) => /^(\w*Error\b|Uncaught|Unhandled|node:internal)/.test(l));
  if (traces.length) violations.push(`service wrote non-JSON to stderr (stack trace?):\n${traces.slice(0, 20).map((l) => l.slice(0, 300)).join('\n')}`);
  await svc.stop();

  // classify: each file-level case alone, then all of them mixed into the valid study.
  let classifyRuns: Array<{ id: string; family: string; run: ClassifyRun }> = [];
  let mixed: ClassifyRun | undefined;
  let inStudy: Array<{ family: string; n: number; variant: string; run: ClassifyRun }> = [];
  let classifyS = 0;
  if (withClassify) {
    const t = performance.now();
    const fileCases = cases.filter((c) => files.has(c.id));
    const runs = await pool(fileCases, Math.max(1, Math.min(2, cpus().length)), async (c) => ({ id: c.id, family: c.family, run: await runClassifyCli([files.get(c.id)!]) }));
    classifyRuns = runs;
    for (const r of runs) {
      if (r.run.code === 0) violations.push(`classify ${r.id}: exit 0 on a malformed file`);
      if (!classifyOk(r.run, false)) violations.push(`classify ${r.id}: no clear error (exit ${r.run.code}):\n${r.run.stderr.slice(-800)}`);
    }
    // One corrupted instance inside the valid study (non-image classes are set aside like any non-MR: skipped).
    const studyFamilies = FILE_FAMILIES.filter((f) => f !== 'non-image-sop');
    const jobs = studyFamilies.flatMap((family) => Array.from({ length: inStudyPerFamily }, (_, n) => ({ family, n })));
    inStudy = await pool(jobs, 2, async ({ family, n }) => {
      const r = await classifyInStudy(phantomDir, paths[(n * 37) % paths.length], family, seed, n, join(root, 'in-study'));
      return { family, n, ...r };
    });
    for (const r of inStudy) {
      if (!classifyOk(r.run, true)) violations.push(`classify study with one ${r.family}#${r.n} (${r.variant}): exit ${r.run.code}\n${r.run.stderr.slice(-800)}`);
    }
    mixed = await runClassifyCli([phantomDir, join(root, 'cases')], ['--json']);
    if (mixed.code !== 0 || mixed.stackTrace) violations.push(`classify valid study + every malformed file: exit ${mixed.code}\n${mixed.stderr.slice(-800)}`);
    classifyS = (performance.now() - t) / 1000;
  }

  // Report.
  const outcomes = ['success', 'failure-status', 'association-rejected', 'aborted', 'closed', 'no-answer', 'client-dropped', 'client-error'];
  console.log(`\nservice: ${alive ? 'alive' : 'DIED'}; peak RSS ${(peakRss / MiB).toFixed(0)} MiB (start ${(rssStart / MiB).toFixed(0)}, end ${(rssEnd / MiB).toFixed(0)}); load ${loadavg()[0].toFixed(1)}`);
  console.log(`\nDIMSE (raw client), ${results.length} inputs in ${dimseS.toFixed(1)} s:\n`);
  console.log(`| family | inputs | ${outcomes.join(' | ')} | violations |`);
  console.log(`|---|---|${outcomes.map(() => '---').join('|')}|---|`);
  for (const f of FAMILIES) {
    const rs = results.filter((r) => r.family === f);
    const t = tally(rs, (r) => r.outcome);
    console.log(`| ${f} | ${rs.length} | ${outcomes.map((o) => t[o] ?? 0).join(' | ')} | ${rs.filter((r) => !r.ok).length} |`);
  }
  const tAll = tally(results, (r) => r.outcome);
  console.log(`| **all** | ${results.length} | ${outcomes.map((o) => tAll[o] ?? 0).join(' | ')} | ${results.filter((r) => !r.ok).length} |`);
  const statuses = tally(
    results.filter((r) => r.status !== undefined),
    (r) => `0x${r.status!.toString(16).padStart(4, '0')}`,
  );
  console.log(`\nC-STORE statuses: ${JSON.stringify(statuses)}`);
  if (withStorescu) {
    const t = tally(storescuResults, (r) => r.outcome);
    console.log(`\nstorescu, ${storescuResults.length} file-level inputs in ${storescuS.toFixed(1)} s: ${JSON.stringify(t)}`);
    for (const f of FAMILIES) {
      const rs = storescuResults.filter((r) => r.family === f);
      if (rs.length) console.log(`  ${f}: ${JSON.stringify(tally(rs, (r) => r.outcome))}`);
    }
  }
  if (withClassify) {
    const t = tally(classifyRuns, (r) => (r.run.stackTrace ? 'stack-trace' : `exit ${r.run.code}`));
    console.log(`\nclassify, ${classifyRuns.length} file-level inputs one by one in ${classifyS.toFixed(1)} s: ${JSON.stringify(t)}`);
    const msgs = tally(classifyRuns, (r) => (r.run.message ?? '(none)').replace(/ in \/\S+/, ' in FILE').replace(/\d+/g, 'N').slice(0, 110));
    for (const [m, n] of Object.entries(msgs).sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`  ${n} × ${m}`);
    console.log(`classify valid study + all ${files.size} malformed files: exit ${mixed?.code}${mixed?.stackTrace ? ' (stack trace)' : ''}`);
    console.log(`classify valid study with one corrupted instance, ${inStudy.length} runs: ${JSON.stringify(tally(inStudy, (r) => (r.run.stackTrace ? 'stack-trace' : `exit ${r.run.code}`)))}`);
    for (const f of FILE_FAMILIES) {
      const rs = inStudy.filter((r) => r.family === f);
      if (rs.length) console.log(`  ${f}: ${JSON.stringify(tally(rs, (r) => (r.run.stackTrace ? 'stack-trace' : `exit ${r.run.code}`)))}`);
    }
  }
  console.log(`\nvalid phantom study afterwards (10 slices × 20 phases): ${sent.code === 0 ? 'stored' : 'NOT stored'}, ${processed ? 'processed' : 'NOT processed'} in ${validS.toFixed(1)} s`);
  console.log(`temp files left in the spool: ${tmpLeft.length} after the raw client, ${tmpAfter.length} after storescu (the spare opened ahead counts 1)`);
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  console.log(`\nviolations: ${violations.length}`);
  for (const v of violations.slice(0, 40)) console.log(`  - ${v}`);
  const jsonOut = arg('json');
  if (jsonOut) await writeFile(jsonOut, JSON.stringify({ seed, perFamily, results, storescuResults, classifyRuns: classifyRuns.map((r) => ({ id: r.id, code: r.run.code, message: r.run.message, stackTrace: r.run.stackTrace })), violations, peakRss }, null, 1));
  await rm(root, { recursive: true, force: true });
  process.exit(violations.length ? 1 : 0);
}

await main();
