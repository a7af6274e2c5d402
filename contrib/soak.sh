#!/usr/bin/env bash
# The soak (issue 17): reliability evidence an order of magnitude beyond a
# CI run. Not part of CI. Run as root (mounts), from anywhere:
#
#   contrib/soak.sh                                   # the full soak (hours)
#   SOAK_PHASES=life SOAK_COMMITS=2000 contrib/soak.sh   # a short long-life run
#
# Phases (SOAK_PHASES, space-separated, default "kills model fuzz life"):
#   kills  daemon SIGKILL test: STREAMFS_DAEMON_KILLS=$SOAK_KILLS (1000)
#          kill points over its workload (tests/tests/crash_safety.rs)
#   model  reference model: $SOAK_MODEL_CASES (10000) cases of
#          $SOAK_MODEL_STEPS (30) steps (tests/tests/reference_model.rs)
#   fuzz   every fuzz target for $SOAK_FUZZ_SECONDS (3600) (contrib/fuzz.sh)
#   life   a long life in fast motion: $SOAK_COMMITS (100000) small commits
#          through a read-write mount (inserts, ln -s promotions, rm -r,
#          retention keep=3, reaping with a $SOAK_GRACE (20s) grace) while
#          nginx serves the read-only mount under wrk load; samples the
#          daemons' RSS and open descriptors every $SOAK_SAMPLE (1000)
#          commits; at the end checks meta/ keeps only the generations it
#          needs, tmp/ is empty, the pool holds exactly the referenced blobs
#          plus orphans in grace, fsck is clean, and no request failed except
#          404 (reaped paths).
#
# Figures go to $SOAK_OUT (default target/soak/<UTC time>/): summary.txt,
# samples.csv, the daemons' and nginx's logs. Exit 1 when a check fails.
# SOAK_PROFILE=debug uses the debug binaries (default release).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
phases="${SOAK_PHASES:-kills model fuzz life}"
kills="${SOAK_KILLS:-1000}"
model_cases="${SOAK_MODEL_CASES:-10000}"
model_steps="${SOAK_MODEL_STEPS:-30}"
fuzz_seconds="${SOAK_FUZZ_SECONDS:-3600}"
commits="${SOAK_COMMITS:-100000}"
grace="${SOAK_GRACE:-20s}"
sample="${SOAK_SAMPLE:-1000}"
profile="${SOAK_PROFILE:-release}"
out="${SOAK_OUT:-$repo/target/soak/$(date -u +%Y%m%dT%H%M%SZ)}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
mkdir -p "$out"
summary="$out/summary.txt"
failed=0

say() { echo "$*" | tee -a "$summary"; }
check() { # check WHAT CONDITION-COMMAND...
    local what="$1"; shift
    if "$@"; then say "ok: $what"; else say "FAILED: $what"; failed=1; fi
}

say "soak of $(git -C "$repo" rev-parse --short HEAD) on $(date -u '+%Y-%m-%d %H:%M UTC'), phases: $phases"
cd "$repo"

for phase in $phases; do
case "$phase" in
kills)
    say "== daemon SIGKILL: $kills kill points"
    if STREAMFS_DAEMON_KILLS="$kills" cargo test -p streamfs-tests --test crash_safety \
        -- --nocapture daemon >"$out/kills.log" 2>&1; then
        say "ok: $(grep -E 'kill|crash' "$out/kills.log" | tail -n 3 | tr '\n' ' ')"
    else say "FAILED: see $out/kills.log"; failed=1; fi
    ;;
model)
    say "== reference model: $model_cases cases of up to $model_steps steps"
    if STREAMFS_MODEL_CASES="$model_cases" STREAMFS_MODEL_STEPS="$model_steps" \
        cargo test -p streamfs-tests --test reference_model -- --nocapture >"$out/model.log" 2>&1; then
        say "ok: $(grep -i 'cases' "$out/model.log" | tail -n 2 | tr '\n' ' ')"
    else say "FAILED: see $out/model.log"; failed=1; fi
    ;;
fuzz)
    say "== fuzzing every target for ${fuzz_seconds}s"
    if STREAMFS_FUZZ_SECONDS="$fuzz_seconds" contrib/fuzz.sh >"$out/fuzz.log" 2>&1; then
        say "ok: $(tail -n 6 "$out/fuzz.log" | tr '\n' ' ')"
    else say "FAILED: see $out/fuzz.log"; failed=1; fi
    ;;
