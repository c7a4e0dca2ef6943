//! HTTP handlers for watch progress and "my courses".

use axum::Router;

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
