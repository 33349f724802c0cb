import { describe, expect, it } from 'vitest';
import { buildResult, type PhaseInput, type Result } from '../../src/inference/result.js';
import {
  buildKos,
  buildMontageSc,
  buildOutputs,
  buildSliceSc,
  buildSr,
  CODES,
  LABEL_COLOURS,
  readPart10,
  SAX_CODES,
  SrInputError,
  type BuildOptions,
  type SourceImage,
  type SourceInfo,
} from '../../src/sr/index.js';

// ------------------------------------------------------------------------------------------------
// Fixture: a 6-slice stack, synthetic pixels and CAMs (no files).

const N = 6;
const ROWS = 64;
const COLS = 80;
const STUDY = '1.2.826.0.1.3680043.8.498.1';
const SERIES = '1.2.826.0.1.3680043.8.498.2';
const MR = '1.2.840.10008.5.1.4.1.1.4';
const sop = (phase: 'ED' | 'ES', i: number) => `1.2.826.0.1.3680043.8.498.3.${phase === 'ED' ? 1 : 2}.${i + 1}`;
const SHA = 'b'.repeat(64);

// Probabilities: OAP OAP IN IN IN OBS at ED (slice 3 argmax OBS but decoded IN), OAP IN IN IN OBS OBS at ES.
const PROBS: Record<'ED' | 'ES', number[][]> = {
  ED: [
    [0.9, 0.08, 0.02],
    [0.7, 0.25, 0.05],
    [0.1, 0.85, 0.05],
    [0.05, 0.45, 0.5],
    [0.05, 0.9, 0.05],
    [0.02, 0.08, 0.9],
  ],
  ES: [
    [0.8, 0.15, 0.05],
    [0.1, 0.8, 0.1],
    [0.05, 0.9, 0.05],
    [0.05, 0.85, 0.1],
    [0.05, 0.1, 0.85],
    [0.02, 0.03, 0.95],
  ],
};

function phaseInput(phase: 'ED' | 'ES'): PhaseInput {
  return {
    phaseIndex: phase === 'ED' ? 0 : 9,
    triggerTime: phase === 'ED' ? 0 : 360,
    method: 'volume-curve',
    slices: PROBS[phase].map((p, i) => ({ index: i, position: -20 + 8 * i, sopInstanceUID: sop(phase, i), probabilities: p })),
  };
}

function makeResult(sha = SHA): Result {
  return buildResult({
    studyInstanceUID: STUDY,
    stackId: 'stack-abc',
    seriesInstanceUIDs: [SERIES],
    model: { id: 'cbr-small', version: '1.2.0', sha256: sha },
    order: { direction: 'apex-to-base', method: 'geometry' },
    phases: { ED: phaseInput('ED'), ES: phaseInput('ES') },
  });
}

function pixels(i: number): Float32Array {
  const a = new Float32Array(ROWS * COLS);
  for (let y = 0; y < ROWS; y++) {
    for (let x = 0; x < COLS; x++) a[y * COLS + x] = 100 + 10 * i + ((x - 40) ** 2 + (y - 32) ** 2 < 100 ? 800 : x * 2);
  }
  return a;
}

function makeSources(overrides: Partial<SourceImage> = {}): SourceInfo {
  const images = (phase: 'ED' | 'ES') =>
    Array.from({ length: N }, (_, i): SourceImage => ({
      sopClassUID: MR,
      sopInstanceUID: sop(phase, i),
      seriesInstanceUID: SERIES,
      rows: ROWS,
      columns: COLS,
      pixels: pixels(i),
      ...overrides,
    }));
  return {
    patientStudy: {
      PatientName: [{ Alphabetic: 'Müller^Jürgen' }],
      PatientID: 'PID-42',
      PatientBirthDate: '19700101',
      PatientSex: 'M',
      StudyInstanceUID: STUDY,
      StudyDate: '20240102',
      StudyTime: '101500',
      ReferringPhysicianName: '',
      StudyID: 'S1',
      AccessionNumber: 'ACC-7',
      StudyDescription: 'Cardiac cine',
      BodyPartExamined: 'HEART',
    },
    images: { ED: images('ED'), ES: images('ES') },
  };
}

