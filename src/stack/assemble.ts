import { createHash } from 'node:crypto';
import type { InstanceMeta } from '../dicom/meta.js';
import { ACCEPTED_SOP_CLASSES } from '../dicom/uids.js';
import { angleDeg, dot, orientationFrame, type Vec3 } from './geometry.js';
import type {
  AssemblyResult,
  CineStack,
  FrameRef,
  PhaseOrderMethod,
  SetAside,
  SetAsideCode,
  StackProblem,
  StackSlice,
} from './types.js';

export interface AssembleOptions {
  /** Largest angle (degrees) between row (and column) directions of images in one stack. Default 2. */
  orientationToleranceDeg?: number;
  /** Images whose positions along the normal differ by at most this (mm) are one slice. Default 0.5. */
  positionToleranceMm?: number;
  /** A gap larger than this × the nominal spacing is reported as missing slices. Default 1.5. */
  missingSliceFactor?: number;
  /** Fewer distinct slice positions than this is not a short-axis stack. Default 3. */
  minSlices?: number;
}

const DEFAULTS: Required<AssembleOptions> = {
  orientationToleranceDeg: 2,
  positionToleranceMm: 0.5,
  missingSliceFactor: 1.5,
  minSlices: 3,
};

/** A usable frame with its geometry. */
interface Frame {
  meta: InstanceMeta;
  row: Vec3;
  col: Vec3;
  normal: Vec3;
}

/** Frames sharing study, FoR, orientation, matrix and pixel spacing: candidates for one stack. */
interface OrientationClass {
  studyInstanceUID: string;
  frameOfReferenceUID?: string;
  rows: number;
  columns: number;
  pixelSpacing?: number[];
  iop: number[];
  row: Vec3;
  col: Vec3;
  normal: Vec3;
  frames: Frame[];
}

const cmpNum = (a: number | undefined, b: number | undefined): number =>
  (a ?? Number.POSITIVE_INFINITY) === (b ?? Number.POSITIVE_INFINITY) ? 0 : (a ?? Infinity) < (b ?? Infinity) ? -1 : 1;
const cmpStr = (a: string | undefined, b: string | undefined): number => ((a ?? '') < (b ?? '') ? -1 : (a ?? '') > (b ?? '') ? 1 : 0);

