/**
 * Deterministic UIDs of the objects sax-range writes (DESIGN.md "DICOM objects written").
 *
 * Every UID is `2.25.` + the decimal value of a UUIDv5 (PS3.5 §B.2, via `uidFromName`) of a name built from
 * what identifies the object: the source study, the stack, the source series, the model's sha256, the
 * object kind, the phase, the slice (position and source SOP Instance UID). A retried export therefore
 * writes the same UIDs and Orthanc answers `AlreadyStored` instead of creating a duplicate; a different
 * model (sha256) or a different stack gives different UIDs.
 */
import { uidFromName } from '../dicom/uid.js';

/** Kinds of output series, one Series Instance UID each. */
export type OutputSeriesKind = 'sr' | 'kos' | 'sc-slice-ED' | 'sc-slice-ES' | 'sc-montage';

/** What an output UID is derived from: the identity of the stack and of the model. */
export interface UidContext {
  readonly studyInstanceUID: string;
  readonly stackId: string;
  /** Source series of the stack (order does not matter). */
  readonly seriesInstanceUIDs: readonly string[];
  /** sha256 of the model weights (64 hex digits). */
  readonly modelSha256: string;
}

/** Version of the naming scheme: bump only to deliberately change every output UID. */
const SCHEME = 'outputs/v1';

function base(ctx: UidContext): string {
  if (!ctx.studyInstanceUID || !ctx.stackId || ctx.seriesInstanceUIDs.length === 0 || !/^[0-9a-f]{64}$/.test(ctx.modelSha256)) {
    throw new RangeError('UidContext needs studyInstanceUID, stackId, seriesInstanceUIDs and a 64-hex-digit modelSha256');
  }
  const series = [...ctx.seriesInstanceUIDs].sort().join(',');
  return `${SCHEME}/study=${ctx.studyInstanceUID}/stack=${ctx.stackId}/series=${series}/model=${ctx.modelSha256}`;
}

/** Series Instance UID of one output series. */
export function outputSeriesUid(ctx: UidContext, kind: OutputSeriesKind): string {
  return uidFromName(`${base(ctx)}/series/${kind}`);
}

/** SOP Instance UID of the Comprehensive SR of the stack. */
export function srInstanceUid(ctx: UidContext): string {
  return uidFromName(`${base(ctx)}/sr`);
}

/** SOP Instance UID of the KOS of one phase. */
export function kosInstanceUid(ctx: UidContext, phase: 'ED' | 'ES'): string {
  return uidFromName(`${base(ctx)}/kos/${phase}`);
}

/** SOP Instance UID of the montage SC of one phase. */
export function montageInstanceUid(ctx: UidContext, phase: 'ED' | 'ES'): string {
  return uidFromName(`${base(ctx)}/sc-montage/${phase}`);
}

/**
 * SOP Instance UID of the Grad-CAM SC of one slice: `slice` is its apex → base position, `source` the source
 * image's SOP Instance UID (and frame, for a multi-frame source).
 */
export function sliceScInstanceUid(ctx: UidContext, phase: 'ED' | 'ES', slice: number, source: { sopInstanceUID: string; frameNumber?: number }): string {
  if (!Number.isInteger(slice) || slice < 0) throw new RangeError(`slice must be a non-negative integer, got ${slice}`);
  const frame = source.frameNumber === undefined ? '' : `/frame=${source.frameNumber}`;
  return uidFromName(`${base(ctx)}/sc-slice/${phase}/${slice}/sop=${source.sopInstanceUID}${frame}`);
}

/** Tracking Unique Identifier (112040) of one measurement group: per phase and slice, or the phase's range summary. */
export function trackingUid(ctx: UidContext, phase: 'ED' | 'ES', slice: number | 'range'): string {
  return uidFromName(`${base(ctx)}/tracking/${phase}/${slice}`);
}

/** Device Observer UID (121012) of sax-range (the same for every report, like a device serial number). */
export function deviceObserverUid(): string {
  return uidFromName('device/sax-range');
}
