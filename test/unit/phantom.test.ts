import { beforeAll, describe, expect, it } from 'vitest';
import dcmjs from 'dcmjs';
import codecs from 'dcmjs-codecs';
import {
  createPhantomModel,
  generatePhantomStudy,
  parsePhantomSpec,
  phantomSubjects,
  renderPhantomSlice,
  uidFromName,
  type PhantomFile,
  type PhantomTruth,
} from '../../src/phantom/index.js';
import { toPixels12 } from '../../src/phantom/dicom.js';
import { uuidV5Bytes } from '../../src/dicom/uid.js';
import { TransferSyntax } from '../../src/dicom/uids.js';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;
const { NativeCodecs, Transcoder } = codecs;
// Reading Implicit VR pixel data makes dcmjs log "Invalid vr type ox - using OW" (harmless).
dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');

type Vec = [number, number, number];

interface Parsed {
  name: string;
  meta: Record<string, any>;
  ds: Record<string, any>;
}

function arrayBuffer(data: Uint8Array): ArrayBuffer {
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
}

function parse(file: PhantomFile): Parsed {
  const dict = DicomMessage.readFile(arrayBuffer(file.data));
  return { name: file.name, meta: DicomMetaDictionary.naturalizeDataset(dict.meta), ds: DicomMetaDictionary.naturalizeDataset(dict.dict) };
}

function pixelsOf(p: Parsed): Uint16Array {
  const buf: ArrayBuffer = p.ds.PixelData[0];
  return new Uint16Array(buf.slice(0));
}

/** Byte-wise equality of two typed arrays (fast; vitest's toEqual walks element by element). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: number[], b: number[]): Vec => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

/** Area (pixels) of the 4-connected region brighter than t containing (x, y); 0 if (x, y) is not brighter. */
function floodArea(img: Uint16Array, w: number, h: number, x: number, y: number, t: number): number {
  const start = y * w + x;
  if (img[start] <= t) return 0;
  const seen = new Uint8Array(w * h);
  const stack = [start];
  seen[start] = 1;
  let n = 0;
  while (stack.length) {
    const i = stack.pop()!;
    n++;
    const cx = i % w;
    const cy = (i - cx) / w;
    const next = [cx > 0 ? i - 1 : -1, cx < w - 1 ? i + 1 : -1, cy > 0 ? i - w : -1, cy < h - 1 ? i + w : -1];
    for (const j of next) {
      if (j >= 0 && !seen[j] && img[j] > t) {
        seen[j] = 1;
        stack.push(j);
      }
    }
  }
  return n;
}

const LABEL_PATTERN = /^(OAP )+(IN ){2,}IN( OBS)+$/;

describe('uidFromName', () => {
  it('is a deterministic 2.25 UID from an RFC 4122 UUIDv5', () => {
    // RFC 4122 / Python uuid.uuid5(uuid.NAMESPACE_DNS, 'www.example.com')
    expect(uuidV5Bytes('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8').toString('hex')).toBe('2ed6657de927568b95e12665a8aea6a2');
    const a = uidFromName('study/1');
    expect(a).toMatch(/^2\.25\.[1-9][0-9]*$/);
    expect(a.length).toBeLessThanOrEqual(64);
    expect(uidFromName('study/1')).toBe(a);
    expect(uidFromName('study/2')).not.toBe(a);
  });
});

