//! The application: [`AppState`], what every request handler and background loop may use,
//! and [`App::start`], which makes it from a configuration (data dir, database, migrations,
//! storage, keys). Routers take the state from here, so `http` and the features' `routes.rs`
//! files depend on this module and not on each other.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::accounts::tokens::AccessTokens;
use crate::accounts::Accounts;
use crate::config::{Config, Secret, StorageKind};
use crate::db::{Backend, Db};
use crate::quotas::Quotas;
use crate::storage::Storage;
use metrics_exporter_prometheus::PrometheusHandle;

/// Everything a handler may need: one shared [`State`], so a clone (every extractor and
/// middleware takes one per request) is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<State>);

impl std::ops::Deref for AppState {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct State {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub storage: Storage,
    pub accounts: Accounts,
    pub playback: Arc<crate::playback::Playback>,
    /// The payment provider and the payment work in flight.
    pub payments: Arc<crate::commerce::Payments>,
    /// Uploads and their housekeeping.
    pub uploads: crate::media::Uploads,
    pub metrics: PrometheusHandle,
    /// Per-address and per-user quotas on sign-ups, password changes and posts.
    pub quotas: Arc<Quotas>,
    /// Anonymous catalog reads, kept for `catalog_cache_secs`.
    pub public_cache: Arc<crate::http::cache::PublicCache>,
}

/// A started Lectern: configuration, database and storage, ready to serve.
pub struct App {
    pub state: AppState,
}

impl App {
    /// Prepare the data dir, connect to and migrate the database, open the object store.
    pub async fn start(cfg: Config) -> anyhow::Result<App> {
        create_private_dir(&cfg.data_dir)
            .await
            .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
        let db = Db::connect(&cfg.effective_database_url(), cfg.database_max_connections).await?;
        db.migrate().await?;
        let storage = crate::storage::open(&cfg).await.context("opening object storage")?;
        let jwt_secret = jwt_secret(&cfg, db.backend()).await?;
        let tokens = Arc::new(AccessTokens::new(&jwt_secret, cfg.access_token_ttl_secs));
        let accounts = Accounts::new(
            db.clone(),
            tokens,
            cfg.refresh_token_ttl_secs,
            cfg.login_attempts_per_minute,
        );
        let keys = if cfg.playback_keys.is_empty() {
            format!("local:{}", local_secret(&cfg, "playback-secret").await?.expose())
        } else {
            cfg.playback_keys.expose().to_string()
        };
        let keys =
            crate::playback::tokens::PlaybackKeys::parse(&keys, cfg.playback_token_ttl_secs)?;
        let objects = crate::playback::cache::ObjectCache::new(
            cfg.hls_cache_bytes,
            cfg.hls_cache_max_object_bytes,
        );
        let limits = crate::playback::sessions::StreamLimits {
            max_concurrent: cfg.max_concurrent_streams,
            idle_secs: cfg.stream_idle_secs as i64,
            key_refresh_secs: cfg.key_refresh_secs,
        };
        let playback = Arc::new(crate::playback::Playback::new(keys, objects, limits));
        let payments = Arc::new(crate::commerce::Payments::from_config(&cfg));
        let quotas = Arc::new(Quotas::new(&cfg));
        let uploads = crate::media::Uploads::new(
            db.clone(),
            storage.clone(),
            crate::media::UploadSettings::from_config(&cfg),
        );
        let public_cache = Arc::new(crate::http::cache::PublicCache::new(cfg.catalog_cache_secs));
        let state = AppState(Arc::new(State {
            cfg: Arc::new(cfg),
            db,
            storage,
            accounts,
            playback,
            payments,
            uploads,
            metrics: crate::http::ops::metrics_handle(),
            quotas,
            public_cache,
        }));
        Ok(App { state })
    }

    /// What a worker process needs, without migrating (the serving process does that).
    pub async fn worker_context(
        settings: crate::media::worker::WorkerSettings,
    ) -> anyhow::Result<crate::media::worker::WorkerCtx> {
        let cfg = settings.to_config();
        let db = Db::connect(&cfg.effective_database_url(), 4).await?;
        let storage = crate::storage::open(&cfg).await.context("opening object storage")?;
        crate::media::worker::WorkerCtx::new(settings, db, storage)
    }

