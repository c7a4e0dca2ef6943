//! The media pipeline end to end: uploads over HTTP, the job queue, worker processes and the
//! ffmpeg-next engine, on SQLite with filesystem storage and on PostgreSQL with S3 (s3s-fs).

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::{assert_decodes, assert_error, clip, ffmpeg, Backend, TestServer};
use futures::StreamExt;
use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(240);

async fn server(b: Backend, s: StorageKind) -> TestServer {
    TestServer::start_with(b, s, |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
    })
    .await
}

/// A course with `n` lectures in one section; returns the instructor token, course and lecture ids.
async fn course(srv: &TestServer, n: usize) -> (String, i64, Vec<i64>) {
    let t = srv.instructor("teacher@example.com").await;
    let (course_id, section_id, first) = srv.course_with_lecture(&t, "Media").await;
    let mut lectures = vec![first];
    for i in 1..n {
        let (_, l) = srv
            .post(
                &format!("/api/v1/sections/{section_id}/lectures"),
                Some(&t),
                json!({"title": format!("L{i}")}),
            )
            .await;
        lectures.push(l["id"].as_i64().unwrap());
    }
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
    let mut worker = srv.spawn_worker();
    for v in videos {
        let v = srv.wait_video(&t, v, WAIT).await;
        assert_eq!(v["status"], "failed", "{v}");
        let reason = v["error"].as_str().unwrap();
        assert!(reason.len() > 10 && !reason.contains("panicked"), "unreadable reason: {reason}");
    }
    let (status, _) = srv.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    worker.kill().await.unwrap();
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
    let objects = srv.app_state.storage.list(&lectern::storage::keys::video(video)).await.unwrap();
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
        let left = srv.app_state.storage.list(&lectern::storage::keys::video(first)).await.unwrap();
        if status == StatusCode::NOT_FOUND && left.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "old video still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.kill().await.unwrap();
}

/// A client that goes away in the middle of a streamed PUT: no video row, no temporary file,
/// no multipart upload left open.
async fn a_cancelled_put_leaves_nothing_behind(b: Backend, s: StorageKind) {
    use tokio::io::AsyncWriteExt;
    let srv = server(b, s).await;
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
    while count().await == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    nothing_left_behind(&srv).await;
}

