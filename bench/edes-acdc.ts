/**
 * ED/ES chooser on real data: ACDC patient090's 4D cine (NIfTI). Not a test (needs ../shared/data/acdc).
 *   node --import tsx bench/edes-acdc.ts [DIR]
 * Prints one JSON line: true ED/ES (Info.cfg, 1-based frames), chosen ED/ES (1-based), per-phase areas, time.
 * --pairs adds a line: ED-vs-ES discrimination on every subject's two labelled volumes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as nifti from 'nifti-reader-js';
import { chooseEsPhase } from '../src/stack/phases.js';

interface Volume4D {
  nx: number;
  ny: number;
  nz: number;
  nt: number;
  /** frame(z, t): ny rows × nx columns, row-major (x fastest, as stored). */
  frame(z: number, t: number): Float32Array;
}

function readNifti4D(path: string): Volume4D {
  const raw = readFileSync(path);
  let ab: ArrayBuffer = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
  if (nifti.isCompressed(ab)) ab = nifti.decompress(ab) as ArrayBuffer;
  if (!nifti.isNIFTI(ab)) throw new Error(`${path} is not NIfTI`);
  const h = nifti.readHeader(ab);
  if (!h) throw new Error(`${path}: unreadable NIfTI header`);
  const img = nifti.readImage(h, ab);
  const [, nx, ny, nz, nt] = h.dims as number[];
  const n = nx! * ny! * nz! * nt!;
  const T = h.datatypeCode;
  const D = nifti.NIFTI1;
  const typed: ArrayLike<number> =
    T === D.TYPE_FLOAT32 ? new Float32Array(img, 0, n)
    : T === D.TYPE_FLOAT64 ? new Float64Array(img, 0, n)
    : T === D.TYPE_INT16 ? new Int16Array(img, 0, n)
    : T === D.TYPE_UINT16 ? new Uint16Array(img, 0, n)
    : T === D.TYPE_UINT8 ? new Uint8Array(img, 0, n)
    : T === D.TYPE_INT32 ? new Int32Array(img, 0, n)
    : (() => { throw new Error(`NIfTI datatype ${T} not handled`); })();
  const slope = h.scl_slope && Number.isFinite(h.scl_slope) ? h.scl_slope : 1;
  const inter = Number.isFinite(h.scl_inter) ? h.scl_inter : 0;
  const plane = nx! * ny!;
  return {
    nx: nx!, ny: ny!, nz: nz!, nt: nt!,
    frame(z, t) {
      const off = (t * nz! + z) * plane;
      const out = new Float32Array(plane);
      for (let i = 0; i < plane; i++) out[i] = typed[off + i]! * slope + inter;
      return out;
    },
  };
}

function readInfo(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split(/\r?\n/)) {
    const m = /^\s*(\w+)\s*:\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

const args = process.argv.slice(2);
const pairs = args.includes('--pairs');
const dir = args.find((a) => !a.startsWith('--')) ?? '../shared/data/acdc/patient090';
const subject = dir.replace(/\/+$/, '').split('/').pop()!;
const info = readInfo(join(dir, 'Info.cfg'));
const t0 = performance.now();
const vol = readNifti4D(join(dir, `${subject}_4d.nii.gz`));
const tRead = performance.now();
const dims = { slices: vol.nz, phases: vol.nt, rows: vol.ny, columns: vol.nx };
const es = chooseEsPhase((s, p) => vol.frame(s, p), dims);
const tEs = performance.now();
const areas = es.areas!;
const trueEd = Number(info.ED);
const trueEs = Number(info.ES);
const chosenEs = es.phaseIndex + 1;
// Cyclic distance: the cine covers one cardiac cycle.
const cyc = (a: number, b: number) => Math.min(Math.abs(a - b), vol.nt - Math.abs(a - b));

// Robustness: the same data with x/y transposed (DICOM vs NIfTI axes) and with another intensity scaling.
const transposed = chooseEsPhase(
  (s, p) => {
    const a = vol.frame(s, p);
    const t = new Float32Array(a.length);
    for (let y = 0; y < vol.ny; y++) for (let x = 0; x < vol.nx; x++) t[x * vol.ny + y] = a[y * vol.nx + x]!;
    return t;
  },
  { ...dims, rows: vol.nx, columns: vol.ny },
).phaseIndex + 1;
const rescaled = chooseEsPhase((s, p) => vol.frame(s, p).map((v) => v * 16.3 - 1000), dims).phaseIndex + 1;
const allSlices = chooseEsPhase((s, p) => vol.frame(s, p), dims, { sliceIndices: [...Array(vol.nz).keys()] }).phaseIndex + 1;

const r1 = (x: number) => Math.round(x * 10) / 10;
console.log(
  JSON.stringify({
    subject,
    dims: { x: vol.nx, y: vol.ny, slices: vol.nz, frames: vol.nt },
    true: { ED: trueEd, ES: trueEs },
    infoEdIsFrame1: trueEd === 1,
    chosen: { ED: 1, EDmethod: 'min-trigger-time (frame 1 by ACDC convention)', ES: chosenEs, ESmethod: es.method },
    esErrorFrames: cyc(chosenEs, trueEs),
    esWithin1: cyc(chosenEs, trueEs) <= 1,
    edErrorFrames: cyc(1, trueEd),
    edByMaxArea: (es.maxAreaPhaseIndex ?? 0) + 1,
    robustness: { esTransposed: transposed, esRescaled: rescaled, esAllSlices: allSlices },
    slicesUsed: es.slicesUsed,
    areas: areas.map(r1),
    perSlice: es.perSlice.map((s) => ({ slice: s.slice, regionPixels: s.regionPixels, areas: s.areas.map(r1) })),
    ms: { read: r1(tRead - t0), es: r1(tEs - tRead) },
  }),
);

/**
 * --pairs: every other ACDC subject has only its ED and ES volumes (no 4D cine). Given just those two frames
 * as a 2-phase "cine", does the chooser call the ES volume ES? A weak check (a coin toss scores 50 %), but on
 * ~100 real subjects.
 */
function readVolume3D(path: string): { nx: number; ny: number; nz: number; frame(z: number): Float32Array } {
  const v = readNifti4D(path);
  return { nx: v.nx, ny: v.ny, nz: v.nz, frame: (z) => v.frame(z, 0) };
}

if (pairs) {
  const root = join(dir, '..');
  const t1 = performance.now();
  let n = 0;
  let correct = 0;
  const wrong: string[] = [];
  for (const subj of readdirSync(root).filter((d) => /^patient\d+$/.test(d)).sort()) {
    const inf = readInfo(join(root, subj, 'Info.cfg'));
    const f = (k: number) => join(root, subj, `${subj}_frame${String(k).padStart(2, '0')}.nii.gz`);
    const ed = readVolume3D(f(Number(inf.ED)));
    const esv = readVolume3D(f(Number(inf.ES)));
    const c = chooseEsPhase((s, p) => (p === 0 ? ed : esv).frame(s), { slices: ed.nz, phases: 2, rows: ed.ny, columns: ed.nx });
    n++;
    if (c.phaseIndex === 1) correct++;
    else wrong.push(subj);
  }
  console.log(JSON.stringify({ pairs: { subjects: n, esPickedCorrectly: correct, accuracy: r1((100 * correct) / n) / 100, wrong, ms: r1(performance.now() - t1) } }));
}
