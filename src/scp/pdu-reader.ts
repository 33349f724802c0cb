/**
 * The receive hot path: an incremental PDU reader in front of dcmjs-dimse.
 *
 * dcmjs-dimse frames PDUs with a Buffer.concat per socket chunk (quadratic in the PDU size), copies every PDU
 * and PDV again while parsing, and buffers each P-DATA value in a memory stream: for a 128 KB image that is
 * several copies and most of the CPU of a receive. This reader sits on the socket instead: the dataset PDVs of a
 * pending C-STORE are streamed to the store as sub-slices of the socket chunks (no copy, no wait for the whole
 * PDU); everything else (association PDUs, command PDVs, data of other commands) is handed to dcmjs-dimse's own
 * path as complete PDUs, unchanged in meaning (one PDV per handed-over P-DATA-TF).
 */

export interface PduReaderHooks {
  /** A complete PDU (6-byte header included) for the stock dcmjs-dimse path. */
  stock(pdu: Buffer): void;
  /**
   * A complete command (one last-fragment command PDV). Returns true when consumed (a C-STORE-RQ taken on the
   * fast path); false hands it to the stock path.
   */
  command(pcId: number, value: Buffer): boolean;
  /** Whether a C-STORE command is waiting for its dataset (data PDVs then go to `data`). */
  storePending(): boolean;
  /** A fragment of a data PDV value of the pending C-STORE. */
  data(pcId: number, chunk: Buffer): void;
  /** The last fragment of the pending C-STORE's dataset has been delivered. */
  dataEnd(pcId: number): void;
  /** Every PDU header seen (for timeouts and statistics). */
  pduSeen(type: number, length: number): void;
  /** Framing error: the association must be aborted (A-ABORT reason, PS3.8 §9.3.8: 1 unrecognized PDU, 6 invalid PDU parameter value). */
  protocolError(message: string, reason: number): void;
}

/** A-ABORT reasons (source: service provider) the reader reports. */
export const AbortReason = { unrecognizedPdu: 1, invalidPduParameterValue: 6 } as const;

const P_DATA_TF = 0x04;
const KNOWN_TYPES = new Set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
/** Association PDUs are small; anything bigger is garbage (or hostile). */
const MAX_CONTROL_PDU = 1 << 20;

type Mode = 'pduHeader' | 'collect' | 'pdvHeader' | 'pdvData' | 'pdvStock' | 'failed';

export class PduReader {
  private chunks: Buffer[] = [];
  private avail = 0;
  private mode: Mode = 'pduHeader';
  private pduHeader: Buffer | undefined;
  private collectLength = 0;
  /** Bytes of the current P-DATA-TF body not yet consumed. */
  private pduRemaining = 0;
  private pdvHeader: Buffer | undefined;
  private pdvRemaining = 0;
  private pdvPc = 0;
  private pdvLast = false;
  private pdvCommand = false;
  /** A command was split over PDVs and its first fragments went to the stock path: the rest must follow. */
  private stockCommandPartial = false;

  /**
   * `maxPduLength`: the Maximum Length we announced in the A-ASSOCIATE-AC; a P-DATA-TF whose variable field is
   * longer is a protocol violation (PS3.8 §D.1) and aborts the association. 0 / undefined = no check.
   */
  constructor(
    private readonly hooks: PduReaderHooks,
    private readonly opts: { maxPduLength?: number } = {},
  ) {}

  push(chunk: Buffer): void {
    if (this.mode === 'failed' || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.avail += chunk.length;
    this.run();
  }

  /** Removes exactly n bytes (n ≤ avail) from the front: a sub-slice when they lie in one chunk. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length === n) {
      this.chunks.shift();
      this.avail -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.avail -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.avail -= n;
    return out;
  }

  /** Removes up to n bytes from the first chunk only (never copies). */
  private takeSome(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length <= n) {
      this.chunks.shift();
      this.avail -= first.length;
      return first;
    }
    this.chunks[0] = first.subarray(n);
    this.avail -= n;
    return first.subarray(0, n);
  }

  private fail(message: string, reason: number = AbortReason.invalidPduParameterValue): void {
    this.stop();
    this.hooks.protocolError(message, reason);
  }

  /** Stops reading for good (the association is being torn down). */
  stop(): void {
    this.mode = 'failed';
    this.chunks = [];
    this.avail = 0;
  }

