import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

const UID_RE = /^[0-9.]{1,64}$/;

/**
 * The durable spool of received instances, on a local disk or a volume shared by SCP and workers.
 *
 * Layout: `<root>/tmp/` for files being received, `<root>/studies/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`
 * for committed instances. A commit is: the temp file is fsynced, renamed over the final name (a repeated
 * SOP Instance UID replaces the old copy), and the directory is fsynced. Only then is Success answered.
 */
export class Spool {
  readonly tmpDir: string;
  readonly studiesDir: string;
  /** Series folders known to exist and be durable: no mkdir and no parent fsync on the next commit. */
  private readonly knownDirs = new Set<string>();
  /** Open handles of recently used series folders, for the directory fsync after each rename (LRU). */
  private readonly dirHandles = new Map<string, Promise<FileHandle>>();
  private static readonly MAX_DIR_HANDLES = 64;

  constructor(readonly root: string) {
    this.tmpDir = join(root, 'tmp');
    this.studiesDir = join(root, 'studies');
  }

  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.studiesDir, { recursive: true });
    // Anything left in tmp/ was never acknowledged: a crash mid-transfer. Remove it.
    for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true });
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
  async commit(tmpPath: string, ids: { studyInstanceUID: string; seriesInstanceUID: string; sopInstanceUID: string }, handle?: FileHandle): Promise<string> {
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
    return finalPath;
  }

  private async ensureDir(studyUID: string, seriesDir: string): Promise<void> {
    const created = await mkdir(seriesDir, { recursive: true });
    if (created) {
      // New directories must be durable too, up to the studies root.
      await fsyncDir(this.studyDir(studyUID));
      await fsyncDir(this.studiesDir);
    }
    this.knownDirs.add(seriesDir);
  }

  private forgetDir(dir: string): void {
    this.knownDirs.delete(dir);
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

  /** Closes cached directory handles. */
  async close(): Promise<void> {
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
