/**
 * What the SCP accepts: AE titles, presentation contexts, and the DIMSE status it answers for each failure.
 * Pure functions, so the rules can be read (and tested) apart from the network code.
 */
import { ACCEPTED_SOP_CLASSES, ACCEPTED_TRANSFER_SYNTAXES, SopClass, UNCOMPRESSED_TRANSFER_SYNTAXES } from '../dicom/uids.js';

/** A-ASSOCIATE-RJ fields (PS3.8 §9.3.4), numerically as on the wire. */
export const Reject = {
  result: { permanent: 1, transient: 2 },
  source: { serviceUser: 1, serviceProviderAcse: 2, serviceProviderPresentation: 3 },
  /** Reasons for source = service user. */
  userReason: { noReasonGiven: 1, applicationContextNotSupported: 2, callingAeNotRecognized: 3, calledAeNotRecognized: 7 },
  /** Reasons for source = service provider (presentation). */
  presentationReason: { temporaryCongestion: 1, localLimitExceeded: 2 },
} as const;

/** Presentation context results (PS3.8 §9.3.3.2). */
export const PcResult = { accept: 0, userRejection: 1, noReason: 2, abstractSyntaxNotSupported: 3, transferSyntaxesNotSupported: 4 } as const;

/** C-STORE statuses the SCP answers (PS3.4 Annex B.2.3 and PS3.7 Annex C). */
export const StoreStatus = {
  success: 0x0000,
  /** Refused: SOP class not supported (a class we do not store, or not the one negotiated). */
  sopClassNotSupported: 0x0122,
  /** Refused: out of resources (disk full or failing, instance over the size limit, shutting down, downstream failure). */
  outOfResources: 0xa700,
  /** Error: data set does not match SOP class (required image attributes missing, SOP class differs from the command). */
  datasetDoesNotMatchSopClass: 0xa900,
  /** Error: cannot understand (unparseable, truncated, inconsistent UIDs, short pixel data). */
  cannotUnderstand: 0xc000,
} as const;

export interface AssociationRejection {
  result: number;
  source: number;
  reason: number;
  /** For the log. */
  why: string;
}

export interface AePolicy {
  aeTitle: string;
  allowedAEs: readonly string[];
}

/** AE titles are compared without leading/trailing spaces (the wire pads them to 16 bytes). */
export function normaliseAe(ae: string | undefined): string {
  return (ae ?? '').trim();
}

/** Called AE must be ours; calling AE must be on the allow-list (['*'] = any). */
export function checkAeTitles(calledAE: string, callingAE: string, policy: AePolicy): AssociationRejection | undefined {
  if (normaliseAe(calledAE) !== normaliseAe(policy.aeTitle)) {
    return {
      result: Reject.result.permanent,
      source: Reject.source.serviceUser,
      reason: Reject.userReason.calledAeNotRecognized,
      why: 'called AE not recognized',
    };
  }
  const allowed = policy.allowedAEs.map(normaliseAe);
  if (!allowed.includes('*') && !allowed.includes(normaliseAe(callingAE))) {
    return {
      result: Reject.result.permanent,
      source: Reject.source.serviceUser,
      reason: Reject.userReason.callingAeNotRecognized,
      why: 'calling AE not recognized',
    };
  }
  return undefined;
}

/** Too many associations at once: a transient rejection, the peer may retry later. */
export function limitRejection(why: string): AssociationRejection {
  return {
    result: Reject.result.transient,
    source: Reject.source.serviceProviderPresentation,
    reason: Reject.presentationReason.localLimitExceeded,
    why,
  };
}

/**
 * No presentation context could be accepted (e.g. only Secondary Capture proposed): reject the association, as
 * DCMTK's storescp does, so that the sender learns it at once.
 */
export function noContextRejection(): AssociationRejection {
  return {
    result: Reject.result.permanent,
    source: Reject.source.serviceUser,
    reason: Reject.userReason.noReasonGiven,
    why: 'no acceptable presentation context',
  };
}

export interface ContextDecision {
  result: number;
  transferSyntax?: string;
}

/**
 * Negotiates one presentation context. Storage: MR and Enhanced MR only. Verification: any uncompressed syntax.
 * Transfer syntax: the first of OUR preference list (ACCEPTED_TRANSFER_SYNTAXES: Explicit VR LE first) that the
 * peer proposed. Peers that want a compressed syntax kept (storescu -xt/-xs, Orthanc with the stored syntax)
 * propose it in a context of its own, which is then accepted as such.
 */
export function negotiateContext(abstractSyntax: string, proposed: readonly string[]): ContextDecision {
  const candidates =
    abstractSyntax === SopClass.Verification
      ? UNCOMPRESSED_TRANSFER_SYNTAXES
      : ACCEPTED_SOP_CLASSES.includes(abstractSyntax)
        ? ACCEPTED_TRANSFER_SYNTAXES
        : undefined;
  if (!candidates) return { result: PcResult.abstractSyntaxNotSupported };
  const ts = candidates.find((t) => proposed.includes(t));
  return ts ? { result: PcResult.accept, transferSyntax: ts } : { result: PcResult.transferSyntaxesNotSupported };
}

/** Transfer syntaxes whose Pixel Data is native (length checkable against Rows × Columns × …). */
export function isNativeSyntax(ts: string): boolean {
  return UNCOMPRESSED_TRANSFER_SYNTAXES.includes(ts);
}

/** Implicit VR Little Endian is the only accepted syntax without explicit VRs. */
export function isExplicitVr(ts: string): boolean {
  return ts !== '1.2.840.10008.1.2';
}

/** Bytes of native pixel data an image needs. */
export function expectedPixelBytes(ds: { Rows?: unknown; Columns?: unknown; SamplesPerPixel?: unknown; BitsAllocated?: unknown; NumberOfFrames?: unknown }): number | undefined {
  const n = (v: unknown, dflt?: number): number | undefined => {
    const x = Array.isArray(v) ? v[0] : v;
    const y = x === undefined || x === '' ? dflt : Number(x);
    return y !== undefined && Number.isFinite(y) ? y : undefined;
  };
  const rows = n(ds.Rows);
  const cols = n(ds.Columns);
  const spp = n(ds.SamplesPerPixel, 1);
  const bits = n(ds.BitsAllocated);
  const frames = n(ds.NumberOfFrames, 1);
  if (!rows || !cols || !spp || !bits || !frames) return undefined;
  return Math.ceil((rows * cols * spp * frames * bits) / 8);
}

/** ErrorComment is LO: at most 64 characters, no backslash. */
export function errorComment(msg: string): string {
  const clean = msg.replace(/[\\\r\n]/g, ' ').trim();
  return clean.length <= 64 ? clean : `${clean.slice(0, 61)}...`;
}
