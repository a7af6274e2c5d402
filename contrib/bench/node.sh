#!/usr/bin/env bash
# Node imaging benchmark: one image loaded onto 8 nodes vs onto 1 (the chain
# should keep 8 within 1.5x of 1), the chain vs 8 parallel HTTP pulls from
# nginx serving the read-only mount (`--http`), the -b cap's accuracy, and
# the host's CPU time and peak RSS while sending. Agents are streamfs-node processes on
# 127.0.0.1, each with a file as its disk; one fake CMC answers for all.
#
# Usage: contrib/bench/node.sh [MIB] [PROFILE]   (default 256 MiB, debug:
# the workspace's dependencies, zstd and sha2, are optimized in it too)
# Env: NET_MBPS (200): the per-hop cap of the network-bound 1-vs-8 run.
set -euo pipefail
MIB=${1:-256}
PROFILE=${2:-debug}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$ROOT" && cargo build -q "${flag[@]}" -p mountctl -p streamfs-node -p streamfs)
BIN=$ROOT/target/$PROFILE
W=$(mktemp -d /tmp/node-bench.XXXXXX)
pids=()
cleanup() {
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  mountpoint -q "$W/mnt" && { umount "$W/mnt" || umount -l "$W/mnt"; } 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The disk: a quarter noise, a quarter text, the rest zeros (as a fresh system).
q=$((MIB / 4))
head -c $((q << 20)) /dev/urandom > disk.img
python3 -c "import sys; sys.stdout.buffer.write((b'streamfs node image benchmark\n' * (($q << 20) // 30 + 1))[:$q << 20])" >> disk.img
truncate -s $((MIB << 20)) disk.img
cat > store.toml <<'T'
[[stream]]
name = "images"
content_id = "org.streamfs:node-images"
datatype = "image-downloads"
product_id = "{name}"
paths = ["{name}/{version_name}/{ftype}"]
T
echo "bench-key-0123456789abcdef" > key
mkdir pxe
export STREAMFS_IMAGING_CONF=$W/imaging.conf STREAMFS_STORE=$W/s
"$BIN/mountctl" init --config store.toml >/dev/null
"$BIN/mountctl" node import disk.img -o bench >/dev/null

cmc=$(port)
python3 - "$cmc" <<'P' &
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"on" if self.path == "/status" else b"ok"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
P
pids+=($!)
echo "[" > inventory.json
for i in 1 2 3 4 5 6 7 8; do
  p=$(port)
  truncate -s $((MIB << 20)) "disk$i"
  RUST_LOG=warn "$BIN/streamfs-node" --listen "127.0.0.1:$p" --disk "disk$i" --key key & pids+=($!)
  sep=,; [ $i = 8 ] && sep=
  printf '{"cmc":{"hostname":"reboot%02d","ip":"127.0.0.1","mac":"02:00:00:00:00:%02x","port":%d},"control":{"hostname":"fit%02d","ip":"127.0.0.1","mac":"00:03:1d:0e:03:%02x","port":%d}}%s\n' \
    "$i" "$i" "$cmc" "$i" "$i" "$p" "$sep" >> inventory.json
done
echo "]" >> inventory.json
cat > imaging.conf <<C
[testbed]
inventory = $W/inventory.json
[nodes]
key_file = $W/key
log_dir = $W/logs
[pxelinux]
config_dir = $W/pxe
C
sleep 0.5

# Seconds of the chain transfer, from the node logs of the last run.
last_log() { grep -h 'chain transfer' "$(ls -d logs/* | sort | tail -1)"/*.log | head -1; }
transfer_secs() { last_log | sed 's/.* all written in \([0-9.]*\) s.*/\1/'; }
sent_mbps() { last_log | sed 's/.* s (\([0-9.]*\) Mbit\/s).*/\1/'; }
run() { # label, mountctl args…: wall time, chain time, host CPU and RSS
  local label=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o time.txt "$BIN/mountctl" node load -i bench "$@" >/dev/null
  read -r wall user sys rss < time.txt
  local t; t=$(transfer_secs)
  printf '%-22s wall %6.2f s  transfer %6.2f s  host cpu %5.2f s  rss %6.1f MiB\n' "$label" "$wall" "$t" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
  echo "$t" > "last.$label"
}
sha=$(sha256sum disk.img | cut -c1-64)
echo "image: $MIB MiB disk, $(du -h "$(find s/pool -type f | head -1)" | cut -f1) stored; profile $PROFILE; $(nproc) CPUs (shared, loaded)"
run one-node 1
run eight-nodes 1-8
for i in 1 2 3 4 5 6 7 8; do [ "$(sha256sum "disk$i" | cut -c1-64)" = "$sha" ] || { echo "disk$i differs"; exit 1; }; done
echo "ratio 8 nodes / 1 node (transfer): $(echo "$(cat last.eight-nodes) / $(cat last.one-node)" | bc -l | cut -c1-5)"
for cap in 50 100; do
  run "cap-$cap" -b "$cap" 1
  echo "  -b $cap: sent at $(sent_mbps) Mbit/s"
done
# Links as slow as a testbed's (-b caps every hop of the chain): the load is
# bound by the network, as on real nodes that each bring their own CPU, not
# by eight agents sharing this machine's CPUs. Eight should take about the
# time of one.
for i in 1 2 3 4 5 6 7 8; do truncate -s 0 "disk$i"; truncate -s $((MIB << 20)) "disk$i"; done
run net-one -b "${NET_MBPS:-200}" 1
run net-eight -b "${NET_MBPS:-200}" 1-8
for i in 1 2 3 4 5 6 7 8; do [ "$(sha256sum "disk$i" | cut -c1-64)" = "$sha" ] || { echo "disk$i differs"; exit 1; }; done
echo "ratio 8 nodes / 1 node at -b ${NET_MBPS:-200} (transfer): $(echo "$(cat last.net-eight) / $(cat last.net-one)" | bc -l | cut -c1-5)"

# The chain vs 8 parallel HTTP pulls from nginx serving the read-only mount.
chmod 755 "$W"; mkdir mnt
RUST_LOG=warn "$BIN/streamfs" s mnt -o ro,allow_other --foreground 2>streamfs.log & pids+=($!)
for _ in $(seq 100); do mountpoint -q mnt && break; sleep 0.1; done
ngx=$(port)
cat > nginx.conf <<N
user www-data; worker_processes 2; pid $W/nginx.pid; error_log $W/nginx.err;
events {}
http { access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;
  client_body_temp_path $W/nginx-tmp; proxy_temp_path $W/nginx-tmp; fastcgi_temp_path $W/nginx-tmp;
  uwsgi_temp_path $W/nginx-tmp; scgi_temp_path $W/nginx-tmp;
  server { listen 127.0.0.1:$ngx; root $W/mnt; } }
N
mkdir nginx-tmp; nginx -c "$W/nginx.conf"
printf '[images]\nhttp_url = http://127.0.0.1:%d\n' "$ngx" >> imaging.conf
for i in 1 2 3 4 5 6 7 8; do truncate -s 0 "disk$i"; truncate -s $((MIB << 20)) "disk$i"; done
/usr/bin/time -f '%e %U %S %M' -o time.txt "$BIN/mountctl" node load -i bench --http 1-8 >/dev/null
read -r wall user sys rss < time.txt
printf '%-22s wall %6.2f s  host cpu %5.2f s  rss %6.1f MiB\n' http-eight "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
for i in 1 2 3 4 5 6 7 8; do [ "$(sha256sum "disk$i" | cut -c1-64)" = "$sha" ] || { echo "disk$i differs (HTTP)"; exit 1; }; done
/usr/bin/time -f '%e' -o time.txt "$BIN/mountctl" node load -i bench 1-8 >/dev/null
echo "chain (wall, same conditions): $(cat time.txt) s; ratio 8 HTTP pulls / chain (wall): $(echo "$wall / $(cat time.txt)" | bc -l | cut -c1-5)"
