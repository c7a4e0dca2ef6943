//! Environment values: which `LECTERN_*` settings are numbers, floats or booleans.

use super::ConfigError;

/// Environment values are strings; numeric and boolean settings are parsed here so that
/// `LECTERN_WORKERS=0` fills a number, while a secret such as `LECTERN_S3_SECRET_KEY=1234`
/// stays a string.
pub(super) fn env_value(key: &str, v: &str) -> Result<figment::value::Value, ConfigError> {
    use figment::value::Value;
    const NUMBERS: &[&str] = &[
        "database_max_connections",
        "workers",
        "access_token_ttl_secs",
        "refresh_token_ttl_secs",
        "login_attempts_per_minute",
        "max_json_body_bytes",
        "max_upload_bytes",
        "upload_expiry_secs",
        "housekeeping_interval_secs",
        "job_lease_secs",
        "job_max_attempts",
        "worker_poll_ms",
        "worker_grace_secs",
        "playback_token_ttl_secs",
        "max_concurrent_streams",
        "stream_idle_secs",
        "key_refresh_secs",
        "payment_timeout_secs",
        "refund_window_days",
        "reconcile_interval_secs",
        "hls_cache_bytes",
        "hls_cache_max_object_bytes",
        "catalog_cache_secs",
        "webhook_timeout_secs",
        "webhook_disable_after_failures",
        "webhook_poll_ms",
        // Uploads
        "upload_max_concurrent",
        "upload_max_bytes_in_progress",
        "upload_daily_quota_bytes",
        "upload_idle_timeout_secs",
        // Hostile media can't read the host or hang a worker.
        "job_budget_base_secs",
        "job_scratch_budget_bytes",
        "engine_memory_limit_bytes",
        // Abuse limits.
        "signups_per_address_per_hour",
        "password_changes_per_address_per_hour",
        "posts_per_user_per_minute",
    ];
    const FLOATS: &[&str] = &[
        "segment_seconds",
        "refund_max_watched_fraction",
        // Hostile media can't read the host or hang a worker.
        "job_budget_per_video_second",
    ];
    const BOOLS: &[&str] = &["s3_path_style", "hls_encryption", "webhook_allow_private"];
    let bad = || {
        ConfigError::Invalid(format!("LECTERN_{} = {v:?} is not valid", key.to_ascii_uppercase()))
    };
    if NUMBERS.contains(&key) {
        v.trim().parse::<u64>().map(Value::from).map_err(|e| {
            ConfigError::Invalid(format!(
                "LECTERN_{} = {v:?} is not a whole number of at least 0 ({e})",
                key.to_ascii_uppercase()
            ))
        })
    } else if FLOATS.contains(&key) {
        v.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from).ok_or_else(bad)
    } else if BOOLS.contains(&key) {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::from(true)),
            "0" | "false" | "no" | "off" => Ok(Value::from(false)),
            _ => Err(bad()),
        }
    } else {
        Ok(Value::from(v.to_string()))
    }
}
