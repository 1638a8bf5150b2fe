#!/usr/bin/env bash
# An example scale-out deployment you can run on one machine: three `toolgate serve` replicas, each with its own
# listen port, its own audit chain (`audit.chain_id`) and its own checkpoint key, on one PostgreSQL database,
# behind Debian's nginx as the load balancer. Everything listens on 127.0.0.1 only; nginx runs as the current
# user from the state folder (its own config, pid file, logs and temp paths), nothing of the system's nginx is
# used or touched. docs/scale-out.md explains every setting below.
#
#   deploy/replicas.sh start       start (or restart) the three replicas and nginx; prints the URL and a token
#   deploy/replicas.sh stop        stop nginx and the replicas this script started (by their pid files)
#   deploy/replicas.sh status      what is running, and each replica's /ready
#   deploy/replicas.sh token SUB   print an agent token (HS256, the deployment's dev secret)
#   deploy/replicas.sh balance agent|round-robin
#                                  switch nginx's balancing and reload it (see "Balancing" below)
#   deploy/replicas.sh selftest    start everything in a scratch folder and database of its own, send stateless
#                                  calls through nginx until each replica has answered one, a 2025-era session
#                                  through the sticky balancing, check that a second instance with a taken chain
#                                  id is refused and that `audit verify` covers the three chains, then stop and
#                                  drop the scratch database. Not part of `make test` (it needs nginx and
#                                  PostgreSQL); run it by hand: `deploy/replicas.sh selftest`.
#
# Environment (all optional):
#   TOOLGATE_DATABASE_URL      a PostgreSQL server URL; default postgres://postgres@127.0.0.1:5432/test. The script
#                              creates the database TOOLGATE_REPLICAS_DB on that server (needs `psql`) and points
#                              the replicas at it; without psql the URL is used as given.
#   TOOLGATE_REPLICAS_DB       default toolgate_replicas
#   TOOLGATE_REPLICAS_DIR      state folder (configs, keys, logs, pid files); default ${TMPDIR:-/tmp}/toolgate-replicas
#   TOOLGATE_REPLICAS_PORT     nginx's port (default 8090); replica i listens on PORT+i
#   TOOLGATE_REPLICAS_BALANCE  `round-robin` (default) or `agent`
#   TOOLGATE_REPLICAS_UPSTREAM an MCP streamable-HTTP URL to protect; default the bundled demo server (stdio, one
#                              child per replica, one shared sandbox folder)
#   TOOLGATE_BIN               the toolgate binary; default ${CARGO_TARGET_DIR:-target}/release/toolgate (built if
#                              missing)
#
# Balancing. `round-robin` spreads every request over the replicas: 2025-era sessions are shared through the
# database (a session opened on one replica is served by every other), so nothing needs to be sticky. `agent`
# hashes the Authorization header (`hash $http_authorization consistent`), so every request of one agent token, its
# `initialize` included, reaches the same replica: each replica then serves its sessions from its cache alone. Hashing the Mcp-Session-Id header instead does not work for MCP: the `initialize` that creates a session
# carries no id yet, so the replica that mints the id is not the one the id hashes to.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPLICAS=3
DEFAULT_SERVER_URL="postgres://postgres@127.0.0.1:5432/test"
SERVER_URL="${TOOLGATE_DATABASE_URL:-$DEFAULT_SERVER_URL}"
DB_NAME="${TOOLGATE_REPLICAS_DB:-toolgate_replicas}"
STATE="${TOOLGATE_REPLICAS_DIR:-${TMPDIR:-/tmp}/toolgate-replicas}"
PORT="${TOOLGATE_REPLICAS_PORT:-8090}"
BALANCE="${TOOLGATE_REPLICAS_BALANCE:-round-robin}"
UPSTREAM_URL="${TOOLGATE_REPLICAS_UPSTREAM:-}"
# Development secrets of this example only, like toolgate.toml's: use a JWKS and a real admin token elsewhere.
JWT_SECRET="toolgate-replicas-dev-secret-0123456789abcdef"
ADMIN_TOKEN="toolgate-replicas-dev-admin-token"

