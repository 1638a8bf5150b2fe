"""toolgate against the official Python MCP SDK (`mcp` 2.x): one protocol era per run.

Usage: python_client.py --url URL --era legacy|auto|2026-07-28 [--expect-echo TEXT]
The agent token comes from the TOOLGATE_TOKEN environment variable (never argv: it would show in `ps`).

The script connects with the SDK's own `Client` over its streamable-HTTP transport, lists tools, calls `echo`,
calls `read_file` on /etc/passwd (which toolgate's shipped policy denies), closes, and prints exactly one JSON
line on stdout: what it saw (negotiated version, tool names, echo text, the denial's code and message, every
HTTP exchange) and `failures`, the checks that did not hold. It exits 0 when the run completed, even with
failures: the Rust test (proxy/tests/sdk_clients.rs) asserts on the line, so a failure shows what was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

ECHO_TEXT = "hello from the python sdk"
DENIED_PREFIX = "denied by policy toolgate.filesystem.system_path: "


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--era", required=True, help="legacy, auto, or a modern version such as 2026-07-28")
    parser.add_argument("--expect-echo", default=ECHO_TEXT, help="the text echo must answer with")
    args = parser.parse_args()
    token = os.environ.get("TOOLGATE_TOKEN", "")

    report: dict[str, Any] = {"sdk": "python", "era": args.era, "failures": []}
    try:
        import anyio
        from importlib.metadata import version

        report["sdk_version"] = version("mcp")
        anyio.run(run, args, token, report)
    except BaseException as e:  # the report must come out whatever happened
        report["failures"].append(f"exception: {describe(e)}")
        report["traceback"] = traceback.format_exc(limit=8)
    print(json.dumps(report), flush=True)
    return 0


def describe(e: BaseException) -> str:
    inner = getattr(e, "exceptions", None)  # an anyio/asyncio ExceptionGroup: name what is inside
    if inner:
        return "; ".join(describe(x) for x in inner)
    return f"{type(e).__name__}: {e}"


async def run(args: argparse.Namespace, token: str, report: dict[str, Any]) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    failures: list[str] = report["failures"]
    exchanges: list[dict[str, Any]] = []
    report["http"] = exchanges

    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        entry: dict[str, Any] = {"method": request.method, "status": response.status_code}
        try:
            body = json.loads(request.content or b"null")
            if isinstance(body, dict):
                entry["rpc"] = body.get("method") or "response"
        except (ValueError, httpx2.RequestNotRead):
            pass
        entry["session_header"] = "mcp-session-id" in request.headers
        entry["content_type"] = response.headers.get("content-type", "")
        exchanges.append(entry)

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(20.0),
        event_hooks={"response": [on_response]},
    )
    async with http:
        transport = streamable_http_client(args.url, http_client=http)
        async with Client(transport, mode=args.era, cache=None) as client:
            report["protocol_version"] = client.protocol_version
            report["discovered"] = client.session.discover_result is not None
            report["initialized"] = client.session.initialize_result is not None

            tools = await client.list_tools()
            names = [t.name for t in tools.tools]
            report["tools"] = names
            if "echo" not in names:
                failures.append(f"echo missing from tools/list: {names}")
            if "run_shell" in names:
                failures.append("run_shell listed for an agent without the shell role")

            echoed = await client.call_tool("echo", {"text": ECHO_TEXT})
            texts = [c.text for c in echoed.content if getattr(c, "type", None) == "text"]
            report["echo_text"] = "".join(texts)
            report["echo_is_error"] = bool(echoed.is_error)
            if args.expect_echo not in report["echo_text"] or echoed.is_error:
                failures.append(f"echo answered {report['echo_text']!r} (is_error={echoed.is_error})")

            try:
                result = await client.call_tool("read_file", {"path": "/etc/passwd"})
                failures.append(f"read_file /etc/passwd was not refused: {result.model_dump_json()[:300]}")
            except MCPError as e:
                report["denied_code"] = e.code
                report["denied_message"] = e.message
                if e.code != -31001:
                    failures.append(f"read_file refused with code {e.code}, want -31001")
                if not e.message.startswith(DENIED_PREFIX):
                    failures.append(f"read_file refused with message {e.message!r}")
        report["closed"] = True

    deletes = [x for x in exchanges if x["method"] == "DELETE"]
    report["delete_status"] = deletes[-1]["status"] if deletes else None
    report["sent_session_header"] = any(x["session_header"] for x in exchanges)
    legacy = report.get("protocol_version", "").startswith("2025")
    if legacy:
        if not report["initialized"]:
            failures.append("a 2025-era connection without initialize")
        if report["delete_status"] not in (200, 204):
            failures.append(f"session not closed cleanly: DELETE answered {report['delete_status']}")
    else:
        if report["sent_session_header"]:
            failures.append("a stateless-era client sent Mcp-Session-Id")
        if any(x.get("rpc") == "initialize" for x in exchanges):
            failures.append("a stateless-era client sent initialize")


if __name__ == "__main__":
    sys.exit(main())
