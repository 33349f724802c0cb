/**
 * The Part 10 file header the SCP writes in front of a received dataset: 128-byte preamble, "DICM", and the
 * File Meta Information group (always Explicit VR Little Endian). The dataset that follows is written exactly
 * as it arrived, in the negotiated transfer syntax.
 */

/** sax-range's Implementation Class UID (2.25 + UUID, fixed), written in every file the SCP stores. */
export const IMPLEMENTATION_CLASS_UID = '2.25.198447210361384262853326431346624624181';
export const IMPLEMENTATION_VERSION_NAME = 'SAXRANGE';

export interface FileMetaFields {
  sopClassUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  /** The calling AE title (Source Application Entity Title, 0002,0016). */
  sourceAE?: string;
}

function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const long = vr === 'OB';
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elem, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}

/** UI values are padded with a NUL, text values with a space, to an even length. */
function padded(s: string, pad: number): Buffer {
  const b = Buffer.from(s, 'latin1');
  return b.length % 2 ? Buffer.concat([b, Buffer.from([pad])]) : b;
}

/** Preamble + "DICM" + group 0002. */
export function buildFileMetaHeader(f: FileMetaFields): Buffer {
  const body = [
    element(0x0002, 0x0001, 'OB', Buffer.from([0x00, 0x01])),
    element(0x0002, 0x0002, 'UI', padded(f.sopClassUID, 0)),
    element(0x0002, 0x0003, 'UI', padded(f.sopInstanceUID, 0)),
    element(0x0002, 0x0010, 'UI', padded(f.transferSyntaxUID, 0)),
    element(0x0002, 0x0012, 'UI', padded(IMPLEMENTATION_CLASS_UID, 0)),
    element(0x0002, 0x0013, 'SH', padded(IMPLEMENTATION_VERSION_NAME, 0x20)),
  ];
  const ae = f.sourceAE?.trim();
  if (ae) body.push(element(0x0002, 0x0016, 'AE', padded(ae.slice(0, 16), 0x20)));
  const groupBody = Buffer.concat(body);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(groupBody.length, 0);
  const preamble = Buffer.alloc(132);
  preamble.write('DICM', 128, 'latin1');
  return Buffer.concat([preamble, element(0x0002, 0x0000, 'UL', groupLength), groupBody]);
}
