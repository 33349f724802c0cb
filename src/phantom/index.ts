/**
 * Synthetic cine short-axis studies with known truth (tests, demo, training data).
 *
 * Conventions (see docs in the report / README):
 * - Slice indices in the API and in truth.json are apex → base (index 0 = most apical).
 * - The slice normal (row × column cosines) points from apex to base, so SliceLocation (= IPP · normal)
 *   increases from apex to base; the LV long axis (base → apex) is −normal ≈ (+1, −1, −1)/√3 (LPS).
 * - Slices are acquired and numbered base → apex, as a short-axis stack planned from the mitral plane:
 *   acquisition index 0 = most basal slice. `single-series`: one series, InstanceNumber =
 *   acquisitionIndex × phases + phase + 1. `series-per-slice`: SeriesNumber = first + acquisitionIndex,
 *   InstanceNumber = phase + 1. Phase 0 is ED (smallest TriggerTime).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TransferSyntax } from '../dicom/uids.js';
import { createPhantomModel, PhantomModel, renderPhantomSlice, resolveModelOptions, type Label, type Vec3 } from './anatomy.js';
import {
  buildMrDataset,
  encodePart10,
  ensureCodecs,
  instanceNumber,
  isCompressed,
  PHANTOM_TRANSFER_SYNTAXES,
  seriesInstanceUID,
  seriesNumber,
  sopInstanceUID,
  toPixels12,
  type StudyContext,
} from './dicom.js';
import { hashSeed } from './prng.js';
import { uidFromName } from '../dicom/uid.js';

export type { Label, Vec3, PhantomSliceImage, HeartParams, Intensities, PhantomModelOptions } from './anatomy.js';
export { createPhantomModel, PhantomModel, renderPhantomSlice } from './anatomy.js';
export { PHANTOM_TRANSFER_SYNTAXES, PHANTOM_PATIENT_NAME, PHANTOM_MANUFACTURER } from './dicom.js';
export { uidFromName } from '../dicom/uid.js';

export type PhantomLayout = 'single-series' | 'series-per-slice';
export const PHANTOM_LAYOUTS: readonly PhantomLayout[] = ['single-series', 'series-per-slice'];

export interface PhantomOptions {
  /** Unsigned 32-bit seed (default 1). PatientID is `PHANTOM-<seed>`. */
  seed?: number;
  /** Slice positions, 6–24 (default 12). */
  slices?: number;
  /** Cardiac phases, 20–30 (default 25). */
  phases?: number;
  layout?: PhantomLayout;
  /** Default Explicit VR Little Endian; see PHANTOM_TRANSFER_SYNTAXES (all lossless). */
  transferSyntax?: string;
  /** Default 256. */
  rows?: number;
  /** Default = rows. */
  columns?: number;
}

export interface PhantomTruth {
  studyInstanceUID: string;
  slices: number;
  phases: number;
  /** Phase index of ED (always 0). */
  ed: number;
  /** Phase index of ES. */
  es: number;
  /** Truth labels, apex → base. */
  labels: { ED: Label[]; ES: Label[] };
  /** SOP Instance UIDs of the ED and ES images, apex → base. */
  sopInstanceUIDs: { ED: string[]; ES: string[] };
  // Extras.
  seed: number;
  layout: PhantomLayout;
  transferSyntaxUID: string;
  rows: number;
  columns: number;
  /** [row spacing, column spacing] (mm). */
  pixelSpacing: [number, number];
  sliceSpacing: number;
  sliceThickness: number;
  /** The order of every per-slice list here. */
  order: 'apex-to-base';
  /** Slices were acquired (numbered) base → apex. */
  acquisitionOrder: 'base-to-apex';
  /** SliceLocation (= IPP · normal, mm) of each slice, apex → base: strictly increasing. */
  positions: number[];
  /** ImagePositionPatient of each slice, apex → base. */
  imagePositions: Vec3[];
  imageOrientationPatient: number[];
  /** Row × column cosines: points from apex to base. */
  normal: Vec3;
  /** LV long axis, base → apex (= −normal). */
  longAxis: Vec3;
  /** Series Instance UID holding each slice, apex → base. */
  seriesInstanceUIDs: string[];
  frameOfReferenceUID: string;
  triggerTimes: number[];
  rrMs: number;
  /** Model LV cavity cross-section area (mm²) per slice, apex → base. */
  lvCavityAreaMm2: { ED: number[]; ES: number[] };
}

export interface PhantomFile {
  /** Path relative to the study folder, '/'-separated (e.g. `series-0020/IM-00001.dcm`). */
  name: string;
  data: Uint8Array;
}