/** A CAM that is 1 in a disc at the image centre and 0 elsewhere. */
function cam(): Float32Array {
  const a = new Float32Array(ROWS * COLS);
  for (let y = 0; y < ROWS; y++) for (let x = 0; x < COLS; x++) a[y * COLS + x] = (x - 40) ** 2 + (y - 32) ** 2 < 64 ? 1 : 0;
  return a;
}

const CAMS = { ED: Array.from({ length: N }, cam), ES: Array.from({ length: N }, cam) };
const FIXED = new Date(2025, 4, 6, 7, 8, 9, 10);
const OPTS: BuildOptions = { softwareVersion: '0.1.0-test', clock: () => FIXED };

// ------------------------------------------------------------------------------------------------
// Helpers to walk the parsed content tree.

type Item = Record<string, any>;
const codeOf = (seq: Item[] | undefined) => (seq?.[0] ? `${seq[0].CodeValue}|${seq[0].CodingSchemeDesignator}` : undefined);
const key = (c: { value: string; scheme: string }) => `${c.value}|${c.scheme}`;
const children = (item: Item, name?: { value: string; scheme: string }): Item[] =>
  (item.ContentSequence ?? []).filter((c: Item) => !name || codeOf(c.ConceptNameCodeSequence) === key(name));
const child = (item: Item, name: { value: string; scheme: string }): Item => {
  const found = children(item, name);
  if (found.length !== 1) throw new Error(`expected one ${name.value}, found ${found.length}`);
  return found[0];
};
const num = (item: Item) => Number(item.MeasuredValueSequence[0].NumericValue);

