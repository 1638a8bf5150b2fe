#!/usr/bin/env python3
"""Verify a toolgate audit export against its SHA-256 hash chain, independently of toolgate.

Input: NDJSON, one audit event per line (`toolgate audit export --format ndjson`), with both hashes.
Rules: docs/audit-format.md. Standard library only, Python 3.8+.

    python3 tools/verify-audit.py audit.ndjson
    toolgate audit export --format ndjson | python3 tools/verify-audit.py -
    python3 tools/verify-audit.py --anchor gw-01:41:<event_hash of seq 41> range.ndjson

Prints the same JSON report as `toolgate audit verify` (without `duration_ms`) on stdout and one
human-readable line on stderr. Exit status: 0 every chain intact, 1 a bad row was found (the first one is
reported), 2 usage or I/O error.
"""

import argparse
import hashlib
import json
import sys
from decimal import Decimal

GENESIS_HASH = "0" * 64

# The contract's fields, in the contract's order; every field but the last two is hashed.
FIELDS = (
    "id", "chain_id", "seq", "timestamp", "event_type", "agent_id", "session_id", "tenant_id",
    "workflow_id", "requester_id", "tool_name", "mcp_server", "action", "target", "input_hash",
    "policy_result", "policy_id", "policy_reason", "behavioral_score", "dlp_findings", "dlp_action",
    "response_code", "latency_us", "error", "trace_id", "extra", "previous_hash", "event_hash",
)
HASHED_FIELDS = FIELDS[:-2]
REQUIRED_STRINGS = ("id", "chain_id", "timestamp", "event_type", "previous_hash", "event_hash")
OPTIONAL_INTEGERS = ("response_code", "latency_us")
JSON_VALUES = ("dlp_findings", "extra")
OPTIONAL_STRINGS = tuple(
    f for f in FIELDS if f not in REQUIRED_STRINGS + OPTIONAL_INTEGERS + JSON_VALUES + ("seq",)
)
I64_MIN, I64_MAX, U64_MAX = -(2 ** 63), 2 ** 63 - 1, 2 ** 64 - 1


class BadLine(Exception):
    """A line that is not a well-formed audit event."""


class JsonFloat(float):
    """A JSON number that is not an integer as toolgate reads it (a fraction, an exponent, `-0`, or an
    integer outside the 64-bit ranges): it is hashed like any number but is not allowed in an event."""


def parse_int(text):
    value = int(text)
    if (value == 0 and text.startswith("-")) or not I64_MIN <= value <= U64_MAX:
        return JsonFloat(text)
    return value


def reject_constant(name):
    raise BadLine("invalid JSON: %s is not a JSON value" % name)


def unique_members(pairs):
    members = {}
    for key, value in pairs:
        if key in members:
            raise BadLine("duplicate member %s" % json.dumps(key, ensure_ascii=False))
        members[key] = value
    return members


def parse_line(text):
    try:
        return json.loads(
            text,
            parse_float=JsonFloat,
            parse_int=parse_int,
            parse_constant=reject_constant,
            object_pairs_hook=unique_members,
        )
    except ValueError as err:
        raise BadLine("invalid JSON (%s)" % err) from None


# --- RFC 8785 (JCS) ---------------------------------------------------------------------------------------

