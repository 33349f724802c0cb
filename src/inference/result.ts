/**
 * The result document of one classified stack, `schema: "sax-range/result@1"` (DESIGN.md "Result JSON").
 *
 * The field names are a contract: the HTTP API returns this document, `classify --json` prints an array of
 * them and segmentation pipelines read them. The schema is strict (unknown keys are rejected) so that a
 * renamed or misspelt field fails where the document is built, not in a consumer.
 *
 * Documented extras beyond DESIGN.md's list (all in `order`, for the apex/base cross-check):
 * - `order.geometryAgrees`: whether the decoding likelihood prefers the same apex end as the geometry
 *   (null when there is nothing to compare, e.g. a stack without geometry);
 * - `order.margin`: |log L(geometry order) − log L(reversed)|, summed over ED and ES (natural log);
 * - `order.message`: a sentence saying what was decided and why, present whenever the geometry is
 *   ambiguous or disagrees with the likelihood.
 *
 * Conventions: `triggerTime` is null when the images carry no TriggerTime; every per-slice list is ordered
 * apex → base; `index` is the slice's index in the stack (ascending position along the normal), `position`
 * the mm along that normal; `inRange.first`/`last` are positions in the apex → base `slices` list (0-based,
 * inclusive), so `slices[first].index` is the stack index of the first IN slice; `timings` are milliseconds.
 */
import { z } from 'zod';
import { decodeRange, argmaxLabels, NO_PRIOR, type ClassLogPrior, type SliceLabel } from './decode.js';

export const RESULT_SCHEMA_ID = 'sax-range/result@1' as const;

const uid = z.string().regex(/^[0-9]+(\.[0-9]+)*$/, 'expected a DICOM UID (digits and dots)').max(64);
const probability = z.number().min(0).max(1);
const label = z.enum(['OAP', 'IN', 'OBS']);

export const ModelRefSchema = z.strictObject({
  id: z.string().min(1),
  version: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits'),
});

export const OrderSchema = z.strictObject({
  direction: z.literal('apex-to-base'),
  /** 'geometry': apex end from the stack normal; 'likelihood': from the range-decoding likelihood. */
  method: z.enum(['geometry', 'likelihood']),
  geometryAgrees: z.boolean().nullable().optional(),
  margin: z.number().min(0).optional(),
  message: z.string().optional(),
});

export const SliceResultSchema = z.strictObject({
  index: z.number().int().min(0),
  position: z.number(),
  sopInstanceUID: uid,
  probabilities: z.strictObject({ OAP: probability, IN: probability, OBS: probability }),
  predicted: label,
  label,
});

export const InRangeSchema = z.strictObject({
  first: z.number().int().min(0),
  last: z.number().int().min(0),
  count: z.number().int().min(1),
  firstSopInstanceUID: uid,
  lastSopInstanceUID: uid,
});

export const PhaseResultSchema = z.strictObject({
  phaseIndex: z.number().int().min(0),
  triggerTime: z.number().nullable(),
  method: z.string().min(1),
  slices: z.array(SliceResultSchema).min(1),
  inRange: InRangeSchema,
});

export const OutputRefSchema = z.strictObject({
  kind: z.enum(['sr', 'sc', 'kos']),
  sopInstanceUID: uid,
  seriesInstanceUID: uid,
  path: z.string().optional(),
});

export const ResultSchema = z
  .strictObject({
    schema: z.literal(RESULT_SCHEMA_ID),
    studyInstanceUID: uid,
    stackId: z.string().min(1),
    seriesInstanceUIDs: z.array(uid).min(1),
    model: ModelRefSchema,
    order: OrderSchema,
    phases: z.strictObject({ ED: PhaseResultSchema, ES: PhaseResultSchema }),
    outputs: z.array(OutputRefSchema),
    timings: z.record(z.string(), z.number().min(0)),
  })
  .superRefine((doc, ctx) => {
    // Cross-field checks: the range must lie in the list and name the right instances, and `label`
    // must have the form OAP* IN+ OBS* (what the decoding guarantees).
    for (const phase of ['ED', 'ES'] as const) {
      const p = doc.phases[phase];
      const n = p.slices.length;
      const at = (...path: (string | number)[]) => ['phases', phase, ...path];
      const r = p.inRange;
      if (r.last < r.first || r.last >= n) {
        ctx.addIssue({ code: 'custom', path: at('inRange', 'last'), message: `expected first <= last < ${n}, got first ${r.first}, last ${r.last}` });
        continue;
      }
      if (r.count !== r.last - r.first + 1) {
        ctx.addIssue({ code: 'custom', path: at('inRange', 'count'), message: `expected last - first + 1 = ${r.last - r.first + 1}, got ${r.count}` });
      }
      if (r.firstSopInstanceUID !== p.slices[r.first].sopInstanceUID) {
        ctx.addIssue({ code: 'custom', path: at('inRange', 'firstSopInstanceUID'), message: `expected slices[${r.first}].sopInstanceUID` });
      }
      if (r.lastSopInstanceUID !== p.slices[r.last].sopInstanceUID) {
        ctx.addIssue({ code: 'custom', path: at('inRange', 'lastSopInstanceUID'), message: `expected slices[${r.last}].sopInstanceUID` });
      }
      p.slices.forEach((s, i) => {
        const want: SliceLabel = i < r.first ? 'OAP' : i <= r.last ? 'IN' : 'OBS';
        if (s.label !== want) ctx.addIssue({ code: 'custom', path: at('slices', i, 'label'), message: `expected ${want} (inRange ${r.first}..${r.last})` });
      });
    }
  });

