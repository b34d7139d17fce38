#!/usr/bin/env bash
# TLS at the edge beside nginx terminating TLS with the same certificate, on this machine in
# the same run: full and resumed handshakes per second with one client (openssl s_time), full
# handshakes per second under CONNECTIONS clients (wrk sending `Connection: close`, so every
# request is a new TLS connection), HTTPS cache-hit throughput (wrk over keep-alive
# connections) beside Outpost's own plain HTTP, and HTTP/2 hits over TLS (h2load -c32 -m10).
# Several rounds, interleaved; the summary gives medians and ratios.
#
#   bench/tls.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Needs: wrk, h2load, nginx, openssl (apt-get install wrk nghttp2-client nginx openssl) and a
# release build.
# Uses fixed ports on 127.0.0.52; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk nghttp2-client nginx openssl" wrk h2load nginx openssl
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-5}
CONNECTIONS=${3:-64}
IP=127.0.0.52

cat > "$WORK/outpost.toml" <<TOML
[admin]
token = "bench"
[tls]
state_dir = "$WORK/state"
[origin]
listen = "$IP:18000"
admin = "$IP:19000"
[[edges]]
name = "edge-bench"
listen = "$IP:18080"
https = "$IP:18443"
admin = "$IP:19080"
TOML
RUST_LOG=warn "$BIN" up --config "$WORK/outpost.toml" & pids+=($!)
sleep 1.5

cat > "$WORK/nginx.conf" <<NGINX
$(nginx_head)
  proxy_cache_path $WORK/nginx-cache keys_zone=edge:64m max_size=256m;
  upstream origin { server $IP:18000; keepalive 64; }
  ssl_session_cache shared:tls:10m;
  ssl_session_tickets on;
  server {
    listen $IP:18444 ssl http2;
    ssl_certificate $WORK/state/edge.pem;
    ssl_certificate_key $WORK/state/edge.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
    }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"
sleep 0.5

ASSET=$(curl -s http://$IP:18000/ | grep -o '/assets/app\.[0-9a-f]*\.js' | head -1)
for url in "http://$IP:18080$ASSET" "https://$IP:18443$ASSET" "https://$IP:18444$ASSET"; do
  curl -sk -o /dev/null "$url"; curl -sk -o /dev/null "$url"
done

RAW="$RESULTS/tls-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for name in outpost-https nginx-https outpost-http; do
    case $name in
      outpost-https) url="https://$IP:18443$ASSET";;
      nginx-https) url="https://$IP:18444$ASSET";;
      outpost-http) url="http://$IP:18080$ASSET";;
    esac
    rps=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$url" | awk '/Requests\/sec/ {print $2}')
    echo "$round hits $name $rps" | tee -a "$RAW"
  done
  for name in outpost nginx; do
    port=18443; [ $name = nginx ] && port=18444
    for mode in new reuse; do
      per_sec=$(openssl s_time -connect $IP:$port -$mode -time "$SECONDS_PER_RUN" 2>/dev/null \
        | awk '/connections in .* real seconds/ {print $1/$4}' | tail -1)
      echo "$round handshakes-$mode $name $per_sec" | tee -a "$RAW"
    done
    per_sec=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -H 'Connection: close' \
      "https://$IP:$port$ASSET" | awk '/Requests\/sec/ {print $2}')
    echo "$round handshakes-many $name $per_sec" | tee -a "$RAW"
    rps=$(h2load -t2 -c32 -m10 -D "$SECONDS_PER_RUN" "https://$IP:$port$ASSET" \
      | awk '/^finished in/ {print $4}')
    echo "$round h2-hits $name $rps" | tee -a "$RAW"
  done
done

echo
echo "medians over $ROUNDS rounds; raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 4]
def med(kind, name):
    vals = [float(r[3]) for r in rows if r[1] == kind and r[2] == name]
    return statistics.median(vals) if vals else float("nan")
oh, nh, op = med("hits", "outpost-https"), med("hits", "nginx-https"), med("hits", "outpost-http")
print(f"HTTPS hit requests/s: outpost {oh:.0f}, nginx {nh:.0f} (outpost/nginx {oh/nh:.2f}); outpost plain HTTP {op:.0f} (https/http {oh/op:.2f})")
for mode in ("new", "reuse"):
    o, n = med(f"handshakes-{mode}", "outpost"), med(f"handshakes-{mode}", "nginx")
    label = "full" if mode == "new" else "resumed"
    print(f"{label} handshakes/s (openssl s_time, one client): outpost {o:.0f}, nginx {n:.0f} (outpost/nginx {o/n:.2f})")
o, n = med("handshakes-many", "outpost"), med("handshakes-many", "nginx")
print(f"full handshakes/s under many clients (wrk, Connection: close): outpost {o:.0f}, nginx {n:.0f} (outpost/nginx {o/n:.2f})")
o, n = med("h2-hits", "outpost"), med("h2-hits", "nginx")
print(f"HTTP/2 hit requests/s (h2load -c32 -m10): outpost {o:.0f}, nginx {n:.0f} (outpost/nginx {o/n:.2f})")
PY
