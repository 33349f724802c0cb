/**
 * `sax-range classify PATH... [--model DIR] [--out DIR] [--json]`: classifies DICOM files and folders
 * without a server. Reads every file under PATH (recursively; non-DICOM files are skipped and counted),
 * assembles the cine stacks, chooses ED and ES, classifies both phases of every stack and builds one
 * `sax-range/result@1` document per stack.
 *
 * - `--json`: prints the JSON array of the documents on stdout (logs go to stderr).
 * - `--out DIR`: writes `<stackId>.json` per stack there, and the DICOM objects (SR, slice and montage SCs,
 *   KOS) through `writeOutputs`; `outputs` in each document lists them.
 */
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { decodeFrame, PixelDataError } from '../dicom/pixels.js';
import { readInstanceMeta, type InstanceMeta } from '../dicom/meta.js';
import { selectBackend, type BackendPreference } from '../inference/backend.js';
import { SliceClassifier } from '../inference/classifier.js';
import { classifyStack, type StackClassifier } from '../inference/classify-stack.js';
import { ClassifierPool } from '../inference/pool.js';
import { parseResult, type OutputRef, type PhaseKey, type Result } from '../inference/result.js';
import type { Logger } from '../log.js';
import { choosePhases } from '../pipeline/classify.js';
import { assembleStacks } from '../stack/index.js';
import type { CineStack } from '../stack/types.js';

/** Everything an output writer (SR, SC, KOS: issue 4) gets for one classified stack. */
export interface OutputContext {
  stack: CineStack;
  /** The document so far (`outputs` empty). */
  result: Result;
  /** Per phase, one Grad-CAM per slice (rows × columns, 0–1), apex → base as in `result`. */
  cams: Map<PhaseKey, Float32Array[]>;
  /** Per phase, the decoded slices, apex → base. */
  images: Map<PhaseKey, Float32Array[]>;
  /** The `--out` folder. */
  outDir: string;
}

/** Writes the DICOM objects of one stack and returns their references for `result.outputs`. */
export type OutputWriter = (ctx: OutputContext) => Promise<OutputRef[]>;

export interface RunClassifyOptions {
  /** DICOM files and/or folders (searched recursively). */
  paths: readonly string[];
  /** Model directory (model.json, weight shards, model-card.json). */
  modelDir: string;
  /** Folder for `<stackId>.json` and the DICOM outputs; nothing is written without it. */
  out?: string;
  /** Print the JSON array of result documents on stdout. */
  json: boolean;
  backend: BackendPreference;
  logger: Logger;
  /**
   * Compute Grad-CAMs. @defaultValue true when `writeOutputs` is given (the secondary captures need them),
   * else false
   */
  cams?: boolean;
  /** The issue-4 hook: SR / SC / KOS writers, called per stack when `out` is set. */
  writeOutputs?: OutputWriter;
  /**
   * Worker threads (each with its own tfjs backend, see src/inference/pool.ts); 1 = in-process. Worth it for
   * many stacks: each worker pays the backend start and model load (about a second).
   * @defaultValue 1
   */
  threads?: number;
  /** A ready classifier (tests, or a long-lived process); default: loaded from `modelDir`. */
  classifier?: StackClassifier;
  /** Where `--json` goes. @defaultValue process.stdout */
  stdout?: (text: string) => void;
}

