#!/usr/bin/env bash
# ESI pages/s of an Outpost edge beside Varnish (`beresp.do_esi`), both in front of the same
# Outpost origin on this machine, in the same run: a template including ten fragments of
# 200 bytes, every part cached (wrk, several rounds interleaved, medians and the ratio). Then
# the time to first byte of a page whose template is a hit and whose one fragment takes 1 s
# at the origin (curl, median of 5).
#
#   bench/esi.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Needs: wrk, varnishd, curl (apt-get install wrk varnish curl) and a release build
# (cargo build --release). Uses fixed ports on 127.0.0.52; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install wrk varnish curl" wrk varnishd curl
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-64}
IP=127.0.0.52
ORIGIN=$IP:18000
OUTPOST=$IP:18080
VARNISH=$IP:18081

# The site: the origin's default rules send `Surrogate-Control: content="ESI/1.0"` for
# /esi/*.html, cache other files for five minutes, and hold /esi/fragments/slow.html for 1 s.
SITE=$WORK/site
mkdir -p "$SITE/esi/f" "$SITE/esi/fragments"
{
  echo "<html><body><h1>ten fragments</h1>"
  for i in $(seq 1 10); do
    head -c 200 /dev/zero | tr '\0' "$(printf "\\x$(printf %x $((96 + i)))")" > "$SITE/esi/f/$i.html"
    echo "<div><esi:include src=\"/esi/f/$i.html\"/></div>"
  done
  echo "</body></html>"
} > "$SITE/esi/page.html"
echo "<p>slow</p>" > "$SITE/esi/fragments/slow.html"
echo '<p>before the slow fragment</p><esi:include src="/esi/fragments/slow.html"/><p>after</p>' > "$SITE/esi/slow.html"

RUST_LOG=warn "$BIN" origin --root "$SITE" --listen $ORIGIN --admin $IP:19000 & pids+=($!)
RUST_LOG=warn "$BIN" edge --listen $OUTPOST --admin $IP:19080 --upstream http://$ORIGIN --name edge-bench & pids+=($!)
cat > "$WORK/esi.vcl" <<VCL
vcl 4.1;
backend origin { .host = "$IP"; .port = "18000"; }
sub vcl_backend_response {
  if (bereq.url ~ "^/esi/[^/]*\.html$") { set beresp.do_esi = true; }
}
VCL
varnishd -a $VARNISH -f "$WORK/esi.vcl" -s malloc,256m -n "$WORK/varnish" -p thread_pool_min=50 >/dev/null
sleep 1

for target in $OUTPOST $VARNISH; do
  curl -s -o /dev/null "http://$target/esi/page.html"; curl -s -o /dev/null "http://$target/esi/page.html"
done
echo "assembly check (both must be the same page):"
a=$(curl -s "http://$OUTPOST/esi/page.html" | md5sum)
b=$(curl -s "http://$VARNISH/esi/page.html" | md5sum)
echo "  outpost $a"
echo "  varnish $b"
[ "$a" = "$b" ] || { echo "the pages differ" >&2; exit 1; }
echo "outpost's page head: $(curl -s -o /dev/null -D - "http://$OUTPOST/esi/page.html" | grep -i -E '^(cache-control|etag)' | tr -d '\r' | tr '\n' ' ')"
curl -s "http://$OUTPOST/esi/page.html" | grep -q "esi:" && { echo "outpost left markup" >&2; exit 1; }

RAW="$RESULTS/esi-$(date +%Y%m%d-%H%M%S).txt"
for round in $(seq 1 "$ROUNDS"); do
  for name in outpost varnish; do
    case $name in outpost) target=$OUTPOST;; varnish) target=$VARNISH;; esac
    rps=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "http://$target/esi/page.html" | awk '/Requests\/sec/ {print $2}')
    echo "$round $name pages $rps" | tee -a "$RAW"
  done
done

# Time to first byte with the template cached and the one fragment taking 1 s every time
# (the slow fragment is never cached).
for target in $OUTPOST $VARNISH; do curl -s -o /dev/null "http://$target/esi/slow.html"; done
for round in 1 2 3 4 5; do
  for name in outpost varnish; do
    case $name in outpost) target=$OUTPOST;; varnish) target=$VARNISH;; esac
    ttfb=$(curl -s -o /dev/null -w '%{time_starttransfer}' "http://$target/esi/slow.html")
    echo "$round $name ttfb $ttfb" | tee -a "$RAW"
  done
done

echo
echo "medians over $ROUNDS rounds (wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s; TTFB of 5 curls), raw: $RAW"
python3 - "$RAW" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = lambda name, what: statistics.median(float(r[3]) for r in rows if r[1] == name and r[2] == what)
o, v = med("outpost", "pages"), med("varnish", "pages")
print(f"ESI pages/s (10 cached fragments of 200 B): outpost {o:.0f}  varnish {v:.0f}  | outpost/varnish {o / v:.2f}")
o, v = med("outpost", "ttfb"), med("varnish", "ttfb")
print(f"time to first byte, template hit + 1 s fragment: outpost {o * 1000:.1f} ms  varnish {v * 1000:.1f} ms")
PY
