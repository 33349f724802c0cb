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
      await fh.sync();
    } finally {
      await fh.close();
    }
    const created = await mkdir(seriesDir, { recursive: true });
    await rename(tmpPath, finalPath);
    await fsyncDir(seriesDir);
    if (created) {
      // New directories must be durable too, up to the studies root.
      await fsyncDir(this.studyDir(ids.studyInstanceUID));
      await fsyncDir(this.studiesDir);
    }
    return finalPath;
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
