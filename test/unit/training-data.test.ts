import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocessParamsFor, preprocessStack } from '../../src/inference/preprocess.js';
import {
  acdcLabelsBaseToApex,
  buildBatch,
  epochPlan,
  evalPlan,
  foldSets,
  isRangeLabelling,
  kFoldSplit,
  labelCounts,
  loadAcdc,
  loadDataset,
  loadPhantom,
  parseDatasetSpec,
  prepareStacks,
  readNifti,
  rotatePlane,
  rotationHook,
  sampleInput,
  subsetSubjects,
} from '../../src/training/data/index.js';

/** A minimal NIfTI-1 single file (.nii), optionally gzipped. */
function niftiFile(dims: [number, number, number], datatype: 2 | 4, data: ArrayLike<number>, spacing: [number, number, number] = [1.5, 1.25, 10]): Buffer {
  const bytes = datatype === 4 ? 2 : 1;
  const buf = Buffer.alloc(352 + dims[0] * dims[1] * dims[2] * bytes);
  buf.writeInt32LE(348, 0);
  [3, dims[0], dims[1], dims[2], 1, 1, 1, 1].forEach((d, i) => buf.writeInt16LE(d, 40 + 2 * i));
  buf.writeInt16LE(datatype, 70);
  buf.writeInt16LE(bytes * 8, 72);
  [1, spacing[0], spacing[1], spacing[2], 1, 1, 1, 1].forEach((d, i) => buf.writeFloatLE(d, 76 + 4 * i));
  buf.writeFloatLE(352, 108);
  buf.write('n+1\0', 344, 'latin1');
  for (let i = 0; i < data.length; i++) {
    if (datatype === 4) buf.writeInt16LE(data[i], 352 + 2 * i);
    else buf.writeUInt8(data[i], 352 + i);
  }
  return buf;
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sax-training-data-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('dataset specs', () => {
  it('parses single and +-joined specs', () => {
    expect(parseDatasetSpec('acdc:/x+phantom:20:1')).toEqual([
      { kind: 'acdc', dir: '/x', spec: 'acdc:/x' },
      { kind: 'phantom', count: 20, seed: 1, spec: 'phantom:20:1' },
    ]);
    expect(parseDatasetSpec('phantom:3')).toEqual([{ kind: 'phantom', count: 3, seed: 1, spec: 'phantom:3' }]);
    expect(parseDatasetSpec('dicom:/d+labels:')).toEqual([
      { kind: 'dicom', dir: '/d', spec: 'dicom:/d' },
      { kind: 'labels', spec: 'labels:' },
    ]);
  });

  it('a + not followed by kind: stays in the path', () => {
    expect(parseDatasetSpec('acdc:/data/a+b/acdc')).toEqual([{ kind: 'acdc', dir: '/data/a+b/acdc', spec: 'acdc:/data/a+b/acdc' }]);
  });

  it('clear errors', () => {
    expect(() => parseDatasetSpec('foo:/x')).toThrow(/unknown dataset kind 'foo' in 'foo:\/x' \(expected acdc:DIR/);
    expect(() => parseDatasetSpec('acdc:/x+nifti:/y')).toThrow(/unknown dataset kind 'nifti'/);
    expect(() => parseDatasetSpec('phantom:abc')).toThrow(/phantom:COUNT/);
    expect(() => parseDatasetSpec('acdc:')).toThrow(/needs a directory/);
    expect(() => parseDatasetSpec('')).toThrow(/empty dataset spec/);
    expect(() => parseDatasetSpec('/just/a/path')).toThrow(/has no kind/);
  });

  it('loads phantom data, refuses duplicates and a dicom: folder without labels.csv', async () => {
    const ds = await loadDataset('phantom:2:3', { phantomRows: 64 });
    expect(ds.subjects).toHaveLength(2);
    expect(ds.parts[0]).toMatchObject({ kind: 'phantom', subjects: 2, stacks: 4 });
    for (const s of ds.subjects) for (const st of s.stacks) expect(isRangeLabelling(st.labels)).toBe(true);
    await expect(loadDataset('phantom:2:3+phantom:2:3', { phantomRows: 64 })).rejects.toThrow(/appears twice/);
    await expect(loadDataset('dicom:/nowhere')).rejects.toThrow(/dicom:\/nowhere: cannot read \/nowhere\/labels\.csv \(ENOENT\)/);
  });
});

describe('ACDC loader', () => {
  it('labels rule (ACDC order, base first)', () => {
    expect(acdcLabelsBaseToApex([false, true, true, false, false])).toEqual(['OBS', 'IN', 'IN', 'OAP', 'OAP']);
    expect(acdcLabelsBaseToApex([true, false, true])).toEqual(['IN', 'IN', 'IN']);
    expect(acdcLabelsBaseToApex([false, false])).toBeNull();
  });

  it('reads NIfTI int16 / uint8, gzipped or not', async () => {
    const data = Array.from({ length: 4 * 3 * 2 }, (_, i) => i * 7 - 50);
    const v = await readNifti(gzipSync(niftiFile([4, 3, 2], 4, data)));
    expect(v.dims).toEqual([4, 3, 2, 1]);
    expect(v.spacing[0]).toBeCloseTo(1.5, 6);
    expect(Array.from(v.data)).toEqual(data);
    const u = await readNifti(niftiFile([2, 2, 1], 2, [0, 3, 2, 1]));
    expect(Array.from(u.data)).toEqual([0, 3, 2, 1]);
    await expect(readNifti(Buffer.from('not nifti at all'))).rejects.toThrow(/not a NIfTI file/);
  });

  it('loads a subject folder: labels from the cavity, apex → base, sizes, spacing, group; skips stacks without cavity', async () => {
    const dir = join(root, 'acdc');
    const [nx, ny, nz] = [8, 6, 4];
    const write = async (id: string, frame: number, cavityZ: number[], group: string) => {
      await mkdir(join(dir, id), { recursive: true });
      const img = Array.from({ length: nx * ny * nz }, (_, i) => Math.floor(i / (nx * ny)) * 100 + (i % (nx * ny)));
      const gt = Array.from({ length: nx * ny * nz }, (_, i) => (cavityZ.includes(Math.floor(i / (nx * ny))) && i % (nx * ny) === 9 ? 3 : i % 5 === 0 ? 2 : 0));
      const f = String(frame).padStart(2, '0');
      await writeFile(join(dir, id, `${id}_frame${f}.nii.gz`), gzipSync(niftiFile([nx, ny, nz], 4, img)));
      await writeFile(join(dir, id, `${id}_frame${f}_gt.nii.gz`), gzipSync(niftiFile([nx, ny, nz], 2, gt)));
      return group;
    };
    await write('patient001', 1, [1, 2], 'NOR');
    await write('patient001', 3, [0, 1, 2], 'NOR');
    await writeFile(join(dir, 'patient001', 'Info.cfg'), 'ED: 1\nES: 3\nGroup: NOR\nNbFrame: 5\n');
    await write('patient002', 1, [0, 1, 2, 3], 'DCM');
    await write('patient002', 2, [], 'DCM');
    await writeFile(join(dir, 'patient002', 'Info.cfg'), 'ED: 1\nES: 2\nGroup: DCM\n');
    const r = await loadAcdc(dir);
    expect(r.subjects.map((s) => [s.id, s.group])).toEqual([
      ['patient001', 'NOR'],
      ['patient002', 'DCM'],
    ]);
    expect(r.skipped).toEqual(['patient002 ES: no LV-cavity pixels in any slice']);
    expect(r.license.data).toBe('CC BY-NC-SA 4.0');
    const [ed, es] = r.subjects[0].stacks;
    expect(ed.phase).toBe('ED');
    expect(ed.labels).toEqual(['OAP', 'IN', 'IN', 'OBS']); // base→apex OBS IN IN OAP, reversed
    expect(es.labels).toEqual(['OAP', 'IN', 'IN', 'IN']);
    expect(ed.sourceSlices).toEqual([3, 2, 1, 0]);
    expect([ed.rows, ed.columns]).toEqual([ny, nx]);
    expect(ed.pixelSpacing).toEqual([1.25, 1.5]);
    expect(ed.images[0][0]).toBe(300); // apex = NIfTI slice 3
    expect(ed.images[3][nx + 2]).toBe(nx + 2); // base = slice 0, row 1, column 2
    expect(r.subjects[1].stacks.map((s) => s.phase)).toEqual(['ED']);
    const one = await loadAcdc(dir, { subjects: ['patient002'] });
    expect(one.subjects.map((s) => s.id)).toEqual(['patient002']);
    await expect(loadAcdc(dir, { subjects: ['patient999'] })).rejects.toThrow(/patient999/);
    await expect(loadAcdc(join(root, 'missing'))).rejects.toThrow(/cannot read/);
  });
});

describe('patient-level splits', () => {
  const groups = ['DCM', 'HCM', 'MINF', 'NOR', 'RV'];
  const subjects = Array.from({ length: 100 }, (_, i) => ({ id: `patient${String(i + 1).padStart(3, '0')}`, group: groups[Math.floor(i / 20)] }));

  it('every subject in exactly one fold; folds stratified by group and balanced in size', () => {
    const folds = kFoldSplit(subjects, 5, 1);
    const all = folds.flat();
    expect(all).toHaveLength(100);
    expect(new Set(all).size).toBe(100);
    for (const f of folds) {
      expect(f).toHaveLength(20);
      for (const g of groups) expect(f.filter((id) => subjects.find((s) => s.id === id)!.group === g)).toHaveLength(4);
    }
    for (let i = 0; i < 5; i++) {
      const { train, val } = foldSets(folds, i);
      expect(train.filter((id) => val.includes(id))).toEqual([]);
      expect(train.length + val.length).toBe(100);
    }
  });

  it('deterministic for a seed, independent of the input order; another seed differs', () => {
    const a = kFoldSplit(subjects, 5, 7);
    expect(kFoldSplit([...subjects].reverse(), 5, 7)).toEqual(a);
    expect(kFoldSplit(subjects, 5, 8)).not.toEqual(a);
  });

  it('uneven sizes differ by at most one; bad k refused; duplicates refused', () => {
    const s = subjects.slice(0, 13).map((x) => ({ id: x.id }));
    const sizes = kFoldSplit(s, 5, 1).map((f) => f.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    expect(() => kFoldSplit(s, 1, 1)).toThrow(/k must be/);
    expect(() => kFoldSplit(s.slice(0, 3), 5, 1)).toThrow(/cannot fill 5 folds/);
    expect(() => kFoldSplit([{ id: 'a' }, { id: 'a' }, { id: 'b' }], 2, 1)).toThrow(/duplicate/);
  });

  it('subsetSubjects is group-balanced and deterministic', () => {
    const sub = subsetSubjects(subjects, 10, 1);
    expect(sub).toHaveLength(10);
    for (const g of groups) expect(sub.filter((id) => subjects.find((s) => s.id === id)!.group === g)).toHaveLength(2);
    expect(subsetSubjects(subjects, 10, 1)).toEqual(sub);
  });
});

describe('samples: preprocessing, rotation, oversampling', () => {
  const subjects = loadPhantom(2, 5, { rows: 64 });
  const stacks = subjects.flatMap((s) => s.stacks);

  it('rotatePlane: 0° is an exact copy; 90° on a square maps pixels; constants stay constant', () => {
    const img = Float32Array.from({ length: 25 }, (_, i) => i);
    expect(Array.from(rotatePlane(img, 5, 5, 0))).toEqual(Array.from(img));
    const r = rotatePlane(img, 5, 5, 90);
    // output (r, c) samples input at x = cx − (r − cy), y = cy + (c − cx) → input (row c, column 4 − r)
    for (let rr = 0; rr < 5; rr++) for (let c = 0; c < 5; c++) expect(r[rr * 5 + c]).toBeCloseTo(img[c * 5 + (4 - rr)], 4);
    const k = rotatePlane(new Float32Array(35).fill(3), 5, 7, 33);
    for (const v of k) expect(v).toBeCloseTo(3, 5);
  });

  it('prepared (clip-once) samples equal preprocessStack with the rotation as beforeZoom hook, gray3 and 2.5D', () => {
    for (const channelMode of ['gray3', '2.5d'] as const) {
      const params = preprocessParamsFor('cbr_compact', { inputSize: 24, channelMode });
      const st = stacks[1];
      const [prep] = prepareStacks([st], params.clip);
      for (const deg of [0, 17.5, -40]) {
        const ref = preprocessStack(st.images, st.rows, st.columns, params, { beforeZoom: rotationHook(deg) });
        for (const i of [0, 3, st.images.length - 1]) expect(sampleInput(prep, i, params, deg)).toEqual(ref[i]);
      }
    }
  });

  it('shared preparation gives the same planes in SharedArrayBuffers', () => {
    const params = preprocessParamsFor('cbr_compact', { inputSize: 24 });
    const [a] = prepareStacks([stacks[0]], params.clip);
    const [b] = prepareStacks([stacks[0]], params.clip, { shared: true });
    expect(b.planes[0].buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(b.planes[2])).toEqual(Array.from(a.planes[2]));
  });

  it('epoch plans: OAP/OBS ×N, rotations within ±R, deterministic per seed', () => {
    const params = preprocessParamsFor('cbr_compact', { inputSize: 24 });
    const prep = prepareStacks(stacks, params.clip);
    const c = labelCounts(stacks);
    const plan = epochPlan(prep, { oversample: 6, rotationDegrees: 45, seed: 9 });
    expect(plan).toHaveLength(c.IN + 6 * (c.OAP + c.OBS));
    expect(plan.filter((p) => p.label === 0)).toHaveLength(6 * c.OAP);
    expect(plan.filter((p) => p.label === 2)).toHaveLength(6 * c.OBS);
    for (const p of plan) expect(Math.abs(p.degrees)).toBeLessThanOrEqual(45);
    const copies = plan.filter((p) => p.stack === 0 && p.slice === 0);
    expect(new Set(copies.map((p) => p.degrees)).size).toBe(copies.length);
    expect(epochPlan(prep, { oversample: 6, rotationDegrees: 45, seed: 9 })).toEqual(plan);
    expect(epochPlan(prep, { oversample: 6, rotationDegrees: 45, seed: 10 })).not.toEqual(plan);
    const b1 = buildBatch(prep, plan.slice(0, 4), params);
    const b2 = buildBatch(prep, epochPlan(prep, { oversample: 6, rotationDegrees: 45, seed: 9 }).slice(0, 4), params);
    expect(b1.x).toEqual(b2.x);
    expect(Array.from(b1.y)).toEqual(plan.slice(0, 4).map((p) => p.label));
    expect(b1.shape).toEqual([4, 24, 24, 3]);
    expect(epochPlan(prep, { oversample: 1, rotationDegrees: 0, seed: 1 }).every((p) => p.degrees === 0)).toBe(true);
    const ev = evalPlan(prep);
    expect(ev).toHaveLength(c.IN + c.OAP + c.OBS);
    expect(ev[0]).toMatchObject({ stack: 0, slice: 0, degrees: 0 });
  });
});
