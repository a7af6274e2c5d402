#!/usr/bin/env bash
# Benchmarks of the mount, each figure a ratio against a native baseline
# measured in the same run (medians of RUNS runs):
#
#   read    sequential read of a 1 GiB item through the mount (passthrough,
#           --no-passthrough, and a read-only mount, where the kernel serves
#           it from its page cache) vs `dd` of its pool blob; warm page
#           cache for all (each read once first).
#   insert  `cp` of a 1 GiB file into the mount vs `cp` + `sync -f` to a
#           directory on the store's filesystem; the source is page-cached,
#           its first bytes changed each run (a new blob every time).
#   tree    `find MNT -type f | wc -l` and `ls -lR MNT` on a stream of ITEMS
#           items (gen_stream.py --data) vs the same tree exported by
#           `mountctl export`; mount start-up time; the daemon's peak RSS.
#   nginx   nginx (sendfile) serving the mount vs the exported tree: `wrk`
#           requests/s over the 40,000 small items, and MB/s of the 1 GiB item.
#           The mount served is a read-only one (`-o ro,allow_other`, opens
#           answered by the kernel), as the README sets up for serving; the
#           small items are also served from a read-write mount (passthrough)
#           for comparison.
#
#   contrib/bench/mount.sh [WORKDIR]        (as root, with /dev/fuse)
#   env: RUNS (5), ITEMS (40000), SIZE_MIB (1024), SECTIONS ("read insert tree nginx"),
#        PORT (18080, five ports from it), WRK_SECONDS (5)
#
# WORKDIR (default /var/tmp/streamfs-bench-mount) keeps the generated stores
# between runs: inserting 40,000 items takes minutes (one fsync per blob).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/var/tmp/streamfs-bench-mount}
runs=${RUNS:-5}
items=${ITEMS:-40000}
size=${SIZE_MIB:-1024}
sections=${SECTIONS:-read insert tree nginx}
port=${PORT:-18080}
wrk_secs=${WRK_SECONDS:-5}

cargo build --release -q -p streamfs -p mountctl --manifest-path "$root/Cargo.toml"
S=$root/target/release/streamfs
M=$root/target/release/mountctl
mkdir -p "$work"
chmod 755 "$work"
cd "$work"

daemons=()
nginx_conf=""
cleanup() {
    [ -n "$nginx_conf" ] && nginx -c "$nginx_conf" -s stop 2> /dev/null || true
    for d in "${daemons[@]}"; do kill -TERM "$d" 2> /dev/null || true; done
    for d in "${daemons[@]}"; do wait "$d" 2> /dev/null || true; done
}
trap cleanup EXIT

now() { date +%s.%N; }
# Seconds taken by a command (its output discarded).
t() {
    local t0 t1
    t0=$(now)
    "$@" > /dev/null || { echo "FAILED: $*" >&2; echo nan; return; }
    t1=$(now)
    awk "BEGIN{printf \"%.4f\", $t1 - $t0}"
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
div() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }
say() { printf '%s\n' "$*"; }

# mount_store STORE MNT [streamfs args…]: mounts, sets MOUNT_PID.
mount_store() {
    local store=$1 mnt=$2
    shift 2
    mkdir -p "$mnt"
    mountpoint -q "$mnt" && umount "$mnt"
    "$S" "$store" "$mnt" --foreground "$@" 2> "$mnt.log" &
    MOUNT_PID=$!
    daemons+=("$MOUNT_PID")
    until mountpoint -q "$mnt"; do sleep 0.01; done
}
unmount_store() {
    kill -TERM "$1"
    wait "$1" 2> /dev/null || true
}

say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"

# --- the 1 GiB store (read, insert, nginx) -------------------------------
src=$work/src/noble/amd64/20250101
big=$src/squashfs
if [ ! -f "$big" ]; then
    mkdir -p "$src/ga-24.04/generic"
    head -c "$((size << 20))" /dev/urandom > "$big"
    echo kernel > "$src/ga-24.04/generic/boot-kernel"
fi
if [ ! -d rstore ]; then
    "$M" --store rstore init > /dev/null
    "$M" --store rstore insert src daily > /dev/null
    "$M" --store rstore export daily rexport > /dev/null
