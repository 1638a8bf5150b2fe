//! The fuzz targets (`fuzz/`, docs/fuzzing.md) compile `src/mcp/jsonrpc.rs` and `src/mcp/sse.rs` on their
//! own, through `fuzz/src/mcp.rs`, without the rest of the proxy. This test compiles that same module file the
//! same way, so a change that makes those files reach into the proxy (`crate::…`, or an item of their parent
//! module other than `META_PROTOCOL_VERSION`) fails here in `make test`, not at the next `make fuzz-smoke`.

#[allow(dead_code)]
#[path = "../../fuzz/src/mcp.rs"]
mod fuzz_mcp;

#[test]
fn the_fuzz_builds_copy_of_the_protocol_constant_is_the_proxys() {
    assert_eq!(
        fuzz_mcp::META_PROTOCOL_VERSION,
        toolgate::mcp::META_PROTOCOL_VERSION
    );
}

#[test]
fn the_standalone_parsers_judge_like_the_proxys() {
    let bodies: [&[u8]; 4] = [
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#,
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
        b"{",
    ];
    for body in bodies {
        let standalone = fuzz_mcp::jsonrpc::Message::parse(body);
        let proxy = toolgate::mcp::jsonrpc::Message::parse(body);
        assert_eq!(
            format!(
                "{:?}",
                standalone
                    .as_ref()
                    .map(|m| (&m.kind, m.meta_protocol_version()))
            ),
            format!(
                "{:?}",
                proxy.as_ref().map(|m| (&m.kind, m.meta_protocol_version()))
            ),
        );
        assert_eq!(standalone.is_err(), proxy.is_err());
    }
    let stream = b"id: 1\ndata: a\n\ndata: b";
    let mut reader = fuzz_mcp::sse::SseReader::new(1024);
    let mut events = reader.push(stream).unwrap();
    events.extend(reader.finish());
    assert_eq!(
        format!("{events:?}"),
        format!(
            "{:?}",
            toolgate::mcp::sse::parse("id: 1\ndata: a\n\ndata: b")
        )
    );
}