say() { printf 'replicas: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# A start that fails half-way stops what it started.
abort() { stop quiet; die "$@"; }

toolgate_bin() {
    if [ -n "${TOOLGATE_BIN:-}" ]; then
        # Absolute: each replica runs in its own folder.
        printf '%s/%s\n' "$(cd "$(dirname "$TOOLGATE_BIN")" && pwd)" "$(basename "$TOOLGATE_BIN")"
        return
    fi
    local target="${CARGO_TARGET_DIR:-$REPO/target}"
    case "$target" in /*) ;; *) target="$REPO/$target" ;; esac
    if [ ! -x "$target/release/toolgate" ]; then
        say "building toolgate (release) into $target"
        (cd "$REPO" && cargo build --release -p toolgate >&2)
    fi
    printf '%s\n' "$target/release/toolgate"
}

nginx_bin() {
    if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        "$REPO/scripts/install-bench-deps.sh" >&2 || true
    fi
    if command -v nginx >/dev/null 2>&1; then
        command -v nginx
    elif [ -x /usr/sbin/nginx ]; then
        printf '/usr/sbin/nginx\n'
    else
        die "nginx is not installed and scripts/install-bench-deps.sh could not install it"
    fi
}

# The URL of database $2 on the server of URL $1: the path's last segment replaced, the query kept.
database_url() {
    local url="$1" db="$2" query="" base
    case "$url" in *\?*) query="?${url#*\?}"; url="${url%%\?*}" ;; esac
    base="${url#*://}"
    case "$base" in
        */*) printf '%s/%s%s\n' "${url%/*}" "$db" "$query" ;;
        *) printf '%s/%s%s\n' "$url" "$db" "$query" ;;
    esac
}

# Creates database $1 on the server (if psql is there and it does not exist yet); prints the URL to use.
ensure_database() {
    local db="$1"
    if ! command -v psql >/dev/null 2>&1; then
        say "psql is missing: using $SERVER_URL as given (create a dedicated database to keep the example apart)"
        printf '%s\n' "$SERVER_URL"
        return
    fi
    if [ "$(psql "$SERVER_URL" -XAtqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
        psql "$SERVER_URL" -Xqc "CREATE DATABASE \"$db\"" >/dev/null
        say "created database $db"
    fi
    database_url "$SERVER_URL" "$db"
}

drop_database() {
    command -v psql >/dev/null 2>&1 || return 0
    psql "$SERVER_URL" -Xqc "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
}

# An ed25519 signing key for replica $1 (64 hex digits, mode 0600) and its public key, hex, in key.pub.
ensure_key() {
    local dir="$1"
    if [ ! -s "$dir/signing-key" ]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$dir/signing-key")
    fi
    if command -v openssl >/dev/null 2>&1 && command -v xxd >/dev/null 2>&1; then
        # PKCS#8 wrapping of a raw ed25519 seed, so openssl derives the public key.
        { printf '302e020100300506032b657004220420'; cat "$dir/signing-key"; } | xxd -r -p \
            | openssl pkey -inform DER -pubout -outform DER 2>/dev/null | tail -c 32 | xxd -p -c 64 >"$dir/key.pub" \
            || rm -f "$dir/key.pub"
    fi
}

write_replica_config() {
    local i="$1" url="$2" trusted="$3" dir="$STATE/replica-$i" upstream
    if [ -n "$UPSTREAM_URL" ]; then
        upstream="url = \"$UPSTREAM_URL\""
    else
        upstream="command = [\"$TOOLGATE\", \"demo-server\", \"--sandbox\", \"$STATE/sandbox\"]"
    fi
    cat >"$dir/toolgate.toml" <<EOF
# Replica $i of deploy/replicas.sh (generated; docs/scale-out.md explains each setting).
listen = "127.0.0.1:$((PORT + i))"
# What agents reach: nginx, not this replica (RFC 9728 metadata and WWW-Authenticate name it).
public_url = "http://127.0.0.1:$PORT"

[server]
# Behind nginx every connection and every failed authentication comes from nginx's address.
max_connections_per_ip = 4096
auth_failures_per_minute = 100000

[auth]
hs256_secret = "$JWT_SECRET"

[admin]
token = "$ADMIN_TOKEN"

[policy]
dir = "$REPO/policies"

[audit]
database_url = "$url"
# Distinct per instance: each replica appends to its own hash chain; a second live instance with the same id is
# refused at start (an advisory lock on PostgreSQL).
chain_id = "replica-$i"
signing_key_file = "$dir/signing-key"
# The other replicas' checkpoint keys, so that verify on any replica accepts every chain's checkpoints.
trusted_public_keys = [$trusted]
checkpoint_dir = "$STATE/checkpoints"
# Public verification is limited per client IP, and behind nginx every client has nginx's address.
public_verify_per_minute = 6000

[[upstream]]
name = "demo"
$upstream
EOF
}

write_nginx_config() {
    local balance_line servers="" i
    case "$BALANCE" in
        agent) balance_line="hash \$http_authorization consistent;" ;;
        round-robin) balance_line="# round robin (nginx's default)" ;;
        *) die "TOOLGATE_REPLICAS_BALANCE must be agent or round-robin, not $BALANCE" ;;
    esac
    for i in $(seq 1 "$REPLICAS"); do
        servers="$servers        server 127.0.0.1:$((PORT + i)) max_fails=1 fail_timeout=5s;
