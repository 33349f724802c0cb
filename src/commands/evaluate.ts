/**
 * `sax-range evaluate --model DIR --dataset SPEC --out DIR` (DESIGN "CLI"): measures a model directory on a
 * labelled dataset (`acdc:`, `dicom:`, `labels:`, `phantom:`, joined with `+`) with the training module's
 * preprocessing and metrics — what an admin runs before shipping a retrained model, or to check the shipped one
 * on the site's own labelled archive. Writes into `--out`:
 *
 *   evaluation.json   `sax-range/evaluation@1`: model id/version, dataset parts and licences, backend, versions,
 *                     metrics for all stacks and for ED and ES apart (accuracy, soft accuracy, balanced
 *                     accuracy, micro/weighted/macro AUC, per-class precision/recall/F1/AUC, confusion
 *                     matrices argmax and range-decoded, range-exact rate)
 *   predictions.csv   one row per slice: subject,phase,slice,apex_index,p_oap,p_in,p_obs,predicted,label,truth
 *   summary.md        the headline table
 *
 * A model evaluated on data it was trained on measures nothing: the summary says so when the card's
 * training data names the same dataset.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { selectBackend, type BackendPreference } from '../inference/backend.js';
import type { PhaseKey } from '../inference/result.js';
import { loadModelDir } from '../inference/model-dir.js';
import type { PreprocessParams } from '../inference/preprocess.js';
import type { Logger } from '../log.js';
import { prepareStacks } from '../training/data/samples.js';
import { DatasetSpecError, loadDataset } from '../training/data/spec.js';
import { evaluateModel, type ModelEvaluation } from '../training/evaluate.js';
import { classLogPriorOf } from '../inference/classifier.js';
import { predictionsCsv } from '../training/grid.js';
import { predictPreparedStacks, versions } from '../training/train.js';

export const EVALUATION_SCHEMA = 'sax-range/evaluation@1';

export interface RunEvaluateOptions {
  modelDir: string;
  dataset: string;
  out: string;
  backend: BackendPreference;
  logger: Logger;
  /** Rows of generated phantom images (tests; default the phantom's 256). */
  phantomRows?: number;
}

export interface EvaluationDocument {
  schema: typeof EVALUATION_SCHEMA;
  /** `classLogPrior`: the prior the decoded figures used (the card's; [0, 0, 0] when it has none). */
  model: { dir: string; id: string; version: string; architecture: string; inputSize: number; channelMode: string; classLogPrior: number[] };
  dataset: { spec: string; parts: Array<{ spec: string; subjects: number; stacks: number; slices: number; license: { data: string; citation: string }; skipped: string[] }> };
  backend: string;
  versions: Record<string, string>;
  subjects: number;
  stacks: number;
  images: number;
  seconds: number;
  /** Whether the card's training data names one of the evaluated dataset parts (then the figures are not a test). */
  seenInTraining: boolean;
  metrics: { all: ModelEvaluation; ED?: ModelEvaluation; ES?: ModelEvaluation };
  createdAt: string;
}

/**
 * What identifies a dataset part's subjects: the kind and the resolved folder; for phantoms the seed (phantom
 * subject i of a seed is the same whatever the count, so two specs with one seed share subjects).
 */
function specKey(spec: string): string {
  const i = spec.indexOf(':');
  if (i < 0) return spec;
  const kind = spec.slice(0, i);
  const rest = spec.slice(i + 1);
  if (kind === 'phantom') return `phantom:seed=${rest.split(':')[1] ?? '1'}`;
  return `${kind}:${resolve(rest || '.')}`;
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : '—');
const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '—');

