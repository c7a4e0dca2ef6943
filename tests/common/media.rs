//! Media steps shared by the tests: clips made with the ffmpeg CLI, uploads, waiting for a
//! transcode, fetching and decoding its outputs, worker processes.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::TestServer;

/// Make a media file with the ffmpeg CLI: `args` go between `-y` and the output path.
pub fn ffmpeg(args: &str, out: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .arg(out)
        .status()
        .expect("the ffmpeg CLI must be installed");
    assert!(status.success(), "ffmpeg {args} failed");
}

/// A 16:9 clip with a test pattern and a tone, `secs` long, at `w`×`h`.
pub fn clip(dir: &Path, name: &str, w: u32, h: u32, secs: f64, audio: bool) -> std::path::PathBuf {
    let out = dir.join(name);
    let audio_in = if audio {
        format!("-f lavfi -i sine=frequency=440:sample_rate=48000:duration={secs}")
    } else {
        String::new()
    };
    let audio_codec = if audio { "-c:a aac -b:a 96k" } else { "" };
    ffmpeg(
        &format!(
            "-f lavfi -i testsrc2=size={w}x{h}:rate=30:duration={secs} {audio_in} -c:v libx264 -preset ultrafast -pix_fmt yuv420p {audio_codec} -shortest"
        ),
        &out,
    );
    out
}

impl TestServer {
    /// Start a `lectern worker --child` process on this server's database and storage.
    pub fn spawn_worker(&self) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_lectern"))
            .args(["worker", "--child"])
            .env(
                lectern::media::supervisor::CHILD_CONFIG_ENV,
                serde_json::to_string(&lectern::media::worker::WorkerSettings::from(&self.cfg))
                    .unwrap(),
            )
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("start a worker")
    }

    /// Upload `file` as the lecture's video with a streamed PUT; returns the video id.
    pub async fn put_video(&self, token: &str, lecture_id: i64, file: &Path) -> i64 {
        let f = tokio::fs::File::open(file).await.unwrap();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        let resp = self
            .http
            .put(self.url(&format!("/api/v1/lectures/{lecture_id}/video")))
            .bearer_auth(token)
            .header("content-type", "video/mp4")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "queued");
        body["video_id"].as_i64().unwrap()
    }

    /// Poll the video until it is `ready` or `failed` (or `limit` passes); returns its last state.
    pub async fn wait_video(&self, token: &str, video_id: i64, limit: Duration) -> Value {
        let started = std::time::Instant::now();
        let mut last_progress = 0.0;
        loop {
            let (status, v) = self.get(&format!("/api/v1/videos/{video_id}"), Some(token)).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let p = v["progress"].as_f64().unwrap();
            assert!(p + 1e-9 >= last_progress, "progress went back from {last_progress} to {p}");
            last_progress = p;
            if v["status"] == "ready" || v["status"] == "failed" {
                return v;
            }
            assert!(started.elapsed() < limit, "video {video_id} not done after {limit:?}: {v}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Copy a video's published HLS output out of storage into a temp dir (works for S3 too).
    pub async fn fetch_outputs(&self, video_id: i64) -> tempfile::TempDir {
        use futures::StreamExt;
        let (prefix, key): (Option<String>, Option<String>) =
            sqlx::query_as("SELECT output_prefix, hls_key FROM videos WHERE id = $1")
                .bind(video_id)
                .fetch_one(self.app_state.db.pool())
                .await
                .unwrap();
        let prefix = lectern::storage::ObjectKey::new(prefix.expect("published")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for obj in self.app_state.storage.list(&prefix).await.unwrap() {
            let rel = obj
                .key
                .as_str()
                .strip_prefix(&format!("{}/", prefix.as_str()))
                .unwrap()
                .to_string();
            let dest = dir.path().join(&rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            let mut body = self.app_state.storage.get(&obj.key, None).await.unwrap().body;
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next().await {
                bytes.extend_from_slice(&chunk.unwrap());
            }
            std::fs::write(dest, bytes).unwrap();
        }
        // Encrypted segments name their key `../key` (served by /hls/{video}/key); put it there.
        if let Some(key) = key {
            std::fs::write(dir.path().join("key"), hex::decode(key).unwrap()).unwrap();
        }
        dir
    }
}

/// Decode every stream of an HLS master playlist with the ffmpeg CLI; panics on any error.
pub fn assert_decodes(master: &Path) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-allowed_extensions", "ALL", "-i"])
        .arg(master)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "decoding {master:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Process ids of `pid`'s children (each thread lists the children it started).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out: Vec<u32> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect();
    out.sort();
    out
}
