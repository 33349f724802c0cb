/**
 * Training protocol files (config/protocols/*.json), validated with zod. Unknown keys are refused, so that a
 * typo does not silently fall back to a default. The paper's values (notes/paper.md §8): SGD, Nesterov
 * momentum 0.9, decay 1e-6 (Keras time-based: lr_t = lr0 / (1 + decay·t), t = updates so far), batch 32,
 * 50 epochs, 5-fold patient-level CV, OAP/OBS ×5 copies (the issue says ×6), rotation ±45°.
 */

import { readFile } from 'node:fs/promises';
import { z } from 'zod';

export const ProtocolSchema = z.strictObject({
  /** Name recorded in the model card and reports. */
  name: z.string().min(1),
  description: z.string().optional(),
  /** src/training/models key: cbr_small, cbr_tiny, cbr_large_t, cbr_compact, … */
  architecture: z.string().min(1),
  /** CBR conv padding override ('valid' in the paper; 'same' lets CBR-Small run below 128²). */
  padding: z.enum(['valid', 'same']).optional(),
  inputSize: z.number().int().min(16).max(512),
  channelMode: z.enum(['gray3', '2.5d']),
  epochs: z.number().int().min(1),
  batchSize: z.number().int().min(1).max(256),
  learningRate: z.number().positive(),
  momentum: z.number().min(0).max(1).default(0.9),
  nesterov: z.boolean().default(true),
  decay: z.number().min(0).default(1e-6),
  /** Copies per epoch of each OAP/OBS training slice (1 = no oversampling). */
  oversample: z.number().int().min(1).max(50),
  /** Training rotation range ±degrees (0 = none). */
  rotationDegrees: z.number().min(0).max(180),
  /** k of the patient-level k-fold CV; 1 = no CV (final model only). */
  folds: z.number().int().min(1).max(20),
  seed: z.number().int().min(0).max(0xffffffff),
  /** Train a final model on all subjects for the selected number of epochs and write <out>/model/. */
  finalModel: z.boolean(),
  /** Use a deterministic, group-balanced subset of this many subjects (quick runs). */
  maxSubjects: z.number().int().min(2).optional(),
  /** Fold models trained at once in worker threads (one tfjs instance each); default 1 = in-process. */
  parallelFolds: z.number().int().min(1).max(16).optional(),
  /** Validation metric that picks the epoch (mean over folds): argmax balanced accuracy by default. */
  selectionMetric: z.enum(['balancedAccuracy', 'macroF1', 'accuracy', 'softAccuracy', 'logLoss']).default('balancedAccuracy'),
  /** Prediction batch size for validation. */
  evalBatchSize: z.number().int().min(1).max(512).default(64),
  /** A progress line every N batches (default: about 10 per epoch). */
  progressEvery: z.number().int().min(1).optional(),
});

export type Protocol = z.infer<typeof ProtocolSchema>;
export type ProtocolInput = z.input<typeof ProtocolSchema>;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Validates a protocol object; the error names every bad field. */
export function parseProtocol(value: unknown, source = 'protocol'): Protocol {
  const r = ProtocolSchema.safeParse(value);
  if (!r.success) {
    throw new ProtocolError(`${source}: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}

/** Reads and validates a protocol JSON file. */
export async function loadProtocol(path: string): Promise<Protocol> {
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
  return parseProtocol(json, `protocol ${path}`);
}
