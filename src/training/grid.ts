/**
 * The grid runner: every cell of a grid protocol (config/protocols/paper.json) in one resumable run, behind
 * `sax-range train --protocol GRID.json --dataset SPEC --out DIR` (docs/training.md "Running a grid", which
 * also gives the schemas of `run.json` and `cells/<id>/result.json`).
 *
 * 1. Load the dataset once, apply `maxSubjects`, split off the held-out test subjects (patient level, seeded).
 * 2. Plan the cells (`planGrid`, pure): ids, run order, the depth-0 cells each depth-1 cell chooses from.
 * 3. Per cell: a single training run (`runTraining`: CV, epoch selection, final model) in `cells/<id>/`;
 *    depth-1 cells start from the final model of the best depth-0 cell of their architecture (CV score);
 *    then the final model on the test subjects; `result.json` last (its presence = cell done).
 * 4. `resume`: finished cells are skipped, an unfinished one resumes from its checkpoints.
 */

import { existsSync, readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { appendFile, mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { selectBackend, type BackendPreference } from '../inference/backend.js';
import { argmaxLabels, decodeRange, LABELS } from '../inference/decode.js';
import { loadModelDir } from '../inference/model-dir.js';
import type { PreprocessParams } from '../inference/preprocess.js';
import { hashSeed } from '../phantom/prng.js';
import { buildBatch, evalPlan, prepareStacks, type PreparedStack } from './data/samples.js';
import { loadDataset } from './data/spec.js';
import { holdOutSplit, kFoldSplit, subsetSubjects } from './data/split.js';
import type { LabelledDataset, LabelledSubject } from './data/types.js';
import { evaluatePredictions, meanStd, type EvaluationSummary, type StackPrediction } from './metrics.js';
import { buildModel, canonicalArchitecture, countMacs, countParams } from './models/index.js';
import { formatDuration } from './progress.js';
import { gradCamTiles, penultimateFeatures, pickByPair, writeCellFeatures, writeCellGradCam, type SliceRef } from './report/cell-artifacts.js';
import { cellName, effectiveDepth, expandGrid, loadProtocolFile, parseGridProtocol, type GridProtocol, type Protocol } from './protocol.js';
import { predictPreparedStacks, runTraining, versions, type EpochRecord, type TrainingLogger } from './train.js';

export const GRID_RUN_SCHEMA = 'sax-range/grid-run@1';
export const GRID_CELL_SCHEMA = 'sax-range/grid-cell@1';
const TEST_SEED_TAG = 0x74657374; // "test"

/** A grid that cannot run as asked (no depth-0 cell for a depth-1 cell, duplicate ids, a run folder of another run). */
export class GridError extends Error {
  /** The CLI prints the message without a stack trace (exit code 2). */
  readonly code = 'BAD_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'GridError';
  }
}

/** One cell of a planned grid. */
export interface GridCell {
  /** Folder name under `cells/`: `<group>-<architecture>-lr<rate>`. */
  id: string;
  /** `cellName`: `<protocol>/<group>/<architecture>/lr<rate>`. */
  name: string;
  group: string;
  protocol: Protocol;
  /** Depth-1 cells: the depth-0 cell ids it chooses its start model from (best CV score). */
  dependsOn: string[];
}

/** Cell id (a folder name): `<group>-<architecture>-lr<rate>`. */
export function cellId(group: string, architecture: string, learningRate: number): string {
  return `${group}-${architecture}-lr${learningRate}`;
}

/** Architecture identity for the depth-0 → depth-1 chain: canonical key, alpha, input size. */
function chainKey(p: Protocol): string {
  return `${canonicalArchitecture(p.architecture)}|${p.alpha ?? 1}|${p.inputSize}`;
}

/**
 * Expands and orders a grid (pure): cells that start from their own initialisation in file order, then the
 * depth-1 cells (`startFrom: depth0-final`), each depending on the depth-0 cells of its architecture.
 */
export function planGrid(grid: GridProtocol): GridCell[] {
  const protocols = expandGrid(grid);
  const cells: GridCell[] = [];
  let i = 0;
  for (const g of grid.grid) {
    for (const a of g.architectures) {
      for (const lr of g.learningRates) {
        const p = protocols[i++];
        cells.push({ id: cellId(g.name, a.architecture, lr), name: cellName(grid, g.name, a.architecture, lr), group: g.name, protocol: p, dependsOn: [] });
      }
    }
  }
  const seen = new Set<string>();
  for (const c of cells) {
    if (seen.has(c.id)) throw new GridError(`grid ${grid.name}: two cells named ${c.id} (same group, architecture and learning rate)`);
    seen.add(c.id);
  }
  const depth0 = cells.filter((c) => c.protocol.startFrom === 'init' && effectiveDepth(c.protocol) === 0);
  for (const c of cells) {
    if (c.protocol.startFrom !== 'depth0-final') continue;
    c.dependsOn = depth0.filter((d) => chainKey(d.protocol) === chainKey(c.protocol)).map((d) => d.id);
    if (!c.dependsOn.length) {
      throw new GridError(`grid ${grid.name}: cell ${c.id} starts from a depth-0 final model, but no depth-0 cell has architecture ${c.protocol.architecture} (alpha ${c.protocol.alpha ?? 1}, input ${c.protocol.inputSize})`);
    }
  }
  return [...cells.filter((c) => !c.dependsOn.length), ...cells.filter((c) => c.dependsOn.length)];
}

// ---------------------------------------------------------------------------------------------------------
// Records

export interface GridSplit {
  method: 'split' | 'test-dataset' | 'none';
  testFraction?: number;
  seed: number;
  trainVal: string[];
  test: string[];
  /** The CV folds of trainVal (every cell uses them). */
  folds: string[][];
}

export interface GridRunSession {
  startedAt: string;
  endedAt?: string;
  backend: string;
  resumed: boolean;
  cellsTrained: string[];
  cellsSkipped: string[];
}

export interface GridRunRecord {
  schema: typeof GRID_RUN_SCHEMA;
  protocol: GridProtocol;
  protocolFile: string | null;
  dataset: { spec: string; parts: LabelledDataset['parts'] };
  testDataset: { spec: string; parts: LabelledDataset['parts'] } | null;
  split: GridSplit;
  seeds: { protocol: number; testSplit: number | null; cvSplit: number };
  cells: Array<GridCellSettings & { startFrom: 'init' | 'depth0-final'; dependsOn: string[] }>;
  backend: string;
  versions: Record<string, string>;
  host: { platform: string; arch: string; cpus: number; cpuModel: string; totalMemoryGB: number };
  fingerprint: string;
  sessions: GridRunSession[];
  status: 'running' | 'done' | 'failed';
  error?: string;
  createdAt: string;
  updatedAt: string;
}

/** What names a cell, in `run.json`'s cell list and in its `result.json`. */
export interface GridCellSettings {
  id: string;
  name: string;
  group: string;
  architecture: string;
  inputSize: number;
  alpha?: number;
  depth: 0 | 1 | 'full';
  weights: 'none' | 'imagenet';
  learningRate: number;
}

export interface GridCellResult extends GridCellSettings {
  schema: typeof GRID_CELL_SCHEMA;
  /** Hash of the run fingerprint, the cell's protocol and its start model (resume checks it). */
  fingerprint: string;
  protocol: Protocol;
  startFrom: { cell: string; score: number | null; metric: string | null; model: string } | null;
  model: { params: number; trainableParams: number; macs: number };
  selection: { metric: string; orientation: 'max' | 'min'; epoch: number; curve: { epoch: number; mean: number; std: number }[] } | null;
  cv: {
    folds: number;
    foldSubjects: string[][];
    epochs: { fold: number; records: EpochRecord[] }[];
    pooled: EvaluationSummary;
    foldMean: Record<string, { mean: number; std: number; n: number }>;
  } | null;
  final: { epochs: number; trainLoss: number | null; trainAccuracy: number | null; seconds: number; model: 'model' };
  test: { subjects: string[]; summary: EvaluationSummary; predictions: 'test-predictions.csv' } | null;
  timings: {
    wallSeconds: number;
    cvTrainSeconds: number;
    finalTrainSeconds: number;
    testSeconds: number;
    testImages: number;
    secondsPerImageTest: number | null;
    meanEpochSeconds: number | null;
    meanSamplesPerSecond: number | null;
  };
  backend: string;
  versions: Record<string, string>;
  createdAt: string;
}

function sha(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, path);
}

