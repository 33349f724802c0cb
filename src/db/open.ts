import { join, resolve } from 'node:path';
import type { Logger } from '../log.js';
import { migrate } from './migrations.js';
import { openPostgresDriver } from './postgres.js';
import { SqlDb } from './sql-db.js';
import type { SqlDriver } from './sql-driver.js';
import { openSqliteDriver } from './sqlite.js';
import type { Db } from './types.js';

/** File name of the embedded database inside the data folder. */
export const SQLITE_FILE = 'sax-range.sqlite';

export interface OpenDbOptions {
  /** Data folder; the SQLite file is `<dataDir>/sax-range.sqlite`. */
  dataDir: string;
  /** PostgreSQL connection string (`DATABASE_URL`); unset: embedded SQLite. */
  databaseUrl?: string;
  /** PostgreSQL schema for the tables (tests use one per run). @defaultValue the server's search_path */
  schema?: string;
  logger?: Logger;
}

/**
 * Opens the database the config asks for (PostgreSQL when `databaseUrl` is set, else SQLite in the data
 * folder) and applies pending migrations before returning.
 */
export async function openDb(opts: OpenDbOptions): Promise<Db> {
  let driver: SqlDriver;
  let where: string;
  if (opts.databaseUrl) {
    driver = await openPostgresDriver({ connectionString: opts.databaseUrl, schema: opts.schema });
    where = redactUrl(opts.databaseUrl) + (opts.schema ? ` (schema ${opts.schema})` : '');
  } else {
    where = join(resolve(opts.dataDir), SQLITE_FILE);
    driver = openSqliteDriver(where);
  }
  try {
    const applied = await migrate(driver);
    opts.logger?.info({ driver: driver.name, database: where, migrationsApplied: applied }, 'database open');
  } catch (err) {
    await driver.close().catch(() => undefined);
    throw err;
  }
  return new SqlDb(driver);
}

/** A connection string without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}
