//! Hostile input: files built to make the engine read other files of the host, run without end,
//! or publish pictures no player can show. Each must be refused with a readable reason, or
//! transcoded within bounds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use lectern_workers::{probe, transcode, MediaError};

/// Both `probe` and `transcode` refuse `input` as Invalid, and nothing is written but an
/// (at most empty) output directory. Returns the message.
fn refused(input: &Path) -> String {
    let msg = match probe(input) {
        Err(MediaError::Invalid(m)) => m,
        other => panic!("probe({}) should be Invalid, got {other:?}", input.display()),
    };
    let out = input.with_extension("out");
    match transcode(input, &out, &fast_opts(), &mut |_| {}) {
        Err(MediaError::Invalid(m)) => assert_eq!(m, msg),
        other => panic!("transcode({}) should be Invalid, got {other:?}", input.display()),
    }
    let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "{} wrote output for a refused input", input.display());
    assert!(!msg.is_empty() && msg.len() < 300, "message should be short and readable: {msg}");
    assert!(!msg.contains('/'), "no paths in messages: {msg}");
    msg
}

/// A clip somewhere on the host that no upload should be able to reach.
fn host_file(dir: &Path) -> PathBuf {
    let secret = dir.join("secret.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        secret.to_str().unwrap(),
    ]);
    secret
}

#[test]
fn hls_playlist_naming_a_host_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = host_file(tmp.path());
    // The stored upload has no extension; a non-printable line gets it past text sniffing.
    let input = tmp.path().join("source");
    let playlist = format!(
        "#EXTM3U\n#\x01\x02\x03\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\nfile:{}\n#EXT-X-ENDLIST\n",
        secret.display()
    );
    std::fs::write(&input, playlist).unwrap();
    let msg = refused(&input);
    assert!(msg.contains("playlist"), "{msg}");
}

#[test]
fn concat_script_naming_a_host_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = host_file(tmp.path());
    let input = tmp.path().join("source");
    std::fs::write(&input, format!("ffconcat version 1.0\nfile '{}'\n", secret.display())).unwrap();
    let msg = refused(&input);
    assert!(msg.contains("script"), "{msg}");
}

/// Run the ffmpeg CLI writing to its standard output (a pipe), as live recorders do: the
/// container then states no duration.
fn ffmpeg_to_pipe(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg("pipe:1")
        .stdout(Stdio::from(std::fs::File::create(out).unwrap()))
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

#[test]
fn mkv_whose_timestamps_jump_to_ten_million_seconds_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("jump.mkv");
    ffmpeg_to_pipe(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000:duration=2",
            "-vf",
            "setpts='if(lt(T,1),PTS,PTS+10000000/TB)'",
            "-af",
            "asetpts='if(lt(T,1),PTS,PTS+10000000/TB)'",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-f",
            "matroska",
        ],
        &input,
    );
    let msg = refused(&input);
    assert!(msg.contains("timestamps") && msg.contains("hours"), "{msg}");
}

#[test]
fn frames_stamped_past_the_probed_duration_are_dropped_not_filled() {
    // MPEG-TS pieces spliced byte-wise: 1 s, then 1 s stamped ten hours later, then 4 s back on
    // the timeline. The container's duration (from its first and last timestamps) is 5 s.
    let tmp = tempfile::tempdir().unwrap();
    let piece = |name: &str, secs: &str, offset: &str| {
        let p = tmp.path().join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=sample_rate=48000",
            "-t",
            secs,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-output_ts_offset",
            offset,
            p.to_str().unwrap(),
        ]);
        std::fs::read(p).unwrap()
    };
    let joined =
        [piece("a.ts", "1", "0"), piece("b.ts", "1", "36000"), piece("c.ts", "4", "1")].concat();
    let input = tmp.path().join("excursion.ts");
    std::fs::write(&input, joined).unwrap();
    let info = probe(&input).unwrap();
    assert!(info.duration_seconds < 6.0, "{info:?}");
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    assert!(
        summary.duration_seconds < 7.0,
        "the timeline was filled past the cap: {}",
        summary.duration_seconds
    );
    let pl = read_media(&out.join("240p/index.m3u8"));
    let total: f64 = pl.segments.iter().map(|s| s.duration as f64).sum();
    assert!(total < 7.0, "{total} s of segments");
    decodes_cleanly(&out.join("240p/index.m3u8"), &[]);
}

#[test]
fn extreme_pixel_aspect_ratios_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Matroska keeps such ratios (as its display size); MPEG-4 Part 2 carries them as they are.
    for (name, sar, shown) in [("thin.mkv", "1/1000", "1×360"), ("wide.mkv", "100/1", "64000×360")]
    {
        let input = tmp.path().join(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25",
            "-t",
            "1",
            "-vf",
            &format!("setsar={sar}"),
            "-c:v",
            "mpeg4",
            input.to_str().unwrap(),
        ]);
        let msg = refused(&input);
        assert!(msg.contains(shown) && msg.contains("aspect ratio"), "{name}: {msg}");
    }
}

#[test]
fn a_picture_too_large_in_the_middle_of_the_stream_is_refused() {
    // The stream declares 320×240; the second piece's pictures are 8400×64.
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.ts");
    let b = tmp.path().join("b.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        a.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=8400x64:rate=25",
        "-t",
        "0.4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-output_ts_offset",
        "1",
        b.to_str().unwrap(),
    ]);
    let input = tmp.path().join("joined.ts");
    std::fs::write(&input, [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()].concat())
        .unwrap();
    assert_eq!(probe(&input).map(|i| (i.width, i.height)).unwrap(), (320, 240));
    match transcode(&input, &tmp.path().join("out"), &fast_opts(), &mut |_| {}) {
        Err(MediaError::Invalid(m)) => assert!(m.contains("8400×64"), "{m}"),
        other => panic!("should be Invalid, got {other:?}"),
    }
}

#[test]
fn extreme_but_acceptable_shapes_transcode() {
    // 16 px is the smallest side accepted; a 16×4096 strip must come out, thumbnails and all.
    let tmp = tempfile::tempdir().unwrap();
    for (w, h) in [(16u32, 4096u32)] {
        let input = make_clip(tmp.path(), &format!("strip{w}x{h}.mp4"), w, h, "5", 24.0, false);
        let out = tmp.path().join(format!("out{w}x{h}"));
        let summary = run(&input, &out, &fast_opts()).unwrap_or_else(|e| panic!("{w}×{h}: {e:?}"));
        for r in &summary.renditions {
            assert!(r.width >= 16 && r.height >= 16, "{r:?}");
        }
        let sprite = ffprobe(&out.join("sprite.jpg"), &[]);
        let sv = stream(&sprite, "video").unwrap();
        assert!(sv["height"].as_u64().unwrap() <= 65_535, "{sv}");
    }
}
