//! HTTP handlers for the cart, orders, payments, refunds and the instructor dashboard.

use crate::types::{CourseId, OrderId};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::cart::Cart;
use super::dashboard::Dashboard;
use super::orders::{Confirm, Order, PlaceOrder};
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};

use crate::app::AppState;
use crate::http::extract::{Auth, Json, PageParams, Paged, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cart", get(get_cart))
        .route("/api/v1/cart/items", post(add_to_cart))
        .route("/api/v1/cart/items/{course_id}", delete(remove_from_cart))
        .route("/api/v1/orders", post(place_order))
        .route("/api/v1/me/orders", get(my_orders))
        .route("/api/v1/orders/{order_id}", get(get_order))
        .route("/api/v1/orders/{order_id}/confirm", post(confirm_order))
        .route("/api/v1/orders/{order_id}/refund", post(refund_order))
        .route("/api/v1/instructor/dashboard", get(instructor_dashboard))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(get_cart, add_to_cart, remove_from_cart, place_order, my_orders, get_order, confirm_order, refund_order, instructor_dashboard),
    tags(
        (name = "commerce", description = "Cart, orders, payments (dev and Toss Payments) and refunds"),
        (name = "instructor", description = "The instructor dashboard"),
    )
)]
pub struct CommerceApi;

/// The caller's cart, at current prices.
#[utoipa::path(get, path = "/api/v1/cart", tag = "commerce", security(("bearer" = [])),
    responses((status = 200, body = Cart), (status = 401, body = ErrorBody)))]
pub async fn get_cart(
    State(st): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<axum::Json<Cart>> {
    Ok(axum::Json(super::cart::cart(&st.db, &caller).await?))
}

/// A course to put in the cart.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddToCart {
    pub course_id: CourseId,
}

/// Put a published course in the cart; answers the cart.
#[utoipa::path(post, path = "/api/v1/cart/items", tag = "commerce", request_body = AddToCart, security(("bearer" = [])),
    responses((status = 201, body = Cart),
              (status = 403, body = ErrorBody, description = "`own_course`: an instructor cannot buy their own course"),
              (status = 404, body = ErrorBody, description = "no such published course"),
              (status = 409, body = ErrorBody, description = "`already_in_cart`, `already_owned` or `mixed_currencies`")))]
pub async fn add_to_cart(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<AddToCart>,
) -> ApiResult<(StatusCode, axum::Json<Cart>)> {
    Ok((StatusCode::CREATED, axum::Json(super::cart::add(&st.db, &caller, req.course_id).await?)))
}

/// Take a course out of the cart.
#[utoipa::path(delete, path = "/api/v1/cart/items/{course_id}", tag = "commerce", params(("course_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 404, body = ErrorBody, description = "not in the cart")))]
pub async fn remove_from_cart(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(course_id): Path<CourseId>,
) -> ApiResult<StatusCode> {
    super::cart::remove(&st.db, &caller, course_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What to order.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PlaceOrderRequest {
    /// The courses to order; absent: the cart's.
    #[schema(min_items = 1)]
    pub course_ids: Option<Vec<CourseId>>,
}

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Place an order for the given courses or the cart. Titles and prices are kept as they are
/// now. With `Idempotency-Key`, repeating the request answers the same order (with
/// `Idempotent-Replayed: true`) instead of making another.
#[utoipa::path(post, path = "/api/v1/orders", tag = "commerce", request_body = PlaceOrderRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters; scoped to the caller")),
    responses((status = 201, body = Order),
              (status = 403, body = ErrorBody, description = "`own_course`"),
              (status = 404, body = ErrorBody, description = "no such published course"),
              (status = 409, body = ErrorBody, description = "`already_owned`"),
              (status = 422, body = ErrorBody, description = "`cart_empty`, `no_courses`, `mixed_currencies`, `idempotency_key_reused`")))]
