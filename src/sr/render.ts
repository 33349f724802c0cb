/**
 * Pure raster helpers for the secondary captures: windowing to 8 bits, the jet colour map and its
 * alpha blend, resizing, rectangles and text (font.ts). Images are interleaved 8-bit RGB, row-major
 * (PS3.3 C.7.6.3: PhotometricInterpretation RGB, PlanarConfiguration 0).
 */
import { GLYPH_ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH, glyphFor, textWidth } from './font.js';

export type Rgb = readonly [number, number, number];

/** An interleaved RGB image: `data.length === width * height * 3`. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** Colours of the three classes: distinct in hue and brightness, and none of them in the jet overlay's blue end. */
export const LABEL_COLOURS: Readonly<Record<'OAP' | 'IN' | 'OBS', Rgb>> = Object.freeze({
  OAP: [255, 170, 0] as Rgb, // amber
  IN: [0, 220, 90] as Rgb, // green
  OBS: [235, 60, 235] as Rgb, // magenta
});

export const WHITE: Rgb = [255, 255, 255];
export const BLACK: Rgb = [0, 0, 0];

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || width > 65535 || height > 65535) {
    throw new RangeError(`image size must be integers in 1..65535, got ${width}×${height}`);
  }
}

/** A new image filled with one colour. */
export function createRgb(width: number, height: number, fill: Rgb = BLACK): RgbImage {
  checkSize(width, height);
  const data = new Uint8Array(width * height * 3);
  if (fill[0] || fill[1] || fill[2]) {
    for (let i = 0; i < data.length; i += 3) {
      data[i] = fill[0];
      data[i + 1] = fill[1];
      data[i + 2] = fill[2];
    }
  }
  return { width, height, data };
}

/**
 * The values at quantiles `qs` (each 0–1) of the finite values of `values`, from one sorted, strided
 * sample of at most 65536 values (exact for images up to 256 × 256); linear interpolation between ranks.
 */
export function quantiles(values: ArrayLike<number>, qs: readonly number[]): number[] {
  const step = Math.max(1, Math.floor(values.length / 65536));
  const sample = new Float64Array(Math.ceil(values.length / step));
  let n = 0;
  for (let i = 0; i < values.length; i += step) {
    const v = values[i];
    if (Number.isFinite(v)) sample[n++] = v;
  }
  if (n === 0) return qs.map(() => 0);
  const sorted = sample.subarray(0, n).sort(); // typed-array sort: numeric and native
  return qs.map((q) => {
    const pos = Math.min(Math.max(q, 0), 1) * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, n - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  });
}

/** The value at quantile `q` (0–1): see `quantiles`. */
export function quantile(values: ArrayLike<number>, q: number): number {
  return quantiles(values, [q])[0];
}

/** A window [low, high] of modality values. */
export interface Window {
  readonly low: number;
  readonly high: number;
}

/** The window between two quantiles of the pixels (default 1st–99th percentile). */
export function percentileWindow(pixels: ArrayLike<number>, lowQ = 0.01, highQ = 0.99): Window {
  const [low, q] = quantiles(pixels, [lowQ, highQ]);
  let high = q;
  if (!(high > low)) high = low + 1;
  return { low, high };
}

/** Maps modality values to 0–255: `round(255 · clamp((v − low) / (high − low), 0, 1))`; NaN → 0. */
export function windowTo8bit(pixels: ArrayLike<number>, win: Window): Uint8Array {
  const out = new Uint8Array(pixels.length);
  const scale = 255 / (win.high - win.low);
  for (let i = 0; i < pixels.length; i++) {
    const v = (pixels[i] - win.low) * scale;
    out[i] = v > 255 ? 255 : v > 0 ? Math.round(v) : 0;
  }
  return out;
}

/** Grey (one byte per pixel) to RGB. */
export function grayToRgb(gray: Uint8Array, width: number, height: number): RgbImage {
  checkSize(width, height);
  if (gray.length !== width * height) throw new RangeError(`grey image has ${gray.length} pixels, expected ${width}×${height}`);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < gray.length; i++, j += 3) {
    data[j] = data[j + 1] = data[j + 2] = gray[i];
  }
  return { width, height, data };
}

/**
 * Bilinear resize of a single-channel image (any numeric array) to `width × height`, sampling at pixel
 * centres: source coordinate = (dst + 0.5) · src / dst − 0.5, clamped to the image.
 */