life)
    say "== long life: $commits commits, grace $grace, nginx + wrk on the read-only mount"
    flag=(); [ "$profile" = release ] && flag=(--release)
    cargo build "${flag[@]}" -p streamfs -p mountctl >"$out/build.log" 2>&1
    bin="$repo/target/$profile"
    work="$(mktemp -d /tmp/streamfs-soak.XXXXXX)"
    chmod 755 "$work"
    store="$work/store" rw="$work/rw" ro="$work/ro"
    mkdir -p "$rw" "$ro"
    pids=()
    cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        sleep 1
        umount "$rw" 2>/dev/null || umount -l "$rw" 2>/dev/null || true
        umount "$ro" 2>/dev/null || umount -l "$ro" 2>/dev/null || true
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        rm -rf "$work"
    }
    trap cleanup EXIT

    # The default configuration with a short grace and daily keeping its 3
    # newest versions per product; signed, as a mirror is.
    sed -e "s/^grace = .*/grace = \"$grace\"/" -e '0,/^keep = 0/s//keep = 3/' \
        core/src/store/default-store.toml >"$work/store.toml"
    "$bin/mountctl" --store "$store" init --config "$work/store.toml" >/dev/null
    "$bin/mountctl" --store "$store" keygen >/dev/null 2>&1

    "$bin/streamfs" --foreground "$store" "$rw" -o log="$out/rw.log" &
    pids+=($!); rw_pid=$!
    "$bin/streamfs" --foreground "$store" "$ro" -o ro,allow_other,log="$out/ro.log" &
    pids+=($!); ro_pid=$!
    for _ in $(seq 100); do
        findmnt "$rw" >/dev/null && findmnt "$ro" >/dev/null && break; sleep 0.1
    done

    # nginx with the shipped site on a free loopback port.
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    ng="$work/nginx"; mkdir -p "$ng"
    sed -e "0,/^\( *\)listen .*/s//\1listen 127.0.0.1:$port;/" -e '/^ *listen \[::\]/d' \
        -e "s|^\( *\)root .*|\1root $ro;|" contrib/nginx/streamfs.conf >"$ng/site.conf"
    cat >"$ng/nginx.conf" <<EOF
