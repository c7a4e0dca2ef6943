//! Operations endpoints, error shape, middleware behaviour, on both databases and, for
//! readiness, on S3 storage too.

mod common;

use common::{assert_error, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};

async fn health_and_readiness_answer(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, body) = srv.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, body) = srv.get("/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
}

async fn readiness_checks_s3_storage(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::S3, |_| {}).await;
    let (status, _) = srv.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    srv.stop().await;
}

async fn readiness_fails_when_the_database_is_gone(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.app_state.db.close().await;
    let resp = srv.http.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&resp.json().await.unwrap(), "unavailable");
    let (status, _) = srv.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn unknown_routes_and_methods_get_json_errors(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, body) = srv.get("/api/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = srv.call(Method::DELETE, "/api/v1/auth/login", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
    let (status, body) = srv.call(Method::GET, "/api/v1/auth/signup", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
}

on_both_databases!(
    health_and_readiness_answer,
    readiness_checks_s3_storage,
    readiness_fails_when_the_database_is_gone,
    unknown_routes_and_methods_get_json_errors,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route() {
    let srv = TestServer::start(Backend::Sqlite).await;
    srv.get("/healthz", None).await;
    srv.get("/healthz", None).await;
    srv.get("/no/such/thing", None).await;
    let text = srv.http.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("lectern_http_requests_total")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no healthz counter in:\n{text}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 2.0, "{line}");
    assert!(
        text.contains("route=\"unmatched\""),
        "unmatched paths are one label, not one per path"
    );
    assert!(text.contains("lectern_http_request_duration_seconds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_kept_to_those_with_the_token() {
    let srv = TestServer::start_with(Backend::Sqlite, lectern::config::StorageKind::Fs, |c| {
        c.metrics_token = lectern::config::Secret::new("scrape-me-please");
    })
    .await;
    let url = srv.url("/metrics");
    assert_eq!(srv.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(srv.http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let resp = srv.http.get(&url).bearer_auth("scrape-me-please").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("lectern_http_requests_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_docs_page_are_served() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (status, doc) = srv.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/me/instructor",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let page = srv.http.get(srv.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "not the docs page: {html}");
    // The page's script is served by us, not fetched from a CDN.
    assert!(!html.contains("https://"), "docs page loads something from the internet");
    let js = srv.http.get(srv.url("/api/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_made_or_kept() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let resp = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let resp = srv
        .http
        .get(srv.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_players_on_other_origins_pass_cors() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let preflight = srv
        .http
        .request(Method::OPTIONS, srv.url("/api/v1/me"))
        .header("origin", "https://school.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization, range")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed =
        preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("range"), "{allowed}");
    let resp = srv
        .http
        .get(srv.url("/healthz"))
        .header("origin", "https://school.example")
        .send()
        .await
        .unwrap();
    let exposed = resp.headers()["access-control-expose-headers"].to_str().unwrap().to_lowercase();
    assert!(exposed.contains("content-range") && exposed.contains("content-length"), "{exposed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_can_be_limited_to_listed_origins() {
    let srv = TestServer::start_with(Backend::Sqlite, StorageKind::Fs, |c| {
        c.cors_origins = "https://school.example".into()
    })
    .await;
    let ok = srv
        .http
        .get(srv.url("/healthz"))
        .header("origin", "https://school.example")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://school.example");
    let other = srv
        .http
        .get(srv.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn sensitive_query_values_are_redacted_for_logs() {
    assert_eq!(
        lectern::http::redact_query("token=abc.def&page=2&Signature=zz&x"),
        "token=REDACTED&page=2&Signature=REDACTED&x"
    );
}

/// The mode bits of `path` that matter for privacy.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_dir_and_its_database_are_private() {
    // Whatever the umask of the process, what Lectern creates is for its own user only.
    let srv = TestServer::start_with(Backend::Sqlite, StorageKind::Fs, |c| {
        c.data_dir = c.data_dir.join("fresh")
    })
    .await;
    srv.signup("private@example.com").await;
    let dir = srv.cfg.data_dir.clone();
    assert_eq!(mode(&dir), 0o700, "data dir");
    assert_eq!(mode(&dir.join("lectern.db")), 0o600, "database file");
    for side in ["lectern.db-wal", "lectern.db-shm"] {
        if dir.join(side).exists() {
            assert_eq!(mode(&dir.join(side)), 0o600, "{side}");
        }
    }
}
