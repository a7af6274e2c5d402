#!/bin/sh
# Times `mountctl query` (release build) against sstream-query on a generated
# stream of ITEMS items (default 40000), same source and arguments, and checks
# that both print the same bytes.
#
# Usage: contrib/bench/query.sh [ITEMS] [-- QUERY ARGS…]
# Env:   STREAMFS_SSTREAM_VENV (default /opt/sstream-venv), RUNS (default 5).
# Uses hyperfine when installed, else a loop timed with `date +%s.%N`.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${STREAMFS_SSTREAM_VENV:-/opt/sstream-venv}
runs=${RUNS:-5}
items=40000
if [ $# -gt 0 ] && [ "$1" != "--" ]; then items=$1; shift; fi
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || set -- streams/v1/index.json

cargo build --quiet --release -p mountctl --manifest-path "$root/Cargo.toml"
mountctl=$root/target/release/mountctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python3" "$root/contrib/bench/gen_stream.py" "$work" "$items"
cd "$work"

"$venv/bin/sstream-query" "$@" > ref.out
"$mountctl" query "$@" > our.out
cmp ref.out our.out || { echo "outputs differ" >&2; exit 1; }
echo "items: $items; output: $(wc -l < ref.out) lines, $(wc -c < ref.out) bytes, identical"

if command -v hyperfine > /dev/null; then
    # hyperfine runs command strings through a shell: quote the arguments.
    args=$("$venv/bin/python3" -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@")
    hyperfine --warmup 1 --runs "$runs" --export-json times.json \
        -n sstream-query "$venv/bin/sstream-query $args > /dev/null" \
        -n "mountctl query" "$mountctl query $args > /dev/null"
    "$venv/bin/python3" - <<'PY'
import json
res = {x["command"]: x for x in json.load(open("times.json"))["results"]}
ref, our = res["sstream-query"], res["mountctl query"]
for stat in ("mean", "median", "min"):
    print("ratio of %s times: mountctl query is %.1fx faster (%.3f s vs %.1f ms)"
          % (stat, ref[stat] / our[stat], ref[stat], our[stat] * 1000))
PY
    exit 0
fi

# Mean wall time of RUNS runs of "$@" (stdout discarded), in seconds.
mean() {
    start=$(date +%s.%N)
    i=0
    while [ $i -lt "$runs" ]; do "$@" > /dev/null; i=$((i + 1)); done
    end=$(date +%s.%N)
    echo "$start $end $runs" | awk '{ printf "%.4f", ($2 - $1) / $3 }'
}
"$venv/bin/sstream-query" "$@" > /dev/null # warm-up
"$mountctl" query "$@" > /dev/null
theirs=$(mean "$venv/bin/sstream-query" "$@")
ours=$(mean "$mountctl" query "$@")
echo "sstream-query:  ${theirs} s (mean of $runs)"
echo "mountctl query: ${ours} s (mean of $runs)"
echo "$theirs $ours" | awk '{ printf "ratio: mountctl query is %.1fx faster\n", $1 / $2 }'
