//! Refunds, the refund policy, and the instructor dashboard that adds up sales and refunds,
//! over HTTP on SQLite and PostgreSQL.

mod common;

use common::shop::{
    buy, confirm, count, enrolled, enrollment_rows, order, playback, published, refund,
    set_duration, watch,
};
use common::{assert_error, Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Refunds

async fn a_refund_within_policy_revokes_access(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course, lecture) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let student_id = srv.user_id(&student).await;
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
    let student_id = srv.user_id(&student).await;
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

/// The dashboard `teacher` sees for `query`.
async fn dashboard(srv: &TestServer, token: &str, query: &str) -> Value {
    let (status, d) = srv.get(&format!("/api/v1/instructor/dashboard{query}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d
}

/// Today's figures: Rust sold twice (once refunded) and watched to the end, SQL sold once.
fn assert_todays_figures(d: &Value, rust: i64, sql: i64) {
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

/// Days without sales: nothing sold or refunded, enrollments as of now.
async fn days_without_sales_add_up_to_nothing(srv: &TestServer, teacher: &str) {
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let yesterday = today.pred_opt().unwrap();
    for query in [format!("?from={tomorrow}"), format!("?to={yesterday}")] {
        let d = dashboard(srv, teacher, &query).await;
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
}

/// Students may not see it; bad dates are refused; admins see every course.
async fn the_dashboard_is_for_instructors_and_admins(srv: &TestServer, teacher: &str) {
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
            srv.get(&format!("/api/v1/instructor/dashboard{query}"), Some(teacher)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_error(&err, code);
    }
    let admin = srv.admin().await;
    let d = dashboard(srv, &admin, "").await;
    assert_eq!(d["courses"].as_array().unwrap().len(), 3, "admins see every course");
    assert_eq!(d["totals"]["revenue"], 95000);
}

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
    let s1_id = srv.user_id(&s1).await;

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
        assert_todays_figures(&dashboard(&srv, &teacher, &query).await, rust, sql);
    }
    days_without_sales_add_up_to_nothing(&srv, &teacher).await;
    // A refund made today of a sale made before the range counts in the range.
    sqlx::query("UPDATE orders SET paid_at = paid_at - $1 WHERE id = $2")
        .bind(3 * 24 * 3600_i64)
        .bind(s2_order["id"].as_i64().unwrap())
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    let d = dashboard(&srv, &teacher, &format!("?from={today}")).await;
    let r = &d["courses"][0];
    assert_eq!(
        (r["revenue"].as_i64(), r["paid_orders"].as_i64(), r["refunds"].as_i64()),
        (Some(0), Some(1), Some(1)),
        "{d}"
    );
    the_dashboard_is_for_instructors_and_admins(&srv, &teacher).await;
}

on_both_databases!(
    a_refund_within_policy_revokes_access,
    the_refund_policy_binds_buyers_not_admins,
    the_dashboard_adds_up_sales_refunds_and_watching,
);
