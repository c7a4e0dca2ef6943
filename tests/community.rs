//! Reviews and comment threads over HTTP, on SQLite and PostgreSQL.

mod common;

use common::{assert_error, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A published course by `teacher`; its id.
async fn published_course(srv: &TestServer, teacher: &str, title: &str) -> i64 {
    let (course_id, _, _) = srv.course_with_lecture(teacher, title).await;
    let (status, body) =
        srv.post(&format!("/api/v1/courses/{course_id}/publish"), Some(teacher), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    course_id
}

/// The caller's user id.
async fn user_id(srv: &TestServer, token: &str) -> i64 {
    let (status, me) = srv.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["id"].as_i64().unwrap()
}

/// A new user named `name` and enrolled in `course_id`: `(access token, user id)`.
async fn enrolled_student(
    srv: &TestServer,
    email: &str,
    name: &str,
    course_id: i64,
) -> (String, i64) {
    let (token, _) = srv.new_user(email).await;
    let (status, body) =
        srv.call(Method::PATCH, "/api/v1/me", Some(&token), Some(json!({"name": name}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = user_id(srv, &token).await;
    lectern::learning::enroll(srv.app_state.db.pool(), id, course_id, "test").await.unwrap();
    (token, id)
}

fn ids(list: &Value) -> Vec<i64> {
    list["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

async fn enrolled_students_review_once_and_the_course_page_counts_them(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "러스트로 만드는 동영상 서버").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let (ana, ana_id) = enrolled_student(&srv, "ana@example.com", "김아나", course).await;
    let (ben, _) = enrolled_student(&srv, "ben@example.com", "Ben", course).await;
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
    let course = published_course(&srv, &teacher, "Validated").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let (ana, _) = enrolled_student(&srv, "ana@example.com", "Ana", course).await;
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
    let (student, _) = enrolled_student(&srv, "early@example.com", "Early", draft).await;
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
    let course = published_course(&srv, &teacher, "Reviewed").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let (ana, _) = enrolled_student(&srv, "ana@example.com", "Ana", course).await;
    let (ben, _) = enrolled_student(&srv, "ben@example.com", "Ben", course).await;
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
    let course = published_course(&srv, &teacher, "Popular").await;
    let reviews = format!("/api/v1/courses/{course}/reviews");
    let mut made = Vec::new();
    for n in 1..=5 {
        let (token, _) =
            enrolled_student(&srv, &format!("s{n}@example.com"), &format!("Student {n}"), course)
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

async fn signed_in_users_comment_and_replies_nest_under_their_thread(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "Discussed").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (asker, _) = srv.new_user("asker@example.com").await;
    let asker_id = user_id(&srv, &asker).await;

    let (status, err) = srv.post(&comments, None, json!({"content": "anonymous question"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&err, "missing_token");

    // Not enrolled, still allowed: comments are for anyone signed in.
    let (status, first) = srv
        .post(&comments, Some(&asker), json!({"content": "  환불 규정이 어떻게 되나요?  "}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["content"], "환불 규정이 어떻게 되나요?");
    assert_eq!(first["parent_id"], Value::Null);
    assert_eq!(first["deleted"], false);
    assert_eq!(first["user"], json!({"id": asker_id, "name": "Test User"}));
    assert!(first["created_at"].is_string() && first["updated_at"].is_string(), "{first}");
    let first_id = first["id"].as_i64().unwrap();
    let (_, second) =
        srv.post(&comments, Some(&asker), json!({"content": "Is there a Discord?"})).await;
    let second_id = second["id"].as_i64().unwrap();

    let (status, answer) = srv
        .post(
            &comments,
            Some(&teacher),
            json!({"content": "7일 이내 전액 환불입니다.", "parent_id": first_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["parent_id"].as_i64(), Some(first_id));
    // A reply to a reply joins the thread instead of nesting deeper.
    let (status, follow_up) = srv
        .post(&comments, Some(&asker), json!({"content": "감사합니다!", "parent_id": answer["id"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{follow_up}");
    assert_eq!(follow_up["parent_id"].as_i64(), Some(first_id));

    let (status, list) = srv.get(&comments, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2, "replies are not threads: {list}");
    assert_eq!(ids(&list), [second_id, first_id], "newest thread first");
    assert_eq!(list["items"][0]["replies"], json!([]));
    let thread = &list["items"][1];
    assert_eq!(thread["content"], "환불 규정이 어떻게 되나요?");
    let replies: Vec<i64> =
        thread["replies"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(
        replies,
        [answer["id"].as_i64().unwrap(), follow_up["id"].as_i64().unwrap()],
        "replies oldest first"
    );
    assert_eq!(thread["replies"][0]["content"], "7일 이내 전액 환불입니다.");
    assert!(thread["replies"][0].get("replies").is_none(), "one level of nesting: {thread}");

    let (_, oldest) = srv.get(&format!("{comments}?sort=oldest"), None).await;
    assert_eq!(ids(&oldest), [first_id, second_id]);
    let (status, err) = srv.get(&format!("{comments}?sort=hot"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&err, "invalid_sort");
}

async fn comment_input_is_validated(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "Strict").await;
    let other_course = published_course(&srv, &teacher, "Elsewhere").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (user, _) = srv.new_user("user@example.com").await;
    let (_, foreign) = srv
        .post(
            &format!("/api/v1/courses/{other_course}/comments"),
            Some(&user),
            json!({"content": "over there"}),
        )
        .await;

    let cases = [
        (json!({"content": ""}), "invalid_field"),
        (json!({"content": " \n\t "}), "invalid_field"),
        (json!({"content": "x".repeat(5001)}), "invalid_field"),
        (json!({"content": "bell\u{7}"}), "invalid_field"),
        (json!({}), "invalid_body"),
        (json!({"content": 42}), "invalid_body"),
        (json!({"content": "reply", "parent_id": foreign["id"]}), "invalid_parent"),
        (json!({"content": "reply", "parent_id": 99999}), "invalid_parent"),
        (json!({"content": "reply", "parent_id": "1"}), "invalid_body"),
    ];
    for (body, code) in cases {
        let (status, err) = srv.post(&comments, Some(&user), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_error(&err, code);
    }
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(list["total"], 0, "nothing invalid was stored");
    let (status, ok) =
        srv.post(&comments, Some(&user), json!({"content": "한".repeat(5000)})).await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");

    for path in ["/api/v1/courses/99999/comments", "/api/v1/courses/x/comments"] {
        assert_eq!(
            srv.post(path, Some(&user), json!({"content": "hello"})).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(srv.get(path, None).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/api/v1/comments/99999", "/api/v1/comments/x"] {
        assert_eq!(
            srv.call(Method::DELETE, path, Some(&user), None).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        srv.call(Method::DELETE, &format!("/api/v1/comments/{}", ok["id"]), None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

async fn a_deleted_comment_with_replies_stays_as_a_tombstone(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "Threads").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (author, _) = srv.new_user("author@example.com").await;
    let (replier, _) = srv.new_user("replier@example.com").await;
    let (_, root) =
        srv.post(&comments, Some(&author), json!({"content": "Original question"})).await;
    let root_path = format!("/api/v1/comments/{}", root["id"]);
    let (_, reply) = srv
        .post(&comments, Some(&replier), json!({"content": "An answer", "parent_id": root["id"]}))
        .await;
    let (_, lonely) =
        srv.post(&comments, Some(&author), json!({"content": "Nobody answers this"})).await;

    // Only the author (or an admin) deletes; for anyone else the comment is not theirs to find.
    for token in [&replier, &teacher] {
        let (status, err) = srv.call(Method::DELETE, &root_path, Some(token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&err, "not_found");
    }
    assert_eq!(
        srv.call(Method::DELETE, &root_path, Some(&author), None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(list["total"], 2, "{list}");
    let tomb = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == root["id"])
        .expect("the thread stays");
    assert_eq!(
        (&tomb["deleted"], &tomb["content"], &tomb["user"]),
        (&json!(true), &Value::Null, &Value::Null),
        "{tomb}"
    );
    assert_eq!(tomb["replies"][0]["content"], "An answer", "replies stay readable");
    assert_eq!(
        srv.call(Method::DELETE, &root_path, Some(&author), None).await.0,
        StatusCode::NOT_FOUND,
        "deleted already"
    );
    // Replying to what is left of the thread still works.
    let (status, late) = srv
        .post(&comments, Some(&teacher), json!({"content": "Late answer", "parent_id": root["id"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{late}");

    // A comment without replies simply goes.
    let (status, _) = srv
        .call(Method::DELETE, &format!("/api/v1/comments/{}", lonely["id"]), Some(&author), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(ids(&list), [root["id"].as_i64().unwrap()]);

    // When the last reply goes (an admin removing one, the replier the other), so does the tombstone.
    let admin = srv.admin().await;
    assert_eq!(
        srv.call(Method::DELETE, &format!("/api/v1/comments/{}", reply["id"]), Some(&admin), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(list["items"][0]["replies"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        srv.call(Method::DELETE, &format!("/api/v1/comments/{}", late["id"]), Some(&teacher), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(
        (list["total"].as_i64(), list["items"].as_array().unwrap().len()),
        (Some(0), 0),
        "{list}"
    );
}

async fn comment_threads_are_paginated(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "Busy").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (user, _) = srv.new_user("user@example.com").await;
    let mut threads = Vec::new();
    for n in 1..=5 {
        let (status, c) =
            srv.post(&comments, Some(&user), json!({"content": format!("thread {n}")})).await;
        assert_eq!(status, StatusCode::CREATED);
        let id = c["id"].as_i64().unwrap();
        for r in 1..=2 {
            srv.post(
                &comments,
                Some(&teacher),
                json!({"content": format!("reply {r} to {n}"), "parent_id": id}),
            )
            .await;
        }
        threads.push(id);
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, list) =
            srv.get(&format!("{comments}?per_page=2&page={page}&sort=oldest"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (list["total"].as_i64(), list["page"].as_i64(), list["per_page"].as_i64()),
            (Some(5), Some(page), Some(2))
        );
        for thread in list["items"].as_array().unwrap() {
            assert_eq!(thread["replies"].as_array().unwrap().len(), 2, "{thread}");
        }
        seen.extend(ids(&list));
    }
    assert_eq!(seen, threads);
    assert_eq!(srv.get(&format!("{comments}?per_page=0"), None).await.0, StatusCode::BAD_REQUEST);
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

async fn long_threads_show_their_first_replies_and_page_the_rest(b: Backend) {
    let srv = TestServer::start_with(b, lectern::config::StorageKind::Fs, |c| {
        c.posts_per_user_per_minute = 0
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "Popular").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (user, _) = srv.new_user("user@example.com").await;
    let (_, root) = srv
        .post(&comments, Some(&user), json!({"content": "Anyone else stuck on lecture 3?"}))
        .await;
    let root_id = root["id"].as_i64().unwrap();
    let mut reply_ids = Vec::new();
    for n in 0..25 {
        let (status, r) = srv
            .post(
                &comments,
                Some(&teacher),
                json!({"content": format!("reply {n}"), "parent_id": root_id}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        reply_ids.push(r["id"].as_i64().unwrap());
    }
    let (_, quiet) = srv.post(&comments, Some(&user), json!({"content": "No replies here"})).await;

    // The list carries the first ten replies of each thread and how many there are.
    let (status, list) = srv.get(&format!("{comments}?sort=oldest"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let thread = &list["items"][0];
    assert_eq!(thread["reply_count"], 25, "{thread}");
    assert_eq!(
        ids(&json!({"items": thread["replies"]})),
        reply_ids[..10],
        "the oldest ten, in order"
    );
    assert_eq!(
        (list["items"][1]["reply_count"].as_i64(), list["items"][1]["replies"].clone()),
        (Some(0), json!([]))
    );
    let (_, fewer) = srv.get(&format!("{comments}?sort=oldest&replies_per_thread=3"), None).await;
    assert_eq!(fewer["items"][0]["replies"].as_array().unwrap().len(), 3);
    let (_, none) = srv.get(&format!("{comments}?replies_per_thread=0"), None).await;
    assert_eq!(none["items"][1]["replies"], json!([]), "{none}");
    assert_eq!(none["items"][1]["reply_count"], 25);
    for bad in ["replies_per_thread=101", "replies_per_thread=-1"] {
        let (status, err) = srv.get(&format!("{comments}?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_error(&err, "invalid_replies_per_thread");
    }

    // The rest, a page at a time, oldest first.
    let replies = format!("/api/v1/comments/{root_id}/replies");
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, p) = srv.get(&format!("{replies}?per_page=10&page={page}"), None).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        assert_eq!(
            (p["total"].as_i64(), p["page"].as_i64(), p["per_page"].as_i64()),
            (Some(25), Some(page), Some(10))
        );
        assert!(p["items"][0]["parent_id"].as_i64().is_none_or(|id| id == root_id), "{p}");
        seen.extend(ids(&p));
    }
    assert_eq!(seen, reply_ids);
    let (_, empty) = srv.get(&format!("/api/v1/comments/{}/replies", quiet["id"]), None).await;
    assert_eq!((empty["total"].as_i64(), empty["items"].clone()), (Some(0), json!([])));
    let (status, err) = srv.get("/api/v1/comments/999999/replies", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&err, "not_found");
    assert_eq!(srv.get(&format!("{replies}?per_page=500"), None).await.0, StatusCode::BAD_REQUEST);
}

async fn comments_and_reviews_are_rate_limited_per_user(b: Backend) {
    let srv = TestServer::start_with(b, lectern::config::StorageKind::Fs, |c| {
        c.posts_per_user_per_minute = 3
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = published_course(&srv, &teacher, "Spammed").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (spammer, _) = enrolled_student(&srv, "spam@example.com", "Spam", course).await;
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
    let course = published_course(&srv, &teacher, "Refundable").await;
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
    signed_in_users_comment_and_replies_nest_under_their_thread,
    comment_input_is_validated,
    a_deleted_comment_with_replies_stays_as_a_tombstone,
    comment_threads_are_paginated,
    the_openapi_document_lists_the_community_routes,
    long_threads_show_their_first_replies_and_page_the_rest,
    comments_and_reviews_are_rate_limited_per_user,
    a_refunded_student_can_no_longer_change_their_review,
);
