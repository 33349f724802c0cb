/**
 * Runs the malformed-input corpus (malformed.ts) against a real `sax-range serve` process: every case over
 * DIMSE with the raw association client, file-level cases also with storescu and through `sax-range classify`;
 * the service's RSS is sampled the whole time. Shared by test/integration/malformed.test.ts and
 * bench/malformed.ts.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { AssocConnection, parseAssociateAc, parseResponse, pdu, PduType, pdvs } from './assoc-client.js';
import { runTool } from './dcmtk.js';
import { CALLED_AE, CALLING_AE, corruptInstance, FILE_FAMILIES, type MalformedCase } from './malformed.js';
import { startServeProcess } from './process.js';
import { listTree } from './files.js';

export { listTree };

export type Outcome =
  | 'success'
  | 'failure-status'
  | 'association-rejected'
  | 'aborted'
  | 'closed'
  | 'no-answer'
  | 'client-dropped'
  | 'client-error';

export interface CaseResult {
  id: string;
  family: string;
  variant: string;
  outcome: Outcome;
  status?: number;
  comment?: string;
  /** Whether the outcome is acceptable for the case (see judge()). */
  ok: boolean;
  why?: string;
}

// ---------------------------------------------------------------------------------------------------------
// The service under test
// ---------------------------------------------------------------------------------------------------------

export interface ServiceProcess {
  pid: number;
  dicomPort: number;
  httpPort: number;
  dataDir: string;
  queuePrefix: string;
  /** stderr lines that are not JSON log lines (a stack trace, an uncaught exception). */
  text: string[];
  /** JSON log lines at warn level or above. */
  warnings: Array<Record<string, unknown>>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  rss: RssSampler;
  stop(): Promise<void>;
}

