/* global window, document */
// The viewer (`/`, `/?study=UID`): processed studies newest first; per stack the ED and ES slices apex → base
// with their labels, probabilities and the IN range; Grad-CAM overlays on demand; a slice enlarged with its
// numbers; links into Orthanc when the service knows it. Reads the API only.
import {
  camSwitch,
  LABEL_NAMES,
  LABELS,
  addOrthancNav,
  apiJson,
  badge,
  el,
  fill,
  fmtTime,
  initToken,
  listStudies,
  pref,
  prob,
  probBar,
  query,
  setImage,
  setPref,
  shortUid,
  slicePath,
  toast,
} from './common.js';

const state = {
  studies: [],
  study: undefined,
  /** result documents of the open study */
  results: [],
  /** StudyView of the open study (`/stacks`) */
  view: undefined,
  /** human labels by `${stackId}/${phase}/${index}` */
  human: new Map(),
  cam: pref('cam', false),
  detail: undefined,
};

const $ = (id) => document.getElementById(id);

function labelKey(stackId, phase, index) {
  return `${stackId}/${phase}/${index}`;
}

async function loadStudies() {
  const list = $('study-list');
  try {
    state.studies = await listStudies();
  } catch (err) {
    fill(list, el('li', { class: 'error pad' }, err.message));
    return;
  }
  renderStudyList();
}

function renderStudyList() {
  const list = $('study-list');
  if (!state.studies.length) {
    fill(list, el('li', { class: 'muted pad' }, 'No studies yet. Send a cine short-axis study to the DICOM port.'));
    return;
  }
  fill(
    list,
    state.studies.map((s) => {
      const stacks = Array.isArray(s.stacks) ? s.stacks.length : undefined;
      return el(
        'li',
        {},
        el(
          'a',
          {
            href: `/?study=${encodeURIComponent(s.studyInstanceUID)}`,
            class: `study-item${s.studyInstanceUID === state.study ? ' selected' : ''}`,
            'data-study': s.studyInstanceUID,
            title: s.studyInstanceUID,
            onclick: (e) => {
              e.preventDefault();
              openStudy(s.studyInstanceUID, true);
            },
          },
          el('span', { class: 'uid mono' }, shortUid(s.studyInstanceUID, 12)),
          el(
            'span',
            { class: 'sub' },
            s.processedAt ? fmtTime(s.processedAt) : el('span', { class: 'pending' }, 'not classified'),
            stacks !== undefined ? ` · ${stacks} stack${stacks === 1 ? '' : 's'}` : '',
            s.humanLabels ? ` · ${s.humanLabels} labelled` : '',
          ),
        ),
      );
    }),
  );
}

async function openStudy(uid, push) {
  state.study = uid;
  if (push) window.history.pushState(null, '', `/?study=${encodeURIComponent(uid)}`);
  renderStudyList();
  const content = $('content');
  fill(content, el('div', { class: 'empty' }, 'Loading study…'));
  try {
    const [results, view, labels] = await Promise.all([
      apiJson(`/api/studies/${encodeURIComponent(uid)}/results`),
      apiJson(`/api/studies/${encodeURIComponent(uid)}/stacks`).catch(() => undefined),
      apiJson(`/api/studies/${encodeURIComponent(uid)}/labels`).catch(() => ({ labels: [] })),
    ]);
    if (state.study !== uid) return;
    state.results = results;
    state.view = view;
    state.human = new Map((labels.labels || []).filter((l) => l.source === 'human').map((l) => [labelKey(l.stackId, l.phase, l.index), l]));
    renderStudy();
  } catch (err) {
    fill(content, el('div', { class: 'empty error' }, `Cannot open study ${uid}: ${err.message}`));
  }
}

