#!/usr/bin/env bash
# The Redis nonce-store tests start a real redis-server on loopback; install it if absent.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
echo "ensure-redis: installing redis-server from Debian's packages"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
# The package starts a system instance; the tests run their own on a free port.
$SUDO service redis-server stop >/dev/null 2>&1 || true
command -v redis-server >/dev/null
