/**
 * Every object type the builders write, from a phantom study through the real input path
 * (readInstanceMeta → assembleStacks → sourceFilesFromStack → sourceInfoFromFiles), checked by the
 * validators a PACS administrator would use: dciodvfy (dicom3tools), dsrdump and dcm2pnm (DCMTK).
 * The PNGs and a report land in test-artifacts/sr/ for a human to look at.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readInstanceMeta } from '../../src/dicom/meta.js';
import { buildResult, type PhaseInput, type Result } from '../../src/inference/result.js';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { buildOutputs, sourceFilesFromStack, sourceInfoFromFiles, type OutputObject, type SourceInfo } from '../../src/sr/index.js';
import { apexToBase, assembleStacks, type CineStack } from '../../src/stack/index.js';
import { hasTool, runTool } from '../helpers/dcmtk.js';

const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'sr');
const SLICES = 12;

/** Plausible probabilities for a true label; slices next to a boundary are less certain. */
function probabilities(label: string, nearBoundary: boolean): number[] {
  const sure = nearBoundary ? 0.62 : 0.9;
  const rest = (1 - sure) / 2;
  if (label === 'OAP') return [sure, rest * 1.4, rest * 0.6];
  if (label === 'IN') return [rest, sure, rest];
  return [rest * 0.6, rest * 1.4, sure];
}

/** A Grad-CAM-like map: a Gaussian blob near the image centre (0..1). */
function blob(rows: number, columns: number, shift: number): Float32Array {
  const a = new Float32Array(rows * columns);
  const cx = columns * (0.52 + 0.01 * shift);
  const cy = rows * 0.5;
  const s = rows / 10;
  for (let y = 0; y < rows; y++) for (let x = 0; x < columns; x++) a[y * columns + x] = Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s));
  return a;
}

