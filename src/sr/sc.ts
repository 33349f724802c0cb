/**
 * RGB Secondary Capture images (SOP class 1.2.840.10008.5.1.4.1.1.7, PS3.3 A.8.1): one per slice and
 * phase (the slice windowed to 8 bits, its Grad-CAM overlaid as a jet colour map, class and probability
 * burned in), and one montage per phase (all slices apex → base, each tile framed in its class colour).
 *
 * Attributes follow the zero-error set of notes/dicom-interop.md §5–6: Modality OT, ConversionType WSD,
 * BodyPartExamined, PatientOrientation (empty), ImageType DERIVED\SECONDARY, SourceImageSequence → the
 * source MR, DerivationDescription naming the model, 8/8/7 RGB interleaved, PixelData OB.
 */
import type { PhaseKey, Result } from '../inference/result.js';
import { SopClass } from '../dicom/uids.js';
import {
  commonAttributes,
  dicomDate,
  dicomTime,
  imageRef,
  now,
  prob3,
  resolveOptions,
  seriesNumber,
  uidContext,
  type BuildOptions,
  type ResolvedOptions,
} from './common.js';
import { referencedSopItem } from './content.js';
import { SrInputError } from './errors.js';
import { writePart10 } from './part10.js';
import {
  blendHeatmap,
  blit,
  contrastingText,
  createRgb,
  dim,
  drawText,
  fillRect,
  fitText,
  grayToRgb,
  LABEL_COLOURS,
  percentileWindow,
  resizeBilinear,
  strokeRect,
  textBox,
  WHITE,
  windowTo8bit,
  type RgbImage,
} from './render.js';
import { camsOf, checkCam, checkSources, type CamInput, type SourceImage, type SourceInfo } from './source.js';
import type { BuiltObject } from './sr.js';
import { montageInstanceUid, outputSeriesUid, sliceScInstanceUid } from './uid.js';

const DARK: readonly [number, number, number] = [0, 0, 0];
const GREY: readonly [number, number, number] = [190, 190, 190];
const NOT_FOR_DIAGNOSIS = 'NOT FOR DIAGNOSTIC USE';

function checkPhase(phase: PhaseKey): void {
  if (phase !== 'ED' && phase !== 'ES') throw new SrInputError(`phase must be 'ED' or 'ES', got ${String(phase)}`);
}

/** The dataset of an RGB SC around rendered pixels. */
function scDataset(
  sources: SourceInfo,
  o: ResolvedOptions,
  at: Date,
  id: { sopInstanceUID: string; seriesInstanceUID: string; seriesNumber: number; instanceNumber: number; seriesDescription: string },
  img: RgbImage,
  refs: readonly SourceImage[],
  derivation: string,
  comments: string,
): Record<string, unknown> {
  // OB values have even length (PS3.5 §7.1.1): pad an odd pixel count with one zero byte.
  let bytes = img.data;
  if (bytes.length % 2 !== 0) {
    bytes = new Uint8Array(img.data.length + 1);
    bytes.set(img.data);
  }
  const ds: Record<string, unknown> = {
    ...commonAttributes(sources.patientStudy, o, at, { sopClassUID: SopClass.SecondaryCaptureImageStorage, modality: 'OT', ...id }),
    ImageType: ['DERIVED', 'SECONDARY'],
    ConversionType: 'WSD',
    BodyPartExamined: sources.patientStudy.BodyPartExamined ?? 'HEART',
    PatientOrientation: '',
    DateOfSecondaryCapture: dicomDate(at),
    TimeOfSecondaryCapture: dicomTime(at),
    SecondaryCaptureDeviceManufacturer: o.manufacturer,
    SecondaryCaptureDeviceManufacturerModelName: 'sax-range',
    SecondaryCaptureDeviceSoftwareVersions: o.softwareVersion,
    DerivationDescription: derivation.slice(0, 1024),
    SourceImageSequence: refs.map((r) => referencedSopItem(imageRef(r))),
    ImageComments: comments.slice(0, 10240),
    BurnedInAnnotation: o.burnedInAnnotation,
    LossyImageCompression: '00',
    SamplesPerPixel: 3,
    PhotometricInterpretation: 'RGB',
    PlanarConfiguration: 0,
    Rows: img.height,
    Columns: img.width,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: [bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)],
    _vrMap: { PixelData: 'OB' },
  };
  return ds;
}

