//! Cart, orders, payments (dev provider and a real Toss Payments client against a fake Toss
//! API), refunds and the instructor dashboard, over HTTP on SQLite and PostgreSQL.

mod common;

use common::{assert_error, Backend, TestServer};
use lectern::config::{Secret, StorageKind};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The signed-in user's id.
async fn user_id(srv: &TestServer, token: &str) -> i64 {
    let (status, me) = srv.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["id"].as_i64().unwrap()
}

/// A published course of `teacher` at `price` `currency`: `(course_id, lecture_id)`.
async fn published(
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

async fn add_to_cart(srv: &TestServer, token: &str, course_id: i64) -> (StatusCode, Value) {
    srv.post("/api/v1/cart/items", Some(token), json!({"course_id": course_id})).await
}

/// `POST /api/v1/orders` with an optional `Idempotency-Key`: status, body, and whether the
/// answer says it was replayed.
async fn place_order(
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
async fn order(srv: &TestServer, token: &str, course_ids: &[i64]) -> Value {
    let (status, body, _) =
        place_order(srv, token, None, Some(json!({"course_ids": course_ids}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "pending");
    body
}

/// Confirm `order` with `key` and the order's own amount.
async fn confirm(srv: &TestServer, token: &str, order: &Value, key: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/orders/{}/confirm", order["id"]);
    srv.post(&path, Some(token), json!({"payment_key": key, "amount": order["amount"]})).await
}

/// Order and pay for one course; returns the paid order.
async fn buy(srv: &TestServer, token: &str, course_id: i64) -> Value {
    let placed = order(srv, token, &[course_id]).await;
    let (status, paid) = confirm(srv, token, &placed, "pay_ok").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "paid");
    paid
}

async fn refund(srv: &TestServer, token: &str, order_id: &Value) -> (StatusCode, Value) {
    srv.call(Method::POST, &format!("/api/v1/orders/{order_id}/refund"), Some(token), None).await
}

async fn get_order(srv: &TestServer, token: &str, order_id: &Value) -> Value {
    let (status, body) = srv.get(&format!("/api/v1/orders/{order_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// What the course page says: is the caller enrolled?
async fn enrolled(srv: &TestServer, token: &str, course_id: i64) -> bool {
    let (status, course) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{course}");
    course["is_enrolled"].as_bool().unwrap()
}

/// Starting playback: 403 when not entitled, 409 when entitled (the lecture has no ready video).
async fn playback(srv: &TestServer, token: &str, lecture_id: i64) -> StatusCode {
    srv.post(&format!("/api/v1/lectures/{lecture_id}/playback"), Some(token), json!({})).await.0
}

/// `SELECT COUNT(*) …` with one bound id.
async fn count(srv: &TestServer, sql: &str, id: i64) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as(sql).bind(id).fetch_one(srv.app_state.db.pool()).await.unwrap();
    n
}

async fn orders_of(srv: &TestServer, user: i64) -> i64 {
    count(srv, "SELECT COUNT(*) FROM orders WHERE user_id = $1", user).await
}

async fn charges_of(srv: &TestServer, order_id: &Value) -> i64 {
    count(
        srv,
        "SELECT COUNT(*) FROM payments WHERE kind = 'charge' AND order_id = $1",
        order_id.as_i64().unwrap(),
    )
    .await
}

/// Every enrollment row (active or revoked) of `user` in `course`.
async fn enrollment_rows(srv: &TestServer, user: i64, course: i64) -> i64 {
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
async fn set_duration(srv: &TestServer, course_id: i64, lecture_id: i64, seconds: f64) {
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
async fn watch(
    srv: &TestServer,
    user: i64,
    course_id: i64,
    lecture_id: i64,
    position: f64,
    duration: f64,
) {
    lectern::learning::progress::record(
        &srv.app_state.db,
        user,
        lecture_id,
        course_id,
        position,
        false,
        Some(duration),
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Cart

async fn cart_takes_published_courses_of_others_once(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (rust, _) = published(&srv, &teacher, "Rust video servers", 55000, "KRW").await;
    let (sql, _) = published(&srv, &teacher, "SQL for humans", 30000, "KRW").await;
    let (usd, _) = published(&srv, &teacher, "In dollars", 1999, "USD").await;
    let (draft, _, _) = srv.course_with_lecture(&teacher, "Not yet").await;
    let (student, _) = srv.new_user("student@example.com").await;

    let (status, cart) = srv.get("/api/v1/cart", Some(&student)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((cart["items"].clone(), cart["total"].as_i64()), (json!([]), Some(0)));
    assert_eq!(srv.get("/api/v1/cart", None).await.0, StatusCode::UNAUTHORIZED);

    let (status, cart) = add_to_cart(&srv, &student, rust).await;
    assert_eq!(status, StatusCode::CREATED, "{cart}");
    let item = &cart["items"][0];
    assert_eq!(
        (
            item["course_id"].as_i64(),
            item["title"].as_str(),
            item["price"].as_i64(),
            item["currency"].as_str()
        ),
        (Some(rust), Some("Rust video servers"), Some(55000), Some("KRW"))
    );
    let (status, body) = add_to_cart(&srv, &student, rust).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "already_in_cart");
    assert_eq!(add_to_cart(&srv, &student, sql).await.0, StatusCode::CREATED);
    let (status, body) = add_to_cart(&srv, &student, usd).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "mixed_currencies");
    for unknown in [draft, 999_999] {
        let (status, body) = add_to_cart(&srv, &student, unknown).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let (status, body) = add_to_cart(&srv, &teacher, rust).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "own_course");
    let (status, body) =
        srv.post("/api/v1/cart/items", Some(&student), json!({"course_id": "one"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (_, cart) = srv.get("/api/v1/cart", Some(&student)).await;
    assert_eq!(
        (
            cart["items"].as_array().unwrap().len(),
            cart["total"].as_i64(),
            cart["currency"].as_str()
        ),
        (2, Some(85000), Some("KRW"))
    );

    let path = format!("/api/v1/cart/items/{rust}");
    assert_eq!(
        srv.call(Method::DELETE, &path, Some(&student), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        srv.call(Method::DELETE, &path, Some(&student), None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, cart) = srv.get("/api/v1/cart", Some(&student)).await;
    assert_eq!(
        (cart["items"][0]["course_id"].as_i64(), cart["total"].as_i64()),
        (Some(sql), Some(30000))
    );
    // Another person's cart is their own.
    let (other, _) = srv.new_user("other@example.com").await;
    assert_eq!(srv.get("/api/v1/cart", Some(&other)).await.1["items"], json!([]));
    let sql_path = format!("/api/v1/cart/items/{sql}");
    assert_eq!(
        srv.call(Method::DELETE, &sql_path, Some(&other), None).await.0,
        StatusCode::NOT_FOUND
    );
}

// ---------------------------------------------------------------------------------------------
// Orders

async fn orders_keep_the_titles_and_prices_they_were_placed_at(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (rust, _) = published(&srv, &teacher, "Rust video servers", 55000, "KRW").await;
    let (sql, _) = published(&srv, &teacher, "SQL for humans", 30000, "KRW").await;
    let (usd, _) = published(&srv, &teacher, "In dollars", 1999, "USD").await;
    let (draft, _, _) = srv.course_with_lecture(&teacher, "Not yet").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = user_id(&srv, &student).await;

    // From the cart, with no body at all.
    add_to_cart(&srv, &student, rust).await;
    add_to_cart(&srv, &student, sql).await;
    let (status, from_cart, _) = place_order(&srv, &student, None, None).await;
    assert_eq!(status, StatusCode::CREATED, "{from_cart}");
    assert_eq!(
        (
            from_cart["status"].as_str(),
            from_cart["amount"].as_i64(),
            from_cart["currency"].as_str()
        ),
        (Some("pending"), Some(85000), Some("KRW"))
    );
    assert_eq!(
        from_cart["items"],
        json!([{"course_id": rust, "title": "Rust video servers", "price": 55000}, {"course_id": sql, "title": "SQL for humans", "price": 30000}])
    );
    let payment_order_id = from_cart["payment_order_id"].as_str().unwrap();
    assert!(
        (6..=64).contains(&payment_order_id.len())
            && payment_order_id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    // Placing does not empty the cart; paying does.
    assert_eq!(srv.get("/api/v1/cart", Some(&student)).await.1["total"], 85000);

    // The catalog changes; the order does not.
    let (status, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{rust}"),
            Some(&teacher),
            Some(json!({"price": 99000, "title": "Rust, second edition"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = get_order(&srv, &student, &from_cart["id"]).await;
    assert_eq!(
        (again["amount"].as_i64(), again["items"][0]["price"].as_i64()),
        (Some(85000), Some(55000))
    );
    assert_eq!(again["items"][0]["title"], "Rust video servers");
    let fresh = order(&srv, &student, &[rust]).await;
    assert_eq!(
        fresh["items"],
        json!([{"course_id": rust, "title": "Rust, second edition", "price": 99000}])
    );

    let (status, mine) = srv.get("/api/v1/me/orders?per_page=10", Some(&student)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (mine["total"].as_i64(), mine["page"].as_i64(), mine["per_page"].as_i64()),
        (Some(2), Some(1), Some(10))
    );
    assert_eq!(mine["items"][0]["id"], fresh["id"]);
    assert_eq!(mine["items"][1]["items"].as_array().unwrap().len(), 2);
    let (_, page2) = srv.get("/api/v1/me/orders?per_page=1&page=2", Some(&student)).await;
    assert_eq!(
        (page2["items"][0]["id"].clone(), page2["items"][0]["amount"].as_i64()),
        (from_cart["id"].clone(), Some(85000))
    );

    // Only the buyer (and admins) see an order.
    let (other, _) = srv.new_user("other@example.com").await;
    let (status, _) = srv.get(&format!("/api/v1/orders/{}", from_cart["id"]), Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(srv.get("/api/v1/me/orders", Some(&other)).await.1["total"], 0);
    let admin = srv.admin().await;
    assert_eq!(get_order(&srv, &admin, &from_cart["id"]).await["id"], from_cart["id"]);

    // Refused orders leave nothing behind.
    let refusals: [(&str, Option<Value>, StatusCode, &str); 5] = [
        ("teacher", Some(json!({"course_ids": [rust]})), StatusCode::FORBIDDEN, "own_course"),
        ("student", Some(json!({"course_ids": [draft]})), StatusCode::NOT_FOUND, "not_found"),
        (
            "student",
            Some(json!({"course_ids": [rust, usd]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "mixed_currencies",
        ),
        (
            "student",
            Some(json!({"course_ids": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_courses",
        ),
        ("other", None, StatusCode::UNPROCESSABLE_ENTITY, "cart_empty"),
    ];
    for (who, body, expected, code) in refusals {
        let token = match who {
            "teacher" => &teacher,
            "other" => &other,
            _ => &student,
        };
        let (status, err, _) = place_order(&srv, token, None, body.clone()).await;
        assert_eq!(status, expected, "{body:?}: {err}");
        assert_error(&err, code);
    }
    assert_eq!(orders_of(&srv, student_id).await, 2);
    assert_eq!(count(&srv, "SELECT COUNT(*) FROM orders WHERE id > $1", 0).await, 2);

    // Once paid for, a course can be neither ordered nor put in the cart again.
    let (status, paid) = confirm(&srv, &student, &from_cart, "pay_ok").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    assert_eq!(srv.get("/api/v1/cart", Some(&student)).await.1["items"], json!([]));
    let (status, err, _) =
        place_order(&srv, &student, None, Some(json!({"course_ids": [sql]}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "already_owned");
    let (status, err) = add_to_cart(&srv, &student, sql).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "already_owned");
    // The still-pending order for a course now owned cannot be paid a second time.
    let (status, err) = confirm(&srv, &student, &fresh, "pay_twice").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "already_owned");
    assert_eq!(charges_of(&srv, &fresh["id"]).await, 0);
}

async fn an_idempotency_key_answers_the_same_order(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (rust, _) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (sql, _) = published(&srv, &teacher, "SQL", 30000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = user_id(&srv, &student).await;

    let body = json!({"course_ids": [rust, sql]});
    let (status, first, replayed) =
        place_order(&srv, &student, Some("checkout-1"), Some(body.clone())).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    // A retry (courses in another order, repeated: the same request) answers the same order.
    let (status, second, replayed) = place_order(
        &srv,
        &student,
        Some("checkout-1"),
        Some(json!({"course_ids": [sql, rust, sql]})),
    )
    .await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{second}");
    assert_eq!(second, first);
    assert_eq!(orders_of(&srv, student_id).await, 1);
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM order_items WHERE order_id = $1",
            first["id"].as_i64().unwrap()
        )
        .await,
        2
    );

    let (status, err, _) =
        place_order(&srv, &student, Some("checkout-1"), Some(json!({"course_ids": [rust]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&err, "idempotency_key_reused");
    let (status, err, _) = place_order(&srv, &student, Some("bad key"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "invalid_idempotency_key");

    // Keys belong to their user.
    let (other, _) = srv.new_user("other@example.com").await;
    let (status, theirs, replayed) =
        place_order(&srv, &other, Some("checkout-1"), Some(body.clone())).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    assert_ne!(theirs["id"], first["id"]);

    // Concurrent retries of one request make one order.
    let racers = (0..6).map(|_| {
        place_order(&srv, &student, Some("checkout-2"), Some(json!({"course_ids": [rust]})))
    });
    let answers = futures::future::join_all(racers).await;
    for (status, order, _) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{order}");
        assert_eq!(order["id"], answers[0].1["id"]);
    }
    assert_eq!(answers.iter().filter(|a| !a.2).count(), 1, "exactly one request made the order");
    assert_eq!(orders_of(&srv, student_id).await, 2);

    // A paid order is answered with its current state.
    confirm(&srv, &student, &first, "pay_ok").await;
    let (_, replay, replayed) = place_order(&srv, &student, Some("checkout-1"), Some(body)).await;
    assert_eq!((replay["status"].as_str(), replayed), (Some("paid"), true));
}

// ---------------------------------------------------------------------------------------------
// Confirming

async fn confirming_takes_the_exact_amount_and_grants_access_once(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course, lecture) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = user_id(&srv, &student).await;
    let placed = order(&srv, &student, &[course]).await;
    let path = format!("/api/v1/orders/{}/confirm", placed["id"]);
    assert_eq!(playback(&srv, &student, lecture).await, StatusCode::FORBIDDEN);

    // Tampered amounts are refused and grant nothing.
    for amount in [100, 0, 55001] {
        let (status, err) = srv
            .post(&path, Some(&student), json!({"payment_key": "pay_ok", "amount": amount}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}: {err}");
        assert_error(&err, "amount_mismatch");
    }
    let refusals = [
        (json!({"payment_key": "pay_ok", "amount": -55000}), "invalid_amount"),
        (json!({"amount": 55000}), "payment_key_required"),
        (json!({"payment_key": "  ", "amount": 55000}), "payment_key_required"),
        (json!({"payment_key": "pay_ok", "amount": 55000.5}), "invalid_body"),
        (json!({"payment_key": "pay_ok", "amount": "55000"}), "invalid_body"),
    ];
    for (body, code) in refusals {
        let (status, err) = srv.post(&path, Some(&student), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_error(&err, code);
    }
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["status"], "pending");

    // A declined payment leaves the order pending; another payment method then works.
    let (status, err) = confirm(&srv, &student, &placed, "fail_card_declined").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_error(&err, "payment_declined");
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["status"], "pending");
    assert!(!enrolled(&srv, &student, course).await);

    // Nobody else can confirm it.
    let (other, _) = srv.new_user("other@example.com").await;
    assert_eq!(confirm(&srv, &other, &placed, "pay_ok").await.0, StatusCode::NOT_FOUND);

    let (status, paid) = confirm(&srv, &student, &placed, "pay_ok").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(
        (paid["status"].as_str(), paid["amount"].as_i64(), paid["payment_provider"].as_str()),
        (Some("paid"), Some(55000), Some("dev"))
    );
    assert!(paid["paid_at"].is_string());
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(
        playback(&srv, &student, lecture).await,
        StatusCode::CONFLICT,
        "entitled; the lecture has no ready video"
    );

    // Confirming again answers the same and charges nothing more.
    let (status, again) = confirm(&srv, &student, &placed, "pay_another").await;
    assert_eq!((status, again.clone()), (StatusCode::OK, paid.clone()));
    let (status, err) =
        srv.post(&path, Some(&student), json!({"payment_key": "pay_ok", "amount": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "amount_mismatch");
    assert_eq!(charges_of(&srv, &placed["id"]).await, 1);
    assert_eq!(enrollment_rows(&srv, student_id, course).await, 1);
    assert_eq!(
        srv.post("/api/v1/orders/999999/confirm", Some(&student), json!({"amount": 0})).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn racing_confirmations_charge_and_grant_once(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course, _) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = user_id(&srv, &student).await;

    // Several confirmations of one order at once (a double-clicked button, a retrying client).
    let placed = order(&srv, &student, &[course]).await;
    let racers = (0..8).map(|i| {
        let (srv, student, placed) = (&srv, &student, &placed);
        async move { confirm(srv, student, placed, &format!("pay_race_{i}")).await }
    });
    let answers = futures::future::join_all(racers).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body, &answers[0].1, "every racer answers the one payment");
    }
    assert_eq!(charges_of(&srv, &placed["id"]).await, 1);
    assert_eq!(enrollment_rows(&srv, student_id, course).await, 1);

    // Two orders of the same course confirmed at once: only one is paid.
    let (other_course, _) = published(&srv, &teacher, "SQL", 30000, "KRW").await;
    let a = order(&srv, &student, &[other_course]).await;
    let b2 = order(&srv, &student, &[other_course]).await;
    let (ra, rb) =
        tokio::join!(confirm(&srv, &student, &a, "pay_a"), confirm(&srv, &student, &b2, "pay_b"));
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", ra.1, rb.1);
    let loser = if ra.0 == StatusCode::CONFLICT { &ra.1 } else { &rb.1 };
    assert_error(loser, "already_owned");
    assert_eq!(charges_of(&srv, &a["id"]).await + charges_of(&srv, &b2["id"]).await, 1);
    assert_eq!(enrollment_rows(&srv, student_id, other_course).await, 1);
}

async fn free_orders_confirm_without_a_payment_key(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (free, lecture) = published(&srv, &teacher, "Free taster", 0, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let placed = order(&srv, &student, &[free]).await;
    assert_eq!(placed["amount"], 0);
    let path = format!("/api/v1/orders/{}/confirm", placed["id"]);
    let (status, err) = srv.post(&path, Some(&student), json!({"amount": 100})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "amount_mismatch");
    let (status, paid) = srv.post(&path, Some(&student), json!({"amount": 0})).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(
        (paid["status"].as_str(), paid["payment_provider"].clone()),
        (Some("paid"), Value::Null)
    );
    assert!(enrolled(&srv, &student, free).await);
    assert_eq!(playback(&srv, &student, lecture).await, StatusCode::CONFLICT);
    assert_eq!(charges_of(&srv, &placed["id"]).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Refunds

async fn a_refund_within_policy_revokes_access(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course, lecture) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = user_id(&srv, &student).await;
    let paid = buy(&srv, &student, course).await;
    assert_eq!(playback(&srv, &student, lecture).await, StatusCode::CONFLICT);

    let (other, _) = srv.new_user("other@example.com").await;
    assert_eq!(refund(&srv, &other, &paid["id"]).await.0, StatusCode::NOT_FOUND);
    let pending = order(&srv, &other, &[course]).await;
    let (status, err) = refund(&srv, &other, &pending["id"]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "order_not_paid");

    let (status, refunded) = srv
        .post(
            &format!("/api/v1/orders/{}/refund", paid["id"]),
            Some(&student),
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refunded}");
    assert_eq!(
        (refunded["status"].as_str(), refunded["amount"].as_i64()),
        (Some("refunded"), Some(55000))
    );
    assert!(refunded["refunded_at"].is_string() && refunded["paid_at"].is_string());
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(playback(&srv, &student, lecture).await, StatusCode::FORBIDDEN);
    let (_, page) = srv.get(&format!("/api/v1/courses/{course}"), None).await;
    assert_eq!(page["enrollment_count"], 0);
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM payments WHERE kind = 'refund' AND order_id = $1",
            paid["id"].as_i64().unwrap()
        )
        .await,
        1
    );

    let (status, err) = refund(&srv, &student, &paid["id"]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "order_already_refunded");
    let (status, err) = confirm(&srv, &student, &paid, "pay_again").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "order_refunded");

    // A refunded course may be bought again.
    buy(&srv, &student, course).await;
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(enrollment_rows(&srv, student_id, course).await, 2, "one revoked, one active");
}

async fn the_refund_policy_binds_buyers_not_admins(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (watched, watched_lecture) = published(&srv, &teacher, "Watched a lot", 55000, "KRW").await;
    let (late, _) = published(&srv, &teacher, "Bought long ago", 30000, "KRW").await;
    let (sampled, sampled_lecture) = published(&srv, &teacher, "Sampled", 20000, "KRW").await;
    set_duration(&srv, watched, watched_lecture, 600.0).await;
    set_duration(&srv, sampled, sampled_lecture, 600.0).await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = user_id(&srv, &student).await;
    let admin = srv.admin().await;

    // Less than a third watched: the buyer may refund.
    let sampled_order = buy(&srv, &student, sampled).await;
    watch(&srv, student_id, sampled, sampled_lecture, 150.0, 600.0).await;
    let (status, body) = refund(&srv, &student, &sampled_order["id"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // More than a third watched: only an admin may.
    let watched_order = buy(&srv, &student, watched).await;
    watch(&srv, student_id, watched, watched_lecture, 250.0, 600.0).await;
    let (status, err) = refund(&srv, &student, &watched_order["id"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_error(&err, "refund_course_watched");
    assert!(enrolled(&srv, &student, watched).await);
    let (status, body) = refund(&srv, &admin, &watched_order["id"]).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("refunded")), "{body}");
    assert!(!enrolled(&srv, &student, watched).await);

    // Past the refund window: only an admin may.
    let late_order = buy(&srv, &student, late).await;
    sqlx::query("UPDATE orders SET paid_at = paid_at - $1 WHERE id = $2")
        .bind(8 * 24 * 3600_i64)
        .bind(late_order["id"].as_i64().unwrap())
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    let (status, err) = refund(&srv, &student, &late_order["id"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&err, "refund_window_expired");
    assert_eq!(refund(&srv, &admin, &late_order["id"]).await.0, StatusCode::OK);
    assert!(!enrolled(&srv, &student, late).await);
}

// ---------------------------------------------------------------------------------------------
// Dashboard

async fn the_dashboard_adds_up_sales_refunds_and_watching(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (rust, rust_lecture) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (sql, _) = published(&srv, &teacher, "SQL", 30000, "KRW").await;
    set_duration(&srv, rust, rust_lecture, 600.0).await;
    let rival = srv.instructor("rival@example.com").await;
    let (theirs, _) = published(&srv, &rival, "Someone else's", 10000, "KRW").await;
    let (s1, _) = srv.new_user("s1@example.com").await;
    let (s2, _) = srv.new_user("s2@example.com").await;
    let s1_id = user_id(&srv, &s1).await;

    // s1 buys both in one order and finishes Rust; s2 buys Rust and gets a refund.
    let both = order(&srv, &s1, &[rust, sql]).await;
    assert_eq!(confirm(&srv, &s1, &both, "pay_ok").await.0, StatusCode::OK);
    watch(&srv, s1_id, rust, rust_lecture, 600.0, 600.0).await;
    let s2_order = buy(&srv, &s2, rust).await;
    assert_eq!(refund(&srv, &s2, &s2_order["id"]).await.0, StatusCode::OK);
    buy(&srv, &s2, theirs).await;
    // A pending order counts for nothing.
    order(&srv, &s2, &[sql]).await;

    let today = chrono::Utc::now().date_naive();
    for query in [String::new(), format!("?from={today}&to={today}")] {
        let (status, d) =
            srv.get(&format!("/api/v1/instructor/dashboard{query}"), Some(&teacher)).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        let courses = d["courses"].as_array().unwrap();
        assert_eq!(
            courses.iter().map(|c| c["course_id"].as_i64().unwrap()).collect::<Vec<_>>(),
            [rust, sql]
        );
        let r = &courses[0];
        assert_eq!(
            (
                r["title"].as_str(),
                r["currency"].as_str(),
                r["revenue"].as_i64(),
                r["gross_revenue"].as_i64(),
                r["refunded_amount"].as_i64()
            ),
            (Some("Rust"), Some("KRW"), Some(55000), Some(110000), Some(55000))
        );
        assert_eq!(
            (r["paid_orders"].as_i64(), r["refunds"].as_i64(), r["enrollments"].as_i64()),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(
            (r["watch_seconds"].as_f64(), r["completion_rate"].as_f64()),
            (Some(600.0), Some(1.0))
        );
        let s = &courses[1];
        assert_eq!(
            (
                s["revenue"].as_i64(),
                s["paid_orders"].as_i64(),
                s["refunds"].as_i64(),
                s["enrollments"].as_i64()
            ),
            (Some(30000), Some(1), Some(0), Some(1))
        );
        assert_eq!(
            (s["watch_seconds"].as_f64(), s["completion_rate"].as_f64()),
            (Some(0.0), Some(0.0))
        );
        let t = &d["totals"];
        assert_eq!(
            (
                t["revenue"].as_i64(),
                t["currency"].as_str(),
                t["paid_orders"].as_i64(),
                t["refunds"].as_i64()
            ),
            (Some(85000), Some("KRW"), Some(2), Some(1))
        );
        assert_eq!(
            (t["courses"].as_i64(), t["enrollments"].as_i64(), t["watch_seconds"].as_f64()),
            (Some(2), Some(2), Some(600.0))
        );
        assert_eq!(
            t["by_currency"],
            json!([{"currency": "KRW", "revenue": 85000, "gross_revenue": 140000, "refunded_amount": 55000, "paid_orders": 2, "refunds": 1}])
        );
    }

    // Days without sales.
    let tomorrow = today.succ_opt().unwrap();
    let yesterday = today.pred_opt().unwrap();
    for query in [format!("?from={tomorrow}"), format!("?to={yesterday}")] {
        let (_, d) = srv.get(&format!("/api/v1/instructor/dashboard{query}"), Some(&teacher)).await;
        let r = &d["courses"][0];
        assert_eq!(
            (r["revenue"].as_i64(), r["paid_orders"].as_i64(), r["refunds"].as_i64()),
            (Some(0), Some(0), Some(0)),
            "{query}: {d}"
        );
        assert_eq!(r["enrollments"], 1, "enrollments are as of now");
        assert_eq!(
            (d["totals"]["revenue"].as_i64(), d["totals"]["by_currency"].clone()),
            (Some(0), json!([]))
        );
    }
    // A refund made today of a sale made before the range counts in the range.
    sqlx::query("UPDATE orders SET paid_at = paid_at - $1 WHERE id = $2")
        .bind(3 * 24 * 3600_i64)
        .bind(s2_order["id"].as_i64().unwrap())
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    let (_, d) =
        srv.get(&format!("/api/v1/instructor/dashboard?from={today}"), Some(&teacher)).await;
    let r = &d["courses"][0];
    assert_eq!(
        (r["revenue"].as_i64(), r["paid_orders"].as_i64(), r["refunds"].as_i64()),
        (Some(0), Some(1), Some(1)),
        "{d}"
    );

    let (student, _) = srv.new_user("student@example.com").await;
    let (status, err) = srv.get("/api/v1/instructor/dashboard", Some(&student)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&err, "instructors_only");
    for (query, code) in [
        ("?from=2025-13-01", "invalid_date"),
        ("?to=yesterday", "invalid_date"),
        ("?from=2025-03-02&to=2025-03-01", "invalid_date_range"),
    ] {
        let (status, err) =
            srv.get(&format!("/api/v1/instructor/dashboard{query}"), Some(&teacher)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_error(&err, code);
    }
    let admin = srv.admin().await;
    let (_, d) = srv.get("/api/v1/instructor/dashboard", Some(&admin)).await;
    assert_eq!(d["courses"].as_array().unwrap().len(), 3, "admins see every course");
    assert_eq!(d["totals"]["revenue"], 95000);
}

async fn the_api_document_lists_the_commerce_routes(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, doc) = srv.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/cart",
        "/api/v1/cart/items",
        "/api/v1/cart/items/{course_id}",
        "/api/v1/orders",
        "/api/v1/me/orders",
        "/api/v1/orders/{order_id}",
        "/api/v1/orders/{order_id}/confirm",
        "/api/v1/orders/{order_id}/refund",
        "/api/v1/instructor/dashboard",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the API document");
    }
    for schema in ["Order", "Cart", "Dashboard", "ConfirmRequest"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing from the API document"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Toss Payments, against a fake of its API that checks what the real one requires

mod fake_toss {
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
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SECRET}:"))
        );
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
        let obj = match json_object(&headers, &body, &["paymentKey", "orderId", "amount"], &[]) {
            Ok(obj) => obj,
            Err(what) => return violation(&ledger, what),
        };
        let (Some(key), Some(order_id)) = (obj["paymentKey"].as_str(), obj["orderId"].as_str())
        else {
            return violation(&ledger, "paymentKey and orderId must be strings".into());
        };
        let Some(amount) = obj["amount"].as_i64() else {
            return violation(&ledger, format!("amount {} is not an integer", obj["amount"]));
        };
        if !(6..=64).contains(&order_id.len())
            || !order_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return violation(
                &ledger,
                format!("orderId {order_id:?} is not 6-64 characters of [A-Za-z0-9_-]"),
            );
        }
        let opened = ledger.lock().unwrap().checkouts.get(order_id).copied();
        match opened {
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND_PAYMENT_SESSION",
                    "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
                )
            }
            Some(expected) if expected != amount => {
                return violation(
                    &ledger,
                    format!("amount {amount} is not the checkout's {expected}"),
                )
            }
            Some(_) => {}
        }
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
        if !obj["cancelReason"].as_str().is_some_and(|r| !r.is_empty() && r.chars().count() <= 200)
        {
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
}

async fn toss_server(b: Backend, fake: &fake_toss::FakeToss) -> TestServer {
    let base = fake.base.clone();
    TestServer::start_with(b, StorageKind::Fs, move |c| {
        c.payment_provider = "toss".into();
        c.toss_api_base = base;
        c.toss_secret_key = Secret::new(fake_toss::SECRET);
        c.payment_timeout_secs = 1;
    })
    .await
}

async fn toss_payments_confirm_and_cancel_as_the_real_api_requires(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server(b, &fake).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course, lecture) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let placed = order(&srv, &student, &[course]).await;
    let order_id = placed["payment_order_id"].as_str().unwrap().to_string();
    fake.open_checkout(&order_id, 55000);

    // Declined by the card company: 402, still pending.
    let (status, err) = confirm(&srv, &student, &placed, "reject_card").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{err}");
    assert_error(&err, "payment_declined");
    assert!(err["error"]["message"].as_str().unwrap().contains("REJECT_CARD_PAYMENT"), "{err}");

    // Toss is down: pending, retry later.
    let (status, err) = confirm(&srv, &student, &placed, "down_card").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");

    // Toss approves but answers after our timeout: still pending, nothing granted…
    let started = std::time::Instant::now();
    let (status, err) = confirm(&srv, &student, &placed, "slow_card").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");
    assert!(started.elapsed() < fake_toss::SLOW, "the client gave up at payment_timeout_secs");
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["status"], "pending");
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(playback(&srv, &student, lecture).await, StatusCode::FORBIDDEN);
    // …and the retry with the same payment key finds the payment done: paid once.
    let (status, paid) = confirm(&srv, &student, &placed, "slow_card").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(
        (paid["status"].as_str(), paid["payment_provider"].as_str()),
        (Some("paid"), Some("toss"))
    );
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(fake.with(|l| l.charges), 1);

    // Confirming again answers from our records without asking Toss.
    let asked = fake.with(|l| l.confirm_requests);
    let (status, again) = confirm(&srv, &student, &placed, "slow_card").await;
    assert_eq!((status, again), (StatusCode::OK, paid.clone()));
    assert_eq!(fake.with(|l| l.confirm_requests), asked);

    // A refund cancels the payment at Toss and revokes access.
    let (status, refunded) = refund(&srv, &student, &placed["id"]).await;
    assert_eq!(
        (status, refunded["status"].as_str()),
        (StatusCode::OK, Some("refunded")),
        "{refunded}"
    );
    assert!(!enrolled(&srv, &student, course).await);
    fake.with(|l| {
        assert_eq!(l.cancels.len(), 1);
        let (key, body) = &l.cancels[0];
        assert!(
            key.as_deref().is_some_and(|k| k.contains(&order_id)),
            "cancel carries an Idempotency-Key: {key:?}"
        );
        assert_eq!(body["cancelAmount"], 55000);
        assert!(body["cancelReason"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(l.payments["slow_card"]["status"], "CANCELED");
        assert!(l.violations.is_empty(), "requests the real API would refuse: {:?}", l.violations);
    });

    // Racing confirmations of another order reach Toss once.
    let (other_course, _) = published(&srv, &teacher, "SQL", 30000, "KRW").await;
    let second = order(&srv, &student, &[other_course]).await;
    fake.open_checkout(second["payment_order_id"].as_str().unwrap(), 30000);
    let asked = fake.with(|l| l.confirm_requests);
    let answers =
        futures::future::join_all((0..5).map(|_| confirm(&srv, &student, &second, "card_race")))
            .await;
    for (status, body) in &answers {
        assert_eq!((*status, body["status"].as_str()), (StatusCode::OK, Some("paid")), "{body}");
    }
    assert_eq!(fake.with(|l| (l.confirm_requests - asked, l.charges)), (1, 2));

    // Toss takes Korean won only.
    let (usd, _) = published(&srv, &teacher, "In dollars", 1999, "USD").await;
    let dollars = order(&srv, &student, &[usd]).await;
    let (status, err) = confirm(&srv, &student, &dollars, "card_usd").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&err, "unsupported_currency");
    assert!(fake.with(|l| l.violations.is_empty()));
}

/// A Toss-backed server with `payment_timeout_secs` and `reconcile_interval_secs` as given.
async fn toss_server_with(
    b: Backend,
    fake: &fake_toss::FakeToss,
    timeout_secs: u64,
    reconcile_secs: u64,
) -> TestServer {
    let base = fake.base.clone();
    TestServer::start_with(b, StorageKind::Fs, move |c| {
        c.payment_provider = "toss".into();
        c.toss_api_base = base;
        c.toss_secret_key = Secret::new(fake_toss::SECRET);
        c.payment_timeout_secs = timeout_secs;
        c.reconcile_interval_secs = reconcile_secs;
    })
    .await
}

/// A student with a pending Toss order for a new ₩55,000 course, its checkout opened:
/// `(student token, student id, course id, order)`.
async fn toss_order(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
    title: &str,
) -> (String, i64, i64, Value) {
    let teacher = srv.instructor(&format!("teacher-{}@example.com", title.to_lowercase())).await;
    let (course, _) = published(srv, &teacher, title, 55000, "KRW").await;
    let (student, _) = srv.new_user(&format!("student-{}@example.com", title.to_lowercase())).await;
    let placed = order(srv, &student, &[course]).await;
    fake.open_checkout(placed["payment_order_id"].as_str().unwrap(), 55000);
    let id = user_id(srv, &student).await;
    (student, id, course, placed)
}

/// Send `path` with `body` and hang up after `after`, before the answer comes.
async fn hang_up(
    srv: &TestServer,
    token: &str,
    path: &str,
    body: Value,
    after: std::time::Duration,
) {
    let client = reqwest::Client::builder().timeout(after).build().unwrap();
    let sent = client.post(srv.url(path)).bearer_auth(token).json(&body).send().await;
    assert!(
        sent.is_err_and(|e| e.is_timeout()),
        "the request was answered before the client hung up"
    );
}

/// Poll the order until `done` says yes, for up to 20 s; the last order seen.
async fn order_until(
    srv: &TestServer,
    token: &str,
    order_id: &Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = get_order(srv, token, order_id).await;
        if done(&o) || std::time::Instant::now() > deadline {
            return o;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn payment_locks_of(srv: &TestServer, user: i64) -> i64 {
    count(srv, "SELECT COUNT(*) FROM payment_locks WHERE user_id = $1", user).await
}

async fn a_buyer_who_hangs_up_mid_payment_still_gets_what_the_provider_did(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    // No reconciler in this test's time: only the request's own work can settle the payment.
    let srv = toss_server_with(b, &fake, 10, 3600).await;
    let (student, sid, course, placed) = toss_order(&srv, &fake, "Hangup").await;
    fake.set(|l| l.delay = Some(std::time::Duration::from_millis(1500)));

    // Mid-confirm: Toss charges, the buyer is gone before it answers…
    let path = format!("/api/v1/orders/{}/confirm", placed["id"]);
    hang_up(
        &srv,
        &student,
        &path,
        json!({"payment_key": "card_gone", "amount": 55000}),
        std::time::Duration::from_millis(300),
    )
    .await;
    // …and the order is paid and the buyer enrolled all the same.
    let paid = order_until(&srv, &student, &placed["id"], |o| o["status"] == "paid").await;
    assert_eq!(
        (paid["status"].as_str(), paid["payment_intent"].as_str()),
        (Some("paid"), None),
        "{paid}"
    );
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(fake.with(|l| l.charges), 1);
    // The buyer's payment lock went with the work, not with its lease.
    assert_eq!(payment_locks_of(&srv, sid).await, 0);

    // Mid-refund: Toss gives the money back, the buyer is gone before it answers…
    let path = format!("/api/v1/orders/{}/refund", placed["id"]);
    hang_up(&srv, &student, &path, json!({}), std::time::Duration::from_millis(300)).await;
    // …and the order is refunded and access revoked all the same.
    let refunded = order_until(&srv, &student, &placed["id"], |o| o["status"] == "refunded").await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(fake.with(|l| l.payments["card_gone"]["status"].clone()), "CANCELED");
    assert_eq!(payment_locks_of(&srv, sid).await, 0);
}

async fn the_reconciler_settles_payments_whose_answers_were_lost(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 2, 1).await;

    // Toss charges but answers 500: pending for now, with the intent on record…
    let (student, _, course, placed) = toss_order(&srv, &fake, "Charged").await;
    fake.set(|l| l.fail_after_work = true);
    let (status, err) = confirm(&srv, &student, &placed, "card_charged").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");
    fake.set(|l| l.fail_after_work = false);
    // …then the reconciler asks Toss, which says it is paid: paid and enrolled, no retry needed.
    let paid = order_until(&srv, &student, &placed["id"], |o| o["status"] == "paid").await;
    assert_eq!(
        (paid["status"].as_str(), paid["payment_intent"].as_null()),
        (Some("paid"), Some(())),
        "{paid}"
    );
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(charges_of(&srv, &placed["id"]).await, 1);

    // Toss is down and charges nothing; it stays down for a while, then recovers.
    let (student, _, course, placed) = toss_order(&srv, &fake, "Outage").await;
    fake.set(|l| l.down = true);
    let (status, err) = confirm(&srv, &student, &placed, "card_lost").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["payment_intent"], "confirming");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // The reconciler could not reach Toss either: still confirming, nothing guessed.
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["payment_intent"], "confirming");
    fake.set(|l| l.down = false);
    // Recovered: Toss never saw the payment, so the order is plainly pending again…
    let back = order_until(&srv, &student, &placed["id"], |o| o["payment_intent"].is_null()).await;
    assert_eq!(
        (back["status"].as_str(), back["payment_intent"].as_null()),
        (Some("pending"), Some(())),
        "{back}"
    );
    assert!(!enrolled(&srv, &student, course).await);
    // …and may be paid again.
    let (status, paid) = confirm(&srv, &student, &placed, "card_again").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");

    // A refund Toss carries out but answers 500: refunded and revoked by the reconciler.
    fake.set(|l| l.fail_after_work = true);
    let (status, err) = refund(&srv, &student, &placed["id"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "refund_pending");
    fake.set(|l| l.fail_after_work = false);
    let refunded = order_until(&srv, &student, &placed["id"], |o| o["status"] == "refunded").await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert!(!enrolled(&srv, &student, course).await);

    // A refund that never reaches Toss: the reconciler sends it again once Toss is back.
    let (student, _, course, placed) = toss_order(&srv, &fake, "Resend").await;
    let (status, paid) = confirm(&srv, &student, &placed, "card_resend").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    fake.set(|l| l.down = true);
    let (status, err) = refund(&srv, &student, &placed["id"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["payment_intent"], "refunding");
    assert!(enrolled(&srv, &student, course).await, "access stays until the money is back");
    fake.set(|l| l.down = false);
    let refunded = order_until(&srv, &student, &placed["id"], |o| o["status"] == "refunded").await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert!(!enrolled(&srv, &student, course).await);

    // Every settlement is counted.
    let metrics = srv.http.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"kind="confirming",outcome="paid""#,
        r#"kind="confirming",outcome="pending""#,
        r#"kind="refunding",outcome="refunded""#,
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with("lectern_payment_intents_settled_total") && l.contains(line)),
            "{line} missing from /metrics"
        );
    }
    assert!(fake.with(|l| l.violations.is_empty()), "{:?}", fake.with(|l| l.violations.clone()));
}

async fn racing_refunds_give_the_money_back_once(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 5, 3600).await;
    let (student, _, course, placed) = toss_order(&srv, &fake, "Race").await;
    let (status, paid) = confirm(&srv, &student, &placed, "card_race_refund").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    fake.set(|l| l.delay = Some(std::time::Duration::from_millis(300)));
    let answers =
        futures::future::join_all((0..5).map(|_| refund(&srv, &student, &placed["id"]))).await;
    let mut refunded = 0;
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => {
                assert_eq!(body["status"], "refunded");
                refunded += 1;
            }
            StatusCode::CONFLICT => assert_error(body, "order_already_refunded"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(refunded, 1, "{answers:?}");
    assert_eq!(fake.with(|l| l.cancels.len()), 1, "one cancel reached Toss");
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM payments WHERE kind = 'refund' AND order_id = $1",
            placed["id"].as_i64().unwrap()
        )
        .await,
        1
    );
    assert!(!enrolled(&srv, &student, course).await);
}

async fn a_payment_approved_for_the_wrong_amount_is_cancelled(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 2, 1).await;

    // Answered at once: cancelled at Toss, the order stays pending, nothing granted.
    let (student, _, course, placed) = toss_order(&srv, &fake, "Skewed").await;
    fake.set(|l| l.skew = -1000);
    let (status, err) = confirm(&srv, &student, &placed, "card_skewed").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{err}");
    assert_error(&err, "payment_mismatch");
    assert_eq!(fake.with(|l| l.payments["card_skewed"]["status"].clone()), "CANCELED");
    let o = get_order(&srv, &student, &placed["id"]).await;
    assert_eq!(
        (o["status"].as_str(), o["payment_intent"].as_null()),
        (Some("pending"), Some(())),
        "{o}"
    );
    assert!(!enrolled(&srv, &student, course).await);

    // Found by the reconciler after a lost answer: cancelled too.
    let (student, _, course, placed) = toss_order(&srv, &fake, "Skewlost").await;
    fake.set(|l| l.fail_after_work = true);
    let (status, err) = confirm(&srv, &student, &placed, "card_skew_lost").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    fake.set(|l| l.fail_after_work = false);
    let o = order_until(&srv, &student, &placed["id"], |o| o["payment_intent"].is_null()).await;
    assert_eq!(o["status"], "pending", "{o}");
    assert_eq!(fake.with(|l| l.payments["card_skew_lost"]["status"].clone()), "CANCELED");
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(charges_of(&srv, &placed["id"]).await, 0);
}

async fn readiness_names_the_payment_provider(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, ready) = srv.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (ready["payment_provider"].as_str(), ready["environment"].as_str()),
        (Some("dev"), Some("development"))
    );
    let fake = fake_toss::FakeToss::start().await;
    let toss = toss_server(b, &fake).await;
    assert_eq!(toss.get("/readyz", None).await.1["payment_provider"], "toss");
}

async fn what_a_dead_process_left_in_flight_is_settled_once_its_lock_lapses(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 2, 1).await;
    let (student, sid, course, placed) = toss_order(&srv, &fake, "Crash").await;
    let payment_order_id = placed["payment_order_id"].as_str().unwrap();
    // A process recorded its intent, reached Toss (which charged), and died: its lock is still
    // on record for a few seconds, its answer never recorded.
    let charged = reqwest::Client::new()
        .post(format!("{}/v1/payments/confirm", fake.base))
        .basic_auth(fake_toss::SECRET, Some(""))
        .json(&json!({"paymentKey": "card_crash", "orderId": payment_order_id, "amount": 55000}))
        .send()
        .await
        .unwrap();
    assert_eq!(charged.status(), StatusCode::OK);
    let now = chrono::Utc::now().timestamp();
    let pool = srv.app_state.db.pool();
    sqlx::query(
        "INSERT INTO payment_intents (order_id, user_id, kind, provider, payment_key, amount, started_at, next_check_at) \
         VALUES ($1, $2, 'confirming', 'toss', 'card_crash', 55000, $3, $3)",
    )
    .bind(placed["id"].as_i64().unwrap())
    .bind(sid)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payment_locks (user_id, holder, expires_at) VALUES ($1, 'dead-process', $2)",
    )
    .bind(sid)
    .bind(now + 3)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["payment_intent"], "confirming");
    // While the dead holder's lease runs, nobody touches it; once it lapses the reconciler asks
    // Toss and finishes the payment.
    let paid = order_until(&srv, &student, &placed["id"], |o| o["status"] == "paid").await;
    assert_eq!(
        (paid["status"].as_str(), paid["payment_intent"].as_null()),
        (Some("paid"), Some(())),
        "{paid}"
    );
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(
        fake.with(|l| (l.charges, l.confirm_requests)),
        (1, 1),
        "settled by looking, not by charging again"
    );
}

on_both_databases!(
    cart_takes_published_courses_of_others_once,
    orders_keep_the_titles_and_prices_they_were_placed_at,
    an_idempotency_key_answers_the_same_order,
    confirming_takes_the_exact_amount_and_grants_access_once,
    racing_confirmations_charge_and_grant_once,
    free_orders_confirm_without_a_payment_key,
    a_refund_within_policy_revokes_access,
    the_refund_policy_binds_buyers_not_admins,
    the_dashboard_adds_up_sales_refunds_and_watching,
    the_api_document_lists_the_commerce_routes,
    toss_payments_confirm_and_cancel_as_the_real_api_requires,
    a_buyer_who_hangs_up_mid_payment_still_gets_what_the_provider_did,
    the_reconciler_settles_payments_whose_answers_were_lost,
    racing_refunds_give_the_money_back_once,
    a_payment_approved_for_the_wrong_amount_is_cancelled,
    readiness_names_the_payment_provider,
    what_a_dead_process_left_in_flight_is_settled_once_its_lock_lapses,
);
