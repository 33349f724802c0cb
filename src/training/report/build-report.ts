/**
 * `sax-range report --run DIR [--out DIR]`: one HTML page with PNG figures beside it, from a grid run folder.
 *
 * Sections (element ids in index.html, and `sections` in report.json):
 * - `run`: protocol, data, split, backend, versions, host;
 * - `results` (the paper's Table 2): per depth, every cell's accuracy, soft accuracy, micro-AUC, class-size
 *   weighted AUC, F1 per class and range-exact rate, on the held-out test predictions when the cell has them,
 *   else the out-of-fold CV predictions (said per row); ★ marks the learning rate with the best CV score per
 *   model and depth (never chosen on test results); plus a bar chart of the same;
 * - `timing` (Table 1): parameters, mean epoch time, samples/s, CV and final training time, test time per image;
 * - `curves` (Fig. 3): per cell, training and validation accuracy and loss per fold with the mean;
 * - `confusion`: per cell, confusion matrices (argmax and range-decoded) and per-class precision/recall/F1/AUC;
 * - `tsne`: per cell with `features.bin`, t-SNE of the penultimate features;
 * - `gradcam` (Fig. 6): per cell with `gradcam.bin`, the (truth, prediction) grid.
 * `report.json` holds the same numbers (metrics per cell, t-SNE coordinates, figure files) for machines.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LABELS } from '../../inference/decode.js';
import { evaluateModel, type ModelEvaluation } from '../evaluate.js';
import { confusionSpec, curvePoints, curvesSpec, renderChart, summarySpec, tsneSpec } from './charts.js';
import { renderGradCamGrid } from './gradcam-grid.js';
import { readRunFolder, type CellData, type CellDepth, type RunData } from './run-folder.js';
import { embedTsne, type TsneEmbedding, type TsneOptions } from './tsne.js';

export const REPORT_SCHEMA = 'sax-range/report@1';

/** The report's sections, in page order (element ids of index.html). */
export const REPORT_SECTIONS = ['run', 'results', 'timing', 'curves', 'confusion', 'tsne', 'gradcam'] as const;
export type ReportSection = (typeof REPORT_SECTIONS)[number];

export interface ReportOptions {
  /** The run folder. */
  run: string;
  /**
   * Output folder (index.html, figures/, report.json).
   * @defaultValue `<run>/report`
   */
  out?: string;
  tsne?: TsneOptions;
  /** Grad-CAM tiles per (truth, prediction) block. @defaultValue 3 */
  gradcamPerPair?: number;
  /** Progress lines (one per figure). */
  log?: (line: string) => void;
}

export interface CellReport {
  id: string;
  name: string;
  group: string;
  architecture: string;
  alpha?: number;
  depth: CellDepth;
  learningRate: number;
  done: boolean;
  evaluatedOn?: 'test' | 'cv';
  metrics?: ModelEvaluation;
  /** CV score at the selected epoch (mean validation curve) and whether it is the best LR of its model and depth. */
  cvScore?: number;
  bestOfModel: boolean;
  selectedEpoch?: number;
  timings?: Record<string, number | undefined>;
  params?: { params?: number; trainableParams?: number };
  figures: Partial<Record<'curves' | 'confusion' | 'tsne' | 'gradcam', string>>;
  tsne?: Omit<TsneEmbedding, 'indices'> & { points: number; source: string; layer: string; truth: string[]; predicted: string[] };
  gradcam?: { tiles: number; counts: Record<string, number> };
}

export interface ReportResult {
  out: string;
  html: string;
  json: string;
  figures: string[];
  cells: CellReport[];
}

const esc = (s: unknown) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
const fmt = (x: number | undefined, d = 3) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
const secs = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '–' : x < 100 ? x.toFixed(2) : x.toFixed(0));
const int = (x: number | undefined) => (x === undefined ? '–' : x.toLocaleString('en-US'));
const safe = (id: string) => id.replace(/[^A-Za-z0-9._-]/g, '_');

