#!/usr/bin/env bash
# 1 KiB cache hits over HTTP/3 beside the same hits over HTTP/2 (both over TLS 1.3, the same
# certificate, the same edge, in the same run, rounds interleaved): requests/s, and the edge
# process's CPU time per request from /proc/PID/stat, which is the fair comparison since the
# two load tools differ. HTTP/3 load comes from bench/h3load (a small Rust client on quinn and
# h3: Debian's h2load has no HTTP/3, and Debian's nginx has no http_v3_module, so there is no
# HTTP/3 peer to run beside); HTTP/2 load from h2load.
#
#   bench/h3.sh [ROUNDS] [SECONDS] [CONNECTIONS] [STREAMS]
#
# Needs: h2load (apt-get install nghttp2-client) and a release build (cargo build --release).
# Uses fixed ports on 127.0.0.55; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install nghttp2-client curl" h2load curl
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-8}
STREAMS=${4:-10}
IP=127.0.0.55
(cd bench/h3load && cargo build --release --quiet --target-dir ../../target/h3load)
H3LOAD=$PWD/target/h3load/release/h3load
SITE=$WORK/site
mkdir -p "$SITE"
head -c 1024 /dev/urandom > "$SITE/1k.bin"
cat > "$WORK/outpost.toml" <<TOML
[admin]
token = "bench"
tls = false
[cache]
disk_mib = 0
[tls]
state_dir = "$WORK/state"
[origin]
root = "$SITE"
listen = "$IP:18000"
admin = "$IP:19000"
shielded = false
[[edges]]
name = "edge-bench"
listen = "$IP:18080"
https = "$IP:18443"
admin = "$IP:19080"
location = [52.4, 4.9]
TOML
RUST_LOG=warn "$BIN" up --config "$WORK/outpost.toml" >"$WORK/outpost.log" 2>&1 &
PID=$!
pids+=("$PID")
wait_http "http://$IP:18080/1k.bin"
CA=$WORK/state/ca.pem
URL=https://www.outpost.test:18443/1k.bin
curl -sf -o /dev/null --cacert "$CA" --resolve "www.outpost.test:18443:$IP" "$URL"
echo "Alt-Svc: $(curl -s -o /dev/null -D - --cacert "$CA" --resolve "www.outpost.test:18443:$IP" "$URL" | grep -i '^alt-svc' | tr -d '\r')"

RAW="$RESULTS/h3-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for proto in h3 h2; do
    before=$(cpu_ticks "$PID")
    if [ $proto = h3 ]; then
      out=$("$H3LOAD" "$IP:18443" www.outpost.test "$URL" "$CA" "$CONNECTIONS" "$STREAMS" "$SECONDS_PER_RUN")
      total=$(echo "$out" | awk '{print $2}')
      secs=$(echo "$out" | awk '{print $4}')
      errors=$(echo "$out" | awk '{print $6}')
    else
      # h2load resolves no names of its own: connect to the IP, send the name as SNI and Host.
      out=$(h2load -c "$CONNECTIONS" -m "$STREAMS" -D "$SECONDS_PER_RUN" --warm-up-time=0 \
        -H "host: www.outpost.test" "https://$IP:18443/1k.bin" 2>&1)
      total=$(echo "$out" | awk '/^requests:/ {print $8}')
      errors=$(echo "$out" | awk '/^requests:/ {print $10}')
      secs=$SECONDS_PER_RUN
    fi
    after=$(cpu_ticks "$PID")
    rps=$(python3 -c "print(f'{$total / $secs:.0f}')")
    us=$(python3 -c "print(f'{($after - $before) * 10000 / max($total, 1):.2f}')")
    echo "$round $proto $rps $us $errors" | tee -a "$RAW"
  done
done

echo
echo "medians over $ROUNDS rounds ($CONNECTIONS connections x $STREAMS streams, ${SECONDS_PER_RUN}s, 1 KiB hits), raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = lambda proto, col: statistics.median(float(r[col]) for r in rows if r[1] == proto)
h3, h2 = med("h3", 2), med("h2", 2)
print(f"requests/s: HTTP/3 {h3:.0f}  HTTP/2 {h2:.0f}  | h3/h2 {h3 / h2:.2f}")
print(f"edge CPU per request: HTTP/3 {med('h3', 3):.2f} µs  HTTP/2 {med('h2', 3):.2f} µs")
print(f"errors: HTTP/3 {med('h3', 4):.0f}  HTTP/2 {med('h2', 4):.0f}")
PY
