#!/usr/bin/env bash
# Crawl of 50 mirrors x 3 streams, parallel (-j 16) vs sequential (-j 1),
# and the time to generate a metalink for a stream file.
#
# One nginx with 50 server blocks on loopback ports, all serving the same
# exported tree of three streams (each with the scenario builds' items);
# `mountctl mirrors crawl --items sample` downloads every streams/v1 file of
# each stream and HEADs three items per stream on every mirror.
#
#   contrib/bench/mirrors.sh [WORKDIR]
#
# MOUNTCTL=target/debug/mountctl uses that binary instead of a release build
# (dependencies are built with opt-level 2 in the dev profile too).
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d /var/tmp/streamfs-bench-mirrors.XXXXXX)}"
fixtures="${STREAMFS_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
builds="$fixtures/maas-images/golden/util-scenario/builds"
if [ -n "${MOUNTCTL:-}" ]; then
    m="$(realpath "$MOUNTCTL")"
else
    cargo build --release -q -p mountctl
    m="$PWD/target/release/mountctl"
fi
rm -rf "$work/store" "$work/www" "$work/nginx"
mkdir -p "$work/www" "$work/nginx"
store="$work/store"
cat > "$work/store.toml" <<'TOML'
grace = "3d"
[[stream]]
name = "s1"
content_id = "org.example:s1"
datatype = "image-ids"
product_id = "org.example:s1:{version}:{arch}:{subarch+kflavor}"
paths = ["{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}", "{release}/{arch}/{version_name}/{ftype}"]
[[stream]]
name = "s2"
content_id = "org.example:s2"
datatype = "image-ids"
product_id = "org.example:s2:{version}:{arch}:{subarch+kflavor}"
paths = ["{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}", "{release}/{arch}/{version_name}/{ftype}"]
[[stream]]
name = "s3"
content_id = "org.example:s3"
datatype = "image-ids"
product_id = "org.example:s3:{version}:{arch}:{subarch+kflavor}"
paths = ["{release}/{arch}/{version_name}/{subarch}/{kflavor}/{ftype}", "{release}/{arch}/{version_name}/{ftype}"]
TOML
"$m" --store "$store" init --config "$work/store.toml" > /dev/null
for s in s1 s2 s3; do
    for b in "$builds"/build-*.d; do "$m" --store "$store" insert "$b" "$s" > /dev/null; done
    "$m" --store "$store" export "$s" "$work/www/$s" > /dev/null
done
chmod -R a+rX "$work"

servers=""
base=$((20000 + RANDOM % 20000))
for i in $(seq 0 49); do
    port=$((base + i))
    servers+="server { listen 127.0.0.1:$port; root $work/www; }"$'\n'
    "$m" --store "$store" mirrors add "m$i" "http://127.0.0.1:$port/" --preference $((100 - i % 50)) > /dev/null
done
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  $servers
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
ngx=$!
trap 'kill $ngx 2>/dev/null; wait $ngx 2>/dev/null' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((base + 49))") 2>/dev/null && break
    sleep 0.1
done

runs=${RUNS:-5}
hyperfine --warmup 1 --runs "$runs" --export-json "$work/crawl.json" \
    -n "crawl -j 1" "$m --store $store mirrors crawl -j 1 --items sample" \
    -n "crawl -j 16" "$m --store $store mirrors crawl -j 16 --items sample"
requests=$(grep -c . "$work/nginx/access.log")
echo "requests per mirror per crawl: $("$m" --store "$store" mirrors crawl -j 16 | awk -F'[(]' '{print $2}' | sort -u | tr -d ')\n')"
echo "access log lines (all runs): $requests"
hyperfine --warmup 3 --runs 50 -N \
    -n "metalink index.json" "$m --store $store metalink --stream s1 streams/v1/index.json" \
    -n "metalink products file" "$m --store $store metalink --stream s1 streams/v1/org.example:s1.json" \
    -n "mountctl --version (process start)" "$m --version"