function depthName(d: CellDepth): string {
  return d === 'full' ? 'full (from scratch)' : `depth ${d}`;
}

function modelName(c: CellData['cell']): string {
  return c.alpha !== undefined && c.alpha !== 1 ? `${c.architecture} (α ${c.alpha})` : c.architecture;
}

function cvScore(c: CellData): number | undefined {
  const sel = c.result?.selection;
  if (!sel) return undefined;
  return sel.curve.find((p) => p.epoch === sel.epoch)?.mean;
}

/** Builds the report of a run folder. */
export async function buildReport(opts: ReportOptions): Promise<ReportResult> {
  const runDir = resolve(opts.run);
  const out = resolve(opts.out ?? join(runDir, 'report'));
  const figDir = join(out, 'figures');
  await mkdir(figDir, { recursive: true });
  const log = opts.log ?? (() => {});
  const data = await readRunFolder(runDir);
  const figures: string[] = [];
  const saveFig = async (name: string, png: Buffer) => {
    await writeFile(join(figDir, name), png);
    figures.push(`figures/${name}`);
    log(`figure ${name}`);
    return `figures/${name}`;
  };

  // Best learning rate per (model, depth) by CV score.
  const best = new Map<string, { id: string; score: number }>();
  for (const c of data.cells) {
    const s = cvScore(c);
    if (s === undefined) continue;
    const key = `${modelName(c.cell)}|${c.cell.depth}`;
    const b = best.get(key);
    if (!b || s > b.score) best.set(key, { id: c.cell.id, score: s });
  }

  const cells: CellReport[] = [];
  for (const c of data.cells) {
    const r = c.result;
    const key = `${modelName(c.cell)}|${c.cell.depth}`;
    const rep: CellReport = {
      id: c.cell.id,
      name: c.cell.name,
      group: c.cell.group,
      architecture: modelName(c.cell),
      alpha: c.cell.alpha,
      depth: c.cell.depth,
      learningRate: c.cell.learningRate,
      done: !!r,
      cvScore: cvScore(c),
      bestOfModel: best.get(key)?.id === c.cell.id,
      selectedEpoch: r?.selection?.epoch,
      timings: r ? { ...r.timings } : undefined,
      params: r?.model ? { params: r.model.params, trainableParams: r.model.trainableParams } : undefined,
      figures: {},
    };
    const fid = safe(c.cell.id);
    if (c.predictions?.stacks.length) {
      rep.evaluatedOn = c.predictions.source;
      rep.metrics = evaluateModel(c.predictions.stacks);
      const { png } = await renderChart(
        confusionSpec(`${c.cell.id}: confusion (${c.predictions.source === 'test' ? 'test' : 'out-of-fold CV'}, n = ${rep.metrics.n})`, [
          { name: 'argmax', confusion: rep.metrics.confusion },
          { name: 'range decoded', confusion: rep.metrics.confusionDecoded },
        ]),
      );
      rep.figures.confusion = await saveFig(`confusion-${fid}.png`, png);
    }
    if (r?.cv?.epochs.length) {
      const pts = curvePoints(r.cv.epochs);
      if (pts.length) {
        const { png } = await renderChart(curvesSpec(`${c.cell.id}: training curves, ${r.cv.folds}-fold CV`, pts, r.selection?.epoch));
        rep.figures.curves = await saveFig(`curves-${fid}.png`, png);
      }
    }
    if (c.features && c.features.rows.length >= 3) {
      const emb = embedTsne(c.features.values, c.features.dim, opts.tsne);
      const rows = emb.indices.map((i) => c.features!.rows[i]);
      const points = emb.coords.map(([x, y], k) => ({ x, y, truth: rows[k].truth, predicted: rows[k].predicted }));
      const subtitle = `${c.features.layer} features (${c.features.dim}-d), ${emb.indices.length} of ${emb.total} ${c.features.source === 'test' ? 'test' : 'CV'} slices; perplexity ${emb.perplexity.toFixed(1)}, ${emb.iterations} iterations, seed ${emb.seed}`;
      const { png } = await renderChart(tsneSpec(`${c.cell.id}: t-SNE`, subtitle, points));
      rep.figures.tsne = await saveFig(`tsne-${fid}.png`, png);
      rep.tsne = {
        coords: emb.coords,
        perplexity: emb.perplexity,
        iterations: emb.iterations,
        seed: emb.seed,
        total: emb.total,
        points: emb.coords.length,
        source: c.features.source,
        layer: c.features.layer,
        truth: rows.map((x) => x.truth),
        predicted: rows.map((x) => x.predicted),
      };
    }
    if (c.gradcam && c.gradcam.tiles.length) {
      const grid = await renderGradCamGrid(c.gradcam, { perPair: opts.gradcamPerPair });
      rep.figures.gradcam = await saveFig(`gradcam-${fid}.png`, grid.png);
      rep.gradcam = { tiles: c.gradcam.tiles.length, counts: grid.counts };
    }
    cells.push(rep);
  }

  let summaryFig: string | undefined;
  const summaryRows = cells
    .filter((c) => c.metrics)
    .flatMap((c) => [
      { model: `${c.architecture} lr ${c.learningRate}`, depth: depthName(c.depth), metric: 'accuracy', value: c.metrics!.accuracy },
      { model: `${c.architecture} lr ${c.learningRate}`, depth: depthName(c.depth), metric: 'soft accuracy', value: c.metrics!.softAccuracy },
      { model: `${c.architecture} lr ${c.learningRate}`, depth: depthName(c.depth), metric: 'micro-AUC', value: c.metrics!.microAuc },
    ])
    .filter((r) => Number.isFinite(r.value));
  if (summaryRows.length) summaryFig = await saveFig('summary.png', (await renderChart(summarySpec(summaryRows))).png);

  const html = renderHtml(data, cells, summaryFig);
  const htmlFile = join(out, 'index.html');
  await writeFile(htmlFile, html);
  const jsonFile = join(out, 'report.json');
  await writeFile(
    jsonFile,
    `${JSON.stringify(
      {
        schema: REPORT_SCHEMA,
        run: { dir: runDir, protocol: data.run.protocol.name ?? null, status: data.run.status, backend: data.run.backend, cells: data.run.cells.length },
        sections: REPORT_SECTIONS,
        figures,
        cells,
        createdAt: new Date().toISOString(),
      },
      (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v),
    )}\n`,
  );
  return { out, html: htmlFile, json: jsonFile, figures, cells };
}

