//! The error policy.
//!
//! Every failure a client sees is one JSON shape, `{"error": {"code", "message"}}`, with a
//! stable snake_case `code` that clients may match on and a status chosen by the variant:
//! the doc comment on each variant of [`ApiError`] says which. Domain modules return their
//! own `thiserror` enums and convert into `ApiError` at the HTTP edge.
//!
//! A database that cannot serve (see [`crate::db::is_outage`]: pool exhausted or closed, broken
//! connection, server shutting down, schema missing) is [`ApiError::Unavailable`], a 503 the
//! client may retry — decided here, at the root, for every `sqlx::Error` and for every
//! internal error whose cause chain holds one, so that no handler can turn an outage into a
//! 404 or a 500. Handlers never `map_err(|_| …)` a fallible query into "not found".
//!
//! Other internal failures (storage unreachable, a bug) become [`ApiError::Internal`]: the
//! cause is logged with its context and the client gets a generic 500 with no details. A 500
//! is always a bug, never a way to report bad input.
//!
//! Unique-constraint violations are turned into 409s in one place,
//! [`crate::db::is_unique_violation`], not in every handler.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The one error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and for people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case, safe to match on.
    #[schema(example = "invalid_credentials")]
    pub code: String,
    /// Human readable; may change between versions.
    pub message: String,
}

/// An error as the HTTP API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a value is out of range.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no credentials, or credentials that are invalid or expired.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// 402: the payment provider declined the payment; the order stays payable.
    #[error("{message}")]
    PaymentRequired { code: &'static str, message: String },
    /// 403: the caller is known but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 404: no such thing, or a thing the caller may not know exists.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// 410: it existed but is gone for good (an expired upload).
    #[error("{what} is gone")]
    Gone { what: &'static str },
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 423: someone else is writing this resource right now; retry shortly.
    #[error("{message}")]
    Locked { code: &'static str, message: String },
    /// 409: conflicts with the current state (duplicate, wrong state).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: the body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body's media type is not accepted here.
    #[error("{message}")]
    UnsupportedMediaType { code: &'static str, message: String },
    /// 422: well-formed but semantically invalid.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 429: too many attempts; retry after the given number of seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// 503: a dependency is down (the database, for `/readyz` and any request that needs it).
    #[error("{message}")]
    Unavailable { message: String },
    /// 500: a bug or an outage. Logged with context, answered without details.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
    /// 408: the request body stopped arriving for longer than allowed.
    #[error("{message}")]
    RequestTimeout { code: &'static str, message: String },
    /// 429: a per-account limit is reached (uploads in progress, their bytes, the daily
    /// quota); `Retry-After` says when it frees up, if that is known.
    #[error("{message}")]
    LimitReached { code: &'static str, message: String, retry_after_secs: Option<u64> },
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized { code, message: message.into() }
    }
    pub fn payment_required(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::PaymentRequired { code, message: message.into() }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Forbidden { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict { code, message: message.into() }
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable { code, message: message.into() }
    }
    pub fn not_found(what: &'static str) -> Self {
        ApiError::NotFound { what }
    }
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Locked { .. } => StatusCode::LOCKED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::LimitReached { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::PaymentRequired { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Locked { code, .. }
            | ApiError::UnsupportedMediaType { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::RequestTimeout { code, .. }
            | ApiError::LimitReached { code, .. } => code,
            ApiError::NotFound { .. } => "not_found",
            ApiError::Gone { .. } => "gone",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database")).classified()
    }
}

impl ApiError {
    /// An internal error caused by a database outage becomes [`ApiError::Unavailable`].
    fn classified(self) -> Self {
        match self {
            ApiError::Internal(err) => {
                match err
                    .chain()
                    .find_map(|cause| cause.downcast_ref::<sqlx::Error>())
                    .filter(|e| crate::db::is_outage(e))
                {
                    Some(_) => {
                        tracing::warn!(error = format!("{err:#}"), "database unavailable");
                        ApiError::Unavailable {
                            message: "the database is unavailable; retry shortly".into(),
                        }
                    }
                    None => ApiError::Internal(err),
                }
            }
            other => other,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = self.classified();
        let status = this.status();
        let message = match &this {
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "internal error; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody { error: ErrorDetail { code: this.code().to_string(), message } };
        let mut resp = (status, axum::Json(body)).into_response();
        let retry_after = match this {
            ApiError::TooManyRequests { retry_after_secs } => Some(retry_after_secs),
            ApiError::LimitReached { retry_after_secs, .. } => retry_after_secs,
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

/// Result type of handlers and of domain functions that speak HTTP errors directly.
pub type ApiResult<T> = Result<T, ApiError>;
