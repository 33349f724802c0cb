import type { DbDriverName } from './types.js';

/** A value bound to a `?` placeholder. */
export type SqlParam = string | number | null;

/**
 * The little each database driver must provide to the query layer. SQL is written once with `?`
 * placeholders in the common subset of SQLite and PostgreSQL (ON CONFLICT … DO UPDATE, `excluded`);
 * the PostgreSQL driver numbers the placeholders.
 */
export interface SqlDriver {
  readonly name: DbDriverName;
  /** Rows of a query. */
  all<T extends object>(sql: string, params?: readonly SqlParam[]): Promise<T[]>;
  /** Runs a statement; returns the number of rows changed. */
  run(sql: string, params?: readonly SqlParam[]): Promise<number>;
  /** Runs `fn` in one transaction (committed when it resolves, rolled back when it throws). */
  transaction<T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a transaction that holds the migration lock, so that processes starting together apply
   * each migration once (PostgreSQL: a transaction-scoped advisory lock; SQLite: BEGIN IMMEDIATE).
   */
  migrationTransaction<T>(fn: (tx: SqlDriver) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** `?` → `$1, $2, …` (our SQL has no `?` inside literals). */
export function numberPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}
