//! The `lectern` binary itself: first start, migrate, creating users, configuration layers,
//! access logs without tokens, graceful shutdown on SIGTERM.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_lectern");

fn lectern(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_remove("RUST_LOG").kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("LECTERN_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Start `lectern serve` without workers and return it with the base URL it printed.
async fn serve(cmd: Command) -> (Child, String) {
    serve_with_workers(cmd, 0).await
}

async fn serve_with_workers(mut cmd: Command, workers: usize) -> (Child, String) {
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", &workers.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Lectern listening on ") {
                return rest.trim().to_string();
            }
        }
        panic!("lectern exited before listening");
    })
    .await
    .expect("lectern did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

async fn sigterm_and_wait(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    (status, stderr)
}

#[tokio::test]
async fn first_start_creates_the_data_dir_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = serve(lectern(dir.path())).await;
    assert!(dir.path().join("data/lectern.db").is_file(), "SQLite file in ./data");
    assert!(dir.path().join("data/objects").is_dir(), "object root in ./data");
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    // A token in a query string must never reach the access log.
    let resp =
        http.get(format!("{base}/healthz?token=SUPERSECRETTOKEN&page=3")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, stderr) = sigterm_and_wait(child).await;
    assert!(status.success(), "exit status {status:?}; stderr:\n{stderr}");
    assert!(stderr.contains("/healthz"), "access log missing:\n{stderr}");
    assert!(stderr.contains("token=REDACTED"), "{stderr}");
    assert!(!stderr.contains("SUPERSECRETTOKEN"), "token leaked into the log:\n{stderr}");
    // The embedded default takes orders with the dev provider, and says so loudly.
    assert!(
        stderr.lines().any(|l| l.starts_with("WARNING: the payment provider is `dev`")),
        "{stderr}"
    );
}

#[tokio::test]
async fn production_refuses_to_start_with_the_dev_payment_provider() {
    let dir = tempfile::tempdir().unwrap();
    let out = lectern(dir.path())
        .env("LECTERN_ENV", "production")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LECTERN_ENV=production refuses the dev payment provider"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created before the refusal");
}

