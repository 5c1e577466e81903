#!/usr/bin/env bash
# Quick start, part one: installs what is missing, starts a local farm (`tessera up`),
# renders the example jobs (a 48-frame turntable, a tiled 4K still, a shot in every pass,
# and with POV-Ray or Blender installed their animations and tiled stills) and writes them
# into tessera-data/output/<example>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

cargo build --release --bins --quiet
tessera=target/release/tessera
data="${TESSERA_DATA:-$PWD/tessera-data}"
mkdir -p "$data"

# Start the farm on a free port and read what it prints: NATS_URL, TESSERA_STORE,
# TESSERA_METRICS and TESSERA_WEB (the dashboard), in that order.
ready="$data/up.env"
rm -f "$ready"
"$tessera" up --data "$data" --port 0 --workers 2 >"$ready" 2>"$data/up.log" &
farm=$!
trap 'kill -TERM $farm 2>/dev/null || true; wait $farm 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    grep -q '^TESSERA_WEB=' "$ready" 2>/dev/null && break
    kill -0 "$farm" 2>/dev/null || { cat "$data/up.log" >&2; exit 1; }
    sleep 0.1
done
set -a
. "$ready"
set +a
echo "farm up: NATS_URL=$NATS_URL TESSERA_STORE=$TESSERA_STORE"
echo "dashboard: $TESSERA_WEB (open it to watch the jobs render)"

# Submit all at once: the farm spreads their tasks over its workers. The POV-Ray and
# Blender examples run when those programs are installed (scripts/setup.sh --tests
# installs both); the Blender scene is made by a script first.
declare -A jobs
declare -A files=(
    [turntable]=examples/turntable/job.toml
    [city]=examples/city/job.toml
    [passes]=examples/passes/job.toml
)
examples=(turntable city passes)
if command -v povray >/dev/null 2>&1; then
    files[povray-animation]=examples/povray/animation.toml
    files[povray-tiles]=examples/povray/tiles.toml
    examples+=(povray-animation povray-tiles)
fi
if command -v blender >/dev/null 2>&1; then
    blender -b --factory-startup --python examples/blender/make_scene.py -- \
        examples/blender/scene/scene.blend >"$data/blender-scene.log" 2>&1
    files[blender-animation]=examples/blender/animation.toml
    files[blender-tiles]=examples/blender/tiles.toml
    examples+=(blender-animation blender-tiles)
fi
for example in "${examples[@]}"; do
    jobs[$example]=$("$tessera" submit "${files[$example]}" | tail -n 1)
    echo "submitted ${files[$example]} as ${jobs[$example]}"
done
for example in "${examples[@]}"; do
    job=${jobs[$example]}
    "$tessera" wait "$job"
    "$tessera" status "$job"
    rm -rf "$data/output/$example"
    "$tessera" fetch "$job" -o "$data/output/$example"
done
echo
echo "The examples are in $data/output/:"
echo "  turntable/frame_0001.png ... frame_0048.png   (animation; animation.png, contact_sheet.png, and movie.mp4 where ffmpeg is installed)"
echo "  city/frame_0001.png                          (3840x2160, stitched from 24 tiles)"
echo "  passes/<pass>/frame_0001.exr                 (beauty, emission, diffuse, specular, albedo, shadow, ao, normal, depth)"
if [ -n "${jobs[povray-animation]:-}" ]; then
    echo "  povray-animation/frame_0001.png ... 0008     (POV-Ray, chunks of 3 frames)"
    echo "  povray-tiles/frame_0003.png                  (POV-Ray, 4x4 tiles)"
fi
if [ -n "${jobs[blender-animation]:-}" ]; then
    echo "  blender-animation/frame_0001.png ... 0024    (Blender Cycles)"
    echo "  blender-tiles/<layer>/frame_0012.png         (Blender, 3x3 tiles, view layers main and floor)"
fi
