import { describe, expect, it } from 'vitest';
import { FONT_CHARACTERS, GLYPH_HEIGHT, glyphFor, textWidth } from '../../src/sr/font.js';
import {
  blendHeatmap,
  createRgb,
  drawText,
  fitText,
  grayToRgb,
  jet,
  percentileWindow,
  quantiles,
  resizeBilinear,
  windowTo8bit,
} from '../../src/sr/render.js';
import { outputSeriesUid, sliceScInstanceUid, srInstanceUid, kosInstanceUid, montageInstanceUid, type UidContext } from '../../src/sr/uid.js';

describe('font', () => {
  it('has 7 rows of 5 columns per glyph for digits, capitals and the punctuation used in captions', () => {
    for (const ch of '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ .:-()/=>%') expect(FONT_CHARACTERS).toContain(ch);
    for (const ch of FONT_CHARACTERS) {
      const g = glyphFor(ch);
      expect(g).toHaveLength(GLYPH_HEIGHT);
      for (const row of g) expect(row).toBeLessThan(32);
    }
  });
  it('draws lower case as capitals and unknown characters as ?', () => {
    expect(glyphFor('a')).toBe(glyphFor('A'));
    expect(glyphFor('→')).toBe(glyphFor('?'));
  });
  it('measures text: 6 columns per character less the trailing space, times the scale', () => {
    expect(textWidth('', 2)).toBe(0);
    expect(textWidth('IN', 1)).toBe(11);
    expect(textWidth('IN', 2)).toBe(22);
  });
});

describe('render', () => {
  it('maps jet from dark blue through green-yellow to dark red', () => {
    expect(jet(0)).toEqual([0, 0, 128]);
    expect(jet(0.5)).toEqual([128, 255, 128]);
    expect(jet(1)).toEqual([128, 0, 0]);
  });
  it('windows by percentiles to 0–255', () => {
    const v = Float32Array.from({ length: 101 }, (_, i) => i);
    expect(quantiles(v, [0, 0.5, 1])).toEqual([0, 50, 100]);
    const w = percentileWindow(v, 0.1, 0.9);
    expect([w.low, w.high]).toEqual([10, 90]);
    const g = windowTo8bit(v, w);
    expect([g[0], g[10], g[50], g[90], g[100]]).toEqual([0, 0, 128, 255, 255]);
    expect(windowTo8bit([Number.NaN], w)[0]).toBe(0);
  });
  it('resizes bilinearly (identity at the same size, constant stays constant)', () => {
    const src = Float32Array.from({ length: 12 }, (_, i) => i);
    expect(Array.from(resizeBilinear(src, 4, 3, 4, 3))).toEqual(Array.from(src));
    expect(Array.from(resizeBilinear(new Float32Array(4).fill(7), 2, 2, 5, 3))).toEqual(new Array(15).fill(7));
  });
  it('blends the heat map only above the threshold', () => {
    const img = grayToRgb(new Uint8Array([100, 100]), 2, 1);
    blendHeatmap(img, [0.1, 1], { maxAlpha: 0.5, threshold: 0.15 });
    expect(Array.from(img.data.subarray(0, 3))).toEqual([100, 100, 100]);
    expect(Array.from(img.data.subarray(3, 6))).toEqual([114, 50, 50]); // halfway to jet(1) = [128, 0, 0]
    expect(() => blendHeatmap(img, [0, 2])).toThrow(/outside \[0, 1\]/);
    expect(() => blendHeatmap(img, [0])).toThrow(/expected 2×1/);
  });
  it('draws text pixels inside its box and fits long text', () => {
    const img = createRgb(40, 12);
    const w = drawText(img, 0, 0, 'I', [255, 255, 255], { scale: 1, padding: 1 });
    expect(w).toBe(7);
    // 'I' top row is .###. → columns 1..3 of the glyph, +1 padding.
    const row1 = Array.from({ length: 7 }, (_, x) => img.data[(1 * 40 + x) * 3]);
    expect(row1).toEqual([0, 0, 255, 255, 255, 0, 0]);
    expect(fitText('ABCDEFGHIJ', textWidth('ABCD..'))).toBe('ABCD..');
    expect(fitText('AB', 100)).toBe('AB');
  });
});

describe('output UIDs', () => {
  const ctx: UidContext = { studyInstanceUID: '1.2.3', stackId: 's1', seriesInstanceUIDs: ['1.2.3.4', '1.2.3.5'], modelSha256: 'd'.repeat(64) };
  it('are deterministic, differ per kind, phase and slice, and ignore the series order', () => {
    const all = [
      srInstanceUid(ctx),
      kosInstanceUid(ctx, 'ED'),
      kosInstanceUid(ctx, 'ES'),
      montageInstanceUid(ctx, 'ED'),
      montageInstanceUid(ctx, 'ES'),
      sliceScInstanceUid(ctx, 'ED', 0, { sopInstanceUID: '1.9' }),
      sliceScInstanceUid(ctx, 'ED', 1, { sopInstanceUID: '1.9' }),
      sliceScInstanceUid(ctx, 'ES', 0, { sopInstanceUID: '1.9' }),
      sliceScInstanceUid(ctx, 'ED', 0, { sopInstanceUID: '1.9', frameNumber: 2 }),
      outputSeriesUid(ctx, 'sr'),
      outputSeriesUid(ctx, 'kos'),
    ];
    expect(new Set(all).size).toBe(all.length);
    for (const u of all) expect(u).toMatch(/^2\.25\.[1-9]\d{0,38}$/);
    expect(srInstanceUid({ ...ctx, seriesInstanceUIDs: ['1.2.3.5', '1.2.3.4'] })).toBe(all[0]);
    expect(srInstanceUid({ ...ctx, stackId: 's2' })).not.toBe(all[0]);
    expect(() => srInstanceUid({ ...ctx, modelSha256: 'xyz' })).toThrow(/modelSha256/);
  });
});
