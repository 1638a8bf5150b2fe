#!/usr/bin/env bash
# Checks the observability stack: the compose file and the stack's YAML parse (images pinned, mounts exist), then,
# with promtool, the scrape config, the alert rules, their unit tests (each alert fired and shown quiet), and that
# every PromQL `expr` of every Grafana dashboard parses. Without promtool it prints a skip notice and succeeds,
# unless TOOLGATE_REQUIRE_PROMTOOL=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

# The stack's YAML (compose file, collector, Grafana provisioning) parses, every image tag is pinned, and every
# bind-mounted file exists. Docker itself is not needed (nor run); PyYAML is, so without it this part is skipped.
if command -v python3 >/dev/null 2>&1 && python3 -c "import yaml" 2>/dev/null; then
    python3 - <<'PY'
import os
import sys

import yaml

for path in ["otel-collector/config.yaml", "prometheus/prometheus.yml", "prometheus/alerts.yml",
             "prometheus/alerts_test.yml", "grafana/provisioning/datasources/datasources.yml",
             "grafana/provisioning/dashboards/dashboards.yml"]:
    with open(path, encoding="utf-8") as f:
        yaml.safe_load(f)
with open("docker-compose.yml", encoding="utf-8") as f:
    compose = yaml.safe_load(f)
services = compose["services"]
want = {"toolgate", "postgres", "otel-collector", "jaeger", "prometheus", "grafana"}
if set(services) != want:
    sys.exit(f"check-observability: docker-compose.yml services {sorted(services)} != {sorted(want)}")
for name, svc in services.items():
    image = svc.get("image", "")
    if "build" not in svc and (":" not in image or image.endswith(":latest")):
        sys.exit(f"check-observability: docker-compose.yml: service {name} needs a pinned image tag, not {image!r}")
    for volume in svc.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith(".") and not os.path.exists(source):
            sys.exit(f"check-observability: docker-compose.yml: service {name} mounts missing {source}")
print(f"check-observability: docker-compose.yml and the stack's YAML parse; {len(services)} services, images pinned")
PY
else
    echo "check-observability: compose/YAML check skipped: python3 with PyYAML not found"
fi

# Every toolgate metric the dashboards and alert rules query is one toolgate registers (its name is in
# proxy/src) and one docs/observability.md's metric table documents: a panel of a metric that does not exist
# would stay empty without any error.
if command -v python3 >/dev/null 2>&1; then
    python3 - grafana/dashboards/*.json <<'PY'
import json
import pathlib
import re
import sys

queried = {}
name = re.compile(r"\btoolgate_[a-z0-9_]+")
def walk(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                for m in name.findall(value):
                    queried.setdefault(m, where)
            else:
                walk(value, where)
    elif isinstance(node, list):
        for item in node:
            walk(item, where)
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        walk(json.load(f), path)
rules = pathlib.Path("prometheus/alerts.yml").read_text(encoding="utf-8")
for line in rules.splitlines():
    if line.strip().startswith("expr:"):
        for m in name.findall(line):
            queried.setdefault(m, "prometheus/alerts.yml")
source = "\n".join(p.read_text(encoding="utf-8") for p in pathlib.Path("proxy/src").rglob("*.rs"))
documented = set(re.findall(r"^\| `(toolgate_[a-z0-9_]+)` \|",
                            pathlib.Path("docs/observability.md").read_text(encoding="utf-8"), re.M))
bad = []
for metric, where in sorted(queried.items()):
    base = re.sub(r"_(bucket|count|sum)$", "", metric)
    if f'"{base}"' not in source:
        bad.append(f"{where}: {metric} is not a metric toolgate registers")
    if base not in documented:
        bad.append(f"{where}: {metric} is not in docs/observability.md's metric table")
if not queried:
    bad.append("no toolgate metric found in the dashboards")
if bad:
    sys.exit("check-observability: " + "\ncheck-observability: ".join(bad))
print(f"check-observability: {len(queried)} toolgate metrics queried, each registered and documented")
PY
fi

if ! command -v promtool >/dev/null 2>&1; then
    if [ "${TOOLGATE_REQUIRE_PROMTOOL:-0}" = "1" ]; then
        echo "check-observability: promtool not found and TOOLGATE_REQUIRE_PROMTOOL=1 (install Debian's 'prometheus' package)" >&2
        exit 1
    fi
    echo "check-observability: SKIPPED: promtool not found (apt-get install prometheus, or set TOOLGATE_REQUIRE_PROMTOOL=1 to make this an error)"
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "check-observability: python3 is needed to read the dashboard JSON" >&2
    exit 1
fi

promtool check config prometheus/prometheus.yml
promtool check rules prometheus/alerts.yml
promtool test rules prometheus/alerts_test.yml

# Every `expr` in the dashboards becomes a recording rule of a temporary rules file, so `promtool check rules`
# parses each one. Grafana's interval variables are replaced by a fixed range first (they are not PromQL).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/dashboard_exprs.yml" grafana/dashboards/*.json <<'PY'
import json
import sys

out, dashboards = sys.argv[1], sys.argv[2:]
exprs = []

def walk(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                exprs.append((where, value))
            else:
                walk(value, where)
    elif isinstance(node, list):
        for item in node:
            walk(item, where)

for path in dashboards:
    with open(path, encoding="utf-8") as f:
        walk(json.load(f), path)
if not exprs:
    sys.exit("check-observability: no PromQL expressions found in " + " ".join(dashboards))
with open(out, "w", encoding="utf-8") as f:
    f.write("groups:\n  - name: dashboard_expressions\n    rules:\n")
    for i, (where, expr) in enumerate(exprs):
        for var in ("$__rate_interval", "$__interval", "$__range"):
            expr = expr.replace(var, "5m")
        if "$" in expr:
            sys.exit(f"check-observability: {where}: unknown dashboard variable in: {expr}")
        f.write(f"      - record: dashboard:expr_{i}\n        expr: {json.dumps(expr)}\n")
print(f"check-observability: {len(exprs)} dashboard expressions from {len(dashboards)} dashboard(s)")
PY
promtool check rules "$tmp/dashboard_exprs.yml"
echo "check-observability: OK"
