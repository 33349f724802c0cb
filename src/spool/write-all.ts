import { writevSync } from 'node:fs';

/**
 * Writes every byte of `bufs` (`total` bytes) with writev, at `position` or at the file's offset, looping over
 * short writes (writev may write less than asked and takes at most IOV_MAX buffers). Throws on errors.
 */
export function writeAll(fd: number, bufs: readonly Buffer[], total: number, position?: number): void {
  let written = 0;
  let rest = bufs;
  while (written < total) {
    const batch = rest.length > 1024 ? rest.slice(0, 1024) : rest;
    const n = position === undefined ? writevSync(fd, batch) : writevSync(fd, batch, position + written);
    if (n <= 0) throw Object.assign(new Error('write returned 0'), { code: 'EIO' });
    written += n;
    rest = skipBytes(rest, n);
  }
}

/** The buffers after the first `n` bytes. */
function skipBytes(bufs: readonly Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i]!.length) n -= bufs[i++]!.length;
  const rest = bufs.slice(i);
  if (n > 0 && rest.length) rest[0] = rest[0]!.subarray(n);
  return rest;
}
