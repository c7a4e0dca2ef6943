//! Streamed video uploads (`PUT /lectures/{id}/video`): refused up front when they cannot be
//! kept, nothing left behind when they die, per-user limits shared with tus uploads; on SQLite
//! with filesystem storage and on PostgreSQL with S3 (s3s-fs).

mod common;

use std::time::Duration;

use common::tus::{creation, fake_mp4, location, patch, terminate};
use common::{assert_error, eventually, Backend, TestServer};
use futures::StreamExt;
use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::Value;

/// An instructor's course with `n` lectures: the instructor token, course and lecture ids.
async fn course(srv: &TestServer, n: usize) -> (String, i64, Vec<i64>) {
    let t = srv.instructor("teacher@example.com").await;
    let (course_id, lectures) = srv.course_with_lectures(&t, "Uploads", n).await;
    (t, course_id, lectures)
}

async fn uploads_that_are_not_video_or_too_big_are_refused_up_front(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |c| c.max_upload_bytes = 3 * 1024 * 1024).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let lecture = lectures[0];
    let put = |body: Vec<u8>, token: String| {
        let srv = &srv;
        async move {
            let resp = srv
                .http
                .put(srv.url(&format!("/api/v1/lectures/{lecture}/video")))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa".repeat(4);
    let (status, body) = put(png, t.clone()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&body, "not_a_video");
    let (status, body) =
        put(b"<html><body>not a video at all, sorry</body></html>".to_vec(), t.clone()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    // Too large, declared: refused before the body is read.
    let path = format!("/api/v1/lectures/{lecture}/video");
    let (status, body) = raw_put(&srv, &path, &t, Some(4 * 1024 * 1024), 0).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    // Too large, streamed without a length: refused once the limit is passed.
    let (status, body) = raw_put(&srv, &path, &t, None, 4 * 1024 * 1024).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    let (status, _) = put(Vec::new(), t.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Someone else's lecture.
    let other = srv.instructor("other@example.com").await;
    let (status, _) = put(b"\x00\x00\x00\x20ftypisom".repeat(10), other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing was kept: no video rows, nothing in storage.
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos")
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
    let videos_prefix = lectern::storage::ObjectKey::new("videos").unwrap();
    assert!(srv.app_state.storage.list(&videos_prefix).await.unwrap().is_empty());
}

/// A PUT over a raw connection: the client keeps writing while it reads, as a real client
/// with a large body would, so an early answer from the server can be seen (a client library
/// gives up on a broken pipe instead). `declared` sends a Content-Length and no body;
/// otherwise `streamed` bytes go chunked.
async fn raw_put(
    srv: &TestServer,
    path: &str,
    token: &str,
    declared: Option<u64>,
    streamed: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = srv.base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let length = match declared {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".into(),
    };
    let head = format!("PUT {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n{length}connection: close\r\n\r\n");
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut chunk = b"\x00\x00\x00\x20ftypisom".to_vec();
        chunk.resize(64 * 1024, 7);
        let mut sent = 0;
        while sent < streamed {
            let frame =
                [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()]
                    .concat();
            if wr.write_all(&frame).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut response)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A client that goes away in the middle of a streamed PUT: no video row, no temporary file,
/// no multipart upload left open.
async fn a_cancelled_put_leaves_nothing_behind(b: Backend, s: StorageKind) {
    use tokio::io::AsyncWriteExt;
    let srv = TestServer::start_with(b, s, |_| {}).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let lecture = lectures[0];
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/lectures/{lecture}/video HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {t}\r\ncontent-length: {}\r\n\r\n",
        40 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut chunk = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41".to_vec();
    chunk.resize(1024 * 1024, 3);
    for _ in 0..20 {
        stream.write_all(&chunk).await.unwrap();
    }
    // Wait until the server holds the upload (its video row exists), then hang up.
    let db = srv.app_state.db.pool();
    let count = || async {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM videos").fetch_one(db).await.unwrap().0
    };
    eventually("the server holds the upload", Duration::from_secs(30), || async {
        (count().await > 0).then_some(())
    })
    .await;
    drop(stream);
    nothing_left_behind(&srv).await;
}

/// A streamed PUT whose request is cancelled midway — its future dropped, as a server does with
/// a request it gives up on — takes its video row, its temporary file and its S3 multipart
/// upload with it.
async fn a_put_dropped_midway_leaves_nothing_behind(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |_| {}).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let caller = lectern::accounts::Caller {
        user_id: lectern::types::UserId::new(srv.user_id(&t).await),
        role: lectern::accounts::Role::Instructor,
        session_id: String::new(),
    };
    // 12 MiB arrive, then the body goes quiet for good.
    let chunk = bytes::Bytes::from(fake_mp4(1024 * 1024));
    let body: lectern::storage::ByteStream = Box::pin(
        futures::stream::iter((0..12).map(move |_| Ok(chunk.clone())))
            .chain(futures::stream::pending()),
    );
    let st = srv.app_state.uploads.clone();
    let lecture = lectures[0];
    let upload = tokio::spawn(async move {
        let _ = lectern::media::upload_streamed(
            &st,
            &caller,
            lectern::types::LectureId::new(lecture),
            "x.mp4",
            None,
            body,
        )
        .await;
    });
    let db = srv.app_state.db.pool();
    let count = || async {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM videos").fetch_one(db).await.unwrap().0
    };
    let started = std::time::Instant::now();
    while count().await == 0 || srv.pending_upload_scratch() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the upload never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    upload.abort();
    let _ = upload.await;
    nothing_left_behind(&srv).await;
}

/// Wait (up to 30 s) until no video row and no upload scratch is left.
async fn nothing_left_behind(srv: &TestServer) {
    let started = std::time::Instant::now();
    loop {
        let (videos,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos")
            .fetch_one(srv.app_state.db.pool())
            .await
            .unwrap();
        let scratch = srv.pending_upload_scratch();
        if videos == 0 && scratch == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "left behind: {videos} videos, {scratch} scratch files/uploads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
/// A video row as a streamed PUT makes it, `uploading`, last touched `at`: its id.
async fn uploading_video(srv: &TestServer, user: i64, lecture: i64, at: i64) -> i64 {
    sqlx::query_as::<_, (i64,)>(
        "INSERT INTO videos (lecture_id, uploader_id, status, original_filename, created_at, updated_at) \
         VALUES ($1, $2, 'uploading', 'x.mp4', $3, $3) RETURNING id",
    )
    .bind(lecture)
    .bind(user)
    .bind(at)
    .fetch_one(srv.app_state.db.pool())
    .await
    .unwrap()
    .0
}

/// Make the videos of `lecture` look untouched since `at`.
async fn age_videos(srv: &TestServer, lecture: i64, at: i64) {
    sqlx::query("UPDATE videos SET created_at = $1, updated_at = $1 WHERE lecture_id = $2")
        .bind(at)
        .bind(lecture)
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
}

/// A server that died in the middle of a streamed PUT leaves its video `uploading` for good;
/// housekeeping removes such videos once nothing has touched them for a while, and leaves tus
/// uploads and PUTs in progress alone.
async fn uploading_videos_a_dead_put_left_behind_are_removed(b: Backend) {
    let srv =
        TestServer::start_with(b, StorageKind::Fs, |c| c.housekeeping_interval_secs = 1).await;
    let (t, _, lectures) = course(&srv, 3).await;
    let user = srv.user_id(&t).await;
    let long_ago = lectern::db::now() - 3600;
    let live = uploading_video(&srv, user, lectures[1], lectern::db::now()).await;
    // A tus upload whose client paused for a long time is tus expiry's business, not this.
    let (status, _, _) = creation(&srv, &t, lectures[2], Some(1000)).await;
    assert_eq!(status, StatusCode::CREATED);
    age_videos(&srv, lectures[2], long_ago).await;
    // The dead PUT's video, with its source stored, goes untouched last: once housekeeping has
    // removed it, it has seen everything above too.
    let dead = uploading_video(&srv, user, lectures[0], lectern::db::now()).await;
    let source = lectern::storage::keys::source(lectern::types::VideoId::new(dead));
    srv.app_state
        .storage
        .put(&source, lectern::storage::stream_from_bytes(vec![0u8; 1000]), "video/mp4")
        .await
        .unwrap();
    age_videos(&srv, lectures[0], long_ago).await;

    eventually("housekeeping removes the dead PUT's video", Duration::from_secs(20), || async {
        let (status, _) = srv.get(&format!("/api/v1/videos/{dead}"), Some(&t)).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let left: Vec<(i64, i64)> = sqlx::query_as("SELECT id, lecture_id FROM videos ORDER BY id")
        .fetch_all(srv.app_state.db.pool())
        .await
        .unwrap();
    let lectures_left: Vec<i64> = left.iter().map(|r| r.1).collect();
    assert_eq!(lectures_left, vec![lectures[1], lectures[2]], "{left:?}");
    assert!(left.iter().any(|r| r.0 == live));
    let (status, v) = srv.get(&format!("/api/v1/videos/{live}"), Some(&t)).await;
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("uploading")), "{v}");
    assert!(srv
        .app_state
        .storage
        .list(&lectern::storage::keys::video(lectern::types::VideoId::new(dead)))
        .await
        .unwrap()
        .is_empty());
}

/// A PATCH of all of `body` at offset 0: the status.
async fn patch_all(srv: &TestServer, token: &str, url: &str, body: Vec<u8>) -> StatusCode {
    patch(srv, url, token, 0, body).await.status()
}

/// A server with small per-user upload limits, and an instructor's lecture.
async fn limited(b: Backend) -> (TestServer, String, i64) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.upload_max_concurrent = 2;
        c.upload_max_bytes_in_progress = 1_000_000;
        c.upload_daily_quota_bytes = 1_500_000;
    })
    .await;
    let (t, _, lectures) = course(&srv, 1).await;
    (srv, t, lectures[0])
}

/// Two uploads in progress: a third, tus or PUT, is refused; another user is not affected.
/// The two uploads' URLs.
async fn concurrent_uploads_are_limited(
    srv: &TestServer,
    t: &str,
    lecture: i64,
) -> (String, String) {
    let (status, h1, _) = creation(srv, t, lecture, Some(400_000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, h2, _) = creation(srv, t, lecture, Some(400_000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = creation(srv, t, lecture, Some(100)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "too_many_uploads");
    let path = format!("/api/v1/lectures/{lecture}/video");
    let (status, text) = raw_put(srv, &path, t, None, 100_000).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("too_many_uploads"), "{text}");
    let other = srv.instructor("other@example.com").await;
    let (_, _, other_lecture) = srv.course_with_lecture(&other, "Theirs").await;
    let (status, _, _) = creation(srv, &other, other_lecture, Some(900_000)).await;
    assert_eq!(status, StatusCode::CREATED, "limits are per user");
    (location(&h1), location(&h2))
}

/// Bytes in progress, with 400 000 held by an upload: declared, and deferred while they arrive.
async fn bytes_in_progress_are_limited(srv: &TestServer, t: &str, lecture: i64) {
    let (status, _, body) = creation(srv, t, lecture, Some(700_000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "upload_bytes_in_progress");
    let path = format!("/api/v1/lectures/{lecture}/video");
    let (status, text) = raw_put(srv, &path, t, Some(700_000), 0).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("upload_bytes_in_progress"), "{text}");
    // A deferred length is held to what is left while its bytes arrive.
    let (status, h3, _) = creation(srv, t, lecture, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let status = patch_all(srv, t, &location(&h3), fake_mp4(700_000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(terminate(srv, &location(&h3), t).await, StatusCode::NO_CONTENT);
}

/// With 400 000 + 300 000 uploaded today, 800 000 are left: more is refused with a
/// `Retry-After`, what fits is accepted.
async fn the_daily_quota_is_enforced(srv: &TestServer, t: &str, lecture: i64, first: &str) {
    assert_eq!(patch_all(srv, t, first, fake_mp4(400_000)).await, StatusCode::NO_CONTENT);
    let (status, h4, _) = creation(srv, t, lecture, Some(300_000)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(patch_all(srv, t, &location(&h4), fake_mp4(300_000)).await, StatusCode::NO_CONTENT);
    let (status, headers, body) = creation(srv, t, lecture, Some(900_000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "daily_upload_quota");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 24 * 3600, "{retry}");
    let path = format!("/api/v1/lectures/{lecture}/video");
    let (status, text) = raw_put(srv, &path, t, Some(900_000), 0).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("daily_upload_quota"), "{text}");
    let (status, text) = raw_put(srv, &path, t, None, 900_000).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("daily_upload_quota"), "{text}");
    // What fits is still accepted.
    let (status, _, body) = creation(srv, t, lecture, Some(700_000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Concurrent uploads, bytes in progress and the daily quota are limited per user, with a
/// clear 429 for each; other users are not affected.
async fn per_user_upload_limits_are_enforced(b: Backend) {
    let (srv, t, lecture) = limited(b).await;
    let (first, second) = concurrent_uploads_are_limited(&srv, &t, lecture).await;
    assert_eq!(terminate(&srv, &second, &t).await, StatusCode::NO_CONTENT);
    bytes_in_progress_are_limited(&srv, &t, lecture).await;
    the_daily_quota_is_enforced(&srv, &t, lecture, &first).await;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos WHERE lecture_id = $1")
        .bind(lecture)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 3, "refused uploads leave no video");
}

on_both_databases!(
    uploading_videos_a_dead_put_left_behind_are_removed,
    per_user_upload_limits_are_enforced
);

on_both_setups!(
    uploads_that_are_not_video_or_too_big_are_refused_up_front,
    a_cancelled_put_leaves_nothing_behind,
    a_put_dropped_midway_leaves_nothing_behind,
);