function summaryMarkdown(doc: EvaluationDocument): string {
  const rows = (['all', 'ED', 'ES'] as const)
    .filter((k) => doc.metrics[k])
    .map((k) => {
      const m = doc.metrics[k]!;
      return `| ${k} | ${m.stacks} | ${m.n} | ${pct(m.accuracy)} | ${pct(m.softAccuracy)} | ${f3(m.microAuc)} | ${f3(m.perClass.OAP.f1)} | ${f3(m.perClass.IN.f1)} | ${f3(m.perClass.OBS.f1)} | ${pct(m.rangeExact.argmax)} / ${pct(m.rangeExact.decoded)} | ${pct(m.rangeWithinOne)} |`;
    });
  return [
    `# Evaluation of ${doc.model.id} ${doc.model.version} on \`${doc.dataset.spec}\``,
    '',
    `${doc.subjects} subjects, ${doc.stacks} stacks, ${doc.images} labelled slices; backend ${doc.backend}; ${doc.seconds.toFixed(1)} s.`,
    doc.seenInTraining ? '\n**The model card says this model was trained on this data: these figures are not a held-out measurement.**\n' : '',
    '| phase | stacks | slices | accuracy | soft accuracy | micro-AUC | F1 OAP | F1 IN | F1 OBS | range exact (argmax / decoded) | decoded range ±1 slice |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    'Metrics as in src/training/evaluate.ts: argmax labels unless "decoded" (range decoding OAP* IN+ OBS*). "±1 slice": both ends of the decoded IN range within one slice of the truth.',
    '',
  ].join('\n');
}

export async function runEvaluate(opts: RunEvaluateOptions): Promise<EvaluationDocument> {
  const t0 = performance.now();
  const backend = await selectBackend(opts.backend, opts.logger);
  const ds = await loadDataset(opts.dataset, opts.phantomRows ? { phantomRows: opts.phantomRows } : {});
  const stacksRaw = ds.subjects.flatMap((s) => s.stacks);
  if (!stacksRaw.length) throw new DatasetSpecError(`dataset ${opts.dataset} has no labelled stacks to evaluate`);
  const { model, card } = await loadModelDir(resolve(opts.modelDir));
  let preds;
  let images = 0;
  let sourceSlices: number[][];
  try {
    const params = card.preprocessing as PreprocessParams;
    const prepared = prepareStacks(stacksRaw, params.clip);
    sourceSlices = prepared.map((p) => p.sourceSlices);
    images = prepared.reduce((n, s) => n + s.labels.length, 0);
    opts.logger.info({ model: card.id, dataset: opts.dataset, stacks: prepared.length, images, backend: backend.name }, 'evaluating');
    preds = await predictPreparedStacks(model, prepared, params);
  } finally {
    model.dispose();
  }
  const byPhase = (p: PhaseKey) => preds.filter((s) => s.phase === p);
  const prior = classLogPriorOf(card);
  const metrics: EvaluationDocument['metrics'] = { all: evaluateModel(preds, prior) };
  for (const p of ['ED', 'ES'] as const) if (byPhase(p).length) metrics[p] = evaluateModel(byPhase(p), prior);
  const trainedOn = new Set(card.training.datasets.map(specKey));
  const doc: EvaluationDocument = {
    schema: EVALUATION_SCHEMA,
    model: { dir: resolve(opts.modelDir), id: card.id, version: card.version, architecture: card.architecture, inputSize: card.inputSize, channelMode: card.channelMode, classLogPrior: [...prior] },
    dataset: { spec: opts.dataset, parts: ds.parts },
    backend: backend.name,
    versions: versions(),
    subjects: ds.subjects.length,
    stacks: preds.length,
    images,
    seconds: (performance.now() - t0) / 1000,
    seenInTraining: ds.parts.some((p) => trainedOn.has(specKey(p.spec))),
    metrics,
    createdAt: new Date().toISOString(),
  };
  await mkdir(opts.out, { recursive: true });
  await writeFile(join(opts.out, 'evaluation.json'), `${JSON.stringify(doc, null, 2)}\n`);
  await writeFile(join(opts.out, 'predictions.csv'), predictionsCsv(preds.map((p, i) => ({ ...p, sourceSlices: sourceSlices[i] }))));
  await writeFile(join(opts.out, 'summary.md'), summaryMarkdown(doc));
  return doc;
}
