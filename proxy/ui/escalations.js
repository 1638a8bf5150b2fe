// The escalation queue: calls the policy held for a human, pending first, approved or denied with one click.
// The number pending is also shown in the page title, e.g. `(3) toolgate`, and beside the navigation link.

import { ApiError, get, post } from './api.js';
import { clock, el, heading, notice, pageLink, replace, table, text } from './dom.js';
import { live } from './live.js';

/** Escalation events (by audit event) of the newest this many escalated calls, for their findings. */
const ESCALATED_EVENTS = 500;

export function showPendingCount(count) {
  document.title = count > 0 ? `(${count}) toolgate` : 'toolgate';
  const badge = document.getElementById('pending-badge');
  if (badge) {
    badge.textContent = String(count);
    badge.hidden = count === 0;
  }
}

export async function refreshPendingCount() {
  try {
    const answer = await get('/api/v1/escalations?status=pending');
    showPendingCount((answer.escalations || []).length);
  } catch {
    // The next poll or feed event tries again; a 401 has signed the console out.
  }
}

/** Whether a live feed event can change the queue. */
export function concerns({ event, name }) {
  return name === 'escalation' || event.policy_result === 'escalate' || String(event.event_type).startsWith('escalation');
}

/** Pending first, then the newest. */
function order(list) {
  return list.slice().sort((a, b) => {
    const pa = a.status === 'pending' ? 0 : 1;
    const pb = b.status === 'pending' ? 0 : 1;
    if (pa !== pb) return pa - pb;
    return a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0;
  });
}

/** The escalated call's audit event by escalation id (it names it in `extra.escalation_id`). */
async function escalatedEvents(signal) {
  const byId = new Map();
  try {
    const page = await get('/api/v1/audit/events?policy_result=escalate&limit=' + ESCALATED_EVENTS, signal);
    for (const event of page.events || []) {
      const id = event.extra && event.extra.escalation_id;
      if (typeof id === 'string' && !byId.has(id)) byId.set(id, event);
    }
  } catch (e) {
    if (e.name === 'AbortError') throw e;
  }
  return byId;
}

/** DLP findings as `type at path` lines: never the matched values, which are not stored anywhere. */
export function findingsList(findings) {
  if (!Array.isArray(findings) || findings.length === 0) return el('span', { class: 'muted' }, 'none');
  return el(
    'ul',
    { class: 'findings' },
    findings.map((f) =>
      el('li', {}, el('span', { class: 'finding-type sev-' + text(f.severity) }, text(f.type)), ' at ', el('code', {}, text(f.path))),
    ),
  );
}

function statusCell(escalation) {
  const parts = [el('span', { class: 'status status-' + text(escalation.status) }, text(escalation.status))];
  if (escalation.delivered === true) parts.push(el('div', { class: 'muted' }, 'answer delivered'));
  if (escalation.delivered === false) parts.push(el('div', { class: 'muted' }, 'not yet delivered'));
  return parts;
}

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  replace(root, heading('Escalations', refresh), message, list);

  async function decide(escalation, verb, buttons) {
    for (const b of buttons) b.disabled = true;
    try {
      await post(`/api/v1/escalations/${encodeURIComponent(escalation.id)}/${verb}`);
      replace(message, notice('ok', verb === 'approve' ? 'Approved ' : 'Denied ', escalation.tool_name, ' for ', escalation.agent_id, '.'));
    } catch (e) {
      const why = e instanceof ApiError && e.status === 409 ? 'it was already decided' : e.message;
      replace(message, notice('error', 'Could not ', verb, ' ', escalation.id, ': ', why));
    }
    refreshPendingCount();
    load();
  }

  function row(escalation, events) {
    const event = events.get(escalation.id);
    const findings = escalation.dlp_findings || (event && event.dlp_findings);
    let actions = '';
    if (escalation.status === 'pending') {
      const approve = el('button', { type: 'button', class: 'approve' }, 'Approve');
      const deny = el('button', { type: 'button', class: 'deny' }, 'Deny');
      approve.addEventListener('click', () => decide(escalation, 'approve', [approve, deny]));
      deny.addEventListener('click', () => decide(escalation, 'deny', [approve, deny]));
      actions = el('div', { class: 'actions' }, approve, deny);
    }
    return el(
      'tr',
      { class: 'escalation escalation-' + text(escalation.status), dataset: { id: escalation.id } },
      el('td', {}, statusCell(escalation)),
      el('td', { title: text(escalation.created_at) }, clock(escalation.created_at)),
      el('td', {}, text(escalation.agent_id), escalation.tenant_id ? el('div', { class: 'muted' }, 'tenant ', escalation.tenant_id) : ''),
      el('td', {}, el('code', {}, text(escalation.tool_name)), el('div', { class: 'muted' }, 'on ', text(escalation.mcp_server))),
      el('td', {}, text(escalation.action)),
      el('td', { class: 'target' }, el('code', {}, text(escalation.target))),
      el('td', { class: 'reason' }, text(escalation.reason), el('div', { class: 'muted' }, text(escalation.policy_id))),
      el('td', {}, findingsList(findings), event ? el('div', {}, pageLink('event', 'event', event.id)) : ''),
      el('td', {}, actions),
    );
  }

  async function load() {
    try {
      const [answer, events] = await Promise.all([get('/api/v1/escalations', signal), escalatedEvents(signal)]);
      const all = order(answer.escalations || []);
      showPendingCount(all.filter((e) => e.status === 'pending').length);
      if (all.length === 0) {
        replace(list, notice('info', 'No escalations. Calls the policy escalates wait here for a reviewer.'));
        return;
      }
      replace(
        list,
        table(
          ['Status', 'Raised', 'Agent', 'Tool', 'Action', 'Target', 'Reason', 'Findings', ''],
          all.map((e) => row(e, events)),
          { class: 'grid', id: 'escalation-table' },
        ),
      );
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(list, notice('error', 'The escalations could not be loaded: ', e.message));
    }
  }

  load();
  // New escalations and decisions arrive on the live feed; the poll catches expiries and other reviewers.
  const unsubscribe = live.subscribe((kind, payload) => {
    if (kind === 'event' && concerns(payload)) load();
  });
  const timer = setInterval(load, 30000);
  signal.addEventListener('abort', () => {
    clearInterval(timer);
    unsubscribe();
  });
}
