#!/usr/bin/env bash
# Installs what Tessera needs and is missing: nats-server (Debian package). Idempotent and
# quick when everything is there. Sourced by demo.sh and test.sh, or run on its own.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo was not found: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi

if ! command -v nats-server >/dev/null 2>&1; then
    echo "setup: installing nats-server" >&2
    apt_install nats-server
fi