"
    done
    cat >"$STATE/nginx.conf" <<EOF
# nginx in front of the toolgate replicas of deploy/replicas.sh (generated; docs/scale-out.md explains it).
worker_processes auto;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    log_format replicas '\$time_iso8601 \$status \$request_method \$uri replica=\$upstream_addr '
                        'upstream_s=\$upstream_response_time total_s=\$request_time';
    access_log $STATE/nginx-access.log replicas buffer=64k flush=1s;
    client_body_temp_path $STATE/nginx-tmp/client_body;
    proxy_temp_path $STATE/nginx-tmp/proxy;
    fastcgi_temp_path $STATE/nginx-tmp/fastcgi;
    uwsgi_temp_path $STATE/nginx-tmp/uwsgi;
    scgi_temp_path $STATE/nginx-tmp/scgi;
    # toolgate's own limit (max_body_bytes) decides; nginx only must not refuse first.
    client_max_body_size 8m;
    keepalive_requests 100000;

    upstream toolgate {
        # Shared by the workers, so round robin is one rotation, not one per worker.
        zone toolgate_replicas 64k;
        $balance_line
$servers
        # Kept-alive HTTP/1.1 connections to the replicas; closed by nginx before toolgate's idle timeout (60 s)
        # would close them under a request.
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 50s;
    }

    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://toolgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Every request header is passed on as sent, Authorization, Mcp-Session-Id, MCP-Protocol-Version,
            # Last-Event-ID and traceparent included; these add where the request came from.
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            # Streamed answers (SSE: MCP results, GET streams, /api/v1/audit/stream) go out event by event, and
            # request bodies are passed on as they arrive.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            # A replica that refuses the connection is skipped; a request already sent is never re-sent (POSTs are
            # not idempotent, nginx's default).
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            # Which replica answered: for this example and the selftest; drop it where addresses are private.
            add_header X-Toolgate-Replica \$upstream_addr always;
        }
    }
}
EOF
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_ready() {
    local i="$1" log="$STATE/replica-$i/toolgate.log" n
    for n in $(seq 1 300); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$((PORT + i))/ready" 2>/dev/null; then
            return 0
        fi
        if ! pid_alive "$STATE/replica-$i/pid"; then
            tail -n 20 "$log" >&2 || true
            abort "replica $i exited at start (log: $log)"
        fi
        sleep 0.1
    done
    abort "replica $i was not ready within 30 s (log: $log)"
}

