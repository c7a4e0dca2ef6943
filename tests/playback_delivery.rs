//! Playback delivery: real players (hls.js and react-player in headless Chromium), a caching
//! proxy standing in for a CDN, and the origin shield in front of the store; on SQLite +
//! filesystem and PostgreSQL + S3.

mod common;

use std::time::Duration;

use common::playback::{fixture, get, open_paid_lecture, playback, Opened};
use common::{Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::StatusCode;

async fn browsers_play_it_with_hls_js_and_react_player(b: Backend, s: StorageKind) {
    let f = fixture(b, s, true).await;
    let (_, session) = playback(&f, f.paid, Some(&f.enrolled)).await;
    let url = session["url"].as_str().unwrap();
    for mode in ["hlsjs", "reactplayer"] {
        let result = common::browser::play(url, mode, 4.0, None).await;
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
    let Opened { token, base, rendition } = open_paid_lecture(&f).await;
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
    let ready = f
        .srv
        .app_state
        .playback
        .ready_video(&f.srv.app_state.db, lectern::types::VideoId::new(f.video))
        .await
        .unwrap()
        .unwrap();
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
    browsers_play_it_with_hls_js_and_react_player,
    a_caching_proxy_caches_segments_but_never_playlists_or_keys,
);
