import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OutputRef, PhaseKey, Result } from '../inference/result.js';
import { buildOutputs, sourceFilesFromStack, sourceInfoFromFiles, type OutputObject } from '../sr/index.js';
import type { CineStack } from '../stack/types.js';
import { packageVersion } from '../version.js';

export interface WrittenOutputs {
  refs: OutputRef[];
  objects: OutputObject[];
}

/**
 * Builds the SR, the Grad-CAM secondary captures (per slice and a montage per phase) and the KOS of one
 * classified stack and writes them as Part 10 files under `dir` (`<kind>-<SOPInstanceUID>.dcm`). UIDs are
 * deterministic, so writing again replaces the same files. Used by `classify --out` and by the worker.
 */
export async function writeStackOutputs(ctx: {
  stack: CineStack;
  result: Result;
  cams: Map<PhaseKey, Float32Array[]>;
  images: Map<PhaseKey, Float32Array[]>;
  dir: string;
}): Promise<WrittenOutputs> {
  const sources = await sourceInfoFromFiles(ctx.result, sourceFilesFromStack(ctx.stack, ctx.result), { images: ctx.images });
  const objects = buildOutputs(ctx.result, sources, ctx.cams, { softwareVersion: packageVersion() });
  await mkdir(ctx.dir, { recursive: true });
  const refs: OutputRef[] = [];
  for (const o of objects) {
    const path = join(ctx.dir, `${o.kind}-${o.sopInstanceUID}.dcm`);
    await writeFileAtomic(path, o.part10);
    refs.push({ kind: o.kind, sopInstanceUID: o.sopInstanceUID, seriesInstanceUID: o.seriesInstanceUID, path });
  }
  return { refs, objects };
}

export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}
