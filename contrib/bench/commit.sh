#!/usr/bin/env bash
# What one commit costs on a large signed stream: adding or removing one
# version of a stream of ITEMS items (gen_stream.py --data) by `mountctl
# insert`, by `cp` into the mount (until `close` returns), by `rm -r` (until
# the removal's generation is current) and by `ln -s` promotion, each against
# the floor measured in the same run: writing and fsyncing the published
# files such a commit rewrites (the stream's products .json, .sjson and
# .json.gpg and its index files), copied with `dd conv=fsync`. Peak RSS of
# `mountctl` (GNU time) and of the daemon during the commits (VmHWM, reset
# after start-up through /proc/PID/clear_refs) beside.
#
#   contrib/bench/commit.sh [WORKDIR]       (as root, with /dev/fuse)
#   env: RUNS (7), ITEMS (40000), BIN (directory of the streamfs and mountctl
#        binaries to measure; default: this checkout's release build)
#
# WORKDIR (default /var/tmp/streamfs-bench-commit) keeps the generated store
# between runs: inserting 40,000 items takes minutes. Each run adds versions
# named after its start time and removes them again (reaping what earlier
# runs removed first), so the stream is the same size each time.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/var/tmp/streamfs-bench-commit}
runs=${RUNS:-7}
items=${ITEMS:-40000}
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p streamfs -p mountctl --manifest-path "$root/Cargo.toml"
    BIN=$root/target/release
fi
S=$BIN/streamfs
M=$BIN/mountctl
command -v /usr/bin/time > /dev/null || { echo "needs GNU time (apt install time)" >&2; exit 1; }
mkdir -p "$work"
cd "$work"

daemon=""
cleanup() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon" 2> /dev/null || true
        wait "$daemon" 2> /dev/null || true
    fi
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
div() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
ms() { awk "BEGIN{printf \"%.0f\", $1 * 1000}"; }
say() { printf '%s\n' "$*"; }
current() { readlink store/meta/current; }

if [ ! -f store/keys/signing.asc ]; then
    rm -rf gen store
    python3 "$root/contrib/bench/gen_stream.py" --data gen "$items"
    "$M" --store store init > /dev/null
    "$M" --store store keygen > /dev/null
    say "inserting $items items into 'released' (once; kept in $work/store)…"
    "$M" --store store insert gen released > /dev/null
    rm -rf gen
fi

# Removed paths stay readable (and their directories resolvable) until
# reaped: what earlier runs removed goes now, so no name is taken.
"$M" --store store reap-orphans --now > /dev/null
stamp=$(date +%y%m%d%H%M%S)

# One small version in the default layout (a kernel of noble/amd64).
version_tree() { # DIR VERSION
    mkdir -p "$1/noble/amd64/$2/ga-24.04/generic"
    echo "kernel $2" > "$1/noble/amd64/$2/ga-24.04/generic/boot-kernel"
}

say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; binaries: $BIN"
say "stream: $(grep -c '"sha256"' store/meta/current/released/streams/v1/com.*.json) items in released"

