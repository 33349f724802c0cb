import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import { readInstanceMeta } from '../../src/dicom/meta.js';
import type { Result } from '../../src/inference/result.js';
import { createLogger } from '../../src/log.js';
import { startService, type Service } from '../../src/main.js';
import { writePhantomStudy, type PhantomTruth } from '../../src/phantom/index.js';
import { storescu } from '../helpers/dcmtk.js';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc.js';
import { removeServiceKeys, testServiceConfig } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

/**
 * The viewer and the labeller in Debian's Chromium (playwright-core), against a service started here with the
 * shipped model and a bearer token: a phantom study goes in by storescu, the pages are driven like a user
 * would, and what they show and save is compared with the API's documents. Screenshots go to test-artifacts/.
 */
// The callbacks given to page.evaluate/waitForFunction run in the page; the project compiles without DOM types.
declare const document: any;
declare const window: any;
type Img = { src: string; complete: boolean; naturalWidth: number; classList: { contains(c: string): boolean }; dataset: Record<string, string> };
type Tile = { dataset: Record<string, string>; classList: { contains(c: string): boolean }; querySelector(s: string): { getAttribute(a: string): string | null } | null };

const CHROMIUM = '/usr/bin/chromium';
const MODEL_DIR = resolve(process.env.SAX_RANGE_TEST_MODEL ?? 'models/default');
const ARTIFACTS = resolve('test-artifacts');
const TOKEN = 'browser-test-token';
const SLICES = 8;
const logger = createLogger('test', process.env.LOG_LEVEL ?? 'warn');

let root: string;
let config: Config;
let service: Service;
let browser: Browser;
let truth: PhantomTruth;
let doc: Result;
let base: string;
let orthanc: OrthancHandle;

const auth = { Authorization: `Bearer ${TOKEN}` };

async function get(path: string, headers: Record<string, string> = auth): Promise<Response> {
  return fetch(`${base}${path}`, { headers });
}

async function getJson<T>(path: string): Promise<T> {
  const r = await get(path);
  expect(r.status, `${path}: ${r.status}`).toBe(200);
  return (await r.json()) as T;
}

/** A fresh tab that reports page errors as test failures. */
async function newPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}

/** Every slice image on the page has finished loading and has pixels. */
async function imagesLoaded(page: Page, selector: string, count: number): Promise<void> {
  await page.waitForFunction(
    ({ selector, count }) => {
      const imgs = [...document.querySelectorAll(selector)] as Img[];
      return imgs.length === count && imgs.every((i) => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0 && !i.classList.contains('loading'));
    },
    { selector, count },
    { timeout: 30_000 },
  );
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests drive Debian's Chromium (apt-get install -y chromium; .ci/run installs it)`);
  }
  if (!existsSync(join(MODEL_DIR, 'model-card.json'))) throw new Error(`no model at ${MODEL_DIR}: the shipped model is part of the repository`);
  await mkdir(ARTIFACTS, { recursive: true });
  root = await mkdtemp(join(tmpdir(), 'sax-browser-'));
  let paths: string[];
  ({ truth, paths } = await writePhantomStudy(join(root, 'phantom'), { seed: 41, slices: SLICES, phases: 20 }));
  // Orthanc holds the source study: the viewer's links must name Orthanc's own ids. No export: not needed here.
  orthanc = await startOrthanc(join(root, 'orthanc'));
  const toOrthanc = await storescu({ port: orthanc.dicomPort, calledAE: 'ORTHANC' }, paths);
  expect(toOrthanc.code, toOrthanc.output).toBe(0);
  config = testServiceConfig(root, {
    roles: ['scp', 'worker', 'api'],
    modelDir: MODEL_DIR,
    apiToken: TOKEN,
    orthancUrl: orthanc.url,
    orthancUsername: orthanc.auth.username,
    orthancPassword: orthanc.auth.password,
  });
  service = await startService(config, logger);
  base = `http://127.0.0.1:${service.httpPort}`;
  const sent = await storescu({ port: service.dicomPort!, calledAE: config.aeTitle }, paths);
  expect(sent.code, sent.output).toBe(0);
  [doc] = await until(
    'the result document',
    async () => {
      const docs = (await (await get(`/api/studies/${truth.studyInstanceUID}/results`)).json()) as Result[];
      return docs.length ? docs : undefined;
    },
    120_000,
  );
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await service?.close();
  await orthanc?.stop();
  if (config) await removeServiceKeys(config);
  if (root) await rm(root, { recursive: true, force: true });
});

