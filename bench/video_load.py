#!/usr/bin/env python3
"""Load and origin for bench/video.sh: raw HTTP/1.1 over asyncio, no dependencies.

  video_load.py origin ADDR            a slow live-segment origin and a hashed VOD (parts 2, 3)
  video_load.py burst URL N STATS      N viewers at once on one new segment (part 2)
  video_load.py players BASE N STATS   N simulated players on a cold hashed VOD (part 3)
  video_load.py held EDGES N PARTS LOG N viewers on LL-HLS blocking reloads (part 4)

Every result is one JSON line on stdout.
"""

import asyncio
import hashlib
import json
import random
import sys
import time
import urllib.request

SEGMENT = 1 << 20  # the live segment: 1 MiB sent over 2 s
VOD_SEGMENTS = 60
VOD_SIZE = 64 << 10


def vod_names(run):
    return [hashlib.sha1(f"{run}-{i}".encode()).hexdigest()[:16] + ".m4s" for i in range(VOD_SEGMENTS)]


class Origin:
    """/live/NAME.m4s: 1 MiB in 20 chunks 100 ms apart. /vod/RUN/index.m3u8 and its hashed
    segments (64 KiB each). /stats?path=P: requests seen for P and when the first byte of the
    first one left (epoch seconds)."""

    def __init__(self):
        self.seen = {}
        self.first_byte = {}

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                await self.answer(target, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def answer(self, target, writer):
        path = target.split("?")[0]
        if path == "/stats":
            asked = target.split("path=", 1)[1]
            body = json.dumps({"count": self.seen.get(asked, 0), "first_byte": self.first_byte.get(asked)}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\n"
                         b"content-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            return
        self.seen[path] = self.seen.get(path, 0) + 1
        if path.startswith("/live/"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: video/iso.segment\r\ncache-control: max-age=600\r\n"
                         b"content-length: %d\r\n\r\n" % SEGMENT)
            chunk = SEGMENT // 20
            for i in range(20):
                writer.write(b"x" * (chunk if i < 19 else SEGMENT - 19 * chunk))
                await writer.drain()
                if i == 0:
                    self.first_byte.setdefault(path, time.time())
                await asyncio.sleep(0.1)
            return
        parts = path.split("/")
        if path.startswith("/vod/") and len(parts) == 4:
            run, name = parts[2], parts[3]
            names = vod_names(run)
            if name == "index.m3u8":
                text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                text += "".join(f"#EXTINF:2.0,\n{n}\n" for n in names) + "#EXT-X-ENDLIST\n"
                body, kind, cc = text.encode(), b"application/vnd.apple.mpegurl", b"max-age=60"
            elif name in names:
                body, kind, cc = b"v" * VOD_SIZE, b"video/iso.segment", b"max-age=86400"
            else:
                body, kind, cc = b"no", b"text/plain", b"no-store"
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nno")
                await writer.drain()
                return
            await asyncio.sleep(0.02)  # an origin 20 ms away
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + kind + b"\r\ncache-control: " + cc +
                         b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nno")
        await writer.drain()


async def serve(addr):
    host, port = addr.rsplit(":", 1)
    origin = Origin()
    server = await asyncio.start_server(origin.handle, host, int(port), limit=1 << 16, backlog=4096)
    async with server:
        await server.serve_forever()


def split_url(url):
    rest = url.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    host, port = authority.rsplit(":", 1)
    return host, int(port), "/" + path, authority


async def read_response(reader):
    """Status, headers (lower-case names), the time the first body byte arrived, the body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    first = None
    body = bytearray()
    while len(body) < length:
        chunk = await reader.read(min(1 << 16, length - len(body)))
        if not chunk:
            raise ConnectionError("body cut short")
        if first is None:
            first = time.time()
        body += chunk
    return status, headers, first if first is not None else time.time(), bytes(body)


def is_hit(headers):
    """A hit at the cache that answered: Outpost's Cache-Status (RFC 9211), nginx's
    $upstream_cache_status, Varnish's X-Varnish with two transaction ids."""
    last = headers.get("cache-status", "").split(",")[-1].split(";")
    if len(last) > 1 and last[1].strip() == "hit":
        return True
    if headers.get("x-cache-status", "") == "HIT":
        return True
    return len(headers.get("x-varnish", "").split()) == 2


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def stats(stats_url, path):
    with urllib.request.urlopen(f"{stats_url}?path={path}") as response:
        return json.load(response)


async def burst(url, n, stats_url):
    host, port, path, authority = split_url(url)
    connections = [await asyncio.open_connection(host, port) for _ in range(n)]
    request = f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()

    async def viewer(reader, writer):
        writer.write(request)
        await writer.drain()
        status, _, first, body = await read_response(reader)
        done = time.time()
        writer.close()
        return status, first, done, len(body)

    results = await asyncio.gather(*(viewer(r, w) for r, w in connections))
    seen = stats(stats_url, path)
    origin_first = seen["first_byte"]
    ttfb = [(first - origin_first) * 1000 for _, first, _, _ in results]
    complete = [(done - origin_first) * 1000 for _, _, done, _ in results]
    print(json.dumps({
        "viewers": n,
        "ok": sum(1 for s, _, _, size in results if s == 200 and size == SEGMENT),
        "origin_requests": seen["count"],
        "ttfb_after_origin_ms_p50": round(percentile(ttfb, 50), 1),
        "ttfb_after_origin_ms_p99": round(percentile(ttfb, 99), 1),
        "complete_after_origin_ms_p50": round(percentile(complete, 50), 1),
    }))


async def players(base, n, stats_url):
    """Players start within 3 s of each other, read the playlist, then segments in order with
    100 ms between them, each stopping somewhere between segment 10 and the end."""
    host, port, path, authority = split_url(base)
    run = path.strip("/").split("/")[-1]
    names = vod_names(run)
    rng = random.Random(13)
    plans = [(rng.uniform(0, 3), rng.randint(10, VOD_SEGMENTS)) for _ in range(n)]

    async def player(delay, stop):
        await asyncio.sleep(delay)
        reader, writer = await asyncio.open_connection(host, port)
        outcomes = []
        for target in [f"{path}/index.m3u8"] + [f"{path}/{name}" for name in names[:stop]]:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            await writer.drain()
            status, headers, _, _ = await read_response(reader)
            outcomes.append((target, status, is_hit(headers)))
            await asyncio.sleep(0.1)
        writer.close()
        return outcomes

    results = await asyncio.gather(*(player(d, s) for d, s in plans))
    nexts = [hit for outcomes in results for (_, _, hit) in outcomes[2:]]
    requested = {target for outcomes in results for (target, _, _) in outcomes}
    fetched = {f"{path}/{name}" for name in names if stats(stats_url, f"{path}/{name}")["count"] > 0}
    wasted = fetched - requested
    print(json.dumps({
        "players": n,
        "next_segment_requests": len(nexts),
        "next_segment_hit_ratio": round(sum(nexts) / max(1, len(nexts)), 4),
        "origin_segments": len(fetched),
        "prefetched_never_requested": len(wasted),
        "wasted_byte_share": round(len(wasted) / max(1, len(fetched)), 4),
        "errors": sum(1 for outcomes in results for (_, s, _) in outcomes if s != 200),
    }))


async def held(edges, n, parts, log):
    """n viewers over the edges hold blocking reloads for each of `parts` parts in turn; for
    each, the time from the part's publication (the origin's clock: part p of segment m is out
    at m * 2 s + (p + 1) * 0.5 s after the epoch) to each viewer's answer."""
    targets = [split_url(e) for e in edges]
    connections = []
    for i in range(n):
        host, port, _, _ = targets[i % len(targets)]
        reader, writer = await asyncio.open_connection(host, port)
        # One site's name at every edge, as DNS would send its viewers: one cache key.
        connections.append((reader, writer, "live.outpost.test"))
    delays = []
    per_part = []
    errors = 0
    for _ in range(parts):
        now = time.time()
        segment = int(now // 2)
        part = int((now - segment * 2) // 0.5) + 1
        if part == 4:
            segment, part = segment + 1, 0
        published = segment * 2 + (part + 1) * 0.5
        query = f"_HLS_msn={segment}&_HLS_part={part}"

        async def viewer(reader, writer, authority):
            writer.write(f"GET /video/live/media_0.m3u8?{query} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            await writer.drain()
            status, _, _, body = await read_response(reader)
            return status, time.time(), body

        results = await asyncio.gather(*(viewer(*c) for c in connections))
        for status, done, body in results:
            if status != 200 or f"seg-0-{segment}.{part}.m4s".encode() not in body:
                errors += 1
            delays.append((done - published) * 1000)
        per_part.append(query)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
    origin_requests = [sum(1 for line in lines if "outpost::access: origin " in line and q in line) for q in per_part]
    print(json.dumps({
        "viewers": n,
        "edges": len(edges),
        "parts": parts,
        "errors": errors,
        "published_to_delivered_ms_p50": round(percentile(delays, 50), 1),
        "published_to_delivered_ms_p99": round(percentile(delays, 99), 1),
        "origin_requests_per_part": origin_requests,
    }))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "origin":
        asyncio.run(serve(args[0]))
    elif command == "burst":
        asyncio.run(burst(args[0], int(args[1]), args[2]))
    elif command == "players":
        asyncio.run(players(args[0], int(args[1]), args[2]))
    elif command == "held":
        asyncio.run(held(args[0].split(","), int(args[1]), int(args[2]), args[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
