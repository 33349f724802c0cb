import type { Result } from '../inference/result.js';
import type { LabelInput, LabelRecord, StackSummary } from './types.js';

/** The list view of one stack's result document. */
export function summarizeResult(doc: Result, processedAt: string): StackSummary {
  const phase = (p: 'ED' | 'ES') => ({ phaseIndex: doc.phases[p].phaseIndex, inRange: { ...doc.phases[p].inRange } });
  return {
    stackId: doc.stackId,
    processedAt,
    model: { ...doc.model },
    slices: doc.phases.ED.slices.length,
    ED: phase('ED'),
    ES: phase('ES'),
  };
}

/** The model's label of every ED and ES slice of a result document, as label rows with source 'model'. */
export function modelLabelsOf(doc: Result, updatedAt: string): LabelRecord[] {
  const out: LabelRecord[] = [];
  for (const phase of ['ED', 'ES'] as const) {
    for (const s of doc.phases[phase].slices) {
      out.push({
        studyInstanceUID: doc.studyInstanceUID,
        stackId: doc.stackId,
        phase,
        index: s.index,
        sopInstanceUID: s.sopInstanceUID,
        label: s.label,
        source: 'model',
        updatedAt,
      });
    }
  }
  return out;
}

/** Key of a label row: unique per study in the labels table. */
export function labelKey(l: Pick<LabelInput, 'stackId' | 'phase' | 'index'>): string {
  return `${l.stackId}\u0000${l.phase}\u0000${l.index}`;
}

/** What a label is checked against: a stack's ED and ES slices (a result document, or a spooled stack not yet classified). */
export interface LabelTarget {
  stackId: string;
  phases: Record<'ED' | 'ES', { slices: ReadonlyArray<{ index: number; sopInstanceUID: string }> }>;
}

/**
 * Checks labels against the study's stacks (result documents first, then stacks in the spool that are not
 * classified yet): the stack must exist, the phase must have a slice with that `index`, and its SOP Instance
 * UID must be the one given (the CSV export keys training labels by SOP Instance UID, so a mismatch would
 * teach the wrong image). Also rejects a key given twice. Returns one message per problem (empty: all good).
 */
export function checkLabelsAgainstResults(labels: readonly LabelInput[], docs: readonly LabelTarget[]): string[] {
  const byStack = new Map(docs.map((d) => [d.stackId, d]));
  const problems: string[] = [];
  const seen = new Set<string>();
  labels.forEach((l, i) => {
    const where = `labels[${i}]`;
    const key = labelKey(l);
    if (seen.has(key)) problems.push(`${where}: stack ${l.stackId} ${l.phase} slice ${l.index} is given twice`);
    seen.add(key);
    const doc = byStack.get(l.stackId);
    if (!doc) {
      problems.push(`${where}: stack ${l.stackId} is not a stack of this study`);
      return;
    }
    const slice = doc.phases[l.phase].slices.find((s) => s.index === l.index);
    if (!slice) problems.push(`${where}: stack ${l.stackId} ${l.phase} has no slice with index ${l.index}`);
    else if (slice.sopInstanceUID !== l.sopInstanceUID) {
      problems.push(`${where}: stack ${l.stackId} ${l.phase} slice ${l.index} is SOP instance ${slice.sopInstanceUID}, not ${l.sopInstanceUID}`);
    }
  });
  return problems;
}