# --- the floor ----------------------------------------------------------------
v1=store/meta/current/released/streams/v1
floor_files=("$v1"/*.json "$v1"/*.sjson "$v1"/*.gpg)
say "floor files: $(du -cb "${floor_files[@]}" | tail -1 | cut -f1) bytes in ${#floor_files[@]} files"
floors=()
for _ in $(seq "$runs"); do
    rm -rf floor && mkdir floor && sync
    t0=$(now)
    for f in "${floor_files[@]}"; do
        dd if="$f" of="floor/$(basename "$f")" bs=1M conv=fsync status=none
    done
    t1=$(now)
    floors+=("$(awk "BEGIN{print $t1 - $t0}")")
done
rm -rf floor
floor=$(median "${floors[@]}")
say "floor (dd conv=fsync of those files): $(ms "$floor") ms   (runs: ${floors[*]})"

# --- mountctl insert and remove ------------------------------------------------
ins=() rss=()
for i in $(seq "$runs"); do
    v=${stamp}1$i
    rm -rf one && version_tree one "$v" && sync
    t0=$(now)
    /usr/bin/time -f %M -o rss.txt "$M" --store store insert one released > /dev/null
    t1=$(now)
    ins+=("$(awk "BEGIN{print $t1 - $t0}")")
    rss+=("$(cat rss.txt)")
done
rm -rf one
n=$(median "${ins[@]}")
say "mountctl insert of one version: $(ms "$n") ms, $(div "$n" "$floor")x the floor, peak RSS $(($(median "${rss[@]}") / 1024)) MB   (runs: ${ins[*]}; RSS KiB: ${rss[*]})"

# --- through the mount ----------------------------------------------------------
mkdir -p mnt
mountpoint -q mnt && umount mnt
t0=$(now)
"$S" store mnt --foreground 2> mnt.log &
daemon=$!
until [ -e mnt/released/streams/v1/index.json ]; do sleep 0.005; done
t1=$(now)
say "mount start-up (launch to index.json visible): $(ms "$(awk "BEGIN{print $t1 - $t0}")") ms, VmRSS $(awk '/VmRSS/ {print $2}' /proc/$daemon/status) KiB"
# The versions mountctl inserted go again (not timed), through the mount.
before=$(current)
rm -r "mnt/released/noble/amd64/${stamp}1"*
while [ "$(current)" = "$before" ]; do sleep 0.01; done
sleep 1
say "daemon after the first commit: VmRSS $(awk '/VmRSS/ {print $2}' /proc/$daemon/status) KiB, VmHWM $(awk '/VmHWM/ {print $2}' /proc/$daemon/status) KiB"
echo 5 > "/proc/$daemon/clear_refs"
# Waits until `meta/current` is no longer $1, for at most 60 s.
wait_commit() {
    local before=$1 n=0
    while [ "$(current)" = "$before" ] && [ $n -lt 6000 ]; do sleep 0.001; n=$((n + 1)); done
}
echo "kernel" > payload
cps=() rms=() lns=()
for i in $(seq "$runs"); do
    v=${stamp}2$i
    d=mnt/released/noble/amd64/$v/ga-24.04/generic
    mkdir -p "$d"
    t0=$(now)
    cp payload "$d/boot-kernel"
    t1=$(now)
    cps+=("$(awk "BEGIN{print $t1 - $t0}")")
    before=$(current)
    t0=$(now)
    rm -r "mnt/released/noble/amd64/$v"
    wait_commit "$before"
    t1=$(now)
    rms+=("$(awk "BEGIN{print $t1 - $t0}")")
    # Promotion: the version is in daily first (not timed). A new name: the
    # removed one stays resolvable (for clients of older indexes) until
    # reaped, and `ln -s` onto an existing directory links inside it.
    v=${stamp}3$i
    rm -rf one && version_tree one "$v" && "$M" --store store insert one daily > /dev/null
    until [ -d "mnt/daily/noble/amd64/$v" ]; do sleep 0.01; done
    t0=$(now)
    ln -s "../../../daily/noble/amd64/$v" "mnt/released/noble/amd64/$v"
    t1=$(now)
    lns+=("$(awk "BEGIN{print $t1 - $t0}")")
    before=$(current)
    rm -r "mnt/released/noble/amd64/$v" "mnt/daily/noble/amd64/$v"
    wait_commit "$before"
done
rm -rf one payload
c=$(median "${cps[@]}") r=$(median "${rms[@]}") l=$(median "${lns[@]}")
say "cp of one file into the mount (until close returns): $(ms "$c") ms, $(div "$c" "$floor")x the floor   (runs: ${cps[*]})"
say "rm -r of one version (until its generation is current): $(ms "$r") ms, $(div "$r" "$floor")x the floor   (runs: ${rms[*]})"
say "ln -s promotion of one version: $(ms "$l") ms, $(div "$l" "$floor")x the floor   (runs: ${lns[*]})"
say "daemon during $((runs * 4)) commits: VmHWM $(awk '/VmHWM/ {print $2}' /proc/$daemon/status) KiB, VmRSS at the end $(awk '/VmRSS/ {print $2}' /proc/$daemon/status) KiB"