describe('phantom model (many seeds, no pixels)', () => {
  it('always has OAP* IN+ OBS* apex → base with ≥1 OAP, ≥3 IN, ≥1 OBS at ED and ES, and ES differs from ED', () => {
    for (const slices of [6, 9, 12, 24]) {
      for (let seed = 0; seed < 150; seed++) {
        const m = createPhantomModel({ seed, slices });
        const ed = Array.from({ length: slices }, (_, k) => m.label(k, m.ed));
        const es = Array.from({ length: slices }, (_, k) => m.label(k, m.es));
        expect(ed.join(' '), `seed ${seed} slices ${slices} ED`).toMatch(LABEL_PATTERN);
        expect(es.join(' '), `seed ${seed} slices ${slices} ES`).toMatch(LABEL_PATTERN);
        // Systole: the base descends (a basal IN slice becomes OBS); the IN range never grows.
        expect(ed.some((l, k) => l === 'IN' && es[k] === 'OBS'), `seed ${seed} slices ${slices}`).toBe(true);
        expect(es.every((l, k) => l !== 'IN' || ed[k] === 'IN')).toBe(true);
      }
    }
  });

  it('puts ED at phase 0 and ES at 34–40 % of the cycle with the strictly smallest cavity; trigger times increase', () => {
    for (const phases of [20, 25, 30]) {
      for (let seed = 0; seed < 60; seed++) {
        const m = createPhantomModel({ seed, phases });
        expect(m.ed).toBe(0);
        expect(m.es / phases).toBeGreaterThanOrEqual(0.3);
        expect(m.es / phases).toBeLessThanOrEqual(0.42);
        for (let p = 1; p < phases; p++) expect(m.triggerTimes[p]).toBeGreaterThan(m.triggerTimes[p - 1]);
        expect(m.rrMs).toBeGreaterThanOrEqual(900);
        expect(m.rrMs).toBeLessThanOrEqual(1000);
        for (let k = 0; k < m.slices; k++) {
          const esArea = m.lvCavityArea(k, m.es);
          if (esArea === 0) continue;
          for (let p = 0; p < phases; p++) if (p !== m.es) expect(m.lvCavityArea(k, p)).toBeGreaterThan(esArea);
        }
      }
    }
  });

  it('varies with the seed', () => {
    const models = Array.from({ length: 20 }, (_, seed) => createPhantomModel({ seed }));
    const distinct = (f: (m: (typeof models)[number]) => unknown) => new Set(models.map((m) => JSON.stringify(f(m)))).size;
    expect(distinct((m) => m.heart.cavityRadiusEd)).toBe(20);
    expect(distinct((m) => m.lvCenterPixel)).toBe(20);
    expect(distinct((m) => m.rowCosines)).toBe(20);
    expect(distinct((m) => m.noiseSigma)).toBe(20);
    expect(distinct((m) => m.es)).toBeGreaterThan(1);
    expect(distinct((m) => Array.from({ length: m.slices }, (_, k) => m.label(k, 0)).join())).toBeGreaterThan(1);
  });

  it('rejects out-of-range options', async () => {
    expect(() => createPhantomModel({ slices: 5 })).toThrow(/slices/);
    expect(() => createPhantomModel({ slices: 25 })).toThrow(/slices/);
    expect(() => createPhantomModel({ phases: 19 })).toThrow(/phases/);
    expect(() => createPhantomModel({ phases: 31 })).toThrow(/phases/);
    expect(() => createPhantomModel({ seed: -1 })).toThrow(/seed/);
    expect(() => createPhantomModel({ rows: 32 })).toThrow(/rows/);
    await expect(generatePhantomStudy({ layout: 'mosaic' as never })).rejects.toThrow(/layout/);
    await expect(generatePhantomStudy({ transferSyntax: TransferSyntax.Jpeg2000 })).rejects.toThrow(/transferSyntax/);
  });
});