/** Integer magnification so that the smaller edge is at least 256 pixels (at most 4×). */
function magnification(rows: number, columns: number): number {
  return Math.min(4, Math.max(1, Math.ceil(256 / Math.min(rows, columns))));
}

/** The slice windowed (1st–99th percentile) to grey and magnified, as RGB. */
function renderSlice(img: SourceImage, scale: number): RgbImage {
  const pixels = img.pixels!;
  const gray = windowTo8bit(pixels, percentileWindow(pixels));
  if (scale === 1) return grayToRgb(gray, img.columns, img.rows);
  const w = img.columns * scale;
  const h = img.rows * scale;
  const big = resizeBilinear(gray, img.columns, img.rows, w, h);
  const out = new Uint8Array(w * h);
  for (let i = 0; i < big.length; i++) out[i] = Math.round(big[i]);
  return grayToRgb(out, w, h);
}

/** Renders the slice SC's pixels: grey slice, Grad-CAM overlay, burned-in caption. */
export function renderSliceSc(result: Result, img: SourceImage, cam: Float32Array | undefined, phase: PhaseKey, i: number, o: ResolvedOptions): RgbImage {
  const p = result.phases[phase];
  const s = p.slices[i];
  const scale = magnification(img.rows, img.columns);
  const out = renderSlice(img, scale);
  if (cam) {
    const grid = scale === 1 ? cam : resizeBilinear(cam, img.columns, img.rows, out.width, out.height);
    if (scale !== 1) for (let k = 0; k < grid.length; k++) grid[k] = Math.min(1, Math.max(0, grid[k]));
    blendHeatmap(out, grid, o.heatmap);
  }
  const big = out.width >= 200 ? 2 : 1;
  const margin = 2 * big;
  // Line 1: class badge in its colour, then phase and slice number.
  const colour = LABEL_COLOURS[s.label];
  let x = margin;
  x += drawText(out, x, margin, s.label, contrastingText(colour), { scale: big, background: colour, backgroundAlpha: 1 });
  drawText(out, x + margin, margin, `${phase} ${i + 1}/${p.slices.length}`, WHITE, { scale: big, background: DARK });
  // Line 2: the probability of the class.
  const line2y = margin + textBox('X', { scale: big }).height + margin;
  drawText(out, margin, line2y, `P(${s.label}) ${prob3(s.probabilities[s.label])}`, WHITE, { scale: big, background: DARK });
  // Bottom lines: all probabilities (+ argmax when it differs), then provenance.
  const small = 1;
  const lineH = textBox('X', { scale: small }).height;
  const maxW = out.width - 2 * margin;
  const probs = `OAP ${prob3(s.probabilities.OAP)} IN ${prob3(s.probabilities.IN)} OBS ${prob3(s.probabilities.OBS)}`;
  const argmax = s.predicted !== s.label ? `  ARGMAX ${s.predicted}` : '';
  const model = `${result.model.id} ${result.model.version}${cam ? ' GRAD-CAM' : ''}`;
  drawText(out, margin, out.height - margin - 3 * lineH, fitText(probs + argmax, maxW - 2, small), WHITE, { scale: small, background: DARK });
  drawText(out, margin, out.height - margin - 2 * lineH, fitText(model, maxW - 2, small), GREY, { scale: small, background: DARK });
  drawText(out, margin, out.height - margin - lineH, fitText(NOT_FOR_DIAGNOSIS, maxW - 2, small), GREY, { scale: small, background: DARK });
  return out;
}

