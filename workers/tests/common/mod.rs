//! Shared helpers: make media with the ffmpeg CLI, check HLS packages with ffmpeg/ffprobe.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use lectern_workers::{transcode, MediaError, TranscodeOptions, TranscodeSummary};
use m3u8_rs::{MasterPlaylist, MediaPlaylist};

/// Run the ffmpeg CLI (quiet, overwrite), panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg CLI");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ffprobe JSON for `path` (streams + format), with extra leading args.
pub fn ffprobe(path: &Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .args(extra)
        .arg(path)
        .output()
        .expect("ffprobe CLI");
    assert!(
        out.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// The first stream of `kind` ("video"/"audio") in ffprobe output.
pub fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probe["streams"].as_array()?.iter().find(|s| s["codec_type"] == kind)
}

/// A 16:9-ish test pattern clip, optional sine audio, H.264/AAC in MP4.
pub fn make_clip(
    dir: &Path,
    name: &str,
    w: u32,
    h: u32,
    rate: &str,
    seconds: f64,
    audio: bool,
) -> PathBuf {
    let path = dir.join(name);
    let size = format!("testsrc2=size={w}x{h}:rate={rate}");
    let t = format!("{seconds}");
    let mut args: Vec<&str> = vec!["-f", "lavfi", "-i", &size];
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend(["-t", &t, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    if audio {
        args.extend(["-c:a", "aac", "-ac", "2"]);
    }
    let p = path.to_str().unwrap().to_owned();
    args.push(&p);
    ffmpeg(&args);
    path
}

/// Options used by the tests: fastest preset, default 4-second segments.
pub fn fast_opts() -> TranscodeOptions {
    TranscodeOptions { x264_preset: "ultrafast".into(), ..TranscodeOptions::default() }
}

/// Transcode, checking the progress contract along the way.
pub fn run(
    input: &Path,
    out: &Path,
    opts: &TranscodeOptions,
) -> Result<TranscodeSummary, MediaError> {
    let mut seen: Vec<f64> = Vec::new();
    let res = transcode(input, out, opts, &mut |p| seen.push(p));
    for w in seen.windows(2) {
        assert!(w[1] >= w[0], "progress went backwards: {seen:?}");
    }
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(p)), "progress out of range: {seen:?}");
    if res.is_ok() {
        assert_eq!(seen.last().copied(), Some(1.0), "progress must end with 1.0");
    }
    res
}

pub fn read_master(out: &Path) -> MasterPlaylist {
    let bytes = std::fs::read(out.join("master.m3u8")).expect("master.m3u8");
    m3u8_rs::parse_master_playlist_res(&bytes).expect("master playlist parses")
}

pub fn read_media(path: &Path) -> MediaPlaylist {
    let bytes = std::fs::read(path).expect("media playlist");
    m3u8_rs::parse_media_playlist_res(&bytes).expect("media playlist parses")
}

/// `ffmpeg -v error -i <input> -f null -` must exit 0 with an empty stderr.
pub fn decodes_cleanly(input: &Path, pre: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(pre)
        .arg("-i")
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg CLI");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{} does not decode cleanly: {stderr}",
        input.display()
    );
}

/// Everything a finished package must satisfy. `expected` lists (name, width, height), highest
/// first. Returns the media playlists, in the same order.
pub fn check_package(
    out: &Path,
    summary: &TranscodeSummary,
    expected: &[(&str, u32, u32)],
    expected_duration: f64,
    with_audio: bool,
) -> Vec<MediaPlaylist> {
    // Summary.
    assert!(
        (summary.duration_seconds - expected_duration).abs() <= 0.1,
        "duration {} vs expected {expected_duration}",
        summary.duration_seconds
    );
    let names: Vec<(&str, u32, u32)> =
        summary.renditions.iter().map(|r| (r.name.as_str(), r.width, r.height)).collect();
    assert_eq!(names, expected);
    assert!(summary.output_bytes > 0);

    check_master(out, expected, with_audio);
    let playlists: Vec<MediaPlaylist> =
        expected.iter().map(|rung| check_media(out, rung, expected_duration, with_audio)).collect();
    check_alignment(&playlists);
    check_thumbnails(out, summary, expected[0]);
    playlists
}

