import { spawn } from 'node:child_process';
import type { ScuTarget } from './dcmtk.js';

/** What storescu said about each file it sent: the status text of its C-STORE response, or none. */
export interface StoreOutcome {
  code: number | null;
  /** File → response status text ('Success', 'Refused: OutOfResources', …); files never answered are absent. */
  responses: Map<string, string>;
  output: string;
}

/**
 * Runs `storescu -v` (with `-nh`: go on after a failed store) and reads its log for the response to every
 * file, so that a test knows exactly which instances were answered Success before something broke.
 * `onProgress` sees the number of Success responses so far.
 */
export function storescuVerbose(
  target: ScuTarget,
  files: string[],
  opts: { extra?: string[]; timeoutMs?: number; onSuccessCount?: (n: number) => void } = {},
): Promise<StoreOutcome> {
  return new Promise((resolve) => {
    const child = spawn(
      'storescu',
      ['-v', '-nh', '-aec', target.calledAE, '-aet', target.callingAE ?? 'STORESCU', ...(opts.extra ?? []), target.host ?? '127.0.0.1', String(target.port), ...files],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const responses = new Map<string, string>();
    let output = '';
    let buf = '';
    let current: string | undefined;
    let successes = 0;
    const onData = (chunk: Buffer) => {
      const s = chunk.toString('utf8');
      output += s;
      buf += s;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const sending = /Sending file: (.*)$/.exec(line);
        if (sending) current = sending[1]!.trim();
        const resp = /Received Store Response \((.*)\)\s*$/.exec(line);
        if (resp && current) {
          responses.set(current, resp[1]!);
          if (resp[1] === 'Success') opts.onSuccessCount?.(++successes);
          current = undefined;
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, responses, output });
    });
  });
}