  private run(): void {
    for (;;) {
      switch (this.mode) {
        case 'failed':
          return;
        case 'pduHeader': {
          if (this.avail < 6) return;
          const h = this.take(6);
          const type = h[0];
          const length = h.readUInt32BE(2);
          if (!KNOWN_TYPES.has(type)) return this.fail(`unknown PDU type 0x${type.toString(16)}`, AbortReason.unrecognizedPdu);
          this.hooks.pduSeen(type, length);
          if (type === P_DATA_TF) {
            const max = this.opts.maxPduLength;
            if (max && length > max) return this.fail(`P-DATA-TF of ${length} bytes exceeds the announced maximum PDU length ${max}`);
            // At least one PDV (PS3.8 §9.3.5); an empty P-DATA-TF would otherwise leave the peer waiting forever.
            if (length < 6) return this.fail(`P-DATA-TF of ${length} bytes holds no PDV`);
            this.pduRemaining = length;
            this.mode = 'pdvHeader';
          } else {
            if (length > MAX_CONTROL_PDU) return this.fail(`PDU type 0x${type.toString(16)} of ${length} bytes`);
            this.pduHeader = Buffer.from(h);
            this.collectLength = length;
            this.mode = 'collect';
          }
          break;
        }
        case 'collect': {
          if (this.avail < this.collectLength) return;
          const body = this.collectLength ? this.take(this.collectLength) : Buffer.alloc(0);
          const pdu = Buffer.concat([this.pduHeader!, body]);
          this.pduHeader = undefined;
          this.mode = 'pduHeader';
          this.hooks.stock(pdu);
          break;
        }
        case 'pdvHeader': {
          if (this.pduRemaining === 0) {
            this.mode = 'pduHeader';
            break;
          }
          if (this.pduRemaining < 6) return this.fail('P-DATA-TF ends inside a PDV header');
          if (this.avail < 6) return;
          const h = this.take(6);
          this.pduRemaining -= 6;
          const pdvLength = h.readUInt32BE(0);
          const valueLength = pdvLength - 2;
          if (pdvLength < 2 || valueLength > this.pduRemaining) return this.fail(`PDV length ${pdvLength} does not fit its PDU`);
          const control = h[5];
          this.pdvRemaining = valueLength;
          if ((control & 0x01) === 0 && this.hooks.storePending()) {
            this.pdvPc = h[4];
            this.pdvLast = (control & 0x02) !== 0;
            this.mode = 'pdvData';
          } else {
            this.pdvHeader = Buffer.from(h);
            this.pdvPc = h[4];
            this.pdvCommand = (control & 0x01) !== 0;
            this.pdvLast = (control & 0x02) !== 0;
            this.mode = 'pdvStock';
          }
          break;
        }
        case 'pdvData': {
          while (this.pdvRemaining > 0) {
            if (this.avail === 0) return;
            const b = this.takeSome(this.pdvRemaining);
            this.pdvRemaining -= b.length;
            this.pduRemaining -= b.length;
            this.hooks.data(this.pdvPc, b);
            if ((this.mode as Mode) !== 'pdvData') return; // a hook stopped the reader
          }
          this.mode = 'pdvHeader';
          if (this.pdvLast) this.hooks.dataEnd(this.pdvPc);
          break;
        }
        case 'pdvStock': {
          if (this.avail < this.pdvRemaining) return;
          const value = this.pdvRemaining ? this.take(this.pdvRemaining) : Buffer.alloc(0);
          this.pduRemaining -= this.pdvRemaining;
          this.pdvRemaining = 0;
          if (this.pdvCommand) {
            if (this.pdvLast && !this.stockCommandPartial && this.hooks.command(this.pdvPc, value)) {
              if ((this.mode as Mode) === 'failed') return;
              this.pdvHeader = undefined;
              this.mode = 'pdvHeader';
              break;
            }
            this.stockCommandPartial = !this.pdvLast;
          }
          const head = Buffer.alloc(6);
          head[0] = P_DATA_TF;
          head.writeUInt32BE(6 + value.length, 2);
          const pdu = Buffer.concat([head, this.pdvHeader!, value]);
          this.pdvHeader = undefined;
          this.mode = 'pdvHeader';
          this.hooks.stock(pdu);
          break;
        }
      }
      if ((this.mode as Mode) === 'failed') return;
    }
  }
}

