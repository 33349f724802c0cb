import { mkdir } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { createApp } from './api/app.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { processClassifyJob, type ClassifyResult } from './pipeline/classify.js';
import { QueueName, type ClassifyJobData } from './queue/jobs.js';
import { createRedis } from './queue/redis.js';
import { StudyScheduler } from './queue/scheduler.js';
import { DicomReceiver } from './scp/index.js';
import { Spool } from './spool/spool.js';
import { SeriesTracker } from './tracker/tracker.js';

export interface Service {
  /** Bound DICOM port (scp role), else undefined. */
  dicomPort?: number;
  /** Bound HTTP port (api role), else undefined. */
  httpPort?: number;
  spool: Spool;
  tracker: SeriesTracker;
  classifyQueue: Queue<ClassifyJobData>;
  close(): Promise<void>;
}

/**
 * The one composition root of `sax-range serve`: builds every part from the config and wires them.
 * Roles (`scp`, `worker`, `api`) pick which parts run in this process; all share Redis and the spool.
 */
export async function startService(config: Config, logger: Logger): Promise<Service> {
  const roles = new Set(config.roles);
  const dataDir = resolve(config.dataDir);
  const spool = new Spool(join(dataDir, 'spool'));
  const resultsDir = join(dataDir, 'results');
  await mkdir(resultsDir, { recursive: true });
  if (roles.has('scp')) await spool.init();
  else await mkdir(spool.studiesDir, { recursive: true });

  const redis = createRedis(config.redisUrl, 'sax-range-main');
  const tracker = new SeriesTracker(redis, { prefix: config.queuePrefix, stableMs: config.stableSeconds * 1000 });
  const classifyQueue = new Queue<ClassifyJobData>(QueueName.classify, { connection: redis, prefix: config.queuePrefix });
  const closers: Array<() => Promise<unknown>> = [];
  const service: Service = {
    spool,
    tracker,
    classifyQueue,
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
      await spool.close();
      redis.disconnect();
    },
  };

  try {
    if (roles.has('worker')) {
      const workerRedis = createRedis(config.redisUrl, 'sax-range-worker');
      const processedBy = { host: hostname(), pid: process.pid };
      const worker = new Worker<ClassifyJobData, ClassifyResult>(
        QueueName.classify,
        async (job) => processClassifyJob(job.data, { spool, resultsDir, logger: logger.child({ jobId: job.id }), processedBy, jobId: job.id! }),
        { connection: workerRedis, prefix: config.queuePrefix, concurrency: config.workerConcurrency },
      );
      worker.on('failed', (job, err) =>
        logger.warn({ jobId: job?.id, studyInstanceUID: job?.data.studyInstanceUID, attempts: job?.attemptsMade, err: err.message }, 'classify job failed'),
      );
      worker.on('completed', (job) => logger.info({ jobId: job.id, studyInstanceUID: job.data.studyInstanceUID }, 'classify job completed'));
      closers.push(async () => {
        await worker.close();
        workerRedis.disconnect();
      });
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

    if (roles.has('api')) {
      const app = createApp({
        tracker,
        redis,
        queues: [classifyQueue],
        resultsDir,
        spoolDir: spool.studiesDir,
        logger: logger.child({ component: 'api' }),
        apiToken: config.apiToken,
        reprocess: (uid) => tracker.schedule(uid, Date.now(), 0),
      });
      const server: HttpServer = await new Promise((res, rej) => {
        const s = app.listen(config.httpPort, config.httpHost, () => res(s));
        s.once('error', rej);
      });
      const addr = server.address();
      service.httpPort = typeof addr === 'object' && addr ? addr.port : config.httpPort;
      closers.push(() => new Promise<void>((res) => server.close(() => res())));
      logger.info({ host: config.httpHost, port: service.httpPort }, 'HTTP API listening');
    }
  } catch (err) {
    await service.close();
    throw err;
  }
  return service;
}
