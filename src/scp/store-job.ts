/**
 * One C-STORE being received: the dataset streams into a temp file of the spool (Part 10 header first, then
 * every PDV value as it arrives), with the first bytes kept in memory for the header scan.
 *
 * I/O choices, measured on the receive path (see bench/ingest.ts): the temp file is opened ahead of time (a
 * spare, see TempFiles), and data is written with `writevSync` in batches of up to WRITE_BATCH bytes. A write
 * into the page cache takes tens of microseconds, while a round trip through libuv's thread pool costs
 * 0.1–0.2 ms per operation on a busy machine and sat on the critical path of every instance. The slow,
 * blocking part, fsync, stays asynchronous (Spool.commit).
 *
 * With the spool's journal (src/spool/journal.ts) a store starts in memory instead: small instances are kept
 * whole (up to `memoryLimit` bytes, 2 MiB by default) and committed from memory through the journal; one that
 * grows past the limit opens its temp file then, writes what it kept, and goes on as above.
 *
 * Nothing here throws into the network code: write errors and the size limit are recorded and reported when
 * the store is answered.
 */
import { read as fsRead } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { writeAll } from '../spool/write-all.js';

/** Bytes of the dataset kept in memory for the header scan (a classic MR header is a few KB). */
const HEAD_KEEP = 64 * 1024;
/** Queued bytes that trigger a write. */
const WRITE_BATCH = 256 * 1024;
/** Pause the socket when this much is queued (the file is not open yet); resume once written. */
const HIGH_WATER = 8 * 1024 * 1024;

export interface TempFile {
  path: string;
  handle: FileHandle;
}

/**
 * Temp files opened one ahead, so that opening is off the critical path of a store. `take()` hands out the
 * spare (or opens one) and starts opening the next.
 */
export class TempFiles {
  private spare: Promise<TempFile> | undefined;
  private closed = false;

  constructor(private readonly nextPath: () => string) {}

  take(): Promise<TempFile> {
    const t = this.spare ?? this.open();
    this.spare = this.closed ? undefined : this.open();
    // A failed spare is not an unhandled rejection; the store that takes it reports the error.
    this.spare?.catch(() => undefined);
    return t;
  }

  /** Opens the spare now (at listen time), so that the first store does not wait for it. */
  warm(): void {
    if (!this.spare && !this.closed) {
      this.spare = this.open();
      this.spare.catch(() => undefined);
    }
  }

  /** Closes and removes the spare. */
  async close(discard: (path: string) => Promise<void>): Promise<void> {
    this.closed = true;
    const s = this.spare;
    this.spare = undefined;
    if (!s) return;
    try {
      const t = await s;
      await t.handle.close().catch(() => undefined);
      await discard(t.path).catch(() => undefined);
    } catch {
      // never opened
    }
  }

  private async open(): Promise<TempFile> {
    const path = this.nextPath();
    return { path, handle: await open(path, 'w+', 0o640) };
  }
}

export interface StoreJobOptions {
  /** The temp file (usually a spare already open); undefined when the store is refused up front or kept in memory. */
  file: Promise<TempFile> | undefined;
  /** Keep the instance in memory while it is at most `memoryLimit` bytes; past that, open a temp file with this. */
  openFile?: () => Promise<TempFile>;
  memoryLimit?: number;
  header: Buffer;
  maxBytes: number;
  /** Flow control on the association's socket. */
  pause: () => void;
  resume: () => void;
  /** A store refused before any byte is written (e.g. the server is shutting down): data is drained. */
  refuse?: string;
}

export class StoreJob {
  readonly headerLength: number;
  /** Dataset bytes received so far. */
  received = 0;
  /** Set when opening or writing failed (ENOSPC, EIO…). */
  error: NodeJS.ErrnoException | undefined;
  /** Set when the instance exceeded maxBytes. */
  tooLarge = false;
  /** Set when the store was refused up front. */
  readonly refused: string | undefined;
  /** The association went away before the dataset was complete. */
  aborted = false;

