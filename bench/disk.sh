#!/usr/bin/env bash
# Disk-tier hits: an Outpost edge with 16 MiB of memory and a disk tier, beside nginx with
# proxy_cache on disk (sendfile), each in front of the same Outpost origin serving OBJECTS
# objects of 1 MiB (more than ten times the edge's memory). Both are filled, then wrk asks for
# random objects: bytes/s, medians of interleaved rounds. Also the edge's resident memory
# before and after, against its memory budget, and how many of its answers were disk hits.
#
#   bench/disk.sh [ROUNDS] [SECONDS] [CONNECTIONS] [OBJECTS]
#
# Needs: wrk, nginx (apt-get install wrk nginx), python3 and a release build. Uses fixed
# ports on 127.0.0.54; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk nginx" wrk nginx python3
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-16}
OBJECTS=${4:-200}
IP=127.0.0.54
ORIGIN=$IP:18000
OUTPOST=$IP:18080
NGINX=$IP:18082
RAW="$RESULTS/disk-$(date +%Y%m%d-%H%M%S).txt"

mkdir -p "$WORK/site/lib"
for n in $(seq 0 $((OBJECTS - 1))); do
  head -c $((1 << 20)) /dev/urandom > "$WORK/site/lib/obj-$n.bin"
done
RUST_LOG=warn "$BIN" origin --root "$WORK/site" --listen $ORIGIN --admin $IP:19000 & pids+=($!)
cat > "$WORK/edge.toml" <<TOML
[admin]
token = "bench"
[cache]
capacity_mib = 16
max_object_mib = 2
disk_mib = $((OBJECTS * 2))
disk_dir = "$WORK/disk"
[origin]
url = "http://$ORIGIN"
[[edges]]
name = "edge-disk"
listen = "$OUTPOST"
admin = "$IP:19080"
TOML
RUST_LOG=warn "$BIN" edge --config "$WORK/edge.toml" --name edge-disk & pids+=($!)
edge_pid=$!
cat > "$WORK/nginx.conf" <<NGINX
$(nginx_head)
  sendfile on;
  proxy_cache_path $WORK/nginx-cache keys_zone=edge:16m max_size=$((OBJECTS * 2))m;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_valid 200 10m;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"
sleep 1
base_rss=$(rss_kib $edge_pid)

# Fill both, twice (the second pass finds every object cached: memory or disk).
for target in $OUTPOST $NGINX; do
  for pass in 1 2; do
    for n in $(seq 0 $((OBJECTS - 1))); do curl -s -o /dev/null "http://$target/lib/obj-$n.bin"; done
    sleep 2
  done
done
disk_hits=0
for n in $(seq 0 $((OBJECTS - 1))); do
  curl -s -o /dev/null -D - "http://$OUTPOST/lib/obj-$n.bin" | grep -qi 'cache-status:.*detail=disk' && disk_hits=$((disk_hits + 1))
done
nginx_hits=$(for n in $(seq 0 $((OBJECTS - 1))); do curl -s -o /dev/null -D - "http://$NGINX/lib/obj-$n.bin"; done | grep -ci 'x-cache-status: HIT' || true)

filled_rss=$(rss_kib $edge_pid)
cat > "$WORK/random.lua" <<LUA
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/lib/obj-" .. math.random(0, $((OBJECTS - 1))) .. ".bin")
end
LUA
for round in $(seq 1 "$ROUNDS"); do
  for name in outpost nginx; do
    case $name in outpost) target=$OUTPOST;; nginx) target=$NGINX;; esac
    rate=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s "$WORK/random.lua" "http://$target" | awk '/Transfer\/sec/ {print $2}')
    echo "$round $name disk-hits $rate" | tee -a "$RAW"
  done
done
after_rss=$(rss_kib $edge_pid)
disk_bytes=$(du -sb "$WORK/disk" | cut -f1)

{
  echo
  echo "1 MiB disk-tier hits, $OBJECTS random objects, median bytes/s over $ROUNDS rounds (wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s), $(date -u +%FT%TZ)"
  python3 - "$RAW" <<'PY'
import statistics, sys
unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
def rate(text):
    for suffix in ("GB", "MB", "KB", "B"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * unit[suffix]
    return float(text)
rows = [line.split() for line in open(sys.argv[1]) if line.split()[2:3] == ["disk-hits"]]
med = {n: statistics.median(rate(r[3]) for r in rows if r[1] == n) for n in ("outpost", "nginx")}
gbit = lambda b: b * 8 / 1e9
print(f"outpost {gbit(med['outpost']):.1f} Gbit/s  nginx {gbit(med['nginx']):.1f}  | outpost/nginx {med['outpost'] / med['nginx']:.2f}")
PY
  echo "outpost answers that were disk hits: $disk_hits of $OBJECTS; nginx cache hits: $nginx_hits of $OBJECTS"
  echo "edge resident memory: $base_rss KiB at start, $filled_rss KiB filled, $after_rss KiB after the load (capacity_mib = 16); disk tier: $((disk_bytes >> 20)) MiB"
} | tee -a "$RAW"
