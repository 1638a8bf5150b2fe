//! A stdio MCP upstream: one child process shared by many agents, with request ids mapped.
