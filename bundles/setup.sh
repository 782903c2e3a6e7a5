#!/bin/bash
# Build bundles/<name>/rootfs for every example bundle that has a config.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for cfg in "$here"/*/config.json; do
    [[ -e $cfg ]] || continue  # no bundles: the glob stayed unexpanded
    dir=${cfg%/config.json}
    "$here/mkrootfs.sh" "$@" "$dir/rootfs"
    echo "built $dir/rootfs"
done
