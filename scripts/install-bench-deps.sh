#!/usr/bin/env sh
# What `make bench` needs besides the Rust toolchain: nginx, the bare reverse-proxy hop the end-to-end runs
# measure toolgate against. Idempotent: does nothing when nginx is already on the PATH (or in /usr/sbin).
# Uses sudo only when not root. If the install fails the bench still runs and says nginx was not measured.
set -eu

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-bench-deps: nginx is missing and neither root nor sudo is available; the bench will skip the nginx hop" >&2
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # nginx-light is the smallest Debian/Ubuntu build with proxy_pass; plain nginx where it does not exist.
    $SUDO apt-get install -y --no-install-recommends nginx-light \
        || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends nginx-light; } \
        || $SUDO apt-get install -y --no-install-recommends nginx \
        || echo "install-bench-deps: could not install nginx; the bench will skip the nginx hop" >&2
elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y nginx || echo "install-bench-deps: could not install nginx" >&2
elif command -v apk >/dev/null 2>&1; then
    $SUDO apk add nginx || echo "install-bench-deps: could not install nginx" >&2
elif command -v brew >/dev/null 2>&1; then
    brew install nginx || echo "install-bench-deps: could not install nginx" >&2
else
    echo "install-bench-deps: no known package manager; install nginx yourself to measure the nginx hop" >&2
fi
