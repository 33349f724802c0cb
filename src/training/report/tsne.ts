/**
 * t-SNE (van der Maaten & Hinton 2008) of a cell's penultimate features with DruidJS's exact, seeded
 * implementation (@saehrimnir/druidjs `TSNE`). Exact t-SNE costs O(n²) per iteration, so at most
 * `maxPoints` slices are embedded: a seeded random subset, the same for the same seed.
 */
import { TSNE } from '@saehrimnir/druidjs';
import { Rng } from '../../phantom/prng.js';

export interface TsneOptions {
  /**
   * Most points embedded (a seeded subset beyond that).
   * @defaultValue 1500
   */
  maxPoints?: number;
  /**
   * Perplexity; lowered to (n − 1) / 3 for small n.
   * @defaultValue 30
   */
  perplexity?: number;
  /** @defaultValue 500 */
  iterations?: number;
  /** @defaultValue 1 */
  seed?: number;
}

export interface TsneEmbedding {
  /** Row indices of the embedded points in the features. */
  indices: number[];
  /** 2-D coordinates, one per embedded point. */
  coords: [number, number][];
  perplexity: number;
  iterations: number;
  seed: number;
  /** Total rows before subsampling. */
  total: number;
}

/** Embeds rows of `values` (n × dim, row-major) in 2-D. */
export function embedTsne(values: Float32Array, dim: number, opts: TsneOptions = {}): TsneEmbedding {
  const maxPoints = opts.maxPoints ?? 1500;
  const iterations = opts.iterations ?? 500;
  const seed = opts.seed ?? 1;
  if (!(dim >= 1) || values.length % dim !== 0) throw new RangeError(`t-SNE: ${values.length} values are not rows of ${dim}`);
  const total = values.length / dim;
  let indices = Array.from({ length: total }, (_, i) => i);
  if (total > maxPoints) {
    const rng = new Rng(seed);
    for (let i = total - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [indices[i], indices[j]] = [indices[j], indices[i]];
    }
    indices = indices.slice(0, maxPoints).sort((a, b) => a - b);
  }
  const n = indices.length;
  if (n < 3) throw new RangeError(`t-SNE needs at least 3 points, got ${n}`);
  const perplexity = Math.max(1, Math.min(opts.perplexity ?? 30, (n - 1) / 3));
  const X = indices.map((i) => Array.from(values.subarray(i * dim, (i + 1) * dim)));
  const Y = new TSNE(X, { perplexity, d: 2, seed }).transform(iterations) as number[][];
  const coords = Y.map((p) => [p[0], p[1]] as [number, number]);
  if (coords.length !== n || coords.some((c) => !Number.isFinite(c[0]) || !Number.isFinite(c[1]))) throw new Error('t-SNE produced non-finite coordinates');
  return { indices, coords, perplexity, iterations, seed, total };
}
