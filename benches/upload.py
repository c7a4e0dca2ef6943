#!/usr/bin/env python3
"""Uploads at disk speed: a tus upload and a streamed PUT of one large file, against `dd`.

Makes a file of `--gib` GiB (a short real MP4 at the front, so the sniffer accepts it, then
incompressible bytes), and sends it to `lectern serve` (filesystem store, no transcoding
workers) with curl: once as one tus PATCH, once as `PUT /api/v1/lectures/{id}/video`. Each is
timed from the first byte sent to the answer; the server's peak RSS growth is read from
/proc (VmHWM). Then `dd` writes the same number of bytes to the same disk with
`conv=fdatasync` (Lectern syncs what it stores before it answers, too).

    python3 benches/upload.py [--gib 2] [--rounds 3]

Target: each upload >= 0.8x dd's MiB/s, RSS growth < 64 MiB. Needs curl, ffmpeg and dd;
builds Lectern in release mode unless LECTERN_BIN names a binary.
"""
import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from benchlib import ROOT, course_with_lectures, free_port, http_with_headers, lectern_binary, login, serve_with_instructor
MIB = 1024 * 1024






def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def make_file(path, size):
    head = path + ".head.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=2",
                    "-c:v", "libx264", "-preset", "ultrafast", head], check=True)
    block = os.urandom(8 * MIB)
    with open(path, "wb") as out, open(head, "rb") as h:
        written = out.write(h.read())
        while written < size:
            written += out.write(block[: min(len(block), size - written)])
    os.remove(head)


def timed(cmd):
    started = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.monotonic() - started, out


class PeakRss:
    """Samples the server's resident memory while an upload runs (VmHWM is the process peak)."""

    def __init__(self, pid):
        self.pid, self.base, self.peak, self.running = pid, rss_kib(pid, "VmRSS"), 0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid, "VmRSS"))
            time.sleep(0.02)

    def growth_mib(self):
        self.running = False
        self.thread.join()
        return (max(self.peak, rss_kib(self.pid, "VmRSS")) - self.base) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = int(args.gib * 1024 * MIB)
    lectern = lectern_binary()
    work = tempfile.mkdtemp(prefix="lectern-upload-bench-", dir=os.environ.get("BENCH_DIR", ROOT))
    data = os.path.join(work, "data")
    port = free_port()
    env = dict(os.environ, LECTERN_DATA_DIR=data, LECTERN_LISTEN=f"127.0.0.1:{port}", LECTERN_WORKERS="0",
               LECTERN_LOG_FILTER="warn", LECTERN_MAX_UPLOAD_BYTES=str(size * 2),
               LECTERN_UPLOAD_DAILY_QUOTA_BYTES=str(size * 8), LECTERN_UPLOAD_MAX_BYTES_IN_PROGRESS=str(size * 4))
    server = None
    try:
        src = os.path.join(work, "upload.bin")
        make_file(src, size)
        api = f"http://127.0.0.1:{port}"
        server = serve_with_instructor(lectern, env, api)
        tok = login(api)
        _, lectures = course_with_lectures(api, tok, count=2 * args.rounds)
        # Warm the page cache with the source, so the client reads it at memory speed.
        subprocess.run(["cat", src], stdout=subprocess.DEVNULL, check=True)

        def tus(lecture):
            meta = "lecture_id " + base64.b64encode(str(lecture).encode()).decode()
            _, headers = http_with_headers("POST", f"{api}/api/v1/uploads", token=tok, headers={
                "tus-resumable": "1.0.0", "upload-length": str(size), "upload-metadata": meta})
            location = headers["location"]
            location = location if location.startswith("http") else api + location
            return ["curl", "-sS", "-f", "-X", "PATCH", "-T", src, "-H", f"authorization: Bearer {tok}",
                    "-H", "tus-resumable: 1.0.0", "-H", "upload-offset: 0",
                    "-H", "content-type: application/offset+octet-stream", "-H", "expect:", location]

        def put(lecture):
            return ["curl", "-sS", "-f", "-T", src, "-H", f"authorization: Bearer {tok}", "-H", "content-type: video/mp4",
                    "-H", "expect:", f"{api}/api/v1/lectures/{lecture}/video"]

        # This machine's disk is shared and its speed swings from run to run, so each round runs
        # dd and both uploads back to back (each after a sync, so none pays for the one before's
        # writeback) and the ratios are taken within a round.
        rounds = []
        dd_out = os.path.join(work, "dd.out")
        for r in range(args.rounds):
            subprocess.run(["sync"], check=True)
            dd_secs, _ = timed(["dd", "if=/dev/zero", f"of={dd_out}", "bs=8M", f"count={size // (8 * MIB)}",
                                "conv=fdatasync", "status=none"])
            os.remove(dd_out)
            row = {"dd": (dd_secs, 0.0)}
            for name, cmd in (("tus PATCH", tus(lectures[2 * r])), ("streamed PUT", put(lectures[2 * r + 1]))):
                subprocess.run(["sync"], check=True)
                rss = PeakRss(server.pid)
                secs, _ = timed(cmd)
                row[name] = (secs, rss.growth_mib())
            rounds.append(row)

        print(f"{size / MIB:.0f} MiB, {args.rounds} rounds; dd conv=fdatasync to the same disk is the peer")
        print(f"{'round':6} {'way':14} {'seconds':>8} {'MiB/s':>8} {'x dd':>6} {'RSS growth MiB':>15}")
        ratios = {"tus PATCH": [], "streamed PUT": []}
        for r, row in enumerate(rounds, 1):
            dd_rate = size / MIB / row["dd"][0]
            for name, (secs, growth) in row.items():
                rate = size / MIB / secs
                if name != "dd":
                    ratios[name].append(rate / dd_rate)
                print(f"{r:<6} {name:14} {secs:>8.2f} {rate:>8.0f} {rate / dd_rate:>6.2f} {growth:>15.1f}")
        for name, xs in ratios.items():
            print(f"median {name}: {statistics.median(xs):.2f}x dd")
        print("(target: >= 0.80x dd, RSS growth < 64 MiB; issue 10's seed: tus 96 MiB/s = 0.13x, peak RSS 130 MiB)")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
