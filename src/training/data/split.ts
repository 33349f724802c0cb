/**
 * Patient-level splits (pure, deterministic). Every stack of a subject (ED and ES) stays in one fold.
 *
 * `kFoldSplit` stratifies by group (ACDC's Group: DCM, HCM, MINF, NOR, RV) when the subjects carry one:
 * subjects are sorted by id (so the input order does not matter), shuffled within each group with a
 * seeded generator, and dealt round-robin into k folds, the deal continuing from fold to fold across
 * groups so that fold sizes differ by at most one.
 */

import { hashSeed, Rng } from '../../phantom/prng.js';

export interface SplitSubject {
  id: string;
  group?: string;
}

/** In-place Fisher–Yates shuffle with a seeded generator. */
export function shuffleInPlace<T>(xs: T[], rng: Rng): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const t = xs[i];
    xs[i] = xs[j];
    xs[j] = t;
  }
  return xs;
}

function byGroup(subjects: readonly SplitSubject[]): Map<string, string[]> {
  const ids = new Set<string>();
  const groups = new Map<string, string[]>();
  for (const s of subjects) {
    if (ids.has(s.id)) throw new RangeError(`duplicate subject id '${s.id}'`);
    ids.add(s.id);
    const g = s.group ?? '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(s.id);
  }
  for (const list of groups.values()) list.sort();
  return new Map([...groups.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
}

/**
 * Splits subjects into k folds of subject ids (each id in exactly one fold), stratified by group.
 * Throws if k < 2 or k > the number of subjects.
 */
export function kFoldSplit(subjects: readonly SplitSubject[], k: number, seed: number): string[][] {
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`k-fold split: k must be an integer ≥ 2, got ${k}`);
  if (subjects.length < k) throw new RangeError(`k-fold split: ${subjects.length} subjects cannot fill ${k} folds`);
  const folds: string[][] = Array.from({ length: k }, () => []);
  let f = 0;
  let gi = 0;
  for (const [, ids] of byGroup(subjects)) {
    shuffleInPlace(ids, new Rng(hashSeed(seed >>> 0, 0x6b666f6c, gi++)));
    for (const id of ids) {
      folds[f].push(id);
      f = (f + 1) % k;
    }
  }
  for (const fold of folds) fold.sort();
  return folds;
}

/** Train/validation ids of fold `i` (0-based) of a split. */
export function foldSets(folds: readonly string[][], i: number): { train: string[]; val: string[] } {
  if (i < 0 || i >= folds.length) throw new RangeError(`fold ${i} out of 0..${folds.length - 1}`);
  return { train: folds.filter((_, j) => j !== i).flat().sort(), val: [...folds[i]] };
}

/**
 * A deterministic, group-balanced subset of `max` subjects (for quick protocols): groups are shuffled
 * within themselves (seeded) and taken round-robin. Returns the chosen ids, sorted.
 */
export function subsetSubjects(subjects: readonly SplitSubject[], max: number, seed: number): string[] {
  if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxSubjects must be a positive integer, got ${max}`);
  if (max >= subjects.length) return subjects.map((s) => s.id).sort();
  const lists = [...byGroup(subjects).values()].map((ids, gi) => shuffleInPlace(ids, new Rng(hashSeed(seed >>> 0, 0x73756273, gi))));
  const out: string[] = [];
  for (let round = 0; out.length < max; round++) {
    for (const l of lists) if (round < l.length && out.length < max) out.push(l[round]);
  }
  return out.sort();
}

/**
 * Held-out test subjects, split off before cross-validation: the first fold of a seeded k-fold split
 * (stratified by group like `kFoldSplit`) with k = round(1 / fraction), at least 2. `seed` should differ
 * from the CV seed (grid.ts: hashSeed(seed, "test")). Returns sorted id lists.
 */
export function holdOutSplit(subjects: readonly SplitSubject[], fraction: number, seed: number): { trainVal: string[]; test: string[] } {
  if (!(fraction > 0 && fraction <= 0.5)) throw new RangeError(`testFraction must be in (0, 0.5], got ${fraction}`);
  const k = Math.max(2, Math.round(1 / fraction));
  if (subjects.length < k) throw new RangeError(`held-out test split: ${subjects.length} subjects are too few for testFraction ${fraction} (needs ${k})`);
  const folds = kFoldSplit(subjects, k, seed);
  const test = [...folds[0]];
  const inTest = new Set(test);
  return { trainVal: subjects.map((s) => s.id).filter((id) => !inTest.has(id)).sort(), test };
}
