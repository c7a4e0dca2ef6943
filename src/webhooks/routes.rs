//! HTTP handlers for webhook endpoints and their delivery logs.

use crate::types::{DeliveryId, EndpointId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::{CreatedEndpoint, Delivery, Endpoint, EndpointInput};
use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::error::ErrorBody;
use crate::http::extract::{Auth, Json, Path};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks", post(create_webhook).get(list_webhooks))
        .route("/api/v1/webhooks/{webhook_id}", patch(update_webhook).delete(delete_webhook))
        .route("/api/v1/webhooks/{webhook_id}/deliveries", get(list_deliveries))
        .route(
            "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
            post(resend_delivery),
        )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(create_webhook, list_webhooks, update_webhook, delete_webhook, list_deliveries, resend_delivery),
    tags((name = "webhooks", description = "Signed event deliveries (Standard Webhooks)"))
)]
pub struct WebhooksApi;

/// A webhook endpoint to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http(s)` URL, at most 2,000 characters, on a public address.
    #[schema(max_length = 2000, example = "https://school.example/hooks/lectern")]
    pub url: String,
    /// Event types: `video.playable`, `video.ready`, `video.failed`, `course.published`,
    /// `order.paid`, `order.refunded`, `enrollment.created`, `enrollment.revoked`.
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Register an endpoint. Admins' endpoints hear every event, instructors' the events of their
/// own courses. The answer carries the signing secret; it is not shown again.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook, security(("bearer" = [])),
    responses((status = 201, body = CreatedEndpoint), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "students cannot register webhooks"),
              (status = 422, body = ErrorBody, description = "`invalid_url` (not http(s), too long, private address), `unknown_event`, `no_events`")))]
pub async fn create_webhook(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<CreateWebhook>,
) -> ApiResult<(StatusCode, axum::Json<CreatedEndpoint>)> {
    let input = EndpointInput {
        url: Some(req.url),
        events: Some(req.events),
        description: req.description,
        enabled: None,
    };
    Ok((StatusCode::CREATED, axum::Json(super::create(&st.db, &st.cfg, &caller, input).await?)))
}

/// The caller's endpoints (an admin's: all of them).
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhooks {
    pub items: Vec<Endpoint>,
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = Webhooks), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(st): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<axum::Json<Webhooks>> {
    Ok(axum::Json(Webhooks { items: super::list(&st.db, &caller).await? }))
}

/// Changes to an endpoint; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(max_length = 2000)]
    pub url: Option<String>,
    #[schema(min_items = 1)]
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Switch deliveries off or on (on again also forgets past failures).
    pub enabled: Option<bool>,
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks", request_body = UpdateWebhook,
    params(("webhook_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Endpoint), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_webhook(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<EndpointId>,
    Json(req): Json<UpdateWebhook>,
) -> ApiResult<axum::Json<Endpoint>> {
    let input = EndpointInput {
        url: req.url,
        events: req.events,
        description: req.description,
        enabled: req.enabled,
    };
    Ok(axum::Json(super::update(&st.db, &st.cfg, &caller, id, input).await?))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks", params(("webhook_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<EndpointId>,
) -> ApiResult<StatusCode> {
    super::delete(&st.db, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's newest delivery attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deliveries {
    pub items: Vec<Delivery>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks", params(("webhook_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = Deliveries), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<EndpointId>,
) -> ApiResult<axum::Json<Deliveries>> {
    Ok(axum::Json(Deliveries { items: super::deliveries(&st.db, &caller, id).await? }))
}

/// Send a delivery's event again, now (a new series of attempts).
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend", tag = "webhooks",
    params(("webhook_id" = i64, Path), ("delivery_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 202), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resend_delivery(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path((id, delivery)): Path<(EndpointId, DeliveryId)>,
) -> ApiResult<StatusCode> {
    super::resend(&st.db, &caller, id, delivery).await?;
    Ok(StatusCode::ACCEPTED)
}
