#!/usr/bin/env python3
"""The forensic watermark's numbers: what it costs, how it looks, how little of a copy it needs,
and how often it names the wrong viewer.

  (a) transcode cost: `lectern transcode --encode-all` against the same with `--watermark`
      (every rung encoded twice), wall and CPU seconds, and the bytes written
  (b) PSNR between variant A and B of every rung (FFmpeg's psnr filter, luma)
  (c) the shortest copy it names the viewer from: `lectern serve` with a watermarked course,
      `--sessions` playback sessions issued, one of them captured with `ffmpeg -c copy` and
      re-encoded to 480p at CRF 28; identify run on the first 20, 40, 60, … seconds of each
  (d) false identification: identify run on unmarked encodes (never a match is the aim), and
      the rate at which a copy of one session would be matched to another, from the
      binomial bound identify uses (1 − confidence), at the shortest copy lengths found

    python3 benches/watermark.py [--minutes 4] [--sessions 1000]

Needs ffmpeg; builds Lectern in release mode unless LECTERN_BIN names a binary.
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time

from benchlib import course_with_lectures, free_port, http, lectern_binary, login, serve_with_instructor


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y", *args], check=True)


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def timed(cmd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def psnr(a, b):
    out = subprocess.run(["ffmpeg", "-hide_banner", "-i", a, "-i", b, "-lavfi", "psnr", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    return float(re.search(r"PSNR y:([\d.]+)", out).group(1))


def identify(lectern, env, video, path):
    r = subprocess.run([lectern, "watermark", "identify", "--video", str(video), path], env=env,
                       capture_output=True, text=True)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=4)
    ap.add_argument("--sessions", type=int, default=1000)
    args = ap.parse_args()
    lectern = lectern_binary()
    work = tempfile.mkdtemp(prefix="lectern-wm-")
    secs = int(args.minutes * 60)
    src = os.path.join(work, "src.mp4")
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={secs}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={secs}",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", src)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LECTERN_")}
    env["RUST_LOG"] = "warn"

    # (a) and (b): the same source without and with the watermark.
    print(f"source: {secs} s of 1280x720 testsrc2 (motion everywhere: the hardest case for the mark)")
    runs = {}
    for name, extra in (("plain", []), ("watermark", ["--watermark"])):
        out = os.path.join(work, name)
        wall, cpu = timed([lectern, "transcode", src, out, "--encode-all", *extra], env)
        runs[name] = (wall, cpu, dir_bytes(out), out)
        print(f"(a) {name:9}  wall {wall:7.1f} s  cpu {cpu:7.1f} s  output {runs[name][2] / 1e6:8.1f} MB")
    (pw, pc, pb, _), (ww, wc, wb, wout) = runs["plain"], runs["watermark"]
    print(f"(a) watermark / plain: wall x{ww / pw:.2f}, cpu x{wc / pc:.2f}, storage x{wb / pb:.2f}")
    for rung in sorted(d for d in os.listdir(wout) if os.path.isdir(os.path.join(wout, d)) and not d.endswith("-b")):
        db = psnr(os.path.join(wout, rung, "index.m3u8"), os.path.join(wout, f"{rung}-b", "index.m3u8"))
        print(f"(b) PSNR(A, B) {rung:>5}: {db:.2f} dB")

    # (c) and (d): a server, a watermarked course, sessions, copies.
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    senv = dict(env, LECTERN_DATA_DIR=os.path.join(work, "data"), LECTERN_LISTEN=f"127.0.0.1:{port}",
                LECTERN_X264_PRESET="veryfast")
    server = serve_with_instructor(lectern, senv, api)
    try:
        tok = login(api)
        course, (lecture,) = course_with_lectures(api, tok)
        http("PATCH", f"{api}/api/v1/courses/{course['id']}", {"forensic_watermark": True}, tok)
        with open(src, "rb") as f:
            video = http("PUT", f"{api}/api/v1/lectures/{lecture}/video", f.read(), tok)["video_id"]
        while (v := http("GET", f"{api}/api/v1/videos/{video}", token=tok))["status"] not in ("ready", "failed"):
            time.sleep(1)
        assert v["status"] == "ready", v
        sessions = [http("POST", f"{api}/api/v1/lectures/{lecture}/playback", {}, tok) for _ in range(args.sessions)]
        leaker = sessions[len(sessions) // 3]
        taken = os.path.join(work, "taken.mp4")
        ffmpeg("-i", leaker["url"], "-c", "copy", taken)
        reencoded = os.path.join(work, "reencoded.mp4")
        ffmpeg("-i", taken, "-vf", "scale=-2:480", "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-c:a", "aac", reencoded)
        print(f"(c) {args.sessions} sessions issued; the leaker is {leaker['session_id']}")
        shortest = {}
        for label, copy in (("copy", taken), ("480p CRF 28", reencoded)):
            for length in range(20, secs + 1, 20):
                cut = os.path.join(work, f"cut-{length}.mp4")
                ffmpeg("-ss", "30", "-i", copy, "-t", str(length), "-c", "copy", cut)
                code, line, why = identify(lectern, senv, video, cut)
                right = code == 0 and f"session={leaker['session_id']}" in line
                wrong = code == 0 and not right
                print(f"(c) {label:12} {length:4} s: {line}   [{why}]")
                assert not wrong, "named the wrong session"
                if right:
                    shortest[label] = length
                    break
        for label, length in shortest.items():
            print(f"(c) shortest {label} it names the leaker from: {length} s")

        # (d) unmarked encodes of the same lecture.
        for crf in (18, 23, 28):
            unmarked = os.path.join(work, f"unmarked-{crf}.mp4")
            ffmpeg("-i", src, "-t", "180", "-vf", "scale=-2:480", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), unmarked)
            code, line, why = identify(lectern, senv, video, unmarked)
            print(f"(d) unmarked encode, CRF {crf}: {line}   [{why}]")
            assert code == 1, "an unmarked encode was matched"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