async function readJson<T>(path: string): Promise<T | undefined> {
  if (!existsSync(path)) return undefined;
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

/** Installed versions of the packages that change numbers or speed (absent ones are left out). */
export function packageVersions(): Record<string, string> {
  const out: Record<string, string> = { ...versions() };
  for (const name of ['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-webgpu', 'webgpu', 'h5wasm']) {
    // node_modules/<name>/package.json in this folder or above (exports maps may hide `<name>/package.json`).
    for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
      const pj = join(dir, 'node_modules', name, 'package.json');
      if (existsSync(pj)) {
        try {
          const v = (JSON.parse(readFileSync(pj, 'utf8')) as { version?: string }).version;
          if (v) out[name] = v;
        } catch {
          // unreadable: left out
        }
        break;
      }
      if (dirname(dir) === dir) break;
    }
  }
  return out;
}

function hostInfo(): GridRunRecord['host'] {
  const c = cpus();
  return { platform: process.platform, arch: process.arch, cpus: c.length, cpuModel: c[0]?.model ?? '', totalMemoryGB: Math.round(totalmem() / 2 ** 30) };
}

/** Predictions as CSV, one row per slice (the columns of cv-predictions.csv without `fold`); also what `sax-range evaluate` writes. */
export function predictionsCsv(rows: (StackPrediction & { sourceSlices?: number[] })[]): string {
  const lines = ['subject,phase,slice,apex_index,p_oap,p_in,p_obs,predicted,label,truth'];
  for (const s of rows) {
    const pred = argmaxLabels(s.probs);
    const dec = decodeRange(s.probs).labels;
    s.probs.forEach((p, i) => {
      lines.push([s.subject, s.phase, s.sourceSlices?.[i] ?? i, i, p[0].toFixed(6), p[1].toFixed(6), p[2].toFixed(6), pred[i], dec[i], s.truth[i]].join(','));
    });
  }
  return `${lines.join('\n')}\n`;
}

