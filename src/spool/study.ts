import { readdir, readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { readInstanceMeta, type InstanceMeta } from '../dicom/meta.js';
import type { Spool } from './spool.js';

export interface StudyFiles {
  metas: InstanceMeta[];
  /** Files in the spool that could not be read back (never expected: the SCP validated them). */
  unreadable: Array<{ path: string; error: string }>;
  instanceCount: number;
}

/** Reads the headers of every spooled instance of a study. */
export async function readStudyMetas(spool: Spool, studyUID: string): Promise<StudyFiles> {
  const paths = await spool.listInstances(studyUID);
  const unreadable: StudyFiles['unreadable'] = [];
  // A few reads in flight at once hide most of the file-system latency; order is kept.
  const perFile: InstanceMeta[][] = new Array(paths.length);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      try {
        perFile[i] = await readInstanceMeta(paths[i]!);
      } catch (err) {
        perFile[i] = [];
        unreadable.push({ path: paths[i]!, error: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, paths.length) }, worker));
  return { metas: perFile.flat(), unreadable, instanceCount: paths.length };
}

export interface DoneMarker {
  epoch: number;
  instanceCount: number;
  jobId: string;
  finishedAt: string;
}

const MARKER = '.done.json';

/** Written by the worker when a study's job completed; read on start-up to find studies left unprocessed. */
export async function writeDoneMarker(spool: Spool, studyUID: string, marker: DoneMarker): Promise<void> {
  const path = join(spool.studyDir(studyUID), MARKER);
  await writeFile(`${path}.tmp`, JSON.stringify(marker));
  await rename(`${path}.tmp`, path);
}

export async function readDoneMarker(spool: Spool, studyUID: string): Promise<DoneMarker | undefined> {
  try {
    return JSON.parse(await readFile(join(spool.studyDir(studyUID), MARKER), 'utf8')) as DoneMarker;
  } catch {
    return undefined;
  }
}

/** Number of instances a study has in the spool (cheap: directory listing only). */
export async function countInstances(spool: Spool, studyUID: string): Promise<number> {
  let n = 0;
  try {
    for (const s of await readdir(spool.studyDir(studyUID))) {
      if (s === MARKER) continue;
      try {
        n += (await readdir(join(spool.studyDir(studyUID), s))).filter((f) => f.endsWith('.dcm')).length;
      } catch {
        /* not a folder */
      }
    }
  } catch {
    return 0;
  }
  return n;
}
