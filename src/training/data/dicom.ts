/**
 * `dicom:DIR` — DICOM files under DIR (searched recursively) with `DIR/labels.csv` (DESIGN "CLI": columns
 * SOPInstanceUID,label; the API's `/api/labels.csv` adds studyInstanceUID,stackId,phase,slice,source, which
 * are allowed and, for `phase`, used).
 *
 * The files are read and assembled into cine stacks as the service does (readInstanceMeta, assembleStacks),
 * slices ordered apex → base by the geometry (apexToBase). Labels are matched to images by SOP Instance UID.
 * A stack phase with labels becomes ED or ES by the CSV's `phase` column when it has one, else by the
 * service's ED/ES rule (choosePhases: ED by trigger time, ES by the smallest mid-ventricular blood pool).
 * One subject per study (`dicom-<StudyInstanceUID>`, as `labels:` does); each labelled phase becomes a
 * LabelledStack through the same checks as `labels:` (labels.ts `labelledStackOf`: every slice labelled, one
 * instance per slice, OAP* IN+ OBS*); anything else is skipped with the reason.
 */

import { readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parseLabelsCsv, type LabelsCsvRow } from '../../db/labels-csv.js';
import { readInstanceMeta, type InstanceMeta } from '../../dicom/meta.js';
import { choosePhases } from '../../pipeline/classify.js';
import { apexToBase, assembleStacks } from '../../stack/index.js';
import type { CineStack } from '../../stack/types.js';
import { labelledStackOf, type LabelledSliceRef } from './labels.js';
import type { LabelledStack, LabelledSubject } from './types.js';

export const DICOM_LICENSE = {
  data: 'local DICOM data with labels.csv: the terms of its source apply',
  citation: '',
} as const;

/** A `dicom:` dataset that cannot be read at all (no labels.csv, a bad row, no DICOM file). */
export class DicomDatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DicomDatasetError';
  }
}

/** Files that are not DICOM instances of the dataset (the labels, the phantom's truth, notes). */
const NOT_DICOM = /\.(csv|json|md|txt|html?|png|jpe?g|zip|gz)$/i;

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else if (e.isFile() && !NOT_DICOM.test(e.name) && !e.name.startsWith('.')) out.push(p);
  }
  return out.sort();
}

/** Loads `dicom:DIR` (see the module comment). */
export async function loadDicomDataset(dirIn: string): Promise<{ subjects: LabelledSubject[]; skipped: string[] }> {
  const dir = resolve(dirIn);
  const csvPath = join(dir, 'labels.csv');
  let text: string;
  try {
    text = await readFile(csvPath, 'utf8');
  } catch (err) {
    throw new DicomDatasetError(`dicom:${dirIn}: cannot read ${csvPath} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it must hold SOPInstanceUID,label rows (GET /api/labels.csv writes one)`);
  }
  let rows: LabelsCsvRow[];
  try {
    rows = parseLabelsCsv(text);
  } catch (err) {
    throw new DicomDatasetError(`dicom:${dirIn}: ${(err as Error).message}`);
  }
  if (!rows.length) throw new DicomDatasetError(`dicom:${dirIn}: ${csvPath} has no label rows`);
  const bySop = new Map<string, LabelsCsvRow>();
  for (const r of rows) {
    const prev = bySop.get(r.sopInstanceUID);
    if (prev && (prev.label !== r.label || prev.phase !== r.phase)) {
      throw new DicomDatasetError(`dicom:${dirIn}: labels.csv gives SOP instance ${r.sopInstanceUID} two labels (${prev.label}, ${r.label})`);
    }
    bySop.set(r.sopInstanceUID, r);
  }

  const skipped: string[] = [];
  const metas: InstanceMeta[] = [];
  for (const path of await listFiles(dir)) {
    try {
      metas.push(...(await readInstanceMeta(path)));
    } catch (err) {
      skipped.push(`${relative(dir, path)}: not a usable DICOM instance (${(err as Error).message})`);
    }
  }
  if (!metas.length) throw new DicomDatasetError(`dicom:${dirIn}: no DICOM instance under ${dir}`);
  const { stacks } = assembleStacks(metas);

  const used = new Set<string>();
  const byStudy = new Map<string, LabelledStack[]>();
  for (const stack of stacks) {
    for (const st of await stackPhases(stack, bySop, used, skipped)) {
      const list = byStudy.get(stack.studyInstanceUID) ?? [];
      list.push(st);
      byStudy.set(stack.studyInstanceUID, list);
    }
  }
  const unmatched = rows.filter((r) => !used.has(r.sopInstanceUID)).length;
  if (unmatched) skipped.push(`${unmatched} of ${rows.length} labels name SOP instances that are in no cine stack under ${dirIn}`);
  const subjects = [...byStudy.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([study, list]) => ({ id: `dicom-${study}`, source: 'dicom', stacks: list }));
  return { subjects, skipped };
}