function renderStudy() {
  const uid = state.study;
  const content = $('content');
  const first = state.results[0];
  const head = el(
    'section',
    { class: 'study-head' },
    el(
      'div',
      { class: 'study-title' },
      el('h1', {}, 'Study ', el('span', { class: 'mono uid-full', id: 'study-uid' }, uid)),
      el(
        'div',
        { class: 'meta' },
        first ? el('span', {}, `Model ${first.model.id} ${first.model.version}`) : el('span', { class: 'pending' }, 'Not classified yet'),
        state.view ? el('span', {}, `${state.view.instancesInSpool} instances in the spool`) : undefined,
        state.view?.orthanc ? el('a', { href: state.view.orthanc.study, target: '_blank', rel: 'noopener', class: 'ext' }, 'Study in Orthanc') : undefined,
        el('a', { href: `/label?study=${encodeURIComponent(uid)}`, id: 'label-link' }, 'Label this study'),
      ),
    ),
    camSwitch({
      checked: state.cam,
      text: 'Grad-CAM overlay',
      title: 'Show the Grad-CAM secondary captures instead of the source slices',
      onchange: (on) => {
        state.cam = on;
        setPref('cam', state.cam);
        refreshImages();
      },
    }),
  );
  const legend = el(
    'div',
    { class: 'legend' },
    LABELS.map((l) => el('span', { class: 'legend-item' }, badge(l), ` ${LABEL_NAMES[l]}`)),
    el('span', { class: 'legend-item' }, el('span', { class: 'range-swatch' }), ' IN range'),
    el('span', { class: 'legend-item' }, el('span', { class: 'human-chip' }, 'H'), ' human label differs'),
  );
  const stacks = state.results.map(renderStack);
  const waiting = (state.view?.stacks || []).filter((s) => !s.classified);
  const pending = waiting.map((s) =>
    el(
      'section',
      { class: 'stack card' },
      el('h2', {}, 'Stack ', el('span', { class: 'mono' }, s.stackId)),
      el('p', { class: 'muted' }, `${s.sliceCount} slices × ${s.phaseCount} phases, not classified yet. `, el('a', { href: `/label?study=${encodeURIComponent(uid)}` }, 'Label it by hand')),
    ),
  );
  const aside = (state.view?.setAside || []).map((s) => el('li', {}, el('span', { class: 'mono' }, shortUid(s.seriesInstanceUID, 10)), ` · ${s.images} images · ${s.reason}`));
  fill(
    content,
    head,
    legend,
    stacks,
    pending,
    !stacks.length && !pending.length ? el('div', { class: 'empty' }, 'No stacks in this study.') : undefined,
    aside.length ? el('details', { class: 'card set-aside' }, el('summary', {}, `${aside.length} series set aside`), el('ul', {}, aside)) : undefined,
  );
}

function renderStack(doc) {
  const order = doc.order;
  return el(
    'section',
    { class: 'stack card', 'data-stack': doc.stackId },
    el(
      'div',
      { class: 'stack-head' },
      el('h2', {}, 'Stack ', el('span', { class: 'mono' }, doc.stackId)),
      el('span', { class: 'meta' }, `${doc.phases.ED.slices.length} slices · order ${order.method}${order.geometryAgrees === false ? ' (geometry disagrees)' : ''}`),
    ),
    order.message ? el('p', { class: 'warning' }, order.message) : undefined,
    ['ED', 'ES'].map((phase) => renderPhase(doc, phase)),
  );
}

