//! Course reviews over HTTP, on SQLite and PostgreSQL: who may review, once, edits and
//! deletion, pagination, rate limits, and what a refund takes away. Comment threads are in
//! `community_comments.rs`.

mod common;

use common::{assert_error, ids, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn enrolled_students_review_once_and_the_course_page_counts_them(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "러스트로 만드는 동영상 서버").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let (ana, ana_id) = srv.enrolled_student("ana@example.com", "김아나", course).await;
    let (ben, _) = srv.enrolled_student("ben@example.com", "Ben", course).await;
    let (stranger, _) = srv.new_user("stranger@example.com").await;

    let (status, body) = srv.post(&reviews, None, json!({"rating": 5})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "missing_token");
    let (status, body) =
        srv.post(&reviews, Some(&stranger), json!({"rating": 5, "content": "Great"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "not_enrolled");
    let (status, body) =
        srv.post(&reviews, Some(&teacher), json!({"rating": 5, "content": "Mine is best"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "own_course");

    let (status, review) =
        srv.post(&reviews, Some(&ana), json!({"rating": 5, "content": "최고의 강의입니다"})).await;
    assert_eq!(status, StatusCode::CREATED, "{review}");
    assert_eq!(review["rating"], 5);
    assert_eq!(review["content"], "최고의 강의입니다");
    assert_eq!(review["course_id"].as_i64(), Some(course));
    assert_eq!(review["user"], json!({"id": ana_id, "name": "김아나"}));
    for field in ["id", "created_at", "updated_at"] {
        assert!(review.get(field).is_some_and(|v| !v.is_null()), "review lacks {field}: {review}");
    }
    let (status, body) =
        srv.post(&reviews, Some(&ana), json!({"rating": 1, "content": "changed my mind"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "review_exists");
    let (status, second) = srv.post(&reviews, Some(&ben), json!({"rating": 2})).await;
    assert_eq!((status, &second["content"]), (StatusCode::CREATED, &json!("")));

    let (_, page) = srv.get(&format!("/api/v1/courses/{course}"), None).await;
    assert_eq!((page["rating_avg"].as_f64(), page["rating_count"].as_i64()), (Some(3.5), Some(2)));
    let (status, list) = srv.get(&reviews, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        (list["total"].as_i64(), list["page"].as_i64(), list["per_page"].as_i64()),
        (Some(2), Some(1), Some(20))
    );
    assert_eq!(
        ids(&list),
        [second["id"].as_i64().unwrap(), review["id"].as_i64().unwrap()],
        "newest first"
    );
    assert_eq!(list["items"][1]["user"]["name"], "김아나");
}

async fn review_input_is_validated(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Validated").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let (ana, _) = srv.enrolled_student("ana@example.com", "Ana", course).await;
    let cases = [
        (json!({"rating": 0}), "invalid_rating"),
        (json!({"rating": 6}), "invalid_rating"),
        (json!({"rating": -1}), "invalid_rating"),
        (json!({"rating": 2.5}), "invalid_body"),
        (json!({"rating": "5"}), "invalid_body"),
        (json!({"content": "no rating"}), "invalid_body"),
        (json!({"rating": 4, "content": "가".repeat(5001)}), "invalid_field"),
    ];
    for (body, code) in cases {
        let (status, err) = srv.post(&reviews, Some(&ana), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_error(&err, code);
    }
    let (_, list) = srv.get(&reviews, None).await;
    assert_eq!(list["total"], 0, "nothing invalid was stored");
    // 5,000 characters is the limit, counted in characters, not bytes.
    let (status, review) =
        srv.post(&reviews, Some(&ana), json!({"rating": 4, "content": "가".repeat(5000)})).await;
    assert_eq!(status, StatusCode::CREATED, "{review}");

    for path in ["/api/v1/courses/99999/reviews", "/api/v1/courses/abc/reviews"] {
        let (status, err) = srv.post(path, Some(&ana), json!({"rating": 5})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_error(&err, "not_found");
        assert_eq!(srv.get(path, None).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    for bad in ["?page=0", "?per_page=101", "?page=x"] {
        assert_eq!(
            srv.get(&format!("{reviews}{bad}"), None).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

async fn drafts_take_no_reviews_or_comments(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (draft, _, _) = srv.course_with_lecture(&teacher, "Not yet").await;
    let (student, _) = srv.enrolled_student("early@example.com", "Early", draft).await;
    for kind in ["reviews", "comments"] {
        let path = format!("/api/v1/courses/{draft}/{kind}");
        let (status, err) =
            srv.post(&path, Some(&student), json!({"rating": 5, "content": "first!"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}: {err}");
        assert_error(&err, "not_found");
        assert_eq!(srv.get(&path, None).await.0, StatusCode::NOT_FOUND, "{kind}");
        assert_eq!(srv.get(&path, Some(&student)).await.0, StatusCode::NOT_FOUND, "{kind}");
        // The owner sees the (empty) lists of the draft, and is told why it cannot be written to.
        let (status, list) = srv.get(&path, Some(&teacher)).await;
        assert_eq!((status, list["total"].as_i64()), (StatusCode::OK, Some(0)), "{kind}");
        let (status, err) =
            srv.post(&path, Some(&teacher), json!({"rating": 5, "content": "note"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{kind}");
        assert_error(&err, "course_not_published");
    }
    let (status, _) =
        srv.post(&format!("/api/v1/courses/{draft}/publish"), Some(&teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = srv
        .post(&format!("/api/v1/courses/{draft}/reviews"), Some(&student), json!({"rating": 5}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = srv
        .post(
            &format!("/api/v1/courses/{draft}/comments"),
            Some(&student),
            json!({"content": "first!"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn only_the_author_changes_a_review_and_admins_may_delete_it(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Reviewed").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let (ana, _) = srv.enrolled_student("ana@example.com", "Ana", course).await;
    let (ben, _) = srv.enrolled_student("ben@example.com", "Ben", course).await;
    let (_, review) = srv.post(&reviews, Some(&ana), json!({"rating": 3, "content": "Okay"})).await;
    let path = format!("/api/v1/reviews/{}", review["id"]);

    for (who, token) in
        [("another student", Some(ben.as_str())), ("the instructor", Some(teacher.as_str()))]
    {
        let (status, err) = srv.call(Method::PATCH, &path, token, Some(json!({"rating": 1}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}");
        assert_error(&err, "not_found");
        let (status, _) = srv.call(Method::DELETE, &path, token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}");
    }
    let (status, _) = srv.call(Method::PATCH, &path, None, Some(json!({"rating": 1}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (body, code) in [
        (json!({"rating": 9}), "invalid_rating"),
        (json!({"rating": 4.5}), "invalid_body"),
        (json!({"content": "x".repeat(5001)}), "invalid_field"),
    ] {
        let (status, err) = srv.call(Method::PATCH, &path, Some(&ana), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_error(&err, code);
    }
    let (status, changed) =
        srv.call(Method::PATCH, &path, Some(&ana), Some(json!({"rating": 4}))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (changed["rating"].as_i64(), changed["content"].as_str()),
        (Some(4), Some("Okay")),
        "absent fields stay"
    );
    let (status, changed) = srv
        .call(Method::PATCH, &path, Some(&ana), Some(json!({"content": "Better than I thought"})))
        .await;
    assert_eq!((status, changed["rating"].as_i64()), (StatusCode::OK, Some(4)));
    let (_, page) = srv.get(&format!("/api/v1/courses/{course}"), None).await;
    assert_eq!(page["rating_avg"].as_f64(), Some(4.0));
    assert_eq!(
        srv.call(Method::PATCH, "/api/v1/reviews/99999", Some(&ana), Some(json!({"rating": 2})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // An admin removes Ana's review; Ben removes his own.
    let admin = srv.admin().await;
    assert_eq!(
        srv.call(Method::PATCH, &path, Some(&admin), Some(json!({"rating": 1}))).await.0,
        StatusCode::NOT_FOUND,
        "admins delete, not edit"
    );
    assert_eq!(srv.call(Method::DELETE, &path, Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(srv.call(Method::DELETE, &path, Some(&admin), None).await.0, StatusCode::NOT_FOUND);
    let (_, bens) = srv.post(&reviews, Some(&ben), json!({"rating": 1})).await;
    assert_eq!(
        srv.call(Method::DELETE, &format!("/api/v1/reviews/{}", bens["id"]), Some(&ben), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = srv.get(&reviews, None).await;
    assert_eq!(list["total"], 0);
    let (_, page) = srv.get(&format!("/api/v1/courses/{course}"), None).await;
    assert_eq!((page["rating_avg"].clone(), page["rating_count"].as_i64()), (Value::Null, Some(0)));
    // With the old review gone, Ana may write a new one.
    assert_eq!(srv.post(&reviews, Some(&ana), json!({"rating": 5})).await.0, StatusCode::CREATED);
}

async fn reviews_are_paginated(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Popular").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let mut made = Vec::new();
    for n in 1..=5 {
        let (token, _) = srv
            .enrolled_student(&format!("s{n}@example.com"), &format!("Student {n}"), course)
            .await;
        let (status, review) = srv
            .post(&reviews, Some(&token), json!({"rating": n, "content": format!("review {n}")}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{review}");
        made.push(review["id"].as_i64().unwrap());
    }
    made.reverse();
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, list) = srv.get(&format!("{reviews}?per_page=2&page={page}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (list["total"].as_i64(), list["page"].as_i64(), list["per_page"].as_i64()),
            (Some(5), Some(page), Some(2))
        );
        seen.extend(ids(&list));
    }
    assert_eq!(seen, made, "every review once, newest first");
    let (_, past_the_end) = srv.get(&format!("{reviews}?per_page=2&page=4"), None).await;
    assert_eq!(
        (past_the_end["items"].as_array().unwrap().len(), past_the_end["total"].as_i64()),
        (0, Some(5))
    );
}

async fn the_openapi_document_lists_the_community_routes(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, doc) = srv.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/v1/courses/{course_id}/reviews", "get"),
        ("/api/v1/courses/{course_id}/reviews", "post"),
        ("/api/v1/reviews/{review_id}", "patch"),
        ("/api/v1/reviews/{review_id}", "delete"),
        ("/api/v1/courses/{course_id}/comments", "get"),
        ("/api/v1/courses/{course_id}/comments", "post"),
        ("/api/v1/comments/{comment_id}", "delete"),
        ("/api/v1/comments/{comment_id}/replies", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
}

async fn comments_and_reviews_are_rate_limited_per_user(b: Backend) {
    let srv = TestServer::start_with(b, lectern::config::StorageKind::Fs, |c| {
        c.posts_per_user_per_minute = 3
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Spammed").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (spammer, _) = srv.enrolled_student("spam@example.com", "Spam", course).await;
    for n in 0..2 {
        assert_eq!(
            srv.post(&comments, Some(&spammer), json!({"content": format!("buy now {n}")})).await.0,
            StatusCode::CREATED
        );
    }
    let reviews = format!("/api/v1/courses/{course}/reviews");
    assert_eq!(
        srv.post(&reviews, Some(&spammer), json!({"rating": 1})).await.0,
        StatusCode::CREATED
    );
    let resp = srv
        .http
        .post(srv.url(&comments))
        .bearer_auth(&spammer)
        .json(&json!({"content": "buy now 3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_error(&resp.json().await.unwrap(), "rate_limited");
    let (_, list) = srv.get(&reviews, None).await;
    let review = &list["items"][0]["id"];
    let (status, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/reviews/{review}"),
            Some(&spammer),
            Some(json!({"rating": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "review edits count too");
    // Others post as usual; reading is never limited.
    assert_eq!(
        srv.post(&comments, Some(&teacher), json!({"content": "Please stop"})).await.0,
        StatusCode::CREATED
    );
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(list["total"], 3);
}

async fn a_refunded_student_can_no_longer_change_their_review(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Refundable").await;
    let (student, _) = srv.new_user("student@example.com").await;
    // Bought through the real order flow, then refunded through it.
    let (status, order) =
        srv.post("/api/v1/orders", Some(&student), json!({"course_ids": [course]})).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (status, paid) = srv
        .post(
            &format!("/api/v1/orders/{}/confirm", order["id"]),
            Some(&student),
            json!({"payment_key": "pay_1", "amount": order["amount"]}),
        )
        .await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    let (status, review) = srv
        .post(
            &format!("/api/v1/courses/{course}/reviews"),
            Some(&student),
            json!({"rating": 5, "content": "Great"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{review}");
    let path = format!("/api/v1/reviews/{}", review["id"]);
    assert_eq!(
        srv.call(Method::PATCH, &path, Some(&student), Some(json!({"rating": 4}))).await.0,
        StatusCode::OK
    );
    let (status, refunded) = srv
        .post(&format!("/api/v1/orders/{}/refund", order["id"]), Some(&student), json!({}))
        .await;
    assert_eq!(
        (status, refunded["status"].as_str()),
        (StatusCode::OK, Some("refunded")),
        "{refunded}"
    );

    let (status, err) = srv
        .call(Method::PATCH, &path, Some(&student), Some(json!({"rating": 1, "content": "Scam"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_error(&err, "not_enrolled");
    let (_, list) = srv.get(&format!("/api/v1/courses/{course}/reviews"), None).await;
    assert_eq!(
        (list["items"][0]["rating"].as_i64(), list["items"][0]["content"].as_str()),
        (Some(4), Some("Great"))
    );
    // Still theirs to delete.
    assert_eq!(
        srv.call(Method::DELETE, &path, Some(&student), None).await.0,
        StatusCode::NO_CONTENT
    );
    // And no new one without enrolling again.
    let (status, err) = srv
        .post(&format!("/api/v1/courses/{course}/reviews"), Some(&student), json!({"rating": 1}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&err, "not_enrolled");
}

on_both_databases!(
    enrolled_students_review_once_and_the_course_page_counts_them,
    review_input_is_validated,
    drafts_take_no_reviews_or_comments,
    only_the_author_changes_a_review_and_admins_may_delete_it,
    reviews_are_paginated,
    the_openapi_document_lists_the_community_routes,
    comments_and_reviews_are_rate_limited_per_user,
    a_refunded_student_can_no_longer_change_their_review,
);