  private path: string | undefined;
  private handle: FileHandle | undefined;
  private opening: boolean;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private ended = false;
  private paused = false;
  private head: Buffer[] = [];
  private headBytes = 0;
  private readonly maxBytes: number;
  /** The whole instance is in `queue` (no file yet): see the file comment. */
  private memory: boolean;
  private readonly memoryLimit: number;
  private readonly openFile: (() => Promise<TempFile>) | undefined;
  private readonly pause: () => void;
  private readonly resume: () => void;
  private doneResolve!: () => void;
  /** Resolves once the dataset is complete and every byte is written (or writing failed). Never rejects. */
  readonly done: Promise<void>;

  constructor(o: StoreJobOptions) {
    this.headerLength = o.header.length;
    this.maxBytes = o.maxBytes;
    this.pause = o.pause;
    this.resume = o.resume;
    this.refused = o.refuse;
    this.done = new Promise((r) => (this.doneResolve = r));
    this.openFile = o.openFile;
    this.memoryLimit = o.memoryLimit ?? 0;
    this.memory = !o.file && !o.refuse && this.openFile !== undefined && this.memoryLimit > 0;
    this.opening = o.file !== undefined;
    if (o.header.length > o.maxBytes) this.tooLarge = true;
    else if (!this.refused) this.enqueue(o.header);
    if (o.file) this.attach(o.file);
    else if (this.memory && o.header.length > this.memoryLimit) this.spill();
  }

  private attach(file: Promise<TempFile>): void {
    file.then(
      (f) => {
        this.opening = false;
        this.path = f.path;
        this.handle = f.handle;
        if (this.aborted || this.tooLarge || this.refused) this.dropQueue();
        else this.flush(!this.ended);
        this.checkDone();
      },
      (err: NodeJS.ErrnoException) => {
        this.opening = false;
        this.error = err;
        this.dropQueue();
        this.checkDone();
      },
    );
  }

  /** Past the memory limit: open the temp file; what was kept is written once it is open. */
  private spill(): void {
    this.memory = false;
    this.opening = true;
    this.attach(this.openFile!());
  }

  /** The instance is complete in memory (no temp file): commit it with `payload()`. */
  get inMemory(): boolean {
    return this.memory;
  }

  /** The whole file (Part 10 header and dataset) as kept in memory; only while `inMemory`. */
  payload(): { chunks: Buffer[]; bytes: number } {
    if (!this.memory) throw new Error('StoreJob.payload(): the instance is not in memory');
    return { chunks: this.queue, bytes: this.queuedBytes };
  }

  /** The temp file's path, once opened. */
  get tmpPath(): string | undefined {
    return this.path;
  }

  /** Whether a temp file exists (and so must be committed or discarded). */
  get hasFile(): boolean {
    return this.path !== undefined;
  }

  /** Hands the open handle over to Spool.commit (which syncs and closes it). */
  takeHandle(): FileHandle | undefined {
    const h = this.handle;
    this.handle = undefined;
    return h;
  }

  /** Total file size (header + dataset). */
  get fileBytes(): number {
    return this.headerLength + this.received;
  }

