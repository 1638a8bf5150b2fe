// Agents seen and the kill switch: a disabled agent is refused at the session stage (403) on every instance,
// and its open sessions are ended, until it is enabled again.

import { ApiError, get, post, withQuery } from './api.js';
import { clock, el, heading, notice, replace, table, text } from './dom.js';

function seen(timestamp) {
  return el('span', { title: text(timestamp) }, typeof timestamp === 'string' ? timestamp.slice(0, 10) + ' ' + clock(timestamp) : '—');
}

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  replace(root, heading('Agents', refresh), message, list);
  let agents = [];

  async function toggle(agent, verb, button) {
    button.disabled = true;
    const path = withQuery(`/api/v1/agents/${encodeURIComponent(agent.agent_id)}/${verb}`, { tenant: agent.tenant_id });
    try {
      await post(path);
      replace(message, notice('ok', verb === 'disable' ? 'Disabled ' : 'Enabled ', agent.agent_id, verb === 'disable' ? ': its calls are refused and its sessions ended.' : '.'));
    } catch (e) {
      let why = e.message;
      if (e instanceof ApiError && e.code === 'disabled_by_config') why = 'the configuration disables it (agents.disabled)';
      else if (e instanceof ApiError && e.status === 409) why = `it is already ${verb}d`;
      replace(message, notice('error', 'Could not ', verb, ' ', agent.agent_id, ': ', why));
    }
    load();
  }

  function row(agent) {
    const verb = agent.disabled ? 'enable' : 'disable';
    const button = el('button', { type: 'button', class: agent.disabled ? 'approve' : 'deny' }, agent.disabled ? 'Enable' : 'Disable');
    button.addEventListener('click', () => toggle(agent, verb, button));
    return el(
      'tr',
      { class: 'agent-row' + (agent.disabled ? ' agent-disabled' : ''), dataset: { agent: text(agent.agent_id) } },
      el('td', { class: 'agent' }, text(agent.agent_id)),
      el('td', {}, text(agent.tenant_id)),
      el('td', { class: 'num' }, text(agent.calls)),
      el('td', { class: 'num' }, text(agent.denials)),
      el('td', { class: 'num' }, text(agent.escalations)),
      el('td', {}, seen(agent.first_seen)),
      el('td', {}, seen(agent.last_seen)),
      el(
        'td',
        {},
        el('span', { class: 'status status-' + (agent.disabled ? 'disabled' : 'enabled') }, agent.disabled ? 'disabled' : 'enabled'),
        agent.disabled && agent.disabled_by ? el('div', { class: 'muted', title: text(agent.disabled_at) }, 'by ', agent.disabled_by) : '',
      ),
      el('td', {}, button),
    );
  }

  function draw(nextCursor) {
    const more = nextCursor ? el('button', { type: 'button', class: 'secondary', onclick: () => load(nextCursor) }, 'More agents') : '';
    replace(
      list,
      agents.length
        ? table(['Agent', 'Tenant', 'Calls', 'Denials', 'Escalations', 'First seen (UTC)', 'Last seen (UTC)', 'Status', ''], agents.map(row), { class: 'grid', id: 'agent-table' })
        : notice('info', 'No agent has called through this server yet.'),
      more,
    );
  }

  async function load(cursor) {
    try {
      const page = await get(withQuery('/api/v1/agents', { cursor }), signal);
      agents = cursor ? agents.concat(page.agents || []) : page.agents || [];
      draw(page.next_cursor);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.missing) {
        replace(list, notice('warn', el('strong', { id: 'agents-unavailable' }, 'Agents are not available on this server. '), 'Its admin API has no /api/v1/agents (a toolgate without the kill switch).'));
        return;
      }
      replace(list, notice('error', 'The agents could not be loaded: ', e.message));
    }
  }

  load();
}
