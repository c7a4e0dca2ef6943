//! Courses, sections and lectures over HTTP, on SQLite and PostgreSQL.

mod common;

use common::{assert_error, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn titles(section: &Value) -> Vec<String> {
    section["lectures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["title"].as_str().unwrap().to_string())
        .collect()
}

async fn only_instructors_create_courses_and_drafts_stay_private(b: Backend) {
    let srv = TestServer::start(b).await;
    let (student, _) = srv.new_user("student@example.com").await;
    let (status, body) =
        srv.post("/api/v1/courses", Some(&student), json!({"title": "Mine", "price": 0})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "instructors_only");

    let teacher = srv.instructor("teacher@example.com").await;
    let (status, course) = srv
        .post("/api/v1/courses", Some(&teacher), json!({"title": "러스트로 만드는 동영상 서버", "description": "HLS from scratch", "price": 55000, "currency": "krw", "level": "beginner"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{course}");
    assert_eq!(course["status"], "draft");
    assert_eq!(course["currency"], "KRW");
    assert_eq!(course["instructor"]["name"], "Test User");
    assert_eq!(course["sections"], json!([]));
    let id = course["id"].as_i64().unwrap();

    let path = format!("/api/v1/courses/{id}");
    assert_eq!(srv.get(&path, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(srv.get(&path, Some(&student)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(srv.get(&path, Some(&teacher)).await.0, StatusCode::OK);
    let (_, list) = srv.get("/api/v1/courses", None).await;
    assert_eq!(list["total"], 0);
    // Someone else can neither see nor change the draft.
    let other = srv.instructor("other@example.com").await;
    let (status, _) =
        srv.call(Method::PATCH, &path, Some(&other), Some(json!({"title": "Stolen"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn publishing_needs_a_lecture_and_shows_the_course(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("t@example.com").await;
    let (_, course) =
        srv.post("/api/v1/courses", Some(&teacher), json!({"title": "Empty", "price": 1000})).await;
    let id = course["id"].as_i64().unwrap();
    let (status, body) =
        srv.post(&format!("/api/v1/courses/{id}/publish"), Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "course_empty");

    let (course_id, _, lecture_id) = srv.course_with_lecture(&teacher, "Full course").await;
    let (status, published) =
        srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    assert_eq!(published["status"], "published");

    let (status, page) = srv.get(&format!("/api/v1/courses/{course_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        "id",
        "title",
        "description",
        "price",
        "currency",
        "status",
        "instructor",
        "sections",
        "duration_seconds",
        "rating_avg",
        "rating_count",
        "enrollment_count",
        "is_enrolled",
    ] {
        assert!(page.get(field).is_some(), "course detail lacks {field}: {page}");
    }
    assert_eq!(
        (page["rating_count"].as_i64(), page["enrollment_count"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(page["is_enrolled"], false);
    assert_eq!(page["duration_seconds"].as_f64(), Some(0.0));
    let lecture = &page["sections"][0]["lectures"][0];
    assert_eq!(lecture["id"].as_i64(), Some(lecture_id));
    for field in ["id", "title", "position", "is_preview", "duration_seconds", "video_status"] {
        assert!(lecture.get(field).is_some(), "lecture lacks {field}: {lecture}");
    }
    assert!(lecture.get("video_id").is_none(), "video_id is for the owner only");

    let (_, list) = srv.get("/api/v1/courses?per_page=10", None).await;
    assert_eq!(
        (list["total"].as_i64(), list["page"].as_i64(), list["per_page"].as_i64()),
        (Some(1), Some(1), Some(10))
    );
    assert_eq!(list["items"][0]["id"].as_i64(), Some(course_id));
    for bad in ["?page=0", "?per_page=1000", "?sort=cheapest", "?page=abc"] {
        let (status, body) = srv.get(&format!("/api/v1/courses{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

async fn sections_and_lectures_keep_their_order(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("order@example.com").await;
    let (course_id, s1, _intro) = srv.course_with_lecture(&t, "Ordered").await;
    let (_, s0) = srv
        .post(
            &format!("/api/v1/courses/{course_id}/sections"),
            Some(&t),
            json!({"title": "Preface", "position": 1}),
        )
        .await;
    let s0 = s0["id"].as_i64().unwrap();
    for title in ["Second", "Third"] {
        let (status, _) = srv
            .post(&format!("/api/v1/sections/{s1}/lectures"), Some(&t), json!({"title": title}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, first) = srv
        .post(
            &format!("/api/v1/sections/{s1}/lectures"),
            Some(&t),
            json!({"title": "Zeroth", "position": 1, "is_preview": true}),
        )
        .await;
    assert_eq!(first["is_preview"], true);
    let (_, page) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(&t)).await;
    let sections = page["sections"].as_array().unwrap();
    assert_eq!(
        sections.iter().map(|s| s["title"].as_str().unwrap()).collect::<Vec<_>>(),
        ["Preface", "Basics"]
    );
    assert_eq!(titles(&sections[1]), ["Zeroth", "Intro", "Second", "Third"]);

    // Move "Third" to the front, then "Intro" into the preface; positions stay 1..n.
    let third = sections[1]["lectures"][3]["id"].as_i64().unwrap();
    let intro = sections[1]["lectures"][1]["id"].as_i64().unwrap();
    let (status, moved) =
        patch(&srv, &t, &format!("/api/v1/lectures/{third}"), json!({"position": 1})).await;
    assert_eq!((status, moved["position"].as_i64()), (StatusCode::OK, Some(1)));
    let (status, _) =
        patch(&srv, &t, &format!("/api/v1/lectures/{intro}"), json!({"section_id": s0})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        patch(&srv, &t, &format!("/api/v1/sections/{s1}"), json!({"position": 1, "title": "Core"}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(&t)).await;
    let sections = page["sections"].as_array().unwrap();
    assert_eq!(sections[0]["title"], "Core");
    assert_eq!(titles(&sections[0]), ["Third", "Zeroth", "Second"]);
    assert_eq!(titles(&sections[1]), ["Intro"]);
    assert_eq!(positions(&sections[0]), [1, 2, 3]);

    // Deleting closes the gap.
    let zeroth = sections[0]["lectures"][1]["id"].as_i64().unwrap();
    let (status, _) =
        srv.call(Method::DELETE, &format!("/api/v1/lectures/{zeroth}"), Some(&t), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, page) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(&t)).await;
    assert_eq!(positions(&page["sections"][0]), [1, 2]);
    let (status, _) =
        srv.call(Method::DELETE, &format!("/api/v1/sections/{s0}"), Some(&t), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, page) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(&t)).await;
    assert_eq!(page["sections"].as_array().unwrap().len(), 1);
}

/// PATCH `path` with `body` as `token`.
async fn patch(srv: &TestServer, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    srv.call(Method::PATCH, path, Some(token), Some(body)).await
}

/// The positions of a section's lectures, in the order the course page lists them.
fn positions(section: &Value) -> Vec<i64> {
    section["lectures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["position"].as_i64().unwrap())
        .collect()
}

async fn only_the_owner_or_an_admin_changes_a_course(b: Backend) {
    let srv = TestServer::start(b).await;
    let owner = srv.instructor("owner@example.com").await;
    let (course_id, section_id, lecture_id) = srv.course_with_lecture(&owner, "Owned").await;
    srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&owner), json!({})).await;
    let rival = srv.instructor("rival@example.com").await;
    let attempts = [
        (Method::PATCH, format!("/api/v1/courses/{course_id}"), Some(json!({"price": 1}))),
        (Method::DELETE, format!("/api/v1/courses/{course_id}"), None),
        (
            Method::POST,
            format!("/api/v1/courses/{course_id}/sections"),
            Some(json!({"title": "x"})),
        ),
        (Method::PATCH, format!("/api/v1/sections/{section_id}"), Some(json!({"title": "x"}))),
        (
            Method::POST,
            format!("/api/v1/sections/{section_id}/lectures"),
            Some(json!({"title": "x"})),
        ),
        (Method::PATCH, format!("/api/v1/lectures/{lecture_id}"), Some(json!({"title": "x"}))),
        (Method::DELETE, format!("/api/v1/lectures/{lecture_id}"), None),
    ];
    for (method, path, body) in attempts {
        let (status, err) = srv.call(method.clone(), &path, Some(&rival), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {err}");
    }
    let (_, page) = srv.get(&format!("/api/v1/courses/{course_id}"), None).await;
    assert_eq!((page["title"].as_str(), page["price"].as_i64()), (Some("Owned"), Some(55000)));

    srv.app_state
        .accounts
        .create_user("admin@example.com", "password123", "Admin", lectern::accounts::Role::Admin)
        .await
        .unwrap();
    let (admin, _) = srv.login("admin@example.com", "password123").await;
    let (status, page) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{course_id}"),
            Some(&admin),
            Some(json!({"price": 44000})),
        )
        .await;
    assert_eq!((status, page["price"].as_i64()), (StatusCode::OK, Some(44000)));
}

async fn course_input_is_validated(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("valid@example.com").await;
    let cases = [
        (json!({"title": "", "price": 0}), "invalid_field"),
        (json!({"title": "x".repeat(201), "price": 0}), "invalid_field"),
        (json!({"title": "Ok", "price": -1}), "invalid_price"),
        (json!({"title": "Ok", "price": 1.5}), "invalid_body"),
        (json!({"title": "Ok", "price": "100"}), "invalid_body"),
        (json!({"title": "Ok", "price": 100, "currency": "WON!"}), "invalid_currency"),
        (json!({"title": "Ok", "price": 100, "category_id": 999}), "unknown_category"),
        (json!({"title": "Ok", "price": 100, "level": "guru"}), "invalid_level"),
    ];
    for (body, code) in cases {
        let (status, err) = srv.post("/api/v1/courses", Some(&t), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_error(&err, code);
    }
    let (_, list) = srv.get("/api/v1/courses", None).await;
    assert_eq!(list["total"], 0);
    let (course_id, section_id, _) = srv.course_with_lecture(&t, "Valid").await;
    let (status, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/courses/{course_id}"),
            Some(&t),
            Some(json!({"price": -5})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = srv
        .post(&format!("/api/v1/sections/{section_id}/lectures"), Some(&t), json!({"title": "  "}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = srv
        .post(
            &format!("/api/v1/sections/{section_id}/lectures"),
            Some(&t),
            json!({"title": "x", "position": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for path in ["/api/v1/courses/abc", "/api/v1/courses/99999", "/api/v1/courses/-1"] {
        let (status, err) = srv.get(path, Some(&t)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_error(&err, "not_found");
    }
}

/// Send a request without the harness's "a 5xx is a bug" check: status and JSON body.
async fn raw(
    srv: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = srv.http.request(method, srv.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn a_database_outage_is_a_503_never_a_404(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("outage@example.com").await;
    let (course_id, _, lecture) = srv.course_with_lecture(&t, "Fragile").await;
    let (status, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/lectures/{lecture}"),
            Some(&t),
            Some(json!({"is_preview": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(&t), json!({})).await;

    // The lecture is found, then reading its course fails: that used to be answered as if the
    // lecture did not exist.
    sqlx::query("ALTER TABLE users RENAME TO users_away")
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    let progress = format!("/api/v1/lectures/{lecture}/progress");
    let (status, err) =
        raw(&srv, Method::PUT, &progress, Some(&t), json!({"position_seconds": 1.0})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_error(&err, "unavailable");
    let playback = format!("/api/v1/lectures/{lecture}/playback");
    let (status, err) = raw(&srv, Method::POST, &playback, None, json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_error(&err, "unavailable");
    sqlx::query("ALTER TABLE users_away RENAME TO users")
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    let (status, _) = srv.get(&format!("/api/v1/courses/{course_id}"), None).await;
    assert_eq!(status, StatusCode::OK);

    // No database at all: 503 as well, not a 500. (Signed in, so that the anonymous answer
    // the catalog cache holds from just now is not what is read.)
    srv.app_state.db.close().await;
    let (status, err) =
        raw(&srv, Method::GET, &format!("/api/v1/courses/{course_id}"), Some(&t), json!(null))
            .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_error(&err, "unavailable");
    let (status, err) = raw(
        &srv,
        Method::POST,
        "/api/v1/auth/login",
        None,
        json!({"email": "outage@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_error(&err, "unavailable");
}

/// Sections' positions and each section's lecture positions, from the course page.
async fn curriculum_positions(
    srv: &TestServer,
    token: &str,
    course_id: i64,
) -> (Vec<i64>, Vec<Vec<i64>>) {
    let (status, page) = srv.get(&format!("/api/v1/courses/{course_id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let sections = page["sections"].as_array().unwrap();
    let positions = |items: &Value| {
        items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["position"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    (positions(&page["sections"]), sections.iter().map(|s| positions(&s["lectures"])).collect())
}

async fn concurrent_reorders_keep_every_position_unique_and_contiguous(b: Backend) {
    let srv = TestServer::start(b).await;
    let t = srv.instructor("busy@example.com").await;
    let (course_id, s1, first) = srv.course_with_lecture(&t, "Shuffled").await;
    let (_, s2) = srv
        .post(&format!("/api/v1/courses/{course_id}/sections"), Some(&t), json!({"title": "More"}))
        .await;
    let s2 = s2["id"].as_i64().unwrap();
    let mut lectures = vec![first];
    for n in 0..9 {
        let section = if n % 2 == 0 { s1 } else { s2 };
        let (status, l) = srv
            .post(
                &format!("/api/v1/sections/{section}/lectures"),
                Some(&t),
                json!({"title": format!("L{n}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{l}");
        lectures.push(l["id"].as_i64().unwrap());
    }

    // Thirty changes at once: lectures moved within and across sections, sections moved,
    // lectures and sections added at the front.
    let changes =
        reorders(course_id, [s1, s2], &lectures).into_iter().map(|(method, path, body)| {
            let (srv, t) = (&srv, t.clone());
            async move { srv.call(method, &path, Some(&t), Some(body)).await }
        });
    for (status, body) in futures::future::join_all(changes).await {
        assert!(status.is_success(), "{status}: {body}");
    }

    let (sections, lectures) = curriculum_positions(&srv, &t, course_id).await;
    assert_eq!(sections, (1..=sections.len() as i64).collect::<Vec<_>>(), "section positions");
    for (i, positions) in lectures.iter().enumerate() {
        assert_eq!(
            positions,
            &(1..=positions.len() as i64).collect::<Vec<_>>(),
            "lectures of section {i}"
        );
    }
    assert_eq!(lectures.iter().map(Vec::len).sum::<usize>(), 10 + 5, "no lecture lost or doubled");

    // The database itself refuses two rows on one position.
    let dup = sqlx::query(
        "INSERT INTO sections (course_id, title, position, created_at) VALUES ($1, 'Dup', 1, 0)",
    )
    .bind(course_id)
    .execute(srv.app_state.db.pool())
    .await
    .unwrap_err();
    assert!(lectern::db::is_unique_violation(&dup), "{dup}");
}

/// Thirty curriculum changes for course `course_id` (sections `s1`, `s2`), from a fixed seed.
fn reorders(course_id: i64, [s1, s2]: [i64; 2], lectures: &[i64]) -> Vec<(Method, String, Value)> {
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut changes = Vec::new();
    for n in 0..30 {
        let (method, path, body) = match n % 6 {
            0 => (
                Method::POST,
                format!("/api/v1/sections/{s1}/lectures"),
                json!({"title": format!("new {n}"), "position": 1}),
            ),
            1 => (
                Method::PATCH,
                format!("/api/v1/sections/{}", [s1, s2][next(2) as usize]),
                json!({"position": 1 + next(3)}),
            ),
            2 => (
                Method::POST,
                format!("/api/v1/courses/{course_id}/sections"),
                json!({"title": format!("S{n}"), "position": 1}),
            ),
            _ => {
                let lecture = lectures[next(lectures.len() as u64) as usize];
                let section = [s1, s2][next(2) as usize];
                (
                    Method::PATCH,
                    format!("/api/v1/lectures/{lecture}"),
                    json!({"section_id": section, "position": 1 + next(8)}),
                )
            }
        };
        changes.push((method, path, body));
    }
    changes
}

on_both_databases!(
    only_instructors_create_courses_and_drafts_stay_private,
    publishing_needs_a_lecture_and_shows_the_course,
    sections_and_lectures_keep_their_order,
    only_the_owner_or_an_admin_changes_a_course,
    course_input_is_validated,
    a_database_outage_is_a_503_never_a_404,
    concurrent_reorders_keep_every_position_unique_and_contiguous,
);