/** Validated options with defaults filled in. Throws RangeError naming the bad option. */
export function resolvePhantomOptions(opts: PhantomOptions = {}): Required<PhantomOptions> {
  const model = resolveModelOptions(opts);
  const layout = opts.layout ?? 'single-series';
  if (!PHANTOM_LAYOUTS.includes(layout)) throw new RangeError(`layout must be one of ${PHANTOM_LAYOUTS.join(', ')}, got ${layout}`);
  const transferSyntax = opts.transferSyntax ?? TransferSyntax.ExplicitVRLittleEndian;
  if (!PHANTOM_TRANSFER_SYNTAXES.includes(transferSyntax)) {
    throw new RangeError(`transferSyntax must be one of ${PHANTOM_TRANSFER_SYNTAXES.join(', ')}, got ${transferSyntax}`);
  }
  return { ...model, layout, transferSyntax };
}

const FIRST_SERIES_NUMBER = 20;

function studyContext(o: Required<PhantomOptions>): StudyContext {
  const key = `phantom/v1/seed=${o.seed}/slices=${o.slices}/phases=${o.phases}/rows=${o.rows}/columns=${o.columns}/layout=${o.layout}/ts=${o.transferSyntax}`;
  const day = new Date(Date.UTC(2024, 0, 1) + (o.seed % 366) * 86400000);
  const studyDate = `${day.getUTCFullYear()}${String(day.getUTCMonth() + 1).padStart(2, '0')}${String(day.getUTCDate()).padStart(2, '0')}`;
  return {
    key,
    studyInstanceUID: uidFromName(`${key}/study`),
    frameOfReferenceUID: uidFromName(`${key}/frame-of-reference`),
    seriesPerSlice: o.layout === 'series-per-slice',
    firstSeriesNumber: FIRST_SERIES_NUMBER,
    studyDate,
    studyStart: 8 * 3600 + (hashSeed(o.seed, 0x74696d65) % (9 * 3600)),
  };
}

function fileName(ctx: StudyContext, model: PhantomModel, slice: number, phase: number): string {
  const series = String(seriesNumber(ctx, model, slice)).padStart(4, '0');
  const instance = String(instanceNumber(ctx, model, slice, phase)).padStart(5, '0');
  return `series-${series}/IM-${instance}.dcm`;
}

function buildTruth(model: PhantomModel, ctx: StudyContext, o: Required<PhantomOptions>): PhantomTruth {
  const all = Array.from({ length: model.slices }, (_, k) => k);
  const { ed, es } = model;
  return {
    studyInstanceUID: ctx.studyInstanceUID,
    slices: model.slices,
    phases: model.phases,
    ed,
    es,
    labels: { ED: all.map((k) => model.label(k, ed)), ES: all.map((k) => model.label(k, es)) },
    sopInstanceUIDs: { ED: all.map((k) => sopInstanceUID(ctx, k, ed)), ES: all.map((k) => sopInstanceUID(ctx, k, es)) },
    seed: o.seed,
    layout: o.layout,
    transferSyntaxUID: o.transferSyntax,
    rows: model.rows,
    columns: model.columns,
    pixelSpacing: [model.pixelSpacing, model.pixelSpacing],
    sliceSpacing: model.sliceSpacing,
    sliceThickness: model.sliceThickness,
    order: 'apex-to-base',
    acquisitionOrder: 'base-to-apex',
    positions: [...model.sliceLocations],
    imagePositions: model.imagePositions.map((p) => [...p] as Vec3),
    imageOrientationPatient: [...model.rowCosines, ...model.columnCosines],
    normal: [...model.normal] as Vec3,
    longAxis: [...model.longAxis] as Vec3,
    seriesInstanceUIDs: all.map((k) => seriesInstanceUID(ctx, model, k)),
    frameOfReferenceUID: ctx.frameOfReferenceUID,
    triggerTimes: [...model.triggerTimes],
    rrMs: model.rrMs,
    lvCavityAreaMm2: {
      ED: all.map((k) => Math.round(model.lvCavityArea(k, ed) * 100) / 100),
      ES: all.map((k) => Math.round(model.lvCavityArea(k, es) * 100) / 100),
    },
  };
}

/** Pure: the study in memory: Part 10 files (name relative to the study folder, bytes) and truth. */
export async function generatePhantomStudy(opts: PhantomOptions = {}): Promise<{ files: PhantomFile[]; truth: PhantomTruth }> {
  const o = resolvePhantomOptions(opts);
  if (isCompressed(o.transferSyntax)) await ensureCodecs();
  const model = createPhantomModel(o);
  const ctx = studyContext(o);
  const files: Array<PhantomFile & { order: number }> = [];
  for (let slice = 0; slice < model.slices; slice++) {
    for (let phase = 0; phase < model.phases; phase++) {
      const pixels = toPixels12(model.render(slice, phase));
      const dataset = buildMrDataset(model, ctx, slice, phase, pixels);
      files.push({
        name: fileName(ctx, model, slice, phase),
        data: encodePart10(dataset, o.transferSyntax),
        order: seriesNumber(ctx, model, slice) * 100000 + instanceNumber(ctx, model, slice, phase),
      });
    }
  }
  files.sort((a, b) => a.order - b.order);
  return { files: files.map(({ name, data }) => ({ name, data })), truth: buildTruth(model, ctx, o) };
}

