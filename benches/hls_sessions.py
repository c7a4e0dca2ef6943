#!/usr/bin/env python3
"""500 HLS viewers of one lecture on two API nodes over S3 (s3s-fs), for 60 seconds.

Two `lectern serve` processes share one PostgreSQL database, one S3 bucket (a real s3s-fs
server on loopback) and the same keys, as a scaled-out deployment does. A free preview lecture
is transcoded once; then `--sessions` viewers (half on each node, started over `--ramp`
seconds) each open a playback session and play like hls.js does on a VOD: the master playlist,
one media playlist, the AES key, the first three segments back to back (the start-up buffer),
then one segment per segment duration, over keep-alive connections. Prints p50/p99/max per
kind of request, the errors, and how many objects each node read from S3 (the origin
shield's misses), against the target.

    python3 benches/hls_sessions.py [--sessions 500] [--seconds 60] [--ramp 5]

Target: 0 errors, p99 < 50 ms for playlists and keys; one S3 read per object per node.
Issue 10's seed: p99 724 ms (every request went to S3). Needs ffmpeg, psql, s3s-fs and a
PostgreSQL at 127.0.0.1:5432; builds Lectern in release mode unless LECTERN_BIN names a binary.
"""
import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from benchlib import course_with_lectures, create_instructor, free_port, http, lectern_binary, login, transcoded_video, wait_http








class Conn:
    """One keep-alive HTTP/1.1 connection, as a player holds to its origin."""

    def __init__(self, host, port):
        self.host, self.port, self.reader, self.writer = host, port, None, None

    async def get(self, path):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.decode().partition(":") for line in head.split(b"\r\n")[1:] if line)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        return status, body


def child(base_path, uri):
    """`uri` (relative, with its query) resolved against the playlist at `base_path`."""
    return urllib.parse.urljoin(base_path, uri)


async def viewer(host, port, lecture, stats, until, start_after):
    await asyncio.sleep(start_after)
    conn = Conn(host, port)

    async def timed(kind, path):
        started = time.monotonic()
        try:
            status, body = await conn.get(path)
        except Exception as e:  # a broken connection is an error, and a new one is opened
            stats["errors"].append(f"{kind}: {e!r}")
            conn.writer = None
            return None
        stats[kind].append((time.monotonic() - started) * 1000)
        if status != 200:
            stats["errors"].append(f"{kind}: HTTP {status}")
            return None
        return body

    loop = asyncio.get_running_loop()
    session = await loop.run_in_executor(None, lambda: http("POST", f"http://{host}:{port}/api/v1/lectures/{lecture}/playback", {}))
    master_path = urllib.parse.urlsplit(session["url"])
    master_path = master_path.path + "?" + master_path.query
    master = await timed("playlist", master_path)
    if master is None:
        return
    variants = [l for l in master.decode().splitlines() if l and not l.startswith("#")]
    media_path = child(master_path, random.choice(variants))
    media = await timed("playlist", media_path)
    if media is None:
        return
    lines = media.decode().splitlines()
    key = next((re.search(r'URI="([^"]+)"', l).group(1) for l in lines if l.startswith("#EXT-X-KEY")), None)
    if key and await timed("key", child(media_path, key)) is None:
        return
    target = float(next(l.split(":")[1] for l in lines if l.startswith("#EXT-X-TARGETDURATION")))
    segments = [child(media_path, l) for l in lines if l and not l.startswith("#")]
    for i, seg in enumerate(segments * 100):
        if time.monotonic() >= until:
            break
        await timed("segment", seg)
        if i >= 2:
            await asyncio.sleep(target)
    if conn.writer:
        conn.writer.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def cache_misses(base):
    text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    m = re.search(r'lectern_hls_cache_total\{result="miss"\}\s+(\d+)', text)
    return int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--ramp", type=float, default=5.0)
    args = ap.parse_args()
    lectern = lectern_binary()
    s3s = shutil.which("s3s-fs") or os.path.expanduser("~/.cargo/bin/s3s-fs")
    work = tempfile.mkdtemp(prefix="lectern-sessions-bench-")
    db = f"lectern_bench_{uuid.uuid4().hex[:12]}"
    procs = []
    try:
        os.makedirs(os.path.join(work, "s3"))
        s3_port = free_port()
        procs.append(subprocess.Popen([s3s, "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", "bench",
                                       "--secret-key", "bench-secret-key", os.path.join(work, "s3")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {db}"], check=True)
        common = dict(os.environ, LECTERN_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}",
                      LECTERN_STORAGE="s3", LECTERN_S3_ENDPOINT=f"http://127.0.0.1:{s3_port}", LECTERN_S3_BUCKET="lectern",
                      LECTERN_S3_ACCESS_KEY="bench", LECTERN_S3_SECRET_KEY="bench-secret-key", LECTERN_S3_PATH_STYLE="true",
                      LECTERN_S3_REGION="us-east-1", LECTERN_JWT_SECRET="bench-jwt-secret-bench-jwt-secret-0123",
                      LECTERN_PLAYBACK_KEYS="k1:bench-playback-secret-bench-playback-secret", LECTERN_LOG_FILTER="warn",
                      LECTERN_X264_PRESET="ultrafast", LECTERN_SIGNUPS_PER_ADDRESS_PER_HOUR="100000")
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            env = dict(common, LECTERN_DATA_DIR=os.path.join(work, f"node{i}"), LECTERN_LISTEN=f"127.0.0.1:{port}",
                       LECTERN_WORKERS="1" if i == 0 else "0")
            if i == 0:
                subprocess.run([lectern, "migrate"], env=env, check=True, capture_output=True)
                create_instructor(lectern, env)
            procs.append(subprocess.Popen([lectern, "serve"], env=env, stdout=subprocess.DEVNULL))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for b in bases:
            wait_http(f"{b}/healthz")
        api = bases[0]
        tok = login(api)
        course, (lecture,) = course_with_lectures(api, tok, price=10000, preview=True)
        transcoded_video(api, tok, lecture, work)
        http("POST", f"{api}/api/v1/courses/{course['id']}/publish", {}, tok)
        before = [cache_misses(b) for b in bases]

        stats = {"playlist": [], "key": [], "segment": [], "errors": []}

        async def run():
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32))
            until = time.monotonic() + args.seconds
            await asyncio.gather(*(
                viewer("127.0.0.1", ports[i % 2], lecture, stats, until, args.ramp * i / args.sessions)
                for i in range(args.sessions)))

        asyncio.run(run())
        misses = [cache_misses(b) - m for b, m in zip(bases, before)]
        print(f"{args.sessions} sessions on 2 nodes over S3 (s3s-fs), {args.seconds} s")
        print(f"{'kind':9} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for kind in ("playlist", "key", "segment"):
            xs = stats[kind]
            print(f"{kind:9} {len(xs):>9} {pct(xs, 0.5):>8.2f} {pct(xs, 0.99):>8.2f} {max(xs, default=float('nan')):>8.2f}")
        print(f"errors: {len(stats['errors'])} {stats['errors'][:5]}")
        print(f"objects read from S3 per node (origin-shield misses): {misses}")
        p99 = max(pct(stats["playlist"], 0.99), pct(stats["key"], 0.99))
        print(f"playlists and keys p99 {p99:.1f} ms: {p99 / 724:.3f}x the seed's 724 ms; target < 50 ms, 0 errors")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
