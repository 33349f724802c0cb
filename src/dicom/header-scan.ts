/**
 * A minimal DICOM tag walker for the hot paths (the SCP's receive path, the worker's header and pixel reads):
 * it reads the few header attributes the service needs (UIDs, geometry, timing, image size, pixel module,
 * rescale) from a dataset in Explicit or Implicit VR Little Endian, skips everything else (sequences
 * included, defined or undefined length) and stops at Pixel Data, whose position and length it reports. It
 * never copies the dataset and does not decode pixels. `scanFileMeta` reads the Part 10 preamble and File
 * Meta group in front of it.
 *
 * Every accepted transfer syntax encodes the dataset in one of these two: the compressed syntaxes are
 * Explicit VR LE with encapsulated Pixel Data. Anything it cannot settle (multi-frame functional groups,
 * text in a character set other than ASCII / Latin-1 / UTF-8, a header longer than the bytes at hand) is
 * reported so that the caller can fall back to dcmjs (src/dicom/meta.ts). So is, in `irregular`, any value
 * that dcmjs would read differently from the walker (a VR other than the dictionary's, padding or characters
 * that dcmjs keeps or strips otherwise, a character set dcmjs refuses): callers that must give exactly what
 * dcmjs gives (src/dicom/meta.ts, src/dicom/pixels.ts) use dcmjs for those.
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
  [0x00280004, ['PhotometricInterpretation', 'cs', 'CS']],
  [0x00280006, ['PlanarConfiguration', 'us', 'US']],
  [0x00280008, ['NumberOfFrames', 'is', 'IS']],
  [0x00280010, ['Rows', 'us', 'US']],
  [0x00280011, ['Columns', 'us', 'US']],
  [0x00280030, ['PixelSpacing', 'ds', 'DS']],
  [0x00280100, ['BitsAllocated', 'us', 'US']],
  [0x00280101, ['BitsStored', 'us', 'US']],
  [0x00280102, ['HighBit', 'us', 'US']],
  [0x00280103, ['PixelRepresentation', 'us', 'US']],
  [0x00281052, ['RescaleIntercept', 'ds', 'DS']],
  [0x00281053, ['RescaleSlope', 'ds', 'DS']],
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

/** Every VR of PS3.5: dcmjs reads any other as UN (a 4-byte length), the walker as a short VR. */
const KNOWN_VRS = new Set([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV',
  'OW', 'PN', 'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]);

/**
 * Specific Character Set values dcmjs 0.51 accepts (its `encodingMapping`, after its normalisation: lower
 * case, '_' and ' ' → '-'); it throws on any other, and on more than one value.
 */
const DCMJS_CHARSETS = new Set([
  '', 'iso-ir-6', 'iso-ir-13', 'iso-ir-100', 'iso-ir-101', 'iso-ir-109', 'iso-ir-110', 'iso-ir-126', 'iso-ir-127',
  'iso-ir-138', 'iso-ir-144', 'iso-ir-148', 'iso-ir-166', 'iso-2022-ir-6', 'iso-2022-ir-13', 'iso-2022-ir-87',
  'iso-2022-ir-100', 'iso-2022-ir-101', 'iso-2022-ir-109', 'iso-2022-ir-110', 'iso-2022-ir-126', 'iso-2022-ir-127',
  'iso-2022-ir-138', 'iso-2022-ir-144', 'iso-2022-ir-148', 'iso-2022-ir-149', 'iso-2022-ir-159', 'iso-2022-ir-166',
  'iso-2022-ir-58', 'iso-ir-192', 'gb18030', 'iso-2022-gbk', 'iso-2022-58', 'gbk',
]);

const UID_CHARS = /^[0-9.]*$/;
/** What dcmjs keeps of a DS/IS value (it drops every other character). */
const NUMBER_CHARS = /^[0-9.+\-eE]*$/;

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
  /**
   * Keywords of the attributes whose value dcmjs would read differently (or refuse): a VR other than the
   * dictionary's, a value with padding, control characters or separators that dcmjs treats otherwise, a
   * Specific Character Set dcmjs does not accept; '(VR)' when an element has a VR that is not in PS3.5.
   * Empty when the walker's dataset is exactly what dcmjs would naturalize for these attributes.
   */
  irregular: string[];
}

interface Cursor {
  buf: Buffer;
  /** Total bytes of the dataset; `buf` may hold only the first part. */
  total: number;
  /** The scan being filled (nested walks report irregular VRs to it). */
  scan: HeaderScan;
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
  if (len === 0) {
    // dcmjs reads an empty US as 0; empty strings naturalize to '' / null, which the service reads as absent.
    if (kind === 'us') out.irregular.push(key);
    return;
  }
  if (kind === 'us' && (vr === 'US' || vr === 'UN' || vr === 'OW' || vr === 'SS')) {
    if (len % 2 !== 0) out.irregular.push(key);
    const vals: number[] = [];
    for (let p = start; p + 2 <= end; p += 2) vals.push(b.readUInt16LE(p));
    out.dataset[key] = one(vals);
    return;
  }
  if (kind === 'text') {
    // dcmjs trims (all white space), then splits at backslashes; it keeps NULs and control characters.
    for (let i = start; i < end; i++) {
      const c = b[i];
      if (c < 0x20 || c === 0x5c || c === 0x7f) {
        out.irregular.push(key);
        break;
      }
    }
  }
  if (kind === 'text' && !isAscii(b, start, end)) {
    const cs = out.dataset.SpecificCharacterSet;
    const charset = (Array.isArray(cs) ? cs[0] : cs) ?? '';
    let text: string | undefined;
    if (charset === 'ISO_IR 192') {
      text = strip(b.toString('utf8', start, end));
      // Invalid UTF-8, or a BOM: TextDecoder (dcmjs) and Buffer may differ.
      if (text.includes('\uFFFD') || text.includes('\uFEFF')) out.irregular.push(key);
    } else if (charset === '' || charset === 'ISO_IR 100') {
      text = strip(b.toString('latin1', start, end));
      // dcmjs decodes "latin1" with TextDecoder, i.e. windows-1252: 0x80–0x9F differ.
      for (let i = start; i < end; i++) {
        if (b[i] >= 0x80 && b[i] <= 0x9f) {
          out.irregular.push(key);
          break;
        }
      }
    } else out.needsFullParse = true;
    if (text !== undefined) {
      if (text.trim() !== text) out.irregular.push(key);
      out.dataset[key] = text;
    }
    return;
  }
  const raw = b.toString('latin1', start, end);
  if (kind === 'uid' || kind === 'text') {
    const v = strip(raw);
    if (kind === 'uid' ? !UID_CHARS.test(v) : v.trim() !== v) out.irregular.push(key);
    out.dataset[key] = v;
    return;
  }
  const parts = raw.split('\\').map(strip);
  if (kind === 'cs') {
    // dcmjs trims each value (white space only: a NUL stays).
    for (let i = start; i < end; i++) {
      if (b[i] < 0x20 || b[i] > 0x7e) {
        out.irregular.push(key);
        break;
      }
    }
    out.dataset[key] = one(parts);
    if (key === 'SpecificCharacterSet') {
      const norm = parts[0]!.replace(/[_ ]/g, '-').toLowerCase();
      if (parts.length > 1 || !DCMJS_CHARSETS.has(norm)) out.irregular.push(key);
    }
    return;
  }
  // DS / IS: numbers, as dcmjs gives them; empty values are dropped (dcmjs: null).
  for (const p of parts) {
    if ((p === '' && parts.length > 1) || !NUMBER_CHARS.test(p)) {
      out.irregular.push(key);
      break;
    }
  }
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
      if (!KNOWN_VRS.has(vr)) c.scan.irregular.push(`(${vr})`);
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
      if (out && WANTED.has(tag)) out.irregular.push(WANTED.get(tag)![0]);
      if (vr === 'SQ') pos = skipSequence(c, valuePos, explicit, depth);
      else if (vr === 'UN') pos = skipSequence(c, valuePos, false, depth);
      else throw new MalformedDataset(`undefined length on (${tag.toString(16).padStart(8, '0')}) ${vr}`);
      continue;
    }
    const wanted = out ? WANTED.get(tag) : undefined;
    if (wanted) {
      if (vr !== wanted[2]) out!.irregular.push(wanted[0]);
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
  const out: HeaderScan = { dataset: {}, functionalGroups: false, needsFullParse: false, irregular: [] };
  walkElements({ buf: buffer, total, scan: out }, 0, explicit, 0, out);
  return out;
}

/** What `scanFileMeta` reads in front of the dataset of a Part 10 file. */
export interface FileMetaScan {
  /** Transfer Syntax UID (0002,0010), without padding. */
  transferSyntaxUID: string;
  /** Offset of the dataset: 132 + the File Meta group (whose length (0002,0000) gives). */
  datasetOffset: number;
}

/**
 * Reads the 128-byte preamble, 'DICM' and the File Meta group (always Explicit VR Little Endian) of a
 * Part 10 file as dcmjs does: the group must start with (0002,0000) UL, whose value sets where the dataset
 * starts. Returns undefined when the bytes are not such a file or when dcmjs might read them differently
 * (no group length, an element running past the group, a Transfer Syntax UID with stray characters, the
 * group not all in `buffer`): the caller then leaves the file to dcmjs.
 */
export function scanFileMeta(buffer: Uint8Array): FileMetaScan | undefined {
  const b = buffer;
  if (b.length < 144) return undefined;
  if (b[128] !== 0x44 || b[129] !== 0x49 || b[130] !== 0x43 || b[131] !== 0x4d) return undefined; // 'DICM'
  // (0002,0000) UL, length 4.
  if (b[132] !== 0x02 || b[133] !== 0 || b[134] !== 0 || b[135] !== 0 || b[136] !== 0x55 || b[137] !== 0x4c) return undefined;
  if (b[138] !== 4 || b[139] !== 0) return undefined;
  const groupLength = (b[140]! | (b[141]! << 8) | (b[142]! << 16) | (b[143]! << 24)) >>> 0;
  const end = 144 + groupLength;
  if (end > b.length) return undefined;
  let ts: string | undefined;
  let pos = 144;
  while (pos < end) {
    if (pos + 8 > end) return undefined;
    const v0 = b[pos + 4]!;
    const v1 = b[pos + 5]!;
    if (v0 < 0x41 || v0 > 0x5a || v1 < 0x41 || v1 > 0x5a) return undefined;
    const vr = String.fromCharCode(v0, v1);
    if (!KNOWN_VRS.has(vr)) return undefined;
    let len: number;
    let valuePos: number;
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > end) return undefined;
      len = (b[pos + 8]! | (b[pos + 9]! << 8) | (b[pos + 10]! << 16) | (b[pos + 11]! << 24)) >>> 0;
      valuePos = pos + 12;
    } else {
      len = b[pos + 6]! | (b[pos + 7]! << 8);
      valuePos = pos + 8;
    }
    if (len === UNDEFINED || valuePos + len > end) return undefined;
    const group = b[pos]! | (b[pos + 1]! << 8);
    const element = b[pos + 2]! | (b[pos + 3]! << 8);
    if (group === 0x0002 && element === 0x0010) {
      if (vr !== 'UI') return undefined;
      let s = '';
      for (let i = valuePos; i < valuePos + len; i++) s += String.fromCharCode(b[i]!);
      ts = strip(s);
      if (ts === '' || !UID_CHARS.test(ts)) return undefined;
    }
    pos = valuePos + len;
  }
  return ts === undefined ? undefined : { transferSyntaxUID: ts, datasetOffset: end };
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
