#!/usr/bin/env bash
# Video delivery, an Outpost edge beside Varnish and nginx (proxy_cache) on this machine, in the
# same run (bench/video_load.py is the load and, for parts 2 and 3, the origin):
#
#  1. 1 MiB fMP4 segments served as hits, each in front of the same Outpost origin (wrk -t2,
#     several rounds interleaved; medians of bytes/s and the ratios).
#  2. A live burst: 200 viewers at once on a new 1 MiB segment that the origin sends over 2 s;
#     origin requests, and each viewer's first byte after the origin's first byte (p50, p99),
#     nginx with proxy_cache_lock (its waiters get nothing until the body is complete).
#  3. 50 simulated players on a cold VOD with hashed segment names, then one alone: the share
#     of next-segment requests that are edge hits (Outpost prefetches from the playlist; the
#     peers do not), and the prefetched segments no player asked for.
#  4. LL-HLS: 1,000 viewers over the three edges of `outpost up` (on 127.0.2.x) held on
#     blocking reloads, five parts in turn: part published to viewer answered (p50, p99) and
#     the origin's requests per part.
#
#   bench/video.sh [ROUNDS] [SECONDS] [CONNECTIONS]      (PARTS="1 2 3 4" picks parts)
#
# Needs: wrk, varnishd, nginx, python3 (apt-get install wrk varnish nginx) and a release build
# (cargo build --release). Uses fixed ports on 127.0.0.53 and 127.0.2.x; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk varnish nginx" wrk varnishd nginx
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-8}
CONNECTIONS=${3:-16}
PARTS=${PARTS:-1 2 3 4}
ulimit -n 65536 2>/dev/null || true
IP=127.0.0.53
ORIGIN=$IP:18000
OUTPOST=$IP:18080
VARNISH=$IP:18081
NGINX=$IP:18082

SITE=$WORK/site
mkdir -p "$SITE/video"
head -c $((1 << 20)) /dev/urandom > "$SITE/video/seg-1.m4s"
SEGMENT=/video/seg-1.m4s

RAW="$RESULTS/video-$(date +%Y%m%d-%H%M%S).txt"
LOAD="python3 bench/video_load.py"

# start_peers UPSTREAM: an Outpost edge, Varnish and nginx in front of UPSTREAM.
start_peers() {
  local upstream=$1
  RUST_LOG=warn "$BIN" edge --listen $OUTPOST --admin $IP:19080 --upstream "http://$upstream" --name edge-bench & pids+=($!)
  varnishd -a $VARNISH -b "$upstream" -s malloc,256m -n "$WORK/varnish" -p thread_pool_min=50 >/dev/null
  cat > "$WORK/nginx.conf" <<NGINX
$(nginx_head)
  sendfile on;
  proxy_cache_path $WORK/nginx-cache keys_zone=edge:64m max_size=256m;
  upstream origin { server $upstream; keepalive 64; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_valid 200 10m;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_lock_age 10s;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
NGINX
  nginx -c "$WORK/nginx.conf"
  sleep 1
}
stop_peers() {
  stop_nginx_and_varnish
  pkill -f "outpost edge --listen $OUTPOST" 2>/dev/null || true
  rm -rf "$WORK/varnish" "$WORK/nginx-cache"
  sleep 1
}
peer_address() {
  case $1 in outpost) echo $OUTPOST;; varnish) echo $VARNISH;; nginx) echo $NGINX;; esac
}

if [[ " $PARTS " == *" 1 "* ]]; then
RUST_LOG=warn "$BIN" origin --root "$SITE" --listen $ORIGIN --admin $IP:19000 & pids+=($!)
start_peers $ORIGIN

for target in $OUTPOST $VARNISH $NGINX; do
  curl -s -o /dev/null "http://$target$SEGMENT"; curl -s -o /dev/null "http://$target$SEGMENT"
done
echo "hit check: $(curl -sI "http://$OUTPOST$SEGMENT" | grep -i cache-status | tr -d '\r')"

for round in $(seq 1 "$ROUNDS"); do
  for name in outpost varnish nginx; do
    case $name in outpost) target=$OUTPOST;; varnish) target=$VARNISH;; nginx) target=$NGINX;; esac
    rate=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://$target$SEGMENT" | awk '/Transfer\/sec/ {print $2}')
    echo "$round $name hits $rate" | tee -a "$RAW"
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
rows = [line.split() for line in open(sys.argv[1]) if line.split()[2:3] == ["hits"]]
med = {n: statistics.median(rate(r[3]) for r in rows if r[1] == n) for n in ("outpost", "varnish", "nginx")}
gbit = lambda b: b * 8 / 1e9
print(f"outpost {gbit(med['outpost']):.1f} Gbit/s  varnish {gbit(med['varnish']):.1f}  nginx {gbit(med['nginx']):.1f}"
      f"  | outpost/varnish {med['outpost'] / med['varnish']:.2f}  outpost/nginx {med['outpost'] / med['nginx']:.2f}")
PY
stop_peers
fi

if [[ " $PARTS " == *" 2 "* || " $PARTS " == *" 3 "* ]]; then
  LOAD_ORIGIN=$IP:18001
  $LOAD origin $LOAD_ORIGIN & pids+=($!)
  sleep 0.5
  start_peers $LOAD_ORIGIN
fi

if [[ " $PARTS " == *" 2 "* ]]; then
  echo
  echo "2. 200 viewers on a new live segment (1 MiB over 2 s from the origin), $ROUNDS rounds:"
  for round in $(seq 1 "$ROUNDS"); do
    for name in outpost varnish nginx; do
      result=$($LOAD burst "http://$(peer_address $name)/live/seg-$name-$round-$$.m4s" 200 "http://$LOAD_ORIGIN/stats")
      echo "$round $name burst $result" | tee -a "$RAW"
    done
  done
fi

if [[ " $PARTS " == *" 3 "* ]]; then
  echo
  echo "3. 50 players on a cold VOD of 60 hashed segments (100 ms between requests):"
  # And one player alone, whose next segment no other viewer has fetched before it.
  for players in 50 1; do
    for name in outpost varnish nginx; do
      result=$($LOAD players "http://$(peer_address $name)/vod/$name-$players-$$" $players "http://$LOAD_ORIGIN/stats")
      echo "1 $name players $result" | tee -a "$RAW"
    done
  done
fi

if [[ " $PARTS " == *" 2 "* || " $PARTS " == *" 3 "* ]]; then
  stop_peers
fi

if [[ " $PARTS " == *" 4 "* ]]; then
  echo
  echo "4. LL-HLS: 1,000 viewers held on blocking reloads over three edges, five parts:"
  "$BIN" up --print-config | sed 's/"127\.0\.0\./"127.0.2./g' > "$WORK/up.toml"
  RUST_LOG=warn,outpost::access=info "$BIN" up --config "$WORK/up.toml" --state-dir "$WORK/state" \
    > "$WORK/up.log" 2>&1 & pids+=($!)
  for _ in $(seq 1 50); do
    curl -sf -o /dev/null http://127.0.2.13:8080/video/live/media_0.m3u8 && break
    sleep 0.2
  done
  result=$($LOAD held "http://127.0.2.11:8080,http://127.0.2.12:8080,http://127.0.2.13:8080" 1000 5 "$WORK/up.log")
  echo "1 outpost held $result" | tee -a "$RAW"
fi
echo "raw: $RAW"
