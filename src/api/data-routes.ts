/**
 * The data API on top of the database (DESIGN "HTTP API"): the study list, the model card, the labeller's
 * labels and their CSV export, and `/metrics`. Mounted behind the bearer token.
 */
import express, { type Response } from 'express';
import type { z } from 'zod';
import { checkLabelsAgainstResults, labelsToCsv, type Db, type LabelRecord, type LabelTarget, type StackSummary } from '../db/index.js';
import { ModelDirError, readModelCard } from '../inference/model-dir.js';
import type { Logger } from '../log.js';
import type { CountableQueue } from '../metrics.js';
import { metricsHandler } from './ops.js';
import type { SeriesTracker } from '../tracker/tracker.js';
import { formatZodError, LabelsCsvQuerySchema, ListStudiesQuerySchema, PutLabelsBodySchema, StudyParamsSchema } from './schemas.js';
import { readStudyResults } from './study-results.js';

export interface DataRoutesDeps {
  tracker: SeriesTracker;
  /** Queues whose job counts `/metrics` reports. */
  queues: readonly CountableQueue[];
  resultsDir: string;
  /** Results and labels; absent: the study list comes from the tracker only and the labels routes answer 503. */
  db?: Db;
  /** Folder of the served model (`GET /api/model` returns its card). */
  modelDir?: string;
  /** The study's stacks as found in the spool (classified or not), so that a study can be labelled before the model ran. */
  spoolStacks?: (studyUID: string) => Promise<LabelTarget[]>;
  logger: Logger;
}

/** One entry of `GET /api/studies`. */
export interface StudyListItem {
  studyInstanceUID: string;
  /** Latest result saved for the study (ISO 8601), null while none. */
  processedAt: string | null;
  /** Last instance received by the SCP (ISO 8601), null when the tracker no longer knows the study. */
  lastReceivedAt: string | null;
  instancesReceived: number | null;
  stacks: StackSummary[];
  humanLabels: number;
}

