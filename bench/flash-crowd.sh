#!/usr/bin/env bash
# A flash crowd: CLIENTS clients over the three edges of an `outpost up` (two parents), all
# asking at once for one cold object of SIZE bytes from an origin that takes DELAY seconds to
# answer. Reports how many requests reached the origin (the goal is one), and how long after the
# origin sent its first body byte each client got its first (the goal: all within 5 ms).
#
#   bench/flash-crowd.sh [CLIENTS] [SIZE] [DELAY]
#
# Needs: python3 (the origin) and a release build (cargo build --release). Uses fixed ports on 127.0.0.58;
# writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install python3" python3
CLIENTS=${1:-1000}
SIZE=${2:-1000000}
DELAY=${3:-1}
IP=127.0.0.58
# The crowd: a small Rust client (bench/flash/crowd), so the clients measure the CDN, not
# themselves.
(cd bench/flash/crowd && cargo build --release --quiet --target-dir ../../../target/crowd)
CROWD=$PWD/target/crowd/release/crowd
ulimit -n 65536 2>/dev/null || true
python3 bench/flash/origin.py $IP 18000 "$SIZE" "$DELAY" >"$WORK/origin.log" 2>&1 & pids+=($!)
{
  printf '[admin]\ntoken = "bench"\ntls = false\n[cache]\ndisk_mib = 0\n[tls]\nstate_dir = "%s"\n' "$WORK/state"
  printf '[origin]\nurl = "http://%s:18000"\n' $IP
  for i in 0 1; do
    printf '[[parents]]\nname = "parent-%s"\nlisten = "%s:1810%s"\nadmin = "%s:1910%s"\n' $i $IP $i $IP $i
  done
  for i in 0 1 2; do
    printf '[[edges]]\nname = "edge-%s"\nlisten = "%s:1808%s"\nadmin = "%s:1908%s"\n' $i $IP $i $IP $i
  done
} >"$WORK/outpost.toml"
RUST_LOG=warn "$BIN" up --config "$WORK/outpost.toml" >"$WORK/outpost.log" 2>&1 & pids+=($!)
for i in 0 1 2; do wait_http "http://$IP:1808$i/_outpost/health" || { cat "$WORK/outpost.log"; exit 1; }; done
sleep 1
"$CROWD" "$IP:18080,$IP:18081,$IP:18082" "/big?$(date +%s%N)" "$CLIENTS" "$SIZE" >"$WORK/crowd.log"
sleep 0.5
OUT="$RESULTS/flash-crowd-$(date +%Y%m%d-%H%M%S).txt"
python3 - "$WORK/origin.log" "$WORK/crowd.log" "$CLIENTS" "$SIZE" "$DELAY" <<'PY' | tee "$OUT"
import statistics, sys
origin = [l.split() for l in open(sys.argv[1]) if l.startswith("request")]
firsts = [float(l.split()[1]) for l in open(sys.argv[2]) if l.startswith("first_byte")]
summary = [l for l in open(sys.argv[2]) if l.startswith("complete")]
print(f"flash crowd: {sys.argv[3]} clients over 3 edges, one cold object of {sys.argv[4]} bytes, origin delay {sys.argv[5]} s")
print(f"origin requests: {len(origin)}")
print(summary[0].strip() if summary else "no clients finished")
if origin and firsts:
    origin_first = min(float(o[3]) for o in origin)
    lag = sorted((t - origin_first) * 1000 for t in firsts)
    q = lambda p: lag[min(len(lag) - 1, int(p * len(lag)))]
    print(f"client first byte after the origin's: min {lag[0]:.1f} ms, median {statistics.median(lag):.1f} ms, p99 {q(0.99):.1f} ms, max {lag[-1]:.1f} ms")
    print(f"within 5 ms: {sum(1 for x in lag if x <= 5)} of {len(lag)}")
PY
