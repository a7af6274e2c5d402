#!/usr/bin/env bash
# mountctl insert of a 1 GiB file vs cp of it within the same filesystem.
# Both read the same (page-cached) source and write to the same filesystem;
# insert also hashes (in the same pass), fsyncs and commits metadata.
#
#   contrib/bench/insert.sh [WORKDIR] [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d /var/tmp/streamfs-bench.XXXXXX)}"
size="${2:-1024}"
cargo build --release -q -p mountctl
m="$PWD/target/release/mountctl"
mkdir -p "$work"
src="$work/src/noble/amd64/20250101"
mkdir -p "$src/ga-24.04/generic"
[ -f "$src/squashfs" ] || head -c "$((size << 20))" /dev/urandom > "$src/squashfs"
echo kernel > "$src/ga-24.04/generic/boot-kernel"
cat "$src/squashfs" > /dev/null

now() { date +%s.%N; }
runs=${RUNS:-3}
# Each measurement starts from the same memory state (as root): caches
# dropped, then the source read back in; a page cache full of earlier runs'
# copies makes page reclaim part of what is measured.
fresh() {
    sync
    if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
    cat "$src/squashfs" > /dev/null
}
cp_times=(); ins_times=()
for i in $(seq $runs); do
    rm -f "$work/copy"
    fresh
    t0=$(now); cp "$src/squashfs" "$work/copy"; sync -f "$work/copy"; t1=$(now)
    cp_times+=("$(awk "BEGIN{print $t1 - $t0}")")
    rm -rf "$work/store"
    "$m" --store "$work/store" init > /dev/null
    fresh
    t0=$(now); "$m" --store "$work/store" insert "$work/src" daily > /dev/null; t1=$(now)
    ins_times+=("$(awk "BEGIN{print $t1 - $t0}")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
c=$(median "${cp_times[@]}"); n=$(median "${ins_times[@]}")
echo "file: ${size} MiB, $runs runs each, medians"
echo "cp + sync:        ${c}s   (runs: ${cp_times[*]})"
echo "mountctl insert:  ${n}s   (runs: ${ins_times[*]})"
echo "ratio insert/cp:  $(awk "BEGIN{printf \"%.2f\", $n / $c}")"
rm -rf "$work/store" "$work/copy"
