/* global window, document, sessionStorage, localStorage, fetch, Headers, URLSearchParams, Blob, Node */
// Shared by the viewer and the labeller: the bearer token, API calls, slice images, small DOM helpers.
// Plain ES module, no framework, nothing loaded from elsewhere.

const TOKEN_KEY = 'sax-range.token';

/** Colours of the classes, as burned into the secondary captures (src/sr/render.ts LABEL_COLOURS). */
export const LABELS = ['OAP', 'IN', 'OBS'];
export const LABEL_NAMES = { OAP: 'out of apical (below the apex)', IN: 'apex to base', OBS: 'out of basal (above the base)' };

/** The token: `?token=` (then removed from the address bar and kept for this tab), else sessionStorage. */
export function initToken() {
  const url = new URL(window.location.href);
  const t = url.searchParams.get('token');
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url.pathname + (url.search ? url.search : '') + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY) || undefined;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || undefined;
}

/** Asks for the access token in a modal dialog; resolves to the token, or undefined when cancelled. */
function askToken(message) {
  return new Promise((resolve) => {
    let dlg = document.getElementById('token-dialog');
    if (!dlg) {
      dlg = el('dialog', { id: 'token-dialog', class: 'dialog' },
        el('form', { method: 'dialog' },
          el('h2', {}, 'Access token'),
          el('p', { class: 'muted', id: 'token-message' }),
          el('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'SAX_RANGE_API_TOKEN', required: '' }),
          el('div', { class: 'dialog-actions' },
            el('button', { value: 'cancel', type: 'button', class: 'btn', id: 'token-cancel' }, 'Cancel'),
            el('button', { value: 'ok', class: 'btn primary' }, 'Continue'))));
      document.body.append(dlg);
    }
    dlg.querySelector('#token-message').textContent = message;
    const input = dlg.querySelector('input');
    input.value = '';
    const done = (v) => {
      dlg.close();
      resolve(v);
    };
    dlg.querySelector('#token-cancel').onclick = () => done(undefined);
    dlg.querySelector('form').onsubmit = (e) => {
      e.preventDefault();
      done(input.value.trim() || undefined);
    };
    dlg.oncancel = () => resolve(undefined);
    dlg.showModal();
    input.focus();
  });
}

/** An API error with the HTTP status and the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let asking;

/**
 * fetch() against the API with `Authorization: Bearer` when a token is known. A 401 asks for the token
 * (once for all calls in flight) and retries.
 */
export async function api(path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(opts.headers || {});
    const t = token();
    if (t) headers.set('Authorization', `Bearer ${t}`);
    const res = await fetch(path, { ...opts, headers });
    if (res.status === 401 && attempt < 3) {
      asking ??= askToken(t ? 'The token was refused. Enter the API token of this sax-range service.' : 'This sax-range service needs its API token.').finally(() => {
        asking = undefined;
      });
      const got = await asking;
      if (!got) throw new ApiError(401, 'no access token given');
      sessionStorage.setItem(TOKEN_KEY, got);
      continue;
    }
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && body.error) msg = `${res.status}: ${body.error}`;
      } catch {
        // not JSON
      }
      throw new ApiError(res.status, msg);
    }
    return res;
  }
}

export async function apiJson(path, opts) {
  return (await api(path, opts)).json();
}

/** `GET /api/studies`, newest first, as `{studyInstanceUID, processedAt|null, ...}` objects. */
export async function listStudies() {
  const body = await apiJson('/api/studies');
  const list = (body.studies || []).map((s) => (typeof s === 'string' ? { studyInstanceUID: s, processedAt: null } : s));
  return list.sort((a, b) => String(b.processedAt || '').localeCompare(String(a.processedAt || '')));
}

const images = new Map();

/**
 * An object URL of an API image (fetched with the token: an <img src> cannot send it). Cached per path
 * for the life of the page.
 */
export function imageUrl(path) {
  let p = images.get(path);
  if (!p) {
    p = api(path).then(async (r) => URL.createObjectURL(await r.blob()));
    p.catch(() => images.delete(path));
    images.set(path, p);
  }
  return p;
}

