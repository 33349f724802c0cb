/**
 * The pure image model of the phantom: a beating left ventricle (a thick-walled truncated half-ellipsoid
 * whose cavity shrinks, wall thickens and base descends in systole), a right ventricle wrapped around the
 * septum as a crescent, atria, aortic root and RV outflow tract above the base, and a static torso (body,
 * subcutaneous fat, lungs, liver, stomach, spine, descending aorta) with smooth coil shading and Rician noise.
 *
 * Everything is in millimetres. The heart frame: z runs along the LV long axis from the epicardial apex
 * (z = 0) toward the base; slices are planes z = const (the slice normal is exactly parallel to the long
 * axis) and in-plane coordinates (u, v) are millimetres along the image row and column directions from the
 * LV axis. The truth label of a slice comes from the same functions the renderer draws with:
 * IN iff the LV cavity radius at that plane and phase is > 0 (cavity apex < z ≤ base), OAP below, OBS above.
 *
 * No I/O here. Deterministic for a seed: all randomness comes from `Rng` streams derived from the seed.
 */
import { hashSeed, Rng } from './prng.js';

export type Label = 'OAP' | 'IN' | 'OBS';
export type Vec3 = [number, number, number];

export interface PhantomModelOptions {
  /** Unsigned 32-bit seed (default 1). */
  seed?: number;
  /** Number of slice positions, 6–24 (default 12). */
  slices?: number;
  /** Number of cardiac phases, 20–30 (default 25). */
  phases?: number;
  /** Image rows, 64–512 (default 256). */
  rows?: number;
  /** Image columns, 64–512 (default = rows). */
  columns?: number;
}

/** One rendered slice: intensities on the 12-bit scale of the DICOM pixels (0–4095), row-major. */
export interface PhantomSliceImage {
  pixels: Float32Array;
  rows: number;
  columns: number;
  /** [row spacing, column spacing] in mm, as DICOM PixelSpacing. */
  pixelSpacing: [number, number];
  label: Label;
  /** Slice index, apex → base (0 = most apical). */
  slice: number;
  phase: number;
  /** Position along the slice normal (mm), = SliceLocation. */
  position: number;
  /** Area of the LV cavity cross-section in the model (mm²), 0 outside IN. */
  lvCavityAreaMm2: number;
}

/** Heart shape and motion parameters (mm, radians, fractions). */
export interface HeartParams {
  /** Base (mitral plane) height above the epicardial apex at ED. */
  baseEd: number;
  /** Descent of the base toward the apex at ES (longitudinal shortening). */
  descent: number;
  /** Height of the cavity apex above the epicardial apex at ED (apical wall thickness). */
  cavityApexEd: number;
  /** Extra rise of the cavity apex at ES (apical wall thickening / cavity obliteration). */
  apicalRise: number;
  /** Mid-ventricular cavity radius at ED. */
  cavityRadiusEd: number;
  /** Cavity radius at ES / at ED. */
  esRadiusRatio: number;
  /** Wall thickness at ED. */
  wallEd: number;
  /** Fractional wall thickening at ES. */
  thickening: number;
  /** Distance above the cavity apex over which the cavity reaches its full radius. */
  cavityShapeHeight: number;
  ellipticity: number;
  ellipticityAngle: number;
  papillary: Array<{ angle: number; radius: number }>;
  rvAngle: number;
  rvDepth: number;
  rvSpread: number;
  rvWall: number;
  rvApex: number;
  rvContraction: number;
  aortaRadius: number;
  atriumScale: number;
  fatWidth: number;
  crestHeight: number;
  crestHalfAngle: number;
  crestAngle: number;
}

export interface Intensities {
  blood: number;
  myocardium: number;
  epicardialFat: number;
  rvBlood: number;
  atrialBlood: number;
  aorticBlood: number;
  tissue: number;
  subcutaneousFat: number;
  lung: number;
  liver: number;
  stomach: number;
  spine: number;
  descendingAorta: number;
}

interface Ellipsoid {
  c: Vec3;
  s: Vec3;
}

interface SliceBackground {
  image: Float32Array;
  shading: Float32Array;
}

const MIN_SLICES = 6;
const MAX_SLICES = 24;
const MIN_PHASES = 20;
const MAX_PHASES = 30;

function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
function norm(a: Vec3): Vec3 {
  const l = Math.hypot(a[0], a[1], a[2]);
  return [a[0] / l, a[1] / l, a[2] / l];
}
function round(x: number, decimals: number): number {
  const f = 10 ** decimals;
  const r = Math.round(x * f) / f;
  return r === 0 ? 0 : r; // no negative zero in the DICOM strings
}
function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}
/** Quarter-ellipse profile: 0 at x ≤ 0, rising to 1 at x ≥ 1. */
function profile(x: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  return Math.sqrt(x * (2 - x));
}
/** Approximate signed distance (mm, negative inside) to the ellipse (x/a)² + (y/b)² = 1. */
function ellipseDistance(x: number, y: number, a: number, b: number): number {
  // Far away (beyond the circumscribed circle + 12 mm) only "far" matters: skip the exact formula.
  const m = (a > b ? a : b) + 12;
  if (x * x + y * y > m * m) return 1e6;
  const xa = x / a;
  const yb = y / b;
  const q = Math.sqrt(xa * xa + yb * yb);
  if (q < 1e-9) return -Math.min(a, b);
  const gx = xa / a;
  const gy = yb / b;
  const g = Math.sqrt(gx * gx + gy * gy) / q;
  return (q - 1) / g;
}

