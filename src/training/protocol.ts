/**
 * Training protocol files (config/protocols/*.json), validated with zod. Unknown keys are refused, so that a
 * typo does not silently fall back to a default. The paper's values (notes/paper.md §8): SGD, Nesterov
 * momentum 0.9, decay 1e-6 (Keras time-based: lr_t = lr0 / (1 + decay·t), t = updates so far), batch 32,
 * 50 epochs, 5-fold patient-level CV, OAP/OBS ×5 copies (the issue says ×6), rotation ±45°.
 */

import { readFile } from 'node:fs/promises';
import { z } from 'zod';

/** Fine-tuning depth: 0 = frozen base, head only; 1 = also the last block (models/freeze.ts); 'full' = everything. */
export const DepthSchema = z.union([z.literal(0), z.literal(1), z.literal('full')]);

/** Fields shared by a single training run (a grid cell) and a grid's defaults. */
const CommonFields = {
  /** Name recorded in the model card and reports. */
  name: z.string().min(1),
  description: z.string().optional(),
  /** CBR conv padding override ('valid' in the paper; 'same' lets CBR-Small run below 128²). */
  padding: z.enum(['valid', 'same']).optional(),
  channelMode: z.enum(['gray3', '2.5d']),
  /** Centre zoom: the fraction of the field of view kept (paper: 0.6, the central 60 %); default 0.6. */
  zoom: z.number().gt(0).lte(1).optional(),
  /** Intensity clip percentiles before scaling to 0–255 (paper: [2, 98]); default [2, 98]. */
  clip: z.tuple([z.number().min(0).max(100), z.number().min(0).max(100)]).optional(),
  epochs: z.number().int().min(1),
  batchSize: z.number().int().min(1).max(256),
  momentum: z.number().min(0).max(1).default(0.9),
  nesterov: z.boolean().default(true),
  decay: z.number().min(0).default(1e-6),
  /** Copies per epoch of each OAP/OBS training slice (1 = no oversampling). */
  oversample: z.number().int().min(1).max(50),
  /** Training rotation range ±degrees (0 = none). */
  rotationDegrees: z.number().min(0).max(180),
  /**
   * Precise BN (src/training/precise-bn.ts): after each epoch, set every BatchNormalization layer's moving
   * statistics to the mean of its batch statistics over this many training batches (the epoch's augmentation
   * and oversampling, drawn afresh). Absent or 0: keep tf.layers' exponential moving average.
   */
  bnRecalibrationBatches: z.number().int().min(0).max(10000).optional(),
  /** k of the patient-level k-fold CV; 1 = no CV (final model only). */
  folds: z.number().int().min(1).max(20),
  seed: z.number().int().min(0).max(0xffffffff),
  /** Train a final model on all subjects for the selected number of epochs and write <out>/model/. */
  finalModel: z.boolean(),
  /** Use a deterministic, group-balanced subset of this many subjects (quick runs). */
  maxSubjects: z.number().int().min(2).optional(),
  /**
   * Threads per job (src/training/replicas.ts): each batch is split into this many shards whose gradients are
   * computed at once and averaged (synchronous data parallelism). BN then normalises each shard with its own
   * statistics (batchSize/replicas samples), so this changes results slightly. Default 1. In all, a run uses
   * parallelFolds × replicas threads.
   */
  replicas: z.number().int().min(1).max(16).optional(),
  /**
   * Step learning-rate schedule on top of Keras' decay: from each listed epoch on, the rate is multiplied by
   * `lrDropFactor` once more (e.g. [9, 11] with 0.1: lr, then lr/10 from epoch 9, lr/100 from 11). Absent: none.
   */
  lrDropEpochs: z.array(z.number().int().min(2)).optional(),
  /** Factor of each drop in `lrDropEpochs` (default 0.1). */
  lrDropFactor: z.number().gt(0).lt(1).optional(),
  /** Head dropout rate before the last Dense (default 0.5, the paper's). */
  headDropout: z.number().min(0).lt(1).optional(),
  /** Fold models trained at once in worker threads (one tfjs instance each); default 1 = in-process. */
  parallelFolds: z.number().int().min(1).max(16).optional(),
  /**
   * Validation metric that picks the epoch (mean over folds): argmax balanced accuracy by default;
   * 'rangeExact' = the share of stacks whose range-decoded labels are all right (what a user of the IN range needs).
   */
  selectionMetric: z.enum(['balancedAccuracy', 'macroF1', 'accuracy', 'softAccuracy', 'logLoss', 'rangeExact']).default('balancedAccuracy'),
  /**
   * Range decoding's class log-prior (src/training/decoding-prior.ts): 'none' = plain maximum likelihood;
   * 'fit' = fitted on the cross-validation's out-of-fold predictions and written to the card (`decoding`),
   * its effect estimated by nested CV. Needs folds ≥ 3.
   */
  decodingPrior: z.enum(['none', 'fit']).default('none'),
  /** Prediction batch size for validation. */
  evalBatchSize: z.number().int().min(1).max(512).default(64),
  /** A progress line every N batches (default: about 10 per epoch). */
  progressEvery: z.number().int().min(1).optional(),
  /**
   * Held-out test evaluation of the final model (grid runs, grid.ts): 'none'; 'split' = a seeded, patient-level
   * share of the dataset (`testFraction`) split off before CV; 'test-dataset' = the `--test-dataset` spec.
   */
  heldOutTest: z.enum(['none', 'split', 'test-dataset']).default('none'),
  /** Share of the subjects held out by `heldOutTest: 'split'` (1/k of a seeded k-fold split, k = round(1/fraction)); default 0.2. */
  testFraction: z.number().gt(0).lte(0.5).optional(),
};

