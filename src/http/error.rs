//! The HTTP edge of the error policy (see [`crate::error`]): the status each domain
//! [`Error`] variant becomes, and the one JSON error body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

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

/// Result type of handlers: a domain error answers itself (see [`status`]).
pub type ApiResult<T> = Result<T, Error>;

/// The status a domain error is answered with.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::Malformed { .. } => StatusCode::BAD_REQUEST,
        Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Error::Denied { .. } => StatusCode::FORBIDDEN,
        Error::PaymentDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Gone { .. } => StatusCode::GONE,
        Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::Busy { .. } => StatusCode::LOCKED,
        Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMedia { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Stalled { .. } => StatusCode::REQUEST_TIMEOUT,
        Error::RateLimited { .. } | Error::LimitReached { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let this = self.classified();
        let message = match &this {
            Error::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "internal error; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody { error: ErrorDetail { code: this.code().to_string(), message } };
        let mut resp = (status(&this), axum::Json(body)).into_response();
        if let Some(secs) = this.retry_after_secs() {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

/// The answer for a path that exists but not with this method.
pub fn method_not_allowed() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "method_not_allowed".into(),
            message: "method not allowed".into(),
        },
    };
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
