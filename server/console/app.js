// eventrelay console. Plain ES module, no dependencies: every value from the server is put in
// the page as text (never as HTML), and every call goes through the same API as any client:
// /v1/console/* and EventService's HTTP routes, with the bearer token kept in sessionStorage.

const TOKEN_KEY = 'eventrelay.console.token';
const main = document.getElementById('main');
let session = null; // GET /v1/console/session
let cleanup = []; // run when leaving a page (timers, live streams)

// ---------------------------------------------------------------------------------------
// DOM and HTTP helpers

// BIDI_CONTROLS are the characters that reorder or hide the text around them (embeddings,
// overrides, isolates, marks, zero-width ones): a webhook's id "abc\u202Egpj.exe" would read
// "abcexe.jpg". shown writes each as a visible <U+XXXX> instead.
const BIDI_CONTROLS = /[\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2069\uFEFF]/g;
function shown(s) {
  return String(s).replace(BIDI_CONTROLS, (c) => '<U+' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + '>');
}

// h builds an element: attrs (class, text, on* handlers, other attributes), then children
// (nodes, strings as text, arrays, null skipped). Text goes through shown.
function h(tag, attrs = {}, ...children) {
  const el = tag === 'svg' || tag === 'rect' || tag === 'line'
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = shown(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(shown(c)));
  }
  return el;
}

// fill replaces el's children as h adds them (arrays flattened, null skipped).
function fill(el, ...children) {
  el.replaceChildren();
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(shown(c)))));
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: 'Bearer ' + t } : {};
}

async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    if (r.status === 401 || (r.status === 403 && path.startsWith('/v1/console/session'))) {
      // A first visit has no token yet: no error to show, only the form.
      showLogin(sessionStorage.getItem(TOKEN_KEY) ? (data?.message || text) : '');
    }
    throw new APIError(r.status, data?.message || text || r.statusText);
  }
  return data;
}

const enc = encodeURIComponent;
const fmtNum = (n) => Number(n ?? 0).toLocaleString('en-US');

function fmtTime(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  return isNaN(d) ? String(ts) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function ago(ts) {
  if (!ts) return 'never';
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  return s < 1 ? 'just now' : fmtDuration(s) + ' ago';
}

function fmtDuration(s) {
  if (s < 1) return 'now';
  if (s < 90) return Math.round(s) + 's';
  if (s < 5400) return Math.round(s / 60) + 'm';
  if (s < 172800) return Math.round(s / 3600) + 'h';
  return Math.round(s / 86400) + 'd';
}

function errorBox(e) {
  return h('p', { class: 'error', role: 'alert', text: e instanceof APIError ? `${e.status}: ${e.message}` : String(e.message || e) });
}

function params() {
  const q = location.hash.split('?')[1] || '';
  return new URLSearchParams(q);
}

function go(page, q = {}) {
  const s = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== '' && v !== undefined && v !== null)).toString();
  location.hash = '#/' + page + (s ? '?' + s : '');
}

function sourceSelect(list, selected, attrs = {}) {
  return h('select', attrs, list.map((s) => h('option', { value: s, selected: s === selected }, s)));
}

function b64bytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// ---------------------------------------------------------------------------------------
// Session, login and routing

function showLogin(message) {
  cleanupPage();
  document.getElementById('nav').hidden = true;
  const input = h('input', { type: 'password', id: 'token', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  main.replaceChildren(h('section', { class: 'login card' },
    h('h1', { text: 'Sign in' }),
    message ? h('p', { class: 'error', role: 'alert', text: message }) : null,
    h('form', {
      onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        boot();
      },
    },
    h('label', { for: 'token' }, 'Bearer token', input),
    h('p', { id: 'token-help', class: 'muted', text: 'A token of auth.tokens with console: true. It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.' }),
    h('button', { class: 'primary', type: 'submit', text: 'Open the console' }))));
  input.focus();
}

async function boot() {
  try {
    session = await api('/v1/console/session');
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) main.replaceChildren(errorBox(e));
    return;
  }
  document.getElementById('nav').hidden = false;
  const who = document.getElementById('who');
  fill(who, session.auth
    ? [h('span', { text: 'token ' + session.token }), h('button', { type: 'button', text: 'Sign out', onclick: signOut })]
    : h('span', { text: 'open: no auth tokens' }));
  const banner = document.getElementById('banner');
  banner.hidden = session.auth;
  banner.textContent = session.auth ? '' : 'No auth tokens are configured: this console is open to anyone who can reach the admin listener. Configure auth.tokens (with console: true) to require a token.';
  route();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  session = null;
  document.getElementById('who').replaceChildren();
  showLogin('');
}