  /** Appends one PDV value. Called from the network code: never throws. */
  push(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.refused || this.error || this.tooLarge || this.aborted) return;
    if (this.headerLength + this.received > this.maxBytes) {
      this.tooLarge = true;
      this.dropQueue();
      this.head = [];
      return;
    }
    if (this.headBytes < HEAD_KEEP) {
      this.head.push(chunk);
      this.headBytes += chunk.length;
    }
    this.enqueue(chunk);
    if (this.memory) {
      if (this.queuedBytes > this.memoryLimit) this.spill();
      return;
    }
    if (this.queuedBytes >= WRITE_BATCH) this.flush(true);
  }

  /** The last fragment arrived. */
  end(): void {
    this.ended = true;
    if (!this.refused && !this.tooLarge && !this.aborted) this.flush(false);
    this.checkDone();
  }

  /**
   * The association is gone. A store still receiving stops writing and returns true: the caller discards its
   * file. A complete one (being validated or committed) is left to finish: false.
   */
  abort(): boolean {
    if (this.ended) return false;
    this.aborted = true;
    this.ended = true;
    this.dropQueue();
    this.checkDone();
    return true;
  }

  /** Dataset bytes kept in memory from the start. */
  get headLength(): number {
    return this.headBytes;
  }

  /**
   * The first dataset bytes kept in memory: at least `min` of them when kept (else all that are), copying only
   * when they span several chunks.
   */
  headBuffer(min = 0): Buffer {
    if (this.head.length === 0) return Buffer.alloc(0);
    let n = 0;
    let k = 0;
    while (k < this.head.length && (k === 0 || n < min)) n += this.head[k++].length;
    if (k === 1) return this.head[0];
    const merged = Buffer.concat(this.head.slice(0, k), n);
    this.head.splice(0, k, merged);
    return merged;
  }

  /** Reads `length` bytes at `position` of the dataset (not of the file) from the temp file. */
  readDataset(position: number, length: number): Promise<Buffer> {
    return this.readFile(this.headerLength + position, length);
  }

  /** Reads from the temp file, or from memory (after `done`, before the handle is handed over). */
  readFile(position: number, length: number): Promise<Buffer> {
    if (this.memory) return Promise.resolve(sliceChunks(this.queue, position, length));
    const fd = this.handle?.fd;
    return new Promise((resolve, reject) => {
      if (fd === undefined || fd < 0) return reject(new Error('temp file is not open'));
      const buf = Buffer.allocUnsafe(length);
      fsRead(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(buf.subarray(0, n))));
    });
  }

  /** Closes the handle if still ours (failure paths). */
  async closeQuietly(): Promise<void> {
    const h = this.takeHandle();
    if (h) await h.close().catch(() => undefined);
  }

  private enqueue(chunk: Buffer): void {
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (this.opening && this.queuedBytes > HIGH_WATER && !this.paused) {
      this.paused = true;
      this.pause();
    }
  }

  private dropQueue(): void {
    this.queue = [];
    this.queuedBytes = 0;
    this.unpause();
  }

  private unpause(): void {
    if (this.paused) {
      this.paused = false;
      this.resume();
    }
  }

  /** Writes the queue (synchronously, see the file comment). `onlyIfBig`: wait for a full batch. */
  private flush(onlyIfBig: boolean): void {
    const fd = this.handle?.fd;
    if (fd === undefined || this.queue.length === 0 || this.error) return;
    if (onlyIfBig && this.queuedBytes < WRITE_BATCH) return;
    const batch = this.queue;
    const bytes = this.queuedBytes;
    this.queue = [];
    this.queuedBytes = 0;
    try {
      writeAll(fd, batch, bytes);
    } catch (err) {
      this.error = err as NodeJS.ErrnoException;
      this.head = [];
    }
    this.unpause();
  }

  private checkDone(): void {
    if (this.ended && !this.opening) this.doneResolve();
  }
}

/** `length` bytes from `position` of the concatenation of `chunks` (fewer at the end), copying only across chunks. */
function sliceChunks(chunks: readonly Buffer[], position: number, length: number): Buffer {
  let i = 0;
  while (i < chunks.length && position >= chunks[i]!.length) position -= chunks[i++]!.length;
  if (i < chunks.length && position + length <= chunks[i]!.length) return chunks[i]!.subarray(position, position + length);
  const parts: Buffer[] = [];
  let n = 0;
  for (; i < chunks.length && n < length; i++, position = 0) {
    const part = chunks[i]!.subarray(position, position + (length - n));
    parts.push(part);
    n += part.length;
  }
  return Buffer.concat(parts, n);
}

/**
 * The object dcmjs-dimse's stock path writes PDV values into (its createStoreWritableStream contract uses only
 * write, once and end). write() always returns true: flow control is on the socket.
 */
export class JobSink {
  constructor(readonly job: StoreJob) {}
  write(chunk: Buffer): boolean {
    this.job.push(chunk);
    return true;
  }
  end(): this {
    this.job.end();
    return this;
  }
  once(): this {
    return this;
  }
  on(): this {
    return this;
  }
}