def es6_number(value):
    """ECMAScript Number.prototype.toString of a finite double (RFC 8785 section 3.2.2.3)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise BadLine("non-finite number")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    exponent += len(digits) - len(digits.rstrip("0"))
    digits = digits.rstrip("0")
    point = len(digits) + exponent  # value = 0.<digits> * 10**point
    k = len(digits)
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        e = point - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + text


ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def jcs_string(text):
    out = ['"']
    for ch in text:
        if ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jcs(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, JsonFloat):
        return es6_number(float(value))
    if isinstance(value, int):
        # A JSON number is an IEEE 754 double: beyond 2**53 the nearest one is written.
        return str(value) if abs(value) <= 2 ** 53 else es6_number(float(value))
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        # Members sort by the UTF-16 code units of their names; big-endian UTF-16 bytes compare the same way.
        keys = sorted(value, key=lambda key: key.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(jcs_string(key) + ":" + jcs(value[key]) for key in keys) + "}"
    raise BadLine("unexpected value type %s" % type(value).__name__)


# --- the chain --------------------------------------------------------------------------------------------

def is_integer(value, low=I64_MIN, high=I64_MAX):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_fields(event):
    if not isinstance(event, dict):
        raise BadLine("a line must be a JSON object")
    for name in event:
        if name not in FIELDS:
            raise BadLine("unexpected field %s" % json.dumps(name, ensure_ascii=False))
    for name in FIELDS:
        if name not in event:
            raise BadLine("missing field %s" % name)
    for name in REQUIRED_STRINGS:
        if not isinstance(event[name], str):
            raise BadLine("field %s must be a string" % name)
    if not is_integer(event["seq"]):
        raise BadLine("field seq must be a 64-bit integer")
    for name in OPTIONAL_STRINGS:
        if event[name] is not None and not isinstance(event[name], str):
            raise BadLine("field %s must be a string or null" % name)
    for name in OPTIONAL_INTEGERS:
        if event[name] is not None and not is_integer(event[name]):
            raise BadLine("field %s must be a 64-bit integer or null" % name)


def event_hash(event):
    hashed = {name: event[name] for name in HASHED_FIELDS}
    data = jcs(hashed).encode("utf-8") + event["previous_hash"].encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def first_float(value, pointer):
    """JSON pointer of the first non-integer number, members in code point order (as toolgate reports it)."""
    if isinstance(value, JsonFloat):
        return pointer
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = first_float(item, "%s/%d" % (pointer, index))
            if found:
                return found
    if isinstance(value, dict):
        for key in sorted(value):
            token = key.replace("~", "~0").replace("/", "~1")
            found = first_float(value[key], pointer + "/" + token)
            if found:
                return found
    return None


def problems(event, head):
    """Every reason `event` breaks its chain, worded exactly as toolgate words them (engine/src/chain.rs)."""
    found = []
    recomputed = event_hash(event)
    if recomputed != event["event_hash"]:
        found.append("event_hash mismatch: stored %s, recomputed %s (a hashed field was changed)"
                     % (event["event_hash"], recomputed))
    seq, previous = event["seq"], event["previous_hash"]
    if head is None:
        if seq != 1:
            found.append("first event of the chain has seq %d, expected 1 (earlier rows missing, or a range "
                         "that needs an anchor)" % seq)
        if previous != GENESIS_HASH:
            found.append("previous_hash mismatch: expected the genesis hash, found %s" % previous)
    else:
        head_seq, head_hash = head
        expected = head_seq + 1
        if seq > expected:
            found.append("seq gap: expected %d, found %d (%d row(s) missing)" % (expected, seq, seq - expected))
        elif seq < expected:
            found.append("seq out of order: expected %d, found %d (duplicate, inserted or reordered row)"
                         % (expected, seq))
        if previous != head_hash:
            if head_hash == GENESIS_HASH:
                found.append("previous_hash mismatch: expected the genesis hash, found %s" % previous)
            else:
                found.append("previous_hash mismatch: expected %s (event_hash of seq %d), found %s"
                             % (head_hash, head_seq, previous))
    for name in JSON_VALUES:
        pointer = first_float(event[name], "/" + name)
        if pointer:
            found.append("floating-point number in hashed value at %s" % pointer)
    return found


def verify(lines, anchors):
    """Walks every chain in `lines`; returns (report, line number of the first bad row or None)."""
    heads = dict(anchors)
    count = 0
    first_bad = None
    bad_line = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        event = None
        try:
            event = parse_line(raw.decode("utf-8"))
            check_fields(event)
            reasons = problems(event, heads.get(event["chain_id"]))
        except (BadLine, UnicodeError) as err:
            reasons = ["line %d: %s" % (number, err)]
        else:
            heads[event["chain_id"]] = (event["seq"], event["event_hash"])
        if reasons and first_bad is None:
            ident = event if isinstance(event, dict) else {}
            first_bad = {
                "id": ident.get("id") if isinstance(ident.get("id"), str) else None,
                "chain_id": ident.get("chain_id") if isinstance(ident.get("chain_id"), str) else None,
                "seq": ident.get("seq") if is_integer(ident.get("seq")) else None,
                "reason": "; ".join(reasons),
            }
            bad_line = number
    report = {"events_verified": count, "chain_intact": first_bad is None, "first_bad_row": first_bad}
    return report, bad_line


def parse_anchor(text):
    try:
        chain_id, seq, head_hash = text.rsplit(":", 2)
        return chain_id, (int(seq), head_hash)
    except ValueError:
        raise argparse.ArgumentTypeError("expected CHAIN_ID:SEQ:EVENT_HASH, got %r" % text) from None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify a toolgate NDJSON audit export (hash chain).")
    parser.add_argument("file", help="NDJSON export, or - for standard input")
    parser.add_argument(
        "--anchor", action="append", default=[], type=parse_anchor, metavar="CHAIN_ID:SEQ:EVENT_HASH",
        help="for an export that starts mid-chain: the last seq and event_hash before it (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        if args.file == "-":
            report, bad_line = verify(sys.stdin.buffer, args.anchor)
        else:
            with open(args.file, "rb") as lines:
                report, bad_line = verify(lines, args.anchor)
    except OSError as err:
        print("verify-audit: cannot read %s: %s" % (args.file, err.strerror), file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
    if report["chain_intact"]:
        print("audit chain intact: %d events verified" % report["events_verified"], file=sys.stderr)
        return 0
    bad = report["first_bad_row"]
    print("audit chain broken at line %d (chain %s, seq %s, id %s): %s"
          % (bad_line, bad["chain_id"], bad["seq"], bad["id"], bad["reason"]), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
