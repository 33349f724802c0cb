/**
 * Prometheus metrics of this process (served at `/metrics`). One registry per process: the SCP, the
 * pipeline and the export increment these directly, the API renders them.
 *
 * Names follow the Prometheus conventions (`_total` counters, `_seconds` histograms, base units).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Exporter } from './export/exporter.js';

export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry });

/** C-STOREs answered, by DIMSE status (`0x0000` = stored; see src/scp/policy.ts StoreStatus). */
export const instancesReceived = new Counter({
  name: 'sax_range_instances_received_total',
  help: 'C-STORE requests answered, by DIMSE status (0x0000 = stored durably)',
  labelNames: ['status'] as const,
  registers: [metricsRegistry],
});

/** A-ASSOCIATE requests, accepted or rejected. */
export const associations = new Counter({
  name: 'sax_range_associations_total',
  help: 'DICOM association requests, by result (accepted, rejected)',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});

/** Instances committed to the spool, by how they were made durable (src/spool/spool.ts). */
export const spoolCommits = new Counter({
  name: 'sax_range_spool_commits_total',
  help: 'Instances made durable in the spool, by path: journal (one shared journal sync) or classic (own fsync, rename, folder fsync)',
  labelNames: ['path'] as const,
  registers: [metricsRegistry],
});

/** Failed export attempts; `retryable="false"` ones are not retried. */
export const exportFailures = new Counter({
  name: 'sax_range_export_failures_total',
  help: 'Failed export attempts to the PACS, by whether they are retried',
  labelNames: ['retryable'] as const,
  registers: [metricsRegistry],
});

/** Result documents written to the database. */
export const resultsSaved = new Counter({
  name: 'sax_range_results_saved_total',
  help: 'Result documents saved to the database (one per classified stack)',
  registers: [metricsRegistry],
});

/** BullMQ job counts, refreshed at every scrape (see collectQueueCounts). */
export const jobs = new Gauge({
  name: 'sax_range_jobs',
  help: 'Jobs by queue and state (BullMQ getJobCounts at scrape time)',
  labelNames: ['queue', 'state'] as const,
  registers: [metricsRegistry],
});

/** The stages a study goes through, for `stageDuration`. */
export type Stage = 'receive_to_ready' | 'classify' | 'export';

/**
 * Seconds per stage: `receive_to_ready` from the study's first stored instance to its classify job being
 * queued (includes the quiet period), `classify` one classify job (all stacks, objects written), `export`
 * one export attempt (all objects of a stack).
 */
export const stageDuration = new Histogram({
  name: 'sax_range_stage_duration_seconds',
  help: 'Duration of a study stage: receive_to_ready (first instance to job queued), classify (one job), export (one attempt)',
  labelNames: ['stage'] as const,
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600],
  registers: [metricsRegistry],
});

/** Records a stage that started at `startMs` (ms since 1970) and ends now. */
export function observeStageSince(stage: Stage, startMs: number, nowMs = Date.now()): void {
  stageDuration.observe({ stage }, Math.max(0, nowMs - startMs) / 1000);
}

/** Something with BullMQ's getJobCounts (a Queue). */
export interface CountableQueue {
  readonly name: string;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
}

/** BullMQ job states reported by the `sax_range_jobs` gauge. */
export const JOB_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed', 'failed'] as const;

/** Sets the `sax_range_jobs` gauge from the queues' current counts (called at scrape). */
export async function collectQueueCounts(queues: readonly CountableQueue[]): Promise<void> {
  for (const q of queues) {
    const counts = await q.getJobCounts(...JOB_STATES);
    for (const state of JOB_STATES) jobs.set({ queue: q.name, state }, counts[state] ?? 0);
  }
}

/** The exporter with each `send` timed (`stageDuration{stage="export"}`) and its failures counted. */
export function instrumentExporter<E extends Exporter | undefined>(exporter: E): E {
  if (!exporter) return exporter;
  const e: Exporter = exporter;
  return {
    get target() {
      return e.target;
    },
    async send(files) {
      const t0 = Date.now();
      try {
        return await e.send(files);
      } catch (err) {
        exportFailures.inc({ retryable: String((err as { retryable?: boolean }).retryable !== false) });
        throw err;
      } finally {
        observeStageSince('export', t0);
      }
    },
    close: () => e.close(),
  } as E;
}
