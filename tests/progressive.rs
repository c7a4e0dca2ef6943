//! Progressive publish: a video is playable within seconds of its transcode starting, through
//! growing `EVENT` playlists that end as `VOD` ones; a player started early plays on into the
//! finished video; a worker killed midway leaves the published part up for the next one to
//! take over; a video that fails after it was playable gives its lecture back to the one before.
//! On SQLite + filesystem and PostgreSQL + S3.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::ffmpeg;
use common::{Backend, TestServer};
use lectern::config::{LowRungFirst, StorageKind};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A server whose transcodes run at about 1.5× real time on this machine (a 720p source, the
/// `medium` preset, 2-second segments), so there is time to watch them grow.
async fn server(b: Backend, s: StorageKind) -> TestServer {
    server_with_preset(b, s, "medium").await
}

/// [`server`] with another x264 preset.
async fn server_with_preset(b: Backend, s: StorageKind, preset: &'static str) -> TestServer {
    TestServer::start_with(b, s, move |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = preset.into();
        c.worker_poll_ms = 100;
        c.hls_encryption = true;
        c.job_lease_secs = 3;
        // Doomed outputs are deleted for good two leases after, at the next housekeeping.
        c.housekeeping_interval_secs = 1;
        // These tests watch the whole ladder grow; whether a loaded machine would make the
        // lowest rung first is another test's.
        c.low_rung_first = LowRungFirst::Never;
    })
    .await
}

/// A [`server`], an instructor's token and a lecture of theirs.
async fn live_lecture(b: Backend, s: StorageKind) -> (TestServer, String, i64) {
    let srv = server(b, s).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&teacher, "Live course").await;
    (srv, teacher, lecture)
}

/// `POST /lectures/{lecture}/playback` as `token`.
async fn playback(srv: &TestServer, token: &str, lecture: i64) -> (StatusCode, Value) {
    srv.post(&format!("/api/v1/lectures/{lecture}/playback"), Some(token), json!({})).await
}

/// A 1280×720 clip `secs` long with audio.
fn source(dir: &Path, name: &str, secs: u32) -> std::path::PathBuf {
    let out = dir.join(name);
    ffmpeg(
        &format!(
            "-f lavfi -i testsrc2=size=1280x720:rate=30:duration={secs} -f lavfi -i sine=frequency=440:sample_rate=48000:duration={secs} \
             -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -movflags +faststart -shortest"
        ),
        &out,
    );
    out
}