describe('slice images and stacks API', () => {
  it('renders the source slice and its Grad-CAM capture as PNG, with cache headers; bad parameters are 400, unknown slices 404, no token 401', async () => {
    const uid = truth.studyInstanceUID;
    const s = doc.phases.ES.slices[2]!;
    const path = `/api/studies/${uid}/stacks/${doc.stackId}/ES/${s.index}.png`;
    for (const p of [path, `${path}?overlay=cam`]) {
      const r = await get(p);
      expect(r.status, p).toBe(200);
      expect(r.headers.get('content-type')).toBe('image/png');
      expect(r.headers.get('cache-control')).toBe('private, max-age=120');
      expect(r.headers.get('etag')).toBeTruthy();
      const png = new Uint8Array(await r.arrayBuffer());
      expect(Buffer.from(png.subarray(1, 4)).toString('latin1')).toBe('PNG');
    }
    // The CAM image is the worker's secondary capture: RGB (PNG colour type 2), the source is grey (0).
    const colourType = async (p: string) => new Uint8Array(await (await get(p)).arrayBuffer())[25];
    expect(await colourType(path)).toBe(0);
    expect(await colourType(`${path}?overlay=cam`)).toBe(2);

    expect((await get(path, {})).status).toBe(401);
    const bad = [
      `/api/studies/1.2.x/stacks/${doc.stackId}/ED/0.png`,
      `/api/studies/${uid}/stacks/${doc.stackId}/EX/0.png`,
      `/api/studies/${uid}/stacks/${doc.stackId}/ED/-1.png`,
      `/api/studies/${uid}/stacks/${doc.stackId}/ED/01.png`,
      `/api/studies/${uid}/stacks/${doc.stackId}/ED/0.jpg`,
      `/api/studies/${uid}/stacks/bad%20id/ED/0.png`,
      `${path}?overlay=heat`,
    ];
    for (const p of bad) {
      const r = await get(p);
      expect({ p, status: r.status }).toEqual({ p, status: 400 });
      expect(((await r.json()) as { error: string }).error).toBeTruthy();
    }
    expect((await get(`/api/studies/${uid}/stacks/${doc.stackId}/ED/${SLICES + 5}.png`)).status).toBe(404);
    expect((await get(`/api/studies/${uid}/stacks/0123456789abcdef/ED/0.png`)).status).toBe(404);
    expect((await get(`/api/studies/1.2.3.4/stacks`)).status).toBe(404);

    const view = await getJson<{ stacks: Array<{ stackId: string; classified: boolean; phases: Record<'ED' | 'ES', { phaseIndex: number; slices: Array<{ sopInstanceUID: string }> }> }> }>(
      `/api/studies/${uid}/stacks`,
    );
    expect(view.stacks).toHaveLength(1);
    expect(view.stacks[0]!.classified).toBe(true);
    for (const p of ['ED', 'ES'] as const) {
      expect(view.stacks[0]!.phases[p].phaseIndex).toBe(doc.phases[p].phaseIndex);
      expect(view.stacks[0]!.phases[p].slices.map((x) => x.sopInstanceUID)).toEqual(doc.phases[p].slices.map((x) => x.sopInstanceUID));
    }
    // Orthanc Explorer links carry Orthanc's ids (checked against Orthanc itself), and no credentials.
    expect(await getJson('/api/config/ui')).toEqual({ orthancUrl: orthanc.url });
    const links = await getJson<{ orthanc: { study: string; instances: Record<string, string> } }>(`/api/studies/${uid}/stacks`);
    const lookup = async (uidToFind: string) =>
      (await orthanc.api<Array<{ ID: string; Type: string }>>('/tools/lookup', { method: 'POST', body: new TextEncoder().encode(uidToFind) }))[0]!.ID;
    expect(links.orthanc.study).toBe(`${orthanc.url}/app/explorer.html#study?uuid=${await lookup(uid)}`);
    expect(links.orthanc.instances[s.sopInstanceUID]).toBe(`${orthanc.url}/app/explorer.html#instance?uuid=${await lookup(s.sopInstanceUID)}`);
    expect(JSON.stringify(links)).not.toContain(orthanc.auth.password);
    // The pages themselves carry no data and load without the token.
    for (const p of ['/', '/label', '/web/viewer.js', '/web/app.css']) expect((await get(p, {})).status, p).toBe(200);
    expect((await get('/web/nothing.js', {})).status).toBe(404);
  });
});