describe('buildSr', () => {
  const result = makeResult();
  const sources = makeSources();
  const built = buildSr(result, sources, OPTS);
  const { meta, dataset: ds } = readPart10(built.part10);

  it('writes a Comprehensive SR in a new series of the source study, with UTF-8 patient data', () => {
    expect(meta.MediaStorageSOPClassUID).toBe('1.2.840.10008.5.1.4.1.1.88.33');
    expect(meta.TransferSyntaxUID).toBe('1.2.840.10008.1.2.1');
    expect(ds.SOPClassUID).toBe('1.2.840.10008.5.1.4.1.1.88.33');
    expect(ds.SOPInstanceUID).toBe(built.sopInstanceUID);
    expect(ds.SpecificCharacterSet).toBe('ISO_IR 192');
    expect(ds.Modality).toBe('SR');
    expect(ds.StudyInstanceUID).toBe(STUDY);
    expect(ds.SeriesInstanceUID).toBe(built.seriesInstanceUID);
    expect(ds.SeriesInstanceUID).not.toBe(SERIES);
    expect(ds.PatientName[0].Alphabetic).toBe('Müller^Jürgen');
    expect([ds.PatientID, ds.PatientBirthDate, ds.PatientSex, ds.AccessionNumber, ds.StudyID]).toEqual(['PID-42', '19700101', 'M', 'ACC-7', 'S1']);
    expect(ds.ContentDate).toBe('20250506');
    expect(String(ds.ContentTime)).toMatch(/^070809/);
    expect(ds.CompletionFlag).toBe('COMPLETE');
    expect(ds.VerificationFlag).toBe('UNVERIFIED');
    expect(ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator).toBe('99SAXRANGE');
    expect(ds.ContentTemplateSequence[0]).toMatchObject({ MappingResource: 'DCMR', TemplateIdentifier: '1500' });
    expect(codeOf(ds.ConceptNameCodeSequence)).toBe('126000|DCM');
  });

  it('lists every referenced instance in CurrentRequestedProcedureEvidenceSequence', () => {
    const ev = ds.CurrentRequestedProcedureEvidenceSequence;
    expect(ev).toHaveLength(1);
    expect(ev[0].StudyInstanceUID).toBe(STUDY);
    const listed = ev[0].ReferencedSeriesSequence.flatMap((s: Item) => s.ReferencedSOPSequence.map((r: Item) => r.ReferencedSOPInstanceUID));
    const expected = (['ED', 'ES'] as const).flatMap((p) => Array.from({ length: N }, (_, i) => sop(p, i)));
    expect(new Set(listed)).toEqual(new Set(expected));
  });

  it('holds the observer context, procedure and an image library of all source slices', () => {
    expect(codeOf(child(ds, CODES.ObserverType).ConceptCodeSequence)).toBe('121007|DCM');
    expect(child(ds, CODES.DeviceObserverName).TextValue).toBe('sax-range');
    expect(child(ds, CODES.DeviceObserverModelName).TextValue).toBe('sax-range 0.1.0-test');
    expect(codeOf(child(ds, CODES.ProcedureReported).ConceptCodeSequence)).toBe('241620005|SCT');
    const groups = children(child(ds, CODES.ImageLibrary), CODES.ImageLibraryGroup);
    expect(groups).toHaveLength(2);
    expect(groups[0].ContentSequence.map((c: Item) => c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)).toEqual(
      Array.from({ length: N }, (_, i) => sop('ED', i)),
    );
  });

  it('has one measurement group per phase × slice with class, argmax, probabilities and the source image', () => {
    const groups = children(child(ds, CODES.ImagingMeasurements), CODES.MeasurementGroup);
    expect(groups).toHaveLength(2 * N + 2);
    let k = 0;
    for (const phase of ['ED', 'ES'] as const) {
      result.phases[phase].slices.forEach((s, i) => {
        const g = groups[k++];
        expect(g.ContentTemplateSequence[0].TemplateIdentifier).toBe('1501');
        expect(child(g, CODES.TrackingIdentifier).TextValue).toBe(`${phase} slice ${i + 1}/${N} (apex to base)`);
        expect(codeOf(child(g, CODES.Finding).ConceptCodeSequence)).toBe(key(SAX_CODES.SliceClassification));
        expect(codeOf(child(g, SAX_CODES.CardiacPhase).ConceptCodeSequence)).toBe(`${phase}|99SAXRANGE`);
        expect(child(g, CODES.AlgorithmName).TextValue).toBe('cbr-small');
        expect(child(g, CODES.AlgorithmVersion).TextValue).toBe('1.2.0');
        expect(codeOf(child(g, SAX_CODES.SliceClass).ConceptCodeSequence)).toBe(`${s.label}|99SAXRANGE`);
        expect(codeOf(child(g, SAX_CODES.SliceClassArgmax).ConceptCodeSequence)).toBe(`${s.predicted}|99SAXRANGE`);
        const pOap = child(g, SAX_CODES.ProbabilityOAP);
        expect(num(pOap)).toBeCloseTo(s.probabilities.OAP, 9);
        expect(codeOf(pOap.MeasuredValueSequence[0].MeasurementUnitsCodeSequence)).toBe('1|UCUM');
        expect(num(child(g, SAX_CODES.ProbabilityIN))).toBeCloseTo(s.probabilities.IN, 9);
        expect(num(child(g, SAX_CODES.ProbabilityOBS))).toBeCloseTo(s.probabilities.OBS, 9);
        expect(num(child(g, SAX_CODES.SliceNumber))).toBe(i);
        expect(num(child(g, SAX_CODES.SlicePosition))).toBeCloseTo(s.position, 6);
        const img = child(g, CODES.SourceOfMeasurement);
        expect(img.ValueType).toBe('IMAGE');
        expect(img.ReferencedSOPSequence[0]).toMatchObject({ ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: s.sopInstanceUID });
      });
    }
    // The fixture's slice 3 at ED: argmax OBS, decoded IN.
    expect(result.phases.ED.slices[3]).toMatchObject({ predicted: 'OBS', label: 'IN' });
  });

  it('has one IN range summary group per phase', () => {
    const groups = children(child(ds, CODES.ImagingMeasurements), CODES.MeasurementGroup).slice(2 * N);
    for (const [g, phase] of [
      [groups[0], 'ED'],
      [groups[1], 'ES'],
    ] as const) {
      const r = result.phases[phase].inRange;
      expect(codeOf(child(g, CODES.Finding).ConceptCodeSequence)).toBe(key(SAX_CODES.InRange));
      expect(num(child(g, SAX_CODES.FirstInSlice))).toBe(r.first);
      expect(num(child(g, SAX_CODES.LastInSlice))).toBe(r.last);
      expect(num(child(g, SAX_CODES.InSliceCount))).toBe(r.count);
      expect(num(child(g, SAX_CODES.SliceCount))).toBe(N);
      expect(child(g, SAX_CODES.FirstInImage).ReferencedSOPSequence[0].ReferencedSOPInstanceUID).toBe(r.firstSopInstanceUID);
      expect(child(g, SAX_CODES.LastInImage).ReferencedSOPSequence[0].ReferencedSOPInstanceUID).toBe(r.lastSopInstanceUID);
      expect(child(g, SAX_CODES.RangeSummary).TextValue).toContain(`IN slices ${r.first + 1} to ${r.last + 1} of ${N}`);
    }
    expect(result.phases.ED.inRange).toMatchObject({ first: 2, last: 4, count: 3 });
  });

  it('references the frame of a multi-frame source and lists the instance once in the evidence', () => {
    const mf = makeSources();
    const imgs = (p: 'ED' | 'ES') => mf.images[p].map((im, i) => ({ ...im, frameNumber: i + 1 }));
    const out = readPart10(buildSr(result, { ...mf, images: { ED: imgs('ED'), ES: imgs('ES') } }, OPTS).part10).dataset;
    const g = children(child(out, CODES.ImagingMeasurements), CODES.MeasurementGroup)[3];
    expect(child(g, CODES.SourceOfMeasurement).ReferencedSOPSequence[0].ReferencedFrameNumber).toBe(4);
  });
});

