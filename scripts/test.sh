#!/usr/bin/env bash
# Quick start, part two: installs what the tests need, then runs formatting, lint, the
# tests (unit and integration, against real nats-server processes) and the docs build.
# The installs (scripts/setup.sh --tests) run while the formatting and lint checks do,
# which need none of them; the tests start once both are over.
set -euo pipefail
cd "$(dirname "$0")/.."

# In the background only where it can install without asking for a password.
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    bash scripts/setup.sh --tests &
else
    bash scripts/setup.sh --tests
    true &
fi
setup=$!
# Whatever ends this script, the installs are not left running behind it.
trap 'wait "$setup" 2>/dev/null || true' EXIT

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
if ! wait "$setup"; then
    echo "test: scripts/setup.sh --tests failed (see above)" >&2
    exit 1
fi
cargo test --all-targets
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet
