/**
 * The paper's Fig. 6: Grad-CAM examples in a 3 × 3 grid, rows = truth, columns = prediction (OAP, IN, OBS),
 * each block up to `perPair` tiles (the network input, grey, with the CAM blended over it in jet). Composed
 * with the secondary captures' raster helpers (src/sr/render.ts) and encoded to PNG by sharp.
 */
import sharp from 'sharp';
import { LABELS } from '../../inference/decode.js';
import { blendHeatmap, blit, createRgb, drawText, fillRect, grayToRgb, LABEL_COLOURS, resizeBilinear, strokeRect, textBox, type Rgb, type RgbImage } from '../../sr/render.js';
import type { CellGradCam } from './cell-artifacts.js';

export interface GradCamGridOptions {
  /** Tile edge in the figure, pixels. @defaultValue 112 */
  tile?: number;
  /** Most tiles per (truth, prediction) block. @defaultValue 3 */
  perPair?: number;
}

const GAP = 6;
const FRAME = 3;
const RIGHT: Rgb = [40, 160, 60];
const WRONG: Rgb = [200, 40, 40];
const PAPER: Rgb = [255, 255, 255];
const INK: Rgb = [20, 20, 20];

/** One tile: the grey input resized to `size`, the CAM blended over it. */
function tileImage(g: CellGradCam, i: number, size: number): RgbImage {
  const s = g.size;
  const grey = size === s ? g.images[i] : Uint8Array.from(resizeBilinear(g.images[i], s, s, size, size), (v) => Math.round(Math.min(Math.max(v, 0), 255)));
  const cam = size === s ? Float32Array.from(g.cams[i], (v) => v / 255) : Float32Array.from(resizeBilinear(g.cams[i], s, s, size, size), (v) => Math.min(Math.max(v / 255, 0), 1));
  const img = grayToRgb(grey, size, size);
  blendHeatmap(img, cam);
  return img;
}

/** Renders the grid; returns the PNG and how many tiles each (truth, prediction) block shows. */
export async function renderGradCamGrid(g: CellGradCam, opts: GradCamGridOptions = {}): Promise<{ png: Buffer; counts: Record<string, number> }> {
  const tile = opts.tile ?? 112;
  const perPair = opts.perPair ?? 3;
  const scale = 2;
  const labelW = textBox('TRUE OBS', { scale }).width + GAP;
  const headerH = textBox('PRED OBS', { scale }).height + GAP;
  const blockW = perPair * tile + (perPair - 1) * GAP + 2 * FRAME;
  const blockH = tile + 2 * FRAME;
  const width = labelW + 3 * blockW + 4 * GAP;
  const height = headerH + 3 * blockH + 4 * GAP;
  const img = createRgb(width, height, PAPER);
  const counts: Record<string, number> = {};
  LABELS.forEach((p, c) => drawText(img, labelW + GAP + c * (blockW + GAP), GAP / 2, `PRED ${p}`, LABEL_COLOURS[p].map((v) => Math.round(v * 0.7)) as unknown as Rgb, { scale }));
  LABELS.forEach((t, r) => {
    const y = headerH + GAP + r * (blockH + GAP);
    drawText(img, 0, y + blockH / 2 - 8, `TRUE ${t}`, LABEL_COLOURS[t].map((v) => Math.round(v * 0.7)) as unknown as Rgb, { scale });
    LABELS.forEach((p, c) => {
      const x = labelW + GAP + c * (blockW + GAP);
      const idx = g.tiles.map((tl, i) => ({ tl, i })).filter(({ tl }) => tl.truth === t && tl.predicted === p).slice(0, perPair);
      counts[`${t}>${p}`] = idx.length;
      strokeRect(img, x, y, blockW, blockH, t === p ? RIGHT : WRONG, FRAME);
      if (!idx.length) {
        fillRect(img, x + FRAME, y + FRAME, blockW - 2 * FRAME, blockH - 2 * FRAME, [235, 235, 235]);
        drawText(img, x + FRAME + GAP, y + FRAME + GAP, 'NONE', INK, { scale });
        return;
      }
      idx.forEach(({ i }, k) => {
        const tx = x + FRAME + k * (tile + GAP);
        blit(img, tileImage(g, i, tile), tx, y + FRAME);
        drawText(img, tx, y + FRAME, g.tiles[i].probability.toFixed(2), [255, 255, 255], { background: [0, 0, 0], backgroundAlpha: 0.6 });
      });
    });
  });
  const png = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), { raw: { width, height, channels: 3 } }).png().toBuffer();
  return { png, counts };
}
