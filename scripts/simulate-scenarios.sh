#!/usr/bin/env bash
# The main job on the embedded default: builds callbridge and checks every worked scenario
# (scenarios/*/: events.jsonl, settings.toml, expected.json) with `callbridge check-scenarios`:
# PASS or FAIL per scenario against its expected.json, exit non-zero when any failed.
# --print also prints each plan (what would be written to the CRM, and why).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin callbridge
if [ "${1:-}" = "--print" ]; then
  for dir in scenarios/*/; do
    [ -f "$dir/events.jsonl" ] || continue
    echo "== $(basename "$dir")"
    ./target/release/callbridge simulate --settings "$dir/settings.toml" --events "$dir/events.jsonl" --pretty
  done
fi
exec ./target/release/callbridge check-scenarios scenarios
