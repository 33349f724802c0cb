import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

/** One `sax-range serve` process started from the sources (tsx), as an operator would run a role. */
export interface ServeProcess {
  name: string;
  pid: number;
  /** Ports from the process's `listening` line. */
  dicomPort: number | null;
  httpPort: number | null;
  /** Every JSON log line the process wrote to stderr so far. */
  logs: Array<Record<string, unknown>>;
  /** Raw stderr lines that were not JSON (stack traces, warnings). */
  text: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line (past or future) for which `pred` holds. */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): void;
  /** CPU seconds (user + system) the process and its threads used so far (Linux /proc). */
  cpuSeconds(): Promise<number>;
  /** Peak resident set size in bytes so far (Linux /proc VmHWM). */
  peakRss(): Promise<number>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const CLI = resolve('src/cli.ts');

/**
 * Starts `node --import tsx src/cli.ts serve` with `env` on top of a clean environment (no SAX_RANGE_* or
 * REDIS_URL from the caller leak in) and waits for its `listening` line.
 */
export async function startServeProcess(name: string, env: Record<string, string>, timeoutMs = 60_000): Promise<ServeProcess> {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(SAX_RANGE_|REDIS_URL|ORTHANC_|DATABASE_URL)/.test(k)) clean[k] = v;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve'], {
    env: { ...clean, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const text: string[] = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));

  let errBuf = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    errBuf += chunk;
    let nl: number;
    while ((nl = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, nl);
      errBuf = errBuf.slice(nl + 1);
      let rec: Record<string, unknown> | undefined;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        if (line.trim()) text.push(line);
        continue;
      }
      logs.push(rec);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(rec)) {
          waiters[i]!.resolve(rec);
          waiters.splice(i, 1);
        }
      }
    }
  });

  const listening = await new Promise<{ dicomPort: number | null; httpPort: number | null }>((res, rej) => {
    let outBuf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`${name}: no "listening" line within ${timeoutMs} ms; stderr:\n${text.slice(-20).join('\n')}`));
    }, timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      outBuf += chunk;
      for (const line of outBuf.split('\n')) {
        try {
          const j = JSON.parse(line) as { event?: string; dicomPort: number | null; httpPort: number | null };
          if (j.event === 'listening') {
            clearTimeout(timer);
            res(j);
          }
        } catch {
          /* not the line we wait for */
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`${name} exited (code ${code}, signal ${signal}) before listening; stderr:\n${text.slice(-30).join('\n')}\n${JSON.stringify(logs.slice(-5))}`));
    });
  });

  const proc: ServeProcess = {
    name,
    pid: child.pid!,
    ...listening,
    logs,
    text,
    exited,
    waitForLog(pred, ms = 60_000, what = 'a log line') {
      const found = logs.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`${name}: no ${what} within ${ms} ms`)), ms);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            res(l);
          },
        });
      });
    },
    kill(signal = 'SIGKILL') {
      child.kill(signal);
    },
    async cpuSeconds() {
      const stat = await readFile(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Fields 14 and 15 (utime, stime) counted from 1; fields[0] is field 3.
      return (Number(fields[11]) + Number(fields[12])) / 100;
    },
    async peakRss() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const m = /VmHWM:\s+(\d+) kB/.exec(status);
      return m ? Number(m[1]) * 1024 : 0;
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
  return proc;
}
