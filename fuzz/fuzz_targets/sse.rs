//! The SSE parser (proxy/src/mcp/sse.rs). The first byte picks how the rest is cut into chunks and the event
//! size bound. Properties: chunking never changes the events; they are what `parse` finds in the whole
//! stream; they hold no more characters than the stream had bytes (in bytes they can hold more: an invalid
//! UTF-8 byte becomes U+FFFD, three bytes); an event that fits is never refused; and `frame` writes every
//! event back so that `parse`, and any parser that follows the SSE standard, reads exactly that event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toolgate_fuzz::mcp::sse::{frame, parse, SseEvent, SseReader};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knobs & 0x0f) + 1;
    let max_event = if knobs & 0x10 == 0 {
        1 << 20
    } else {
        usize::from(knobs >> 5) * 8 + 1
    };

    let whole = read(stream, stream.len().max(1), 1 << 20).expect("1 MiB bound not reached");
    let chunked = read(stream, chunk, max_event);
    match chunked {
        Ok(events) => assert_eq!(events, whole, "chunking changed the events"),
        Err(()) => assert!(
            stream.len() > max_event,
            "refused a stream within the bound"
        ),
    }
    assert_eq!(
        whole,
        parse(&String::from_utf8_lossy(stream)),
        "reader and parse disagree"
    );

    let chars: usize = whole
        .iter()
        .map(|e| {
            e.data.chars().count()
                + e.event.as_deref().map_or(0, |s| s.chars().count())
                + e.id.as_deref().map_or(0, |s| s.chars().count())
        })
        .sum();
    assert!(
        chars <= stream.len(),
        "{chars} characters out of {} bytes",
        stream.len()
    );

    // What toolgate forwards is `frame` of what it judged, and an agent's parser must read back exactly that
    // event, or an upstream could hide a second, unjudged event inside a field of the first. The SSE standard
    // ends a line at CR, LF or CRLF; `frame` writes LF only, so a CR in its output is a line break the agent
    // sees and toolgate did not.
    for event in &whole {
        let framed = frame(event);
        assert!(
            !framed.contains('\r'),
            "a carriage return reaches the agent: {framed:?}"
        );
        assert_eq!(
            parse(&framed),
            vec![event.clone()],
            "frame does not round-trip"
        );
    }
});

/// Feeds `stream` in chunks of `chunk` bytes, then finishes; `Err` when an event exceeded `max_event`.
fn read(stream: &[u8], chunk: usize, max_event: usize) -> Result<Vec<SseEvent>, ()> {
    let mut reader = SseReader::new(max_event);
    let mut events = Vec::new();
    for piece in stream.chunks(chunk) {
        events.extend(reader.push(piece).map_err(|_| ())?);
    }
    events.extend(reader.finish());
    Ok(events)
}
