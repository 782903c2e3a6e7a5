#!/bin/bash
# Build a minimal busybox root filesystem at DEST (idempotent, quiet unless -v).
set -euo pipefail

usage() { echo "usage: $0 [-v] DEST" >&2; exit 2; }
verbose=false
if [[ ${1-} == -v ]]; then verbose=true; shift; fi
[[ $# -eq 1 && -n $1 ]] || usage
dest=$1
log() { if $verbose; then echo "mkrootfs: $*" >&2; fi; }

mkdir -p "$dest"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home/user,var,run,mnt}
chmod 1777 "$dest/tmp"

bb=$dest/bin/busybox
if [[ ! -x $bb ]]; then
    # Debian's dynamic "busybox" package uses the same path, so ask dpkg which one is installed.
    if ! dpkg -s busybox-static >/dev/null 2>&1; then
        log "installing busybox-static"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y busybox-static >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y busybox-static >/dev/null; }
    fi
    src=
    for f in /bin/busybox /usr/bin/busybox; do
        if [[ -x $f ]]; then src=$f; break; fi
    done
    [[ -n $src ]] || { echo "mkrootfs: busybox-static installed but no busybox binary found" >&2; exit 1; }
    log "copying $src to $bb"
    # Copy then rename so an interrupted run never leaves a truncated busybox behind;
    # -n: a concurrent run that got there first keeps its inode (applets may link to it).
    cp "$src" "$bb.tmp.$$"
    mv -n "$bb.tmp.$$" "$bb"
    if [[ -e $bb.tmp.$$ ]]; then rm -f "$bb.tmp.$$"; fi
fi

# Hard links, not symlinks: masking a symlinked applet would mask busybox itself.
# One perl process (perl-base is Essential) instead of ~270 ln forks keeps this fast.
log "linking applets"
"$bb" --list-full | perl -e '
    my $d = shift;
    while (<STDIN>) {
        chomp;
        next if $_ eq "" || $_ eq "linuxrc";
        link("$d/bin/busybox", "$d/$_") or $!{EEXIST} or die "mkrootfs: link $d/$_: $!\n";
    }' "$dest"

log "writing /etc files"
# printf is a builtin: no fork per file.
printf '%s\n' root:x:0:0:root:/root:/bin/sh user:x:1000:1000:user:/home/user:/bin/sh \
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false > "$dest/etc/passwd"
printf '%s\n' root:x:0: user:x:1000: nogroup:x:65534: > "$dest/etc/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$dest/etc/hosts"
log "done: $dest"
