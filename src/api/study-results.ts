import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db } from '../db/index.js';
import type { Result } from '../inference/result.js';

/** The result JSON files of a study (`<resultsDir>/<Study>/<stackId>.json`), by file name. */
export async function readResultFiles(resultsDir: string, uid: string): Promise<Result[]> {
  const dir = join(resultsDir, uid);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return [];
  }
  const out: Result[] = [];
  for (const n of names) out.push(JSON.parse(await readFile(join(dir, n), 'utf8')) as Result);
  return out;
}

/**
 * A study's result documents: the files of this node's results folder, plus any stack the database holds
 * that has no file here (an API node that shares PostgreSQL with workers on other hosts). Sorted by stackId.
 */
export async function readStudyResults(resultsDir: string, db: Db | undefined, uid: string): Promise<Result[]> {
  const files = await readResultFiles(resultsDir, uid);
  if (!db) return files;
  const have = new Set(files.map((d) => d.stackId));
  const fromDb = (await db.getResults(uid)).filter((r) => !have.has(r.stackId)).map((r) => r.document);
  if (fromDb.length === 0) return files;
  return [...files, ...fromDb].sort((a, b) => (a.stackId < b.stackId ? -1 : a.stackId > b.stackId ? 1 : 0));
}
