//! tus 1.0.0 requests as a client sends them, and what an upload left in storage.

use futures::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::TestServer;

/// A tus metadata value: base64 of `s`.
pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Bytes that sniff as MP4 (an `ftyp` box) followed by `len` bytes in all, varied enough that a
/// misplaced chunk changes the hash.
pub fn fake_mp4(len: usize) -> Vec<u8> {
    let mut out = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41".to_vec();
    let mut x: u32 = 7;
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.push((x >> 16) as u8);
    }
    out.truncate(len);
    out
}

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `HEAD` of an upload.
pub async fn head(srv: &TestServer, url: &str, token: &str) -> reqwest::Response {
    srv.http.head(url).bearer_auth(token).header("tus-resumable", "1.0.0").send().await.unwrap()
}

/// tus creation on `lecture` with `length` bytes (or a deferred length): status, headers and
/// JSON body (`Null` when empty).
pub async fn creation(
    srv: &TestServer,
    token: &str,
    lecture: i64,
    length: Option<usize>,
) -> (StatusCode, HeaderMap, Value) {
    let req = srv
        .http
        .post(srv.url("/api/v1/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", format!("lecture_id {}", b64(&lecture.to_string())));
    let req = match length {
        Some(n) => req.header("upload-length", n.to_string()),
        None => req.header("upload-defer-length", "1"),
    };
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The `Location` a creation answered.
pub fn location(headers: &HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_string()
}

/// `POST /uploads` with a known length; the upload's URL.
pub async fn create(srv: &TestServer, token: &str, lecture: i64, len: usize) -> String {
    let (status, headers, body) = creation(srv, token, lecture, Some(len)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    location(&headers)
}

/// `PATCH` `body` at `offset`.
pub async fn patch(
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

/// `DELETE` (termination) of an upload: the status.
pub async fn terminate(srv: &TestServer, url: &str, token: &str) -> StatusCode {
    let resp = srv
        .http
        .delete(url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    resp.status()
}

/// The video id a response names in `Lectern-Video-Id`.
pub fn video_id(resp: &reqwest::Response) -> i64 {
    resp.headers()["lectern-video-id"].to_str().unwrap().parse().unwrap()
}

/// The last path segment of an upload URL.
pub fn upload_id(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// SHA-256 of the source a video's upload stored.
pub async fn stored_source_sha(srv: &TestServer, video_id: i64) -> String {
    let mut body = srv
        .app_state
        .storage
        .get(&lectern::storage::keys::source(lectern::types::VideoId::new(video_id)), None)
        .await
        .unwrap()
        .body;
    let mut h = Sha256::new();
    while let Some(c) = body.next().await {
        h.update(c.unwrap());
    }
    hex::encode(h.finalize())
}

/// The objects under `uploads/` (tus scratch space).
pub async fn scratch(srv: &TestServer) -> Vec<String> {
    let all = srv
        .app_state
        .storage
        .list(&lectern::storage::ObjectKey::new("uploads").unwrap())
        .await
        .unwrap();
    all.into_iter().map(|o| o.key.to_string()).collect()
}
