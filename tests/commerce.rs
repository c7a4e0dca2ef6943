//! Cart, orders and confirming payment (with the dev provider), over HTTP on SQLite and
//! PostgreSQL. Refunds and the dashboard are in `commerce_refunds.rs`, Toss Payments in
//! `commerce_toss.rs`.

mod common;

use common::shop::{
    add_to_cart, charges_of, confirm, count, enrolled, enrollment_rows, get_order, order,
    orders_of, place_order, playback, published,
};
use common::{assert_error, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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

/// Two courses ordered from the cart, with no body at all: the pending order.
async fn an_order_from_the_cart(srv: &TestServer, student: &str, rust: i64, sql: i64) -> Value {
    add_to_cart(srv, student, rust).await;
    add_to_cart(srv, student, sql).await;
    let (status, from_cart, _) = place_order(srv, student, None, None).await;
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
    assert_eq!(srv.get("/api/v1/cart", Some(student)).await.1["total"], 85000);
    from_cart
}

/// The catalog changes; `placed` does not. A fresh order of the changed course: that order.
async fn the_catalog_changes_and_the_order_does_not(
    srv: &TestServer,
    teacher: &str,
    student: &str,
    rust: i64,
    placed: &Value,
) -> Value {
    let (status, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{rust}"),
            Some(teacher),
            Some(json!({"price": 99000, "title": "Rust, second edition"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = get_order(srv, student, &placed["id"]).await;
    assert_eq!(
        (again["amount"].as_i64(), again["items"][0]["price"].as_i64()),
        (Some(85000), Some(55000))
    );
    assert_eq!(again["items"][0]["title"], "Rust video servers");
    let fresh = order(srv, student, &[rust]).await;
    assert_eq!(
        fresh["items"],
        json!([{"course_id": rust, "title": "Rust, second edition", "price": 99000}])
    );
    fresh
}

/// The buyer's order list, newest first and paged: `fresh` then `from_cart`.
async fn my_orders_list_both(srv: &TestServer, student: &str, from_cart: &Value, fresh: &Value) {
    let (status, mine) = srv.get("/api/v1/me/orders?per_page=10", Some(student)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (mine["total"].as_i64(), mine["page"].as_i64(), mine["per_page"].as_i64()),
        (Some(2), Some(1), Some(10))
    );
    assert_eq!(mine["items"][0]["id"], fresh["id"]);
    assert_eq!(mine["items"][1]["items"].as_array().unwrap().len(), 2);
    let (_, page2) = srv.get("/api/v1/me/orders?per_page=1&page=2", Some(student)).await;
    assert_eq!(
        (page2["items"][0]["id"].clone(), page2["items"][0]["amount"].as_i64()),
        (from_cart["id"].clone(), Some(85000))
    );
}

/// Refused orders leave nothing behind: `(teacher, student, other)` tokens.
async fn refused_orders_leave_nothing_behind(
    srv: &TestServer,
    (teacher, student, other): (&str, &str, &str),
    (rust, draft, usd): (i64, i64, i64),
) {
    let refusals: [(&str, Option<Value>, StatusCode, &str); 5] = [
        (teacher, Some(json!({"course_ids": [rust]})), StatusCode::FORBIDDEN, "own_course"),
        (student, Some(json!({"course_ids": [draft]})), StatusCode::NOT_FOUND, "not_found"),
        (
            student,
            Some(json!({"course_ids": [rust, usd]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "mixed_currencies",
        ),
        (student, Some(json!({"course_ids": []})), StatusCode::UNPROCESSABLE_ENTITY, "no_courses"),
        (other, None, StatusCode::UNPROCESSABLE_ENTITY, "cart_empty"),
    ];
    for (token, body, expected, code) in refusals {
        let (status, err, _) = place_order(srv, token, None, body.clone()).await;
        assert_eq!(status, expected, "{body:?}: {err}");
        assert_error(&err, code);
    }
}

/// Once paid for, a course can be neither ordered nor put in the cart again, and `fresh`, still
/// pending for a course now owned, cannot be paid.
async fn owned_courses_are_not_sold_again(
    srv: &TestServer,
    student: &str,
    from_cart: &Value,
    fresh: &Value,
    sql: i64,
) {
    let (status, paid) = confirm(srv, student, from_cart, "pay_ok").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    assert_eq!(srv.get("/api/v1/cart", Some(student)).await.1["items"], json!([]));
    let (status, err, _) =
        place_order(srv, student, None, Some(json!({"course_ids": [sql]}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "already_owned");
    let (status, err) = add_to_cart(srv, student, sql).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "already_owned");
    // The still-pending order for a course now owned cannot be paid a second time.
    let (status, err) = confirm(srv, student, fresh, "pay_twice").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&err, "already_owned");
    assert_eq!(charges_of(srv, &fresh["id"]).await, 0);
}

async fn orders_keep_the_titles_and_prices_they_were_placed_at(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (rust, _) = published(&srv, &teacher, "Rust video servers", 55000, "KRW").await;
    let (sql, _) = published(&srv, &teacher, "SQL for humans", 30000, "KRW").await;
    let (usd, _) = published(&srv, &teacher, "In dollars", 1999, "USD").await;
    let (draft, _, _) = srv.course_with_lecture(&teacher, "Not yet").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = srv.user_id(&student).await;

    let from_cart = an_order_from_the_cart(&srv, &student, rust, sql).await;
    let fresh =
        the_catalog_changes_and_the_order_does_not(&srv, &teacher, &student, rust, &from_cart)
            .await;
    my_orders_list_both(&srv, &student, &from_cart, &fresh).await;

    // Only the buyer (and admins) see an order.
    let (other, _) = srv.new_user("other@example.com").await;
    let (status, _) = srv.get(&format!("/api/v1/orders/{}", from_cart["id"]), Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(srv.get("/api/v1/me/orders", Some(&other)).await.1["total"], 0);
    let admin = srv.admin().await;
    assert_eq!(get_order(&srv, &admin, &from_cart["id"]).await["id"], from_cart["id"]);

    refused_orders_leave_nothing_behind(&srv, (&teacher, &student, &other), (rust, draft, usd))
        .await;
    assert_eq!(orders_of(&srv, student_id).await, 2);
    assert_eq!(count(&srv, "SELECT COUNT(*) FROM orders WHERE id > $1", 0).await, 2);

    owned_courses_are_not_sold_again(&srv, &student, &from_cart, &fresh, sql).await;
}

async fn an_idempotency_key_answers_the_same_order(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (rust, _) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (sql, _) = published(&srv, &teacher, "SQL", 30000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = srv.user_id(&student).await;

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
    let student_id = srv.user_id(&student).await;
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
    let student_id = srv.user_id(&student).await;

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

on_both_databases!(
    cart_takes_published_courses_of_others_once,
    orders_keep_the_titles_and_prices_they_were_placed_at,
    an_idempotency_key_answers_the_same_order,
    confirming_takes_the_exact_amount_and_grants_access_once,
    racing_confirmations_charge_and_grant_once,
    free_orders_confirm_without_a_payment_key,
    the_api_document_lists_the_commerce_routes,
);