/** Samples a process's VmRSS (Linux /proc) every `everyMs`. */
export class RssSampler {
  samples: number[] = [];
  peak = 0;
  private timer: NodeJS.Timeout;
  constructor(
    private readonly pid: number,
    everyMs = 100,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
    this.sample();
  }
  sample(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      const v = m ? Number(m[1]) * 1024 : 0;
      if (v) {
        this.samples.push(v);
        if (v > this.peak) this.peak = v;
      }
      return v;
    } catch {
      return 0;
    }
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * Starts `node --import tsx src/cli.ts serve` (the sources, not dist/; test/helpers/process.ts) with every role,
 * its own data folder and Redis prefix, on ephemeral ports; resolves once it listens.
 */
export async function startService(root: string, env: Record<string, string> = {}): Promise<ServiceProcess> {
  const dataDir = join(root, `data-${randomUUID().slice(0, 8)}`);
  const queuePrefix = `malformed-${randomUUID()}`;
  const proc = await startServeProcess(
    'malformed-target',
    {
      LOG_LEVEL: 'warn',
      SAX_RANGE_DATA_DIR: dataDir,
      SAX_RANGE_QUEUE_PREFIX: queuePrefix,
      SAX_RANGE_DICOM_PORT: '0',
      SAX_RANGE_HTTP_PORT: '0',
      SAX_RANGE_STABLE_SECONDS: '1',
      SAX_RANGE_BACKEND: 'wasm',
      SAX_RANGE_INFERENCE_THREADS: '1',
      SAX_RANGE_MAX_PDU_LENGTH: '65536',
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      ...env,
    },
    90_000,
  );
  const rss = new RssSampler(proc.pid);
  const svc: ServiceProcess = {
    pid: proc.pid,
    dicomPort: proc.dicomPort!,
    httpPort: proc.httpPort!,
    dataDir,
    queuePrefix,
    text: proc.text,
    get warnings() {
      return proc.logs.filter((l) => Number(l.level) >= 40);
    },
    exit: undefined,
    rss,
    stop: async () => {
      rss.stop();
      await proc.stop(20_000);
    },
  };
  void proc.exited.then((e) => (svc.exit = e));
  return svc;
}

// ---------------------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------------------

/** How long the client waits for an answer the SCP owes it. */
const ANSWER_MS = 10_000;
/** How long it waits where the SCP may legitimately wait for bytes that never come. */
const MAY_WAIT_MS = 600;

/** Plays a case's conversation with the raw client and reports what the SCP did. */
export async function deliverDimse(c: MalformedCase, port: number): Promise<{ outcome: Outcome; status?: number; comment?: string }> {
  let conn: AssocConnection;
  try {
    conn = await AssocConnection.open({ port });
  } catch (err) {
    return { outcome: 'client-error', comment: (err as Error).message };
  }
  const wait = c.mayWait ? MAY_WAIT_MS : ANSWER_MS;
  /** The answer to the C-STORE, once it came (the conversation goes on: release, drop…). */
  let answer: { outcome: Outcome; status?: number; comment?: string } | undefined;
  try {
    for (const step of c.steps) {
      if ('send' in step) {
        conn.write(step.send);
      } else if ('drop' in step) {
        conn.destroy();
        return { outcome: 'client-dropped', status: answer?.status };
      } else if ('expect' in step && step.expect === 'associate') {
        const p = await conn.next(wait);
        if (p === 'closed') return { outcome: 'closed' };
        if (p === 'timeout') return { outcome: 'no-answer' };
        if (p.type === PduType.associateRj) return { outcome: 'association-rejected', comment: `result ${p.body[1]} source ${p.body[2]} reason ${p.body[3]}` };
        if (p.type === PduType.abort) return { outcome: 'aborted', comment: `source ${p.body[2]} reason ${p.body[3]}` };
        if (p.type !== PduType.associateAc) return { outcome: 'closed', comment: `unexpected PDU 0x${p.type.toString(16)}` };
        const ac = parseAssociateAc(p.body);
        if (!ac.contexts.some((x) => x.result === 0)) return { outcome: 'association-rejected', comment: 'no context accepted' };
      } else if ('expect' in step) {
        for (;;) {
          const p = await conn.next(wait);
          if (p === 'closed') return { outcome: 'closed' };
          if (p === 'timeout') return { outcome: 'no-answer' };
          if (p.type === PduType.abort) return { outcome: 'aborted', comment: `source ${p.body[2]} reason ${p.body[3]}` };
          if (p.type !== PduType.pData) continue;
          const cmd = pdvs(p.body).find((v) => v.control & 0x01);
          if (!cmd) continue;
          const r = parseResponse(cmd.value);
          answer = { outcome: r.status === 0 ? 'success' : 'failure-status', status: r.status, comment: r.errorComment };
          break;
        }
      } else if ('release' in step) {
        conn.write(pdu(PduType.releaseRq, Buffer.alloc(4)));
        await conn.next(2000);
      }
    }
    return answer ?? { outcome: 'closed' };
  } finally {
    conn.destroy();
  }
}

/** Sends a file-level case with storescu (as a real sender would); the outcome as storescu reports it. */
export async function deliverStorescu(file: string, port: number): Promise<{ outcome: Outcome | 'not-sent'; detail: string }> {
  const r = await runTool('storescu', ['-v', '-aec', CALLED_AE, '-aet', CALLING_AE, '-to', '10', '-ta', '10', '-td', '10', '127.0.0.1', String(port), file], { timeoutMs: 30_000 });
  const out = r.output;
  const line = (re: RegExp) => out.split('\n').find((l) => re.test(l))?.trim() ?? '';
  if (/Store Response \(Success\)/.test(out) || (r.code === 0 && !/Store Failed|Response \(.*(Failed|Error|Refused)/i.test(out) && /Received Store Response/.test(out)))
    return { outcome: 'success', detail: line(/Store Response/) };
  if (/Received Store Response|Store Failed/.test(out) && /Store Response \((?!Success)/.test(out)) return { outcome: 'failure-status', detail: line(/Store Response/) };
  if (/Association Rejected/i.test(out)) return { outcome: 'association-rejected', detail: line(/Association Rejected|Reason/) };
  if (/No presentation context|no acceptable presentation context/i.test(out)) return { outcome: 'association-rejected', detail: line(/presentation context/i) };
  if (/Association Aborted|Peer aborted|A-ABORT/i.test(out)) return { outcome: 'aborted', detail: line(/abort/i) };
  if (/Store SCU Failed|Store Failed/.test(out)) return { outcome: 'failure-status', detail: line(/Failed/) };
  // storescu could not read the file, or found nothing it can send.
  return { outcome: 'not-sent', detail: (out.split('\n').find((l) => /^[EF]:/.test(l)) ?? out.split('\n')[0] ?? '').trim() };
}

export interface ClassifyRun {
  code: number | null;
  stderr: string;
  /** A JavaScript stack trace was printed (a crash, not a clear error). */
  stackTrace: boolean;
  /** The clear error line (`sax-range: …`). */
  message?: string;
}

/** Runs `sax-range classify` (from the sources) on `paths`. */
export async function runClassifyCli(paths: string[], extra: string[] = []): Promise<ClassifyRun> {
  const r = await runTool(process.execPath, ['--import', 'tsx', resolve('src/cli.ts'), 'classify', ...paths, '--backend', 'wasm', ...extra], {
    timeoutMs: 120_000,
    env: { LOG_LEVEL: 'warn' },
  });
  const stackTrace = /^\s+at .+\(.*:\d+:\d+\)$|^\s+at .+:\d+:\d+$/m.test(r.stderr);
  const message = r.stderr.split('\n').find((l) => l.startsWith('sax-range: '));
  return { code: r.code, stderr: r.stderr, stackTrace, message };
}

/** Acceptable: a failure status, a rejection, an abort or a close; Success only where the corruption may be harmless. */
export function judge(c: MalformedCase, r: { outcome: Outcome; status?: number }): { ok: boolean; why?: string } {
  switch (r.outcome) {
    case 'success':
      return c.mustFail ? { ok: false, why: 'answered Success' } : { ok: true };
    case 'failure-status':
    case 'association-rejected':
    case 'aborted':
    case 'closed':
    case 'client-dropped':
      return { ok: true };
    case 'no-answer':
      return c.mayWait ? { ok: true } : { ok: false, why: `no answer within ${ANSWER_MS} ms` };
    default:
      return { ok: false, why: r.outcome };
  }
}

/**
 * `classify` on a valid study (`studyDir`, e.g. a phantom) in which one instance got the corruption of case `n`
 * of `family`: the stack must be classified without it, or fail with a clear error (never a stack trace).
 */
export async function classifyInStudy(
  studyDir: string,
  instance: string,
  family: (typeof FILE_FAMILIES)[number],
  seed: number,
  n: number,
  workDir: string,
): Promise<{ variant: string; run: ClassifyRun }> {
  const dir = join(workDir, `${family}-${n}`);
  await cp(studyDir, dir, { recursive: true });
  const { file, variant } = corruptInstance(family, seed, n, await readFile(instance));
  await writeFile(join(dir, relative(studyDir, instance)), file);
  return { variant, run: await runClassifyCli([dir]) };
}

/** A classify run is acceptable when it exits 0, or non-zero with one clear `sax-range: …` line and no stack trace. */
export function classifyOk(run: ClassifyRun, allowSuccess: boolean): boolean {
  if (run.stackTrace) return false;
  if (run.code === 0) return allowSuccess;
  return run.message !== undefined;
}

/** Writes each file-level case's file into `dir`; returns case id → path. */
export async function writeCaseFiles(cases: MalformedCase[], dir: string): Promise<Map<string, string>> {
  await mkdir(dir, { recursive: true });
  const out = new Map<string, string>();
  for (const c of cases) {
    if (!c.file) continue;
    const p = join(dir, `${c.id.replace(/[^A-Za-z0-9-]/g, '_')}.dcm`);
    await writeFile(p, c.file);
    out.set(c.id, p);
  }
  return out;
}

/** Counts by key. */
export function tally<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of items) out[key(t)] = (out[key(t)] ?? 0) + 1;
  return out;
}