/// Poll the video until `done` says so; returns its state then.
async fn poll_video(
    srv: &TestServer,
    token: &str,
    video: i64,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let (status, v) = srv.get(&format!("/api/v1/videos/{video}"), Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        if done(&v) {
            return v;
        }
        assert!(v["status"] != "failed", "{v}");
        assert!(started.elapsed() < Duration::from_secs(240), "video {video} stuck: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(srv: &TestServer, url: &str) -> String {
    let resp = srv.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp.text().await.unwrap()
}

/// The media playlist URLs a master playlist (served with a token) names.
fn media_urls(base: &str, master: &str) -> Vec<String> {
    master
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("index.m3u8"))
        .map(|l| format!("{base}/{l}"))
        .collect()
}

fn segment_uris(playlist: &str) -> Vec<&str> {
    playlist.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect()
}

async fn a_video_is_playable_while_it_is_transcoded(b: Backend, s: StorageKind) {
    let (srv, teacher, lecture) = live_lecture(b, s).await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&teacher, lecture, &source(dir.path(), "long.mp4", 20)).await;
    // Before any segment is out there is nothing to play.
    let (status, body) = playback(&srv, &teacher, lecture).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let mut worker = srv.spawn_worker();

    let v = poll_video(&srv, &teacher, video, |v| v["playable"] == true).await;
    assert_eq!(v["status"], "processing", "playable long before the end: {v}");
    let ready = v["ready_seconds"].as_f64().unwrap();
    assert!(ready > 0.0 && ready < 20.0, "{v}");
    assert!(v["progress"].as_f64().unwrap() < 0.9, "{v}");

    let (status, session) = playback(&srv, &teacher, lecture).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let base = srv.url(&format!("/hls/{video}"));
    let token = session["token"].as_str().unwrap();
    let master = text(&srv, session["url"].as_str().unwrap()).await;
    let urls = media_urls(&base, &master);
    assert_eq!(urls.len(), 3, "the whole ladder from the start:\n{master}");
    assert!(master.contains("BANDWIDTH=") && master.contains("CODECS=\"avc1."), "{master}");

    // Growing playlists: EVENT, from the start, no end; every segment they list is there,
    // AES-128 encrypted from the first one, with the key served.
    let resp = srv.http.get(&urls[0]).send().await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let early = resp.text().await.unwrap();
    assert!(early.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{early}");
    assert!(early.contains("#EXT-X-START:TIME-OFFSET=0"), "{early}");
    assert!(early.contains("#EXT-X-KEY:METHOD=AES-128"), "{early}");
    assert!(!early.contains("#EXT-X-ENDLIST"), "{early}");
    let listed = segment_uris(&early);
    assert!(!listed.is_empty());
    let rendition = urls[0].rsplit('/').nth(1).unwrap().to_string();
    for uri in &listed {
        let resp = srv.http.get(format!("{base}/{rendition}/{uri}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let bytes = resp.bytes().await.unwrap();
        assert!(!bytes.is_empty() && bytes.len() % 16 == 0, "{uri}: {} bytes", bytes.len());
    }
    let key = srv.http.get(format!("{base}/key?token={token}")).send().await.unwrap();
    assert_eq!(key.bytes().await.unwrap().len(), 16);

    // It grows while the job runs, and only ever by appending.
    let later = poll_video(&srv, &teacher, video, |v| {
        v["ready_seconds"].as_f64().unwrap() > ready || v["status"] == "ready"
    })
    .await;
    assert!(later["ready_seconds"].as_f64().unwrap() > ready, "{later}");

    let done = srv.wait_video(&teacher, video, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["playable"], true);
    assert_eq!(done["ready_seconds"].as_f64(), done["duration_seconds"].as_f64());
    worker.kill().await.unwrap();
    let vod = text(&srv, &urls[0]).await;
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.contains("#EXT-X-ENDLIST"), "{vod}");
    let as_event = vod.replace("#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-PLAYLIST-TYPE:EVENT");
    assert!(
        as_event.starts_with(&early),
        "the final playlist extends the early one:\n{early}\n---\n{vod}"
    );
    assert_eq!(segment_uris(&vod).len(), 10, "20 s in 2-second segments");
    // The master now states measured bandwidths; the package decodes end to end.
    let out = srv.fetch_outputs(video).await;
    common::assert_decodes(&out.path().join("master.m3u8"));
}

/// Players in headless Chromium — hls.js, Shaka Player and Video.js — each start a lecture while
/// it is still being transcoded, play it from its start without a stall, past what was encoded
/// when they started, into the finished (VOD) playlist. The ladder encodes with `veryfast`
/// (about 3x real time here), so it stays ahead of the players even on a machine busy with
/// other tests, and the players play on to near the end, so they reach the finished playlist
/// however slow the machine is.
async fn players_play_a_lecture_while_it_is_transcoded(b: Backend, s: StorageKind) {
    let srv = server_with_preset(b, s, "veryfast").await;
    let teacher = srv.instructor("teacher@example.com").await;
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), "long.mp4", 40);
    for mode in ["hlsjs", "shaka", "videojs"] {
        let (_, _, lecture) = srv.course_with_lecture(&teacher, &format!("Live {mode}")).await;
        let video = srv.put_video(&teacher, lecture, &src).await;
        let mut worker = srv.spawn_worker();
        poll_video(&srv, &teacher, video, |v| v["playable"] == true).await;
        let (_, session) = playback(&srv, &teacher, lecture).await;
        let (_, at_start) = srv.get(&format!("/api/v1/videos/{video}"), Some(&teacher)).await;
        assert_eq!(at_start["status"], "processing", "{mode}: {at_start}");
        let encoded_at_start = at_start["ready_seconds"].as_f64().unwrap();
        let target = 38.0;
        assert!(encoded_at_start < target - 10.0, "{mode}: {at_start}");

        let result =
            common::browser::play(session["url"].as_str().unwrap(), mode, target, None).await;
        assert_eq!(result["ok"], true, "{mode}: {result}");
        assert!(result["currentTime"].as_f64().unwrap() >= target, "{mode}: {result}");
        assert_eq!(result["liveAtStart"], true, "{mode}: the playlist was still growing: {result}");
        assert_eq!(
            result["sawEndList"], true,
            "{mode}: it played on into the VOD playlist: {result}"
        );
        assert!(result["startedAt"].as_f64().unwrap() < 1.0, "{mode}: from the start: {result}");
        assert_eq!(result["stalls"], 0, "{mode}: {result}");
        let done = srv.wait_video(&teacher, video, Duration::from_secs(240)).await;
        assert_eq!(done["status"], "ready");
        worker.kill().await.unwrap();
    }
}