/** Input that yields no stack to classify; the message says what was found instead. */
export class NoStackError extends Error {
  readonly code = 'NO_STACK';
  constructor(message: string) {
    super(message);
    this.name = 'NoStackError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/**
 * Input that cannot be classified: a path that cannot be read, or stacks whose pixel data cannot be decoded
 * (the message names the stack and the file). The CLI prints it without a stack trace and exits 2.
 */
export class BadInputError extends Error {
  readonly code = 'BAD_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'BadInputError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Every file under the given paths (folders recursively, sorted, dot-files skipped). */
export async function listFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    let st;
    try {
      st = await stat(p);
    } catch (err) {
      throw new BadInputError(`cannot read ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (st.isDirectory()) {
      const entries = (await readdir(p)).filter((e) => !e.startsWith('.')).sort();
      for (const e of entries) await walk(join(p, e));
    } else if (st.isFile()) {
      out.push(p);
    }
  };
  for (const p of paths) await walk(p);
  return [...new Set(out)];
}

/** Reads the headers of every DICOM file; files that are not DICOM (or not readable) are returned apart. */
export async function readMetas(files: readonly string[]): Promise<{ metas: InstanceMeta[]; skipped: Array<{ path: string; error: string }> }> {
  const metas: InstanceMeta[] = [];
  const skipped: Array<{ path: string; error: string }> = [];
  for (const f of files) {
    try {
      metas.push(...(await readInstanceMeta(f)));
    } catch (err) {
      skipped.push({ path: f, error: (err as Error).message });
    }
  }
  return { metas, skipped };
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** Runs `classify`; returns the result documents (one per stack), also printed / written as asked. */
export async function runClassify(opts: RunClassifyOptions): Promise<Result[]> {
  const { logger } = opts;
  const t0 = performance.now();
  const files = await listFiles(opts.paths);
  const { metas, skipped } = await readMetas(files);
  if (skipped.length) logger.info({ skipped: skipped.length, example: skipped[0] }, 'files skipped (not readable as DICOM)');
  const assembly = assembleStacks(metas);
  for (const a of assembly.setAside) {
    logger.warn({ seriesInstanceUID: a.seriesInstanceUID, images: a.sopInstanceUIDs.length, code: a.code, reason: a.reason }, 'images set aside');
  }
  if (assembly.stacks.length === 0) {
    const reasons = [...new Set(assembly.setAside.map((a) => a.code))].join(', ');
    throw new NoStackError(
      `no cine short-axis stack in ${opts.paths.join(' ')}: ${files.length} files, ${metas.length} DICOM images, ` +
        `${skipped.length} not DICOM${reasons ? `, set aside: ${reasons}` : ''}`,
    );
  }
  const readMs = performance.now() - t0;

  let owned: { classifier: StackClassifier; close(): Promise<void> | void } | undefined;
  if (!opts.classifier) {
    if ((opts.threads ?? 1) > 1) {
      const pool = await ClassifierPool.create({ modelDir: opts.modelDir }, { threads: opts.threads, backend: opts.backend });
      logger.info({ threads: pool.threads, backend: pool.backend, model: pool.card.id }, 'classifier pool started');
      owned = { classifier: pool, close: () => pool.close() };
    } else {
      await selectBackend(opts.backend, logger);
      const c = await SliceClassifier.load(opts.modelDir, { logger });
      owned = { classifier: c, close: () => c.dispose() };
    }
  }
  const classifier: StackClassifier = opts.classifier ?? owned!.classifier;
  const cams = opts.cams ?? opts.writeOutputs !== undefined;
  const results: Result[] = [];
  /** Stacks that could not be classified (undecodable pixel data), with the reason. */
  const failed: string[] = [];
  try {
    if (opts.out) await mkdir(opts.out, { recursive: true });
    for (const stack of assembly.stacks) {
      try {
        for (const p of stack.problems) logger.warn({ stackId: stack.stackId, code: p.code, problem: p.message }, 'stack problem');
        const tp = performance.now();
        const phases = await choosePhases(stack);
        for (const k of ['ED', 'ES'] as const) {
          if (phases[k].warning) logger.warn({ stackId: stack.stackId, phase: k, warning: phases[k].warning }, 'phase choice');
        }
        const phasesMs = performance.now() - tp;
        const frames = async (s: number, p: number) => {
          const f = stack.slices[s].frames[p];
          try {
            return (await decodeFrame(f.path, f.frame ?? 0)).data;
          } catch (err) {
            if (err instanceof PixelDataError) throw new PixelDataError(`${f.path}: ${err.message}`);
            throw err;
          }
        };
        const classified = await classifyStack(stack, phases, frames, classifier, {
          cams,
          logger,
          // readMs: reading and assembling all input files (shared by the stacks of one run).
          timings: { readMs, phasesMs },
        });
        let result = classified.result;
        if (opts.out && opts.writeOutputs) {
          const outputs = await opts.writeOutputs({ stack, result, cams: classified.cams, images: classified.images, outDir: opts.out });
          result = parseResult({ ...result, outputs: [...result.outputs, ...outputs] });
        }
        if (opts.out) await writeFile(join(opts.out, `${safeName(stack.stackId)}.json`), `${JSON.stringify(result, null, 2)}\n`);
        logger.info(
          {
            studyInstanceUID: stack.studyInstanceUID,
            stackId: stack.stackId,
            slices: stack.slices.length,
            order: result.order.method,
            geometryAgrees: result.order.geometryAgrees,
            ED: result.phases.ED.inRange,
            ES: result.phases.ES.inRange,
          },
          'stack classified',
        );
        results.push(result);
      } catch (err) {
        // One unreadable instance (truncated or undecodable pixel data) fails its stack, not the whole run.
        if (!(err instanceof PixelDataError)) throw err;
        logger.error({ stackId: stack.stackId, error: err.message }, 'stack not classified: pixel data cannot be decoded');
        failed.push(`${stack.stackId}: ${err.message}`);
      }
    }
  } finally {
    await owned?.close();
  }
  if (opts.json) (opts.stdout ?? ((s: string) => process.stdout.write(s)))(`${JSON.stringify(results, null, 2)}\n`);
  if (failed.length) {
    throw new BadInputError(`${failed.length} of ${assembly.stacks.length} stack(s) could not be classified: ${failed.join('; ')}`);
  }
  return results;
}
