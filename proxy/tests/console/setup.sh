#!/usr/bin/env bash
# Installs what proxy/tests/console_browser.rs drives the web console with: Debian's Chromium (/usr/bin/chromium,
# with apt-get when it is missing) and the pinned playwright-core into proxy/tests/console/node_modules
# (package-lock.json). playwright-core downloads no browser of its own; the test points it at /usr/bin/chromium.
# Idempotent and fast on a second run: each half is skipped while it is installed (the npm half while the lock
# file is unchanged since it last installed). Needs root (or apt-get's rights) for Chromium, and node (>= 20) with npm.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -x /usr/bin/chromium ]]; then
    echo "setup.sh: Chromium already installed"
else
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
    echo "setup.sh: installed Debian's chromium"
fi

if [[ -f node_modules/.installed ]] && cmp -s node_modules/.installed package-lock.json; then
    echo "setup.sh: playwright-core already installed"
else
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.installed
    echo "setup.sh: installed playwright-core into proxy/tests/console/node_modules"
fi
