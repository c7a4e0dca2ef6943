#!/usr/bin/env python3
"""Transcoding: Lectern's engine vs the ffmpeg CLI, like for like, on two sources.

Three ways to turn a 1080p source into the 1080/720/480/360 HLS ladder with the same rate
control (libx264 preset, CRF 21 capped by the same maxrate with bufsize 2x, keyframes every
segment with scenecut off, 4 s MPEG-TS segments, AAC 128k):

  lectern       `lectern transcode` (decode once, fan out, one AAC encode; also makes thumbnails;
                copies a source that already is the top rung instead of encoding it again)
  lectern-all   the same, told to encode every rung (`--encode-all`)
  ffmpeg-split  one ffmpeg process with a split filter graph and the hls muxer's var_stream_map
  ffmpeg-each   one ffmpeg run per rendition, one after the other

Sources (`--sources`): `screen`, a typical screen recording the top-rung shortcut applies to
(H.264 High 1080p30 at 3.5 Mb/s capped at 4.5, keyframes every 2 s, AAC-LC stereo 128k), and
`noisy`, a high-bitrate CRF 18 encode of a noisy picture that no shortcut applies to.

Prints wall time, peak RSS, output bytes (all, and of the encoded 720p rung), PSNR of the 720p
rendition against the source, and the ratios to Lectern. Targets: lectern <= 0.85x ffmpeg-split
on `screen`, <= 1.0x on `noisy`, <= 0.60x ffmpeg-each on both; 720p bytes within 5 % and PSNR
within 0.1 dB of ffmpeg's.

    python3 benches/transcode.py [--seconds 30] [--preset veryfast] [--sources screen,noisy]
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
    ap.add_argument("--sources", default="screen,noisy")
    args = ap.parse_args()
    seg, fps = 4, 30
    gop = seg * fps

    lectern = os.environ.get("LECTERN_BIN")  # an already-built binary, e.g. target/debug/lectern
    if not lectern:
        subprocess.run(["cargo", "build", "--release", "--bin", "lectern", "-q"], cwd=ROOT, check=True)
        lectern = os.path.join(ROOT, "target", "release", "lectern")
    work = tempfile.mkdtemp(prefix="lectern-transcode-bench-")
    try:
        for source in args.sources.split(","):
            bench_source(source, args, lectern, work, seg, fps, gop)
    finally:
        shutil.rmtree(work, ignore_errors=True)


SOURCES = {
    "screen": ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-b:v", "3500k", "-maxrate", "4500k",
               "-bufsize", "9000k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0"],
    "noisy": ["-vf", "noise=alls=6:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18"],
}


def bench_source(source, args, lectern, work, seg, fps, gop):
    src = os.path.join(work, f"{source}.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate={fps}:duration={args.seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={args.seconds}"]
        + SOURCES[source] + ["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-shortest", src],
        check=True,
    )
    rate = os.path.getsize(src) * 8 / args.seconds / 1e6
    results = {}

    def measure(name, out, wall, rss):
        results[name] = (wall, rss, tree_bytes(out), tree_bytes(os.path.join(out, "720p")),
                         psnr(os.path.join(out, "720p", "index.m3u8"), src))

    for name, extra in [("lectern", []), ("lectern-all", ["--encode-all"])]:
        out = os.path.join(work, name)
        shutil.rmtree(out, ignore_errors=True)
        wall, rss = run([lectern, "transcode", src, out, "--preset", args.preset, "--segment-seconds", str(seg)] + extra)
        measure(name, out, wall, rss)

    out = os.path.join(work, "split")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    graph = f"[0:v]fps={fps},split={len(LADDER)}" + "".join(f"[s{i}]" for i in range(len(LADDER))) + ";" + ";".join(
        f"[s{i}]scale={w}:{h}[v{i}]" for i, (_, w, h, _) in enumerate(LADDER))
    cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", src, "-filter_complex", graph]
    for i in range(len(LADDER)):
        cmd += ["-map", f"[v{i}]"]
    for i in range(len(LADDER)):
        cmd += ["-map", "0:a"]
    cmd += x264_args(args.preset, gop)
    for i, (_, _, _, rate_k) in enumerate(LADDER):
        cmd += [f"-maxrate:v:{i}", f"{rate_k}k", f"-bufsize:v:{i}", f"{2 * rate_k}k"]
    cmd += ["-c:a", "aac", "-b:a", "128k", "-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod",
            "-hls_segment_filename", f"{out}/%v/seg_%05d.ts", "-master_pl_name", "master.m3u8",
            "-var_stream_map", " ".join(f"v:{i},a:{i},name:{n}" for i, (n, _, _, _) in enumerate(LADDER)),
            f"{out}/%v/index.m3u8"]
    wall, rss = run(cmd)
    measure("ffmpeg-split", out, wall, rss)

    out = os.path.join(work, "each")
    shutil.rmtree(out, ignore_errors=True)
    total, peak = 0.0, 0.0
    for name, w, h, rate_k in LADDER:
        d = os.path.join(out, name)
        os.makedirs(d)
        cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-y", "-i", src, "-vf", f"fps={fps},scale={w}:{h}"]
        cmd += x264_args(args.preset, gop) + ["-maxrate", f"{rate_k}k", "-bufsize", f"{2 * rate_k}k"]
        cmd += ["-c:a", "aac", "-b:a", "128k", "-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod",
                "-hls_segment_filename", f"{d}/seg_%05d.ts", f"{d}/index.m3u8"]
        wall, rss = run(cmd)
        total += wall
        peak = max(peak, rss)
    measure("ffmpeg-each", out, total, peak)

    print(f"source {source}: {args.seconds} s 1920x1080@{fps} + AAC, {rate:.1f} Mb/s; preset {args.preset}; "
          f"{seg} s segments; 2-core machine")
    print(f"{'':13} {'wall s':>8} {'RSS MiB':>8} {'out MiB':>8} {'720p MiB':>9} {'PSNR 720p':>10} "
          f"{'wall ratio':>11} {'720p bytes':>11} {'PSNR diff':>10}")
    base = results["lectern"]
    for name, (wall, rss, size, size720, p) in results.items():
        print(f"{name:13} {wall:>8.1f} {rss:>8.0f} {size / 2**20:>8.1f} {size720 / 2**20:>9.2f} {p:>10.2f} "
              f"{base[0] / wall:>11.2f} {base[3] / size720:>11.3f} {base[4] - p:>+10.2f}")
    print("(ratios = lectern / that way; targets: wall <= 0.85 (screen) / 1.0 (noisy) vs ffmpeg-split, <= 0.60 vs "
          "ffmpeg-each; 720p bytes within 5 %, PSNR within 0.1 dB)\n")


if __name__ == "__main__":
    main()
