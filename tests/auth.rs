//! Accounts and auth over HTTP, on SQLite and on PostgreSQL: sign-up, login, access and
//! refresh tokens, sessions, profiles. Throttling is in `auth_limits.rs`.

mod common;

use base64::Engine;
use common::{assert_error, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The claims of a JWT, read without verifying (to check what the server put in).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap()
}

async fn signup_always_makes_a_student(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, user) = srv
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "Mallory@Example.COM ", "password": "password123", "name": "Mallory", "role": "admin", "is_staff": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["role"], "student");
    assert_eq!(user["email"], "mallory@example.com");
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());
    let (access, _) = srv.login("mallory@example.com", "password123").await;
    assert_eq!(claims(&access)["role"], "student");
    let (_, me) = srv.get("/api/v1/me", Some(&access)).await;
    assert_eq!(me["role"], "student");
}

async fn duplicate_email_is_a_conflict_whatever_its_case(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.signup("dup@example.com").await;
    let (status, body) = srv
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "  DUP@example.com", "password": "password123", "name": "Again"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "email_taken");
}

async fn signup_rejects_bad_input_clearly(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| c.max_json_body_bytes = 4096).await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": "password123", "name": "X"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            json!({"email": "a@b.co", "password": "short", "name": "X"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_password",
        ),
        (
            json!({"email": "a@b.co", "password": "password123", "name": "   "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
        ),
        (
            json!({"email": "a@b.co", "password": "password123"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"email": 42, "password": "password123", "name": "X"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (json!("just a string"), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ];
    for (body, want, code) in cases {
        let (status, err) = srv.post("/api/v1/auth/signup", None, body.clone()).await;
        assert_eq!(status, want, "{body} -> {err}");
        assert_error(&err, code);
    }
    // Malformed JSON, a missing content type and an oversize body.
    let send = |body: String, ct: Option<&'static str>| {
        let mut req = srv.http.post(srv.url("/api/v1/auth/signup")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let resp = send("{\"email\": ".into(), Some("application/json")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_error(&resp.json().await.unwrap(), "malformed_json");
    let resp = send("{}".into(), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&resp.json().await.unwrap(), "expected_json");
    let huge = json!({"email": "a@b.co", "password": "password123", "name": "x".repeat(10_000)})
        .to_string();
    let resp = send(huge, Some("application/json")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&resp.json().await.unwrap(), "payload_too_large");
    // Nothing was created along the way.
    let (status, _) = srv
        .post("/api/v1/auth/login", None, json!({"email": "a@b.co", "password": "password123"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn login_refuses_wrong_passwords_and_unknown_accounts_alike(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.signup("ann@example.com").await;
    let (status, wrong) = srv
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ann@example.com", "password": "nope-nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&wrong, "invalid_credentials");
    let (status, unknown) = srv
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "bob@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["error"], unknown["error"]);
    let (status, body) = srv
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": " ANN@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert_eq!(claims(body["access_token"].as_str().unwrap())["typ"], "access");
}

async fn tokens_are_only_accepted_where_they_belong(b: Backend) {
    let srv = TestServer::start(b).await;
    let (access, refresh) = srv.new_user("kinds@example.com").await;
    let (status, _) = srv.get("/api/v1/me", Some(&access)).await;
    assert_eq!(status, StatusCode::OK);
    // A refresh token is not an access token.
    let (status, body) = srv.get("/api/v1/me", Some(&refresh)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "invalid_token");
    // An access token is not a refresh token.
    let (status, body) =
        srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": access})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "invalid_refresh_token");
    // No token, a malformed header, a tampered token.
    let (status, body) = srv.get("/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "missing_token");
    let resp = srv
        .http
        .get(srv.url("/api/v1/me"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let mut parts: Vec<String> = access.split('.').map(String::from).collect();
    let mut c = claims(&access);
    c["role"] = json!("admin");
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string());
    let (status, _) = srv.get("/api/v1/me", Some(&parts.join("."))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn forged_expired_and_wrong_kind_tokens_are_refused(b: Backend) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let srv = TestServer::start(b).await;
    let (access, _) = srv.new_user("forge@example.com").await;
    let good = claims(&access);
    let key = EncodingKey::from_secret(srv.cfg.jwt_secret.expose().as_bytes());
    let now = chrono::Utc::now().timestamp();
    let sign = |c: &Value, alg: Algorithm| encode(&Header::new(alg), c, &key).unwrap();

    // Sanity: a token we sign like the server does is accepted, so the refusals below are
    // about the one thing changed in each.
    let (status, _) = srv.get("/api/v1/me", Some(&sign(&good, Algorithm::HS256))).await;
    assert_eq!(status, StatusCode::OK);

    let mut expired = good.clone();
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 60);
    let (status, body) = srv.get("/api/v1/me", Some(&sign(&expired, Algorithm::HS256))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    for typ in ["refresh", "playback"] {
        let mut other = good.clone();
        other["typ"] = json!(typ);
        let (status, _) = srv.get("/api/v1/me", Some(&sign(&other, Algorithm::HS256))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "typ {typ} accepted as access");
    }
    let (status, _) = srv.get("/api/v1/me", Some(&sign(&good, Algorithm::HS512))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another algorithm accepted");

    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good));
    let (status, _) = srv.get("/api/v1/me", Some(&none)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "alg none accepted");

    let other_key = EncodingKey::from_secret(b"some other secret entirely, 32+ bytes");
    let foreign = encode(&Header::new(Algorithm::HS256), &good, &other_key).unwrap();
    let (status, _) = srv.get("/api/v1/me", Some(&foreign)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn refresh_rotates_and_reuse_revokes_the_family(b: Backend) {
    let srv = TestServer::start(b).await;
    let (a1, r1) = srv.new_user("rot@example.com").await;
    let (status, pair2) =
        srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(status, StatusCode::OK, "{pair2}");
    let r2 = pair2["refresh_token"].as_str().unwrap().to_string();
    let a2 = pair2["access_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    let (status, _) = srv.get("/api/v1/me", Some(&a2)).await;
    assert_eq!(status, StatusCode::OK);

    // A separate login is a separate family and must survive what follows.
    let (other_access, other_refresh) = srv.login("rot@example.com", "password123").await;

    // Replaying the spent r1: refused, and the whole family goes.
    let (status, body) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "invalid_refresh_token");
    let (status, _) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r2})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "r2 still worked after its family was revoked");
    for token in [&a1, &a2] {
        let (status, body) = srv.get("/api/v1/me", Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error(&body, "session_revoked");
    }
    let (status, _) = srv.get("/api/v1/me", Some(&other_access)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": other_refresh})).await;
    assert_eq!(status, StatusCode::OK);
}

async fn concurrent_refreshes_with_one_token_grant_one_and_end_the_session(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, r) = srv.new_user("race@example.com").await;
    let attempts =
        (0..6).map(|_| srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r})));
    let results = futures::future::join_all(attempts).await;
    let (granted, refused): (Vec<_>, Vec<_>) =
        results.into_iter().partition(|(s, _)| *s == StatusCode::OK);
    assert_eq!(granted.len(), 1, "one token spent once: {granted:?}, {refused:?}");
    for (status, body) in &refused {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body}");
        assert_error(body, "invalid_refresh_token");
    }
    // The others presented a spent token: reuse, which ends the session, the winner's new
    // tokens with it.
    let pair = &granted[0].1;
    let (status, body) = srv.get("/api/v1/me", pair["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "session_revoked");
    let (status, body) = srv
        .post("/api/v1/auth/refresh", None, json!({"refresh_token": pair["refresh_token"]}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "invalid_refresh_token");
}

async fn logout_ends_that_session_only(b: Backend) {
    let srv = TestServer::start(b).await;
    let (a1, r1) = srv.new_user("bye@example.com").await;
    let (a2, r2) = srv.login("bye@example.com", "password123").await;
    let (status, _) = srv
        .call(Method::POST, "/api/v1/auth/logout", Some(&a1), Some(json!({"refresh_token": r1})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = srv.get("/api/v1/me", Some(&a1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = srv.get("/api/v1/me", Some(&a2)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r2})).await;
    assert_eq!(status, StatusCode::OK);
    // Logging out needs a signed-in caller, and cannot end someone else's session.
    let (status, _) = srv.post("/api/v1/auth/logout", None, json!({"refresh_token": "rt_x"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (eve, _) = srv.new_user("eve@example.com").await;
    let (_, r3) = srv.login("bye@example.com", "password123").await;
    let (status, _) = srv
        .call(Method::POST, "/api/v1/auth/logout", Some(&eve), Some(json!({"refresh_token": r3})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r3})).await;
    assert_eq!(status, StatusCode::OK, "eve logged out another user's session");
}

async fn profile_edits_never_touch_the_role(b: Backend) {
    let srv = TestServer::start(b).await;
    let (access, _) = srv.new_user("prof@example.com").await;
    let (status, me) = srv
        .call(
            Method::PATCH,
            "/api/v1/me",
            Some(&access),
            Some(json!({"name": "  Prof. Kim ", "bio": "Teaches Rust"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "Prof. Kim");
    assert_eq!(me["bio"], "Teaches Rust");
    let (status, body) =
        srv.call(Method::PATCH, "/api/v1/me", Some(&access), Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "role_not_editable");
    let (status, _) = srv
        .call(Method::PATCH, "/api/v1/me", Some(&access), Some(json!({"email": "x@y.zz"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) =
        srv.call(Method::PATCH, "/api/v1/me", Some(&access), Some(json!({"name": ""}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_name");
    let (status, body) = srv
        .call(Method::PATCH, "/api/v1/me", Some(&access), Some(json!({"bio": "x".repeat(6000)})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_bio");
    let (_, me) = srv.get("/api/v1/me", Some(&access)).await;
    assert_eq!(
        (me["role"].as_str(), me["name"].as_str(), me["email"].as_str()),
        (Some("student"), Some("Prof. Kim"), Some("prof@example.com"))
    );
}

async fn password_change_revokes_other_sessions(b: Backend) {
    let srv = TestServer::start(b).await;
    let (a1, r1) = srv.new_user("pw@example.com").await;
    let (a2, r2) = srv.login("pw@example.com", "password123").await;
    let srv = &srv;
    let put = |token: String, body: Value| async move {
        srv.call(Method::PUT, "/api/v1/me/password", Some(&token), Some(body)).await
    };
    let (status, body) =
        put(a1.clone(), json!({"old_password": "wrong-wrong", "new_password": "newpassword1"}))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "wrong_password");
    let (status, body) =
        put(a1.clone(), json!({"old_password": "password123", "new_password": "short"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_password");
    // Neither attempt changed anything.
    let (status, _) = srv.get("/api/v1/me", Some(&a2)).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) =
        put(a1.clone(), json!({"old_password": "password123", "new_password": "newpassword1"}))
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = srv.get("/api/v1/me", Some(&a2)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r2})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = srv.get("/api/v1/me", Some(&a1)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = srv
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "pw@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    srv.login("pw@example.com", "newpassword1").await;
}

async fn becoming_an_instructor_shows_in_tokens_issued_afterwards(b: Backend) {
    let srv = TestServer::start(b).await;
    let (access, refresh) = srv.new_user("teach@example.com").await;
    let (status, user) = srv
        .post(
            "/api/v1/me/instructor",
            Some(&access),
            json!({"headline": "Rust engineer", "bio": "Ten years of systems work"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["role"], "instructor");
    assert_eq!(user["headline"], "Rust engineer");
    assert_eq!(claims(&access)["role"], "student");
    let (_, pair) = srv.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(claims(pair["access_token"].as_str().unwrap())["role"], "instructor");
    let (fresh, _) = srv.login("teach@example.com", "password123").await;
    assert_eq!(claims(&fresh)["role"], "instructor");
    // Asking again changes nothing.
    let (status, user) = srv
        .post(
            "/api/v1/me/instructor",
            Some(&fresh),
            json!({"headline": "Rust engineer", "bio": ""}),
        )
        .await;
    assert_eq!((status, user["role"].as_str()), (StatusCode::OK, Some("instructor")));
    let (status, _) = srv.post("/api/v1/me/instructor", None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn admins_made_by_the_operator_stay_admins(b: Backend) {
    let srv = TestServer::start(b).await;
    let admin = srv
        .app_state
        .accounts
        .create_user("root@example.com", "password123", "Root", lectern::accounts::Role::Admin)
        .await
        .unwrap();
    assert_eq!(admin.role, lectern::accounts::Role::Admin);
    let (access, _) = srv.login("root@example.com", "password123").await;
    assert_eq!(claims(&access)["role"], "admin");
    let (_, user) =
        srv.post("/api/v1/me/instructor", Some(&access), json!({"headline": "", "bio": ""})).await;
    assert_eq!(user["role"], "admin");
}

async fn json_bodies_must_be_objects_where_objects_are_expected(b: Backend) {
    let srv = TestServer::start(b).await;
    let (access, refresh) = srv.new_user("shape@example.com").await;
    // An array used to fill the request struct field by field: `[]` made a student an
    // instructor, and a two-element array was a login.
    for body in [json!([]), json!(["Headline", "Bio"])] {
        let (status, err) = srv.post("/api/v1/me/instructor", Some(&access), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {err}");
        assert_error(&err, "invalid_body");
    }
    let (_, me) = srv.get("/api/v1/me", Some(&access)).await;
    assert_eq!(me["role"], "student", "{me}");
    let (status, err) =
        srv.post("/api/v1/auth/login", None, json!(["shape@example.com", "password123"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_error(&err, "invalid_body");
    let (status, err) = srv
        .post("/api/v1/auth/signup", None, json!(["new@example.com", "password123", "New"]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_error(&err, "invalid_body");
    let (status, err) = srv.post("/api/v1/auth/refresh", None, json!([refresh])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    // Objects still work, with defaults for absent fields.
    let (status, user) = srv.post("/api/v1/me/instructor", Some(&access), json!({})).await;
    assert_eq!((status, user["role"].as_str()), (StatusCode::OK, Some("instructor")), "{user}");
}

on_both_databases!(
    signup_always_makes_a_student,
    duplicate_email_is_a_conflict_whatever_its_case,
    signup_rejects_bad_input_clearly,
    login_refuses_wrong_passwords_and_unknown_accounts_alike,
    tokens_are_only_accepted_where_they_belong,
    forged_expired_and_wrong_kind_tokens_are_refused,
    refresh_rotates_and_reuse_revokes_the_family,
    concurrent_refreshes_with_one_token_grant_one_and_end_the_session,
    logout_ends_that_session_only,
    profile_edits_never_touch_the_role,
    password_change_revokes_other_sessions,
    becoming_an_instructor_shows_in_tokens_issued_afterwards,
    admins_made_by_the_operator_stay_admins,
    json_bodies_must_be_objects_where_objects_are_expected,
);