/** A total order on metas, so that the result does not depend on input order. */
function compareMeta(a: InstanceMeta, b: InstanceMeta): number {
  return (
    cmpStr(a.studyInstanceUID, b.studyInstanceUID) ||
    cmpNum(a.seriesNumber, b.seriesNumber) ||
    cmpStr(a.seriesInstanceUID, b.seriesInstanceUID) ||
    cmpNum(a.instanceNumber, b.instanceNumber) ||
    cmpStr(a.sopInstanceUID, b.sopInstanceUID) ||
    cmpNum(a.frame, b.frame) ||
    cmpStr(a.path, b.path)
  );
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function sameSpacing(a?: number[], b?: number[]): boolean {
  if (!a || !b) return !a && !b;
  return Math.abs(a[0]! - b[0]!) < 1e-3 && Math.abs(a[1]! - b[1]!) < 1e-3;
}

/** Single-linkage clustering of positions: sorted ascending, a new cluster where the gap exceeds tol. */
function clusterByPosition<T>(items: T[], pos: (t: T) => number, tol: number): T[][] {
  const sorted = items
    .map((t, i) => ({ t, d: pos(t), i }))
    .sort((a, b) => a.d - b.d || a.i - b.i);
  const clusters: T[][] = [];
  let prev = Number.NEGATIVE_INFINITY;
  for (const { t, d } of sorted) {
    if (clusters.length === 0 || d - prev > tol) clusters.push([]);
    clusters[clusters.length - 1]!.push(t);
    prev = d;
  }
  return clusters;
}

class SetAsideCollector {
  private readonly map = new Map<string, { seriesInstanceUID: string; sops: Set<string>; code: SetAsideCode; reason: string }>();

  add(metas: InstanceMeta[], code: SetAsideCode, reason: string | ((first: InstanceMeta) => string)): void {
    for (const m of metas) {
      const key = `${m.seriesInstanceUID}|${code}`;
      let entry = this.map.get(key);
      if (!entry) {
        entry = {
          seriesInstanceUID: m.seriesInstanceUID,
          sops: new Set(),
          code,
          reason: typeof reason === 'string' ? reason : reason(m),
        };
        this.map.set(key, entry);
      }
      entry.sops.add(m.sopInstanceUID);
    }
  }

  list(): SetAside[] {
    return [...this.map.values()]
      .map((e) => ({ seriesInstanceUID: e.seriesInstanceUID, sopInstanceUIDs: [...e.sops].sort(), code: e.code, reason: e.reason }))
      .sort((a, b) => cmpStr(a.seriesInstanceUID, b.seriesInstanceUID) || cmpStr(a.code, b.code));
  }
}

function seriesLabel(m: InstanceMeta): string {
  return `series ${m.seriesNumber ?? '?'}${m.seriesDescription ? ` "${m.seriesDescription}"` : ''} (${m.seriesInstanceUID})`;
}

/** Checks one frame; returns the reason it cannot be used, or its geometry. */
function checkFrame(m: InstanceMeta): { code: SetAsideCode; reason: string } | Frame {
  if (m.modality !== undefined && m.modality.toUpperCase() !== 'MR') {
    return { code: 'not-mr', reason: `Modality ${m.modality} is not MR` };
  }
  if (!ACCEPTED_SOP_CLASSES.includes(m.sopClassUID)) {
    return { code: 'not-mr', reason: `SOP class ${m.sopClassUID} is not an MR image storage class` };
  }
  if ((m.imageType ?? []).some((t) => /LOCALI[SZ]ER|SCOUT/i.test(t))) {
    return { code: 'localizer', reason: `ImageType ${(m.imageType ?? []).join('\\')} marks a localiser` };
  }
  if (!m.imageOrientationPatient || !m.imagePositionPatient) {
    const missing = [!m.imageOrientationPatient && 'ImageOrientationPatient', !m.imagePositionPatient && 'ImagePositionPatient'];
    return { code: 'missing-geometry', reason: `no ${missing.filter(Boolean).join(' or ')}: cannot place the image in a stack` };
  }
  const f = orientationFrame(m.imageOrientationPatient);
  if (!f) {
    return {
      code: 'invalid-geometry',
      reason: `ImageOrientationPatient ${m.imageOrientationPatient.join('\\')} is not two orthogonal unit vectors`,
    };
  }
  return { meta: m, ...f };
}

function matchesClass(c: OrientationClass, f: Frame, tolDeg: number): boolean {
  const m = f.meta;
  return (
    c.studyInstanceUID === m.studyInstanceUID &&
    c.frameOfReferenceUID === m.frameOfReferenceUID &&
    c.rows === m.rows &&
    c.columns === m.columns &&
    sameSpacing(c.pixelSpacing, m.pixelSpacing) &&
    angleDeg(c.row, f.row) <= tolDeg &&
    angleDeg(c.col, f.col) <= tolDeg
  );
}

function phaseOrderOf(frames: InstanceMeta[]): PhaseOrderMethod {
  if (frames.every((m) => m.triggerTime !== undefined)) return 'trigger-time';
  if (frames.every((m) => m.instanceNumber !== undefined)) return 'instance-number';
  return 'frame-order';
}

function phaseComparator(method: PhaseOrderMethod): (a: InstanceMeta, b: InstanceMeta) => number {
  const tail = (a: InstanceMeta, b: InstanceMeta) =>
    cmpNum(a.temporalPositionIdentifier, b.temporalPositionIdentifier) ||
    cmpNum(a.instanceNumber, b.instanceNumber) ||
    cmpNum(a.frame, b.frame) ||
    cmpStr(a.sopInstanceUID, b.sopInstanceUID);
  if (method === 'trigger-time') return (a, b) => cmpNum(a.triggerTime, b.triggerTime) || tail(a, b);
  if (method === 'instance-number')
    return (a, b) => cmpNum(a.instanceNumber, b.instanceNumber) || cmpNum(a.frame, b.frame) || tail(a, b);
  return (a, b) =>
    cmpNum(a.temporalPositionIdentifier, b.temporalPositionIdentifier) || cmpNum(a.frame, b.frame) || tail(a, b);
}

function frameRef(m: InstanceMeta): FrameRef {
  const ref: FrameRef = { sopInstanceUID: m.sopInstanceUID, seriesInstanceUID: m.seriesInstanceUID, path: m.path };
  if (m.frame !== undefined) ref.frame = m.frame;
  if (m.triggerTime !== undefined) ref.triggerTime = m.triggerTime;
  if (m.instanceNumber !== undefined) ref.instanceNumber = m.instanceNumber;
  return ref;
}

/** Series newest first: larger SeriesNumber wins, then the larger UID (deterministic). */
function newerSeries(a: InstanceMeta, b: InstanceMeta): number {
  return cmpNum(b.seriesNumber ?? -1, a.seriesNumber ?? -1) || cmpStr(b.seriesInstanceUID, a.seriesInstanceUID);
}

function stackIdOf(c: OrientationClass, firstSeries: string): string {
  const key = [c.studyInstanceUID, c.frameOfReferenceUID ?? '', c.iop.map((v) => v.toFixed(4)).join('\\'), firstSeries].join('|');
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

function formatMm(x: number): string {
  return `${round(x, 1)} mm`;
}

function buildStack(c: OrientationClass, frames: Frame[], opts: Required<AssembleOptions>, aside: SetAsideCollector): CineStack {
  const problems: StackProblem[] = [];
  const pos = (f: Frame) => dot(c.normal, f.meta.imagePositionPatient!);
  const clusters = clusterByPosition(frames, pos, opts.positionToleranceMm);

  // Duplicate positions from several series: keep the newest series at that position, set the others aside.
  const kept: Frame[][] = [];
  const duplicateSlices: number[] = [];
  const duplicateSeries = new Set<string>();
  clusters.forEach((cl, i) => {
    const series = new Map<string, Frame[]>();
    for (const f of cl) {
      const list = series.get(f.meta.seriesInstanceUID) ?? [];
      list.push(f);
      series.set(f.meta.seriesInstanceUID, list);
    }
    if (series.size === 1) {
      kept.push(cl);
      return;
    }
    const ordered = [...series.values()].sort((a, b) => newerSeries(a[0]!.meta, b[0]!.meta));
    const winner = ordered[0]!;
    kept.push(winner);
    duplicateSlices.push(i);
    for (const loser of ordered.slice(1)) {
      duplicateSeries.add(loser[0]!.meta.seriesInstanceUID);
      duplicateSeries.add(winner[0]!.meta.seriesInstanceUID);
      aside.add(
        loser.map((f) => f.meta),
        'superseded',
        `slice at ${formatMm(median(cl.map(pos)))} along the normal was acquired again in the newer ${seriesLabel(winner[0]!.meta)}`,
      );
    }
  });
  if (duplicateSlices.length) {
    problems.push({
      code: 'duplicate-position',
      message:
        `${duplicateSlices.length} slice position(s) were acquired in several series; the newest series (highest ` +
        `SeriesNumber) was kept at each, the others set aside as superseded`,
      sliceIndices: duplicateSlices,
      seriesInstanceUIDs: [...duplicateSeries].sort(),
    });
  }

  const allMetas = kept.flat().map((f) => f.meta);
  const phaseOrder = phaseOrderOf(allMetas);
  if (phaseOrder !== 'trigger-time') {
    problems.push({
      code: 'no-trigger-time',
      message:
        phaseOrder === 'instance-number'
          ? 'TriggerTime missing on some images: phases ordered by InstanceNumber'
          : 'TriggerTime and InstanceNumber missing on some images: phases ordered by temporal position / frame number',
    });
  }
  const cmp = phaseComparator(phaseOrder);

  const slices: StackSlice[] = kept.map((cl, index) => {
    const metas = cl.map((f) => f.meta).sort(cmp);
    const first = metas[0]!;
    const slice: StackSlice = {
      index,
      position: round(cl.reduce((s, f) => s + pos(f), 0) / cl.length),
      imagePositionPatient: [...first.imagePositionPatient!],
      frames: metas.map(frameRef),
    };
    if (first.sliceLocation !== undefined) slice.sliceLocation = first.sliceLocation;
    return slice;
  });

  // Repeated trigger times within a slice: two images of the same phase (e.g. a slice repeated in one series).
  if (phaseOrder === 'trigger-time') {
    const dupPhase = slices.filter((s) => new Set(s.frames.map((f) => f.triggerTime)).size < s.frames.length).map((s) => s.index);
    if (dupPhase.length) {
      problems.push({
        code: 'duplicate-phase',
        message: `${dupPhase.length} slice(s) hold several images with the same TriggerTime`,
        sliceIndices: dupPhase,
      });
    }
  }

  // Phase counts.
  const counts = slices.map((s) => s.frames.length);
  const phases = Math.min(...counts);
  const maxPhases = Math.max(...counts);
  if (phases !== maxPhases) {
    const modal = median(counts);
    problems.push({
      code: 'uneven-phase-count',
      message:
        `slices have between ${phases} and ${maxPhases} phases; the stack uses the first ${phases} phases of every slice`,
      sliceIndices: slices.filter((s) => s.frames.length !== modal).map((s) => s.index),
      details: { counts },
    });
  }

  // Spacing and missing slices.
  const positions = slices.map((s) => s.position);
  const gaps = positions.slice(1).map((p, i) => p - positions[i]!);
  let sliceSpacing = 0;
  if (gaps.length) {
    const minGap = Math.min(...gaps);
    sliceSpacing = round(median(gaps.filter((g) => g <= opts.missingSliceFactor * minGap)));
    const missing: number[] = [];
    let missingCount = 0;
    const irregular: number[] = [];
    gaps.forEach((g, i) => {
      if (g > opts.missingSliceFactor * sliceSpacing) {
        missing.push(i);
        missingCount += Math.max(1, Math.round(g / sliceSpacing) - 1);
      } else if (Math.abs(g - sliceSpacing) > 0.2 * sliceSpacing) {
        irregular.push(i);
      }
    });
    if (missing.length) {
      problems.push({
        code: 'missing-slice',
        message:
          `about ${missingCount} slice(s) missing: gap(s) of ${missing.map((i) => formatMm(gaps[i]!)).join(', ')} ` +
          `after slice(s) ${missing.join(', ')} where the spacing is ${formatMm(sliceSpacing)}`,
        sliceIndices: missing,
        details: { gaps: missing.map((i) => round(gaps[i]!)), sliceSpacing, missingCount },
      });
    }
    if (irregular.length) {
      problems.push({
        code: 'uneven-spacing',
        message: `uneven slice spacing after slice(s) ${irregular.join(', ')} (nominal ${formatMm(sliceSpacing)})`,
        sliceIndices: irregular,
        details: { gaps: gaps.map((g) => round(g)) },
      });
    }
  }

  if (!c.frameOfReferenceUID) {
    problems.push({
      code: 'no-frame-of-reference',
      message: 'no FrameOfReferenceUID: series were grouped by orientation and matrix only',
    });
  }

  const seriesFirst = new Map<string, InstanceMeta>();
  for (const m of allMetas) if (!seriesFirst.has(m.seriesInstanceUID)) seriesFirst.set(m.seriesInstanceUID, m);
  const seriesInstanceUIDs = [...seriesFirst.values()]
    .sort((a, b) => cmpNum(a.seriesNumber, b.seriesNumber) || cmpStr(a.seriesInstanceUID, b.seriesInstanceUID))
    .map((m) => m.seriesInstanceUID);

  const stack: CineStack = {
    stackId: stackIdOf(c, seriesInstanceUIDs[0]!),
    studyInstanceUID: c.studyInstanceUID,
    seriesInstanceUIDs,
    imageOrientationPatient: [...c.iop],
    normal: [...c.normal],
    rows: c.rows,
    columns: c.columns,
    sliceSpacing,
    slices,
    phases,
    phaseOrder,
    problems,
  };
  if (c.frameOfReferenceUID) stack.frameOfReferenceUID = c.frameOfReferenceUID;
  if (c.pixelSpacing) stack.pixelSpacing = [...c.pixelSpacing];
  return stack;
}

/**
 * Builds every short-axis cine stack of the given frames (any number of studies and series, any order).
 * Pure: reads only the metadata. Frames that cannot be part of a stack are set aside with a reason.
 */
export function assembleStacks(metas: InstanceMeta[], options: AssembleOptions = {}): AssemblyResult {
  const opts: Required<AssembleOptions> = { ...DEFAULTS, ...options };
  const aside = new SetAsideCollector();

  // Deterministic order, duplicates (same instance and frame received twice) collapsed.
  const seen = new Set<string>();
  const sorted = [...metas].sort(compareMeta).filter((m) => {
    const key = `${m.sopInstanceUID}#${m.frame ?? -1}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });

  // Usable frames, grouped into orientation classes.
  const classes: OrientationClass[] = [];
  for (const m of sorted) {
    const checked = checkFrame(m);
    if (!('meta' in checked)) {
      aside.add([m], checked.code, `${seriesLabel(m)}: ${checked.reason}`);
      continue;
    }
    let cls = classes.find((c) => matchesClass(c, checked, opts.orientationToleranceDeg));
    if (!cls) {
      cls = {
        studyInstanceUID: m.studyInstanceUID,
        rows: m.rows,
        columns: m.columns,
        iop: [...m.imageOrientationPatient!],
        row: checked.row,
        col: checked.col,
        normal: checked.normal,
        frames: [],
      };
      if (m.frameOfReferenceUID) cls.frameOfReferenceUID = m.frameOfReferenceUID;
      if (m.pixelSpacing) cls.pixelSpacing = [...m.pixelSpacing];
      classes.push(cls);
    }
    cls.frames.push(checked);
  }

  const stacks: Array<{ stack: CineStack; seriesNumber?: number }> = [];
  for (const c of classes) {
    const pos = (f: Frame) => dot(c.normal, f.meta.imagePositionPatient!);
    const bySeries = new Map<string, Frame[]>();
    for (const f of c.frames) {
      const list = bySeries.get(f.meta.seriesInstanceUID) ?? [];
      list.push(f);
      bySeries.set(f.meta.seriesInstanceUID, list);
    }
    const cine: Frame[] = [];
    const still: Frame[] = [];
    for (const frames of bySeries.values()) {
      const perPosition = clusterByPosition(frames, pos, opts.positionToleranceMm).map((cl) => cl.length);
      const maxPerPosition = Math.max(...perPosition);
      const m0 = frames[0]!.meta;
      if (maxPerPosition > 1) cine.push(...frames);
      else if (frames.length <= 3) {
        aside.add(
          frames.map((f) => f.meta),
          'single-image',
          `${seriesLabel(m0)}: ${frames.length} image(s), one per position: a localiser or single image, not a cine stack`,
        );
      } else still.push(...frames);
    }
    if (still.length) {
      const n = clusterByPosition(still, pos, opts.positionToleranceMm).length;
      aside.add(
        still.map((f) => f.meta),
        'not-cine',
        (m) => `${seriesLabel(m)}: ${n} slice position(s) with a single image each: not a cine acquisition`,
      );
    }
    if (!cine.length) continue;
    const positions = clusterByPosition(cine, pos, opts.positionToleranceMm);
    if (positions.length < opts.minSlices) {
      const phases = Math.max(...positions.map((p) => p.length));
      aside.add(
        cine.map((f) => f.meta),
        'long-axis',
        (m) =>
          `${seriesLabel(m)}: cine with ${positions.length} slice position(s) in this orientation (up to ${phases} images ` +
          `each): a long-axis or single-slice view, not a short-axis stack (needs ≥ ${opts.minSlices} positions)`,
      );
      continue;
    }
    const stack = buildStack(c, cine, opts, aside);
    const first = cine.find((f) => f.meta.seriesInstanceUID === stack.seriesInstanceUIDs[0]);
    stacks.push({ stack, seriesNumber: first?.meta.seriesNumber });
  }

  stacks.sort(
    (a, b) =>
      cmpStr(a.stack.studyInstanceUID, b.stack.studyInstanceUID) ||
      cmpNum(a.seriesNumber, b.seriesNumber) ||
      cmpStr(a.stack.stackId, b.stack.stackId),
  );
  return { stacks: stacks.map((s) => s.stack), setAside: aside.list() };
}
