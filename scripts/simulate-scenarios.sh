#!/usr/bin/env bash
# The main job on the embedded default: builds callbridge and runs `simulate` on every worked
# scenario, printing each plan (what would be written to the CRM, and why).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin callbridge
for dir in scenarios/*/; do
  [ -f "$dir/events.jsonl" ] || continue
  echo "== $(basename "$dir")"
  ./target/release/callbridge simulate --settings "$dir/settings.toml" --events "$dir/events.jsonl" --pretty
done
