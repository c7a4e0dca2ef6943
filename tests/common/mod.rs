//! Test harness: a real Lectern server on 127.0.0.1:0 over a fresh database (a SQLite file in a
//! temp dir, or a new PostgreSQL database per test) and a real object store (filesystem, or
//! an S3 bucket on a local `s3s-fs` server).
#![allow(dead_code)]

pub mod browser;
pub mod catalog;
pub mod media;
pub mod playback;
pub mod s3;
pub mod shop;
pub mod tus;

#[allow(unused_imports)]
pub use media::{assert_decodes, child_pids, clip, ffmpeg};

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use lectern::config::{Config, Secret, StorageKind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

/// The database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Run each named `async fn(Backend)` once per database backend, as `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::common::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::common::Backend::Postgres).await }
        }
    )+};
}

/// Run each `async fn(Backend, StorageKind)` on SQLite + filesystem storage and on
/// PostgreSQL + S3, as `name::sqlite_fs` and `name::postgres_s3`.
#[macro_export]
macro_rules! on_both_setups {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use lectern::config::StorageKind;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_fs() { super::$name($crate::common::Backend::Sqlite, StorageKind::Fs).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() { super::$name($crate::common::Backend::Postgres, StorageKind::S3).await }
        }
    )+};
}

/// Base URL of the PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("LECTERN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct TempPgDb {
    pub url: String,
    name: String,
}

