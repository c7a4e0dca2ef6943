//! A fake of the Toss Payments API that checks what the real one requires, for the commerce
//! tests that use the Toss provider. It is a module of `commerce_toss.rs` only (not of
//! `common`), so that no other test binary builds its HTTP server.
// Refusals here are whole responses, as the real API answers them; their size does not matter
// in a test double.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};

pub const SECRET: &str = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R";
/// Longer than the `payment_timeout_secs` the tests configure.
pub const SLOW: Duration = Duration::from_secs(3);

/// What the fake saw and holds.
#[derive(Default)]
pub struct Ledger {
    /// orderId → amount the buyer's checkout was opened with.
    pub checkouts: HashMap<String, i64>,
    /// paymentKey → payment object.
    pub payments: HashMap<String, Value>,
    /// Payments approved (money taken).
    pub charges: usize,
    pub confirm_requests: usize,
    /// `(Idempotency-Key, body)` of each cancel request.
    pub cancels: Vec<(Option<String>, Value)>,
    /// Requests the real API would have refused as malformed.
    pub violations: Vec<String>,
    /// Faults to play, for every request while set:
    /// answer confirms and cancels this much later, after the work is done;
    pub delay: Option<Duration>,
    /// do the work, then answer 500 (the money moved, the caller hears a failure);
    pub fail_after_work: bool,
    /// answer every request 500 without doing anything (an outage);
    pub down: bool,
    /// approve confirms for this much more than asked (a provider or checkout gone wrong).
    pub skew: i64,
}

#[derive(Clone)]
pub struct FakeToss {
    pub base: String,
    pub ledger: Arc<Mutex<Ledger>>,
}

impl FakeToss {
    pub async fn start() -> FakeToss {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let app = Router::new()
            .route("/v1/payments/confirm", post(confirm))
            .route("/v1/payments/orders/{order_id}", get(lookup_order))
            .route("/v1/payments/{payment_key}", get(lookup))
            .route("/v1/payments/{payment_key}/cancel", post(cancel))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeToss { base, ledger }
    }

    /// What the buyer's browser does before we confirm: open Toss' checkout for an order.
    pub fn open_checkout(&self, order_id: &str, amount: i64) {
        self.ledger.lock().unwrap().checkouts.insert(order_id.to_string(), amount);
    }

    pub fn with<T>(&self, f: impl FnOnce(&Ledger) -> T) -> T {
        f(&self.ledger.lock().unwrap())
    }

    pub fn set(&self, f: impl FnOnce(&mut Ledger)) {
        f(&mut self.ledger.lock().unwrap())
    }
}

fn outage() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "FAILED_INTERNAL_SYSTEM_PROCESSING",
        "내부 시스템 처리 작업이 실패했습니다.",
    )
}

/// Answer `done` as the ledger's faults say: late, or as a failure.
async fn answer(ledger: &Mutex<Ledger>, done: Response) -> Response {
    let (delay, fail) = {
        let l = ledger.lock().unwrap();
        (l.delay, l.fail_after_work)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if fail {
        outage()
    } else {
        done
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// Refuse (and remember) a request the real API would refuse.
fn violation(ledger: &Mutex<Ledger>, what: String) -> Response {
    ledger.lock().unwrap().violations.push(what.clone());
    error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", &what)
}

/// `Authorization: Basic base64("{secret}:")`.
fn check_auth(headers: &HeaderMap) -> Result<(), Response> {
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SECRET}:")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED_KEY",
            "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
        ))
    }
}

/// A JSON object body sent as `application/json` with exactly the `required` keys plus
/// any of `optional`.
fn json_object(
    headers: &HeaderMap,
    body: &[u8],
    required: &[&str],
    optional: &[&str],
) -> Result<Map<String, Value>, String> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(format!("content-type is {content_type:?}, not application/json"));
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err("the body is not a JSON object".into());
    };
    for key in required {
        if !obj.contains_key(*key) {
            return Err(format!("{key} is missing"));
        }
    }
    if let Some(extra) =
        obj.keys().find(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
    {
        return Err(format!("unexpected field {extra}"));
    }
    Ok(obj)
}

fn payment(key: &str, order_id: &str, amount: i64) -> Value {
    json!({
        "mId": "tosspayments", "version": "2022-11-16", "paymentKey": key, "orderId": order_id,
        "orderName": "Lectern order", "status": "DONE", "method": "카드", "currency": "KRW",
        "totalAmount": amount, "balanceAmount": amount, "requestedAt": "2025-03-01T10:00:00+09:00",
        "approvedAt": "2025-03-01T10:00:05+09:00", "cancels": null,
    })
}

