//! The media pipeline end to end: uploads over HTTP, the job queue, worker processes and the
//! ffmpeg-next engine, on SQLite with filesystem storage and on PostgreSQL with S3 (s3s-fs).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{assert_decodes, assert_error, clip, ffmpeg, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(240);

async fn server(b: Backend, s: StorageKind) -> TestServer {
    TestServer::start_with(b, s, |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
    })
    .await
}

/// An instructor's course with `n` lectures: the instructor token, course and lecture ids.
async fn course(srv: &TestServer, n: usize) -> (String, i64, Vec<i64>) {
    let t = srv.instructor("teacher@example.com").await;
    let (course_id, lectures) = srv.course_with_lectures(&t, "Media", n).await;
    (t, course_id, lectures)
}

fn ffprobe_size(path: &Path) -> (u32, u32) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-allowed_extensions",
            "ALL",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ffprobe {path:?}: {}", String::from_utf8_lossy(&out.stderr));
    // HLS input lists the stream once per program too; the first line is enough.
    let first = s.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let mut it = first.trim().split(',').map(|n| n.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// What a ready video must look like: renditions as expected, playlists in storage, every
/// rendition decodable, the duration right.
async fn check_ready(srv: &TestServer, v: &Value, want_duration: f64, want_top: (u32, u32)) {
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["progress"].as_f64(), Some(1.0));
    let d = v["duration_seconds"].as_f64().unwrap();
    assert!((d - want_duration).abs() < 0.15, "duration {d}, expected {want_duration}");
    let top = &v["renditions"][0];
    assert_eq!(
        (top["width"].as_u64().unwrap() as u32, top["height"].as_u64().unwrap() as u32),
        want_top,
        "{v}"
    );
    for r in v["renditions"].as_array().unwrap() {
        assert!(r["bandwidth"].as_u64().unwrap() > 0);
        assert!(
            r["width"].as_u64().unwrap() % 2 == 0 && r["height"].as_u64().unwrap() % 2 == 0,
            "odd size: {r}"
        );
    }
    let out = srv.fetch_outputs(v["id"].as_i64().unwrap()).await;
    let master = std::fs::read_to_string(out.path().join("master.m3u8")).unwrap();
    assert!(master.contains("#EXT-X-STREAM-INF") && master.contains("CODECS=\"avc1."), "{master}");
    assert!(out.path().join("poster.jpg").is_file() && out.path().join("thumbnails.vtt").is_file());
    assert_decodes(&out.path().join("master.m3u8"));
    let name = top["name"].as_str().unwrap();
    assert_eq!(ffprobe_size(&out.path().join(name).join("index.m3u8")), want_top);
}

