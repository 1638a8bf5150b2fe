// The live feed, kept for the whole signed-in session: one SSE connection to /api/v1/audit/stream, the newest
// events in memory, and reconnection that resumes where the last connection stopped.
//
// It runs from sign-in to sign-out, whichever page is shown, so going to an event's detail and back loses
// nothing, and the escalation count in the title can follow the feed. The feed page filters what it keeps.

import { ApiError, get, stream } from './api.js';

/** Events kept in memory (the oldest are dropped first). */
export const KEEP = 500;
/** Events loaded from the audit log on sign-in, so the feed does not start empty. */
const BACKFILL = 100;
const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 15000;

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** An audit event as the API answers it (not a notice with other data). */
function isAuditEvent(value) {
  return value !== null && typeof value === 'object' && typeof value.id === 'string' && typeof value.event_type === 'string';
}

class LiveFeed {
  constructor() {
    this.listeners = new Set();
    this.clear();
  }

  clear() {
    this.events = []; // oldest first
    this.ids = new Set();
    this.lastEventId = '';
    this.status = { state: 'off', detail: '' };
    this.notice = null;
    this.connections = 0;
  }

  /** `listener(kind, payload)`: kind `event` ({ event, name }), `reset`, `status` or `notice`. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(kind, payload) {
    for (const listener of this.listeners) listener(kind, payload);
  }

  start() {
    if (this.controller) return;
    this.controller = new AbortController();
    this.run(this.controller.signal);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.clear();
    this.emit('reset');
    this.emit('status', this.status);
  }

  setStatus(state, detail = '') {
    this.status = { state, detail };
    this.emit('status', this.status);
  }

  async run(signal) {
    let delay = FIRST_RETRY_MS;
    while (!signal.aborted) {
      let received = false;
      try {
        this.setStatus('connecting');
        await stream('/api/v1/audit/stream', {
          lastEventId: this.lastEventId,
          signal,
          onOpen: () => {
            this.connections += 1;
            this.setStatus('live');
            // Loaded after the stream opened: whatever committed in between arrives twice and is kept once.
            if (this.connections === 1) this.backfill(signal);
          },
          onEvent: (message) => {
            received = true;
            this.receive(message);
          },
        });
        if (signal.aborted) return;
        this.setStatus('reconnecting', 'the server ended the feed');
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) return; // app.js signs out
        if (e instanceof ApiError && e.status === 400 && this.lastEventId) {
          // The server cannot resume from that id (say, its log was replaced): start from now, and say so.
          this.lastEventId = '';
          this.notice = 'The feed could not resume where it stopped (' + e.message + '); events in between are not shown here (the audit log has them).';
          this.emit('notice', { name: 'resume', message: this.notice });
          continue;
        }
        this.setStatus('reconnecting', e.message);
      }
      if (received) delay = FIRST_RETRY_MS;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, LAST_RETRY_MS);
    }
  }

  async backfill(signal) {
    try {
      const page = await get('/api/v1/audit/events?limit=' + BACKFILL, signal);
      if (signal.aborted) return; // signed out meanwhile: nothing of that session may come back
      const older = (page.events || []).filter((e) => isAuditEvent(e) && !this.ids.has(e.id));
      for (const event of older) this.ids.add(event.id);
      this.events = older.reverse().concat(this.events);
      this.events.sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
      this.trim();
      this.emit('reset');
    } catch (e) {
      if (!signal.aborted && !(e instanceof ApiError && e.status === 401)) {
        this.notice = 'Earlier events could not be loaded: ' + e.message;
        this.emit('notice', { name: 'backfill', message: this.notice });
      }
    }
  }

  receive({ event: name, data, id }) {
    if (id) this.lastEventId = id;
    let payload;
    try {
      payload = JSON.parse(data);
    } catch {
      payload = data;
    }
    if (isAuditEvent(payload)) {
      this.add(payload, name);
      return;
    }
    // A message about the feed itself, e.g. that this consumer fell behind and is being dropped: the next
    // connection resumes from the last id, so nothing is lost, but the reader should know it happened.
    const message = payload && typeof payload === 'object' && typeof payload.message === 'string' ? payload.message : String(data);
    this.notice = name + ': ' + message;
    this.emit('notice', { name, message });
  }

  add(event, name) {
    if (this.ids.has(event.id)) return;
    this.ids.add(event.id);
    this.events.push(event);
    this.trim();
    this.emit('event', { event, name });
  }

  trim() {
    while (this.events.length > KEEP) this.ids.delete(this.events.shift().id);
  }
}

export const live = new LiveFeed();