/// A streamed PUT whose request is cancelled midway — its future dropped, as a server does with
/// a request it gives up on — takes its video row, its temporary file and its S3 multipart
/// upload with it.
async fn a_put_dropped_midway_leaves_nothing_behind(b: Backend, s: StorageKind) {
    let srv = server(b, s).await;
    let (t, _, lectures) = course(&srv, 1).await;
    let caller = lectern::accounts::Caller {
        user_id: me(&srv, &t).await,
        role: lectern::accounts::Role::Instructor,
        session_id: String::new(),
    };
    // 12 MiB arrive, then the body goes quiet for good.
    let chunk = bytes::Bytes::from(mp4ish(1024 * 1024));
    let body: lectern::storage::ByteStream = Box::pin(
        futures::stream::iter((0..12).map(move |_| Ok(chunk.clone())))
            .chain(futures::stream::pending()),
    );
    let st = srv.app_state.uploads.clone();
    let lecture = lectures[0];
    let upload = tokio::spawn(async move {
        let _ = lectern::media::upload_streamed(&st, &caller, lecture, "x.mp4", None, body).await;
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

async fn me(srv: &TestServer, token: &str) -> i64 {
    srv.get("/api/v1/me", Some(token)).await.1["id"].as_i64().unwrap()
}

/// A server that died in the middle of a streamed PUT leaves its video `uploading` for good;
/// housekeeping removes such videos once nothing has touched them for a while, and leaves tus
/// uploads and PUTs in progress alone.
async fn uploading_videos_a_dead_put_left_behind_are_removed(b: Backend) {
    let srv = server(b, StorageKind::Fs).await;
    let (t, _, lectures) = course(&srv, 3).await;
    let user = me(&srv, &t).await;
    let db = srv.app_state.db.pool();
    let long_ago = lectern::db::now() - 3600;
    let insert = |lecture: i64, at: i64| async move {
        sqlx::query_as::<_, (i64,)>(
            "INSERT INTO videos (lecture_id, uploader_id, status, original_filename, created_at, updated_at) \
             VALUES ($1, $2, 'uploading', 'x.mp4', $3, $3) RETURNING id",
        )
        .bind(lecture)
        .bind(user)
        .bind(at)
        .fetch_one(db)
        .await
        .unwrap()
        .0
    };
    let dead = insert(lectures[0], long_ago).await;
    let source = lectern::storage::keys::source(dead);
    srv.app_state
        .storage
        .put(&source, lectern::storage::stream_from_bytes(vec![0u8; 1000]), "video/mp4")
        .await
        .unwrap();
    let live = insert(lectures[1], lectern::db::now()).await;
    // A tus upload whose client paused for a long time is tus expiry's business, not this.
    let resp = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "1000")
        .header(
            "upload-metadata",
            format!(
                "lecture_id {}",
                base64::engine::general_purpose::STANDARD.encode(lectures[2].to_string())
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    sqlx::query("UPDATE videos SET created_at = $1, updated_at = $1 WHERE lecture_id = $2")
        .bind(long_ago)
        .bind(lectures[2])
        .execute(db)
        .await
        .unwrap();

    lectern::media::housekeeping(&srv.app_state.uploads).await;
    let left: Vec<(i64, i64)> = sqlx::query_as("SELECT id, lecture_id FROM videos ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap();
    let lectures_left: Vec<i64> = left.iter().map(|r| r.1).collect();
    assert_eq!(lectures_left, vec![lectures[1], lectures[2]], "{left:?}");
    assert!(left.iter().any(|r| r.0 == live));
    assert!(srv
        .app_state
        .storage
        .list(&lectern::storage::keys::video(dead))
        .await
        .unwrap()
        .is_empty());
}

/// tus creation on `lecture` with `length` bytes (or a deferred length): status, JSON body and
/// headers.
async fn tus_create(
    srv: &TestServer,
    token: &str,
    lecture: i64,
    length: Option<usize>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header(
            "upload-metadata",
            format!(
                "lecture_id {}",
                base64::engine::general_purpose::STANDARD.encode(lecture.to_string())
            ),
        );
    req = match length {
        Some(n) => req.header("upload-length", n.to_string()),
        None => req.header("upload-defer-length", "1"),
    };
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn tus_patch_all(srv: &TestServer, token: &str, url: &str, body: Vec<u8>) -> StatusCode {
    srv.http
        .patch(url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

fn mp4ish(len: usize) -> Vec<u8> {
    let mut v = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41".to_vec();
    v.resize(len, 5);
    v
}

/// Concurrent uploads, bytes in progress and the daily quota are limited per user, with a
/// clear 429 for each; other users are not affected.
async fn per_user_upload_limits_are_enforced(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.upload_max_concurrent = 2;
        c.upload_max_bytes_in_progress = 1_000_000;
        c.upload_daily_quota_bytes = 1_500_000;
    })
    .await;
    let (t, _, lectures) = course(&srv, 1).await;
    let lecture = lectures[0];
    let location = |h: &reqwest::header::HeaderMap| h["location"].to_str().unwrap().to_string();

    // Concurrent uploads.
    let (status, h1, _) = tus_create(&srv, &t, lecture, Some(400_000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, h2, _) = tus_create(&srv, &t, lecture, Some(400_000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = tus_create(&srv, &t, lecture, Some(100)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "too_many_uploads");
    let path = format!("/api/v1/lectures/{lecture}/video");
    let (status, text) = raw_put(&srv, &path, &t, None, 100_000).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("too_many_uploads"), "{text}");
    let other = srv.instructor("other@example.com").await;
    let (_, _, other_lecture) = srv.course_with_lecture(&other, "Theirs").await;
    let (status, _, _) = tus_create(&srv, &other, other_lecture, Some(900_000)).await;
    assert_eq!(status, StatusCode::CREATED, "limits are per user");

    // Bytes in progress: 400 000 held by the first upload.
    let resp = srv
        .http
        .delete(location(&h2))
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _, body) = tus_create(&srv, &t, lecture, Some(700_000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "upload_bytes_in_progress");
    let (status, text) = raw_put(&srv, &path, &t, Some(700_000), 0).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("upload_bytes_in_progress"), "{text}");
    // A deferred length is held to what is left while its bytes arrive.
    let (status, h3, _) = tus_create(&srv, &t, lecture, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let status = tus_patch_all(&srv, &t, &location(&h3), mp4ish(700_000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let resp = srv
        .http
        .delete(location(&h3))
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // The daily quota: 400 000 + 300 000 uploaded, 800 000 left for today.
    assert_eq!(
        tus_patch_all(&srv, &t, &location(&h1), mp4ish(400_000)).await,
        StatusCode::NO_CONTENT
    );
    let (status, h4, _) = tus_create(&srv, &t, lecture, Some(300_000)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        tus_patch_all(&srv, &t, &location(&h4), mp4ish(300_000)).await,
        StatusCode::NO_CONTENT
    );
    let (status, headers, body) = tus_create(&srv, &t, lecture, Some(900_000)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, "daily_upload_quota");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 24 * 3600, "{retry}");
    let (status, text) = raw_put(&srv, &path, &t, Some(900_000), 0).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("daily_upload_quota"), "{text}");
    let (status, text) = raw_put(&srv, &path, &t, None, 900_000).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("daily_upload_quota"), "{text}");
    // What fits is still accepted.
    let (status, _, body) = tus_create(&srv, &t, lecture, Some(700_000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos WHERE lecture_id = $1")
        .bind(lecture)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 3, "refused uploads leave no video");
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

on_both_databases!(
    uploading_videos_a_dead_put_left_behind_are_removed,
    per_user_upload_limits_are_enforced,
    a_database_failure_is_not_reported_as_a_missing_video,
);

on_both_setups!(
    every_kind_of_source_becomes_a_playable_ladder,
    bad_sources_fail_with_a_reason_and_the_api_stays_up,
    uploads_that_are_not_video_or_too_big_are_refused_up_front,
    a_killed_worker_is_taken_over_and_one_output_set_is_published,
    a_new_upload_replaces_the_old_video_when_ready,
    a_cancelled_put_leaves_nothing_behind,
    a_put_dropped_midway_leaves_nothing_behind,
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
