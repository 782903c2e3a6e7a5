#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs hutch's main job on the `hello` bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s busybox-static >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
fi
cargo build --release --quiet
bash bundles/setup.sh
# .cargo/config.toml builds for the host's own triple (static linking): binaries are under it.
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release/hutch
exec "$bin" --root "${HUTCH_ROOT:-/run/hutch}" run --bundle bundles/hello "demo-$$"
