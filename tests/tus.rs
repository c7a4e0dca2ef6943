//! tus 1.0.0 resumable uploads: with tuspy (the tus project's Python client, unchanged),
//! interrupted and resumed, across a server restart, and protocol details; on SQLite +
//! filesystem and PostgreSQL + S3.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::{assert_error, ffmpeg, Backend, TestServer};
use futures::StreamExt;
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

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

async fn stored_source_sha(srv: &TestServer, video_id: i64) -> String {
    let mut body = srv
        .app_state
        .storage
        .get(&lectern::storage::keys::source(video_id), None)
        .await
        .unwrap()
        .body;
    let mut h = Sha256::new();
    while let Some(c) = body.next().await {
        h.update(c.unwrap());
    }
    hex::encode(h.finalize())
}

fn file_sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

async fn head(srv: &TestServer, url: &str, token: &str) -> reqwest::Response {
    srv.http.head(url).bearer_auth(token).header("tus-resumable", "1.0.0").send().await.unwrap()
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
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
    if let Some(v) = done["video_id"].as_i64() {
        assert_eq!(v, video_id);
    }
    assert_eq!(
        stored_source_sha(&srv, video_id).await,
        file_sha(&file),
        "stored source differs from the file"
    );
    // No scratch objects left behind.
    let leftovers = srv
        .app_state
        .storage
        .list(&lectern::storage::ObjectKey::new("uploads").unwrap())
        .await
        .unwrap();
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
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
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

    // 9.5 MiB arrive, then the connection breaks.
    let sent = 9 * MIB + MIB / 2;
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes[..sent]
        .chunks(256 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::other("cable pulled"))))
        .collect();
    let result = srv
        .http
        .patch(&url)
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(result.is_err(), "the request should have failed on the client side");

    // Resume as a tus client does: ask for the offset, send the rest; while the server is still
    // finishing the broken request the upload is locked (423) and the client retries.
    let mut resumed = None;
    for _ in 0..100 {
        let offset: usize = head(&srv, &url, &t).await.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let resp = srv
            .http
            .patch(&url)
            .bearer_auth(&t)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(bytes[offset..].to_vec())
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::LOCKED {
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
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
    assert_eq!(stored_source_sha(&srv, video_id).await, file_sha(&file));
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn the_protocol_is_followed_and_bad_requests_are_refused(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let endpoint = srv.url("/api/v1/uploads");
    let resp = srv.http.request(Method::OPTIONS, &endpoint).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
    let ext = resp.headers()["tus-extension"].to_str().unwrap();
    for e in ["creation", "termination", "expiration"] {
        assert!(ext.contains(e), "{ext}");
    }
    assert!(resp.headers()["tus-max-size"].to_str().unwrap().parse::<u64>().unwrap() > 0);

    let create = |headers: Vec<(&'static str, String)>| {
        let mut req = srv.http.post(&endpoint).bearer_auth(&t);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let meta = format!("lecture_id {}", b64(&lecture.to_string()));
    // No Tus-Resumable: 412 with the supported version.
    let resp = create(vec![("upload-length", "100".into()), ("upload-metadata", meta.clone())])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    let tus = |mut h: Vec<(&'static str, String)>| {
        h.push(("tus-resumable", "1.0.0".into()));
        h
    };
    let resp = create(tus(vec![("upload-length", "100".into())])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "no lecture_id");
    let resp = create(tus(vec![
        ("upload-length", (1u64 << 50).to_string()),
        ("upload-metadata", meta.clone()),
    ]))
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = create(tus(vec![("upload-length", "-5".into()), ("upload-metadata", meta.clone())]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = create(tus(vec![("upload-metadata", meta.clone())])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "neither length nor deferral");
    let stranger = srv.instructor("stranger@example.com").await;
    let resp = srv
        .http
        .post(&endpoint)
        .bearer_auth(&stranger)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100")
        .header("upload-metadata", meta.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "someone else's lecture");

    // Deferred length; wrong offset; wrong content type; someone else's upload.
    let resp =
        create(tus(vec![("upload-defer-length", "1".into()), ("upload-metadata", meta.clone())]))
            .await
            .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let url = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = head(&srv, &url, &t).await;
    assert_eq!(resp.headers()["upload-defer-length"], "1");
    let patch = |offset: &str, ct: &str, body: Vec<u8>, extra: Option<(&'static str, String)>| {
        let mut req = srv
            .http
            .patch(&url)
            .bearer_auth(&t)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset)
            .header("content-type", ct)
            .body(body);
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };
    let mp4_head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41".repeat(4);
    let resp = patch("5", "application/offset+octet-stream", mp4_head.clone(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_error(&resp.json().await.unwrap(), "offset_mismatch");
    let resp = patch("0", "application/json", mp4_head.clone(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = patch("0", "application/offset+octet-stream", mp4_head.clone(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["upload-offset"], mp4_head.len().to_string().as_str());
    assert!(resp.headers().contains_key("upload-expires"));
    let resp = srv
        .http
        .head(&url)
        .bearer_auth(&stranger)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The length arrives with the last PATCH.
    let total = mp4_head.len() * 2;
    let resp = patch(
        &mp4_head.len().to_string(),
        "application/offset+octet-stream",
        mp4_head.clone(),
        Some(("upload-length", total.to_string())),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().contains_key("lectern-video-id"));

    // Termination.
    let resp =
        create(tus(vec![("upload-length", "1000".into()), ("upload-metadata", meta.clone())]))
            .await
            .unwrap();
    let url2 = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = srv
        .http
        .delete(&url2)
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(head(&srv, &url2, &t).await.status(), StatusCode::NOT_FOUND);

    // Not a video: refused at the first bytes, and the upload is gone.
    let resp =
        create(tus(vec![("upload-length", "1000".into()), ("upload-metadata", meta.clone())]))
            .await
            .unwrap();
    let url3 = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = srv
        .http
        .patch(&url3)
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(b"%PDF-1.7\n".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(head(&srv, &url3, &t).await.status(), StatusCode::NOT_FOUND);
    for bad in ["nothex", "../../etc/passwd", "0123456789abcdef0123456789abcdeF"] {
        let resp = head(&srv, &srv.url(&format!("/api/v1/uploads/{bad}")), &t).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

async fn unfinished_uploads_expire(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |c| c.upload_expiry_secs = 1).await;
    let t = srv.instructor("slow@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&t, "Slow").await;
    let resp = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(&t)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100000")
        .header("upload-metadata", format!("lecture_id {}", b64(&lecture.to_string())))
        .header("content-type", "application/offset+octet-stream")
        .body(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41".repeat(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["upload-offset"],
        "320",
        "creation-with-upload stored the first bytes"
    );
    let url = resp.headers()["location"].to_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(head(&srv, &url, &t).await.status(), StatusCode::GONE);
    let removed = lectern::media::tus::expire(&srv.app_state.uploads).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(head(&srv, &url, &t).await.status(), StatusCode::NOT_FOUND);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM videos")
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// Bytes that sniff as MP4 (an `ftyp` box) followed by `len` bytes in all, varied enough that a
/// misplaced chunk changes the hash.
fn fake_mp4(len: usize) -> Vec<u8> {
    let mut out = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41".to_vec();
    let mut x: u32 = 7;
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.push((x >> 16) as u8);
    }
    out.truncate(len);
    out
}

/// `POST /uploads` with a known length; the upload's URL.
async fn create(srv: &TestServer, token: &str, lecture: i64, len: usize) -> String {
    let resp = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", len.to_string())
        .header("upload-metadata", format!("lecture_id {}", b64(&lecture.to_string())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.headers()["location"].to_str().unwrap().to_string()
}

async fn patch(
    srv: &TestServer,
    url: &str,
    token: &str,
    offset: usize,
    body: Vec<u8>,
) -> reqwest::Response {
    srv.http
        .patch(url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The objects under `uploads/` (tus scratch space).
async fn scratch(srv: &TestServer) -> Vec<String> {
    let all = srv
        .app_state
        .storage
        .list(&lectern::storage::ObjectKey::new("uploads").unwrap())
        .await
        .unwrap();
    all.into_iter().map(|o| o.key.to_string()).collect()
}

/// Make the database refuse new jobs, as if the process died at the moment it enqueued one.
async fn refuse_jobs(srv: &TestServer, b: Backend) {
    let pool = srv.app_state.db.pool();
    match b {
        Backend::Sqlite => {
            sqlx::query("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'simulated crash'); END")
                .execute(pool)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            sqlx::query("CREATE FUNCTION refuse_jobs() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'simulated crash'; END $$ LANGUAGE plpgsql")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse_jobs()")
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

async fn allow_jobs(srv: &TestServer, b: Backend) {
    let sql = match b {
        Backend::Sqlite => "DROP TRIGGER refuse_jobs",
        Backend::Postgres => "DROP TRIGGER refuse_jobs ON jobs",
    };
    sqlx::query(sql).execute(srv.app_state.db.pool()).await.unwrap();
}

async fn video_state(srv: &TestServer, video_id: i64) -> (String, Option<i64>, i64) {
    let db = srv.app_state.db.pool();
    let (status, size): (String, Option<i64>) =
        sqlx::query_as("SELECT status, source_size FROM videos WHERE id = $1")
            .bind(video_id)
            .fetch_one(db)
            .await
            .unwrap();
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE video_id = $1")
        .bind(video_id)
        .fetch_one(db)
        .await
        .unwrap();
    (status, size, jobs)
}

fn upload_id(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

async fn upload_row(srv: &TestServer, id: &str) -> (i64, Option<i64>, i64) {
    sqlx::query_as("SELECT video_id, completed_at, upload_offset FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap()
}

async fn sha_of(srv: &TestServer, video_id: i64) -> String {
    stored_source_sha(srv, video_id).await
}

/// The last PATCH stores the source, then the database fails as the job is enqueued (a node
/// dying at that point): the upload must not be left "complete" with no job. Everything it
/// received is kept, and housekeeping finishes it.
async fn a_completion_cut_short_is_finished_by_housekeeping(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let bytes = fake_mp4(9 * MIB + 1000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    let first = 8 * MIB + MIB / 2;
    let resp = patch(&srv, &url, &t, 0, bytes[..first].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    refuse_jobs(&srv, b).await;
    let resp = patch(&srv, &url, &t, first, bytes[first..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let (video_id, completed, offset) = upload_row(&srv, &id).await;
    assert!(
        completed.is_none(),
        "the upload was marked complete though its transcode was never queued"
    );
    assert_eq!(offset as usize, bytes.len(), "every received byte is kept");
    assert_eq!(video_state(&srv, video_id).await, ("uploading".to_string(), None, 0));

    allow_jobs(&srv, b).await;
    lectern::media::housekeeping(&srv.app_state.uploads).await;
    assert_eq!(
        video_state(&srv, video_id).await,
        ("queued".to_string(), Some(bytes.len() as i64), 1)
    );
    let resp = head(&srv, &url, &t).await;
    assert_eq!(resp.headers()["upload-offset"], bytes.len().to_string().as_str());
    assert_eq!(resp.headers()["lectern-video-id"], video_id.to_string().as_str());
    assert_eq!(sha_of(&srv, video_id).await, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(scratch(&srv).await, Vec::<String>::new());
    // A second round changes nothing.
    lectern::media::housekeeping(&srv.app_state.uploads).await;
    assert_eq!(video_state(&srv, video_id).await.2, 1);
}

/// The state an API node killed between marking an upload complete and enqueueing its job left
/// behind (before completion was one transaction): housekeeping queues the job.
async fn a_completed_upload_an_older_crash_left_without_a_job_gets_one(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let bytes = fake_mp4(300_000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    let resp = patch(&srv, &url, &t, 0, bytes.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
    let db = srv.app_state.db.pool();
    sqlx::query("DELETE FROM jobs WHERE video_id = $1").bind(video_id).execute(db).await.unwrap();
    sqlx::query("UPDATE videos SET status = 'uploading', source_size = NULL WHERE id = $1")
        .bind(video_id)
        .execute(db)
        .await
        .unwrap();
    // …and a tail an earlier PATCH stored just before the node died, which no row points to.
    let orphan = lectern::storage::keys::upload_tail(&id, "0123456789abcdef0123456789abcdef");
    srv.app_state
        .storage
        .put(
            &orphan,
            lectern::storage::stream_from_bytes(vec![1u8; 1000]),
            "application/octet-stream",
        )
        .await
        .unwrap();

    lectern::media::housekeeping(&srv.app_state.uploads).await;
    assert_eq!(
        video_state(&srv, video_id).await,
        ("queued".to_string(), Some(bytes.len() as i64), 1)
    );
    assert_eq!(
        scratch(&srv).await,
        Vec::<String>::new(),
        "a finished upload keeps no scratch objects"
    );
    lectern::media::housekeeping(&srv.app_state.uploads).await;
    assert_eq!(video_state(&srv, video_id).await.2, 1, "repair is done once");
}

/// Tails a killed PATCH stored but never recorded, and scratch prefixes of uploads that are
/// gone, are removed; an upload in progress keeps its tail.
async fn scratch_objects_no_upload_points_to_are_removed(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let bytes = fake_mp4(600_000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    assert_eq!(
        patch(&srv, &url, &t, 0, bytes[..200_000].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    let (tail,): (Option<String>,) = sqlx::query_as("SELECT tail_key FROM uploads WHERE id = $1")
        .bind(&id)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    let tail = tail.expect("a tail is stored");
    let storage = &srv.app_state.storage;
    let put = |key: lectern::storage::ObjectKey| async move {
        storage
            .put(
                &key,
                lectern::storage::stream_from_bytes(vec![9u8; 5000]),
                "application/octet-stream",
            )
            .await
            .unwrap();
    };
    let orphan = lectern::storage::keys::upload_tail(&id, "11111111111111111111111111111111");
    put(orphan.clone()).await;
    let stray = lectern::storage::keys::upload_tail(
        "22222222222222222222222222222222",
        "33333333333333333333333333333333",
    );
    put(stray.clone()).await;

    lectern::media::housekeeping(&srv.app_state.uploads).await;
    let left = scratch(&srv).await;
    assert!(
        !left.contains(&stray.to_string()),
        "scratch of an upload that no longer exists: {left:?}"
    );
    assert!(left.contains(&tail), "the tail in use was removed: {left:?}");

    // The upload's own orphan goes with the rest of its scratch space when it completes.
    assert_eq!(
        patch(&srv, &url, &t, 200_000, bytes[200_000..400_000].to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(scratch(&srv).await.contains(&orphan.to_string()));
    let resp = patch(&srv, &url, &t, 400_000, bytes[400_000..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
    assert_eq!(sha_of(&srv, video_id).await, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(scratch(&srv).await, Vec::<String>::new());
}

/// Two PATCHes at the same offset: the one that gets the lock second must see what the first
/// recorded and answer 409, not write over it. The first is played by the test holding the
/// row (as a PATCH recording its progress does) while the second waits for its lock.
async fn a_patch_checks_its_offset_against_the_locked_row(b: Backend, s: StorageKind) {
    let (srv, t, lecture) = setup(b, s).await;
    let bytes = fake_mp4(1000);
    let url = create(&srv, &t, lecture, bytes.len()).await;
    let id = upload_id(&url);
    let db = srv.app_state.db.clone();
    let tail = lectern::storage::keys::upload_tail(&id, "44444444444444444444444444444444");
    srv.app_state
        .storage
        .put(
            &tail,
            lectern::storage::stream_from_bytes(bytes[..320].to_vec()),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE uploads SET upload_offset = 320, tail_key = $2, tail_size = 320 WHERE id = $1",
    )
    .bind(&id)
    .bind(tail.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();

    let second = {
        let (http, url, t, body) =
            (srv.http.clone(), url.clone(), t.clone(), bytes[..320].to_vec());
        tokio::spawn(async move {
            http.patch(&url)
                .bearer_auth(&t)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(body)
                .send()
                .await
                .unwrap()
        })
    };
    // Let the second request read the row and reach the lock.
    match b {
        Backend::Postgres => loop {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        },
        Backend::Sqlite => tokio::time::sleep(Duration::from_millis(1500)).await,
    }
    tx.commit().await.unwrap();
    let resp = second.await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CONFLICT,
        "a PATCH wrote at an offset the upload had moved past"
    );
    assert_error(&resp.json().await.unwrap(), "offset_mismatch");
    assert_eq!(head(&srv, &url, &t).await.headers()["upload-offset"], "320");
    let resp = patch(&srv, &url, &t, 320, bytes[320..].to_vec()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
    assert_eq!(sha_of(&srv, video_id).await, hex::encode(Sha256::digest(&bytes)));
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
    let video_id: i64 = resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap();
    assert_eq!(sha_of(&srv, video_id).await, hex::encode(Sha256::digest(&bytes)));

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
    unfinished_uploads_expire,
    a_completion_cut_short_is_finished_by_housekeeping,
    a_completed_upload_an_older_crash_left_without_a_job_gets_one,
    scratch_objects_no_upload_points_to_are_removed,
    a_patch_checks_its_offset_against_the_locked_row,
    a_stalled_body_is_dropped_and_what_arrived_is_kept,
);
