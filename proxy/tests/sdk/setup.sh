#!/usr/bin/env bash
# Installs the pinned official MCP SDKs for proxy/tests/sdk_clients.rs: the Python SDK into proxy/tests/sdk/.venv
# (requirements.txt) and the TypeScript SDK packages into proxy/tests/sdk/node_modules (package-lock.json).
# Idempotent and fast on a second run: each half is skipped while its pin file is unchanged since it last installed.
# Needs python3 (>= 3.10) with venv and pip, and node (>= 20) with npm, plus the PyPI and npm registries.
set -euo pipefail
cd "$(dirname "$0")"

stamp_ok() { # stamp_ok <stamp file> <pin file>: true when the pin file is what was last installed
    [[ -f "$1" ]] && cmp -s "$1" "$2"
}

if stamp_ok .venv/.installed requirements.txt && [[ -x .venv/bin/python ]]; then
    echo "setup.sh: Python MCP SDK already installed"
else
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
    cp requirements.txt .venv/.installed
    echo "setup.sh: installed the Python MCP SDK into proxy/tests/sdk/.venv"
fi

if stamp_ok node_modules/.installed package-lock.json; then
    echo "setup.sh: TypeScript MCP SDK packages already installed"
else
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.installed
    echo "setup.sh: installed the TypeScript MCP SDK packages into proxy/tests/sdk/node_modules"
fi
