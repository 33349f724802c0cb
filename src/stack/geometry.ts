import type { CineStack, SliceOrder } from './types.js';

export type Vec3 = [number, number, number];

export function dot(a: readonly number[], b: readonly number[]): number {
  return a[0]! * b[0]! + a[1]! * b[1]! + a[2]! * b[2]!;
}

export function cross(a: readonly number[], b: readonly number[]): Vec3 {
  return [a[1]! * b[2]! - a[2]! * b[1]!, a[2]! * b[0]! - a[0]! * b[2]!, a[0]! * b[1]! - a[1]! * b[0]!];
}

export function norm(a: readonly number[]): number {
  return Math.hypot(a[0]!, a[1]!, a[2]!);
}

export function normalize(a: readonly number[]): Vec3 {
  const n = norm(a);
  return [a[0]! / n, a[1]! / n, a[2]! / n];
}

/** Unit row and column direction cosines and the slice normal (row × column) of an IOP; undefined if degenerate. */
export function orientationFrame(iop: readonly number[] | undefined): { row: Vec3; col: Vec3; normal: Vec3 } | undefined {
  if (!iop || iop.length < 6 || !iop.slice(0, 6).every(Number.isFinite)) return undefined;
  const r = iop.slice(0, 3);
  const c = iop.slice(3, 6);
  const nr = norm(r);
  const nc = norm(c);
  // Direction cosines must be (close to) unit vectors and (close to) orthogonal.
  if (Math.abs(nr - 1) > 0.05 || Math.abs(nc - 1) > 0.05) return undefined;
  const row = normalize(r);
  const col = normalize(c);
  if (Math.abs(dot(row, col)) > 0.05) return undefined;
  return { row, col, normal: normalize(cross(row, col)) };
}

/** Angle (degrees) between two unit vectors. */
export function angleDeg(a: readonly number[], b: readonly number[]): number {
  return (Math.acos(Math.max(-1, Math.min(1, dot(a, b)))) * 180) / Math.PI;
}

/**
 * Direction of the LV apex in DICOM patient coordinates (LPS): left, anterior, inferior — about
 * (+1, −1, −1)/√3.
 */
export const APEX_DIRECTION: Vec3 = normalize([1, -1, -1]);

/** Below this |cos| the geometry does not tell the apex from the base reliably. */
export const AMBIGUOUS_COSINE = 0.3;

/**
 * Apex → base slice order from the geometry: if the stack normal points toward the apex
 * (normal · apexDir > 0), larger positions are more apical and apex → base is descending position.
 */
export function apexToBase(stack: Pick<CineStack, 'normal' | 'slices'>): SliceOrder {
  const cosine = dot(normalize(stack.normal), APEX_DIRECTION);
  const byPosition = stack.slices
    .map((s, i) => ({ index: s.index ?? i, position: s.position }))
    .sort((a, b) => a.position - b.position || a.index - b.index)
    .map((s) => s.index);
  const order = cosine > 0 ? byPosition.reverse() : byPosition;
  const confidence = Math.abs(cosine);
  const ambiguous = confidence < AMBIGUOUS_COSINE;
  return {
    order,
    method: 'geometry',
    confidence,
    cosine,
    ambiguous,
    ...(ambiguous
      ? {
          message:
            `geometry is ambiguous: the stack normal is ${angleDeg(normalize(stack.normal), APEX_DIRECTION).toFixed(0)}° from the ` +
            'expected LV long axis (|cos| < 0.3); cross-check the order by likelihood',
        }
      : {}),
  };
}