/** Shows an API image in `img`; `data-src` keeps the API path (the last one asked for wins). */
export function setImage(img, path) {
  img.dataset.src = path;
  img.classList.add('loading');
  img.classList.remove('failed');
  imageUrl(path).then(
    (u) => {
      if (img.dataset.src !== path) return;
      img.src = u;
      img.classList.remove('loading');
    },
    (err) => {
      if (img.dataset.src !== path) return;
      img.classList.remove('loading');
      img.classList.add('failed');
      img.alt = err.message;
      img.title = err.message;
    },
  );
}

/** `/api/studies/:uid/stacks/:stackId/:phase/:index.png[?overlay=cam]`. */
export function slicePath(study, stackId, phase, index, cam = false) {
  return `/api/studies/${encodeURIComponent(study)}/stacks/${encodeURIComponent(stackId)}/${phase}/${index}.png${cam ? '?overlay=cam' : ''}`;
}

/** Creates an element: attributes (class, data-*, on* handlers), children (strings or nodes). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** A Grad-CAM on/off switch (both pages; default id `cam-toggle`); `onchange` gets the new state. */
export function camSwitch({ checked, text, title, onchange, id = 'cam-toggle', small = false }) {
  return el(
    'label',
    { class: small ? 'switch small' : 'switch', title },
    el('input', { type: 'checkbox', id, checked, onchange: (e) => onchange(e.target.checked) }),
    el('span', { class: 'slider' }),
    text,
  );
}

export function badge(label, extra = {}) {
  return el('span', { class: `badge lbl-${label || 'none'}`, 'data-label': label || '', ...extra }, label || '—');
}

/** A probability with three decimals. */
export function prob(p) {
  return typeof p === 'number' ? p.toFixed(3) : '–';
}

/** Three stacked bars (OAP, IN, OBS) whose widths are the probabilities. */
export function probBar(p) {
  const bar = el('div', { class: 'probbar', title: `OAP ${prob(p.OAP)} · IN ${prob(p.IN)} · OBS ${prob(p.OBS)}` });
  for (const k of LABELS) {
    const s = el('span', { class: `seg seg-${k}` });
    s.style.width = `${Math.max(0, Math.min(1, p[k])) * 100}%`;
    bar.append(s);
  }
  return bar;
}

/** "1.2.840.….7" style shortening for lists; the full UID goes in the title. */
export function shortUid(uid, keep = 10) {
  return uid.length <= 2 * keep + 1 ? uid : `${uid.slice(0, keep)}…${uid.slice(-keep)}`;
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** A status line at the bottom right: info, or an error that stays until replaced. */
export function toast(message, kind = 'info') {
  let t = document.getElementById('toast');
  if (!t) {
    t = el('div', { id: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.append(t);
  }
  t.textContent = message;
  t.className = `toast ${kind}`;
  window.clearTimeout(t._timer);
  if (kind !== 'error') t._timer = window.setTimeout(() => (t.className = 'toast hidden'), 2500);
}

/** The page's query parameters. */
export function query() {
  return new URLSearchParams(window.location.search);
}

/** Replaces the contents of `node`. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

/** Saves a fetched file (CSV export) under `name`. */
export async function download(path, name) {
  const blob = await (await api(path)).blob();
  const a = el('a', { href: URL.createObjectURL(new Blob([blob], { type: blob.type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

/** Persistent UI preference (localStorage). */
export function pref(key, fallback) {
  const v = localStorage.getItem(`sax-range.${key}`);
  return v === null ? fallback : JSON.parse(v);
}

export function setPref(key, value) {
  localStorage.setItem(`sax-range.${key}`, JSON.stringify(value));
}

/** Adds an "Orthanc" tab when the service is configured with ORTHANC_URL (`GET /api/config/ui`). */
export async function addOrthancNav() {
  const ui = await apiJson('/api/config/ui');
  if (ui.orthancUrl && !document.getElementById('nav-orthanc')) {
    document.querySelector('.tabs').append(el('a', { href: ui.orthancUrl, class: 'tab ext', target: '_blank', rel: 'noopener', id: 'nav-orthanc' }, 'Orthanc'));
  }
  return ui;
}
