#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ (small, readable inputs: real MCP messages, URLs, paths,
secret-shaped strings, SSE streams). Run from anywhere; rewrites only the seed-*.bin files it owns."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "corpus"

# Keys of toolgate_fuzz::KEYS, in order: a string-mode DLP input starts with 2 * index.
KEYS = ["text", "password", "api_key", "token", "secret", "card", "iban", "ssn", "email", "path", "url",
        "command", "content", "authorization", "private_key", "to"]

MCP = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
     "capabilities": {}, "clientInfo": {"name": "agent", "version": "1.0"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": "a-7", "method": "tools/list", "params": {"cursor": "x"}},
    {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "read_file",
     "arguments": {"path": "/home/agent/../../etc/passwd"}}},
    {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "fetch",
     "arguments": {"url": "http://169.254.169.254/latest/meta-data"},
     "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "progressToken": 9}}},
    {"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": "file:///etc/shadow"}},
    {"jsonrpc": "2.0", "id": 6, "result": {"content": [{"type": "text", "text": "ok"}]}},
    {"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "no"}},
    {"jsonrpc": "2.0", "id": 18446744073709551615, "method": "ping"},
]
RAW_MCP = [
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"method":"ping"}',
    b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"arguments":{"path":"/a","p\\u0061th":"/b"}}}',
    b'  [{"jsonrpc":"2.0","id":1,"method":"ping"}]',
    b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
    b'{"jsonrpc":"1.0","id":null,"method":7}',
    b'{"jsonrpc":"2.0","id":1,"method":"x","params":[[[[{"a":{"a":{"b":1,"a":2}}}]]]]}',
]

JSON_VALUES = [b'1e21', b'[0.1,-0.0,1E-7,9007199254740993,-9007199254740993,1e308,5e-324,123456789012345680000]',
               b'{"\\ue000":1,"\\ud83d\\ude00":2,"a":3,"\\u00e9":4,"":5}',
               b'"\\u0000\\u001f\\"\\\\\\/\\b\\f\\n\\r\\t\\u2028\\u007f"', b'{"b":[true,false,null,{}],"a":[]}',
               b'18446744073709551615', b'-1.0000000000000002', b'[1.5e300,2.5e-300,0.000001,1e-6,1e-7]']

