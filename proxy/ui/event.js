// One audit event: every field, its DLP findings by type and path, its trace id, and Verify chain, which
// recomputes the hash chain from the start of the log up to this event's timestamp on the server.

import { get, session, withQuery } from './api.js';
import { el, heading, notice, pageLink, replace, resultClass, resultLabel, table, text } from './dom.js';

/** Findings grouped by type: each type's severity, the paths it was found at and how often. */
function findingsByType(findings) {
  const groups = new Map();
  for (const f of findings) {
    const type = text(f.type);
    const group = groups.get(type) || { severity: text(f.severity), paths: [], count: 0 };
    group.paths.push(text(f.path));
    group.count += Number.isInteger(f.count) ? f.count : 1;
    groups.set(type, group);
  }
  return groups;
}

function findingsSection(event) {
  const findings = Array.isArray(event.dlp_findings) ? event.dlp_findings : [];
  const section = el('section', { id: 'event-findings' }, el('h2', {}, 'DLP findings'));
  if (findings.length === 0) {
    section.append(el('p', { class: 'muted' }, 'None.'));
    return section;
  }
  const rows = [...findingsByType(findings)].map(([type, g]) => [
    el('span', { class: 'finding-type sev-' + g.severity }, type),
    g.severity,
    el('ul', { class: 'paths' }, g.paths.map((p) => el('li', {}, el('code', {}, p)))),
    String(g.count),
  ]);
  section.append(
    table(['Type', 'Severity', 'Found at (JSON pointer)', 'Count'], rows, { class: 'grid' }),
    el('p', { class: 'muted' }, 'Action: ', text(event.dlp_action), '. The matched values are never stored.'),
  );
  return section;
}

function fieldValue(value) {
  if (value !== null && typeof value === 'object') return el('pre', {}, JSON.stringify(value, null, 2));
  return el('span', { class: value === null ? 'muted' : '' }, text(value));
}

/** The audit event's fields in the order docs/audit-format.md lists them; any other member follows. */
const FIELD_ORDER = [
  'id', 'chain_id', 'seq', 'timestamp', 'event_type', 'agent_id', 'session_id', 'tenant_id', 'workflow_id',
  'requester_id', 'tool_name', 'mcp_server', 'action', 'target', 'input_hash', 'policy_result', 'policy_id',
  'policy_reason', 'behavioral_score', 'dlp_findings', 'dlp_action', 'response_code', 'latency_us', 'error',
  'trace_id', 'extra', 'previous_hash', 'event_hash',
];

function fieldsSection(event) {
  const keys = FIELD_ORDER.filter((k) => k in event).concat(Object.keys(event).filter((k) => !FIELD_ORDER.includes(k)));
  return el(
    'section',
    {},
    el('h2', {}, 'Fields'),
    el(
      'table',
      { class: 'fields', id: 'event-fields' },
      el('tbody', {}, keys.map((k) => el('tr', { dataset: { field: k } }, el('th', { scope: 'row' }, k), el('td', {}, fieldValue(event[k]))))),
    ),
  );
}

/** Where to go next: a result's decision event, and the queue for an escalated call. */
function related(event) {
  const extra = event.extra && typeof event.extra === 'object' ? event.extra : {};
  const links = [];
  if (typeof extra.decision_event === 'string') links.push(el('span', {}, 'decision ', pageLink(extra.decision_event, 'event', extra.decision_event)));
  if (typeof extra.escalation_id === 'string') links.push(el('span', {}, 'escalation ', pageLink(extra.escalation_id, 'escalations')));
  return links.length ? el('p', { class: 'related' }, links) : '';
}

/** `tenant`: the answer counts the tenant's own events, and a bad row of another tenant comes without its id. */
function verifyOutcome(answer, tenant) {
  const counted = tenant ? "of this tenant's events" : 'events';
  if (answer.chain_intact) {
    return notice('ok', `Chain intact: ${answer.events_verified} ${counted} verified up to this event (${answer.duration_ms} ms).`);
  }
  const bad = answer.first_bad_row || {};
  return notice(
    'error',
    el('strong', {}, 'Chain broken. '),
    `First bad row: chain ${text(bad.chain_id)}, seq ${text(bad.seq)}, event `,
    el('span', { id: 'first-bad-row', class: 'mono' }, bad.id ? pageLink(bad.id, 'event', bad.id) : '—'),
    ': ',
    text(bad.reason),
    ` (${text(answer.events_verified)} ${counted} verified).`,
  );
}

export function render(root, signal, id) {
  if (!id) {
    replace(root, heading('Event'), notice('warn', 'No event id in this address: open an event from the live feed.'));
    return;
  }
  replace(root, el('p', { class: 'muted' }, 'Loading…'));
  get('/api/v1/audit/events/' + encodeURIComponent(id), signal).then(
    (event) => show(root, event),
    (e) => {
      if (e.name === 'AbortError') return;
      replace(root, heading('Event'), notice(e.status === 404 ? 'warn' : 'error', e.status === 404 ? 'There is no audit event with this id.' : 'The event could not be loaded: ' + e.message));
    },
  );
}

function show(root, event) {
  const tenant = session.scope() === 'tenant';
  const outcome = el('div', { id: 'verify-outcome', 'aria-live': 'polite' });
  const verify = el('button', { type: 'button', id: 'verify-chain' }, 'Verify chain');
  verify.addEventListener('click', async () => {
    verify.disabled = true;
    replace(outcome, el('p', { class: 'muted' }, 'Recomputing the hash chain…'));
    try {
      replace(outcome, verifyOutcome(await get(withQuery('/api/v1/audit/verify', { end: event.timestamp })), tenant));
    } catch (e) {
      replace(outcome, notice('error', 'Verification failed to run: ', e.message));
    }
    verify.disabled = false;
  });
  const trace = typeof event.trace_id === 'string' ? el('code', { id: 'event-trace' }, event.trace_id) : el('span', { class: 'muted' }, 'none');
  replace(
    root,
    heading(text(event.event_type), pageLink('Back to the feed', 'feed')),
    el(
      'div',
      { class: 'summary ' + resultClass(event) },
      el('span', { class: 'pill' }, resultLabel(event)),
      el('span', {}, text(event.timestamp)),
      el('span', {}, 'agent ', el('strong', { class: 'agent' }, text(event.agent_id))),
      el('span', {}, 'tool ', el('code', { class: 'tool' }, text(event.tool_name))),
      el('span', {}, 'trace ', trace),
    ),
    related(event),
    el(
      'section',
      { class: 'verify' },
      el('h2', {}, 'Hash chain'),
      el(
        'p',
        {},
        `Seq ${text(event.seq)} of chain `,
        el('code', {}, text(event.chain_id)),
        tenant
          ? '. Verify recomputes every event hash up to this one, every tenant\'s, and counts this tenant\'s.'
          : '. Verify recomputes every event hash up to this one.',
      ),
      verify,
      outcome,
    ),
    findingsSection(event),
    fieldsSection(event),
  );
}
