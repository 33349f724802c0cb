import { describe, expect, it } from 'vitest';
import { metaFromDataset, parseHeader, type InstanceMeta } from '../../src/dicom/meta.js';
import { decodeFrame } from '../../src/dicom/pixels.js';
import { SopClass, TransferSyntax } from '../../src/dicom/uids.js';
import { generatePhantomStudy, type PhantomOptions } from '../../src/phantom/index.js';
import { apexToBase, assembleStacks, chooseEdPhase, chooseEsPhase, midVentricularSlices } from '../../src/stack/index.js';
import { otsuThreshold } from '../../src/stack/image.js';

/** Seeded normal noise (mulberry32 + Box–Muller). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  const uni = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uni() + 1e-12)) * Math.cos(2 * Math.PI * uni());
}

interface Synth {
  rows: number;
  columns: number;
  slices: number;
  phases: number;
  es: number;
  seed: number;
  /** Heart centre offset from the image centre (pixels). */
  offset?: [number, number];
  noise?: number;
  scale?: number;
  bias?: number;
}

/**
 * A cine stack of synthetic images: static background tissue, a bright static blob off the heart (fat), an
 * RV crescent and an LV: bright blood disc inside a darker myocardial ring. The blood-pool radius is largest
 * at phase 0 and smallest at phase `es` (cyclic), the wall thickens as the pool shrinks. Gaussian noise.
 */