user www-data;
worker_processes 2;
daemon off;
pid $ng/nginx.pid;
error_log $out/nginx-error.log;
events { worker_connections 512; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $ng/body; proxy_temp_path $ng/proxy;
  fastcgi_temp_path $ng/fastcgi; uwsgi_temp_path $ng/uwsgi; scgi_temp_path $ng/scgi;
  include $ng/site.conf;
}
EOF
    nginx -c "$ng/nginx.conf" &
    pids+=($!)
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/daily/streams/v1/index.json" >/dev/null && break; sleep 0.1; done

    # wrk rounds: each GETs paths picked at random from the served tree of
    # the moment (items of live and removed versions, the signed index and
    # products files); only 200 and 404 are acceptable answers.
    cat >"$work/paths.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  paths = {}
  for line in io.lines(os.getenv("SOAK_PATHS")) do paths[#paths + 1] = line end
  ok, notfound, bad = 0, 0, 0
end
function request() return wrk.format("GET", paths[math.random(#paths)]) end
function response(status)
  if status == 200 then ok = ok + 1 elseif status == 404 then notfound = notfound + 1 else bad = bad + 1 end
end
function done(summary)
  local o, n, b = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); n = n + t:get("notfound"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d\n", o, n, b, e.connect + e.read + e.write + e.timeout))
end
EOF
    paths_file="$work/paths.txt"
    refresh_paths() {
        { echo /daily/streams/v1/index.sjson; echo /released/streams/v1/index.sjson
          (cd "$ro" && find daily released -type f -not -path '*/streams/*' 2>/dev/null | tail -n 50 | sed 's|^|/|')
          cat "$work/removed.txt" 2>/dev/null | tail -n 20; } >"$paths_file.new"
        mv "$paths_file.new" "$paths_file"
    }
    wrk_round() {
        SOAK_PATHS="$paths_file" wrk -t2 -c8 -d5s -s "$work/paths.lua" \
            "http://127.0.0.1:$port" >>"$out/wrk.log" 2>&1
    }
    refresh_paths; wrk_round & wrk_pid=$!

    echo "commit,seconds,generation,rw_rss_kb,rw_fds,ro_rss_kb,ro_fds,gen_dirs,blobs,orphans" >"$out/samples.csv"
    t0=$(date +%s)
    g0=$("$bin/mountctl" --store "$store" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
    sample_now() {
        local i="$1"
        local rss1 fd1 rss2 fd2 gen gens blobs orph
        rss1=$(awk '/VmRSS/{print $2}' /proc/$rw_pid/status); fd1=$(ls /proc/$rw_pid/fd | wc -l)
        rss2=$(awk '/VmRSS/{print $2}' /proc/$ro_pid/status); fd2=$(ls /proc/$ro_pid/fd | wc -l)
        gen=$(readlink "$store/meta/current" | sed 's|.*/0*||')
        gens=$(ls "$store/meta/gen" | wc -l)
        blobs=$(find "$store/pool" -type f | wc -l)
        orph=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$store/orphans.json" 2>/dev/null || echo 0)
        echo "$i,$(( $(date +%s) - t0 )),$gen,$rss1,$fd1,$rss2,$fd2,$gens,$blobs,$orph" >>"$out/samples.csv"
    }
    sample_now 0

    # The workload: one commit per file closed, link or removal.
    d="$rw/daily/noble/amd64" r="$rw/released/noble/amd64"
    i=0; promoted=()
    while [ "$i" -lt "$commits" ]; do
        n=$(( i / 3 )); ver=$(printf '2025%06d' "$n")
        case $(( i % 3 )) in
        0) mkdir -p "$d/$ver/ga-24.04/generic"
           printf 'kernel %s\n' "$n" >"$d/$ver/ga-24.04/generic/boot-kernel" ;;
        1) printf 'initrd %s\n' "$n" >"$d/$ver/ga-24.04/generic/boot-initrd" ;;
        2) if [ $(( n % 4 )) -eq 0 ]; then
               mkdir -p "$r"; ln -s "../../../daily/noble/amd64/$ver" "$r/$ver"
               promoted+=("$ver")
           elif [ ${#promoted[@]} -gt 3 ]; then
               old="${promoted[0]}"; promoted=("${promoted[@]:1}")
               echo "/released/noble/amd64/$old/ga-24.04/generic/boot-kernel" >>"$work/removed.txt"
               rm -r "$r/$old"
           else
               printf 'squashfs %s\n' "$n" >"$d/$ver/squashfs"
           fi ;;
        esac
        i=$(( i + 1 ))
        if [ $(( i % sample )) -eq 0 ]; then sample_now "$i"; fi
        if ! kill -0 "$wrk_pid" 2>/dev/null; then
            wait "$wrk_pid" || true; refresh_paths; wrk_round & wrk_pid=$!
        fi
    done
    wait "$wrk_pid" || true
    elapsed=$(( $(date +%s) - t0 ))
    sample_now "$i"
    g1=$("$bin/mountctl" --store "$store" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
    say "operations: $i in ${elapsed}s; generations committed: $(( g1 - g0 ))"

    # Requests: sum of every round.
    read -r ok nf bad sock < <(awk '/^WRK/{a+=$2;b+=$3;c+=$4;d+=$5} END{print a+0,b+0,c+0,d+0}' "$out/wrk.log")
    say "requests: $ok ok, $nf 404, $bad failed, $sock socket errors"
    check "no request failed except 404" [ "$bad" -eq 0 -a "$sock" -eq 0 -a "$ok" -gt 0 ]

    # Stop the load and the writers; let the last orphans' grace pass.
    first=$(sed -n '3p' "$out/samples.csv"); last=$(tail -n 1 "$out/samples.csv")
    say "samples (commit,s,gen,rw RSS kB,rw fds,ro RSS kB,ro fds,gen dirs,blobs,orphans): after warm-up $first; last $last"
    growth() { # column: percent growth from the first sample after warm-up to the last
        python3 - "$out/samples.csv" "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
col = sys.argv[2]
base = int(rows[min(1, len(rows) - 1)][col]); last = int(rows[-1][col])
print(round(100 * (last - base) / max(base, 1)))
EOF
    }
    for c in rw_rss_kb ro_rss_kb rw_fds ro_fds; do
        g=$(growth "$c"); say "$c grew ${g}% after warm-up"
        check "$c flat (under 25% growth)" [ "$g" -lt 25 ]
    done

    st="$("$bin/mountctl" --store "$store" status --json || true)"
    echo "$st" >"$out/status.json"
    gens=$(ls "$store/meta/gen" | wc -l)
    check "meta/gen keeps the current and previous generation only ($gens)" [ "$gens" -le 2 ]
    check "tmp/ is empty" [ -z "$(ls -A "$store/tmp")" ]
    python3 - "$out/status.json" "$store" >"$out/pool-check.txt" <<'EOF' && pool_ok=1 || pool_ok=0
import json, os, sys, time, email.utils
st = json.load(open(sys.argv[1])); store = sys.argv[2]
p, o = st["pool"], st["orphans"]
orph = json.load(open(os.path.join(store, "orphans.json"))) if os.path.exists(os.path.join(store, "orphans.json")) else {}
now = time.time(); interval = min(max(o["grace_secs"] / 4, 1), 60)
late = [k for k, t in orph.items() if now - email.utils.parsedate_to_datetime(t).timestamp() > o["grace_secs"] + interval + 5]
print(f"pool {p['blobs']} blobs = {p['referenced_blobs']} referenced + {o['count']} orphans; overdue orphans: {len(late)}")
sys.exit(0 if p["blobs"] == p["referenced_blobs"] + o["count"] and not late else 1)
EOF
    say "$(cat "$out/pool-check.txt")"
    check "pool = referenced blobs + orphans in grace" [ "$pool_ok" -eq 1 ]
    "$bin/mountctl" --store "$store" fsck >"$out/fsck.txt" 2>&1 && fsck_ok=1 || fsck_ok=0
    say "fsck: $(tail -n 1 "$out/fsck.txt")"
    check "fsck clean" [ "$fsck_ok" -eq 1 ]
    errs=$(grep -c ' ERROR ' "$out/rw.log" "$out/ro.log" | awk -F: '{s+=$2} END{print s+0}')
    check "no ERROR in the daemons' logs ($errs)" [ "$errs" -eq 0 ]
    cleanup; trap - EXIT
    ;;
*) echo "unknown phase $phase" >&2; exit 2 ;;
esac
done
say "result: $([ $failed -eq 0 ] && echo PASSED || echo FAILED) (figures in $out)"
exit $failed