/// The master playlist: one variant per rung, highest first, with RESOLUTION, CODECS (avc1,
/// and mp4a when there is audio) and bandwidths.
fn check_master(out: &Path, expected: &[(&str, u32, u32)], with_audio: bool) {
    let master = read_master(out);
    assert_eq!(master.variants.len(), expected.len());
    let mut last_bw = u64::MAX;
    for (v, (name, w, h)) in master.variants.iter().zip(expected) {
        assert_eq!(v.uri, format!("{name}/index.m3u8"));
        let res = v.resolution.expect("RESOLUTION");
        assert_eq!((res.width, res.height), (*w as u64, *h as u64));
        let codecs = v.codecs.as_deref().expect("CODECS");
        let avc1 = codecs.split(',').next().unwrap();
        assert!(
            avc1.len() == 11
                && avc1.starts_with("avc1.")
                && avc1[5..].chars().all(|c| c.is_ascii_hexdigit()),
            "codecs {codecs}"
        );
        assert_eq!(codecs.ends_with(",mp4a.40.2"), with_audio, "codecs {codecs}");
        assert!(v.bandwidth > 0 && v.average_bandwidth.unwrap() > 0);
        assert!(v.average_bandwidth.unwrap() <= v.bandwidth);
        assert!(v.frame_rate.unwrap() > 0.0);
        assert!(v.bandwidth <= last_bw, "variants must be ordered highest first");
        last_bw = v.bandwidth;
    }
}

/// One rung's media playlist and segments: a VOD playlist whose segments exist, fit the target
/// duration, add up to the duration, and (unencrypted) decode on their own at the rung's size.
fn check_media(
    out: &Path,
    &(name, w, h): &(&str, u32, u32),
    expected_duration: f64,
    with_audio: bool,
) -> MediaPlaylist {
    let dir = out.join(name);
    let pl = read_media(&dir.join("index.m3u8"));
    assert_eq!(pl.version, Some(3));
    assert!(pl.end_list);
    assert_eq!(pl.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
    assert!(!pl.segments.is_empty());
    let mut total = 0.0;
    for (i, seg) in pl.segments.iter().enumerate() {
        assert_eq!(seg.uri, format!("seg_{i:05}.ts"));
        assert!(dir.join(&seg.uri).is_file());
        assert!(
            seg.duration as f64 <= pl.target_duration as f64 + 1e-3,
            "segment {} lasts {} > target {}",
            seg.uri,
            seg.duration,
            pl.target_duration
        );
        total += seg.duration as f64;
    }
    assert!(
        (total - expected_duration).abs() <= 0.1,
        "{name}: playlist total {total} vs {expected_duration}"
    );
    if pl.segments[0].key.is_none() {
        decodes_cleanly(&dir.join("index.m3u8"), &[]);
        let probe = ffprobe(&dir.join("index.m3u8"), &[]);
        let v = stream(&probe, "video").expect("video stream");
        assert_eq!(
            (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap()),
            (w as u64, h as u64)
        );
        assert_eq!(stream(&probe, "audio").is_some(), with_audio);
        // Every segment must decode on its own (independent segments).
        for seg in &pl.segments {
            decodes_cleanly(&dir.join(&seg.uri), &[]);
        }
    }
    pl
}

/// Alignment: the same segment count and durations in every rung.
fn check_alignment(playlists: &[MediaPlaylist]) {
    for pl in &playlists[1..] {
        assert_eq!(pl.segments.len(), playlists[0].segments.len(), "segment counts differ");
        for (a, b) in pl.segments.iter().zip(&playlists[0].segments) {
            assert!(
                (a.duration - b.duration).abs() < 0.002,
                "segment durations differ: {} vs {}",
                a.duration,
                b.duration
            );
        }
    }
}

/// The poster at the top rung's size, the sprite and its WebVTT track covering the duration.
fn check_thumbnails(out: &Path, summary: &TranscodeSummary, top: (&str, u32, u32)) {
    let poster = ffprobe(&out.join("poster.jpg"), &[]);
    let pv = stream(&poster, "video").unwrap();
    assert_eq!(
        (pv["width"].as_u64().unwrap(), pv["height"].as_u64().unwrap()),
        (top.1 as u64, top.2 as u64)
    );
    let sprite = ffprobe(&out.join("sprite.jpg"), &[]);
    let sv = stream(&sprite, "video").unwrap();
    assert_eq!(sv["width"].as_u64().unwrap() % 160, 0);
    let vtt = std::fs::read_to_string(out.join("thumbnails.vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n"));
    let cues: Vec<&str> = vtt.lines().filter(|l| l.contains("-->")).collect();
    assert!(!cues.is_empty());
    assert!(cues[0].starts_with("00:00:00.000 -->"));
    let last_end = cues.last().unwrap().split("--> ").nth(1).unwrap();
    assert_eq!(last_end, vtt_time(summary.duration_seconds));
    assert!(vtt.contains("sprite.jpg#xywh=0,0,160,"));
}

fn vtt_time(t: f64) -> String {
    let ms = (t * 1000.0).round() as u64;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Frame count and duration of the video in a file, via ffprobe packet counting.
pub fn video_frames(path: &Path) -> u64 {
    let probe = ffprobe(path, &["-count_packets", "-select_streams", "v:0"]);
    stream(&probe, "video").unwrap()["nb_read_packets"].as_str().unwrap().parse().unwrap()
}
