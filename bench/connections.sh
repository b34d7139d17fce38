#!/usr/bin/env bash
# Resident memory per open client connection: an Outpost edge, nginx and Varnish, each in
# front of the same Outpost origin, are given N keep-alive connections that each fetch one
# cached 1 KiB object and then stay open and idle; each process's resident set is read from
# /proc before and after. Then, with the edge's per-network cap on (loopback not trusted), a
# client network opening more than its share: how many it gets and what the rest read.
#
#   bench/connections.sh [CONNECTIONS]
#
# Needs: nginx, varnishd, python3 and a release build (cargo build --release). Uses fixed
# ports on 127.0.0.53 and sources 127.0.1.0/24 to 127.0.40.0/24; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install nginx varnish python3" nginx varnishd python3
N=${1:-5000}
IP=127.0.0.53
ORIGIN=$IP:18000
OUTPOST=$IP:18080
NGINX=$IP:18081
VARNISH=$IP:18082
CAPPED=$IP:18083
OUT="$RESULTS/connections-$(date +%Y%m%d-%H%M%S).txt"

mkdir -p "$WORK/site"
head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/site/obj.txt"
RUST_LOG=warn "$BIN" origin --root "$WORK/site" --listen $ORIGIN --admin $IP:19000 & pids+=($!)
RUST_LOG=warn "$BIN" edge --listen $OUTPOST --admin $IP:19080 --upstream http://$ORIGIN --name edge-conn & pids+=($!)
outpost_pid=$!
{
  nginx_head
  cat <<NGINX
  proxy_cache_path $WORK/nginx-cache keys_zone=c:10m;
  server {
    listen $NGINX;
    keepalive_timeout 600s;
    location / { proxy_pass http://$ORIGIN; proxy_cache c; proxy_http_version 1.1; }
  }
}
NGINX
} > "$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf"
varnishd -a $VARNISH -b $ORIGIN -s malloc,256m -n "$WORK/varnish" -p thread_pool_min=10 \
  -p timeout_idle=600 >/dev/null
# An edge whose clients on loopback count per network (40 of them, 2 connections each at most).
cat > "$WORK/capped.toml" <<TOML
[admin]
token = "bench"
[tls]
state_dir = "$WORK/state"
[limits]
max_connections_per_network = 2
trusted_networks = []
[origin]
url = "http://$ORIGIN"
[[edges]]
name = "edge-capped"
listen = "$CAPPED"
admin = "$IP:19083"
TOML
RUST_LOG=warn "$BIN" edge --config "$WORK/capped.toml" --name edge-capped & pids+=($!)
wait_http "http://$OUTPOST/obj.txt"; wait_http "http://$NGINX/obj.txt"
wait_http "http://$VARNISH/obj.txt"; wait_http "http://$CAPPED/obj.txt"
sleep 1
varnish_pid=$(pgrep -f "varnishd.*$VARNISH" | sort -n | tail -1)
nginx_workers=$(pgrep -f "nginx: worker process" | tr '\n' ' ')

# hold TARGET COUNT FIFO: opens COUNT keep-alive connections from 127.0.(1..40).1, each
# fetching /obj.txt once; reports how many got a 200 and how many were refused (a 503, or
# closed), then holds them open until FIFO is written.
hold() {
  python3 - "$1" "$2" "$3" <<'PY' &
import socket, sys
host, port = sys.argv[1].split(":"); count = int(sys.argv[2])
held, ok, refused = [], 0, 0
for i in range(count):
    s = socket.socket()
    s.bind((f"127.0.{i % 40 + 1}.1", 0))
    s.connect((host, int(port)))
    s.sendall(f"GET /obj.txt HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 1024:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
    except ConnectionError:
        pass
    if data.startswith(b"HTTP/1.1 200"): ok += 1; held.append(s)
    else: refused += 1; s.close()
print(f"{ok} {refused}", flush=True)
open(sys.argv[3]).read()
PY
}

measure() { # measure NAME TARGET PIDS...: bytes per held connection
  local name=$1 target=$2; shift 2
  local fifo="$WORK/$name.fifo"; mkfifo "$fifo"
  local base; base=$(rss_kib "$@")
  hold "$target" "$N" "$fifo" > "$WORK/$name.out"
  local holder=$!
  until [ -s "$WORK/$name.out" ]; do sleep 0.2; done
  sleep 1
  local after; after=$(rss_kib "$@")
  echo "$name: rss $base KiB -> $after KiB with $N idle connections ($(cat "$WORK/$name.out") ok/refused): $(( (after - base) * 1024 / N )) bytes per connection"
  echo > "$fifo"; wait $holder
}

{
  echo "resident memory per idle keep-alive connection, $N connections, $(date -u +%FT%TZ)"
  measure outpost $OUTPOST $outpost_pid
  measure nginx $NGINX $nginx_workers
  measure varnish $VARNISH $varnish_pid
  fifo="$WORK/capped.fifo"; mkfifo "$fifo"
  hold $CAPPED 200 "$fifo" > "$WORK/capped.out"; holder=$!
  until [ -s "$WORK/capped.out" ]; do sleep 0.2; done
  echo "edge with max_connections_per_network = 2, 200 connections from 40 networks: $(cat "$WORK/capped.out") ok/refused (expected 80 120)"
  echo > "$fifo"; wait $holder
} | tee "$OUT"
