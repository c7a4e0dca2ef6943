#!/usr/bin/env python3
"""Transcoding: Lectern's engine vs the ffmpeg CLI, on the same source and ladder.

Three ways to turn one 1080p source into the 1080/720/480/360 HLS ladder with the same
settings (libx264 preset, CRF 21 with the same maxrate caps, keyframes every segment, 4 s MPEG-TS
segments, AAC 128k):

  lectern       `lectern transcode` (decode once, fan out, one AAC encode; also makes thumbnails)
  ffmpeg-split  one ffmpeg process with a split filter graph and the hls muxer's var_stream_map
  ffmpeg-each   one ffmpeg run per rendition, one after the other

Prints wall time, peak RSS, output bytes, PSNR of the 720p rendition against the source, and the
ratios to Lectern. Targets: lectern <= 1.0x ffmpeg-split and <= 0.7x ffmpeg-each in wall time, at
PSNR within 0.1 dB.

    python3 benches/transcode.py [--seconds 30] [--preset veryfast]
"""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LADDER = [("1080p", 1920, 1080, 5000), ("720p", 1280, 720, 2800), ("480p", 854, 480, 1400), ("360p", 640, 360, 800)]


def run(cmd):
    """Run `cmd`; returns (wall seconds, peak RSS in MiB of the process tree's largest member)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def tree_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def psnr(rendition_playlist, source):
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-allowed_extensions", "ALL", "-i", rendition_playlist, "-i", source, "-lavfi",
         "[1:v]scale=1280:720:flags=bicubic[ref];[0:v][ref]psnr", "-f", "null", "-"],
        capture_output=True, text=True,
    ).stderr
    m = re.search(r"PSNR .*average:([\d.]+|inf)", out)
    return float(m.group(1)) if m else float("nan")


def x264_args(preset, gop):
    return ["-c:v", "libx264", "-preset", preset, "-crf", "21", "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--preset", default="veryfast")
    args = ap.parse_args()
    seg, fps = 4, 30
    gop = seg * fps

    lectern = os.environ.get("LECTERN_BIN")  # an already-built binary, e.g. target/debug/lectern
    if not lectern:
        subprocess.run(["cargo", "build", "--release", "--bin", "lectern", "-q"], cwd=ROOT, check=True)
        lectern = os.path.join(ROOT, "target", "release", "lectern")
    work = tempfile.mkdtemp(prefix="lectern-transcode-bench-")
    try:
        src = os.path.join(work, "source.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate={fps}:duration={args.seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={args.seconds}",
             "-vf", "noise=alls=6:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-crf", "14", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "192k", "-shortest", src],
            check=True,
        )
        results = {}

        out = os.path.join(work, "lectern")
        wall, rss = run([lectern, "transcode", src, out, "--preset", args.preset, "--segment-seconds", str(seg)])
        results["lectern"] = (wall, rss, tree_bytes(out), psnr(os.path.join(out, "720p", "index.m3u8"), src))

        out = os.path.join(work, "split")
        os.makedirs(out)
        graph = f"[0:v]fps={fps},split={len(LADDER)}" + "".join(f"[s{i}]" for i in range(len(LADDER))) + ";" + ";".join(
            f"[s{i}]scale={w}:{h}[v{i}]" for i, (_, w, h, _) in enumerate(LADDER))
        cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", src, "-filter_complex", graph]
        for i in range(len(LADDER)):
            cmd += ["-map", f"[v{i}]"]
        for i in range(len(LADDER)):
            cmd += ["-map", "0:a"]
        cmd += x264_args(args.preset, gop)
        for i, (_, _, _, rate) in enumerate(LADDER):
            cmd += [f"-maxrate:v:{i}", f"{rate}k", f"-bufsize:v:{i}", f"{2 * rate}k"]
        cmd += ["-c:a", "aac", "-b:a", "128k", "-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod",
                "-hls_segment_filename", f"{out}/%v/seg_%05d.ts", "-master_pl_name", "master.m3u8",
                "-var_stream_map", " ".join(f"v:{i},a:{i},name:{n}" for i, (n, _, _, _) in enumerate(LADDER)),
                f"{out}/%v/index.m3u8"]
        wall, rss = run(cmd)
        results["ffmpeg-split"] = (wall, rss, tree_bytes(out), psnr(os.path.join(out, "720p", "index.m3u8"), src))

        out = os.path.join(work, "each")
        total, peak = 0.0, 0.0
        for name, w, h, rate in LADDER:
            d = os.path.join(out, name)
            os.makedirs(d)
            cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", src, "-vf", f"fps={fps},scale={w}:{h}"]
            cmd += x264_args(args.preset, gop) + ["-maxrate", f"{rate}k", "-bufsize", f"{2 * rate}k"]
            cmd += ["-c:a", "aac", "-b:a", "128k", "-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod",
                    "-hls_segment_filename", f"{d}/seg_%05d.ts", f"{d}/index.m3u8"]
            wall, rss = run(cmd)
            total += wall
            peak = max(peak, rss)
        results["ffmpeg-each"] = (total, peak, tree_bytes(out), psnr(os.path.join(out, "720p", "index.m3u8"), src))

        print(f"source: {args.seconds} s 1920x1080@{fps} + AAC; preset {args.preset}; {seg} s segments; 2-core machine")
        print(f"{'':13} {'wall s':>8} {'peak RSS MiB':>13} {'output MiB':>11} {'PSNR 720p':>10} {'wall ratio':>11} {'PSNR diff':>10}")
        base = results["lectern"]
        for name, (wall, rss, size, p) in results.items():
            print(f"{name:13} {wall:>8.1f} {rss:>13.0f} {size / 2**20:>11.1f} {p:>10.2f} {base[0] / wall:>11.2f} {base[3] - p:>+10.2f}")
        print("(wall ratio = lectern / that way; targets: <= 1.0 vs ffmpeg-split, <= 0.7 vs ffmpeg-each; PSNR diff = lectern - that way)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
