//! End-to-end transcodes of small generated clips. Each checks the whole package: master and
//! media playlists, clean decoding of every rendition, sizes, segment durations vs. target,
//! alignment across renditions, duration, thumbnails.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use lectern_workers::{HlsEncryption, TranscodeOptions, TranscodeSummary};

#[test]
fn hd_with_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "hd.mp4", 1280, 720, "25", 5.0, true);
    let out = tmp.path().join("out");
    // The default preset, so that the High profile shows in CODECS.
    let summary = run(&input, &out, &TranscodeOptions::default()).expect("transcode");
    assert!(
        summary.renditions.iter().all(|r| r.codecs.starts_with("avc1.64")),
        "{:?}",
        summary.renditions
    );
    assert!(summary.source.has_audio);
    assert_eq!(summary.source.audio_codec.as_deref(), Some("aac"));
    assert_eq!(summary.renditions[0].frame_rate, 25.0);
    let playlists = check_package(
        &out,
        &summary,
        &[("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)],
        5.0,
        true,
    );
    // 4-second segments: 4 s + 1 s.
    assert_eq!(playlists[0].segments.len(), 2);
    assert!((playlists[0].segments[0].duration - 4.0).abs() < 0.01);
    assert_eq!(playlists[0].target_duration, 4);
    // Every segment starts with a keyframe, at the same time in every rendition.
    for name in ["720p", "360p"] {
        let first = first_frame_of(&out.join(name).join("seg_00001.ts"));
        assert_eq!(first.1, "I", "{name}: second segment must start with an I frame");
    }
    // The summary round-trips through JSON (the caller stores it).
    let json = serde_json::to_string(&summary).unwrap();
    let back: TranscodeSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, summary);
    // Audio is AAC-LC stereo at 48 kHz in every rendition.
    let probe = ffprobe(&out.join("480p/index.m3u8"), &[]);
    let a = stream(&probe, "audio").unwrap();
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["profile"], "LC");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);
}

#[test]
fn no_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "silent.mp4", 854, 480, "30", 4.0, false);
    let out = tmp.path().join("out");
    let opts = TranscodeOptions { segment_seconds: 2.0, ..fast_opts() };
    let summary = run(&input, &out, &opts).expect("transcode");
    assert!(!summary.source.has_audio);
    let playlists =
        check_package(&out, &summary, &[("480p", 854, 480), ("360p", 640, 360)], 4.0, false);
    assert_eq!(playlists[0].segments.len(), 2);
    assert_eq!(playlists[0].target_duration, 2);
}

#[test]
fn portrait() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "portrait.mp4", 720, 1280, "25", 3.0, true);
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    check_package(
        &out,
        &summary,
        &[("720p", 720, 1280), ("480p", 480, 854), ("360p", 360, 640)],
        3.0,
        true,
    );
}

