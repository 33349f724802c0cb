import type { PhaseKey } from '../inference/result.js';
import type { SliceLabel } from '../inference/decode.js';
import type { LabelRecord, LabelSource } from './types.js';

/**
 * Columns of `labels.csv` (`GET /api/labels.csv`). The first two are what a `dicom:DIR` dataset reads
 * (DESIGN "CLI": "DICOM files + labels.csv with SOPInstanceUID,label"); the rest say where the label came
 * from. `slice` is the slice's `index` in the result document (stack index, ascending along the normal).
 */
export const LABELS_CSV_COLUMNS = ['SOPInstanceUID', 'label', 'studyInstanceUID', 'stackId', 'phase', 'slice', 'source'] as const;

/** One field, quoted per RFC 4180 when it holds a comma, quote, CR or LF. */
function field(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The CSV text (header line first, CRLF line ends as RFC 4180 asks). */
export function labelsToCsv(records: readonly LabelRecord[]): string {
  const lines = [LABELS_CSV_COLUMNS.join(',')];
  for (const r of records) {
    lines.push([r.sopInstanceUID, r.label, r.studyInstanceUID, r.stackId, r.phase, r.index, r.source].map(field).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** A row of labels.csv; only SOPInstanceUID and label are required (a minimal `dicom:` labels file). */
export interface LabelsCsvRow {
  sopInstanceUID: string;
  label: SliceLabel;
  studyInstanceUID?: string;
  stackId?: string;
  phase?: PhaseKey;
  slice?: number;
  source?: LabelSource;
}

/** Splits CSV text into rows of fields (RFC 4180 quoting; CRLF or LF). */
export function splitCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cur);
      cur = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cur);
      rows.push(row);
      row = [];
      cur = '';
    } else cur += c;
  }
  if (cur !== '' || row.length) {
    row.push(cur);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ''));
}

/**
 * Parses labels.csv: a header naming at least SOPInstanceUID and label (any order, other columns allowed).
 * Throws naming the line of a bad row.
 */
export function parseLabelsCsv(text: string): LabelsCsvRow[] {
  const [header, ...rows] = splitCsv(text);
  if (!header) return [];
  const col = (name: string) => header.findIndex((h) => h.trim().toLowerCase() === name.toLowerCase());
  const iSop = col('SOPInstanceUID');
  const iLabel = col('label');
  if (iSop < 0 || iLabel < 0) throw new Error('labels.csv: the header must name SOPInstanceUID and label');
  const iStudy = col('studyInstanceUID');
  const iStack = col('stackId');
  const iPhase = col('phase');
  const iSlice = col('slice');
  const iSource = col('source');
  return rows.map((r, n) => {
    const line = n + 2;
    const label = r[iLabel]?.trim();
    if (label !== 'OAP' && label !== 'IN' && label !== 'OBS') throw new Error(`labels.csv line ${line}: label must be OAP, IN or OBS, got ${JSON.stringify(label)}`);
    const sop = r[iSop]?.trim();
    if (!sop || !/^[0-9]+(\.[0-9]+)*$/.test(sop)) throw new Error(`labels.csv line ${line}: SOPInstanceUID is not a DICOM UID: ${JSON.stringify(sop)}`);
    const out: LabelsCsvRow = { sopInstanceUID: sop, label };
    if (iStudy >= 0 && r[iStudy]) out.studyInstanceUID = r[iStudy];
    if (iStack >= 0 && r[iStack]) out.stackId = r[iStack];
    if (iPhase >= 0 && (r[iPhase] === 'ED' || r[iPhase] === 'ES')) out.phase = r[iPhase] as PhaseKey;
    if (iSlice >= 0 && r[iSlice] !== undefined && r[iSlice] !== '') out.slice = Number(r[iSlice]);
    if (iSource >= 0 && (r[iSource] === 'model' || r[iSource] === 'human')) out.source = r[iSource] as LabelSource;
    return out;
  });
}
