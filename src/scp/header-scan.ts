/**
 * A minimal DICOM tag walker for the receive hot path: it reads the few header attributes the SCP needs
 * (UIDs, geometry, timing, image size) from a dataset in Explicit or Implicit VR Little Endian, skips
 * everything else (sequences included, defined or undefined length) and stops at Pixel Data, whose position
 * and length it reports. It never copies the dataset and does not decode pixels.
 *
 * Every accepted transfer syntax encodes the dataset in one of these two: the compressed syntaxes are
 * Explicit VR LE with encapsulated Pixel Data. Anything it cannot settle (multi-frame functional groups,
 * text in a character set other than ASCII / Latin-1 / UTF-8, a header longer than the bytes at hand) is
 * reported so that the caller can fall back to dcmjs (src/dicom/meta.ts).
 */

/** The walker needs bytes beyond `buffer.length` (but the dataset is longer than that). */
export class NeedMoreData extends Error {
  constructor(readonly needed: number) {
    super(`header continues beyond ${needed} bytes`);
    this.name = 'NeedMoreData';
  }
}

/** The dataset is not well-formed: the message says where. */
export class MalformedDataset extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedDataset';
  }
}

type Kind = 'uid' | 'text' | 'ds' | 'is' | 'us' | 'cs';

/** Tags read by the walker, as group<<16|element → [keyword, kind, implicit-VR]. */
const WANTED = new Map<number, [string, Kind, string]>([
  [0x00080005, ['SpecificCharacterSet', 'cs', 'CS']],
  [0x00080008, ['ImageType', 'cs', 'CS']],
  [0x00080016, ['SOPClassUID', 'uid', 'UI']],
  [0x00080018, ['SOPInstanceUID', 'uid', 'UI']],
  [0x00080060, ['Modality', 'cs', 'CS']],
  [0x0008103e, ['SeriesDescription', 'text', 'LO']],
  [0x00180050, ['SliceThickness', 'ds', 'DS']],
  [0x00181060, ['TriggerTime', 'ds', 'DS']],
  [0x00181090, ['CardiacNumberOfImages', 'is', 'IS']],
  [0x0020000d, ['StudyInstanceUID', 'uid', 'UI']],
  [0x0020000e, ['SeriesInstanceUID', 'uid', 'UI']],
  [0x00200011, ['SeriesNumber', 'is', 'IS']],
  [0x00200013, ['InstanceNumber', 'is', 'IS']],
  [0x00200032, ['ImagePositionPatient', 'ds', 'DS']],
  [0x00200037, ['ImageOrientationPatient', 'ds', 'DS']],
  [0x00200052, ['FrameOfReferenceUID', 'uid', 'UI']],
  [0x00200100, ['TemporalPositionIdentifier', 'is', 'IS']],
  [0x00201041, ['SliceLocation', 'ds', 'DS']],
  [0x00280002, ['SamplesPerPixel', 'us', 'US']],
  [0x00280008, ['NumberOfFrames', 'is', 'IS']],
  [0x00280010, ['Rows', 'us', 'US']],
  [0x00280011, ['Columns', 'us', 'US']],
  [0x00280030, ['PixelSpacing', 'ds', 'DS']],
  [0x00280100, ['BitsAllocated', 'us', 'US']],
]);

const PIXEL_DATA = 0x7fe00010;
const SHARED_FUNCTIONAL_GROUPS = 0x52009229;
const PER_FRAME_FUNCTIONAL_GROUPS = 0x52009230;
const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
const UNDEFINED = 0xffffffff;

/** VRs with a 2-byte reserved field and a 4-byte length in Explicit VR. */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

export interface PixelDataInfo {
  /** Offset of the Pixel Data tag from the start of the dataset. */
  tagOffset: number;
  /** Offset of its value. */
  valueOffset: number;
  /** Value length; undefined for encapsulated (undefined-length) Pixel Data. */
  length: number | undefined;
  vr: string;
}

export interface HeaderScan {
  /** The attributes read, shaped like dcmjs's naturalized dataset (one value → scalar, several → array). */
  dataset: Record<string, unknown>;
  pixelData?: PixelDataInfo;
  /** Shared/Per-frame Functional Groups present: per-frame geometry needs a full parse (dcmjs). */
  functionalGroups: boolean;
  /** Text that this walker will not decode (an unusual Specific Character Set): use dcmjs for the header. */
  needsFullParse: boolean;
}

