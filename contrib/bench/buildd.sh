#!/usr/bin/env bash
# The build service's queue on SQLite and on PostgreSQL:
#  - submit-to-start latency with an idle worker (p50, p99 over N builds
#    submitted one at a time; the server's own created/started timestamps);
#  - claim throughput: 8 workers, 1,000 queued no-op builds (the builder is
#    `false`, so each build is claimed, run and finished without an insert);
#  - listing 10,000 builds: the first page (GET /api/v1/builds, 100 builds,
#    curl's total time) and every page by the `next` cursor (pages of 1,000,
#    one HTTP connection, Python's urllib).
#
#   contrib/bench/buildd.sh [WORKDIR]        # as root (PostgreSQL runs as postgres)
#   PROFILE=debug contrib/bench/buildd.sh    # skip the release build
#   MOUNTCTL=target/debug/mountctl contrib/bench/buildd.sh   # build only the server
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d /var/tmp/streamfs-bench-buildd.XXXXXX)}"
chmod 755 "$work"
profile="${PROFILE:-release}"
# MOUNTCTL=PATH: an already built mountctl (it only creates the stores).
pkgs=(-p streamfs-buildd)
[ -n "${MOUNTCTL:-}" ] || pkgs+=(-p mountctl)
# BIN=DIR: use the binaries already built there (no cargo build).
if [ -n "${BIN:-}" ]; then
    :
elif [ "$profile" = release ]; then
    cargo build --release -q "${pkgs[@]}"
else
    cargo build -q "${pkgs[@]}"
fi
bin="${BIN:-$PWD/target/$profile}"
mountctl="${MOUNTCTL:-$bin/mountctl}"
n_latency="${N_LATENCY:-200}"
n_jobs="${N_JOBS:-1000}"
n_list="${N_LIST:-10000}"
pids=()
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgdir="$work/pg"
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -d "$pgdir/data" ]; then runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$pgdir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One PostgreSQL cluster for the run.
mkdir -p "$pgdir"; chown postgres "$pgdir"
pgport=$(port)
runuser -u postgres -- "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust --no-sync >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null

percentile() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'; }

run_db() {
    local name=$1 db=$2
    local store="$work/$name/store"
    mkdir -p "$work/$name"
    "$mountctl" --store "$store" init >/dev/null
    [ "$db" = default ] && db="sqlite:$store/builds.db"
    "$bin/streamfs-buildd" token create --store "$store" --db "$db" --role submit > "$work/$name/submit"
    "$bin/streamfs-buildd" token create --store "$store" --db "$db" --role worker > "$work/$name/worker"
    local p; p=$(port)
    local url="http://127.0.0.1:$p"
    RUST_LOG=warn "$bin/streamfs-buildd" serve --store "$store" --db "$db" --listen "127.0.0.1:$p" 2>"$work/$name/server.log" &
    pids+=($!)
    until curl -s "$url/" >/dev/null; do sleep 0.1; done
    local auth="Authorization: Bearer $(cat "$work/$name/submit")"
    submit() { curl -s -H "$auth" -H 'Content-Type: application/json' \
        --data "{\"arch\":\"$1\",\"release\":\"noble\",\"version\":\"$2\",\"source\":\"noop\",\"stream\":\"daily\"}" "$url/api/v1/builds" >/dev/null; }
    worker() { RUST_LOG=warn "$bin/streamfs-buildd" worker --server "$url" --arch "$1" --id "$2" \
        --token-file "$work/$name/worker" --build-cmd false --work-dir "$work/$name/w-$2" 2>/dev/null & pids+=($!); }

    # Latency: one idle worker, builds submitted one at a time.
    worker lat lat1
    sleep 1
    for i in $(seq 1 "$n_latency"); do
        submit lat "l$i"
        sleep 0.05
    done
    sleep 2
    curl -s -H "$auth" "$url/api/v1/builds?arch=lat&limit=1000" | python3 -c '
import json,sys
for b in json.load(sys.stdin)["builds"]:
    if b["started"]: print(b["started"]-b["created"])' > "$work/$name/latency"
    echo "$name submit-to-start ms: p50 $(percentile 50 < "$work/$name/latency") p99 $(percentile 99 < "$work/$name/latency") (n=$(wc -l < "$work/$name/latency"))"

    # Throughput: 1,000 queued, then 8 workers.
    for i in $(seq 1 "$n_jobs"); do submit tp "t$i"; done
    local t0; t0=$(date +%s.%N)
    for w in 1 2 3 4 5 6 7 8; do worker tp "tp$w"; done
    until [ "$(curl -s -H "$auth" "$url/api/v1/builds?arch=tp&state=queued&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["builds"]))')" = 0 ] &&
          [ "$(curl -s -H "$auth" "$url/api/v1/builds?arch=tp&state=running&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["builds"]))')" = 0 ]; do
        sleep 0.2
    done
    local t1; t1=$(date +%s.%N)
    echo "$name claim throughput: $n_jobs builds by 8 workers in $(echo "$t1 - $t0" | bc) s: $(echo "$n_jobs / ($t1 - $t0)" | bc) builds/s"

    # Listing: fill up to n_list builds, list them all.
    local have=$((n_latency + n_jobs))
    for i in $(seq "$have" "$((n_list - 1))"); do submit list "x$i"; done
    for _ in 1 2 3 4 5; do
        curl -s -o /dev/null -w "%{time_total}\n" -H "$auth" "$url/api/v1/builds"
    done | percentile 50 | awk -v n="$name" -v c="$n_list" '{printf "%s listing %d builds, first page (100): %.1f ms (median of 5)\n", n, c, $1*1000}'
    for _ in 1 2 3; do
        python3 - "$url" "$(cat "$work/$name/submit")" <<'PY'
import http.client, json, sys, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port)
hdrs = {"Authorization": "Bearer " + sys.argv[2]}
t0, n, before = time.perf_counter(), 0, None
while True:
    q = "/api/v1/builds?limit=1000" + (f"&before={before}" if before else "")
    conn.request("GET", q, headers=hdrs)
    page = json.loads(conn.getresponse().read())
    n += len(page["builds"])
    before = page["next"]
    if before is None:
        break
print(time.perf_counter() - t0, n)
PY
    done | sort -n | sed -n 2p | awk -v n="$name" '{printf "%s listing all %d builds by cursor (pages of 1000): %.1f ms (median of 3)\n", n, $2, $1*1000}'
}

run_db sqlite default
run_db postgres "postgres://postgres@127.0.0.1:$pgport/postgres"