function renderPhase(doc, phase) {
  const p = doc.phases[phase];
  const r = p.inRange;
  const n = p.slices.length;
  const tiles = p.slices.map((s, pos) => {
    const human = state.human.get(labelKey(doc.stackId, phase, s.index));
    const inRange = pos >= r.first && pos <= r.last;
    const img = el('img', { alt: `${phase} slice ${pos + 1}`, draggable: 'false' });
    setImage(img, slicePath(state.study, doc.stackId, phase, s.index, state.cam));
    return el(
      'button',
      {
        class: `tile${inRange ? ' in-range' : ''}${pos === r.first ? ' range-start' : ''}${pos === r.last ? ' range-end' : ''}`,
        'data-phase': phase,
        'data-index': s.index,
        'data-pos': pos,
        title: `${phase} ${pos + 1}/${n} · ${s.label} · P(OAP) ${prob(s.probabilities.OAP)} P(IN) ${prob(s.probabilities.IN)} P(OBS) ${prob(s.probabilities.OBS)}`,
        onclick: () => openDetail(doc, phase, pos),
      },
      el('div', { class: 'thumb' }, img),
      el(
        'div',
        { class: 'tile-foot' },
        el('span', { class: 'pos' }, String(pos + 1)),
        badge(s.label),
        s.predicted !== s.label ? el('span', { class: 'argmax', title: `argmax ${s.predicted}` }, `↯${s.predicted}`) : undefined,
        human && human.label !== s.label ? el('span', { class: 'human-chip', title: `human label ${human.label}` }, `H ${human.label}`) : undefined,
      ),
      probBar(s.probabilities),
    );
  });
  return el(
    'div',
    { class: 'phase', 'data-phase': phase },
    el(
      'div',
      { class: 'phase-head' },
      el('span', { class: 'phase-name' }, phase),
      el('span', {}, `phase ${p.phaseIndex + 1}${p.triggerTime !== null ? ` · ${Math.round(p.triggerTime)} ms` : ''} · ${p.method}`),
      el('span', { class: 'range-text' }, `IN ${r.first + 1}–${r.last + 1} (${r.count} of ${n})`),
    ),
    el('div', { class: 'strip' }, el('span', { class: 'axis' }, 'apex'), tiles, el('span', { class: 'axis' }, 'base')),
  );
}

/** Points every slice image at the source or the Grad-CAM rendering. */
function refreshImages() {
  for (const img of document.querySelectorAll('.tile img, .detail-image img')) {
    const src = img.dataset.src;
    if (!src) continue;
    const base = src.replace(/\?overlay=cam$/, '');
    setImage(img, state.cam ? `${base}?overlay=cam` : base);
  }
  const t = document.getElementById('detail-cam');
  if (t) t.checked = state.cam;
}

function row(name, ...value) {
  return el('tr', {}, el('th', {}, name), el('td', {}, ...value));
}