/** Builds one slice SC once inputs are checked. */
export function buildSliceScChecked(
  result: Result,
  sources: SourceInfo,
  cams: CamInput | undefined,
  phase: PhaseKey,
  i: number,
  o: ResolvedOptions,
): BuiltObject {
  checkPhase(phase);
  const p = result.phases[phase];
  if (!Number.isInteger(i) || i < 0 || i >= p.slices.length) {
    throw new SrInputError(`slice must be an integer in 0..${p.slices.length - 1} (apex → base position), got ${i}`);
  }
  const img = sources.images[phase][i];
  const list = camsOf(cams, phase);
  if (list && list.length !== p.slices.length) throw new SrInputError(`cams.${phase} has ${list.length} maps, the result ${p.slices.length} slices`);
  const cam = list?.[i];
  if (cam) checkCam(cam, img, `cams.${phase}[${i}]`);
  const ctx = uidContext(result);
  const at = now(o);
  const s = p.slices[i];
  const kind = phase === 'ED' ? 'sc-slice-ED' : 'sc-slice-ES';
  const pixels = renderSliceSc(result, img, cam, phase, i, o);
  const derivation =
    `sax-range ${o.softwareVersion}: ${phase} slice ${i + 1}/${p.slices.length} (apex to base) windowed to 8 bits` +
    (cam ? `, Grad-CAM of class ${s.label} overlaid (jet colour map)` : '') +
    `, class and probability burned in; model ${result.model.id} ${result.model.version} sha256 ${result.model.sha256}`;
  const dataset = scDataset(
    sources,
    o,
    at,
    {
      sopInstanceUID: sliceScInstanceUid(ctx, phase, i, img),
      seriesInstanceUID: outputSeriesUid(ctx, kind),
      seriesNumber: seriesNumber(o, kind),
      instanceNumber: i + 1,
      seriesDescription: `sax-range Grad-CAM ${phase} (not for diagnostic use)`,
    },
    pixels,
    [img],
    derivation,
    `${phase} slice ${i + 1}/${p.slices.length}: ${s.label} (argmax ${s.predicted}); P(OAP) ${prob3(s.probabilities.OAP)}, ` +
      `P(IN) ${prob3(s.probabilities.IN)}, P(OBS) ${prob3(s.probabilities.OBS)}. Not for diagnostic use.`,
  );
  return { dataset, part10: writePart10(dataset), sopInstanceUID: dataset.SOPInstanceUID as string, seriesInstanceUID: dataset.SeriesInstanceUID as string };
}

/**
 * Builds the Grad-CAM SC of one slice: `i` is its apex → base position in `result.phases[phase].slices`.
 * `cams` may be undefined or hold an empty list for the phase (no overlay then); a list of the wrong
 * length, a map of the wrong size or a value outside [0, 1] throws SrInputError, as do bad sources.
 */
export function buildSliceSc(
  result: Result,
  sources: SourceInfo,
  cams: CamInput | undefined,
  phase: PhaseKey,
  i: number,
  opts: BuildOptions,
): BuiltObject {
  const o = resolveOptions(opts);
  const doc = checkSources(result, sources, true);
  return buildSliceScChecked(doc, sources, cams, phase, i, o);
}

/** Montage layout: columns × rows tiles of `tile` pixels, with header and legend bands. */
export function montageLayout(n: number, tile: number): { columns: number; rows: number; gap: number; header: number; footer: number; width: number; height: number } {
  const columns = Math.max(1, Math.ceil(Math.sqrt(n)));
  const rows = Math.ceil(n / columns);
  const gap = 4;
  const header = 32;
  const footer = 24;
  let width = columns * tile + (columns + 1) * gap;
  if (width < 360) width = 360;
  if (width % 2) width++;
  const height = header + rows * tile + (rows + 1) * gap + footer;
  return { columns, rows, gap, header, footer, width, height };
}

