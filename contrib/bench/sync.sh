#!/bin/bash
# Times `mountctl sync` (release build) against the native baseline
# (`xargs -P4 curl -o`, the same files to the same disk) and against
# `sstream-mirror`, all from nginx on 127.0.0.1; reports peak RSS; then times
# the re-sync of an up-to-date generated stream of ITEMS items (default
# 40000) beside sstream-mirror's.
#
# Usage: contrib/bench/sync.sh            (as root: nginx's workers run as www-data)
# Env:   BIG_MB (default 1024: three items of this size), SMALL (default
#        1000 small items of 64 KiB), ITEMS (default 40000),
#        STREAMFS_SSTREAM_VENV (default /opt/sstream-venv), TMPDIR (the disk),
#        MOUNTCTL (a release binary to use instead of building one),
#        PARTS (default "throughput resync": which measurements to run),
#        SSTREAM_MIRROR=0 (skip sstream-mirror's re-sync: its first copy of
#        the generated stream takes about 45 minutes).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${STREAMFS_SSTREAM_VENV:-/opt/sstream-venv}
big_mb=${BIG_MB:-1024}
small=${SMALL:-1000}
items=${ITEMS:-40000}
parts=${PARTS:-throughput resync}

if [ -z "${MOUNTCTL:-}" ]; then
    cargo build --quiet --release -p mountctl --manifest-path "$root/Cargo.toml"
