//! The few Server-Sent Events helpers the proxy needs: parsing a buffered `tools/list` answer and framing events.

/// One SSE event: its `event:` name (if any), `id:` (if any) and joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// Parses a complete SSE body into events (comments and `retry:` are dropped). Lines end at CRLF, a lone CR or
/// a lone LF, as the SSE standard says: splitting at LF alone left a lone CR inside a field, which `frame`
/// wrote back as it was and an agent's parser ended the line at, so an upstream could hide a second, unjudged
/// event in the `event:` or `id:` of one toolgate judged (`event: x\rdata: {…}\r\r`).
pub fn parse(body: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut current = SseEvent {
        event: None,
        id: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in lines(body) {
        if line.is_empty() {
            // A blank line ends the event, with or without data: an `event:` or `id:` of an event that had no
            // data must not label the next one (the reader parses event by event and would not carry it).
            let ended = std::mem::replace(
                &mut current,
                SseEvent {
                    event: None,
                    id: None,
                    data: String::new(),
                },
            );
            if has_data {
                events.push(ended);
            }
            has_data = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => current.event = Some(value.to_owned()),
            "id" => current.id = Some(value.to_owned()),
            "data" => {
                if has_data {
                    current.data.push('\n');
                }
                current.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    if has_data {
        events.push(current);
    }
    events
}

/// The lines of `text`, each ended by CRLF, a lone CR or a lone LF; the text after the last ending is the last
/// line (empty when the text ends with one).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let Some(end) = current.find(['\r', '\n']) else {
            rest = None;
            return Some(current);
        };
        let next = if current[end..].starts_with("\r\n") {
            end + 2
        } else {
            end + 1
        };
        rest = Some(&current[next..]);
        Some(&current[..end])
    })
}

/// Splits a Server-Sent Events byte stream into events as its chunks arrive, so a stream is judged event by event
/// and never buffered whole. One event larger than `max_event` bytes is an error (the stream is cut).
pub struct SseReader {
    buf: Vec<u8>,
    /// Where the search for the next blank line resumes (bytes before it hold none).
    scanned: usize,
    max_event: usize,
}

/// An SSE event exceeded the reader's bound.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an SSE event is larger than {0} bytes")]
pub struct EventTooLarge(pub usize);

impl SseReader {
    pub fn new(max_event: usize) -> SseReader {
        SseReader {
            buf: Vec::new(),
            scanned: 0,
            max_event,
        }
    }

    /// Feeds one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let Some(end) = blank_line(&self.buf, self.scanned) else {
                self.scanned = self.buf.len().saturating_sub(3);
                if self.buf.len() > self.max_event {
                    return Err(EventTooLarge(self.max_event));
                }
                return Ok(events);
            };
            let block: Vec<u8> = self.buf.drain(..end).collect();
            self.scanned = 0;
            events.extend(parse(&String::from_utf8_lossy(&block)));
        }
    }

    /// What is left when the stream ends: a last event without its blank line still counts.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let rest = std::mem::take(&mut self.buf);
        parse(&String::from_utf8_lossy(&rest))
    }
}

/// The end (exclusive, blank line included) of the first event in `buf`, searching from `from`: the end of two
/// line endings in a row, each CRLF, CR or LF (as in [`parse`]). A CR that is the last byte may yet become a
/// CRLF, so it decides nothing until more bytes (or [`SseReader::finish`]) come.
fn blank_line(buf: &[u8], from: usize) -> Option<usize> {
    // The length of the line ending at `i`: Some(None) when there is none, None when it is undecided.
    let ending = |i: usize| -> Option<Option<usize>> {
        match buf.get(i) {
            Some(b'\n') => Some(Some(1)),
            Some(b'\r') => match buf.get(i + 1) {
                Some(b'\n') => Some(Some(2)),
                Some(_) => Some(Some(1)),
                None => None,
            },
            _ => Some(None),
        }
    };
    for i in from..buf.len() {
        let Some(first) = ending(i)? else {
            continue;
        };
        if let Some(second) = ending(i + first)? {
            return Some(i + first + second);
        }
    }
    None
}

