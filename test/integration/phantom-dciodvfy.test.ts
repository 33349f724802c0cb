/**
 * Phantom studies against real validators: dicom3tools `dciodvfy` (IOD conformance: 0 errors, 0 warnings)
 * and DCMTK / GDCM decoders (the compressed files decode, outside our own codec library, to the same pixels).
 * Needs the Debian packages dicom3tools, dcmtk and libgdcm-tools.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { TransferSyntax } from '../../src/dicom/uids.js';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;

function run(cmd: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, TCP_NODELAY: '1' } });
  if (r.error) throw new Error(`${cmd} failed to start (${r.error.message}); install dicom3tools / dcmtk / libgdcm-tools`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

function dciodvfy(path: string): { status: number | null; errors: string[]; warnings: string[]; output: string } {
  const { status, output } = run('dciodvfy', [path]);
  const lines = output.split('\n');
  return { status, output, errors: lines.filter((l) => l.startsWith('Error')), warnings: lines.filter((l) => l.startsWith('Warning')) };
}

async function pixelData(path: string): Promise<Buffer> {
  const buf = await readFile(path);
  const dict = DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const ds = DicomMetaDictionary.naturalizeDataset(dict.dict);
  return Buffer.from(ds.PixelData[0]);
}

/** First, last and a few in between. */
function sample<T>(items: T[], n = 5): T[] {
  const picks = new Set<number>([0, items.length - 1]);
  for (let i = 1; picks.size < Math.min(n, items.length); i++) picks.add(Math.floor((i * items.length) / n));
  return [...picks].sort((a, b) => a - b).map((i) => items[i]);
}

let root: string;

beforeAll(async () => {
  dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');
  root = await mkdtemp(join(tmpdir(), 'sax-range-phantom-'));
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('phantom studies pass dciodvfy', () => {
  it('default study (single series, Explicit VR LE): 0 errors, 0 warnings', async () => {
    const dir = join(root, 'default');
    const { truth, paths } = await writePhantomStudy(dir, { seed: 3 });
    expect(paths).toHaveLength(300);
    const written: PhantomTruth = JSON.parse(await readFile(join(dir, 'truth.json'), 'utf8'));
    expect(written).toEqual(truth);
    expect((await readdir(dir)).sort()).toEqual(['series-0020', 'truth.json']);
    for (const path of sample(paths)) {
      const r = dciodvfy(path);
      expect(r.status, r.output).toBe(0);
      expect(r.errors, r.output).toEqual([]);
      expect(r.warnings, r.output).toEqual([]);
    }
  });

  it('series-per-slice, 24 slices × 30 phases, 192²: 0 errors, 0 warnings', async () => {
    const dir = join(root, 'per-slice');
    const { paths } = await writePhantomStudy(dir, { seed: 11, slices: 24, phases: 30, rows: 192, layout: 'series-per-slice' });
    expect((await readdir(dir)).filter((d) => d.startsWith('series-'))).toHaveLength(24);
    for (const path of sample(paths)) {
      const r = dciodvfy(path);
      expect(r.status, r.output).toBe(0);
      expect(r.errors, r.output).toEqual([]);
      expect(r.warnings, r.output).toEqual([]);
    }
  });

  it.each([
    ['Implicit VR LE', TransferSyntax.ImplicitVRLittleEndian],
    ['JPEG-LS lossless', TransferSyntax.JpegLsLossless],
    ['JPEG lossless SV1', TransferSyntax.JpegLosslessSV1],
    ['JPEG 2000 lossless', TransferSyntax.Jpeg2000Lossless],
    ['RLE lossless', TransferSyntax.RleLossless],
  ])('%s: 0 errors, 0 warnings', async (_name, ts) => {
    const dir = join(root, `ts-${ts}`);
    const { paths } = await writePhantomStudy(dir, { seed: 5, slices: 6, phases: 20, rows: 128, transferSyntax: ts });
    for (const path of sample(paths, 3)) {
      const r = dciodvfy(path);
      expect(r.status, r.output).toBe(0);
      expect(r.errors, r.output).toEqual([]);
      expect(r.warnings, r.output).toEqual([]);
    }
  });
});

describe('compressed phantom files decode with DCMTK / GDCM to the uncompressed pixels', () => {
  const opts = { seed: 5, slices: 6, phases: 20, rows: 128 } as const;
  let reference: string[];

  beforeAll(async () => {
    ({ paths: reference } = await writePhantomStudy(join(root, 'reference'), opts));
  });

  it.each([
    ['dcmdjpls', TransferSyntax.JpegLsLossless, (i: string, o: string) => run('dcmdjpls', [i, o])],
    ['dcmdjpeg', TransferSyntax.JpegLosslessSV1, (i: string, o: string) => run('dcmdjpeg', [i, o])],
    ['dcmdrle', TransferSyntax.RleLossless, (i: string, o: string) => run('dcmdrle', [i, o])],
    ['gdcmconv --raw', TransferSyntax.Jpeg2000Lossless, (i: string, o: string) => run('gdcmconv', ['--raw', i, o])],
  ])('%s (%s)', async (tool, ts, decode) => {
    if (tool.startsWith('gdcmconv') && !existsSync('/usr/bin/gdcmconv')) return; // optional package
    const dir = join(root, `decode-${ts}`);
    const { paths } = await writePhantomStudy(dir, { ...opts, transferSyntax: ts });
    for (const i of [0, 57, paths.length - 1]) {
      const out = join(dir, `decoded-${i}.dcm`);
      const r = decode(paths[i], out);
      expect(r.status, r.output).toBe(0);
      expect((await pixelData(out)).equals(await pixelData(reference[i])), `${tool} ${paths[i]}`).toBe(true);
    }
  });
});
