#!/usr/bin/env bash
# Video segments served as cache hits: an Outpost edge beside Varnish and nginx (proxy_cache),
# each in front of the same Outpost origin on this machine, in the same run, serving the same
# 1 MiB fMP4 segment (wrk -t2, several rounds interleaved; medians of bytes/s and the ratios).
# This is part (1) of issue 13's video bench; the live burst, prefetch and LL-HLS parts are
# not written yet.
#
#   bench/video.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Needs: wrk, varnishd, nginx (apt-get install wrk varnish nginx) and a release build
# (cargo build --release). Uses fixed ports on 127.0.0.53; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk varnish nginx" wrk varnishd nginx
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-8}
CONNECTIONS=${3:-16}
IP=127.0.0.53
ORIGIN=$IP:18000
OUTPOST=$IP:18080
VARNISH=$IP:18081
NGINX=$IP:18082
bench_cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  pkill -f "varnishd.*$VARNISH" 2>/dev/null || true
}

SITE=$WORK/site
mkdir -p "$SITE/video"
head -c $((1 << 20)) /dev/urandom > "$SITE/video/seg-1.m4s"
SEGMENT=/video/seg-1.m4s

RUST_LOG=warn "$BIN" origin --root "$SITE" --listen $ORIGIN --admin $IP:19000 & pids+=($!)
RUST_LOG=warn "$BIN" edge --listen $OUTPOST --admin $IP:19080 --upstream http://$ORIGIN --name edge-bench & pids+=($!)
varnishd -a $VARNISH -b $ORIGIN -s malloc,256m -n "$WORK/varnish" -p thread_pool_min=50 >/dev/null
cat > "$WORK/nginx.conf" <<NGINX
user root;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  proxy_cache_path $WORK/nginx-cache keys_zone=edge:64m max_size=256m;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_valid 200 10m;
    }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"
sleep 1

for target in $OUTPOST $VARNISH $NGINX; do
  curl -s -o /dev/null "http://$target$SEGMENT"; curl -s -o /dev/null "http://$target$SEGMENT"
done
echo "hit check: $(curl -sI "http://$OUTPOST$SEGMENT" | grep -i cache-status | tr -d '\r')"

RAW="$RESULTS/video-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for name in outpost varnish nginx; do
    case $name in outpost) target=$OUTPOST;; varnish) target=$VARNISH;; nginx) target=$NGINX;; esac
    rate=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://$target$SEGMENT" | awk '/Transfer\/sec/ {print $2}')
    echo "$round $name $rate" | tee -a "$RAW"
  done
done

echo
echo "1 MiB segment hits, median bytes/s over $ROUNDS rounds (wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s), raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
def rate(text):
    for suffix in ("GB", "MB", "KB", "B"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * unit[suffix]
    return float(text)
rows = [line.split() for line in open(sys.argv[1])]
med = {n: statistics.median(rate(r[2]) for r in rows if r[1] == n) for n in ("outpost", "varnish", "nginx")}
gbit = lambda b: b * 8 / 1e9
print(f"outpost {gbit(med['outpost']):.1f} Gbit/s  varnish {gbit(med['varnish']):.1f}  nginx {gbit(med['nginx']):.1f}"
      f"  | outpost/varnish {med['outpost'] / med['varnish']:.2f}  outpost/nginx {med['outpost'] / med['nginx']:.2f}")
PY
