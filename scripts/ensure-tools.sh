#!/usr/bin/env bash
# What the tests need beside the venv, from Debian's packages when absent: redis-server
# (the Redis nonce-store tests start their own on loopback), and curl and jq (the README's
# hand-driven HTTP flow is run as written, tests/test_readme_flow.py).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "ensure-tools: installing ${need[*]} from Debian's packages"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
# The redis package starts a system instance; the tests run their own on a free port.
$SUDO service redis-server stop >/dev/null 2>&1 || true
command -v redis-server >/dev/null && command -v curl >/dev/null && command -v jq >/dev/null
