/**
 * PNG renderings of one slice for the viewer and the labeller: the source frame windowed like the secondary
 * captures (1st–99th percentile of the frame, src/sr/render.ts), and the Grad-CAM secondary capture the
 * worker wrote (RGB, the overlay and the caption burned in), unchanged.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { decodeFrame } from '../dicom/pixels.js';
import { readPart10 } from '../sr/part10.js';
import { percentileWindow, windowTo8bit } from '../sr/render.js';
import type { FrameRef } from '../stack/types.js';

/** The source frame as an 8-bit grey PNG at its own size. */
export async function sourceSlicePng(frame: Pick<FrameRef, 'path' | 'frame'>): Promise<Buffer> {
  const img = await decodeFrame(frame.path, frame.frame ?? 0);
  const grey = windowTo8bit(img.data, percentileWindow(img.data));
  return sharp(Buffer.from(grey.buffer, grey.byteOffset, grey.byteLength), { raw: { width: img.columns, height: img.rows, channels: 1 } })
    .toColourspace('b-w')
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** An RGB secondary capture (8 bits, interleaved, uncompressed: what src/sr writes) as a PNG. */
export async function secondaryCapturePng(path: string): Promise<Buffer> {
  const { dataset } = readPart10(await readFile(path));
  const width = Number(dataset.Columns);
  const height = Number(dataset.Rows);
  const parts: unknown[] = Array.isArray(dataset.PixelData) ? dataset.PixelData : [dataset.PixelData];
  const first = parts[0];
  if (dataset.SamplesPerPixel !== 3 || dataset.BitsAllocated !== 8 || Number(dataset.PlanarConfiguration ?? 0) !== 0 || !(first instanceof ArrayBuffer)) {
    throw new Error(`${path}: not an 8-bit interleaved RGB secondary capture`);
  }
  const need = width * height * 3;
  if (first.byteLength < need) throw new Error(`${path}: pixel data has ${first.byteLength} bytes, ${need} expected`);
  return sharp(Buffer.from(first, 0, need), { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
}
