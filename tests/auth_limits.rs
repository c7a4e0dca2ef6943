//! Throttling of logins, sign-ups and password changes, per account and per client address
//! (as forwarded by trusted proxies only), over HTTP on SQLite and on PostgreSQL.

mod common;

use common::{assert_error, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn login_attempts_are_rate_limited(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| c.login_attempts_per_minute = 3).await;
    srv.signup("target@example.com").await;
    for _ in 0..3 {
        let (status, _) = srv
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "target@example.com", "password": "guess-guess"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let resp = srv
        .http
        .post(srv.url("/api/v1/auth/login"))
        .json(&json!({"email": "target@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_error(&resp.json().await.unwrap(), "rate_limited");
    // Another account is not locked out by this one's attempts.
    srv.signup("other@example.com").await;
    srv.login("other@example.com", "password123").await;
}

/// POST `body` as if through a proxy that says the client is `client` (`X-Forwarded-For`).
async fn post_via_proxy(
    srv: &TestServer,
    path: &str,
    token: Option<&str>,
    client: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = srv.http.post(srv.url(path)).header("x-forwarded-for", client).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(resp.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    }
    let text = resp.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn login_body(email: &str, password: &str) -> Value {
    json!({"email": email, "password": password})
}

async fn successful_logins_are_never_throttled(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| c.login_attempts_per_minute = 2).await;
    srv.signup("often@example.com").await;
    for _ in 0..12 {
        srv.login("often@example.com", "password123").await;
    }
}

async fn failures_at_an_account_do_not_lock_out_its_owner(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.login_attempts_per_minute = 3;
        c.trusted_proxies = "127.0.0.1, ::1".parse().unwrap();
    })
    .await;
    srv.signup("victim@example.com").await;
    let login = "/api/v1/auth/login";
    for _ in 0..3 {
        let (status, _) = post_via_proxy(
            &srv,
            login,
            None,
            "203.0.113.66",
            login_body("victim@example.com", "guess-guess"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The attacker is stopped, even when it finally guesses right…
    let (status, err) = post_via_proxy(
        &srv,
        login,
        None,
        "203.0.113.66",
        login_body("victim@example.com", "password123"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert_error(&err, "rate_limited");
    // …the owner, from an address that has not been failing, is not.
    let (status, pair) = post_via_proxy(
        &srv,
        login,
        None,
        "198.51.100.7",
        login_body("victim@example.com", "password123"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert!(pair["access_token"].is_string());
    // A second attacker address gets one guess at the account under attack, then waits.
    let (status, _) = post_via_proxy(
        &srv,
        login,
        None,
        "203.0.113.67",
        login_body("victim@example.com", "guess-again"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_via_proxy(
        &srv,
        login,
        None,
        "203.0.113.67",
        login_body("victim@example.com", "guess-more"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn one_address_failing_at_many_accounts_is_throttled(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.login_attempts_per_minute = 2;
        c.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await;
    srv.signup("real@example.com").await;
    let login = "/api/v1/auth/login";
    // Five times the per-account budget, spread over accounts that mostly do not exist.
    for n in 0..10 {
        let (status, _) = post_via_proxy(
            &srv,
            login,
            None,
            "203.0.113.5",
            login_body(&format!("user{n}@example.com"), "password123"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, err) = post_via_proxy(
        &srv,
        login,
        None,
        "203.0.113.5",
        login_body("real@example.com", "password123"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    let (status, _) = post_via_proxy(
        &srv,
        login,
        None,
        "203.0.113.6",
        login_body("real@example.com", "password123"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

fn signup_body(email: &str) -> Value {
    json!({"email": email, "password": "password123", "name": "New"})
}

async fn forwarded_addresses_count_only_from_trusted_proxies(b: Backend) {
    let signup = "/api/v1/auth/signup";
    // No trusted proxy: the header is the client's own claim and changes nothing.
    let direct =
        TestServer::start_with(b, StorageKind::Fs, |c| c.signups_per_address_per_hour = 2).await;
    for n in 0..2 {
        let (status, _) = post_via_proxy(
            &direct,
            signup,
            None,
            &format!("203.0.113.{n}"),
            signup_body(&format!("d{n}@example.com")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, err) =
        post_via_proxy(&direct, signup, None, "198.51.100.9", signup_body("d9@example.com")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a spoofed X-Forwarded-For got past the limit: {err}"
    );
    assert_error(&err, "rate_limited");

    // Behind a trusted proxy each forwarded client has its own allowance.
    let proxied = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.signups_per_address_per_hour = 2;
        c.trusted_proxies = "127.0.0.1, ::1".parse().unwrap();
    })
    .await;
    for n in 0..2 {
        let (status, _) = post_via_proxy(
            &proxied,
            signup,
            None,
            "203.0.113.1",
            signup_body(&format!("p{n}@example.com")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) =
        post_via_proxy(&proxied, signup, None, "203.0.113.1", signup_body("p2@example.com")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Only the hop the proxy appended counts, not what the client wrote before it.
    let (status, _) = post_via_proxy(
        &proxied,
        signup,
        None,
        "198.51.100.9, 203.0.113.1",
        signup_body("p3@example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) =
        post_via_proxy(&proxied, signup, None, "203.0.113.2", signup_body("p4@example.com")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // RFC 7239 `Forwarded` works too.
    let resp = proxied
        .http
        .post(proxied.url(signup))
        .header("forwarded", "for=\"[2001:db8::5]:4711\";proto=https")
        .json(&signup_body("p5@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

async fn password_changes_are_limited_per_address(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.password_changes_per_address_per_hour = 2;
        c.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await;
    let (token, _) = srv.new_user("pwlimit@example.com").await;
    let wrong = json!({"old_password": "not-it-at-all", "new_password": "newpassword1"});
    let put = |client: &'static str, body: Value| {
        let req = srv
            .http
            .put(srv.url("/api/v1/me/password"))
            .bearer_auth(&token)
            .header("x-forwarded-for", client)
            .json(&body);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(put("203.0.113.8", wrong.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(put("203.0.113.8", wrong.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(put("203.0.113.8", wrong.clone()).await, StatusCode::TOO_MANY_REQUESTS);
    // The account itself has used its allowance too: another address does not reset it.
    assert_eq!(put("198.51.100.8", wrong).await, StatusCode::TOO_MANY_REQUESTS);
    let (token2, _) = srv.new_user("other-pw@example.com").await;
    let resp = srv
        .http
        .put(srv.url("/api/v1/me/password"))
        .bearer_auth(&token2)
        .header("x-forwarded-for", "198.51.100.8")
        .json(&json!({"old_password": "password123", "new_password": "newpassword1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

on_both_databases!(
    login_attempts_are_rate_limited,
    successful_logins_are_never_throttled,
    failures_at_an_account_do_not_lock_out_its_owner,
    one_address_failing_at_many_accounts_is_throttled,
    forwarded_addresses_count_only_from_trusted_proxies,
    password_changes_are_limited_per_address,
);
