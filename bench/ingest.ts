/**
 * Ingest benchmark: storescu (TCP_NODELAY=1, one association) sends the same N synthetic MR instances
 * (256×256, 16 bits, ≈131 KB each, Explicit VR LE; own generator, test/helpers/dcmtk.ts) to
 *   - storescp:      `storescp -od DIR -pdu 65536 -dhl PORT` storing to disk (no fsync)
 *   - ours:          DicomReceiver in a child process (bench/ingest-receiver.ts, compiled with tsc), the service's
 *                    Spool with its journal (one sync of a preallocated journal file per commit, group commit)
 *   - ours-classic:  the same without the journal (fsync file + rename + fsync directory per instance)
 *   - ours-nofsync:  the classic path with a bench-only spool that skips both fsyncs (what storescp does); it
 *                    streams every instance to a temp file as the classic path does
 *   - stock-dimse-nofsync (with --compare-stock): ours-nofsync without the PduReader fast path (dcmjs-dimse parses)
 * Rate = N / storescu wall time. Receiver CPU from /proc (utime + stime during the transfer). Peak RSS: the
 * child's process.resourceUsage().maxRSS; storescp's VmHWM. Also measured: the durability floors (Spool.commit
 * and Spool.commitBuffers through the journal, alone, back to back), which bound a receiver that answers after
 * a durable commit.
 *
 * Usage: node --import tsx bench/ingest.ts [--count 1000] [--reps 3] [--pdu 262144] [--compare-stock] [--cpu-prof DIR]
 * Not a test; keep the machine otherwise idle while it runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, open, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Spool } from '../src/spool/spool.js';
import { ConfigSchema } from '../src/config.js';
import { freePort, runTool, storescu, writeTestSeries } from '../test/helpers/dcmtk.js';

interface RunResult {
  ms: number;
  rate: number;
  rssMB: number;
  /** Receiver CPU (user + system) during the transfer, per instance. */
  cpuMsPerInstance: number;
  ok: boolean;
  note?: string;
}

const here = fileURLToPath(new URL('.', import.meta.url));

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.name.endsWith('.dcm') || e.name.startsWith('MR')) n++;
    }
  };
  await walk(dir).catch(() => undefined);
  return n;
}

function waitPort(port: number, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() - t0 > timeoutMs) reject(new Error(`port ${port} not listening`));
        else setTimeout(tryOnce, 50);
      });
      s.connect(port, '127.0.0.1');
    };
    tryOnce();
  });
}

function vmHwmMB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** utime + stime of a process in ms (from /proc; clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
}

/**
 * Compiles bench/ingest-receiver.ts and what it imports to plain JS (tsc, into `out`), so that the receiver runs
 * as in production (compiled, no tsx loader: tsx alone adds ~50 MB of RSS). Returns the entry point.
 */
async function compileReceiver(out: string): Promise<string> {
  const root = join(here, '..');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await runTool(process.execPath, [
    tsc, join(here, 'ingest-receiver.ts'), join(root, 'src', 'types', 'dcmjs.d.ts'), '--outDir', out, '--rootDir', root, '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--target', 'es2022', '--esModuleInterop', '--skipLibCheck', '--strict', '--types', 'node', '--sourceMap', 'false',
  ], { timeoutMs: 180_000 });
  if (r.code !== 0) throw new Error(`tsc failed:\n${r.output}`);
  await writeFile(join(out, 'package.json'), '{"type":"module"}\n');
  await symlink(join(root, 'node_modules'), join(out, 'node_modules'), 'dir');
  return join(out, 'bench', 'ingest-receiver.js');
}