describe('a study in the spool that is not classified', () => {
  it('lists its stack with the ED/ES slices apex → base and serves its images; no Grad-CAM yet', async () => {
    // Copied straight into the spool: the tracker never hears of it, so no job classifies it.
    const other = await writePhantomStudy(join(root, 'unclassified'), { seed: 42, slices: 6, phases: 20 });
    for (const p of other.paths) {
      const [m] = await readInstanceMeta(p);
      const dest = service.spool.instancePath(m!.studyInstanceUID, m!.seriesInstanceUID, m!.sopInstanceUID);
      await mkdir(dirname(dest), { recursive: true });
      await copyFile(p, dest);
    }
    const uid = other.truth.studyInstanceUID;
    expect(await getJson(`/api/studies/${uid}/results`)).toEqual([]);
    type View = { stacks: Array<{ stackId: string; classified: boolean; phases: Record<'ED' | 'ES', { phaseIndex: number; slices: Array<{ index: number; sopInstanceUID: string }> }> }> };
    const view = await getJson<View>(`/api/studies/${uid}/stacks`);
    expect(view.stacks).toHaveLength(1);
    const st = view.stacks[0]!;
    expect(st.classified).toBe(false);
    for (const p of ['ED', 'ES'] as const) {
      expect(st.phases[p].phaseIndex).toBe(p === 'ED' ? other.truth.ed : other.truth.es);
      expect(st.phases[p].slices.map((x) => x.sopInstanceUID)).toEqual(other.truth.sopInstanceUIDs[p]);
    }
    const path = `/api/studies/${uid}/stacks/${st.stackId}/ES/${st.phases.ES.slices[3]!.index}.png`;
    expect((await get(path)).status).toBe(200);
    const cam = await get(`${path}?overlay=cam`);
    expect(cam.status).toBe(404);
    expect(((await cam.json()) as { error: string }).error).toMatch(/not classified/);

    // It can be labelled before the model ran: labels are checked against the spooled stack.
    const put = (labels: unknown[]) =>
      fetch(`${base}/api/studies/${uid}/labels`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ labels }) });
    const s3 = st.phases.ED.slices[3]!;
    const ok = await put([{ stackId: st.stackId, phase: 'ED', index: s3.index, sopInstanceUID: s3.sopInstanceUID, label: 'IN' }]);
    expect(ok.status, await ok.clone().text()).toBe(200);
    expect(((await getJson<{ labels: Array<{ index: number; label: string; source: string }> }>(`/api/studies/${uid}/labels`)).labels)).toEqual([
      expect.objectContaining({ index: s3.index, label: 'IN', source: 'human' }),
    ]);
    const wrong = await put([{ stackId: st.stackId, phase: 'ED', index: s3.index, sopInstanceUID: '1.2.3', label: 'IN' }]);
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: string }).error).toMatch(/is SOP instance .*, not 1\.2\.3/);
  });
});

