#!/bin/bash
# Build busybox OCI images without a registry or network:
#   OUTDIR/busybox.tar  docker-archive, localhost/busybox:latest, cmd /bin/sh
#   OUTDIR/pause.tar    docker-archive, localhost/pause:latest, sleeps until TERM/INT
# Both share one layer. The tars load with `ctr images import` and `docker load`.
# Installs nothing: needs umoci, skopeo and a static busybox (busybox-static).
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
die() { echo "mkimage: $*" >&2; exit 1; }
[[ $# -eq 1 && -n $1 ]] || usage
out=$1

for t in umoci skopeo; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install -y $t)"
done
bb=${BUSYBOX:-}
if [[ -z $bb ]]; then
    for f in /bin/busybox /usr/bin/busybox; do
        if [[ -x $f ]]; then bb=$f; break; fi
    done
fi
[[ -n $bb && -x $bb ]] || die "busybox not found (apt-get install -y busybox-static)"
# The image has no libc: a dynamic busybox (Debian's "busybox" package) would not run in it.
# ldd exits non-zero on a static binary.
if ldd "$bb" >/dev/null 2>&1; then
    die "busybox at $bb is dynamically linked (apt-get install -y busybox-static)"
fi

# Cache: outputs newer than this script and busybox are up to date.
if [[ $out/busybox.tar -nt $0 && $out/busybox.tar -nt $bb &&
      $out/pause.tar -nt $0 && $out/pause.tar -nt $bb ]]; then
    exit 0
fi

mkdir -p "$out"
# Work beside the outputs so the final mv is an atomic rename on one filesystem.
work=$(mktemp -d "$out/.mkimage.XXXXXX")
trap 'rm -rf "$work"' EXIT
L=$work/layout
B=$work/bundle

umoci init --layout "$L"
umoci new --image "$L:base"
umoci unpack --image "$L:base" "$B" >/dev/null
r=$B/rootfs
mkdir -p "$r"/{bin,etc,proc,sys,dev,tmp,root,run,var}
chmod 1777 "$r/tmp"
cp "$bb" "$r/bin/busybox"
# Hard links, not symlinks: masking a symlinked applet would mask busybox itself.
# One perl process (perl-base is Essential) instead of ~270 ln forks keeps this fast.
# --list (names only): every applet goes in /bin so one PATH entry finds them all.
"$r/bin/busybox" --list | perl -e '
    my $d = shift;
    while (<STDIN>) {
        chomp;
        next if $_ eq "" || $_ eq "busybox" || $_ eq "linuxrc";
        link("$d/bin/busybox", "$d/bin/$_") or $!{EEXIST} or die "mkimage: link bin/$_: $!\n";
    }' "$r"
printf '%s\n' root:x:0:0:root:/root:/bin/sh \
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false > "$r/etc/passwd"
printf '%s\n' root:x:0: nogroup:x:65534: > "$r/etc/group"
umoci repack --image "$L:base" "$B"

# An explicit PATH as docker-built images have: not every client supplies a default one.
common=(--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --config.workingdir / --author hutch --no-history)
umoci config --image "$L:base" --tag busybox "${common[@]}" --config.cmd /bin/sh
# Pause: sh as PID 1 ignores TERM unless trapped; `sleep & wait` lets the trap run at once
# instead of after the sleep ends. The orphaned sleep dies with the PID namespace.
umoci config --image "$L:base" --tag pause "${common[@]}" \
    --config.entrypoint /bin/sh --config.entrypoint -c \
    --config.entrypoint 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait; done'

# --insecure-policy: both ends are local files, so the host's signature policy is irrelevant
# (and may be missing). --tmpdir keeps scratch files out of /var/tmp. (As root skopeo still
# keeps its small blob-info cache in /var/lib/containers/cache; it has no flag against that.)
for name in busybox pause; do
    skopeo --insecure-policy --tmpdir "$work" copy -q "oci:$L:$name" \
        "docker-archive:$work/$name.tar:localhost/$name:latest"
done
mv -f "$work/busybox.tar" "$work/pause.tar" "$out/"