export type ModelRef = z.infer<typeof ModelRefSchema>;
export type OrderInfo = z.infer<typeof OrderSchema>;
export type SliceResult = z.infer<typeof SliceResultSchema>;
export type InRange = z.infer<typeof InRangeSchema>;
export type PhaseResult = z.infer<typeof PhaseResultSchema>;
export type OutputRef = z.infer<typeof OutputRefSchema>;
export type Result = z.infer<typeof ResultSchema>;
export type PhaseKey = 'ED' | 'ES';

/** A result document that does not match the schema; `issues` name each field by its path. */
export class ResultValidationError extends Error {
  readonly code = 'RESULT_INVALID';
  constructor(readonly issues: { path: string; message: string }[]) {
    super(`invalid ${RESULT_SCHEMA_ID} document: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
    this.name = 'ResultValidationError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** `phases.ED.slices[3].label`-style path of a zod issue. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out;
}

/** Validates a document (e.g. one read back from disk); throws ResultValidationError naming the fields. */
export function parseResult(doc: unknown): Result {
  const r = ResultSchema.safeParse(doc);
  if (!r.success) throw new ResultValidationError(r.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })));
  return r.data;
}

// ---------------------------------------------------------------------------------------------------------
// Builder

/** One slice of a phase as the builder takes it: apex → base order is the order of the array. */
export interface SliceInput {
  /** Index in the stack (ascending position along the normal). */
  index: number;
  /** mm along the stack normal. */
  position: number;
  sopInstanceUID: string;
  /** [pOAP, pIN, pOBS]. */
  probabilities: readonly number[];
}

export interface PhaseInput {
  phaseIndex: number;
  triggerTime?: number | null;
  method: string;
  /** Apex → base. */
  slices: readonly SliceInput[];
}

export interface ResultInput {
  studyInstanceUID: string;
  stackId: string;
  seriesInstanceUIDs: readonly string[];
  model: ModelRef;
  /** The model's class log-prior for range decoding (model card `decoding`); default none. */
  classLogPrior?: ClassLogPrior;
  order: OrderInfo;
  phases: Record<PhaseKey, PhaseInput>;
  outputs?: readonly OutputRef[];
  timings?: Record<string, number>;
}

/** Rounds a probability for the document (6 decimals keep 1e-6 resolution and short JSON). */
function roundProb(p: number): number {
  return Math.round(Math.min(Math.max(p, 0), 1) * 1e6) / 1e6;
}

/** `predicted` (argmax), `label` (range decoding, apex → base) and `inRange` of one phase. */
export function buildPhaseResult(input: PhaseInput, classLogPrior: ClassLogPrior = NO_PRIOR): PhaseResult {
  const probs = input.slices.map((s) => [...s.probabilities]);
  const decoding = decodeRange(probs, classLogPrior);
  const predicted = argmaxLabels(probs);
  const slices: SliceResult[] = input.slices.map((s, i) => ({
    index: s.index,
    position: s.position,
    sopInstanceUID: s.sopInstanceUID,
    probabilities: { OAP: roundProb(probs[i][0]), IN: roundProb(probs[i][1]), OBS: roundProb(probs[i][2]) },
    predicted: predicted[i],
    label: decoding.labels[i],
  }));
  return {
    phaseIndex: input.phaseIndex,
    triggerTime: input.triggerTime ?? null,
    method: input.method,
    slices,
    inRange: {
      first: decoding.first,
      last: decoding.last,
      count: decoding.last - decoding.first + 1,
      firstSopInstanceUID: slices[decoding.first].sopInstanceUID,
      lastSopInstanceUID: slices[decoding.last].sopInstanceUID,
    },
  };
}

/**
 * Builds and validates a result document: per phase the argmax (`predicted`), the range decoding
 * (`label`, `inRange`) and rounded probabilities. Throws ResultValidationError naming the bad field.
 */
export function buildResult(input: ResultInput): Result {
  const timings: Record<string, number> = {};
  for (const [k, v] of Object.entries(input.timings ?? {})) timings[k] = Math.round(v * 10) / 10;
  const doc: Result = {
    schema: RESULT_SCHEMA_ID,
    studyInstanceUID: input.studyInstanceUID,
    stackId: input.stackId,
    seriesInstanceUIDs: [...input.seriesInstanceUIDs],
    model: { id: input.model.id, version: input.model.version, sha256: input.model.sha256 },
    order: { ...input.order },
    phases: { ED: buildPhaseResult(input.phases.ED, input.classLogPrior), ES: buildPhaseResult(input.phases.ES, input.classLogPrior) },
    outputs: (input.outputs ?? []).map((o) => ({ ...o })),
    timings,
  };
  return parseResult(doc);
}

/** Labels of a phase result in apex → base order (convenience for tests and writers). */
export function phaseLabels(phase: PhaseResult): SliceLabel[] {
  return phase.slices.map((s) => s.label);
}

