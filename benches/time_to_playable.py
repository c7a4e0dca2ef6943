#!/usr/bin/env python3
"""Time to playable: how soon a long lecture can be watched after its upload.

Makes a `--minutes`-long 1080p30 source with audio (ffmpeg's testsrc2 and a tone), starts
`lectern serve` with its defaults (SQLite, filesystem store, the default worker pool), uploads
the file with a streamed PUT, and reports, counted from the moment the upload's last byte was
acknowledged:

  (a) seconds to the first 200 on the master playlist whose media playlist lists a segment
  (b) seconds to hls.js in headless Chromium reaching currentTime > 2 (the session is opened
      as soon as the video says `playable`; the browser's own start-up is reported apart, as
      a viewer's page is already open)
  (c) seconds to `ready` (the whole ladder transcoded and published)
  (d) CPU seconds the server and its workers spent per minute of input

Target: (b) <= 10 s (Mux reports a median of 9 s to playable for 5-20 minute inputs, Bunny's
just-in-time mode 10-15 s).

    python3 benches/time_to_playable.py [--minutes 10] [--poll 0.25]

Needs ffmpeg, node with tests/browser's packages (npm ci --prefix tests/browser) and chromium;
builds Lectern in release mode unless LECTERN_BIN names a binary.
"""
import argparse
import http.client as httpclient
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse

from benchlib import ROOT, course_with_lectures, free_port, http, lectern_binary, login, serve_with_instructor

TICK = os.sysconf("SC_CLK_TCK")


def make_source(path, minutes):
    secs = int(minutes * 60)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={secs}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={secs}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-g", "60", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "128k", "-shortest", path], check=True)


def tree_cpu_seconds(root):
    """CPU seconds of `root` and every process below it, including reaped children's."""
    children = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append((int(pid), fields))
        except OSError:
            continue
    total, stack = 0.0, [root]
    with open(f"/proc/{root}/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    total += sum(int(x) for x in own[11:15]) / TICK
    while stack:
        for pid, fields in children.get(stack.pop(), []):
            total += sum(int(x) for x in fields[11:15]) / TICK
            stack.append(pid)
    return total


def put_file(api, lecture, path, tok):
    """A streamed PUT of the file; returns the video id once the server acknowledged it."""
    u = urllib.parse.urlparse(api)
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=3600)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        conn.request("PUT", f"/api/v1/lectures/{lecture}/video", body=f,
                     headers={"authorization": f"Bearer {tok}", "content-type": "video/mp4", "content-length": str(size)})
        resp = conn.getresponse()
        body = json.loads(resp.read())
    assert resp.status == 202, body
    return body["video_id"]


def get_text(url):
    try:
        return http("GET", url).decode()
    except urllib.error.HTTPError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--poll", type=float, default=0.25, help="how often the client polls the video's status")
    ap.add_argument("--preset", help="LECTERN_X264_PRESET for the server (default: its own, veryfast)")
    args = ap.parse_args()
    lectern = lectern_binary()
    work = tempfile.mkdtemp(prefix="lectern-ttp-bench-", dir=os.environ.get("BENCH_DIR", ROOT))
    server = None
    try:
        src = os.path.join(work, "lecture.mp4")
        t = time.monotonic()
        make_source(src, args.minutes)
        print(f"source: {args.minutes:g} min 1080p30 + AAC, {os.path.getsize(src) / 2**20:.0f} MiB "
              f"(made in {time.monotonic() - t:.0f} s)")
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        env = dict(os.environ, LECTERN_DATA_DIR=os.path.join(work, "data"), LECTERN_LISTEN=f"127.0.0.1:{port}",
                   RUST_LOG="warn")
        if args.preset:
            env["LECTERN_X264_PRESET"] = args.preset
        server = serve_with_instructor(lectern, env, api)
        tok = login(api)
        _, (lecture,) = course_with_lectures(api, tok)
        time.sleep(1)
        cpu0 = tree_cpu_seconds(server.pid)

        video = put_file(api, lecture, src, tok)
        t0 = time.monotonic()
        while True:
            v = http("GET", f"{api}/api/v1/videos/{video}", token=tok)
            if v["playable"] or v["status"] == "failed":
                break
            time.sleep(args.poll)
        assert v["playable"], v
        t_playable = time.monotonic() - t0
        session = http("POST", f"{api}/api/v1/lectures/{lecture}/playback", {}, tok)
        t_session = time.monotonic() - t0
        # (a): the master playlist, and its first media playlist with a segment in it.
        while True:
            master = get_text(session["url"])
            media = None
            if master:
                first = next(line for line in master.splitlines() if "index.m3u8" in line)
                media = get_text(f"{api}/hls/{video}/{first}")
            if media and "#EXTINF" in media:
                break
            time.sleep(0.05)
        t_a = time.monotonic() - t0

        # (b): hls.js plays past 2 s.
        t_launch = time.monotonic()
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "play.mjs"), "hlsjs", session["url"], "2.01"],
                             capture_output=True, text=True, check=True)
        wall_b = time.monotonic() - t0
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result.get("ok"), result
        page_ms = result["ms"] / 1000
        t_b = (t_launch - t0) + page_ms
        startup = wall_b - (t_launch - t0) - page_ms
        v = http("GET", f"{api}/api/v1/videos/{video}", token=tok)
        encoded_at_b = v["ready_seconds"]
        master_at_b = get_text(session["url"]) or ""
        live_rungs = [line.split("/")[0] for line in master_at_b.splitlines() if "index.m3u8" in line]

        while True:
            v = http("GET", f"{api}/api/v1/videos/{video}", token=tok)
            if v["status"] in ("ready", "failed"):
                break
            time.sleep(1)
        assert v["status"] == "ready", v
        t_c = time.monotonic() - t0
        time.sleep(2)  # the worker reaps its engine process
        cpu = tree_cpu_seconds(server.pid) - cpu0
        minutes = v["duration_seconds"] / 60

        print(f"video {video}: {v['duration_seconds']:.1f} s, ladder {[r['name'] for r in v['renditions']]}")
        print(f"  playable (status)                 {t_playable:6.2f} s")
        print(f"  (a) master + first segment 200    {t_a:6.2f} s")
        print(f"  (b) hls.js currentTime > 2        {t_b:6.2f} s   (target <= 10 s; "
              f"session at {t_session:.2f} s, page {page_ms:.2f} s, browser start-up {startup:.2f} s extra; "
              f"{encoded_at_b:.0f} s encoded by then; stalls {result['stalls']}, live at start {result['liveAtStart']})")
        print(f"  rungs listed while transcoding      {live_rungs}")
        print(f"  (c) ready (whole ladder)          {t_c:6.1f} s   ({v['duration_seconds'] / t_c:.2f}x real time)")
        print(f"  (d) CPU per minute of input       {cpu / minutes:6.1f} s   ({cpu:.0f} CPU s in all)")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
