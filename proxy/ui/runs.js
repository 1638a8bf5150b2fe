// Agent runs: what each agent set out to do, how it ended, how long it took and how many calls it made. Agents
// start and finish their runs themselves (POST /api/v1/runs with their own token); this page only reads them.
// Objectives, plans, artifacts and errors are shown as the server stores them: what DLP flags is redacted.

import { ApiError, get, withQuery } from './api.js';
import { clock, el, heading, notice, replace, table, text } from './dom.js';

const STATUSES = ['running', 'succeeded', 'failed', 'canceled'];
const filters = { agent: '', status: '' };

function duration(ms) {
  if (typeof ms !== 'number') return '—';
  if (ms < 1000) return ms + ' ms';
  if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
  return Math.round(ms / 60000) + ' min';
}

function started(timestamp) {
  return el('span', { title: text(timestamp) }, typeof timestamp === 'string' ? timestamp.slice(0, 10) + ' ' + clock(timestamp) : '—');
}

function details(run) {
  const parts = [];
  if (run.plan !== null && run.plan !== undefined) parts.push(el('div', {}, el('strong', {}, 'Plan '), el('pre', {}, JSON.stringify(run.plan, null, 2))));
  if (run.artifacts !== null && run.artifacts !== undefined) parts.push(el('div', {}, el('strong', {}, 'Artifacts '), el('pre', {}, JSON.stringify(run.artifacts, null, 2))));
  if (Array.isArray(run.dlp_findings) && run.dlp_findings.length) {
    parts.push(el('div', {}, el('strong', {}, 'DLP findings '), run.dlp_findings.map((f) => el('span', { class: 'finding-type sev-' + text(f.severity) }, text(f.type) + ' at ' + text(f.path)))));
  }
  return parts.length ? el('details', {}, el('summary', {}, 'details'), parts) : '';
}

function row(run) {
  return el(
    'tr',
    { class: 'run-row run-' + text(run.status), dataset: { run: text(run.run_id) } },
    el('td', { class: 'mono' }, text(run.run_id)),
    el('td', { class: 'agent' }, text(run.agent_id)),
    el('td', {}, text(run.objective), details(run)),
    el('td', {}, el('span', { class: 'status status-' + text(run.status) }, text(run.status)), run.dry_run ? el('div', { class: 'muted' }, 'dry run') : ''),
    el('td', {}, started(run.started_at)),
    el('td', { class: 'num', title: text(run.finished_at) }, duration(run.duration_ms)),
    el('td', { class: 'num' }, text(run.calls)),
    el('td', {}, text(run.requester_id)),
    el('td', {}, text(run.error)),
  );
}

export function render(root, signal) {
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const agent = el('input', {
    type: 'search', placeholder: 'agent id', 'aria-label': 'agent', id: 'runs-agent', value: filters.agent,
    onchange: (e) => {
      filters.agent = e.target.value.trim();
      load();
    },
  });
  const status = el(
    'select',
    { 'aria-label': 'status', id: 'runs-status', onchange: (e) => { filters.status = e.target.value; load(); } },
    el('option', { value: '' }, 'any status'),
    STATUSES.map((s) => el('option', { value: s }, s)),
  );
  status.value = filters.status;
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  replace(root, heading('Runs', agent, status, refresh), list);
  let runs = [];

  function draw(nextCursor) {
    const more = nextCursor ? el('button', { type: 'button', class: 'secondary', onclick: () => load(nextCursor) }, 'More runs') : '';
    replace(
      list,
      runs.length
        ? table(['Run', 'Agent', 'Objective', 'Status', 'Started (UTC)', 'Duration', 'Calls', 'Requester', 'Error'], runs.map(row), { class: 'grid', id: 'run-table' })
        : notice('info', filters.agent || filters.status ? 'No run matches these filters.' : 'No agent has started a run yet.'),
      more,
    );
  }

  async function load(cursor) {
    try {
      const query = { agent_id: filters.agent || undefined, status: filters.status || undefined, cursor };
      const page = await get(withQuery('/api/v1/runs', query), signal);
      runs = cursor ? runs.concat(page.runs || []) : page.runs || [];
      draw(page.next_cursor);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.missing) {
        replace(list, notice('warn', el('strong', { id: 'runs-unavailable' }, 'Runs are not available on this server. '), 'Its admin API has no /api/v1/runs.'));
        return;
      }
      replace(list, notice('error', 'The runs could not be loaded: ', e.message));
    }
  }

  load();
}