fi
blob=rstore/$(cd rstore && ls -S pool/sha256/*/* | head -1)
item=daily/noble/amd64/20250101/squashfs

if [[ " $sections " == *" read "* ]]; then
    mount_store rstore rmnt -o allow_other
    pt=$MOUNT_PID
    mount_store rstore rmnt2 --no-passthrough
    npt=$MOUNT_PID
    mount_store rstore rmnt3 -o ro
    ro=$MOUNT_PID
    # Four reads per measurement: one read of a cached GiB takes ~60 ms.
    read4() { for _ in 1 2 3 4; do dd if="$1" of=/dev/null bs=1M status=none; done; }
    read4 "$blob"
    cat "rmnt3/$item" > /dev/null
    nat=() via=() nop=() rop=()
    for _ in $(seq "$runs"); do
        nat+=("$(t read4 "$blob")")
        via+=("$(t read4 "rmnt/$item")")
        nop+=("$(t read4 "rmnt2/$item")")
        rop+=("$(t read4 "rmnt3/$item")")
    done
    n=$(median "${nat[@]}") p=$(median "${via[@]}") q=$(median "${nop[@]}") r=$(median "${rop[@]}")
    gb() { awk "BEGIN{printf \"%.1f\", 4 * $size / 1024 * 1.073741824 / $1}"; }
    say "read: 4 x ${size} MiB, warm cache, dd bs=1M, median of $runs"
    say "  pool blob (native):   ${n}s  $(gb "$n") GB/s   (runs: ${nat[*]})"
    say "  mount, passthrough:   ${p}s  $(gb "$p") GB/s   (runs: ${via[*]})  ratio $(div "$n" "$p")"
    say "  mount, no passthrough: ${q}s  $(gb "$q") GB/s   (runs: ${nop[*]})  ratio $(div "$n" "$q")"
    say "  read-only mount:      ${r}s  $(gb "$r") GB/s   (runs: ${rop[*]})  ratio $(div "$n" "$r")"
    unmount_store "$pt"
    unmount_store "$npt"
    unmount_store "$ro"
fi

if [[ " $sections " == *" insert "* ]]; then
    rm -rf istore native
    "$M" --store istore init > /dev/null
    mkdir -p native
    mount_store istore imnt
    nat=() via=()
    for i in $(seq "$runs"); do
        printf 'run %s %s' "$i" "$(now)" | dd of="$big" conv=notrunc bs=64 count=1 status=none
        rm -f native/copy
        # Each copy starts from the same memory state: caches dropped, then
        # the source read back in (with the page cache full of earlier
        # runs' blobs, page reclaim slowed the mount's copies 2-3x more
        # than the native ones).
        fresh() { sync; echo 3 > /proc/sys/vm/drop_caches; cat "$big" > /dev/null; }
        fresh
        nat+=("$(t sh -c "cp '$big' native/copy && sync -f native/copy")")
        d=imnt/daily/noble/amd64/2030010$i/ga-24.04/generic
        mkdir -p "$d"
        fresh
        via+=("$(t cp "$big" "$d/boot-kernel")")
    done
    n=$(median "${nat[@]}") p=$(median "${via[@]}")
    rate() { awk "BEGIN{printf \"%.2f\", $size / 1024 * 1.073741824 / $1}"; }
    say "insert: ${size} MiB, page-cached source, median of $runs"
    say "  cp + sync -f to the store's filesystem: ${n}s  $(rate "$n") GB/s   (runs: ${nat[*]})"
    say "  cp into the mount (hash, fsync, commit before close returns): ${p}s  $(rate "$p") GB/s   (runs: ${via[*]})"
    say "  ratio mount/native: $(div "$p" "$n") at a native $(rate "$n") GB/s   (target <= 1.3 where native takes < 1 s)"
    unmount_store "$MOUNT_PID"
    rm -rf native
fi

# --- the ITEMS-item store (tree, nginx) -----------------------------------
if [ ! -d tstore ]; then
    rm -rf gen texport
    python3 "$root/contrib/bench/gen_stream.py" --data gen "$items"
    "$M" --store tstore init > /dev/null
    say "inserting $items items (once; kept in $work/tstore)…"
    "$M" --store tstore insert gen daily > /dev/null
    "$M" --store tstore export daily texport > /dev/null
    rm -rf gen
fi

if [[ " $sections " == *" tree "* ]]; then
    starts=()
    for _ in $(seq "$runs"); do
        t0=$(now)
        mount_store tstore tmnt
        until [ -e tmnt/daily/streams/v1/index.json ]; do sleep 0.005; done
        t1=$(now)
        starts+=("$(awk "BEGIN{printf \"%.3f\", $t1 - $t0}")")
        unmount_store "$MOUNT_PID"
    done
    say "tree: $(find texport -type f | wc -l) files"
    say "  mount start-up (launch to index.json visible): $(median "${starts[@]}")s   (runs: ${starts[*]}; target < 1 s)"
    mount_store tstore tmnt
    tpid=$MOUNT_PID
    findn() { find "$1" -type f | wc -l; }
    lsr() { ls -lR "$1"; }
    for cmd in findn lsr; do
        first=$(t "$cmd" tmnt/daily)
        nat=() via=()
        for _ in $(seq "$runs"); do
            nat+=("$(t "$cmd" texport)")
            via+=("$(t "$cmd" tmnt/daily)")
        done
        n=$(median "${nat[@]}") p=$(median "${via[@]}")
        label=$([ "$cmd" = findn ] && echo "find -type f | wc -l" || echo "ls -lR")
        say "  $label: native ${n}s, mount ${p}s, ratio $(div "$p" "$n") (target <= 2); first run after mounting ${first}s (ratio $(div "$first" "$n"))"
        say "    native runs: ${nat[*]}; mount runs: ${via[*]}"
    done
    say "  daemon peak RSS (VmHWM) after find and ls: $(awk '/VmHWM/ {print $2, $3}' /proc/$tpid/status)"
    unmount_store "$tpid"
fi

if [[ " $sections " == *" nginx "* ]]; then
    mount_store tstore tmnt -o ro,allow_other
    tpid=$MOUNT_PID
    mount_store rstore rmnt -o ro,allow_other
    rpid=$MOUNT_PID
    mount_store tstore twmnt -o allow_other
    twpid=$MOUNT_PID
    nginx_conf=$work/nginx.conf
    cat > "$nginx_conf" << EOF
worker_processes 2;
worker_rlimit_nofile 65536;
user nobody nogroup;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    server { listen 127.0.0.1:$port;       root $work/tmnt; }
    server { listen 127.0.0.1:$((port + 1)); root $work/texport; }
    server { listen 127.0.0.1:$((port + 2)); root $work/rmnt; }
    server { listen 127.0.0.1:$((port + 3)); root $work/rexport; }
    server { listen 127.0.0.1:$((port + 4)); root $work/twmnt; }
}
EOF
    nginx -c "$nginx_conf"
    # Every item URL (spaces escaped), for wrk to cycle through.
    (cd texport && find . -type f -not -path './streams/*' | sed 's|^\.|/daily|; s| |%20|g') > urls.txt
    cat > cycle.lua << 'EOF'
local paths = {}
for line in io.lines(os.getenv("URLS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
end
EOF
    # The mount's tree is at /daily (root = MNT), the export's at / (root =
    # the stream directory): two URL lists.
    sed 's|^/daily||' urls.txt > urls-export.txt
    curl -sf -o /dev/null "http://127.0.0.1:$port$(head -1 urls.txt)"
    curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))$(head -1 urls-export.txt)"
    rps() { URLS=$2 wrk -t2 -c32 -d"${wrk_secs}s" -s cycle.lua "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
    mbs() {
        wrk -t2 -c8 -d"${wrk_secs}s" "http://127.0.0.1:$1/$2" | awk '/Transfer\/sec/ {
            v = $2; if (v ~ /GB/) v *= 1024; else if (v ~ /KB/) v /= 1024; sub(/[A-Z]+$/, "", $2); print v + 0 }'
    }
    # Every server starts warm, as a mirror serving its usual files does:
    # each item read once through the tree it is served from (directory
    # entries, attributes and pages cached; on the mount, blobs verified).
    warm() { find "$1" -type f -not -path '*/streams/*' -print0 | xargs -0 cat > /dev/null; }
    warm texport
    warm tmnt/daily
    warm twmnt/daily
    cat rexport/noble/amd64/20250101/squashfs "rmnt/$item" > /dev/null
    nr=() mr=() wr=() nb=() mb=()
    for _ in $(seq "$runs"); do
        nr+=("$(rps $((port + 1)) urls-export.txt)")
        mr+=("$(rps "$port" urls.txt)")
        wr+=("$(rps $((port + 4)) urls.txt)")
        nb+=("$(mbs $((port + 3)) noble/amd64/20250101/squashfs)")
        mb+=("$(mbs $((port + 2)) "$item")")
    done
    n=$(median "${nr[@]}") p=$(median "${mr[@]}")
    say "nginx: wrk -t2 -c32 -d${wrk_secs}s cycling through $(wc -l < urls.txt) small items, requests/s, median of $runs"
    say "  exported tree: $n   read-only mount: $p   ratio $(div "$p" "$n") (target >= 0.9)"
    say "    native runs: ${nr[*]}; mount runs: ${mr[*]}"
    w=$(median "${wr[@]}")
    say "  read-write mount (passthrough, an OPEN and a RELEASE per request): $w   ratio $(div "$w" "$n")"
    say "    runs: ${wr[*]}"
    n=$(median "${nb[@]}") p=$(median "${mb[@]}")
    say "nginx: wrk -t2 -c8 -d${wrk_secs}s on the ${size} MiB item, MB/s, median of $runs"
    say "  exported tree: $n   read-only mount: $p   ratio $(div "$p" "$n") (target >= 0.9)"
    say "    native runs: ${nb[*]}; mount runs: ${mb[*]}"
    say "  daemon peak RSS (VmHWM) after serving: $(awk '/VmHWM/ {print $2, $3}' /proc/$tpid/status)"
    nginx -c "$nginx_conf" -s stop
    nginx_conf=""
    unmount_store "$tpid"
    unmount_store "$rpid"
    unmount_store "$twpid"
fi
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
