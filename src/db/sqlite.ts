import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { SqlDriver, SqlParam } from './sql-driver.js';

/** How long a statement waits for another connection's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * SQLite through better-sqlite3 (synchronous, one connection). Journal in WAL mode so that readers do not
 * block the writer; a busy timeout so that two processes (or connections) on one host can share the file.
 *
 * better-sqlite3 runs a statement synchronously, but a transaction here spans awaits (the query layer is
 * async for PostgreSQL's sake). Every statement therefore goes through one promise chain: while a
 * transaction runs, nothing else touches the connection, so nothing can slip into (or be rolled back with)
 * someone else's transaction.
 */
export function openSqliteDriver(file: string): SqlDriver {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('foreign_keys = ON');

  /**
   * Every transaction takes the write lock up front (BEGIN IMMEDIATE), so that nothing inside it can meet
   * SQLITE_BUSY. While another connection holds it, retry with a timer instead of SQLite's busy handler:
   * the busy handler sleeps on the event loop's thread, and when the holder is in this process (its
   * transaction waiting on a promise) it can never finish.
   */
  const beginImmediate = async (): Promise<void> => {
    const deadline = Date.now() + BUSY_TIMEOUT_MS;
    for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
      db.pragma('busy_timeout = 0');
      try {
        db.exec('BEGIN IMMEDIATE');
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw err;
      } finally {
        db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  };

  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T> | T): Promise<T> => {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  };

  const direct = (): SqlDriver => ({
    name: 'sqlite',
    all: async <T extends object>(sql: string, params: readonly SqlParam[] = []) => db.prepare(sql).all(...params) as T[],
    run: async (sql: string, params: readonly SqlParam[] = []) => db.prepare(sql).run(...params).changes,
    transaction: (fn) => fn(inTx),
    migrationTransaction: (fn) => fn(inTx),
    close: async () => undefined,
  });
  const inTx = direct();

  const inTransaction = <T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T> =>
    serial(async () => {
      await beginImmediate();
      try {
        const out = await fn(inTx);
        db.exec('COMMIT');
        return out;
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw err;
      }
    });

  let closed: Promise<void> | undefined;
  return {
    name: 'sqlite',
    all: (sql, params) => serial(() => inTx.all(sql, params)),
    run: (sql, params) => serial(() => inTx.run(sql, params)),
    transaction: (fn) => inTransaction(fn),
    migrationTransaction: (fn) => inTransaction(fn),
    close: () =>
      (closed ??= serial(() => {
        db.close();
      })),
  };
}
