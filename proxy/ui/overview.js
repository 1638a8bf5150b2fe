// The overview: the last hour by minute and policy result (from /api/v1/audit/stats), and the agents and tools
// denied most in that hour (from the denied events themselves).

import { get, withQuery } from './api.js';
import { legend, rankedBars, stackedBars } from './charts.js';
import { el, heading, notice, replace } from './dom.js';

const MINUTES = 60;
const REFRESH_MS = 15000;
/** Denied events read for the rankings; beyond it the rankings say they cover the newest ones only. */
const DENIALS = 1000;
const TOP = 8;
const SERIES = [
  { key: 'allow', label: 'allow' },
  { key: 'escalate', label: 'escalate' },
  { key: 'deny', label: 'deny' },
];

function minuteLabel(ms) {
  return new Date(ms).toISOString().slice(11, 16);
}

/** The minute slots of the last hour, oldest first, filled from the stats' buckets. */
function slots(stats, firstMs) {
  const out = [];
  for (let i = 0; i < MINUTES; i += 1) out.push({ label: minuteLabel(firstMs + i * 60000), values: {} });
  for (const bucket of stats.buckets || []) {
    const i = Math.round((Date.parse(bucket.start) - firstMs) / 60000);
    if (i >= 0 && i < MINUTES) out[i].values = { ...bucket.by_result };
  }
  return out;
}

function top(events, field) {
  const counts = new Map();
  for (const e of events) {
    const key = e[field];
    if (typeof key === 'string') counts.set(key, (counts.get(key) || 0) + 1);
  }
  return [...counts].map(([label, value]) => ({ label, value })).sort((a, b) => b.value - a.value || (a.label < b.label ? -1 : 1)).slice(0, TOP);
}

function tile(label, value, cls) {
  return el('div', { class: 'tile ' + cls }, el('div', { class: 'tile-value' }, String(value)), el('div', { class: 'tile-label' }, label));
}

function ranking(title, items, note) {
  return el(
    'section',
    { class: 'card' },
    el('h2', {}, title),
    items.length ? rankedBars(items, 'bar-deny', { title }) : el('p', { class: 'muted' }, 'No denials in the last hour.'),
    note ? el('p', { class: 'muted' }, note) : '',
  );
}

export function render(root, signal) {
  const body = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  replace(root, heading('Overview'), body);

  async function load() {
    const firstMs = Math.floor(Date.now() / 60000) * 60000 - (MINUTES - 1) * 60000;
    const start = new Date(firstMs).toISOString();
    try {
      const [stats, denied, pending] = await Promise.all([
        get(withQuery('/api/v1/audit/stats', { bucket: 'minute', start }), signal),
        get(withQuery('/api/v1/audit/events', { policy_result: 'deny', start, limit: DENIALS }), signal),
        get('/api/v1/escalations?status=pending', signal),
      ]);
      const minutes = slots(stats, firstMs);
      const sum = (key) => minutes.reduce((n, m) => n + (m.values[key] || 0), 0);
      const deniedEvents = denied.events || [];
      const partial = denied.next_cursor ? `Counted over the newest ${DENIALS} denials of the hour.` : '';
      replace(
        body,
        el(
          'div',
          { class: 'tiles' },
          tile('allowed', sum('allow'), 'result-allow'),
          tile('escalated', sum('escalate'), 'result-escalate'),
          tile('denied', sum('deny'), 'result-deny'),
          tile('pending review', (pending.escalations || []).length, 'result-other'),
        ),
        el(
          'section',
          { class: 'card', id: 'calls-per-minute' },
          el('h2', {}, 'Judged events per minute, last hour (UTC)'),
          stackedBars(minutes, SERIES, { title: 'judged events per minute by policy result' }),
          legend(SERIES),
          el('p', { class: 'muted' }, 'Each policy decision counts once; an allowed call also counts its result event.'),
          stats.truncated ? notice('warn', 'The server cut these statistics short: some minutes are missing.') : '',
        ),
        el('div', { class: 'two' }, ranking('Top denied agents', top(deniedEvents, 'agent_id'), partial), ranking('Top denied tools', top(deniedEvents, 'tool_name'), partial)),
      );
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(body, notice('error', 'The overview could not be loaded: ', e.message));
    }
  }

  load();
  const timer = setInterval(load, REFRESH_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}