#[test]
fn rotated_phone_video_comes_out_upright() {
    let tmp = tempfile::tempdir().unwrap();
    let landscape = make_clip(tmp.path(), "landscape.mp4", 640, 360, "25", 3.0, true);
    // Both quarter turns (FFmpeg 5.1 stores rotate=90 as a display matrix ffprobe reports as +90,
    // i.e. a counter-clockwise turn; phones typically store -90).
    for tag in ["90", "270"] {
        let rotated = tmp.path().join(format!("rotated{tag}.mp4"));
        let meta = format!("rotate={tag}");
        ffmpeg(&[
            "-i",
            landscape.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            &meta,
            rotated.to_str().unwrap(),
        ]);
        // The display matrix really is there.
        let probe = ffprobe(&rotated, &[]);
        let v = stream(&probe, "video").unwrap();
        let rotation = v["side_data_list"]
            .as_array()
            .and_then(|l| l.iter().find(|sd| sd["side_data_type"] == "Display Matrix"))
            .expect("display matrix side data")["rotation"]
            .as_i64()
            .unwrap();
        assert_eq!(rotation.abs(), 90);

        let out = tmp.path().join(format!("out{tag}"));
        let summary = run(&rotated, &out, &fast_opts()).expect("transcode");
        assert_eq!((summary.source.width, summary.source.height), (640, 360));
        assert_eq!((summary.source.display_width, summary.source.display_height), (360, 640));
        // fftools' convention: clockwise degrees = -av_display_rotation_get().
        assert_eq!(summary.source.rotation_degrees as i64, (360 - rotation) % 360);
        check_package(&out, &summary, &[("360p", 360, 640)], 3.0, true);

        // Same orientation as FFmpeg's own autorotation: compare the first frames.
        let reference = tmp.path().join(format!("ref{tag}.y4m"));
        let ours = tmp.path().join(format!("ours{tag}.y4m"));
        ffmpeg(&[
            "-i",
            rotated.to_str().unwrap(),
            "-frames:v",
            "1",
            "-vf",
            "scale=360:640",
            "-pix_fmt",
            "yuv420p",
            reference.to_str().unwrap(),
        ]);
        ffmpeg(&[
            "-i",
            out.join("360p/index.m3u8").to_str().unwrap(),
            "-frames:v",
            "1",
            "-pix_fmt",
            "yuv420p",
            ours.to_str().unwrap(),
        ]);
        assert!(
            psnr(&ours, &reference) > 30.0,
            "rotate={tag}: not oriented like ffmpeg's autorotation"
        );
    }
}

#[test]
fn odd_size() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("odd.mp4");
    // testsrc2 rounds sizes to even; scale afterwards, and use 4:4:4 so x264 accepts odd sizes.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300",
        "-t",
        "3",
        "-vf",
        "scale=1281:721",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv444p",
        "-c:a",
        "aac",
        input.to_str().unwrap(),
    ]);
    let probe = ffprobe(&input, &[]);
    assert_eq!(stream(&probe, "video").unwrap()["width"], 1281);
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    check_package(
        &out,
        &summary,
        &[("720p", 1280, 720), ("480p", 852, 480), ("360p", 640, 360)],
        3.0,
        true,
    );
}

#[test]
fn variable_frame_rate_comes_out_constant() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("vfr.mp4");
    // 2 s at 30 fps followed by 2 s at 15 fps, timestamps kept as they are.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=15",
        "-filter_complex",
        "[0]trim=duration=2[a];[1]trim=duration=2,setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1:a=0",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        input.to_str().unwrap(),
    ]);
    let out = tmp.path().join("out");
    let opts = TranscodeOptions { segment_seconds: 2.0, ..fast_opts() };
    let summary = run(&input, &out, &opts).expect("transcode");
    assert!(summary.source.variable_frame_rate, "{:?}", summary.source);
    let fps = summary.renditions[0].frame_rate;
    assert_eq!(fps, fps.round(), "a VFR source gets a whole-number output rate");
    let playlists = check_package(&out, &summary, &[("360p", 640, 360)], 4.0, false);

    // Constant rate: r_frame_rate == avg_frame_rate, and each segment holds duration × fps frames.
    let probe = ffprobe(&out.join("360p/index.m3u8"), &[]);
    let v = stream(&probe, "video").unwrap();
    assert_eq!(v["r_frame_rate"], v["avg_frame_rate"]);
    assert_eq!(v["r_frame_rate"], format!("{}/1", fps as u64));
    for seg in &playlists[0].segments {
        let frames = video_frames(&out.join("360p").join(&seg.uri)) as f64;
        assert!(
            (frames - seg.duration as f64 * fps).abs() <= 1.0,
            "{}: {frames} frames in {} s at {fps} fps",
            seg.uri,
            seg.duration
        );
    }
}

#[test]
fn tiny_clip_gets_one_small_rendition() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "tiny.mp4", 320, 240, "25", 4.0, true);
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    check_package(&out, &summary, &[("240p", 320, 240)], 4.0, true);
}

