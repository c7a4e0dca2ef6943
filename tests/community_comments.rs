//! Comment threads over HTTP, on SQLite and PostgreSQL: replies nested under their thread,
//! validation, tombstones of deleted comments, pagination of threads and of long reply lists.

mod common;

use common::{assert_error, ids, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn signed_in_users_comment_and_replies_nest_under_their_thread(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Discussed").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (asker, _) = srv.new_user("asker@example.com").await;
    let asker_id = srv.user_id(&asker).await;

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
    let course = srv.published_course(&teacher, "Strict").await;
    let other_course = srv.published_course(&teacher, "Elsewhere").await;
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

/// Only the author (or an admin) deletes; for anyone else the comment is not theirs to find.
/// Deleted with a reply under it, the thread stays as a tombstone that can still be replied to.
async fn a_thread_with_replies_stays_when_its_author_deletes_it(
    srv: &TestServer,
    comments: &str,
    (author, replier, teacher): (&str, &str, &str),
    root: &Value,
) -> Value {
    let root_path = format!("/api/v1/comments/{}", root["id"]);
    for token in [replier, teacher] {
        let (status, err) = srv.call(Method::DELETE, &root_path, Some(token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&err, "not_found");
    }
    assert_eq!(
        srv.call(Method::DELETE, &root_path, Some(author), None).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = srv.get(comments, None).await;
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
        srv.call(Method::DELETE, &root_path, Some(author), None).await.0,
        StatusCode::NOT_FOUND,
        "deleted already"
    );
    // Replying to what is left of the thread still works.
    let (status, late) = srv
        .post(comments, Some(teacher), json!({"content": "Late answer", "parent_id": root["id"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{late}");
    late
}

/// `DELETE /comments/{id}` by `token`: the status.
async fn delete_comment(srv: &TestServer, comment: &Value, token: &str) -> StatusCode {
    srv.call(Method::DELETE, &format!("/api/v1/comments/{}", comment["id"]), Some(token), None)
        .await
        .0
}

async fn a_deleted_comment_with_replies_stays_as_a_tombstone(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Threads").await;
    let comments = format!("/api/v1/courses/{course}/comments");
    let (author, _) = srv.new_user("author@example.com").await;
    let (replier, _) = srv.new_user("replier@example.com").await;
    let (_, root) =
        srv.post(&comments, Some(&author), json!({"content": "Original question"})).await;
    let (_, reply) = srv
        .post(&comments, Some(&replier), json!({"content": "An answer", "parent_id": root["id"]}))
        .await;
    let (_, lonely) =
        srv.post(&comments, Some(&author), json!({"content": "Nobody answers this"})).await;

    let tokens = (author.as_str(), replier.as_str(), teacher.as_str());
    let late =
        a_thread_with_replies_stays_when_its_author_deletes_it(&srv, &comments, tokens, &root)
            .await;

    // A comment without replies simply goes.
    assert_eq!(delete_comment(&srv, &lonely, &author).await, StatusCode::NO_CONTENT);
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(ids(&list), [root["id"].as_i64().unwrap()]);

    // When the last reply goes (an admin removing one, the replier the other), so does the tombstone.
    let admin = srv.admin().await;
    assert_eq!(delete_comment(&srv, &reply, &admin).await, StatusCode::NO_CONTENT);
    let (_, list) = srv.get(&comments, None).await;
    assert_eq!(list["items"][0]["replies"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(delete_comment(&srv, &late, &teacher).await, StatusCode::NO_CONTENT);
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
    let course = srv.published_course(&teacher, "Busy").await;
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

async fn long_threads_show_their_first_replies_and_page_the_rest(b: Backend) {
    let srv = TestServer::start_with(b, lectern::config::StorageKind::Fs, |c| {
        c.posts_per_user_per_minute = 0
    })
    .await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Popular").await;
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

on_both_databases!(
    signed_in_users_comment_and_replies_nest_under_their_thread,
    comment_input_is_validated,
    a_deleted_comment_with_replies_stays_as_a_tombstone,
    comment_threads_are_paginated,
    long_threads_show_their_first_replies_and_page_the_rest,
);