interface Cursor {
  buf: Buffer;
  /** Total bytes of the dataset; `buf` may hold only the first part. */
  total: number;
}

function need(c: Cursor, end: number): void {
  if (end <= c.buf.length) return;
  if (end > c.total) throw new MalformedDataset(`dataset truncated: needs ${end} bytes, has ${c.total}`);
  throw new NeedMoreData(end);
}

function strip(s: string): string {
  let end = s.length;
  while (end > 0 && (s.charCodeAt(end - 1) === 0 || s.charCodeAt(end - 1) === 0x20)) end--;
  let start = 0;
  while (start < end && s.charCodeAt(start) === 0x20) start++;
  return s.slice(start, end);
}

function isAscii(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i] > 0x7f) return false;
  return true;
}

function one<T>(values: T[]): T | T[] | undefined {
  if (values.length === 0) return undefined;
  return values.length === 1 ? values[0] : values;
}

function decode(out: HeaderScan, kind: Kind, key: string, b: Buffer, start: number, len: number, vr: string): void {
  const end = start + len;
  if (len === 0) return;
  if (kind === 'us' && (vr === 'US' || vr === 'UN' || vr === 'OW' || vr === 'SS')) {
    const vals: number[] = [];
    for (let p = start; p + 2 <= end; p += 2) vals.push(b.readUInt16LE(p));
    out.dataset[key] = one(vals);
    return;
  }
  if (kind === 'text' && !isAscii(b, start, end)) {
    const cs = out.dataset.SpecificCharacterSet;
    const charset = (Array.isArray(cs) ? cs[0] : cs) ?? '';
    if (charset === 'ISO_IR 192') out.dataset[key] = strip(b.toString('utf8', start, end));
    else if (charset === '' || charset === 'ISO_IR 100') out.dataset[key] = strip(b.toString('latin1', start, end));
    else out.needsFullParse = true;
    return;
  }
  const raw = b.toString('latin1', start, end);
  if (kind === 'uid' || kind === 'text') {
    out.dataset[key] = strip(raw);
    return;
  }
  const parts = raw.split('\\').map(strip);
  if (kind === 'cs') {
    out.dataset[key] = one(parts);
    return;
  }
  // DS / IS: numbers, as dcmjs gives them; empty values are dropped.
  const vals = parts.filter((p) => p !== '').map(Number);
  out.dataset[key] = one(vals);
}

/**
 * Skips a sequence of undefined length starting at `pos` (just after its header); returns the position after
 * its Sequence Delimitation Item. Items may have defined or undefined length; undefined-length items are
 * walked element by element (`explicit` selects the VR encoding inside).
 */
function skipSequence(c: Cursor, pos: number, explicit: boolean, depth: number): number {
  if (depth > 32) throw new MalformedDataset('sequences nested too deeply');
  for (;;) {
    need(c, pos + 8);
    const tag = ((c.buf.readUInt16LE(pos) << 16) | c.buf.readUInt16LE(pos + 2)) >>> 0;
    const len = c.buf.readUInt32LE(pos + 4);
    pos += 8;
    if (tag === SEQUENCE_DELIMITER) return pos;
    if (tag !== ITEM) throw new MalformedDataset(`expected an item in a sequence, found (${tag.toString(16).padStart(8, '0')})`);
    if (len !== UNDEFINED) {
      pos += len;
      continue;
    }
    pos = walkElements(c, pos, explicit, depth + 1, undefined);
  }
}

/**
 * Walks elements from `pos`. At top level (`out` given) it records wanted tags and stops at Pixel Data or
 * at the end of the dataset; inside an undefined-length item it stops after the Item Delimitation Item.
 */
