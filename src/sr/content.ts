/**
 * Small builders for SR content items (PS3.3 C.17.3 SR Document Content Module, Table C.17-6 and the
 * value-type macros C.18.*) as naturalized dcmjs datasets. Used instead of dcmjs's `sr` templates, which
 * throw on valid input and mislabel Device Observer codes (notes/dicom-interop.md §4).
 */
import { codeItem, type Code, type CodeItem } from './codes.js';
import { SrInputError } from './errors.js';

/** Relationship Type (0040,A010), PS3.3 C.17.3.2.4. */
export type RelationshipType =
  | 'CONTAINS'
  | 'HAS OBS CONTEXT'
  | 'HAS CONCEPT MOD'
  | 'HAS PROPERTIES'
  | 'HAS ACQ CONTEXT'
  | 'INFERRED FROM'
  | 'SELECTED FROM';

/** A naturalized content item (or the document root, which has no RelationshipType). */
export type ContentItem = Record<string, unknown> & { ValueType: string };

/** A reference to one image (SOP Class + Instance, and a 1-based frame for multi-frame sources). */
export interface ImageRef {
  readonly sopClassUID: string;
  readonly sopInstanceUID: string;
  readonly frameNumber?: number;
}

/** Formats a number as DS (PS3.5 Table 6.2-1: at most 16 characters). */
export function formatDS(x: number): string {
  if (!Number.isFinite(x)) throw new SrInputError(`DS value must be finite, got ${x}`);
  let s = String(x);
  if (s.length <= 16) return s;
  for (let p = 15; p > 0; p--) {
    s = String(Number(x.toPrecision(p)));
    if (s.length <= 16) return s;
  }
  throw new SrInputError(`cannot format ${x} as DS`);
}

function named(name: Code | undefined): { ConceptNameCodeSequence?: CodeItem[] } {
  return name ? { ConceptNameCodeSequence: [codeItem(name)] } : {};
}

function withChildren(item: ContentItem, children: readonly ContentItem[] | undefined): ContentItem {
  if (children && children.length > 0) item.ContentSequence = [...children];
  return item;
}

/** Content Template Sequence item of a DCMR template (PS3.3 C.18.8). */
export function template(id: string): Record<string, unknown>[] {
  return [{ MappingResource: 'DCMR', TemplateIdentifier: id }];
}

/** CONTAINER (C.18.8 Container Macro). `relationship` undefined only for the document root. */
export function container(
  relationship: RelationshipType | undefined,
  name: Code,
  children: readonly ContentItem[],
  opts: { templateId?: string; continuity?: 'SEPARATE' | 'CONTINUOUS' } = {},
): ContentItem {
  const item: ContentItem = {
    ...(relationship ? { RelationshipType: relationship } : {}),
    ValueType: 'CONTAINER',
    ...named(name),
    ContinuityOfContent: opts.continuity ?? 'SEPARATE',
  };
  if (opts.templateId) item.ContentTemplateSequence = template(opts.templateId);
  return withChildren(item, children);
}

/** CODE (C.18.2 Code Macro). */
export function codeContent(relationship: RelationshipType, name: Code, value: Code, children?: readonly ContentItem[]): ContentItem {
  return withChildren({ RelationshipType: relationship, ValueType: 'CODE', ...named(name), ConceptCodeSequence: [codeItem(value)] }, children);
}

/** TEXT (C.18.1 Text Macro, UT). Empty text is refused. */
export function textContent(relationship: RelationshipType, name: Code, value: string, children?: readonly ContentItem[]): ContentItem {
  if (typeof value !== 'string' || value.length === 0) throw new SrInputError(`TEXT item '${name.meaning}' needs a non-empty value`);
  return withChildren({ RelationshipType: relationship, ValueType: 'TEXT', ...named(name), TextValue: value }, children);
}

/** UIDREF (C.18.6 UID Macro). */
export function uidrefContent(relationship: RelationshipType, name: Code, uid: string): ContentItem {
  if (!/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(uid) || uid.length > 64) throw new SrInputError(`UIDREF '${name.meaning}': invalid UID ${uid}`);
  return { RelationshipType: relationship, ValueType: 'UIDREF', ...named(name), UID: uid };
}

/** NUM (C.18.1 Numeric Measurement Macro): one value with its UCUM unit. */
export function numContent(relationship: RelationshipType, name: Code, value: number, unit: Code, children?: readonly ContentItem[]): ContentItem {
  return withChildren(
    {
      RelationshipType: relationship,
      ValueType: 'NUM',
      ...named(name),
      MeasuredValueSequence: [{ NumericValue: formatDS(value), MeasurementUnitsCodeSequence: [codeItem(unit)] }],
    },
    children,
  );
}

/** The Referenced SOP Sequence item of an image reference (C.18.4 Image Reference Macro / SOP Instance Reference Macro). */
export function referencedSopItem(ref: ImageRef): Record<string, unknown> {
  const item: Record<string, unknown> = { ReferencedSOPClassUID: ref.sopClassUID, ReferencedSOPInstanceUID: ref.sopInstanceUID };
  if (ref.frameNumber !== undefined) item.ReferencedFrameNumber = ref.frameNumber;
  return item;
}

/** IMAGE (C.18.4 Image Reference Macro). `name` may be omitted (Image Library entries, KOS entries). */
export function imageContent(relationship: RelationshipType, name: Code | undefined, ref: ImageRef, children?: readonly ContentItem[]): ContentItem {
  return withChildren({ RelationshipType: relationship, ValueType: 'IMAGE', ...named(name), ReferencedSOPSequence: [referencedSopItem(ref)] }, children);
}
