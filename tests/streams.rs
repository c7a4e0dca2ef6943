//! Concurrent-stream limits over HTTP: a student account holds at most
//! `LECTERN_MAX_CONCURRENT_STREAMS` active playback sessions (429 `too_many_streams` past it,
//! at session start and at the key of a session that comes back from idle), instructors have
//! none; media playlists repeat the key line so playing sessions keep fetching it; revoking the
//! enrollment (a refund) ends the sessions at the key at once. SQLite + filesystem and
//! PostgreSQL + S3.

mod common;

use std::time::Duration;

use common::{assert_error, clip, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn session(srv: &TestServer, lecture: i64, token: &str) -> (StatusCode, Value, Option<u64>) {
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/lectures/{lecture}/playback")))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (status, resp.json().await.unwrap(), retry)
}

/// The key URIs of `session`'s first media playlist, resolved.
async fn key_uris(srv: &TestServer, session: &Value) -> Vec<String> {
    let master_url = session["url"].as_str().unwrap();
    let base = master_url.split("/master.m3u8").next().unwrap();
    let master = srv.http.get(master_url).send().await.unwrap().text().await.unwrap();
    let media = master.lines().find(|l| !l.starts_with('#') && !l.is_empty()).unwrap();
    let rendition = media.split('/').next().unwrap();
    let text = srv.http.get(format!("{base}/{media}")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("#EXT-X-KEY"))
        .map(|l| {
            let uri = l.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
            format!("{base}/{rendition}/{uri}")
        })
        .collect()
}

async fn key_status(srv: &TestServer, url: &str) -> (StatusCode, Value) {
    let resp = srv.http.get(url).send().await.unwrap();
    let status = resp.status();
    let body = if status == StatusCode::OK { Value::Null } else { resp.json().await.unwrap() };
    (status, body)
}

/// A server with 2-second segments whose key line repeats every 2 s (and `tune`d further).
async fn server(
    b: Backend,
    s: StorageKind,
    tune: impl FnOnce(&mut lectern::config::Config),
) -> TestServer {
    TestServer::start_with(b, s, move |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
        c.key_refresh_secs = 2;
        tune(c);
    })
    .await
}

/// A 6-second video for `lecture`, transcoded and ready; the scratch dir it came from.
async fn ready_video(srv: &TestServer, teacher: &str, lecture: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let video =
        srv.put_video(teacher, lecture, &clip(dir.path(), "v.mp4", 320, 240, 6.0, true)).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(teacher, video, Duration::from_secs(240)).await;
    assert_eq!(v["status"], "ready", "{v}");
    worker.kill().await.unwrap();
    dir
}

async fn a_student_streams_on_at_most_the_limit(b: Backend, s: StorageKind) {
    let srv = server(b, s, |c| {
        c.max_concurrent_streams = 2;
        c.stream_idle_secs = 3;
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course_id, _, lecture) = srv.course_with_lecture(&teacher, "Limits").await;
    let _dir = ready_video(&srv, &teacher, lecture).await;
    let (status, _) =
        srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (student, _) = srv.new_user("student@example.com").await;
    srv.enroll(&student, course_id).await;

    // Two sessions, each with its id; the third is refused while both are active.
    let (_, first, _) = session(&srv, lecture, &student).await;
    let (_, second, _) = session(&srv, lecture, &student).await;
    assert_ne!(first["session_id"], second["session_id"]);
    let (status, refused, retry) = session(&srv, lecture, &student).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_error(&refused, "too_many_streams");
    assert!(retry.is_some_and(|r| r >= 1));
    // The course's instructor is not limited.
    for _ in 0..4 {
        assert_eq!(session(&srv, lecture, &teacher).await.0, StatusCode::OK);
    }

    // Every 2 s of video the key line comes again under a new URI: a playing session keeps
    // fetching the key, and so stays active.
    let keys = key_uris(&srv, &first).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys[1].contains("part=1") && keys[2].contains("part=2"), "{keys:?}");
    for k in &keys {
        assert_eq!(key_status(&srv, k).await.0, StatusCode::OK);
    }

    // Idle sessions stop counting: two new ones start; the first, back from idle while the
    // account watches on two others, gets no key.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, third, _) = session(&srv, lecture, &student).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let (status, fourth, _) = session(&srv, lecture, &student).await;
    assert_eq!(status, StatusCode::OK, "{fourth}");
    let (status, body) = key_status(&srv, &keys[0]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "too_many_streams");

    // A refund revokes the enrollment: the live sessions get no key from then on.
    let third_keys = key_uris(&srv, &third).await;
    assert_eq!(key_status(&srv, &third_keys[0]).await.0, StatusCode::OK);
    let (_, me) = srv.get("/api/v1/me", Some(&student)).await;
    lectern::learning::revoke(
        srv.app_state.db.pool(),
        lectern::types::UserId::new(me["id"].as_i64().unwrap()),
        lectern::types::CourseId::new(course_id),
    )
    .await
    .unwrap();
    let (status, body) = key_status(&srv, &third_keys[1]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "session_ended");
}

/// A buyer who copies a lecture with ffmpeg (reporting no progress at all) has watched it as
/// far as the server served its keys: the refund policy and the dashboard's watch time count
/// that, not the "0 %" the client reported.
async fn a_copy_taken_without_reporting_progress_counts_as_watched(b: Backend, s: StorageKind) {
    let srv = server(b, s, |_| {}).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course_id, lecture) =
        common::shop::published(&srv, &teacher, "Copied", 30000, "KRW").await;
    let dir = ready_video(&srv, &teacher, lecture).await;
    let (student, _) = srv.new_user("student@example.com").await;
    let paid = common::shop::buy(&srv, &student, course_id).await;

    let (status, opened, _) = session(&srv, lecture, &student).await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    let copy = dir.path().join("copy.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i", opened["url"].as_str().unwrap(), "-c", "copy"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (_, progress) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(&student)).await;
    assert_eq!(progress["is_enrolled"], true);
    let (status, refused) = common::shop::refund(&srv, &student, &paid["id"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_error(&refused, "refund_course_watched");
    let (status, dashboard) = srv.get("/api/v1/instructor/dashboard", Some(&teacher)).await;
    assert_eq!(status, StatusCode::OK, "{dashboard}");
    let watched = dashboard["totals"]["watch_seconds"].as_f64().unwrap();
    assert!((4.0..=6.1).contains(&watched), "served 4 of 6 s at least: {dashboard}");
}

on_both_setups!(
    a_student_streams_on_at_most_the_limit,
    a_copy_taken_without_reporting_progress_counts_as_watched
);
