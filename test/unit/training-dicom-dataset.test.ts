import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dcmjs from 'dcmjs';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { APEX_DIRECTION } from '../../src/stack/geometry.js';
import { loadDataset } from '../../src/training/data/spec.js';
import { isRangeLabelling } from '../../src/training/data/types.js';

let root: string;
let truths: PhantomTruth[];
const SLICES = 8;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'sax-dicom-ds-'));
  truths = [];
  for (const [i, seed] of [3, 4].entries()) {
    const { truth } = await writePhantomStudy(join(root, 'data', `study${i}`), { seed, slices: SLICES, phases: 20, rows: 64 });
    truths.push(truth);
  }
}, 60_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** labels.csv rows from a phantom's truth: the API's columns (with phase) or the minimal two. */
function rows(t: PhantomTruth, full: boolean, drop: (phase: 'ED' | 'ES', i: number) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const phase of ['ED', 'ES'] as const) {
    t.sopInstanceUIDs[phase].forEach((sop, i) => {
      if (drop(phase, i)) return;
      out.push(full ? [sop, t.labels[phase][i], t.studyInstanceUID, 'stack', phase, i, 'human'].join(',') : `${sop},${t.labels[phase][i]}`);
    });
  }
  return out;
}

async function writeCsv(header: string, lines: string[]): Promise<void> {
  await writeFile(join(root, 'data', 'labels.csv'), `${[header, ...lines].join('\r\n')}\r\n`);
}

