/**
 * `phantom:COUNT[:SEED]` — synthetic labelled subjects from src/phantom (rendered on the fly, deterministic).
 * Subject ids are `phantom-<subject seed>`; stacks are ED and ES, apex → base, labels from the phantom's truth.
 */

import { parsePhantomSpec, phantomSubjects, type PhantomSubjectOptions } from '../../phantom/index.js';
import type { LabelledSubject } from './types.js';

export const PHANTOM_LICENSE = { data: 'synthetic (sax-range phantom; no restrictions)', citation: '' } as const;

/** Loads `count` phantom subjects of dataset seed `seed`. */
export function loadPhantom(count: number, seed: number, opts: PhantomSubjectOptions = {}): LabelledSubject[] {
  const out: LabelledSubject[] = [];
  for (const s of phantomSubjects(count, seed, opts)) {
    out.push({
      id: s.id,
      source: 'phantom',
      stacks: [s.ED, s.ES].map((st) => ({
        subject: s.id,
        phase: st.phase,
        images: st.images,
        rows: st.rows,
        columns: st.columns,
        labels: [...st.labels],
        pixelSpacing: [st.pixelSpacing[0], st.pixelSpacing[1]] as [number, number],
        sourceSlices: st.images.map((_, i) => i),
      })),
    });
  }
  return out;
}

export { parsePhantomSpec };