export function resizeBilinear(src: ArrayLike<number>, srcW: number, srcH: number, width: number, height: number): Float32Array {
  checkSize(srcW, srcH);
  checkSize(width, height);
  if (src.length !== srcW * srcH) throw new RangeError(`image has ${src.length} pixels, expected ${srcW}×${srcH}`);
  const out = new Float32Array(width * height);
  const x0 = new Int32Array(width);
  const x1 = new Int32Array(width);
  const fx = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const u = Math.min(Math.max(((x + 0.5) * srcW) / width - 0.5, 0), srcW - 1);
    x0[x] = Math.floor(u);
    x1[x] = Math.min(x0[x] + 1, srcW - 1);
    fx[x] = u - x0[x];
  }
  for (let y = 0; y < height; y++) {
    const v = Math.min(Math.max(((y + 0.5) * srcH) / height - 0.5, 0), srcH - 1);
    const y0 = Math.floor(v);
    const y1 = Math.min(y0 + 1, srcH - 1);
    const wy = v - y0;
    const r0 = y0 * srcW;
    const r1 = y1 * srcW;
    for (let x = 0; x < width; x++) {
      const top = src[r0 + x0[x]] + (src[r0 + x1[x]] - src[r0 + x0[x]]) * fx[x];
      const bot = src[r1 + x0[x]] + (src[r1 + x1[x]] - src[r1 + x0[x]]) * fx[x];
      out[y * width + x] = top + (bot - top) * wy;
    }
  }
  return out;
}

/**
 * The "jet" colour map at t ∈ [0, 1] (dark blue → blue → cyan → yellow → red → dark red), the usual
 * Grad-CAM rendering: each channel is `clamp(1.5 − |4t − k|, 0, 1)` with k = 3 (red), 2 (green), 1 (blue).
 */
export function jet(t: number): Rgb {
  const x = Math.min(Math.max(Number.isFinite(t) ? t : 0, 0), 1);
  const ch = (k: number) => Math.round(255 * Math.min(Math.max(1.5 - Math.abs(4 * x - k), 0), 1));
  return [ch(3), ch(2), ch(1)];
}

const JET_LUT: Uint8Array = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(jet(i / 255), i * 3);
  return lut;
})();

export interface HeatmapOptions {
  /**
   * Opacity of the colour at CAM value 1; the opacity grows linearly from `threshold` to 1.
   * @defaultValue 0.5
   */
  maxAlpha?: number;
  /**
   * CAM values at or below this are not drawn, so that the anatomy stays visible where the network did not look.
   * @defaultValue 0.15
   */
  threshold?: number;
}

/**
 * Blends a heat map (one value in [0, 1] per pixel, same grid as `img`) over `img` in place with the jet
 * colour map: out = (1 − a) · img + a · jet(cam), a = maxAlpha · (cam − threshold) / (1 − threshold).
 * Throws on a size mismatch or a value outside [0, 1] (NaN included).
 */
export function blendHeatmap(img: RgbImage, cam: ArrayLike<number>, opts: HeatmapOptions = {}): void {
  const maxAlpha = opts.maxAlpha ?? 0.5;
  const threshold = opts.threshold ?? 0.15;
  if (!(maxAlpha >= 0 && maxAlpha <= 1)) throw new RangeError(`maxAlpha must be in [0, 1], got ${maxAlpha}`);
  if (!(threshold >= 0 && threshold < 1)) throw new RangeError(`threshold must be in [0, 1), got ${threshold}`);
  if (cam.length !== img.width * img.height) throw new RangeError(`heat map has ${cam.length} values, expected ${img.width}×${img.height}`);
  const d = img.data;
  for (let i = 0; i < cam.length; i++) {
    const t = cam[i];
    if (!(t >= 0 && t <= 1)) throw new RangeError(`heat map value ${t} at pixel ${i} is outside [0, 1]`);
    if (t <= threshold) continue;
    const a = (maxAlpha * (t - threshold)) / (1 - threshold);
    const k = Math.round(t * 255) * 3;
    const j = i * 3;
    d[j] = Math.round(d[j] + (JET_LUT[k] - d[j]) * a);
    d[j + 1] = Math.round(d[j + 1] + (JET_LUT[k + 1] - d[j + 1]) * a);
    d[j + 2] = Math.round(d[j + 2] + (JET_LUT[k + 2] - d[j + 2]) * a);
  }
}

