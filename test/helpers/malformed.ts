/**
 * The malformed-input corpus: a seeded, deterministic generator of bad inputs for the SCP and `classify`.
 * Used by test/integration/malformed.test.ts (a slice) and bench/malformed.ts (the whole corpus).
 *
 * Families (file level: a Part 10 file, sent over DIMSE and given to `sax-range classify`; PDU level: a byte
 * stream for the raw association client in assoc-client.ts):
 * - truncated-part10        the file cut anywhere (preamble, meta, header, pixel data)
 * - wrong-vr                an element's VR replaced (invalid VR, short↔long length form, wrong type) on a
 *                           required element
 * - absurd-length           an element length past the end, 0xFFFFFFFF on a non-sequence, 0xFFFF on a short VR
 * - short-pixel-data        Pixel Data shorter than Rows × Columns × Bits × Frames declare (length cut,
 *                           Rows/Columns/BitsAllocated raised, NumberOfFrames too high)
 * - unknown-transfer-syntax made-up, unsupported or empty Transfer Syntax UIDs; compressed syntax with native data
 * - non-image-sop           SR, KOS, PDF, RT, presentation state… proposed, sent on the MR context, or hidden
 *                           behind an MR command
 * - pdata-random-bytes      one C-STORE whose P-DATA-TF PDUs get random bytes (PDU header, PDV header,
 *                           command, dataset)
 * - dropped-association     the client disappears (or aborts) at every stage of an association
 * - bogus-pdu               unknown PDU types, absurd PDU lengths, malformed A-ASSOCIATE-RQs, PDUs out of order,
 *                           garbage, HTTP and TLS on the DICOM port
 */
import { buildFileMetaHeader } from '../../src/scp/part10.js';
import { hashSeed, Rng } from '../../src/phantom/prng.js';
import { associateRq, cStoreRq, datasetPdus, pdataTf, pdu, PduType, type PresentationContextRq } from './assoc-client.js';
import { datasetOffset, EXPLICIT_LE, IMPLICIT_LE, makeTestMr, MR_IMAGE_STORAGE } from './dcmtk.js';

export const FILE_FAMILIES = ['truncated-part10', 'wrong-vr', 'absurd-length', 'short-pixel-data', 'unknown-transfer-syntax', 'non-image-sop'] as const;
export const PDU_FAMILIES = ['pdata-random-bytes', 'dropped-association', 'bogus-pdu'] as const;
export const FAMILIES = [...FILE_FAMILIES, ...PDU_FAMILIES] as const;
export type Family = (typeof FAMILIES)[number];

/** What the raw client does, in order. */
export type Step =
  | { send: Buffer }
  /** Wait for the A-ASSOCIATE response; anything but an AC ends the case with that outcome. */
  | { expect: 'associate' }
  /** Wait for a C-STORE-RSP (or an abort / close). */
  | { expect: 'response' }
  /** Close the connection now (the case is over). */
  | { drop: true }
  /** A-RELEASE-RQ and wait for the RP. */
  | { release: true };

export interface MalformedCase {
  id: string;
  family: Family;
  variant: string;
  /** The SOP Instance UID the case uses (unique); must not be in the spool afterwards when mustFail. */
  sopInstanceUID: string;
  /** File-level families: the Part 10 file. */
  file?: Buffer;
  /** The DIMSE conversation. */
  steps: Step[];
  /** true: Success is a bug. false: the corruption may be harmless (e.g. bytes flipped inside pixel values). */
  mustFail: boolean;
  /**
   * The corrupted framing promises bytes that never come: the SCP legitimately waits for them (until its PDU
   * timeout), so "no answer" is acceptable; the client gives up and closes.
   */
  mayWait: boolean;
  /** dropped-association: the instance was complete before the drop, so it may be stored. */
  mayStore?: boolean;
}

export const CALLING_AE = 'MALFORMED';
export const CALLED_AE = 'SAXRANGE';

// ---------------------------------------------------------------------------------------------------------
// Part 10 surgery
// ---------------------------------------------------------------------------------------------------------

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

