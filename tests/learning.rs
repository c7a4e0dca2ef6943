//! Watch progress and "my courses" over HTTP, on SQLite and PostgreSQL.

mod common;

use common::{assert_error, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A published course with two lectures of known length and an enrolled student.
async fn setup(srv: &TestServer) -> (String, String, i64, i64, i64) {
    let teacher = srv.instructor("teacher@example.com").await;
    let (course_id, section_id, l1) = srv.course_with_lecture(&teacher, "Progress").await;
    let l2 = srv.add_lecture(&teacher, section_id, json!({"title": "Two"})).await;
    srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&teacher), json!({})).await;
    let db = srv.app_state.db.pool();
    for (id, d) in [(l1, 600.0), (l2, 300.0)] {
        sqlx::query("UPDATE lectures SET duration_seconds = $2 WHERE id = $1")
            .bind(id)
            .bind(d)
            .execute(db)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE courses SET duration_seconds = 900 WHERE id = $1")
        .bind(course_id)
        .execute(db)
        .await
        .unwrap();
    let (student, _) = srv.new_user("student@example.com").await;
    srv.enroll(&student, course_id).await;
    (teacher, student, course_id, l1, l2)
}

async fn report(
    srv: &TestServer,
    token: Option<&str>,
    lecture: i64,
    body: Value,
) -> (StatusCode, Value) {
    srv.call(Method::PUT, &format!("/api/v1/lectures/{lecture}/progress"), token, Some(body)).await
}

async fn progress_merges_reports_from_several_devices(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, student, course_id, l1, l2) = setup(&srv).await;
    // The phone gets to 200 s, then the laptop (behind) reports 50 s: resume at 50, furthest stays 200.
    let (status, p) = report(&srv, Some(&student), l1, json!({"position_seconds": 200})).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let (_, p) = report(&srv, Some(&student), l1, json!({"position_seconds": 50.5})).await;
    assert_eq!(
        (p["position_seconds"].as_f64(), p["furthest_seconds"].as_f64(), p["completed"].as_bool()),
        (Some(50.5), Some(200.0), Some(false))
    );
    // Completion sticks, whatever a late report says.
    let (_, p) =
        report(&srv, Some(&student), l2, json!({"position_seconds": 10, "completed": true})).await;
    assert_eq!(p["completed"], true);
    let (_, p) =
        report(&srv, Some(&student), l2, json!({"position_seconds": 20, "completed": false})).await;
    assert_eq!(p["completed"], true);
    // Passing 90 % completes a lecture on its own.
    let (_, p) = report(&srv, Some(&student), l1, json!({"position_seconds": 545})).await;
    assert_eq!(p["completed"], true);

    let (status, course) =
        srv.get(&format!("/api/v1/courses/{course_id}/progress"), Some(&student)).await;
    assert_eq!(status, StatusCode::OK, "{course}");
    assert_eq!(
        (course["completed_lectures"].as_i64(), course["total_lectures"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(course["percent"].as_f64(), Some(100.0));
    assert_eq!(course["last_lecture_id"].as_i64(), Some(l1));
    let watched = course["watched_fraction"].as_f64().unwrap();
    assert!((watched - (545.0 + 20.0) / 900.0).abs() < 1e-6, "{watched}");
}

async fn concurrent_reports_never_lose_the_furthest_point(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, student, _, l1, _) = setup(&srv).await;
    let reports = (1..=20)
        .map(|i| report(&srv, Some(&student), l1, json!({"position_seconds": (i * 25) as f64})));
    for (status, _) in futures::future::join_all(reports).await {
        assert_eq!(status, StatusCode::OK);
    }
    let (_, p) = report(&srv, Some(&student), l1, json!({"position_seconds": 1})).await;
    assert_eq!(p["furthest_seconds"].as_f64(), Some(500.0));
}

async fn only_people_who_may_watch_record_progress(b: Backend) {
    let srv = TestServer::start(b).await;
    let (teacher, _, course_id, l1, _) = setup(&srv).await;
    let (outsider, _) = srv.new_user("outsider@example.com").await;
    let (status, body) = report(&srv, Some(&outsider), l1, json!({"position_seconds": 5})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "not_enrolled");
    let (status, _) = report(&srv, None, l1, json!({"position_seconds": 5})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) =
        srv.get(&format!("/api/v1/courses/{course_id}/progress"), Some(&outsider)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = report(&srv, Some(&teacher), l1, json!({"position_seconds": 5})).await;
    assert_eq!(status, StatusCode::OK, "the owner may record (and preview) their own lectures");
    let (status, _) = report(&srv, Some(&outsider), 99_999, json!({"position_seconds": 5})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn impossible_positions_are_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, student, _, l1, _) = setup(&srv).await;
    for bad in [
        json!({"position_seconds": -1}),
        json!({"position_seconds": 5000}),
        json!({"position_seconds": "10"}),
        json!({}),
    ] {
        let (status, body) = report(&srv, Some(&student), l1, bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (_, p) = report(&srv, Some(&student), l1, json!({"position_seconds": 0})).await;
    assert_eq!(
        p["furthest_seconds"].as_f64(),
        Some(0.0),
        "nothing from the refused reports was kept"
    );
}

async fn my_courses_lists_active_enrollments_with_progress(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, student, course_id, l1, _) = setup(&srv).await;
    report(&srv, Some(&student), l1, json!({"position_seconds": 600, "completed": true})).await;
    let (status, mine) = srv.get("/api/v1/me/courses", Some(&student)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["total"].as_i64(), Some(1));
    let item = &mine["items"][0];
    assert_eq!(item["course"]["id"].as_i64(), Some(course_id));
    assert_eq!(
        (item["percent"].as_f64(), item["completed_lectures"].as_i64()),
        (Some(50.0), Some(1))
    );
    assert_eq!(item["last_lecture_id"].as_i64(), Some(l1));
    let (_, me) = srv.get("/api/v1/me", Some(&student)).await;
    lectern::learning::revoke(
        srv.app_state.db.pool(),
        lectern::types::UserId::new(me["id"].as_i64().unwrap()),
        lectern::types::CourseId::new(course_id),
    )
    .await
    .unwrap();
    let (_, mine) = srv.get("/api/v1/me/courses", Some(&student)).await;
    assert_eq!(mine["total"].as_i64(), Some(0));
    let (status, _) = srv.get("/api/v1/me/courses", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

on_both_databases!(
    progress_merges_reports_from_several_devices,
    concurrent_reports_never_lose_the_furthest_point,
    only_people_who_may_watch_record_progress,
    impossible_positions_are_refused,
    my_courses_lists_active_enrollments_with_progress,
);
