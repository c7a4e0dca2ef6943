//! tus 1.0.0 resumable uploads: with tuspy (the tus project's Python client, unchanged),
//! interrupted and resumed, across a server restart, stalled, and protocol details; on SQLite +
//! filesystem and PostgreSQL + S3. What housekeeping does with uploads is in `tus_recovery.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::tus::{
    b64, create, creation, fake_mp4, head, location, patch, scratch, sha, stored_source_sha,
    terminate, video_id,
};
use common::{assert_error, ffmpeg, Backend, TestServer};
use futures::StreamExt;
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

/// A real video larger than one multipart part (lossless noise makes big files quickly).
fn big_video(dir: &Path) -> PathBuf {
    let out = dir.join("big.mp4");
    ffmpeg(
        "-f lavfi -i testsrc2=size=640x360:rate=30:duration=1 -f lavfi -i anoisesrc=duration=1 -vf noise=alls=60:allf=t \
         -c:v libx264 -preset ultrafast -qp 0 -pix_fmt yuv420p -c:a aac -shortest",
        &out,
    );
    assert!(
        std::fs::metadata(&out).unwrap().len() > 10 * MIB as u64,
        "test video too small to span parts"
    );
    out
}

fn tuspy(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/tus_upload.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 with tuspy");
    assert!(out.status.success(), "tuspy failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(out.stdout.trim_ascii()).unwrap()
}

fn file_sha(path: &Path) -> String {
    sha(&std::fs::read(path).unwrap())
}

async fn setup(b: Backend, s: StorageKind) -> (TestServer, String, i64) {
    let srv = TestServer::start_with(b, s, |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
    })
    .await;
    let t = srv.instructor("uploader@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&t, "Uploads").await;
    (srv, t, lecture)
}

async fn tuspy_resumes_an_interrupted_upload_and_the_video_gets_transcoded(
    b: Backend,
    s: StorageKind,
) {
    let (srv, t, lecture) = setup(b, s).await;
    let dir = tempfile::tempdir().unwrap();
    let file = big_video(dir.path());
    let size = std::fs::metadata(&file).unwrap().len() as i64;
    let endpoint = srv.url("/api/v1/uploads");
    let (path, lecture_s, chunk) =
        (file.to_str().unwrap(), lecture.to_string(), (3 * MIB).to_string());

    // Two 3 MiB chunks, then the client "dies".
    let first = tuspy(&[&endpoint, &t, path, &lecture_s, &chunk, "--stop-after", "2"]);
    assert_eq!(first["offset"].as_i64(), Some(6 * MIB as i64));
    let url = first["url"].as_str().unwrap().to_string();
    let resp = head(&srv, &url, &t).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["upload-offset"], (6 * MIB).to_string().as_str());
    assert_eq!(resp.headers()["upload-length"], size.to_string().as_str());
    assert_eq!(resp.headers()["cache-control"], "no-store");

    // A new client process picks it up where the server says it stopped.
    let done = tuspy(&[&endpoint, &t, path, &lecture_s, &chunk, "--url", &url]);
    assert_eq!(done["offset"].as_i64(), Some(size));
    let resp = head(&srv, &url, &t).await;
    let video_id = video_id(&resp);
    assert_eq!(done["video_id"].as_i64(), Some(video_id), "the last PATCH names the video");
    assert_eq!(
        stored_source_sha(&srv, video_id).await,
        file_sha(&file),
        "stored source differs from the file"
    );
    // No scratch objects left behind.
    let leftovers = scratch(&srv).await;
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video_id, Duration::from_secs(240)).await;
    assert_eq!(v["status"], "ready", "{v}");
    assert!((v["duration_seconds"].as_f64().unwrap() - 1.0).abs() < 0.15, "{v}");
    worker.kill().await.unwrap();
}

