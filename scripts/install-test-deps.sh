#!/usr/bin/env sh
# What the test suite needs besides the Rust toolchain and what other setup scripts install: Debian's rsyslog, the
# real syslog receiver of proxy/tests/siem_rsyslog.rs (the test starts its own rsyslogd on a loopback port; no
# system service is used). Idempotent: does nothing when rsyslogd is already installed. Uses sudo only when not
# root. Without it the test prints a skip notice, unless TOOLGATE_REQUIRE_RSYSLOG=1 (CI sets it).
set -eu

if command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-test-deps: rsyslog is missing and neither root nor sudo is available" >&2
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends rsyslog \
        || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends rsyslog; } \
        || echo "install-test-deps: could not install rsyslog" >&2
else
    echo "install-test-deps: no apt-get; install rsyslog by hand for proxy/tests/siem_rsyslog.rs" >&2
fi
