#!/usr/bin/env node
// Entry point of the `sax-range` command: runs the compiled CLI (npm run build writes dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
if (!existsSync(dist)) {
  console.error('sax-range: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
const { main } = await import(dist);
await main(process.argv);
