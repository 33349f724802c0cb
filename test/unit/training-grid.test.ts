import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/inference/backend.js';
import { loadModelDir } from '../../src/inference/model-dir.js';
import { holdOutSplit, kFoldSplit } from '../../src/training/data/split.js';
import { chooseStartCell, GridError, planGrid, runGrid, type GridCellResult, type GridRunRecord } from '../../src/training/grid.js';
import { imagenetWeightsPath } from '../../src/training/models/imagenet-weights.js';
import { buildModel } from '../../src/training/models/index.js';
import { loadProtocolFile, parseGridProtocol, type GridProtocol } from '../../src/training/protocol.js';
import { readCellFeatures, readCellGradCam } from '../../src/training/report/cell-artifacts.js';
import { buildReport } from '../../src/training/report/index.js';
import { kerasLayoutOf, patternFill, writeKerasH5 } from '../helpers/keras-h5-writer.js';

let root: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'sax-grid-'));
  await selectBackend('wasm');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function gridFile(path: string): Promise<GridProtocol> {
  const f = await loadProtocolFile(path);
  if (f.kind !== 'grid') throw new Error(`${path} is not a grid`);
  return f.grid;
}

describe('grid planning (pure)', () => {
  it('paper.json: 63 cells, depth-1 cells last, each depending on the 3 depth-0 cells of its architecture', async () => {
    const cells = planGrid(await gridFile('config/protocols/paper.json'));
    expect(cells).toHaveLength(63);
    expect(new Set(cells.map((c) => c.id)).size).toBe(63);
    const firstD1 = cells.findIndex((c) => c.group === 'D1');
    expect(firstD1).toBe(36);
    expect(cells.slice(firstD1).every((c) => c.group === 'D1')).toBe(true);
    const d1 = cells.find((c) => c.id === 'D1-vgg16-lr0.0001')!;
    expect(d1.name).toBe('paper/D1/vgg16/lr0.0001');
    expect(d1.dependsOn).toEqual(['D0-vgg16-lr0.01', 'D0-vgg16-lr0.001', 'D0-vgg16-lr0.0001']);
    expect(cells.filter((c) => c.group !== 'D1').every((c) => c.dependsOn.length === 0)).toBe(true);
  });

  it('a depth-1 cell without a depth-0 cell of its architecture is refused before anything trains', async () => {
    const g = await gridFile('config/protocols/ci-grid.json');
    const bad = parseGridProtocol({ ...g, grid: g.grid.filter((x) => x.name !== 'D0') });
    expect(() => planGrid(bad)).toThrow(GridError);
    expect(() => planGrid(bad)).toThrow(/D1-mobilenet-lr0\.001 starts from a depth-0 final model, but no depth-0 cell has architecture mobilenet/);
    const other = parseGridProtocol({ ...g, grid: [{ ...g.grid[0], architectures: [{ architecture: 'mobilenet', inputSize: 32, alpha: 0.5 }] }, g.grid[1]] });
    expect(() => planGrid(other)).toThrow(/alpha 0\.25/);
  });

  it('quick.json is a grid: the three CBR baselines and one ImageNet architecture from scratch', async () => {
    const cells = planGrid(await gridFile('config/protocols/quick.json'));
    expect(new Set(cells.map((c) => c.protocol.architecture))).toEqual(new Set(['cbr_large_t', 'cbr_small', 'cbr_tiny', 'mobilenet']));
    expect(cells.every((c) => c.protocol.weights === 'none' && c.protocol.depth === 'full' && c.protocol.heldOutTest === 'split')).toBe(true);
  });

  it('held-out split: patient level, disjoint, seeded, about the fraction asked', () => {
    const subjects = Array.from({ length: 50 }, (_, i) => ({ id: `s${String(i).padStart(2, '0')}`, group: ['A', 'B', 'C', 'D', 'E'][i % 5] }));
    const a = holdOutSplit(subjects, 0.2, 7);
    expect(a.test).toHaveLength(10);
    expect(a.trainVal).toHaveLength(40);
    expect(a.test.filter((id) => a.trainVal.includes(id))).toEqual([]);
    expect(new Set(a.test.map((id) => subjects.find((s) => s.id === id)!.group)).size).toBe(5); // stratified
    expect(holdOutSplit([...subjects].reverse(), 0.2, 7)).toEqual(a);
    expect(holdOutSplit(subjects, 0.2, 8).test).not.toEqual(a.test);
    expect(() => holdOutSplit(subjects.slice(0, 2), 0.2, 1)).toThrow(/too few/);
  });

  it('the depth-1 start is the depth-0 cell with the best CV score (lowest for log loss)', () => {
    const cell = (id: string, mean: number, orientation: 'max' | 'min') =>
      ({ id, selection: { metric: 'm', orientation, epoch: 2, curve: [{ epoch: 1, mean: 0, std: 0 }, { epoch: 2, mean, std: 0 }] } }) as unknown as GridCellResult;
    expect(chooseStartCell([cell('a', 0.5, 'max'), cell('b', 0.9, 'max'), cell('c', 0.7, 'max')]).cell.id).toBe('b');
    expect(chooseStartCell([cell('a', 0.5, 'min'), cell('b', 0.9, 'min')]).cell.id).toBe('a');
    expect(chooseStartCell([cell('a', 0.5, 'max')]).score).toBe(0.5);
    expect(() => chooseStartCell([{ id: 'x', selection: null } as unknown as GridCellResult, cell('b', 1, 'max')])).toThrow(/no CV score/);
  });
});

