//! Hostile media end to end: uploads built to read the worker's host, hang a worker or publish
//! pictures nobody can watch; jobs over their budgets; what a failed video tells its owner;
//! and worker processes that must die with their pool and carry none of its secrets.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{assert_error, clip, ffmpeg, Backend, TestServer};
use lectern::config::{Config, StorageKind};
use lectern::storage::{keys, stream_from_bytes};
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(240);

async fn server(b: Backend, s: StorageKind, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(b, s, |c| {
        c.segment_seconds = 2.0;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
        tweak(c);
    })
    .await
}

/// An instructor token and the id of a lecture of theirs.
async fn lecture(srv: &TestServer) -> (String, i64) {
    let t = srv.instructor("teacher@example.com").await;
    let (_, _, lecture) = srv.course_with_lecture(&t, "Hostile").await;
    (t, lecture)
}

async fn attempts(srv: &TestServer, video: i64) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT attempts FROM jobs WHERE video_id = $1")
        .bind(video)
        .fetch_one(srv.app_state.db.pool())
        .await
        .unwrap();
    n
}

/// Nothing of a finished job is left in scratch space.
fn assert_scratch_empty(srv: &TestServer) {
    let scratch = srv.cfg.data_dir.join("scratch");
    let left: Vec<PathBuf> = std::fs::read_dir(&scratch)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch space left behind: {left:?}");
}

/// The video failed, with a readable reason that names no path, endpoint or storage key.
fn assert_failed_readably(srv: &TestServer, v: &Value) -> String {
    assert_eq!(v["status"], "failed", "{v}");
    let reason = v["error"].as_str().unwrap().to_string();
    assert!(reason.len() > 10 && !reason.contains("panicked"), "unreadable reason: {reason}");
    let data_dir = srv.cfg.data_dir.display().to_string();
    for leak in [
        data_dir.as_str(),
        "/tmp",
        "127.0.0.1",
        "http",
        "videos/",
        "scratch",
        "s3",
        "sqlite",
        "postgres",
    ] {
        assert!(!reason.to_lowercase().contains(leak), "the reason leaks {leak:?}: {reason}");
    }
    reason
}

/// A clip somewhere on the worker's host that no upload may reach.
fn host_file(dir: &Path) -> PathBuf {
    let secret = dir.join("secret.ts");
    ffmpeg(
        "-f lavfi -i testsrc2=size=320x240:rate=30:duration=2 -c:v libx264 -preset ultrafast",
        &secret,
    );
    secret
}

/// An HLS playlist naming `file`, with a non-printable line that gets it past text sniffing.
fn playlist(file: &Path) -> Vec<u8> {
    format!(
        "#EXTM3U\n#\x01\x02\x03\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\nfile:{}\n#EXT-X-ENDLIST\n",
        file.display()
    )
    .into_bytes()
}