/** The labelled phases of one stack as LabelledStacks (or reasons in `skipped`). */
async function stackPhases(stack: CineStack, bySop: Map<string, LabelsCsvRow>, used: Set<string>, skipped: string[]): Promise<LabelledStack[]> {
  const phases = new Set<number>();
  for (const s of stack.slices) {
    s.frames.forEach((f, p) => {
      if (bySop.has(f.sopInstanceUID)) {
        phases.add(p);
        used.add(f.sopInstanceUID);
      }
    });
  }
  if (!phases.size) return [];
  const where = (p: number) => `study ${stack.studyInstanceUID} stack ${stack.stackId} phase index ${p}`;
  const { order, ambiguous } = apexToBase(stack);
  let rule: { ED: number; ES: number } | undefined;
  const out: LabelledStack[] = [];
  const named = new Map<'ED' | 'ES', number>();
  for (const p of [...phases].sort((a, b) => a - b)) {
    const refs: (LabelledSliceRef & { path: string; frame?: number })[] = order.map((i) => {
      const f = stack.slices[i].frames[p];
      const row = f ? bySop.get(f.sopInstanceUID) : undefined;
      return { index: i, sopInstanceUID: f?.sopInstanceUID ?? '', path: f?.path ?? '', ...(f?.frame !== undefined ? { frame: f.frame } : {}), ...(row ? { label: row.label } : {}) };
    });
    // ED or ES: the CSV's phase column, else the service's rule.
    const given = new Set(refs.map((r) => bySop.get(r.sopInstanceUID)?.phase).filter((x) => x !== undefined));
    let phase: 'ED' | 'ES' | undefined;
    if (given.size > 1) {
      skipped.push(`${where(p)}: labels.csv names this phase both ED and ES`);
      continue;
    } else if (given.size === 1) {
      phase = [...given][0];
    } else {
      if (!rule) {
        const c = await choosePhases(stack);
        rule = { ED: c.ED.phaseIndex, ES: c.ES.phaseIndex };
      }
      phase = p === rule.ED ? 'ED' : p === rule.ES ? 'ES' : undefined;
      if (!phase) {
        skipped.push(`${where(p)}: labelled, but the ED/ES rule picks phase ${rule.ED} (ED) and ${rule.ES} (ES); add a phase column to labels.csv`);
        continue;
      }
    }
    if (named.has(phase)) {
      skipped.push(`${where(p)}: a second ${phase} of this stack (phase index ${named.get(phase)} is one already)`);
      continue;
    }
    const st = await labelledStackOf(`${where(p)} (${phase})`, `dicom-${stack.studyInstanceUID}`, phase, refs, async (s) => {
      const r = s as (typeof refs)[number];
      return r.path ? { path: r.path, ...(r.frame !== undefined ? { frame: r.frame } : {}) } : `slice ${s.index} has no image at this phase`;
    }, 'labelled', { reversible: ambiguous });
    if (typeof st === 'string') {
      skipped.push(st);
      continue;
    }
    named.set(phase, p);
    if (stack.pixelSpacing?.length === 2) st.pixelSpacing = [stack.pixelSpacing[0], stack.pixelSpacing[1]];
    out.push(st);
  }
  return out;
}
