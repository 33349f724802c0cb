/**
 * Request schemas of the data API (zod): each request is parsed once at the edge; a failure answers 400
 * with `{error}` naming the field. The same schemas feed the OpenAPI document (src/api/openapi.ts).
 */
import { z } from 'zod';
import { LABEL_SOURCES, LABEL_VALUES, PHASES } from '../db/types.js';

/** A DICOM UID (PS3.5 §9.1): digits and dots, no empty component, at most 64 characters. */
export const UidSchema = z
  .string()
  .max(64, 'a DICOM UID has at most 64 characters')
  .regex(/^[0-9]+(\.[0-9]+)*$/, 'expected a DICOM UID (digits and dots)');

/** A stack id (src/stack: 16 hex digits; the API accepts what the viewer's image routes accept). */
export const StackIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected a stack id (1–64 letters, digits, - or _)');

export const StudyParamsSchema = z.object({ studyUID: UidSchema });

export const ListStudiesQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});

export const LabelInputSchema = z.strictObject({
  stackId: StackIdSchema,
  phase: z.enum(PHASES),
  /** The slice's `index` in the result document (stack index, ascending along the normal). */
  index: z.number().int().min(0).max(100_000),
  sopInstanceUID: UidSchema,
  label: z.enum(LABEL_VALUES),
  source: z.enum(LABEL_SOURCES).default('human'),
});

export const PutLabelsBodySchema = z.strictObject({
  labels: z.array(LabelInputSchema).max(10_000),
});

export const LabelsCsvQuerySchema = z.object({ study: UidSchema.optional() });

/** A stored label as the API returns it (study implied by the URL). */
export const LabelOutSchema = z.object({
  stackId: z.string(),
  phase: z.enum(PHASES),
  index: z.number().int(),
  sopInstanceUID: z.string(),
  label: z.enum(LABEL_VALUES),
  source: z.enum(LABEL_SOURCES),
  updatedAt: z.string().describe('ISO 8601, UTC'),
});

/** `{error}` with one line per problem, each prefixed by the field's path. */
export function formatZodError(err: z.ZodError, where: string): string {
  return err.issues.map((i) => `${[where, ...i.path.map(String)].join('.')}: ${i.message}`).join('; ');
}
