import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Every file below `dir` (recursive), or none when `dir` does not exist. */
export async function listTree(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  } catch {
    return [];
  }
}