/** Fills a rectangle (clipped to the image), optionally blending with opacity `alpha`. */
export function fillRect(img: RgbImage, x: number, y: number, w: number, h: number, colour: Rgb, alpha = 1): void {
  const x0 = Math.max(0, Math.floor(x));
  const y0 = Math.max(0, Math.floor(y));
  const x1 = Math.min(img.width, Math.floor(x + w));
  const y1 = Math.min(img.height, Math.floor(y + h));
  const d = img.data;
  for (let yy = y0; yy < y1; yy++) {
    for (let xx = x0; xx < x1; xx++) {
      const j = (yy * img.width + xx) * 3;
      if (alpha >= 1) {
        d[j] = colour[0];
        d[j + 1] = colour[1];
        d[j + 2] = colour[2];
      } else {
        d[j] = Math.round(d[j] + (colour[0] - d[j]) * alpha);
        d[j + 1] = Math.round(d[j + 1] + (colour[1] - d[j + 1]) * alpha);
        d[j + 2] = Math.round(d[j + 2] + (colour[2] - d[j + 2]) * alpha);
      }
    }
  }
}

/** Draws a rectangle outline `thickness` pixels wide, inside the given box. */
export function strokeRect(img: RgbImage, x: number, y: number, w: number, h: number, colour: Rgb, thickness = 1): void {
  fillRect(img, x, y, w, thickness, colour);
  fillRect(img, x, y + h - thickness, w, thickness, colour);
  fillRect(img, x, y, thickness, h, colour);
  fillRect(img, x + w - thickness, y, thickness, h, colour);
}

/** Copies `src` into `dst` with its top-left corner at (x, y), clipped. */
export function blit(dst: RgbImage, src: RgbImage, x: number, y: number): void {
  for (let sy = 0; sy < src.height; sy++) {
    const dy = y + sy;
    if (dy < 0 || dy >= dst.height) continue;
    const sx0 = Math.max(0, -x);
    const sx1 = Math.min(src.width, dst.width - x);
    if (sx1 <= sx0) continue;
    dst.data.set(src.data.subarray((sy * src.width + sx0) * 3, (sy * src.width + sx1) * 3), (dy * dst.width + x + sx0) * 3);
  }
}

/** Multiplies every channel by `factor` (0–1) in place: dims an image. */
export function dim(img: RgbImage, factor: number): void {
  for (let i = 0; i < img.data.length; i++) img.data[i] = Math.round(img.data[i] * factor);
}

export interface TextOptions {
  /** Integer magnification of the 5 × 7 font. @defaultValue 1 */
  scale?: number;
  /** Background box drawn behind the text (with `padding`). */
  background?: Rgb;
  /** Opacity of the background box. @defaultValue 0.75 */
  backgroundAlpha?: number;
  /** Pixels of background around the text. @defaultValue scale */
  padding?: number;
}

/** Width and height of the box `drawText` fills for this text and options. */
export function textBox(text: string, opts: TextOptions = {}): { width: number; height: number } {
  const scale = opts.scale ?? 1;
  const pad = opts.padding ?? scale;
  return { width: textWidth(text, scale) + 2 * pad, height: GLYPH_HEIGHT * scale + 2 * pad };
}

/**
 * Draws `text` with its box's top-left corner at (x, y) (clipped at the image edges). Returns the box's
 * width. Lower-case letters are drawn as capitals (font.ts).
 */
export function drawText(img: RgbImage, x: number, y: number, text: string, colour: Rgb, opts: TextOptions = {}): number {
  const scale = opts.scale ?? 1;
  if (!Number.isInteger(scale) || scale < 1) throw new RangeError(`text scale must be a positive integer, got ${scale}`);
  const pad = opts.padding ?? scale;
  const box = textBox(text, opts);
  if (opts.background) fillRect(img, x, y, box.width, box.height, opts.background, opts.backgroundAlpha ?? 0.75);
  let cx = x + pad;
  const cy = y + pad;
  for (const ch of text) {
    const glyph = glyphFor(ch);
    for (let r = 0; r < GLYPH_HEIGHT; r++) {
      const bits = glyph[r];
      for (let c = 0; c < GLYPH_WIDTH; c++) {
        if (bits & (1 << (GLYPH_WIDTH - 1 - c))) fillRect(img, cx + c * scale, cy + r * scale, scale, scale, colour);
      }
    }
    cx += GLYPH_ADVANCE * scale;
  }
  return box.width;
}

/** Cuts `text` to at most `maxWidth` pixels at `scale`, ending it with '..' when cut. */
export function fitText(text: string, maxWidth: number, scale = 1): string {
  if (textWidth(text, scale) <= maxWidth) return text;
  const chars = [...text];
  while (chars.length > 0 && textWidth(`${chars.join('')}..`, scale) > maxWidth) chars.pop();
  return chars.length > 0 ? `${chars.join('')}..` : '';
}

/** Black or white, whichever reads better on `bg` (ITU-R BT.601 luma). */
export function contrastingText(bg: Rgb): Rgb {
  return 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] > 140 ? BLACK : WHITE;
}
