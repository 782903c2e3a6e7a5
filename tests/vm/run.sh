#!/usr/bin/env bash
# Run a command as root inside a pure cgroup v2 Linux guest under qemu (TCG),
# with the host's / shared read-only. See tests/vm/README.md.
#
#   tests/vm/run.sh [--mem 2G] [--smp 2] [--timeout 900] [--env NAME[=VALUE]]...
#                   [--verbose] [--bzimage] [--append KERNEL-ARGS] -- COMMAND [ARGS...]
#
# Exit status: COMMAND's; 124 if --timeout (seconds) hit; 125 if the VM failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Bump when the initramfs layout built below changes, to invalidate caches.
builder_rev=2

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}
die() {
    echo "tests/vm/run.sh: $*" >&2
    exit 125
}

mem=2G
smp=2
timeout=900
verbose=0
bzimage=0
extra_env=()
extra_append=
while [ $# -gt 0 ]; do
    case $1 in
    --mem) mem=${2:?}; shift 2 ;;
    --smp) smp=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --env) extra_env+=("${2:?}"); shift 2 ;;
    --verbose) verbose=1; shift ;;
    --bzimage) bzimage=1; shift ;;
    --append) extra_append+=" ${2?}"; shift 2 ;;
    --) shift; break ;;
    -h | --help) usage ;;
    -*) echo "tests/vm/run.sh: unknown option: $1" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || usage

vlog() { [ "$verbose" = 0 ] || echo "hutch-vm: [host $(($(date +%s%N) / 1000000 - t0))ms] $*" >&2; }
t0=$(($(date +%s%N) / 1000000))

# --- host packages ------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (to install packages, and for qemu to read all of / to share it)"
# One dpkg-query for all (dpkg -s each takes ~0.2 s).
pkgs=(qemu-system-x86 linux-image-amd64 busybox-static cpio xz-utils zstd)
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null || true)
need=()
for pkg in "${pkgs[@]}"; do
    grep -qx "$pkg installed" <<<"$installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "tests/vm/run.sh: installing ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        die "apt-get install ${need[*]} failed"
fi

