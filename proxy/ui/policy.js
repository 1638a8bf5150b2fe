// The serving policy: its revision, modules and folder, and the last reload, whose error names file:line:col.
// Reload asks the server to load the folder again (a refused set leaves the last good one serving).

import { get, post } from './api.js';
import { el, heading, notice, replace, text } from './dom.js';

/** `file:line:col: message` split so the place stands out; anything else as it is. */
function reloadError(error) {
  const match = /^(.+?):(\d+):(\d+): ([\s\S]*)$/.exec(error);
  if (!match) return el('pre', { class: 'error-text' }, error);
  return el(
    'div',
    {},
    el('div', {}, 'at ', el('code', { id: 'reload-error-at' }, `${match[1]}:${match[2]}:${match[3]}`), ` (line ${match[2]}, column ${match[3]})`),
    el('pre', { class: 'error-text' }, match[4]),
  );
}

function reloadSection(reload) {
  if (!reload) return el('p', { class: 'muted' }, 'No reload yet.');
  const ok = reload.result === 'ok';
  return el(
    'div',
    { class: 'notice notice-' + (ok ? 'ok' : 'error'), id: 'last-reload' },
    el('div', {}, el('strong', {}, ok ? 'Loaded' : 'Refused'), ' at ', text(reload.at), ' (', text(reload.trigger), ok && reload.changed === false ? ', unchanged' : '', ')'),
    el('div', {}, 'Serving revision ', el('code', {}, text(reload.revision))),
    reload.error ? reloadError(String(reload.error)) : '',
  );
}

export function render(root, signal) {
  const message = el('div', { class: 'messages' });
  const body = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const reload = el('button', { type: 'button', class: 'secondary' }, 'Reload now');
  replace(root, heading('Policy', reload), message, body);

  reload.addEventListener('click', async () => {
    reload.disabled = true;
    try {
      const answer = await post('/api/v1/policy/reload');
      replace(message, notice('ok', 'Reloaded: ', text(answer.result), '.'));
    } catch (e) {
      // A refused set answers 422 with the reload, whose error the page below shows.
      const refused = e.status === 422 ? 'the last good set keeps serving; the error is below.' : e.message;
      replace(message, notice('error', 'Reload refused: ', refused));
    }
    reload.disabled = false;
    load();
  });

  async function load() {
    try {
      const policy = await get('/api/v1/policy', signal);
      const modules = Array.isArray(policy.modules) ? policy.modules : [];
      replace(
        body,
        el(
          'dl',
          { class: 'facts' },
          el('dt', {}, 'Revision'),
          el('dd', {}, el('code', { id: 'policy-revision' }, text(policy.revision))),
          el('dt', {}, 'Folder'),
          el('dd', {}, el('code', {}, text(policy.dir))),
          el('dt', {}, `Modules (${modules.length})`),
          el('dd', {}, el('ul', { id: 'policy-modules', class: 'modules' }, modules.map((m) => el('li', {}, el('code', {}, text(m)))))),
        ),
        el('h2', {}, 'Last reload'),
        reloadSection(policy.last_reload),
      );
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(body, notice('error', 'The policy status could not be loaded: ', e.message));
    }
  }

  load();
}