/** Validates and fills the model options. Throws RangeError with the option named. */
export function resolveModelOptions(opts: PhantomModelOptions = {}): Required<PhantomModelOptions> {
  const seed = opts.seed ?? 1;
  const slices = opts.slices ?? 12;
  const phases = opts.phases ?? 25;
  const rows = opts.rows ?? 256;
  const columns = opts.columns ?? rows;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an integer in 0..4294967295, got ${seed}`);
  if (!Number.isInteger(slices) || slices < MIN_SLICES || slices > MAX_SLICES)
    throw new RangeError(`slices must be an integer in ${MIN_SLICES}..${MAX_SLICES}, got ${slices}`);
  if (!Number.isInteger(phases) || phases < MIN_PHASES || phases > MAX_PHASES)
    throw new RangeError(`phases must be an integer in ${MIN_PHASES}..${MAX_PHASES}, got ${phases}`);
  for (const [name, v] of [
    ['rows', rows],
    ['columns', columns],
  ] as const) {
    if (!Number.isInteger(v) || v < 64 || v > 512) throw new RangeError(`${name} must be an integer in 64..512, got ${v}`);
  }
  return { seed, slices, phases, rows, columns };
}

/**
 * A synthetic subject: geometry, motion, intensities and the slice stack. Create with `createPhantomModel`;
 * render with `renderPhantomSlice`. Slice indices are apex → base.
 */
export class PhantomModel {
  readonly seed: number;
  readonly slices: number;
  readonly phases: number;
  readonly rows: number;
  readonly columns: number;
  /** Square pixels: row spacing = column spacing (mm). */
  readonly pixelSpacing: number;
  /** Distance between slice centres (mm). */
  readonly sliceSpacing: number;
  readonly sliceThickness: number;
  readonly ed = 0;
  readonly es: number;
  /** R–R interval (ms). */
  readonly rrMs: number;
  /** TriggerTime of each phase (ms); phase 0 (ED) has the smallest. */
  readonly triggerTimes: number[];
  /** Image row direction cosines (DICOM IOP first triplet), rounded to 8 decimals. */
  readonly rowCosines: Vec3;
  readonly columnCosines: Vec3;
  /** row × column, unit length: points from apex to base. */
  readonly normal: Vec3;
  /** LV long axis, base → apex (= −normal). */
  readonly longAxis: Vec3;
  /** Heart-frame height (mm above the epicardial apex) of each slice, apex → base. */
  readonly sliceHeights: number[];
  /** ImagePositionPatient of each slice (apex → base), rounded to 4 decimals. */
  readonly imagePositions: Vec3[];
  /** SliceLocation of each slice (= IPP · normal), apex → base, strictly increasing. */
  readonly sliceLocations: number[];
  /** Pixel coordinates (column, row) of the LV long axis in every image. */
  readonly lvCenterPixel: [number, number];
  readonly heart: HeartParams;
  readonly intensities: Intensities;
  /** Standard deviation of the complex Gaussian noise (pixel units). */
  readonly noiseSigma: number;
  /** World position (LPS, mm) of the epicardial apex. */
  readonly apexPosition: Vec3;

  private readonly bodyCenter: [number, number];
  private readonly bodySemi: [number, number];
  private readonly subcutaneous: number;
  private readonly organs: { lungL: Ellipsoid; lungR: Ellipsoid; liver: Ellipsoid; stomach: Ellipsoid };
  private readonly spine: { c: [number, number]; r: number };
  private readonly descAorta: { c: [number, number]; r: number };
  private readonly coils: { anterior: Vec3; posterior: Vec3; width: number; gradient: Vec3 };
  private readonly backgrounds = new Map<number, SliceBackground>();

  constructor(options: PhantomModelOptions = {}) {
    const { seed, slices, phases, rows, columns } = resolveModelOptions(options);
    this.seed = seed;
    this.slices = slices;
    this.phases = phases;
    this.rows = rows;
    this.columns = columns;
    const rng = new Rng(hashSeed(seed, 0x70686e74));

    // Acquisition.
    const fov = rng.range(340, 375);
    this.pixelSpacing = round(fov / Math.max(rows, columns), 3);
    this.rrMs = Math.round(rng.range(900, 1000));
    this.es = Math.round(phases * rng.range(0.34, 0.4));
    const firstTrigger = Math.round(rng.range(0, 25) * 10) / 10;
    this.triggerTimes = Array.from({ length: phases }, (_, p) => round(firstTrigger + (p * this.rrMs) / phases, 2));

    // Orientation: the long axis (base → apex) about (+1, −1, −1)/√3 with a few degrees of jitter; the
    // slice normal is exactly parallel to it and points apex → base, the columns run toward posterior
    // (anterior is up, as a scanner plans a short-axis view), the rows toward the patient's left.
    const a0 = norm([1, -1, -1]);
    const e1 = norm(cross(a0, [0, 0, 1]));
    const e2 = cross(a0, e1);
    const j1 = rng.range(-0.13, 0.13);
    const j2 = rng.range(-0.13, 0.13);
    const axis = norm([a0[0] + j1 * e1[0] + j2 * e2[0], a0[1] + j1 * e1[1] + j2 * e2[1], a0[2] + j1 * e1[2] + j2 * e2[2]]);
    const n0: Vec3 = [-axis[0], -axis[1], -axis[2]];
    const post: Vec3 = [0, 1, 0];
    const pn = dot(post, n0);
    const col0 = norm([post[0] - pn * n0[0], post[1] - pn * n0[1], post[2] - pn * n0[2]]);
    const row0 = cross(col0, n0);
    const psi = rng.range(-0.2, 0.2);
    const cp = Math.cos(psi);
    const sp = Math.sin(psi);
    const r8 = (v: Vec3): Vec3 => [round(v[0], 8), round(v[1], 8), round(v[2], 8)];
    this.rowCosines = r8([cp * row0[0] + sp * col0[0], cp * row0[1] + sp * col0[1], cp * row0[2] + sp * col0[2]]);
    this.columnCosines = r8([-sp * row0[0] + cp * col0[0], -sp * row0[1] + cp * col0[1], -sp * row0[2] + cp * col0[2]]);
    this.normal = norm(cross(this.rowCosines, this.columnCosines));
    this.longAxis = [-this.normal[0], -this.normal[1], -this.normal[2]];

    // Heart and stack: sample until the stack covers OAP, ≥3 IN and OBS at ED and at ES, with every slice
    // at least `margin` mm away from the cavity apex and the base at both phases (so no label hangs on a
    // sub-pixel sliver). Small stacks get a wider spacing so that 6 slices still span the heart.
    const size = rng.range(0.88, 1.12);
    let spacing = Math.max(8, Math.ceil((2 * 78 * size) / (slices - 1.3)) / 2);
    const thinSlices = rng.next() < 0.5;
    let placed: { heart: HeartParams; z0: number } | undefined;
    for (let attempt = 0; !placed; attempt++) {
      if (attempt > 0 && attempt % 400 === 0) spacing += 0.5;
      if (attempt > 40_000) throw new Error(`phantom: no stack placement found for seed ${seed}, ${slices} slices`);
      placed = this.tryPlace(rng, size, spacing, slices);
    }
    this.heart = placed.heart;
    this.sliceSpacing = spacing;
    this.sliceThickness = spacing > 8 || !thinSlices ? 8 : 6;
    this.sliceHeights = Array.from({ length: slices }, (_, k) => round(placed!.z0 + k * spacing, 6));

    // Intensities (pixel units before shading and noise).
    const blood = rng.range(1300, 2000);
    const f = (lo: number, hi: number) => blood * rng.range(lo, hi);
    this.intensities = {
      blood,
      myocardium: f(0.2, 0.3),
      epicardialFat: f(0.6, 0.8),
      rvBlood: f(0.88, 1.0),
      atrialBlood: f(0.8, 0.95),
      aorticBlood: f(0.85, 1.0),
      tissue: f(0.18, 0.28),
      subcutaneousFat: f(0.75, 0.95),
      lung: f(0.02, 0.06),
      liver: f(0.26, 0.36),
      stomach: f(0.1, 0.2),
      spine: f(0.35, 0.5),
      descendingAorta: f(0.7, 0.95),
    };
    this.noiseSigma = blood * rng.range(0.012, 0.035);

    // World placement: the LV base centre near the middle of the chest, the apex along the long axis.
    const baseCenter: Vec3 = [rng.range(5, 25), rng.range(-5, 15), rng.range(0, 20)];
    this.apexPosition = [
      baseCenter[0] + this.heart.baseEd * axis[0],
      baseCenter[1] + this.heart.baseEd * axis[1],
      baseCenter[2] + this.heart.baseEd * axis[2],
    ];
    this.bodyCenter = [rng.range(-10, 10), rng.range(20, 35)];
    this.bodySemi = [rng.range(160, 190), rng.range(110, 130)];
    this.subcutaneous = rng.range(8, 18);
    this.organs = {
      lungL: { c: [rng.range(85, 100), rng.range(15, 30), rng.range(50, 70)], s: [rng.range(60, 75), rng.range(85, 100), 130] },
      lungR: { c: [rng.range(-100, -85), rng.range(15, 30), rng.range(50, 70)], s: [rng.range(65, 80), rng.range(85, 100), 130] },
      liver: { c: [rng.range(-50, -25), rng.range(10, 25), rng.range(-115, -95)], s: [rng.range(105, 125), rng.range(85, 100), rng.range(65, 80)] },
      stomach: { c: [rng.range(65, 85), rng.range(0, 20), rng.range(-120, -100)], s: [rng.range(35, 50), rng.range(30, 45), rng.range(30, 40)] },
    };
    this.spine = { c: [rng.range(-5, 5), this.bodyCenter[1] + this.bodySemi[1] - rng.range(35, 45)], r: rng.range(16, 21) };
    this.descAorta = { c: [rng.range(20, 35), this.spine.c[1] - rng.range(25, 32)], r: rng.range(10, 13) };
    this.coils = {
      anterior: [rng.range(0, 40), this.bodyCenter[1] - this.bodySemi[1] - 20, rng.range(-20, 20)],
      posterior: [rng.range(-20, 20), this.bodyCenter[1] + this.bodySemi[1] + 20, rng.range(-20, 20)],
      width: rng.range(130, 170),
      gradient: [rng.range(-0.0012, 0.0012), rng.range(-0.0012, 0.0012), rng.range(-0.0012, 0.0012)],
    };

    // Stack geometry: the LV axis at a random pixel near the image centre.
    const ps = this.pixelSpacing;
    this.lvCenterPixel = [(columns - 1) / 2 + rng.range(-20, 20) / ps, (rows - 1) / 2 + rng.range(-20, 20) / ps];
    const [cc, rc] = this.lvCenterPixel;
    this.imagePositions = this.sliceHeights.map((z) => {
      const p: Vec3 = [0, 0, 0];
      for (let d = 0; d < 3; d++) {
        p[d] = round(this.apexPosition[d] + z * this.normal[d] - cc * ps * this.rowCosines[d] - rc * ps * this.columnCosines[d], 4);
      }
      return p;
    });
    this.sliceLocations = this.imagePositions.map((p) => round(dot(p, this.normal), 4));
  }

  /** One try at heart parameters + stack offset; undefined if the constraints fail. */
  private tryPlace(rng: Rng, size: number, spacing: number, slices: number): { heart: HeartParams; z0: number } | undefined {
    const cavityRadiusEd = rng.range(21, 27) * size;
    const wallEd = rng.range(7, 10) * Math.sqrt(size);
    const baseEd = rng.range(74, 90) * size;
    const cavityApexEd = rng.range(4.5, 8);
    const heart: HeartParams = {
      baseEd,
      descent: rng.range(6.5, 11.5) * Math.sqrt(size),
      cavityApexEd,
      apicalRise: rng.range(2, 6.5),
      cavityRadiusEd,
      esRadiusRatio: rng.range(0.58, 0.72),
      wallEd,
      thickening: rng.range(0.35, 0.6),
      cavityShapeHeight: rng.range(0.5, 0.65) * (baseEd - cavityApexEd),
      ellipticity: rng.range(0, 0.06),
      ellipticityAngle: rng.range(0, Math.PI),
      papillary: [
        { angle: rng.range(0.2, 0.9), radius: rng.range(2.5, 3.8) },
        { angle: rng.range(1.9, 2.6), radius: rng.range(2.5, 3.8) },
      ],
      rvAngle: Math.PI + rng.range(0.1, 0.5),
      rvDepth: rng.range(18, 28) * size,
      rvSpread: rng.range(1.1, 1.35),
      rvWall: rng.range(2.5, 4),
      rvApex: rng.range(0.18, 0.3) * baseEd,
      rvContraction: rng.range(0.3, 0.45),
      aortaRadius: rng.range(11, 14) * size,
      atriumScale: rng.range(0.9, 1.1) * size,
      fatWidth: rng.range(2, 5),
      crestHeight: rng.range(3, 6),
      crestHalfAngle: rng.range(0.9, 1.4),
      crestAngle: rng.range(-0.4, 0.4),
    };
    const margin = Math.min(1.5, 0.15 * spacing);
    // The apical end: 1–3 slices below the ED cavity apex, biased toward 1 (more for long stacks, which
    // then overshoot both ends of the heart).
    const extra = Math.max(0, slices - 12) / 2;
    const nOap = 1 + Math.floor(rng.next() ** 2 * (3 + extra));
    const z0 = cavityApexEd - nOap * spacing + rng.range(0, spacing);
    const bounds = [
      [cavityApexEd, baseEd],
      [cavityApexEd + heart.apicalRise, baseEd - heart.descent],
    ];
    // Systole must change the labels: at least one basal slice IN at ED is above the base at ES.
    let baseFlip = false;
    for (let k = 0; k < slices; k++) {
      const z = z0 + k * spacing;
      if (z > bounds[1][1] && z <= bounds[0][1]) baseFlip = true;
    }
    if (!baseFlip) return undefined;
    for (const [lo, hi] of bounds) {
      let oap = 0;
      let inside = 0;
      let obs = 0;
      for (let k = 0; k < slices; k++) {
        const z = z0 + k * spacing;
        if (Math.abs(z - lo) < margin || Math.abs(z - hi) < margin) return undefined;
        if (z <= lo) oap++;
        else if (z <= hi) inside++;
        else obs++;
      }
      if (oap < 1 || inside < 3 || obs < 1) return undefined;
    }
    // Keep the stack's apical end near the heart: the first slice at most ~3 spacings below the apex.
    if (z0 < -(3.2 + extra) * spacing) return undefined;
    return { heart, z0 };
  }

  /** Systolic contraction in [0, 1]: 0 at ED (phase 0), 1 at ES only, strictly between otherwise. */
  contraction(phase: number): number {
    const t = phase / this.phases;
    const tEs = this.es / this.phases;
    // Ejection: starts smoothly (isovolumic contraction) and still moves at ES, so that the frames next to
    // ES are measurably larger (a distinct minimum, which the ES picker and the tests rely on).
    if (t <= tEs) {
      const x = t / tEs;
      return 0.5 * (1 - Math.cos((Math.PI * x) / 2)) + 0.25 * (1 - Math.cos(Math.PI * x));
    }
    const u = (t - tEs) / (1 - tEs);
    // Rapid filling (fastest right after ES), diastasis, atrial kick.
    if (u < 0.35) return 0.25 + 0.75 * (1 - Math.sin((Math.PI * u) / 0.7));
    if (u < 0.75) return 0.25 - 0.07 * ((u - 0.35) / 0.4);
    return 0.18 * 0.5 * (1 + Math.cos((Math.PI * (u - 0.75)) / 0.25));
  }

  /** Heart-frame height of the LV cavity apex at contraction c. */
  cavityApex(c: number): number {
    return this.heart.cavityApexEd + c * this.heart.apicalRise;
  }

  /** Heart-frame height of the base (mitral plane) at contraction c. */
  baseHeight(c: number): number {
    return this.heart.baseEd - c * this.heart.descent;
  }

  cavityRadiusMid(c: number): number {
    return this.heart.cavityRadiusEd * (1 - c * (1 - this.heart.esRadiusRatio));
  }

  wall(c: number): number {
    return this.heart.wallEd * (1 + c * this.heart.thickening);
  }

  /** LV cavity radius at height z (0 outside the cavity). */
  cavityRadius(z: number, c: number): number {
    if (z > this.baseHeight(c)) return 0;
    return this.cavityRadiusMid(c) * profile((z - this.cavityApex(c)) / this.heart.cavityShapeHeight);
  }

  /** LV epicardial radius at height z (0 below the apex and above the base). Always > cavity radius. */
  epicardialRadius(z: number, c: number): number {
    if (z > this.baseHeight(c)) return 0;
    const ro = this.cavityRadiusMid(c) + this.wall(c);
    return ro * profile(z / (this.heart.cavityShapeHeight + this.cavityApex(c)));
  }

  /** The truth label of slice `slice` (apex → base) at `phase`: exactly the renderer's geometry. */
  label(slice: number, phase: number): Label {
    const z = this.sliceHeights[slice];
    const c = this.contraction(phase);
    if (z > this.baseHeight(c)) return 'OBS';
    return this.cavityRadius(z, c) > 0 ? 'IN' : 'OAP';
  }

  /** Model LV cavity cross-section area (mm²) of a slice at a phase. */
  lvCavityArea(slice: number, phase: number): number {
    const r = this.cavityRadius(this.sliceHeights[slice], this.contraction(phase));
    const e = this.heart.ellipticity;
    return Math.PI * r * r * (1 + 0.5 * e * e);
  }

  /** Static torso image and coil sensitivity of one slice (cached). */
  background(slice: number): SliceBackground {
    let bg = this.backgrounds.get(slice);
    if (!bg) {
      bg = this.computeBackground(slice);
      this.backgrounds.set(slice, bg);
    }
    return bg;
  }

  private computeBackground(slice: number): SliceBackground {
    const { rows, columns } = this;
    const ps = this.pixelSpacing;
    const invPs = 1 / ps;
    const I = this.intensities;
    const image = new Float32Array(rows * columns);
    const shading = new Float32Array(rows * columns);
    const ipp = this.imagePositions[slice];
    const row = this.rowCosines;
    const col = this.columnCosines;
    const [bx, by] = this.bodyCenter;
    const [ax, ay] = this.bodySemi;
    const sub = this.subcutaneous;
    const { lungL, lungR, liver, stomach } = this.organs;
    // Flattened ellipsoids: centre (3), semi-axes (3), intensity.
    const ell: number[] = [];
    for (const [e, val] of [
      [lungL, I.lung],
      [lungR, I.lung],
      [liver, I.liver],
      [stomach, I.stomach],
    ] as Array<[Ellipsoid, number]>) {
      ell.push(e.c[0], e.c[1], e.c[2], e.s[0], e.s[1], e.s[2], val);
    }
    const { anterior, posterior, width, gradient } = this.coils;
    const w2 = 1 / (2 * width * width);
    const sens = (x: number, y: number, z: number): number => {
      const da = (x - anterior[0]) ** 2 + (y - anterior[1]) ** 2 + (z - anterior[2]) ** 2;
      const dp = (x - posterior[0]) ** 2 + (y - posterior[1]) ** 2 + (z - posterior[2]) ** 2;
      return 0.45 + 0.75 * Math.exp(-da * w2) + 0.55 * Math.exp(-dp * w2) + gradient[0] * x + gradient[1] * y + gradient[2] * z;
    };
    // Normalise the shading to 1 on the LV axis of this slice so the heart intensities hold there.
    const z = this.sliceHeights[slice];
    const axisPoint: Vec3 = [0, 1, 2].map((d) => this.apexPosition[d] + z * this.normal[d]) as Vec3;
    const sens0 = 1 / sens(axisPoint[0], axisPoint[1], axisPoint[2]);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        const x = ipp[0] + c * ps * row[0] + r * ps * col[0];
        const y = ipp[1] + c * ps * row[1] + r * ps * col[1];
        const zz = ipp[2] + c * ps * row[2] + r * ps * col[2];
        const i = r * columns + c;
        const s = sens(x, y, zz) * sens0;
        shading[i] = s < 0.5 ? 0.5 : s > 1.5 ? 1.5 : s;
        const dBody = ellipseDistance(x - bx, y - by, ax, ay);
        if (dBody > ps) {
          image[i] = 0;
          continue;
        }
        let v = I.subcutaneousFat * clamp01(0.5 - dBody * invPs);
        const dInner = ellipseDistance(x - bx, y - by, ax - sub, ay - sub);
        v += (I.tissue - v) * clamp01(0.5 - dInner * invPs);
        for (let k = 0; k < ell.length; k += 7) {
          const dx = (x - ell[k]) / ell[k + 3];
          const dy = (y - ell[k + 1]) / ell[k + 4];
          const dz = (zz - ell[k + 2]) / ell[k + 5];
          const q = Math.sqrt(dx * dx + dy * dy + dz * dz);
          if (q > 1.2) continue;
          const g = Math.sqrt((dx / ell[k + 3]) ** 2 + (dy / ell[k + 4]) ** 2 + (dz / ell[k + 5]) ** 2) / Math.max(q, 1e-9);
          v += (ell[k + 6] - v) * clamp01(0.5 - ((q - 1) / g) * invPs);
        }
        const dSpine = Math.sqrt((x - this.spine.c[0]) ** 2 + (y - this.spine.c[1]) ** 2) - this.spine.r;
        v += (I.spine - v) * clamp01(0.5 - dSpine * invPs);
        const dAo = Math.sqrt((x - this.descAorta.c[0]) ** 2 + (y - this.descAorta.c[1]) ** 2) - this.descAorta.r;
        v += (I.descendingAorta - v) * clamp01(0.5 - dAo * invPs);
        // Organs stay inside the body outline.
        v *= clamp01(0.5 - dBody * invPs);
        image[i] = v;
      }
    }
    return { image, shading };
  }

  /**
   * Renders slice `slice` (apex → base) at `phase` into a new Float32Array (rows × columns, row-major),
   * on the 12-bit pixel scale. With `noise: false` the image is the noise-free shaded model.
   */
  render(slice: number, phase: number, noise = true): Float32Array {
    if (!Number.isInteger(slice) || slice < 0 || slice >= this.slices) throw new RangeError(`slice must be in 0..${this.slices - 1}`);
    if (!Number.isInteger(phase) || phase < 0 || phase >= this.phases) throw new RangeError(`phase must be in 0..${this.phases - 1}`);
    const { rows, columns } = this;
    const bg = this.background(slice);
    const out = new Float32Array(bg.image);
    this.paintHeart(out, this.sliceHeights[slice], this.contraction(phase));
    const shading = bg.shading;
    const n = rows * columns;
    if (!noise) {
      for (let i = 0; i < n; i++) out[i] = Math.min(4095, out[i] * shading[i]);
      return out;
    }
    // Rician noise: magnitude of (signal + complex Gaussian). Each Gaussian sample is the Irwin–Hall sum
    // of the four bytes of one mulberry32 draw (mean 510, sd 147.8): cheap, deterministic, and close
    // enough to normal for image noise (|z| ≤ 3.45).
    let state = hashSeed(this.seed, 0x6e6f6973, slice, phase) | 0;
    const k = this.noiseSigma / 147.80138;
    for (let i = 0; i < n; i++) {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), state | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      t ^= t >>> 14;
      const g1 = (t & 255) + ((t >>> 8) & 255) + ((t >>> 16) & 255) + (t >>> 24) - 510;
      state = (state + 0x6d2b79f5) | 0;
      t = Math.imul(state ^ (state >>> 15), state | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      t ^= t >>> 14;
      const g2 = (t & 255) + ((t >>> 8) & 255) + ((t >>> 16) & 255) + (t >>> 24) - 510;
      const re = out[i] * shading[i] + k * g1;
      const im = k * g2;
      const m = Math.sqrt(re * re + im * im);
      out[i] = m > 4095 ? 4095 : m;
    }
    return out;
  }

  /** Paints the heart at height z and contraction c over the background (in place). */
  private paintHeart(out: Float32Array, z: number, c: number): void {
    const { rows, columns } = this;
    const h = this.heart;
    const I = this.intensities;
    const ps = this.pixelSpacing;
    const invPs = 1 / ps;
    const [cc, rc] = this.lvCenterPixel;
    const base = this.baseHeight(c);
    const above = z - base; // > 0: OBS territory
    const ri = this.cavityRadius(z, c);
    const ro = this.epicardialRadius(z, c);
    const roMid = this.cavityRadiusMid(c) + this.wall(c);
    const roMidEd = h.cavityRadiusEd + h.wallEd;
    const ell = h.ellipticity;
    const c2 = Math.cos(2 * h.ellipticityAngle);
    const s2 = Math.sin(2 * h.ellipticityAngle);

    // Papillary muscles against the wall, thickening in systole; capped to a quarter of the cavity radius
    // so the blood pool area stays monotone in the contraction (no muscle pops in or out between phases).
    const paps: number[] = [];
    if (ri > 0) {
      for (const p of h.papillary) {
        const pr = Math.min(p.radius * (1 + 0.3 * c), 0.25 * ri);
        const d = ri - 0.7 * pr;
        paps.push(Math.cos(p.angle) * d, Math.sin(p.angle) * d, pr);
      }
    }

    // Right ventricle: an ellipse wrapped around the septum, above the RV apex; above the base it narrows
    // and moves anteriorly into the outflow tract.
    let rv = false;
    let rvU = 0;
    let rvV = 0;
    let rvA = 0;
    let rvB = 0;
    const rvCos = Math.cos(h.rvAngle);
    const rvSin = Math.sin(h.rvAngle);
    if (z > h.rvApex) {
      const g = profile((z - h.rvApex) / (0.45 * h.baseEd));
      const squeeze = 1 - h.rvContraction * c;
      const far = roMid + h.rvDepth * g * squeeze;
      const near = -0.15 * roMid;
      rvA = Math.max(0.5 * (far - near), 1);
      rvB = Math.max((roMid * h.rvSpread + 0.3 * h.rvDepth) * g * (1 - 0.15 * c), 1);
      const d = far - rvA;
      rvU = rvCos * d;
      rvV = rvSin * d;
      if (above > 0) {
        // Outflow tract: a round tube anterior (up) and toward the RV side, over the aortic root.
        const t = Math.min(1, above / 8);
        const rOt = 0.45 * roMidEd * (1 - 0.2 * c);
        rvA = (1 - t) * rvA + t * rOt;
        rvB = (1 - t) * rvB + t * rOt;
        rvU = (1 - t) * rvU + t * (-0.6 * roMidEd);
        rvV = (1 - t) * rvV + t * (-1.05 * roMidEd - 0.15 * above);
      }
      rv = rvA > 1 && rvB > 1;
    }

    // Above the base: left atrium (posterior), right atrium, aortic root (anterior), basal crescent.
    const la = above > 0;
    const laGrow = Math.min(1, 0.7 + above / 20);
    const laA = h.atriumScale * h.cavityRadiusEd * (0.95 + 0.12 * c) * laGrow;
    const laB = h.atriumScale * h.cavityRadiusEd * (0.75 + 0.1 * c) * laGrow;
    const laU = 0.25 * roMidEd;
    const laV = 0.55 * roMidEd + 0.1 * above;
    const ra = above > 3;
    const raA = h.atriumScale * 0.55 * roMidEd * (1 + 0.1 * c);
    const raB = h.atriumScale * 0.45 * roMidEd * (1 + 0.1 * c);
    const raU = -1.3 * roMidEd;
    const raV = 0.45 * roMidEd + 0.1 * above;
    const ao = above > 1.5;
    const aoR = h.aortaRadius * (1 + 0.05 * c);
    const aoU = -0.3 * roMidEd;
    const aoV = -0.35 * roMidEd - 0.1 * above;
    const crest = above > 0 && above < h.crestHeight;
    const crestRi = this.cavityRadius(base, c);
    const crestRo = this.epicardialRadius(base, c);
    const crestCos = Math.cos(h.crestHalfAngle * (1 - above / h.crestHeight));
    const crestDu = Math.cos(h.crestAngle);
    const crestDv = Math.sin(h.crestAngle);
    const atrialWall = 2;
    const fat = h.fatWidth;
    const fatDu = Math.cos(h.rvAngle + 0.9);
    const fatDv = Math.sin(h.rvAngle + 0.9);

    // Bounding radius (mm) of everything drawn, around the LV axis.
    let reach = ro + fat;
    if (rv) reach = Math.max(reach, Math.hypot(rvU, rvV) + Math.max(rvA, rvB) + h.rvWall + fat);
    if (la) reach = Math.max(reach, Math.hypot(laU, laV) + Math.max(laA, laB) + atrialWall + fat);
    if (ra) reach = Math.max(reach, Math.hypot(raU, raV) + Math.max(raA, raB) + atrialWall + fat);
    if (ao) reach = Math.max(reach, Math.hypot(aoU, aoV) + aoR + atrialWall + fat);
    if (crest) reach = Math.max(reach, crestRo + fat);
    if (reach <= fat) return;
    reach += 2 * ps;
    const c0 = Math.max(0, Math.floor(cc - reach * invPs));
    const c1 = Math.min(columns - 1, Math.ceil(cc + reach * invPs));
    const r0 = Math.max(0, Math.floor(rc - reach * invPs));
    const r1 = Math.min(rows - 1, Math.ceil(rc + reach * invPs));
    const BIG = 1e9;

    for (let r = r0; r <= r1; r++) {
      const v = (r - rc) * ps;
      for (let col = c0; col <= c1; col++) {
        const u = (col - cc) * ps;
        const i = r * columns + col;
        let val = out[i];
        const rr = Math.sqrt(u * u + v * v);
        // Elliptic LV: radial coordinate scaled by 1 + e·cos 2(θ − φ).
        let rEff = rr;
        if (rr > 1e-6 && ell > 0) {
          const cos2t = (u * u - v * v) / (rr * rr);
          const sin2t = (2 * u * v) / (rr * rr);
          rEff = rr / (1 + ell * (cos2t * c2 + sin2t * s2));
        }
        const dEpi = ro > 0 ? rEff - ro : BIG;
        const dRv = rv ? ellipseDistance((u - rvU) * rvCos + (v - rvV) * rvSin, -(u - rvU) * rvSin + (v - rvV) * rvCos, rvA, rvB) : BIG;
        const dLa = la ? ellipseDistance(u - laU, v - laV, laA, laB) : BIG;
        const dRa = ra ? ellipseDistance(u - raU, v - raV, raA, raB) : BIG;
        const dAo = ao ? Math.sqrt((u - aoU) ** 2 + (v - aoV) ** 2) - aoR : BIG;
        let dCrest = BIG;
        if (crest && rr > 1e-6) {
          const cosD = (u * crestDu + v * crestDv) / rr;
          if (cosD > crestCos) dCrest = Math.max(rEff - crestRo, crestRi - rEff);
        }
        // Epicardial fat envelope around everything.
        const dAll = Math.min(dEpi, dRv - h.rvWall, dLa - atrialWall, dRa - atrialWall, dAo - atrialWall, dCrest);
        if (dAll - fat > ps) continue;
        // Epicardial fat is thickest in the grooves: width modulated around the LV axis.
        const cosF = rr > 1e-6 ? (u * fatDu + v * fatDv) / rr : 0;
        const fatHere = fat * (0.35 + 0.65 * cosF * cosF);
        val += (I.epicardialFat - val) * clamp01(0.5 - (dAll - fatHere) * invPs);
        if (ra) {
          val += (I.myocardium - val) * clamp01(0.5 - (dRa - atrialWall) * invPs);
          val += (I.atrialBlood * 0.95 - val) * clamp01(0.5 - dRa * invPs);
        }
        if (la) {
          val += (I.myocardium - val) * clamp01(0.5 - (dLa - atrialWall) * invPs);
          val += (I.atrialBlood - val) * clamp01(0.5 - dLa * invPs);
        }
        if (rv) {
          val += (I.myocardium - val) * clamp01(0.5 - (dRv - h.rvWall) * invPs);
          val += (I.rvBlood - val) * clamp01(0.5 - dRv * invPs);
        }
        if (ao) {
          val += (I.myocardium - val) * clamp01(0.5 - (dAo - atrialWall) * invPs);
          val += (I.aorticBlood - val) * clamp01(0.5 - dAo * invPs);
        }
        if (ro > 0) {
          val += (I.myocardium - val) * clamp01(0.5 - dEpi * invPs);
          if (ri > 0) {
            val += (I.blood - val) * clamp01(0.5 - (rEff - ri) * invPs);
            for (let p = 0; p < paps.length; p += 3) {
              const dp = Math.sqrt((u - paps[p]) ** 2 + (v - paps[p + 1]) ** 2) - paps[p + 2];
              val += (I.myocardium * 1.05 - val) * clamp01(0.5 - dp * invPs);
            }
          }
        }
        if (dCrest < BIG) val += (I.myocardium - val) * clamp01(0.5 - dCrest * invPs);
        out[i] = val;
      }
    }
  }
}

/** Creates the phantom model of one subject. */
export function createPhantomModel(opts: PhantomModelOptions = {}): PhantomModel {
  return new PhantomModel(opts);
}

/** Renders one slice (apex → base index) at one phase with its truth label. */
export function renderPhantomSlice(model: PhantomModel, slice: number, phase: number, opts: { noise?: boolean } = {}): PhantomSliceImage {
  const pixels = model.render(slice, phase, opts.noise ?? true);
  return {
    pixels,
    rows: model.rows,
    columns: model.columns,
    pixelSpacing: [model.pixelSpacing, model.pixelSpacing],
    label: model.label(slice, phase),
    slice,
    phase,
    position: model.sliceLocations[slice],
    lvCavityAreaMm2: model.lvCavityArea(slice, phase),
  };
}
