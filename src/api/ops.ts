/**
 * The operations endpoints every process serves: `/healthz`, `/readyz` and `/metrics`. A process with the
 * `api` role mounts them in the full API (src/api/app.ts); a process without it (an `scp` or `worker` on its
 * own) serves only these, on the same `SAX_RANGE_HTTP_HOST`/`SAX_RANGE_HTTP_PORT`, so that each process can
 * be probed and scraped: the counters count what that process did.
 */
import { access, constants } from 'node:fs/promises';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Redis } from 'ioredis';
import { collectQueueCounts, metricsRegistry, type CountableQueue } from '../metrics.js';

export interface HealthDeps {
  redis: Redis;
  spoolDir: string;
  /** Extra readiness checks (e.g. model loaded): name → ok. */
  readiness?: () => Promise<Record<string, boolean>>;
}

/** `/healthz` (alive) and `/readyz` (Redis answers, the spool is writable, plus `readiness`): open, no token. */
export function mountHealth(app: express.Express, deps: HealthDeps): void {
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    const checks: Record<string, boolean> = {};
    try {
      checks.redis = (await deps.redis.ping()) === 'PONG';
    } catch {
      checks.redis = false;
    }
    try {
      await access(deps.spoolDir, constants.W_OK);
      checks.spool = true;
    } catch {
      checks.spool = false;
    }
    Object.assign(checks, (await deps.readiness?.()) ?? {});
    const ok = Object.values(checks).every(Boolean);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not ready', checks });
  });
}

/** Answers 401 unless the request carries `Authorization: Bearer <token>`. */
export function bearerToken(token: string): (req: Request, res: Response, next: NextFunction) => void {
  const expected = `Bearer ${token}`;
  return (req, res, next) => {
    if (req.headers.authorization === expected) return next();
    res.status(401).json({ error: 'missing or invalid bearer token' });
  };
}

/** `GET /metrics`: this process's registry, with the queues' job counts read at the scrape. */
export function metricsHandler(queues: readonly CountableQueue[]): (req: Request, res: Response) => Promise<void> {
  return async (_req, res) => {
    await collectQueueCounts(queues);
    res.type(metricsRegistry.contentType).send(await metricsRegistry.metrics());
  };
}

/** The app of a process without the `api` role: health, readiness and (behind the token, when set) metrics. */
export function createOpsApp(deps: HealthDeps & { apiToken?: string; queues: readonly CountableQueue[] }): express.Express {
  const app = express();
  app.disable('x-powered-by');
  mountHealth(app, deps);
  if (deps.apiToken) app.use(bearerToken(deps.apiToken));
  app.get('/metrics', metricsHandler(deps.queues));
  app.use((_req, res) => {
    res.status(404).json({ error: 'this process serves /healthz, /readyz and /metrics only (no api role)' });
  });
  return app;
}
