// Persistence: results and labels over SQLite (default) or PostgreSQL (DATABASE_URL).
export * from './types.js';
export { openDb, redactUrl, SQLITE_FILE, type OpenDbOptions } from './open.js';
export { MIGRATIONS, MIGRATIONS_TABLE, migrate, SchemaTooNewError, type Migration } from './migrations.js';
export { checkLabelsAgainstResults, modelLabelsOf, summarizeResult, type LabelTarget } from './summary.js';
export { LABELS_CSV_COLUMNS, labelsToCsv, parseLabelsCsv, type LabelsCsvRow } from './labels-csv.js';
// Internal to the folder (drivers, query layer): sql-driver.ts, sqlite.ts, postgres.ts, sql-db.ts.
