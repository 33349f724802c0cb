/**
 * The spool's write-ahead journal: what lets the SCP answer Success after one cheap sync instead of three.
 *
 * Making a freshly written file durable under its final name costs an fdatasync of the new file (block
 * allocation, an ext4 journal commit) plus an fsync of its folder after the rename: 0.9–1.3 ms per instance on
 * the development VM. Overwriting blocks that already exist in a preallocated file and syncing that costs
 * 0.2–0.3 ms (bench/ingest.ts prints both). So a small instance is first appended, whole, as one record to a
 * preallocated segment file and that file is fdatasynced (one sync serves every commit that arrived while it
 * ran: group commit); the instance is durable from then on. Its file in the spool is written and renamed
 * without syncing. Later a checkpoint makes those spool files durable in one go (`sync --file-system`, i.e.
 * syncfs(2); per-file fsync where that is missing) and recycles the segment. After a crash, `open()` hands every
 * record of the segments not yet checkpointed back to the owner (`replay`), in the order they were written, so
 * the last copy of a key wins as it did before the crash.
 *
 * Segment file: a 4096-byte header (magic, segment id, CRC) and records from offset 4096, each 8-byte aligned:
 *
 *   0  u32 magic 'SXJR'   4  u32 CRC-32 of bytes 8..48 and the key   8  u64 segment id   16  u64 sequence
 *   24 u64 payload bytes   32  u32 payload CRC-32   36  u16 key bytes   38  u16 flags   40..48 reserved (0)
 *   48 key   payload
 *
 * Flag 1 (abort): the record cancels an earlier one (its payload: that record's sequence number), written when
 * the owner could not finish its copy and refused the instance.
 *
 * A record counts only if its magic, segment id and both CRCs check; the scan of a segment stops at the first
 * that does not (the unused, zero-filled tail; a torn last write; or records left from the segment's previous
 * life, which carry an older id). A checkpointed segment's header is zeroed (nothing in it is replayed); it
 * gets a new id, larger than any before, when it becomes the active segment again, so replaying segments in
 * id order replays records in the order they were written.
 *
 * The journal knows nothing of DICOM: keys are opaque strings, `persist` and `replay` belong to the owner
 * (Spool). One process owns a journal folder.
 */
