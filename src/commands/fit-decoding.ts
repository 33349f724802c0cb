/**
 * `sax-range fit-decoding --predictions CV.csv [--model DIR --write]`: fits range decoding's class log-prior
 * (src/training/decoding-prior.ts) on a cross-validation's out-of-fold predictions (`cv-predictions.csv` of
 * `sax-range train`) and reports its nested-CV estimate; with `--write`, stores it in the model card's
 * `decoding` section (and the estimate as `metrics.cv.pooledWithPrior`), so that every later classification
 * with that model decodes with it. The weights are untouched; the card's version gets a `+prior.DATE` suffix,
 * so that results decoded with and without the prior name different model versions.
 *
 * Fit only on predictions of the models that did not train on the stacks: the out-of-fold predictions of the
 * run that made the model. `sax-range train` does the same itself when the protocol says `decodingPrior: "fit"`.
 */

import { readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MODEL_CARD, parseModelCard, readModelCard, type ModelCard } from '../inference/model-dir.js';
import { parseCvPredictions } from '../training/cv-predictions.js';
import { cardDecoding, decodedRates, fitPriorOnCv, type CvDecodingPrior } from '../training/decoding-prior.js';
import { evaluatePredictions, type EvaluationSummary } from '../training/metrics.js';

export interface FitDecodingOptions {
  predictions: string;
  /** Model directory whose card gets the prior (with `write`). */
  modelDir?: string;
  write?: boolean;
  /** The card's `decoding.fittedOn` (default: names the predictions file). */
  fittedOn?: string;
}

export interface FitDecodingSummary {
  predictions: string;
  stacks: number;
  folds: number;
  classLogPrior: number[];
  perFold: Record<string, readonly number[]>;
  /** Range-exact rate and decoded slice accuracy, without and with the (nested) prior, per phase. */
  rangeExact: Record<string, { withoutPrior: number; withPrior: number }>;
  accuracy: Record<string, { withoutPrior: number; withPrior: number }>;
  /** The card written (with `write`). */
  card?: string;
  version?: string;
}

function compare(without: EvaluationSummary, withPrior: EvaluationSummary, key: 'rangeExact' | 'accuracy') {
  const a = decodedRates(without);
  const b = decodedRates(withPrior);
  const out: Record<string, { withoutPrior: number; withPrior: number }> = {};
  for (const scope of Object.keys(b)) if (a[scope]) out[scope] = { withoutPrior: a[scope][key], withPrior: b[scope][key] };
  return out;
}

/** The card with the prior in `decoding`, the nested estimate in `metrics.cv.pooledWithPrior`, and a new version. */
export function cardWithPrior(card: ModelCard, cv: CvDecodingPrior, withoutPrior: EvaluationSummary, fittedOn: string, today = new Date()): ModelCard {
  const base = card.version.replace(/\+prior\.\d{8}$/, '');
  const metrics = { ...card.metrics };
  if (metrics.cv && typeof metrics.cv === 'object') metrics.cv = { ...(metrics.cv as object), pooledWithPrior: cv.nested };
  return parseModelCard({
    ...card,
    version: `${base}+prior.${today.toISOString().slice(0, 10).replace(/-/g, '')}`,
    decoding: cardDecoding(cv, fittedOn, withoutPrior),
    metrics,
  });
}

export async function runFitDecoding(opts: FitDecodingOptions): Promise<FitDecodingSummary> {
  if (opts.write && !opts.modelDir) throw new Error('fit-decoding: --write needs --model DIR');
  const file = resolve(opts.predictions);
  const stacks = parseCvPredictions(await readFile(file, 'utf8'));
  const folds = new Set(stacks.map((s) => s.fold)).size;
  if (folds < 2) throw new Error(`fit-decoding: ${file} holds ${folds} fold(s); the nested estimate needs out-of-fold predictions of at least 2 folds`);
  const cv = fitPriorOnCv(stacks);
  const without = evaluatePredictions(stacks);
  const summary: FitDecodingSummary = {
    predictions: file,
    stacks: stacks.length,
    folds,
    classLogPrior: [...cv.prior],
    perFold: cv.perFold,
    rangeExact: compare(without, cv.nested, 'rangeExact'),
    accuracy: compare(without, cv.nested, 'accuracy'),
  };
  if (opts.write && opts.modelDir) {
    const dir = resolve(opts.modelDir);
    const card = cardWithPrior(await readModelCard(dir), cv, without, opts.fittedOn ?? `out-of-fold predictions in ${opts.predictions}`);
    const path = join(dir, MODEL_CARD);
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, `${JSON.stringify(card, null, 2)}\n`);
    await rename(tmp, path);
    summary.card = path;
    summary.version = card.version;
  }
  return summary;
}
