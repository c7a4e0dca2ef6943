//! Extractors that answer bad input in the one error shape: JSON bodies and bearer auth.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::AppState;
use crate::accounts::Caller;
use crate::error::ApiError;

/// `axum::Json`, with its rejections turned into [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rej: JsonRejection) -> Self {
        match rej {
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("malformed_json", e.body_text()),
            JsonRejection::JsonDataError(e) => ApiError::unprocessable("invalid_body", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType {
                code: "expected_json",
                message: "send the body as JSON with Content-Type: application/json".into(),
            },
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::bad_request("bad_body", other.body_text()),
        }
    }
}

/// The caller, from a valid `Authorization: Bearer <access token>`; 401 otherwise.
#[derive(Debug, Clone)]
pub struct Auth(pub Caller);

fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let bad = || ApiError::unauthorized("invalid_token", "Authorization must be `Bearer <access token>`");
    let Ok(text) = value.to_str() else { return Some(Err(bad())) };
    let Some((scheme, token)) = text.split_once(' ') else { return Some(Err(bad())) };
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Some(Err(bad()));
    }
    Some(Ok(token.trim()))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts) {
            None => Err(ApiError::unauthorized("missing_token", "sign in: this needs an access token")),
            Some(token) => Ok(Auth(state.accounts.authenticate(token?).await?)),
        }
    }
}

/// `Option<Auth>`: no header means anonymous; a header that is present must be valid.
impl OptionalFromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match bearer(parts) {
            None => Ok(None),
            Some(token) => Ok(Some(Auth(state.accounts.authenticate(token?).await?))),
        }
    }
}
