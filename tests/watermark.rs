//! The per-viewer forensic watermark end to end, on SQLite + filesystem and PostgreSQL + S3: a
//! course turns it on; its lecture is transcoded with both variants of every rung; 1,000
//! playback sessions are issued; two students capture the lecture with `ffmpeg -c copy`, one
//! copy cut to 3 minutes as taken, the other re-encoded to 480p at CRF 28; `lectern watermark
//! identify` names each of them (session and user) from those 3 minutes, says NO MATCH for an
//! unmarked encode of the same lecture and fails on a file that is not video.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SESSIONS: usize = 1000;

fn ffmpeg(args: &[&str]) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI must be installed");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `lectern watermark identify --video VIDEO FILE` on the server's database and store: exit
/// code and the line it printed.
async fn identify(srv: &TestServer, video: i64, file: &Path) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lectern"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LECTERN_")) {
        cmd.env_remove(k);
    }
    let out = cmd
        .envs(srv.cli_env())
        .env("RUST_LOG", "warn,lectern::playback::identify=debug")
        .args(["watermark", "identify", "--video", &video.to_string()])
        .arg(file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("identify {}: {stdout}\n{}", file.display(), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

/// The average luma PSNR between two decodable videos, as FFmpeg's `psnr` filter measures it.
fn psnr(a: &Path, b: &Path) -> f64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-allowed_extensions", "ALL", "-i"])
        .arg(a)
        .args(["-allowed_extensions", "ALL", "-i"])
        .arg(b)
        .args(["-lavfi", "psnr", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log.lines().find(|l| l.contains("PSNR y:")).unwrap_or_else(|| panic!("{log}"));
    line.split("y:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// A 200-second 480p lecture: five still slides of 40 s each, and the speaker in a moving
/// picture-in-picture (FFmpeg's testsrc2) at the bottom right, with a tone.
fn slide_lecture(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("lecture.mp4");
    let slides = ["smptebars", "pal100bars", "rgbtestsrc", "yuvtestsrc", "smptehdbars"];
    let mut args: Vec<String> = Vec::new();
    for slide in slides {
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("{slide}=size=854x480:rate=30:duration=40"));
    }
    args.extend(
        ["-f", "lavfi", "-i", "testsrc2=size=214x120:rate=30:duration=200"].map(String::from),
    );
    args.extend(
        ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=200"]
            .map(String::from),
    );
    args.extend([
        "-filter_complex",
        "[0:v][1:v][2:v][3:v][4:v]concat=n=5:v=1:a=0[deck];[deck][5:v]overlay=x=W-w-16:y=H-h-16,format=yuv420p[v]",
        "-map",
        "[v]",
        "-map",
        "6:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
    ]
    .map(String::from));
    args.push(out.display().to_string());
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out
}

async fn open(srv: &TestServer, lecture: i64, token: &str) -> Value {
    let (status, session) =
        srv.post(&format!("/api/v1/lectures/{lecture}/playback"), Some(token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session
}

async fn a_leaked_copy_names_its_viewer(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |c| {
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
        c.hls_encryption = true;
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course_id, _, lecture) = srv.course_with_lecture(&teacher, "Leaked course").await;
    let (status, course) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{course_id}"),
            Some(&teacher),
            Some(json!({"forensic_watermark": true})),
        )
        .await;
    assert_eq!((status, &course["forensic_watermark"]), (StatusCode::OK, &json!(true)));

    let dir = tempfile::tempdir().unwrap();
    let source = slide_lecture(dir.path());
    let video = srv.put_video(&teacher, lecture, &source).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&teacher, video, Duration::from_secs(900)).await;
    assert_eq!(v["status"], "ready", "{v}");
    worker.kill().await.unwrap();
    let (status, _) =
        srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // The two variants look the same.
    let outputs = srv.fetch_outputs(video).await;
    let (a, b) = (outputs.path().join("480p/index.m3u8"), outputs.path().join("480p-b/index.m3u8"));
    let db = psnr(&a, &b);
    eprintln!("PSNR(A, B) of 480p: {db:.2} dB");
    assert!(db >= 42.0, "PSNR between the variants {db:.2} dB");

    // 1,000 sessions: two students' among the teacher's (instructors have no stream limit).
    let (alice, _) = srv.new_user("alice@example.com").await;
    let (bob, _) = srv.new_user("bob@example.com").await;
    srv.enroll(&alice, course_id).await;
    srv.enroll(&bob, course_id).await;
    let (mut alices, mut bobs) = (Value::Null, Value::Null);
    for i in 0..SESSIONS {
        match i {
            317 => alices = open(&srv, lecture, &alice).await,
            642 => bobs = open(&srv, lecture, &bob).await,
            _ => drop(open(&srv, lecture, &teacher).await),
        }
    }
    let issued: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM playback_sessions WHERE video_id = $1")
            .bind(video)
            .fetch_one(srv.app_state.db.pool())
            .await
            .unwrap();
    assert_eq!(issued.0, SESSIONS as i64);

    // Each session's media playlist mixes the variants its own way; the marked variant's own
    // playlist is never served.
    let media = |session: &Value| {
        let base =
            session["url"].as_str().unwrap().split("/master.m3u8").next().unwrap().to_string();
        let token = session["token"].as_str().unwrap().to_string();
        let srv = &srv;
        async move {
            let url = format!("{base}/480p/index.m3u8?token={token}");
            let marked = format!("{base}/480p-b/index.m3u8?token={token}");
            let text = srv.http.get(&url).send().await.unwrap().text().await.unwrap();
            let refused = srv.http.get(&marked).send().await.unwrap().status();
            (text, refused)
        }
    };
    let ((alice_list, refused), (bob_list, _)) = (media(&alices).await, media(&bobs).await);
    assert_eq!(refused, StatusCode::NOT_FOUND);
    assert_ne!(alice_list, bob_list);
    assert!(alice_list.contains("../480p-b/seg_") && alice_list.contains("\nseg_"), "{alice_list}");

    // Alice's copy as taken, cut to 3 minutes from 12 s in; Bob's re-encoded to 480p, CRF 28.
    let taken = dir.path().join("alice-full.mp4");
    ffmpeg(&["-i", alices["url"].as_str().unwrap(), "-c", "copy", taken.to_str().unwrap()]);
    let alice_copy = dir.path().join("alice.mp4");
    ffmpeg(
        &["-ss", "12", "-i", taken.to_str().unwrap(), "-t", "180", "-c", "copy"]
            .into_iter()
            .chain([alice_copy.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    let bob_full = dir.path().join("bob-full.mp4");
    ffmpeg(&["-i", bobs["url"].as_str().unwrap(), "-c", "copy", bob_full.to_str().unwrap()]);
    let bob_copy = dir.path().join("bob.mp4");
    ffmpeg(&[
        "-i",
        bob_full.to_str().unwrap(),
        "-t",
        "180",
        "-vf",
        "scale=-2:480",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "28",
        "-c:a",
        "aac",
        bob_copy.to_str().unwrap(),
    ]);
    let unmarked = dir.path().join("unmarked.mp4");
    ffmpeg(&[
        "-i",
        source.to_str().unwrap(),
        "-t",
        "180",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        unmarked.to_str().unwrap(),
    ]);

    for (copy, session, token) in [(&alice_copy, &alices, &alice), (&bob_copy, &bobs, &bob)] {
        let (code, line) = identify(&srv, video, copy).await;
        let want = format!(
            "MATCH session={} user={} confidence=",
            session["session_id"].as_str().unwrap(),
            srv.user_id(token).await
        );
        assert_eq!(code, 0, "{line}");
        assert!(line.starts_with(&want), "{line} (wanted {want}…)");
        let confidence: f64 = line.rsplit('=').next().unwrap().parse().unwrap();
        assert!(confidence >= 0.999, "{line}");
    }
    let (code, line) = identify(&srv, video, &unmarked).await;
    assert_eq!((code, line.as_str()), (1, "NO MATCH"));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a video at all\n".repeat(100)).unwrap();
    let (code, _) = identify(&srv, video, &text).await;
    assert_eq!(code, 2);
}

on_both_setups!(a_leaked_copy_names_its_viewer);
