#!/usr/bin/env bash
# Queries/s of Outpost's authoritative geo DNS beside gdnsd (plugin_geoip with a `nets` map),
# both answering www.outpost.test by client network with the nearest edge, on this machine in
# the same run. dnsperf sends `www.outpost.test A` to each in turn, without EDNS and with an
# EDNS Client Subnet, several rounds interleaved; the summary gives medians and the ratio
# Outpost/gdnsd. A run with any answer other than NOERROR (or many lost queries) is reported as
# an error, not as a number.
#
#   bench/dns.sh [ROUNDS] [SECONDS] [CLIENTS]
#
# Needs: dnsperf, gdnsd 3.x, dig (apt-get install dnsperf gdnsd bind9-dnsutils), python3 and a
# release build (cargo build --release). Configs in bench/dns/; uses fixed ports on 127.0.0.55;
# writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install dnsperf gdnsd bind9-dnsutils" dnsperf gdnsd dig python3
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CLIENTS=${3:-4}
THREADS=$(nproc)   # gdnsd's udp_threads and Outpost's tokio workers (its UDP threads: one per core)
IP=127.0.0.55
GDNSD=$IP:15354    # Outpost's address is dns.listen in bench/dns/outpost.toml
# EDNS Client Subnet (option 8): family 1 (IPv4), source prefix 24, scope 0, address 203.0.113.
ECS=8:00011800cb0071
wait_for() { # LOG PATTERN PID
  for _ in $(seq 100); do
    grep -q "$2" "$1" && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "did not start (no '$2' in $1):" >&2; cat "$1" >&2; exit 1
}

# Response rate limiting off: gdnsd has none, and dnsperf sends everything from one address.
# A binary that predates the key rejects it (and has no rate limiting): drop the table then.
cp bench/dns/outpost.toml "$WORK/outpost.toml"
if ! "$BIN" validate "$WORK/outpost.toml" >"$WORK/validate.log" 2>&1; then
  grep -q 'unknown field `rate_limit`' "$WORK/validate.log" || { cat "$WORK/validate.log" >&2; exit 1; }
  echo "warning: $BIN does not know [dns.authority.rate_limit]; running without that table" >&2
  sed -i '/^\[dns\.authority\.rate_limit\]/,$d' "$WORK/outpost.toml"
  "$BIN" validate "$WORK/outpost.toml" >/dev/null
fi
# RUST_LOG: at info, hickory_server logs every query it handles (TCP); gdnsd logs none.
RUST_LOG=warn,outpost=info TOKIO_WORKER_THREADS=$THREADS \
  "$BIN" dns --config "$WORK/outpost.toml" >"$WORK/outpost.log" 2>&1 & pids+=($!)
OUTPOST_PID=$!

cp -r bench/dns/gdnsd "$WORK/gdnsd"
sed -i "s|@WORK@|$WORK|g; s|@LISTEN@|$GDNSD|g; s|@THREADS@|$THREADS|g" "$WORK/gdnsd/config"
gdnsd -c "$WORK/gdnsd" start >"$WORK/gdnsd.log" 2>&1 & pids+=($!)
GDNSD_PID=$!

