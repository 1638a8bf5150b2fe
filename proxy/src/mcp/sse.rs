//! The few Server-Sent Events helpers the proxy needs: parsing a buffered `tools/list` answer and framing events.

/// One SSE event: its `event:` name (if any), `id:` (if any) and joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// Parses a complete SSE body into events (comments and `retry:` are dropped).
pub fn parse(body: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut current = SseEvent {
        event: None,
        id: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if has_data {
                events.push(std::mem::replace(
                    &mut current,
                    SseEvent {
                        event: None,
                        id: None,
                        data: String::new(),
                    },
                ));
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

/// The end (exclusive, blank line included) of the first event in `buf`, searching from `from`.
fn blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
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

    #[test]
    fn an_event_beyond_the_bound_is_refused() {
        let mut reader = SseReader::new(16);
        assert_eq!(
            reader.push(b"data: 0123456789abcdefgh"),
            Err(EventTooLarge(16))
        );
    }
}