describe('dicom:DIR dataset (DICOM files + labels.csv)', () => {
  it('matches labels by SOP Instance UID: one subject per study, ED and ES apex → base, as the truth says', async () => {
    // Study 0 with the API's columns (phase given), study 1 with SOPInstanceUID,label only (the ED/ES rule decides).
    await writeCsv('SOPInstanceUID,label,studyInstanceUID,stackId,phase,slice,source', [...rows(truths[0], true), ...rows(truths[1], false).map((l) => `${l},,,,,`)]);
    const ds = await loadDataset(`dicom:${join(root, 'data')}`);
    expect(ds.parts[0]).toMatchObject({ kind: 'dicom', subjects: 2, stacks: 4, slices: 4 * SLICES, skipped: [] });
    expect(ds.subjects.map((s) => s.id).sort()).toEqual(truths.map((t) => `dicom-${t.studyInstanceUID}`).sort());
    for (const t of truths) {
      const s = ds.subjects.find((x) => x.id === `dicom-${t.studyInstanceUID}`)!;
      expect(s.source).toBe('dicom');
      expect(s.stacks.map((st) => st.phase).sort()).toEqual(['ED', 'ES']);
      for (const st of s.stacks) {
        expect(st.labels).toEqual(t.labels[st.phase]);
        expect(isRangeLabelling(st.labels)).toBe(true);
        expect(st.images).toHaveLength(SLICES);
        expect([st.rows, st.columns]).toEqual([64, 64]);
        expect(st.images.every((im) => im.length === 64 * 64 && im.some((v) => v > 0))).toBe(true);
        expect(st.sourceSlices).toHaveLength(SLICES);
        expect(st.pixelSpacing).toHaveLength(2);
      }
      // ED and ES are different images of the same slices.
      const [ed, es] = ['ED', 'ES'].map((p) => s.stacks.find((st) => st.phase === p)!);
      expect(Array.from(ed.images[SLICES / 2])).not.toEqual(Array.from(es.images[SLICES / 2]));
    }
  }, 60_000);

  it('skips incomplete or non-range stacks with the reason, joins with +', async () => {
    const bad = rows(truths[1], true).map((l) => {
      const f = l.split(',');
      if (f[4] === 'ED' && f[5] === String(SLICES - 1)) f[1] = 'OAP'; // the basal ED slice: OAP after IN
      return f.join(',');
    });
    await writeCsv('SOPInstanceUID,label,studyInstanceUID,stackId,phase,slice,source', [...rows(truths[0], true, (p, i) => p === 'ES' && i === 2), ...bad]);
    const ds = await loadDataset(`dicom:${join(root, 'data')}+phantom:2:1`, { phantomRows: 64 });
    expect(ds.subjects).toHaveLength(4);
    const dicom = ds.parts[0];
    expect(dicom).toMatchObject({ kind: 'dicom', subjects: 2, stacks: 2 });
    expect(dicom.skipped).toHaveLength(2);
    expect(dicom.skipped.find((r) => r.includes(truths[0].studyInstanceUID))).toMatch(/\(ES\): 7 of 8 slices labelled$/);
    expect(dicom.skipped.find((r) => r.includes(truths[1].studyInstanceUID))).toMatch(/\(ED\): labels OAP .* OAP are not of the form OAP\* IN\+ OBS\*$/);
    expect(ds.subjects.find((s) => s.id === `dicom-${truths[0].studyInstanceUID}`)!.stacks.map((s) => s.phase)).toEqual(['ED']);
    expect(ds.parts[1]).toMatchObject({ kind: 'phantom', subjects: 2 });
  }, 60_000);

  it('a bad labels.csv is a clear error naming the line', async () => {
    const lines = rows(truths[0], false);
    lines[1] = lines[1].replace(/,(OAP|IN|OBS)$/, ',MAYBE');
    await writeCsv('SOPInstanceUID,label', lines);
    await expect(loadDataset(`dicom:${join(root, 'data')}`)).rejects.toThrow(/^dicom:.*data: labels\.csv line 3: label must be OAP, IN or OBS, got "MAYBE"$/);
    await writeCsv('SOP,label', lines);
    await expect(loadDataset(`dicom:${join(root, 'data')}`)).rejects.toThrow(/the header must name SOPInstanceUID and label/);
  });

  it('a stack whose geometry cannot tell the apex end takes its order from labels that form a range only reversed', async () => {
    // A phantom study turned in patient space (IOP and IPP rotated together, so that the slices keep their
    // spacing) until the slice normal is nearly perpendicular to the expected LV axis and points the wrong way
    // (cos +0.1 instead of about −0.9): the geometry then orders the slices base → apex, and says it is unsure.
    const dir = join(root, 'turned');
    const { truth, paths } = await writePhantomStudy(join(dir, 'study'), { seed: 11, slices: SLICES, phases: 20, rows: 64 });
    const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
    const first = DicomMetaDictionary.naturalizeDataset(DicomMessage.readFile((await readFile(paths[0])).buffer.slice(0) as ArrayBuffer).dict);
    const iop = first.ImageOrientationPatient as number[];
    const cross = (a: number[], b: number[]) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    const unit = (a: number[]) => a.map((x) => x / Math.hypot(...a));
    const apex = [...APEX_DIRECTION];
    const n = unit(cross(iop.slice(0, 3), iop.slice(3, 6)));
    const w = unit(n.map((x, i) => x - dot(n, apex) * apex[i])); // n without its apex component
    const target = apex.map((a, i) => 0.1 * a + Math.sqrt(1 - 0.01) * w[i]);
    // Rodrigues rotation taking n to target.
    const k = unit(cross(n, target));
    const theta = Math.acos(Math.min(1, Math.max(-1, dot(n, target))));
    const rot = (v: number[]) => {
      const kv = cross(k, v);
      const kd = dot(k, v);
      return v.map((x, i) => x * Math.cos(theta) + kv[i] * Math.sin(theta) + k[i] * kd * (1 - Math.cos(theta)));
    };
    for (const path of paths) {
      const msg = DicomMessage.readFile((await readFile(path)).buffer.slice(0) as ArrayBuffer);
      const ds = DicomMetaDictionary.naturalizeDataset(msg.dict);
      const o = ds.ImageOrientationPatient as number[];
      ds.ImageOrientationPatient = [...rot(o.slice(0, 3)), ...rot(o.slice(3, 6))].map((x) => Number(x.toFixed(6)));
      ds.ImagePositionPatient = rot(ds.ImagePositionPatient as number[]).map((x) => Number(x.toFixed(4)));
      msg.dict = DicomMetaDictionary.denaturalizeDataset(ds);
      await writeFile(path, Buffer.from(msg.write()));
    }
    const csv = ['SOPInstanceUID,label', ...rows(truth, false)];
    await writeFile(join(dir, 'labels.csv'), `${csv.join('\r\n')}\r\n`);

    const ds = await loadDataset(`dicom:${dir}`);
    expect(ds.parts[0]!.skipped).toEqual([]);
    const subject = ds.subjects.find((x) => x.id === `dicom-${truth.studyInstanceUID}`)!;
    expect(subject.stacks.map((st) => st.phase).sort()).toEqual(['ED', 'ES']);
    for (const st of subject.stacks) {
      expect(st.labels).toEqual(truth.labels[st.phase]); // apex → base, as the labels say
      expect(isRangeLabelling(st.labels)).toBe(true);
      expect(st.sourceSlices).toHaveLength(SLICES);
    }
  }, 60_000);
});
