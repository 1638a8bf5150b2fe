// The Server-Sent Events wire format, parsed from text chunks as a fetch body delivers them.
//
// The console reads the live feed with fetch and a streaming body reader, not EventSource: EventSource cannot
// send the Authorization header the admin API needs. This module has no DOM and no network, so it is tested
// on its own (proxy/tests/console/sse_parser.mjs).

/**
 * Feeds text chunks in, calls `onEvent({ event, data, id })` for each complete event.
 * `id` is the last event id seen so far (it persists across events, as the SSE specification says), so a
 * reconnect can send it as `Last-Event-ID`.
 */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.lastEventId = '';
    this.reset();
  }

  reset() {
    this.eventName = '';
    this.data = [];
    this.sawData = false;
  }

  /** One chunk of the body, split anywhere (even inside a line or between CR and LF). */
  push(chunk) {
    this.buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  /** The body ended: a CR held back ends its line; an event not closed by a blank line is dropped, as the
   * specification says. */
  end() {
    if (this.buffer.endsWith('\r')) this.line(this.buffer.slice(0, -1));
    this.buffer = '';
    this.reset();
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return; // a comment, e.g. the server's keepalive
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.eventName = value;
        break;
      case 'data':
        this.data.push(value);
        this.sawData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      default:
        break; // `retry` and unknown fields: the console chooses its own reconnect delay
    }
  }

  dispatch() {
    if (this.sawData) {
      this.onEvent({
        event: this.eventName || 'message',
        data: this.data.join('\n'),
        id: this.lastEventId,
      });
    }
    this.reset();
  }
}
