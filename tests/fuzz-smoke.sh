#!/usr/bin/env bash
# Builds every fuzz target (stable toolchain: no sanitizers, -s none) and runs each for a short
# fixed budget; any crash fails. FUZZ_SECONDS sets the budget per target (default 30).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
cargo fuzz build -s none
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "$corpus/$target"
    # Seeds: the example bundles' configs for the config parser, the default seccomp profile.
    case $target in
        config_parse) for c in ../bundles/*/config.json; do cp "$c" "$corpus/$target/$(basename "$(dirname "$c")").json"; done ;;
        seccomp_compile) cp ../profiles/seccomp/default.json "$corpus/$target/" ;;
    esac
    echo "fuzz: $target for ${seconds}s"
    log="$corpus/$target.log"
    if ! cargo fuzz run -s none "$target" "$corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target crashed (the reproducer is under fuzz/artifacts/$target)" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$log" || tail -n 3 "$log"
done
echo "fuzz: all targets ran clean"