SECRETS = [
    "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234567890abcdefghij\n-----END RSA PRIVATE KEY-----",
    "card 4111 1111 1111 1111 exp 12/30", "4111-1111-1111-1111", "IBAN GB82 WEST 1234 5698 7654 32",
    "ssn 123-45-6789", "mail alice@example.com now", "Bearer Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg",
    "password: hunter2hunter2!", "4\u200b111 1111 1111 1111", "\uff14\uff11\uff11\uff11 1111 1111 1111",
    # Found by dlp_scan and dlp_redact (minimised): a short armoured body decoding to a cut DER length.
    "-----BEGIN X-----\nMIIB",
]
DLP_JSON = [
    {"content": [{"type": "text", "text": "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 here"}]},
    {"AKIAIOSFODNN7EXAMPLE": "key as a name", "card": 4111111111111111},
    {"tokens": ["sk_live_4eC39HqLyjWDarjtT1zdp7dc", "x"], "_meta": {"ssn": "123-45-6789"}},
    {"[REDACTED:github_token]": "a", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789": "b"},
    {"a/b~c": {"password": "correct horse battery staple 42"}},
    # Object keys are scanned like values (0b320ce): an assignment moved into a key, alone, nested, in an array.
    {"note": {"db_password=hunter2hunter2": 1}},
    {"note": [{"api_key: hunter2hunter2": None}], "outer": {"db_password=hunter2hunter2": {"x": True}}},
    # The key=value pointer case an earlier dlp_scan run found (docs/fuzzing.md): a key that is a finding as a
    # value, over a finding of its own.
    {"tEws_secret_access_key=/p/xRfiCYMEokens": ["sk_live_4eC39HqLyjWDarjtT1zdp7dc", "x"]},
    {"outer": {"db_password=hunter2hunter2": ["sk_live_4eC39HqLyjWDarjtT1zdp7dc"]}, "a=b": 1, "sort_key": "created_at"},
]

CLASSIFY = [
    ("read_file", "/home/agent", {"path": "../../etc/passwd"}),
    ("fetch", "/", {"url": "http://user:pw@169.254.169.254:80/latest/../meta-data"}),
    ("run_shell", "/work", {"command": "rm -rf /", "cwd": "./tmp"}),
    ("exec", "/work", {"argv": ["ls", "-la", "/root"]}),
    ("send_email", "/", {"to": "eve@example.org", "body": "hi", "attachments": ["/etc/hosts"]}),
    ("writeFile", "relative/dir", {"file_path": "a/./b//c/", "content": "/not/a/target"}),
    ("get_page", "/", {"uri": "file://localhost/etc/%2e%2e/shadow"}),
    ("tool", "/", {"PATH": "/tmp/decoy", "path": "/etc/cron.d/x", "nested": {"targets": [{"url": "https://EXAMPLE.com:443/"}]}}),
    # Percent-escaped plain paths are listed as written and decoded; a control character or a backslash, written
    # or decoded, marks a path ambiguous (546ba32).
    ("read_file", "/home/agent", {"path": "notes/%2e%2e/%2E%2E/etc/shadow"}),
    ("read_file", "/workspace", {"path": "/etc\u0000/../workspace/x"}),
    ("read_file", "/workspace", {"path": "/etc%00/../workspace/x", "file": "..\\..\\etc\\passwd"}),
    ("get_page", "/", {"uri": "file:///etc%00/../x", "url": "file:///a%5c..%5cb"}),
]
# Arguments that are not JSON (the target reads them as {"path": <text>}): raw bytes after two lines.
CLASSIFY_RAW = [
    b"read_file\n/workspace\n/etc\x00/../workspace/x",
    b"read_file\n/workspace\n..\\..\\etc\\passwd",
]
NORMALISE = [
    "/home/agent\n../../etc/passwd", "/\n/a/./b/../../../c//d/", "relative\n.", "/w\nfile:///etc/%2e%2e/passwd",
    "/\nfile://localhost/etc/passwd", "/\nhttp://user:pw@EXAMPLE.com:80/a/../b?q#f", "/\nhttp://a\\@b.example/",
    "/\nhttps://[::ffff:127.0.0.1]:443/", "/\nhttp://0x7f.1/", "/\nweb+demo:/.//not-a-host/", "/\n  HTTP://Ex%41mple.COM  ",
    "/\nmailto:a@b.c", "/\nfile:/etc/passwd", "/\nhttp://xn--e1afmkfd.xn--p1ai/", "/\ndata:text/plain,hi",
    "/home/agent\nnotes/%2e%2e/%2E%2E/etc/shadow", "/workspace\n/etc\x00/../workspace/x", "/w\n..\\..\\etc\\passwd",
    "/\nfile:///etc%00/../x",
]
SSE = [
    b": comment\r\nevent: message\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\n",
    b'data: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\n\n',
    b"retry: 100\nid: 7\nevent: message\ndata:no-space\ndata\n\n\n\ndata: tail without blank line",
    b"data: a\r\rdata: b\r\n\r\n",
    b"data: \xff\xfe invalid utf-8\n\n",
    # What earlier runs found (docs/fuzzing.md): a lone CR ends a line; an event hidden behind CRs; every kind of
    # blank line; an event without data labels nothing.
    b"data: a\r\rdata: b\n\n",
    b'event: message\rdata: {"smuggled":1}\r\rdata: {"judged":1}\n\n',
    b"data: 1\r\rdata: 2\n\r\ndata: 3\r\n\rdata: 4\r\n\r\ndata: 5\n\rdata: 6",
    b'event: message\r\nid: 1\r\ndant:ta: {"a":1}\r\n\r\ndata: x\n\n',
]

def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}.bin").write_bytes(data)

def compact(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()

for i, m in enumerate(MCP):
    write("jsonrpc_parse", f"mcp{i}", compact(m))
    write("jcs", f"mcp{i}", json.dumps(m, indent=1).encode())
for i, raw in enumerate(RAW_MCP):
    write("jsonrpc_parse", f"raw{i}", raw)
for i, raw in enumerate(JSON_VALUES):
    write("jcs", f"value{i}", raw)
for target in ("dlp_scan", "dlp_redact"):
    for i, s in enumerate(SECRETS):
        key = i % (len(KEYS) + 1)  # the last index means "a bare string"
        write(target, f"string{i}", bytes([2 * key]) + s.encode())
    for i, v in enumerate(DLP_JSON):
        write(target, f"json{i}", b"1" + compact(v))
for i, (tool, workdir, args) in enumerate(CLASSIFY):
    write("classify", f"call{i}", f"{tool}\n{workdir}\n".encode() + compact(args))
for i, raw in enumerate(CLASSIFY_RAW):
    write("classify", f"raw{i}", raw)
for i, s in enumerate(NORMALISE):
    write("normalise", f"input{i}", s.encode())
for i, s in enumerate(SSE):
    for knobs in (0x00, 0x03, 0xf7):
        write("sse", f"stream{i}-{knobs:02x}", bytes([knobs]) + s)