/** Fields of one model to train (a protocol file without `grid`, or one expanded grid cell). */
const CellFields = {
  /** src/training/models key: cbr_small, cbr_tiny, cbr_large_t, cbr_compact, vgg16, mobilenet, … */
  architecture: z.string().min(1),
  inputSize: z.number().int().min(16).max(512),
  learningRate: z.number().positive(),
  /** MobileNet V1/V2 width multiplier (the paper: 0.25 and 0.35); Keras default 1. */
  alpha: z.number().positive().max(2).optional(),
  /** Initial base weights: 'none' = random (from scratch), 'imagenet' = the Keras Applications `*_notop.h5`. */
  weights: z.enum(['none', 'imagenet']).default('none'),
  /** Folder holding the `*_notop.h5` files (docs/training.md); default `models/imagenet`. */
  weightsDir: z.string().min(1).optional(),
  /** What trains: 0, 1 or 'full'. Default 0 with ImageNet weights, 'full' otherwise. */
  depth: DepthSchema.optional(),
  /** Initial model: 'init' (built, plus `weights`) or 'depth0-final' (the final depth-0 model of the same architecture). */
  startFrom: z.enum(['init', 'depth0-final']).default('init'),
};

export const ProtocolSchema = z
  .strictObject({ ...CommonFields, ...CellFields })
  .superRefine((p, ctx) => {
    if (p.depth !== undefined && p.depth !== 'full' && p.weights !== 'imagenet' && p.startFrom !== 'depth0-final') {
      ctx.addIssue({ code: 'custom', path: ['depth'], message: `depth ${p.depth} freezes a pretrained base: needs weights 'imagenet' or startFrom 'depth0-final'` });
    }
    if (p.startFrom === 'depth0-final' && p.depth !== 1) {
      ctx.addIssue({ code: 'custom', path: ['startFrom'], message: "startFrom 'depth0-final' is for depth 1" });
    }
  });

/** One group of grid cells: architectures × learning rates at one depth. */
export const GridGroupSchema = z.strictObject({
  /** Label of the group in cell names and reports (e.g. 'D0', 'D1', 'CBR'). */
  name: z.string().regex(/^[\w.-]+$/),
  architectures: z
    .array(
      z.strictObject({
        architecture: z.string().min(1),
        inputSize: z.number().int().min(16).max(512),
        alpha: z.number().positive().max(2).optional(),
        padding: z.enum(['valid', 'same']).optional(),
      }),
    )
    .min(1),
  learningRates: z.array(z.number().positive()).min(1),
  weights: z.enum(['none', 'imagenet']).default('none'),
  depth: DepthSchema.optional(),
  startFrom: z.enum(['init', 'depth0-final']).default('init'),
});