impl TempPgDb {
    pub async fn create() -> TempPgDb {
        let admin = postgres_admin_url();
        let name = format!("lectern_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&format!("{admin}/postgres"))
            .await
            .expect("PostgreSQL must run at LECTERN_TEST_POSTGRES_URL (default 127.0.0.1:5432, user postgres)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        TempPgDb { url: format!("{admin}/{name}"), name }
    }
}

impl Drop for TempPgDb {
    fn drop(&mut self) {
        let admin = format!("{}/postgres", postgres_admin_url());
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs outside any runtime we may block; use a small one of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&sql).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

/// A configuration for a test server keeping its files under `dir`.
pub fn test_config(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        jwt_secret: Secret::new("test-secret-test-secret-test-secret!"),
        workers: Some(0),
        ..Config::default()
    }
}

/// Start Lectern on 127.0.0.1:0: its base URL, state, a shutdown trigger and the serving task.
async fn serve(
    cfg: &Config,
) -> (String, lectern::AppState, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let app = lectern::App::start(cfg.clone()).await.expect("server starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = app.state.clone();
    // Housekeeping, the payment reconciler and webhook delivery run beside the server, as in
    // `lectern serve`.
    let (stop_background, stopped) = tokio::sync::watch::channel(false);
    let background = lectern::spawn_background(&state, stopped);
    let task = tokio::spawn(async move {
        lectern::http::serve(listener, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        let _ = stop_background.send(true);
        for handle in background {
            let _ = handle.await;
        }
    });
    (base, app.state, tx, task)
}

/// A running server and what it stands on.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub cfg: Config,
    pub app_state: lectern::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _pg: Option<TempPgDb>,
    _s3: Option<s3::S3Server>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, StorageKind::Fs, |_| {}).await
    }

    /// Start with `storage` and a chance to adjust the configuration.
    pub async fn start_with(
        backend: Backend,
        storage: StorageKind,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = TempPgDb::create().await;
                cfg.database_url = Secret::new(db.url.clone());
                Some(db)
            }
        };
        let s3 = match storage {
            StorageKind::Fs => None,
            StorageKind::S3 => {
                let server = s3::S3Server::start().await;
                server.configure(&mut cfg, &format!("bucket-{}", uuid::Uuid::new_v4().simple()));
                Some(server)
            }
        };
        tweak(&mut cfg);
        let (base, app_state, tx, task) = serve(&cfg).await;
        TestServer {
            base,
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            cfg,
            app_state,
            shutdown: Some(tx),
            task: Some(task),
            _pg: pg,
            _s3: s3,
            _dir: dir,
        }
    }

    /// Temporary files of the filesystem store plus multipart uploads left open on S3: what an
    /// upload that did not finish may leave behind.
    pub fn pending_upload_scratch(&self) -> usize {
        let tmp = std::fs::read_dir(self.cfg.data_dir.join("objects").join(".tmp"))
            .map(|d| d.count())
            .unwrap_or(0);
        tmp + self._s3.as_ref().map_or(0, |s| s.pending_multipart_uploads())
    }

    /// The environment a `lectern` command needs to work on this server's database and store.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        let c = &self.cfg;
        let mut env = vec![
            ("LECTERN_DATA_DIR", c.data_dir.display().to_string()),
            ("LECTERN_DATABASE_URL", c.effective_database_url().expose().to_string()),
        ];
        if c.storage == StorageKind::S3 {
            env.extend([
                ("LECTERN_STORAGE", "s3".to_string()),
                ("LECTERN_S3_ENDPOINT", c.s3_endpoint.clone().unwrap_or_default()),
                ("LECTERN_S3_BUCKET", c.s3_bucket.clone().unwrap_or_default()),
                ("LECTERN_S3_ACCESS_KEY", c.s3_access_key.clone().unwrap_or_default()),
                ("LECTERN_S3_SECRET_KEY", c.s3_secret_key.expose().to_string()),
                ("LECTERN_S3_PATH_STYLE", c.s3_path_style.to_string()),
                ("LECTERN_S3_REGION", c.s3_region.clone()),
            ]);
        }
        env
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Send a request with an optional bearer token and JSON body; returns status and JSON
    /// (or `Value::Null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"))
        };
        if status.is_server_error() {
            panic!("server error {status}: {value}");
        }
        (status, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// The value of the `/metrics` sample `name{labels}` (labels as written between the
    /// braces, in the exporter's order), if it is there.
    pub async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let sample =
            if labels.is_empty() { format!("{name} ") } else { format!("{name}{{{labels}}} ") };
        text.lines().find_map(|l| l.strip_prefix(&sample)).map(|v| v.trim().parse().unwrap())
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Sign up `email` (password `password123`) and return the created user.
    pub async fn signup(&self, email: &str) -> Value {
        let (status, user) = self
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": "password123", "name": "Test User"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        user
    }

    /// Log in and return `(access_token, refresh_token)`.
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let (status, body) = self
            .post("/api/v1/auth/login", None, json!({"email": email, "password": password}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    /// The signed-in user's id.
    pub async fn user_id(&self, token: &str) -> i64 {
        let (status, me) = self.get("/api/v1/me", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{me}");
        me["id"].as_i64().unwrap()
    }

    /// Make the admin `admin@example.com` (as `lectern user create` does) and sign in as them.
    pub async fn admin(&self) -> String {
        self.app_state
            .accounts
            .create_user(
                "admin@example.com",
                "password123",
                "Admin",
                lectern::accounts::Role::Admin,
            )
            .await
            .unwrap();
        self.login("admin@example.com", "password123").await.0
    }

    /// Sign up and log in; returns the access and refresh tokens.
    pub async fn new_user(&self, email: &str) -> (String, String) {
        self.signup(email).await;
        self.login(email, "password123").await
    }

    /// Stop this server and start a new one (on a new port) over the same data dir, database
    /// and storage, as after a crash or a deploy.
    pub async fn restart(mut self) -> TestServer {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.app_state.db.close().await;
        let (base, app_state, tx, task) = serve(&self.cfg).await;
        self.base = base;
        self.app_state = app_state;
        self.shutdown = Some(tx);
        self.task = Some(task);
        self
    }

    /// Stop accepting, finish in-flight requests, and wait for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.app_state.db.close().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Poll `check` every 100 ms until it answers `Some`, for up to `limit`; panics naming `what`
/// when it never does.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < limit, "not after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of a listing's `items`, in order.
pub fn ids(list: &Value) -> Vec<i64> {
    list["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

/// Assert the one error shape and its code.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "unexpected error body: {body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
}