interface El {
  group: number;
  element: number;
  vr?: string;
  /** Offset of the tag in the buffer. */
  offset: number;
  /** Offset and size of the length field. */
  lengthOffset: number;
  lengthSize: 2 | 4;
  valueOffset: number;
  length: number;
}

const keyOf = (g: number, e: number) => (g << 16) | e;
export const Tag = {
  SOPClassUID: keyOf(0x0008, 0x0016),
  SOPInstanceUID: keyOf(0x0008, 0x0018),
  Modality: keyOf(0x0008, 0x0060),
  StudyInstanceUID: keyOf(0x0020, 0x000d),
  SeriesInstanceUID: keyOf(0x0020, 0x000e),
  SamplesPerPixel: keyOf(0x0028, 0x0002),
  Rows: keyOf(0x0028, 0x0010),
  Columns: keyOf(0x0028, 0x0011),
  BitsAllocated: keyOf(0x0028, 0x0100),
  PixelData: keyOf(0x7fe0, 0x0010),
} as const;

/** Top-level elements of a dataset without sequences (the test MR), from `start`. */
function walk(buf: Buffer, start: number, explicit: boolean): El[] {
  const out: El[] = [];
  let pos = start;
  while (pos + 8 <= buf.length) {
    const group = buf.readUInt16LE(pos);
    const element = buf.readUInt16LE(pos + 2);
    let el: El;
    if (explicit) {
      const vr = buf.toString('latin1', pos + 4, pos + 6);
      if (LONG_VRS.has(vr)) el = { group, element, vr, offset: pos, lengthOffset: pos + 8, lengthSize: 4, valueOffset: pos + 12, length: buf.readUInt32LE(pos + 8) };
      else el = { group, element, vr, offset: pos, lengthOffset: pos + 6, lengthSize: 2, valueOffset: pos + 8, length: buf.readUInt16LE(pos + 6) };
    } else {
      el = { group, element, offset: pos, lengthOffset: pos + 4, lengthSize: 4, valueOffset: pos + 8, length: buf.readUInt32LE(pos + 4) };
    }
    out.push(el);
    if (el.length === 0xffffffff) break;
    pos = el.valueOffset + el.length;
  }
  return out;
}

function find(els: El[], tag: number): El {
  const el = els.find((e) => keyOf(e.group, e.element) === tag);
  if (!el) throw new Error(`test MR lacks tag ${tag.toString(16)}`);
  return el;
}

/**
 * The instance the next case corrupts: a study instance given by `useBase` (the classify-in-a-study runs), or a
 * fresh valid test MR.
 */
let givenBase: Buffer | undefined;

/** A valid test MR (Part 10) and its layout. */
function baseInstance(rng: Rng, uid: string, o: { ts?: string; sopClassUID?: string } = {}) {
  if (givenBase) {
    const file = givenBase;
    const dsStart = datasetOffset(file);
    const tsEl = walk(file.subarray(0, dsStart), 132, true).find((e) => e.group === 2 && e.element === 0x0010);
    const ts = tsEl ? file.toString('latin1', tsEl.valueOffset, tsEl.valueOffset + tsEl.length).replace(/\0+$/, '') : EXPLICIT_LE;
    return { file, ts, dsStart, els: walk(file, dsStart, ts !== IMPLICIT_LE) };
  }
  const size = [16, 24, 32, 48, 64][rng.int(0, 4)];
  const ts = o.ts ?? (rng.next() < 0.75 ? EXPLICIT_LE : IMPLICIT_LE);
  const file = makeTestMr({
    studyInstanceUID: `${uid}.1`,
    seriesInstanceUID: `${uid}.2`,
    sopInstanceUID: uid,
    rows: size,
    columns: size,
    transferSyntaxUID: ts,
    sopClassUID: o.sopClassUID,
    seed: rng.int(0, 1000),
  });
  const dsStart = datasetOffset(file);
  return { file, ts, dsStart, els: walk(file, dsStart, ts !== IMPLICIT_LE) };
}

/** The Part 10 file with its meta group rebuilt for another transfer syntax / SOP class (dataset unchanged). */
function withMeta(file: Buffer, dsStart: number, f: { sopClassUID: string; sopInstanceUID: string; transferSyntaxUID: string }): Buffer {
  return Buffer.concat([buildFileMetaHeader(f), file.subarray(dsStart)]);
}