/** The result document of the phantom's stack, as the pipeline would build it (probabilities from the truth). */
function resultFor(stack: CineStack, truth: PhantomTruth): Result {
  const order = apexToBase(stack).order;
  const labelOf = new Map<string, string>();
  for (const p of ['ED', 'ES'] as const) truth.sopInstanceUIDs[p].forEach((sop, k) => labelOf.set(sop, truth.labels[p][k]));
  const phase = (p: 'ED' | 'ES'): PhaseInput => {
    const phaseIndex = p === 'ED' ? truth.ed : truth.es;
    const sops = order.map((idx) => stack.slices.find((s) => s.index === idx)!.frames[phaseIndex].sopInstanceUID);
    const labels = sops.map((s) => labelOf.get(s)!);
    return {
      phaseIndex,
      triggerTime: truth.triggerTimes[phaseIndex],
      method: 'lv-area',
      slices: order.map((idx, i) => ({
        index: idx,
        position: stack.slices.find((s) => s.index === idx)!.position,
        sopInstanceUID: sops[i],
        probabilities: probabilities(labels[i], (i > 0 && labels[i - 1] !== labels[i]) || (i < labels.length - 1 && labels[i + 1] !== labels[i])),
      })),
    };
  };
  return buildResult({
    studyInstanceUID: stack.studyInstanceUID,
    stackId: stack.stackId,
    seriesInstanceUIDs: stack.seriesInstanceUIDs,
    model: { id: 'cbr-small-128', version: '0.3.0', sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
    order: { direction: 'apex-to-base', method: 'geometry' },
    phases: { ED: phase('ED'), ES: phase('ES') },
  });
}

// The validators are required: a missing one fails the suite instead of skipping the checks.
for (const t of ['dciodvfy', 'dsrdump', 'dcm2pnm']) if (!(await hasTool(t))) throw new Error(`${t} not installed (.ci/run installs dicom3tools and dcmtk)`);

describe('SR, SC and KOS from a phantom study', () => {
  let dir: string;
  let truth: PhantomTruth;
  let result: Result;
  let sources: SourceInfo;
  let outputs: OutputObject[];
  const files = new Map<string, string>(); // name → path
  let buildMs = 0;
  const report: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sax-sr-validate-'));
    const study = await writePhantomStudy(join(dir, 'study'), { seed: 11, slices: SLICES, phases: 20 });
    truth = study.truth;
    const metas = (await Promise.all(study.paths.map((p) => readInstanceMeta(p)))).flat();
    const { stacks } = assembleStacks(metas);
    expect(stacks).toHaveLength(1);
    const stack = stacks[0];
    result = resultFor(stack, truth);
    sources = await sourceInfoFromFiles(result, sourceFilesFromStack(stack, result));
    const cams = {
      ED: sources.images.ED.map((im, i) => blob(im.rows, im.columns, i)),
      ES: sources.images.ES.map((im, i) => blob(im.rows, im.columns, -i)),
    };
    const t0 = performance.now();
    outputs = buildOutputs(result, sources, cams, { softwareVersion: '0.1.0' });
    buildMs = performance.now() - t0;
    await mkdir(join(dir, 'out'), { recursive: true });
    let k = 0;
    for (const o of outputs) {
      const name = `${String(k++).padStart(2, '0')}-${o.kind}.dcm`;
      const path = join(dir, 'out', name);
      await writeFile(path, o.part10);
      files.set(name, path);
    }
    await mkdir(ARTIFACTS, { recursive: true });
    report.push(`built ${outputs.length} objects for a ${SLICES}-slice stack in ${buildMs.toFixed(0)} ms`);
  });

  afterAll(async () => {
    await writeFile(join(ARTIFACTS, 'validation-report.txt'), `${report.join('\n')}\n`).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds 1 SR, 2 × 12 slice SCs, 2 montages and 2 KOS of the phantom (labels as in the truth)', () => {
    expect(outputs.map((o) => o.kind)).toEqual(['sr', ...Array(2 * SLICES + 2).fill('sc'), 'kos', 'kos']);
    for (const p of ['ED', 'ES'] as const) {
      expect(result.phases[p].slices.map((s) => s.sopInstanceUID)).toEqual(truth.sopInstanceUIDs[p]);
      expect(result.phases[p].slices.map((s) => s.label)).toEqual(truth.labels[p]);
    }
    expect(buildMs).toBeLessThan(15_000);
  });

  it('passes dciodvfy with 0 errors for every object (warnings only for the private coding scheme)', async () => {
    const byType = new Map<string, { errors: string[]; warnings: Map<string, number>; files: number }>();
    for (const [name, path] of files) {
      const r = await runTool('dciodvfy', [path]);
      const lines = r.output.split('\n').map((l) => l.trim()).filter(Boolean);
      const type = lines[0] ?? '?';
      const entry = byType.get(type) ?? { errors: [] as string[], warnings: new Map<string, number>(), files: 0 };
      entry.files++;
      for (const l of lines.slice(1)) {
        if (/^Error/.test(l)) entry.errors.push(`${name}: ${l}`);
        else if (/^Warning/.test(l)) entry.warnings.set(l, (entry.warnings.get(l) ?? 0) + 1);
      }
      byType.set(type, entry);
      expect(r.code, `${name}: ${r.output.slice(0, 2000)}`).toBe(0);
    }
    report.push('', 'dciodvfy (dicom3tools):');
    for (const [type, e] of byType) {
      report.push(`  ${type}: ${e.files} file(s), ${e.errors.length} errors, ${[...e.warnings.values()].reduce((a, b) => a + b, 0)} warnings`);
      for (const [w, n] of e.warnings) report.push(`    ${n} × ${w}`);
    }
    expect([...byType.keys()].sort()).toEqual(['ComprehensiveSR', 'KeyObjectSelectionDocument', 'SCImage']);
    for (const [type, e] of byType) {
      expect(e.errors, type).toEqual([]);
      for (const w of e.warnings.keys()) expect(w, type).toMatch(/Unrecognized defined term <99SAXRANGE> for value 1 of attribute <Coding Scheme Designator>/);
    }
    // The SCs are clean: not even a warning.
    expect(byType.get('SCImage')!.warnings.size).toBe(0);
  });

  it('is read by dsrdump (SR and KOS) without errors', async () => {
    for (const name of ['00-sr.dcm', `${String(outputs.length - 2).padStart(2, '0')}-kos.dcm`]) {
      const r = await runTool('dsrdump', ['+Pc', '+Pt', '+Pl', files.get(name)!]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/^E:|^F:|absent|invalid/m);
      if (name.endsWith('sr.dcm')) {
        expect(r.stdout).toContain('<CONTAINER:(126000,DCM,"Imaging Measurement Report")=SEPARATE>');
        expect(r.stdout).toContain('(111001,DCM,"Algorithm Name")="cbr-small-128"');
        expect(r.stdout).toContain('(121112,DCM,"Source of Measurement")');
        await writeFile(join(ARTIFACTS, 'sr-dsrdump.txt'), r.stdout);
      } else {
        expect(r.stdout).toContain('<CONTAINER:(113000,DCM,"Of Interest")=SEPARATE>');
        expect(r.stdout).toContain('(113012,DCM,"Key Object Description")="IN slices at ED (apex to base)');
      }
    }
  });

  it('renders a slice SC and a montage to PNG with dcm2pnm', async () => {
    const inFirst = result.phases.ED.inRange.first;
    const slice = `${String(1 + inFirst).padStart(2, '0')}-sc.dcm`; // the ED SC of the first IN slice
    const montage = `${String(1 + 2 * SLICES).padStart(2, '0')}-sc.dcm`; // the ED montage
    for (const [name, png] of [
      [slice, 'slice-sc-ed.png'],
      [montage, 'montage-ed.png'],
    ] as const) {
      const out = join(ARTIFACTS, png);
      const r = await runTool('dcm2pnm', ['--write-png', '-il', files.get(name)!, out]);
      expect(r.code, r.output).toBe(0);
      const bytes = await readFile(out);
      expect(Array.from(bytes.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    }
    report.push('', `PNG: ${slice} → test-artifacts/sr/slice-sc-ed.png, ${montage} → test-artifacts/sr/montage-ed.png`);
  });
});