describe('runGrid: ci-grid.json on phantom:6:1 end to end (WASM)', () => {
  it('layout, test split, depth-1 from the best depth-0 final model, resume after an interruption between and within cells', async () => {
    const weightsDir = join(root, 'imagenet');
    mkdirSync(weightsDir, { recursive: true });
    const src = buildModel('mobilenet', { inputSize: 32, seed: 3, alpha: 0.25 });
    const layout = kerasLayoutOf(src, (li, wi, n) => patternFill(li, wi, n).map((v) => 0.01 * (v % 1) + (wi === 3 ? 1 : 0))).filter((l) => !['fc1', 'predictions'].includes(l.name));
    src.dispose();
    await writeKerasH5(imagenetWeightsPath('mobilenet', weightsDir, 0.25), layout);

    const out = join(root, 'run');
    const lines: string[] = [];
    const messages: { msg: string; obj: Record<string, unknown> }[] = [];
    const logger = { info: (obj: Record<string, unknown>, msg: string) => messages.push({ msg, obj }), warn: () => {} };
    const base = { protocol: 'config/protocols/ci-grid.json', dataset: 'phantom:6:1', out, weightsDir, backend: 'wasm' as const, phantomRows: 96, logger, progressSeconds: 3600 };

    // Session 1: interrupted right after the first cell.
    class Stop extends Error {}
    await expect(
      runGrid({
        ...base,
        progress: (l) => lines.push(l),
        afterCell: () => {
          throw new Stop('interrupted after one cell');
        },
      }),
    ).rejects.toThrow('interrupted after one cell');
    const first = 'D0-mobilenet-lr0.01';
    expect(existsSync(join(out, 'cells', first, 'result.json'))).toBe(true);
    expect(readdirSync(join(out, 'cells'))).toEqual([first]);
    const run1 = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')) as GridRunRecord;
    expect(run1.status).toBe('failed');
    const firstResult = await readFile(join(out, 'cells', first, 'result.json'), 'utf8');

    // Without --resume the folder is refused.
    await expect(runGrid({ ...base, progress: false })).rejects.toThrow(/pass --resume/);

    // Session 2: interrupted inside the second cell, once its CV folds are done (the final model starts).
    await expect(
      runGrid({
        ...base,
        resume: true,
        progress: (l) => {
          lines.push(l);
          if (l.startsWith('[cell 2/4 D0-mobilenet-lr0.001] [final')) throw new Stop('interrupted inside a cell');
        },
      }),
    ).rejects.toThrow('interrupted inside a cell');
    expect(existsSync(join(out, 'cells', 'D0-mobilenet-lr0.001', 'result.json'))).toBe(false);

    // Session 3: finishes.
    messages.length = 0;
    lines.length = 0;
    const r = await runGrid({ ...base, resume: true, progress: (l) => lines.push(l) });
    expect(r.cells.map((c) => [c.id, c.status])).toEqual([
      [first, 'skipped'],
      ['D0-mobilenet-lr0.001', 'trained'],
      ['CBR-cbr_tiny-lr0.01', 'trained'],
      ['D1-mobilenet-lr0.001', 'trained'],
    ]);
    // The finished cell was not retrained; the half-finished one reused its finished folds.
    expect(await readFile(join(out, 'cells', first, 'result.json'), 'utf8')).toBe(firstResult);
    const reused = messages.filter((m) => m.msg === 'job already done (resumed from checkpoint)').map((m) => m.obj.job);
    expect(reused).toEqual(expect.arrayContaining(['fold-1', 'fold-2']));
    expect(lines.some((l) => /^\[grid\] 4\/4 cells done \| 100% of the estimated work/.test(l))).toBe(true);
    expect(lines.some((l) => /^\[cell 4\/4 D1-mobilenet-lr0\.001\] \[fold-1 1\/3\] epoch/.test(l))).toBe(true);

    // run.json: config, split, seeds, versions, backend, cells in run order, three sessions.
    const run = JSON.parse(await readFile(join(out, 'run.json'), 'utf8')) as GridRunRecord;
    expect(run.schema).toBe('sax-range/grid-run@1');
    expect(run.status).toBe('done');
    expect(run.sessions).toHaveLength(3);
    expect(run.sessions[2]).toMatchObject({ resumed: true, cellsSkipped: [first], cellsTrained: ['D0-mobilenet-lr0.001', 'CBR-cbr_tiny-lr0.01', 'D1-mobilenet-lr0.001'] });
    expect(run.backend).toBe('wasm');
    expect(run.versions).toMatchObject({ tfjs: expect.any(String), node: process.version, h5wasm: expect.any(String), '@tensorflow/tfjs-backend-wasm': expect.any(String) });
    expect(run.split.method).toBe('split');
    expect(run.split.test).toHaveLength(2);
    expect(run.split.trainVal).toHaveLength(4);
    expect(run.split.test.filter((id) => run.split.trainVal.includes(id))).toEqual([]);
    expect(run.split.folds).toEqual(kFoldSplit(run.split.trainVal.map((id) => ({ id })), 2, 1));
    expect(run.cells.map((c) => c.id)).toEqual(r.cells.map((c) => c.id));
    expect(run.cells[3]).toMatchObject({ depth: 1, startFrom: 'depth0-final', dependsOn: ['D0-mobilenet-lr0.01', 'D0-mobilenet-lr0.001'] });

    // Per cell: the files, the test evaluation on exactly the held-out subjects.
    for (const c of run.cells) {
      const dir = join(out, 'cells', c.id);
      for (const f of ['result.json', 'cv.json', 'cv-predictions.csv', 'test-predictions.csv', 'report.md', 'model/model-card.json']) expect(existsSync(join(dir, f)), `${c.id}/${f}`).toBe(true);
      const res = JSON.parse(await readFile(join(dir, 'result.json'), 'utf8')) as GridCellResult;
      expect(res).toMatchObject({ schema: 'sax-range/grid-cell@1', id: c.id, depth: c.depth, learningRate: c.learningRate });
      expect(res.test!.subjects).toEqual(run.split.test);
      expect(res.test!.summary.all.argmax.n).toBe(res.timings.testImages);
      const testCsv = (await readFile(join(dir, 'test-predictions.csv'), 'utf8')).trim().split('\n');
      expect(testCsv).toHaveLength(1 + res.timings.testImages);
      expect(new Set(testCsv.slice(1).map((l) => l.split(',')[0]))).toEqual(new Set(run.split.test));
      expect(res.cv!.epochs.map((e) => e.records.length)).toEqual([2, 2]);
      expect(res.cv!.foldSubjects.flat().sort()).toEqual(run.split.trainVal);
      expect(res.selection!.epoch).toBeGreaterThanOrEqual(1);
      expect(res.final.epochs).toBe(res.selection!.epoch);
      // The report's inputs: GAP features of every test slice, Grad-CAM tiles on the network input.
      const feats = (await readCellFeatures(dir))!;
      expect(feats).toMatchObject({ layer: 'gap', source: 'test' });
      expect(feats.rows).toHaveLength(res.timings.testImages);
      expect(feats.values.length).toBe(feats.rows.length * feats.dim);
      const cam = (await readCellGradCam(dir))!;
      expect(cam.size).toBe(32);
      expect(cam.tiles.length).toBeGreaterThan(0);
      expect(cam.tiles.every((t) => feats.rows.some((r) => r.subject === t.subject && r.phase === t.phase && r.apexIndex === t.apexIndex && r.predicted === t.predicted))).toBe(true);
    }

    // The report module reads this run folder as it is.
    const report = await buildReport({ run: out });
    expect(report.cells.map((c) => [c.id, c.done, c.evaluatedOn])).toEqual(run.cells.map((c) => [c.id, true, 'test']));
    expect(report.cells.every((c) => c.figures.tsne && c.figures.gradcam && c.figures.curves)).toBe(true);

    // The chain: D1 started from the final model of the better D0 cell (by CV score).
    const d0 = await Promise.all(['D0-mobilenet-lr0.01', 'D0-mobilenet-lr0.001'].map(async (id) => JSON.parse(await readFile(join(out, 'cells', id, 'result.json'), 'utf8')) as GridCellResult));
    const d1 = JSON.parse(await readFile(join(out, 'cells', 'D1-mobilenet-lr0.001', 'result.json'), 'utf8')) as GridCellResult;
    const best = chooseStartCell(d0).cell.id;
    expect(d1.startFrom).toMatchObject({ cell: best, model: join('cells', best, 'model') });
    expect(messages.some((m) => m.msg === 'starting from a trained model' && String(m.obj.from).endsWith(join('cells', best, 'model')))).toBe(true);
    expect(d1.model.trainableParams).toBeGreaterThan(d0[0].model.trainableParams); // depth 1 trains the last block too
    const { model: m0 } = await loadModelDir(join(out, 'cells', best, 'model'));
    const { model: m1 } = await loadModelDir(join(out, 'cells', 'D1-mobilenet-lr0.001', 'model'));
    const fresh = buildModel('mobilenet', { inputSize: 32, seed: 1, alpha: 0.25 });
    const fc1 = (m: typeof m0) => Array.from(m.getLayer('fc1').getWeights()[0].dataSync());
    const dist = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
    // The head kept training from D0's (lr 1e-3, a few steps): far closer to it than a fresh head is.
    expect(dist(fc1(m1), fc1(m0))).toBeLessThan(0.25 * dist(fc1(fresh), fc1(m0)));
    // A layer frozen at both depths is still D0's (= the imported weights).
    expect(Array.from(m1.getLayer('conv_dw_7').getWeights()[0].dataSync())).toEqual(Array.from(m0.getLayer('conv_dw_7').getWeights()[0].dataSync()));
    for (const m of [m0, m1, fresh]) m.dispose();
  }, 300_000);
});
