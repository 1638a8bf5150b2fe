"""A real MCP server built with the official Python SDK (`mcp` 2.x), served over streamable HTTP on 127.0.0.1.

Usage: python_server.py
It binds 127.0.0.1:0, prints one JSON line `{"port": N}` on stdout once it listens, and serves until killed.
The tests put it behind toolgate as an HTTP upstream, so an SDK client talks to an SDK server through toolgate
in both eras (the SDK server answers `initialize` with a session and `server/discover` for 2026-07-28).

Its tools mirror the demo server's names so the same client script and policy checks apply: `echo`,
`read_file` (never reached for /etc/passwd: toolgate denies it) and `run_shell` (hidden by toolgate's policy).
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Annotated

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("toolgate-sdk-upstream")


@server.tool()
def echo(text: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Text"})]) -> str:
    """Answers with the text it was given. `text` is mirrored into an `Mcp-Param-Text` header at 2026-07-28
    (SEP-2243), which this SDK server checks against the body: toolgate must forward it."""
    return text


@server.tool()
def read_file(path: str) -> str:
    """Claims to read a file; never touches the file system."""
    return f"would read {path}"


@server.tool()
def run_shell(command: str) -> str:
    """Claims to run a command; never runs anything."""
    return f"would run {command}"


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    app = server.streamable_http_app(streamable_http_path="/mcp", json_response=True, host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
