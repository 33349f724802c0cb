import { randomUUID } from 'node:crypto';
import pg from 'pg';

/** The PostgreSQL the integration tests use (trust auth on loopback; database `test`). */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/test';

export interface TestSchema {
  /** The schema's name (unique per call). */
  schema: string;
  /** TEST_DATABASE_URL with `options=-c search_path=<schema>`: what a service under test gets as DATABASE_URL. */
  url: string;
  /** Drops the schema and everything in it. */
  drop(): Promise<void>;
}

/** Creates a schema of its own for one test run (tables of parallel runs never meet); drop() removes it. */
export async function createTestSchema(): Promise<TestSchema> {
  const schema = `test_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await admin.end();
  }
  const u = new URL(TEST_DATABASE_URL);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return {
    schema,
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Whether a schema exists (tests check that drop() ran). */
export async function schemaExists(schema: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await c.connect();
  try {
    return (await c.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema])).rowCount === 1;
  } finally {
    await c.end();
  }
}
