import { createHash } from 'node:crypto';

/** RFC 4122 URL namespace; names are prefixed with `sax-range:` so they cannot collide with real URLs. */
const URL_NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

function uuidBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

/** RFC 4122 version-5 UUID (SHA-1 of namespace + name) as 16 bytes. */
export function uuidV5Bytes(name: string, namespace: string = URL_NAMESPACE): Buffer {
  const hash = createHash('sha1').update(uuidBytes(namespace)).update(Buffer.from(name, 'utf8')).digest();
  const out = Buffer.from(hash.subarray(0, 16));
  out[6] = (out[6] & 0x0f) | 0x50; // version 5
  out[8] = (out[8] & 0x3f) | 0x80; // RFC 4122 variant
  return out;
}

/**
 * A DICOM UID from a name: `2.25.` + the decimal value of the name's UUIDv5 (PS3.5 §B.2).
 * Deterministic: the same name always gives the same UID; at most 44 characters.
 */
export function uidFromName(name: string): string {
  const bytes = uuidV5Bytes(`sax-range:${name}`);
  return `2.25.${BigInt(`0x${bytes.toString('hex')}`).toString(10)}`;
}
