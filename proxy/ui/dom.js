// Building the page without parsing markup: every value shown becomes a text node or an attribute set through
// the DOM, never HTML. Event fields are chosen by agents and upstreams (a tool may be named `<img onerror=…>`),
// so nothing in the console assigns markup to an element: the module test in proxy/src/console/tests.rs fails
// the build's tests if one does.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.setAttribute('class', value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** An HTML element: `el('td', { class: 'x' }, 'text', otherNode)`. Strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, for the hand-drawn charts. */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces a node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return fill(node, {}, children);
}

/** A link to a console page; `parts` are encoded, so an id cannot leave its path segment. */
export function pageLink(text, page, ...parts) {
  const href = '#/' + [page, ...parts.map(encodeURIComponent)].join('/');
  return el('a', { href }, text);
}

/** `2026-11-22T20:15:00.123456Z` as `20:15:00` (UTC, as stored). */
export function clock(timestamp) {
  if (typeof timestamp !== 'string') return '';
  const at = timestamp.indexOf('T');
  return at < 0 ? timestamp : timestamp.slice(at + 1, at + 9);
}

/** The first 12 characters of a hash, the whole of it in the element's title. */
export function shortHash(hash) {
  if (typeof hash !== 'string') return el('span', {}, '—');
  return el('span', { class: 'mono', title: hash }, hash.length > 12 ? hash.slice(0, 12) + '…' : hash);
}

/** A value as text: strings as they are, null as a dash, the rest as JSON. */
export function text(value) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** The class that colours an event by its outcome: allow, deny, escalate, alert or other. */
export function resultClass(event) {
  if (!event) return 'result-other';
  if (event.event_type === 'alert') return 'result-alert';
  const result = event.policy_result;
  if (result === 'allow' || result === 'deny' || result === 'escalate') return 'result-' + result;
  return 'result-other';
}

/** The label for that colour. */
export function resultLabel(event) {
  if (event && event.event_type === 'alert') return 'alert';
  return (event && event.policy_result) || '—';
}

/** A table whose header is `columns` and whose body is `rows` (arrays of cells, or <tr> nodes). */
export function table(columns, rows, attrs = {}) {
  return el(
    'table',
    attrs,
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, rows.map((r) => (r instanceof Node ? r : el('tr', {}, r.map((c) => el('td', {}, c)))))),
  );
}

/** A notice box: `kind` is info, ok, warn or error. */
export function notice(kind, ...children) {
  return el('div', { class: 'notice notice-' + kind, role: kind === 'error' ? 'alert' : 'status' }, children);
}

/** A page heading with optional controls beside it. */
export function heading(title, ...controls) {
  return el('div', { class: 'page-head' }, el('h1', {}, title), el('div', { class: 'controls' }, controls));
}
