#!/usr/bin/env bash
# Edge workers, measured on this machine in the same run:
#  1. requests/s of the `hello` worker through an Outpost edge beside `wasmtime serve` 48
#     running the same component;
#  2. the edge's cache-hit requests/s for one asset with a pass-through worker on its route,
#     as a ratio to the same edge without a worker on the route;
#  3. the median and p99 time to instantiate a worker, from the edge's histogram
#     (outpost_worker_instantiation_seconds, buckets 25% apart);
#  4. the server's CPU time per request in each case (user + system, from /proc/PID/stat),
#     which says where the time goes when wrk shares the cores.
# wrk drives each in turn, several rounds interleaved; the summary gives medians and ratios.
#
#   bench/workers.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Needs: wrk, wasmtime 48 on PATH (cargo install wasmtime-cli --version 48.0.8 --locked),
# the wasm32-wasip2 target, and a release build (cargo build --release). Uses fixed ports on
# 127.0.0.52; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "see the header of this script" wrk
# `wasmtime serve` is the peer of the first measurement only; without it the others still run.
PEER=1
command -v wasmtime >/dev/null || { PEER=; echo "wasmtime not on PATH: the hello comparison is skipped" >&2; }
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-16}
IP=127.0.0.52
EDGE=$IP:18080
EDGE_ADMIN=$IP:19080
WASMTIME=$IP:18090
cargo build --quiet --release --locked --target wasm32-wasip2 \
  --manifest-path workers/examples/Cargo.toml --target-dir workers/examples/target
WASM=workers/examples/target/wasm32-wasip2/release


RUST_LOG=warn "$BIN" up --config bench/workers/outpost.toml --state-dir "$WORK/state" >"$WORK/outpost.log" 2>&1 & pids+=($!)
if [ -n "$PEER" ]; then
  wasmtime serve -Scli --addr "$WASMTIME" "$WASM/hello.wasm" >"$WORK/wasmtime.log" 2>&1 & pids+=($!)
fi
for _ in $(seq 100); do
  curl -s -o /dev/null "http://$EDGE/_outpost/health" && { [ -z "$PEER" ] || curl -s -o /dev/null "http://$WASMTIME/"; } && break
  sleep 0.1
done
deploy() { "$BIN" workers deploy "$@" --admin "http://$EDGE_ADMIN" --token bench >/dev/null; }
deploy "$WASM/hello.wasm" --name hello --route 'www.outpost.test/hello'
deploy "$WASM/passthrough.wasm" --name pass --route 'www.outpost.test/*'

ASSET=$(curl -s -H 'host: plain.outpost.test' "http://$EDGE/" | grep -o '/assets/app\.[0-9a-f]*\.js' | head -1)
for host in plain.outpost.test www.outpost.test; do
  curl -s -o /dev/null -H "host: $host" "http://$EDGE$ASSET"
  curl -s -o /dev/null -H "host: $host" "http://$EDGE$ASSET"
done
echo "checks:"
echo "  edge hello:     $(curl -s -H 'host: www.outpost.test' "http://$EDGE/hello")"
[ -n "$PEER" ] && echo "  wasmtime hello: $(curl -s "http://$WASMTIME/")"
echo "  no worker:      $(curl -sI -H 'host: plain.outpost.test' "http://$EDGE$ASSET" | grep -i cache-status | tr -d '\r')"
echo "  pass-through:   $(curl -sI -H 'host: www.outpost.test' "http://$EDGE$ASSET" | grep -i cache-status | tr -d '\r')"

lua="$WORK/host.lua"
RAW="$RESULTS/workers-$(date +%Y%m%d-%H%M%S).txt"
echo "# $(date -Is) $(git rev-parse --short HEAD) $([ -n "$PEER" ] && wasmtime --version || echo "no wasmtime") $(nproc) cores wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s" | tee "$RAW"
TICK_US=$((1000000 / $(getconf CLK_TCK)))
run() { # NAME HOST URL SERVER_PID: requests/s, and the server's CPU time per request
  printf 'wrk.headers["Host"] = "%s"\n' "$2" > "$lua"
  before=$(cpu_ticks "$4")
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s "$lua" "$3")
  ticks=$(( $(cpu_ticks "$4") - before ))
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$round $1 $rps $(( ticks * TICK_US / requests ))" | tee -a "$RAW"
}
OUTPOST_PID=${pids[0]}
WASMTIME_PID=${pids[1]:-}
for round in $(seq 1 "$ROUNDS"); do
  run outpost-hello www.outpost.test "http://$EDGE/hello" "$OUTPOST_PID"
  [ -n "$PEER" ] && run wasmtime-hello localhost "http://$WASMTIME/" "$WASMTIME_PID"
  run hit-no-worker plain.outpost.test "http://$EDGE$ASSET" "$OUTPOST_PID"
  run hit-pass-through www.outpost.test "http://$EDGE$ASSET" "$OUTPOST_PID"
done
curl -s "http://$EDGE_ADMIN/metrics" | grep 'outpost_worker_instantiation_seconds_bucket{.*worker="hello"' > "$WORK/buckets"

echo
echo "median requests/s over $ROUNDS rounds, raw: $RAW"
python3 - "$RAW" "$WORK/buckets" <<'PY' | tee -a "$RAW"
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
names = {r[1] for r in rows}
med = {n: statistics.median(float(r[2]) for r in rows if r[1] == n) for n in names}
cpu = {n: statistics.median(float(r[3]) for r in rows if r[1] == n) for n in names}
if "wasmtime-hello" in med:
    print(f"hello: outpost {med['outpost-hello']:.0f}  wasmtime serve {med['wasmtime-hello']:.0f}"
          f"  | outpost/wasmtime {med['outpost-hello']/med['wasmtime-hello']:.2f}")
else:
    print(f"hello: outpost {med['outpost-hello']:.0f} (no wasmtime serve to compare)")
print(f"cache hit: no worker {med['hit-no-worker']:.0f}  pass-through worker {med['hit-pass-through']:.0f}"
      f"  | with/without {med['hit-pass-through']/med['hit-no-worker']:.2f}")
print("server CPU per request (us): " + ", ".join(f"{n} {cpu[n]:.1f}" for n in
      ["hit-no-worker", "outpost-hello", "hit-pass-through", "wasmtime-hello"] if n in cpu))
buckets = []
for line in open(sys.argv[2]):
    m = re.search(r'[{,]le="([^"]+)".*\} (\d+)', line)
    if m:
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2))))
total = buckets[-1][1]
def quantile(q):
    return next(le for le, count in buckets if count >= q * total)
print(f"instantiation (hello, {total} instances): p50 <= {quantile(0.5)*1e6:.1f} us, p99 <= {quantile(0.99)*1e6:.1f} us")
PY