pub async fn place_order(
    State(st): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: PlaceOrderRequest = optional_json(&headers, &body)?.unwrap_or_default();
    let idempotency_key = match headers.get(&IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    Error::malformed(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_string(),
        ),
    };
    let (order, replayed) = super::orders::place(
        &st.db,
        &caller,
        PlaceOrder { course_ids: req.course_ids, idempotency_key },
    )
    .await?;
    let mut resp = (StatusCode::CREATED, axum::Json(order)).into_response();
    if replayed {
        resp.headers_mut().insert(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// A JSON body that may be left out entirely (no body, no content type); when sent, it must be
/// JSON.
fn optional_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Option<T>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Error::UnsupportedMedia {
            code: "expected_json",
            message: "send the body as JSON with Content-Type: application/json".into(),
        });
    }
    serde_json::from_slice(body).map(Some).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::invalid("invalid_body", e.to_string()),
        _ => Error::malformed("malformed_json", e.to_string()),
    })
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/v1/me/orders", tag = "commerce", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = Paged<Order>), (status = 400, body = ErrorBody)))]
pub async fn my_orders(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<PageParams>,
) -> ApiResult<axum::Json<Paged<Order>>> {
    let (page, per_page) = q.resolve()?;
    let (items, total) = super::orders::list_mine(&st.db, &caller, page, per_page).await?;
    Ok(axum::Json(Paged { items, total, page, per_page }))
}

/// One order: for its buyer and admins (404 for anyone else).
#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "commerce", params(("order_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = Order), (status = 404, body = ErrorBody)))]
pub async fn get_order(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<OrderId>,
) -> ApiResult<axum::Json<Order>> {
    Ok(axum::Json(super::orders::get(&st.db, &caller, id).await?))
}

/// A payment to confirm.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// The provider's key for the payment (Toss Payments: `paymentKey`); not needed when the
    /// order is free.
    pub payment_key: Option<String>,
    /// The amount paid, in minor units; must equal the order's `amount`.
    pub amount: i64,
}

/// Confirm an order's payment (its buyer only). Marks it paid and enrolls the buyer; confirming
/// a paid order answers it again without charging twice.
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/confirm", tag = "commerce", request_body = ConfirmRequest,
    params(("order_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Order),
              (status = 400, body = ErrorBody, description = "`amount_mismatch`: nothing charged or granted"),
              (status = 402, body = ErrorBody, description = "`payment_declined`: the order stays pending"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`payment_pending` (provider did not answer; retry), `payment_in_progress`, `order_refunded`, `already_owned`, `course_unavailable`"),
              (status = 422, body = ErrorBody, description = "`payment_key_required`, `invalid_payment_key`, `invalid_amount`, `unsupported_currency`")))]
pub async fn confirm_order(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<OrderId>,
    Json(req): Json<ConfirmRequest>,
) -> ApiResult<axum::Json<Order>> {
    let confirm = Confirm { payment_key: req.payment_key, amount: req.amount };
    Ok(axum::Json(super::orders::confirm(&st.db, &st.payments, &caller, id, confirm).await?))
}

/// Why a refund is asked for (optional body).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RefundRequest {
    /// Up to 200 characters; passed to the payment provider.
    #[schema(schema_with = crate::types::text::reason_or_null)]
    pub reason: Option<String>,
}

/// Refund a paid order: its buyer within the refund policy, or an admin. Revokes the
/// enrollments.
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/refund", tag = "commerce", request_body(content = RefundRequest, description = "optional: the body may be left out"),
    params(("order_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Order),
              (status = 403, body = ErrorBody, description = "`refund_window_expired`, `refund_course_watched`"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`order_not_paid`, `order_already_refunded`, `refund_declined`, `refund_pending`, `payment_in_progress`")))]
pub async fn refund_order(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<OrderId>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<Order>> {
    let req: RefundRequest = optional_json(&headers, &body)?.unwrap_or_default();
    Ok(axum::Json(
        super::refunds::refund(&st.db, &st.payments, &caller, id, req.reason.as_deref()).await?,
    ))
}

/// The dashboard's date range.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DashboardParams {
    /// First day (`YYYY-MM-DD`, UTC) included; default: from the beginning.
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day (`YYYY-MM-DD`, UTC) included; default: until now.
    #[param(format = Date)]
    pub to: Option<String>,
}

/// Sales, refunds, enrollments and watch time per course of the caller (admins: every course).
/// Money is in minor units; `revenue` is net of the refunds made in the range.
#[utoipa::path(get, path = "/api/v1/instructor/dashboard", tag = "instructor", params(DashboardParams), security(("bearer" = [])),
    responses((status = 200, body = Dashboard), (status = 400, body = ErrorBody, description = "`invalid_date`, `invalid_date_range`"),
              (status = 403, body = ErrorBody, description = "`instructors_only`")))]
pub async fn instructor_dashboard(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<DashboardParams>,
) -> ApiResult<axum::Json<Dashboard>> {
    Ok(axum::Json(
        super::dashboard::dashboard(&st.db, &caller, q.from.as_deref(), q.to.as_deref()).await?,
    ))
}
