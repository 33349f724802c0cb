import { parseResult, type PhaseKey, type Result } from '../inference/result.js';
import type { SliceLabel } from '../inference/decode.js';
import type { SqlDriver, SqlParam } from './sql-driver.js';
import { labelKey, modelLabelsOf, summarizeResult } from './summary.js';
import type { Db, LabelFilter, LabelInput, LabelRecord, LabelSource, ListStudiesOptions, StoredResult, StudySummary } from './types.js';

interface ResultRow {
  study_instance_uid: string;
  stack_id: string;
  document: string | Result;
  processed_at: string | Date;
  model_id: string;
  model_version: string;
  model_sha256: string;
}

interface LabelRow {
  study_instance_uid: string;
  stack_id: string;
  phase: PhaseKey;
  slice_index: number;
  sop_instance_uid: string;
  label: SliceLabel;
  source: LabelSource;
  updated_at: string | Date;
}

const LABEL_COLUMNS = 'study_instance_uid, stack_id, phase, slice_index, sop_instance_uid, label, source, updated_at';
const RESULT_COLUMNS = 'study_instance_uid, stack_id, document, processed_at, model_id, model_version, model_sha256';
/** Rows per multi-row INSERT (8 parameters each; far below SQLite's and PostgreSQL's parameter limits). */
const INSERT_CHUNK = 500;

/** SQLite stores ISO text, PostgreSQL TIMESTAMPTZ (read back as Date): both come out as ISO 8601 UTC. */
function iso(v: string | Date): string {
  return (v instanceof Date ? v : new Date(v)).toISOString();
}

function toStored(r: ResultRow): StoredResult {
  return {
    studyInstanceUID: r.study_instance_uid,
    stackId: r.stack_id,
    processedAt: iso(r.processed_at),
    model: { id: r.model_id, version: r.model_version, sha256: r.model_sha256 },
    document: (typeof r.document === 'string' ? JSON.parse(r.document) : r.document) as Result,
  };
}

function toLabel(r: LabelRow): LabelRecord {
  return {
    studyInstanceUID: r.study_instance_uid,
    stackId: r.stack_id,
    phase: r.phase,
    index: Number(r.slice_index),
    sopInstanceUID: r.sop_instance_uid,
    label: r.label,
    source: r.source,
    updatedAt: iso(r.updated_at),
  };
}

function labelParams(l: LabelRecord): SqlParam[] {
  return [l.studyInstanceUID, l.stackId, l.phase, l.index, l.sopInstanceUID, l.label, l.source, l.updatedAt];
}

const placeholders = (n: number) => Array.from({ length: n }, () => '?').join(', ');

/**
 * Upserts label rows in chunks. `keepHuman`: a row whose stored label is human is left alone (used for
 * the model's pre-labels).
 */
async function upsertLabels(tx: SqlDriver, rows: readonly LabelRecord[], keepHuman: boolean): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const chunk = rows.slice(i, i + INSERT_CHUNK);
    await tx.run(
      `INSERT INTO labels (${LABEL_COLUMNS}) VALUES ${chunk.map(() => `(${placeholders(8)})`).join(', ')}
       ON CONFLICT (study_instance_uid, stack_id, phase, slice_index) DO UPDATE SET
         sop_instance_uid = excluded.sop_instance_uid, label = excluded.label, source = excluded.source, updated_at = excluded.updated_at
       ${keepHuman ? "WHERE labels.source <> 'human'" : ''}`,
      chunk.flatMap(labelParams),
    );
  }
}

/** The query layer: one implementation of Db over either SqlDriver. */
export class SqlDb implements Db {
  private closing?: Promise<void>;

  constructor(private readonly sql: SqlDriver) {}

  get driver() {
    return this.sql.name;
  }

  async saveResult(doc: Result, opts: { processedAt?: Date } = {}): Promise<StoredResult> {
    const valid = parseResult(doc);
    const processedAt = (opts.processedAt ?? new Date()).toISOString();
    await this.sql.transaction(async (tx) => {
      await tx.run(
        `INSERT INTO results (${RESULT_COLUMNS}) VALUES (${placeholders(7)})
         ON CONFLICT (study_instance_uid, stack_id) DO UPDATE SET
           document = excluded.document, processed_at = excluded.processed_at,
           model_id = excluded.model_id, model_version = excluded.model_version, model_sha256 = excluded.model_sha256`,
        [valid.studyInstanceUID, valid.stackId, JSON.stringify(valid), processedAt, valid.model.id, valid.model.version, valid.model.sha256],
      );
      await upsertLabels(tx, modelLabelsOf(valid, processedAt), true);
    });
    return { studyInstanceUID: valid.studyInstanceUID, stackId: valid.stackId, processedAt, model: { ...valid.model }, document: valid };
  }

