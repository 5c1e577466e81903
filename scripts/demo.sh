#!/usr/bin/env bash
# Quick start, part one: installs what is missing, starts a local farm (`tessera up`),
# renders the three example jobs (a 48-frame turntable, a tiled 4K still, a shot in every
# pass) and writes them into tessera-data/output/<example>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cargo build --release --bins --quiet
tessera=target/release/tessera
data="${TESSERA_DATA:-$PWD/tessera-data}"
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

# Submit all three at once: the farm spreads their tasks over its workers.
declare -A jobs
for example in turntable city passes; do
    jobs[$example]=$("$tessera" submit "examples/$example/job.toml" | tail -n 1)
    echo "submitted examples/$example/job.toml as ${jobs[$example]}"
done
for example in turntable city passes; do
    job=${jobs[$example]}
    "$tessera" wait "$job"
    "$tessera" status "$job"
    rm -rf "$data/output/$example"
    "$tessera" fetch "$job" -o "$data/output/$example"
done
echo
echo "The examples are in $data/output/:"
echo "  turntable/frame_0001.png ... frame_0048.png   (animation)"
echo "  city/frame_0001.png                          (3840x2160, stitched from 24 tiles)"
echo "  passes/<pass>/frame_0001.exr                 (beauty, emission, diffuse, specular, albedo, shadow, ao, normal, depth)"