/** A grid protocol (config/protocols/paper.json): shared settings + groups, expanded by `expandGrid`. */
export const GridProtocolSchema = z.strictObject({
  ...CommonFields,
  weightsDir: z.string().min(1).optional(),
  grid: z.array(GridGroupSchema).min(1),
});

export type GridProtocol = z.infer<typeof GridProtocolSchema>;
export type GridGroup = z.infer<typeof GridGroupSchema>;

export type Protocol = z.infer<typeof ProtocolSchema>;
export type ProtocolInput = z.input<typeof ProtocolSchema>;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function issuesText(source: string, issues: readonly { path: PropertyKey[]; message: string }[]): string {
  return `${source}: ${issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ')}`;
}

/** True when a parsed JSON value is a grid protocol (has `grid`). */
export function isGridProtocol(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'grid' in value;
}

/** Validates a grid protocol object; the error names every bad field. */
export function parseGridProtocol(value: unknown, source = 'protocol'): GridProtocol {
  const r = GridProtocolSchema.safeParse(value);
  if (!r.success) throw new ProtocolError(issuesText(source, r.error.issues));
  return r.data;
}

/** Name of a grid cell: `<protocol>/<group>/<architecture>/lr<rate>` (e.g. `paper/D1/vgg16/lr0.0001`). */
export function cellName(grid: Pick<GridProtocol, 'name'>, group: string, architecture: string, learningRate: number): string {
  return `${grid.name}/${group}/${architecture}/lr${learningRate}`;
}

/**
 * Expands a grid into its cells, each a complete single-run protocol (validated), in file order: groups,
 * then architectures, then learning rates.
 */
export function expandGrid(grid: GridProtocol): Protocol[] {
  const { grid: groups, name: _n, description, ...common } = grid;
  const cells: Protocol[] = [];
  for (const g of groups) {
    for (const a of g.architectures) {
      for (const lr of g.learningRates) {
        const name = cellName(grid, g.name, a.architecture, lr);
        const cell = {
          ...common,
          name,
          description: description ? `${description} — cell ${name}` : undefined,
          architecture: a.architecture,
          inputSize: a.inputSize,
          alpha: a.alpha,
          padding: a.padding,
          learningRate: lr,
          weights: g.weights,
          depth: g.depth,
          startFrom: g.startFrom,
        };
        cells.push(parseProtocol(JSON.parse(JSON.stringify(cell)), `grid cell ${name}`));
      }
    }
  }
  return cells;
}

/** Validates a protocol object; the error names every bad field. */
export function parseProtocol(value: unknown, source = 'protocol'): Protocol {
  if (isGridProtocol(value)) {
    throw new ProtocolError(`${source}: a grid protocol (${parseGridProtocol(value, source).grid.length} groups); expand it with expandGrid and run its cells`);
  }
  const r = ProtocolSchema.safeParse(value);
  if (!r.success) {
    throw new ProtocolError(issuesText(source, r.error.issues));
  }
  return r.data;
}

/** Reads and validates a protocol JSON file (a single run; a grid file is refused, see `loadProtocolFile`). */
export async function loadProtocol(path: string): Promise<Protocol> {
  const p = await loadProtocolFile(path);
  if (p.kind === 'grid') throw new ProtocolError(`protocol ${path}: a grid protocol (${expandGrid(p.grid).length} cells); run one of its cells`);
  return p.protocol;
}

/** Reads and validates a protocol JSON file: a single run or a grid. */
export async function loadProtocolFile(path: string): Promise<{ kind: 'cell'; protocol: Protocol } | { kind: 'grid'; grid: GridProtocol }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ProtocolError(`protocol ${path}: cannot read (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError(`protocol ${path}: not valid JSON (${(err as Error).message})`);
  }
  if (isGridProtocol(json)) return { kind: 'grid', grid: parseGridProtocol(json, `protocol ${path}`) };
  return { kind: 'cell', protocol: parseProtocol(json, `protocol ${path}`) };
}

/** The depth a protocol trains at: its `depth`, else 0 with ImageNet weights, else 'full'. */
export function effectiveDepth(p: Pick<Protocol, 'depth' | 'weights' | 'startFrom'>): 0 | 1 | 'full' {
  return p.depth ?? (p.weights === 'imagenet' ? 0 : 'full');
}
