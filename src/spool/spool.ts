import { randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { JournalError, SpoolJournal, syncFiles } from './journal.js';
import { writeAll } from './write-all.js';

const UID_RE = /^[0-9.]{1,64}$/;

/**
 * The durable spool of received instances, on a local disk or a volume shared by SCP and workers.
 *
 * Layout: `<root>/tmp/` for files being received, `<root>/studies/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`
 * for committed instances. A commit is: the temp file is fsynced, renamed over the final name (a repeated
 * SOP Instance UID replaces the old copy), and the directory is fsynced. Only then is Success answered.
 *
 * With the journal (`journalSegmentBytes` > 0; `<root>/journal/`, src/spool/journal.ts) an instance held in
 * memory is committed by `commitBuffers` instead: the instance is appended to the journal, which is synced (the
 * durability point) while its file is written to tmp/ without a sync; the file is renamed into place once the
 * sync returned and made durable itself by the next checkpoint. On start (`init`) records of the journal not yet checkpointed are written
 * into the spool again. One SCP process owns a spool's tmp/ and journal/.
 */
export interface SpoolOptions {
  /** Size of a journal segment in bytes; 0 = no journal (every commit syncs its own file). */
  journalSegmentBytes?: number;
  /** Largest instance committed through the journal (bounded by the segment size too). */
  journalMaxInstanceBytes?: number;
  /** Checkpoint the journal after this long without commits (default 1000 ms; 0 = only when a segment fills). */
  journalIdleCheckpointMs?: number;
  /** Told about every commit and how it was made durable (metrics). */
  onCommit?: (path: 'journal' | 'classic') => void;
  /** Told about checkpoint and journal I/O failures. */
  onJournalError?: (err: Error, what: string) => void;
}

export class Spool {
  readonly tmpDir: string;
  readonly studiesDir: string;
  /** Series folders known to exist and be durable: no mkdir and no parent fsync on the next commit. */
  private readonly knownDirs = new Set<string>();
  /** Series folders known to exist (durable or not): no mkdir on the next journalled commit. */
  private readonly madeDirs = new Set<string>();
  /** Open handles of recently used series folders, for the directory fsync after each rename (LRU). */
  private readonly dirHandles = new Map<string, Promise<FileHandle>>();
  private static readonly MAX_DIR_HANDLES = 64;

  private journal: SpoolJournal | undefined;
  /** Instances replayed from the journal by the last init(). */
  replayed = 0;

  constructor(
    readonly root: string,
    private readonly opts: SpoolOptions = {},
  ) {
    this.tmpDir = join(root, 'tmp');
    this.studiesDir = join(root, 'studies');
  }

  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.studiesDir, { recursive: true });
    // Anything left in tmp/ was never acknowledged (or is in the journal): a crash mid-transfer. Remove it.
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
    if ((this.opts.journalSegmentBytes ?? 0) > 0) {
      const journal = new SpoolJournal({
        dir: join(this.root, 'journal'),
        segmentBytes: this.opts.journalSegmentBytes!,
        persist: (keys) => this.persist(keys),
        replay: (key, payload) => this.writeUnsynced(this.keyPath(key), [payload], payload.length),
        idleCheckpointMs: this.opts.journalIdleCheckpointMs,
        onError: this.opts.onJournalError,
      });
      this.replayed = await journal.open();
      this.journal = journal;
    }
  }

  /**
   * Instances up to this size are kept in memory by the SCP and committed with `commitBuffers`; 0 without a
   * journal.
   */
  get journalInstanceLimit(): number {
    if (!this.journal) return 0;
    return Math.min(this.journal.maxRecord - 256, this.opts.journalMaxInstanceBytes ?? 2 * 1024 * 1024);
  }

  /** Journal counters (appends, syncs, checkpoints, replayed), when there is a journal. */
  get journalStats(): SpoolJournal['stats'] | undefined {
    return this.journal?.stats;
  }

  /**
   * Commits an instance held in memory (the whole Part 10 file as `chunks`): durable once this resolves.
   * Through the journal when there is one and the instance fits, else by the classic commit.
   */
  async commitBuffers(ids: InstanceIds, chunks: readonly Buffer[], bytes: number): Promise<string> {
    const finalPath = this.instancePath(ids.studyInstanceUID, ids.seriesInstanceUID, ids.sopInstanceUID);
    const tmp = this.tmpPath();
    let ticket: ReturnType<SpoolJournal['append']> | undefined;
    try {
      try {
        if (bytes <= this.journalInstanceLimit) ticket = this.journal?.append(this.keyOf(ids), chunks, bytes);
      } catch (err) {
        if (!(err instanceof JournalError)) throw err;
        // Too large, closing, no segment ready yet, or the journal failed an I/O (logged once through
        // onJournalError): the classic commit is as durable, only slower, and reports its own errors.
      }
      // With a record, the file is written while the journal syncs (measured faster than writing it first:
      // BENCHMARKS.md); when it cannot be written (ENOSPC) the record is cancelled by an abort record, so that a
      // refused instance does not come back at the next start.
      try {
        this.writeUnsynced(tmp, chunks, bytes, false);
      } catch (err) {
        ticket?.abort();
        throw err;
      }
      if (!ticket) return await this.commit(tmp, ids);
      // Renamed into place once the record is durable: a crash before that leaves nothing in studies/ that the
      // sender was not told about.
      await ticket.durable;
      this.renameIntoPlace(tmp, finalPath);
      this.opts.onCommit?.('journal');
      return finalPath;
    } catch (err) {
      await this.discard(tmp).catch(() => undefined);
      throw err;
    } finally {
      ticket?.release();
    }
  }

  /** Makes every journalled instance's file durable and recycles the journal (tests, shutdown). */
  async checkpoint(): Promise<void> {
    await this.journal?.checkpoint();
  }

  private keyOf(ids: InstanceIds): string {
    return `${ids.studyInstanceUID}/${ids.seriesInstanceUID}/${ids.sopInstanceUID}.dcm`;
  }

  /** The final path of a journal key (validated: a key is only ever made by keyOf). */
  private keyPath(key: string): string {
    const m = /^([0-9.]+)\/([0-9.]+)\/([0-9.]+)\.dcm$/.exec(key);
    if (!m) throw new Error(`journal key is not an instance path: ${key.slice(0, 200)}`);
    return this.instancePath(m[1]!, m[2]!, m[3]!);
  }

  /**
   * Writes a file without syncing: into `path` through a temp file and a rename (`viaTmp`, the replay), or
   * straight into `path` (a temp file already). Creates the folder when missing.
   */
  private writeUnsynced(path: string, chunks: readonly Buffer[], bytes: number, viaTmp = true): void {
    const target = viaTmp ? this.tmpPath() : path;
    const fd = openSync(target, 'w', 0o640);
    try {
      writeAll(fd, chunks, bytes);
    } finally {
      closeSync(fd);
    }
    if (viaTmp) this.renameIntoPlace(target, path);
  }

  private renameIntoPlace(tmp: string, finalPath: string): void {
    const dir = dirname(finalPath);
    if (!this.madeDirs.has(dir)) {
      mkdirSync(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    try {
      renameSync(tmp, finalPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The folder went away since we cached it: make it again.
      this.forgetDir(dir);
      mkdirSync(dir, { recursive: true });
      renameSync(tmp, finalPath);
    }
  }

  /** Checkpoint: the files of these keys, their folders and the folders above are made durable. */
  private async persist(keys: readonly string[]): Promise<void> {
    const files = [...new Set(keys)].map((k) => this.keyPath(k));
    const dirs = new Set<string>();
    for (const f of files) {
      const series = dirname(f);
      dirs.add(series);
      dirs.add(dirname(series));
    }
    dirs.add(this.studiesDir);
    await syncFiles(this.root, files, [...dirs]);
  }

  /** A fresh temp file path inside the spool (same filesystem as the final location, so rename is atomic). */
  tmpPath(): string {
    return join(this.tmpDir, `${randomUUID()}.part`);
  }

  studyDir(studyUID: string): string {
    assertUid(studyUID, 'StudyInstanceUID');
    return join(this.studiesDir, studyUID);
  }

  instancePath(studyUID: string, seriesUID: string, sopUID: string): string {
    assertUid(seriesUID, 'SeriesInstanceUID');
    assertUid(sopUID, 'SOPInstanceUID');
    return join(this.studyDir(studyUID), seriesUID, `${sopUID}.dcm`);
  }

  /**
   * Makes a fully written temp file durable under its final name. `handle` may be the still-open handle of the
   * temp file (it is fsynced and closed here); returns the final path.
   */
  async commit(tmpPath: string, ids: InstanceIds, handle?: FileHandle): Promise<string> {
    const finalPath = this.instancePath(ids.studyInstanceUID, ids.seriesInstanceUID, ids.sopInstanceUID);
    const seriesDir = join(this.studyDir(ids.studyInstanceUID), ids.seriesInstanceUID);
    const fh = handle ?? (await open(tmpPath, 'r+'));
    try {
      // fdatasync: the data and the metadata needed to read it back (size); the name is made durable below.
      await fh.datasync();
    } finally {
      await fh.close();
    }
    if (!this.knownDirs.has(seriesDir)) await this.ensureDir(ids.studyInstanceUID, seriesDir);
    try {
      await rename(tmpPath, finalPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The folder went away since we cached it (a study removed from the spool): make it again.
      this.forgetDir(seriesDir);
      await this.ensureDir(ids.studyInstanceUID, seriesDir);
      await rename(tmpPath, finalPath);
    }
    // The rename is durable once the directory is fsynced.
    await (await this.dirHandle(seriesDir)).sync();
    this.opts.onCommit?.('classic');
    return finalPath;
  }

  private async ensureDir(studyUID: string, seriesDir: string): Promise<void> {
    await mkdir(seriesDir, { recursive: true });
    // New directories must be durable too, up to the studies root. Also when the folder existed: the journal's
    // commits make folders without syncing them (until their checkpoint).
    await fsyncDir(this.studyDir(studyUID));
    await fsyncDir(this.studiesDir);
    this.madeDirs.add(seriesDir);
    this.knownDirs.add(seriesDir);
  }

  private forgetDir(dir: string): void {
    this.knownDirs.delete(dir);
    this.madeDirs.delete(dir);
    const h = this.dirHandles.get(dir);
    this.dirHandles.delete(dir);
    void h?.then((f) => f.close()).catch(() => undefined);
  }

  private dirHandle(dir: string): Promise<FileHandle> {
    let h = this.dirHandles.get(dir);
    if (h) {
      this.dirHandles.delete(dir);
      this.dirHandles.set(dir, h);
      return h;
    }
    h = open(dir, 'r');
    h.catch(() => this.dirHandles.delete(dir));
    this.dirHandles.set(dir, h);
    if (this.dirHandles.size > Spool.MAX_DIR_HANDLES) {
      const [oldest, old] = this.dirHandles.entries().next().value as [string, Promise<FileHandle>];
      this.dirHandles.delete(oldest);
      void old.then((f) => f.close()).catch(() => undefined);
    }
    return h;
  }

  /** Checkpoints and closes the journal, closes cached directory handles. */
  async close(): Promise<void> {
    const journal = this.journal;
    this.journal = undefined;
    await journal?.close();
    const hs = [...this.dirHandles.values()];
    this.dirHandles.clear();
    for (const h of hs) await h.then((f) => f.close()).catch(() => undefined);
  }

  async discard(tmpPath: string): Promise<void> {
    await rm(tmpPath, { force: true });
  }

  /** Study Instance UIDs that have a folder in the spool. */
  async listStudies(): Promise<string[]> {
    try {
      return (await readdir(this.studiesDir)).filter((n) => UID_RE.test(n));
    } catch {
      return [];
    }
  }

  /** Paths of every committed instance of a study. */
  async listInstances(studyUID: string): Promise<string[]> {
    const dir = this.studyDir(studyUID);
    const out: string[] = [];
    let series: string[] = [];
    try {
      series = await readdir(dir);
    } catch {
      return out;
    }
    for (const s of series) {
      if (!UID_RE.test(s)) continue;
      const sdir = join(dir, s);
      if (!(await stat(sdir)).isDirectory()) continue;
      for (const f of await readdir(sdir)) if (f.endsWith('.dcm')) out.push(join(sdir, f));
    }
    return out.sort();
  }
}

export interface InstanceIds {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
}

export function assertUid(uid: string, name: string): void {
  if (!UID_RE.test(uid) || uid.startsWith('.') || uid.endsWith('.') || uid.includes('..')) {
    throw new Error(`invalid ${name}: ${JSON.stringify(uid).slice(0, 80)}`);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
