// Behavioural and operational alerts: the open ones (or acknowledged, or all), to acknowledge or resolve.
// New alerts arrive on the live feed as `alert` events and reload the list. Servers without alerts answer 404
// for /api/v1/alerts, and the page says so.

import { ApiError, get, post } from './api.js';
import { clock, el, heading, notice, replace, table, text } from './dom.js';
import { live } from './live.js';

const STATUSES = [['open', 'Open'], ['acknowledged', 'Acknowledged'], ['', 'All']];

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  const status = el('select', { id: 'alert-status', 'aria-label': 'Status' }, STATUSES.map(([v, label]) => el('option', { value: v }, label)));
  status.addEventListener('change', () => load());
  replace(root, heading('Alerts', status, refresh), message, list);

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

  async function load() {
    try {
      const query = status.value ? '?status=' + encodeURIComponent(status.value) : '';
      const answer = await get('/api/v1/alerts' + query, signal);
      const alerts = answer.alerts || [];
      replace(
        list,
        alerts.length
          ? table(['Severity', 'Kind', 'Agent', 'Status', 'Opened (UTC)', 'Detail', ''], alerts.map(row), { class: 'grid', id: 'alert-table' })
          : notice('info', status.value ? 'No ' + status.value + ' alerts.' : 'No alerts.'),
      );
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.missing) {
        replace(list, notice('warn', el('strong', { id: 'alerts-unavailable' }, 'Alerts are not available yet on this server. '), 'This page lists open alerts once the server has /api/v1/alerts.'));
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
