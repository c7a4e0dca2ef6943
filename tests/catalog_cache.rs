//! The public catalog cache: anonymous catalog reads come from memory with an `ETag` and
//! `Cache-Control: public`, a write through the server is seen at once, anything else within
//! `catalog_cache_secs`, and signed-in readers always get a fresh answer.

mod common;

use std::time::Duration;

use common::{eventually, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

/// An anonymous GET: status, ETag, Cache-Control and the JSON body (null for a 304).
async fn anonymous(
    srv: &TestServer,
    path: &str,
    etag: Option<&str>,
) -> (StatusCode, String, String, Value) {
    let mut req = srv.http.get(srv.url(path));
    if let Some(tag) = etag {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    let resp = req.send().await.unwrap();
    let header = |name| {
        resp.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };
    let (status, etag, cache) =
        (resp.status(), header(header::ETAG), header(header::CACHE_CONTROL));
    let body = if status == StatusCode::OK { resp.json().await.unwrap() } else { Value::Null };
    (status, etag, cache, body)
}

async fn anonymous_catalog_reads_are_cached_and_revalidated(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("t@example.com").await;
    let course = srv.published_course(&teacher, "Caching 101").await;
    let page = format!("/api/v1/courses/{course}");

    for path in [page.as_str(), "/api/v1/courses", "/api/v1/courses?q=caching"] {
        let (status, etag, cache, body) = anonymous(&srv, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(cache, "public, max-age=1", "{path}");
        assert!(etag.starts_with('"') && etag.len() == 34, "{path}: {etag}");
        // The same answer again: the same tag, and a client holding it gets a 304.
        let (_, again, _, same) = anonymous(&srv, path, None).await;
        assert_eq!((again.as_str(), &same), (etag.as_str(), &body), "{path}");
        let (status, tag, cache, _) = anonymous(&srv, path, Some(&etag)).await;
        assert_eq!((status, tag.as_str()), (StatusCode::NOT_MODIFIED, etag.as_str()), "{path}");
        assert_eq!(cache, "public, max-age=1");
    }

    // A write through the server is seen by the next anonymous read, with a new tag.
    let (_, old_tag, _, _) = anonymous(&srv, &page, None).await;
    let (status, _) =
        srv.call(Method::PATCH, &page, Some(&teacher), Some(json!({"title": "Caching 201"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, new_tag, _, body) = anonymous(&srv, &page, Some(&old_tag)).await;
    assert_eq!((status, body["title"].as_str()), (StatusCode::OK, Some("Caching 201")));
    assert_ne!(new_tag, old_tag);
    let (_, _, _, list) = anonymous(&srv, "/api/v1/courses", None).await;
    assert_eq!(list["items"][0]["title"], "Caching 201");
}

async fn changes_behind_the_servers_back_show_within_the_lifetime(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("t@example.com").await;
    let course = srv.published_course(&teacher, "Before").await;
    let page = format!("/api/v1/courses/{course}");
    assert_eq!(anonymous(&srv, &page, None).await.3["title"], "Before");
    assert_eq!(anonymous(&srv, "/api/v1/courses", None).await.3["items"][0]["title"], "Before");

    // As a transcoding worker or another node would: straight in the database.
    sqlx::query("UPDATE courses SET title = 'After' WHERE id = $1")
        .bind(course)
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    // Anonymous readers are served the cached page for now (this is what the cache is for)…
    assert_eq!(anonymous(&srv, &page, None).await.3["title"], "Before");
    // …and so is everybody the list, which is the same for every caller…
    let (_, list) = srv.get("/api/v1/courses", None).await;
    assert_eq!(list["items"][0]["title"], "Before");
    let (_, list) = srv.get("/api/v1/courses", Some(&teacher)).await;
    assert_eq!(list["items"][0]["title"], "Before");
    // …but a page that says things about its reader never is shared with a signed-in one…
    let (_, fresh) = srv.get(&page, Some(&teacher)).await;
    assert_eq!(fresh["title"], "After");
    // …and within the lifetime everyone sees the change.
    eventually("the cached page to expire", Duration::from_secs(5), || async {
        (anonymous(&srv, &page, None).await.3["title"] == "After").then_some(())
    })
    .await;
}

async fn the_cache_can_be_turned_off(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |cfg| cfg.catalog_cache_secs = 0).await;
    let teacher = srv.instructor("t@example.com").await;
    let course = srv.published_course(&teacher, "Before").await;
    let page = format!("/api/v1/courses/{course}");
    let (_, _, cache, body) = anonymous(&srv, &page, None).await;
    assert_eq!((cache.as_str(), body["title"].as_str()), ("", Some("Before")));
    sqlx::query("UPDATE courses SET title = 'After' WHERE id = $1")
        .bind(course)
        .execute(srv.app_state.db.pool())
        .await
        .unwrap();
    assert_eq!(anonymous(&srv, &page, None).await.3["title"], "After");
}

/// Many visitors missing the same answer at once (a cold start, the reads after a write) cost
/// one computation: the course table is locked so that every request is in flight together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_are_computed_once() {
    let srv = TestServer::start(Backend::Postgres).await;
    let teacher = srv.instructor("t@example.com").await;
    srv.published_course(&teacher, "Single flight").await;
    let mut lock = srv.app_state.db.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE courses IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let before = srv.app_state.public_cache.computed();
    let visitors: Vec<_> = (0..16)
        .map(|_| {
            let req = srv.http.get(srv.url("/api/v1/courses?q=flight"));
            tokio::spawn(async move {
                let resp = req.send().await.unwrap();
                (resp.status(), resp.text().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(srv.app_state.public_cache.computed() - before, 1, "one visitor computes");
    lock.commit().await.unwrap();
    let mut answers = Vec::new();
    for v in visitors {
        let (status, body) = v.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        answers.push(body);
    }
    assert!(answers.iter().all(|a| a == &answers[0] && a.contains("Single flight")), "{answers:?}");
    assert_eq!(srv.app_state.public_cache.computed() - before, 1);
}

on_both_databases!(
    anonymous_catalog_reads_are_cached_and_revalidated,
    changes_behind_the_servers_back_show_within_the_lifetime,
    the_cache_can_be_turned_off,
);
