//! One tool call: jwt -> session -> dlp -> policy -> forward -> audit.
