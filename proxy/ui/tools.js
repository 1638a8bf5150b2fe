// Tool definitions seen in tools/list answers and pinned against rug pulls: changed ones first (the server
// orders them so), and approve to pin a definition's current form.

import { ApiError, get, post } from './api.js';
import { clock, el, heading, notice, replace, shortHash, table, text } from './dom.js';

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const list = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const refresh = el('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  replace(root, heading('Tool definitions', refresh), message, list);

  async function approve(tool, button) {
    button.disabled = true;
    try {
      await post(`/api/v1/tools/${encodeURIComponent(tool.upstream)}/${encodeURIComponent(tool.name)}/approve`);
      replace(message, notice('ok', 'Pinned the current definition of ', tool.name, ' on ', tool.upstream, '.'));
    } catch (e) {
      const why = e instanceof ApiError && e.status === 409 ? 'it is already pinned' : e.message;
      replace(message, notice('error', 'Could not approve ', tool.name, ': ', why));
    }
    load();
  }

  function row(tool) {
    let action = '';
    if (tool.status !== 'pinned') {
      action = el('button', { type: 'button', class: 'approve' }, 'Approve');
      action.addEventListener('click', () => approve(tool, action));
    }
    const poisoning = Array.isArray(tool.poisoning) && tool.poisoning.length ? tool.poisoning.map(text).join(', ') : '—';
    return el(
      'tr',
      { class: 'tool-row tool-' + text(tool.status), dataset: { tool: text(tool.name) } },
      el('td', {}, el('span', { class: 'status status-' + text(tool.status) }, text(tool.status))),
      el('td', {}, text(tool.upstream)),
      el('td', { class: 'tool' }, el('code', {}, text(tool.name))),
      el('td', {}, shortHash(tool.pinned_hash)),
      el('td', {}, shortHash(tool.current_hash)),
      el('td', { class: poisoning === '—' ? 'muted' : 'warn' }, poisoning),
      el('td', { title: text(tool.last_seen) }, clock(tool.last_seen)),
      el('td', {}, action),
    );
  }

  async function load() {
    try {
      const answer = await get('/api/v1/tools', signal);
      const tools = answer.tools || [];
      replace(
        list,
        tools.length
          ? table(['Status', 'Upstream', 'Tool', 'Pinned', 'Current', 'Poisoning', 'Last seen (UTC)', ''], tools.map(row), { class: 'grid', id: 'tool-table' })
          : notice('info', 'No tool definition seen yet: definitions are pinned from tools/list answers passing through.'),
      );
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e instanceof ApiError && e.missing) {
        replace(list, notice('warn', 'Tool definitions are not available on this server.'));
        return;
      }
      replace(list, notice('error', 'The tool definitions could not be loaded: ', e.message));
    }
  }

  load();
}
