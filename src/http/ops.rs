//! Operations endpoints: liveness, readiness, Prometheus metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::Error;
use crate::http::error::ApiResult;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

/// Health answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness answer.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ok`.
    pub status: &'static str,
    /// `development` or `production` (`LECTERN_ENV`).
    pub environment: crate::config::Environment,
    /// The payment provider orders are paid through: `dev` takes no money.
    pub payment_provider: crate::commerce::payments::ProviderName,
}

/// The database and the object store both answer; says which payment provider is in use.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = crate::http::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<axum::Json<Ready>> {
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err(Error::Unavailable { message: "database unreachable".into() });
    }
    if let Err(e) = state.storage.check().await {
        tracing::warn!(error = %e, "readiness: storage unreachable");
        return Err(Error::Unavailable { message: "object storage unreachable".into() });
    }
    Ok(axum::Json(Ready {
        status: "ok",
        environment: state.cfg.env,
        payment_provider: state.payments.provider.name(),
    }))
}

/// Prometheus text exposition of the process's metrics. With `metrics_token` configured, only
/// for `Authorization: Bearer <metrics_token>`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain"), (status = 401, body = crate::http::error::ErrorBody)))]
pub async fn metrics_text(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let required = state.cfg.metrics_token.expose();
    if !required.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compared as digests, so the comparison's timing says nothing about the token.
        let matches = given.is_some_and(|g| {
            use sha2::Digest;
            sha2::Sha256::digest(g.as_bytes()) == sha2::Sha256::digest(required.as_bytes())
        });
        if !matches {
            return Err(Error::unauthenticated(
                "metrics_token_required",
                "/metrics needs Authorization: Bearer <metrics token>",
            ));
        }
    }
    record_queue_figures(&state).await;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()))
}

/// Set the gauges read off the database at scrape time: the job queues by kind and the
/// transcodes' outcomes and speed. They are the cluster's, not this process's (every node
/// reports the same: chart them with `max`), so transcodes made by worker processes and other
/// machines count. A database that does not answer leaves the last values.
async fn record_queue_figures(state: &AppState) {
    use metrics::gauge;
    match crate::media::queue::figures(&state.db).await {
        Ok(f) => {
            gauge!("lectern_queue_jobs", "kind" => "transcode", "state" => "waiting")
                .set(f.queued as f64);
            gauge!("lectern_queue_jobs", "kind" => "transcode", "state" => "running")
                .set(f.running as f64);
            gauge!("lectern_queue_oldest_due_seconds", "kind" => "transcode")
                .set(f.oldest_due_secs as f64);
            gauge!("lectern_transcodes_finished", "result" => "ready", "reason" => "")
                .set(f.done as f64);
            for (reason, n) in f.failed {
                gauge!("lectern_transcodes_finished", "result" => "failed", "reason" => reason.as_str())
                    .set(n as f64);
            }
            gauge!("lectern_transcodes_recent").set(f.recent_done as f64);
            if let Some(speed) = f.recent_speed {
                gauge!("lectern_transcode_speed_realtime").set(speed);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the transcode queue's figures failed"),
    }
    match crate::webhooks::db::queue_figures(&state.db, crate::db::now()).await {
        Ok((waiting, delivering, oldest_due)) => {
            gauge!("lectern_queue_jobs", "kind" => "webhook", "state" => "waiting")
                .set(waiting as f64);
            gauge!("lectern_queue_jobs", "kind" => "webhook", "state" => "running")
                .set(delivering as f64);
            gauge!("lectern_queue_oldest_due_seconds", "kind" => "webhook").set(oldest_due as f64);
        }
        Err(e) => tracing::warn!(error = %e, "reading the webhook queue's figures failed"),
    }
}

/// The process-wide metrics recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's); then ours
            // renders only what it was given directly, which is still correct, just emptier.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
