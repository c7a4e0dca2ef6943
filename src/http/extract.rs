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

/// `axum::extract::Query`, with its rejection in the one error shape (400).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rej: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rej.body_text())
    }
}

/// `axum::extract::Path`, with its rejection in the one error shape: a malformed id is a 404,
/// since no such thing can exist.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        ApiError::not_found("resource")
    }
}

/// `?page=&per_page=` of list endpoints: pages from 1, 20 per page by default, at most 100.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

impl PageParams {
    /// `(page, per_page)`, checked.
    pub fn resolve(&self) -> Result<(i64, i64), ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        if page < 1 || !(1..=100).contains(&per_page) || page > 1_000_000 {
            return Err(ApiError::bad_request("invalid_page", "page starts at 1 and per_page is 1 to 100"));
        }
        Ok((page, per_page))
    }
}

/// One page of a list, as every list endpoint answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}
