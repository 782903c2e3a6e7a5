#!/usr/bin/env bash
# Every test hutch has, as CI runs them (README's test command). As root.
#   1. the host suite: unit and integration tests, real containers, and the containerd shim
#      against a private containerd (cargo test --release --workspace);
#   2. the pure cgroup v2 lane: the cgroup, isolation, security and sandbox suites again inside a qemu
#      guest whose kernel has only cgroup2 (and an older Landlock ABI): tests/vm/README.md;
#   3. the fuzz smoke run: every fuzz target for FUZZ_SECONDS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace

# The test binaries cargo just built, by target name.
binaries=$(cargo test --release --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("resources", "isolation", "security", "sandbox", "sandbox_serve"):
        print(m["executable"])')
for bin in $binaries; do
    echo "v2 lane: $(basename "$bin")"
    tests/vm/run.sh --timeout 1500 -- "$bin" --test-threads=1
done

bash tests/fuzz-smoke.sh
