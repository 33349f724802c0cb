import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** sax-range's version from its package.json (found upwards from this file: works from src/ and dist/). */
export function packageVersion(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'sax-range' && pkg.version) return (cached = pkg.version);
      } catch {
        // keep looking
      }
    }
    dir = dirname(dir);
  }
  return (cached = 'unknown');
}