async fn a_playlist_upload_is_refused_with_a_reason(b: Backend, s: StorageKind) {
    let srv = server(b, s, |_| {}).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let resp = srv
        .http
        .put(srv.url(&format!("/api/v1/lectures/{lecture}/video")))
        .bearer_auth(&t)
        .body(playlist(&host_file(dir.path())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = resp.json().await.unwrap();
    assert_error(&body, "not_a_video");
    assert!(body["error"]["message"].as_str().unwrap().contains("playlist"), "{body}");
}

async fn a_stored_playlist_naming_a_host_file_fails_and_publishes_nothing(
    b: Backend,
    s: StorageKind,
) {
    let srv = server(b, s, |_| {}).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    // A queued source that is a playlist (whatever way it got there): the engine is the last word.
    let video =
        srv.put_video(&t, lecture, &clip(dir.path(), "real.mp4", 320, 240, 1.0, false)).await;
    let bytes = playlist(&host_file(dir.path()));
    srv.app_state
        .storage
        .put(
            &keys::source(lectern::types::VideoId::new(video)),
            stream_from_bytes(bytes),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    let reason = assert_failed_readably(&srv, &v);
    assert!(reason.contains("playlist"), "{reason}");
    assert_eq!(attempts(&srv, video).await, 1, "a refused file fails at once");
    let objects = srv
        .app_state
        .storage
        .list(&keys::video(lectern::types::VideoId::new(video)))
        .await
        .unwrap();
    assert!(
        objects
            .iter()
            .all(|o| o.key.as_str() == keys::source(lectern::types::VideoId::new(video)).as_str()),
        "outputs published: {objects:?}"
    );
    assert_scratch_empty(&srv);
    worker.kill().await.unwrap();
}

async fn an_mkv_whose_timestamps_jump_fails_at_once_and_its_scratch_is_removed(
    b: Backend,
    s: StorageKind,
) {
    let srv = server(b, s, |_| {}).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    // Written to a pipe, as live recorders do: no duration in the header; timestamps jump from
    // 1 s to 10^7 s.
    let jump = dir.path().join("jump.mkv");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30:duration=2",
        ])
        .args([
            "-vf",
            "setpts='if(lt(T,1),PTS,PTS+10000000/TB)'",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-f", "matroska", "pipe:1"])
        .stdout(Stdio::from(std::fs::File::create(&jump).unwrap()))
        .status()
        .unwrap();
    assert!(status.success());
    let video = srv.put_video(&t, lecture, &jump).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    let reason = assert_failed_readably(&srv, &v);
    assert!(reason.contains("timestamps"), "{reason}");
    assert_eq!(attempts(&srv, video).await, 1);
    assert_scratch_empty(&srv);
    worker.kill().await.unwrap();
}

async fn a_clip_with_an_extreme_pixel_aspect_ratio_fails_at_once(b: Backend, s: StorageKind) {
    let srv = server(b, s, |_| {}).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let thin = dir.path().join("thin.mkv");
    ffmpeg(
        "-f lavfi -i testsrc2=size=640x360:rate=25:duration=1 -vf setsar=1/1000 -c:v mpeg4",
        &thin,
    );
    let video = srv.put_video(&t, lecture, &thin).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    let reason = assert_failed_readably(&srv, &v);
    assert!(reason.contains("aspect ratio") && reason.contains("1×360"), "{reason}");
    assert_eq!(attempts(&srv, video).await, 1, "an unusable picture size fails at once");
    worker.kill().await.unwrap();
}

async fn a_strip_sixteen_pixels_wide_becomes_ready(b: Backend, s: StorageKind) {
    // Deterministic FFmpeg refusals used to be retried; this one (a sprite sheet taller than JPEG
    // allows) is now avoided altogether.
    let srv = server(b, s, |_| {}).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let strip = dir.path().join("strip.mp4");
    ffmpeg("-f lavfi -i testsrc2=size=16x4096:rate=5:duration=24 -c:v libx264 -preset ultrafast -pix_fmt yuv420p", &strip);
    let video = srv.put_video(&t, lecture, &strip).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    assert_eq!(v["status"], "ready", "{v}");
    for r in v["renditions"].as_array().unwrap() {
        assert!(r["width"].as_u64().unwrap() >= 16 && r["height"].as_u64().unwrap() >= 16, "{r}");
    }
    worker.kill().await.unwrap();
}

async fn a_job_over_its_time_budget_fails_and_its_scratch_is_removed(b: Backend, s: StorageKind) {
    let srv = server(b, s, |c| {
        c.x264_preset = "medium".into();
        c.job_budget_base_secs = 2;
        c.job_budget_per_video_second = 0.0;
    })
    .await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let video =
        srv.put_video(&t, lecture, &clip(dir.path(), "long.mp4", 1280, 720, 12.0, true)).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    let reason = assert_failed_readably(&srv, &v);
    assert!(reason.contains("took longer"), "{reason}");
    assert_eq!(attempts(&srv, video).await, 1, "over budget is final");
    assert_scratch_empty(&srv);
    worker.kill().await.unwrap();
}

async fn a_job_over_its_scratch_budget_fails_and_its_scratch_is_removed(
    b: Backend,
    s: StorageKind,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = clip(dir.path(), "clip.mp4", 1280, 720, 6.0, true);
    let size = std::fs::metadata(&file).unwrap().len();
    let srv = server(b, s, |c| c.job_scratch_budget_bytes = size + 64 * 1024).await;
    let (t, lecture) = lecture(&srv).await;
    let video = srv.put_video(&t, lecture, &file).await;
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    let reason = assert_failed_readably(&srv, &v);
    assert!(reason.contains("working space"), "{reason}");
    assert_eq!(attempts(&srv, video).await, 1);
    assert_scratch_empty(&srv);
    worker.kill().await.unwrap();
}

async fn an_internal_failure_tells_the_owner_no_paths_or_endpoints(b: Backend, s: StorageKind) {
    let srv = server(b, s, |c| c.job_max_attempts = 1).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&t, lecture, &clip(dir.path(), "a.mp4", 320, 240, 1.0, false)).await;
    // The stored source vanishes before a worker gets to it.
    srv.app_state.storage.delete(&keys::source(lectern::types::VideoId::new(video))).await.unwrap();
    let mut worker = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    let reason = assert_failed_readably(&srv, &v);
    assert!(reason.contains("internal error"), "{reason}");
    // Operators still get the detail.
    let (detail,): (Option<String>,) =
        sqlx::query_as("SELECT last_error FROM jobs WHERE video_id = $1")
            .bind(video)
            .fetch_one(srv.app_state.db.pool())
            .await
            .unwrap();
    assert!(detail.is_some_and(|d| d.contains("source")), "no detail for operators");
    worker.kill().await.unwrap();
}

on_both_setups!(
    a_playlist_upload_is_refused_with_a_reason,
    a_stored_playlist_naming_a_host_file_fails_and_publishes_nothing,
    an_mkv_whose_timestamps_jump_fails_at_once_and_its_scratch_is_removed,
    a_clip_with_an_extreme_pixel_aspect_ratio_fails_at_once,
    a_strip_sixteen_pixels_wide_becomes_ready,
    a_job_over_its_time_budget_fails_and_its_scratch_is_removed,
    a_job_over_its_scratch_budget_fails_and_its_scratch_is_removed,
    an_internal_failure_tells_the_owner_no_paths_or_endpoints,
);

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

/// `cfg` as the `LECTERN_*` variables a `lectern worker` on another machine would be given.
fn as_environment(cfg: &Config) -> Vec<(String, String)> {
    let Value::Object(fields) = serde_json::to_value(cfg).unwrap() else { unreachable!() };
    fields
        .into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::Null => return None,
                Value::String(s) => s,
                other => other.to_string(),
            };
            Some((format!("LECTERN_{}", k.to_ascii_uppercase()), v))
        })
        .collect()
}