#[test]
fn very_short_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "short.mp4", 320, 240, "25", 0.4, false);
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    check_package(&out, &summary, &[("240p", 320, 240)], 0.4, false);
}

#[test]
fn encrypted_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "enc.mp4", 640, 360, "25", 3.0, true);
    let out = tmp.path().join("out");
    let key: [u8; 16] = *b"0123456789abcdef";
    let iv: [u8; 16] = [0xa5; 16];
    let opts = TranscodeOptions {
        encryption: Some(HlsEncryption { key, iv, key_uri: "../key.bin".into() }),
        segment_seconds: 2.0,
        ..fast_opts()
    };
    let summary = run(&input, &out, &opts).expect("transcode");
    let playlists = check_package(&out, &summary, &[("360p", 640, 360)], 3.0, true);
    let pl = &playlists[0];

    // The playlist carries the key on the first segment.
    let k = pl.segments[0].key.as_ref().expect("EXT-X-KEY");
    assert_eq!(k.method, m3u8_rs::KeyMethod::AES128);
    assert_eq!(k.uri.as_deref(), Some("../key.bin"));
    assert_eq!(k.iv.as_deref(), Some("0xa5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"));
    let text = std::fs::read_to_string(out.join("360p/index.m3u8")).unwrap();
    assert_eq!(text.matches("#EXT-X-KEY").count(), 1);
    // Nothing secret was written next to the outputs.
    assert!(!dir_contains_bytes(&out, &key), "the key must not be stored in the output");

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for seg in &pl.segments {
        let path = out.join("360p").join(&seg.uri);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() % 16, 0);
        assert!(!is_ts(&bytes), "{} is readable without the key", seg.uri);
        // openssl decrypts it into a proper transport stream.
        let plain = Command::new("openssl")
            .args(["aes-128-cbc", "-d", "-K", &hex(&key), "-iv", &hex(&iv), "-in"])
            .arg(&path)
            .output()
            .expect("openssl");
        assert!(plain.status.success(), "openssl: {}", String::from_utf8_lossy(&plain.stderr));
        assert!(is_ts(&plain.stdout), "{} does not decrypt to MPEG-TS", seg.uri);
    }
    // Not decodable as plain TS.
    let plain = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "mpegts", "-i"])
        .arg(out.join("360p/seg_00000.ts"))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(!plain.status.success() || !plain.stderr.is_empty());
    // With the key served from a file, FFmpeg's HLS demuxer plays it cleanly.
    std::fs::write(out.join("key.bin"), key).unwrap();
    decodes_cleanly(&out.join("360p/index.m3u8"), &["-allowed_extensions", "ALL"]);
}

#[test]
fn rerun_replaces_previous_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "again.mp4", 320, 240, "25", 2.0, false);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("240p")).unwrap();
    std::fs::write(out.join("240p/seg_00042.ts"), b"stale").unwrap();
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    check_package(&out, &summary, &[("240p", 320, 240)], 2.0, false);
    assert!(!out.join("240p/seg_00042.ts").exists());
}

/// (pts_time, pict_type) of the first video frame in a file.
fn first_frame_of(path: &Path) -> (f64, String) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=pts_time,pict_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().expect("a frame");
    let mut parts = line.split(',');
    let t = parts.next().unwrap().parse().unwrap();
    (t, parts.next().unwrap().trim().to_owned())
}

/// Average PSNR (dB) of `a` against `b`.
fn psnr(a: &Path, b: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", "psnr", "-f", "null", "-"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let avg = text.split("average:").nth(1).expect("psnr output");
    let v = avg.split_whitespace().next().unwrap();
    if v == "inf" {
        f64::INFINITY
    } else {
        v.parse().unwrap()
    }
}

/// MPEG-TS: 0x47 sync bytes every 188 bytes.
fn is_ts(bytes: &[u8]) -> bool {
    bytes.len() >= 188 * 3 && (0..bytes.len() / 188).all(|i| bytes[i * 188] == 0x47)
}

