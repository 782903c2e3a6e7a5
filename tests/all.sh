#!/usr/bin/env bash
# Every test hutch has, as CI runs them (README's test command). As root.
#   1. the host suite: unit and integration tests, real containers (cargo test --release);
#   2. the fuzz smoke run: every fuzz target for FUZZ_SECONDS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
bash tests/fuzz-smoke.sh
