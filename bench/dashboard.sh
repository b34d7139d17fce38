#!/usr/bin/env bash
# What the dashboard costs the CDN: 1 KiB cache hits/s of `outpost up` (one parent, one
# edge) with no dashboard, beside the same CDN with its dashboard reading every node each
# second and one page's event stream open (curl on /api/events), in the same run, rounds
# interleaved, medians and the ratio (wrk). Also the edge process's CPU time per request in
# each case, from /proc/PID/stat, and the CPU the CDN process uses with no traffic at all over
# IDLE seconds (what the dashboard's reading of every node each second costs by itself, free of
# the noise of requests/s on a shared machine).
#
#   bench/dashboard.sh [ROUNDS] [SECONDS] [CONNECTIONS] [IDLE]
#
# Needs: wrk, curl (apt-get install wrk curl) and a release build (cargo build --release).
# Uses fixed ports on 127.0.0.53; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk curl" wrk curl
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-64}
IDLE=${4:-20}
IP=127.0.0.53
SITE=$WORK/site
mkdir -p "$SITE"
head -c 1024 /dev/urandom > "$SITE/1k.bin"

topology() { # topology FILE WITH_DASHBOARD
  cat > "$1" <<TOML
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
[[parents]]
name = "parent-bench"
listen = "$IP:18021"
admin = "$IP:19021"
location = [50.1, 8.7]
[[edges]]
name = "edge-bench"
listen = "$IP:18080"
admin = "$IP:19080"
location = [52.4, 4.9]
TOML
  if [ "$2" = yes ]; then
    printf '[dashboard]\nlisten = "%s:19999"\nrefresh_ms = 1000\n' "$IP" >> "$1"
  fi
}
topology "$WORK/plain.toml" no
topology "$WORK/dashboard.toml" yes

RAW="$RESULTS/dashboard-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for name in none dashboard; do
    config=$WORK/plain.toml
    [ $name = dashboard ] && config=$WORK/dashboard.toml
    RUST_LOG=warn "$BIN" up --config "$config" >"$WORK/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://$IP:18080/1k.bin"
    curl -sf -o /dev/null "http://$IP:18080/1k.bin"
    stream=
    if [ $name = dashboard ]; then
      curl -sN "http://$IP:19999/api/events" > "$WORK/events" & stream=$!
      sleep 2
    fi
    idle_before=$(cpu_ticks "$pid")
    sleep "$IDLE"
    idle_after=$(cpu_ticks "$pid")
    # CPU milliseconds per second with no traffic.
    idle=$(python3 -c "print(f'{($idle_after - $idle_before) * 10 / $IDLE:.2f}')")
    before=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://$IP:18080/1k.bin")
    after=$(cpu_ticks "$pid")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    # Clock ticks (1/100 s) of the whole CDN process per request, in microseconds.
    us=$(python3 -c "print(f'{($after - $before) * 10000 / $total:.2f}')")
    events=0
    if [ -n "$stream" ]; then
      kill "$stream" 2>/dev/null || true
      events=$(grep -c '^data: ' "$WORK/events" || true)
    fi
    echo "$round $name $rps $us $events $idle" | tee -a "$RAW"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

echo
echo "medians over $ROUNDS rounds (wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s on a 1 KiB hit), raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = lambda name, col: statistics.median(float(r[col]) for r in rows if r[1] == name)
n, d = med("none", 2), med("dashboard", 2)
print(f"hits/s: no dashboard {n:.0f}  dashboard open and streaming {d:.0f}  | ratio {d / n:.3f}")
print(f"CDN process CPU per request: {med('none', 3):.2f} µs vs {med('dashboard', 3):.2f} µs")
print(f"events the open page got per round: {med('dashboard', 4):.0f}")
print(f"CDN process CPU with no traffic: {med('none', 5):.2f} ms/s vs {med('dashboard', 5):.2f} ms/s with the dashboard reading every node and streaming")
PY