/** Parses `value` with `schema`, or answers 400 `{error}` and returns undefined. */
function parseOr400<S extends z.ZodType>(schema: S, value: unknown, where: string, res: Response): z.infer<S> | undefined {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  res.status(400).json({ error: formatZodError(r.error, where) });
  return undefined;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The label as the API returns it: the study is in the URL. */
function labelOut(l: LabelRecord) {
  return { stackId: l.stackId, phase: l.phase, index: l.index, sopInstanceUID: l.sopInstanceUID, label: l.label, source: l.source, updatedAt: l.updatedAt };
}

export function createDataRouter(deps: DataRoutesDeps): express.Router {
  const router = express.Router();
  const needDb = (res: Response): Db | undefined => {
    if (!deps.db) res.status(503).json({ error: 'no database in this process' });
    return deps.db;
  };

  /**
   * Studies newest first: those with results in the database merged with those the tracker knows (received,
   * waiting or failed). Newest = the later of the last result and the last instance received.
   */
  router.get('/api/studies', async (req, res) => {
    const q = parseOr400(ListStudiesQuerySchema, req.query, 'query', res);
    if (!q) return;
    const [uids, times] = await Promise.all([deps.tracker.studies(), deps.db?.listStudyTimes() ?? []]);
    const states = new Map<string, { lastSeen?: number; instancesReceived: number }>();
    // 100 tracker reads in flight at a time (ioredis pipelines them).
    for (let i = 0; i < uids.length; i += 100) {
      const chunk = uids.slice(i, i + 100);
      const got = await Promise.all(chunk.map((uid) => deps.tracker.get(uid)));
      got.forEach((st, j) => {
        if (st) states.set(chunk[j]!, { lastSeen: st.lastSeen, instancesReceived: st.instancesReceived });
      });
    }
    const processed = new Map(times.map((t) => [t.studyInstanceUID, t.processedAt]));
    const all = [...new Set([...processed.keys(), ...states.keys()])];
    const sortKey = (uid: string) => Math.max(Date.parse(processed.get(uid) ?? '') || 0, states.get(uid)?.lastSeen ?? 0);
    all.sort((a, b) => sortKey(b) - sortKey(a) || (a < b ? -1 : a > b ? 1 : 0));
    const page = all.slice(q.offset, q.offset + q.limit);
    const withResults = page.filter((u) => processed.has(u));
    const summaries = new Map(
      (deps.db && withResults.length ? await deps.db.listStudies({ studyInstanceUIDs: withResults, limit: withResults.length }) : []).map((s) => [s.studyInstanceUID, s]),
    );
    const studies: StudyListItem[] = page.map((uid) => {
      const s = summaries.get(uid);
      const t = states.get(uid);
      return {
        studyInstanceUID: uid,
        processedAt: s?.processedAt ?? null,
        lastReceivedAt: iso(t?.lastSeen),
        instancesReceived: t?.instancesReceived ?? null,
        stacks: s ? [...s.stacks] : [],
        humanLabels: s?.humanLabels ?? 0,
      };
    });
    res.json({ studies, total: all.length, limit: q.limit, offset: q.offset });
  });

  router.get('/api/model', async (_req, res) => {
    if (!deps.modelDir) {
      res.status(404).json({ error: 'no model configured' });
      return;
    }
    try {
      res.json(await readModelCard(deps.modelDir));
    } catch (err) {
      if (!(err instanceof ModelDirError)) throw err;
      deps.logger.warn({ err: err.message }, 'model card unreadable');
      res.status(503).json({ error: err.message });
    }
  });

  router.get('/api/studies/:studyUID/labels', async (req, res) => {
    const p = parseOr400(StudyParamsSchema, req.params, 'params', res);
    if (!p) return;
    const db = needDb(res);
    if (!db) return;
    res.json({ studyInstanceUID: p.studyUID, labels: (await db.getLabels(p.studyUID)).map(labelOut) });
  });

  /**
   * Upserts labels. Each must name a slice of a classified stack of the study, with that slice's SOP
   * Instance UID (400 otherwise): the CSV export keys training labels by SOP Instance UID.
   */
  router.put('/api/studies/:studyUID/labels', async (req, res) => {
    const p = parseOr400(StudyParamsSchema, req.params, 'params', res);
    if (!p) return;
    const body = parseOr400(PutLabelsBodySchema, req.body ?? {}, 'body', res);
    if (!body) return;
    const db = needDb(res);
    if (!db) return;
    const docs: LabelTarget[] = await readStudyResults(deps.resultsDir, db, p.studyUID);
    const classified = new Set(docs.map((d) => d.stackId));
    if (deps.spoolStacks && body.labels.some((l) => !classified.has(l.stackId))) {
      docs.push(...(await deps.spoolStacks(p.studyUID)).filter((s) => !classified.has(s.stackId)));
    }
    const problems = checkLabelsAgainstResults(body.labels, docs);
    if (problems.length) {
      res.status(400).json({ error: problems.join('; ') });
      return;
    }
    const saved = await db.saveLabels(p.studyUID, body.labels);
    deps.logger.info({ studyInstanceUID: p.studyUID, saved: saved.length }, 'labels saved');
    res.json({ saved: saved.length, labels: saved.map(labelOut) });
  });

  /** Human-confirmed labels as CSV (SOPInstanceUID,label first: what a `dicom:` dataset reads). */
  router.get('/api/labels.csv', async (req, res) => {
    const q = parseOr400(LabelsCsvQuerySchema, req.query, 'query', res);
    if (!q) return;
    const db = needDb(res);
    if (!db) return;
    const rows = await db.exportLabels({ source: 'human', ...(q.study ? { studyInstanceUID: q.study } : {}) });
    res.type('text/csv; charset=utf-8').set('Content-Disposition', 'attachment; filename="labels.csv"').send(labelsToCsv(rows));
  });

  router.get('/metrics', metricsHandler(deps.queues));

  return router;
}