    /// The warning to print at start-up when orders are paid without money changing hands.
    pub fn payment_warning(&self) -> Option<&'static str> {
        (self.state.payments.provider.name() == crate::commerce::payments::ProviderName::Dev).then_some(
            "the payment provider is `dev`: every order is approved without taking money. \
             Set LECTERN_PAYMENT_PROVIDER=toss for real payments; LECTERN_ENV=production refuses to start with `dev`.",
        )
    }

    /// A human summary of where things are kept, printed at start-up.
    pub fn describe(&self) -> String {
        let cfg = &self.state.cfg;
        let db = match self.state.db.backend() {
            Backend::Sqlite if cfg.database_url.is_empty() => {
                format!("SQLite at {}", cfg.data_dir.join("lectern.db").display())
            }
            Backend::Sqlite => "SQLite (LECTERN_DATABASE_URL)".to_string(),
            Backend::Postgres => "PostgreSQL (LECTERN_DATABASE_URL)".to_string(),
        };
        let objects = match cfg.storage {
            StorageKind::Fs => format!("files under {}", cfg.data_dir.join("objects").display()),
            StorageKind::S3 => format!(
                "S3 bucket {} at {}",
                cfg.s3_bucket.as_deref().unwrap_or("?"),
                cfg.s3_endpoint.as_deref().unwrap_or("the AWS default endpoint")
            ),
        };
        format!(
            "data dir: {}\ndatabase: {db}\nobjects:  {objects}\ncreate an admin with: lectern user create --email you@example.com --password '…' --role admin",
            cfg.data_dir.display()
        )
    }
}

/// Start the loops the serving process runs beside the HTTP server: housekeeping
/// ([`crate::media::maintenance`], every `housekeeping_interval_secs`), the payment reconciler and
/// webhook delivery. Each ends once `shutdown` turns true; await the handles to see them out.
///
/// The transcoding worker pool is not one of them: it supervises processes of the `lectern`
/// executable, which `lectern serve` starts itself.
pub fn spawn_background(
    state: &AppState,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let cfg = &state.cfg;
    vec![
        tokio::spawn(crate::media::maintenance(
            state.uploads.clone(),
            Duration::from_secs(cfg.housekeeping_interval_secs.max(1)),
            shutdown.clone(),
        )),
        tokio::spawn(crate::commerce::reconcile::run(
            state.db.clone(),
            state.payments.clone(),
            Duration::from_secs(cfg.reconcile_interval_secs.max(1)),
            shutdown.clone(),
        )),
        tokio::spawn(crate::webhooks::delivery::run(
            state.db.clone(),
            crate::webhooks::delivery::Settings::from_config(cfg),
            shutdown,
        )),
    ]
}

/// The configured access-token key, or one made once and kept in the data dir.
async fn jwt_secret(cfg: &Config, backend: Backend) -> anyhow::Result<Secret> {
    if !cfg.jwt_secret.is_empty() {
        return Ok(cfg.jwt_secret.clone());
    }
    if backend == Backend::Postgres {
        tracing::warn!("LECTERN_JWT_SECRET is not set: tokens are signed with a key kept in this machine's data dir; set it when several servers share the database");
    }
    local_secret(cfg, "jwt-secret").await
}

/// A random secret made once and kept in the data dir under `name`.
async fn local_secret(cfg: &Config, name: &str) -> anyhow::Result<Secret> {
    let path = cfg.data_dir.join(name);
    match tokio::fs::read_to_string(&path).await {
        Ok(s) if s.trim().len() >= 32 => Ok(Secret::new(s.trim())),
        _ => {
            use rand::RngCore;
            let mut raw = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut raw);
            let secret = hex::encode(raw);
            write_private(&path, &secret)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Secret::new(secret))
        }
    }
}

/// Create `dir` (and missing parents) readable by this user only: it holds the database, the
/// signing keys and every upload. An existing directory keeps the mode its operator gave it,
/// with a warning when others may read it.
async fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let mode = std::fs::metadata(&dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data directory is readable by other users; chmod 700 it");
        }
        Ok(())
    })
    .await?
}

async fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    let contents = contents.to_string();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(contents.as_bytes())
    })
    .await?
}
