//! The bundled demo MCP server over stdio: tools act on a sandbox folder or only echo, never on the host.