describe('buildKos', () => {
  const result = makeResult();
  const sources = makeSources();

  it('lists the IN slices of the phase, apex to base, under (113000, DCM, "Of Interest")', () => {
    for (const phase of ['ED', 'ES'] as const) {
      const ds = readPart10(buildKos(result, sources, phase, OPTS).part10).dataset;
      const r = result.phases[phase].inRange;
      expect(ds.SOPClassUID).toBe('1.2.840.10008.5.1.4.1.1.88.59');
      expect(ds.Modality).toBe('KO');
      expect(ds.SpecificCharacterSet).toBe('ISO_IR 192');
      expect(codeOf(ds.ConceptNameCodeSequence)).toBe('113000|DCM');
      expect(ds.ContentTemplateSequence[0].TemplateIdentifier).toBe('2010');
      expect(child(ds, CODES.KeyObjectDescription).TextValue).toBe(
        `IN slices at ${phase} (apex to base): ${r.first + 1}-${r.last + 1} of ${N} (${r.count} slices)`,
      );
      const refs = children(ds)
        .filter((c) => c.ValueType === 'IMAGE')
        .map((c) => c.ReferencedSOPSequence[0].ReferencedSOPInstanceUID);
      const inSops = result.phases[phase].slices.filter((s) => s.label === 'IN').map((s) => s.sopInstanceUID);
      expect(refs).toEqual(inSops);
      const ev = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence.map(
        (x: Item) => x.ReferencedSOPInstanceUID,
      );
      expect(ev).toEqual(inSops);
    }
  });
});