describe('viewer', () => {
  it('asks for the token when the page has none, and keeps it for the tab', async () => {
    const { page, errors } = await newPage();
    await page.goto(`${base}/`);
    const dialog = page.locator('#token-dialog[open]');
    await dialog.waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'token-prompt.png') });
    await dialog.locator('input').fill('wrong-token');
    await dialog.locator('button[value="ok"]').click();
    // Refused: asked again.
    await page.locator('#token-dialog[open]').waitFor();
    await dialog.locator('input').fill(TOKEN);
    await dialog.locator('button[value="ok"]').click();
    await page.locator(`.study-item[data-study="${truth.studyInstanceUID}"]`).waitFor();
    await page.locator('.tile').first().waitFor();
    expect(await page.evaluate(() => window.sessionStorage.getItem('sax-range.token'))).toBe(TOKEN);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('shows the labels and IN range of the result JSON for every slice, and switches to the Grad-CAM overlays', async () => {
    const { page, errors } = await newPage();
    await page.goto(`${base}/?study=${truth.studyInstanceUID}&token=${TOKEN}`);
    // The token leaves the address bar (kept in sessionStorage).
    await page.waitForFunction(() => !window.location.search.includes('token='));
    await page.locator('.tile').first().waitFor();
    expect(await page.locator('.tile').count()).toBe(2 * SLICES);
    for (const phase of ['ED', 'ES'] as const) {
      const p = doc.phases[phase];
      const shown = await page.locator(`.stack[data-stack="${doc.stackId}"] .phase[data-phase="${phase}"] .tile`).evaluateAll((tiles) =>
        tiles.map((t) => ({
          index: Number((t as unknown as Tile).dataset.index),
          label: (t as unknown as Tile).querySelector('.badge')!.getAttribute('data-label'),
          inRange: (t as unknown as Tile).classList.contains('in-range'),
        })),
      );
      expect(shown).toEqual(p.slices.map((s, pos) => ({ index: s.index, label: s.label, inRange: pos >= p.inRange.first && pos <= p.inRange.last })));
      await expect(page.locator(`.phase[data-phase="${phase}"] .range-text`).textContent()).resolves.toBe(`IN ${p.inRange.first + 1}–${p.inRange.last + 1} (${p.inRange.count} of ${SLICES})`);
    }
    await imagesLoaded(page, '.tile img', 2 * SLICES);
    const before = await page.locator('.tile img').evaluateAll((imgs) => imgs.map((i) => ({ src: (i as unknown as Img).src, api: (i as unknown as Img).dataset.src })));
    expect(before.every((b) => !b.api!.includes('overlay=cam'))).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'viewer.png') });

    await page.locator('label:has(#cam-toggle)').click();
    await page.waitForFunction(() => ([...document.querySelectorAll('.tile img')] as Img[]).every((i) => i.dataset.src!.endsWith('?overlay=cam')));
    await imagesLoaded(page, '.tile img', 2 * SLICES);
    const after = await page.locator('.tile img').evaluateAll((imgs) => imgs.map((i) => ({ src: (i as unknown as Img).src, api: (i as unknown as Img).dataset.src })));
    after.forEach((a, i) => {
      expect(a.api).toBe(`${before[i]!.api}?overlay=cam`);
      expect(a.src).not.toBe(before[i]!.src);
    });
    await page.screenshot({ path: join(ARTIFACTS, 'viewer-cam.png') });

    // A slice enlarged with its numbers.
    const s = doc.phases.ED.slices[3]!;
    await page.locator(`.phase[data-phase="ED"] .tile[data-index="${s.index}"]`).click();
    await expect(page.locator('#detail-sop').textContent()).resolves.toBe(s.sopInstanceUID);
    await expect(page.locator('#detail-label').getAttribute('data-label')).resolves.toBe(s.label);
    for (const k of ['OAP', 'IN', 'OBS'] as const) {
      await expect(page.locator(`.detail [data-prob="${k}"]`).textContent()).resolves.toBe(s.probabilities[k].toFixed(3));
    }
    await imagesLoaded(page, '.detail-image img', 1);
    await page.screenshot({ path: join(ARTIFACTS, 'viewer-detail.png') });
    await page.keyboard.press('Escape');
    await expect(page.locator('#detail').isHidden()).resolves.toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });
});

