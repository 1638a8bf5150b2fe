// The console's SSE parser (proxy/ui/sse.js) against the wire format's corners: events split across chunks at
// every position, CRLF and CR line ends, comments, multi-line data, ids that persist, and an unterminated tail.
// Run by proxy/tests/console_browser.rs with node; prints "sse parser: N checks passed" or exits non-zero.
import assert from 'node:assert/strict';
import { SseParser } from '../../ui/sse.js';

let checks = 0;

function parse(chunks) {
  const events = [];
  const parser = new SseParser((e) => events.push(e));
  for (const c of chunks) parser.push(c);
  parser.end();
  return events;
}

function check(name, chunks, expected) {
  assert.deepEqual(parse(chunks), expected, name);
  checks += 1;
}

const wire = ':keepalive\n\nid: 7\nevent: tool_call\ndata: {"a":1}\n\nevent: policy_deny\ndata: line one\ndata: line two\n\n';
const expected = [
  { event: 'tool_call', data: '{"a":1}', id: '7' },
  // No id field in the second event: the last one seen still stands, for Last-Event-ID.
  { event: 'policy_deny', data: 'line one\nline two', id: '7' },
];
check('whole', [wire], expected);
for (let i = 1; i < wire.length; i += 1) check(`split at ${i}`, [wire.slice(0, i), wire.slice(i)], expected);
check('one character at a time', wire.split(''), expected);

const crlf = wire.replaceAll('\n', '\r\n');
check('CRLF', [crlf], expected);
for (let i = 1; i < crlf.length; i += 1) check(`CRLF split at ${i}`, [crlf.slice(0, i), crlf.slice(i)], expected);
check('CR', [wire.replaceAll('\n', '\r')], expected);

check('no space after the colon', ['data:x\n\n'], [{ event: 'message', data: 'x', id: '' }]);
check('only the first space is dropped', ['data:  x\n\n'], [{ event: 'message', data: ' x', id: '' }]);
check('a field without a colon', ['data\n\n'], [{ event: 'message', data: '', id: '' }]);
check('an event without data is not dispatched', ['event: x\n\n'], []);
check('an id with NUL is ignored', ['id: 1\ndata: a\n\nid: b\0c\ndata: b\n\n'], [
  { event: 'message', data: 'a', id: '1' },
  { event: 'message', data: 'b', id: '1' },
]);
check('an empty id resets it', ['id: 1\ndata: a\n\nid\ndata: b\n\n'], [
  { event: 'message', data: 'a', id: '1' },
  { event: 'message', data: 'b', id: '' },
]);
check('retry and unknown fields are ignored', ['retry: 10\nfoo: bar\ndata: a\n\n'], [{ event: 'message', data: 'a', id: '' }]);
check('an unterminated event at the end is dropped', ['data: a\n\ndata: b\n'], [{ event: 'message', data: 'a', id: '' }]);
check('the event name resets after each event', ['event: x\ndata: a\n\ndata: b\n\n'], [
  { event: 'x', data: 'a', id: '' },
  { event: 'message', data: 'b', id: '' },
]);

console.log(`sse parser: ${checks} checks passed`);
