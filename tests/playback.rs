//! Playback over HTTP: entitlement, tokens, the segment/range server, AES-128 CDN-safe mode,
//! and a real player (the ffmpeg CLI) reading from the server; on SQLite + filesystem and
//! PostgreSQL + S3. Browsers, a CDN and the origin shield are in `playback_delivery.rs`.

mod common;

use base64::Engine;
use common::playback::{
    fixture, fixture_with, forge, get, open_paid_lecture, playback, Fixture, Opened, KEY_SECRET,
};
use common::{assert_error, Backend};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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
    lectern::learning::revoke(
        f.srv.app_state.db.pool(),
        lectern::types::UserId::new(me["id"].as_i64().unwrap()),
        lectern::types::CourseId::new(f.course_id),
    )
    .await
    .unwrap();
    let (status, _) = playback(&f, f.paid, Some(&f.enrolled)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
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

    bad_tokens_are_refused(&f, &base, rendition, &token).await;

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

/// Every token that is not exactly right is refused on every token-gated object: none,
/// tampered, another video's, expired, `alg: none`, another algorithm, an unknown key id, the
/// wrong secret, an access token. The same forgery done right is accepted.
async fn bad_tokens_are_refused(f: &Fixture, base: &str, rendition: &str, token: &str) {
    // Refusals: no token, tampered, wrong video, expired, alg none, unknown key, access token.
    let now = chrono::Utc::now().timestamp();
    let claims = |vid: i64, exp: i64| json!({"sub": "2", "vid": vid, "typ": "playback", "iat": now - 10, "exp": exp});
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let mut tampered = token.to_string();
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
            let resp = get(f, &format!("{base}/{path}{q}"), &[]).await;
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
        get(f, &format!("{base}/master.m3u8?token={good}"), &[]).await.status(),
        StatusCode::OK
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
    let Opened { token, base, rendition } = open_paid_lecture(&f).await;
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
    conditional_and_head_requests(&f, &base, &seg_url, &token, (&etag, &modified, len)).await;
}

/// Conditional GETs and HEAD on a segment, ranges on a playlist and the poster, and range
/// reads from other origins. `seen` is the segment's ETag, Last-Modified and length.
async fn conditional_and_head_requests(
    f: &Fixture,
    base: &str,
    seg_url: &str,
    token: &str,
    seen: (&str, &str, usize),
) {
    let (etag, modified, len) = seen;
    // Conditional GETs.
    assert_eq!(
        get(f, seg_url, &[("if-none-match", etag)]).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get(f, seg_url, &[("if-modified-since", modified)]).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(get(f, seg_url, &[("if-none-match", "\"nope\"")]).await.status(), StatusCode::OK);
    // HEAD: the headers of a GET, no body.
    let resp = f.srv.http.request(Method::HEAD, seg_url).send().await.unwrap();
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
        get(f, &format!("{base}/master.m3u8?token={token}"), &[("range", "bytes=0-6")]).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.text().await.unwrap(), "#EXTM3U");
    let resp = get(f, &format!("{base}/poster.jpg?token={token}"), &[("range", "bytes=0-1")]).await;
    assert_eq!(
        (resp.status(), resp.headers()["content-type"].to_str().unwrap()),
        (StatusCode::PARTIAL_CONTENT, "image/jpeg")
    );
    assert_eq!(&resp.bytes().await.unwrap()[..], &[0xff, 0xd8]);
    // Browser players on other origins may read ranges.
    let resp =
        get(f, seg_url, &[("origin", "https://school.example"), ("range", "bytes=0-1")]).await;
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

on_both_setups!(
    objects_streamed_from_the_store_have_full_range_semantics,
    only_entitled_viewers_get_a_playback_session,
    the_segment_server_plays_only_with_a_valid_token,
    objects_are_served_with_full_range_semantics,
    unencrypted_videos_gate_segments_by_token,
);