// ---------------------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------------------

const mrContext = (ts: string[], id = 1, abstractSyntax = MR_IMAGE_STORAGE): PresentationContextRq => ({ id, abstractSyntax, transferSyntaxes: ts });

function rq(contexts: PresentationContextRq[], maxPduLength?: number): Buffer {
  return associateRq({ callingAE: CALLING_AE, calledAE: CALLED_AE, contexts, maxPduLength });
}

/** A complete store: associate, command, dataset, response, release. */
function storeSteps(o: { contexts: PresentationContextRq[]; pcId?: number; sopClassUID: string; sopInstanceUID: string; dataset: Buffer; fragment?: number }): Step[] {
  const pcId = o.pcId ?? 1;
  return [
    { send: rq(o.contexts) },
    { expect: 'associate' },
    { send: pdataTf(pcId, 0x03, cStoreRq(1, o.sopClassUID, o.sopInstanceUID)) },
    { send: Buffer.concat(datasetPdus(pcId, o.dataset, o.fragment ?? 16_000)) },
    { expect: 'response' },
    { release: true },
  ];
}

/** A file-level case sent as its dataset on a context proposing the file's transfer syntax. */
function fileCase(id: string, family: Family, variant: string, uid: string, file: Buffer, ts: string, extra: Partial<MalformedCase> = {}): MalformedCase {
  const ds = file.subarray(Math.min(datasetOffset(file) || 0, file.length));
  // A file cut inside its preamble/meta has no dataset: send what is left after the 132 bytes (possibly nothing).
  const dataset = datasetOffset(file) ? ds : file.subarray(Math.min(132, file.length));
  return {
    id,
    family,
    variant,
    sopInstanceUID: uid,
    file,
    steps: storeSteps({ contexts: [mrContext([ts])], sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset }),
    mustFail: true,
    mayWait: false,
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Families
// ---------------------------------------------------------------------------------------------------------

const REQUIRED = [Tag.SOPClassUID, Tag.SOPInstanceUID, Tag.StudyInstanceUID, Tag.SeriesInstanceUID, Tag.Rows, Tag.Columns, Tag.BitsAllocated, Tag.PixelData];

function truncated(rng: Rng, id: string, uid: string): MalformedCase {
  const b = baseInstance(rng, uid);
  const px = find(b.els, Tag.PixelData);
  const zone = rng.int(0, 3);
  const [lo, hi] = [
    [0, 132],
    [132, b.dsStart],
    [b.dsStart, px.valueOffset],
    [px.valueOffset, b.file.length - 1],
  ][zone];
  const cut = rng.int(lo, Math.max(lo, hi - 1));
  const names = ['preamble', 'meta', 'header', 'pixel-data'];
  return fileCase(id, 'truncated-part10', `cut in ${names[zone]}`, uid, Buffer.from(b.file.subarray(0, cut)), b.ts);
}

const INVALID_VRS = ['ZZ', '\0\0', 'xx', '??', 'U ', '  '];
function wrongVr(rng: Rng, id: string, uid: string): MalformedCase {
  const b = baseInstance(rng, uid, { ts: EXPLICIT_LE });
  const el = find(b.els, REQUIRED[rng.int(0, REQUIRED.length - 1)]);
  const file = Buffer.from(b.file);
  const kind = rng.int(0, 2);
  let vr: string;
  if (kind === 0) vr = INVALID_VRS[rng.int(0, INVALID_VRS.length - 1)];
  else if (kind === 1) {
    // Flip the length form: short VRs get a long one and the other way round.
    vr = el.lengthSize === 2 ? ['OB', 'UN', 'SQ', 'UT', 'OW'][rng.int(0, 4)] : ['US', 'LO', 'CS', 'DS'][rng.int(0, 3)];
  } else {
    // Same length form, wrong type (e.g. Rows as UI, a UID as US).
    vr = el.lengthSize === 2 ? (el.vr === 'US' ? ['UI', 'DS', 'AT'][rng.int(0, 2)] : ['US', 'FL', 'SS'][rng.int(0, 2)]) : ['UT', 'SQ', 'UC'][rng.int(0, 2)];
  }
  file.write(vr, el.offset + 4, 'latin1');
  const name = Object.entries(Tag).find(([, t]) => t === keyOf(el.group, el.element))![0];
  return fileCase(id, 'wrong-vr', `${name} ${el.vr}→${JSON.stringify(vr)}`, uid, file, b.ts);
}

function absurdLength(rng: Rng, id: string, uid: string): MalformedCase {
  const b = baseInstance(rng, uid);
  const els = b.els;
  const el = rng.next() < 0.5 ? find(els, REQUIRED[rng.int(0, REQUIRED.length - 1)]) : els[rng.int(0, els.length - 1)];
  const file = Buffer.from(b.file);
  const kind = rng.int(0, 2);
  let variant: string;
  if (el.lengthSize === 2) {
    const v = kind === 0 ? 0xffff : Math.min(0xffff, file.length - el.valueOffset + rng.int(1, 5000));
    file.writeUInt16LE(v, el.lengthOffset);
    variant = `${v === 0xffff ? '0xFFFF' : 'past end'} on ${el.vr}`;
  } else {
    const v = kind === 0 ? 0xffffffff : kind === 1 ? file.length - el.valueOffset + rng.int(1, 1 << 20) : 0x7ffffff0 + rng.int(0, 14);
    file.writeUInt32LE(v >>> 0, el.lengthOffset);
    variant = `${kind === 0 ? '0xFFFFFFFF' : kind === 1 ? 'past end' : 'huge'} on ${el.vr ?? 'implicit'}`;
  }
  return fileCase(id, 'absurd-length', `${variant} (${el.group.toString(16)},${el.element.toString(16)})`, uid, file, b.ts);
}

function shortPixelData(rng: Rng, id: string, uid: string): MalformedCase {
  const b = baseInstance(rng, uid);
  const px = find(b.els, Tag.PixelData);
  const kind = rng.int(0, 3);
  let file: Buffer;
  let variant: string;
  if (kind === 0) {
    // Consistent framing, too few bytes.
    const keep = rng.int(0, px.length - 2) & ~1;
    file = Buffer.from(b.file.subarray(0, px.valueOffset + keep));
    file.writeUInt32LE(keep, px.lengthOffset);
    variant = `PixelData ${keep} of ${px.length} bytes`;
  } else if (kind === 1 || kind === 2) {
    file = Buffer.from(b.file);
    const el = find(b.els, kind === 1 ? Tag.Rows : Tag.Columns);
    const v = el.length === 2 ? file.readUInt16LE(el.valueOffset) : 0;
    const nv = Math.min(0xffff, v * rng.int(2, 64));
    // Implicit VR: the value is still 2 bytes (US).
    file.writeUInt16LE(nv, el.valueOffset);
    variant = `${kind === 1 ? 'Rows' : 'Columns'} ${v}→${nv}`;
  } else {
    file = Buffer.from(b.file);
    const el = find(b.els, Tag.BitsAllocated);
    file.writeUInt16LE(32, el.valueOffset);
    variant = 'BitsAllocated 16→32';
  }
  return fileCase(id, 'short-pixel-data', variant, uid, file, b.ts);
}

const BAD_SYNTAXES: Array<[string, string]> = [
  ['1.2.3.4.5.6.7', 'made-up UID'],
  ['1.2.840.10008.1.2.2', 'Explicit VR Big Endian (retired)'],
  ['1.2.840.10008.1.2.1.99', 'Deflated Explicit VR LE'],
  ['1.2.840.10008.1.2.4.50', 'JPEG baseline'],
  ['1.2.840.10008.1.2.4.51', 'JPEG extended 12-bit'],
  ['1.2.840.10008.1.2.4.100', 'MPEG2'],
  ['1.2.840.10008.1.2.4.201', 'HTJ2K lossless'],
  ['1.2.840.10008.1.2.1.', 'trailing dot'],
  ['', 'empty'],
  ['LittleEndian', 'not a UID'],
];
const LYING_COMPRESSED: Array<[string, string]> = [
  ['1.2.840.10008.1.2.4.90', 'J2K declared, native data'],
  ['1.2.840.10008.1.2.4.70', 'JPEG lossless declared, native data'],
  ['1.2.840.10008.1.2.5', 'RLE declared, native data'],
  ['1.2.840.10008.1.2.4.80', 'JPEG-LS declared, native data'],
];
function unknownSyntax(rng: Rng, id: string, uid: string): MalformedCase {
  const b = baseInstance(rng, uid, { ts: EXPLICIT_LE });
  const lying = rng.next() < 0.3;
  const [ts, name] = lying ? LYING_COMPRESSED[rng.int(0, LYING_COMPRESSED.length - 1)] : BAD_SYNTAXES[rng.int(0, BAD_SYNTAXES.length - 1)];
  const file = withMeta(b.file, b.dsStart, { sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, transferSyntaxUID: ts });
  // An empty UID cannot be proposed as such: propose one made of a single "0".
  return fileCase(id, 'unknown-transfer-syntax', name, uid, file, ts || '0');
}

const NON_IMAGE: Array<[string, string]> = [
  ['1.2.840.10008.5.1.4.1.1.88.33', 'Comprehensive SR'],
  ['1.2.840.10008.5.1.4.1.1.88.59', 'Key Object Selection'],
  ['1.2.840.10008.5.1.4.1.1.104.1', 'Encapsulated PDF'],
  ['1.2.840.10008.5.1.4.1.1.481.3', 'RT Structure Set'],
  ['1.2.840.10008.5.1.4.1.1.11.1', 'Grayscale Softcopy Presentation State'],
  ['1.2.840.10008.5.1.4.1.1.66', 'Raw Data'],
  ['1.2.840.10008.5.1.4.1.1.4.2', 'MR Spectroscopy'],
  ['1.2.840.10008.5.1.4.1.1.7', 'Secondary Capture'],
  ['1.2.840.10008.1.1', 'Verification as a storage class'],
];
function nonImage(rng: Rng, id: string, uid: string): MalformedCase {
  const [cls, name] = NON_IMAGE[rng.int(0, NON_IMAGE.length - 1)];
  const b = baseInstance(rng, uid, { ts: EXPLICIT_LE, sopClassUID: cls });
  const ds = b.file.subarray(b.dsStart);
  const how = rng.int(0, 2);
  let steps: Step[];
  let variant: string;
  if (how === 0) {
    // Proposed as itself: the context is refused (so is the association, having no other context).
    steps = storeSteps({ contexts: [mrContext([EXPLICIT_LE], 1, cls)], sopClassUID: cls, sopInstanceUID: uid, dataset: ds });
    variant = `${name} proposed`;
  } else if (how === 1) {
    // Sent on the MR context with its own class in the command.
    steps = storeSteps({ contexts: [mrContext([EXPLICIT_LE])], sopClassUID: cls, sopInstanceUID: uid, dataset: ds });
    variant = `${name} on the MR context`;
  } else {
    // Hidden: the command says MR, the dataset says otherwise.
    steps = storeSteps({ contexts: [mrContext([EXPLICIT_LE])], sopClassUID: MR_IMAGE_STORAGE, sopInstanceUID: uid, dataset: ds });
    variant = `${name} behind an MR command`;
  }
  return { id, family: 'non-image-sop', variant, sopInstanceUID: uid, file: b.file, steps, mustFail: true, mayWait: false };
}

/** The PDUs of one valid store on pc 1 (command PDU first). */
function validStorePdus(rng: Rng, uid: string): { pdus: Buffer[]; dataset: Buffer } {
  const b = baseInstance(rng, uid, { ts: EXPLICIT_LE });
  const dataset = b.file.subarray(b.dsStart);
  const pdus = [pdataTf(1, 0x03, cStoreRq(1, MR_IMAGE_STORAGE, uid)), ...datasetPdus(1, dataset, rng.int(256, 16_000))];
  return { pdus, dataset };
}

function pdataRandom(rng: Rng, id: string, uid: string): MalformedCase {
  const { pdus } = validStorePdus(rng, uid);
  const where = rng.int(0, 3);
  // Which PDU: the command (index 0) for 'command', else a dataset PDU.
  const i = where === 2 ? 0 : rng.int(1, pdus.length - 1);
  const p = Buffer.from(pdus[i]);
  let mustFail = true;
  let mayWait = false;
  let variant: string;
  if (where === 0) {
    // PDU header: type, reserved byte or length.
    const off = rng.int(0, 5);
    const old = p[off];
    let v = rng.int(0, 255);
    if (v === old) v = (v + 1) & 0xff;
    const oldLength = p.readUInt32BE(2);
    p[off] = v;
    // The reserved byte is ignored. A longer last PDU still carries the whole dataset: the SCP may answer
    // (Success) as soon as the last fragment is in, and then waits for the rest of the PDU.
    mustFail = off === 0 || (off >= 2 && !(i === pdus.length - 1 && p.readUInt32BE(2) > oldLength));
    mayWait = off >= 2;
    variant = `PDU header byte ${off} ${old}→${v}`;
  } else if (where === 1) {
    // PDV header: length, presentation context id or control header.
    const off = 6 + rng.int(0, 5);
    const old = p[off];
    let v = rng.int(0, 255);
    if (v === old) v = (v + 1) & 0xff;
    p[off] = v;
    if (off === 11) mustFail = (v & 0x03) !== (old & 0x03); // only the two low bits mean something
    mayWait = true;
    variant = `PDV header byte ${off - 6} ${old}→${v}`;
  } else {
    // Values: k random bytes in the command (where == 2) or the dataset fragment.
    const k = rng.int(1, 16);
    for (let j = 0; j < k; j++) p[12 + rng.int(0, p.length - 13)] = rng.int(0, 255);
    mustFail = false;
    mayWait = where === 2; // a command turned into something else may leave the SCP waiting for a dataset
    variant = `${k} random bytes in the ${where === 2 ? 'command' : 'dataset'} value`;
  }
  pdus[i] = p;
  const steps: Step[] = [{ send: rq([mrContext([EXPLICIT_LE])]) }, { expect: 'associate' }, { send: Buffer.concat(pdus) }, { expect: 'response' }, { release: true }];
  return { id, family: 'pdata-random-bytes', variant, sopInstanceUID: uid, steps, mustFail, mayWait };
}

function dropped(rng: Rng, id: string, uid: string): MalformedCase {
  const { pdus } = validStorePdus(rng, uid);
  const assoc = rq([mrContext([EXPLICIT_LE])]);
  const data = Buffer.concat(pdus.slice(1));
  const stage = rng.int(0, 9);
  const abort = rng.next() < 0.3 ? pdu(PduType.abort, Buffer.from([0, 0, 0, 0])) : undefined;
  const end: Step[] = abort ? [{ send: abort }, { drop: true }] : [{ drop: true }];
  let steps: Step[];
  let mayStore = false;
  let variant: string;
  switch (stage) {
    case 0:
      steps = [...end];
      variant = 'after connect';
      break;
    case 1:
      steps = [{ send: assoc.subarray(0, rng.int(1, assoc.length - 1)) }, ...end];
      variant = 'inside the A-ASSOCIATE-RQ';
      break;
    case 2:
      steps = [{ send: assoc }, ...end];
      variant = 'before the A-ASSOCIATE-AC';
      break;
    case 3:
      steps = [{ send: assoc }, { expect: 'associate' }, ...end];
      variant = 'after the A-ASSOCIATE-AC';
      break;
    case 4:
      steps = [{ send: assoc }, { expect: 'associate' }, { send: pdus[0].subarray(0, rng.int(1, pdus[0].length - 1)) }, ...end];
      variant = 'inside the command';
      break;
    case 5:
      steps = [{ send: assoc }, { expect: 'associate' }, { send: pdus[0] }, ...end];
      variant = 'after the command';
      break;
    case 6:
    case 7:
      steps = [{ send: assoc }, { expect: 'associate' }, { send: pdus[0] }, { send: data.subarray(0, rng.int(1, data.length - 1)) }, ...end];
      variant = 'inside the dataset';
      break;
    case 8:
      steps = [{ send: assoc }, { expect: 'associate' }, { send: pdus[0] }, { send: data }, ...end];
      variant = 'after the last fragment, before the response';
      mayStore = true;
      break;
    default:
      steps = [{ send: assoc }, { expect: 'associate' }, { send: pdus[0] }, { send: data }, { expect: 'response' }, { send: pdu(PduType.releaseRq, Buffer.alloc(4)) }, ...end];
      variant = 'after the release request';
      mayStore = true;
  }
  return { id, family: 'dropped-association', variant: abort ? `A-ABORT ${variant}` : `drop ${variant}`, sopInstanceUID: uid, steps, mustFail: true, mayWait: false, mayStore };
}

function bogusPdu(rng: Rng, id: string, uid: string): MalformedCase {
  const assoc = rq([mrContext([EXPLICIT_LE])]);
  const { pdus } = validStorePdus(rng, uid);
  const garbage = (n: number) => Buffer.from(Array.from({ length: n }, () => rng.int(0, 255)));
  const kind = rng.int(0, 15);
  let steps: Step[];
  let variant: string;
  let mayWait = false;
  const afterAssoc = (s: Step[]): Step[] => [{ send: assoc }, { expect: 'associate' }, ...s];
  switch (kind) {
    case 0: {
      const t = [0x00, 0x08, 0x09, 0x10, 0x41, 0x7f, 0xff][rng.int(0, 6)];
      steps = [{ send: pdu(t, garbage(rng.int(0, 64))) }, { expect: 'associate' }];
      variant = `unknown PDU type 0x${t.toString(16)} first`;
      break;
    }
    case 1: {
      const t = [0x00, 0x08, 0x0a, 0x20, 0xff][rng.int(0, 4)];
      steps = afterAssoc([{ send: pdu(t, garbage(rng.int(0, 64))) }, { expect: 'response' }]);
      variant = `unknown PDU type 0x${t.toString(16)} in an association`;
      break;
    }
    case 2: {
      const h = Buffer.from(assoc);
      h.writeUInt32BE(0xffffffff, 2);
      steps = [{ send: h }, { expect: 'associate' }];
      variant = 'A-ASSOCIATE-RQ length 0xFFFFFFFF';
      break;
    }
    case 3: {
      const h = Buffer.from(pdus[1]);
      h.writeUInt32BE(rng.next() < 0.5 ? 0xffffffff : 0x7fffffff, 2);
      steps = afterAssoc([{ send: pdus[0] }, { send: h }, { expect: 'response' }]);
      variant = 'P-DATA-TF length huge';
      break;
    }
    case 4: {
      // The PDU length says less than its items take.
      const h = Buffer.from(assoc);
      const len = rng.int(0, assoc.length - 7);
      h.writeUInt32BE(len, 2);
      steps = [{ send: h }, { expect: 'associate' }];
      variant = `A-ASSOCIATE-RQ length ${len} of ${assoc.length - 6}`;
      break;
    }
    case 5: {
      // Item lengths past the end of the PDU.
      const h = Buffer.from(assoc);
      const itemAt = 6 + 68; // application context item
      h.writeUInt16BE(rng.next() < 0.5 ? 0xffff : assoc.length, itemAt + 2);
      steps = [{ send: h }, { expect: 'associate' }];
      variant = 'A-ASSOCIATE-RQ item length past the end';
      break;
    }
    case 6: {
      const h = associateRq({ callingAE: CALLING_AE, calledAE: CALLED_AE, contexts: [mrContext([EXPLICIT_LE])], protocolVersion: rng.int(2, 0xffff) });
      steps = [{ send: h }, { expect: 'associate' }];
      variant = 'A-ASSOCIATE-RQ bad protocol version';
      break;
    }
    case 7: {
      steps = [{ send: rq([]) }, { expect: 'associate' }];
      variant = 'A-ASSOCIATE-RQ without presentation contexts';
      break;
    }
    case 8: {
      steps = [{ send: pdus[0] }, { send: pdus[1] }, { expect: 'associate' }];
      variant = 'P-DATA-TF before any association';
      break;
    }
    case 9: {
      steps = [{ send: pdu(PduType.releaseRq, Buffer.alloc(4)) }, { expect: 'associate' }];
      variant = 'A-RELEASE-RQ before any association';
      break;
    }
    case 10: {
      const ac = Buffer.from(assoc);
      ac[0] = PduType.associateAc;
      steps = [{ send: ac }, { expect: 'associate' }];
      variant = 'A-ASSOCIATE-AC sent by the requestor';
      break;
    }
    case 11: {
      steps = afterAssoc([{ send: assoc }, { expect: 'response' }]);
      variant = 'second A-ASSOCIATE-RQ in an association';
      break;
    }
    case 12: {
      steps = [{ send: garbage(rng.int(1, 4096)) }, { expect: 'associate' }];
      variant = 'random bytes';
      mayWait = true;
      break;
    }
    case 13: {
      const which = rng.int(0, 1);
      steps = [{ send: Buffer.from(which ? 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' : '\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03', 'latin1') }, { expect: 'associate' }];
      variant = which ? 'HTTP request' : 'TLS ClientHello on the plain port';
      mayWait = true;
      break;
    }
    case 14: {
      // A data PDV on a presentation context that was never proposed.
      const p = Buffer.from(pdus[1]);
      p[10] = rng.int(2, 255) | 1;
      steps = afterAssoc([{ send: pdus[0] }, { send: p }, { expect: 'response' }]);
      variant = `data on presentation context ${p[10]}`;
      break;
    }
    default: {
      // A PDU with a zero-length body where one is required.
      const t = [PduType.associateRq, PduType.pData, PduType.abort, PduType.releaseRq][rng.int(0, 3)];
      steps = t === PduType.associateRq ? [{ send: pdu(t, Buffer.alloc(0)) }, { expect: 'associate' }] : afterAssoc([{ send: pdu(t, Buffer.alloc(0)) }, { expect: 'response' }]);
      variant = `empty PDU type 0x${t.toString(16)}`;
    }
  }
  return { id, family: 'bogus-pdu', variant, sopInstanceUID: uid, steps, mustFail: true, mayWait };
}

const GENERATORS: Record<Family, (rng: Rng, id: string, uid: string) => MalformedCase> = {
  'truncated-part10': truncated,
  'wrong-vr': wrongVr,
  'absurd-length': absurdLength,
  'short-pixel-data': shortPixelData,
  'unknown-transfer-syntax': unknownSyntax,
  'non-image-sop': nonImage,
  'pdata-random-bytes': pdataRandom,
  'dropped-association': dropped,
  'bogus-pdu': bogusPdu,
};

export interface CorpusOptions {
  seed: number;
  /** Cases per family. */
  perFamily: number;
  families?: readonly Family[];
}

/**
 * The same corruption as case `n` of a file-level `family` would get, applied to `instance` (a valid Part 10
 * file, e.g. one instance of a phantom study, Explicit VR LE without sequences): for running `classify` on a
 * study with one bad instance in it.
 */
export function corruptInstance(family: (typeof FILE_FAMILIES)[number], seed: number, n: number, instance: Buffer): { file: Buffer; variant: string } {
  const fi = FAMILIES.indexOf(family);
  givenBase = instance;
  try {
    const c = GENERATORS[family](new Rng(hashSeed(seed, fi, n)), `${family}#${n}`, '2.25.1');
    return { file: c.file!, variant: c.variant };
  } finally {
    givenBase = undefined;
  }
}

/** The corpus: `perFamily` cases of each family, deterministic for a seed. */
export function* generateCorpus(o: CorpusOptions): Generator<MalformedCase> {
  for (const [fi, family] of (o.families ?? FAMILIES).entries()) {
    for (let n = 0; n < o.perFamily; n++) {
      const rng = new Rng(hashSeed(o.seed, fi, n));
      const uid = `2.25.${o.seed}${String(fi).padStart(2, '0')}${String(n).padStart(5, '0')}`;
      yield GENERATORS[family](rng, `${family}#${n}`, uid);
    }
  }
}