function openDetail(doc, phase, pos) {
  state.detail = { doc, phase, pos };
  const p = doc.phases[phase];
  const s = p.slices[pos];
  const n = p.slices.length;
  const human = state.human.get(labelKey(doc.stackId, phase, s.index));
  const img = el('img', { alt: `${phase} slice ${pos + 1} of ${n}` });
  setImage(img, slicePath(state.study, doc.stackId, phase, s.index, state.cam));
  const probs = el(
    'table',
    { class: 'probs' },
    LABELS.map((l) => {
      const bar = el('span', { class: `pbar seg-${l}` });
      bar.style.width = `${s.probabilities[l] * 100}%`;
      return el('tr', { class: l === s.label ? 'is-label' : '' }, el('th', {}, badge(l)), el('td', { class: 'pcell' }, el('span', { class: 'ptrack' }, bar)), el('td', { class: 'num', 'data-prob': l }, prob(s.probabilities[l])));
    }),
  );
  const panel = el(
    'div',
    { class: 'detail', role: 'dialog', 'aria-modal': 'true', 'aria-label': `${phase} slice ${pos + 1}` },
    el(
      'div',
      { class: 'detail-head' },
      el('h2', {}, `${phase} · slice ${pos + 1} of ${n}`, el('span', { class: 'muted' }, ' apex → base')),
      camSwitch({
        id: 'detail-cam',
        small: true,
        checked: state.cam,
        text: 'Grad-CAM',
        onchange: (on) => {
          state.cam = on;
          setPref('cam', on);
          const t = document.getElementById('cam-toggle');
          if (t) t.checked = on;
          refreshImages();
        },
      }),
      el('button', { class: 'btn', onclick: () => move(-1), disabled: pos === 0, title: 'Previous slice (←)' }, '←'),
      el('button', { class: 'btn', onclick: () => move(1), disabled: pos === n - 1, title: 'Next slice (→)' }, '→'),
      el('button', { class: 'btn', onclick: closeDetail, title: 'Close (Esc)', id: 'detail-close' }, 'Close'),
    ),
    el(
      'div',
      { class: 'detail-body' },
      el('div', { class: 'detail-image' }, img),
      el(
        'div',
        { class: 'detail-info' },
        el('table', { class: 'facts' },
          row('Label', badge(s.label, { id: 'detail-label' }), el('span', { class: 'muted' }, ' range decoding')),
          row('Predicted', badge(s.predicted), el('span', { class: 'muted' }, ' argmax')),
          human ? row('Human label', badge(human.label), el('span', { class: 'muted' }, ` ${new Date(human.updatedAt).toLocaleString()}`)) : undefined,
          row('In IN range', pos >= p.inRange.first && pos <= p.inRange.last ? 'yes' : 'no', ` (IN ${p.inRange.first + 1}–${p.inRange.last + 1})`),
          row('Position', `${s.position.toFixed(1)} mm along the normal`),
          row('Stack index', String(s.index)),
          row('Phase', `${p.phaseIndex + 1}${p.triggerTime !== null ? ` · ${Math.round(p.triggerTime)} ms` : ''} (${p.method})`),
          row('SOP Instance UID', el('span', { class: 'mono sel', id: 'detail-sop' }, s.sopInstanceUID)),
          row('Model', `${doc.model.id} ${doc.model.version}`),
        ),
        el('h3', {}, 'Probabilities'),
        probs,
        el('div', { class: 'links' }, orthancLinks(doc, phase, s)),
      ),
    ),
  );
  const overlay = $('detail');
  fill(overlay, panel);
  overlay.hidden = false;
  overlay.onclick = (e) => {
    if (e.target === overlay) closeDetail();
  };
  document.getElementById('detail-close').focus();
}

/** Orthanc Explorer links of a slice and of its stack's objects (when the service knows Orthanc). */
function orthancLinks(doc, phase, s) {
  const o = state.view?.orthanc;
  if (!o) return undefined;
  const st = o.stacks?.[doc.stackId];
  const ext = (href, text) => (href ? el('a', { href, target: '_blank', rel: 'noopener', class: 'ext' }, text) : undefined);
  return [
    el('h3', {}, 'In Orthanc'),
    ext(o.instances[s.sopInstanceUID], 'Source image'),
    ext(st?.captures?.[`${phase}/${s.index}`], 'Grad-CAM secondary capture'),
    ...(st?.objects || []).map((x) => ext(x.url, x.label)),
  ];
}

function move(d) {
  const x = state.detail;
  if (!x) return;
  const n = x.doc.phases[x.phase].slices.length;
  const pos = x.pos + d;
  if (pos >= 0 && pos < n) openDetail(x.doc, x.phase, pos);
}

function closeDetail() {
  state.detail = undefined;
  $('detail').hidden = true;
  fill($('detail'));
}

document.addEventListener('keydown', (e) => {
  if (!state.detail) return;
  if (e.key === 'Escape') closeDetail();
  else if (e.key === 'ArrowLeft') move(-1);
  else if (e.key === 'ArrowRight') move(1);
  else return;
  e.preventDefault();
});

window.addEventListener('popstate', () => {
  const uid = query().get('study');
  if (uid) openStudy(uid, false);
});

async function main() {
  initToken();
  $('refresh').addEventListener('click', () => loadStudies().then(() => toast('Study list updated')));
  await loadStudies();
  addOrthancNav().catch(() => undefined);
  const uid = query().get('study') || state.studies.find((s) => s.processedAt)?.studyInstanceUID;
  if (uid) await openStudy(uid, false);
}

main();