/// The `(paymentKey, orderId, amount)` of a confirm request, or what the real API answers a
/// malformed one, or one for a checkout never opened or opened for another amount.
fn confirmation(
    ledger: &Mutex<Ledger>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, String, i64), Response> {
    let obj = json_object(headers, body, &["paymentKey", "orderId", "amount"], &[])
        .map_err(|what| violation(ledger, what))?;
    let (Some(key), Some(order_id)) = (obj["paymentKey"].as_str(), obj["orderId"].as_str()) else {
        return Err(violation(ledger, "paymentKey and orderId must be strings".into()));
    };
    let Some(amount) = obj["amount"].as_i64() else {
        return Err(violation(ledger, format!("amount {} is not an integer", obj["amount"])));
    };
    if !(6..=64).contains(&order_id.len())
        || !order_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(violation(
            ledger,
            format!("orderId {order_id:?} is not 6-64 characters of [A-Za-z0-9_-]"),
        ));
    }
    let opened = ledger.lock().unwrap().checkouts.get(order_id).copied();
    match opened {
        None => Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND_PAYMENT_SESSION",
            "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
        )),
        Some(expected) if expected != amount => {
            Err(violation(ledger, format!("amount {amount} is not the checkout's {expected}")))
        }
        Some(_) => Ok((key.to_string(), order_id.to_string(), amount)),
    }
}

/// `POST /v1/payments/confirm`. Payment keys choose the behaviour: `reject_…` are declined,
/// `down_…` meet a Toss outage, `slow_…` are approved but answered too late, others approved.
async fn confirm(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = check_auth(&headers) {
        return resp;
    }
    {
        let mut l = ledger.lock().unwrap();
        if l.down {
            return outage();
        }
        l.confirm_requests += 1;
    }
    let (key, order_id, amount) = match confirmation(&ledger, &headers, &body) {
        Ok(request) => request,
        Err(refusal) => return refusal,
    };
    let (key, order_id) = (key.as_str(), order_id.as_str());
    if key.starts_with("reject_") {
        return error(
            StatusCode::FORBIDDEN,
            "REJECT_CARD_PAYMENT",
            "한도초과 혹은 잔액부족으로 결제에 실패했습니다.",
        );
    }
    if key.starts_with("down_") {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "내부 시스템 처리 작업이 실패했습니다.",
        );
    }
    let approved = {
        let mut l = ledger.lock().unwrap();
        if l.payments.contains_key(key) {
            return error(
                StatusCode::BAD_REQUEST,
                "ALREADY_PROCESSED_PAYMENT",
                "이미 처리된 결제 입니다.",
            );
        }
        let p = payment(key, order_id, amount + l.skew);
        l.payments.insert(key.to_string(), p.clone());
        l.charges += 1;
        p
    };
    if key.starts_with("slow_") {
        // Approved, but the answer comes after the caller has given up.
        tokio::time::sleep(SLOW).await;
    }
    answer(&ledger, Json(approved).into_response()).await
}

/// `GET /v1/payments/orders/{orderId}`: the order's payment, whatever its key.
async fn lookup_order(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = check_auth(&headers) {
        return resp;
    }
    let l = ledger.lock().unwrap();
    if l.down {
        return outage();
    }
    match l.payments.values().find(|p| p["orderId"] == order_id.as_str()) {
        Some(p) => Json(p.clone()).into_response(),
        None => {
            error(StatusCode::NOT_FOUND, "NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")
        }
    }
}

/// `GET /v1/payments/{paymentKey}`.
async fn lookup(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = check_auth(&headers) {
        return resp;
    }
    let l = ledger.lock().unwrap();
    if l.down {
        return outage();
    }
    match l.payments.get(&key) {
        Some(p) => Json(p.clone()).into_response(),
        None => {
            error(StatusCode::NOT_FOUND, "NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")
        }
    }
}

/// `POST /v1/payments/{paymentKey}/cancel`.
async fn cancel(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = check_auth(&headers) {
        return resp;
    }
    let obj = match json_object(&headers, &body, &["cancelReason"], &["cancelAmount"]) {
        Ok(obj) => obj,
        Err(what) => return violation(&ledger, what),
    };
    if !obj["cancelReason"].as_str().is_some_and(|r| !r.is_empty() && r.chars().count() <= 200) {
        return violation(&ledger, "cancelReason must be 1 to 200 characters".into());
    }
    let done = {
        let mut l = ledger.lock().unwrap();
        if l.down {
            return outage();
        }
        let idempotency_key =
            headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
        l.cancels.push((idempotency_key, Value::Object(obj.clone())));
        let Some(p) = l.payments.get_mut(&key) else {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND_PAYMENT",
                "존재하지 않는 결제 정보 입니다.",
            );
        };
        if p["status"] == "CANCELED" {
            return error(
                StatusCode::BAD_REQUEST,
                "ALREADY_CANCELED_PAYMENT",
                "이미 취소된 결제 입니다.",
            );
        }
        if obj.get("cancelAmount").is_some_and(|a| a.as_i64() != p["balanceAmount"].as_i64()) {
            return error(
                StatusCode::BAD_REQUEST,
                "NOT_CANCELABLE_AMOUNT",
                "취소 할 수 없는 금액 입니다.",
            );
        }
        p["status"] = json!("CANCELED");
        p["balanceAmount"] = json!(0);
        p["cancels"] = json!([{"cancelAmount": obj.get("cancelAmount"), "cancelReason": obj["cancelReason"], "cancelStatus": "DONE"}]);
        Json(p.clone()).into_response()
    };
    answer(&ledger, done).await
}
