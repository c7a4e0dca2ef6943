//! Buying courses over the API, as the commerce tests (and others needing a paid course) do:
//! published courses at a price, carts, orders, payment and refunds, and what they left in the
//! database.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::TestServer;
use lectern::types::{CourseId, LectureId, UserId};

/// A published course of `teacher` at `price` `currency`: `(course_id, lecture_id)`.
pub async fn published(
    srv: &TestServer,
    teacher: &str,
    title: &str,
    price: i64,
    currency: &str,
) -> (i64, i64) {
    let (course_id, _, lecture_id) = srv.course_with_lecture(teacher, title).await;
    let (status, body) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{course_id}"),
            Some(teacher),
            Some(json!({"price": price, "currency": currency})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (course_id, lecture_id)
}

pub async fn add_to_cart(srv: &TestServer, token: &str, course_id: i64) -> (StatusCode, Value) {
    srv.post("/api/v1/cart/items", Some(token), json!({"course_id": course_id})).await
}

/// `POST /api/v1/orders` with an optional `Idempotency-Key`: status, body, and whether the
/// answer says it was replayed.
pub async fn place_order(
    srv: &TestServer,
    token: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, bool) {
    let mut req = srv.http.post(srv.url("/api/v1/orders")).bearer_auth(token);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let body: Value = resp.json().await.unwrap();
    assert!(!status.is_server_error(), "{status}: {body}");
    (status, body, replayed)
}

/// A new pending order for `course_ids`.
pub async fn order(srv: &TestServer, token: &str, course_ids: &[i64]) -> Value {
    let (status, body, _) =
        place_order(srv, token, None, Some(json!({"course_ids": course_ids}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "pending");
    body
}

/// Confirm `order` with `key` and the order's own amount.
pub async fn confirm(
    srv: &TestServer,
    token: &str,
    order: &Value,
    key: &str,
) -> (StatusCode, Value) {
    let path = format!("/api/v1/orders/{}/confirm", order["id"]);
    srv.post(&path, Some(token), json!({"payment_key": key, "amount": order["amount"]})).await
}

/// Order and pay for one course; returns the paid order.
pub async fn buy(srv: &TestServer, token: &str, course_id: i64) -> Value {
    let placed = order(srv, token, &[course_id]).await;
    let (status, paid) = confirm(srv, token, &placed, "pay_ok").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "paid");
    paid
}

pub async fn refund(srv: &TestServer, token: &str, order_id: &Value) -> (StatusCode, Value) {
    srv.call(Method::POST, &format!("/api/v1/orders/{order_id}/refund"), Some(token), None).await
}

pub async fn get_order(srv: &TestServer, token: &str, order_id: &Value) -> Value {
    let (status, body) = srv.get(&format!("/api/v1/orders/{order_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// What the course page says: is the caller enrolled?
pub async fn enrolled(srv: &TestServer, token: &str, course_id: i64) -> bool {
    let (status, course) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{course}");
    course["is_enrolled"].as_bool().unwrap()
}

/// Starting playback: 403 when not entitled, 409 when entitled (the lecture has no ready video).
pub async fn playback(srv: &TestServer, token: &str, lecture_id: i64) -> StatusCode {
    srv.post(&format!("/api/v1/lectures/{lecture_id}/playback"), Some(token), json!({})).await.0
}

/// `SELECT COUNT(*) …` with one bound id.
pub async fn count(srv: &TestServer, sql: &str, id: i64) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as(sql).bind(id).fetch_one(srv.app_state.db.pool()).await.unwrap();
    n
}

pub async fn orders_of(srv: &TestServer, user: i64) -> i64 {
    count(srv, "SELECT COUNT(*) FROM orders WHERE user_id = $1", user).await
}

pub async fn charges_of(srv: &TestServer, order_id: &Value) -> i64 {
    count(
        srv,
        "SELECT COUNT(*) FROM payments WHERE kind = 'charge' AND order_id = $1",
        order_id.as_i64().unwrap(),
    )
    .await
}

/// Every enrollment row (active or revoked) of `user` in `course`.
pub async fn enrollment_rows(srv: &TestServer, user: i64, course: i64) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM enrollments WHERE user_id = $1 AND course_id = $2")
            .bind(user)
            .bind(course)
            .fetch_one(srv.app_state.db.pool())
            .await
            .unwrap();
    n
}

/// Give a course's only lecture a measured length, as a finished transcode would.
pub async fn set_duration(srv: &TestServer, course_id: i64, lecture_id: i64, seconds: f64) {
    let pool = srv.app_state.db.pool();
    sqlx::query("UPDATE lectures SET duration_seconds = $1 WHERE id = $2")
        .bind(seconds)
        .bind(lecture_id)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE courses SET duration_seconds = $1 WHERE id = $2")
        .bind(seconds)
        .bind(course_id)
        .execute(pool)
        .await
        .unwrap();
}

/// Record that `user` watched `lecture` up to `position` seconds.
pub async fn watch(
    srv: &TestServer,
    user: i64,
    course_id: i64,
    lecture_id: i64,
    position: f64,
    duration: f64,
) {
    lectern::learning::progress::record(
        &srv.app_state.db,
        UserId::new(user),
        LectureId::new(lecture_id),
        CourseId::new(course_id),
        position,
        false,
        Some(duration),
    )
    .await
    .unwrap();
}
