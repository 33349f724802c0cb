/**
 * `labels:[DATADIR]` — the labeller's store as a training dataset: the human-confirmed labels in the database
 * (SQLite in DATADIR, or PostgreSQL when a database URL is given) with the images from DATADIR's spool.
 *
 * One subject per study (`labels-<StudyInstanceUID>`), one stack per classified stack and phase, apex → base
 * in the order of the result document. A stack is used only when a person confirmed every one of its slices
 * and the labels have the form OAP* IN+ OBS*; anything else is skipped with the reason.
 */

import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { openDb, type Db, type LabelRecord } from '../../db/index.js';
import { decodeFrame } from '../../dicom/pixels.js';
import type { Result } from '../../inference/result.js';
import { Spool } from '../../spool/spool.js';
import { isRangeLabelling, PHASES, type LabelledStack, type LabelledSubject, type SliceLabel } from './types.js';

export const LABELS_LICENSE = {
  data: "local clinical data (the labeller's store): the site's terms apply",
  citation: '',
} as const;

export interface LoadLabelStoreOptions {
  /** Data folder of the service (spool, SQLite). @defaultValue ./data */
  dataDir?: string;
  /** PostgreSQL URL (the service's DATABASE_URL); unset: the SQLite file in dataDir. */
  databaseUrl?: string;
  /** An open database instead (tests); not closed here. */
  db?: Db;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The spool file of a slice: under one of the stack's series. */
async function findInstance(spool: Spool, doc: Result, sopInstanceUID: string): Promise<string | undefined> {
  for (const series of doc.seriesInstanceUIDs) {
    const p = spool.instancePath(doc.studyInstanceUID, series, sopInstanceUID);
    if (await exists(p)) return p;
  }
  return undefined;
}

/** A slice of a labelled stack, apex → base, as the dataset loaders (`labels:`, `dicom:`) find it. */
export interface LabelledSliceRef {
  /** Slice index in the source stack (becomes `sourceSlices`). */
  index: number;
  sopInstanceUID: string;
  /** The slice's label; undefined = not labelled (the stack is then skipped). */
  label?: SliceLabel;
}

/**
 * One phase of one stack as a LabelledStack, or the reason it cannot be one (shared by `labels:` and
 * `dicom:`): every slice labelled, one SOP instance per slice, labels of the form OAP* IN+ OBS* (`slices`
 * apex → base; with `reversible`, when the geometry was ambiguous, labels that form a range only in the other
 * order reverse the stack), the pixels of one size. `locate` finds a slice's file and frame, or says why it cannot. `labelled` is the word for
 * "has a label" in the reason (`confirmed` for the labeller's human labels).
 */
export async function labelledStackOf(
  where: string,
  subject: string,
  phase: 'ED' | 'ES',
  slices: readonly LabelledSliceRef[],
  locate: (s: LabelledSliceRef) => Promise<{ path: string; frame?: number } | string>,
  labelled = 'labelled',
  opts: { reversible?: boolean } = {},
): Promise<LabelledStack | string> {
  const done = slices.filter((s) => s.label !== undefined).length;
  if (done < slices.length) return `${where}: ${done} of ${slices.length} slices ${labelled}`;
  if (new Set(slices.map((s) => s.sopInstanceUID)).size < slices.length) {
    return `${where}: slices share SOP instances (multi-frame); labels name instances, not frames`;
  }
  let ordered = slices;
  let labels: SliceLabel[] = slices.map((s) => s.label!);
  if (!isRangeLabelling(labels)) {
    // With `reversible` (the geometry could not tell the apex end), labels that form a range read the other
    // way round fix the order: they say which images are apical.
    const reversed = [...slices].reverse();
    const rl = reversed.map((s) => s.label!);
    if (!(opts.reversible && isRangeLabelling(rl))) return `${where}: labels ${labels.join(' ')} are not of the form OAP* IN+ OBS*`;
    ordered = reversed;
    labels = rl;
  }
  const images: Float32Array[] = [];
  let rows = 0;
  let columns = 0;
  for (const s of ordered) {
    const at = await locate(s);
    if (typeof at === 'string') return `${where}: ${at}`;
    const f = await decodeFrame(at.path, at.frame ?? 0);
    if (images.length && (f.rows !== rows || f.columns !== columns)) return `${where}: slices differ in size`;
    rows = f.rows;
    columns = f.columns;
    images.push(f.data);
  }
  return { subject, phase, images, rows, columns, labels, sourceSlices: ordered.map((s) => s.index) };
}

/**
 * One phase of one stack of the labeller's store. `human` maps a slice index to its human label (a label
 * saved for another instance at that index does not count).
 */
async function stackOf(spool: Spool, doc: Result, phase: 'ED' | 'ES', human: Map<number, LabelRecord>): Promise<LabelledStack | string> {
  const where = `study ${doc.studyInstanceUID} stack ${doc.stackId} ${phase}`;
  const slices = doc.phases[phase].slices.map((s) => {
    const h = human.get(s.index);
    return { index: s.index, sopInstanceUID: s.sopInstanceUID, ...(h?.sopInstanceUID === s.sopInstanceUID ? { label: h.label } : {}) };
  });
  return labelledStackOf(
    where,
    `labels-${doc.studyInstanceUID}`,
    phase,
    slices,
    async (s) => {
      const path = await findInstance(spool, doc, s.sopInstanceUID);
      return path ? { path } : `SOP instance ${s.sopInstanceUID} is not in the spool`;
    },
    'confirmed',
  );
}

/** Loads the labeller's store (see the module comment). */
export async function loadLabelStore(opts: LoadLabelStoreOptions = {}): Promise<{ subjects: LabelledSubject[]; skipped: string[] }> {
  const dataDir = resolve(opts.dataDir ?? './data');
  const db = opts.db ?? (await openDb({ dataDir, databaseUrl: opts.databaseUrl }));
  const spool = new Spool(join(dataDir, 'spool'));
  try {
    const byStudy = new Map<string, LabelRecord[]>();
    for (const l of await db.exportLabels({ source: 'human' })) {
      const list = byStudy.get(l.studyInstanceUID) ?? [];
      list.push(l);
      byStudy.set(l.studyInstanceUID, list);
    }
    const subjects: LabelledSubject[] = [];
    const skipped: string[] = [];
    for (const [study, labels] of byStudy) {
      const stacks: LabelledStack[] = [];
      for (const { document: doc } of await db.getResults(study)) {
        for (const phase of PHASES) {
          const human = new Map(labels.filter((l) => l.stackId === doc.stackId && l.phase === phase).map((l) => [l.index, l]));
          if (human.size === 0) continue;
          const st = await stackOf(spool, doc, phase, human);
          if (typeof st === 'string') skipped.push(st);
          else stacks.push(st);
        }
      }
      if (stacks.length) subjects.push({ id: `labels-${study}`, source: 'labels', stacks });
    }
    return { subjects, skipped };
  } finally {
    if (!opts.db) await db.close();
  }
}
