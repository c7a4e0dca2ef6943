//! HTTP handlers for the cart, orders, payments, refunds and the instructor dashboard.

use axum::Router;
use utoipa::OpenApi;

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths())]
pub struct CommerceApi;