async fn every_kind_of_source_becomes_a_playable_ladder(b: Backend, s: StorageKind) {
    let srv = server(b, s).await;
    let (t, course_id, lectures) = course(&srv, 7).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rotated_src = clip(d, "landscape.mp4", 640, 360, 3.0, true);
    ffmpeg(
        &format!("-i {} -c copy -metadata:s:v:0 rotate=90", rotated_src.display()),
        &d.join("rotated.mp4"),
    );
    ffmpeg(
        "-f lavfi -i testsrc2=size=640x360:rate=30:duration=3 -vf setpts='PTS+0.02*sin(N)/TB' -fps_mode vfr -c:v libx264 -preset ultrafast -pix_fmt yuv420p",
        &d.join("vfr.mp4"),
    );
    // (file, expected duration, expected top rendition size)
    let cases: Vec<(std::path::PathBuf, f64, (u32, u32))> = vec![
        (clip(d, "wide.mp4", 1280, 720, 3.0, true), 3.0, (1280, 720)),
        (clip(d, "silent.mp4", 640, 360, 3.0, false), 3.0, (640, 360)),
        (clip(d, "portrait.mp4", 720, 1280, 2.0, true), 2.0, (720, 1280)),
        (d.join("rotated.mp4"), 3.0, (360, 640)),
        (clip(d, "odd.mp4", 1281, 721, 2.0, true), 2.0, (1280, 720)),
        (d.join("vfr.mp4"), 3.0, (640, 360)),
        (clip(d, "tiny.mp4", 320, 240, 4.0, true), 4.0, (320, 240)),
    ];
    let mut videos = Vec::new();
    for ((file, _, _), lecture) in cases.iter().zip(&lectures) {
        videos.push(srv.put_video(&t, *lecture, file).await);
    }
    let mut workers = [srv.spawn_worker(), srv.spawn_worker()];
    let mut total = 0.0;
    for ((file, want_duration, want_top), video) in cases.iter().zip(&videos) {
        let v = srv.wait_video(&t, *video, WAIT).await;
        assert_eq!(v["status"], "ready", "{}: {v}", file.display());
        check_ready(&srv, &v, *want_duration, *want_top).await;
        total += v["duration_seconds"].as_f64().unwrap();
    }
    // Durations roll up into the lectures and the course.
    let (_, page) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(&t)).await;
    let lectures_json = page["sections"][0]["lectures"].as_array().unwrap();
    for (l, v) in lectures_json.iter().zip(&videos) {
        assert_eq!(l["video_status"], "ready");
        assert_eq!(l["video_id"].as_i64(), Some(*v));
        assert!(l["duration_seconds"].as_f64().unwrap() > 1.9);
    }
    assert!((page["duration_seconds"].as_f64().unwrap() - total).abs() < 1e-6, "{page}");
    // The server's /metrics counts what the worker processes did, read off the database.
    let finished = srv.metric("lectern_transcodes_finished", r#"result="ready",reason="""#).await;
    assert_eq!(finished, Some(cases.len() as f64));
    assert_eq!(srv.metric("lectern_transcodes_recent", "").await, Some(cases.len() as f64));
    let speed = srv.metric("lectern_transcode_speed_realtime", "").await.unwrap();
    assert!(speed > 0.0 && speed.is_finite(), "speed {speed}");
    let waiting = r#"kind="transcode",state="waiting""#;
    assert_eq!(srv.metric("lectern_queue_jobs", waiting).await, Some(0.0));
    for w in &mut workers {
        w.kill().await.unwrap();
    }
}

