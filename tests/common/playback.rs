//! The playback fixture: a published course with a paid lecture, a free preview and a lecture
//! without a video, transcoded by a real worker; and the requests the playback tests make.

use std::time::Duration;

use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{clip, Backend, TestServer};

pub const KEY_SECRET: &str = "playback-test-secret-playback-test-secret";

/// A published course with a paid lecture and a free preview, both with ready videos.
pub struct Fixture {
    pub srv: TestServer,
    pub teacher: String,
    pub enrolled: String,
    pub outsider: String,
    pub course_id: i64,
    pub paid: i64,
    pub preview: i64,
    pub empty: i64,
    pub video: i64,
}

pub async fn fixture(b: Backend, s: StorageKind, encrypted: bool) -> Fixture {
    fixture_with(b, s, encrypted, lectern::config::Config::default().hls_cache_bytes).await
}

/// [`fixture`] with an origin shield of `cache_bytes` (0: every object read from the store).
pub async fn fixture_with(
    b: Backend,
    s: StorageKind,
    encrypted: bool,
    cache_bytes: u64,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let paid = clip(dir.path(), "paid.mp4", 640, 360, 6.0, true);
    fixture_of(b, s, encrypted, cache_bytes, &paid).await
}

/// [`fixture_with`] whose paid lecture plays the video file `paid`.
pub async fn fixture_of(
    b: Backend,
    s: StorageKind,
    encrypted: bool,
    cache_bytes: u64,
    paid_video: &std::path::Path,
) -> Fixture {
    let srv = TestServer::start_with(b, s, move |c| {
        c.hls_cache_bytes = cache_bytes;
        c.segment_seconds = 2.0;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
        c.hls_encryption = encrypted;
        c.playback_keys = lectern::config::Secret::new(format!("test:{KEY_SECRET}"));
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course_id, section_id, paid) = srv.course_with_lecture(&teacher, "Paid course").await;
    let preview =
        srv.add_lecture(&teacher, section_id, json!({"title": "Free", "is_preview": true})).await;
    let empty = srv.add_lecture(&teacher, section_id, json!({"title": "Soon"})).await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&teacher, paid, paid_video).await;
    let preview_video =
        srv.put_video(&teacher, preview, &clip(dir.path(), "free.mp4", 320, 240, 2.0, true)).await;
    let mut worker = srv.spawn_worker();
    for v in [video, preview_video] {
        let v = srv.wait_video(&teacher, v, Duration::from_secs(240)).await;
        assert_eq!(v["status"], "ready", "{v}");
    }
    worker.kill().await.unwrap();
    let (status, _) =
        srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (enrolled, _) = srv.new_user("enrolled@example.com").await;
    let (outsider, _) = srv.new_user("outsider@example.com").await;
    srv.enroll(&enrolled, course_id).await;
    Fixture { srv, teacher, enrolled, outsider, course_id, paid, preview, empty, video }
}

pub async fn playback(f: &Fixture, lecture: i64, token: Option<&str>) -> (StatusCode, Value) {
    f.srv.post(&format!("/api/v1/lectures/{lecture}/playback"), token, json!({})).await
}

/// A playback token with `claims`, signed as told.
pub fn forge(claims: Value, alg: jsonwebtoken::Algorithm, kid: &str, secret: &str) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// GET `url` with `headers`.
pub async fn get(f: &Fixture, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = f.srv.http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// A playback session of the paid lecture, opened by the enrolled student.
pub struct Opened {
    pub token: String,
    /// `…/hls/{video}`.
    pub base: String,
    /// The first rendition the master playlist names.
    pub rendition: String,
}

/// Open the paid lecture as the enrolled student and read the master playlist.
pub async fn open_paid_lecture(f: &Fixture) -> Opened {
    let (_, session) = playback(f, f.paid, Some(&f.enrolled)).await;
    let token = session["token"].as_str().unwrap().to_string();
    let base = f.srv.url(&format!("/hls/{}", f.video));
    let master =
        get(f, &format!("{base}/master.m3u8?token={token}"), &[]).await.text().await.unwrap();
    let line = master.lines().find(|l| l.contains("index.m3u8")).unwrap();
    let rendition = line.split('/').next().unwrap().to_string();
    Opened { token, base, rendition }
}