async fn a_killed_worker_pool_takes_its_processes_with_it_and_leaks_them_no_secrets(
    b: Backend,
    s: StorageKind,
) {
    const SENTINEL: &str = "sentinel-that-no-worker-may-see";
    let srv = server(b, s, |c| {
        c.x264_preset = "medium".into(); // slow enough to kill mid-job
        c.job_lease_secs = 3;
    })
    .await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let video =
        srv.put_video(&t, lecture, &clip(dir.path(), "long.mp4", 1280, 720, 12.0, true)).await;
    let mut env = as_environment(&srv.cfg);
    env.retain(|(k, _)| k != "LECTERN_JWT_SECRET");
    env.push(("LECTERN_JWT_SECRET".into(), format!("jwt-{SENTINEL}")));
    env.push(("LECTERN_PLAYBACK_KEYS".into(), format!("k1:playback-{SENTINEL}")));
    env.push(("LECTERN_TOSS_SECRET_KEY".into(), format!("toss-{SENTINEL}")));
    let mut pool = tokio::process::Command::new(env!("CARGO_BIN_EXE_lectern"))
        .args(["worker", "--concurrency", "1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(env)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pool_pid = pool.id().unwrap();

    // Wait until the job runs in an engine process under the pool's worker.
    let started = std::time::Instant::now();
    let (worker, engine) = loop {
        let (_, v) = srv.get(&format!("/api/v1/videos/{video}"), Some(&t)).await;
        let workers = common::child_pids(pool_pid);
        let engines: Vec<u32> = workers.iter().flat_map(|w| common::child_pids(*w)).collect();
        if v["status"] == "processing"
            && v["progress"].as_f64().unwrap() > 0.06
            && workers.len() == 1
            && engines.len() == 1
        {
            break (workers[0], engines[0]);
        }
        assert!(
            started.elapsed() < WAIT && v["status"] != "ready" && v["status"] != "failed",
            "never caught it mid-job: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for pid in [worker, engine] {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            !String::from_utf8_lossy(&environ).contains(SENTINEL),
            "process {pid} was given a secret"
        );
    }

    pool.start_kill().unwrap(); // SIGKILL, as when a machine is lost
    pool.wait().await.unwrap();
    let killed = std::time::Instant::now();
    while alive(worker) || alive(engine) {
        assert!(killed.elapsed() < Duration::from_secs(30), "the pool's processes outlived it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its lease lapses and another worker takes the job over.
    let mut other = srv.spawn_worker();
    let v = srv.wait_video(&t, video, WAIT).await;
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(attempts(&srv, video).await, 2, "the job was taken over");
    other.kill().await.unwrap();
}

on_both_setups!(a_killed_worker_pool_takes_its_processes_with_it_and_leaks_them_no_secrets);

async fn a_heartbeat_never_extends_a_lease_past_the_attempt_deadline(b: Backend) {
    use lectern::media::queue;
    let srv = TestServer::start(b).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&t, lecture, &clip(dir.path(), "a.mp4", 320, 240, 1.0, false)).await;
    let db = &srv.app_state.db;
    // A worker whose job is stuck keeps heartbeating with a long lease; its budget is 1 s.
    let job = queue::claim(db, "stuck", 600, 1).await.unwrap().expect("claimed");
    assert_eq!(job.video_id, lectern::types::VideoId::new(video));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(
        queue::heartbeat(db, job.id, "stuck", 600).await.unwrap(),
        "still its job until someone takes it"
    );
    let taken = queue::claim(db, "healthy", 600, 60)
        .await
        .unwrap()
        .expect("the job is free past its deadline");
    assert_eq!((taken.id, taken.attempts), (job.id, 2));
    assert!(!queue::heartbeat(db, job.id, "stuck", 600).await.unwrap(), "the stuck worker lost it");
}

async fn queue_states_that_make_no_sense_are_refused_by_the_database(b: Backend) {
    let srv = TestServer::start(b).await;
    let (t, lecture) = lecture(&srv).await;
    let dir = tempfile::tempdir().unwrap();
    let video = srv.put_video(&t, lecture, &clip(dir.path(), "a.mp4", 320, 240, 1.0, false)).await;
    let pool = srv.app_state.db.pool();
    for bad in [
        // running without a lease
        "UPDATE jobs SET status = 'running' WHERE video_id = $1",
        // a lease on a queued job
        "UPDATE jobs SET lease_owner = 'w', lease_expires_at = 1 WHERE video_id = $1",
        // more attempts than allowed
        "UPDATE jobs SET attempts = max_attempts + 1 WHERE video_id = $1",
        // finished without a time
        "UPDATE jobs SET status = 'failed', finished_at = NULL WHERE video_id = $1",
        // a deadline outside a running attempt
        "UPDATE jobs SET deadline_at = 1 WHERE video_id = $1",
    ] {
        assert!(sqlx::query(bad).bind(video).execute(pool).await.is_err(), "accepted: {bad}");
    }
    let (status,): (String,) = sqlx::query_as("SELECT status FROM jobs WHERE video_id = $1")
        .bind(video)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(status, "queued");
}

on_both_databases!(
    a_heartbeat_never_extends_a_lease_past_the_attempt_deadline,
    queue_states_that_make_no_sense_are_refused_by_the_database
);