async fn an_upload_survives_a_server_restart(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let dir = tempfile::tempdir().unwrap();
    let file = big_video(dir.path());
    let size = std::fs::metadata(&file).unwrap().len() as i64;
    let (path, lecture_s, chunk) =
        (file.to_str().unwrap(), lecture.to_string(), (5 * MIB).to_string());
    let first =
        tuspy(&[&srv.url("/api/v1/uploads"), &t, path, &lecture_s, &chunk, "--stop-after", "2"]);
    let old_url = first["url"].as_str().unwrap().to_string();
    let id = old_url.rsplit('/').next().unwrap().to_string();

    let srv = srv.restart().await;
    let url = srv.url(&format!("/api/v1/uploads/{id}"));
    let resp = head(&srv, &url, &t).await;
    assert_eq!(resp.headers()["upload-offset"], (10 * MIB).to_string().as_str());
    let done = tuspy(&[&srv.url("/api/v1/uploads"), &t, path, &lecture_s, &chunk, "--url", &url]);
    assert_eq!(done["offset"].as_i64(), Some(size));
    let resp = head(&srv, &url, &t).await;
    let video_id = video_id(&resp);
    assert_eq!(stored_source_sha(&srv, video_id).await, file_sha(&file));
    let (_, v) = srv.get(&format!("/api/v1/videos/{video_id}"), Some(&t)).await;
    assert_eq!(v["status"], "queued");
    assert_eq!(v["source_size"].as_i64(), Some(size));
}

