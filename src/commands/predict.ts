/**
 * `sax-range predict --dataset acdc:DIR [--model DIR] --out FILE.csv`: per-slice predictions on the ACDC
 * NIfTI stacks, one row per slice and phase:
 *
 *   subject,phase,slice,p_oap,p_in,p_obs,predicted,label
 *
 * `slice` is the NIfTI z index (0-based; ACDC slice 0 is the BASE), `predicted` the argmax, `label` the
 * range decoding (OAP* IN+ OBS* along apex → base). Rows are sorted by subject, phase (ED, ES), slice.
 * The stacks are classified apex → base (the loader reverses ACDC's base-first order; NIfTI carries no
 * geometry, so the order is known, not decided), exactly as the service classifies DICOM stacks.
 *
 * Subjects are loaded and classified one at a time (the whole dataset does not sit in memory). Stacks the
 * loader skips (no LV cavity in any slice) are logged and have no rows.
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { selectBackend, type BackendPreference } from '../inference/backend.js';
import { SliceClassifier } from '../inference/classifier.js';
import { ClassifierPool } from '../inference/pool.js';
import { classLogPriorOf, type ClassifierCard } from '../inference/classifier.js';
import { argmaxLabels, chooseOrientation, decodeRange, NO_PRIOR, type ClassLogPrior, type SliceLabel } from '../inference/decode.js';
import type { Logger } from '../log.js';
import { listAcdcSubjects, loadAcdcSubject } from '../training/data/acdc.js';

/** What predict needs of a classifier (a SliceClassifier, or a stub in tests). */
export interface ProbabilityClassifier {
  classify(images: readonly Float32Array[], rows: number, columns: number): Promise<number[][]>;
  /** The model card's decoding settings (`label` is decoded with its class log-prior); none: no prior. */
  readonly card?: Pick<ClassifierCard, 'decoding'>;
}

export interface RunPredictOptions {
  /** `acdc:DIR`. */
  dataset: string;
  modelDir: string;
  /** CSV file to write (its folder is created). */
  out: string;
  backend: BackendPreference;
  logger: Logger;
  /** Only these subject ids (folder names). */
  subjects?: readonly string[];
  /**
   * Worker threads (src/inference/pool.ts); 1 = in-process.
   * @defaultValue 1
   */
  threads?: number;
  /** A ready classifier (tests); default: loaded from `modelDir` on `backend`. */
  classifier?: ProbabilityClassifier;
}

export interface PredictSummary {
  out: string;
  subjects: number;
  stacks: number;
  rows: number;
  /** Stacks the loader skipped, with the reason. */
  skipped: string[];
  /** Stacks whose decoding likelihood prefers the reversed order (the known ACDC order is kept). */
  orderDisagreements: string[];
  seconds: number;
}

export const PREDICT_CSV_HEADER = 'subject,phase,slice,p_oap,p_in,p_obs,predicted,label';

/**
 * The CSV rows of one stack, in NIfTI slice order. `sourceSlices[i]` is the NIfTI index of apex → base slice i;
 * `label` is range-decoded with `prior` (the model's class log-prior).
 */
export function predictionRows(
  subject: string,
  phase: string,
  probs: readonly (readonly number[])[],
  sourceSlices: readonly number[],
  prior: ClassLogPrior = NO_PRIOR,
): string[] {
  if (sourceSlices.length !== probs.length) throw new RangeError(`${subject} ${phase}: ${probs.length} probability rows for ${sourceSlices.length} slices`);
  const predicted = argmaxLabels(probs);
  const labels: SliceLabel[] = decodeRange(probs, prior).labels;
  const rows = probs.map((p, i) => ({
    slice: sourceSlices[i],
    line: [subject, phase, sourceSlices[i], p[0].toFixed(6), p[1].toFixed(6), p[2].toFixed(6), predicted[i], labels[i]].join(','),
  }));
  return rows.sort((a, b) => a.slice - b.slice).map((r) => r.line);
}

function parseAcdcSpec(spec: string): string {
  const m = /^acdc:(.+)$/.exec(spec.trim());
  if (!m) throw new Error(`predict: dataset must be acdc:DIR, got '${spec}'`);
  return m[1];
}

/** Runs `predict`; writes the CSV and returns a summary (also logged). */
export async function runPredict(opts: RunPredictOptions): Promise<PredictSummary> {
  const { logger } = opts;
  const t0 = performance.now();
  const dir = parseAcdcSpec(opts.dataset);
  let ids = await listAcdcSubjects(dir);
  if (ids.length === 0) throw new Error(`acdc dataset: no subject folders with Info.cfg under ${dir}`);
  if (opts.subjects) {
    const missing = opts.subjects.filter((s) => !ids.includes(s));
    if (missing.length) throw new Error(`acdc dataset: subjects not found under ${dir}: ${missing.join(', ')}`);
    ids = ids.filter((s) => opts.subjects!.includes(s));
  }

  let owned: { classifier: ProbabilityClassifier; close(): Promise<void> | void } | undefined;
  if (!opts.classifier) {
    if ((opts.threads ?? 1) > 1) {
      const pool = await ClassifierPool.create({ modelDir: opts.modelDir }, { threads: opts.threads, backend: opts.backend });
      owned = { classifier: pool, close: () => pool.close() };
    } else {
      await selectBackend(opts.backend, logger);
      const c = await SliceClassifier.load(opts.modelDir, { logger });
      owned = { classifier: c, close: () => c.dispose() };
    }
  }
  const classifier: ProbabilityClassifier = opts.classifier ?? owned!.classifier;
  const prior = classLogPriorOf(classifier.card ?? {});

  await mkdir(dirname(opts.out), { recursive: true });
  const tmp = `${opts.out}.tmp-${process.pid}`;
  const file = await open(tmp, 'w');
  const summary: PredictSummary = { out: opts.out, subjects: 0, stacks: 0, rows: 0, skipped: [], orderDisagreements: [], seconds: 0 };
  try {
    await file.write(`${PREDICT_CSV_HEADER}\n`);
    for (const id of ids) {
      const { subject, skipped } = await loadAcdcSubject(join(dir, id), id);
      summary.skipped.push(...skipped);
      for (const s of skipped) logger.warn({ subject: id, reason: s }, 'stack skipped');
      if (subject.stacks.length) summary.subjects++;
      for (const phase of ['ED', 'ES'] as const) {
        const stack = subject.stacks.find((s) => s.phase === phase);
        if (!stack) continue;
        const probs = await classifier.classify(stack.images, stack.rows, stack.columns);
        const sourceSlices = stack.sourceSlices ?? stack.images.map((_, i) => stack.images.length - 1 - i);
        const lines = predictionRows(id, phase, probs, sourceSlices, prior);
        await file.write(`${lines.join('\n')}\n`);
        summary.stacks++;
        summary.rows += lines.length;
        const o = chooseOrientation(probs, 'apex-first');
        if (o.agreesWithGeometry === false) summary.orderDisagreements.push(`${id} ${phase} (margin ${o.margin.toFixed(2)})`);
      }
      logger.debug({ subject: id }, 'subject predicted');
    }
    await file.close();
    await rename(tmp, opts.out);
  } catch (err) {
    await file.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await owned?.close();
  }
  summary.seconds = Math.round((performance.now() - t0) / 100) / 10;
  logger.info(
    { out: summary.out, subjects: summary.subjects, stacks: summary.stacks, rows: summary.rows, skipped: summary.skipped.length, orderDisagreements: summary.orderDisagreements.length, seconds: summary.seconds },
    'predict finished',
  );
  return summary;
}