fn dir_contains_bytes(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            dir_contains_bytes(&p, needle)
        } else {
            std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle)
        }
    })
}

#[test]
fn formats_changing_mid_stream() {
    // Two MPEG-TS files spliced byte-wise: picture size, sample rate and channels all change.
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.ts");
    let b = tmp.path().join("b.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=44100",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-ac",
        "1",
        a.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-output_ts_offset",
        "2",
        b.to_str().unwrap(),
    ]);
    let mut joined = std::fs::read(&a).unwrap();
    joined.extend(std::fs::read(&b).unwrap());
    let input = tmp.path().join("joined.ts");
    std::fs::write(&input, joined).unwrap();
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    check_package(&out, &summary, &[("360p", 640, 360)], 4.0, true);
}

/// Segments are reported as they are finished, long before the end, each already sealed
/// (encrypted) with the size it keeps; the reports add up to exactly the final playlists, and
/// the growing playlists built from them are `EVENT` playlists each version of which only
/// appends to the one before, ending in the `VOD` one.
#[test]
fn segments_are_reported_finished_while_the_transcode_runs() {
    use lectern_workers::{media_playlist, transcode_with, Segment, TranscodeEvent};
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "long.mp4", 640, 360, "30", 9.0, true);
    let out = tmp.path().join("out");
    let enc = HlsEncryption { key: [7; 16], iv: [9; 16], key_uri: "../key".into() };
    let opts =
        TranscodeOptions { segment_seconds: 1.0, encryption: Some(enc.clone()), ..fast_opts() };
    let mut planned = None;
    let mut reported: Vec<Vec<Segment>> = Vec::new();
    let mut progress_at_first_segment = None;
    let mut last_progress = 0.0;
    let mut playlists: Vec<Vec<u8>> = Vec::new();
    let summary = transcode_with(&input, &out, &opts, &mut |event| match event {
        TranscodeEvent::Started { variants, live, target_duration } => {
            assert!(planned.is_none(), "Started comes once");
            assert_eq!(live.len(), variants.len(), "a fast ladder is published whole");
            assert_eq!(target_duration, 1);
            reported = vec![Vec::new(); variants.len()];
            planned = Some(variants.to_vec());
        }
        TranscodeEvent::Progress(p) => last_progress = p,
        TranscodeEvent::Segment { rendition, segment } => {
            let variants = planned.as_ref().expect("Started comes first");
            let dir = out.join(variants[rendition].uri.split('/').next().unwrap());
            // Already on disk, sealed: its size is final and a whole number of AES blocks.
            let len = std::fs::metadata(dir.join(&segment.file_name)).unwrap().len();
            assert_eq!(len, segment.bytes);
            assert_eq!(len % 16, 0);
            assert_eq!(segment.file_name, format!("seg_{:05}.ts", reported[rendition].len()));
            progress_at_first_segment.get_or_insert(last_progress);
            reported[rendition].push(segment.clone());
            if rendition == 0 {
                playlists.push(media_playlist(&reported[0], 1, Some(&enc), false));
            }
        }
    })
    .expect("transcode");
    let variants = planned.expect("Started");
    assert_eq!(variants.len(), summary.renditions.len());
    // The first segment was out when a fraction of the input had been read.
    assert!(progress_at_first_segment.unwrap() < 0.5, "{progress_at_first_segment:?}");
    for (r, segments) in reported.iter().enumerate() {
        let name = &summary.renditions[r].name;
        assert_eq!(variants[r].uri, format!("{name}/index.m3u8"));
        assert!(
            variants[r].codecs.starts_with("avc1.") && variants[r].codecs.ends_with(",mp4a.40.2")
        );
        // What was reported is exactly what the final playlist lists, with the same sizes.
        let vod = read_media(&out.join(name).join("index.m3u8"));
        assert_eq!(vod.segments.len(), segments.len(), "{name}");
        for (listed, seg) in vod.segments.iter().zip(segments) {
            assert_eq!(listed.uri, seg.file_name);
            assert!((f64::from(listed.duration) - seg.duration).abs() < 1e-3);
        }
        assert_eq!(summary.renditions[r].bytes, segments.iter().map(|s| s.bytes).sum::<u64>());
        assert!(!out.join(name).join("muxer.m3u8").exists(), "the muxer's playlist is gone");
    }
    // Growing playlists: EVENT, start at 0, no end; each version extends the one before, and
    // the final VOD playlist extends the last of them.
    let vod = std::fs::read(out.join(&summary.renditions[0].name).join("index.m3u8")).unwrap();
    assert!(playlists.len() >= 9, "{}", playlists.len());
    for pair in playlists.windows(2) {
        let (a, b) = (String::from_utf8_lossy(&pair[0]), String::from_utf8_lossy(&pair[1]));
        assert!(
            a.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && a.contains("#EXT-X-START:TIME-OFFSET=0")
        );
        assert!(!a.contains("#EXT-X-ENDLIST"));
        assert!(b.starts_with(&*a), "a growing playlist only appends:\n{a}\n---\n{b}");
    }
    let (last, vod) =
        (String::from_utf8_lossy(playlists.last().unwrap()), String::from_utf8_lossy(&vod));
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.ends_with("#EXT-X-ENDLIST\n"), "{vod}");
    assert_eq!(vod.replace("VOD", "EVENT").trim_end_matches("#EXT-X-ENDLIST\n"), last);
}

