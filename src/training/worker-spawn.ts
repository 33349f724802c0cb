import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker thread running the module at `moduleUrl` (pass `import.meta.url`). From built JS that is
 * the file itself; from TypeScript sources (tsx, vitest) a small ESM bootstrap registers tsx's loader inside
 * the worker first (Node 20 does not apply `--import tsx` to a worker's entry module).
 */
export function spawnModuleWorker(moduleUrl: string, options: WorkerOptions): Worker {
  if (!moduleUrl.endsWith('.ts')) return new Worker(new URL(moduleUrl), options);
  let api: string;
  try {
    const cjs = createRequire(moduleUrl).resolve('tsx/esm/api');
    const mjs = cjs.replace(/\.cjs$/, '.mjs');
    api = pathToFileURL(existsSync(mjs) ? mjs : cjs).href;
  } catch {
    throw new Error('training worker threads from TypeScript sources need tsx (a devDependency): build first (npm run build), or train on one thread');
  }
  const code =
    `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })` +
    `.catch((e) => { console.error(e); process.exit(1); });`;
  return new Worker(code, { ...options, eval: true });
}
