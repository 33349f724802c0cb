import { describe, it, expect } from 'vitest';
import {
  LABELS,
  argmaxLabels,
  chooseOrientation,
  decodeRange,
  labellingLogLikelihood,
  type SliceLabel,
} from '../../src/inference/decode.js';

const OAP = [0.8, 0.15, 0.05];
const IN = [0.1, 0.8, 0.1];
const OBS = [0.05, 0.15, 0.8];

/** Every valid labelling OAP* IN+ OBS* of length n, as (first, last). */
function* ranges(n: number): Generator<[number, number]> {
  for (let f = 0; f < n; f++) for (let l = f; l < n; l++) yield [f, l];
}

function labelsOf(n: number, first: number, last: number): SliceLabel[] {
  return Array.from({ length: n }, (_, i) => (i < first ? 'OAP' : i <= last ? 'IN' : 'OBS'));
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('decodeRange', () => {
  it('decodes a clean apex → base stack', () => {
    const d = decodeRange([OAP, OAP, IN, IN, IN, OBS]);
    expect(d.labels).toEqual(['OAP', 'OAP', 'IN', 'IN', 'IN', 'OBS']);
    expect(d.first).toBe(2);
    expect(d.last).toBe(4);
    expect(d.logLikelihood).toBeCloseTo(2 * Math.log(0.8) + 3 * Math.log(0.8) + Math.log(0.8), 12);
  });

  it('overrides an isolated out-of-order argmax (hand-checked)', () => {
    const probs = [
      [0.1, 0.8, 0.1],
      [0.6, 0.3, 0.1],
      [0.1, 0.8, 0.1],
      [0.1, 0.2, 0.7],
    ];
    expect(argmaxLabels(probs)).toEqual(['IN', 'OAP', 'IN', 'OBS']);
    // IN IN IN OBS: ln .8 + ln .3 + ln .8 + ln .7 = −2.007; OAP OAP IN OBS: ln .1 + ln .6 + ln .8 + ln .7 = −3.394
    const d = decodeRange(probs);
    expect(d.labels).toEqual(['IN', 'IN', 'IN', 'OBS']);
    expect([d.first, d.last]).toEqual([0, 2]);
    expect(d.logLikelihood).toBeCloseTo(Math.log(0.8) + Math.log(0.3) + Math.log(0.8) + Math.log(0.7), 12);
  });

  it('labels a single slice IN whatever its probabilities', () => {
    for (const p of [OAP, IN, OBS, [1, 0, 0]]) {
      const d = decodeRange([p]);
      expect(d.labels).toEqual(['IN']);
      expect([d.first, d.last]).toEqual([0, 0]);
      expect(d.logLikelihood).toBeCloseTo(Math.log(Math.max(p[1], 1e-7)), 12);
    }
  });

  it('always keeps at least one IN slice', () => {
    const d = decodeRange([OAP, OAP, OBS, OBS]);
    expect(d.labels.filter((l) => l === 'IN')).toHaveLength(1);
    expect(d.first).toBe(d.last);
  });

  it('clamps zero probabilities at 1e-7', () => {
    const d = decodeRange([
      [1, 0, 0],
      [1, 0, 0],
    ]);
    expect(d.labels).toEqual(['OAP', 'IN']);
    expect(d.logLikelihood).toBeCloseTo(Math.log(1e-7), 9);
    expect(Number.isFinite(decodeRange([[0, 0, 0]]).logLikelihood)).toBe(true);
  });

  it('breaks ties toward the widest IN range', () => {
    const flat = Array.from({ length: 5 }, () => [1 / 3, 1 / 3, 1 / 3]);
    expect(decodeRange(flat).labels).toEqual(['IN', 'IN', 'IN', 'IN', 'IN']);
    const d = decodeRange([
      [0.5, 0.5, 0],
      [0, 0.5, 0.5],
    ]);
    expect(d.labels).toEqual(['IN', 'IN']); // OAP,IN / IN,IN / IN,OBS all score 2·ln .5
    const d2 = decodeRange([OAP, [0.4, 0.4, 0.2], IN, [0.2, 0.4, 0.4], OBS]);
    expect([d2.first, d2.last]).toEqual([1, 3]);
  });

  it('equals the brute-force optimum over all valid labellings (n = 1..8, random inputs)', () => {
    const rand = rng(12345);
    let compared = 0;
    for (let n = 1; n <= 8; n++) {
      for (let trial = 0; trial < 60; trial++) {
        const probs = Array.from({ length: n }, () => {
          // Dirichlet-like rows, sometimes with exact zeros to exercise the clamp.
          const raw = [0, 1, 2].map(() => (rand() < 0.1 ? 0 : -Math.log(1 - rand())));
          const s = raw.reduce((a, b) => a + b, 0) || 1;
          return raw.map((v) => v / s);
        });
        let best = Number.NEGATIVE_INFINITY;
        let second = Number.NEGATIVE_INFINITY;
        let bestRange: [number, number] = [0, 0];
        for (const [f, l] of ranges(n)) {
          const ll = labellingLogLikelihood(probs, labelsOf(n, f, l));
          if (ll > best) {
            second = best;
            best = ll;
            bestRange = [f, l];
          } else if (ll > second) {
            second = ll;
          }
        }
        const d = decodeRange(probs);
        expect(d.logLikelihood).toBeCloseTo(best, 9);
        expect(labellingLogLikelihood(probs, d.labels)).toBeCloseTo(d.logLikelihood, 9);
        expect(d.labels).toEqual(labelsOf(n, d.first, d.last));
        if (best - second > 1e-9) {
          expect([d.first, d.last]).toEqual(bestRange);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(400);
  });

  it('adds the class log-prior to every slice before decoding; logLikelihood stays the plain sum', () => {
    // Slice 0 is weakly OAP: plain decoding cuts it off, a prior of −1 on OAP keeps it IN.
    const probs = [[0.6, 0.4, 0], IN, IN, [0, 0.45, 0.55]];
    expect(decodeRange(probs).labels).toEqual(['OAP', 'IN', 'IN', 'OBS']);
    const d = decodeRange(probs, [-1, 0, -1]);
    expect(d.labels).toEqual(['IN', 'IN', 'IN', 'IN']);
    expect(d.logLikelihood).toBeCloseTo(labellingLogLikelihood(probs, d.labels), 12);
    expect(d.score).toBeCloseTo(d.logLikelihood, 12); // no OAP/OBS slice, so no prior term
    // A strong OAP slice survives the same prior, and the score counts its −1.
    const strong = decodeRange([[0.99, 0.01, 0], IN, IN], [-1, 0, -1]);
    expect(strong.labels).toEqual(['OAP', 'IN', 'IN']);
    expect(strong.score).toBeCloseTo(strong.logLikelihood - 1, 12);
    // A positive IN term favours IN the same way as negative OAP/OBS terms.
    expect(decodeRange(probs, [0, 1, 0]).labels).toEqual(['IN', 'IN', 'IN', 'IN']);
    expect(() => decodeRange(probs, [Number.NaN, 0, 0])).toThrow(/class log-prior/);
    expect(() => decodeRange(probs, [0, 0] as unknown as [number, number, number])).toThrow(/class log-prior/);
  });

  it('with a prior equals the brute-force optimum of Σ (log p + prior)', () => {
    const rand = rng(777);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rand() * 7);
      const probs = Array.from({ length: n }, () => {
        const raw = [0, 1, 2].map(() => -Math.log(1 - rand()));
        const s = raw.reduce((a, b) => a + b, 0);
        return raw.map((v) => v / s);
      });
      const prior: [number, number, number] = [-3 * rand(), rand() - 0.5, -3 * rand()];
      let best = Number.NEGATIVE_INFINITY;
      for (const [f, l] of ranges(n)) {
        const labels = labelsOf(n, f, l);
        const score = labellingLogLikelihood(probs, labels) + labels.reduce((a, x) => a + prior[LABELS.indexOf(x)], 0);
        best = Math.max(best, score);
      }
      expect(decodeRange(probs, prior).score).toBeCloseTo(best, 9);
    }
  });

  it('rejects empty stacks and malformed rows', () => {
    expect(() => decodeRange([])).toThrow(RangeError);
    expect(() => decodeRange([[0.5, 0.5]])).toThrow(RangeError);
    expect(() => decodeRange([[Number.NaN, 0.5, 0.5]])).toThrow(RangeError);
  });
});

describe('chooseOrientation', () => {
  const apexFirst = [OAP, IN, IN, IN, OBS, OBS];
  const apexLast = [...apexFirst].reverse();

  it('prefers the order whose decoding is more likely and reports the margin', () => {
    const c = chooseOrientation(apexLast);
    expect(c.order).toBe('apex-last');
    const fwd = c.decodings['apex-first'].logLikelihood;
    const rev = c.decodings['apex-last'].logLikelihood;
    expect(c.margin).toBeCloseTo(rev - fwd, 12);
    expect(c.margin).toBeGreaterThan(1);
    expect(c.decodings['apex-last'].labels).toEqual(['OAP', 'IN', 'IN', 'IN', 'OBS', 'OBS']);
    expect(c.agreesWithGeometry).toBeNull();
    expect(chooseOrientation(apexFirst).order).toBe('apex-first');
  });

  it('cross-checks the geometry and reports disagreement', () => {
    expect(chooseOrientation(apexLast, 'apex-last')).toMatchObject({ order: 'apex-last', geometryOrder: 'apex-last', agreesWithGeometry: true });
    expect(chooseOrientation(apexLast, 'apex-first')).toMatchObject({ order: 'apex-last', geometryOrder: 'apex-first', agreesWithGeometry: false });
  });

  it('follows the geometry when the likelihood cannot tell (margin 0)', () => {
    const flat = [IN, IN, IN];
    expect(chooseOrientation(flat, 'apex-last')).toMatchObject({ order: 'apex-last', margin: 0, agreesWithGeometry: true });
    expect(chooseOrientation(flat).order).toBe('apex-first');
  });
});

describe('argmaxLabels', () => {
  it('returns the raw per-slice argmax, earlier class on ties', () => {
    expect(argmaxLabels([OAP, IN, OBS, [0.4, 0.4, 0.2], [0.2, 0.4, 0.4]])).toEqual(['OAP', 'IN', 'OBS', 'OAP', 'IN']);
    expect(LABELS).toEqual(['OAP', 'IN', 'OBS']);
  });
});