describe('buildSliceSc', () => {
  const result = makeResult();
  const sources = makeSources();

  it('writes an RGB secondary capture that references its source slice', () => {
    const built = buildSliceSc(result, sources, CAMS, 'ED', 2, OPTS);
    const ds = readPart10(built.part10).dataset;
    expect(ds.SOPClassUID).toBe('1.2.840.10008.5.1.4.1.1.7');
    expect(ds.Modality).toBe('OT');
    expect(ds.ConversionType).toBe('WSD');
    expect(ds.BurnedInAnnotation).toBe('YES');
    expect(ds.SpecificCharacterSet).toBe('ISO_IR 192');
    expect(ds.ImageType).toEqual(['DERIVED', 'SECONDARY']);
    expect([ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration]).toEqual([3, 'RGB', 0]);
    expect([ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation]).toEqual([8, 8, 7, 0]);
    expect(ds.SourceImageSequence).toHaveLength(1);
    expect(ds.SourceImageSequence[0]).toMatchObject({ ReferencedSOPClassUID: MR, ReferencedSOPInstanceUID: sop('ED', 2) });
    expect(ds.InstanceNumber).toBe(3);
    expect(ds.StudyInstanceUID).toBe(STUDY);
    // 64 × 80 is magnified 4× (smaller edge ≥ 256).
    expect([ds.Rows, ds.Columns]).toEqual([256, 320]);
    const px = new Uint8Array(ds.PixelData[0]);
    expect(px.length).toBe(256 * 320 * 3);
    // The class badge (IN, green) at the top left.
    const at = (x: number, y: number) => Array.from(px.subarray((y * 320 + x) * 3, (y * 320 + x) * 3 + 3));
    expect(at(4, 4)).toEqual([...LABEL_COLOURS.IN]);
    // Outside the CAM disc and the text the image is grey; at the disc centre the jet colour shows (red end).
    const grey = at(300, 128);
    expect(grey[0]).toBe(grey[1]);
    expect(grey[1]).toBe(grey[2]);
    const hot = at(160, 128);
    expect(hot[0]).toBeGreaterThan(hot[2]);
  });

  it('renders without an overlay when no CAMs are given', () => {
    const ds = readPart10(buildSliceSc(result, sources, undefined, 'ES', 0, OPTS).part10).dataset;
    const px = new Uint8Array(ds.PixelData[0]);
    const i = (128 * 320 + 160) * 3;
    expect(px[i]).toBe(px[i + 1]);
    expect(ds.DerivationDescription).not.toContain('Grad-CAM');
  });
});

describe('buildMontageSc', () => {
  it('tiles every slice apex to base with class-coloured frames and references them all', () => {
    const result = makeResult();
    const ds = readPart10(buildMontageSc(result, makeSources(), 'ED', OPTS).part10).dataset;
    expect(ds.SourceImageSequence.map((s: Item) => s.ReferencedSOPInstanceUID)).toEqual(Array.from({ length: N }, (_, i) => sop('ED', i)));
    // 6 slices: 3 columns × 2 rows of 160-pixel tiles, 4-pixel gaps; header 32, footer 24.
    expect([ds.Columns, ds.Rows]).toEqual([3 * 160 + 4 * 4, 32 + 2 * 160 + 3 * 4 + 24]);
    const px = new Uint8Array(ds.PixelData[0]);
    const W = ds.Columns as number;
    const at = (x: number, y: number) => Array.from(px.subarray((y * W + x) * 3, (y * W + x) * 3 + 3));
    // Left border of each tile, half-way down: its label's colour.
    result.phases.ED.slices.forEach((s, i) => {
      const tx = 4 + (i % 3) * 164;
      const ty = 32 + 4 + Math.floor(i / 3) * 164;
      expect(at(tx + 1, ty + 80)).toEqual([...LABEL_COLOURS[s.label]]);
    });
  });
});

describe('buildOutputs', () => {
  it('builds 1 SR, 2 × slices SCs, 2 montages and 2 KOS with distinct deterministic UIDs', () => {
    const result = makeResult();
    const a = buildOutputs(result, makeSources(), CAMS, OPTS);
    expect(a.map((o) => o.kind)).toEqual(['sr', ...Array(2 * N).fill('sc'), 'sc', 'sc', 'kos', 'kos']);
    const uids = a.map((o) => o.sopInstanceUID);
    expect(new Set(uids).size).toBe(a.length);
    for (const u of uids) expect(u).toMatch(/^2\.25\.\d+$/);
    expect(new Set(a.map((o) => o.seriesInstanceUID)).size).toBe(5);
    // Same input, another clock: the same UIDs (a retried export replaces instead of duplicating).
    const b = buildOutputs(result, makeSources(), CAMS, { ...OPTS, clock: () => new Date(2030, 0, 1) });
    expect(b.map((o) => o.sopInstanceUID)).toEqual(uids);
    expect(b.map((o) => o.seriesInstanceUID)).toEqual(a.map((o) => o.seriesInstanceUID));
    // Another model: other UIDs.
    const c = buildOutputs(makeResult('c'.repeat(64)), makeSources(), CAMS, OPTS);
    for (const u of c.map((o) => o.sopInstanceUID)) expect(uids).not.toContain(u);
    // The Part 10 bytes carry the UIDs they announce.
    for (const o of a) expect(readPart10(o.part10).dataset.SOPInstanceUID).toBe(o.sopInstanceUID);
    expect(a[1].description).toBe('SC Grad-CAM ED slice 1/6 (OAP)');
  });
});

