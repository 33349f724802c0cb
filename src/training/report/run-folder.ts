/**
 * Reads a grid run folder (docs/training.md, "Run folder": `run.json` sax-range/grid-run@1 and
 * `cells/<id>/result.json` sax-range/grid-cell@1, the predictions CSVs, and the optional report inputs of
 * `cell-artifacts.ts`) into the plain records the report is built from. Only the fields the report uses are
 * typed here; a cell without `result.json` is listed as not done.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LABELS, type SliceLabel } from '../../inference/decode.js';
import type { StackPrediction } from '../metrics.js';
import type { EpochRecord } from '../train.js';
import type { GridCellSettings } from '../grid.js';
import { readCellFeatures, readCellGradCam, type CellFeatures, type CellGradCam } from './cell-artifacts.js';

export const RUN_SCHEMA = 'sax-range/grid-run@1';
export const CELL_SCHEMA = 'sax-range/grid-cell@1';

export class RunFolderError extends Error {
  readonly code = 'RUN_FOLDER_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'RunFolderError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

export type CellDepth = 0 | 1 | 'full';

/** A cell as `run.json` lists it. */
export type RunCell = GridCellSettings;

export interface RunInfo {
  schema: string;
  protocol: { name?: string; description?: string; epochs?: number; folds?: number; [k: string]: unknown };
  protocolFile: string | null;
  dataset: { spec: string };
  testDataset: { spec: string } | null;
  split?: { method: string; trainVal: string[]; test: string[]; folds: string[][] };
  cells: RunCell[];
  backend: string;
  versions: Record<string, string>;
  host?: { platform?: string; arch?: string; cpus?: number; cpuModel?: string; totalMemoryGB?: number };
  status: string;
  createdAt?: string;
  updatedAt?: string;
}

export interface CellTimings {
  wallSeconds?: number;
  cvTrainSeconds?: number;
  finalTrainSeconds?: number;
  testSeconds?: number;
  testImages?: number;
  secondsPerImageTest?: number;
  meanEpochSeconds?: number;
  meanSamplesPerSecond?: number;
}

/** The parts of `result.json` the report uses. */
export interface CellResult {
  schema: string;
  id: string;
  model?: { params?: number; trainableParams?: number; macs?: number };
  selection: null | { metric: string; epoch: number; curve: { epoch: number; mean: number; std: number }[] };
  cv: null | { folds: number; epochs: { fold: number; records: EpochRecord[] }[] };
  final?: { epochs?: number; seconds?: number };
  test: null | { subjects: string[]; predictions: string };
  timings: CellTimings;
  startFrom?: null | { cell: string };
  backend?: string;
}

/** One cell, read: its result (when done), the predictions the table evaluates, and the figure inputs. */
export interface CellData {
  cell: RunCell;
  dir: string;
  result?: CellResult;
  /** Test predictions when the cell has them, else the out-of-fold CV predictions. */
  predictions?: { source: 'test' | 'cv'; stacks: StackPrediction[] };
  features?: CellFeatures;
  gradcam?: CellGradCam;
}

export interface RunData {
  dir: string;
  run: RunInfo;
  cells: CellData[];
}

/**
 * Parses a predictions CSV (`cv-predictions.csv` / `test-predictions.csv`: subject, phase, apex_index,
 * p_oap, p_in, p_obs, truth, …) into stacks of labelled slices ordered apex → base.
 */
export function parsePredictionsCsv(text: string, where = 'predictions'): StackPrediction[] {
  const [header, ...lines] = text.trim().split(/\r?\n/);
  const cols = (header ?? '').split(',');
  const at = (name: string) => {
    const k = cols.indexOf(name);
    if (k < 0) throw new RunFolderError(`${where}: no column '${name}' (header: ${header})`);
    return k;
  };
  const [cS, cP, cA, cO, cI, cB, cT] = ['subject', 'phase', 'apex_index', 'p_oap', 'p_in', 'p_obs', 'truth'].map(at);
  const stacks = new Map<string, { subject: string; phase: string; rows: { apex: number; probs: number[]; truth: SliceLabel }[] }>();
  lines.forEach((line, i) => {
    if (!line) return;
    const f = line.split(',');
    const truth = f[cT];
    if (!(LABELS as readonly string[]).includes(truth)) throw new RunFolderError(`${where} line ${i + 2}: unknown truth '${truth}'`);
    const probs = [Number(f[cO]), Number(f[cI]), Number(f[cB])];
    if (probs.some((p) => !Number.isFinite(p))) throw new RunFolderError(`${where} line ${i + 2}: probabilities ${probs.join(', ')}`);
    const key = `${f[cS]}\u0000${f[cP]}`;
    let s = stacks.get(key);
    if (!s) stacks.set(key, (s = { subject: f[cS], phase: f[cP], rows: [] }));
    s.rows.push({ apex: Number(f[cA]), probs, truth: truth as SliceLabel });
  });
  return [...stacks.values()].map((s) => {
    const rows = s.rows.sort((a, b) => a.apex - b.apex);
    return { subject: s.subject, phase: s.phase, truth: rows.map((r) => r.truth), probs: rows.map((r) => r.probs) };
  });
}

async function readJson<T>(file: string): Promise<T> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (err) {
    throw new RunFolderError(`${file}: ${(err as Error).message}`);
  }
}

/** Reads a run folder: `run.json`, then every listed cell (done or not). */
export async function readRunFolder(dir: string): Promise<RunData> {
  const runFile = join(dir, 'run.json');
  if (!existsSync(runFile)) throw new RunFolderError(`${dir} is not a run folder: no run.json`);
  const run = await readJson<RunInfo>(runFile);
  if (run.schema !== RUN_SCHEMA) throw new RunFolderError(`${runFile}: schema '${run.schema}', expected '${RUN_SCHEMA}'`);
  if (!Array.isArray(run.cells)) throw new RunFolderError(`${runFile}: no cells[]`);
  const cells: CellData[] = [];
  for (const cell of run.cells) {
    const cdir = join(dir, 'cells', cell.id);
    const data: CellData = { cell, dir: cdir };
    const rf = join(cdir, 'result.json');
    if (existsSync(rf)) {
      const result = await readJson<CellResult>(rf);
      if (result.schema !== CELL_SCHEMA) throw new RunFolderError(`${rf}: schema '${result.schema}', expected '${CELL_SCHEMA}'`);
      data.result = result;
      const testCsv = result.test ? join(cdir, result.test.predictions || 'test-predictions.csv') : undefined;
      const cvCsv = join(cdir, 'cv-predictions.csv');
      if (testCsv && existsSync(testCsv)) data.predictions = { source: 'test', stacks: parsePredictionsCsv(await readFile(testCsv, 'utf8'), testCsv) };
      else if (existsSync(cvCsv)) data.predictions = { source: 'cv', stacks: parsePredictionsCsv(await readFile(cvCsv, 'utf8'), cvCsv) };
      data.features = await readCellFeatures(cdir);
      data.gradcam = await readCellGradCam(cdir);
    }
    cells.push(data);
  }
  return { dir, run, cells };
}
