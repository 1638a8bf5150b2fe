// Behavioural and operational alerts: the open ones (or acknowledged, or all), by kind and agent, to acknowledge
// or resolve. Pages of the listing are followed with "More alerts" (the server's `next_cursor`). New alerts
// arrive on the live feed as `alert` events and reload the first page. A server without the route answers 404
// for /api/v1/alerts, and the page says so.

import { ApiError, get, post, withQuery } from './api.js';
import { clock, el, heading, notice, replace, table, text } from './dom.js';
import { live } from './live.js';

const STATUSES = [['open', 'Open'], ['acknowledged', 'Acknowledged'], ['', 'All']];
// The contract's kinds (docs/behaviour.md).
const KINDS = ['rate_anomaly', 'deny_spike', 'prompt_drift', 'new_tool', 'tool_definition_changed', 'dlp_critical', 'audit_write_failure', 'siem_delivery_failure'];
const filters = { status: 'open', kind: '', agent: '' };

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  const status = el('select', { id: 'alert-status', 'aria-label': 'Status' }, STATUSES.map(([v, label]) => el('option', { value: v }, label)));
  status.value = filters.status;
  status.addEventListener('change', () => {
    filters.status = status.value;
    load();
  });
  const kinds = el('select', { id: 'alert-kind', 'aria-label': 'Kind' }, el('option', { value: '' }, 'any kind'), KINDS.map((k) => el('option', { value: k }, k)));
  kinds.value = filters.kind;
  kinds.addEventListener('change', () => {
    filters.kind = kinds.value;
    load();
  });
  const agent = el('input', { type: 'search', placeholder: 'agent id', 'aria-label': 'Agent', id: 'alert-agent', value: filters.agent });
  agent.addEventListener('change', () => {
    filters.agent = agent.value.trim();
    load();
  });
  replace(root, heading('Alerts', status, kinds, agent, refresh), message, list);
  let alerts = [];

  async function act(alert, verb, button) {
    button.disabled = true;
    try {
      await post(`/api/v1/alerts/${encodeURIComponent(alert.id)}/${verb}`);
      replace(message, notice('ok', verb === 'ack' ? 'Acknowledged ' : 'Resolved ', alert.kind, '.'));
    } catch (e) {
      const why = e instanceof ApiError && e.status === 409 ? 'it already changed' : e.message;
      replace(message, notice('error', 'Could not ', verb, ' the alert: ', why));
    }
    load();
  }

  function row(alert) {
    const buttons = [];
    for (const [verb, label] of [['ack', 'Acknowledge'], ['resolve', 'Resolve']]) {
      if (alert.status === 'resolved' || (verb === 'ack' && alert.status !== 'open')) continue;
      const b = el('button', { type: 'button', class: 'secondary ' + verb }, label);
      b.addEventListener('click', () => act(alert, verb, b));
      buttons.push(b);
    }
    return el(
      'tr',
      { class: 'alert-row sev-' + text(alert.severity), dataset: { id: text(alert.id), kind: text(alert.kind) } },
      el('td', {}, el('span', { class: 'finding-type sev-' + text(alert.severity) }, text(alert.severity))),
      el('td', {}, text(alert.kind)),
      el('td', {}, text(alert.agent_id), alert.tenant_id ? el('div', { class: 'muted' }, 'tenant ', alert.tenant_id) : ''),
      el('td', {}, text(alert.status)),
      el('td', { title: text(alert.opened_at) }, clock(alert.opened_at)),
      el('td', {}, alert.detail !== null && typeof alert.detail === 'object' ? el('pre', {}, JSON.stringify(alert.detail, null, 2)) : text(alert.detail)),
      el('td', { class: 'actions' }, buttons),
    );
  }

  function empty() {
    if (filters.kind || filters.agent) return 'No alert matches these filters.';
    return filters.status ? 'No ' + filters.status + ' alerts.' : 'No alerts.';
  }

  function draw(nextCursor) {
    const more = nextCursor ? el('button', { type: 'button', class: 'secondary', id: 'alerts-more', onclick: () => load(nextCursor) }, 'More alerts') : '';
    replace(
      list,
      alerts.length
        ? table(['Severity', 'Kind', 'Agent', 'Status', 'Opened (UTC)', 'Detail', ''], alerts.map(row), { class: 'grid', id: 'alert-table' })
        : notice('info', empty()),
      more,
    );
  }

  async function load(cursor) {
    try {
      const query = { status: filters.status, kind: filters.kind, agent_id: filters.agent, cursor };
      const page = await get(withQuery('/api/v1/alerts', query), signal);
      alerts = cursor ? alerts.concat(page.alerts || []) : page.alerts || [];
      draw(page.next_cursor);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.missing) {
        replace(list, notice('warn', el('strong', { id: 'alerts-unavailable' }, 'Alerts are not available on this server. '), 'Its admin API has no /api/v1/alerts.'));
        return;
      }
      replace(list, notice('error', 'The alerts could not be loaded: ', e.message));
    }
  }

  load();
  const unsubscribe = live.subscribe((kind, payload) => {
    if (kind === 'event' && payload.name === 'alert') load();
  });
  signal.addEventListener('abort', unsubscribe);
}