function renderHtml(data: RunData, cells: CellReport[], summaryFig: string | undefined): string {
  const run = data.run;
  const H: string[] = [];
  const depths: CellDepth[] = [0, 1, 'full'];
  const done = cells.filter((c) => c.done).length;
  H.push(
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>Training report: ${esc(run.protocol.name ?? data.dir)}</title>`,
    '<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}' +
      'th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}td.l,th.l{text-align:left}' +
      'tr.best td{background:#eef8ee}img{max-width:100%;border:1px solid #eee;margin:4px 0}figure{margin:1em 0}figcaption{font-size:90%;color:#555}' +
      '.note{color:#555;font-size:92%}</style>',
    '</head><body>',
    `<h1>Training report: ${esc(run.protocol.name ?? '')}</h1>`,
  );

  // Run
  H.push('<section id="run"><h2>Run</h2><table>');
  const rows: [string, string][] = [
    ['run folder', data.dir],
    ['protocol', `${run.protocol.name ?? ''}${run.protocolFile ? ` (${run.protocolFile})` : ''}${run.protocol.description ? ` — ${run.protocol.description}` : ''}`],
    ['dataset', run.dataset?.spec ?? ''],
    ['test dataset', run.testDataset?.spec ?? (run.split ? `${run.split.method}: ${run.split.test.length} held-out subjects` : '–')],
    ['split', run.split ? `${run.split.trainVal.length} train/val subjects in ${run.split.folds.length} folds; ${run.split.test.length} test subjects` : '–'],
    ['status', `${run.status}; ${done} of ${cells.length} cells done`],
    ['backend', run.backend],
    ['versions', Object.entries(run.versions ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')],
    ['host', run.host ? `${run.host.cpuModel ?? ''} × ${run.host.cpus ?? '?'}, ${run.host.totalMemoryGB ?? '?'} GB, ${run.host.platform ?? ''}/${run.host.arch ?? ''}` : '–'],
  ];
  for (const [k, v] of rows) H.push(`<tr><th class="l">${esc(k)}</th><td class="l">${esc(v)}</td></tr>`);
  H.push('</table></section>');

  // Table 2
  H.push(
    '<section id="results"><h2>Results (Table 2)</h2>',
    '<p class="note">Accuracy and F1 on the argmax label. Soft accuracy (the paper\'s): a wrong label counts when it is the true label of the adjacent labelled slice of the same subject and phase. ' +
      'Micro-AUC: one ROC AUC over the one-hot truth × probabilities of all classes (sklearn <code>average="micro"</code>, the paper\'s <code>auc_micro</code>); ' +
      'weighted AUC: the one-vs-rest AUCs averaged with class sizes as weights (sklearn <code>average="weighted"</code>). ' +
      'Range exact: stacks with every slice right, argmax / after range decoding (OAP* IN+ OBS*). ★ = the learning rate with the best CV score (mean validation curve at the selected epoch) for that model and depth.</p>',
  );
  for (const d of depths) {
    const dc = cells.filter((c) => c.depth === d);
    if (!dc.length) continue;
    H.push(`<h3>${esc(depthName(d))}</h3><table><tr><th class="l">model</th><th>lr</th><th class="l">evaluated on</th><th>n</th><th>accuracy</th><th>soft accuracy</th><th>micro-AUC</th><th>weighted AUC</th>` + LABELS.map((l) => `<th>F1 ${l}</th>`).join('') + '<th>range exact (argmax / decoded)</th><th>CV score</th></tr>');
    for (const c of dc) {
      const m = c.metrics;
      const evalOn = !c.done ? 'not done' : c.evaluatedOn === 'test' ? 'test' : c.evaluatedOn === 'cv' ? 'CV out-of-fold' : 'no predictions';
      H.push(
        `<tr class="${c.bestOfModel ? 'best' : ''}" data-cell="${esc(c.id)}"><td class="l">${c.bestOfModel ? '★ ' : ''}${esc(c.architecture)}</td><td>${esc(c.learningRate)}</td><td class="l">${esc(evalOn)}</td><td>${m ? m.n : '–'}</td>` +
          `<td>${fmt(m?.accuracy)}</td><td>${fmt(m?.softAccuracy)}</td><td>${fmt(m?.microAuc)}</td><td>${fmt(m?.weightedAuc)}</td>` +
          LABELS.map((l) => `<td>${fmt(m?.perClass[l].f1)}</td>`).join('') +
          `<td>${m ? `${fmt(m.rangeExact.argmax)} / ${fmt(m.rangeExact.decoded)}` : '–'}</td><td>${fmt(c.cvScore)}</td></tr>`,
      );
    }
    H.push('</table>');
  }
  if (summaryFig) H.push(`<figure><img src="${esc(summaryFig)}" alt="accuracy, soft accuracy and micro-AUC per model"><figcaption>The table's main metrics per model.</figcaption></figure>`);
  H.push('</section>');

  // Table 1
  H.push(
    '<section id="timing"><h2>Computation time (Table 1)</h2>',
    `<p class="note">Backend ${esc(run.backend)}${run.host?.cpuModel ? ` on ${esc(run.host.cpuModel)} × ${esc(run.host.cpus)}` : ''}. Training seconds exclude validation; test seconds per image include preprocessing.</p>`,
    '<table><tr><th class="l">model</th><th class="l">depth</th><th>lr</th><th>parameters</th><th>trainable</th><th>mean epoch s</th><th>samples/s</th><th>CV training s</th><th>final training s</th><th>test s / image</th><th>cell wall s</th></tr>',
  );
  for (const c of cells) {
    const t = c.timings ?? {};
    H.push(
      `<tr data-cell="${esc(c.id)}"><td class="l">${esc(c.architecture)}</td><td class="l">${esc(depthName(c.depth))}</td><td>${esc(c.learningRate)}</td><td>${int(c.params?.params)}</td><td>${int(c.params?.trainableParams)}</td>` +
        `<td>${secs(t.meanEpochSeconds)}</td><td>${fmt(t.meanSamplesPerSecond, 1)}</td><td>${secs(t.cvTrainSeconds)}</td><td>${secs(t.finalTrainSeconds)}</td><td>${fmt(t.secondsPerImageTest, 4)}</td><td>${secs(t.wallSeconds)}</td></tr>`,
    );
  }
  H.push('</table></section>');

  const figSection = (id: ReportSection, title: string, note: string, kind: keyof CellReport['figures'], missing: string) => {
    H.push(`<section id="${id}"><h2>${esc(title)}</h2><p class="note">${note}</p>`);
    for (const c of cells) {
      const f = c.figures[kind];
      if (f) H.push(`<figure data-cell="${esc(c.id)}"><img src="${esc(f)}" alt="${esc(`${title}: ${c.id}`)}"><figcaption>${esc(c.id)}</figcaption></figure>`);
      else H.push(`<p class="note" data-cell="${esc(c.id)}">${esc(c.id)}: ${esc(c.done ? missing : 'cell not done')}</p>`);
      if (id === 'confusion' && c.metrics) {
        const m = c.metrics;
        H.push(
          '<table><tr><th class="l">class</th><th>support</th><th>precision</th><th>recall</th><th>F1</th><th>AUC (one vs rest)</th></tr>' +
            LABELS.map((l) => `<tr><td class="l">${l}</td><td>${m.perClass[l].support}</td><td>${fmt(m.perClass[l].precision)}</td><td>${fmt(m.perClass[l].recall)}</td><td>${fmt(m.perClass[l].f1)}</td><td>${fmt(m.perClass[l].auc)}</td></tr>`).join('') +
            `<tr><td class="l">all</td><td>${m.n}</td><td colspan="2">balanced accuracy ${fmt(m.balancedAccuracy)}</td><td colspan="2">micro ${fmt(m.microAuc)}, weighted ${fmt(m.weightedAuc)}, macro ${fmt(m.macroAuc)}</td></tr></table>`,
        );
      }
    }
    H.push('</section>');
  };
  figSection('curves', 'Training curves (Fig. 3)', 'Per fold (thin) and mean over folds (thick): training and validation accuracy (argmax, ED+ES) and loss (cross-entropy); the dashed rule is the epoch chosen from the mean validation curve.', 'curves', 'no CV records');
  figSection('confusion', 'Confusion matrices', 'Rows truth, columns prediction (OAP, IN, OBS): argmax and after range decoding.', 'confusion', 'no predictions');
  figSection('tsne', 't-SNE of the penultimate features', 'Exact t-SNE (DruidJS, seeded) of the GAP features the cell saved; colour = truth, cross = misclassified.', 'tsne', 'no features saved (features.bin)');
  figSection('gradcam', 'Grad-CAM by truth and prediction (Fig. 6)', 'Rows truth, columns prediction; each tile is the network input with its Grad-CAM (jet) for the predicted class and that class\'s probability; green frames = right, red = wrong.', 'gradcam', 'no Grad-CAM tiles saved (gradcam.bin)');
  H.push('</body></html>');
  return `${H.join('\n')}\n`;
}
