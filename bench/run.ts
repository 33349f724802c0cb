/**
 * `npm run bench`: runs every benchmark in turn (never part of `npm test`). Each prints its own table rows;
 * copy them into BENCHMARKS.md with the machine line this script prints first.
 * Benchmarks that need ../shared/data/acdc are skipped with a message when it is absent.
 * Usage: npm run bench [-- name ...]   (names: ingest, edes-acdc, inference, train, e2e, scale, malformed, load)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const acdc = process.env.ACDC_DIR ?? fileURLToPath(new URL('../../shared/data/acdc', import.meta.url));
const all: Array<{ name: string; args: string[]; needs?: string }> = [
  { name: 'ingest', args: [] },
  { name: 'edes-acdc', args: [`${acdc}/patient090`, '--pairs'], needs: acdc },
  { name: 'inference', args: [] },
  { name: 'train', args: [] },
  { name: 'e2e', args: [] },
  { name: 'malformed', args: [] },
  { name: 'scale', args: [] },
  { name: 'load', args: [] },
];
const wanted = process.argv.slice(2);
const cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown CPU';
console.log(`machine: ${cpus().length} cores, ${cpu}, Node ${process.version}, ${new Date().toISOString()}`);
let failed = 0;
for (const b of all) {
  if (wanted.length && !wanted.includes(b.name)) continue;
  const file = `${here}${b.name}.ts`;
  if (!existsSync(file)) continue;
  if (b.needs && !existsSync(b.needs)) {
    console.log(`\n## ${b.name}: skipped (${b.needs} not found)`);
    continue;
  }
  console.log(`\n## ${b.name}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...b.args], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