/// A screen-recording-like source: H.264 High at `w`×`h`, 30 fps, `bitrate` kb/s capped,
/// keyframes every `gop` frames, AAC-LC stereo.
fn recording(dir: &Path, name: &str, w: u32, h: u32, bitrate: u32, gop: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    let (size, b, max, buf, g) = (
        format!("testsrc2=size={w}x{h}:rate=30"),
        format!("{bitrate}k"),
        format!("{}k", bitrate * 4 / 3),
        format!("{}k", bitrate * 8 / 3),
        gop.to_string(),
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &size,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "8",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        &b,
        "-maxrate",
        &max,
        "-bufsize",
        &buf,
        "-g",
        &g,
        "-keyint_min",
        &g,
        "-sc_threshold",
        "0",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-b:a",
        "128k",
        path.to_str().unwrap(),
    ]);
    path
}

/// The decoded pictures of the first video stream, as one digest.
fn picture_digest(input: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(["-map", "0:v:0", "-f", "md5", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A source that already is the top rung — H.264 at its size and frame rate, under its cap,
/// keyframes every 2 s — is copied into it, picture for picture; the other rungs are encoded
/// with their IDR frames at the source's keyframes, so the ladder stays aligned and valid.
#[test]
fn a_source_that_is_the_top_rung_is_copied_into_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = recording(tmp.path(), "screen.mp4", 1280, 720, 2200, 60);
    let out = tmp.path().join("out");
    let summary = run(&input, &out, &fast_opts()).expect("transcode");
    let copied: Vec<bool> = summary.renditions.iter().map(|r| r.copied).collect();
    assert_eq!(copied, [true, false, false], "{:?}", summary.renditions);
    let playlists = check_package(
        &out,
        &summary,
        &[("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)],
        8.0,
        true,
    );
    assert_eq!(playlists[0].segments.len(), 2);
    assert_eq!(picture_digest(&out.join("720p/index.m3u8")), picture_digest(&input));
    // CODECS names the source's profile and level (High, 3.1).
    assert!(summary.renditions[0].codecs.starts_with("avc1.6400"), "{:?}", summary.renditions[0]);
    for name in ["720p", "480p", "360p"] {
        for seg in ["seg_00000.ts", "seg_00001.ts"] {
            assert_eq!(first_frame_of(&out.join(name).join(seg)).1, "I", "{name}/{seg}");
        }
    }
    // Asked not to, it encodes every rung.
    let opts = TranscodeOptions { copy_top_rung: false, ..fast_opts() };
    let summary = run(&input, &tmp.path().join("all"), &opts).expect("transcode");
    assert!(summary.renditions.iter().all(|r| !r.copied));
}

/// Sources unlike the top rung are encoded: keyframes further apart than a segment, a bitrate
/// over the rung's cap or not above the next rung's, a size between rungs, a frame rate other
/// than the output's.
#[test]
fn sources_unlike_the_top_rung_are_encoded() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = [
        recording(tmp.path(), "sparse-keys.mp4", 1280, 720, 2200, 240),
        recording(tmp.path(), "too-rich.mp4", 1280, 720, 4000, 60),
        recording(tmp.path(), "too-poor.mp4", 1280, 720, 1000, 60),
        recording(tmp.path(), "between-rungs.mp4", 1280, 800, 2200, 60),
    ];
    for input in &sources {
        let out = tmp.path().join("out");
        let summary = run(input, &out, &fast_opts()).expect("transcode");
        assert!(
            summary.renditions.iter().all(|r| !r.copied),
            "{}: {:?}",
            input.display(),
            summary.renditions
        );
    }
    let vfr = make_clip(tmp.path(), "25fps.mp4", 1280, 720, "25", 4.0, true);
    let summary = run(&vfr, &tmp.path().join("o25"), &fast_opts()).expect("transcode");
    // A 25 fps source keeps 25 fps; with ultrafast's keyframes (every 250 frames) it does not
    // qualify either.
    assert!(summary.renditions.iter().all(|r| !r.copied));
}

/// Run `transcode_with`, returning the summary, the `live` variants and the order in which
/// rungs reported segments.
fn run_reporting(
    input: &Path,
    out: &Path,
    opts: &TranscodeOptions,
) -> (TranscodeSummary, Vec<usize>, Vec<usize>) {
    use lectern_workers::{transcode_with, TranscodeEvent};
    let (mut live_at_start, mut order) = (Vec::new(), Vec::new());
    let summary = transcode_with(input, out, opts, &mut |event| match event {
        TranscodeEvent::Started { live, .. } => live_at_start = live.to_vec(),
        TranscodeEvent::Segment { rendition, .. } => order.push(rendition),
        TranscodeEvent::Progress(_) => {}
    })
    .expect("transcode");
    (summary, live_at_start, order)
}

/// Low rung first: the lowest rung is made whole in a pass of its own, published alone while
/// the rest follow in a second pass; the package is the same valid, aligned ladder.
#[test]
fn the_lowest_rung_can_be_made_first() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "clip.mp4", 1280, 720, "30", 9.0, true);
    let out = tmp.path().join("out");
    let opts = TranscodeOptions { low_rung_first: Some(true), ..fast_opts() };
    let (summary, live, order) = run_reporting(&input, &out, &opts);
    assert_eq!(live, [2], "the master lists the lowest rung alone while it runs");
    let first_other = order.iter().position(|&r| r != 2).unwrap();
    assert_eq!(first_other, 3, "all three 360p segments come first: {order:?}");
    check_package(
        &out,
        &summary,
        &[("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)],
        9.0,
        true,
    );
}

/// Left to decide, a ladder slower than real time (here x264's `veryslow`) makes its lowest
/// rung first; a fast one is published whole.
#[test]
fn a_ladder_slower_than_real_time_makes_its_lowest_rung_first() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_clip(tmp.path(), "clip.mp4", 1280, 720, "30", 5.0, true);
    let slow =
        TranscodeOptions { x264_preset: "veryslow".into(), segment_seconds: 2.0, ..fast_opts() };
    let (_, live, _) = run_reporting(&input, &tmp.path().join("slow"), &slow);
    assert_eq!(live, [2]);
    let (_, live, _) = run_reporting(&input, &tmp.path().join("fast"), &fast_opts());
    assert_eq!(live, [0, 1, 2]);
}