describe('default study (12 slices × 25 phases, 256², single series, Explicit VR LE)', () => {
  let files: PhantomFile[];
  let truth: PhantomTruth;
  let parsed: Parsed[];
  let generationMs: number;

  beforeAll(async () => {
    const t0 = performance.now();
    ({ files, truth } = await generatePhantomStudy({ seed: 1 }));
    generationMs = performance.now() - t0;
    parsed = files.map(parse);
  });

  it('generates 300 files quickly', () => {
    expect(files).toHaveLength(300);
    expect(new Set(files.map((f) => f.name)).size).toBe(300);
    for (const f of files) expect(f.name).toMatch(/^series-\d{4}\/IM-\d{5}\.dcm$/);
    // Typically ~1 s on 2 cores; generous bound for a loaded machine.
    console.info(`phantom: 12 × 25 × 256² study generated in ${generationMs.toFixed(0)} ms`);
    expect(generationMs).toBeLessThan(8000);
  });

  it('has the truth.json shape of the design', () => {
    for (const key of ['studyInstanceUID', 'slices', 'phases', 'ed', 'es', 'labels', 'sopInstanceUIDs']) expect(truth).toHaveProperty(key);
    expect(truth.slices).toBe(12);
    expect(truth.phases).toBe(25);
    expect(truth.ed).toBe(0);
    for (const phase of ['ED', 'ES'] as const) {
      expect(truth.labels[phase]).toHaveLength(12);
      expect(truth.sopInstanceUIDs[phase]).toHaveLength(12);
      expect(truth.labels[phase].join(' ')).toMatch(LABEL_PATTERN);
      expect(new Set(truth.labels[phase])).toEqual(new Set(['OAP', 'IN', 'OBS']));
    }
    expect(truth.labels.ES.filter((l) => l === 'IN').length).toBeLessThan(truth.labels.ED.filter((l) => l === 'IN').length);
    expect(JSON.parse(JSON.stringify(truth))).toEqual(truth);
  });

  it('writes MR Image Storage with the agreed attributes', () => {
    for (const { meta, ds } of parsed) {
      expect(meta.TransferSyntaxUID).toBe(TransferSyntax.ExplicitVRLittleEndian);
      expect(meta.MediaStorageSOPInstanceUID).toBe(ds.SOPInstanceUID);
      expect(ds.SOPClassUID).toBe('1.2.840.10008.5.1.4.1.1.4');
      expect(ds.SpecificCharacterSet).toBe('ISO_IR 192');
      expect(ds.Modality).toBe('MR');
      expect(ds.PatientName[0].Alphabetic).toBe('PHANTOM^SAX');
      expect(ds.PatientID).toBe('PHANTOM-1');
      expect(ds.Manufacturer).toBe('sax-range phantom');
      expect(ds.SeriesDescription).toBe('cine SAX');
      expect(ds.ImageType).toEqual(['ORIGINAL', 'PRIMARY', 'OTHER']);
      expect(ds.ScanOptions).toBe('CG');
      expect(ds.CardiacNumberOfImages).toBe(25);
      expect([ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation]).toEqual([256, 256, 16, 12, 11, 0]);
      expect(ds.StudyInstanceUID).toBe(truth.studyInstanceUID);
      expect(ds.FrameOfReferenceUID).toBe(parsed[0].ds.FrameOfReferenceUID);
      expect(ds.PixelSpacing[0]).toBeGreaterThan(1.2);
      expect(ds.PixelSpacing[0]).toBeLessThan(1.6);
      const px = pixelsOf({ name: '', meta, ds });
      expect(px).toHaveLength(256 * 256);
      expect(Math.max(...px.subarray(0, 4096))).toBeLessThan(4096);
    }
  });

  it('has consistent short-axis geometry: orthonormal IOP, positions stepping along the normal, SliceLocation = IPP · normal', () => {
    const iop: number[] = parsed[0].ds.ImageOrientationPatient;
    const row = iop.slice(0, 3);
    const col = iop.slice(3, 6);
    expect(dot(row, row)).toBeCloseTo(1, 6);
    expect(dot(col, col)).toBeCloseTo(1, 6);
    expect(dot(row, col)).toBeCloseTo(0, 6);
    const normal = cross(row, col);
    // The normal is parallel to the LV long axis (base → apex ≈ (+1, −1, −1)/√3) and points apex → base.
    expect(dot(normal, [1 / Math.sqrt(3), -1 / Math.sqrt(3), -1 / Math.sqrt(3)])).toBeLessThan(-0.9);
    expect(dot(normal, truth.longAxis)).toBeCloseTo(-1, 6);
    const byLocation = new Map<number, Parsed[]>();
    for (const p of parsed) {
      expect(p.ds.ImageOrientationPatient).toEqual(iop);
      expect(p.ds.SliceLocation).toBeCloseTo(dot(p.ds.ImagePositionPatient, normal), 3);
      const list = byLocation.get(p.ds.SliceLocation) ?? [];
      list.push(p);
      byLocation.set(p.ds.SliceLocation, list);
    }
    const locations = [...byLocation.keys()].sort((a, b) => a - b);
    expect(locations).toHaveLength(12);
    expect(truth.positions).toEqual(locations); // apex → base = increasing SliceLocation
    const spacing = parsed[0].ds.SpacingBetweenSlices;
    expect(spacing).toBe(truth.sliceSpacing);
    for (let k = 1; k < locations.length; k++) {
      const a: number[] = byLocation.get(locations[k - 1])![0].ds.ImagePositionPatient;
      const b: number[] = byLocation.get(locations[k])![0].ds.ImagePositionPatient;
      for (let d = 0; d < 3; d++) expect(b[d] - a[d]).toBeCloseTo(spacing * normal[d], 3);
    }
    for (const list of byLocation.values()) {
      expect(list).toHaveLength(25);
      for (const p of list) expect(p.ds.ImagePositionPatient).toEqual(list[0].ds.ImagePositionPatient);
    }
  });

  it('lists the ED/ES SOP Instance UIDs apex → base: ED = smallest TriggerTime, ES = the truth phase', () => {
    const triggerTimes = [...new Set(parsed.map((p) => p.ds.TriggerTime))].sort((a, b) => a - b);
    expect(triggerTimes).toHaveLength(25);
    expect(triggerTimes).toEqual(truth.triggerTimes);
    for (let k = 0; k < truth.slices; k++) {
      const slice = parsed.filter((p) => p.ds.SliceLocation === truth.positions[k]).sort((a, b) => a.ds.TriggerTime - b.ds.TriggerTime);
      expect(slice[0].ds.SOPInstanceUID).toBe(truth.sopInstanceUIDs.ED[k]);
      expect(slice[truth.es].ds.SOPInstanceUID).toBe(truth.sopInstanceUIDs.ES[k]);
    }
    expect(new Set(parsed.map((p) => p.ds.SOPInstanceUID)).size).toBe(300);
  });

  it('is one series numbered acquisition-slice-major (base → apex), phases consecutive', () => {
    expect(new Set(parsed.map((p) => p.ds.SeriesInstanceUID)).size).toBe(1);
    const numbers = parsed.map((p) => p.ds.InstanceNumber);
    expect(numbers).toEqual(Array.from({ length: 300 }, (_, i) => i + 1)); // files come in instance order
    // Instance 1 is the most basal slice at ED.
    expect(parsed[0].ds.SliceLocation).toBe(truth.positions[11]);
    expect(parsed[0].ds.TriggerTime).toBe(truth.triggerTimes[0]);
    expect(parsed[299].ds.SliceLocation).toBe(truth.positions[0]);
  });

  it('has the strictly smallest mid-slice LV blood pool at ES, measured on the pixels', () => {
    const model = createPhantomModel({ seed: 1 });
    const [cx, cy] = model.lvCenterPixel.map(Math.round);
    const mid = truth.labels.ED.map((l, k) => (l === 'IN' && truth.labels.ES[k] === 'IN' ? k : -1)).filter((k) => k >= 0).slice(1, -1);
    expect(mid.length).toBeGreaterThanOrEqual(3);
    const total = new Array(25).fill(0);
    for (const k of mid) {
      const phases = parsed.filter((p) => p.ds.SliceLocation === truth.positions[k]).sort((a, b) => a.ds.TriggerTime - b.ds.TriggerTime);
      const images = phases.map(pixelsOf);
      // Threshold halfway-ish between myocardium and blood: 55 % of the ED blood level at the LV centre.
      const win: number[] = [];
      for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) win.push(images[0][(cy + dy) * 256 + cx + dx]);
      win.sort((a, b) => a - b);
      const t = 0.55 * win[12];
      const areas = images.map((img) => floodArea(img, 256, 256, cx, cy, t));
      for (let p = 0; p < 25; p++) {
        total[p] += areas[p];
        if (p !== truth.es) expect(areas[p], `slice ${k} phase ${p}`).toBeGreaterThan(areas[truth.es]);
      }
    }
    expect(Math.min(...total)).toBe(total[truth.es]);
    expect(total[0]).toBe(Math.max(...total)); // ED: largest
  });

  it('shows an LV blood pool exactly where the truth says IN (OAP/IN slices, ED and ES)', () => {
    const model = createPhantomModel({ seed: 1 });
    const [cx, cy] = model.lvCenterPixel.map(Math.round);
    const midK = truth.labels.ED.indexOf('IN') + 3;
    const ref = pixelsOf(parsed.find((p) => p.ds.SOPInstanceUID === truth.sopInstanceUIDs.ED[midK])!);
    const t = 0.55 * ref[cy * 256 + cx];
    for (const phase of ['ED', 'ES'] as const) {
      truth.labels[phase].forEach((label, k) => {
        if (label === 'OBS') return;
        const img = pixelsOf(parsed.find((p) => p.ds.SOPInstanceUID === truth.sopInstanceUIDs[phase][k])!);
        const area = floodArea(img, 256, 256, cx, cy, t);
        if (label === 'IN') expect(area, `${phase} slice ${k}`).toBeGreaterThan(3);
        else expect(area, `${phase} slice ${k}`).toBe(0);
      });
    }
  });

  it('renderPhantomSlice gives the same pixels (rounded) and label as the files', () => {
    const model = createPhantomModel({ seed: 1 });
    for (const [k, phase] of [
      [0, 0],
      [5, truth.es],
      [11, 7],
    ] as const) {
      const img = renderPhantomSlice(model, k, phase);
      expect(img.pixels).toBeInstanceOf(Float32Array);
      expect(img.pixels).toHaveLength(256 * 256);
      expect(img.pixelSpacing).toEqual(truth.pixelSpacing);
      expect(img.position).toBe(truth.positions[k]);
      if (phase === 0) expect(img.label).toBe(truth.labels.ED[k]);
      if (phase === truth.es) expect(img.label).toBe(truth.labels.ES[k]);
      const file = parsed.find((p) => p.ds.SliceLocation === truth.positions[k] && p.ds.TriggerTime === truth.triggerTimes[phase])!;
      expect(sameBytes(toPixels12(img.pixels), pixelsOf(file))).toBe(true);
    }
  });
});

