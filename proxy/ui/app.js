// The console's entry point: sign-in, navigation between pages (hash routes such as #/feed), the live feed's
// connection state in the header and the pending escalation count in the title.

import { ApiError, get, onUnauthorized, session } from './api.js';
import { el, notice, replace } from './dom.js';
import { live } from './live.js';
import * as agents from './agents.js';
import * as alerts from './alerts.js';
import * as escalations from './escalations.js';
import * as event from './event.js';
import * as feed from './feed.js';
import * as overview from './overview.js';
import * as policy from './policy.js';
import * as runs from './runs.js';
import * as siem from './siem.js';
import * as tools from './tools.js';

const PAGES = { overview, feed, event, escalations, agents, runs, tools, alerts, siem, policy };
const PENDING_POLL_MS = 10000;

const $ = (id) => document.getElementById(id);

let leave = null; // aborts the shown page's requests and timers
let pendingTimer = null;

function showLogin(message) {
  if (leave) leave.abort();
  leave = null;
  live.stop();
  clearInterval(pendingTimer);
  pendingTimer = null;
  // Nothing an earlier session showed stays in the page.
  $('page').replaceChildren();
  $('shell').hidden = true;
  $('login').hidden = false;
  escalations.showPendingCount(0);
  const error = $('login-error');
  error.textContent = message || '';
  error.hidden = !message;
  const input = $('token');
  input.value = '';
  input.focus();
}

function showShell() {
  showScope(session.scope());
  $('login').hidden = true;
  $('shell').hidden = false;
  live.start();
  escalations.refreshPendingCount();
  pendingTimer = setInterval(escalations.refreshPendingCount, PENDING_POLL_MS);
  route();
}

/** Whether the signed-in token is a tenant's: what belongs to no tenant (the policy) answers it 403. */
async function learnScope() {
  try {
    await get('/api/v1/policy');
    return 'all';
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return 'tenant';
    throw e;
  }
}

function showScope(scope) {
  document.body.dataset.scope = scope;
  $('scope').hidden = scope !== 'tenant';
}

/** Checks the token with one admin request before anything is shown, and learns what it may see. */
async function signIn(token) {
  session.signIn(token);
  try {
    await get('/api/v1/escalations?status=pending');
    session.setScope(await learnScope());
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // onUnauthorized has said so
    session.signOut();
    if (e instanceof ApiError && e.code === 'admin_api_off') {
      showLogin('The admin API is off on this server: set admin.token in its configuration.');
    } else {
      showLogin('Sign-in failed: ' + e.message);
    }
    return;
  }
  showShell();
}

onUnauthorized(() => {
  session.signOut();
  showLogin('This admin token was refused (401 unauthorized). Check it and sign in again.');
});

function route() {
  if ($('shell').hidden) return;
  const [name, ...params] = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const page = PAGES[name];
  if (leave) leave.abort();
  leave = new AbortController();
  for (const link of document.querySelectorAll('#nav a')) {
    const current = link.dataset.page === name || (name === 'event' && link.dataset.page === 'feed');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const root = el('div', { class: 'page', id: 'page-' + (page ? name : 'unknown'), dataset: { route: location.hash } });
  $('page').replaceChildren(root);
  if (!page) {
    replace(root, notice('warn', 'There is no console page named ', name, '.'));
    return;
  }
  let decoded;
  try {
    decoded = params.map(decodeURIComponent);
  } catch {
    replace(root, notice('warn', 'This link is malformed.'));
    return;
  }
  page.render(root, leave.signal, ...decoded);
}

function showFeedStatus({ state, detail }) {
  const status = $('feed-status');
  status.className = 'feed-status feed-' + state;
  status.textContent = state === 'live' ? 'live' : state;
  status.title = detail || '';
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (token) signIn(token);
  });
  $('logout').addEventListener('click', () => {
    session.signOut();
    showLogin('');
  });
  window.addEventListener('hashchange', route);
  live.subscribe((kind, payload) => {
    if (kind === 'status') showFeedStatus(payload);
    if (kind === 'event' && escalations.concerns(payload)) escalations.refreshPendingCount();
  });
  const token = session.token();
  if (token) signIn(token);
  else showLogin('');
});
