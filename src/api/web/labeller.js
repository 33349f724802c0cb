/* global window, document */
// The labeller (`/label`, `/label?study=UID`): every slice of a study at ED and ES gets OAP, IN or OBS, by
// click or keyboard (← → slice, ↑ ↓ row, 1 2 3 = OAP IN OBS, Enter = confirm the model's label). Slices start
// from the model's labels, marked "model" until a person confirms or changes them; every change is saved at
// once (PUT /api/studies/:uid/labels), so reopening the study resumes where it was left.
import {
  camSwitch,
  LABEL_NAMES,
  LABELS,
  addOrthancNav,
  api,
  apiJson,
  badge,
  download,
  el,
  fill,
  fmtTime,
  initToken,
  listStudies,
  pref,
  prob,
  query,
  setImage,
  setPref,
  slicePath,
  toast,
} from './common.js';

const state = {
  study: undefined,
  view: undefined,
  /** result documents by stackId */
  results: new Map(),
  /** current label by key: {label, source, updatedAt, sopInstanceUID} */
  labels: new Map(),
  /** keys with a save in flight */
  saving: new Set(),
  /** rows: {stackId, phase, phaseIndex, triggerTime, slices: [{index, position, sopInstanceUID, model?}]} */
  rows: [],
  focus: { row: 0, pos: 0 },
  cam: pref('labellerCam', false),
};

const $ = (id) => document.getElementById(id);
const key = (stackId, phase, index) => `${stackId}/${phase}/${index}`;

// ------------------------------------------------------------------------------------------------------
// Study chooser

