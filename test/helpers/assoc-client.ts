/**
 * A small DICOM upper-layer client that sends exactly the bytes it is given: A-ASSOCIATE-RQ, P-DATA-TF,
 * A-RELEASE-RQ, A-ABORT built here, or anything else (corrupted PDUs). For the malformed-input corpus and the
 * limit/TLS tests; never used by the product. Plain TCP or TLS (node:tls).
 */
import { Socket, connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

export const PduType = { associateRq: 0x01, associateAc: 0x02, associateRj: 0x03, pData: 0x04, releaseRq: 0x05, releaseRp: 0x06, abort: 0x07 } as const;

export interface PresentationContextRq {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface Pdu {
  type: number;
  body: Buffer;
}

export interface AssociateAc {
  contexts: Array<{ id: number; result: number; transferSyntax?: string }>;
  /** Maximum Length Received announced by the acceptor (0 = unlimited). */
  maxPduLength?: number;
}

export function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = type;
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

const aeField = (ae: string) => Buffer.from(ae.padEnd(16, ' ').slice(0, 16), 'latin1');

export function associateRq(o: { callingAE: string; calledAE: string; contexts: PresentationContextRq[]; maxPduLength?: number; protocolVersion?: number }): Buffer {
  const head = Buffer.alloc(68);
  head.writeUInt16BE(o.protocolVersion ?? 1, 0);
  aeField(o.calledAE).copy(head, 4);
  aeField(o.callingAE).copy(head, 20);
  const parts = [head, item(0x10, Buffer.from('1.2.840.10008.3.1.1.1', 'latin1'))];
  for (const pc of o.contexts) {
    const sub = [item(0x30, Buffer.from(pc.abstractSyntax, 'latin1')), ...pc.transferSyntaxes.map((t) => item(0x40, Buffer.from(t, 'latin1')))];
    parts.push(item(0x20, Buffer.concat([Buffer.from([pc.id, 0, 0, 0]), ...sub])));
  }
  const max = Buffer.alloc(4);
  max.writeUInt32BE(o.maxPduLength ?? 1 << 20, 0);
  parts.push(item(0x50, Buffer.concat([item(0x51, max), item(0x52, Buffer.from('2.25.1', 'latin1'))])));
  return pdu(PduType.associateRq, Buffer.concat(parts));
}

export function parseAssociateAc(body: Buffer): AssociateAc {
  const out: AssociateAc = { contexts: [] };
  let pos = 68;
  while (pos + 4 <= body.length) {
    const type = body[pos];
    const len = body.readUInt16BE(pos + 2);
    if (type === 0x21) {
      const id = body[pos + 4];
      const result = body[pos + 6];
      const tsLen = body.readUInt16BE(pos + 10);
      out.contexts.push({ id, result, transferSyntax: result === 0 ? body.toString('latin1', pos + 12, pos + 12 + tsLen) : undefined });
    } else if (type === 0x50) {
      let p = pos + 4;
      while (p + 4 <= pos + 4 + len) {
        const st = body[p];
        const sl = body.readUInt16BE(p + 2);
        if (st === 0x51) out.maxPduLength = body.readUInt32BE(p + 4);
        p += 4 + sl;
      }
    }
    pos += 4 + len;
  }
  return out;
}

/** One P-DATA-TF with one PDV. control: bit 0 = command, bit 1 = last fragment. */
export function pdataTf(pcId: number, control: number, value: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt32BE(value.length + 2, 0);
  h[4] = pcId;
  h[5] = control;
  return pdu(PduType.pData, Buffer.concat([h, value]));
}

function implicitElement(element: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0x0000, 0);
  h.writeUInt16LE(element, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}

const uid = (s: string) => {
  const b = Buffer.from(s, 'latin1');
  return b.length % 2 ? Buffer.concat([b, Buffer.from([0])]) : b;
};
const us = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v & 0xffff, 0);
  return b;
};

/** A C-STORE-RQ command set (Implicit VR LE). */
export function cStoreRq(messageId: number, sopClassUID: string, sopInstanceUID: string): Buffer {
  const body = Buffer.concat([
    implicitElement(0x0002, uid(sopClassUID)),
    implicitElement(0x0100, us(0x0001)),
    implicitElement(0x0110, us(messageId)),
    implicitElement(0x0700, us(0)),
    implicitElement(0x0800, us(0x0000)),
    implicitElement(0x1000, uid(sopInstanceUID)),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([implicitElement(0x0000, len), body]);
}

/** Status and Error Comment of a response command set (the parser the raw SCU of dcmtk.ts uses). */
export { parseCommand as parseResponse } from './dcmtk.js';

/** The PDVs of a P-DATA-TF body. */
export function pdvs(body: Buffer): Array<{ pcId: number; control: number; value: Buffer }> {
  const out: Array<{ pcId: number; control: number; value: Buffer }> = [];
  let pos = 0;
  while (pos + 6 <= body.length) {
    const len = body.readUInt32BE(pos);
    out.push({ pcId: body[pos + 4], control: body[pos + 5], value: body.subarray(pos + 6, pos + 4 + len) });
    pos += 4 + len;
  }
  return out;
}

/** The dataset PDUs of one C-STORE: the value split into `fragment`-byte PDVs, one PDV per PDU. */
export function datasetPdus(pcId: number, dataset: Buffer, fragment: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < dataset.length || off === 0; off += fragment) {
    const last = off + fragment >= dataset.length;
    out.push(pdataTf(pcId, last ? 0x02 : 0x00, dataset.subarray(off, off + fragment)));
    if (last) break;
  }
  return out;
}

/** A connection that reads PDUs as they come and lets the caller wait for the next one. */
export class AssocConnection {
  private acc: Buffer = Buffer.alloc(0);
  private readonly queue: Pdu[] = [];
  private readonly waiters: Array<() => void> = [];
  closed = false;
  /** The socket error that ended the connection, if any (e.g. a TLS handshake refused). */
  error: Error | undefined;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.acc = this.acc.length ? Buffer.concat([this.acc, d]) : d;
      while (this.acc.length >= 6 && this.acc.length >= 6 + this.acc.readUInt32BE(2)) {
        const len = this.acc.readUInt32BE(2);
        this.queue.push({ type: this.acc[0], body: Buffer.from(this.acc.subarray(6, 6 + len)) });
        this.acc = this.acc.subarray(6 + len);
      }
      this.wake();
    });
    const end = (err?: Error) => {
      if (err && !this.error) this.error = err;
      this.closed = true;
      this.wake();
    };
    socket.on('close', () => end());
    socket.on('error', (err) => end(err));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static open(o: { port: number; host?: string; tls?: ConnectionOptions; timeoutMs?: number }): Promise<AssocConnection> {
    return new Promise((resolve, reject) => {
      const host = o.host ?? '127.0.0.1';
      const socket = o.tls ? tlsConnect({ port: o.port, host, ...o.tls }) : netConnect({ port: o.port, host });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('connect timeout'));
      }, o.timeoutMs ?? 10_000);
      socket.once(o.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(new AssocConnection(socket));
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
    });
  }

  write(buf: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(buf);
  }

  /** The next PDU; 'closed' when the peer closed the connection, 'timeout' when nothing came in time. */
  async next(timeoutMs: number): Promise<Pdu | 'closed' | 'timeout'> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.queue.shift();
      if (p) return p;
      if (this.closed) return 'closed';
      const left = deadline - Date.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits for the peer to close (true) or the timeout (false). */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    for (;;) {
      const r = await this.next(timeoutMs);
      if (r === 'closed') return true;
      if (r === 'timeout') return false;
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
