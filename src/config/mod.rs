//! One typed configuration, loaded once and passed down.
//!
//! Precedence, lowest first: built-in defaults → TOML file (`--config FILE`) → `LECTERN_*`
//! environment variables → command-line flags. Keys are the same everywhere: the TOML key
//! `s3_bucket` is the variable `LECTERN_S3_BUCKET`. Nothing below this module reads the
//! environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::commerce::payments::ProviderName;

crate::vocabulary! {
    /// When the transcoder makes the lowest rung first (see [`Config::low_rung_first`]).
    pub enum LowRungFirst: "low-rung-first setting" {
        /// When the whole ladder would fall behind a viewer (below 1.2× real time).
        Auto = "auto",
        Always = "always",
        Never = "never",
    }
}

impl LowRungFirst {
    /// The engine's option: `None` lets it measure.
    pub fn as_option(self) -> Option<bool> {
        match self {
            LowRungFirst::Auto => None,
            LowRungFirst::Always => Some(true),
            LowRungFirst::Never => Some(false),
        }
    }
}

mod env;
mod values;
pub use values::*;

/// Which object store keeps sources, renditions and thumbnails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Files under `<data_dir>/objects`.
    Fs,
    /// An S3-compatible bucket (AWS, MinIO, NCP Object Storage, R2).
    S3,
}

/// What kind of deployment this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Trying it out or developing: the embedded defaults, the `dev` payment provider allowed.
    Development,
    /// Real buyers: refuses settings that would take orders without taking money.
    Production,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything Lectern can be told. Field names are the TOML keys; upper-cased with a