  async listStudies(opts: ListStudiesOptions = {}): Promise<StudySummary[]> {
    const limit = Math.max(0, Math.floor(opts.limit ?? 50));
    const offset = Math.max(0, Math.floor(opts.offset ?? 0));
    const only = opts.studyInstanceUIDs;
    if (only && only.length === 0) return [];
    const page = await this.sql.all<{ study_instance_uid: string; last_at: string | Date }>(
      `SELECT study_instance_uid, MAX(processed_at) AS last_at FROM results
       ${only ? `WHERE study_instance_uid IN (${placeholders(only.length)})` : ''}
       GROUP BY study_instance_uid ORDER BY last_at DESC, study_instance_uid LIMIT ? OFFSET ?`,
      [...(only ?? []), limit, offset],
    );
    if (page.length === 0) return [];
    const uids = page.map((r) => r.study_instance_uid);
    const results = await this.sql.all<ResultRow>(
      `SELECT ${RESULT_COLUMNS} FROM results WHERE study_instance_uid IN (${placeholders(uids.length)}) ORDER BY stack_id`,
      uids,
    );
    const counts = await this.sql.all<{ study_instance_uid: string; n: number | string }>(
      `SELECT study_instance_uid, COUNT(*) AS n FROM labels WHERE source = 'human' AND study_instance_uid IN (${placeholders(uids.length)})
       GROUP BY study_instance_uid`,
      uids,
    );
    const human = new Map(counts.map((c) => [c.study_instance_uid, Number(c.n)]));
    return page.map((p) => ({
      studyInstanceUID: p.study_instance_uid,
      processedAt: iso(p.last_at),
      stacks: results
        .filter((r) => r.study_instance_uid === p.study_instance_uid)
        .map(toStored)
        .map((s) => summarizeResult(s.document, s.processedAt)),
      humanLabels: human.get(p.study_instance_uid) ?? 0,
    }));
  }

  async listStudyTimes(): Promise<Array<{ studyInstanceUID: string; processedAt: string }>> {
    const rows = await this.sql.all<{ study_instance_uid: string; last_at: string | Date }>(
      'SELECT study_instance_uid, MAX(processed_at) AS last_at FROM results GROUP BY study_instance_uid ORDER BY last_at DESC, study_instance_uid',
    );
    return rows.map((r) => ({ studyInstanceUID: r.study_instance_uid, processedAt: iso(r.last_at) }));
  }

  async countStudies(): Promise<number> {
    const [row] = await this.sql.all<{ n: number | string }>('SELECT COUNT(DISTINCT study_instance_uid) AS n FROM results');
    return Number(row?.n ?? 0);
  }

  async getResults(studyInstanceUID: string): Promise<StoredResult[]> {
    const rows = await this.sql.all<ResultRow>(`SELECT ${RESULT_COLUMNS} FROM results WHERE study_instance_uid = ? ORDER BY stack_id`, [studyInstanceUID]);
    return rows.map(toStored);
  }

  async getLabels(studyInstanceUID: string): Promise<LabelRecord[]> {
    return this.exportLabels({ studyInstanceUID });
  }

  async saveLabels(studyInstanceUID: string, labels: readonly LabelInput[], opts: { now?: Date } = {}): Promise<LabelRecord[]> {
    const updatedAt = (opts.now ?? new Date()).toISOString();
    // One row per key (the last wins): a multi-row upsert may not touch a row twice in PostgreSQL.
    const byKey = new Map<string, LabelRecord>();
    for (const l of labels) {
      byKey.set(labelKey(l), {
        studyInstanceUID,
        stackId: l.stackId,
        phase: l.phase,
        index: l.index,
        sopInstanceUID: l.sopInstanceUID,
        label: l.label,
        source: l.source ?? 'human',
        updatedAt,
      });
    }
    const rows = [...byKey.values()];
    if (rows.length) await this.sql.transaction((tx) => upsertLabels(tx, rows, false));
    return rows;
  }

  async exportLabels(filter: LabelFilter = {}): Promise<LabelRecord[]> {
    const where: string[] = [];
    const params: SqlParam[] = [];
    if (filter.studyInstanceUID !== undefined) {
      where.push('study_instance_uid = ?');
      params.push(filter.studyInstanceUID);
    }
    if (filter.source !== undefined) {
      where.push('source = ?');
      params.push(filter.source);
    }
    const rows = await this.sql.all<LabelRow>(
      `SELECT ${LABEL_COLUMNS} FROM labels ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY study_instance_uid, stack_id, phase, slice_index`,
      params,
    );
    return rows.map(toLabel);
  }

  close(): Promise<void> {
    return (this.closing ??= this.sql.close());
  }
}
