//! Probing, and rejection of unusable input with readable messages (never a panic).

mod common;

use std::path::Path;

use common::*;
use lectern_workers::{plan_ladder, probe, transcode, MediaError, TranscodeOptions};

/// Both `probe` and `transcode` must reject `input` as Invalid; returns the message.
fn rejected(input: &Path) -> String {
    let msg = match probe(input) {
        Err(MediaError::Invalid(m)) => m,
        other => panic!("probe({}) should be Invalid, got {other:?}", input.display()),
    };
    let out = input.with_extension("out");
    match transcode(input, &out, &fast_opts(), &mut |_| {}) {
        Err(MediaError::Invalid(m)) => assert_eq!(m, msg),
        other => panic!("transcode({}) should be Invalid, got {other:?}", input.display()),
    }
    assert!(!msg.is_empty() && msg.len() < 300, "message should be short and readable: {msg}");
    assert!(!msg.contains("0x"), "no raw pointers/codes in messages: {msg}");
    msg
}

#[test]
fn probe_hd_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "hd.mp4", 1280, 720, "30000/1001", 2.0, true);
    let info = probe(&input).unwrap();
    assert_eq!((info.width, info.height), (1280, 720));
    assert_eq!((info.display_width, info.display_height), (1280, 720));
    assert_eq!(info.rotation_degrees, 0);
    assert!((info.frame_rate - 29.97).abs() < 0.01, "{}", info.frame_rate);
    assert!(!info.variable_frame_rate);
    assert!(info.has_audio);
    assert_eq!(info.video_codec, "h264");
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));
    assert!(info.container.contains("mp4"));
    assert!((info.duration_seconds - 2.0).abs() < 0.1, "{}", info.duration_seconds);
    let names: Vec<String> = plan_ladder(&info).into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["720p", "480p", "360p"]);
}

#[test]
fn random_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("garbage.mp4");
    // Deterministic pseudo-random bytes (xorshift).
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&input, bytes).unwrap();
    let msg = rejected(&input);
    println!("random bytes: {msg}");
}

#[test]
fn truncated_mp4() {
    let tmp = tempfile::tempdir().unwrap();
    let full = make_clip(tmp.path(), "full.mp4", 640, 360, "25", 4.0, true);
    let bytes = std::fs::read(&full).unwrap();
    let cut = tmp.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 10]).unwrap();
    let msg = rejected(&cut);
    assert!(msg.contains("incomplete") || msg.contains("truncated"), "{msg}");
}

#[test]
fn truncated_faststart_mp4() {
    // With the index at the front the file still opens; the missing media must be noticed.
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("fast.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-movflags",
        "+faststart",
        full.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = tmp.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 10]).unwrap();
    // probe only reads the index, so it may still accept the file; transcoding must not.
    let out = tmp.path().join("out");
    match transcode(&cut, &out, &fast_opts(), &mut |_| {}) {
        Err(MediaError::Invalid(m)) => {
            assert!(m.contains("incomplete") || m.contains("truncated"), "{m}")
        }
        other => panic!("should be Invalid, got {other:?}"),
    }
}

#[test]
fn audio_only() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("talk.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300",
        "-t",
        "2",
        "-c:a",
        "aac",
        input.to_str().unwrap(),
    ]);
    assert_eq!(rejected(&input), "no video stream found (audio-only file)");
}

#[test]
fn audio_with_cover_art_is_still_audio_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cover = tmp.path().join("cover.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x320",
        "-frames:v",
        "1",
        cover.to_str().unwrap(),
    ]);
    let input = tmp.path().join("song.mp3");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-i",
        cover.to_str().unwrap(),
        "-t",
        "2",
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-c:a",
        "libmp3lame",
        "-c:v",
        "png",
        "-disposition:v",
        "attached_pic",
        input.to_str().unwrap(),
    ]);
    assert_eq!(rejected(&input), "no video stream found (audio-only file)");
}

#[test]
fn still_image() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("slide.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360",
        "-frames:v",
        "1",
        input.to_str().unwrap(),
    ]);
    let msg = rejected(&input);
    assert!(msg.contains("still image"), "{msg}");
}

#[test]
fn absurd_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("small.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=8x8:rate=5",
        "-t",
        "1",
        "-c:v",
        "ffv1",
        input.to_str().unwrap(),
    ]);
    let msg = rejected(&input);
    assert!(msg.contains("8×8"), "{msg}");
}

#[test]
fn empty_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(rejected(&empty), "the file is empty");
    match probe(&tmp.path().join("nope.mp4")) {
        Err(MediaError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected Io(NotFound), got {other:?}"),
    }
}

#[test]
fn bad_options_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "x.mp4", 320, 240, "25", 1.0, false);
    let bad = TranscodeOptions { x264_preset: "warp-speed".into(), ..TranscodeOptions::default() };
    let err = transcode(&input, &tmp.path().join("out"), &bad, &mut |_| {}).unwrap_err();
    assert!(matches!(err, MediaError::InvalidOptions(_)), "{err:?}");
    let bad = TranscodeOptions { segment_seconds: 0.0, ..TranscodeOptions::default() };
    let err = transcode(&input, &tmp.path().join("out"), &bad, &mut |_| {}).unwrap_err();
    assert!(matches!(err, MediaError::InvalidOptions(_)), "{err:?}");
}