/** The depth-1 start: the depth-0 cell with the best CV score (selection curve at the selected epoch). */
export function chooseStartCell(candidates: readonly GridCellResult[]): { cell: GridCellResult; score: number | null; metric: string | null } {
  if (!candidates.length) throw new GridError('no depth-0 cell to start from');
  if (candidates.length === 1) {
    const c = candidates[0];
    const s = c.selection;
    return { cell: c, score: s ? s.curve[s.epoch - 1]?.mean ?? null : null, metric: s?.metric ?? null };
  }
  let best: { cell: GridCellResult; score: number; metric: string } | undefined;
  for (const c of candidates) {
    const s = c.selection;
    if (!s) throw new GridError(`cell ${c.id} has no CV score to choose the depth-1 start model by (folds = 1 with several depth-0 learning rates)`);
    const score = s.curve[s.epoch - 1].mean;
    const better = best === undefined || (s.orientation === 'min' ? score < best.score : score > best.score);
    if (better) best = { cell: c, score, metric: s.metric };
  }
  return best!;
}

// ---------------------------------------------------------------------------------------------------------
// Progress across the grid

class GridProgress {
  private readonly start = performance.now() / 1000;
  private doneWork = 0; // work of cells finished in this session
  private skippedWork = 0;
  current?: { id: string; index: number; work: number; fraction: number };
  cellsDone = 0;

  constructor(
    private readonly totalWork: number,
    private readonly cells: number,
    private readonly write: (line: string) => void,
  ) {}

  skip(work: number): void {
    this.skippedWork += work;
    this.cellsDone++;
  }

  finish(work: number): void {
    this.doneWork += work;
    this.cellsDone++;
    this.current = undefined;
  }

  line(): string {
    const inCell = this.current ? this.current.work * this.current.fraction : 0;
    const done = this.skippedWork + this.doneWork + inCell;
    const elapsed = performance.now() / 1000 - this.start;
    const rate = elapsed > 0 ? (this.doneWork + inCell) / elapsed : 0;
    const eta = rate > 0 ? (this.totalWork - done) / rate : Number.NaN;
    const pct = this.totalWork > 0 ? Math.round((100 * done) / this.totalWork) : 100;
    const cur = this.current ? `, running ${this.current.id} (${this.current.index}/${this.cells}, ${Math.round(100 * this.current.fraction)}%)` : '';
    return `[grid] ${this.cellsDone}/${this.cells} cells done${cur} | ${pct}% of the estimated work, elapsed ${formatDuration(elapsed)}, ETA ${formatDuration(eta)}`;
  }

