import pg from 'pg';
import { numberPlaceholders, type SqlDriver, type SqlParam } from './sql-driver.js';

/** Advisory lock key held while migrating (any constant; "saxr" in ASCII). */
const MIGRATION_LOCK_KEY = 0x73617872;

export interface PostgresDriverOptions {
  /** `postgres://user@host:port/db`. */
  connectionString: string;
  /** Schema for every table (search_path); created when missing. @defaultValue the server's default (public) */
  schema?: string;
  /** @defaultValue 5 */
  maxConnections?: number;
}

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

type Queryable = Pick<pg.PoolClient, 'query'>;

function over(q: Queryable): Omit<SqlDriver, 'transaction' | 'migrationTransaction' | 'close'> {
  return {
    name: 'postgres',
    all: async <T extends object>(sql: string, params: readonly SqlParam[] = []) => (await q.query(numberPlaceholders(sql), [...params])).rows as T[],
    run: async (sql: string, params: readonly SqlParam[] = []) => (await q.query(numberPlaceholders(sql), [...params])).rowCount ?? 0,
  };
}

/** PostgreSQL through a `pg` pool. Transactions run on one pooled client. */
export async function openPostgresDriver(opts: PostgresDriverOptions): Promise<SqlDriver> {
  if (opts.schema !== undefined && !SCHEMA_RE.test(opts.schema)) {
    throw new Error(`schema must be a lower-case SQL identifier, got ${JSON.stringify(opts.schema)}`);
  }
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: opts.maxConnections ?? 5,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that kills the
  // process. The next query gets a fresh client.
  pool.on('error', () => undefined);
  try {
    if (opts.schema) await pool.query(`CREATE SCHEMA IF NOT EXISTS ${opts.schema}`);
    else await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }

  const inTransaction = async <T>(fn: (tx: SqlDriver) => Promise<T>, lock: boolean): Promise<T> => {
    const client = await pool.connect();
    const tx: SqlDriver = {
      ...over(client),
      transaction: (inner) => inner(tx),
      migrationTransaction: (inner) => inner(tx),
      close: async () => undefined,
    };
    try {
      await client.query('BEGIN');
      if (lock) await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      const out = await fn(tx);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  };

  let closed: Promise<void> | undefined;
  return {
    ...over(pool),
    transaction: (fn) => inTransaction(fn, false),
    migrationTransaction: (fn) => inTransaction(fn, true),
    close: () => (closed ??= pool.end()),
  };
}