async fn bad_sources_fail_with_a_reason_and_the_api_stays_up(b: Backend, s: StorageKind) {
    let srv = server(b, s).await;
    let (t, _, lectures) = course(&srv, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.bin");
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&random, &noise).unwrap();
    let whole = clip(dir.path(), "whole.mp4", 640, 360, 3.0, true);
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() * 3 / 10]).unwrap();
    let audio_only = dir.path().join("audio.m4a");
    ffmpeg("-f lavfi -i sine=frequency=440:duration=2 -c:a aac", &audio_only);

    let mut videos = Vec::new();
    for (file, lecture) in [&random, &truncated, &audio_only].into_iter().zip(&lectures) {
        videos.push(srv.put_video(&t, *lecture, file).await);
    }
    let waiting = r#"kind="transcode",state="waiting""#;
    assert_eq!(srv.metric("lectern_queue_jobs", waiting).await, Some(3.0));
    let oldest = srv.metric("lectern_queue_oldest_due_seconds", r#"kind="transcode""#).await;
    assert!(oldest.is_some_and(|s| s >= 0.0), "{oldest:?}");
    let mut worker = srv.spawn_worker();
    for v in videos {
        let v = srv.wait_video(&t, v, WAIT).await;
        assert_eq!(v["status"], "failed", "{v}");
        let reason = v["error"].as_str().unwrap();
        assert!(reason.len() > 10 && !reason.contains("panicked"), "unreadable reason: {reason}");
    }
    // None of these is media a transcoder can use: so the server's figures say.
    let invalid =
        srv.metric("lectern_transcodes_finished", r#"result="failed",reason="invalid_media""#);
    assert_eq!(invalid.await, Some(3.0));
    let (status, _) = srv.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    worker.kill().await.unwrap();
}

async fn a_killed_worker_is_taken_over_and_one_output_set_is_published(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "medium".into(); // slow enough to kill mid-job
        c.job_lease_secs = 3;
        c.worker_poll_ms = 200;
    })
    .await;
    let (t, _, lectures) = course(&srv, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = clip(dir.path(), "long.mp4", 1280, 720, 12.0, true);
    let video = srv.put_video(&t, lectures[0], &file).await;
    let mut first = srv.spawn_worker();
    let started = std::time::Instant::now();
    loop {
        let (_, v) = srv.get(&format!("/api/v1/videos/{video}"), Some(&t)).await;
        if v["status"] == "processing" && v["progress"].as_f64().unwrap() > 0.06 {
            break;
        }
        assert!(
            started.elapsed() < WAIT && v["status"] != "ready" && v["status"] != "failed",
            "never caught it mid-job: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    let mut second = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    assert_eq!(v["status"], "ready", "{v}");
    let (attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM jobs WHERE video_id = $1")
        .bind(video)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 2, "the second worker took the job over");
    // Exactly one output set besides the source.
    let objects = srv
        .app_state
        .storage
        .list(&lectern::storage::keys::video(lectern::types::VideoId::new(video)))
        .await
        .unwrap();
    let mut prefixes: Vec<String> =
        objects.iter().map(|o| o.key.as_str().split('/').nth(2).unwrap().to_string()).collect();
    prefixes.dedup();
    assert_eq!(prefixes.len(), 2, "{prefixes:?}");
    assert!(prefixes.contains(&"source".to_string()));
    check_ready(&srv, &v, 12.0, (1280, 720)).await;
    second.kill().await.unwrap();
}

async fn a_new_upload_replaces_the_old_video_when_ready(b: Backend, s: StorageKind) {
    let srv = server(b, s).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = srv.spawn_worker();
    let first =
        srv.put_video(&t, lectures[0], &clip(dir.path(), "a.mp4", 320, 240, 2.0, true)).await;
    assert_eq!(srv.wait_video(&t, first, WAIT).await["status"], "ready");
    let second =
        srv.put_video(&t, lectures[0], &clip(dir.path(), "b.mp4", 640, 360, 3.0, true)).await;
    let v = srv.wait_video(&t, second, WAIT).await;
    check_ready(&srv, &v, 3.0, (640, 360)).await;
    // The old video and its objects are gone.
    let started = std::time::Instant::now();
    loop {
        let (status, _) = srv.get(&format!("/api/v1/videos/{first}"), Some(&t)).await;
        let left = srv
            .app_state
            .storage
            .list(&lectern::storage::keys::video(lectern::types::VideoId::new(first)))
            .await
            .unwrap();
        if status == StatusCode::NOT_FOUND && left.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "old video still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.kill().await.unwrap();
}
/// A database failure while checking who may see a video is a 500, never a 404 that would tell
/// the owner their video is gone.
async fn a_database_failure_is_not_reported_as_a_missing_video(b: Backend) {
    let srv = server(b, StorageKind::Fs).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let video =
        srv.put_video(&t, lectures[0], &clip(dir.path(), "a.mp4", 320, 240, 1.0, false)).await;
    sqlx::query("ALTER TABLE courses RENAME TO courses_away")
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    let resp = srv
        .http
        .get(srv.url(&format!("/api/v1/videos/{video}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    // A database that cannot answer is an outage (503, `db::is_outage`), never "no such video".
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&resp.json().await.unwrap(), "unavailable");
}

on_both_databases!(a_database_failure_is_not_reported_as_a_missing_video);

on_both_setups!(
    every_kind_of_source_becomes_a_playable_ladder,
    bad_sources_fail_with_a_reason_and_the_api_stays_up,
    a_killed_worker_is_taken_over_and_one_output_set_is_published,
    a_new_upload_replaces_the_old_video_when_ready,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_are_private_to_their_owner() {
    let srv = server(Backend::Sqlite, StorageKind::Fs).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let video =
        srv.put_video(&t, lectures[0], &clip(dir.path(), "a.mp4", 320, 240, 1.0, false)).await;
    let (student, _) = srv.new_user("student@example.com").await;
    let (status, _) = srv.get(&format!("/api/v1/videos/{video}"), Some(&student)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = srv.get(&format!("/api/v1/videos/{video}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = srv.get(&format!("/api/v1/videos/{video}"), Some(&t)).await;
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("queued")));
}