#[tokio::test]
async fn admin_made_on_the_command_line_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = lectern(dir.path()).arg("migrate").output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = lectern(dir.path())
        .args([
            "user",
            "create",
            "--email",
            "Boss@Example.com",
            "--password",
            "correct-horse",
            "--role",
            "admin",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin boss@example.com"));
    // The same email again is refused with a readable message and a failing exit code.
    let out = lectern(dir.path())
        .args([
            "user",
            "create",
            "--email",
            "boss@example.com",
            "--password",
            "correct-horse",
            "--role",
            "student",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let (child, base) = serve(lectern(dir.path())).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "boss@example.com", "password": "correct-horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let me: serde_json::Value = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
    sigterm_and_wait(child).await;
}

#[tokio::test]
async fn configuration_layers_file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lectern.toml"),
        "data_dir = \"from-file\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    // The file moves the data dir; the environment overrides it; a flag overrides both.
    let (child, _) = serve({
        let mut c = lectern(dir.path());
        c.args(["--config", "lectern.toml"]);
        c
    })
    .await;
    assert!(dir.path().join("from-file/lectern.db").is_file());
    let (_, stderr) = sigterm_and_wait(child).await;
    assert!(
        stderr.lines().any(|l| l.starts_with('{')),
        "log_format = json from the file:\n{stderr}"
    );

    let (child, _) = serve({
        let mut c = lectern(dir.path());
        c.args(["--config", "lectern.toml"]).env("LECTERN_DATA_DIR", "from-env");
        c
    })
    .await;
    assert!(dir.path().join("from-env/lectern.db").is_file());
    sigterm_and_wait(child).await;

    let (child, _) = serve({
        let mut c = lectern(dir.path());
        c.args(["--config", "lectern.toml", "--data-dir", "from-flag"])
            .env("LECTERN_DATA_DIR", "from-env");
        c
    })
    .await;
    assert!(dir.path().join("from-flag/lectern.db").is_file());
    sigterm_and_wait(child).await;

    // Bad configuration is a clear message, not a panic.
    let out =
        lectern(dir.path()).arg("migrate").env("LECTERN_WORKERS", "lots").output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LECTERN_WORKERS"));
    let out =
        lectern(dir.path()).args(["--config", "missing.toml", "migrate"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[tokio::test]
async fn postgres_is_used_when_the_url_says_so() {
    let db = common::TempPgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let out = lectern(dir.path())
        .arg("migrate")
        .env("LECTERN_DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PostgreSQL"));
    assert!(!dir.path().join("data/lectern.db").exists(), "made a SQLite file anyway");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM users").fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn help_explains_every_command() {
    let out = Command::new(BIN).arg("--help").output().await.unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "migrate", "user", "--config", "LECTERN_"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = Command::new(BIN).args(["user", "create", "--help"]).output().await.unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--email", "--password", "--role", "admin"] {
        assert!(help.contains(word), "user create --help lacks {word}:\n{help}");
    }
}

/// An instructor (made on the command line), a lecture, and an uploaded clip; returns the
/// token and video id.
async fn upload_a_clip(dir: &Path, base: &str) -> (String, i64) {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "teach@example.com", "password": "teach-password"}))
        .send()
        .await
        .unwrap();
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |path: String, body: serde_json::Value| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            http.post(path)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let course = post(format!("{base}/api/v1/courses"), json!({"title": "CLI", "price": 0})).await;
    let section =
        post(format!("{base}/api/v1/courses/{}/sections", course["id"]), json!({"title": "S"}))
            .await;
    let lecture =
        post(format!("{base}/api/v1/sections/{}/lectures", section["id"]), json!({"title": "L"}))
            .await;
    let clip = common::clip(dir, "clip.mp4", 320, 240, 2.0, true);
    let resp = http
        .put(format!("{base}/api/v1/lectures/{}/video", lecture["id"]))
        .bearer_auth(&token)
        .body(std::fs::read(clip).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let video = resp.json::<serde_json::Value>().await.unwrap()["video_id"].as_i64().unwrap();
    (token, video)
}

async fn wait_ready(base: &str, token: &str, video: i64) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        let v: serde_json::Value = http
            .get(format!("{base}/api/v1/videos/{video}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match v["status"].as_str() {
            Some("ready") => return,
            Some("failed") => panic!("transcode failed: {v}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("video {video} never became ready");
}

async fn make_instructor(dir: &Path) {
    let out = lectern(dir)
        .args([
            "user",
            "create",
            "--email",
            "teach@example.com",
            "--password",
            "teach-password",
            "--role",
            "instructor",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn serve_supervises_its_worker_processes_and_restarts_crashed_ones() {
    let dir = tempfile::tempdir().unwrap();
    make_instructor(dir.path()).await;
    let (server, base) = serve_with_workers(lectern(dir.path()), 1).await;
    let pid = server.id().unwrap();
    let mut first = Vec::new();
    for _ in 0..100 {
        first = common::child_pids(pid);
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first.len(), 1, "one worker process");
    // A decoder crash, as far as the pool can tell: the child dies by SIGKILL.
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &first[0].to_string()])
        .status()
        .unwrap()
        .success());
    let mut replaced = false;
    for _ in 0..100 {
        let now = common::child_pids(pid);
        if now.len() == 1 && now[0] != first[0] {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replaced, "the pool did not restart its worker");
    assert_eq!(
        reqwest::get(format!("{base}/healthz")).await.unwrap().status(),
        200,
        "the API lives on"
    );
    let (token, video) = upload_a_clip(dir.path(), &base).await;
    wait_ready(&base, &token, video).await;
    let (status, stderr) = sigterm_and_wait(server).await;
    assert!(status.success(), "{stderr}");
    assert!(common::child_pids(pid).is_empty());
}

#[tokio::test]
async fn lectern_worker_runs_jobs_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    make_instructor(dir.path()).await;
    let (server, base) = serve(lectern(dir.path())).await;
    let (token, video) = upload_a_clip(dir.path(), &base).await;
    let workers = lectern(dir.path())
        .args(["worker", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&base, &token, video).await;
    let (status, stderr) = sigterm_and_wait(workers).await;
    assert!(status.success(), "{stderr}");
    sigterm_and_wait(server).await;
}

#[tokio::test]
async fn demo_fills_an_empty_instance_with_playable_courses() {
    let dir = tempfile::tempdir().unwrap();
    let out = lectern(dir.path())
        .arg("demo")
        .env("LECTERN_X264_PRESET", "ultrafast")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("student@demo.lectern.dev") && stdout.contains("lectern-demo"),
        "{stdout}"
    );
    let preview: i64 = stdout
        .split("/api/v1/lectures/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no playback hint in:\n{stdout}"));
    // Only an empty instance.
    let again = lectern(dir.path()).arg("demo").output().await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has users"));

    let (server, base) = serve(lectern(dir.path())).await;
    let http = reqwest::Client::new();
    let courses: serde_json::Value =
        http.get(format!("{base}/api/v1/courses")).send().await.unwrap().json().await.unwrap();
    assert!(courses["total"].as_i64().unwrap() >= 2, "{courses}");
    assert!(courses["items"][0]["duration_seconds"].as_f64().unwrap() > 0.0, "{courses}");
    let session: serde_json::Value = http
        .post(format!("{base}/api/v1/lectures/{preview}/playback"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = session["url"].as_str().unwrap_or_else(|| panic!("{session}"));
    let decoded = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i", url, "-t", "2", "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
    sigterm_and_wait(server).await;
}
