"""The checker of bench/release-switch.sh: requests continuously from every edge while
releases switch, and records what it saw.

For each edge, two threads:
- a page reader: GETs PREFIX/index.html, notes its release (the Outpost-Release header), then
  GETs ASSETS random objects of the page, pinned to that release (Outpost-Release request
  header) and, for comparison, unpinned; a page is mixed when an asset's body names another
  release than the page;
- a poller: GETs PREFIX/index.html back to back and records when each release was first seen.

Runs until the file STOP exists; then prints one JSON object: pages, mixed pages pinned and
unpinned, and the first-seen times (ms since the epoch) per edge and release.
"""
import http.client, json, os, random, sys, threading, time

edges, prefix, objects, assets, stop = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lock = threading.Lock()
stats = {"pages": 0, "mixed_pinned": 0, "mixed_unpinned": 0, "errors": 0, "first_seen": {e: {} for e in edges}}

def connect(edge):
    host, port = edge.split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)

def get(conn, path, pin=None):
    conn.request("GET", path, headers={"outpost-release": pin} if pin else {})
    r = conn.getresponse()
    body = r.read()
    return r.status, r.getheader("outpost-release"), body

def pages(edge):
    conn = connect(edge)
    while not os.path.exists(stop):
        try:
            status, release, _ = get(conn, prefix + "index.html")
            picks = random.sample(range(objects), assets)
            pinned = unpinned = False
            for n in picks:
                _, _, body = get(conn, f"{prefix}obj-{n:04}.txt", release)
                pinned |= not body.startswith(f"release={release} ".encode())
                _, _, body = get(conn, f"{prefix}obj-{n:04}.txt")
                unpinned |= not body.startswith(f"release={release} ".encode())
            with lock:
                stats["pages"] += 1
                stats["mixed_pinned"] += pinned
                stats["mixed_unpinned"] += unpinned
        except Exception:
            with lock:
                stats["errors"] += 1
            conn = connect(edge)

def poll(edge):
    conn = connect(edge)
    seen = stats["first_seen"][edge]
    while not os.path.exists(stop):
        try:
            _, release, _ = get(conn, prefix + "index.html")
            now = time.time() * 1000
            if release and release not in seen:
                with lock:
                    seen[release] = now
        except Exception:
            conn = connect(edge)

threads = [threading.Thread(target=f, args=(e,)) for e in edges for f in (pages, poll)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(stats))