  report(): void {
    this.write(this.line());
  }
}

// ---------------------------------------------------------------------------------------------------------
// runGrid

export interface RunGridOptions {
  /** A grid protocol object or the path of a grid protocol file. */
  protocol: GridProtocol | Record<string, unknown> | string;
  /** Dataset spec (`acdc:DIR`, `dicom:DIR`, `labels:`, `phantom:COUNT[:SEED]`, joined with `+`). */
  dataset: string;
  /** Held-out test subjects for `heldOutTest: 'test-dataset'`. */
  testDataset?: string;
  out: string;
  /** Overrides the protocol's `weightsDir` (folder of the Keras `*_notop.h5` files). */
  weightsDir?: string;
  backend?: BackendPreference;
  logger?: TrainingLogger;
  /** Continue the run in `out` (finished cells skipped, an unfinished one resumed). */
  resume?: boolean;
  /** Fold workers per cell (overrides parallelFolds). */
  workers?: number;
  /** Progress lines: true (default: stderr), false, or a line sink. `grid.log` gets them either way. */
  progress?: boolean | ((line: string) => void);
  /** Seconds between grid progress lines (besides one after each cell). @defaultValue 60 */
  progressSeconds?: number;
  /** Phantom image size override (tests). */
  phantomRows?: number;
  /** Grad-CAM tiles per (truth, prediction) pair in the report inputs (`gradcam.json`). @defaultValue 3 */
  gradcamPerPair?: number;
  /** Called after each cell's result.json is written (tests use it to interrupt a run). */
  afterCell?: (id: string) => void | Promise<void>;
}

export interface GridRunResult {
  out: string;
  cells: { id: string; status: 'trained' | 'skipped'; result: GridCellResult }[];
  run: GridRunRecord;
}

function protocolForRecord(grid: GridProtocol): Record<string, unknown> {
  const { description: _d, parallelFolds: _p, progressEvery: _pe, evalBatchSize: _e, weightsDir: _w, ...rest } = grid;
  return rest;
}