/** The fields of a C-STORE-RQ the SCP needs. */
export interface StoreCommand {
  messageId: number;
  sopClassUID: string;
  sopInstanceUID: string;
}

/**
 * Parses a command set (Implicit VR LE, group 0000). Returns the C-STORE-RQ fields when it is a C-STORE-RQ
 * with a dataset, otherwise undefined (the stock path then deals with it).
 */
export function parseStoreCommand(b: Buffer): StoreCommand | undefined {
  let pos = 0;
  let field: number | undefined;
  let dataSetType: number | undefined;
  let messageId: number | undefined;
  let sopClassUID: string | undefined;
  let sopInstanceUID: string | undefined;
  while (pos + 8 <= b.length) {
    const group = b.readUInt16LE(pos);
    const element = b.readUInt16LE(pos + 2);
    const len = b.readUInt32LE(pos + 4);
    const v = pos + 8;
    if (group !== 0x0000 || v + len > b.length) return undefined;
    if (element === 0x0100 && len >= 2) field = b.readUInt16LE(v);
    else if (element === 0x0110 && len >= 2) messageId = b.readUInt16LE(v);
    else if (element === 0x0800 && len >= 2) dataSetType = b.readUInt16LE(v);
    else if (element === 0x0002) sopClassUID = trimUid(b.toString('latin1', v, v + len));
    else if (element === 0x1000) sopInstanceUID = trimUid(b.toString('latin1', v, v + len));
    pos = v + len;
  }
  if (pos !== b.length) return undefined;
  if (field !== 0x0001 || dataSetType === undefined || dataSetType === 0x0101 || messageId === undefined) return undefined;
  if (sopClassUID === undefined || sopInstanceUID === undefined) return undefined;
  return { messageId, sopClassUID, sopInstanceUID };
}

function trimUid(s: string): string {
  let end = s.length;
  while (end > 0 && (s.charCodeAt(end - 1) === 0 || s.charCodeAt(end - 1) === 0x20)) end--;
  let start = 0;
  while (start < end && s.charCodeAt(start) === 0x20) start++;
  return s.slice(start, end);
}

/** Encodes a C-STORE-RSP command (Implicit VR LE) in a P-DATA-TF PDU, ready for the socket. */
export function encodeStoreResponse(r: {
  pcId: number;
  messageId: number;
  sopClassUID: string;
  sopInstanceUID: string;
  status: number;
  errorComment?: string;
}): Buffer {
  const el: Buffer[] = [];
  const add = (element: number, value: Buffer) => {
    const h = Buffer.alloc(8);
    h.writeUInt16LE(0x0000, 0);
    h.writeUInt16LE(element, 2);
    h.writeUInt32LE(value.length, 4);
    el.push(h, value);
  };
  const uid = (s: string) => {
    const b = Buffer.from(s, 'latin1');
    return b.length % 2 ? Buffer.concat([b, Buffer.from([0])]) : b;
  };
  const text = (s: string) => {
    const b = Buffer.from(s, 'latin1');
    return b.length % 2 ? Buffer.concat([b, Buffer.from([0x20])]) : b;
  };
  const us = (v: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v & 0xffff, 0);
    return b;
  };
  add(0x0002, uid(r.sopClassUID));
  add(0x0100, us(0x8001));
  add(0x0120, us(r.messageId));
  add(0x0800, us(0x0101));
  add(0x0900, us(r.status));
  if (r.errorComment) add(0x0902, text(r.errorComment));
  add(0x1000, uid(r.sopInstanceUID));
  const body = Buffer.concat(el);
  const groupLength = Buffer.alloc(12);
  groupLength.writeUInt32LE(0x00000000, 0);
  groupLength.writeUInt32LE(4, 4);
  groupLength.writeUInt32LE(body.length, 8);
  const command = Buffer.concat([groupLength, body]);
  const head = Buffer.alloc(12);
  head[0] = P_DATA_TF;
  head.writeUInt32BE(6 + command.length, 2);
  head.writeUInt32BE(2 + command.length, 6);
  head[10] = r.pcId;
  head[11] = 0x03; // command, last fragment
  return Buffer.concat([head, command]);
}
