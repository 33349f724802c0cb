import { describe, expect, it } from 'vitest';
import type { InstanceMeta } from '../../src/dicom/meta.js';
import { SopClass } from '../../src/dicom/uids.js';
import { apexToBase, assembleStacks, type CineStack } from '../../src/stack/index.js';

type V = [number, number, number];
const cross = (a: V, b: V): V => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const unit = (a: V): V => {
  const n = Math.hypot(...a);
  return [a[0] / n, a[1] / n, a[2] / n];
};
const add = (a: V, b: V, s = 1): V => [a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]];

/** Row/column cosines whose cross product is the given normal. */
function iopFor(normal: V): number[] {
  const n = unit(normal);
  const helper: V = Math.abs(n[2]) < 0.9 ? [0, 0, 1] : [1, 0, 0];
  const row = unit(cross(helper, n));
  const col = cross(n, row);
  return [...row, ...col];
}

/** Rotates the row and column of an IOP about the row axis by deg (a tilt of the normal). */
function tilt(iop: number[], deg: number): number[] {
  const r = iop.slice(0, 3) as V;
  const c = iop.slice(3) as V;
  const n = cross(r, c);
  const t = (deg * Math.PI) / 180;
  const c2: V = add([c[0] * Math.cos(t), c[1] * Math.cos(t), c[2] * Math.cos(t)], n, Math.sin(t));
  return [...r, ...c2];
}

let uidCounter = 0;
const uid = () => `2.25.${++uidCounter}`;

interface CineOpts {
  study?: string;
  frameOfReference?: string;
  normal?: V;
  iop?: number[];
  origin?: V;
  slices?: number;
  phases?: number | ((slice: number) => number);
  spacing?: number;
  /** Slice positions (multiples of spacing) to leave out. */
  skip?: number[];
  layout?: 'single-series' | 'series-per-slice';
  seriesNumber?: number;
  seriesUIDs?: string[];
  modality?: string;
  imageType?: string[];
  rows?: number;
  columns?: number;
  triggerTimes?: boolean;
  /** Phase order of InstanceNumber reversed relative to TriggerTime. */
  reverseInstanceNumbers?: boolean;
}

/** Frames of a synthetic cine acquisition, in acquisition order. */
function cine(o: CineOpts = {}): InstanceMeta[] {
  const iop = o.iop ?? iopFor(o.normal ?? [0.6, -0.5, -0.6]);
  const normal = cross(iop.slice(0, 3) as V, iop.slice(3) as V);
  const slices = o.slices ?? 8;
  const spacing = o.spacing ?? 10;
  const origin = o.origin ?? [-120, -90, 60];
  const study = o.study ?? '2.25.100';
  const forUid = o.frameOfReference ?? '2.25.200';
  const layout = o.layout ?? 'single-series';
  const single = o.seriesUIDs?.[0] ?? uid();
  const out: InstanceMeta[] = [];
  let k = 0;
  for (let s = 0; s < slices; s++) {
    if (o.skip?.includes(s)) continue;
    const series = layout === 'single-series' ? single : (o.seriesUIDs?.[k] ?? uid());
    const seriesNumber = (o.seriesNumber ?? 10) + (layout === 'single-series' ? 0 : k);
    k++;
    const ipp = add(origin, normal, s * spacing);
    const phases = typeof o.phases === 'function' ? o.phases(s) : (o.phases ?? 20);
    for (let p = 0; p < phases; p++) {
      out.push({
        path: `/spool/${series}/${s}-${p}.dcm`,
        transferSyntaxUID: '1.2.840.10008.1.2.1',
        sopClassUID: SopClass.MRImageStorage,
        sopInstanceUID: uid(),
        studyInstanceUID: study,
        seriesInstanceUID: series,
        seriesNumber,
        modality: o.modality ?? 'MR',
        frameOfReferenceUID: forUid,
        imageOrientationPatient: [...iop],
        imagePositionPatient: [...ipp],
        pixelSpacing: [1.4, 1.4],
        sliceThickness: 8,
        sliceLocation: s * spacing,
        ...(o.triggerTimes === false ? {} : { triggerTime: p * 40 + 3 }),
        instanceNumber: o.reverseInstanceNumbers ? phases - p : layout === 'single-series' ? s * phases + p + 1 : p + 1,
        rows: o.rows ?? 192,
        columns: o.columns ?? 156,
        numberOfFrames: 1,
        ...(o.imageType ? { imageType: o.imageType } : {}),
      });
    }
  }
  return out;
}