function walkElements(c: Cursor, pos: number, explicit: boolean, depth: number, out: HeaderScan | undefined): number {
  const b = c.buf;
  for (;;) {
    if (out && pos >= c.total) return pos;
    need(c, pos + 8);
    const group = b.readUInt16LE(pos);
    const tag = ((group << 16) | b.readUInt16LE(pos + 2)) >>> 0;
    if (tag === ITEM_DELIMITER) {
      if (out) throw new MalformedDataset('item delimiter outside a sequence');
      return pos + 8;
    }
    if (group === 0xfffe) throw new MalformedDataset(`unexpected (${tag.toString(16).padStart(8, '0')}) in the dataset`);
    let vr: string;
    let len: number;
    let valuePos: number;
    if (explicit) {
      const v0 = b[pos + 4];
      const v1 = b[pos + 5];
      if (v0 < 0x41 || v0 > 0x5a || v1 < 0x41 || v1 > 0x5a) {
        throw new MalformedDataset(`invalid VR at offset ${pos} for (${tag.toString(16).padStart(8, '0')})`);
      }
      vr = String.fromCharCode(v0, v1);
      if (LONG_VRS.has(vr)) {
        need(c, pos + 12);
        len = b.readUInt32LE(pos + 8);
        valuePos = pos + 12;
      } else {
        len = b.readUInt16LE(pos + 6);
        valuePos = pos + 8;
      }
    } else {
      len = b.readUInt32LE(pos + 4);
      valuePos = pos + 8;
      vr = WANTED.get(tag)?.[2] ?? (tag === PIXEL_DATA ? 'OW' : len === UNDEFINED ? 'SQ' : 'UN');
    }
    if (out && tag === PIXEL_DATA) {
      out.pixelData = { tagOffset: pos, valueOffset: valuePos, length: len === UNDEFINED ? undefined : len, vr };
      return pos;
    }
    if (out && (tag === SHARED_FUNCTIONAL_GROUPS || tag === PER_FRAME_FUNCTIONAL_GROUPS)) out.functionalGroups = true;
    if (len === UNDEFINED) {
      if (vr === 'SQ') pos = skipSequence(c, valuePos, explicit, depth);
      else if (vr === 'UN') pos = skipSequence(c, valuePos, false, depth);
      else throw new MalformedDataset(`undefined length on (${tag.toString(16).padStart(8, '0')}) ${vr}`);
      continue;
    }
    const wanted = out ? WANTED.get(tag) : undefined;
    if (wanted) {
      need(c, valuePos + len);
      decode(out!, wanted[1], wanted[0], b, valuePos, len, vr);
    }
    pos = valuePos + len;
    if (pos > c.total) throw new MalformedDataset(`dataset truncated inside (${tag.toString(16).padStart(8, '0')})`);
  }
}

/**
 * Scans a dataset (no preamble, no meta group) of `total` bytes, of which `buffer` holds the first part.
 * Throws NeedMoreData when the header continues beyond `buffer`, MalformedDataset when it is not well-formed.
 */
export function scanHeader(buffer: Buffer, explicit: boolean, total: number = buffer.length): HeaderScan {
  const out: HeaderScan = { dataset: {}, functionalGroups: false, needsFullParse: false };
  walkElements({ buf: buffer, total }, 0, explicit, 0, out);
  return out;
}

/**
 * Checks the item structure of encapsulated Pixel Data (Basic Offset Table item, fragments, Sequence
 * Delimitation Item) by reading item headers through `read(position, length)`. Returns the number of
 * fragments (without the offset table).
 */
export async function checkEncapsulated(
  read: (position: number, length: number) => Promise<Buffer>,
  start: number,
  end: number,
): Promise<number> {
  let pos = start;
  let items = 0;
  for (;;) {
    if (pos + 8 > end) throw new MalformedDataset('encapsulated pixel data truncated (no sequence delimiter)');
    const h = await read(pos, 8);
    if (h.length < 8) throw new MalformedDataset('encapsulated pixel data truncated');
    const tag = ((h.readUInt16LE(0) << 16) | h.readUInt16LE(2)) >>> 0;
    const len = h.readUInt32LE(4);
    pos += 8;
    if (tag === SEQUENCE_DELIMITER) break;
    if (tag !== ITEM || len === UNDEFINED) throw new MalformedDataset('invalid item in encapsulated pixel data');
    pos += len;
    items++;
  }
  if (items < 2) throw new MalformedDataset('encapsulated pixel data has no fragment');
  return items - 1;
}
