#!/usr/bin/env bash
# Quick start, part two: installs what the tests need, then runs formatting, lint, the
# tests (unit and integration, against real nats-server processes) and the docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet
