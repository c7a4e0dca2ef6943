#!/usr/bin/env python3
"""Token-gated HLS segment GETs: Lectern's segment server vs nginx `secure_link`.

Both serve the same segment files (a transcoded lecture) from local disk; every request carries
a token the server checks (Lectern: a playback JWT; nginx: secure_link's MD5 + expiry). wrk
drives each with the same connection count and URL list. Prints req/s, MB/s, p50/p99 latency,
the server's CPU time (user + system, from /proc) per request and per byte, and Lectern/nginx
ratios. Targets: req/s and bytes/s ratios >= 1.0, p99 and CPU ratios <= 1.0.

    python3 benches/segment_server.py [--connections 64] [--seconds 20] [--threads 2] [--keepalive-only]

It also sends 200 ranged (4 KiB) and 100 whole-segment GETs one after another on one keep-alive
connection to each server and counts those slower than 20 ms: a timer on the connection (Nagle's
algorithm meeting delayed ACKs) shows as ~40 ms answers.

Needs: ffmpeg, nginx (nginx-light), wrk; builds Lectern in release mode (or set LECTERN_BIN).
"""
import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import course_with_lectures, free_port, http, lectern_binary, login, serve_with_instructor, transcoded_video


def cpu_seconds(pid):
    """User + system CPU seconds of `pid` and its children (nginx's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid] + [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wrk(urls_file, base, connections, seconds, threads, headers="", pid=None):
    lua = os.path.join(os.path.dirname(urls_file), "paths.lua")
    with open(lua, "w") as f:
        f.write(
            f"""
local paths = {{}}
for line in io.lines("{urls_file}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1]{headers})
end
"""
        )
    cpu = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua, base],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = (cpu_seconds(pid) - cpu) if pid else 0.0
    def unit(v, u):
        return float(v) * {"us": 1e-3, "ms": 1, "s": 1000}[u]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mbs = float(tr.group(1)) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[tr.group(2)]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"wrk saw {non2xx.group(1)} failed responses against {base}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    read = re.search(r"requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    nbytes = float(read.group(1)) * {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[read.group(2)]
    return {"rps": rps, "mbs": mbs, "p50": unit(*p50.groups()), "p99": unit(*p99.groups()),
            "cpu_us_req": cpu / requests * 1e6, "cpu_ns_byte": cpu / nbytes * 1e9}


def keepalive(base, paths):
    """Sequential GETs on one keep-alive connection: (ranged slow, ranged, whole slow, whole, p50 ms)."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    times = {"range": [], "whole": []}
    for kind, n, headers in (("range", 200, {"Range": "bytes=0-4095"}), ("whole", 100, {})):
        for i in range(n):
            t = time.perf_counter()
            conn.request("GET", paths[i % len(paths)], headers=headers)
            r = conn.getresponse()
            r.read()
            assert r.status in (200, 206), r.status
            times[kind].append((time.perf_counter() - t) * 1000)
    conn.close()
    slow = {k: sum(1 for x in v if x > 20) for k, v in times.items()}
    every = sorted(times["range"])
    return slow["range"], len(times["range"]), slow["whole"], len(times["whole"]), every[len(every) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keepalive-only", action="store_true", help="only the one-connection latency check")
    ap.add_argument("--perf", metavar="PREFIX", help="record a perf profile of Lectern during each run (PREFIX-whole.data, PREFIX-ranged.data)")
    args = ap.parse_args()

    lectern = lectern_binary()
    work = tempfile.mkdtemp(prefix="lectern-bench-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user
    data = os.path.join(work, "data")
    port = free_port()
    env = dict(os.environ, LECTERN_DATA_DIR=data, LECTERN_LISTEN=f"127.0.0.1:{port}", LECTERN_WORKERS="1",
               LECTERN_HLS_ENCRYPTION="false", LECTERN_LOG_FILTER="warn", LECTERN_X264_PRESET="ultrafast")
    procs = []
    try:
        api = f"http://127.0.0.1:{port}"
        procs.append(serve_with_instructor(lectern, env, api))
        tok = login(api)
        _, (lecture,) = course_with_lectures(api, tok)
        video_id = transcoded_video(api, tok, lecture, work, wait=300)
        session = http("POST", f"{api}/api/v1/lectures/{lecture}/playback", {}, tok)
        token = session["token"]

        # The same segment files for nginx: Lectern's stored output directory.
        videos = os.path.join(data, "objects", "videos", str(video_id))
        out_dir = os.path.join(videos, next(d for d in os.listdir(videos) if d.startswith("hls-")))
        # Lectern keeps its data dir private (0700); nginx's workers need to read the same files.
        for d in [data, os.path.join(data, "objects"), os.path.join(data, "objects", "videos"), videos]:
            os.chmod(d, 0o755)
        for r, dirs, files in os.walk(out_dir):
            os.chmod(r, 0o755)
            for name in files:
                os.chmod(os.path.join(r, name), 0o644)
        segments = sorted(
            f"{r}/{s}" for r in os.listdir(out_dir) if os.path.isdir(os.path.join(out_dir, r))
            for s in os.listdir(os.path.join(out_dir, r)) if s.endswith(".ts") and not s.startswith(".")
        )
        secret, expires = "bench-secret", int(time.time()) + 3600
        lectern_paths = [f"/hls/{video_id}/{s}?token={token}" for s in segments]
        nginx_paths = []
        for s in segments:
            uri = f"/hls/{video_id}/{s}"
            md5 = base64.urlsafe_b64encode(hashlib.md5(f"{expires}{uri} {secret}".encode()).digest()).decode().rstrip("=")
            nginx_paths.append(f"{uri}?md5={md5}&expires={expires}")
        for name, paths in (("lectern", lectern_paths), ("nginx", nginx_paths)):
            with open(os.path.join(work, f"{name}.txt"), "w") as f:
                f.write("\n".join(paths) + "\n")

        nport = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 2; daemon off; pid {work}/nginx.pid; error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {work}/t1; proxy_temp_path {work}/t2; fastcgi_temp_path {work}/t3; uwsgi_temp_path {work}/t4; scgi_temp_path {work}/t5;
  types {{ video/mp2t ts; }}
  server {{
    listen 127.0.0.1:{nport};
    location ~ ^/hls/{video_id}/(?<rest>.+)$ {{
      secure_link $arg_md5,$arg_expires;
      secure_link_md5 "$secure_link_expires$uri {secret}";
      if ($secure_link = "") {{ return 403; }}
      if ($secure_link = "0") {{ return 410; }}
      alias {out_dir}/$rest;
    }}
  }}
}}
""")
        procs.append(subprocess.Popen(["nginx", "-e", f"{work}/nginx-error.log", "-c", conf]))
        nginx_base = f"http://127.0.0.1:{nport}"
        time.sleep(0.5)
        for base, paths in ((api, lectern_paths), (nginx_base, nginx_paths)):
            try:
                urllib.request.urlopen(base + paths[0])
            except Exception as e:
                sys.exit(f"{base}{paths[0]}: {e}\n{open(os.path.join(work, 'nginx-error.log')).read()[-2000:]}")

        print("one keep-alive connection, sequential GETs (answers slower than 20 ms):")
        for name, base, paths in (("lectern", api, lectern_paths), ("nginx", nginx_base, nginx_paths)):
            rs, rn, ws, wn, p50 = keepalive(base, paths)
            print(f"  {name:8} ranged {rs}/{rn} slow (p50 {p50:.2f} ms), whole {ws}/{wn} slow")
        if args.keepalive_only:
            return
        for label, headers in (("whole segments", ""), ("4 KiB ranges", ', {Range = "bytes=0-4095"}')):
            print(f"{label}: {len(segments)} segments, {args.connections} connections, {args.seconds} s, wrk -t{args.threads}")
            results = {}
            for name, base, proc in (("lectern", api, procs[0]), ("nginx", nginx_base, procs[1])):
                wrk(os.path.join(work, f"{name}.txt"), base, args.connections, 3, args.threads, headers)  # warm-up
                perf = None
                if args.perf and name == "lectern":
                    out = f"{args.perf}-{'ranged' if headers else 'whole'}.data"
                    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "400", "--call-graph", "dwarf,16384", "-o", out,
                                             "-p", str(proc.pid), "--", "sleep", str(args.seconds)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                results[name] = wrk(os.path.join(work, f"{name}.txt"), base, args.connections, args.seconds, args.threads, headers, proc.pid)
                if perf:
                    perf.wait()
            print(f"{'':8} {'req/s':>10} {'MB/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU us/req':>11} {'CPU ns/B':>9}")
            for name, r in results.items():
                print(f"{name:8} {r['rps']:>10.0f} {r['mbs']:>10.1f} {r['p50']:>9.2f} {r['p99']:>9.2f} {r['cpu_us_req']:>11.2f} {r['cpu_ns_byte']:>9.3f}")
            l, n = results["lectern"], results["nginx"]
            print(f"{'ratio':8} {l['rps'] / n['rps']:>10.2f} {l['mbs'] / n['mbs']:>10.2f} {l['p50'] / n['p50']:>9.2f} {l['p99'] / n['p99']:>9.2f} "
                  f"{l['cpu_us_req'] / n['cpu_us_req']:>11.2f} {l['cpu_ns_byte'] / n['cpu_ns_byte']:>9.2f}")
            print("(ratio = lectern / nginx; target: req/s and MB/s >= 1.0, p99 and CPU <= 1.0)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
