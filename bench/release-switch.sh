#!/usr/bin/env bash
# A release switch under load: `outpost up` with two parents and three edges; SWITCHES
# releases of OBJECTS objects each are pushed to every parent and edge (`outpost push --to
# edges`) while bench/release_check.py reads pages and their assets from every edge without
# pause. Reports pages that mixed objects of two releases (assets pinned to the page's
# release, as a page does, and unpinned, for comparison) and how long after the commit began
# each edge served the new release (p50, p99, max over every switch and edge).
#
#   bench/release-switch.sh [SWITCHES] [OBJECTS] [ASSETS_PER_PAGE]
#
# Needs python3 and a release build. Uses fixed ports on 127.0.0.53; writes bench/results/.
source "$(dirname "$0")/common.sh"
require "apt-get install python3" python3
SWITCHES=${1:-10}
OBJECTS=${2:-1000}
ASSETS=${3:-5}
IP=127.0.0.53
OUT="$RESULTS/release-switch-$(date +%Y%m%d-%H%M%S).txt"

mkdir -p "$WORK/origin"
echo "pulled" > "$WORK/origin/index.html"
cat > "$WORK/outpost.toml" <<TOML
[admin]
token = "bench"
[tls]
state_dir = "$WORK/state"
[origin]
listen = "$IP:20000"
admin = "$IP:21000"
root = "$WORK/origin"
[[parents]]
name = "parent-a"
listen = "$IP:20001"
admin = "$IP:21001"
[[parents]]
name = "parent-b"
listen = "$IP:20002"
admin = "$IP:21002"
[[edges]]
name = "edge-1"
listen = "$IP:20011"
admin = "$IP:21011"
[[edges]]
name = "edge-2"
listen = "$IP:20012"
admin = "$IP:21012"
[[edges]]
name = "edge-3"
listen = "$IP:20013"
admin = "$IP:21013"
TOML
RUST_LOG=warn "$BIN" up --config "$WORK/outpost.toml" >/dev/null & pids+=($!)
for port in 21001 21002 21011 21012 21013; do
  for _ in $(seq 100); do curl -fs "http://$IP:$port/health" >/dev/null && break; sleep 0.1; done
done

# release DIR NAME: OBJECTS objects that each say which release they belong to, and a page.
release() {
  python3 - "$1" "$2" "$OBJECTS" <<'PY'
import os, sys
dir, name, objects = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dir, exist_ok=True)
for n in range(objects):
    with open(f"{dir}/obj-{n:04}.txt", "w") as f:
        f.write(f"release={name} object={n}\n" + "x" * 900)
with open(f"{dir}/index.html", "w") as f:
    f.write(f"<h1>{name}</h1>\n")
PY
}
push() {
  "$BIN" push "$WORK/site-$1" --prefix /rel/ --name "$1" --to edges --config "$WORK/outpost.toml" --token bench
}

release "$WORK/site-r0" r0
push r0 > "$WORK/push-r0.txt"
EDGES="$IP:20011,$IP:20012,$IP:20013"
python3 bench/release_check.py "$EDGES" /rel/ "$OBJECTS" "$ASSETS" "$WORK/stop" > "$WORK/check.json" &
checker=$!
pids+=($checker)
sleep 2
commits=()
push_ms=()
for k in $(seq "$SWITCHES"); do
  release "$WORK/site-r$k" "r$k"
  started=$(date +%s%3N)
  push "r$k" > "$WORK/push-r$k.txt"
  push_ms+=($(( $(date +%s%3N) - started )))
  commits+=("r$k=$(sed -n 's/.*committing on [0-9]* nodes at \([0-9]*\).*/\1/p' "$WORK/push-r$k.txt")")
  sleep 1
done
touch "$WORK/stop"
wait $checker || true

python3 - "$WORK/check.json" "$SWITCHES" "$OBJECTS" "${push_ms[*]}" "${commits[@]}" <<'PY' | tee "$OUT"
import json, statistics, sys
stats = json.load(open(sys.argv[1]))
switches, objects, push_ms = int(sys.argv[2]), int(sys.argv[3]), [int(x) for x in sys.argv[4].split()]
commits = dict(arg.split("=") for arg in sys.argv[5:])
delays = []
for edge, seen in stats["first_seen"].items():
    for release, at in commits.items():
        if release in seen:
            delays.append(seen[release] - int(at))
        else:
            print(f"{edge}: never saw {release}")
delays.sort()
p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
print(f"release switch, {switches} switches of {objects} objects over 2 parents and 3 edges")
print(f"pages read: {stats['pages']}, errors: {stats['errors']}")
print(f"pages mixing two releases: {stats['mixed_pinned']} with assets pinned to the page's release, {stats['mixed_unpinned']} unpinned")
print(f"new release first served, ms after the commit began: p50 {p(0.5):.1f}, p99 {p(0.99):.1f}, max {delays[-1]:.1f} ({len(delays)} edge switches)")
print(f"whole push (hash, upload, stage, commit), ms: median {statistics.median(push_ms)}")
PY
