#!/usr/bin/env bash
# The project's test command: every crate's unit, integration, scenario and property tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
