import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, openDb, SchemaTooNewError, SQLITE_FILE, type Db, type LabelInput } from '../../src/db/index.js';
import { createTestSchema, schemaExists, TEST_DATABASE_URL, type TestSchema } from '../helpers/postgres.js';
import { makeResultDoc, sopOf } from '../helpers/result-doc.js';

/**
 * The query layer against both real databases: the same suite runs on SQLite (a file in a fresh data
 * folder per test) and on PostgreSQL (a fresh schema per test, dropped after).
 */

const STUDY_A = '1.2.826.0.1.3680043.8.498.101';
const STUDY_B = '1.2.826.0.1.3680043.8.498.102';
const STUDY_C = '1.2.826.0.1.3680043.8.498.103';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-db-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Where one test's database lives, how to open it, and raw SQL on it (to look behind the layer). */
interface Target {
  open(): Promise<Db>;
  raw<T>(sql: string): Promise<T[]>;
  dispose(): Promise<void>;
}

async function sqliteTarget(): Promise<Target> {
  const dataDir = await mkdtemp(join(root, 'data-'));
  return {
    open: () => openDb({ dataDir }),
    raw: async <T,>(sql: string) => {
      const db = new Database(join(dataDir, SQLITE_FILE));
      try {
        const stmt = db.prepare(sql);
        if (stmt.reader) return stmt.all() as T[];
        stmt.run();
        return [];
      } finally {
        db.close();
      }
    },
    dispose: async () => undefined,
  };
}

async function postgresTarget(): Promise<Target> {
  const schema: TestSchema = await createTestSchema();
  return {
    open: () => openDb({ dataDir: root, databaseUrl: TEST_DATABASE_URL, schema: schema.schema }),
    raw: async <T,>(sql: string) => {
      const c = new pg.Client({ connectionString: schema.url });
      await c.connect();
      try {
        return (await c.query(sql)).rows as T[];
      } finally {
        await c.end();
      }
    },
    dispose: async () => {
      await schema.drop();
      expect(await schemaExists(schema.schema)).toBe(false);
    },
  };
}

const label = (stackId: string, phase: 'ED' | 'ES', index: number, value: LabelInput['label'], study = STUDY_A): LabelInput => ({
  stackId,
  phase,
  index,
  sopInstanceUID: sopOf(study, phase === 'ED' ? 0 : 7, index),
  label: value,
});

