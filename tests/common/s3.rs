//! A real S3-compatible server for tests: the `s3s-fs` binary (installed by `.ci/run` and the
//! README's test command with `cargo install s3s-fs --features binary`), started on a free
//! loopback port with its own root directory, and stopped when dropped.

use std::process::Stdio;
use std::time::Duration;

use lectern::config::{Config, Secret, StorageKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ACCESS_KEY: &str = "lectern-test-access";
pub const SECRET_KEY: &str = "lectern-test-secret-key";

/// A running `s3s-fs`.
pub struct S3Server {
    pub endpoint: String,
    _child: Child,
    _root: tempfile::TempDir,
}

fn binary() -> String {
    if let Ok(b) = std::env::var("S3S_FS_BIN") {
        return b;
    }
    let home_bin =
        std::path::Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/s3s-fs");
    if home_bin.exists() {
        return home_bin.to_string_lossy().into_owned();
    }
    "s3s-fs".into()
}

impl S3Server {
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "s3s-fs must be installed: cargo install s3s-fs@0.14.1 --features binary --locked",
            );
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(at) = line.find("http://") {
                    return line[at..].split_whitespace().next().unwrap().to_string();
                }
            }
            panic!("s3s-fs exited before it listened");
        })
        .await
        .expect("s3s-fs did not start within 20 s");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        S3Server { endpoint, _child: child, _root: root }
    }

    /// Multipart uploads begun and neither completed nor aborted (s3s-fs keeps one
    /// `.upload-<id>.json` per upload in its root).
    pub fn pending_multipart_uploads(&self) -> usize {
        std::fs::read_dir(self._root.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".upload-"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Point `cfg` at this server and `bucket` (created by Lectern on start).
    pub fn configure(&self, cfg: &mut Config, bucket: &str) {
        cfg.storage = StorageKind::S3;
        cfg.s3_endpoint = Some(self.endpoint.clone());
        cfg.s3_bucket = Some(bucket.to_string());
        cfg.s3_access_key = Some(ACCESS_KEY.into());
        cfg.s3_secret_key = Secret::new(SECRET_KEY);
        cfg.s3_path_style = true;
        cfg.s3_region = "us-east-1".into();
    }
}