/** Renders the montage of one phase. */
export function renderMontage(result: Result, images: readonly SourceImage[], phase: PhaseKey, o: ResolvedOptions): RgbImage {
  const p = result.phases[phase];
  const n = p.slices.length;
  const tile = o.montageTileSize;
  const L = montageLayout(n, tile);
  const out = createRgb(L.width, L.height, [24, 24, 24]);
  // One window for the whole phase, so that brightness compares across slices.
  const all = new Float32Array(images.reduce((a, im) => a + im.pixels!.length, 0));
  let off = 0;
  for (const im of images) {
    all.set(im.pixels!, off);
    off += im.pixels!.length;
  }
  const win = percentileWindow(all);
  const border = 4;
  const gridW = L.columns * tile + (L.columns + 1) * L.gap;
  const x0 = Math.floor((L.width - gridW) / 2);
  images.forEach((im, i) => {
    const s = p.slices[i];
    const col = i % L.columns;
    const row = Math.floor(i / L.columns);
    const tx = x0 + L.gap + col * (tile + L.gap);
    const ty = L.header + L.gap + row * (tile + L.gap);
    const inner = tile - 2 * border;
    const k = Math.min(inner / im.columns, inner / im.rows);
    const w = Math.max(1, Math.round(im.columns * k));
    const h = Math.max(1, Math.round(im.rows * k));
    const gray = windowTo8bit(resizeBilinear(im.pixels!, im.columns, im.rows, w, h), win);
    const t = grayToRgb(gray, w, h);
    if (s.label !== 'IN') dim(t, 0.55);
    fillRect(out, tx, ty, tile, tile, DARK);
    blit(out, t, tx + border + Math.floor((inner - w) / 2), ty + border + Math.floor((inner - h) / 2));
    const colour = LABEL_COLOURS[s.label];
    strokeRect(out, tx, ty, tile, tile, colour, border);
    drawText(out, tx + border, ty + border, `${i + 1} ${s.label}`, contrastingText(colour), { scale: 2, background: colour, backgroundAlpha: 1 });
    const prob = prob3(s.probabilities[s.label]);
    const pb = textBox(prob, { scale: 1 });
    drawText(out, tx + tile - border - pb.width, ty + tile - border - pb.height, prob, WHITE, { scale: 1, background: DARK });
  });
  // Header: the IN range.
  const r = p.inRange;
  const title = `${phase}  IN ${r.first + 1}-${r.last + 1} (${r.count} OF ${n})  APEX -> BASE`;
  drawText(out, 6, 6, fitText(title, L.width - 12, 2), WHITE, { scale: 2 });
  // Footer: legend and provenance.
  let lx = 6;
  const ly = L.height - L.footer + 6;
  for (const label of ['OAP', 'IN', 'OBS'] as const) {
    lx += drawText(out, lx, ly, label, contrastingText(LABEL_COLOURS[label]), { scale: 1, background: LABEL_COLOURS[label], backgroundAlpha: 1, padding: 3 }) + 6;
  }
  drawText(out, lx, ly + 2, fitText(`${result.model.id} ${result.model.version} - ${NOT_FOR_DIAGNOSIS}`, L.width - lx - 6, 1), GREY, { scale: 1, padding: 1 });
  return out;
}

/** Builds the montage SC of one phase once inputs are checked. */
export function buildMontageScChecked(result: Result, sources: SourceInfo, phase: PhaseKey, o: ResolvedOptions): BuiltObject {
  checkPhase(phase);
  const ctx = uidContext(result);
  const at = now(o);
  const p = result.phases[phase];
  const images = sources.images[phase];
  const pixels = renderMontage(result, images, phase, o);
  const r = p.inRange;
  const dataset = scDataset(
    sources,
    o,
    at,
    {
      sopInstanceUID: montageInstanceUid(ctx, phase),
      seriesInstanceUID: outputSeriesUid(ctx, 'sc-montage'),
      seriesNumber: seriesNumber(o, 'sc-montage'),
      instanceNumber: phase === 'ED' ? 1 : 2,
      seriesDescription: 'sax-range slice class montage (not for diagnostic use)',
    },
    pixels,
    images,
    `sax-range ${o.softwareVersion}: montage of the ${p.slices.length} ${phase} slices apex to base, windowed to 8 bits, ` +
      `framed in their class colour (OAP amber, IN green, OBS magenta); model ${result.model.id} ${result.model.version} sha256 ${result.model.sha256}`,
    `${phase}: IN slices ${r.first + 1}-${r.last + 1} of ${p.slices.length} (apex to base). Not for diagnostic use.`,
  );
  return { dataset, part10: writePart10(dataset), sopInstanceUID: dataset.SOPInstanceUID as string, seriesInstanceUID: dataset.SeriesInstanceUID as string };
}

/** Builds the montage SC of one phase (all slices apex → base, class-coloured frames, the IN range in the header). */
export function buildMontageSc(result: Result, sources: SourceInfo, phase: PhaseKey, opts: BuildOptions): BuiltObject {
  const o = resolveOptions(opts);
  const doc = checkSources(result, sources, true);
  return buildMontageScChecked(doc, sources, phase, o);
}