wait_for "$WORK/outpost.log" "ready node=dns" $OUTPOST_PID
wait_for "$WORK/gdnsd.log" "DNS listeners started" $GDNSD_PID
OUTPOST=$(grep -o 'data=dns://[^ ]*' "$WORK/outpost.log" | head -1 | sed 's|data=dns://||')
threads() { cat /proc/"$1"/task/*/comm | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}'; }

RAW="$RESULTS/dns-$(date +%Y%m%d-%H%M%S).txt"
{
  echo "# $(date -Is) $(git rev-parse --short HEAD 2>/dev/null) $BIN built $(date -r "$BIN" -Is)"
  echo "# $(gdnsd 2>&1 | head -1), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}'), $(nproc) cores," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# threads: Outpost $OUTPOST: $(threads $OUTPOST_PID); gdnsd $GDNSD: $(threads $GDNSD_PID)"
  echo "# dnsperf -c $CLIENTS -T 1 -l $SECONDS_PER_RUN; case noecs: no EDNS; case ecs: -E $ECS (203.0.113.0/24)"
} | tee "$RAW"

# Every server must give the nearest edge, one address, for each kind of client (with all
# edges down, Outpost would fail open and answer with all three).
echo "answer check (www.outpost.test A):"
for server in "outpost $OUTPOST" "gdnsd $GDNSD"; do
  read -r name addr <<<"$server"
  for check in "+noedns 127.0.0.11" "+subnet=192.0.2.0/24 127.0.0.11" \
    "+subnet=198.51.100.0/24 127.0.0.12" "+subnet=203.0.113.0/24 127.0.0.13" "+ednsopt=$ECS 127.0.0.13"; do
    read -r option want <<<"$check"
    got=$(dig @"${addr%:*}" -p "${addr##*:}" www.outpost.test A $option +nocookie +short +tries=1 +time=2 | paste -sd' ')
    printf '# %-8s %-26s -> %s\n' "$name" "$option" "$got" | tee -a "$RAW"
    [ "$got" = "$want" ] || { echo "$name answered '$got' with $option; expected $want" >&2; exit 1; }
  done
done

printf 'www.outpost.test A\n' >"$WORK/queries"
measure() { # ADDR CASE PID: prints queries/s and the server's CPU µs per query, or "error"
  # and why; dnsperf's output goes to RAW
  local extra=() out qps codes lost before after done
  [ "$2" = ecs ] && extra=(-E "$ECS")
  before=$(cpu_ticks "$3")
  out=$(dnsperf -s "${1%:*}" -p "${1##*:}" -d "$WORK/queries" -l "$SECONDS_PER_RUN" -c "$CLIENTS" -T 1 "${extra[@]}" 2>&1) || true
  sed 's/^/#   /' <<<"$out" | grep -E 'Command line|Queries|Response codes|packet size|Latency' >>"$RAW" || true
  after=$(cpu_ticks "$3")
  qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
  done=$(awk '/Queries completed/ {print $3}' <<<"$out")
  codes=$(awk -F': *' '/Response codes/ {print $2}' <<<"$out")
  lost=$(awk '/Queries lost/ {gsub(/[(%)]/, "", $4); print $4}' <<<"$out")
  if [ -z "$qps" ] || ! [[ "$codes" =~ ^NOERROR\ [0-9]+\ \(100\.00%\)$ ]]; then
    echo "error response codes: ${codes:-none}"
  elif awk -v l="$lost" 'BEGIN {exit !(l > 1)}'; then
    echo "error lost $lost% of queries"
  else
    echo "$qps $(awk -v t=$((after - before)) -v n="$done" 'BEGIN {printf "%.3f", t * 10000 / n}')"
  fi
}

for round in $(seq 1 "$ROUNDS"); do
  for case in noecs ecs; do
    for server in "outpost $OUTPOST $OUTPOST_PID" "gdnsd $GDNSD $GDNSD_PID"; do
      read -r name addr pid <<<"$server"
      echo "$round $name $case $(measure "$addr" $case "$pid")" | tee -a "$RAW"
    done
  done
done

echo
echo "median queries/s over $ROUNDS rounds (dnsperf -c $CLIENTS -T 1 -l $SECONDS_PER_RUN), raw: $RAW"
summary=$(python3 - "$RAW" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if not line.startswith("#")]
for case, label in (("noecs", "no EDNS"), ("ecs", "EDNS Client Subnet 203.0.113.0/24")):
    med, cpu = {}, {}
    for name in ("outpost", "gdnsd"):
        runs = [r for r in rows if r[1] == name and r[2] == case]
        bad = [r for r in runs if r[3] == "error"]
        med[name] = None if bad else statistics.median(float(r[3]) for r in runs)
        cpu[name] = None if bad else statistics.median(float(r[4]) for r in runs)
        if bad:
            print(f"{label}: {name} had errors in {len(bad)} of {len(runs)} runs: {' '.join(bad[0][4:])}")
    if None not in med.values():
        print(f"{label}: outpost {med['outpost']:.0f}  gdnsd {med['gdnsd']:.0f}"
              f"  | outpost/gdnsd {med['outpost'] / med['gdnsd']:.2f};"
              f" server CPU per query: outpost {cpu['outpost']:.2f} µs  gdnsd {cpu['gdnsd']:.2f} µs"
              f"  | gdnsd/outpost {cpu['gdnsd'] / cpu['outpost']:.2f}")
PY
)
echo "$summary"
sed 's/^/# /' <<<"$summary" >>"$RAW"