fi
mountctl=${MOUNTCTL:-$root/target/release/mountctl}
work=$(mktemp -d)
chmod 755 "$work"
nginx_pid=
cleanup() {
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2> /dev/null && wait "$nginx_pid" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The upstream tree: three big items and SMALL small ones, one products file
# (written only when the throughput is measured).
mirror=$work/mirror
[[ $parts != *throughput* ]] || "$venv/bin/python3" - "$mirror" "$big_mb" "$small" <<'PY'
import hashlib, json, os, sys
root, big_mb, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
products = {}
def item(product, version, name, chunks):
    path = "%s/%s/%s" % (product, version, name)
    f = os.path.join(root, path)
    os.makedirs(os.path.dirname(f), exist_ok=True)
    h, size = hashlib.sha256(), 0
    with open(f, "wb") as out:
        for c in chunks:
            out.write(c); h.update(c); size += len(c)
    p = products.setdefault("com.example:" + product, {"arch": "amd64", "versions": {}})
    p["versions"].setdefault(version, {"items": {}})["items"][name] = {
        "ftype": name, "path": path, "size": size, "sha256": h.hexdigest()}
for b in range(3):
    seed = os.urandom(1 << 20)
    item("big%d" % b, "20260101", "disk.img", (seed for _ in range(big_mb)))
for s in range(small):
    item("small%d" % (s // 10), "2026010%d" % (s % 10), "file.bin", [os.urandom(64 << 10)])
v1 = os.path.join(root, "streams/v1")
os.makedirs(v1, exist_ok=True)
json.dump({"format": "products:1.0", "content_id": "com.example:download",
           "datatype": "image-downloads", "updated": "Thu, 03 Dec 2026 00:00:00 +0000",
           "products": products}, open(os.path.join(v1, "download.json"), "w"))
PY
case $parts in *resync*)
    "$venv/bin/python3" "$root/contrib/bench/gen_stream.py" --data "$work/big-stream" "$items" ;;
esac
chmod -R a+rX "$work"

port=$("$venv/bin/python3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
user www-data;
worker_processes 2;
daemon off;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$port; root $work; }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
nginx_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
url=http://127.0.0.1:$port/mirror/

now() { date +%s.%N; }
# The served files stay in the page cache for all three clients (the
# machine is shared: its caches are not dropped); what is measured is the
# client's side: receive, verify, write, fsync.
drop() { sync; }

if [[ $parts == *throughput* ]]; then
bytes=$(du -sb --exclude=streams "$mirror" | cut -f1)
echo "data: 3 x $big_mb MiB + $small x 64 KiB = $bytes bytes"
# Baseline: curl, 4 at a time, the same files to the same disk (+ sync).
(cd "$mirror" && find . -path ./streams -prune -o -type f -printf '%P\n') |
    awk -v d="$work/curl" -v u="$url" '{print d "/" $0 " " u $0}' > "$work/urls"
drop
t0=$(now)
xargs -P4 -n2 curl -sf --create-dirs -o < "$work/urls"
sync
t_curl=$(echo "$(now) - $t0" | bc)
rm -rf "$work/curl"

# mountctl sync (verifies, fsyncs every blob, commits), peak RSS from time -v.
"$mountctl" --store "$work/store" init > /dev/null
drop
t0=$(now)
/usr/bin/time -v -o "$work/time.txt" \
    "$mountctl" --store "$work/store" sync -q -U --content-id com.example:download "${url}streams/v1/download.json" daily
sync
t_ours=$(echo "$(now) - $t0" | bc)
rss_kb=$(awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")

# sstream-mirror (checksums as it writes, like ours).
drop
t0=$(now)
"$venv/bin/sstream-mirror" --no-verify --path streams/v1/download.json "$url" "$work/sm" > /dev/null 2>&1
sync
t_sm=$(echo "$(now) - $t0" | bc)
rm -rf "$work/sm" "$work/store"

echo "curl -P4:      ${t_curl}s"
echo "mountctl sync: ${t_ours}s (peak RSS $((rss_kb / 1024)) MB)"
echo "sstream-mirror: ${t_sm}s"
echo "mountctl sync speed vs curl: $(echo "scale=2; $t_curl / $t_ours" | bc)x (target >= 0.8)"
echo "mountctl sync vs sstream-mirror: $(echo "scale=2; $t_sm / $t_ours" | bc)x faster (target >= 3)"
fi
[[ $parts == *resync* ]] || exit 0

# Re-sync of an up-to-date stream of ITEMS items.
big=$(ls "$work/big-stream/streams/v1/"*.json)
big_url=http://127.0.0.1:$port/big-stream/streams/v1/$(basename "$big")
"$mountctl" --store "$work/store" init > /dev/null
"$mountctl" --store "$work/store" sync -q -U --content-id com.example.bench:v1:download "$big_url" daily
# Three re-syncs: the first right after the sync that filled the stream,
# then two more; the figure is their median.
res=()
for _ in 1 2 3; do
    t0=$(now)
    "$mountctl" --store "$work/store" sync -q -U --content-id com.example.bench:v1:download "$big_url" daily
    res+=("$(echo "$(now) - $t0" | bc)")
done
t_re=$(printf '%s\n' "${res[@]}" | sort -g | sed -n 2p)
echo "re-sync of an up-to-date $items-item stream: mountctl ${t_re}s, median of ${res[*]} (target < 1 s)"
[ "${SSTREAM_MIRROR:-1}" = 0 ] && exit 0
# sstream-mirror fetches one file at a time: its first copy of ITEMS items
# takes many minutes, so its target starts as what that first copy writes
# (the same paths and products file), and one untimed run adds its own
# bookkeeping (.data/references.json) without downloading. The timed run
# is then a re-sync of a target it considers its own and up to date.
cp -a "$work/big-stream" "$work/sm-big"
sm_sync() {
    "$venv/bin/sstream-mirror" --no-verify --path "streams/v1/$(basename "$big")" \
        "http://127.0.0.1:$port/big-stream/" "$work/sm-big" > /dev/null 2>&1
}
sm_sync
touch "$work/marker"
t0=$(now)
sm_sync
t_sm_re=$(echo "$(now) - $t0" | bc)
rewritten=$(find "$work/sm-big" -type f ! -path '*/streams/*' ! -path '*/.data/*' -newer "$work/marker" | wc -l)
echo "re-sync of an up-to-date $items-item stream: sstream-mirror ${t_sm_re}s ($rewritten data files rewritten)"
echo "mountctl sync re-sync vs sstream-mirror: $(echo "scale=2; $t_sm_re / $t_re" | bc)x faster"
