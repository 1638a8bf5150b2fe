// The admin API as the console uses it: the token kept in sessionStorage (this tab only, gone when it closes),
// sent as `Authorization: Bearer` on every request, and one place that turns failures into ApiError.

import { SseParser } from './sse.js';

const TOKEN_KEY = 'toolgate.admin_token';
const SCOPE_KEY = 'toolgate.admin_scope';

export const session = {
  token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(SCOPE_KEY);
  },
  /** `all` for admin.token, `tenant` for a tenant's admin token (it sees its own tenant alone). */
  scope() {
    return sessionStorage.getItem(SCOPE_KEY) || 'all';
  },
  setScope(scope) {
    sessionStorage.setItem(SCOPE_KEY, scope);
  },
};

/** A failed admin request: `status` is the HTTP status (0 when the server did not answer), `body` its JSON. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The route does not exist on this server (an older toolgate, or a feature not built yet). */
  get missing() {
    return this.status === 404 && this.code === 'not_found';
  }
}

let unauthorized = () => {};

/** What to do when the server refuses the token (401): app.js signs out and says so. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

function headers(extra = {}) {
  return { Authorization: 'Bearer ' + (session.token() || ''), ...extra };
}

async function failure(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  const code = (body && typeof body.error === 'string' && body.error) || 'http_' + resp.status;
  const message = (body && typeof body.message === 'string' && body.message) || resp.statusText || code;
  const error = new ApiError(resp.status, code, message);
  error.body = body;
  if (resp.status === 401) unauthorized(error);
  return error;
}

async function send(path, method, signal) {
  let resp;
  try {
    resp = await fetch(path, { method, headers: headers({ Accept: 'application/json' }), cache: 'no-store', signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', 'toolgate did not answer: ' + e.message);
  }
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

/** GET a JSON answer. */
export function get(path, signal) {
  return send(path, 'GET', signal);
}

/** POST with no body (every admin change is a verb in the path), answering the changed object. */
export function post(path) {
  return send(path, 'POST');
}

/** A path with a query string from the non-empty entries of `params`. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') query.set(k, v);
  }
  const q = query.toString();
  return q ? path + '?' + q : path;
}

/**
 * Reads one SSE connection until it ends: `onEvent({ event, data, id })` for each event, `onOpen()` once the
 * server accepted. `lastEventId`, when given, is sent as `Last-Event-ID` so the server resumes after it.
 */
export async function stream(path, { lastEventId, signal, onOpen, onEvent }) {
  const extra = { Accept: 'text/event-stream' };
  if (lastEventId) extra['Last-Event-ID'] = lastEventId;
  let resp;
  try {
    resp = await fetch(path, { headers: headers(extra), cache: 'no-store', signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'unreachable', 'toolgate did not answer: ' + e.message);
  }
  if (!resp.ok) throw await failure(resp);
  onOpen();
  const parser = new SseParser(onEvent);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } finally {
    parser.end();
    reader.releaseLock();
  }
}