describe.each([
  ['sqlite', sqliteTarget],
  ['postgres', postgresTarget],
] as const)('Db on %s', (driver, makeTarget) => {
  let target: Target;
  let db: Db;

  beforeEach(async () => {
    target = await makeTarget();
    db = await target.open();
  });
  afterEach(async () => {
    await db.close();
    await target.dispose();
  });

  it('opens the configured driver and records each migration once, however often and however concurrently it is opened', async () => {
    expect(db.driver).toBe(driver);
    const again = await Promise.all([target.open(), target.open(), target.open()]);
    await Promise.all(again.map((d) => d.close()));
    const rows = await target.raw<{ id: number; name: string }>('SELECT id, name FROM schema_migrations ORDER BY id');
    expect(rows.map((r) => [Number(r.id), r.name])).toEqual(MIGRATIONS.map((m) => [m.id, m.name]));
  });

  it('refuses to start on a database migrated by a newer build', async () => {
    await target.raw(`INSERT INTO schema_migrations (id, name, applied_at) VALUES (${MIGRATIONS.length + 1}, 'future', 'x')`);
    await expect(target.open()).rejects.toBeInstanceOf(SchemaTooNewError);
  });

  it('saves a result document and reads it back; a re-run of the stack replaces it', async () => {
    const doc = makeResultDoc(STUDY_A, 'stack1');
    const saved = await db.saveResult(doc, { processedAt: new Date('2024-05-01T10:00:00Z') });
    expect(saved.processedAt).toBe('2024-05-01T10:00:00.000Z');
    expect(await db.getResults(STUDY_A)).toEqual([{ studyInstanceUID: STUDY_A, stackId: 'stack1', processedAt: '2024-05-01T10:00:00.000Z', model: doc.model, document: doc }]);

    const rerun = makeResultDoc(STUDY_A, 'stack1', { sha256: 'b'.repeat(64) });
    await db.saveResult(rerun, { processedAt: new Date('2024-05-02T10:00:00Z') });
    const [only, ...more] = await db.getResults(STUDY_A);
    expect(more).toEqual([]);
    expect(only!.model.sha256).toBe('b'.repeat(64));
    expect(only!.processedAt).toBe('2024-05-02T10:00:00.000Z');
    expect(await db.getResults(STUDY_B)).toEqual([]);
  });

  it('refuses a document that is not a valid result@1', async () => {
    const bad = { ...makeResultDoc(STUDY_A, 'stack1'), schema: 'something-else' };
    await expect(db.saveResult(bad as never)).rejects.toThrow(/schema/);
    expect(await db.getResults(STUDY_A)).toEqual([]);
  });

  it("pre-labels every ED and ES slice with the model's label; a human label survives a re-run of the model", async () => {
    await db.saveResult(makeResultDoc(STUDY_A, 'stack1', { slices: 5 }), { processedAt: new Date('2024-05-01T10:00:00Z') });
    const pre = await db.getLabels(STUDY_A);
    expect(pre).toHaveLength(10);
    expect(pre.every((l) => l.source === 'model' && l.updatedAt === '2024-05-01T10:00:00.000Z')).toBe(true);
    expect(pre.filter((l) => l.phase === 'ED').map((l) => [l.index, l.label])).toEqual([
      [0, 'OAP'],
      [1, 'IN'],
      [2, 'IN'],
      [3, 'IN'],
      [4, 'OBS'],
    ]);

    await db.saveLabels(STUDY_A, [label('stack1', 'ED', 0, 'IN')], { now: new Date('2024-05-01T11:00:00Z') });
    await db.saveResult(makeResultDoc(STUDY_A, 'stack1', { slices: 5 }), { processedAt: new Date('2024-05-01T12:00:00Z') });
    const after = await db.getLabels(STUDY_A);
    expect(after).toHaveLength(10);
    expect(after.find((l) => l.phase === 'ED' && l.index === 0)).toMatchObject({ label: 'IN', source: 'human', updatedAt: '2024-05-01T11:00:00.000Z' });
    expect(after.find((l) => l.phase === 'ED' && l.index === 1)).toMatchObject({ label: 'IN', source: 'model', updatedAt: '2024-05-01T12:00:00.000Z' });
  });

  it('upserts labels: one row per (stack, phase, index), the later write wins, source defaults to human', async () => {
    const first = await db.saveLabels(STUDY_A, [label('s1', 'ES', 2, 'OBS'), label('s1', 'ED', 2, 'IN')], { now: new Date('2024-06-01T00:00:00Z') });
    expect(first).toEqual([
      { studyInstanceUID: STUDY_A, stackId: 's1', phase: 'ES', index: 2, sopInstanceUID: sopOf(STUDY_A, 7, 2), label: 'OBS', source: 'human', updatedAt: '2024-06-01T00:00:00.000Z' },
      { studyInstanceUID: STUDY_A, stackId: 's1', phase: 'ED', index: 2, sopInstanceUID: sopOf(STUDY_A, 0, 2), label: 'IN', source: 'human', updatedAt: '2024-06-01T00:00:00.000Z' },
    ]);
    await db.saveLabels(STUDY_A, [{ ...label('s1', 'ES', 2, 'IN'), source: 'model' }], { now: new Date('2024-06-02T00:00:00Z') });
    expect((await db.getLabels(STUDY_A)).map((l) => [l.phase, l.index, l.label, l.source, l.updatedAt])).toEqual([
      ['ED', 2, 'IN', 'human', '2024-06-01T00:00:00.000Z'],
      ['ES', 2, 'IN', 'model', '2024-06-02T00:00:00.000Z'],
    ]);
    // The same key twice in one call: the last one is kept (one row, no error).
    const twice = await db.saveLabels(STUDY_A, [label('s1', 'ED', 4, 'IN'), label('s1', 'ED', 4, 'OBS')]);
    expect(twice.map((l) => l.label)).toEqual(['OBS']);
    expect((await db.getLabels(STUDY_A)).filter((l) => l.index === 4).map((l) => l.label)).toEqual(['OBS']);
  });

  it('a batch with one bad row saves nothing (one transaction)', async () => {
    await expect(db.saveLabels(STUDY_A, [label('s1', 'ED', 0, 'IN'), { ...label('s1', 'ED', 1, 'IN'), label: 'MID' as never }])).rejects.toThrow();
    expect(await db.getLabels(STUDY_A)).toEqual([]);
  });

  it('lists studies latest first with their stacks and human label counts, paged', async () => {
    await db.saveResult(makeResultDoc(STUDY_A, 'a1'), { processedAt: new Date('2024-01-01T00:00:00Z') });
    await db.saveResult(makeResultDoc(STUDY_B, 'b1'), { processedAt: new Date('2024-01-03T00:00:00Z') });
    await db.saveResult(makeResultDoc(STUDY_C, 'c1'), { processedAt: new Date('2024-01-02T00:00:00Z') });
    await db.saveResult(makeResultDoc(STUDY_A, 'a2', { slices: 8 }), { processedAt: new Date('2024-01-04T00:00:00Z') });
    await db.saveLabels(STUDY_A, [label('a1', 'ED', 1, 'IN'), label('a1', 'ES', 1, 'IN')]);

    const all = await db.listStudies();
    expect(all.map((s) => [s.studyInstanceUID, s.processedAt])).toEqual([
      [STUDY_A, '2024-01-04T00:00:00.000Z'],
      [STUDY_B, '2024-01-03T00:00:00.000Z'],
      [STUDY_C, '2024-01-02T00:00:00.000Z'],
    ]);
    expect(all[0]!.humanLabels).toBe(2);
    expect(all[1]!.humanLabels).toBe(0);
    expect(all[0]!.stacks.map((s) => [s.stackId, s.slices, s.ED.inRange.count])).toEqual([
      ['a1', 6, 4],
      ['a2', 8, 6],
    ]);
    expect((await db.listStudies({ limit: 1, offset: 1 })).map((s) => s.studyInstanceUID)).toEqual([STUDY_B]);
    expect((await db.listStudies({ studyInstanceUIDs: [STUDY_C, STUDY_A] })).map((s) => s.studyInstanceUID)).toEqual([STUDY_A, STUDY_C]);
    expect(await db.listStudies({ studyInstanceUIDs: [] })).toEqual([]);
    expect(await db.listStudyTimes()).toEqual([
      { studyInstanceUID: STUDY_A, processedAt: '2024-01-04T00:00:00.000Z' },
      { studyInstanceUID: STUDY_B, processedAt: '2024-01-03T00:00:00.000Z' },
      { studyInstanceUID: STUDY_C, processedAt: '2024-01-02T00:00:00.000Z' },
    ]);
    expect(await db.countStudies()).toBe(3);
  });

  it('exports labels by source and study, ordered by study, stack, phase, index', async () => {
    await db.saveResult(makeResultDoc(STUDY_B, 'b1', { slices: 3 }));
    await db.saveLabels(STUDY_B, [label('b1', 'ES', 0, 'OAP', STUDY_B), label('b1', 'ED', 2, 'OBS', STUDY_B)]);
    await db.saveLabels(STUDY_A, [label('z', 'ED', 10, 'IN'), label('a', 'ED', 3, 'IN')]);
    const human = await db.exportLabels({ source: 'human' });
    expect(human.map((l) => [l.studyInstanceUID, l.stackId, l.phase, l.index])).toEqual([
      [STUDY_A, 'a', 'ED', 3],
      [STUDY_A, 'z', 'ED', 10],
      [STUDY_B, 'b1', 'ED', 2],
      [STUDY_B, 'b1', 'ES', 0],
    ]);
    expect((await db.exportLabels({ source: 'human', studyInstanceUID: STUDY_B })).map((l) => l.label)).toEqual(['OBS', 'OAP']);
    expect(await db.exportLabels({ source: 'model', studyInstanceUID: STUDY_B })).toHaveLength(4); // 6 slices, 2 taken by humans
    expect(await db.exportLabels()).toHaveLength(8);
  });

  it('concurrent writes all land', async () => {
    await Promise.all([
      ...Array.from({ length: 12 }, (_, i) => db.saveLabels(STUDY_A, [label(`s${i}`, 'ED', i, 'IN'), label(`s${i}`, 'ES', i, 'OBS')])),
      ...Array.from({ length: 4 }, (_, i) => db.saveResult(makeResultDoc(STUDY_C, `c${i}`))),
    ]);
    expect(await db.getLabels(STUDY_A)).toHaveLength(24);
    expect(await db.getResults(STUDY_C)).toHaveLength(4);
  });

  it('close() can be called twice', async () => {
    await db.close();
    await db.close();
    db = await target.open();
  });

  if (driver === 'sqlite') {
    it('keeps the database in <dataDir>/sax-range.sqlite in WAL mode', async () => {
      const [mode] = await target.raw<{ journal_mode: string }>('PRAGMA journal_mode');
      expect(mode!.journal_mode).toBe('wal');
    });
  } else {
    it("creates its tables in the run's own schema only", async () => {
      const tables = await target.raw<{ table_schema: string; table_name: string }>(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN ('results', 'labels', 'schema_migrations') AND table_schema = current_schema() ORDER BY table_name",
      );
      expect(tables.map((t) => t.table_name)).toEqual(['labels', 'results', 'schema_migrations']);
      expect(tables[0]!.table_schema).toMatch(/^test_/);
    });
  }
});
