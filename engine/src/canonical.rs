//! RFC 8785 (JCS) canonical JSON and the `input_hash` of tool arguments.
