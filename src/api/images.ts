/**
 * The viewer's and labeller's API (mounted behind the bearer token, if any):
 *
 * - `GET /api/config/ui` → `{orthancUrl?}`: what the pages need to know of the deployment (no secrets).
 * - `GET /api/studies/:studyUID/stacks` → the study's stacks with their ED and ES slices apex → base, from the
 *   spool and the result documents (StudyView): a study can be opened before it is classified.
 * - `GET /api/studies/:studyUID/stacks/:stackId/:phase/:index.png[?overlay=cam]` → one slice at ED or ES
 *   (`index` as in the result JSON: the slice's index in the stack) as a PNG: the source frame windowed to
 *   its 1st–99th percentile, or with `overlay=cam` the Grad-CAM secondary capture the worker wrote for it
 *   (the same pixels that went to the PACS: overlay, class and probabilities burned in).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { PhaseKey } from '../inference/result.js';
import type { Logger } from '../log.js';
import { secondaryCapturePng, sourceSlicePng } from './slice-png.js';
import { NotFoundError, type StudyViews } from './study-view.js';

const UID_RE = /^[0-9]+(\.[0-9]+)*$/;
const STACK_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PNG_RE = /^(0|[1-9][0-9]{0,4})\.png$/;

/** Slice images may change when a study is reprocessed: browsers keep them briefly, then revalidate (ETag). */
export const IMAGE_CACHE_CONTROL = 'private, max-age=120';

export interface ImagesRouterOptions {
  views: StudyViews;
  logger: Logger;
  /** Orthanc base URL for links in the pages (credentials removed). */
  orthancUrl?: string;
}

/** A bad request parameter (400), naming the parameter. */
export class BadParameterError extends Error {
  readonly code = 'BAD_PARAMETER';
  constructor(message: string) {
    super(message);
    this.name = 'BadParameterError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** The parameters of a slice image request, checked. */
export interface SliceImageParams {
  studyUID: string;
  stackId: string;
  phase: PhaseKey;
  index: number;
  overlay?: 'cam';
}

export function parseStudyUid(v: unknown): string {
  const uid = String(v ?? '');
  if (!UID_RE.test(uid) || uid.length > 64) throw new BadParameterError('studyUID must be a DICOM UID (digits and dots, at most 64 characters)');
  return uid;
}

/** Checks the path and query parameters of a slice image request; throws BadParameterError. */
export function parseSliceImageParams(params: Record<string, unknown>, query: Record<string, unknown>): SliceImageParams {
  const studyUID = parseStudyUid(params.studyUID);
  const stackId = String(params.stackId ?? '');
  if (!STACK_ID_RE.test(stackId)) throw new BadParameterError('stackId must be 1–64 letters, digits, - or _');
  const phase = String(params.phase ?? '');
  if (phase !== 'ED' && phase !== 'ES') throw new BadParameterError("phase must be 'ED' or 'ES'");
  const m = PNG_RE.exec(String(params.file ?? ''));
  if (!m) throw new BadParameterError('the slice must be <index>.png with index a non-negative integer (the index of the result JSON)');
  const overlay = query.overlay;
  if (overlay !== undefined && overlay !== 'cam') throw new BadParameterError("overlay must be 'cam' (or absent)");
  return { studyUID, stackId, phase, index: Number(m[1]), ...(overlay === 'cam' ? { overlay: 'cam' as const } : {}) };
}

export function createImagesRouter(opts: ImagesRouterOptions): express.Router {
  const router = express.Router();

  router.get('/api/config/ui', (_req, res) => {
    res.set('Cache-Control', 'private, max-age=60');
    res.json(opts.orthancUrl ? { orthancUrl: opts.orthancUrl } : {});
  });

  router.get('/api/studies/:studyUID/stacks', async (req, res) => {
    const uid = parseStudyUid(req.params.studyUID);
    const view = await opts.views.view(uid);
    res.set('Cache-Control', 'private, no-cache');
    res.json(view);
  });

  router.get('/api/studies/:studyUID/stacks/:stackId/:phase/:file', async (req, res) => {
    const p = parseSliceImageParams(req.params, req.query as Record<string, unknown>);
    const found = await opts.views.slice(p.studyUID, p.stackId, p.phase, p.index);
    let png: Buffer;
    if (p.overlay === 'cam') {
      if (!found.result) throw new NotFoundError(`stack ${p.stackId} is not classified yet: no Grad-CAM`);
      if (!found.camPath) throw new NotFoundError(`no Grad-CAM secondary capture was written for ${p.phase} slice ${p.index} of stack ${p.stackId}`);
      png = await secondaryCapturePng(found.camPath);
    } else {
      if (!found.frame) throw new NotFoundError(`the source image of ${p.phase} slice ${p.index} is not in the spool`);
      png = await sourceSlicePng(found.frame);
    }
    res.set('Cache-Control', IMAGE_CACHE_CONTROL);
    res.type('png').send(png);
  });

  router.use((err: Error, _req: Request, res: Response, next: NextFunction) => {
    if (err instanceof BadParameterError) {
      res.set('Cache-Control', 'no-store').status(400).json({ error: err.message });
    } else if (err instanceof NotFoundError) {
      res.set('Cache-Control', 'no-store').status(404).json({ error: err.message });
    } else {
      opts.logger.warn({ err }, 'viewer api error');
      next(err);
    }
  });
  return router;
}