async function runOurs(entry: string, files: string, n: number, work: string, opts: { spool: 'journal' | 'classic' | 'nofsync'; pdu: number; stock?: boolean; cpuProf?: string }): Promise<RunResult> {
  const spoolDir = await mkdtemp(join(work, 'ours-'));
  const nodeArgs: string[] = [];
  if (opts.cpuProf) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProf}`);
  const args = [...nodeArgs, entry, spoolDir, '--pdu', String(opts.pdu)];
  if (opts.spool === 'nofsync') args.push('--no-fsync');
  if (opts.spool === 'classic') args.push('--classic');
  if (opts.stock) args.push('--stock');
  const child = spawn(process.execPath, args, { cwd: join(here, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`receiver exited (${code}) before READY`)));
  });
  const cpu0 = cpuMs(child.pid!);
  const r = await storescu({ port, calledAE: 'SAXRANGE' }, [files], ['+sd'], 600_000);
  const cpu = cpuMs(child.pid!) - cpu0;
  child.kill('SIGTERM');
  await exited(child);
  const last = out.trim().split('\n').pop() ?? '{}';
  let rssMB = NaN;
  try {
    rssMB = (JSON.parse(last) as { maxRssKB: number }).maxRssKB / 1024;
  } catch {
    // keep NaN
  }
  const stored = await countFiles(join(spoolDir, 'studies'));
  await rm(spoolDir, { recursive: true, force: true });
  return { ms: r.ms, rate: (n * 1000) / r.ms, rssMB, cpuMsPerInstance: cpu / n, ok: r.code === 0 && stored === n, note: r.code === 0 ? undefined : r.output.slice(-500) };
}

async function runStorescp(files: string, n: number, work: string): Promise<RunResult> {
  const outDir = await mkdtemp(join(work, 'storescp-'));
  const port = await freePort();
  const child = spawn('storescp', ['-od', outDir, '-pdu', '65536', '-dhl', String(port)], {
    env: { ...process.env, TCP_NODELAY: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitPort(port);
  const cpu0 = cpuMs(child.pid!);
  const r = await storescu({ port, calledAE: 'STORESCP' }, [files], ['+sd'], 600_000);
  const cpu = cpuMs(child.pid!) - cpu0;
  const rssMB = vmHwmMB(child.pid!);
  child.kill('SIGTERM');
  await exited(child);
  const stored = await countFiles(outDir);
  await rm(outDir, { recursive: true, force: true });
  return { ms: r.ms, rate: (n * 1000) / r.ms, rssMB, cpuMsPerInstance: cpu / n, ok: r.code === 0 && stored === n, note: r.code === 0 ? undefined : r.output.slice(-500) };
}

/**
 * The durability floors: what a commit alone costs per instance here, done back to back: `classic` writes a
 * 131 KB temp file and Spool.commit syncs it, renames it and syncs the folder; `journal` is Spool.commitBuffers
 * (journal append and sync, file written unsynced and renamed). No receiver that answers only after its commit
 * can beat its floor.
 */
async function durabilityFloor(work: string, count: number, mode: 'classic' | 'journal'): Promise<number> {
  const spool = new Spool(await mkdtemp(join(work, 'floor-')), { journalSegmentBytes: mode === 'journal' ? ConfigSchema.parse({}).spoolJournalMiB * 1024 * 1024 : 0 });
  await spool.init();
  const data = Buffer.alloc(131_000, 7);
  const ids = (i: number) => ({ studyInstanceUID: '2.25.1', seriesInstanceUID: '2.25.1.1', sopInstanceUID: `2.25.1.1.${i + 1}` });
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (mode === 'journal') {
      await spool.commitBuffers(ids(i), [data], data.length);
      continue;
    }
    const tmp = spool.tmpPath();
    const fh = await open(tmp, 'w');
    await fh.write(data);
    await spool.commit(tmp, ids(i), fh);
  }
  const ms = (performance.now() - t0) / count;
  await spool.close(); // its cached directory handles (else Node closes them on GC, with a warning)
  await rm(spool.root, { recursive: true, force: true });
  return ms;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x: number, d = 0): string => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

async function main(): Promise<void> {
  const n = Number(arg('--count', '1000'));
  const reps = Number(arg('--reps', '3'));
  const pdu = Number(arg('--pdu', '262144'));
  const cpuProf = process.argv.includes('--cpu-prof') ? arg('--cpu-prof', join(tmpdir(), 'sax-range-prof')) : undefined;
  const work = await mkdtemp(join(tmpdir(), 'sax-range-ingest-'));
  try {
    process.stderr.write('compiling the receiver (tsc)…\n');
    const entry = await compileReceiver(join(work, 'build'));
    const filesDir = join(work, 'in');
    process.stderr.write(`generating ${n} MR instances (256×256×16 bit)…\n`);
    await writeTestSeries(filesDir, n, '2.25.777', { rows: 256, columns: 256 });
    const compareStock = process.argv.includes('--compare-stock');
    const results: Record<string, RunResult[]> = { storescp: [], ours: [], 'ours-classic': [], 'ours-nofsync': [] };
    if (compareStock) results['stock-dimse-nofsync'] = [];
    const floors: number[] = [];
    const journalFloors: number[] = [];
    for (let i = 0; i < reps; i++) {
      floors.push(await durabilityFloor(work, 200, 'classic'));
      journalFloors.push(await durabilityFloor(work, 200, 'journal'));
      results.storescp.push(await runStorescp(filesDir, n, work));
      results.ours.push(await runOurs(entry, filesDir, n, work, { spool: 'journal', pdu, cpuProf }));
      results['ours-classic'].push(await runOurs(entry, filesDir, n, work, { spool: 'classic', pdu }));
      results['ours-nofsync'].push(await runOurs(entry, filesDir, n, work, { spool: 'nofsync', pdu }));
      if (compareStock) results['stock-dimse-nofsync'].push(await runOurs(entry, filesDir, n, work, { spool: 'nofsync', pdu, stock: true }));
      process.stderr.write(
        `rep ${i + 1}: ${Object.entries(results)
          .map(([k, v]) => `${k} ${fmt(v[i].rate)}/s cpu ${fmt(v[i].cpuMsPerInstance, 2)} ms/inst rss ${fmt(v[i].rssMB)} MB${v[i].ok ? '' : ' FAILED'}`)
          .join(' | ')}\n`,
      );
      for (const [k, v] of Object.entries(results)) if (v[i].note) process.stderr.write(`${k}: ${v[i].note}\n`);
    }
    const base = median(results.storescp.map((r) => r.rate));
    const cpu = cpus()[0]?.model ?? 'unknown';
    const cpuInfo = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
    console.log(`\nIngest: ${n} MR instances (256×256×16 bit, Explicit VR LE, ~131 KB), storescu TCP_NODELAY=1, one association, ${reps} reps`);
    console.log(`machine: nproc=${cpus().length}, CPU ${cpuInfo}, Node ${process.version}; our max PDU ${pdu}, storescp -pdu 65536\n`);
    // The VM's speed drifts within a run (storescp alone has moved 2–3× between reps), so the ratio that counts is
    // the paired one: each rep's rate over storescp's in the same rep, then the median of those.
    const paired = (v: RunResult[]) => v.map((r, i) => r.rate / results.storescp[i]!.rate);
    console.log('| receiver | images/s (median, min–max) | ratio of medians | paired ratio per rep (median; each rep) | receiver CPU ms/instance (median) | peak RSS MB (max) | all stored |');
    console.log('|---|---|---|---|---|---|---|');
    for (const [k, v] of Object.entries(results)) {
      const rates = v.map((r) => r.rate);
      const pr = paired(v);
      console.log(
        `| ${k} | ${fmt(median(rates))} (${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))}) | ${fmt(median(rates) / base, 2)} | ${fmt(median(pr), 2)} (${pr.map((x) => fmt(x, 2)).join(', ')}) | ${fmt(median(v.map((r) => r.cpuMsPerInstance)), 2)} | ${fmt(Math.max(...v.map((r) => r.rssMB)))} | ${v.every((r) => r.ok) ? 'yes' : 'NO'} |`,
      );
    }
    const floor = median(floors);
    const jfloor = median(journalFloors);
    console.log(
      `\nDurability floors (131 KB, back to back, 200×): classic Spool.commit ${fmt(floor, 2)} ms/instance (${fmt(Math.min(...floors), 2)}–${fmt(Math.max(...floors), 2)}) → at most ${fmt(1000 / floor / base, 2)}× storescp; journal Spool.commitBuffers ${fmt(jfloor, 2)} ms/instance (${fmt(Math.min(...journalFloors), 2)}–${fmt(Math.max(...journalFloors), 2)}) → at most ${fmt(1000 / jfloor / base, 2)}× storescp (which does not fsync).`,
    );
    const rate = (k: string) => median(results[k]!.map((r) => r.rate));
    const pairedMedian = (k: string) => median(paired(results[k]!));
    console.log('\nBENCHMARKS.md row (ratios: paired per rep, median):');
    console.log('| date | machine | N | storescp img/s | ours (journal) img/s (ratio) | ours classic img/s (ratio) | ours no-fsync img/s (ratio) | floor classic / journal ms/inst | ours peak RSS MB |');
    console.log(
      `| ${new Date().toISOString().slice(0, 10)} | ${cpus().length}× ${cpuInfo}, Node ${process.version} | ${n} | ${fmt(base)} | ${fmt(rate('ours'))} (${fmt(pairedMedian('ours'), 2)}) | ${fmt(rate('ours-classic'))} (${fmt(pairedMedian('ours-classic'), 2)}) | ${fmt(rate('ours-nofsync'))} (${fmt(pairedMedian('ours-nofsync'), 2)}) | ${fmt(floor, 2)} / ${fmt(jfloor, 2)} | ${fmt(Math.max(...results.ours.map((r) => r.rssMB)))} |`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