/** Writes files + truth.json under outDir; returns truth and the file paths (outDir-joined, in series/instance order). */
export async function writePhantomStudy(outDir: string, opts: PhantomOptions = {}): Promise<{ truth: PhantomTruth; paths: string[] }> {
  const { files, truth } = await generatePhantomStudy(opts);
  const paths: string[] = [];
  const dirs = new Set(files.map((f) => dirname(join(outDir, f.name))));
  for (const dir of dirs) await mkdir(dir, { recursive: true });
  for (const f of files) {
    const path = join(outDir, f.name);
    await writeFile(path, f.data);
    paths.push(path);
  }
  await writeFile(join(outDir, 'truth.json'), `${JSON.stringify(truth, null, 2)}\n`);
  return { truth, paths };
}

/** Parses a dataset spec `phantom:COUNT[:SEED]` (SEED default 1). Throws on anything else. */
export function parsePhantomSpec(spec: string): { count: number; seed: number } {
  const m = /^phantom:(\d+)(?::(\d+))?$/.exec(spec.trim());
  if (!m) throw new Error(`invalid phantom dataset spec '${spec}': expected phantom:COUNT[:SEED]`);
  const count = Number(m[1]);
  const seed = m[2] === undefined ? 1 : Number(m[2]);
  if (!Number.isSafeInteger(count) || count < 1) throw new Error(`invalid phantom dataset spec '${spec}': COUNT must be ≥ 1`);
  if (!Number.isSafeInteger(seed) || seed > 0xffffffff) throw new Error(`invalid phantom dataset spec '${spec}': SEED must be in 0..4294967295`);
  return { count, seed };
}

/** One phase of a subject: images apex → base with their labels. */
export interface PhantomStack {
  phase: 'ED' | 'ES';
  phaseIndex: number;
  triggerTime: number;
  /** Rendered slices (rows × columns, 12-bit intensity scale), apex → base. */
  images: Float32Array[];
  labels: Label[];
  /** SliceLocation (mm along the normal), apex → base. */
  positions: number[];
  rows: number;
  columns: number;
  /** [row spacing, column spacing] (mm). */
  pixelSpacing: [number, number];
}

export interface PhantomSubject {
  /** `phantom-<seed>`; the same study as DICOM: `sax-range phantom --seed <seed> --slices <slices>`. */
  id: string;
  /** The subject's own model seed (derived from the dataset seed and the index). */
  seed: number;
  index: number;
  slices: number;
  phases: number;
  ed: number;
  es: number;
  sliceSpacing: number;
  ED: PhantomStack;
  ES: PhantomStack;
}

export interface PhantomSubjectOptions {
  /** Fixed slice count; default: varies per subject in 9–15. */
  slices?: number;
  /** Default 25. */
  phases?: number;
  /** Default 256. */
  rows?: number;
  columns?: number;
}

/** The model seed of subject `index` of dataset seed `seed` (independent streams; no overlap between dataset seeds). */
export function phantomSubjectSeed(seed: number, index: number): number {
  return hashSeed(seed, index, 0x7375626a);
}

/**
 * Subjects of the dataset `phantom:COUNT:SEED`, rendered on the fly: each has its ED and ES stacks
 * (images apex → base, labels, positions, pixel spacing). Deterministic for (count, seed, opts).
 */
export function* phantomSubjects(count: number, seed: number, opts: PhantomSubjectOptions = {}): Generator<PhantomSubject> {
  for (let index = 0; index < count; index++) {
    const subjectSeed = phantomSubjectSeed(seed, index);
    const slices = opts.slices ?? 9 + (hashSeed(subjectSeed, 0x736c6963) % 7);
    const model = createPhantomModel({ seed: subjectSeed, slices, phases: opts.phases, rows: opts.rows, columns: opts.columns });
    const stack = (phase: 'ED' | 'ES'): PhantomStack => {
      const phaseIndex = phase === 'ED' ? model.ed : model.es;
      const images: Float32Array[] = [];
      const labels: Label[] = [];
      for (let k = 0; k < model.slices; k++) {
        const img = renderPhantomSlice(model, k, phaseIndex);
        images.push(img.pixels);
        labels.push(img.label);
      }
      return {
        phase,
        phaseIndex,
        triggerTime: model.triggerTimes[phaseIndex],
        images,
        labels,
        positions: [...model.sliceLocations],
        rows: model.rows,
        columns: model.columns,
        pixelSpacing: [model.pixelSpacing, model.pixelSpacing],
      };
    };
    yield {
      id: `phantom-${subjectSeed}`,
      seed: subjectSeed,
      index,
      slices: model.slices,
      phases: model.phases,
      ed: model.ed,
      es: model.es,
      sliceSpacing: model.sliceSpacing,
      ED: stack('ED'),
      ES: stack('ES'),
    };
  }
}