/** Deterministic shuffle (LCG). */
function shuffle<T>(xs: T[], seed = 7): T[] {
  const a = [...xs];
  let s = seed;
  for (let i = a.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const geometryOf = (st: CineStack) => ({
  normal: st.normal.map((x) => +x.toFixed(9)),
  positions: st.slices.map((s) => s.position),
  phases: st.phases,
  sliceSpacing: st.sliceSpacing,
  rows: st.rows,
  columns: st.columns,
});

describe('assembleStacks: grouping', () => {
  it('builds the same stack from one series and from one series per slice (Siemens)', () => {
    const a = cine({ layout: 'single-series', slices: 9, phases: 25 });
    const b = cine({ layout: 'series-per-slice', slices: 9, phases: 25 });
    const ra = assembleStacks(a);
    const rb = assembleStacks(b);
    expect(ra.stacks).toHaveLength(1);
    expect(rb.stacks).toHaveLength(1);
    expect(ra.setAside).toEqual([]);
    expect(rb.setAside).toEqual([]);
    const [sa, sb] = [ra.stacks[0]!, rb.stacks[0]!];
    expect(geometryOf(sa)).toEqual(geometryOf(sb));
    expect(sa.seriesInstanceUIDs).toHaveLength(1);
    expect(sb.seriesInstanceUIDs).toHaveLength(9);
    expect(sa.slices).toHaveLength(9);
    expect(sa.phases).toBe(25);
    expect(sa.sliceSpacing).toBe(10);
    expect(sa.problems).toEqual([]);
    expect(sb.problems).toEqual([]);
    // Same frames in the same slice and phase order (by acquisition index).
    const idx = (m: InstanceMeta[]) => new Map(m.map((x, i) => [x.sopInstanceUID, i]));
    const ia = idx(a);
    const ib = idx(b);
    expect(sa.slices.map((s) => s.frames.map((f) => ia.get(f.sopInstanceUID)))).toEqual(
      sb.slices.map((s) => s.frames.map((f) => ib.get(f.sopInstanceUID))),
    );
    expect(sa.stackId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('gives the same result whatever the input order', () => {
    const metas = [
      ...cine({ layout: 'series-per-slice', slices: 7, phases: 12 }),
      ...cine({ layout: 'single-series', slices: 1, phases: 12, normal: [0, 0, 1] }),
      ...cine({ slices: 3, phases: 1, normal: [1, 0, 0], imageType: ['ORIGINAL', 'PRIMARY', 'LOCALIZER'] }),
    ];
    const ref = assembleStacks(metas);
    for (const seed of [1, 2, 3]) expect(assembleStacks(shuffle(metas, seed))).toEqual(ref);
    expect(assembleStacks([...metas].reverse())).toEqual(ref);
  });

  it('sets aside a localiser, a 4CH long-axis cine, a single image, non-MR and images without geometry, with reasons', () => {
    const sax = cine({ slices: 10, phases: 20, seriesNumber: 20 });
    const localizer = [
      ...cine({ slices: 1, phases: 1, normal: [1, 0, 0], imageType: ['ORIGINAL', 'PRIMARY', 'LOCALIZER'], seriesUIDs: ['2.25.9001'] }),
      ...cine({ slices: 1, phases: 1, normal: [0, 1, 0], imageType: ['ORIGINAL', 'PRIMARY', 'LOCALIZER'], seriesUIDs: ['2.25.9001'] }),
      ...cine({ slices: 1, phases: 1, normal: [0, 0, 1], imageType: ['ORIGINAL', 'PRIMARY', 'LOCALIZER'], seriesUIDs: ['2.25.9001'] }),
    ];
    const fourCh = cine({ slices: 1, phases: 20, normal: [0.2, 0.3, 0.93], seriesUIDs: ['2.25.9002'], seriesNumber: 5 });
    const twoSlices = cine({ slices: 2, phases: 20, normal: [0.9, 0.1, 0.3], seriesUIDs: ['2.25.9003'] });
    const scout = cine({ slices: 1, phases: 1, normal: [0.3, 0.9, 0.1], seriesUIDs: ['2.25.9004'] });
    const ct = cine({ slices: 4, phases: 2, modality: 'CT', seriesUIDs: ['2.25.9005'] });
    const noGeom = cine({ slices: 3, phases: 2, seriesUIDs: ['2.25.9006'] }).map((m) => ({ ...m, imagePositionPatient: undefined }));
    const badIop = cine({ slices: 3, phases: 2, seriesUIDs: ['2.25.9007'] }).map((m) => ({
      ...m,
      imageOrientationPatient: [1, 0, 0, 1, 0, 0],
    }));
    const still = cine({ slices: 10, phases: 1, normal: [0.6, -0.5, -0.6], seriesUIDs: ['2.25.9008'], seriesNumber: 30 });
    const r = assembleStacks([...sax, ...localizer, ...fourCh, ...twoSlices, ...scout, ...ct, ...noGeom, ...badIop, ...still]);
    expect(r.stacks).toHaveLength(1);
    expect(r.stacks[0]!.slices).toHaveLength(10);
    expect(r.stacks[0]!.seriesInstanceUIDs).toEqual([sax[0]!.seriesInstanceUID]);
    const codes = Object.fromEntries(r.setAside.map((s) => [s.seriesInstanceUID, s.code]));
    expect(codes).toEqual({
      '2.25.9001': 'localizer',
      '2.25.9002': 'long-axis',
      '2.25.9003': 'long-axis',
      '2.25.9004': 'single-image',
      '2.25.9005': 'not-mr',
      '2.25.9006': 'missing-geometry',
      '2.25.9007': 'invalid-geometry',
      '2.25.9008': 'not-cine',
    });
    const byUid = Object.fromEntries(r.setAside.map((s) => [s.seriesInstanceUID, s]));
    expect(byUid['2.25.9001']!.sopInstanceUIDs).toHaveLength(3);
    expect(byUid['2.25.9002']!.sopInstanceUIDs).toHaveLength(20);
    expect(byUid['2.25.9002']!.reason).toMatch(/1 slice position\(s\).*long-axis/);
    expect(byUid['2.25.9003']!.reason).toMatch(/2 slice position\(s\)/);
    expect(byUid['2.25.9005']!.reason).toMatch(/Modality CT is not MR/);
    expect(byUid['2.25.9006']!.reason).toMatch(/no ImagePositionPatient/);
    expect(byUid['2.25.9008']!.reason).toMatch(/10 slice position\(s\) with a single image each/);
    // Every input image is accounted for: in the stack or set aside.
    const inStack = r.stacks.flatMap((s) => s.slices.flatMap((sl) => sl.frames.map((f) => f.sopInstanceUID)));
    const asideSops = r.setAside.flatMap((s) => s.sopInstanceUIDs);
    const total = [sax, localizer, fourCh, twoSlices, scout, ct, noGeom, badIop, still].reduce((n, x) => n + x.length, 0);
    expect(new Set([...inStack, ...asideSops]).size).toBe(total);
  });

  it('keeps two short-axis stacks of different orientation or FrameOfReference apart', () => {
    const a = cine({ slices: 6, phases: 10, normal: [0.6, -0.5, -0.6] });
    const b = cine({ slices: 6, phases: 10, normal: [0.5, -0.7, -0.5] });
    const c = cine({ slices: 6, phases: 10, normal: [0.6, -0.5, -0.6], frameOfReference: '2.25.201', origin: [0, 0, 0] });
    const r = assembleStacks([...a, ...b, ...c]);
    expect(r.stacks).toHaveLength(3);
    expect(new Set(r.stacks.map((s) => s.stackId)).size).toBe(3);
  });

  it('merges series-per-slice series whose orientations differ by less than the tolerance, not more', () => {
    const base = iopFor([0.6, -0.5, -0.6]);
    const metas = cine({ layout: 'series-per-slice', slices: 6, phases: 10, iop: base });
    const seriesOf = [...new Set(metas.map((m) => m.seriesInstanceUID))];
    const nudged = metas.map((m) => (m.seriesInstanceUID === seriesOf[2] ? { ...m, imageOrientationPatient: tilt(base, 0.5) } : m));
    expect(assembleStacks(nudged).stacks[0]!.slices).toHaveLength(6);
    const tilted = metas.map((m) => (m.seriesInstanceUID === seriesOf[2] ? { ...m, imageOrientationPatient: tilt(base, 10) } : m));
    const r = assembleStacks(tilted);
    expect(r.stacks[0]!.slices).toHaveLength(5);
    expect(r.setAside).toEqual([expect.objectContaining({ seriesInstanceUID: seriesOf[2], code: 'long-axis' })]);
  });
});

describe('assembleStacks: geometry and order', () => {
  it('sorts oblique slices by position along the normal, not by input or slice location', () => {
    for (const normal of [[0.6, -0.5, -0.6], [-0.6, 0.5, 0.6], [0.1, -0.9, 0.4], [0, 0, 1]] as V[]) {
      const metas = cine({ slices: 8, phases: 5, normal, spacing: 8 }).map((m) => ({ ...m, sliceLocation: -m.sliceLocation! }));
      const st = assembleStacks(shuffle(metas)).stacks[0]!;
      const positions = st.slices.map((s) => s.position);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
      const n = st.normal;
      expect(Math.hypot(n[0]!, n[1]!, n[2]!)).toBeCloseTo(1, 9);
      expect(n[0]! * normal[0] + n[1]! * normal[1] + n[2]! * normal[2]).toBeGreaterThan(0.99 * Math.hypot(...normal));
      for (const s of st.slices) {
        const ipp = s.imagePositionPatient;
        expect(n[0]! * ipp[0]! + n[1]! * ipp[1]! + n[2]! * ipp[2]!).toBeCloseTo(s.position, 2);
        expect(s.frames).toHaveLength(5);
      }
      expect(st.slices.map((s) => s.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(st.sliceSpacing).toBe(8);
    }
  });

  it('orders phases by TriggerTime, and by InstanceNumber without it', () => {
    const withTt = assembleStacks(cine({ slices: 4, phases: 6, reverseInstanceNumbers: true })).stacks[0]!;
    expect(withTt.phaseOrder).toBe('trigger-time');
    expect(withTt.slices[0]!.frames.map((f) => f.triggerTime)).toEqual([3, 43, 83, 123, 163, 203]);
    const noTt = assembleStacks(cine({ slices: 4, phases: 6, reverseInstanceNumbers: true, triggerTimes: false })).stacks[0]!;
    expect(noTt.phaseOrder).toBe('instance-number');
    expect(noTt.slices[0]!.frames.map((f) => f.instanceNumber)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(noTt.problems.map((p) => p.code)).toEqual(['no-trigger-time']);
  });

  it('handles multi-frame (Enhanced MR) frames of one instance', () => {
    const flat = cine({ slices: 5, phases: 8 });
    const sop = '2.25.777';
    const enhanced = flat.map((m, i) => ({ ...m, sopInstanceUID: sop, frame: i, numberOfFrames: flat.length, instanceNumber: 1 }));
    const st = assembleStacks(shuffle(enhanced)).stacks[0]!;
    expect(st.slices).toHaveLength(5);
    expect(st.phases).toBe(8);
    expect(st.slices[1]!.frames.map((f) => f.frame)).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(st.slices[1]!.frames.every((f) => f.sopInstanceUID === sop)).toBe(true);
  });

  it('collapses the same instance received twice', () => {
    const metas = cine({ slices: 4, phases: 5 });
    const st = assembleStacks([...metas, ...metas.slice(0, 7)]).stacks[0]!;
    expect(st.slices.map((s) => s.frames.length)).toEqual([5, 5, 5, 5]);
    expect(st.problems).toEqual([]);
  });
});

describe('assembleStacks: problems are reported on the stack', () => {
  it('reports a missing slice (a gap of twice the spacing)', () => {
    const r = assembleStacks(cine({ slices: 10, phases: 5, skip: [4], spacing: 9 }));
    const st = r.stacks[0]!;
    expect(st.slices).toHaveLength(9);
    expect(st.sliceSpacing).toBe(9);
    const missing = st.problems.filter((p) => p.code === 'missing-slice');
    expect(missing).toHaveLength(1);
    expect(missing[0]!.sliceIndices).toEqual([3]);
    expect(missing[0]!.details).toMatchObject({ missingCount: 1, gaps: [18] });
    expect(missing[0]!.message).toMatch(/about 1 slice\(s\) missing: gap\(s\) of 18 mm after slice\(s\) 3/);
    // Also in a short stack where the median gap would hide it.
    const short = assembleStacks(cine({ slices: 4, phases: 5, skip: [2] })).stacks[0]!;
    expect(short.problems.map((p) => p.code)).toEqual(['missing-slice']);
    expect(short.sliceSpacing).toBe(10);
  });

  it('reports uneven phase counts and uses the minimum', () => {
    const r = assembleStacks(cine({ layout: 'series-per-slice', slices: 8, phases: (s) => (s === 5 ? 22 : 25) }));
    const st = r.stacks[0]!;
    expect(st.phases).toBe(22);
    const p = st.problems.find((x) => x.code === 'uneven-phase-count')!;
    expect(p).toBeDefined();
    expect(p.sliceIndices).toEqual([5]);
    expect(p.details).toEqual({ counts: [25, 25, 25, 25, 25, 22, 25, 25] });
    expect(p.message).toMatch(/between 22 and 25 phases/);
    expect(r.setAside).toEqual([]);
  });

  it('keeps the newest series of a repeated slice and reports it', () => {
    const metas = cine({ layout: 'series-per-slice', slices: 8, phases: 10, seriesNumber: 10 });
    const repeatUid = '2.25.5555';
    const oldUid = [...new Set(metas.map((m) => m.seriesInstanceUID))][3]!;
    const repeat = metas
      .filter((m) => m.seriesInstanceUID === oldUid)
      .map((m) => ({ ...m, seriesInstanceUID: repeatUid, seriesNumber: 40, sopInstanceUID: `${m.sopInstanceUID}.1` }));
    const r = assembleStacks(shuffle([...metas, ...repeat]));
    const st = r.stacks[0]!;
    expect(st.slices).toHaveLength(8);
    expect(st.slices[3]!.frames.every((f) => f.seriesInstanceUID === repeatUid)).toBe(true);
    expect(st.seriesInstanceUIDs).toContain(repeatUid);
    expect(st.seriesInstanceUIDs).not.toContain(oldUid);
    const p = st.problems.find((x) => x.code === 'duplicate-position')!;
    expect(p.sliceIndices).toEqual([3]);
    expect(p.seriesInstanceUIDs).toEqual([oldUid, repeatUid].sort());
    expect(r.setAside).toHaveLength(1);
    expect(r.setAside[0]).toMatchObject({ seriesInstanceUID: oldUid, code: 'superseded' });
    expect(r.setAside[0]!.sopInstanceUIDs).toHaveLength(10);
    expect(r.setAside[0]!.reason).toMatch(/acquired again in the newer series 40/);
  });

  it('reports no FrameOfReferenceUID but still groups by orientation', () => {
    const metas = cine({ layout: 'series-per-slice', slices: 5, phases: 4 }).map((m) => ({ ...m, frameOfReferenceUID: undefined }));
    const st = assembleStacks(metas).stacks[0]!;
    expect(st.slices).toHaveLength(5);
    expect(st.frameOfReferenceUID).toBeUndefined();
    expect(st.problems.map((p) => p.code)).toEqual(['no-frame-of-reference']);
  });
});

describe('apexToBase', () => {
  const apex: V = unit([1, -1, -1]);
  it('orders descending positions when the normal points toward the apex', () => {
    const st = assembleStacks(cine({ slices: 6, phases: 3, normal: apex })).stacks[0]!;
    const o = apexToBase(st);
    expect(o.order).toEqual([5, 4, 3, 2, 1, 0]);
    expect(o.method).toBe('geometry');
    expect(o.confidence).toBeCloseTo(1, 9);
    expect(o.cosine).toBeGreaterThan(0);
    expect(o.ambiguous).toBe(false);
    // Apex end has the larger position.
    expect(st.slices[o.order[0]!]!.position).toBeGreaterThan(st.slices[o.order[5]!]!.position);
  });

  it('orders ascending positions when the normal points away from the apex (typical oblique SAX both ways)', () => {
    const away = assembleStacks(cine({ slices: 6, phases: 3, normal: [-apex[0], -apex[1], -apex[2]] })).stacks[0]!;
    expect(apexToBase(away).order).toEqual([0, 1, 2, 3, 4, 5]);
    const typical = assembleStacks(cine({ slices: 6, phases: 3, normal: [0.62, -0.45, -0.64] })).stacks[0]!;
    const t = apexToBase(typical);
    expect(t.order).toEqual([5, 4, 3, 2, 1, 0]);
    expect(t.confidence).toBeGreaterThan(0.9);
    const flipped = assembleStacks(cine({ slices: 6, phases: 3, normal: [-0.62, 0.45, 0.64] })).stacks[0]!;
    expect(apexToBase(flipped).order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('says the geometry is ambiguous when the normal is nearly perpendicular to the long axis', () => {
    const st = assembleStacks(cine({ slices: 6, phases: 3, normal: [1, 1, 0] })).stacks[0]!;
    const o = apexToBase(st);
    expect(o.confidence).toBeLessThan(0.3);
    expect(o.ambiguous).toBe(true);
    expect(o.message).toMatch(/ambiguous/);
    expect([...o.order].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
