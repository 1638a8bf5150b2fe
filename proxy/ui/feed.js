// The live feed page: audit events as they are committed, coloured by result, with filters, pause, and a
// click through to each event's detail. The connection itself lives in live.js and outlasts this page.

import { clock, el, heading, notice, replace, resultClass, resultLabel, text } from './dom.js';
import { KEEP, live } from './live.js';

const EVENT_TYPES = [
  'tool_call', 'tool_result', 'policy_deny', 'policy_escalate', 'request', 'result', 'list', 'session_start',
  'session_end', 'escalation_decided', 'escalation_expired', 'admin_action', 'tool_definition', 'alert',
];

// Kept while the console is open, so a filter survives a visit to an event's detail.
const filters = { agent: '', result: '', type: '' };
let paused = false;

function matches(event) {
  if (filters.agent && !String(event.agent_id || '').includes(filters.agent)) return false;
  if (filters.result && resultLabel(event) !== filters.result) return false;
  if (filters.type && event.event_type !== filters.type) return false;
  return true;
}

function row(event) {
  const open = () => {
    location.hash = '#/event/' + encodeURIComponent(event.id);
  };
  return el(
    'tr',
    { class: 'feed-row ' + resultClass(event), dataset: { id: event.id }, tabindex: '0', onclick: open, onkeydown: (e) => e.key === 'Enter' && open() },
    el('td', { class: 'mono', title: text(event.timestamp) }, clock(event.timestamp)),
    el('td', {}, el('span', { class: 'pill' }, resultLabel(event))),
    el('td', {}, text(event.event_type)),
    el('td', { class: 'agent' }, text(event.agent_id)),
    el('td', { class: 'tool' }, text(event.tool_name)),
    el('td', {}, text(event.action)),
    el('td', { class: 'target' }, text(event.target)),
    el('td', { class: 'muted' }, text(event.policy_id)),
  );
}

function select(label, value, options, onchange) {
  const control = el(
    'select',
    { 'aria-label': label, onchange: (e) => onchange(e.target.value) },
    el('option', { value: '' }, 'any ' + label),
    options.map((o) => el('option', { value: o }, o)),
  );
  control.value = value;
  return control;
}

export function render(root, signal) {
  const body = el('tbody');
  const pausedNote = el('span', { class: 'muted', id: 'feed-paused' });
  const noticeBox = el('div', { class: 'messages' });
  const pause = el('button', { type: 'button', class: 'secondary', id: 'feed-pause' });
  let missed = 0;

  function showPause() {
    pause.textContent = paused ? 'Resume' : 'Pause';
    pausedNote.textContent = paused ? (missed ? `paused: ${missed} new` : 'paused') : '';
  }

  function draw() {
    const shown = live.events.filter(matches).slice(-KEEP).reverse();
    replace(body, shown.map(row));
    missed = 0;
    showPause();
  }

  pause.addEventListener('click', () => {
    paused = !paused;
    if (!paused) draw();
    showPause();
  });

  const agent = el('input', {
    type: 'search', placeholder: 'agent contains…', 'aria-label': 'agent', value: filters.agent,
    oninput: (e) => {
      filters.agent = e.target.value.trim();
      draw();
    },
  });
  const result = select('result', filters.result, ['allow', 'deny', 'escalate', 'alert'], (v) => {
    filters.result = v;
    draw();
  });
  const type = select('event type', filters.type, EVENT_TYPES, (v) => {
    filters.type = v;
    draw();
  });

  replace(
    root,
    heading('Live feed', agent, result, type, pause, pausedNote),
    noticeBox,
    el(
      'table',
      { class: 'grid feed', id: 'feed-table' },
      el('thead', {}, el('tr', {}, ['Time (UTC)', 'Result', 'Event', 'Agent', 'Tool', 'Action', 'Target', 'Policy'].map((c) => el('th', { scope: 'col' }, c)))),
      body,
    ),
    el('p', { class: 'muted' }, `The newest ${KEEP} events are kept while the console is open; older ones are in the audit log.`),
  );
  if (live.notice) replace(noticeBox, notice('warn', live.notice));
  draw();

  const unsubscribe = live.subscribe((kind, payload) => {
    if (kind === 'reset') {
      if (!paused) draw();
    } else if (kind === 'notice') {
      replace(noticeBox, notice('warn', payload.name, ': ', payload.message));
    } else if (kind === 'event' && matches(payload.event)) {
      if (paused) {
        missed += 1;
        showPause();
        return;
      }
      body.prepend(row(payload.event));
      while (body.childElementCount > KEEP) body.lastElementChild.remove();
    }
  });
  signal.addEventListener('abort', unsubscribe);
}