describe('input checks', () => {
  const result = makeResult();
  const expectInputError = (fn: () => unknown, pattern: RegExp) => {
    let caught: unknown;
    try {
      fn();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SrInputError);
    expect((caught as Error).message).toMatch(pattern);
    expect((caught as SrInputError).retryable).toBe(false);
  };

  it('refuses sources of another study', () => {
    const s = makeSources();
    expectInputError(() => buildSr(result, { ...s, patientStudy: { ...s.patientStudy, StudyInstanceUID: '1.2.3' } }, OPTS), /study/);
  });
  it('refuses a source image that is not the slice', () => {
    const s = makeSources();
    const ED = [...s.images.ED];
    ED[3] = { ...ED[3], sopInstanceUID: '1.2.3.4' };
    expectInputError(() => buildSr(result, { ...s, images: { ...s.images, ED } }, OPTS), /ED\[3\]\.sopInstanceUID/);
  });
  it('refuses a slice count that does not match', () => {
    const s = makeSources();
    expectInputError(() => buildKos(result, { ...s, images: { ...s.images, ES: s.images.ES.slice(1) } }, 'ES', OPTS), /ES has 5 entries/);
  });
  it('refuses a series that is not one of the stack', () => {
    expectInputError(() => buildSr(result, makeSources({ seriesInstanceUID: '1.2.9' }), OPTS), /not one of the stack's series/);
  });
  it('refuses pixels of the wrong size or missing pixels for an SC', () => {
    expectInputError(() => buildSliceSc(result, makeSources({ pixels: new Float32Array(10) }), CAMS, 'ED', 0, OPTS), /pixels has 10 values/);
    expectInputError(() => buildMontageSc(result, makeSources({ pixels: undefined }), 'ED', OPTS), /pixels is missing/);
  });
  it('refuses CAMs of the wrong size, count or range', () => {
    const s = makeSources();
    expectInputError(() => buildSliceSc(result, s, { ED: CAMS.ED.slice(1) }, 'ED', 0, OPTS), /cams\.ED has 5 maps/);
    expectInputError(() => buildSliceSc(result, s, { ED: CAMS.ED.map(() => new Float32Array(7)) }, 'ED', 0, OPTS), /7 values/);
    const bad = cam();
    bad[5] = Number.NaN;
    expectInputError(() => buildSliceSc(result, s, new Map([['ED', CAMS.ED.map(() => bad)]]), 'ED', 0, OPTS), /outside \[0, 1\]/);
  });
  it('refuses a slice position or phase out of range', () => {
    expectInputError(() => buildSliceSc(result, makeSources(), CAMS, 'ED', N, OPTS), /slice must be an integer/);
    expectInputError(() => buildKos(result, makeSources(), 'XX' as 'ED', OPTS), /phase must be/);
  });
  it('refuses a result document that breaks the schema', () => {
    const broken = structuredClone(result);
    broken.phases.ED.slices[0].label = 'IN';
    expectInputError(() => buildSr(broken, makeSources(), OPTS), /phases\.ED\.slices\[0\]\.label/);
  });
  it('refuses missing or bad options', () => {
    expectInputError(() => buildSr(result, makeSources(), {} as BuildOptions), /softwareVersion/);
    expectInputError(() => buildSr(result, makeSources(), { ...OPTS, seriesNumberBase: 0 }), /seriesNumberBase/);
    expectInputError(() => buildSr(result, makeSources(), { ...OPTS, montageTileSize: 63 }), /montageTileSize/);
  });
});
