// SIEM sinks: each sink's state, cursor, lag, delivered count and last error, and a test event on demand
// (docs/siem.md). Servers without SIEM delivery answer 404 for /api/v1/siem, and the page says so.

import { ApiError, get, post } from './api.js';
import { el, heading, notice, replace, table, text } from './dom.js';

/** Sink fields shown first, when present; any other field follows, so new ones show without a console change. */
const KNOWN = [
  'name', 'kind', 'state', 'delivering_instance', 'cursor', 'lag_events', 'lag_seconds', 'delivered',
  'last_error', 'last_delivery_at', 'url', 'event_types', 'batch_max', 'consecutive_failures',
];

/** A test send's answer in one line: outcome, the sink's status and the start of its body. */
function testResult(answer) {
  const parts = [answer.outcome];
  if (answer.reason) parts.push(`(${answer.reason})`);
  if (answer.status !== null && answer.status !== undefined) parts.push(`status ${answer.status}`);
  else if (answer.detail) parts.push(answer.detail);
  if (answer.body) parts.push(`: ${answer.body.slice(0, 200)}`);
  return parts.join(' ');
}

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  replace(root, heading('SIEM sinks', refresh), message, list);

  async function test(sink, button) {
    button.disabled = true;
    try {
      const answer = await post(`/api/v1/siem/${encodeURIComponent(sink.name)}/test`);
      const kind = answer && answer.outcome === 'ok' ? 'ok' : 'warn';
      replace(message, notice(kind, 'Test event to ', text(sink.name), ': ', el('span', { id: 'siem-test-result' }, testResult(answer || {}))));
    } catch (e) {
      replace(message, notice('error', 'The test event to ', text(sink.name), ' failed: ', e.message));
    }
    load();
  }

  function draw(sinks) {
    const columns = KNOWN.filter((k) => sinks.some((s) => k in s));
    for (const s of sinks) for (const k of Object.keys(s)) if (!columns.includes(k)) columns.push(k);
    const rows = sinks.map((sink) => {
      const button = el('button', { type: 'button', class: 'secondary' }, 'Send test event');
      button.addEventListener('click', () => test(sink, button));
      return el(
        'tr',
        { class: sink.state === 'failing' ? 'sink-failing' : '' },
        columns.map((k) => el('td', { class: k === 'last_error' && sink[k] ? 'warn' : '' }, text(sink[k]))),
        el('td', {}, button),
      );
    });
    replace(list, table([...columns, ''], rows, { class: 'grid', id: 'sink-table' }));
  }

  async function load() {
    try {
      const answer = await get('/api/v1/siem', signal);
      const sinks = answer.sinks || [];
      if (sinks.length) draw(sinks);
      else replace(list, notice('info', 'No SIEM sink is configured.'));
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.missing) {
        replace(list, notice('warn', el('strong', { id: 'siem-unavailable' }, 'SIEM delivery is not available yet on this server. '), 'This page shows each sink once the server has /api/v1/siem.'));
        return;
      }
      replace(list, notice('error', 'The SIEM sinks could not be loaded: ', e.message));
    }
  }

  load();
}