import { execFile } from 'node:child_process';
import { closeSync, fdatasync, fdatasyncSync, fstatSync, openSync, readSync, readdirSync, unlinkSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { writeAll } from './write-all.js';

const SEGMENT_MAGIC = Buffer.from('SAXJSEG1', 'latin1');
const RECORD_MAGIC = 0x524a5853; // 'SXJR' read as little-endian u32
const SEGMENT_HEADER = 4096;
const RECORD_HEADER = 48;
/** Record flag: this record cancels the record whose sequence number is its 8-byte payload. */
const FLAG_ABORT = 1;
const ZERO_CHUNK = 1 << 20;
/** After a failed segment creation (no space), how long appends go without the journal before the next try. */
const RETRY_MS = 10_000;

export interface JournalOptions {
  dir: string;
  /** Size of each segment file (preallocated, zero-filled). */
  segmentBytes: number;
  /** Makes the owner's copies of these keys durable (called before a segment holding them is recycled). */
  persist: (keys: string[]) => Promise<void>;
  /** A record found at open() in a segment that was never checkpointed: the owner writes its copy again. */
  replay: (key: string, payload: Buffer) => void | Promise<void>;
  /** Checkpoint the active segment after this long without appends (keeps recovery short). */
  idleCheckpointMs?: number;
  /** Told about checkpoint failures (the segment stays; the next checkpoint retries it). */
  onError?: (err: Error, what: string) => void;
}

/** What an append returns: wait for `durable`, then finish the owner's copy, then call `release()`. */
export interface JournalTicket {
  durable: Promise<void>;
  /** The owner's copy is written (or given up): the record's segment may be checkpointed. Call once. */
  release(): void;
  /** The owner refuses the instance after all: an abort record cancels the record for replay; releases. */
  abort(): void;
}

export class JournalError extends Error {
  constructor(message: string, readonly code = 'EJOURNAL') {
    super(message);
    this.name = 'JournalError';
  }
}

interface Segment {
  file: string;
  fd: number;
  id: bigint;
  /** Next write offset. */
  pos: number;
  /** Records appended and records known durable. */
  appended: number;
  synced: number;
  syncing: Promise<void> | undefined;
  /** Tickets not released yet (owner copies still being written). */
  open: number;
  drained: (() => void) | undefined;
  keys: string[];
}

/** Largest record payload plus key a segment of `segmentBytes` takes (a quarter of it: segments do not fill up with one instance). */
export function maxRecordBytes(segmentBytes: number): number {
  return Math.floor((segmentBytes - SEGMENT_HEADER) / 4) - RECORD_HEADER - 256;
}

export class SpoolJournal {
  private readonly opts: Required<Omit<JournalOptions, 'onError'>> & Pick<JournalOptions, 'onError'>;
  private active: Segment | undefined;
  /** Recycled segments, oldest id first (activation order = id order). */
  private readonly free: Segment[] = [];
  /** Segments waiting for or in a checkpoint. */
  private readonly retiring = new Set<Segment>();
  private checkpointChain: Promise<void> = Promise.resolve();
  private spare: Promise<Segment> | undefined;
  private nextId = 1n;
  private nextFileNo = 0;
  private seq = 0n;
  private idleTimer: NodeJS.Timeout | undefined;
  private failed: Error | undefined;
  private activating = false;
  private lastCreateFailure = 0;
  private closed = false;
  private closing = false;
  readonly maxRecord: number;
  /** Counters for logs and tests. */
  readonly stats = { appended: 0, syncs: 0, checkpoints: 0, replayed: 0 };

  constructor(opts: JournalOptions) {
    if (opts.segmentBytes < 1 << 20) throw new RangeError('journal segments must be at least 1 MiB');
    this.opts = { ...opts, idleCheckpointMs: opts.idleCheckpointMs ?? 1000 };
    this.maxRecord = maxRecordBytes(opts.segmentBytes);
  }

  /**
   * Opens the folder: replays (in write order) every record of the segments that were never checkpointed,
   * persists the owner's copies, recycles those segments, and makes one segment active. Returns the number of
   * records replayed.
   */
  async open(): Promise<number> {
    await mkdir(this.opts.dir, { recursive: true });
    const found: Segment[] = [];
    for (const name of readdirSync(this.opts.dir).sort()) {
      const m = /^segment-(\d+)\.wal$/.exec(name);
      if (!m) continue;
      this.nextFileNo = Math.max(this.nextFileNo, Number(m[1]) + 1);
      const file = join(this.opts.dir, name);
      const fd = openSync(file, 'r+');
      found.push(newSegment(file, fd, readSegmentId(fd)));
    }
    const valid = found.filter((s) => s.id > 0n).sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const s of found) if (s.id >= this.nextId) this.nextId = s.id + 1n;
    // Two passes: the aborts first (an abort may sit in a later segment than its record), then the records.
    const aborted = new Set<bigint>();
    for (const s of valid) for (const rec of scanSegment(s)) if (rec.flags & FLAG_ABORT) aborted.add(rec.payload.readBigUInt64LE(0));
    let replayed = 0;
    const keys: string[] = [];
    for (const s of valid) {
      for (const rec of scanSegment(s)) {
        if (rec.flags & FLAG_ABORT || aborted.has(rec.seq)) continue;
        await this.opts.replay(rec.key, rec.payload);
        keys.push(rec.key);
        replayed++;
      }
    }
    if (replayed > 0) await this.opts.persist(keys);
    // Every segment found is now free: recycle (new ids, in file order) and keep the ones of the right size.
    for (const s of found) {
      if (sizeOf(s.fd) !== this.opts.segmentBytes) {
        // Another segment size (the setting changed): replayed above, not reused.
        closeSync(s.fd);
        unlinkSync(s.file);
        continue;
      }
      await this.recycle(s);
    }
    this.stats.replayed = replayed;
    const first = this.free.shift();
    if (first) this.activate(first);
    else {
      try {
        this.activate(await this.createSegment());
      } catch (err) {
        // No room for a segment (a small disk): the owner commits without the journal until one can be made.
        this.lastCreateFailure = Date.now();
        this.opts.onError?.(err as Error, 'cannot create a journal segment; commits sync their own files until one can be made');
      }
    }
    this.prepareSpare();
    return replayed;
  }

  /**
   * Appends one record (synchronously, into the page cache) and starts making it durable. Throws a
   * JournalError when the journal is closed or failed, or the record is too large (`maxRecord`).
   */
  append(key: string, chunks: readonly Buffer[], bytes: number): JournalTicket {
    const { seg, seq } = this.writeRecord(key, chunks, bytes, 0);
    const n = seg.appended;
    seg.open++;
    this.stats.appended++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--seg.open === 0) seg.drained?.();
    };
    return {
      durable: this.syncTo(seg, n),
      release,
      abort: () => {
        if (released) return;
        try {
          // Not waited for: if it is lost in a crash the record is replayed, which is harmless (docs/ingest.md).
          const seqBuf = Buffer.alloc(8);
          seqBuf.writeBigUInt64LE(seq);
          this.writeRecord(key, [seqBuf], 8, FLAG_ABORT);
        } catch {
          // journal closed or failed: nothing more to do
        }
        release();
      },
    };
  }

  /** Writes one record into the active segment (rotating first when it does not fit). */
  private writeRecord(key: string, chunks: readonly Buffer[], bytes: number, flags: number): { seg: Segment; seq: bigint } {
    if (this.failed) throw new JournalError(`journal unusable after an I/O error: ${this.failed.message}`, 'EIO');
    if (this.closed || this.closing) throw new JournalError('journal is closed');
    const keyBuf = Buffer.from(key, 'utf8');
    if (keyBuf.length > 0xffff) throw new JournalError('journal key too long');
    if (bytes + keyBuf.length > this.maxRecord) throw new JournalError(`record of ${bytes} bytes exceeds the journal's ${this.maxRecord}`);
    const recLen = align8(RECORD_HEADER + keyBuf.length + bytes);
    if (this.active && this.active.pos + recLen > this.opts.segmentBytes) this.rotate();
    const seg = this.active;
    if (!seg) {
      this.retrySegment();
      throw new JournalError('journal has no segment (still preparing one)', 'EAGAIN');
    }

    let payloadCrc = 0;
    for (const c of chunks) payloadCrc = crc32(c, payloadCrc);
    const seq = ++this.seq;
    const h = Buffer.alloc(RECORD_HEADER);
    h.writeUInt32LE(RECORD_MAGIC, 0);
    h.writeBigUInt64LE(seg.id, 8);
    h.writeBigUInt64LE(seq, 16);
    h.writeBigUInt64LE(BigInt(bytes), 24);
    h.writeUInt32LE(payloadCrc >>> 0, 32);
    h.writeUInt16LE(keyBuf.length, 36);
    h.writeUInt16LE(flags, 38);
    h.writeUInt32LE(crc32(keyBuf, crc32(h.subarray(8))) >>> 0, 4);
    const pad = recLen - RECORD_HEADER - keyBuf.length - bytes;
    const bufs = [h, keyBuf, ...chunks];
    if (pad > 0) bufs.push(Buffer.alloc(pad));
    try {
      writeAll(seg.fd, bufs, recLen, seg.pos);
    } catch (err) {
      this.fail(err as Error);
      throw new JournalError(`cannot write the journal: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, (err as NodeJS.ErrnoException).code);
    }
    seg.pos += recLen;
    seg.appended++;
    if (flags === 0) seg.keys.push(key);
    this.armIdle();
    return { seg, seq };
  }

  /** Checkpoints everything written so far (the active segment too). Resolves when done. */
  async checkpoint(): Promise<void> {
    if (this.active && this.active.appended > 0) this.rotate(!this.closing);
    await this.checkpointChain;
  }

  /** Final checkpoint, then closes every segment file. Appends are refused from the first call on. */
  async close(): Promise<void> {
    if (this.closed || this.closing) return;
    this.closing = true;
    clearTimeout(this.idleTimer);
    try {
      await this.checkpoint();
    } finally {
      this.closed = true;
      // A spare being made is closed by its own handler once made (closed is set).
      await this.spare?.catch(() => undefined);
      for (const s of new Set([this.active, ...this.free, ...this.retiring])) if (s) closeQuietly(s.fd);
      this.active = undefined;
      this.free.length = 0;
    }
  }

  // -----------------------------------------------------------------------------------------------------

  private syncTo(seg: Segment, n: number): Promise<void> {
    const run = async (): Promise<void> => {
      while (seg.synced < n) {
        if (this.failed) throw new JournalError(`journal unusable after an I/O error: ${this.failed.message}`, 'EIO');
        if (!seg.syncing) {
          const upTo = seg.appended;
          seg.syncing = new Promise<void>((resolve, reject) => {
            fdatasync(seg.fd, (err) => {
              seg.syncing = undefined;
              if (err) {
                this.fail(err);
                reject(new JournalError(`cannot sync the journal: ${err.code ?? err.message}`, err.code));
                return;
              }
              this.stats.syncs++;
              if (upTo > seg.synced) seg.synced = upTo;
              resolve();
            });
          });
        }
        await seg.syncing;
      }
    };
    return run();
  }

  /** The active segment goes to the checkpoint; a free one (or the spare, once made) becomes active. */
  private rotate(replace = true): void {
    const old = this.active;
    if (!old) return;
    this.active = undefined;
    const next = replace ? this.free.shift() : undefined;
    if (next) {
      this.activate(next);
      this.prepareSpare();
    } else if (replace) this.takeSpareLater();
    this.retire(old);
  }

  /**
   * No free segment at hand: until the spare exists appends throw EAGAIN (the owner commits without the
   * journal meanwhile); it is made now, or taken when already being made.
   */
  private takeSpareLater(): void {
    const spare = this.spare ?? this.createSegment();
    this.spare = undefined;
    this.activating = true;
    void spare
      .then(
        (s) => {
          if (this.closed || this.closing) return closeQuietly(s.fd);
          if (this.active) this.free.push(s);
          else this.activate(s);
          this.prepareSpare();
        },
        (err: Error) => {
          this.lastCreateFailure = Date.now();
          this.opts.onError?.(err, 'cannot create a journal segment; commits sync their own files until one can be made');
        },
      )
      .finally(() => (this.activating = false));
  }

  /** Without an active segment: try to make one again, at most every RETRY_MS after a failure. */
  private retrySegment(): void {
    if (this.activating || this.closed || this.closing) return;
    if (Date.now() - this.lastCreateFailure < RETRY_MS) return;
    this.takeSpareLater();
  }

  private prepareSpare(): void {
    if (this.spare || this.free.length > 0 || this.closed) return;
    this.spare = this.createSegment();
    const spare = this.spare;
    // Handled here only while still the spare: takeSpareLater() may take it over (and then handles it).
    spare.then(
      (s) => {
        if (this.spare !== spare) return;
        this.spare = undefined;
        if (this.closed) return closeQuietly(s.fd);
        this.free.push(s);
      },
      (err: Error) => {
        if (this.spare !== spare) return;
        this.spare = undefined;
        this.lastCreateFailure = Date.now();
        this.opts.onError?.(err, 'cannot create a spare journal segment');
      },
    );
  }

  private retire(seg: Segment): void {
    this.retiring.add(seg);
    this.checkpointChain = this.checkpointChain.then(async () => {
      try {
        await this.syncTo(seg, seg.appended);
        if (seg.open > 0) await new Promise<void>((r) => (seg.drained = r));
        if (seg.keys.length > 0) await this.opts.persist(seg.keys);
        this.stats.checkpoints++;
        this.retiring.delete(seg);
        await this.recycle(seg);
      } catch (err) {
        // The segment's records stay replayable: it is neither recycled nor reused. Retried at close/next start.
        this.opts.onError?.(err as Error, 'journal checkpoint failed');
      }
    });
  }

  /** Invalidates a segment's header (its records are never replayed again) and puts it on the free list. */
  private async recycle(seg: Segment): Promise<void> {
    const fh = await open(seg.file, 'r+');
    try {
      await fh.write(Buffer.alloc(SEGMENT_HEADER), 0, SEGMENT_HEADER, 0);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    Object.assign(seg, { id: 0n, pos: SEGMENT_HEADER, appended: 0, synced: 0, syncing: undefined, open: 0, drained: undefined, keys: [] });
    if (this.closed) closeQuietly(seg.fd);
    else this.free.push(seg);
  }

  /**
   * Makes a free segment the active one under a new id, written and synced before any record: ids are given in
   * activation order, which is the order records are written in, whatever order segments were made or freed.
   */
  private activate(seg: Segment): void {
    const id = this.nextId++;
    const h = segmentHeader(id);
    writeAll(seg.fd, [h], h.length, 0);
    fdatasyncSync(seg.fd);
    Object.assign(seg, { id, pos: SEGMENT_HEADER, appended: 0, synced: 0, syncing: undefined, open: 0, drained: undefined, keys: [] });
    this.active = seg;
  }

  /** A new zero-filled segment file, without a valid header (free until activated). */
  private async createSegment(): Promise<Segment> {
    const file = join(this.opts.dir, `segment-${this.nextFileNo++}.wal`);
    const fh = await open(file, 'w+', 0o640);
    try {
      // Zero-filled, not sparse: overwriting allocated blocks is what makes the per-commit sync cheap.
      const zeros = Buffer.alloc(Math.min(ZERO_CHUNK, this.opts.segmentBytes));
      for (let off = 0; off < this.opts.segmentBytes; off += zeros.length) {
        await fh.write(zeros, 0, Math.min(zeros.length, this.opts.segmentBytes - off), off);
      }
      await fh.sync();
    } catch (err) {
      // ENOSPC midway: no partial segment stays behind taking the space.
      await fh.close().catch(() => undefined);
      await rm(file, { force: true });
      throw err;
    }
    await fh.close();
    const dh = await open(this.opts.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
    return newSegment(file, openSync(file, 'r+'), 0n);
  }

  private armIdle(): void {
    if (this.opts.idleCheckpointMs <= 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (!this.closed && !this.closing && this.active && this.active.appended > 0) this.rotate();
    }, this.opts.idleCheckpointMs);
    this.idleTimer.unref();
  }

  private fail(err: Error): void {
    if (!this.failed) {
      this.failed = err;
      this.opts.onError?.(err, 'journal I/O error: commits go without the journal until the next start');
    }
  }
}

/**
 * Makes files durable after they were written without syncing: syncfs(2) on their file system through
 * coreutils `sync --file-system` (one call, whatever the number of files), or, where that fails, fdatasync of
 * every file and fsync of every folder named.
 */
export async function syncFiles(anyPathOnFs: string, files: readonly string[], dirs: readonly string[]): Promise<void> {
  const viaSyncfs = await new Promise<boolean>((resolve) => {
    execFile('sync', ['--file-system', anyPathOnFs], { timeout: 120_000 }, (err) => resolve(!err));
  });
  if (viaSyncfs) return;
  for (const f of files) await syncOne(f, 'data');
  for (const d of dirs) await syncOne(d, 'full');
}

/** fdatasync (`data`) or fsync (`full`) of one path; a path gone since (replaced, removed) is skipped. */
async function syncOne(path: string, how: 'data' | 'full'): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    await (how === 'data' ? fh.datasync() : fh.sync());
  } finally {
    await fh.close();
  }
}

function newSegment(file: string, fd: number, id: bigint): Segment {
  return { file, fd, id, pos: SEGMENT_HEADER, appended: 0, synced: 0, syncing: undefined, open: 0, drained: undefined, keys: [] };
}

function segmentHeader(id: bigint): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeBigUInt64LE(id, 8);
  b.writeUInt32LE(crc32(b.subarray(0, 16)) >>> 0, 16);
  return b;
}

/** The segment's id, or 0 when its header is not valid (a file never finished: treated as free). */
function readSegmentId(fd: number): bigint {
  const b = Buffer.alloc(20);
  if (readSync(fd, b, 0, 20, 0) < 20) return 0n;
  if (!b.subarray(0, 8).equals(SEGMENT_MAGIC)) return 0n;
  if (b.readUInt32LE(16) !== crc32(b.subarray(0, 16)) >>> 0) return 0n;
  return b.readBigUInt64LE(8);
}

function* scanSegment(seg: Segment): Generator<{ key: string; payload: Buffer; seq: bigint; flags: number }> {
  const size = sizeOf(seg.fd);
  let pos = SEGMENT_HEADER;
  const h = Buffer.alloc(RECORD_HEADER);
  while (pos + RECORD_HEADER <= size) {
    if (readSync(seg.fd, h, 0, RECORD_HEADER, pos) < RECORD_HEADER) return;
    if (h.readUInt32LE(0) !== RECORD_MAGIC || h.readBigUInt64LE(8) !== seg.id) return;
    const bytes = Number(h.readBigUInt64LE(24));
    const keyLen = h.readUInt16LE(36);
    const recLen = align8(RECORD_HEADER + keyLen + bytes);
    if (pos + recLen > size) return;
    const keyBuf = Buffer.alloc(keyLen);
    readSync(seg.fd, keyBuf, 0, keyLen, pos + RECORD_HEADER);
    if (h.readUInt32LE(4) !== crc32(keyBuf, crc32(h.subarray(8))) >>> 0) return;
    const payload = Buffer.alloc(bytes);
    if (bytes > 0 && readSync(seg.fd, payload, 0, bytes, pos + RECORD_HEADER + keyLen) < bytes) return;
    if (h.readUInt32LE(32) !== crc32(payload) >>> 0) return;
    yield { key: keyBuf.toString('utf8'), payload, seq: h.readBigUInt64LE(16), flags: h.readUInt16LE(38) };
    pos += recLen;
  }
}

function sizeOf(fd: number): number {
  return fstatSync(fd).size;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}


function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