/// The object keys stored under the video.
async fn stored_keys(srv: &TestServer, video: i64) -> Vec<String> {
    let prefix = lectern::storage::keys::video(lectern::types::VideoId::new(video));
    let objects = srv.app_state.storage.list(&prefix).await.unwrap();
    objects.into_iter().map(|o| o.key.as_str().to_string()).collect()
}

/// A worker killed after the video turned playable: the part it published stays up (the
/// video never stops being playable, never shrinks), the worker that takes the job over
/// replaces it once it has caught up, and only the final output remains.
async fn a_takeover_keeps_the_published_part_up_and_replaces_it_cleanly(
    b: Backend,
    s: StorageKind,
) {
    let (srv, teacher, lecture) = live_lecture(b, s).await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&teacher, lecture, &source(dir.path(), "long.mp4", 20)).await;
    let mut first = srv.spawn_worker();
    let v = poll_video(&srv, &teacher, video, |v| v["ready_seconds"].as_f64() >= Some(4.0)).await;
    let first_prefix = prefix_of(&srv, video).await;
    // SIGKILL the worker and its engine: it stops heartbeating mid-job.
    let pid = first.id().unwrap();
    for child in common::child_pids(pid) {
        let _ = std::process::Command::new("kill").args(["-9", &child.to_string()]).status();
    }
    first.kill().await.unwrap();
    let mut seen = v["ready_seconds"].as_f64().unwrap();
    let mut second = srv.spawn_worker();
    let (_, session) = playback(&srv, &teacher, lecture).await;
    let master_url = session["url"].as_str().unwrap().to_string();
    let done = poll_video(&srv, &teacher, video, |v| {
        assert_eq!(v["playable"], true, "still playable during the takeover: {v}");
        let ready = v["ready_seconds"].as_f64().unwrap();
        assert!(ready >= seen, "never shrinks: {seen} then {ready}");
        seen = ready;
        v["status"] == "ready"
    })
    .await;
    assert_eq!(done["status"], "ready");
    second.kill().await.unwrap();
    let final_prefix = prefix_of(&srv, video).await;
    assert_ne!(final_prefix, first_prefix, "the second attempt's output is the one published");
    let keys = stored_keys(&srv, video).await;
    assert!(keys.iter().all(|k| !k.starts_with(&format!("{first_prefix}/"))), "{keys:?}");
    let master = text(&srv, &master_url).await;
    for url in media_urls(&srv.url(&format!("/hls/{video}")), &master) {
        assert!(text(&srv, &url).await.contains("#EXT-X-ENDLIST"));
    }
}

async fn prefix_of(srv: &TestServer, video: i64) -> String {
    let (prefix,): (Option<String>,) =
        sqlx::query_as("SELECT output_prefix FROM videos WHERE id = $1")
            .bind(video)
            .fetch_one(srv.app_state.db.pool())
            .await
            .unwrap();
    prefix.expect("an output is shown")
}