async fn a_patch_cut_off_mid_body_keeps_what_arrived(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let dir = tempfile::tempdir().unwrap();
    let file = big_video(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    let meta = format!("lecture_id {},filename {}", b64(&lecture.to_string()), b64("cut.mp4"));
    let resp = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", bytes.len().to_string())
        .header("upload-metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let url = resp.headers()["location"].to_str().unwrap().to_string();

    // 9.5 MiB are sent; once the server has stored the first 8 MiB part (so it has surely read
    // them: a loopback socket's buffers alone hold megabytes), the connection breaks.
    let sent = 9 * MIB + MIB / 2;
    let chunks = bytes[..sent].chunks(256 * 1024).map(|c| Ok(Bytes::copy_from_slice(c)));
    let (http, watched, token) = (srv.http.clone(), url.clone(), t.clone());
    let cut = async move {
        for _ in 0..600 {
            let resp = http
                .head(&watched)
                .bearer_auth(&token)
                .header("tus-resumable", "1.0.0")
                .send()
                .await
                .unwrap();
            let offset: usize = resp.headers()["upload-offset"].to_str().unwrap().parse().unwrap();
            if offset >= 8 * MIB {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err::<Bytes, _>(std::io::Error::other("cable pulled"))
    };
    let body = futures::stream::iter(chunks.collect::<Vec<_>>()).chain(futures::stream::once(cut));
    let result = srv
        .http
        .patch(&url)
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    assert!(result.is_err(), "the request should have failed on the client side");

    // Resume as a tus client does: ask for the offset, send the rest; while the server is still
    // finishing the broken request the upload is locked (423), and once it has finished the
    // offset asked for may be behind (409): the client asks again.
    let mut resumed = None;
    for _ in 0..100 {
        let offset: usize = head(&srv, &url, &t).await.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let resp = patch(&srv, &url, &t, offset, bytes[offset..].to_vec()).await;
        if matches!(resp.status(), StatusCode::LOCKED | StatusCode::CONFLICT) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        resumed = Some((offset, resp));
        break;
    }
    let (offset, resp) = resumed.expect("the upload stayed locked");
    // The server kept what reached it: at least the full part, at most what was sent.
    assert!(offset >= 8 * MIB && offset <= sent, "kept {offset} of {sent} bytes");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["upload-offset"], bytes.len().to_string().as_str());
    assert_eq!(stored_source_sha(&srv, video_id(&resp)).await, file_sha(&file));
}

/// `POST /uploads` with `headers` (and the test's token).
async fn post_upload(
    srv: &TestServer,
    token: &str,
    headers: &[(&'static str, String)],
) -> reqwest::Response {
    let mut req = srv.http.post(srv.url("/api/v1/uploads")).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// `headers` and `Tus-Resumable: 1.0.0`.
fn tus(headers: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut h = headers.to_vec();
    h.push(("tus-resumable", "1.0.0".into()));
    h
}

fn metadata(lecture: i64) -> (&'static str, String) {
    ("upload-metadata", format!("lecture_id {}", b64(&lecture.to_string())))
}

/// `OPTIONS` names the version, the extensions and the largest upload.
async fn options_describe_the_server(srv: &TestServer) {
    let resp = srv.http.request(Method::OPTIONS, srv.url("/api/v1/uploads")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
    let ext = resp.headers()["tus-extension"].to_str().unwrap();
    for e in ["creation", "termination", "expiration"] {
        assert!(ext.contains(e), "{ext}");
    }
    assert!(resp.headers()["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > 0);
}

/// Creations without the protocol header, a lecture, a sane length, or the right owner.
async fn bad_creations_are_refused(srv: &TestServer, t: &str, stranger: &str, lecture: i64) {
    let meta = metadata(lecture);
    // No Tus-Resumable: 412 with the supported version.
    let resp = post_upload(srv, t, &[("upload-length", "100".into()), meta.clone()]).await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    let resp = post_upload(srv, t, &tus(&[("upload-length", "100".into())])).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "no lecture_id");
    let huge = tus(&[("upload-length", (1u64 << 50).to_string()), meta.clone()]);
    assert_eq!(post_upload(srv, t, &huge).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let negative = tus(&[("upload-length", "-5".into()), meta.clone()]);
    assert_eq!(post_upload(srv, t, &negative).await.status(), StatusCode::BAD_REQUEST);
    let resp = post_upload(srv, t, &tus(std::slice::from_ref(&meta))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "neither length nor deferral");
    let resp = post_upload(srv, stranger, &tus(&[("upload-length", "100".into()), meta])).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "someone else's lecture");
}

/// Deferred length; wrong offset; wrong content type; someone else's upload; the length
/// arriving with the last PATCH.
async fn a_deferred_length_arrives_with_the_last_patch(
    srv: &TestServer,
    t: &str,
    stranger: &str,
    lecture: i64,
) {
    let (status, headers, _) = creation(srv, t, lecture, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let url = location(&headers);
    let resp = head(srv, &url, t).await;
    assert_eq!(resp.headers()["upload-defer-length"], "1");
    let send = |offset: &str, ct: &str, body: Vec<u8>, extra: Option<(&'static str, String)>| {
        let mut req = srv
            .http
            .patch(&url)
            .bearer_auth(t)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header("content-type", ct)
            .body(body);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };
    let mp4_head = fake_mp4(32).repeat(4);
    let octets = "application/offset+octet-stream";
    let resp = send("5", octets, mp4_head.clone(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_error(&resp.json().await.unwrap(), "offset_mismatch");
    let resp = send("0", "application/json", mp4_head.clone(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = send("0", octets, mp4_head.clone(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["upload-offset"], mp4_head.len().to_string().as_str());
    assert!(resp.headers().contains_key("upload-expires"));
    assert_eq!(head(srv, &url, stranger).await.status(), StatusCode::NOT_FOUND);
    // The length arrives with the last PATCH.
    let total = (mp4_head.len() * 2).to_string();
    let offset = mp4_head.len().to_string();
    let resp = send(&offset, octets, mp4_head, Some(("upload-length", total))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().contains_key("lectern-video-id"));
}

/// Termination, a body that is not a video, and ids that are not upload ids.
async fn ended_uploads_are_gone(srv: &TestServer, t: &str, lecture: i64) {
    let url = create(srv, t, lecture, 1000).await;
    assert_eq!(terminate(srv, &url, t).await, StatusCode::NO_CONTENT);
    assert_eq!(head(srv, &url, t).await.status(), StatusCode::NOT_FOUND);

    // Not a video: refused at the first bytes, and the upload is gone.
    let url = create(srv, t, lecture, 1000).await;
    let resp = patch(srv, &url, t, 0, b"%PDF-1.7\n".repeat(100)).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(head(srv, &url, t).await.status(), StatusCode::NOT_FOUND);
    for bad in ["nothex", "../../etc/passwd", "0123456789abcdef0123456789abcdeF"] {
        let resp = head(srv, &srv.url(&format!("/api/v1/uploads/{bad}")), t).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

/// `POST` with `X-HTTP-Method-Override` stands for `PATCH` (and `DELETE`); without it, or with
/// another method, it is a 400 that names the header, and the upload is untouched.
async fn post_overrides_the_method(srv: &TestServer, t: &str, lecture: i64) {
    let url = create(srv, t, lecture, 2000).await;
    let post = |method: Option<&'static str>| {
        let mut req = srv
            .http
            .post(&url)
            .bearer_auth(t)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(fake_mp4(1000));
        if let Some(m) = method {
            req = req.header("x-http-method-override", m);
        }
        req.send()
    };
    for refused in [None, Some("GET")] {
        let resp = post(refused).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{refused:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_override", "{body}");
        assert_eq!(head(srv, &url, t).await.headers()["upload-offset"], "0");
    }
    let resp = post(Some("patch")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["upload-offset"], "1000");
    let resp = srv
        .http
        .post(&url)
        .bearer_auth(t)
        .header("tus-resumable", "1.0.0")
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(head(srv, &url, t).await.status(), StatusCode::NOT_FOUND);
}

async fn the_protocol_is_followed_and_bad_requests_are_refused(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    options_describe_the_server(&srv).await;
    let stranger = srv.instructor("stranger@example.com").await;
    bad_creations_are_refused(&srv, &t, &stranger, lecture).await;
    a_deferred_length_arrives_with_the_last_patch(&srv, &t, &stranger, lecture).await;
    ended_uploads_are_gone(&srv, &t, lecture).await;
    post_overrides_the_method(&srv, &t, lecture).await;
}

/// Send a request head and `sent` bytes of a body declared `declared` bytes long, then go
/// silent with the connection open; returns what the server answered (empty if nothing within
/// `patience`).
async fn stall(srv: &TestServer, head: String, body: &[u8], patience: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = srv.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(patience, stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).to_string()
}

/// A body that stops sending is dropped after the idle timeout; a tus upload keeps every byte
/// that arrived and resumes there.
async fn a_stalled_body_is_dropped_and_what_arrived_is_kept(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |c| c.upload_idle_timeout_secs = 2).await;
    let t = srv.instructor("stalled@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&t, "Stalls").await;
    let bytes = fake_mp4(9 * MIB + 777);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let path = url.trim_start_matches(&srv.base).to_string();
    let addr = srv.base.trim_start_matches("http://");
    let sent = 8 * MIB + 12345;
    let head_lines = format!(
        "PATCH {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {t}\r\ntus-resumable: 1.0.0\r\n\
         upload-offset: 0\r\ncontent-type: application/offset+octet-stream\r\ncontent-length: {}\r\n\r\n",
        bytes.len()
    );
    let answer = stall(&srv, head_lines, &bytes[..sent], Duration::from_secs(60)).await;
    assert!(!answer.is_empty(), "the server kept waiting for a stalled body");
    let resp = head(&srv, &url, &t).await;
    assert_eq!(
        resp.headers()["upload-offset"],
        sent.to_string().as_str(),
        "what arrived before the stall is kept"
    );
    let resp = patch(&srv, &url, &t, sent, bytes[sent..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(stored_source_sha(&srv, video_id(&resp)).await, sha(&bytes));

    // A streamed PUT that stalls is dropped too, and leaves no video behind.
    let (_, _, second) = srv.course_with_lecture(&t, "More").await;
    let put_head = format!(
        "PUT /api/v1/lectures/{second}/video HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {t}\r\ncontent-length: {}\r\n\r\n",
        bytes.len()
    );
    let answer = stall(&srv, put_head, &bytes[..MIB], Duration::from_secs(60)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("upload_idle_timeout"), "{answer}");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos WHERE lecture_id = $1")
        .bind(second)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

on_both_setups!(
    tuspy_resumes_an_interrupted_upload_and_the_video_gets_transcoded,
    an_upload_survives_a_server_restart,
    a_patch_cut_off_mid_body_keeps_what_arrived,
    the_protocol_is_followed_and_bad_requests_are_refused,
    a_stalled_body_is_dropped_and_what_arrived_is_kept,
);