function cleanupPage() {
  for (const fn of cleanup) fn();
  cleanup = [];
}

const pages = {
  '': overview, overview, events, event: eventDetail, live, refused, 'dead-letters': deadLetters, send,
};

function route() {
  if (!session) return;
  cleanupPage();
  const page = location.hash.replace(/^#\/?/, '').split('?')[0];
  const fn = pages[page] || overview;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === (page || 'overview') || (page === 'event' && a.dataset.page === 'events')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  fn(params()).catch((e) => main.append(errorBox(e)));
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
// The skip link moves focus to the page's content; following its href would change the hash
// (the console's routes) and show the overview.
document.querySelector('a.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// ---------------------------------------------------------------------------------------
// Overview

function sparkline(perMinute) {
  const max = Math.max(1, ...perMinute);
  const total = perMinute.reduce((a, b) => a + b, 0);
  const w = 4, gap = 1, H = 40;
  const svg = h('svg', { class: 'spark', viewBox: `0 0 ${perMinute.length * (w + gap)} ${H + 2}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': `${total} accepted in the last hour, at most ${max === 1 && total === 0 ? 0 : max} in a minute` });
  svg.append(h('line', { class: 'axis', x1: 0, x2: perMinute.length * (w + gap), y1: H + 1, y2: H + 1 }));
  perMinute.forEach((n, i) => {
    if (n > 0) {
      const bh = Math.max(2, (n / max) * H);
      svg.append(h('rect', { x: i * (w + gap), y: H + 1 - bh, width: w, height: bh }));
    }
  });
  return svg;
}

function sourceCard(s) {
  const a = s.activity;
  const refusedTotal = Object.values(a.refused).reduce((x, y) => x + y, 0);
  const reasons = Object.entries(a.refused).sort((x, y) => y[1] - x[1]);
  const canSend = session.publish.includes(s.name);
  return h('article', { class: 'card', 'data-source': s.name },
    h('header', {}, h('h2', {}, h('a', { href: `#/events?source=${enc(s.name)}`, text: s.name })),
      h('span', { class: 'badge', text: s.provider }), h('span', { class: 'badge', text: `${s.partitions} partition${s.partitions === 1 ? '' : 's'}` })),
    h('div', { class: 'stats' },
      h('div', { class: 'stat' }, h('b', { text: fmtNum(s.length) }), h('span', { text: 'stored events' })),
      h('div', { class: 'stat', title: fmtTime(s.last_event) }, h('b', { text: s.last_event ? ago(s.last_event) : 'never' }), h('span', { text: 'last event' })),
      h('div', { class: 'stat' }, h('b', {}, h('a', { href: `#/dead-letters?source=${enc(s.name)}`, text: fmtNum(s.dead_letters) })), h('span', { text: 'dead letters' })),
      h('div', { class: 'stat' }, h('b', { class: 'ok', text: fmtNum(a.accepted) }), h('span', { text: 'accepted' })),
      h('div', { class: 'stat' }, h('b', { class: refusedTotal ? 'error' : '' }, h('a', { href: `#/refused?source=${enc(s.name)}`, text: fmtNum(refusedTotal) })), h('span', { text: 'refused' })),
      h('div', { class: 'stat' }, h('b', { class: a.failed ? 'error' : '', text: fmtNum(a.failed) }), h('span', { text: 'failed' }))),
    reasons.length ? h('p', { class: 'muted' }, 'Refused by reason: ', reasons.map(([r, n], i) => [i ? ' · ' : '', h('span', { class: 'badge bad', text: `${r} ${n}` })])) : null,
    h('div', { class: 'muted', text: 'Accepted per minute, last hour' }),
    sparkline(a.per_minute),
    s.groups.length ? h('div', { class: 'table-scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, [['Group'], ['Members'], ['Pending'], ['Lag'], ['DLQ', 'dead letters'], ['Oldest', 'age of the oldest unacknowledged delivery']].map(([c, title], i) => h('th', { class: i ? 'num' : null, scope: 'col', title, text: c })))),
      h('tbody', {}, s.groups.map((g) => h('tr', {},
        h('td', { text: g.name }),
        h('td', { class: 'num', text: fmtNum(g.consumers) }),
        h('td', { class: 'num', text: fmtNum(g.pending) }),
        h('td', { class: 'num', text: g.lag < 0 ? 'many' : fmtNum(g.lag) }),
        h('td', { class: 'num' }, g.dead_letters ? h('a', { href: `#/dead-letters?source=${enc(s.name)}&group=${enc(g.name)}`, text: fmtNum(g.dead_letters) }) : '0'),
        h('td', { class: 'num', text: g.oldest_age_seconds ? fmtDuration(g.oldest_age_seconds) : '—' })))))) : h('p', { class: 'muted', text: 'No consumer groups.' }),
    h('div', { class: 'links' },
      h('a', { href: `#/events?source=${enc(s.name)}`, text: 'Events' }),
      h('a', { href: `#/live?sources=${enc(s.name)}`, text: 'Live tail' }),
      h('a', { href: `#/refused?source=${enc(s.name)}`, text: 'Refused' }),
      canSend ? h('a', { href: `#/send?source=${enc(s.name)}`, text: 'Send test webhook' }) : null));
}

async function overview() {
  const stamp = h('p', { class: 'muted', 'aria-live': 'polite' });
  const cards = h('div', { class: 'cards' });
  main.append(h('h1', { text: 'Overview' }), stamp, cards);
  const load = async () => {
    const o = await api('/v1/console/overview');
    cards.replaceChildren(...(o.sources.length ? o.sources.map(sourceCard) : [h('p', { class: 'muted', text: 'No sources this token may read.' })]));
    stamp.textContent = `Updated ${fmtTime(o.time)}; refreshes every 5 s. Counts of accepted, refused and failed requests are this relayd's since it started.`;
  };
  await load();
  const t = setInterval(() => load().catch((e) => { stamp.textContent = ''; stamp.append(errorBox(e)); }), 5000);
  cleanup.push(() => clearInterval(t));
}

// ---------------------------------------------------------------------------------------
// Events: a source's history, newest first, by type, time range and id

function toLocalInput(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

async function events(q) {
  if (!session.sources.length) { main.append(h('p', { class: 'muted', text: 'No sources this token may read.' })); return; }
  const source = q.get('source') || session.sources[0];
  const f = {
    source: sourceSelect(session.sources, source, { name: 'source', id: 'ev-source' }),
    type: h('input', { name: 'type', id: 'ev-type', placeholder: 'invoice.*', value: q.get('type') || '' }),
    from: h('input', { type: 'datetime-local', name: 'from', id: 'ev-from', value: toLocalInput(q.get('from')) }),
    to: h('input', { type: 'datetime-local', name: 'to', id: 'ev-to', value: toLocalInput(q.get('to')) }),
    id: h('input', { name: 'id', id: 'ev-id', placeholder: 'event id', value: q.get('id') || '' }),
    order: h('select', { name: 'order', id: 'ev-order' }, h('option', { value: 'newest' }, 'Newest first'), h('option', { value: 'oldest', selected: q.get('order') === 'oldest' }, 'Oldest first')),
  };
  const iso = (v) => (v ? new Date(v).toISOString() : '');
  const form = h('form', {
    class: 'filters', role: 'search',
    onsubmit: (ev) => {
      ev.preventDefault();
      if (f.id.value.trim()) { go('event', { source: f.source.value, id: f.id.value.trim() }); return; }
      go('events', { source: f.source.value, type: f.type.value.trim(), from: iso(f.from.value), to: iso(f.to.value), order: f.order.value === 'oldest' ? 'oldest' : '' });
    },
  },
  h('label', { for: 'ev-source' }, 'Source', f.source),
  h('label', { for: 'ev-type' }, 'Type (glob, comma-separated)', f.type),
  h('label', { for: 'ev-from' }, 'Received from', f.from),
  h('label', { for: 'ev-to' }, 'Received before', f.to),
  h('label', { for: 'ev-id' }, 'Event id', f.id),
  h('label', { for: 'ev-order' }, 'Order', f.order),
  h('button', { class: 'primary', type: 'submit', text: 'Search' }));
  const body = h('tbody');
  const info = h('p', { class: 'muted', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', text: '← Previous page', disabled: true });
  const next = h('button', { type: 'button', text: 'Next page →', disabled: true });
  main.append(h('h1', { text: 'Events' }), form,
    h('div', { class: 'table-wrap' }, h('table', { id: 'events' },
      h('thead', {}, h('tr', {}, ['Received', 'ID', 'Type', 'Subject', 'Partition key', 'Bytes'].map((c) => h('th', { scope: 'col', text: c })))), body)),
    h('div', { class: 'toolbar' }, prev, next, info));

  const tokens = ['']; // the page tokens of the pages seen, for Previous
  let page = 0;
  const load = async () => {
    const p = new URLSearchParams({ page_size: '50', order: q.get('order') === 'oldest' ? 'LIST_ORDER_OLDEST_FIRST' : 'LIST_ORDER_NEWEST_FIRST' });
    if (tokens[page]) p.set('page_token', tokens[page]);
    if (q.get('from')) p.set('start_time', q.get('from'));
    if (q.get('to')) p.set('end_time', q.get('to'));
    for (const t of (q.get('type') || '').split(',').map((s) => s.trim()).filter(Boolean)) p.append('types', t);
    info.textContent = 'Loading…';
    const r = await api(`/v1/sources/${enc(source)}/events?${p}`);
    body.replaceChildren(...r.deliveries.map((d) => {
      const e = d.event;
      const href = `#/event?source=${enc(source)}&id=${enc(e.id)}`;
      return h('tr', {},
        h('td', { class: 'time', text: fmtTime(e.received_time) }),
        h('td', {}, h('a', { href }, h('code', { text: e.id }))),
        h('td', { text: e.type }),
        h('td', { class: 'long', text: e.subject }),
        h('td', { class: 'long', text: e.partition_key }),
        h('td', { class: 'num', text: fmtNum(b64bytes(e.data).length) }));
    }));
    if (!r.deliveries.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted', text: 'No events.' })));
    tokens[page + 1] = r.next_page_token;
    next.disabled = !r.next_page_token;
    prev.disabled = page === 0;
    info.textContent = `Page ${page + 1}: ${r.deliveries.length} event${r.deliveries.length === 1 ? '' : 's'}.`;
  };
  next.onclick = () => { page++; load().catch((e) => info.replaceChildren(errorBox(e))); };
  prev.onclick = () => { page = Math.max(0, page - 1); load().catch((e) => info.replaceChildren(errorBox(e))); };
  await load();
}

// ---------------------------------------------------------------------------------------
// One event: payload, raw bytes, headers, verification evidence, cursor

function highlightJSON(value, indent = '') {
  const inner = indent + '  ';
  if (value === null) return [h('span', { class: 'l', text: 'null' })];
  if (Array.isArray(value)) {
    if (!value.length) return ['[]'];
    return ['[\n', value.map((v, i) => [inner, highlightJSON(v, inner), i < value.length - 1 ? ',\n' : '\n']), indent, ']'];
  }
  switch (typeof value) {
    case 'object': {
      const keys = Object.keys(value);
      if (!keys.length) return ['{}'];
      return ['{\n', keys.map((k, i) => [inner, h('span', { class: 'k', text: JSON.stringify(k) }), ': ', highlightJSON(value[k], inner), i < keys.length - 1 ? ',\n' : '\n']), indent, '}'];
    }
    case 'string': return [h('span', { class: 's', text: JSON.stringify(value) })];
    case 'number': return [h('span', { class: 'n', text: String(value) })];
    default: return [h('span', { class: 'l', text: String(value) })];
  }
}

function hexDump(bytes) {
  const lines = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.slice(off, off + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + ' ' + ascii);
  }
  return lines.join('\n') || '(empty)';
}

function payloadViews(ev, bytes) {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  let pretty = null;
  const ct = (ev.data_content_type || '').toLowerCase();
  if (ct.includes('json') || (!ct && /^\s*[[{]/.test(text))) {
    try { pretty = highlightJSON(JSON.parse(text)); } catch { pretty = null; }
  }
  const printable = !/[\x00-\x08\x0e-\x1f]/.test(text) && !text.includes('\uFFFD');
  const views = [];
  if (pretty) views.push(['Pretty', () => h('pre', { id: 'payload' }, pretty)]);
  if (printable) views.push(['Text', () => h('pre', { id: 'payload', text })]);
  views.push(['Raw bytes (hex)', () => h('pre', { id: 'payload', text: hexDump(bytes) })]);
  const holder = h('div');
  const buttons = views.map(([label, render], i) => h('button', {
    type: 'button', 'aria-pressed': i === 0 ? 'true' : 'false',
    onclick: (e) => {
      for (const b of buttons) b.setAttribute('aria-pressed', b === e.currentTarget ? 'true' : 'false');
      holder.replaceChildren(render());
    },
  }, label));
  holder.append(views[0][1]());
  return [h('div', { class: 'tabs', role: 'group', 'aria-label': 'Payload view' }, buttons), holder];
}

async function eventDetail(q) {
  const source = q.get('source'), id = q.get('id');
  const r = await api(`/v1/sources/${enc(source)}/events/${enc(id)}`);
  const ev = r.event;
  const bytes = b64bytes(ev.data);
  const v = ev.verification || {};
  const cmd = `relayctl tail --source ${source} --after ${r.cursor}`;
  const copied = h('span', { class: 'muted', 'aria-live': 'polite' });
  const props = (pairs) => h('dl', { class: 'props' }, pairs.map(([k, val]) => [h('dt', { text: k }), h('dd', {}, val ?? '—')]));
  main.append(
    h('p', {}, h('a', { href: `#/events?source=${enc(source)}`, text: '← ' + source + ' events' })),
    h('h1', {}, 'Event ', h('code', { text: ev.id })),
    h('div', { class: 'grid2' },
      h('section', { class: 'card' }, h('h2', { text: 'Event' }), props([
        ['Source', ev.source], ['Type', ev.type || '—'], ['Subject', ev.subject || '—'], ['Event time', fmtTime(ev.time)],
        ['Received', fmtTime(ev.received_time)], ['Content type', ev.data_content_type || '—'], ['Size', fmtNum(bytes.length) + ' bytes'],
        ['Partition', String(r.partition)], ['Partition key', ev.partition_key || '—'], ['Trace parent', ev.trace_parent || '—'],
        ['Cursor', h('code', { id: 'cursor', text: r.cursor })],
      ]), h('div', { class: 'toolbar' },
        h('button', {
          type: 'button', id: 'copy-tail',
          onclick: async () => {
            try { await navigator.clipboard.writeText(cmd); copied.textContent = 'Copied.'; } catch { copied.textContent = 'Copy failed: select the command below.'; }
          },
        }, 'Copy relayctl tail --after command'), copied),
      h('pre', { text: cmd })),
      h('section', { class: 'card', id: 'verification' }, h('h2', { text: 'Verification' }), props([
        ['Provider', v.provider || '—'], ['Scheme', v.scheme || '—'],
        ['Matched key', v.provider ? `secrets[${v.key_index}]` + (v.key_id ? ` (id ${v.key_id})` : '') : '—'],
        ['Signed at', v.signed_time ? fmtTime(v.signed_time) : 'not signed with a time'],
      ]))),
    h('h2', { text: 'Payload' }), ...payloadViews(ev, bytes),
    h('h2', { text: 'Headers' }),
    Object.keys(ev.headers || {}).length
      ? h('div', { class: 'table-wrap' }, h('table', { id: 'headers' }, h('tbody', {},
        Object.keys(ev.headers).sort().map((k) => h('tr', {}, h('th', { scope: 'row' }, h('code', { text: k })), h('td', {}, h('code', { text: ev.headers[k] })))))))
      : h('p', { class: 'muted', text: 'No headers kept for this provider (relayd keeps the provider\'s own event headers, never credentials).' }));
}

// ---------------------------------------------------------------------------------------
// Live tail: Subscribe over HTTP (newline-delimited JSON), pause and resume by cursor

async function live(q) {
  if (!session.sources.length) { main.append(h('p', { class: 'muted', text: 'No sources this token may read.' })); return; }
  const chosen = new Set((q.get('sources') || '').split(',').filter((s) => session.sources.includes(s)));
  const boxes = session.sources.map((s) => h('input', { type: 'checkbox', value: s, checked: chosen.size === 0 || chosen.has(s) }));
  const types = h('input', { id: 'live-types', placeholder: 'all types', value: q.get('types') || '' });
  const dot = h('span', { class: 'dot' });
  const statusText = h('span', { id: 'live-status', text: 'Connecting…' });
  const toggle = h('button', { type: 'button', id: 'live-toggle', text: 'Pause' });
  const body = h('tbody');
  const count = h('span', { class: 'muted' });
  main.append(h('h1', { text: 'Live tail' }),
    h('div', { class: 'toolbar' },
      h('fieldset', { class: 'toolbar' }, h('legend', { class: 'muted', text: 'Sources' }), session.sources.map((s, i) => h('label', { class: 'check' }, boxes[i], s))),
      h('label', { for: 'live-types' }, 'Types (globs, comma-separated)', types),
      toggle, h('button', { type: 'button', text: 'Clear', onclick: () => { body.replaceChildren(); n = 0; count.textContent = ''; } })),
    h('p', { class: 'status', 'aria-live': 'polite' }, dot, statusText, ' ', count),
    h('div', { class: 'table-wrap' }, h('table', { id: 'live' },
      h('thead', {}, h('tr', {}, ['Received', 'Source', 'Type', 'ID', 'Bytes'].map((c) => h('th', { scope: 'col', text: c })))), body)));

  let cursor = '', abort = null, paused = false, retry = null, n = 0;
  const setStatus = (cls, text) => { dot.className = 'dot ' + cls; statusText.textContent = text; };
  const addRow = (d) => {
    const e = d.event;
    n++;
    count.textContent = `${n} event${n === 1 ? '' : 's'}`;
    body.prepend(h('tr', { class: 'new' },
      h('td', { text: fmtTime(e.received_time) }), h('td', { text: e.source }), h('td', { text: e.type }),
      h('td', {}, h('a', { href: `#/event?source=${enc(e.source)}&id=${enc(e.id)}` }, h('code', { text: e.id }))),
      h('td', { class: 'num', text: fmtNum(b64bytes(e.data).length) })));
    while (body.rows.length > 500) body.deleteRow(-1);
  };
  const selection = () => {
    // max_batch: a backlog (after a pause, a burst) comes as a few batches, not a line an event.
    const p = new URLSearchParams({ heartbeat_interval: '1s', max_batch: '100' });
    for (const b of boxes) if (b.checked) p.append('sources', b.value);
    for (const t of types.value.split(',').map((s) => s.trim()).filter(Boolean)) p.append('types', t);
    if (cursor) p.set('after_cursor', cursor); else p.set('start', 'START_POSITION_LATEST');
    return p;
  };
  const run = async () => {
    clearTimeout(retry);
    abort = new AbortController();
    const mine = abort;
    setStatus('', cursor ? 'Resuming…' : 'Connecting…');
    try {
      const r = await fetch('/v1/events:subscribe?' + selection(), { headers: authHeaders(), signal: mine.signal });
      if (!r.ok) {
        const t = await r.text();
        let msg = t;
        try { msg = JSON.parse(t).message; } catch { /* not JSON */ }
        throw new APIError(r.status, msg);
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (msg.error) throw new APIError(msg.error.code, msg.error.message);
          const res = msg.result || {};
          if (res.delivery) { cursor = res.delivery.cursor || cursor; addRow(res.delivery); }
          for (const d of (res.batch && res.batch.deliveries) || []) { cursor = d.cursor || cursor; addRow(d); }
          if (res.heartbeat) cursor = res.heartbeat.cursor || cursor;
          setStatus('live', 'Live' + (chosenNames() ? ': ' + chosenNames() : ''));
        }
      }
      throw new Error('the stream ended');
    } catch (e) {
      if (mine.signal.aborted) return;
      if (e instanceof APIError && e.status >= 400 && e.status < 500 && e.status !== 429) {
        setStatus('down', `Stopped: ${e.message}`);
        return;
      }
      setStatus('down', `Disconnected (${e.message}); resuming in 2 s from the last cursor`);
      retry = setTimeout(run, 2000);
    }
  };
  const chosenNames = () => boxes.filter((b) => b.checked).map((b) => b.value).join(', ');
  const restart = () => { cursor = ''; if (abort) abort.abort(); if (!paused) run(); };
  for (const b of boxes) b.addEventListener('change', restart);
  types.addEventListener('change', restart);
  toggle.onclick = () => {
    paused = !paused;
    toggle.textContent = paused ? 'Resume' : 'Pause';
    if (paused) {
      abort.abort();
      clearTimeout(retry);
      setStatus('paused', 'Paused: resuming reads on from the last event shown, none missed');
    } else {
      run();
    }
  };
  cleanup.push(() => { paused = true; clearTimeout(retry); if (abort) abort.abort(); });
  run();
}

// ---------------------------------------------------------------------------------------
// Refused requests

async function refused(q) {
  if (!session.sources.length) { main.append(h('p', { class: 'muted', text: 'No sources this token may read.' })); return; }
  const source = q.get('source') || session.sources[0];
  const sel = sourceSelect(session.sources, source, { id: 'ref-source', onchange: (e) => go('refused', { source: e.target.value }) });
  const body = h('tbody');
  const stamp = h('span', { class: 'muted', 'aria-live': 'polite' });
  main.append(h('h1', { text: 'Refused requests' }),
    h('div', { class: 'toolbar' }, h('label', { for: 'ref-source' }, 'Source', sel), stamp),
    h('p', { class: 'muted', text: 'The last 100 webhook requests this relayd refused for the source. Credentials are redacted and bodies never kept.' }),
    h('div', { class: 'table-wrap' }, h('table', { id: 'refused' },
      h('thead', {}, h('tr', {}, ['Time', 'Status', 'Reason', 'Message', 'Client', 'Request', 'Body bytes', 'Headers'].map((c) => h('th', { scope: 'col', text: c })))), body)));
  const load = async () => {
    const list = await api(`/v1/console/sources/${enc(source)}/refused`);
    body.replaceChildren(...list.map((r) => h('tr', {},
      h('td', { text: fmtTime(r.time) }), h('td', { text: r.status }),
      h('td', {}, h('span', { class: 'badge bad reason', text: r.reason })), h('td', { text: r.message || '' }),
      h('td', {}, h('code', { text: r.client_addr })), h('td', {}, h('code', { text: `${r.method} ${r.path}` })),
      h('td', { class: 'num', text: fmtNum(r.body_size) }),
      h('td', {}, h('details', {}, h('summary', { text: `${Object.keys(r.headers || {}).length} headers` }),
        h('dl', { class: 'props' }, Object.keys(r.headers || {}).sort().map((k) => [h('dt', {}, h('code', { text: k })), h('dd', {}, h('code', { text: r.headers[k] }))])))))));
    if (!list.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted', text: 'Nothing refused since relayd started.' })));
    stamp.textContent = 'Updated ' + fmtTime(new Date().toISOString()) + '; refreshes every 5 s.';
  };
  await load();
  const t = setInterval(() => load().catch((e) => stamp.replaceChildren(errorBox(e))), 5000);
  cleanup.push(() => clearInterval(t));
}

// ---------------------------------------------------------------------------------------
// Dead letters: list a group's, redrive one, a selection or all

async function deadLetters(q) {
  const o = await api('/v1/console/overview');
  const withGroups = o.sources.filter((s) => s.groups.length);
  if (!withGroups.length) { main.append(h('h1', { text: 'Dead letters' }), h('p', { class: 'muted', text: 'No consumer groups on the sources this token may read.' })); return; }
  const src = withGroups.find((s) => s.name === q.get('source')) || withGroups[0];
  const group = src.groups.find((g) => g.name === q.get('group')) || [...src.groups].sort((a, b) => b.dead_letters - a.dead_letters)[0];
  const srcSel = sourceSelect(withGroups.map((s) => s.name), src.name, { id: 'dl-source', onchange: (e) => go('dead-letters', { source: e.target.value }) });
  const grpSel = sourceSelect(src.groups.map((g) => g.name), group.name, { id: 'dl-group', onchange: (e) => go('dead-letters', { source: src.name, group: e.target.value }) });
  const body = h('tbody');
  const all = h('input', { type: 'checkbox', 'aria-label': 'Select all' });
  const total = h('strong', { id: 'dl-count' });
  const totalWord = h('span', { text: ' dead letters' });
  const redriveSel = h('button', { type: 'button', id: 'dl-redrive-selected', text: 'Redrive selected', disabled: true });
  const redriveAll = h('button', { type: 'button', id: 'dl-redrive-all', class: 'danger', text: 'Redrive all' });
  const confirmBox = h('div');
  const result = h('p', { 'aria-live': 'polite', id: 'dl-result' });
  main.append(h('h1', { text: 'Dead letters' }),
    h('div', { class: 'toolbar' }, h('label', { for: 'dl-source' }, 'Source', srcSel), h('label', { for: 'dl-group' }, 'Group', grpSel),
      h('span', {}, total, totalWord), redriveSel, redriveAll),
    confirmBox, result,
    h('p', { class: 'muted', text: 'Redriving hands a dead letter back to its group only, as a first delivery of the same entry; other groups and tails see nothing new.' }),
    h('div', { class: 'table-wrap' }, h('table', { id: 'dead-letters' },
      h('thead', {}, h('tr', {}, h('th', {}, all), ['Received', 'ID', 'Type', 'Attempts', 'Last error', ''].map((c) => h('th', { scope: 'col', text: c })))), body)));
  const boxes = () => [...body.querySelectorAll('input[type=checkbox]')];
  const refreshSel = () => {
    const n = boxes().filter((b) => b.checked).length;
    redriveSel.disabled = n === 0;
    redriveSel.textContent = n ? `Redrive selected (${n})` : 'Redrive selected';
  };
  all.onchange = () => { for (const b of boxes()) b.checked = all.checked; refreshSel(); };
  const load = async () => {
    const items = [];
    let token = '';
    do { // up to 1,000 shown
      const p = new URLSearchParams({ dead_letters: 'true', group: group.name, page_size: '500', order: 'LIST_ORDER_NEWEST_FIRST' });
      if (token) p.set('page_token', token);
      const r = await api(`/v1/sources/${enc(src.name)}/events?${p}`);
      items.push(...r.deliveries);
      token = r.next_page_token;
    } while (token && items.length < 1000);
    total.textContent = fmtNum(items.length) + (token ? '+' : '');
    totalWord.textContent = items.length === 1 && !token ? ' dead letter' : ' dead letters';
    redriveAll.disabled = items.length === 0;
    all.checked = false;
    body.replaceChildren(...items.map((d) => {
      const e = d.event;
      return h('tr', { 'data-id': e.id },
        h('td', {}, h('input', { type: 'checkbox', value: e.id, 'aria-label': 'Select ' + e.id, onchange: refreshSel })),
        h('td', { text: fmtTime(e.received_time) }),
        h('td', {}, h('a', { href: `#/event?source=${enc(src.name)}&id=${enc(e.id)}` }, h('code', { text: e.id }))),
        h('td', { text: e.type }), h('td', { class: 'num', text: d.delivery_attempt || '—' }),
        h('td', { class: 'muted', text: 'not recorded' }),
        h('td', {}, h('button', { type: 'button', text: 'Redrive', onclick: () => ask([e.id]) })));
    }));
    if (!items.length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'muted', text: 'No dead letters.' })));
    refreshSel();
  };
  const ask = (ids) => {
    const what = ids ? `${ids.length} dead letter${ids.length === 1 ? '' : 's'}` : `every dead letter (${total.textContent})`;
    const yes = h('button', { type: 'button', class: 'danger', id: 'dl-confirm', text: 'Redrive' });
    const no = h('button', { type: 'button', text: 'Cancel', onclick: () => confirmBox.replaceChildren() });
    yes.onclick = async () => {
      yes.disabled = true;
      try {
        const r = await api(`/v1/sources/${enc(src.name)}:redrive`, { method: 'POST', body: { group: group.name, ids: ids || [] } });
        result.className = 'ok';
        result.textContent = `Redriven: ${r.redriven}.`;
      } catch (e) {
        result.className = 'error';
        result.textContent = e.message;
      }
      confirmBox.replaceChildren();
      await load();
    };
    confirmBox.replaceChildren(h('div', { class: 'confirm', role: 'alertdialog', 'aria-label': 'Confirm redrive' },
      h('span', { text: `Redrive ${what} of group ${group.name} on ${src.name} back to the group?` }), yes, no));
    yes.focus();
  };
  redriveSel.onclick = () => ask(boxes().filter((b) => b.checked).map((b) => b.value));
  redriveAll.onclick = () => ask(null);
  await load();
}

// ---------------------------------------------------------------------------------------
// Send a test webhook, signed by relayd with the source's own scheme and secret

async function send(q) {
  main.append(h('h1', { text: 'Send a test webhook' }));
  if (!session.publish.length) { main.append(h('p', { class: 'muted', text: 'This token may not publish to any source (auth.tokens[].publish).' })); return; }
  const source = session.publish.includes(q.get('source')) ? q.get('source') : session.publish[0];
  const sel = sourceSelect(session.publish, source, { id: 'send-source' });
  const id = 'evt_console_' + Math.random().toString(36).slice(2, 10);
  const bodyIn = h('textarea', { id: 'send-body', spellcheck: 'false' });
  bodyIn.value = JSON.stringify({ id, type: 'console.test', created: Math.floor(Date.now() / 1000), data: { message: 'hello from the eventrelay console' } }, null, 2);
  const ct = h('input', { id: 'send-ct', value: 'application/json' });
  const out = h('div', { id: 'send-result', 'aria-live': 'polite' });
  main.append(h('p', { class: 'muted', text: 'relayd signs the body with the source\'s own scheme and secret, as the provider would, and posts it through the real webhook ingress. The answer is shown below.' }),
    h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren(h('p', { class: 'muted', text: 'Sending…' }));
        try {
          const r = await api(`/v1/console/sources/${enc(sel.value)}/send`, { method: 'POST', body: { body: bodyIn.value, content_type: ct.value.trim() } });
          let answer = null;
          try { answer = JSON.parse(r.body); } catch { answer = null; }
          fill(out, h('p', { class: r.status < 300 ? 'ok' : 'error' }, h('strong', { text: `HTTP ${r.status}` })),
            h('pre', { text: r.body || '(empty)' }),
            answer?.event_id ? h('p', {}, h('a', { href: `#/event?source=${enc(sel.value)}&id=${enc(answer.event_id)}`, text: 'Open the stored event' })) : null);
        } catch (e) {
          out.replaceChildren(errorBox(e));
        }
      },
    },
    h('div', { class: 'toolbar' }, h('label', { for: 'send-source' }, 'Source', sel), h('label', { for: 'send-ct' }, 'Content type', ct)),
    h('label', { for: 'send-body' }, 'Body (sent byte for byte)', bodyIn),
    h('div', { class: 'toolbar' }, h('button', { class: 'primary', type: 'submit', id: 'send-submit', text: 'Sign and send' }))),
    out);
}

boot();
