#!/usr/bin/env bash
# Quick start, part one: installs what is missing, starts a local farm (`tessera up`),
# renders the example animation and writes its frames into tessera-data/output/turntable/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cargo build --release --bins --quiet
tessera=target/release/tessera
data="${TESSERA_DATA:-$PWD/tessera-data}"
out="$data/output/turntable"
mkdir -p "$data"

# Start the farm on a free port and read its NATS_URL and TESSERA_STORE lines.
ready="$data/up.env"
rm -f "$ready"
"$tessera" up --data "$data" --port 0 --workers 2 >"$ready" 2>"$data/up.log" &
farm=$!
trap 'kill -TERM $farm 2>/dev/null || true; wait $farm 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    grep -q '^TESSERA_STORE=' "$ready" 2>/dev/null && break
    kill -0 "$farm" 2>/dev/null || { cat "$data/up.log" >&2; exit 1; }
    sleep 0.1
done
set -a
. "$ready"
set +a
echo "farm up: NATS_URL=$NATS_URL TESSERA_STORE=$TESSERA_STORE"

job=$("$tessera" submit examples/turntable/job.toml --wait | tail -n 1)
"$tessera" status "$job"
rm -rf "$out"
"$tessera" fetch "$job" -o "$out"
echo
echo "The example animation is in $out/ (frame_0001.png ... frame_0024.png)."
