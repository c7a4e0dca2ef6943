//! `write_sample_clip` makes a clip that probes as expected and transcodes into a ladder.

use lectern_workers::{probe, transcode, write_sample_clip, MediaError, TranscodeOptions};

#[test]
fn sample_clip_probes_and_transcodes() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("sample.mp4");
    write_sample_clip(&clip, 640, 360, 3.0, 440).expect("write the sample clip");

    let info = probe(&clip).expect("probe");
    assert!((info.duration_seconds - 3.0).abs() <= 0.1, "duration {}", info.duration_seconds);
    assert!(info.has_audio);
    assert_eq!((info.width, info.height), (640, 360));
    assert_eq!(info.frame_rate, 30.0);
    assert_eq!(info.video_codec, "h264");
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));

    let out = tmp.path().join("hls");
    let summary =
        transcode(&clip, &out, &TranscodeOptions::default(), &mut |_| {}).expect("transcode");
    assert!(out.join("master.m3u8").is_file());
    assert!(!summary.renditions.is_empty());
    assert!((summary.duration_seconds - 3.0).abs() <= 0.1, "duration {}", summary.duration_seconds);
    for r in &summary.renditions {
        assert!(out.join(&r.name).join("index.m3u8").is_file(), "{} has no playlist", r.name);
    }
}

#[test]
fn unusable_arguments_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("bad.mp4");
    for (w, h, s, hz) in
        [(641, 360, 3.0, 440), (640, 360, 0.0, 440), (640, 360, f64::NAN, 440), (640, 360, 3.0, 0)]
    {
        let err = write_sample_clip(&clip, w, h, s, hz).unwrap_err();
        assert!(matches!(err, MediaError::InvalidOptions(_)), "{w}x{h} {s}s {hz}Hz: {err:?}");
    }
    assert!(!clip.exists());
    let missing = tmp.path().join("no/such/dir/clip.mp4");
    assert!(matches!(write_sample_clip(&missing, 64, 64, 0.5, 440), Err(MediaError::Io(_))));
}