start() {
    TOOLGATE="$(toolgate_bin)"
    [ -x "$TOOLGATE" ] || die "no toolgate binary at $TOOLGATE"
    local nginx url i trusted
    nginx="$(nginx_bin)"
    stop quiet
    mkdir -p "$STATE/sandbox" "$STATE/checkpoints" "$STATE/nginx-tmp"
    url="$(ensure_database "$DB_NAME")"
    for i in $(seq 1 "$REPLICAS"); do
        mkdir -p "$STATE/replica-$i"
        ensure_key "$STATE/replica-$i"
    done
    for i in $(seq 1 "$REPLICAS"); do
        trusted=""
        for j in $(seq 1 "$REPLICAS"); do
            if [ "$j" != "$i" ] && [ -s "$STATE/replica-$j/key.pub" ]; then
                trusted="$trusted${trusted:+, }\"$(cat "$STATE/replica-$j/key.pub")\""
            fi
        done
        write_replica_config "$i" "$url" "$trusted"
    done
    for i in $(seq 1 "$REPLICAS"); do
        # The config file decides; environment overrides of these keys would give every replica the same value.
        (cd "$STATE/replica-$i" && exec env -u TOOLGATE_LISTEN -u TOOLGATE_DATABASE_URL \
            setsid "$TOOLGATE" serve --config toolgate.toml >toolgate.log 2>&1 </dev/null) &
        echo $! >"$STATE/replica-$i/pid"
    done
    for i in $(seq 1 "$REPLICAS"); do
        wait_ready "$i"
    done
    write_nginx_config
    "$nginx" -t -q -c "$STATE/nginx.conf" -p "$STATE" -e "$STATE/nginx-error.log" 2>&1 | grep -v '^$' >&2 || true
    "$nginx" -c "$STATE/nginx.conf" -p "$STATE" -e "$STATE/nginx-error.log" || abort "nginx did not start ($STATE/nginx-error.log)"
    echo "$nginx" >"$STATE/nginx.bin"
    for _ in $(seq 1 50); do
        curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" || abort "nginx does not answer on 127.0.0.1:$PORT ($STATE/nginx-error.log)"
    local admin="$ADMIN_TOKEN"
    [ -z "${TOOLGATE_ADMIN_TOKEN:-}" ] || admin="\$TOOLGATE_ADMIN_TOKEN (your environment's, which overrides the config's)"
    echo "$TOOLGATE" >"$STATE/toolgate.bin"
    cat <<EOF
toolgate: $REPLICAS replicas (chains replica-1..replica-$REPLICAS) on $(printf '%s' "$url" | sed -E 's#://[^@/]*@#://…@#'), behind nginx ($BALANCE balancing)
  MCP endpoint   http://127.0.0.1:$PORT/mcp/demo
  replicas       $(for i in $(seq 1 "$REPLICAS"); do printf 'http://127.0.0.1:%s ' "$((PORT + i))"; done)
  agent token    $0 token agent-1        (or: $TOOLGATE token --config $STATE/replica-1/toolgate.toml --sub agent-1)
  admin token    $admin
  try            curl -s http://127.0.0.1:$PORT/mcp/demo -H "Authorization: Bearer \$($0 token agent-1)" \\
                   -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
                   -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}'
  state          $STATE (logs: replica-*/toolgate.log, nginx-access.log)
  stop           $0 stop
EOF
}

stop() {
    local quiet="${1:-}" i pid nginx
    if pid_alive "$STATE/nginx.pid"; then
        nginx="$(cat "$STATE/nginx.bin" 2>/dev/null || nginx_bin)"
        "$nginx" -c "$STATE/nginx.conf" -p "$STATE" -e "$STATE/nginx-error.log" -s quit 2>/dev/null \
            || kill -TERM "$(cat "$STATE/nginx.pid")" 2>/dev/null || true
        for _ in $(seq 1 50); do pid_alive "$STATE/nginx.pid" || break; sleep 0.1; done
    fi
    for i in $(seq 1 "$REPLICAS"); do
        if pid_alive "$STATE/replica-$i/pid"; then
            pid="$(cat "$STATE/replica-$i/pid")"
            # SIGTERM: the replica drains its audit queue, signs a last checkpoint and releases its chain.
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$STATE/replica-$i/pid"
    done
    [ -n "$quiet" ] || say "stopped ($STATE kept; the database is kept too)"
}

status() {
    local i code
    if pid_alive "$STATE/nginx.pid"; then
        echo "nginx       running (pid $(cat "$STATE/nginx.pid")) on http://127.0.0.1:$PORT"
    else
        echo "nginx       not running"
    fi
    for i in $(seq 1 "$REPLICAS"); do
        if pid_alive "$STATE/replica-$i/pid"; then
            code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((PORT + i))/ready" || true)"
            echo "replica-$i   running (pid $(cat "$STATE/replica-$i/pid")) on http://127.0.0.1:$((PORT + i)), /ready $code"
        else
            echo "replica-$i   not running"
        fi
    done
}

token() {
    local tg
    tg="$(cat "$STATE/toolgate.bin" 2>/dev/null || toolgate_bin)"
    [ -f "$STATE/replica-1/toolgate.toml" ] || die "not started: $0 start"
    "$tg" token --config "$STATE/replica-1/toolgate.toml" --sub "${1:-agent-1}" ${2:+--tenant "$2"}
}

balance() {
    BALANCE="${1:-}"
    pid_alive "$STATE/nginx.pid" || die "nginx is not running: $0 start"
    write_nginx_config
    local nginx
    nginx="$(cat "$STATE/nginx.bin" 2>/dev/null || nginx_bin)"
    "$nginx" -c "$STATE/nginx.conf" -p "$STATE" -e "$STATE/nginx-error.log" -s reload
    # A reload starts new workers; wait until the old ones have handed over.
    sleep 1
    say "nginx balancing: $BALANCE"
}

