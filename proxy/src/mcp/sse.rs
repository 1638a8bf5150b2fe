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
}
