import type { SqlDriver } from './sql-driver.js';
import type { DbDriverName } from './types.js';

/**
 * One schema change. Numbered from 1 without gaps; never edit a released migration, add the next one.
 * Each dialect gets its own statements (one statement per string: better-sqlite3 prepares one at a time).
 * PostgreSQL key columns use the "C" collation so that ORDER BY sorts them bytewise, as SQLite does.
 */
export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: Readonly<Record<DbDriverName, readonly string[]>>;
}

/** Table that records applied migrations. */
export const MIGRATIONS_TABLE = 'schema_migrations';

export const MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    name: 'results and labels',
    sql: {
      sqlite: [
        `CREATE TABLE results (
          study_instance_uid TEXT NOT NULL,
          stack_id TEXT NOT NULL,
          document TEXT NOT NULL,
          processed_at TEXT NOT NULL,
          model_id TEXT NOT NULL,
          model_version TEXT NOT NULL,
          model_sha256 TEXT NOT NULL,
          PRIMARY KEY (study_instance_uid, stack_id)
        )`,
        'CREATE INDEX results_processed_at ON results (processed_at)',
        `CREATE TABLE labels (
          study_instance_uid TEXT NOT NULL,
          stack_id TEXT NOT NULL,
          phase TEXT NOT NULL CHECK (phase IN ('ED', 'ES')),
          slice_index INTEGER NOT NULL CHECK (slice_index >= 0),
          sop_instance_uid TEXT NOT NULL,
          label TEXT NOT NULL CHECK (label IN ('OAP', 'IN', 'OBS')),
          source TEXT NOT NULL CHECK (source IN ('model', 'human')),
          updated_at TEXT NOT NULL,
          PRIMARY KEY (study_instance_uid, stack_id, phase, slice_index)
        )`,
        'CREATE INDEX labels_source_study ON labels (source, study_instance_uid)',
      ],
      postgres: [
        `CREATE TABLE results (
          study_instance_uid TEXT COLLATE "C" NOT NULL,
          stack_id TEXT COLLATE "C" NOT NULL,
          document JSONB NOT NULL,
          processed_at TIMESTAMPTZ NOT NULL,
          model_id TEXT NOT NULL,
          model_version TEXT NOT NULL,
          model_sha256 TEXT NOT NULL,
          PRIMARY KEY (study_instance_uid, stack_id)
        )`,
        'CREATE INDEX results_processed_at ON results (processed_at)',
        `CREATE TABLE labels (
          study_instance_uid TEXT COLLATE "C" NOT NULL,
          stack_id TEXT COLLATE "C" NOT NULL,
          phase TEXT COLLATE "C" NOT NULL CHECK (phase IN ('ED', 'ES')),
          slice_index INTEGER NOT NULL CHECK (slice_index >= 0),
          sop_instance_uid TEXT NOT NULL,
          label TEXT NOT NULL CHECK (label IN ('OAP', 'IN', 'OBS')),
          source TEXT NOT NULL CHECK (source IN ('model', 'human')),
          updated_at TIMESTAMPTZ NOT NULL,
          PRIMARY KEY (study_instance_uid, stack_id, phase, slice_index)
        )`,
        'CREATE INDEX labels_source_study ON labels (source, study_instance_uid)',
      ],
    },
  },
];

/** The database was migrated by a newer build than this one. */
export class SchemaTooNewError extends Error {
  readonly code = 'DB_SCHEMA_TOO_NEW';
  constructor(readonly applied: number, readonly known: number) {
    super(`database schema is at migration ${applied}, this build knows up to ${known}: upgrade sax-range`);
    this.name = 'SchemaTooNewError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Checks that ids run 1, 2, … without gaps or duplicates (a programming error otherwise). */
export function checkMigrationList(list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (m.id !== i + 1) throw new Error(`migration ${i + 1} has id ${m.id}: ids must be 1, 2, … in order`);
  });
}

/**
 * Applies every migration not yet recorded in `schema_migrations`, in order, in one transaction that holds
 * the migration lock: idempotent, and safe when several processes start at once. Returns the ids applied.
 */
export async function migrate(driver: SqlDriver, list: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  checkMigrationList(list);
  return driver.migrationTransaction(async (tx) => {
    await tx.run(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
    const rows = await tx.all<{ id: number }>(`SELECT id FROM ${MIGRATIONS_TABLE} ORDER BY id`);
    const done = new Set(rows.map((r) => Number(r.id)));
    const highest = Math.max(0, ...done);
    if (highest > list.length) throw new SchemaTooNewError(highest, list.length);
    const applied: number[] = [];
    for (const m of list) {
      if (done.has(m.id)) continue;
      for (const stmt of m.sql[driver.name]) await tx.run(stmt);
      await tx.run(`INSERT INTO ${MIGRATIONS_TABLE} (id, name, applied_at) VALUES (?, ?, ?)`, [m.id, m.name, new Date().toISOString()]);
      applied.push(m.id);
    }
    return applied;
  });
}