# One MCP POST through nginx: prints the status, the replica that answered and the body, tab-separated.
mcp_post() {
    local bearer="$1" body="$2" session="${3:-}" extra="${4:-}"
    local headers
    headers="$(mktemp)"
    local out
    out="$(curl -sS -D "$headers" -o - "http://127.0.0.1:$PORT/mcp/demo" \
        -H "Authorization: Bearer $bearer" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' \
        ${session:+-H "Mcp-Session-Id: $session"} ${session:+-H "MCP-Protocol-Version: 2025-11-25"} \
        ${extra:+-H "$extra"} -d "$body" | tr -d '\n')"
    local status replica sid
    status="$(head -n1 "$headers" | awk '{print $2}')"
    replica="$(tr -d '\r' <"$headers" | awk -F': ' 'tolower($1)=="x-toolgate-replica"{print $2}')"
    sid="$(tr -d '\r' <"$headers" | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')"
    rm -f "$headers"
    printf '%s\t%s\t%s\t%s\n' "$status" "$replica" "$sid" "$out"
}

selftest() {
    local scratch
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/toolgate-replicas-selftest.XXXXXX")"
    STATE="$scratch"
    DB_NAME="toolgate_replicas_selftest_$$"
    # A base port whose four ports are free, so a running example deployment is left alone.
    local base
    for base in $(seq 18190 10 18990); do
        local free=1 p
        for p in $(seq "$base" $((base + REPLICAS))); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then free=0; break; fi
        done
        [ "$free" = 1 ] && break
    done
    PORT="$base"
    BALANCE="round-robin"
    SELFTEST_FAILED=1
    trap 'stop quiet; drop_database "$DB_NAME"; if [ "$SELFTEST_FAILED" = 0 ]; then rm -rf "$STATE"; else say "selftest FAILED; logs kept in $STATE"; fi' EXIT
    start >/dev/null
    local token i answer seen="" status replica
    token="$(token selftest-agent)"

    # Stateless calls, round robin: each replica must answer at least one.
    for i in $(seq 1 30); do
        answer="$(mcp_post "$token" "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"selftest $i\"},\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}")"
        status="$(cut -f1 <<<"$answer")"
        replica="$(cut -f2 <<<"$answer")"
        if [ "$status" != 200 ] || ! grep -q '"result"' <<<"$answer"; then
            die "FAIL: stateless call $i through nginx: $answer"
        fi
        case " $seen " in *" $replica "*) ;; *) seen="$seen $replica" ;; esac
        [ "$(wc -w <<<"$seen")" -ge "$REPLICAS" ] && break
    done
    if [ "$(wc -w <<<"$seen")" -lt "$REPLICAS" ]; then
        die "FAIL: only$seen answered after 30 calls"
    fi
    say "ok: a stateless tools/call through nginx answered by each replica:$seen"

    # A 2025-era session under agent-hash balancing: initialize and every later call reach one replica.
    balance agent 2>/dev/null
    answer="$(mcp_post "$token" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"selftest","version":"0"}}}')"
    local sid
    sid="$(cut -f3 <<<"$answer")"
    if [ "$(cut -f1 <<<"$answer")" != 200 ] || [ -z "$sid" ]; then
        die "FAIL: initialize through nginx: $answer"
    fi
    mcp_post "$token" '{"jsonrpc":"2.0","method":"notifications/initialized"}' "$sid" >/dev/null
    for i in $(seq 2 7); do
        answer="$(mcp_post "$token" "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"session $i\"}}}" "$sid")"
        if [ "$(cut -f1 <<<"$answer")" != 200 ] || ! grep -q '"result"' <<<"$answer"; then
            die "FAIL: call $i in session through nginx (agent balancing): $answer"
        fi
    done
    say "ok: a 2025-era session (initialize + 6 calls) through nginx with agent balancing, on $(cut -f2 <<<"$answer")"

    # The same under round robin: the session's calls land on several replicas, and each serves it (sessions are
    # shared through the database).
    balance round-robin 2>/dev/null
    answer="$(mcp_post "$token" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"selftest","version":"0"}}}')"
    sid="$(cut -f3 <<<"$answer")"
    if [ "$(cut -f1 <<<"$answer")" != 200 ] || [ -z "$sid" ]; then
        die "FAIL: initialize through nginx (round robin): $answer"
    fi
    seen=""
    for i in $(seq 2 10); do
        answer="$(mcp_post "$token" "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"shared $i\"}}}" "$sid")"
        if [ "$(cut -f1 <<<"$answer")" != 200 ] || ! grep -q '"result"' <<<"$answer"; then
            die "FAIL: call $i of a session through nginx (round robin): $answer"
        fi
        replica="$(cut -f2 <<<"$answer")"
        case " $seen " in *" $replica "*) ;; *) seen="$seen $replica" ;; esac
    done
    if [ "$(wc -w <<<"$seen")" -lt 2 ]; then
        die "FAIL: a round-robin session reached only$seen"
    fi
    say "ok: one 2025-era session served by several replicas under round robin:$seen"

    # Streams pass through nginx as they happen (no buffering): the admin SSE feed, read through nginx while a
    # call is made, shows the call's event within the second. The call carries a traceparent, which must reach
    # the replica (its trace id is written to the audit event).
    local trace="0af7651916cd43dd8448eb211c8$(printf '%05d' $(( $$ % 100000 )))"
    curl -sN --max-time 3 -H "Authorization: Bearer $ADMIN_TOKEN" \
        "http://127.0.0.1:$PORT/api/v1/audit/stream?event_type=tool_call" >"$STATE/stream.out" 2>/dev/null &
    local reader=$!
    sleep 1
    answer="$(mcp_post "$token" '{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"echo","arguments":{"text":"streamed"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}' "" "traceparent: 00-$trace-b7ad6b7169203331-01")"
    wait "$reader" || true
    if ! grep -q "$trace" "$STATE/stream.out"; then
        die "FAIL: the SSE feed through nginx did not show the call within 2 s (buffered?): $(head -c 300 "$STATE/stream.out")"
    fi
    say "ok: the admin SSE feed streams through nginx, and the agent's traceparent reached the replica (trace id $trace in the event)"

    # A fourth instance with a chain id that a live replica holds is refused at start.
    local dup="$STATE/duplicate"
    mkdir -p "$dup"
    sed -e "s/^listen = .*/listen = \"127.0.0.1:$((PORT + REPLICAS + 1))\"/" "$STATE/replica-2/toolgate.toml" >"$dup/toolgate.toml"
    if (cd "$dup" && env -u TOOLGATE_LISTEN -u TOOLGATE_DATABASE_URL timeout 20 "$TOOLGATE" serve --config toolgate.toml >toolgate.log 2>&1); then
        die "FAIL: a second instance with chain replica-2 started"
    fi
    if ! grep -q 'held by another live toolgate instance' "$dup/toolgate.log"; then
        die "FAIL: the duplicate chain was refused for another reason: $(tail -n 3 "$dup/toolgate.log")"
    fi
    say "ok: a second instance with chain id replica-2 is refused: $(grep -o 'audit chain.*' "$dup/toolgate.log" | head -n1)"

    # One verify covers every chain; after a clean stop every replica signed a checkpoint.
    stop quiet
    local verify chains
    verify="$(cd "$STATE/replica-1" && env -u TOOLGATE_DATABASE_URL "$TOOLGATE" audit verify --config toolgate.toml)" || {
        die "FAIL: audit verify: $verify"
    }
    chains="$(psql "$(database_url "$SERVER_URL" "$DB_NAME")" -XAtc "SELECT count(DISTINCT chain_id) FROM audit_events")"
    if [ "$chains" != "$REPLICAS" ] || ! grep -q '"chain_intact":true' <<<"$verify"; then
        die "FAIL: expected $REPLICAS intact chains, got $chains: $verify"
    fi
    say "ok: audit verify on replica-1 covers the $chains chains: $verify"

    # Each replica signed its shutdown checkpoint with its own key, and that key is one the others trust.
    local keys expected
    keys="$(psql "$(database_url "$SERVER_URL" "$DB_NAME")" -XAtc "SELECT DISTINCT public_key FROM audit_checkpoints ORDER BY 1" | tr '\n' ' ')"
    expected="$(sort "$STATE"/replica-*/key.pub | tr '\n' ' ')"
    if [ "$keys" != "$expected" ]; then
        die "FAIL: checkpoint keys ($keys) are not the replicas' keys ($expected)"
    fi
    say "ok: each replica's checkpoints are signed by its own key, listed in the others' audit.trusted_public_keys"
    SELFTEST_FAILED=0
    say "selftest passed"
}

cmd="${1:-start}"
shift || true
case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    token) token "$@" ;;
    balance) balance "$@" ;;
    selftest) selftest ;;
    *) die "usage: $0 start|stop|status|token SUB [TENANT]|balance agent|round-robin|selftest" ;;
esac
