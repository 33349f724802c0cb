/**
 * The report's charts as Vega-Lite specifications, compiled with vega-lite, rendered headless to SVG by
 * vega's View (renderer 'none': no browser, no canvas) and rasterised to PNG by sharp (librsvg).
 */
import sharp from 'sharp';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import { LABELS, type SliceLabel } from '../../inference/decode.js';
import type { Confusion } from '../metrics.js';
import type { EpochRecord } from '../train.js';

/** Class colours of the report (those of the secondary captures, src/sr/render.ts LABEL_COLOURS). */
const CLASS_RANGE = ['#ffaa00', '#00b85a', '#eb3ceb'];

/** Renders a Vega-Lite spec to SVG text and a PNG (2× for sharp lines). */
export async function renderChart(spec: TopLevelSpec): Promise<{ svg: string; png: Buffer }> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    const png = await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer();
    return { svg, png };
  } finally {
    view.finalize();
  }
}

/** One point of a training curve. */
export interface CurvePoint {
  epoch: number;
  fold: string;
  set: 'train' | 'validation';
  metric: 'accuracy' | 'loss';
  value: number;
}

/**
 * The paper's Fig. 3 data from the CV records: per fold and epoch, training accuracy/loss and validation
 * accuracy (argmax, ED+ES) / loss (mean cross-entropy).
 */
export function curvePoints(folds: readonly { fold: number; records: readonly EpochRecord[] }[]): CurvePoint[] {
  const out: CurvePoint[] = [];
  for (const f of folds) {
    const fold = `fold ${f.fold}`;
    for (const r of f.records) {
      out.push({ epoch: r.epoch, fold, set: 'train', metric: 'accuracy', value: r.trainAccuracy });
      out.push({ epoch: r.epoch, fold, set: 'train', metric: 'loss', value: r.trainLoss });
      if (r.val) {
        out.push({ epoch: r.epoch, fold, set: 'validation', metric: 'accuracy', value: r.val.all.argmax.accuracy });
        out.push({ epoch: r.epoch, fold, set: 'validation', metric: 'loss', value: r.val.logLoss });
      }
    }
  }
  return out.filter((p) => Number.isFinite(p.value));
}

/** Fig. 3: accuracy and loss per epoch, each fold a thin line, the mean over folds a thick one; the selected epoch as a rule. */
export function curvesSpec(title: string, points: readonly CurvePoint[], selectedEpoch?: number): TopLevelSpec {
  const colour = { field: 'set', type: 'nominal', title: null, scale: { domain: ['train', 'validation'], range: ['#1f77b4', '#d62728'] } } as const;
  const layers: unknown[] = [
    {
      mark: { type: 'line', strokeWidth: 1, opacity: 0.35 },
      encoding: { x: { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1, format: 'd' } }, y: { field: 'value', type: 'quantitative', title: null }, color: colour, detail: { field: 'fold' } },
    },
    {
      transform: [{ aggregate: [{ op: 'mean', field: 'value', as: 'mean' }], groupby: ['epoch', 'set', 'metric'] }],
      mark: { type: 'line', strokeWidth: 3 },
      encoding: { x: { field: 'epoch', type: 'quantitative' }, y: { field: 'mean', type: 'quantitative', title: null }, color: colour },
    },
  ];
  if (selectedEpoch !== undefined) {
    layers.push({ transform: [{ filter: `datum.epoch === ${selectedEpoch}` }, { aggregate: [{ op: 'count', as: 'n' }], groupby: ['epoch'] }], mark: { type: 'rule', strokeDash: [4, 3], color: '#555' }, encoding: { x: { field: 'epoch', type: 'quantitative' } } });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: 'thin: each fold; thick: mean over folds; dashed: selected epoch' },
    data: { values: points as unknown as Record<string, unknown>[] },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: ['accuracy', 'loss'] } },
    spec: { width: 280, height: 200, layer: layers },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'DejaVu Sans' },
  } as unknown as TopLevelSpec;
}

/** Confusion matrices (rows truth, columns prediction) side by side, e.g. argmax and range-decoded. */
export function confusionSpec(title: string, matrices: readonly { name: string; confusion: Confusion }[]): TopLevelSpec {
  const values = matrices.flatMap((m) => m.confusion.flatMap((row, t) => row.map((count, p) => ({ matrix: m.name, truth: LABELS[t], predicted: LABELS[p], count }))));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    facet: { column: { field: 'matrix', type: 'nominal', title: null, sort: matrices.map((m) => m.name) } },
    spec: {
      width: 150,
      height: 150,
      encoding: {
        x: { field: 'predicted', type: 'nominal', sort: [...LABELS], title: 'prediction' },
        y: { field: 'truth', type: 'nominal', sort: [...LABELS], title: 'truth' },
      },
      layer: [
        { mark: 'rect', encoding: { color: { field: 'count', type: 'quantitative', scale: { scheme: 'blues' }, legend: null } } },
        {
          transform: [{ joinaggregate: [{ op: 'max', field: 'count', as: 'maxCount' }], groupby: ['matrix'] }],
          mark: { type: 'text', fontSize: 14 },
          encoding: { text: { field: 'count', type: 'quantitative' }, color: { condition: { test: 'datum.count > 0.5 * datum.maxCount', value: 'white' }, value: 'black' } },
        },
      ],
    },
    config: { font: 'DejaVu Sans' },
  } as unknown as TopLevelSpec;
}

/** One t-SNE point. */
export interface TsnePoint {
  x: number;
  y: number;
  truth: SliceLabel;
  predicted: SliceLabel;
}

/** t-SNE of the penultimate features: colour = truth, filled circle = right, cross = wrong. */
export function tsneSpec(title: string, subtitle: string, points: readonly TsnePoint[]): TopLevelSpec {
  const values = points.map((p) => ({ ...p, result: p.truth === p.predicted ? 'right' : 'wrong' }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle },
    data: { values },
    width: 360,
    height: 320,
    mark: { type: 'point', filled: true, size: 40, opacity: 0.8 },
    encoding: {
      x: { field: 'x', type: 'quantitative', axis: null, scale: { zero: false } },
      y: { field: 'y', type: 'quantitative', axis: null, scale: { zero: false } },
      color: { field: 'truth', type: 'nominal', title: 'truth', scale: { domain: [...LABELS], range: CLASS_RANGE } },
      shape: { field: 'result', type: 'nominal', title: 'prediction', scale: { domain: ['right', 'wrong'], range: ['circle', 'cross'] } },
    },
    config: { font: 'DejaVu Sans' },
  } as unknown as TopLevelSpec;
}

/** Table 2 at a glance: accuracy, soft accuracy and micro-AUC per cell, grouped by depth. */
export function summarySpec(rows: readonly { model: string; depth: string; metric: string; value: number }[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Accuracy, soft accuracy and micro-AUC per model',
    data: { values: rows as unknown as Record<string, unknown>[] },
    facet: { row: { field: 'depth', type: 'nominal', title: 'depth' } },
    spec: {
      width: 420,
      height: { step: 12 },
      mark: 'bar',
      encoding: {
        y: { field: 'model', type: 'nominal', title: null },
        yOffset: { field: 'metric', type: 'nominal' },
        x: { field: 'value', type: 'quantitative', scale: { domain: [0, 1] }, title: null },
        color: { field: 'metric', type: 'nominal', title: null },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'DejaVu Sans' },
  } as unknown as TopLevelSpec;
}