function synthCine(o: Synth): (s: number, p: number) => Float32Array {
  const { rows, columns, slices, phases, es } = o;
  const noise = rng(o.seed);
  const cache = new Map<string, Float32Array>();
  const cy = (rows - 1) / 2 + (o.offset?.[0] ?? 0);
  const cx = (columns - 1) / 2 + (o.offset?.[1] ?? 0);
  const images: Float32Array[][] = [];
  for (let s = 0; s < slices; s++) {
    const row: Float32Array[] = [];
    const sliceScale = 0.6 + 0.4 * Math.sin((Math.PI * (s + 1)) / (slices + 1)); // smaller toward the ends
    for (let p = 0; p < phases; p++) {
      // Contraction 0 at phase 0 (ED), 1 at ES; linear systole, slower diastole.
      const c = p <= es ? p / es : Math.max(0, 1 - (p - es) / (phases - es));
      const rBlood = sliceScale * (16 - 8 * c);
      const rEpi = sliceScale * 24;
      const rvR = sliceScale * (14 - 5 * c);
      const img = new Float32Array(rows * columns);
      for (let y = 0; y < rows; y++) {
        for (let x = 0; x < columns; x++) {
          const d = Math.hypot(y - cy, x - cx);
          let v = 60 + 10 * Math.sin(x / 7) * Math.cos(y / 9); // background tissue texture
          if (d < rEpi) v = 45; // myocardium
          if (d < rBlood) v = 200; // LV blood
          const dRv = Math.hypot(y - cy, x - (cx - 1.6 * rEpi));
          if (dRv < rvR && d > rEpi) v = 190; // RV blood
          if (Math.hypot(y - 10, x - (columns - 12)) < 7) v = 230; // static bright fat, off the heart
          v += (o.noise ?? 8) * noise();
          img[y * columns + x] = v * (o.scale ?? 1) + (o.bias ?? 0);
        }
      }
      row.push(img);
    }
    images.push(row);
  }
  return (s, p) => {
    const key = `${s}/${p}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const img = images[s]![p]!;
    cache.set(key, img);
    return img;
  };
}

function transpose(get: (s: number, p: number) => Float32Array, rows: number, columns: number) {
  return (s: number, p: number) => {
    const a = get(s, p);
    const t = new Float32Array(a.length);
    for (let y = 0; y < rows; y++) for (let x = 0; x < columns; x++) t[x * rows + y] = a[y * columns + x]!;
    return t;
  };
}

function metas(opts: { slices: number; phases: number; triggerTimes?: boolean }): InstanceMeta[] {
  const out: InstanceMeta[] = [];
  let k = 0;
  for (let s = 0; s < opts.slices; s++) {
    for (let p = 0; p < opts.phases; p++) {
      out.push({
        path: `/x/${s}/${p}`,
        transferSyntaxUID: '1.2.840.10008.1.2.1',
        sopClassUID: SopClass.MRImageStorage,
        sopInstanceUID: `2.25.${++k}`,
        studyInstanceUID: '2.25.1',
        seriesInstanceUID: '2.25.2',
        seriesNumber: 3,
        modality: 'MR',
        frameOfReferenceUID: '2.25.3',
        imageOrientationPatient: [1, 0, 0, 0, 1, 0],
        imagePositionPatient: [0, 0, s * 8],
        pixelSpacing: [1.5, 1.5],
        ...(opts.triggerTimes === false ? {} : { triggerTime: 12.5 + p * 35 }),
        instanceNumber: opts.phases - p + 100 * s,
        rows: 80,
        columns: 96,
        numberOfFrames: 1,
      });
    }
  }
  return out;
}

describe('chooseEdPhase', () => {
  it('is the phase of smallest trigger time (phase 0)', () => {
    const st = assembleStacks(metas({ slices: 5, phases: 10 })).stacks[0]!;
    expect(chooseEdPhase(st)).toEqual({ phaseIndex: 0, method: 'min-trigger-time', triggerTime: 12.5 });
  });
  it('falls back to the first InstanceNumber without TriggerTime', () => {
    const st = assembleStacks(metas({ slices: 5, phases: 10, triggerTimes: false })).stacks[0]!;
    const ed = chooseEdPhase(st);
    expect(ed).toEqual({ phaseIndex: 0, method: 'instance-number' });
    expect(st.slices[2]!.frames[0]!.instanceNumber).toBe(201);
  });
});

describe('midVentricularSlices', () => {
  it('is the middle third, at least one slice', () => {
    expect(midVentricularSlices(0)).toEqual([]);
    expect(midVentricularSlices(1)).toEqual([0]);
    expect(midVentricularSlices(2)).toEqual([0, 1]);
    expect(midVentricularSlices(3)).toEqual([1]);
    expect(midVentricularSlices(7)).toEqual([2, 3, 4]);
    expect(midVentricularSlices(9)).toEqual([3, 4, 5]);
    expect(midVentricularSlices(12)).toEqual([4, 5, 6, 7]);
  });
});

describe('chooseEsPhase (synthetic cine, exact)', () => {
  const cases: Array<Partial<Synth> & { es: number; phases: number }> = [
    { es: 7, phases: 20 },
    { es: 9, phases: 25 },
    { es: 4, phases: 12 },
    { es: 11, phases: 30, offset: [8, -10] },
    { es: 6, phases: 16, noise: 20 },
  ];
  for (const c of cases) {
    it(`finds ES = ${c.es} of ${c.phases} phases${c.offset ? ' (heart off centre)' : ''}${c.noise ? ` (noise σ ${c.noise})` : ''}`, () => {
      const dims = { rows: 80, columns: 96, slices: 9, phases: c.phases };
      const images = synthCine({ ...dims, seed: c.es * 31 + c.phases, ...c });
      const res = chooseEsPhase(images, dims);
      expect(res.method).toBe('min-blood-pool-area');
      expect(res.phaseIndex).toBe(c.es);
      expect(res.maxAreaPhaseIndex).toBe(0);
      expect(res.slicesUsed).toEqual([3, 4, 5]);
      expect(res.areas).toHaveLength(c.phases);
      expect(res.areas!.every((a) => a > 0)).toBe(true);
      expect(res.warning).toBeUndefined();
    });
  }

  it('does not depend on intensity scaling or on x/y transposition', () => {
    const dims = { rows: 80, columns: 96, slices: 7, phases: 18 };
    const base = chooseEsPhase(synthCine({ ...dims, es: 8, seed: 5 }), dims).phaseIndex;
    expect(base).toBe(8);
    expect(chooseEsPhase(synthCine({ ...dims, es: 8, seed: 5, scale: 37.5, bias: -400 }), dims).phaseIndex).toBe(8);
    const t = transpose(synthCine({ ...dims, es: 8, seed: 5 }), dims.rows, dims.columns);
    expect(chooseEsPhase(t, { ...dims, rows: dims.columns, columns: dims.rows }).phaseIndex).toBe(8);
  });

  it('reads only the slices it measures, and takes dimensions and trigger times from a CineStack', () => {
    const st = assembleStacks(metas({ slices: 6, phases: 14 })).stacks[0]!;
    const synth = synthCine({ rows: 80, columns: 96, slices: 6, phases: 14, es: 5, seed: 9 });
    const asked = new Set<number>();
    const res = chooseEsPhase((s, p) => (asked.add(s), synth(s, p)), st);
    expect([...asked].sort()).toEqual([2, 3]);
    expect(res.phaseIndex).toBe(5);
    expect(res.triggerTime).toBe(12.5 + 5 * 35);
    const only = chooseEsPhase(synth, st, { sliceIndices: [1] });
    expect(only.slicesUsed).toEqual([1]);
    expect(only.phaseIndex).toBe(5);
  });

  it('warns instead of guessing on a single phase or a still image series', () => {
    const one = chooseEsPhase(() => new Float32Array(16), { rows: 4, columns: 4, slices: 3, phases: 1 });
    expect(one.phaseIndex).toBe(0);
    expect(one.warning).toMatch(/single phase/);
    const still = chooseEsPhase(() => new Float32Array(64).fill(3), { rows: 8, columns: 8, slices: 3, phases: 5 });
    expect(still.phaseIndex).toBe(0);
    expect(still.warning).toMatch(/no change/);
  });

  it('rejects images of the wrong size', () => {
    expect(() => chooseEsPhase(() => new Float32Array(10), { rows: 4, columns: 4, slices: 3, phases: 2 })).toThrow(
      /10 pixels, expected 4×4/,
    );
  });
});

describe('otsuThreshold', () => {
  it('splits two clusters', () => {
    const v = [...Array(100).fill(10), ...Array(50).fill(200)];
    const t = otsuThreshold(v);
    expect(t).toBeGreaterThan(10);
    expect(t).toBeLessThan(200);
  });
});

describe('ED/ES on phantom studies (headers → assembleStacks → decodeFrame → chooser)', () => {
  const cases: Array<PhantomOptions & { seed: number }> = [
    { seed: 1, rows: 128, layout: 'single-series' },
    { seed: 2, rows: 128, layout: 'series-per-slice' },
    { seed: 3, rows: 128, layout: 'single-series', transferSyntax: TransferSyntax.JpegLsLossless },
    { seed: 4, rows: 128, layout: 'series-per-slice', transferSyntax: TransferSyntax.RleLossless },
    { seed: 5, rows: 128, layout: 'single-series', transferSyntax: TransferSyntax.ImplicitVRLittleEndian },
    { seed: 1 },
  ];
  for (const c of cases) {
    const what = `seed ${c.seed}, ${c.rows ?? 256}², ${c.layout ?? 'single-series'}, ${c.transferSyntax ?? TransferSyntax.ExplicitVRLittleEndian}`;
    it(`ED and ES are exactly truth.ed and truth.es (${what})`, async () => {
      const { files, truth } = await generatePhantomStudy(c);
      const bytes = new Map(files.map((f) => [f.name, f.data]));
      const metas = files.flatMap((f) => {
        const { meta, dataset } = parseHeader(f.data);
        return metaFromDataset(dataset, meta, f.name);
      });
      const { stacks, setAside } = assembleStacks(metas);
      expect(setAside).toEqual([]);
      expect(stacks).toHaveLength(1);
      const stack = stacks[0]!;
      expect(stack.slices).toHaveLength(truth.slices);
      expect(stack.phases).toBe(truth.phases);
      expect(stack.problems).toEqual([]);
      expect(stack.seriesInstanceUIDs).toHaveLength(c.layout === 'series-per-slice' ? truth.slices : 1);

      // Geometry puts the apex first: the slices apex → base at ED are truth's.
      const order = apexToBase(stack);
      expect(order.ambiguous).toBe(false);

      const ed = chooseEdPhase(stack);
      expect(ed.method).toBe('min-trigger-time');
      expect(ed.phaseIndex).toBe(truth.ed);
      expect(ed.triggerTime).toBe(truth.triggerTimes[truth.ed]);
      expect(order.order.map((i) => stack.slices[i]!.frames[ed.phaseIndex]!.sopInstanceUID)).toEqual(truth.sopInstanceUIDs.ED);

      const mid = new Set(midVentricularSlices(stack.slices.length));
      const images = new Map<string, Float32Array>();
      for (const s of mid) {
        for (let p = 0; p < stack.phases; p++) {
          const ref = stack.slices[s]!.frames[p]!;
          const frame = await decodeFrame(bytes.get(ref.path)!, ref.frame);
          expect([frame.rows, frame.columns]).toEqual([truth.rows, truth.columns]);
          images.set(`${s}/${p}`, frame.data);
        }
      }
      const es = chooseEsPhase((s, p) => images.get(`${s}/${p}`)!, stack);
      expect(es.method).toBe('min-blood-pool-area');
      expect(es.phaseIndex).toBe(truth.es);
      expect(es.triggerTime).toBe(truth.triggerTimes[truth.es]);
      expect(es.maxAreaPhaseIndex).toBe(truth.ed);
      expect(order.order.map((i) => stack.slices[i]!.frames[es.phaseIndex]!.sopInstanceUID)).toEqual(truth.sopInstanceUIDs.ES);
    });
  }
});