describe('labeller', () => {
  it('saves three labels (keys and clicks) at once; a reload shows them; the CSV export contains them', async () => {
    const uid = truth.studyInstanceUID;
    const { page, errors } = await newPage();
    await page.goto(`${base}/label?study=${uid}&token=${TOKEN}`);
    await page.locator('.ltile').first().waitFor();
    expect(await page.locator('.ltile').count()).toBe(2 * SLICES);
    // Pre-filled from the model, marked as such.
    const initial = await page.locator('.ltile').evaluateAll((ts) => ts.map((t) => ({ label: (t as unknown as Tile).dataset.label, source: (t as unknown as Tile).dataset.source })));
    const modelLabels = [...doc.phases.ED.slices, ...doc.phases.ES.slices].map((s) => ({ label: s.label, source: 'model' }));
    expect(initial).toEqual(modelLabels);
    await expect(page.locator('.ltile.focused').getAttribute('data-pos')).resolves.toBe('0');

    const ed = doc.phases.ED.slices;
    const es = doc.phases.ES.slices;
    const other = (l: string) => (l === 'OBS' ? 'OAP' : 'OBS');
    const keyOf = { OAP: '1', IN: '2', OBS: '3' } as const;
    // 1. keyboard: ED slice 1 gets a label other than the model's (the focus moves on to slice 2).
    const first = other(ed[0]!.label);
    await page.keyboard.press(keyOf[first]);
    // 2. keyboard: ED slice 2, the model's label confirmed with Enter.
    await expect(page.locator('.ltile.focused').getAttribute('data-pos')).resolves.toBe('1');
    await page.keyboard.press('Enter');
    // 3. clicks: ES slice 3, then the label button.
    const third = other(es[2]!.label);
    await page.locator(`.ltile[data-phase="ES"][data-pos="2"]`).click();
    await page.locator(`.label-buttons .lbtn[data-label="${third}"]`).click();
    await page.evaluate(() => window.saxRangeLabeller.idle());
    await expect(page.locator('#progress').textContent()).resolves.toBe(`3 of ${2 * SLICES} slices confirmed`);

    const expected = [
      { stackId: doc.stackId, phase: 'ED', index: ed[0]!.index, sopInstanceUID: ed[0]!.sopInstanceUID, label: first, source: 'human' },
      { stackId: doc.stackId, phase: 'ED', index: ed[1]!.index, sopInstanceUID: ed[1]!.sopInstanceUID, label: ed[1]!.label, source: 'human' },
      { stackId: doc.stackId, phase: 'ES', index: es[2]!.index, sopInstanceUID: es[2]!.sopInstanceUID, label: third, source: 'human' },
    ];
    const sortKey = (l: { phase: string; index: number }) => `${l.phase}/${String(l.index).padStart(4, '0')}`;
    const stored = await getJson<{ labels: Array<(typeof expected)[number] & { updatedAt: string }> }>(`/api/studies/${uid}/labels`);
    const human = stored.labels.filter((l) => l.source === 'human').map(({ updatedAt: _u, ...l }) => l);
    expect(human.sort((a, b) => sortKey(a).localeCompare(sortKey(b)))).toEqual(expected);
    await page.screenshot({ path: join(ARTIFACTS, 'labeller.png') });

    // Reopening resumes from the saved labels (the token stays in the tab's sessionStorage).
    await page.reload();
    await page.locator('.ltile').first().waitFor();
    await page.waitForFunction(() => document.querySelectorAll('.ltile[data-source]').length > 0);
    const shown = await page.locator('.ltile').evaluateAll((ts) =>
      ts.map((t) => ({ phase: (t as unknown as Tile).dataset.phase, index: Number((t as unknown as Tile).dataset.index), label: (t as unknown as Tile).dataset.label, source: (t as unknown as Tile).dataset.source })),
    );
    const want = [...ed.map((s) => ({ phase: 'ED', s })), ...es.map((s) => ({ phase: 'ES', s }))].map(({ phase, s }) => {
      const h = expected.find((e) => e.phase === phase && e.index === s.index);
      return { phase, index: s.index, label: h ? h.label : s.label, source: h ? 'human' : 'model' };
    });
    expect(shown).toEqual(want);
    // The focus resumes at the first slice not confirmed yet (ED slice 3).
    await expect(page.locator('.ltile.focused').getAttribute('data-pos')).resolves.toBe('2');
    await imagesLoaded(page, '.ltile img', 2 * SLICES);
    await page.screenshot({ path: join(ARTIFACTS, 'labeller-reloaded.png') });

    // CSV: the link's address with the token, and the page's own download (fetched with the token).
    const href = await page.locator('#export-csv').getAttribute('href');
    expect(href).toBe(`/api/labels.csv?study=${uid}`);
    const csv = await (await get(href!)).text();
    const [downloaded] = await Promise.all([page.waitForEvent('download'), page.locator('#export-csv').click()]);
    const fromPage = await readFile((await downloaded.path())!, 'utf8');
    for (const text of [csv, fromPage]) {
      const lines = text.trim().split(/\r?\n/);
      expect(lines[0]).toBe('SOPInstanceUID,label,studyInstanceUID,stackId,phase,slice,source');
      const rows = lines.slice(1).map((l) => l.split(','));
      expect(rows).toHaveLength(3);
      for (const e of expected) {
        expect(rows).toContainEqual([e.sopInstanceUID, e.label, uid, e.stackId, e.phase, String(e.index), 'human']);
      }
    }
    expect(errors).toEqual([]);
    await page.close();
  });
});
