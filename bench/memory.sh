#!/usr/bin/env bash
# Resident memory per cached object: an Outpost edge and Varnish, each in front of the same
# Outpost origin, are filled with the same N distinct 1 KiB objects (one file under N query
# strings, so N cache keys), and each process's resident set is read from /proc before and
# after. Also checks that the edge stays inside capacity_mib plus a fixed overhead when asked
# to hold more than fits.
#
#   bench/memory.sh [OBJECTS] [BODY_BYTES]
#
# Needs: varnishd (apt-get install varnish), python3 and a release build
# (cargo build --release). Uses fixed ports on 127.0.0.52; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install varnish python3" varnishd python3
OBJECTS=${1:-30000}
BODY=${2:-1024}
IP=127.0.0.52
ORIGIN=$IP:18000
OUTPOST=$IP:18080
VARNISH=$IP:18081
SMALL=$IP:18082
NODISK=$IP:18083
OUT="$RESULTS/memory-$(date +%Y%m%d-%H%M%S).txt"

mkdir -p "$WORK/site"
head -c "$BODY" /dev/zero | tr '\0' 'x' > "$WORK/site/obj.txt"
RUST_LOG=warn "$BIN" origin --root "$WORK/site" --listen $ORIGIN --admin $IP:19000 & pids+=($!)
RUST_LOG=warn "$BIN" edge --listen $OUTPOST --admin $IP:19080 --upstream http://$ORIGIN --name edge-mem & pids+=($!)
outpost_pid=$!
# Same memory budget as the edge's default capacity_mib = 256.
varnishd -a $VARNISH -b $ORIGIN -s malloc,256m -n "$WORK/varnish" -p thread_pool_min=10 >/dev/null
# A small edge, to see the budget hold: 16 MiB of capacity, asked to hold far more.
# Its state (and disk tier) in this run's directory, so no earlier run's disk index is loaded.
cat > "$WORK/small.toml" <<TOML
[admin]
token = "bench"
[tls]
state_dir = "$WORK/state"
[cache]
capacity_mib = 16
[origin]
url = "http://$ORIGIN"
[[edges]]
name = "edge-small"
listen = "$SMALL"
admin = "$IP:19082"
TOML
RUST_LOG=warn "$BIN" edge --config "$WORK/small.toml" --name edge-small & pids+=($!)
small_pid=$!
# The same without the disk tier: what memory evicts is gone, and no disk index grows.
sed -e 's/^capacity_mib = 16$/capacity_mib = 16\ndisk_mib = 0/' -e "s/$SMALL/$NODISK/" \
  -e 's/edge-small/edge-nodisk/' -e "s/19082/19083/" "$WORK/small.toml" > "$WORK/nodisk.toml"
RUST_LOG=warn "$BIN" edge --config "$WORK/nodisk.toml" --name edge-nodisk & pids+=($!)
nodisk_pid=$!
sleep 1
# The Varnish child (cache-main) holds the objects.
varnish_pid=$(pgrep -f "varnishd.*$VARNISH" | sort -n | tail -1)


# fill HOST:PORT FIRST COUNT: GETs /obj.txt?n=FIRST.. on one keep-alive connection and checks
# every answer is the whole body.
fill() {
  python3 - "$1" "$2" "$3" "$BODY" <<'PY'
import http.client, sys
host, port = sys.argv[1].split(":")
first, count, body = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conn = http.client.HTTPConnection(host, int(port), timeout=30)
for n in range(first, first + count):
    conn.request("GET", f"/obj.txt?n={n}")
    r = conn.getresponse()
    data = r.read()
    if r.status != 200 or len(data) != body:
        sys.exit(f"{sys.argv[1]}: /obj.txt?n={n}: {r.status}, {len(data)} bytes")
PY
}

# Warm each cache up (pools, threads, first allocations) before the baseline.
for target in $OUTPOST $VARNISH; do fill $target 1000000 2000; done
sleep 1
base_o=$(rss_kib $outpost_pid); base_v=$(rss_kib $varnish_pid)
for target in $OUTPOST $VARNISH; do fill $target 0 "$OBJECTS"; done
sleep 2
after_o=$(rss_kib $outpost_pid); after_v=$(rss_kib $varnish_pid)
# Every object is still a hit (nothing was evicted to look small).
hits=$(python3 - $OUTPOST "$OBJECTS" <<'PY'
import http.client, sys
host, port = sys.argv[1].split(":")
conn = http.client.HTTPConnection(host, int(port), timeout=30)
hits = 0
for n in range(0, int(sys.argv[2]), 97):
    conn.request("GET", f"/obj.txt?n={n}")
    r = conn.getresponse(); r.read()
    hits += "; hit" in (r.getheader("cache-status") or "")
print(hits, len(range(0, int(sys.argv[2]), 97)))
PY
)
per_o=$(( (after_o - base_o) * 1024 / OBJECTS ))
per_v=$(( (after_v - base_v) * 1024 / OBJECTS ))

# The small edge: 20 times its capacity in objects.
small_base=$(rss_kib $small_pid)
fill $SMALL 0 $(( 16 * 1024 * 1024 * 20 / (BODY + 512) ))
sleep 2
small_after=$(rss_kib $small_pid)
nodisk_base=$(rss_kib $nodisk_pid)
fill $NODISK 0 $(( 16 * 1024 * 1024 * 20 / (BODY + 512) ))
sleep 2
nodisk_after=$(rss_kib $nodisk_pid)

{
  echo "memory per cached object, $OBJECTS objects of $BODY bytes, $(date -u +%FT%TZ)"
  echo "outpost edge: rss $base_o KiB -> $after_o KiB: $per_o bytes per object (sampled hits: $hits)"
  echo "varnish 256m: rss $base_v KiB -> $after_v KiB: $per_v bytes per object"
  echo "ratio outpost/varnish: $(python3 -c "print(round($per_o/$per_v, 2))")"
  echo "edge with capacity_mib = 16, filled with 20x that: rss $small_base KiB -> $small_after KiB ($(( (small_after - small_base) / 1024 )) MiB above its start, the disk tier's index of every record on disk included)"
  echo "the same with disk_mib = 0: rss $nodisk_base KiB -> $nodisk_after KiB ($(( (nodisk_after - nodisk_base) / 1024 )) MiB above its start)"
  # Where an object's bytes go: the store alone, in a process of its own.
  (cd "$(dirname "$0")/.." && cargo test -q --release -p outpost-cache --lib store::resident -- --ignored --nocapture 2>&1 | grep "per stored object")
} | tee "$OUT"
