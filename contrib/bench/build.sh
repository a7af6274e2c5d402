#!/bin/bash
# Times the builtin builder of `mountctl build` on a Debian root tarball:
#  1. meph2's way to the squashfs (the native baseline): `tar -x` to a
#     directory, then `mksquashfs DIR -comp xz`;
#  2. the builtin builder's squashfs step alone, the command it runs (the
#     tarball streamed into `sqfstar -comp xz`), best of ROUNDS each,
#     alternating with 1, and both squashfs checked to hold the same tree
#     (`unsquashfs -lls`, names, owners, modes and sizes);
#  3. a whole `mountctl build` of the tarball with one kernel row
#     (linux-image-amd64, packages from the apt cache), whose stage lines
#     give each step's time (the squashfs step runs beside the others).
#
# Usage: contrib/bench/build.sh [TARBALL]     (as root)
#   TARBALL: a -root.tar.xz; default: the Debian 12 root the tests cache
#            (~/.cache/streamfs/debian-root/*/debian-12-root.tar.xz; run
#            `cargo test -p streamfs-tests --test build_real` once to make it).
# Env: MOUNTCTL (a binary to use instead of building a release one),
#      STREAMFS_BUILD_APT_CACHE (kept packages; default the tests' cache),
#      TMPDIR (the disk), ROUNDS (default 2).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/streamfs
tarball=${1:-$(ls -1 "$cache"/debian-root/*/debian-12-root.tar.xz 2> /dev/null | head -n1)}
[ -f "$tarball" ] || { echo "no root tarball (give one, or run the build_real test once)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (the builtin builder is)" >&2; exit 2; }
key=$(basename "$(dirname "$tarball")")
export STREAMFS_BUILD_APT_CACHE=${STREAMFS_BUILD_APT_CACHE:-$cache/apt/$key}
rounds=${ROUNDS:-2}

if [ -z "${MOUNTCTL:-}" ]; then
    cargo build --quiet --release -p mountctl --manifest-path "$root/Cargo.toml"
fi
mountctl=${MOUNTCTL:-$root/target/release/mountctl}
work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
# Names, modes, owners and file sizes (not times, nor directory sizes,
# which depend on the order entries were added).
listing() { unsquashfs -lls "$1" | awk 'NR > 3 { $4 = ""; $5 = ""; if ($1 ~ /^d/) $3 = ""; print }' | sort; }

echo "tarball: $tarball ($(du -h "$tarball" | cut -f1)), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
best_native=""
best_stream=""
for r in $(seq 1 "$rounds"); do
    rm -rf "$work/tree" "$work/native.sqfs" "$work/stream.sqfs"
    mkdir "$work/tree"
    sync
    t0=$(now)
    tar -x --numeric-owner -p --xattrs --xattrs-include='*' -f "$tarball" -C "$work/tree"
    mksquashfs "$work/tree" "$work/native.sqfs" -comp xz -noappend -no-progress -quiet > /dev/null
    t1=$(now)
    native=$(secs "$t0" "$t1")
    rm -rf "$work/tree"
    sync
    t0=$(now)
    xz -dc -T0 -- "$tarball" | sqfstar -comp xz -no-progress -quiet -root-mode 755 -root-uid 0 -root-gid 0 "$work/stream.sqfs" > /dev/null
    t1=$(now)
    stream=$(secs "$t0" "$t1")
    echo "round $r: tar -x + mksquashfs ${native}s, xz | sqfstar ${stream}s"
    if [ -z "$best_native" ] || [ "$(echo "$native < $best_native" | bc)" = 1 ]; then best_native=$native; fi
    if [ -z "$best_stream" ] || [ "$(echo "$stream < $best_stream" | bc)" = 1 ]; then best_stream=$stream; fi
done
if diff <(listing "$work/native.sqfs") <(listing "$work/stream.sqfs") > "$work/diff"; then
    echo "same tree in both squashfs"
else
    echo "the squashfs differ:"; head -n 20 "$work/diff"
fi
echo "squashfs: builtin (streamed) ${best_stream}s vs meph2's way ${best_native}s: ratio $(echo "scale=2; $best_stream / $best_native" | bc)x"

cat > "$work/meph2.yaml" << 'EOF'
releases:
 - version: "12"
   release: bookworm
   kernels:
    - [bookworm, amd64, ga-12, generic, linux-image-amd64, [generic, ga-12]]
squashfs: True
root_image: False
enable_di: False
content_id: com.ubuntu.maas:candidate:v3:download
product_id_pre: com.ubuntu.maas.candidate:v3:boot
kname: '%(subarch)s'
EOF
t0=$(now)
TMPDIR=$work "$mountctl" build --config "$work/meph2.yaml" --log-dir "$work/logs" \
    --apt-cache "$STREAMFS_BUILD_APT_CACHE" amd64 bookworm 20261203 "$tarball" "$work/out" \
    2>&1 | grep -E '^stage .* (done|failed)'
t1=$(now)
echo "whole build: $(secs "$t0" "$t1")s"