/** Runs a grid protocol (see the module comment); returns every cell's result. */
export async function runGrid(opts: RunGridOptions): Promise<GridRunResult> {
  let grid: GridProtocol;
  let protocolFile: string | null = null;
  if (typeof opts.protocol === 'string') {
    protocolFile = opts.protocol;
    const f = await loadProtocolFile(opts.protocol);
    if (f.kind !== 'grid') throw new GridError(`${opts.protocol} is a single-run protocol, not a grid`);
    grid = f.grid;
  } else {
    grid = parseGridProtocol(opts.protocol);
  }
  if (opts.weightsDir) grid = { ...grid, weightsDir: opts.weightsDir };
  const cells = planGrid(grid);
  if (grid.heldOutTest === 'test-dataset' && !opts.testDataset) throw new GridError(`grid ${grid.name}: heldOutTest 'test-dataset' needs --test-dataset SPEC`);
  if (grid.heldOutTest !== 'test-dataset' && opts.testDataset) throw new GridError(`grid ${grid.name}: --test-dataset given, but heldOutTest is '${grid.heldOutTest}'`);

  const out = resolve(opts.out);
  const runPath = join(out, 'run.json');
  const previous = await readJson<GridRunRecord>(runPath);
  if (!opts.resume && existsSync(out) && (await readdir(out)).length > 0) {
    throw new GridError(`${out} is not empty${previous ? ' (it holds a grid run)' : ''}: pass --resume to continue that run, or choose another --out`);
  }
  await mkdir(join(out, 'cells'), { recursive: true });
  const log = opts.logger;
  const sink = opts.progress === false ? undefined : typeof opts.progress === 'function' ? opts.progress : (l: string) => process.stderr.write(`${l}\n`);
  const logPath = join(out, 'grid.log');
  let logQueue: Promise<void> = Promise.resolve();
  const write = (line: string) => {
    sink?.(line);
    logQueue = logQueue.then(() => appendFile(logPath, `${line}\n`)).catch(() => {});
  };

  const sel = await selectBackend(opts.backend ?? 'auto', log as Parameters<typeof selectBackend>[1]);

  // Data: load once, subset, split off the test subjects.
  const ds = await loadDataset(opts.dataset, { phantomRows: opts.phantomRows });
  let subjects: LabelledSubject[] = ds.subjects;
  if (grid.maxSubjects && grid.maxSubjects < subjects.length) {
    const keep = new Set(subsetSubjects(subjects, grid.maxSubjects, grid.seed));
    subjects = subjects.filter((s) => keep.has(s.id));
  }
  let testSubjects: LabelledSubject[] = [];
  let testDs: LabelledDataset | undefined;
  let testSeed: number | null = null;
  if (grid.heldOutTest === 'split') {
    testSeed = hashSeed(grid.seed, TEST_SEED_TAG);
    const { test } = holdOutSplit(subjects, grid.testFraction ?? 0.2, testSeed);
    const inTest = new Set(test);
    testSubjects = subjects.filter((s) => inTest.has(s.id));
    subjects = subjects.filter((s) => !inTest.has(s.id));
  } else if (grid.heldOutTest === 'test-dataset') {
    testDs = await loadDataset(opts.testDataset!, { phantomRows: opts.phantomRows });
    const ids = new Set(subjects.map((s) => s.id));
    const both = testDs.subjects.filter((s) => ids.has(s.id)).map((s) => s.id);
    if (both.length) throw new GridError(`--test-dataset shares ${both.length} subjects with --dataset (${both.slice(0, 3).join(', ')}…): test subjects must never be trained on`);
    testSubjects = testDs.subjects;
  }
  const trainVal: LabelledDataset = { spec: opts.dataset, parts: ds.parts, subjects };
  const split: GridSplit = {
    method: grid.heldOutTest,
    ...(grid.heldOutTest === 'split' ? { testFraction: grid.testFraction ?? 0.2 } : {}),
    seed: testSeed ?? grid.seed,
    trainVal: subjects.map((s) => s.id).sort(),
    test: testSubjects.map((s) => s.id).sort(),
    folds: grid.folds > 1 ? kFoldSplit(subjects, grid.folds, grid.seed) : [],
  };
  const fingerprint = sha({ protocol: protocolForRecord(grid), dataset: opts.dataset, testDataset: opts.testDataset ?? null, split: { ...split, folds: undefined } });
  if (previous && previous.fingerprint !== fingerprint) {
    throw new GridError(`${runPath}: made with another protocol, dataset or split (fingerprint ${previous.fingerprint}, now ${fingerprint}); use a new --out`);
  }

  const now = new Date().toISOString();
  const session: GridRunSession = { startedAt: now, backend: sel.name, resumed: !!previous, cellsTrained: [], cellsSkipped: [] };
  const run: GridRunRecord = {
    schema: GRID_RUN_SCHEMA,
    protocol: grid,
    protocolFile,
    dataset: { spec: opts.dataset, parts: ds.parts },
    testDataset: testDs ? { spec: opts.testDataset!, parts: testDs.parts } : null,
    split,
    seeds: { protocol: grid.seed, testSplit: testSeed, cvSplit: grid.seed },
    cells: cells.map((c) => ({
      id: c.id,
      name: c.name,
      group: c.group,
      architecture: c.protocol.architecture,
      inputSize: c.protocol.inputSize,
      ...(c.protocol.alpha !== undefined ? { alpha: c.protocol.alpha } : {}),
      depth: effectiveDepth(c.protocol),
      weights: c.protocol.weights,
      learningRate: c.protocol.learningRate,
      startFrom: c.protocol.startFrom,
      dependsOn: c.dependsOn,
    })),
    backend: sel.name,
    versions: packageVersions(),
    host: hostInfo(),
    fingerprint,
    sessions: [...(previous?.sessions ?? []), session],
    status: 'running',
    createdAt: previous?.createdAt ?? now,
    updatedAt: now,
  };
  const saveRun = async () => {
    run.updatedAt = new Date().toISOString();
    await writeJsonAtomic(runPath, run);
  };
  await saveRun();

  // Work estimate per cell: (jobs) × epochs × samples per epoch × MACs of one forward pass.
  const samples = subjects.flatMap((s) => s.stacks).reduce((a, st) => a + st.labels.reduce((b, l) => b + (l === 'IN' ? 1 : grid.oversample), 0), 0);
  const macsCache = new Map<string, number>();
  const macsOf = (p: Protocol) => {
    const key = `${chainKey(p)}|${p.padding ?? ''}`;
    let m = macsCache.get(key);
    if (m === undefined) {
      const model = buildModel(p.architecture, { inputSize: p.inputSize, seed: 1, padding: p.padding, alpha: p.alpha });
      m = countMacs(model);
      model.dispose();
      macsCache.set(key, m);
    }
    return m;
  };
  // k folds train on (k−1)/k of the samples each, the final model on all: k × samples per epoch in all.
  const workOf = (p: Protocol) => p.epochs * samples * macsOf(p) * (p.folds > 1 ? p.folds : 1);
  const works = new Map(cells.map((c) => [c.id, workOf(c.protocol)]));
  const progress = new GridProgress([...works.values()].reduce((a, b) => a + b, 0), cells.length, write);
  const timer = setInterval(() => progress.report(), Math.max(1, opts.progressSeconds ?? 60) * 1000);
  timer.unref();

  const results = new Map<string, GridCellResult>();
  const outcome: GridRunResult['cells'] = [];
  try {
    for (const [index, cell] of cells.entries()) {
      const cellDir = join(out, 'cells', cell.id);
      let start: ReturnType<typeof chooseStartCell> | undefined;
      if (cell.dependsOn.length) start = chooseStartCell(cell.dependsOn.map((id) => results.get(id)!));
      const startModel = start ? join(out, 'cells', start.cell.id, 'model') : undefined;
      const cellFp = sha({ run: fingerprint, protocol: cell.protocol, start: start ? start.cell.fingerprint : null });
      const done = await readJson<GridCellResult>(join(cellDir, 'result.json'));
      if (done) {
        if (done.fingerprint !== cellFp) throw new GridError(`${cellDir}/result.json was made with another protocol or start model (fingerprint ${done.fingerprint}, now ${cellFp}); use a new --out`);
        results.set(cell.id, done);
        outcome.push({ id: cell.id, status: 'skipped', result: done });
        session.cellsSkipped.push(cell.id);
        progress.skip(works.get(cell.id)!);
        write(`[grid] cell ${index + 1}/${cells.length} ${cell.id}: done before, skipped`);
        continue;
      }
      progress.current = { id: cell.id, index: index + 1, work: works.get(cell.id)!, fraction: 0 };
      write(`[grid] cell ${index + 1}/${cells.length} ${cell.id}${start ? ` (from ${start.cell.id}'s final model)` : ''}`);
      const result = await runCell({
        cell,
        cellDir,
        out,
        trainVal,
        testSubjects,
        start: start && startModel ? { ...start, dir: startModel } : undefined,
        fingerprint: cellFp,
        backend: sel.name,
        opts,
        write: (line) => {
          const m = /\| all (\d+)% ETA/.exec(line);
          if (m && progress.current) progress.current.fraction = Number(m[1]) / 100;
          write(`[cell ${index + 1}/${cells.length} ${cell.id}] ${line}`);
        },
      });
      results.set(cell.id, result);
      outcome.push({ id: cell.id, status: 'trained', result });
      session.cellsTrained.push(cell.id);
      progress.finish(works.get(cell.id)!);
      await saveRun();
      const t = result.test?.summary.all.argmax;
      write(
        `[grid] cell ${cell.id} done in ${formatDuration(result.timings.wallSeconds)}: selected epoch ${result.selection?.epoch ?? result.final.epochs}` +
          `${result.cv ? `, CV accuracy ${result.cv.pooled.all.argmax.accuracy.toFixed(3)}` : ''}${t ? `, test accuracy ${t.accuracy.toFixed(3)}` : ''}`,
      );
      progress.report();
      await opts.afterCell?.(cell.id);
    }
    run.status = 'done';
    session.endedAt = new Date().toISOString();
    await saveRun();
    return { out, cells: outcome, run };
  } catch (err) {
    run.status = 'failed';
    run.error = (err as Error).message;
    session.endedAt = new Date().toISOString();
    await saveRun().catch(() => {});
    throw err;
  } finally {
    clearInterval(timer);
    await logQueue;
  }
}

interface RunCellArgs {
  cell: GridCell;
  cellDir: string;
  out: string;
  trainVal: LabelledDataset;
  testSubjects: LabelledSubject[];
  start?: { cell: GridCellResult; score: number | null; metric: string | null; dir: string };
  fingerprint: string;
  backend: string;
  opts: RunGridOptions;
  write: (line: string) => void;
}

/** One cell: the single training run, the test evaluation, result.json. */
async function runCell(a: RunCellArgs): Promise<GridCellResult> {
  const t0 = performance.now();
  const P = a.cell.protocol;
  // maxSubjects was applied to the whole grid before the test split.
  const { maxSubjects: _m, ...protocol } = P;
  const r = await runTraining({
    protocol,
    dataset: a.trainVal.spec,
    out: a.cellDir,
    backend: a.opts.backend ?? 'auto',
    logger: a.opts.logger,
    resume: true,
    workers: a.opts.workers,
    progress: a.write,
    gridCell: { data: a.trainVal, ...(a.start ? { initialModel: { dir: a.start.dir, id: a.start.cell.fingerprint } } : {}) },
  });
  if (!r.modelDir) throw new GridError(`cell ${a.cell.id}: no final model (finalModel must be true in a grid)`);
  const cvRecord = r.cv ? await readJson<{ folds: { fold: number; val: string[]; seconds: number; epochs: EpochRecord[] }[] }>(join(a.cellDir, 'cv.json')) : undefined;

  const { model, card } = await loadModelDir(r.modelDir);
  let test: GridCellResult['test'] = null;
  let testSeconds = 0;
  let testImages = 0;
  let modelInfo: GridCellResult['model'];
  try {
    modelInfo = { params: countParams(model, false), trainableParams: countParams(model, true), macs: countMacs(model) };
    if (a.testSubjects.length) {
      const tt = performance.now();
      const params = card.preprocessing as PreprocessParams;
      const prepared = prepareStacks(
        a.testSubjects.flatMap((s) => s.stacks),
        params.clip,
      );
      const preds = await predictPreparedStacks(model, prepared, params, P.evalBatchSize);
      testSeconds = (performance.now() - tt) / 1000;
      testImages = prepared.reduce((n, s) => n + s.labels.length, 0);
      const rows = preds.map((p, i) => ({ ...p, sourceSlices: prepared[i].sourceSlices }));
      await writeFile(join(a.cellDir, 'test-predictions.csv'), predictionsCsv(rows));
      test = { subjects: a.testSubjects.map((s) => s.id).sort(), summary: evaluatePredictions(preds), predictions: 'test-predictions.csv' };
      try {
        await writeReportInputs(a.cellDir, model, prepared, params, preds, a.opts.gradcamPerPair ?? 3);
      } catch (err) {
        // The cell's training and test numbers stand without them; the report says when a cell has none.
        a.opts.logger?.warn({ cell: a.cell.id, err: (err as Error).message }, 'report inputs (features, Grad-CAM) not written');
        a.write(`[grid] cell ${a.cell.id}: report inputs not written: ${(err as Error).message}`);
      }
    }
  } finally {
    model.dispose();
  }
  const finalJob = await readJson<{ result: { records: EpochRecord[]; seconds: number } }>(join(a.cellDir, 'checkpoints', 'final', 'state.json'));
  const finalRecords = finalJob?.result.records ?? [];
  const allRecords = [...(cvRecord?.folds.flatMap((f) => f.epochs) ?? []), ...finalRecords];
  const result: GridCellResult = {
    schema: GRID_CELL_SCHEMA,
    id: a.cell.id,
    name: a.cell.name,
    group: a.cell.group,
    architecture: P.architecture,
    inputSize: P.inputSize,
    ...(P.alpha !== undefined ? { alpha: P.alpha } : {}),
    depth: effectiveDepth(P),
    weights: P.weights,
    learningRate: P.learningRate,
    fingerprint: a.fingerprint,
    protocol: P,
    startFrom: a.start ? { cell: a.start.cell.id, score: a.start.score, metric: a.start.metric, model: relative(a.out, a.start.dir) } : null,
    model: modelInfo,
    selection: r.cv ? r.cv.selection : null,
    cv:
      r.cv && cvRecord
        ? {
            folds: r.cv.folds,
            foldSubjects: r.cv.split,
            epochs: cvRecord.folds.map((f) => ({ fold: f.fold, records: f.epochs })),
            pooled: r.cv.pooled,
            foldMean: r.cv.foldMean,
          }
        : null,
    final: {
      epochs: r.selectedEpoch,
      trainLoss: finalRecords.at(-1)?.trainLoss ?? null,
      trainAccuracy: finalRecords.at(-1)?.trainAccuracy ?? null,
      seconds: finalJob?.result.seconds ?? 0,
      model: 'model',
    },
    test,
    timings: {
      wallSeconds: round((performance.now() - t0) / 1000),
      cvTrainSeconds: round(cvRecord?.folds.reduce((s, f) => s + f.seconds, 0) ?? 0),
      finalTrainSeconds: round(finalJob?.result.seconds ?? 0),
      testSeconds: round(testSeconds),
      testImages,
      secondsPerImageTest: testImages ? round(testSeconds / testImages, 6) : null,
      meanEpochSeconds: allRecords.length ? round(meanStd(allRecords.map((e) => e.seconds)).mean) : null,
      meanSamplesPerSecond: allRecords.length ? round(meanStd(allRecords.map((e) => e.samplesPerSecond)).mean) : null,
    },
    backend: a.backend,
    versions: packageVersions(),
    createdAt: new Date().toISOString(),
  };
  await writeJsonAtomic(join(a.cellDir, 'result.json'), result);
  return result;
}

/**
 * The report's inputs for the test slices (docs/training.md "Report inputs"): GAP features of every slice
 * (`features.json/.bin`) and Grad-CAM tiles for the predicted class, up to `perPair` per (truth, prediction)
 * pair, the most confident first (`gradcam.json/.bin`).
 */
async function writeReportInputs(cellDir: string, model: tf.LayersModel, stacks: readonly PreparedStack[], params: PreprocessParams, preds: readonly StackPrediction[], perPair: number): Promise<void> {
  const plan = evalPlan(stacks);
  const refs: (SliceRef & { probability: number; cls: number })[] = [];
  preds.forEach((p) => {
    const predicted = argmaxLabels(p.probs);
    p.probs.forEach((row, i) => {
      const cls = LABELS.indexOf(predicted[i]);
      refs.push({ subject: p.subject, phase: p.phase, apexIndex: i, truth: p.truth[i], predicted: predicted[i], probability: row[cls], cls });
    });
  });
  if (refs.length !== plan.length) throw new Error(`report inputs: ${refs.length} predictions for ${plan.length} slices`);
  const CHUNK = 128;
  const parts: Float32Array[] = [];
  let dim = 0;
  for (let i = 0; i < plan.length; i += CHUNK) {
    const items = plan.slice(i, i + CHUNK);
    const { x, shape } = buildBatch(stacks, items, params);
    const xt = tf.tensor4d(x, shape);
    try {
      const f = await penultimateFeatures(model, xt, 'gap');
      dim = f.dim;
      parts.push(f.values);
    } finally {
      xt.dispose();
    }
  }
  const values = new Float32Array(refs.length * dim);
  parts.reduce((o, p) => (values.set(p, o), o + p.length), 0);
  const sliceRef = (r: SliceRef): SliceRef => ({ subject: r.subject, phase: r.phase, apexIndex: r.apexIndex, truth: r.truth, predicted: r.predicted });
  await writeCellFeatures(cellDir, { layer: 'gap', dim, source: 'test', rows: refs.map(sliceRef), values });

  const byConfidence = refs.map((_, i) => i).sort((a, b) => refs[b].probability - refs[a].probability || a - b);
  const picked = pickByPair(byConfidence.map((i) => refs[i]), perPair).map((k) => byConfidence[k]);
  if (!picked.length) return;
  const { x, shape } = buildBatch(stacks, picked.map((i) => plan[i]), params);
  const xt = tf.tensor4d(x, shape);
  try {
    const g = await gradCamTiles(model, xt, picked.map((i) => refs[i].cls));
    await writeCellGradCam(cellDir, {
      size: g.size,
      layer: g.layer,
      source: 'test',
      tiles: picked.map((i) => ({ ...sliceRef(refs[i]), probability: round(refs[i].probability, 6) })),
      images: g.images,
      cams: g.cams,
    });
  } finally {
    xt.dispose();
  }
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
