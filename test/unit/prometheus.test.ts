import { describe, expect, it } from 'vitest';
import type { Exporter } from '../../src/export/exporter.js';
import { collectQueueCounts, instrumentExporter, JOB_STATES, metricsRegistry, observeStageSince } from '../../src/metrics.js';

/** The value of one sample in the registry's text output (0 when absent). */
async function sample(name: string, labels: Record<string, string>): Promise<number> {
  const text = await metricsRegistry.metrics();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/.exec(line);
    if (m && m[1] === name && want.every((w) => m[2]!.split(',').includes(w))) return Number(m[3]);
  }
  return 0;
}

describe('instrumentExporter', () => {
  const failing = (retryable: boolean): Exporter => ({
    target: 'X@h:1',
    send: async () => {
      throw Object.assign(new Error('refused'), { retryable });
    },
    close: () => undefined,
  });

  it('passes undefined (export none) through', () => {
    expect(instrumentExporter(undefined)).toBeUndefined();
  });

  it('times every send and counts failures by whether they are retried, rethrowing them', async () => {
    const count = () => sample('sax_range_stage_duration_seconds_count', { stage: 'export' });
    const before = { n: await count(), retry: await sample('sax_range_export_failures_total', { retryable: 'true' }), perm: await sample('sax_range_export_failures_total', { retryable: 'false' }) };
    const ok = instrumentExporter<Exporter>({ target: 'X@h:1', send: async (f) => ({ sent: f.length }), close: () => undefined });
    expect(ok.target).toBe('X@h:1');
    expect(await ok.send(['a', 'b'])).toEqual({ sent: 2 });
    await expect(instrumentExporter(failing(true)).send(['a'])).rejects.toThrow('refused');
    await expect(instrumentExporter(failing(false)).send(['a'])).rejects.toThrow('refused');
    expect(await count()).toBe(before.n + 3);
    expect(await sample('sax_range_export_failures_total', { retryable: 'true' })).toBe(before.retry + 1);
    expect(await sample('sax_range_export_failures_total', { retryable: 'false' })).toBe(before.perm + 1);
  });
});

describe('collectQueueCounts', () => {
  it('sets the jobs gauge for every queue and state from getJobCounts', async () => {
    const queue = { name: 'unit-q', getJobCounts: async (...types: string[]) => Object.fromEntries(types.map((t, i) => [t, i * 10])) };
    await collectQueueCounts([queue]);
    for (const [i, state] of JOB_STATES.entries()) expect(await sample('sax_range_jobs', { queue: 'unit-q', state })).toBe(i * 10);
  });
});

describe('observeStageSince', () => {
  it('records seconds since the start, never negative', async () => {
    const sum = () => sample('sax_range_stage_duration_seconds_sum', { stage: 'receive_to_ready' });
    const before = await sum();
    observeStageSince('receive_to_ready', 1_000, 3_500);
    observeStageSince('receive_to_ready', 5_000, 4_000);
    expect(await sum()).toBeCloseTo(before + 2.5, 9);
  });
});
