import { mkdir } from 'node:fs/promises';
import { availableParallelism, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { createApp } from './api/app.js';
import { listenApi } from './api/listen.js';
import { createOpsApp } from './api/ops.js';
import type { Config } from './config.js';
import { openDb, type Db } from './db/index.js';
import type { Logger } from './log.js';
import { createExporter } from './export/exporter.js';
import { instrumentExporter, spoolCommits } from './metrics.js';
import { selectBackend } from './inference/backend.js';
import type { StackClassifier } from './inference/classify-stack.js';
import { SliceClassifier } from './inference/classifier.js';
import { ClassifierPool } from './inference/pool.js';
import { processClassifyJob, type ClassifyResult } from './pipeline/classify.js';
import { EXPORT_JOB_OPTIONS, exportJobId, QueueName, type ClassifyJobData, type ExportJobData } from './queue/jobs.js';
import { createRedis, redisTarget } from './queue/redis.js';
import { StudyScheduler } from './queue/scheduler.js';
import { DicomReceiver } from './scp/index.js';
import { Spool } from './spool/spool.js';
import { SeriesTracker } from './tracker/tracker.js';

export interface Service {
  /** Bound DICOM port (scp role), else undefined. */
  dicomPort?: number;
  /** Bound HTTP port: the API (api role), else the health and metrics endpoints (src/api/ops.ts). */
  httpPort?: number;
  spool: Spool;
  tracker: SeriesTracker;
  classifyQueue: Queue<ClassifyJobData>;
  exportQueue: Queue<ExportJobData>;
  /** Results and labels database (worker and api roles). */
  db?: Db;
  close(): Promise<void>;
}

/** Loads the classifier once per worker process: in-process, or a pool of inference threads. */
async function loadClassifier(config: Config, logger: Logger): Promise<{ classifier: StackClassifier; close: () => Promise<void> }> {
  const modelDir = resolve(config.modelDir);
  const threads = config.inferenceThreads || availableParallelism();
  if (threads > 1) {
    const pool = await ClassifierPool.create({ modelDir }, { threads, backend: config.backend });
    logger.info({ modelDir, threads: pool.threads, backend: pool.backend, model: pool.modelRef }, 'classifier loaded (thread pool)');
    return { classifier: pool, close: () => pool.close() };
  }
  const backend = await selectBackend(config.backend, logger);
  const c = await SliceClassifier.load(modelDir, { logger });
  logger.info({ modelDir, backend: backend.name, model: c.modelRef }, 'classifier loaded');
  return { classifier: c, close: async () => c.dispose() };
}

/**
 * The one composition root of `sax-range serve`: builds every part from the config and wires them.
 * Roles (`scp`, `worker`, `api`) pick which parts run in this process; all share Redis and the spool.
 */
export async function startService(config: Config, logger: Logger): Promise<Service> {
  const roles = new Set(config.roles);
  const dataDir = resolve(config.dataDir);
  const spool = new Spool(join(dataDir, 'spool'), {
    journalSegmentBytes: config.spoolJournalMiB * 1024 * 1024,
    onCommit: (path) => spoolCommits.inc({ path }),
    onJournalError: (err, what) => logger.error({ component: 'spool', err }, what),
  });
  const resultsDir = join(dataDir, 'results');
  await mkdir(resultsDir, { recursive: true });
  // Results and labels (src/db): SQLite in dataDir, or PostgreSQL when DATABASE_URL is set; migrated on open.
  const db = roles.has('worker') || roles.has('api') ? await openDb({ dataDir, databaseUrl: config.databaseUrl, logger: logger.child({ component: 'db' }) }) : undefined;
  if (roles.has('scp')) {
    await spool.init();
    if (spool.replayed > 0) logger.warn({ component: 'spool', instances: spool.replayed }, 'spool journal replayed after an unclean stop');
  } else await mkdir(spool.studiesDir, { recursive: true });

  const redis = createRedis(redisTarget(config), 'sax-range-main', logger);
  const tracker = new SeriesTracker(redis, { prefix: config.queuePrefix, stableMs: config.stableSeconds * 1000 });
  const classifyQueue = new Queue<ClassifyJobData>(QueueName.classify, { connection: redis, prefix: config.queuePrefix });
  const exportQueue = new Queue<ExportJobData>(QueueName.export, { connection: redis, prefix: config.queuePrefix });
  const closers: Array<() => Promise<unknown>> = [];
  if (db) closers.push(() => db.close()); // first in, so closed last (closers run in reverse)
  let modelLoaded = false;
  const service: Service = {
    spool,
    tracker,
    db,
    classifyQueue,
    exportQueue,
    close: async () => {
      // Reverse order of start; each step runs even if an earlier one failed.
      for (const c of closers.reverse()) {
        try {
          await c();
        } catch (err) {
          logger.warn({ err }, 'error during shutdown');
        }
      }
      await classifyQueue.close().catch(() => undefined);
      await exportQueue.close().catch(() => undefined);
      await spool.close();
      redis.disconnect();
    },
  };

  try {
    if (roles.has('worker')) {
      const { classifier, close: closeClassifier } = await loadClassifier(config, logger);
      closers.push(closeClassifier);
      modelLoaded = true;
      const exporter = instrumentExporter(createExporter(config, logger.child({ component: 'export' })));
      const workerRedis = createRedis(redisTarget(config), 'sax-range-worker', logger);
      const processedBy = { host: hostname(), pid: process.pid };
      const worker = new Worker<ClassifyJobData, ClassifyResult>(
        QueueName.classify,
        async (job) =>
          processClassifyJob(job.data, {
            spool,
            resultsDir,
            logger: logger.child({ jobId: job.id }),
            processedBy,
            jobId: job.id!,
            classifier,
            saveResult: async (doc) => void (await db?.saveResult(doc)),
            enqueueExport: exporter
              ? async (data) => {
                  await exportQueue.add('export', data, { ...EXPORT_JOB_OPTIONS, jobId: exportJobId(data.studyInstanceUID, data.stackId, data.epoch) });
                  await tracker.recordJob(data.studyInstanceUID, exportJobId(data.studyInstanceUID, data.stackId, data.epoch));
                }
              : undefined,
          }),
        {
          connection: workerRedis,
          prefix: config.queuePrefix,
          concurrency: config.workerConcurrency,
          // A worker that dies mid-job stops renewing its lock; another worker's stall check takes the job back.
          lockDuration: config.jobLockMs,
          stalledInterval: config.stalledIntervalMs,
        },
      );
      worker.on('stalled', (jobId) => logger.warn({ jobId }, 'classify job stalled (its worker stopped renewing the lock); back in the queue'));
      worker.on('active', (job) => logger.info({ jobId: job.id, studyInstanceUID: job.data.studyInstanceUID, processedBy }, 'classify job started'));
      worker.on('failed', (job, err) =>
        logger.warn({ jobId: job?.id, studyInstanceUID: job?.data.studyInstanceUID, attempts: job?.attemptsMade, err: err.message }, 'classify job failed'),
      );
      worker.on('completed', (job) => logger.info({ jobId: job.id, studyInstanceUID: job.data.studyInstanceUID }, 'classify job completed'));
      closers.push(async () => {
        await worker.close();
        workerRedis.disconnect();
      });
      await worker.waitUntilReady();
      logger.info({ processedBy, concurrency: config.workerConcurrency, queue: QueueName.classify }, 'classify worker ready');

      if (exporter) {
        const exportRedis = createRedis(redisTarget(config), 'sax-range-export', logger);
        const exportWorker = new Worker<ExportJobData, { sent: number; target: string; processedBy: typeof processedBy }>(
          QueueName.export,
          async (job) => {
            try {
              const r = await exporter.send(job.data.files);
              logger.info({ jobId: job.id, studyInstanceUID: job.data.studyInstanceUID, sent: r.sent, target: exporter.target }, 'exported');
              return { ...r, target: exporter.target, processedBy };
            } catch (err) {
              // A permanent failure (rejected, unauthorised) is not retried; network and busy errors are.
              if ((err as { retryable?: boolean }).retryable === false) throw new UnrecoverableError((err as Error).message);
              throw err;
            }
          },
          { connection: exportRedis, prefix: config.queuePrefix, concurrency: 1, lockDuration: config.jobLockMs, stalledInterval: config.stalledIntervalMs },
        );
        exportWorker.on('failed', (job, err) =>
          logger.warn({ jobId: job?.id, studyInstanceUID: job?.data.studyInstanceUID, attempts: job?.attemptsMade, err: err.message }, 'export failed'),
        );
        closers.push(async () => {
          await exportWorker.close();
          exportRedis.disconnect();
          exporter.close();
        });
      }
    }

    if (roles.has('scp')) {
      const receiver = new DicomReceiver({
        config,
        spool,
        logger: logger.child({ component: 'scp' }),
        onStored: async (metas) => {
          const m = metas[0]!;
          await tracker.touch(m);
        },
      });
      service.dicomPort = await receiver.listen();
      closers.push(() => receiver.close());
      const scheduler = new StudyScheduler({ tracker, spool, classifyQueue, logger: logger.child({ component: 'scheduler' }) });
      await scheduler.recover();
      scheduler.start();
      closers.push(() => scheduler.stop());
      logger.info({ aeTitle: config.aeTitle, port: service.dicomPort }, 'DICOM SCP listening');
    }

    // The full API with the api role; otherwise only the probes and this process's /metrics (src/api/ops.ts).
    const health = {
      redis,
      spoolDir: spool.studiesDir,
      readiness: async (): Promise<Record<string, boolean>> => (roles.has('worker') ? { model: modelLoaded } : {}),
      apiToken: config.apiToken,
      queues: [classifyQueue, exportQueue],
    };
    const app = roles.has('api')
      ? createApp({
          ...health,
          tracker,
          resultsDir,
          logger: logger.child({ component: 'api' }),
          orthancUrl: config.orthancUrl,
          db,
          modelDir: resolve(config.modelDir),
          reprocess: (uid) => tracker.schedule(uid, Date.now(), 0),
        })
      : createOpsApp(health);
    // HTTPS when httpsCertFile/httpsKeyFile are set (src/api/listen.ts).
    const server = await listenApi(app, config);
    const addr = server.address();
    service.httpPort = typeof addr === 'object' && addr ? addr.port : config.httpPort;
    closers.push(() => new Promise<void>((res) => server.close(() => res())));
    logger.info(
      { host: config.httpHost, port: service.httpPort, https: Boolean(config.httpsCertFile), roles: [...roles] },
      roles.has('api') ? 'HTTP API listening' : 'health and metrics listening (no api role)',
    );
  } catch (err) {
    await service.close();
    throw err;
  }
  return service;
}