/// Frames one event.
pub fn frame(event: &SseEvent) -> String {
    let mut out = String::new();
    if let Some(id) = &event.id {
        out.push_str(&format!("id: {id}\n"));
    }
    if let Some(name) = &event.event {
        out.push_str(&format!("event: {name}\n"));
    }
    for line in event.data.split('\n') {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_frames_round_trip() {
        let body =
            ": comment\r\nevent: message\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\n";
        let events = parse(body);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            SseEvent {
                event: Some("message".into()),
                id: Some("1".into()),
                data: "{\"a\":1}".into()
            }
        );
        assert_eq!(events[1].data, "x\ny");
        assert_eq!(parse(&frame(&events[1])), vec![events[1].clone()]);
    }

    #[test]
    fn the_reader_yields_events_as_their_blank_lines_arrive() {
        let body = b"event: message\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\ndata: tail";
        let whole = {
            let mut reader = SseReader::new(1024);
            let mut events = reader.push(body).unwrap();
            events.extend(reader.finish());
            events
        };
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[2].data, "tail");
        // Byte by byte gives the same events, each as soon as it is complete.
        let mut reader = SseReader::new(1024);
        let mut events = Vec::new();
        for b in body.iter() {
            events.extend(reader.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(events.len(), 2);
        events.extend(reader.finish());
        assert_eq!(events, whole);
    }

    /// Found by `fuzz/fuzz_targets/sse.rs` (its seed `data: a\r\rdata: b\n\n`): lines were split at LF
    /// only, so a lone CR stayed inside a field and `frame` wrote it back to the agent, whose parser ends the
    /// line there. An upstream could put a whole event, never judged, in the `event:` of one that was.
    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        assert_eq!(
            parse("data: a\r\rdata: b\n\n"),
            vec![
                SseEvent {
                    event: None,
                    id: None,
                    data: "a".into()
                },
                SseEvent {
                    event: None,
                    id: None,
                    data: "b".into()
                },
            ]
        );
        let hostile = "event: message\rdata: {\"smuggled\":1}\r\rdata: {\"judged\":1}\n\n";
        let events = parse(hostile);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message".into()),
                    id: None,
                    data: "{\"smuggled\":1}".into()
                },
                SseEvent {
                    event: None,
                    id: None,
                    data: "{\"judged\":1}".into()
                },
            ]
        );
        for event in &events {
            let framed = frame(event);
            assert!(!framed.contains('\r'), "{framed:?}");
            assert_eq!(parse(&framed), vec![event.clone()]);
        }
    }

    /// Found by `fuzz/fuzz_targets/sse.rs` (`event: message\r\nid: 1\r\ndant:ta: {"a":1}\r\n\r\ndata: x`):
    /// `parse` carried the name and id of an event without data over to the next event, the reader did not.
    #[test]
    fn an_event_without_data_labels_nothing() {
        let body = "event: message\r\nid: 1\r\ndant:ta: {\"a\":1}\r\n\r\ndata: x\n\n";
        let expected = vec![SseEvent {
            event: None,
            id: None,
            data: "x".into(),
        }];
        assert_eq!(parse(body), expected);
        let mut reader = SseReader::new(1024);
        let mut events = reader.push(body.as_bytes()).unwrap();
        events.extend(reader.finish());
        assert_eq!(events, expected);
    }

    #[test]
    fn the_reader_ends_events_at_every_kind_of_blank_line() {
        let body: &[u8] = b"data: 1\r\rdata: 2\n\r\ndata: 3\r\n\rdata: 4\r\n\r\ndata: 5\n\rdata: 6";
        let expected = parse(&String::from_utf8_lossy(body));
        assert_eq!(expected.len(), 6);
        for chunk in 1..body.len() {
            let mut reader = SseReader::new(1024);
            let mut events = Vec::new();
            for piece in body.chunks(chunk) {
                events.extend(reader.push(piece).unwrap());
            }
            assert_eq!(
                events.len(),
                5,
                "chunks of {chunk}: the last event has no blank line yet"
            );
            events.extend(reader.finish());
            assert_eq!(events, expected, "chunks of {chunk}");
        }
        // A CR at the end of a chunk may be the first half of a CRLF: no event ends there.
        let mut reader = SseReader::new(1024);
        assert_eq!(reader.push(b"data: a\r").unwrap(), vec![]);
        assert_eq!(reader.push(b"\ndata: b\r").unwrap(), vec![]);
        let events = reader.push(b"\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a\nb");
    }

    #[test]
    fn an_event_beyond_the_bound_is_refused() {
        let mut reader = SseReader::new(16);
        assert_eq!(
            reader.push(b"data: 0123456789abcdefgh"),
            Err(EventTooLarge(16))
        );
    }
}