/// `LECTERN_` prefix they are the environment variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP server (API and streaming).
    pub listen: SocketAddr,
    /// Where the embedded defaults keep the SQLite file, stored objects and scratch space.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means a SQLite file in `data_dir`.
    pub database_url: Secret,
    /// Maximum database connections per process.
    pub database_max_connections: u32,
    pub storage: StorageKind,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_bucket: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Secret,
    /// Path-style addressing (`endpoint/bucket/key`), needed by MinIO and most self-hosted stores.
    pub s3_path_style: bool,
    /// Transcoding workers `lectern serve` runs itself; 0 means none.
    pub workers: Option<usize>,
    /// Largest video upload accepted, in bytes (413 past that).
    pub max_upload_bytes: u64,
    /// How long an unfinished tus upload is kept after its last activity, in seconds.
    pub upload_expiry_secs: u64,
    /// How often the serving process does its housekeeping (expiring abandoned uploads,
    /// finishing interrupted ones, removing scratch objects and jobs nothing will finish), in
    /// seconds.
    pub housekeeping_interval_secs: u64,
    /// libx264 preset of the transcoder.
    pub x264_preset: String,
    /// HLS segment length in seconds.
    pub segment_seconds: f64,
    /// Whether the transcoder makes the lowest rung first, in a pass of its own, so that a
    /// viewer who starts as soon as the video is playable never catches up with the encoder:
    /// `auto` (when the whole ladder runs below 1.2× real time), `always` or `never`.
    pub low_rung_first: LowRungFirst,
    /// How long a worker's claim on a job lasts without a heartbeat, in seconds.
    pub job_lease_secs: u64,
    /// Attempts per transcode job before it fails for good.
    pub job_max_attempts: u32,
    /// How often an idle worker looks for work, in milliseconds.
    pub worker_poll_ms: u64,
    /// How long a stopping worker may spend finishing its job before releasing it, in seconds.
    pub worker_grace_secs: u64,
    /// Playback-token keys, `kid:secret[,kid:secret…]`: the first signs, all verify (rotation).
    /// Empty: one key is made once and kept in `data_dir`.
    pub playback_keys: Secret,
    /// Lifetime of a playback token, in seconds.
    pub playback_token_ttl_secs: u64,
    /// Playback sessions a student account may have active at once (instructors and admins
    /// have no limit); 0: no limit.
    pub max_concurrent_streams: u64,
    /// A session is active while its playlists or key were fetched within this many seconds.
    pub stream_idle_secs: u64,
    /// Seconds of video after which a player fetches the key again: media playlists repeat the
    /// key line under a new URI, so a playing session keeps showing it is alive (0: never).
    pub key_refresh_secs: u64,
    /// Encrypt HLS segments with a per-video AES-128 key (CDN-safe: segments cacheable publicly,
    /// playlists and key token-gated). Off: segments are token-gated instead.
    pub hls_encryption: bool,
    /// Payment provider: `dev` (approves any key except `fail_…`) or `toss` (Toss Payments).
    pub payment_provider: ProviderName,
    /// Toss Payments secret key (`test_sk_…` / `live_sk_…`).
    pub toss_secret_key: Secret,
    /// Base URL of the Toss Payments API (tests point it at a local fake).
    pub toss_api_base: String,
    /// Seconds to wait for the payment provider before leaving an order pending.
    pub payment_timeout_secs: u64,
    /// Refunds are allowed this many days after payment…
    pub refund_window_days: u64,
    /// …and while less than this fraction of the course has been watched.
    pub refund_max_watched_fraction: f64,
    /// Base URL written into playback URLs (e.g. the CDN's); empty means derived from the request.
    pub public_url: Option<String>,
    /// HMAC key for access tokens. Empty: a random key is made once and kept in `data_dir`.
    /// Set it explicitly when several API servers share one database.
    pub jwt_secret: Secret,
    /// Lifetime of an access token, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Failed login attempts per email address per minute (5× that per client address) before
    /// 429; successful logins are not counted (see `accounts::ratelimit`).
    pub login_attempts_per_minute: u32,
    /// Origins allowed by CORS: `*` or a comma-separated list of origins.
    pub cors_origins: String,
    /// Largest JSON request body accepted, in bytes (413 past that).
    pub max_json_body_bytes: usize,
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,lectern=debug`.
    pub log_filter: String,
    // Money never in limbo (issue 8).
    /// `development` or `production`; production refuses to start with the `dev` payment provider.
    pub env: Environment,
    /// How often the payment reconciler settles confirmations and refunds left without an
    /// outcome, in seconds.
    pub reconcile_interval_secs: u64,
    // Serving at the hardware limit (issue 10).
    /// Bytes of published HLS objects (playlists, segments, tracks) each API process keeps in
    /// memory, in front of the object store; 0 turns the cache off.
    pub hls_cache_bytes: u64,
    /// Largest object the HLS cache takes, in bytes; larger ones are streamed from the store.
    pub hls_cache_max_object_bytes: u64,
    /// Seconds an anonymous catalog read (course list, search, course page, categories,
    /// reviews, comments) is served from memory and may be kept by browsers and CDNs
    /// (`Cache-Control: public, max-age`); 0 turns the cache off.
    pub catalog_cache_secs: u64,
    // Webhooks (issue 12).
    /// Let webhook endpoints point at private, loopback and link-local addresses.
    pub webhook_allow_private: bool,
    /// Seconds a receiver has to answer a delivery.
    pub webhook_timeout_secs: u64,
    /// Seconds to wait before each retry of a failed delivery, comma-separated; after the
    /// last, the delivery has failed.
    pub webhook_retry_schedule: String,
    /// Disable an endpoint after this many failed attempts in a row (0: never).
    pub webhook_disable_after_failures: u64,
    /// How often each node looks for due deliveries, in milliseconds.
    pub webhook_poll_ms: u64,
    // Operators' view (issue 12).
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>`.
    pub metrics_token: Secret,
    // Uploads: per-user limits and stalled bodies.
    /// Uploads (tus or streamed `PUT`) one user may have in progress at once (429 past that).
    pub upload_max_concurrent: u64,
    /// Bytes one user's unfinished uploads may add up to (declared lengths, or what has
    /// arrived when no length was declared); 429 past that.
    pub upload_max_bytes_in_progress: u64,
    /// Bytes one user may upload per UTC day (429 past that, until the next day).
    pub upload_daily_quota_bytes: u64,
    /// An upload body that sends nothing for this many seconds is dropped; a tus upload keeps
    /// what arrived before the stall and can be resumed from there.
    pub upload_idle_timeout_secs: u64,
    // Hostile media can't read the host or hang a worker.
    /// Wall-clock time every transcode job may take whatever its length, in seconds (fetching the
    /// source, probing and uploading included).
    pub job_budget_base_secs: u64,
    /// Wall-clock seconds a job may take on top of the base, per second of video.
    pub job_budget_per_video_second: f64,
    /// Most bytes a job's scratch space (the source copy and the outputs) may hold; also the
    /// largest file a transcoding process may write.
    pub job_scratch_budget_bytes: u64,
    /// Address space a transcoding process may use, in bytes.
    pub engine_memory_limit_bytes: u64,
    // Abuse limits.
    /// Reverse proxies whose forwarding headers name the client (see [`TrustedProxies`]).
    pub trusted_proxies: TrustedProxies,
    /// Sign-ups allowed per client address per hour, in a burst or spread out; 0 = no limit.
    pub signups_per_address_per_hour: u32,
    /// Password changes allowed per client address (and per account) per hour; 0 = no limit.
    pub password_changes_per_address_per_hour: u32,
    /// Comments, reviews and review edits allowed per user per minute; 0 = no limit.
    pub posts_per_user_per_minute: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./data"),
            database_url: Secret::default(),
            database_max_connections: 16,
            storage: StorageKind::Fs,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_bucket: None,
            s3_access_key: None,
            s3_secret_key: Secret::default(),
            s3_path_style: false,
            workers: None,
            public_url: None,
            payment_provider: ProviderName::Dev,
            toss_secret_key: Secret::default(),
            toss_api_base: "https://api.tosspayments.com".into(),
            payment_timeout_secs: 10,
            refund_window_days: 7,
            refund_max_watched_fraction: 1.0 / 3.0,
            playback_keys: Secret::default(),
            playback_token_ttl_secs: 2 * 3600,
            max_concurrent_streams: 3,
            stream_idle_secs: 120,
            key_refresh_secs: 30,
            hls_encryption: true,
            max_upload_bytes: 20 * 1024 * 1024 * 1024,
            upload_expiry_secs: 24 * 3600,
            housekeeping_interval_secs: 30,
            x264_preset: "veryfast".into(),
            low_rung_first: LowRungFirst::Auto,
            segment_seconds: 4.0,
            job_lease_secs: 20,
            job_max_attempts: 3,
            worker_poll_ms: 1000,
            worker_grace_secs: 30,
            jwt_secret: Secret::default(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            login_attempts_per_minute: 10,
            cors_origins: "*".into(),
            max_json_body_bytes: 1024 * 1024,
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            env: Environment::Development,
            reconcile_interval_secs: 15,
            hls_cache_bytes: 256 * 1024 * 1024,
            hls_cache_max_object_bytes: 16 * 1024 * 1024,
            catalog_cache_secs: 1,
            webhook_allow_private: false,
            webhook_timeout_secs: 10,
            webhook_retry_schedule: "5,300,1800,7200,18000,36000".into(),
            webhook_disable_after_failures: 100,
            webhook_poll_ms: 1000,
            metrics_token: Secret::default(),
            upload_max_concurrent: 10,
            upload_max_bytes_in_progress: 200 * 1024 * 1024 * 1024,
            upload_daily_quota_bytes: 500 * 1024 * 1024 * 1024,
            upload_idle_timeout_secs: 60,
            // Hostile media can't read the host or hang a worker.
            job_budget_base_secs: 600,
            job_budget_per_video_second: 20.0,
            job_scratch_budget_bytes: 64 * 1024 * 1024 * 1024,
            engine_memory_limit_bytes: 16 * 1024 * 1024 * 1024,
            // Abuse limits.
            trusted_proxies: TrustedProxies::default(),
            signups_per_address_per_hour: 30,
            password_changes_per_address_per_hour: 10,
            posts_per_user_per_minute: 20,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults → `file` (if any) → `LECTERN_*` variables from `env` → `overrides` (flags).
    ///
    /// `env` is passed in (rather than read here) so tests and callers control it.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: impl Serialize,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            fig = fig.merge(Toml::file(file));
        }
        // Variables that name no setting (say `LECTERN_TEST_POSTGRES_URL`) belong to someone else.
        let known = serde_json::to_value(Config::default()).expect("config serializes");
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("LECTERN_").map(|k| (k.to_ascii_lowercase(), v)))
            .filter(|(k, _)| known.get(k).is_some())
            .collect();
        for (k, v) in vars {
            let value = env::env_value(&k, &v)?;
            fig = fig.merge(Serialized::default(&k, value));
        }
        fig = fig.merge(Serialized::defaults(overrides));
        let cfg: Config = fig.extract().map_err(|e| ConfigError::Parse(Box::new(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_services()?;
        self.validate_media()?;
        self.validate_limits()
    }

    /// The store, the database and the payment provider.
    fn validate_services(&self) -> Result<(), ConfigError> {
        if self.storage == StorageKind::S3 && self.s3_bucket.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid("LECTERN_STORAGE=s3 needs LECTERN_S3_BUCKET".into()));
        }
        let url = self.database_url.expose();
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !url.is_empty() && !known.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError::Invalid(
                "LECTERN_DATABASE_URL must start with sqlite: or postgres://".into(),
            ));
        }
        if self.env == Environment::Production && self.payment_provider == ProviderName::Dev {
            return Err(ConfigError::Invalid(
                "LECTERN_ENV=production refuses the dev payment provider, which approves every order without taking money; \
                 set LECTERN_PAYMENT_PROVIDER=toss and LECTERN_TOSS_SECRET_KEY"
                    .into(),
            ));
        }
        if self.payment_provider == ProviderName::Toss && self.toss_secret_key.is_empty() {
            return Err(ConfigError::Invalid(
                "payment_provider = toss needs LECTERN_TOSS_SECRET_KEY".into(),
            ));
        }
        Ok(())
    }

    /// The transcoding settings.
    fn validate_media(&self) -> Result<(), ConfigError> {
        if !(1.0..=30.0).contains(&self.segment_seconds) {
            return Err(ConfigError::Invalid("segment_seconds must be between 1 and 30".into()));
        }
        const PRESETS: &[&str] = &[
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
            "placebo",
        ];
        if !PRESETS.contains(&self.x264_preset.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "x264_preset must be one of {}",
                PRESETS.join(", ")
            )));
        }
        Ok(())
    }

    /// Refund policy, job and webhook schedules, budgets, intervals and lifetimes.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.refund_max_watched_fraction) {
            return Err(ConfigError::Invalid(
                "refund_max_watched_fraction must be between 0 and 1".into(),
            ));
        }
        if self.job_lease_secs < 3 || self.job_max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "job_lease_secs must be at least 3 and job_max_attempts at least 1".into(),
            ));
        }
        if self
            .webhook_retry_schedule
            .split(',')
            .any(|s| !s.trim().is_empty() && s.trim().parse::<u64>().is_err())
        {
            return Err(ConfigError::Invalid(
                "webhook_retry_schedule must be comma-separated seconds, e.g. 5,300,1800".into(),
            ));
        }
        if self.job_budget_base_secs == 0
            || !(self.job_budget_per_video_second.is_finite()
                && self.job_budget_per_video_second >= 0.0)
            || self.job_scratch_budget_bytes == 0
            || self.engine_memory_limit_bytes < 256 * 1024 * 1024
        {
            return Err(ConfigError::Invalid(
                "job budgets must be positive and engine_memory_limit_bytes at least 256 MiB"
                    .into(),
            ));
        }
        if self.housekeeping_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "housekeeping_interval_secs must be at least 1".into(),
            ));
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return Err(ConfigError::Invalid("token lifetimes must be positive".into()));
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> Secret {
        if self.database_url.is_empty() {
            Secret::new(format!("sqlite://{}?mode=rwc", self.data_dir.join("lectern.db").display()))
        } else {
            self.database_url.clone()
        }
    }

    /// The delays before each retry of a failed webhook delivery, in seconds.
    pub fn webhook_retry_schedule(&self) -> Vec<u64> {
        self.webhook_retry_schedule.split(',').filter_map(|s| s.trim().parse().ok()).collect()
    }

    /// Number of local transcoding workers: configured, or one per CPU.
    pub fn effective_workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// Allowed CORS origins; `None` means any origin.
    pub fn cors_origin_list(&self) -> Option<Vec<String>> {
        let s = self.cors_origins.trim();
        if s == "*" || s.is_empty() {
            None
        } else {
            Some(s.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_fills_typed_settings_and_ignores_foreign_variables() {
        let cfg = Config::load(
            None,
            env(&[
                ("LECTERN_WORKERS", "0"),
                ("LECTERN_S3_PATH_STYLE", "true"),
                ("LECTERN_S3_SECRET_KEY", "12345"),
                ("LECTERN_LISTEN", "0.0.0.0:9000"),
                ("LECTERN_TEST_POSTGRES_URL", "postgres://elsewhere"),
                ("PATH", "/bin"),
            ]),
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(cfg.workers, Some(0));
        assert!(cfg.s3_path_style);
        assert_eq!(cfg.s3_secret_key.expose(), "12345");
        assert_eq!(cfg.listen.port(), 9000);
    }

    #[test]
    fn flags_override_environment() {
        let cfg = Config::load(
            None,
            env(&[("LECTERN_DATA_DIR", "/env")]),
            serde_json::json!({"data_dir": "/flag"}),
        )
        .unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/flag"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cfg = Config {
            database_url: Secret::new("postgres://user:hunter2@db/lectern"),
            s3_secret_key: Secret::new("AKIASECRET"),
            jwt_secret: Secret::new("jwt-signing-key"),
            ..Config::default()
        };
        let shown = format!("{cfg:?}");
        for secret in ["hunter2", "AKIASECRET", "jwt-signing-key"] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let s3_without_bucket =
            Config::load(None, env(&[("LECTERN_STORAGE", "s3")]), serde_json::json!({}));
        assert!(s3_without_bucket.unwrap_err().to_string().contains("LECTERN_S3_BUCKET"));
        let mysql = Config::load(
            None,
            env(&[("LECTERN_DATABASE_URL", "mysql://x")]),
            serde_json::json!({}),
        );
        assert!(mysql.is_err());
        assert!(
            Config::load(None, env(&[("LECTERN_STORAGE", "ftp")]), serde_json::json!({})).is_err()
        );
        let typo = Config::load(
            None,
            env(&[("LECTERN_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/33")]),
            serde_json::json!({}),
        );
        assert!(typo.unwrap_err().to_string().contains("10.0.0.0/33"));
        let never = Config::load(
            None,
            env(&[("LECTERN_HOUSEKEEPING_INTERVAL_SECS", "0")]),
            serde_json::json!({}),
        );
        assert!(never.unwrap_err().to_string().contains("housekeeping_interval_secs"));
    }

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        let cfg = Config::load(
            None,
            env(&[("LECTERN_TRUSTED_PROXIES", " 127.0.0.1, ::1 ,10.0.0.0/8")]),
            serde_json::json!({}),
        )
        .unwrap();
        let p = &cfg.trusted_proxies;
        for yes in ["127.0.0.1", "::1", "10.20.30.40", "::ffff:127.0.0.1"] {
            assert!(p.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in ["127.0.0.2", "11.0.0.1", "::2"] {
            assert!(!p.contains(no.parse().unwrap()), "{no}");
        }
        // It survives the JSON round trip that hands the configuration to worker processes.
        let again: Config = serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(&again.trusted_proxies, p);
        assert!(Config::default().trusted_proxies.is_empty());
    }

    #[test]
    fn production_refuses_the_dev_payment_provider() {
        let err = Config::load(None, env(&[("LECTERN_ENV", "production")]), serde_json::json!({}))
            .unwrap_err();
        assert!(err.to_string().contains("dev payment provider"), "{err}");
        let toss = Config::load(
            None,
            env(&[
                ("LECTERN_ENV", "production"),
                ("LECTERN_PAYMENT_PROVIDER", "toss"),
                ("LECTERN_TOSS_SECRET_KEY", "live_sk_x"),
            ]),
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(toss.env, Environment::Production);
        assert_eq!(
            Config::load(None, env(&[]), serde_json::json!({})).unwrap().env,
            Environment::Development
        );
        assert!(
            Config::load(None, env(&[("LECTERN_ENV", "staging")]), serde_json::json!({})).is_err()
        );
    }
}