/// A new upload takes the lecture over once it is playable; when it then fails for good (the
/// file turns out cut off), the lecture plays the video it had before again, and the failed
/// one's output is gone.
async fn a_video_that_fails_after_it_was_playable_gives_the_lecture_back(
    b: Backend,
    s: StorageKind,
) {
    let (srv, teacher, lecture) = live_lecture(b, s).await;
    let dir = tempfile::tempdir().unwrap();
    let first = srv
        .put_video(&teacher, lecture, &common::clip(dir.path(), "a.mp4", 320, 240, 2.0, true))
        .await;
    let mut worker = srv.spawn_worker();
    assert_eq!(srv.wait_video(&teacher, first, Duration::from_secs(120)).await["status"], "ready");
    // A source whose index promises 20 s but whose data stops after about half of it.
    let whole = source(dir.path(), "whole.mp4", 20);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 55 / 100]).unwrap();
    let second = srv.put_video(&teacher, lecture, &cut).await;
    poll_video(&srv, &teacher, second, |v| v["playable"] == true).await;
    let lecture_video = || async {
        let (video,): (Option<i64>,) =
            sqlx::query_as("SELECT video_id FROM lectures WHERE id = $1")
                .bind(lecture)
                .fetch_one(srv.app_state.db.pool())
                .await
                .unwrap();
        video
    };
    assert_eq!(
        lecture_video().await,
        Some(second),
        "the lecture plays the new video once playable"
    );
    let failed = srv.wait_video(&teacher, second, Duration::from_secs(240)).await;
    worker.kill().await.unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["playable"], false, "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("incomplete"), "{failed}");
    assert_eq!(lecture_video().await, Some(first), "back to the video it had");
    let (status, session) = playback(&srv, &teacher, lecture).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["video_id"].as_i64(), Some(first));
    // The withdrawn output is deleted although the worker that recorded the failure was killed
    // right after (perhaps before it deleted anything): the failure doomed it durably.
    common::eventually("only the source is left", Duration::from_secs(30), || async {
        let keys = stored_keys(&srv, second).await;
        keys.iter().all(|k| k.ends_with("/source")).then_some(())
    })
    .await;
}

/// Made lowest rung first (as a ladder slower than real time is; the engine's tests show when
/// it decides to): while it runs the master lists that rung alone, which plays from the start
/// ahead of any viewer; the finished master lists the whole ladder.
async fn a_slow_ladder_publishes_its_lowest_rung_first(b: Backend, s: StorageKind) {
    let srv = TestServer::start_with(b, s, |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "medium".into();
        c.worker_poll_ms = 100;
        c.low_rung_first = LowRungFirst::Always;
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&teacher, "Slow course").await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&teacher, lecture, &source(dir.path(), "long.mp4", 16)).await;
    let mut worker = srv.spawn_worker();
    let v = poll_video(&srv, &teacher, video, |v| v["playable"] == true).await;
    assert_eq!(v["status"], "processing", "{v}");
    let (_, session) = playback(&srv, &teacher, lecture).await;
    let base = srv.url(&format!("/hls/{video}"));
    let live = text(&srv, session["url"].as_str().unwrap()).await;
    let urls = media_urls(&base, &live);
    assert_eq!(urls.len(), 1, "the lowest rung alone while it runs:\n{live}");
    assert!(urls[0].contains("/360p/index.m3u8"), "{live}");
    let done = srv.wait_video(&teacher, video, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "ready", "{done}");
    worker.kill().await.unwrap();
    let master = text(&srv, session["url"].as_str().unwrap()).await;
    assert_eq!(media_urls(&base, &master).len(), 3, "{master}");
    let out = srv.fetch_outputs(video).await;
    common::assert_decodes(&out.path().join("master.m3u8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ladder_publishes_its_lowest_rung_first_sqlite_fs() {
    a_slow_ladder_publishes_its_lowest_rung_first(Backend::Sqlite, StorageKind::Fs).await;
}

on_both_setups!(
    a_video_is_playable_while_it_is_transcoded,
    a_takeover_keeps_the_published_part_up_and_replaces_it_cleanly,
    a_video_that_fails_after_it_was_playable_gives_the_lecture_back,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_play_a_lecture_while_it_is_transcoded_sqlite_fs() {
    players_play_a_lecture_while_it_is_transcoded(Backend::Sqlite, StorageKind::Fs).await;
}
