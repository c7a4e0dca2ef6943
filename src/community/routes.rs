//! HTTP handlers for the reviews and comments.

use axum::Router;
use utoipa::OpenApi;

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths())]
pub struct CommunityApi;
