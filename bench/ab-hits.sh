#!/usr/bin/env bash
# Two builds of Outpost side by side on cache hits: this checkout's release build (B) and
# another (A, e.g. from a worktree of an earlier commit), as two edges in front of one origin,
# wrk driving each in turn, interleaved rounds. Reports median hits/s and edge CPU time per hit
# of each, and B over A: a change's cost on the hit path, on the same machine in the same run.
#
#   bench/ab-hits.sh OTHER_BINARY [ROUNDS] [SECONDS] [CONNECTIONS]
#
# For example, the build of an earlier commit:
#   git worktree add /tmp/old REV && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#     cargo build --release --bin outpost)
#   bench/ab-hits.sh /tmp/old-target/release/outpost 5 6 64
#
# Needs: wrk (apt-get install wrk) and a release build. Uses fixed ports on 127.0.0.53; writes
# bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk" wrk
OTHER=${1:?usage: bench/ab-hits.sh OTHER_BINARY [ROUNDS] [SECONDS] [CONNECTIONS]}
ROUNDS=${2:-5}
SECONDS_PER_RUN=${3:-6}
CONNECTIONS=${4:-64}
IP=127.0.0.53
ORIGIN=$IP:18000

RUST_LOG=warn "$BIN" origin --listen $ORIGIN --admin $IP:19000 & pids+=($!)
# edge NAME BINARY PORT ADMIN_PORT: an edge of its own state (no disk tier), its PID in
# edge_pid.
edge() {
  cat > "$WORK/$1.toml" <<TOML
[admin]
token = "bench"
[tls]
state_dir = "$WORK/state-$1"
[cache]
disk_mib = 0
[origin]
url = "http://$ORIGIN"
[[edges]]
name = "$1"
listen = "$IP:$3"
admin = "$IP:$4"
TOML
  RUST_LOG=warn "$2" edge --config "$WORK/$1.toml" --name "$1" & pids+=($!)
  edge_pid=$!
}
edge a "$OTHER" 18081 19081
a_pid=$edge_pid
edge b "$BIN" 18082 19082
b_pid=$edge_pid
wait_http "http://$IP:18081/"
wait_http "http://$IP:18082/"

ASSET=$(curl -s "http://$ORIGIN/" | grep -o '/assets/app\.[0-9a-f]*\.js' | head -1)
for port in 18081 18082; do
  for _ in 1 2; do curl -s -o /dev/null "http://$IP:$port$ASSET"; done
done
echo "hit check:"
for port in 18081 18082; do curl -sI "http://$IP:$port$ASSET" | grep -i cache-status || true; done

RAW="$RESULTS/ab-hits-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for name in a b; do
    case $name in a) port=18081 pid=$a_pid;; b) port=18082 pid=$b_pid;; esac
    before=$(cpu_ticks "$pid")
    out=$(wrk --latency -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://$IP:$port$ASSET")
    ticks=$(( $(cpu_ticks "$pid") - before ))
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$round $name $(echo "$out" | wrk_summary) $ticks $requests" | tee -a "$RAW"
  done
done

echo
echo "A: $OTHER; B: $BIN; $ROUNDS rounds of wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s on $ASSET, raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {}
for name in ("a", "b"):
    mine = [r for r in rows if r[1] == name]
    rps = statistics.median(float(r[2]) for r in mine)
    p99 = statistics.median(float(r[3]) for r in mine)
    # Ticks are 1/100 s: CPU microseconds per request.
    cpu = statistics.median(int(r[4]) * 10000 / int(r[5]) for r in mine)
    med[name] = (rps, p99, cpu)
    print(f"{name.upper()}: {rps:.0f} hits/s, p99 {p99:.0f} us, {cpu:.1f} us of edge CPU per hit")
(ra, _, ca), (rb, _, cb) = med["a"], med["b"]
print(f"B/A: hits/s {rb / ra:.2f}, CPU per hit {cb / ca:.2f}")
PY
