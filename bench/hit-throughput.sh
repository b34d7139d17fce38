#!/usr/bin/env bash
# Cache-hit throughput of an Outpost edge beside Varnish and nginx (proxy_cache), each in front
# of the same Outpost origin on this machine, in the same run. wrk drives each in turn, several
# rounds interleaved; the summary gives medians and the ratios to each peer.
#
#   bench/hit-throughput.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Needs: wrk, varnishd, nginx (apt-get install wrk varnish nginx) and a release build
# (cargo build --release). Uses fixed ports on 127.0.0.51; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk varnish nginx" wrk varnishd nginx
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-64}
IP=127.0.0.51
ORIGIN=$IP:18000
OUTPOST=$IP:18080
VARNISH=$IP:18081
NGINX=$IP:18082

RUST_LOG=warn "$BIN" origin --listen $ORIGIN --admin $IP:19000 & pids+=($!)
RUST_LOG=warn "$BIN" edge --listen $OUTPOST --admin $IP:19080 --upstream http://$ORIGIN --name edge-bench & pids+=($!)
varnishd -a $VARNISH -b $ORIGIN -s malloc,256m -n "$WORK/varnish" -p thread_pool_min=50 >/dev/null
cat > "$WORK/nginx.conf" <<NGINX
$(nginx_head)
  proxy_cache_path $WORK/nginx-cache keys_zone=edge:64m max_size=256m;
  upstream origin { server $ORIGIN; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"
sleep 1

ASSET=$(curl -s http://$ORIGIN/ | grep -o '/assets/app\.[0-9a-f]*\.js' | head -1)
PATHS=("/" "$ASSET")
for target in $OUTPOST $VARNISH $NGINX; do
  for path in "${PATHS[@]}"; do
    curl -s -o /dev/null "http://$target$path"; curl -s -o /dev/null "http://$target$path"
  done
done
echo "hit check:"
curl -sI "http://$OUTPOST$ASSET" | grep -i cache-status || true
curl -sI "http://$VARNISH$ASSET" | grep -i -E "^(age|x-varnish)" || true
curl -sI "http://$NGINX$ASSET" | grep -i x-cache-status || true

RAW="$RESULTS/hit-throughput-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for path in "${PATHS[@]}"; do
    for name in outpost varnish nginx; do
      case $name in outpost) target=$OUTPOST;; varnish) target=$VARNISH;; nginx) target=$NGINX;; esac
      summary=$(wrk --latency -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://$target$path" | wrk_summary)
      echo "$round $name $path $summary" | tee -a "$RAW"
    done
  done
done

echo
echo "median requests/s and p99 latency over $ROUNDS rounds (wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s), raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
paths = sorted({r[2] for r in rows})
for path in paths:
    med = {n: statistics.median(float(r[3]) for r in rows if r[1] == n and r[2] == path)
           for n in ("outpost", "varnish", "nginx")}
    print(f"{path}: outpost {med['outpost']:.0f}  varnish {med['varnish']:.0f}  nginx {med['nginx']:.0f}"
          f"  | outpost/varnish {med['outpost']/med['varnish']:.2f}  outpost/nginx {med['outpost']/med['nginx']:.2f}")
    p99 = {n: statistics.median(float(r[4]) for r in rows if r[1] == n and r[2] == path)
           for n in ("outpost", "varnish", "nginx")}
    print(f"{path} p99 latency (us): outpost {p99['outpost']:.0f}  varnish {p99['varnish']:.0f}  nginx {p99['nginx']:.0f}")
PY