describe('determinism and layouts', () => {
  const small = { slices: 6, phases: 20, rows: 128 } as const;

  it('gives byte-identical studies for the same seed and different ones for another seed', async () => {
    const a = await generatePhantomStudy({ ...small, seed: 42, layout: 'series-per-slice' });
    const b = await generatePhantomStudy({ ...small, seed: 42, layout: 'series-per-slice' });
    const c = await generatePhantomStudy({ ...small, seed: 43, layout: 'series-per-slice' });
    expect(b.truth).toEqual(a.truth);
    expect(b.files.map((f) => f.name)).toEqual(a.files.map((f) => f.name));
    for (let i = 0; i < a.files.length; i++) expect(Buffer.compare(a.files[i].data, b.files[i].data)).toBe(0);
    expect(c.truth.studyInstanceUID).not.toBe(a.truth.studyInstanceUID);
    for (let i = 0; i < a.files.length; i++) expect(Buffer.compare(a.files[i].data, c.files[i].data)).not.toBe(0);
    expect(parse(c.files[0]).ds.PatientID).toBe('PHANTOM-43');
  });

  it('series-per-slice: one series per slice position, InstanceNumber = phase + 1', async () => {
    const { files, truth } = await generatePhantomStudy({ ...small, seed: 5, layout: 'series-per-slice' });
    const parsed = files.map(parse);
    const series = new Map<string, Parsed[]>();
    for (const p of parsed) series.set(p.ds.SeriesInstanceUID, [...(series.get(p.ds.SeriesInstanceUID) ?? []), p]);
    expect(series.size).toBe(6);
    expect(new Set(parsed.map((p) => p.ds.SeriesNumber)).size).toBe(6);
    for (const list of series.values()) {
      expect(new Set(list.map((p) => p.ds.SliceLocation)).size).toBe(1);
      expect(list.map((p) => p.ds.InstanceNumber).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(new Set(list.map((p) => p.ds.StudyInstanceUID))).toEqual(new Set([truth.studyInstanceUID]));
    }
    // truth.seriesInstanceUIDs[k] holds slice k (apex → base); acquisition (SeriesNumber) order is base → apex.
    truth.seriesInstanceUIDs.forEach((uid, k) => expect(series.get(uid)![0].ds.SliceLocation).toBe(truth.positions[k]));
    const bySeriesNumber = [...series.values()].sort((a, b) => a[0].ds.SeriesNumber - b[0].ds.SeriesNumber);
    expect(bySeriesNumber.map((l) => l[0].ds.SliceLocation)).toEqual([...truth.positions].reverse());
    expect(truth.layout).toBe('series-per-slice');
  });
});

describe('transfer syntaxes', () => {
  const small = { seed: 9, slices: 6, phases: 20, rows: 64 } as const;
  let reference: Map<string, Uint16Array>;

  beforeAll(async () => {
    await NativeCodecs.initializeAsync();
    const { files } = await generatePhantomStudy(small);
    reference = new Map(files.map((f) => [f.name, pixelsOf(parse(f))]));
  });

  it.each([
    ['JPEG-LS lossless', TransferSyntax.JpegLsLossless],
    ['JPEG lossless SV1', TransferSyntax.JpegLosslessSV1],
    ['JPEG 2000 lossless', TransferSyntax.Jpeg2000Lossless],
    ['RLE lossless', TransferSyntax.RleLossless],
  ])('%s round-trips to the identical pixels', async (_name, ts) => {
    const { files } = await generatePhantomStudy({ ...small, transferSyntax: ts });
    expect(files).toHaveLength(120);
    for (const [i, f] of files.entries()) {
      const p = parse(f);
      expect(p.meta.TransferSyntaxUID).toBe(ts);
      expect(p.ds.PlanarConfiguration).toBeUndefined();
      if (i % 10 !== 0) continue; // decode a sample
      const transcoder = new Transcoder(arrayBuffer(f.data));
      transcoder.transcode(TransferSyntax.ExplicitVRLittleEndian);
      const decoded = new Uint16Array((transcoder.getElements() as any).PixelData[0].slice(0));
      expect(sameBytes(decoded, reference.get(f.name)!), f.name).toBe(true);
    }
  });

  it('Implicit VR Little Endian carries the same pixels and attributes', async () => {
    const { files } = await generatePhantomStudy({ ...small, transferSyntax: TransferSyntax.ImplicitVRLittleEndian });
    for (const f of files.slice(0, 10)) {
      const p = parse(f);
      expect(p.meta.TransferSyntaxUID).toBe(TransferSyntax.ImplicitVRLittleEndian);
      expect(sameBytes(pixelsOf(p), reference.get(f.name)!)).toBe(true);
      expect(p.ds.ImageType).toEqual(['ORIGINAL', 'PRIMARY', 'OTHER']);
      expect(p.ds.TriggerTime).toBeTypeOf('number');
    }
  });
});

describe('phantom datasets', () => {
  it('parses phantom:COUNT[:SEED]', () => {
    expect(parsePhantomSpec('phantom:10')).toEqual({ count: 10, seed: 1 });
    expect(parsePhantomSpec('phantom:5:42')).toEqual({ count: 5, seed: 42 });
    for (const bad of ['phantom:', 'phantom:0', 'phantom:3:-1', 'phantom:3:x', 'acdc:/data', 'phantom:3:4294967296', 'phantom:1:2:3']) {
      expect(() => parsePhantomSpec(bad), bad).toThrow(/phantom/);
    }
  });

  it('yields subjects with ED and ES stacks apex → base, deterministically', () => {
    const opts = { rows: 96 };
    const subjects = [...phantomSubjects(3, 7, opts)];
    expect(subjects).toHaveLength(3);
    expect(new Set(subjects.map((s) => s.seed)).size).toBe(3);
    for (const s of subjects) {
      expect(s.id).toBe(`phantom-${s.seed}`);
      expect(s.slices).toBeGreaterThanOrEqual(9);
      expect(s.slices).toBeLessThanOrEqual(15);
      for (const stack of [s.ED, s.ES]) {
        expect(stack.images).toHaveLength(s.slices);
        expect(stack.labels.join(' ')).toMatch(LABEL_PATTERN);
        for (let k = 1; k < s.slices; k++) expect(stack.positions[k]).toBeGreaterThan(stack.positions[k - 1]);
        for (const img of stack.images) expect(img).toHaveLength(96 * 96);
        expect(stack.pixelSpacing[0]).toBeGreaterThan(0);
      }
      expect(s.ED.phaseIndex).toBe(0);
      expect(s.ES.phaseIndex).toBe(s.es);
    }
    const again = phantomSubjects(1, 7, opts).next().value!;
    expect(again.seed).toBe(subjects[0].seed);
    expect(sameBytes(again.ES.images[2], subjects[0].ES.images[2])).toBe(true);
    const other = phantomSubjects(1, 8, opts).next().value!;
    expect(other.seed).not.toBe(subjects[0].seed);
    expect([...phantomSubjects(2, 7, { ...opts, slices: 7 })].map((s) => s.slices)).toEqual([7, 7]);
  });
});