async function renderChooser() {
  const content = $('content');
  fill(content, el('div', { class: 'empty' }, 'Loading studies…'));
  let studies;
  try {
    studies = await listStudies();
  } catch (err) {
    fill(content, el('div', { class: 'empty error' }, err.message));
    return;
  }
  const open = (uid) => {
    window.location.href = `/label?study=${encodeURIComponent(uid)}`;
  };
  const input = el('input', { type: 'text', id: 'open-uid', class: 'mono', placeholder: 'Study Instance UID (any study in the spool)', spellcheck: 'false' });
  fill(
    content,
    el('section', { class: 'study-head' }, el('div', { class: 'study-title' }, el('h1', {}, 'Label a study'), el('div', { class: 'meta' }, 'Pick a study; each slice at ED and ES gets OAP, IN or OBS.'))),
    el(
      'form',
      {
        class: 'card open-form',
        onsubmit: (e) => {
          e.preventDefault();
          if (input.value.trim()) open(input.value.trim());
        },
      },
      input,
      el('button', { class: 'btn primary', type: 'submit' }, 'Open'),
    ),
    el(
      'table',
      { class: 'card table', id: 'study-table' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Study Instance UID'), el('th', {}, 'Classified'), el('th', {}, 'Stacks'), el('th', {}, 'Human labels'), el('th', {}, ''))),
      el(
        'tbody',
        {},
        studies.length
          ? studies.map((s) =>
              el(
                'tr',
                { 'data-study': s.studyInstanceUID },
                el('td', { class: 'mono' }, s.studyInstanceUID),
                el('td', {}, s.processedAt ? fmtTime(s.processedAt) : el('span', { class: 'pending' }, 'not yet')),
                el('td', {}, Array.isArray(s.stacks) ? String(s.stacks.length) : '–'),
                el('td', {}, s.humanLabels !== undefined ? String(s.humanLabels) : '–'),
                el('td', {}, el('a', { class: 'btn small', href: `/label?study=${encodeURIComponent(s.studyInstanceUID)}` }, 'Label')),
              ),
            )
          : el('tr', {}, el('td', { colspan: '5', class: 'muted' }, 'No studies yet.')),
      ),
    ),
  );
}

// ------------------------------------------------------------------------------------------------------
// One study

async function openStudy(uid) {
  state.study = uid;
  const content = $('content');
  fill(content, el('div', { class: 'empty' }, 'Loading study…'));
  const enc = encodeURIComponent(uid);
  try {
    const [view, results, labels] = await Promise.all([
      apiJson(`/api/studies/${enc}/stacks`),
      apiJson(`/api/studies/${enc}/results`),
      apiJson(`/api/studies/${enc}/labels`),
    ]);
    state.view = view;
    state.results = new Map(results.map((r) => [r.stackId, r]));
    state.labels = new Map();
    state.rows = [];
    for (const st of view.stacks) {
      const doc = state.results.get(st.stackId);
      for (const phase of ['ED', 'ES']) {
        const p = st.phases[phase];
        const modelSlices = doc ? new Map(doc.phases[phase].slices.map((s) => [s.index, s])) : new Map();
        const slices = p.slices.map((s) => ({ ...s, model: modelSlices.get(s.index) }));
        state.rows.push({ stackId: st.stackId, phase, phaseIndex: p.phaseIndex, triggerTime: p.triggerTime, slices });
        // Pre-fill from the model until a saved label says otherwise.
        for (const s of slices) if (s.model) state.labels.set(key(st.stackId, phase, s.index), { label: s.model.label, source: 'model', sopInstanceUID: s.sopInstanceUID });
      }
    }
    for (const l of labels.labels || []) state.labels.set(key(l.stackId, l.phase, l.index), l);
  } catch (err) {
    fill(content, el('div', { class: 'empty error' }, `Cannot open study ${uid}: ${err.message}`));
    return;
  }
  // Resume at the first slice not confirmed yet.
  state.focus = { row: 0, pos: 0 };
  outer: for (let r = 0; r < state.rows.length; r++) {
    for (let i = 0; i < state.rows[r].slices.length; i++) {
      if (state.labels.get(key(state.rows[r].stackId, state.rows[r].phase, state.rows[r].slices[i].index))?.source !== 'human') {
        state.focus = { row: r, pos: i };
        break outer;
      }
    }
  }
  render();
}

function render() {
  const uid = state.study;
  const csv = `/api/labels.csv?study=${encodeURIComponent(uid)}`;
  const head = el(
    'section',
    { class: 'study-head' },
    el(
      'div',
      { class: 'study-title' },
      el('h1', {}, 'Labelling ', el('span', { class: 'mono uid-full', id: 'study-uid' }, uid)),
      el(
        'div',
        { class: 'meta' },
        el('span', { id: 'progress' }),
        el('a', { href: `/?study=${encodeURIComponent(uid)}` }, 'Open in viewer'),
        el('a', { href: '/label' }, 'Other study'),
      ),
    ),
    el(
      'div',
      { class: 'head-actions' },
      camSwitch({
        checked: state.cam,
        text: 'Grad-CAM in the large view',
        onchange: (on) => {
          state.cam = on;
          setPref('labellerCam', on);
          renderFocus();
        },
      }),
      el(
        'a',
        {
          class: 'btn',
          id: 'export-csv',
          href: csv,
          onclick: (e) => {
            e.preventDefault();
            download(csv, `labels-${uid}.csv`).catch((err) => toast(`Export failed: ${err.message}`, 'error'));
          },
        },
        'Export CSV',
      ),
    ),
  );
  const help = el(
    'div',
    { class: 'keys' },
    el('span', {}, el('kbd', {}, '←'), el('kbd', {}, '→'), ' slice'),
    el('span', {}, el('kbd', {}, '↑'), el('kbd', {}, '↓'), ' phase / stack'),
    LABELS.map((l, i) => el('span', {}, el('kbd', {}, String(i + 1)), ` ${l}`)),
    el('span', {}, el('kbd', {}, 'Enter'), ' confirm the model label'),
    el('span', { class: 'muted' }, 'Every change is saved at once.'),
  );
  if (!state.rows.length) {
    fill($('content'), head, el('div', { class: 'empty' }, 'No cine short-axis stack in this study.'));
    return;
  }
  const rows = state.rows.map((r, ri) => {
    const doc = state.results.get(r.stackId);
    return el(
      'section',
      { class: 'card label-row', 'data-row': ri, 'data-stack': r.stackId, 'data-phase': r.phase },
      el(
        'div',
        { class: 'phase-head' },
        el('span', { class: 'phase-name' }, r.phase),
        el('span', {}, `stack `, el('span', { class: 'mono' }, r.stackId), ` · phase ${r.phaseIndex + 1}${r.triggerTime !== null ? ` · ${Math.round(r.triggerTime)} ms` : ''}`),
        el('span', { class: 'muted' }, doc ? `model ${doc.model.id}` : 'not classified: no model labels'),
        el('span', { class: 'row-progress', 'data-row-progress': ri }),
      ),
      el(
        'div',
        { class: 'strip' },
        el('span', { class: 'axis' }, 'apex'),
        r.slices.map((s, pos) => {
          const img = el('img', { alt: `${r.phase} slice ${pos + 1}`, draggable: 'false' });
          setImage(img, slicePath(uid, r.stackId, r.phase, s.index));
          return el(
            'button',
            {
              class: 'tile ltile',
              'data-row': ri,
              'data-pos': pos,
              'data-stack': r.stackId,
              'data-phase': r.phase,
              'data-index': s.index,
              tabindex: '-1',
              onclick: () => setFocus(ri, pos),
            },
            el('div', { class: 'thumb' }, img),
            el('div', { class: 'tile-foot' }, el('span', { class: 'pos' }, String(pos + 1)), el('span', { class: 'lslot' })),
            el('div', { class: 'src' }),
          );
        }),
        el('span', { class: 'axis' }, 'base'),
      ),
    );
  });
  const focus = el('aside', { class: 'card focus-panel', id: 'focus' });
  fill($('content'), head, help, el('div', { class: 'label-layout' }, el('div', { class: 'label-rows' }, rows), focus));
  for (let ri = 0; ri < state.rows.length; ri++) for (let pos = 0; pos < state.rows[ri].slices.length; pos++) updateTile(ri, pos);
  updateProgress();
  renderFocus();
}

function tileOf(ri, pos) {
  return document.querySelector(`.ltile[data-row="${ri}"][data-pos="${pos}"]`);
}

function updateTile(ri, pos) {
  const r = state.rows[ri];
  const s = r.slices[pos];
  const k = key(r.stackId, r.phase, s.index);
  const l = state.labels.get(k);
  const t = tileOf(ri, pos);
  if (!t) return;
  t.dataset.label = l?.label || '';
  t.dataset.source = l?.source || 'none';
  t.classList.toggle('is-human', l?.source === 'human');
  t.classList.toggle('is-model', l?.source === 'model');
  t.classList.toggle('saving', state.saving.has(k));
  t.classList.toggle('focused', state.focus.row === ri && state.focus.pos === pos);
  t.querySelector('.lslot').replaceChildren(badge(l?.label));
  t.querySelector('.src').textContent = state.saving.has(k) ? 'saving…' : l?.source === 'human' ? '✓ confirmed' : l?.source === 'model' ? 'model' : 'unlabelled';
  t.title = `${r.phase} ${pos + 1}/${r.slices.length} · ${l ? `${l.label} (${l.source === 'human' ? 'confirmed' : 'model, not confirmed'})` : 'no label'}`;
}

function updateProgress() {
  let done = 0;
  let total = 0;
  state.rows.forEach((r, ri) => {
    let d = 0;
    for (const s of r.slices) if (state.labels.get(key(r.stackId, r.phase, s.index))?.source === 'human') d++;
    done += d;
    total += r.slices.length;
    const el2 = document.querySelector(`[data-row-progress="${ri}"]`);
    if (el2) {
      el2.textContent = `${d}/${r.slices.length} confirmed`;
      el2.classList.toggle('complete', d === r.slices.length);
    }
  });
  const p = $('progress');
  if (p) {
    p.textContent = `${done} of ${total} slices confirmed`;
    p.classList.toggle('complete', done === total);
  }
}

function renderFocus() {
  const panel = $('focus');
  if (!panel) return;
  const { row: ri, pos } = state.focus;
  const r = state.rows[ri];
  const s = r.slices[pos];
  const k = key(r.stackId, r.phase, s.index);
  const l = state.labels.get(k);
  const img = el('img', { alt: `${r.phase} slice ${pos + 1}`, id: 'focus-image' });
  const camAvailable = Boolean(s.model);
  setImage(img, slicePath(state.study, r.stackId, r.phase, s.index, state.cam && camAvailable));
  const status = l
    ? l.source === 'human'
      ? el('div', { class: 'status human', id: 'focus-status' }, `✓ Confirmed ${l.label}`, l.updatedAt ? el('span', { class: 'muted' }, ` · saved ${new Date(l.updatedAt).toLocaleTimeString()}`) : undefined)
      : el('div', { class: 'status model', id: 'focus-status' }, `Model suggests ${l.label} — press 1–3 to choose or Enter to confirm`)
    : el('div', { class: 'status none', id: 'focus-status' }, 'No label yet — press 1, 2 or 3');
  fill(
    panel,
    el('div', { class: 'focus-title' }, el('strong', {}, `${r.phase} · slice ${pos + 1} of ${r.slices.length}`), el('span', { class: 'muted' }, ` apex → base · stack index ${s.index} · ${s.position.toFixed(1)} mm`)),
    el('div', { class: 'focus-image' }, img),
    status,
    el(
      'div',
      { class: 'label-buttons' },
      LABELS.map((lab, i) =>
        el(
          'button',
          {
            class: `lbtn lbl-${lab}${l?.label === lab ? ' current' : ''}${l?.label === lab && l.source === 'human' ? ' confirmed' : ''}`,
            'data-label': lab,
            'aria-pressed': l?.label === lab ? 'true' : 'false',
            title: LABEL_NAMES[lab],
            onclick: () => setLabel(lab),
          },
          el('kbd', {}, String(i + 1)),
          el('span', {}, lab),
        ),
      ),
    ),
    l && l.source !== 'human' ? el('button', { class: 'btn wide', id: 'confirm', onclick: () => setLabel(l.label) }, `Confirm ${l.label} (Enter)`) : undefined,
    s.model
      ? el(
          'table',
          { class: 'probs compact' },
          LABELS.map((lab) => {
            const bar = el('span', { class: `pbar seg-${lab}` });
            bar.style.width = `${s.model.probabilities[lab] * 100}%`;
            return el('tr', {}, el('th', {}, lab), el('td', { class: 'pcell' }, el('span', { class: 'ptrack' }, bar)), el('td', { class: 'num' }, prob(s.model.probabilities[lab])));
          }),
        )
      : el('p', { class: 'muted' }, 'Not classified: no model probabilities.'),
    el('div', { class: 'mono small-uid sel', title: 'SOP Instance UID' }, s.sopInstanceUID),
  );
}

function setFocus(ri, pos) {
  const prev = state.focus;
  state.focus = { row: ri, pos };
  updateTile(prev.row, prev.pos);
  updateTile(ri, pos);
  const t = tileOf(ri, pos);
  t?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  renderFocus();
}

function advance() {
  const { row, pos } = state.focus;
  if (pos + 1 < state.rows[row].slices.length) setFocus(row, pos + 1);
  else if (row + 1 < state.rows.length) setFocus(row + 1, 0);
}

let chain = Promise.resolve();

/** Sets the focused slice's label (source human), saves it at once and moves on. */
function setLabel(label) {
  const { row: ri, pos } = state.focus;
  const r = state.rows[ri];
  const s = r.slices[pos];
  const k = key(r.stackId, r.phase, s.index);
  const before = state.labels.get(k);
  state.labels.set(k, { ...(before || {}), label, source: 'human', sopInstanceUID: s.sopInstanceUID, updatedAt: undefined });
  state.saving.add(k);
  updateTile(ri, pos);
  updateProgress();
  const body = { labels: [{ stackId: r.stackId, phase: r.phase, index: s.index, sopInstanceUID: s.sopInstanceUID, label, source: 'human' }] };
  // Saves go out one after the other, so the last key pressed is the label stored.
  chain = chain.then(async () => {
    try {
      const res = await apiJson(`/api/studies/${encodeURIComponent(state.study)}/labels`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      const saved = (res.labels || []).find((x) => x.stackId === r.stackId && x.phase === r.phase && x.index === s.index);
      const now = state.labels.get(k);
      if (saved && now?.label === saved.label) state.labels.set(k, saved);
      toast(`Saved ${r.phase} slice ${pos + 1}: ${label}`);
    } catch (err) {
      if (state.labels.get(k)?.label === label) state.labels.set(k, before);
      toast(`Not saved (${r.phase} slice ${pos + 1}): ${err.message}`, 'error');
    } finally {
      state.saving.delete(k);
      updateTile(ri, pos);
      updateProgress();
      if (state.focus.row === ri && state.focus.pos === pos) renderFocus();
    }
  });
  advance();
  return chain;
}

document.addEventListener('keydown', (e) => {
  if (!state.rows.length || e.altKey || e.ctrlKey || e.metaKey) return;
  const tag = e.target && e.target.tagName;
  if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
  const { row, pos } = state.focus;
  const n = state.rows[row].slices.length;
  if (e.key === 'ArrowRight') setFocus(row, Math.min(n - 1, pos + 1));
  else if (e.key === 'ArrowLeft') setFocus(row, Math.max(0, pos - 1));
  else if (e.key === 'ArrowDown' && row + 1 < state.rows.length) setFocus(row + 1, Math.min(pos, state.rows[row + 1].slices.length - 1));
  else if (e.key === 'ArrowUp' && row > 0) setFocus(row - 1, Math.min(pos, state.rows[row - 1].slices.length - 1));
  else if (e.key === '1' || e.key === '2' || e.key === '3') setLabel(LABELS[Number(e.key) - 1]);
  else if (e.key === 'Enter') {
    const r = state.rows[row];
    const l = state.labels.get(key(r.stackId, r.phase, r.slices[pos].index));
    if (l) setLabel(l.label);
  } else return;
  e.preventDefault();
});

async function main() {
  initToken();
  const uid = query().get('study');
  if (uid) await openStudy(uid);
  else await renderChooser();
  addOrthancNav().catch(() => undefined);
}

main();

// For the browser test and for people at the console: resolves once every save has been answered.
window.saxRangeLabeller = { idle: () => chain, api };
