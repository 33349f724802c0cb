/**
 * Labelled data for training and evaluation. Every per-slice list is ordered apex → base (index 0 = the most
 * apical slice), whatever the source's own order; `sourceSlices` maps back to the source's slice index.
 */

import type { SliceLabel } from '../../inference/decode.js';

export type { SliceLabel };
export type Phase = 'ED' | 'ES';
export const PHASES: readonly Phase[] = ['ED', 'ES'];

/** One phase of one subject: a short-axis stack with a label per slice. */
export interface LabelledStack {
  /** Subject id, unique within a dataset (e.g. `patient001`, `phantom-123`). */
  subject: string;
  phase: Phase;
  /** Pixel planes (rows × columns, row-major), apex → base. Raw intensities (not yet preprocessed). */
  images: Float32Array[];
  rows: number;
  columns: number;
  /** One label per slice, apex → base; of the form OAP* IN+ OBS*. */
  labels: SliceLabel[];
  /** [row spacing, column spacing] in mm, when known. */
  pixelSpacing?: [number, number];
  /** Slice index in the source (e.g. the NIfTI's z index, 0 = base for ACDC), per slice apex → base. */
  sourceSlices?: number[];
}

/** A subject (patient) with its labelled stacks. Splits are made at this level. */
export interface LabelledSubject {
  id: string;
  /** Stratification group (ACDC Info.cfg `Group`: DCM, HCM, MINF, NOR, RV), when known. */
  group?: string;
  /** Dataset kind it came from (`acdc`, `phantom`, …). */
  source: string;
  stacks: LabelledStack[];
}

/** Provenance of one `+`-joined part of a dataset spec. */
export interface DatasetPartInfo {
  spec: string;
  kind: string;
  subjects: number;
  stacks: number;
  slices: number;
  /** Licence of the data (inherited by weights trained on it) and the citation it requires. */
  license: { data: string; citation: string };
  /** Stacks or subjects skipped while loading, with the reason. */
  skipped: string[];
}

export interface LabelledDataset {
  /** The spec as given. */
  spec: string;
  parts: DatasetPartInfo[];
  subjects: LabelledSubject[];
}

/** Counts of each label over stacks. */
export function labelCounts(stacks: Iterable<LabelledStack>): Record<SliceLabel, number> {
  const c: Record<SliceLabel, number> = { OAP: 0, IN: 0, OBS: 0 };
  for (const s of stacks) for (const l of s.labels) c[l]++;
  return c;
}

/** True when `labels` (apex → base) has the form OAP* IN+ OBS*. */
export function isRangeLabelling(labels: readonly SliceLabel[]): boolean {
  let state = 0; // 0 OAP, 1 IN, 2 OBS
  let sawIn = false;
  for (const l of labels) {
    const s = l === 'OAP' ? 0 : l === 'IN' ? 1 : 2;
    if (s < state) return false;
    state = s;
    if (s === 1) sawIn = true;
  }
  return sawIn;
}
