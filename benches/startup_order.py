#!/usr/bin/env python3
"""Regenerates src/bin/hutch/startup.order: the functions hutch runs when it starts a
container, in the order they first run (see build.rs for why the linker wants them).

    sudo python3 benches/startup_order.py      # as root, with perf (Debian: linux-perf)

It builds hutch, starts containers the ways users do (a sandbox run under the default
profile, `hutch run`, and create/start/state/delete as containerd's shim does) under
`perf record` (CPU samples at 40 kHz, and every user page fault), and lists each function
of hutch's binary that a sample or a fault landed in, ordered by workload, then by the median
time after its process began at which it was first seen. Functions too short for any sample
to land in stay where the linker puts them: the list only has to cover most of a start.

Rust names are written with their build's hashes as `*` (`portable`), so that the list
places the same functions whatever command or compiler built hutch (see build.rs).

Regenerate it after changes that rename or add much of what a start runs; the startup bench
shows the effect (`HUTCH_BENCH_RUNS=150 cargo bench --bench startup`).
"""

import bisect
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = os.path.join(ROOT, "src/bin/hutch/startup.order")
RUNS = {"sandbox": 300, "run": 100, "lifecycle": 50}


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def build():
    sh("cargo", "build", "--release", "--bin", "hutch", cwd=ROOT)
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, check=True, capture_output=True
    )
    target = json.loads(out.stdout)["target_directory"]
    return os.path.join(target, "x86_64-unknown-linux-gnu", "release", "hutch")


def workload_script(hutch, tmp):
    """One shell script per workload; each container start is its own hutch process."""
    bundle = os.path.join(tmp, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    sh("bash", os.path.join(ROOT, "bundles/mkrootfs.sh"), rootfs)
    sh(hutch, "spec", cwd=bundle)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    state = os.path.join(tmp, "state")
    h = f"{hutch} --root {state}"
    return {
        "sandbox": f"for i in $(seq {RUNS['sandbox']}); do {h} sandbox run --rootfs {rootfs} "
        f"--result /dev/null -- /bin/true; done",
        "run": f"for i in $(seq {RUNS['run']}); do {h} run --bundle {bundle} r$i >/dev/null; done",
        "lifecycle": f"for i in $(seq {RUNS['lifecycle']}); do {h} create --bundle {bundle} c$i; "
        f"{h} start c$i; {h} state c$i >/dev/null; {h} delete --force c$i; done",
    }


def portable(name):
    """`name` with the parts that hash its build as `*`, for a linker script pattern (build.rs):
    v0's crate disambiguators (`Cs<base62>_`) and back-references (`B<base62>_`, offsets that
    move when a disambiguator's length does), legacy mangling's trailing hash (left on the
    standard library's own functions) and ThinLTO's suffix on a promoted local. A `*` standing
    for more than a hash only widens the pattern. A C name stays as it is."""
    if name.startswith("_ZN"):
        name = re.sub(r"17h[0-9a-f]{16}E", "17h*E", name)
    elif name.startswith("_R"):
        name = re.sub(r"Cs[0-9A-Za-z]*_", "Cs*_", name)
        name = re.sub(r"B[0-9A-Za-z]*_", "B*_", name)
    else:
        return name
    return re.sub(r"\.llvm\.\d+$", ".llvm.*", name)


def functions(hutch):
    """(start addresses, names) of the binary's functions, sorted."""
    out = subprocess.run(["nm", "-n", "--defined-only", hutch], check=True, capture_output=True, text=True)
    syms = []
    for line in out.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return [a for a, _ in syms], [n for _, n in syms]


def first_seen(hutch, script, tmp):
    """Per function: the times after its process's first event at which it was first seen."""
    data = os.path.join(tmp, "perf.data")
    sh("perf", "record", "-q", "-a", "-F", "40000", "-e", "cpu-clock", "-e", "exceptions:page_fault_user",
       "-o", data, "--", "bash", "-c", script, stdout=subprocess.DEVNULL)
    out = subprocess.run(
        ["perf", "script", "-i", data, "--no-demangle", "-F", "comm,pid,time,event,ip,trace"],
        check=True, capture_output=True, text=True,
    ).stdout
    addrs, names = functions(hutch)
    comm = os.path.basename(hutch)[:15]
    line_re = re.compile(r"^\s*(\S+)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")
    events = []
    for line in out.splitlines():
        m = line_re.match(line)
        if not m or m.group(1) != comm:
            continue
        _, pid, t, event, rest = m.groups()
        if event == "cpu-clock":
            ip = int(rest.split()[0], 16)
        else:
            fault = re.search(r"ip=(0x[0-9a-f]+)", rest)
            if not fault:
                continue
            ip = int(fault.group(1), 16)
        i = bisect.bisect_right(addrs, ip) - 1
        if i >= 0 and i + 1 < len(addrs) and ip < addrs[i + 1]:
            events.append((float(t), int(pid), names[i]))
    events.sort()
    began, seen, times = {}, set(), {}
    for t, pid, name in events:
        start = began.setdefault(pid, t)
        if (pid, name) not in seen:
            seen.add((pid, name))
            times.setdefault(name, []).append(t - start)
    return times


def main():
    if os.geteuid() != 0:
        sys.exit("startup_order: run as root (containers, perf)")
    hutch = build()
    tmp = tempfile.mkdtemp(prefix="hutch-order-")
    # The sandbox's root is an unprivileged host uid: it must be able to reach the rootfs.
    os.chmod(tmp, 0o755)
    try:
        # A copy under a name of its own, so that its processes are told apart by name.
        exe = os.path.join(tmp, "hutch-order")
        shutil.copy(hutch, exe)
        order, listed = [], set()
        for workload, script in workload_script(exe, tmp).items():
            times = first_seen(exe, script, tmp)
            new = sorted(times, key=lambda n: statistics.median(times[n]))
            new = [p for p in dict.fromkeys(map(portable, new)) if p not in listed]
            order += new
            listed.update(new)
            print(f"{workload}: {len(new)} more functions")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(ORDER, "w") as f:
        f.write("# hutch's start-up functions in the order they first run; see build.rs.\n")
        f.write("# Generated by benches/startup_order.py; regenerate, do not edit.\n")
        f.write("\n".join(order) + "\n")
    print(f"{ORDER}: {len(order)} functions")


if __name__ == "__main__":
    main()
