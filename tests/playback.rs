//! Playback over HTTP: entitlement, tokens, the segment/range server, AES-128 CDN-safe mode,
//! and a real player (the ffmpeg CLI) reading from the server; on SQLite + filesystem and
//! PostgreSQL + S3.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{assert_error, clip, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const KEY_SECRET: &str = "playback-test-secret-playback-test-secret";

/// A published course with a paid lecture and a free preview, both with ready videos.
struct Fixture {
    srv: TestServer,
    teacher: String,
    enrolled: String,
    outsider: String,
    course_id: i64,
    paid: i64,
    preview: i64,
    empty: i64,
    video: i64,
}

async fn fixture(b: Backend, s: StorageKind, encrypted: bool) -> Fixture {
    fixture_with(b, s, encrypted, lectern::config::Config::default().hls_cache_bytes).await
}

/// [`fixture`] with an origin shield of `cache_bytes` (0: every object read from the store).
async fn fixture_with(b: Backend, s: StorageKind, encrypted: bool, cache_bytes: u64) -> Fixture {
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
    let (_, p) = srv
        .post(
            &format!("/api/v1/sections/{section_id}/lectures"),
            Some(&teacher),
            json!({"title": "Free", "is_preview": true}),
        )
        .await;
    let preview = p["id"].as_i64().unwrap();
    let (_, e) = srv
        .post(
            &format!("/api/v1/sections/{section_id}/lectures"),
            Some(&teacher),
            json!({"title": "Soon"}),
        )
        .await;
    let empty = e["id"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let video =
        srv.put_video(&teacher, paid, &clip(dir.path(), "paid.mp4", 640, 360, 6.0, true)).await;
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
    let (_, me) = srv.get("/api/v1/me", Some(&enrolled)).await;
    lectern::learning::enroll(
        srv.app_state.db.pool(),
        me["id"].as_i64().unwrap(),
        course_id,
        "test",
    )
    .await
    .unwrap();
    Fixture { srv, teacher, enrolled, outsider, course_id, paid, preview, empty, video }
}

async fn playback(f: &Fixture, lecture: i64, token: Option<&str>) -> (StatusCode, Value) {
    f.srv.post(&format!("/api/v1/lectures/{lecture}/playback"), token, json!({})).await
}

async fn only_entitled_viewers_get_a_playback_session(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let (status, body) = playback(&f, f.paid, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = playback(&f, f.paid, Some(&f.outsider)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "not_enrolled");
    for who in [&f.enrolled, &f.teacher] {
        let (status, session) = playback(&f, f.paid, Some(who)).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        assert_eq!(session["video_id"].as_i64(), Some(f.video));
        let token = session["token"].as_str().unwrap();
        assert!(session["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/hls/{}/master.m3u8?token={token}", f.video)));
        assert!(session["poster_url"].as_str().unwrap().contains("poster.jpg?token="));
        let exp =
            chrono::DateTime::parse_from_rfc3339(session["expires_at"].as_str().unwrap()).unwrap();
        let left = exp.timestamp() - chrono::Utc::now().timestamp();
        assert!((7000..=7200).contains(&left), "default lifetime is 2 h, got {left} s");
    }
    // Free previews: anyone, signed in or not.
    let (status, _) = playback(&f, f.preview, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = playback(&f, f.preview, Some(&f.outsider)).await;
    assert_eq!(status, StatusCode::OK);
    // No video yet: 409. Unknown lecture: 404.
    let (status, body) = playback(&f, f.empty, Some(&f.teacher)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "video_not_ready");
    let (status, _) = playback(&f, 99_999, Some(&f.enrolled)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The course page knows who is enrolled.
    let (_, page) = f.srv.get(&format!("/api/v1/courses/{}", f.course_id), Some(&f.enrolled)).await;
    assert_eq!(
        (page["is_enrolled"].as_bool(), page["enrollment_count"].as_i64()),
        (Some(true), Some(1))
    );
    // Revoking the enrollment (a refund) ends it at once.
    let (_, me) = f.srv.get("/api/v1/me", Some(&f.enrolled)).await;
    lectern::learning::revoke(f.srv.app_state.db.pool(), me["id"].as_i64().unwrap(), f.course_id)
        .await
        .unwrap();
    let (status, _) = playback(&f, f.paid, Some(&f.enrolled)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn forge(claims: Value, alg: jsonwebtoken::Algorithm, kid: &str, secret: &str) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn get(f: &Fixture, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = f.srv.http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn the_segment_server_plays_only_with_a_valid_token(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let (_, session) = playback(&f, f.paid, Some(&f.enrolled)).await;
    let url = session["url"].as_str().unwrap().to_string();
    let token = session["token"].as_str().unwrap().to_string();
    let base = f.srv.url(&format!("/hls/{}", f.video));

    let resp = get(&f, &url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let master = resp.text().await.unwrap();
    let variants: Vec<&str> =
        master.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(!variants.is_empty());
    assert!(variants.iter().all(|v| v.ends_with(&format!("?token={token}"))), "{master}");

    let media_url = format!("{base}/{}", variants[0]);
    let media = get(&f, &media_url, &[]).await.text().await.unwrap();
    assert!(
        media.contains("#EXT-X-KEY:METHOD=AES-128")
            && media.contains(&format!("key?token={token}")),
        "{media}"
    );
    assert!(media.contains("#EXT-X-ENDLIST") && media.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    let rendition = variants[0].split('/').next().unwrap();
    let seg = media.lines().find(|l| l.ends_with(".ts")).unwrap().to_string();
    assert!(!seg.contains("token"), "encrypted segments are public: {seg}");

    // Segments: public and immutable, fit for a CDN, and encrypted (not plain MPEG-TS).
    let seg_url = format!("{base}/{rendition}/{seg}");
    let resp = get(&f, &seg_url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "video/mp2t");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=31536000, immutable");
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.len() % 16 == 0 && bytes[0] != 0x47, "segment is not encrypted");
    // The key: token-gated, never cached.
    let key_url = format!("{base}/key?token={token}");
    let resp = get(&f, &key_url, &[]).await;
    assert_eq!(
        (resp.status(), resp.headers()["cache-control"].to_str().unwrap()),
        (StatusCode::OK, "private, no-store")
    );
    assert_eq!(resp.bytes().await.unwrap().len(), 16);

    // Refusals: no token, tampered, wrong video, expired, alg none, unknown key, access token.
    let now = chrono::Utc::now().timestamp();
    let claims = |vid: i64, exp: i64| json!({"sub": "2", "vid": vid, "typ": "playback", "iat": now - 10, "exp": exp});
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<(String, StatusCode)> = vec![
        (String::new(), StatusCode::UNAUTHORIZED),
        (tampered, StatusCode::UNAUTHORIZED),
        (
            forge(
                claims(f.video + 1000, now + 600),
                jsonwebtoken::Algorithm::HS256,
                "test",
                KEY_SECRET,
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            forge(claims(f.video, now - 5), jsonwebtoken::Algorithm::HS256, "test", KEY_SECRET),
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "test"})),
                b64(&claims(f.video, now + 600))
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            forge(claims(f.video, now + 600), jsonwebtoken::Algorithm::HS512, "test", KEY_SECRET),
            StatusCode::UNAUTHORIZED,
        ),
        (
            forge(claims(f.video, now + 600), jsonwebtoken::Algorithm::HS256, "other", KEY_SECRET),
            StatusCode::UNAUTHORIZED,
        ),
        (
            forge(
                claims(f.video, now + 600),
                jsonwebtoken::Algorithm::HS256,
                "test",
                "a-different-secret-of-enough-length!!",
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (f.enrolled.clone(), StatusCode::UNAUTHORIZED),
    ];
    for (bad, want) in cases {
        for path in ["master.m3u8", &format!("{rendition}/index.m3u8"), "key", "poster.jpg"] {
            let q = if bad.is_empty() { String::new() } else { format!("?token={bad}") };
            let resp = get(&f, &format!("{base}/{path}{q}"), &[]).await;
            assert_eq!(resp.status(), want, "{path} with {bad:.40}");
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"]["code"].is_string(), "{body}");
        }
    }
    // A forged token is accepted only when made right, proving the refusals above are about
    // the one thing each changed.
    let good =
        forge(claims(f.video, now + 600), jsonwebtoken::Algorithm::HS256, "test", KEY_SECRET);
    assert_eq!(
        get(&f, &format!("{base}/master.m3u8?token={good}"), &[]).await.status(),
        StatusCode::OK
    );

    // Paths are checked before they become keys.
    for (path, want) in [
        ("..%2f..%2fsource", StatusCode::BAD_REQUEST),
        ("source", StatusCode::NOT_FOUND),
        ("9999p/index.m3u8", StatusCode::NOT_FOUND),
        ("720p/seg_99999.ts", StatusCode::NOT_FOUND),
        ("720p/x.exe", StatusCode::NOT_FOUND),
    ] {
        let resp = get(&f, &format!("{base}/{path}?token={token}"), &[]).await;
        assert_eq!(resp.status(), want, "{path}");
    }
    let resp = get(&f, &f.srv.url(&format!("/hls/abc/master.m3u8?token={token}")), &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // The thumbnail track points at the sprite with the token.
    let vtt =
        get(&f, &format!("{base}/thumbnails.vtt?token={token}"), &[]).await.text().await.unwrap();
    assert!(
        vtt.starts_with("WEBVTT") && vtt.contains(&format!("sprite.jpg?token={token}#xywh=")),
        "{vtt}"
    );

    // A real client: the ffmpeg CLI reads the master URL and decodes every frame.
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", &url, "-map", "0", "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn objects_are_served_with_full_range_semantics(b: Backend, s: StorageKind) {
    range_semantics(fixture(b, s, true).await).await
}

/// The same, with every object streamed from the store instead of the in-memory cache.
async fn objects_streamed_from_the_store_have_full_range_semantics(b: Backend, s: StorageKind) {
    range_semantics(fixture_with(b, s, true, 0).await).await
}

async fn range_semantics(f: Fixture) {
    let (_, session) = playback(&f, f.paid, Some(&f.enrolled)).await;
    let token = session["token"].as_str().unwrap().to_string();
    let base = f.srv.url(&format!("/hls/{}", f.video));
    let master =
        get(&f, &format!("{base}/master.m3u8?token={token}"), &[]).await.text().await.unwrap();
    let rendition = master
        .lines()
        .find(|l| l.contains("index.m3u8"))
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let seg_url = format!("{base}/{rendition}/seg_00000.ts");
    let full = get(&f, &seg_url, &[]).await;
    let etag = full.headers()["etag"].to_str().unwrap().to_string();
    let modified = full.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let whole = full.bytes().await.unwrap();
    let len = whole.len();

    let resp = get(&f, &seg_url, &[("range", "bytes=0-99")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], format!("bytes 0-99/{len}").as_str());
    assert_eq!(resp.headers()["content-length"], "100");
    assert_eq!(resp.bytes().await.unwrap(), whole.slice(0..100));
    let resp = get(&f, &seg_url, &[("range", "bytes=-64")]).await;
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes {}-{}/{len}", len - 64, len - 1).as_str()
    );
    assert_eq!(resp.bytes().await.unwrap(), whole.slice(len - 64..));
    let resp = get(&f, &seg_url, &[("range", &format!("bytes={}-", len - 10))]).await;
    assert_eq!(resp.bytes().await.unwrap(), whole.slice(len - 10..));
    let resp = get(&f, &seg_url, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{len}").as_str());
    // Malformed ranges are ignored.
    for bad in ["bytes=abc", "bytes=9-3", "pages=1-2"] {
        let resp = get(&f, &seg_url, &[("range", bad)]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{bad}");
    }
    // If-Range: a stale validator gets the whole object.
    let resp = get(&f, &seg_url, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let resp = get(&f, &seg_url, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().len(), len);
    // Conditional GETs.
    assert_eq!(
        get(&f, &seg_url, &[("if-none-match", &etag)]).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(&f, &seg_url, &[("if-modified-since", &modified)]).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(get(&f, &seg_url, &[("if-none-match", "\"nope\"")]).await.status(), StatusCode::OK);
    // HEAD: the headers of a GET, no body.
    let resp = f.srv.http.request(Method::HEAD, &seg_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], len.to_string().as_str());
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = f
        .srv
        .http
        .request(Method::HEAD, format!("{base}/master.m3u8?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Ranges on playlists and the poster too.
    let resp =
        get(&f, &format!("{base}/master.m3u8?token={token}"), &[("range", "bytes=0-6")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.text().await.unwrap(), "#EXTM3U");
    let resp =
        get(&f, &format!("{base}/poster.jpg?token={token}"), &[("range", "bytes=0-1")]).await;
    assert_eq!(
        (resp.status(), resp.headers()["content-type"].to_str().unwrap()),
        (StatusCode::PARTIAL_CONTENT, "image/jpeg")
    );
    assert_eq!(&resp.bytes().await.unwrap()[..], &[0xff, 0xd8]);
    // Browser players on other origins may read ranges.
    let resp =
        get(&f, &seg_url, &[("origin", "https://school.example"), ("range", "bytes=0-1")]).await;
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("content-range"));
}

async fn unencrypted_videos_gate_segments_by_token(b: Backend, s: StorageKind) {
    let f = fixture(b, s, false).await;
    let (_, session) = playback(&f, f.preview, None).await;
    let token = session["token"].as_str().unwrap().to_string();
    let vid = session["video_id"].as_i64().unwrap();
    let base = f.srv.url(&format!("/hls/{vid}"));
    let master = get(&f, session["url"].as_str().unwrap(), &[]).await.text().await.unwrap();
    let variant = master.lines().find(|l| l.contains("index.m3u8")).unwrap().to_string();
    let media = get(&f, &format!("{base}/{variant}"), &[]).await.text().await.unwrap();
    assert!(!media.contains("EXT-X-KEY"), "{media}");
    let seg = media.lines().find(|l| l.contains(".ts")).unwrap().to_string();
    assert!(seg.ends_with(&format!("?token={token}")), "{seg}");
    let rendition = variant.split('/').next().unwrap();
    let seg_path = seg.split('?').next().unwrap();
    let resp = get(&f, &format!("{base}/{rendition}/{seg_path}"), &[]).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = get(&f, &format!("{base}/{rendition}/{seg}"), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["cache-control"].to_str().unwrap().starts_with("private"));
    assert_eq!(resp.bytes().await.unwrap()[0], 0x47, "plain MPEG-TS");
    let resp = get(&f, &format!("{base}/key?token={token}"), &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Play the lecture in headless Chromium with `mode` (`hlsjs` or `reactplayer`).
async fn play_in_browser(url: &str, mode: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let out = tokio::process::Command::new("node")
        .args([script, mode, url, "4"])
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "play.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("play.mjs said: {stdout}"))
}

async fn browsers_play_it_with_hls_js_and_react_player(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let (_, session) = playback(&f, f.paid, Some(&f.enrolled)).await;
    let url = session["url"].as_str().unwrap();
    for mode in ["hlsjs", "reactplayer"] {
        let result = play_in_browser(url, mode).await;
        assert_eq!(result["ok"], true, "{mode}: {result}");
        assert!(result["currentTime"].as_f64().unwrap() >= 4.0, "{mode}: {result}");
        let events = result["events"].to_string();
        assert!(!events.contains("fatal"), "{mode}: {result}");
    }
}

/// nginx with `proxy_cache` in front of Lectern, standing in for a CDN. Returns its base URL.
async fn cdn_in_front_of(
    srv: &TestServer,
    dir: &std::path::Path,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let origin = srv.base.trim_start_matches("http://");
    let d = dir.display();
    let conf = format!(
        "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{}}\n\
         http {{ access_log off; client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3; \
         uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;\n\
           proxy_cache_path {d}/cache levels=1:2 keys_zone=hls:10m max_size=1g inactive=1h use_temp_path=off;\n\
           server {{ listen 127.0.0.1:{port};\n\
             location / {{ proxy_pass http://{origin}; proxy_cache hls; proxy_cache_key $request_uri;\n\
               add_header X-Cache-Status $upstream_cache_status always; }} }} }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = tokio::process::Command::new("nginx")
        .args(["-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nginx must be installed");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

async fn a_caching_proxy_caches_segments_but_never_playlists_or_keys(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut nginx, cdn) = cdn_in_front_of(&f.srv, dir.path()).await;
    let (_, session) = playback(&f, f.paid, Some(&f.enrolled)).await;
    let token = session["token"].as_str().unwrap();
    let base = format!("{cdn}/hls/{}", f.video);
    let master =
        get(&f, &format!("{base}/master.m3u8?token={token}"), &[]).await.text().await.unwrap();
    let variant = master.lines().find(|l| l.contains("index.m3u8")).unwrap().to_string();
    let rendition = variant.split('/').next().unwrap();
    let status_of = |r: &reqwest::Response| {
        r.headers().get("x-cache-status").map(|v| v.to_str().unwrap().to_string())
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        for path in
            [format!("master.m3u8?token={token}"), variant.clone(), format!("key?token={token}")]
        {
            let r = get(&f, &format!("{base}/{path}"), &[]).await;
            assert_eq!(r.status(), StatusCode::OK);
            seen.push((path.clone(), status_of(&r)));
        }
    }
    assert!(
        seen.iter().all(|(_, s)| s.as_deref() != Some("HIT")),
        "a playlist or the key was served from cache: {seen:?}"
    );
    let seg = format!("{base}/{rendition}/seg_00000.ts");
    let first = get(&f, &seg, &[]).await;
    assert_eq!(status_of(&first).as_deref(), Some("MISS"));
    let body1 = first.bytes().await.unwrap();
    let second = get(&f, &seg, &[]).await;
    assert_eq!(status_of(&second).as_deref(), Some("HIT"), "segments are cacheable");
    assert_eq!(second.bytes().await.unwrap(), body1);
    // Without a token the cached segment is still useless: the key stays gated.
    assert_eq!(get(&f, &format!("{base}/key"), &[]).await.status(), StatusCode::UNAUTHORIZED);
    // SIGTERM lets the master stop its workers too.
    let pid = nginx.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    nginx.wait().await.unwrap();
}

async fn the_origin_shield_reads_each_published_object_once(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let (_, session) = playback(&f, f.paid, Some(&f.enrolled)).await;
    let token = session["token"].as_str().unwrap().to_string();
    let base = f.srv.url(&format!("/hls/{}", f.video));
    let master =
        get(&f, &format!("{base}/master.m3u8?token={token}"), &[]).await.text().await.unwrap();
    let rendition = master
        .lines()
        .find(|l| l.contains("index.m3u8"))
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let seg_url = format!("{base}/{rendition}/seg_00001.ts");
    let shield = &f.srv.app_state.playback.objects;

    // Many viewers starting at once: one read of the store between them.
    let before = shield.loads();
    let answers = futures::future::join_all((0..20).map(|_| get(&f, &seg_url, &[]))).await;
    let mut bodies = Vec::new();
    for resp in answers {
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push(resp.bytes().await.unwrap());
    }
    assert_eq!(shield.loads() - before, 1, "one store read for 20 concurrent GETs");
    assert!(bodies.windows(2).all(|w| w[0] == w[1]) && !bodies[0].is_empty());

    // Later GETs and ranges come from memory: even with the stored copy gone they are answered.
    let ready =
        f.srv.app_state.playback.ready_video(&f.srv.app_state.db, f.video).await.unwrap().unwrap();
    f.srv
        .app_state
        .storage
        .delete(&ready.prefix.join(&format!("{rendition}/seg_00001.ts")).unwrap())
        .await
        .unwrap();
    let resp = get(&f, &seg_url, &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), bodies[0]);
    let resp = get(&f, &seg_url, &[("range", "bytes=100-4195")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap(), bodies[0].slice(100..4196));
    assert_eq!(shield.loads() - before, 1);
    // Playlists too: the media playlist is read once, however many sessions ask.
    let before = shield.loads();
    for _ in 0..5 {
        let resp = get(&f, &format!("{base}/{rendition}/index.m3u8?token={token}"), &[]).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert!(shield.loads() - before <= 1);
}

on_both_setups!(
    the_origin_shield_reads_each_published_object_once,
    objects_streamed_from_the_store_have_full_range_semantics,
    browsers_play_it_with_hls_js_and_react_player,
    a_caching_proxy_caches_segments_but_never_playlists_or_keys,
    only_entitled_viewers_get_a_playback_session,
    the_segment_server_plays_only_with_a_valid_token,
    objects_are_served_with_full_range_semantics,
    unencrypted_videos_gate_segments_by_token,
);
