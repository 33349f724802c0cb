import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/inference/backend.js';
import { buildReport, embedTsne, parsePredictionsCsv, readCellFeatures, readRunFolder, REPORT_SECTIONS, RunFolderError, type ReportResult } from '../../src/training/report/index.js';
import { writeFixtureRun, type FixtureRun } from '../helpers/report-fixture.js';

let tmp: string;
let fixture: FixtureRun;
let report: ReportResult;
let html: string;

beforeAll(async () => {
  await selectBackend('wasm');
  tmp = await mkdtemp(join(tmpdir(), 'sax-report-'));
  fixture = await writeFixtureRun(join(tmp, 'run'));
  report = await buildReport({ run: fixture.dir, out: join(tmp, 'report'), tsne: { iterations: 200 } });
  html = await readFile(report.html, 'utf8');
}, 120_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('training report from a run folder', () => {
  it('has every section', () => {
    for (const s of REPORT_SECTIONS) expect(html).toContain(`<section id="${s}">`);
    expect(html).toContain('Results (Table 2)');
    expect(html).toContain('Computation time (Table 1)');
    expect(html).toContain('Training curves (Fig. 3)');
    expect(html).toContain('Grad-CAM by truth and prediction (Fig. 6)');
  });

  it('has a results row and a timing row per cell, grouped by depth', () => {
    const results = html.slice(html.indexOf('<section id="results">'), html.indexOf('<section id="timing">'));
    const timing = html.slice(html.indexOf('<section id="timing">'), html.indexOf('<section id="curves">'));
    for (const id of fixture.cellIds) {
      expect(results.split(`<tr class="best" data-cell="${id}">`).length + results.split(`<tr class="" data-cell="${id}">`).length - 2).toBe(1);
      expect(timing.split(`data-cell="${id}"`).length - 1).toBe(1);
    }
    expect(results).toContain('<h3>depth 0</h3>');
    expect(results).toContain('<h3>full (from scratch)</h3>');
    // The depth-0 cell is evaluated on its test predictions, the CBR cell on its CV predictions.
    expect(report.cells.map((c) => c.evaluatedOn)).toEqual(['test', 'cv']);
    expect(report.cells.every((c) => c.bestOfModel)).toBe(true); // one LR per model here
  });

  it('writes a readable PNG for every figure, and each figure the cells call for', async () => {
    const [vgg, cbr] = report.cells;
    expect(Object.keys(vgg.figures).sort()).toEqual(['confusion', 'curves', 'gradcam', 'tsne']);
    expect(Object.keys(cbr.figures).sort()).toEqual(['confusion', 'curves', 'tsne']); // no Grad-CAM tiles saved
    expect(report.figures).toContain('figures/summary.png');
    expect(report.figures.length).toBe(1 + 4 + 3);
    for (const f of report.figures) {
      expect(html).toContain(`src="${f}"`);
      const meta = await sharp(join(report.out, f)).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBeGreaterThan(100);
      expect(meta.height).toBeGreaterThan(100);
    }
    expect(html).toContain('CBR-cbr_tiny-lr0.01: no Grad-CAM tiles saved');
  });

  it('embeds every saved feature row in the t-SNE (fewer than maxPoints)', async () => {
    const json = JSON.parse(await readFile(report.json, 'utf8'));
    for (const c of json.cells) {
      expect(c.tsne.points).toBe(fixture.featureRows[c.id]);
      expect(c.tsne.coords).toHaveLength(fixture.featureRows[c.id]);
      expect(c.tsne.truth).toHaveLength(fixture.featureRows[c.id]);
    }
    expect(json.sections).toEqual([...REPORT_SECTIONS]);
  });

  it('computes the table from the predictions file (metrics are those of the CSV)', async () => {
    const run = await readRunFolder(fixture.dir);
    const stacks = parsePredictionsCsv(await readFile(join(fixture.dir, 'cells', fixture.cellIds[0], 'test-predictions.csv'), 'utf8'));
    expect(run.cells[0].predictions?.stacks).toEqual(stacks);
    const n = stacks.reduce((a, s) => a + s.truth.length, 0);
    const right = stacks.reduce((a, s) => a + s.truth.filter((t, i) => ['OAP', 'IN', 'OBS'][s.probs[i].indexOf(Math.max(...s.probs[i]))] === t).length, 0);
    expect(report.cells[0].metrics?.n).toBe(n);
    expect(report.cells[0].metrics?.accuracy).toBeCloseTo(right / n, 12);
    expect(right).toBeLessThan(n); // the fixture has errors, so the off-diagonal cells are exercised
    expect(html).toContain(`<td>${(right / n).toFixed(3)}</td>`);
  });

  it('reads back the Grad-CAM tiles the fixture wrote through gradCamTiles', () => {
    const g = report.cells[0].gradcam!;
    expect(g.tiles).toBeGreaterThan(0);
    expect(Object.values(g.counts).reduce((a, b) => a + b, 0)).toBe(g.tiles);
  });
});

describe('run folder errors', () => {
  it('refuses a folder without run.json and a wrong schema', async () => {
    await expect(readRunFolder(join(tmp, 'nowhere'))).rejects.toThrow(RunFolderError);
    const bad = join(tmp, 'bad');
    await (await import('node:fs/promises')).mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'run.json'), JSON.stringify({ schema: 'other', cells: [] }));
    await expect(readRunFolder(bad)).rejects.toThrow(/schema 'other'/);
  });

  it('refuses a features.bin of the wrong size', async () => {
    const cdir = join(fixture.dir, 'cells', fixture.cellIds[1]);
    expect(existsSync(join(cdir, 'features.bin'))).toBe(true);
    await writeFile(join(cdir, 'features.bin'), new Uint8Array(12));
    await expect(readCellFeatures(cdir)).rejects.toThrow(/bytes, expected/);
  });

  it('refuses a predictions CSV without probabilities', () => {
    expect(() => parsePredictionsCsv('subject,phase,apex_index,truth\na,ED,0,IN\n')).toThrow(/p_oap/);
  });
});

describe('embedTsne', () => {
  it('subsamples to maxPoints with a seed, the same subset each time', () => {
    const dim = 3;
    const values = Float32Array.from({ length: 40 * dim }, (_, i) => Math.sin(i * 1.7) + (Math.floor(i / dim) % 2) * 4);
    const a = embedTsne(values, dim, { maxPoints: 25, iterations: 50, seed: 3 });
    const b = embedTsne(values, dim, { maxPoints: 25, iterations: 50, seed: 3 });
    expect(a.indices).toHaveLength(25);
    expect(a.total).toBe(40);
    expect(a.indices).toEqual(b.indices);
    expect(a.coords).toEqual(b.coords);
    expect(a.perplexity).toBeCloseTo(8, 12); // (25 − 1) / 3
    expect(() => embedTsne(values, 7)).toThrow(RangeError);
  });
});