# --- kernel ---------------------------------------------------------------
# The newest Debian kernel package installed: a /lib/modules/<ver> that also
# has /boot/vmlinuz-<ver> (the host's running kernel may not be one).
kver=
for d in /lib/modules/*/; do
    v=$(basename "$d")
    [ -f "/boot/vmlinuz-$v" ] && kver=$(printf '%s\n%s\n' "$kver" "$v" | sed '/^$/d' | sort -V | tail -n1)
done
[ -n "$kver" ] || die "no kernel found (/boot/vmlinuz-<ver> with /lib/modules/<ver>)"
moddir=/lib/modules/$kver

cache=${HUTCH_VM_CACHE:-${XDG_CACHE_HOME:-/var/cache}/hutch-vm}
mkdir -p "$cache"

# Extract the ELF vmlinux from the bzImage, like the kernel's
# scripts/extract-vmlinux: find the compressed payload by its magic bytes.
extract_vmlinux() { # $1 = bzImage, $2 = output
    local img=$1 out=$2 magic cmd off
    for spec in '\xfd7zXZ\x00|xz -dc --single-stream' '\x28\xb5\x2f\xfd|zstd -dcq' '\x1f\x8b\x08|gzip -dcq'; do
        magic=${spec%%|*}
        cmd=${spec#*|}
        for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
            tail -c "+$((off + 1))" "$img" | $cmd >"$out" 2>/dev/null || true
            [ "$(head -c4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ] && return 0
        done
    done
    rm -f "$out"
    return 1
}

kernel=/boot/vmlinuz-$kver
# qemu boots an ELF vmlinux directly through its PVH entry point: no
# in-guest decompression, which is slow under emulation.
if [ "$bzimage" = 0 ] && grep -q '^CONFIG_PVH=y' "/boot/config-$kver" 2>/dev/null; then
    vmlinux=$cache/vmlinux-$kver
    if [ ! -s "$vmlinux" ]; then
        tmp=$(mktemp "$cache/.vmlinux.XXXXXX")
        if extract_vmlinux "$kernel" "$tmp"; then
            chmod 644 "$tmp"
            mv -f "$tmp" "$vmlinux"
        else
            rm -f "$tmp"
            echo "tests/vm/run.sh: could not extract vmlinux from $kernel; booting the bzImage" >&2
        fi
    fi
    [ -s "$vmlinux" ] && kernel=$vmlinux
fi
vlog "kernel $kernel"

# --- initramfs (cached) ---------------------------------------------------
# Module file for a module name, from modules.dep (names may use - or _).
module_path() {
    awk -F: -v want="$1" '{
        n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub(/-/, "_", n)
        w = want; gsub(/-/, "_", w)
        if (n == w) { print $1; exit }
    }' "$moddir/modules.dep"
}
declare -A seen=()
load_order=()
# Appends the module file $1 to load_order after its dependencies.
add_module_file() {
    local f=$1 dep
    [ -z "${seen[$f]:-}" ] || return 0
    seen[$f]=1
    for dep in $(awk -F: -v f="$f" '$1 == f { print $2; exit }' "$moddir/modules.dep"); do
        add_module_file "$dep"
    done
    load_order+=("$f")
}
# The modules for the virtio-9p root and the virtio consoles; any of them may
# be built in.
for m in virtio_pci 9pnet_virtio 9p virtio_console; do
    f=$(module_path "$m")
    if [ -n "$f" ]; then
        add_module_file "$f"
    elif ! grep -q "/$m\.ko" "$moddir/modules.builtin"; then
        die "kernel $kver has no module $m"
    fi
done

busybox=$(command -v busybox || true)
[ -x /bin/busybox ] && busybox=/bin/busybox
key=$( {
    echo "$builder_rev $kver ${load_order[*]}"
    sha256sum "$here/init" "$busybox" "$moddir/modules.dep"
} | sha256sum | cut -c1-16)
initramfs=$cache/initramfs-$kver-$key.cpio
if [ ! -s "$initramfs" ]; then
    vlog "building $initramfs"
    build=$(mktemp -d "$cache/.build.XXXXXX")
    mkdir -p "$build"/{bin,dev,proc,sys,newroot,hutch,lib/modules}
    cp "$busybox" "$build/bin/busybox"
    install -m 755 "$here/init" "$build/init"
    for f in "${load_order[@]}"; do
        b=$(basename "$f")
        # busybox insmod needs plain .ko files.
        case $b in
        *.ko.xz) xz -dc "$moddir/$f" >"$build/lib/modules/${b%.xz}"; b=${b%.xz} ;;
        *.ko.zst) zstd -dcq "$moddir/$f" >"$build/lib/modules/${b%.zst}"; b=${b%.zst} ;;
        *.ko.gz) gzip -dc "$moddir/$f" >"$build/lib/modules/${b%.gz}"; b=${b%.gz} ;;
        *) cp "$moddir/$f" "$build/lib/modules/$b" ;;
        esac
        echo "$b" >>"$build/lib/modules/load-order"
    done
    # Uncompressed: unpacking is faster than decompressing under emulation.
    (cd "$build" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$build.cpio"
    rm -rf "$build"
    # Drop initramfs images of older inputs.
    rm -f "$cache"/initramfs-*.cpio
    mv -f "$build.cpio" "$initramfs"
fi

# --- per-run job ------------------------------------------------------------
run=$(mktemp -d "${TMPDIR:-/tmp}/hutch-vm.XXXXXX")
qpid=
cleanup() {
    if [ -n "$qpid" ]; then
        kill "$qpid" 2>/dev/null || true
        # Reaped, so that the tails (below) see it gone and end too.
        wait "$qpid" 2>/dev/null || true
    fi
    wait
    rm -rf "$run"
}
trap cleanup EXIT
trap 'echo "tests/vm/run.sh: interrupted" >&2; exit 130' INT
trap 'echo "tests/vm/run.sh: terminated" >&2; exit 143' TERM

nonce=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
mkdir -p "$run/job/hutch"
echo "NONCE=$nonce" >"$run/job/hutch/conf"
# The guest's /tmp, /var/tmp, /run and /root are fresh tmpfs: a working directory under one of
# them (a CI clone in /tmp, say) is shared on its own, read-only, at the same path.
workshare=()
case $PWD/ in
/tmp/* | /var/tmp/* | /run/* | /root/*)
    workshare=(-fsdev "local,id=work,path=$PWD,security_model=none,readonly=on,multidevs=remap"
        -device virtio-9p-pci,fsdev=work,mount_tag=work)
    printf 'WORKDIR=%q\n' "$PWD" >>"$run/job/hutch/conf"
    ;;
esac
{
    echo "# generated by tests/vm/run.sh"
    printf 'export PATH=%q\n' "$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo "export HOME=/root USER=root LOGNAME=root SHELL=/bin/bash"
    for name in $(compgen -e); do
        case $name in
        HUTCH_* | RUST_* | TERM) printf 'export %s=%q\n' "$name" "${!name}" ;;
        esac
    done
    for e in ${extra_env[@]+"${extra_env[@]}"}; do
        case $e in
        *=*) printf 'export %s=%q\n' "${e%%=*}" "${e#*=}" ;;
        *) [ -z "${!e+x}" ] || printf 'export %s=%q\n' "$e" "${!e}" ;;
        esac
    done
    printf 'hutch_vm_cwd=%q\n' "$PWD"
    echo 'cd -- "$hutch_vm_cwd" || { echo "hutch-vm: cannot cd to $hutch_vm_cwd in the guest (its /tmp, /run, /var/tmp and /root are empty)" >&2; exit 125; }'
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
} >"$run/job/hutch/job"
# The kernel unpacks concatenated cpio archives in turn: base image + job.
(cd "$run/job" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | cat "$initramfs" - >"$run/initrd"

# --- boot -------------------------------------------------------------------
append="console=ttyS0 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
if [ "$verbose" = 1 ]; then
    append+=" hutch.verbose"
else
    append+=" quiet"
fi
append+=$extra_append

# The console: kernel warnings and init's messages go to stderr, up to the
# exit marker (after it, only the kernel's "reboot: Power down").
watch_console() {
    local line done=0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        if [[ $line == *"HUTCH_VM_EXIT $nonce "* ]]; then
            echo "${line##* }" >"$run/rc"
            done=1
            vlog "exit marker seen"
        elif [ "$done" = 0 ] || [ "$verbose" = 1 ]; then
            printf '%s\n' "$line" >&2
        fi
    done
}
# qemu writes the guest's outputs to regular files, and tail -f streams them
# on as they grow: the serial console (ttyS0) to watch_console, the job's
# stdout and stderr (virtio consoles hvc0 and hvc1: much faster than serial
# ports) to ours. Not pipes: when a pipe is full, qemu drops virtio console
# data. A write to hvc returns once qemu has written it to the file, so
# nothing is lost at power-off.
: >"$run/console"
: >"$run/stdout"
: >"$run/stderr"

vlog "starting qemu"
# -cpu max: host binaries may use instructions the default qemu64 model lacks.
# timeout -k: SIGKILL if qemu ignores the SIGTERM.
timeout -k 10 "$timeout" qemu-system-x86_64 \
    -nodefaults -no-user-config -accel tcg -cpu max -smp "$smp" -m "$mem" \
    -display none -no-reboot \
    -kernel "$kernel" -initrd "$run/initrd" -append "$append" \
    -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    ${workshare[@]+"${workshare[@]}"} \
    -chardev "file,id=con,path=$run/console" -serial chardev:con \
    -device virtio-serial-pci,max_ports=2 \
    -chardev "file,id=out,path=$run/stdout" -device virtconsole,chardev=out \
    -chardev "file,id=err,path=$run/stderr" -device virtconsole,chardev=err \
    -nic none </dev/null &
qpid=$!
# --pid: each tail prints the rest and ends once qemu (under timeout) is gone.
follow() { tail -s 0.1 -c +1 -f --pid="$qpid" "$1"; }
follow "$run/console" | watch_console &
con_pid=$!
follow "$run/stdout" &
out_pid=$!
follow "$run/stderr" >&2 &
err_pid=$!

qrc=0
wait "$qpid" || qrc=$?
qpid=
vlog "qemu exited ($qrc)"
wait "$con_pid" "$out_pid" "$err_pid" || true

if [ -s "$run/rc" ]; then
    rc=$(cat "$run/rc")
    vlog "command exited with $rc"
    exit "$rc"
fi
if [ "$qrc" = 124 ]; then
    echo "tests/vm/run.sh: timed out after ${timeout}s; the command did not finish in the VM" >&2
    exit 124
fi
echo "tests/vm/run.sh: the VM stopped without reporting the command's exit code (qemu exit status $qrc; see the console output above)" >&2
exit 125
