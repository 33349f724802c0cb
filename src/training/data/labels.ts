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

/**
 * One phase of one stack as a LabelledStack, or the reason it cannot be one. `human` maps a slice index to
 * its human label.
 */
async function stackOf(spool: Spool, doc: Result, phase: 'ED' | 'ES', human: Map<number, LabelRecord>): Promise<LabelledStack | string> {
  const where = `study ${doc.studyInstanceUID} stack ${doc.stackId} ${phase}`;
  const slices = doc.phases[phase].slices;
  const confirmed = slices.filter((s) => human.get(s.index)?.sopInstanceUID === s.sopInstanceUID).length;
  if (confirmed < slices.length) return `${where}: ${confirmed} of ${slices.length} slices confirmed`;
  if (new Set(slices.map((s) => s.sopInstanceUID)).size < slices.length) {
    return `${where}: slices share SOP instances (multi-frame); labels name instances, not frames`;
  }
  const labels: SliceLabel[] = slices.map((s) => human.get(s.index)!.label);
  if (!isRangeLabelling(labels)) return `${where}: labels ${labels.join(' ')} are not of the form OAP* IN+ OBS*`;
  const images: Float32Array[] = [];
  let rows = 0;
  let columns = 0;
  for (const s of slices) {
    const path = await findInstance(spool, doc, s.sopInstanceUID);
    if (!path) return `${where}: SOP instance ${s.sopInstanceUID} is not in the spool`;
    const f = await decodeFrame(path, 0);
    if (images.length && (f.rows !== rows || f.columns !== columns)) return `${where}: slices differ in size`;
    rows = f.rows;
    columns = f.columns;
    images.push(f.data);
  }
  return { subject: `labels-${doc.studyInstanceUID}`, phase, images, rows, columns, labels, sourceSlices: slices.map((s) => s.index) };
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
