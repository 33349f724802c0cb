import { describe, expect, it } from 'vitest';
import { checkLabelsAgainstResults, labelsToCsv, modelLabelsOf, parseLabelsCsv, summarizeResult, type LabelRecord } from '../../src/db/index.js';
import { checkMigrationList, MIGRATIONS, type Migration } from '../../src/db/migrations.js';
import { splitCsv } from '../../src/db/labels-csv.js';
import { numberPlaceholders } from '../../src/db/sql-driver.js';
import { makeResultDoc, sopOf } from '../helpers/result-doc.js';

const STUDY = '1.2.826.0.1.3680043.8.498.1';

describe('numberPlaceholders', () => {
  it('numbers ? placeholders for PostgreSQL in order', () => {
    expect(numberPlaceholders('SELECT a FROM t WHERE b = ? AND c IN (?, ?)')).toBe('SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)');
  });
});

describe('migrations', () => {
  it('are numbered 1, 2, … and each has SQL for both drivers', () => {
    expect(() => checkMigrationList(MIGRATIONS)).not.toThrow();
    for (const m of MIGRATIONS) {
      expect(m.sql.sqlite.length).toBeGreaterThan(0);
      expect(m.sql.postgres.length).toBe(m.sql.sqlite.length);
    }
  });

  it('a gap or a wrong order is refused', () => {
    const m = (id: number): Migration => ({ id, name: `m${id}`, sql: { sqlite: [], postgres: [] } });
    expect(() => checkMigrationList([m(1), m(3)])).toThrow(/migration 2 has id 3/);
    expect(() => checkMigrationList([m(2), m(1)])).toThrow(/migration 1 has id 2/);
  });
});

describe('summarizeResult', () => {
  it('keeps the stack, model, slice count and each phase index with its IN range', () => {
    const doc = makeResultDoc(STUDY, 'abc', { slices: 6 });
    const s = summarizeResult(doc, '2024-01-02T03:04:05.000Z');
    expect(s).toEqual({
      stackId: 'abc',
      processedAt: '2024-01-02T03:04:05.000Z',
      model: doc.model,
      slices: 6,
      ED: { phaseIndex: 0, inRange: { first: 1, last: 4, count: 4, firstSopInstanceUID: sopOf(STUDY, 0, 1), lastSopInstanceUID: sopOf(STUDY, 0, 4) } },
      ES: { phaseIndex: 7, inRange: { first: 1, last: 4, count: 4, firstSopInstanceUID: sopOf(STUDY, 7, 1), lastSopInstanceUID: sopOf(STUDY, 7, 4) } },
    });
  });
});

describe('modelLabelsOf', () => {
  it('gives one model label per ED and ES slice, keyed by the slice index', () => {
    const doc = makeResultDoc(STUDY, 'abc', { slices: 5 });
    const labels = modelLabelsOf(doc, 't');
    expect(labels).toHaveLength(10);
    expect(labels.filter((l) => l.phase === 'ES').map((l) => l.label)).toEqual(['OAP', 'IN', 'IN', 'IN', 'OBS']);
    expect(labels[3]).toEqual({ studyInstanceUID: STUDY, stackId: 'abc', phase: 'ED', index: 3, sopInstanceUID: sopOf(STUDY, 0, 3), label: 'IN', source: 'model', updatedAt: 't' });
  });
});

describe('checkLabelsAgainstResults', () => {
  const docs = [makeResultDoc(STUDY, 'abc', { slices: 4 })];
  const good = { stackId: 'abc', phase: 'ED' as const, index: 2, sopInstanceUID: sopOf(STUDY, 0, 2), label: 'IN' as const };

  it('accepts labels that name a slice of a classified stack with its SOP Instance UID', () => {
    expect(checkLabelsAgainstResults([good, { ...good, phase: 'ES', sopInstanceUID: sopOf(STUDY, 7, 2) }], docs)).toEqual([]);
  });

  it('names each problem: unknown stack, missing slice, wrong SOP instance, a key given twice', () => {
    const problems = checkLabelsAgainstResults(
      [{ ...good, stackId: 'nope' }, { ...good, index: 9 }, { ...good, sopInstanceUID: '1.2.3' }, good, good],
      docs,
    );
    expect(problems).toEqual([
      'labels[0]: stack nope is not a stack of this study',
      'labels[1]: stack abc ED has no slice with index 9',
      `labels[2]: stack abc ED slice 2 is SOP instance ${sopOf(STUDY, 0, 2)}, not 1.2.3`,
      'labels[3]: stack abc ED slice 2 is given twice',
      'labels[4]: stack abc ED slice 2 is given twice',
    ]);
  });
});

describe('labels.csv', () => {
  const rec = (over: Partial<LabelRecord>): LabelRecord => ({
    studyInstanceUID: STUDY,
    stackId: 'abc',
    phase: 'ED',
    index: 0,
    sopInstanceUID: '1.2.3.4',
    label: 'OAP',
    source: 'human',
    updatedAt: 't',
    ...over,
  });

  it('has the header a dicom: dataset reads first (SOPInstanceUID,label) and one line per label', () => {
    const csv = labelsToCsv([rec({}), rec({ index: 1, sopInstanceUID: '1.2.3.5', label: 'IN', phase: 'ES' })]);
    expect(csv).toBe(
      'SOPInstanceUID,label,studyInstanceUID,stackId,phase,slice,source\r\n' + `1.2.3.4,OAP,${STUDY},abc,ED,0,human\r\n` + `1.2.3.5,IN,${STUDY},abc,ES,1,human\r\n`,
    );
  });

  it('quotes fields with commas and quotes, and parses back to the same rows', () => {
    const csv = labelsToCsv([rec({ stackId: 'a,"b"' })]);
    expect(csv.split('\r\n')[1]).toBe(`1.2.3.4,OAP,${STUDY},"a,""b""",ED,0,human`);
    expect(parseLabelsCsv(csv)).toEqual([{ sopInstanceUID: '1.2.3.4', label: 'OAP', studyInstanceUID: STUDY, stackId: 'a,"b"', phase: 'ED', slice: 0, source: 'human' }]);
  });

  it('reads a minimal SOPInstanceUID,label file with LF line ends', () => {
    expect(parseLabelsCsv('label,SOPInstanceUID\nIN,1.2.3\nOBS,1.2.4\n')).toEqual([
      { sopInstanceUID: '1.2.3', label: 'IN' },
      { sopInstanceUID: '1.2.4', label: 'OBS' },
    ]);
  });

  it('refuses a bad label or UID, naming the line', () => {
    expect(() => parseLabelsCsv('SOPInstanceUID,label\n1.2.3,IN\n1.2.4,MID\n')).toThrow(/line 3: label must be OAP, IN or OBS/);
    expect(() => parseLabelsCsv('SOPInstanceUID,label\nx.y,IN\n')).toThrow(/line 2: SOPInstanceUID is not a DICOM UID/);
    expect(() => parseLabelsCsv('uid,label\n1.2,IN\n')).toThrow(/must name SOPInstanceUID and label/);
  });

  it('splitCsv keeps an empty last field and a quoted newline', () => {
    expect(splitCsv('a,"x\ny",\r\nb,c,d')).toEqual([
      ['a', 'x\ny', ''],
      ['b', 'c', 'd'],
    ]);
  });
});
