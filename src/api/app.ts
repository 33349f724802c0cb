import { dirname } from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Redis } from 'ioredis';
import type { Db } from '../db/index.js';
import type { Logger } from '../log.js';
import { Spool } from '../spool/spool.js';
import type { SeriesTracker } from '../tracker/tracker.js';
import { createDataRouter } from './data-routes.js';
import { createDocsRouter } from './docs-routes.js';
import { createImagesRouter } from './images.js';
import { bearerToken, mountHealth } from './ops.js';
import { publicOrthancUrl } from './orthanc-ids.js';
import { formatZodError, StudyParamsSchema } from './schemas.js';
import { readStudyResults } from './study-results.js';
import { NotFoundError, StudyViews } from './study-view.js';
import { createPagesRouter } from './web.js';

export interface ApiDeps {
  tracker: SeriesTracker;
  redis: Redis;
  queues: Queue[];
  /** Folder of result JSON documents: `<resultsDir>/<StudyUID>/<stackId>.json`. */
  resultsDir: string;
  spoolDir: string;
  logger: Logger;
  apiToken?: string;
  /** Extra readiness checks (e.g. model loaded): name → ok. */
  readiness?: () => Promise<Record<string, boolean>>;
  reprocess?: (studyInstanceUID: string) => Promise<void>;
  /** Results and labels (src/db); absent: no labels routes (503) and the study list comes from the tracker. */
  db?: Db;
  /** Folder of the served model: `GET /api/model` returns its card. */
  modelDir?: string;
  /** Orthanc base URL: the viewer links to Orthanc Explorer (credentials are never passed on). */
  orthancUrl?: string;
}

/** The HTTP API (DESIGN "HTTP API"). Thin: every answer comes from the tracker, the queues or the results folder. */
export function createApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '1mb' }));

  mountHealth(app, deps);

  // The viewer and labeller pages carry no data (src/api/web.ts): open, like /healthz.
  app.use(createPagesRouter());
  // The OpenAPI description (src/api/openapi.ts): open too, it holds no data.
  app.use(createDocsRouter());

  if (deps.apiToken) app.use(bearerToken(deps.apiToken));

  const board = new ExpressAdapter();
  board.setBasePath('/admin/queues');
  createBullBoard({ queues: deps.queues.map((q) => new BullMQAdapter(q)), serverAdapter: board });
  app.use('/admin/queues', board.getRouter());

  const views = new StudyViews({ spool: new Spool(dirname(deps.spoolDir)), resultsDir: deps.resultsDir, orthancUrl: publicOrthancUrl(deps.orthancUrl) });
  app.use(createImagesRouter({ views, logger: deps.logger, orthancUrl: publicOrthancUrl(deps.orthancUrl) }));

  const byName = new Map(deps.queues.map((q) => [q.name, q]));

  const studyUid = (req: Request, res: Response): string | undefined => {
    const r = StudyParamsSchema.safeParse(req.params);
    if (!r.success) {
      res.status(400).json({ error: formatZodError(r.error, 'params') });
      return undefined;
    }
    return r.data.studyUID;
  };

  // Study list, model card, labels, labels.csv, /metrics (src/api/data-routes.ts).
  const spoolStacks = async (uid: string) => {
    try {
      return (await views.view(uid)).stacks;
    } catch (err) {
      if (err instanceof NotFoundError) return [];
      throw err;
    }
  };
  app.use(
    createDataRouter({ tracker: deps.tracker, queues: deps.queues, resultsDir: deps.resultsDir, db: deps.db, modelDir: deps.modelDir, spoolStacks, logger: deps.logger }),
  );

  app.get('/api/studies/:studyUID', async (req, res) => {
    const uid = studyUid(req, res);
    if (!uid) return;
    const state = await deps.tracker.get(uid);
    if (!state) {
      // The tracker (Redis) may have forgotten a finished study — a Redis wipe, or results restored from a
      // backup — while its results are still in the database / results folder: answer from those.
      const results = await readStudyResults(deps.resultsDir, deps.db, uid);
      if (results.length === 0) {
        res.status(404).json({ error: `study ${uid} not known` });
        return;
      }
      res.json({ studyInstanceUID: uid, instancesReceived: null, series: [], readyAt: null, stacks: [], setAside: [], jobs: [], results });
      return;
    }
    const jobs = [];
    for (const id of state.jobIds) {
      for (const q of byName.values()) {
        const job = await q.getJob(id);
        if (!job) continue;
        jobs.push({
          id,
          queue: q.name,
          state: await job.getState(),
          attempts: job.attemptsMade,
          error: job.failedReason || null,
          processedBy: (job.returnvalue as { processedBy?: unknown } | undefined)?.processedBy ?? null,
          finishedOn: job.finishedOn ?? null,
        });
      }
    }
    const assembly = (state.assembly ?? {}) as { stacks?: Array<{ stackId: string; slices: number; phases: number; problems?: string[] }>; setAside?: unknown[] };
    res.json({
      studyInstanceUID: uid,
      instancesReceived: state.instancesReceived,
      series: state.series,
      readyAt: state.readyAt ? new Date(state.readyAt).toISOString() : null,
      stacks: (assembly.stacks ?? []).map((s) => ({ stackId: s.stackId, slices: s.slices, phases: s.phases, problems: s.problems ?? [] })),
      setAside: assembly.setAside ?? [],
      jobs,
      results: await readStudyResults(deps.resultsDir, deps.db, uid),
    });
  });

  app.get('/api/studies/:studyUID/results', async (req, res) => {
    const uid = studyUid(req, res);
    if (!uid) return;
    res.json(await readStudyResults(deps.resultsDir, deps.db, uid));
  });

  app.post('/api/studies/:studyUID/reprocess', async (req, res) => {
    const uid = studyUid(req, res);
    if (!uid) return;
    if (!deps.reprocess) {
      res.status(503).json({ error: 'reprocessing needs the scp role in this process' });
      return;
    }
    await deps.reprocess(uid);
    res.status(202).json({ studyInstanceUID: uid, status: 'scheduled' });
  });

  app.use((err: Error & { status?: number; expose?: boolean }, _req: Request, res: Response, _next: NextFunction) => {
    // Client errors from body parsing (malformed JSON 400, body too large 413) keep their status.
    if (err.expose && err.status && err.status >= 400 && err.status < 500) {
      res.status(err.status).json({ error: err.message });
      return;
    }
    deps.logger.error({ err }, 'api error');
    res.status(500).json({ error: err.message });
  });
  return app;
}
