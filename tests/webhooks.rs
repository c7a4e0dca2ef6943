//! Webhooks over HTTP, on SQLite and PostgreSQL: registration rules, Standard Webhooks
//! signatures checked by the `standardwebhooks` library (PyPI), who hears which event,
//! retries with backoff that survive a restart, the delivery log, re-sends and auto-disable.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use common::{assert_error, Backend, TestServer};
use lectern::config::StorageKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every request a receiver got: headers and body.
type Log = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on loopback: remembers every request, answers `status`.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Log,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Log = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        async fn hook(
            State(r): State<(Log, Arc<AtomicU16>)>,
            headers: HeaderMap,
            body: Bytes,
        ) -> AxumStatus {
            r.0.lock().unwrap().push((headers, String::from_utf8_lossy(&body).into_owned()));
            AxumStatus::from_u16(r.1.load(Ordering::SeqCst)).unwrap()
        }
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state((got.clone(), status.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, status }
    }

    /// The bodies received so far, parsed.
    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect()
    }

    fn types(&self) -> Vec<String> {
        let mut t: Vec<String> =
            self.bodies().iter().map(|b| b["type"].as_str().unwrap().to_string()).collect();
        t.sort();
        t
    }

    /// Wait (up to 20 s) until `n` requests have arrived.
    async fn until(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.got.lock().unwrap().len() < n {
            let got = self.got.lock().unwrap().len();
            assert!(std::time::Instant::now() < deadline, "{got} of {n} requests arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Verify every request received with the Standard Webhooks library and `secret`.
    fn verify_all(&self, secret: &str) {
        let messages: Vec<Value> = self
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(h, body)| {
                let header = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_string());
                json!({"body": body, "headers": {
                    "webhook-id": header("webhook-id"), "webhook-timestamp": header("webhook-timestamp"),
                    "webhook-signature": header("webhook-signature"), "content-type": header("content-type")}})
            })
            .collect();
        let script = r#"
import json, sys
from standardwebhooks import Webhook
secret, messages = sys.argv[1], json.load(sys.stdin)
hook = Webhook(secret)
for m in messages:
    assert m["headers"]["content-type"] == "application/json", m
    hook.verify(m["body"], m["headers"])
    try:
        hook.verify(m["body"] + " ", m["headers"])
    except Exception:
        pass
    else:
        sys.exit("a changed body verified")
print(len(messages))
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script, secret])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with standardwebhooks (pip install standardwebhooks)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&messages).unwrap().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "standardwebhooks refused a delivery: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), messages.len().to_string());
    }
}

async fn server(b: Backend) -> TestServer {
    TestServer::start_with(b, StorageKind::Fs, |c| {
        c.webhook_allow_private = true;
        c.webhook_poll_ms = 100;
        c.webhook_retry_schedule = "2,2".into();
        c.webhook_disable_after_failures = 0;
    })
    .await
}

async fn register(srv: &TestServer, token: &str, url: &str, events: &[&str]) -> Value {
    let (status, hook) = srv
        .post(
            "/api/v1/webhooks",
            Some(token),
            json!({"url": url, "events": events, "description": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    hook
}

/// A published course of `teacher` with one lecture, priced ₩10,000.
async fn buy(srv: &TestServer, token: &str, course: i64) -> Value {
    let (status, order) =
        srv.post("/api/v1/orders", Some(token), json!({"course_ids": [course]})).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (status, paid) = srv
        .post(
            &format!("/api/v1/orders/{}/confirm", order["id"]),
            Some(token),
            json!({"payment_key": "ok", "amount": order["amount"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    paid
}

async fn endpoints_are_registered_by_instructors_and_admins_with_checked_urls(b: Backend) {
    let srv = TestServer::start(b).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let ok = json!({"url": "https://example.com/hook", "events": ["order.paid"]});
    let (status, err) = srv.post("/api/v1/webhooks", Some(&student), ok.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(srv.post("/api/v1/webhooks", None, ok).await.0, StatusCode::UNAUTHORIZED);
    let long = format!("https://example.com/{}", "a".repeat(2000));
    for (url, events, code) in [
        ("ftp://example.com/hook", json!(["order.paid"]), "invalid_url"),
        ("not a url", json!(["order.paid"]), "invalid_url"),
        (long.as_str(), json!(["order.paid"]), "invalid_url"),
        // Private, loopback and link-local targets are refused by default.
        ("http://127.0.0.1:9/hook", json!(["order.paid"]), "invalid_url"),
        ("http://10.0.0.8/hook", json!(["order.paid"]), "invalid_url"),
        ("http://169.254.169.254/latest/meta-data", json!(["order.paid"]), "invalid_url"),
        ("http://[::1]/hook", json!(["order.paid"]), "invalid_url"),
        ("http://user:pw@8.8.8.8/hook", json!(["order.paid"]), "invalid_url"),
        ("http://8.8.8.8/hook", json!(["order.shipped"]), "unknown_event"),
        ("http://8.8.8.8/hook", json!([]), "no_events"),
    ] {
        let (status, err) = srv
            .post("/api/v1/webhooks", Some(&teacher), json!({"url": url, "events": events}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {err}");
        assert_error(&err, code);
    }
    let (status, err) =
        srv.post("/api/v1/webhooks", Some(&teacher), json!(["http://8.8.8.8/hook"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");

    let hook =
        register(&srv, &teacher, "http://8.8.8.8/hook", &["order.paid", "course.published"]).await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    let key =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &secret[6..]).unwrap();
    assert!(key.len() >= 24);
    assert_eq!((hook["enabled"].as_bool(), hook["scope"].as_str()), (Some(true), Some("own")));
    // The secret is shown once.
    let (_, list) = srv.get("/api/v1/webhooks", Some(&teacher)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none(), "{list}");
    // Others do not see or change it; its owner does.
    let other = srv.instructor("other@example.com").await;
    let path = format!("/api/v1/webhooks/{}", hook["id"]);
    assert_eq!(
        srv.call(Method::PATCH, &path, Some(&other), Some(json!({"enabled": false}))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(srv.call(Method::DELETE, &path, Some(&other), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(srv.get("/api/v1/webhooks", Some(&other)).await.1["items"], json!([]));
    let (status, changed) = srv
        .call(
            Method::PATCH,
            &path,
            Some(&teacher),
            Some(json!({"enabled": false, "events": ["order.refunded"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (changed["enabled"].as_bool(), &changed["events"]),
        (Some(false), &json!(["order.refunded"]))
    );
    let admin = srv.admin().await;
    assert_eq!(
        srv.get("/api/v1/webhooks", Some(&admin)).await.1["items"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        srv.call(Method::DELETE, &path, Some(&teacher), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(srv.get("/api/v1/webhooks", Some(&teacher)).await.1["items"], json!([]));
}

async fn signed_events_reach_the_endpoints_that_may_hear_them(b: Backend) {
    let srv = server(b).await;
    let (admin_rx, teacher_rx, other_rx) =
        (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let admin = srv.admin().await;
    let teacher = srv.instructor("teacher@example.com").await;
    let other = srv.instructor("other@example.com").await;
    let all = [
        "course.published",
        "order.paid",
        "order.refunded",
        "enrollment.created",
        "enrollment.revoked",
    ];
    let admin_hook = register(&srv, &admin, &admin_rx.url, &all).await;
    let teacher_hook = register(&srv, &teacher, &teacher_rx.url, &all).await;
    register(&srv, &other, &other_rx.url, &all).await;

    let course = srv.published_course(&teacher, "Rust").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let order = buy(&srv, &student, course).await;
    admin_rx.until(3).await;
    teacher_rx.until(3).await;
    assert_eq!(admin_rx.types(), ["course.published", "enrollment.created", "order.paid"]);
    assert_eq!(teacher_rx.types(), ["course.published", "enrollment.created", "order.paid"]);
    let published =
        teacher_rx.bodies().into_iter().find(|b| b["type"] == "course.published").unwrap();
    assert_eq!(
        (&published["data"]["course_id"], &published["data"]["course"]["status"]),
        (&json!(course), &json!("published"))
    );
    let paid = admin_rx.bodies().into_iter().find(|b| b["type"] == "order.paid").unwrap();
    assert_eq!(
        (&paid["data"]["order_id"], &paid["data"]["order"]["status"]),
        (&order["id"], &json!("paid"))
    );
    assert_eq!(paid["data"]["order"]["course_ids"], json!([course]));
    assert!(chrono::DateTime::parse_from_rfc3339(paid["timestamp"].as_str().unwrap()).is_ok());

    let (status, _) = srv
        .call(Method::POST, &format!("/api/v1/orders/{}/refund", order["id"]), Some(&student), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    admin_rx.until(5).await;
    teacher_rx.until(5).await;
    assert_eq!(
        admin_rx.types(),
        [
            "course.published",
            "enrollment.created",
            "enrollment.revoked",
            "order.paid",
            "order.refunded"
        ]
    );
    assert_eq!(teacher_rx.types(), admin_rx.types());
    // Another instructor hears nothing of this course.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(other_rx.got.lock().unwrap().is_empty());
    // The Standard Webhooks library accepts every delivery with the endpoint's secret.
    admin_rx.verify_all(admin_hook["secret"].as_str().unwrap());
    teacher_rx.verify_all(teacher_hook["secret"].as_str().unwrap());
    // The delivery log shows them.
    let (_, log) =
        srv.get(&format!("/api/v1/webhooks/{}/deliveries", admin_hook["id"]), Some(&admin)).await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{log}");
    assert!(
        items.iter().all(|d| d["status"] == "succeeded"
            && d["response_status"] == 200
            && d["attempt"] == 1),
        "{log}"
    );
}

async fn failed_deliveries_are_retried_with_backoff_across_a_restart(b: Backend) {
    let srv = server(b).await;
    let rx = Receiver::start().await;
    let admin = srv.admin().await;
    let hook = register(&srv, &admin, &rx.url, &["order.paid"]).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Retry").await;
    let (student, _) = srv.new_user("student@example.com").await;

    // The receiver fails: three attempts (the first and two retries), then `failed`.
    rx.status.store(500, Ordering::SeqCst);
    buy(&srv, &student, course).await;
    // Between attempts the retry waits in the delivery queue, and /metrics says so.
    rx.until(1).await;
    let waiting = r#"kind="webhook",state="waiting""#;
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while srv.metric("lectern_queue_jobs", waiting).await != Some(1.0) {
        assert!(std::time::Instant::now() < deadline, "the retry is not in the queue's figures");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rx.until(3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "no attempt past the schedule");
    let ids: Vec<_> = got.iter().map(|(h, _)| h["webhook-id"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one webhook-id on every retry: {ids:?}");
    let log_path = format!("/api/v1/webhooks/{}/deliveries", hook["id"]);
    let (_, log) = srv.get(&log_path, Some(&admin)).await;
    let attempts: Vec<(i64, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["attempt"].as_i64().unwrap(), d["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        attempts,
        [(3, "failed".into()), (2, "failed".into()), (1, "failed".into())],
        "{log}"
    );
    assert_eq!(log["items"][0]["response_status"], 500);

    // A manual re-send, once the receiver works again.
    rx.status.store(200, Ordering::SeqCst);
    let first = log["items"][2]["id"].as_i64().unwrap();
    let resend = format!("/api/v1/webhooks/{}/deliveries/{first}/resend", hook["id"]);
    assert_eq!(srv.post(&resend, Some(&admin), json!({})).await.0, StatusCode::ACCEPTED);
    rx.until(4).await;
    assert_eq!(rx.got.lock().unwrap()[3].0["webhook-id"], ids[0]);
    rx.verify_all(hook["secret"].as_str().unwrap());

    // A retry pending when the server stops is made by the next one.
    rx.status.store(503, Ordering::SeqCst);
    let (other_student, _) = srv.new_user("second@example.com").await;
    buy(&srv, &other_student, course).await;
    rx.until(5).await;
    let srv = srv.restart().await;
    rx.status.store(200, Ordering::SeqCst);
    rx.until(6).await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 6);
    assert_eq!(got[4].0["webhook-id"], got[5].0["webhook-id"]);
    // The receiver has answered; the attempt is recorded a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let (_, log) = srv.get(&log_path, Some(&admin)).await;
        if log["items"][0]["status"] != "delivering" || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (log["items"][0]["attempt"].as_i64(), log["items"][0]["status"].as_str()),
        (Some(2), Some("succeeded")),
        "{log}"
    );
}

async fn an_endpoint_failing_again_and_again_is_disabled(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.webhook_allow_private = true;
        c.webhook_poll_ms = 100;
        c.webhook_retry_schedule = "1,1,1,1".into();
        c.webhook_disable_after_failures = 2;
    })
    .await;
    let rx = Receiver::start().await;
    rx.status.store(500, Ordering::SeqCst);
    let admin = srv.admin().await;
    let hook = register(&srv, &admin, &rx.url, &["order.paid"]).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let course = srv.published_course(&teacher, "Broken").await;
    let (student, _) = srv.new_user("student@example.com").await;
    buy(&srv, &student, course).await;
    rx.until(2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 2, "no attempts once disabled");
    let (_, list) = srv.get("/api/v1/webhooks", Some(&admin)).await;
    assert_eq!(
        (list["items"][0]["enabled"].as_bool(), list["items"][0]["failures_in_a_row"].as_i64()),
        (Some(false), Some(2)),
        "{list}"
    );
    // Switched on again, the waiting retry goes out.
    rx.status.store(200, Ordering::SeqCst);
    let (status, _) = srv
        .call(
            Method::PATCH,
            &format!("/api/v1/webhooks/{}", hook["id"]),
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    rx.until(3).await;
    assert_eq!(rx.got.lock().unwrap().len(), 3);
}

async fn video_events_tell_the_course_owner_when_a_lecture_is_playable_or_failed(b: Backend) {
    let srv = TestServer::start_with(b, StorageKind::Fs, |c| {
        c.webhook_allow_private = true;
        c.webhook_poll_ms = 100;
        c.x264_preset = "ultrafast".into();
        c.worker_poll_ms = 200;
        c.job_max_attempts = 1;
    })
    .await;
    let rx = Receiver::start().await;
    let teacher = srv.instructor("teacher@example.com").await;
    let hook =
        register(&srv, &teacher, &rx.url, &["video.playable", "video.ready", "video.failed"]).await;
    let (_, section, lecture) = srv.course_with_lecture(&teacher, "Videos").await;
    let (_, second) = srv
        .post(
            &format!("/api/v1/sections/{section}/lectures"),
            Some(&teacher),
            json!({"title": "Broken"}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let good = srv
        .put_video(&teacher, lecture, &common::clip(dir.path(), "good.mp4", 320, 240, 2.0, true))
        .await;
    let whole = std::fs::read(common::clip(dir.path(), "cut.mp4", 320, 240, 2.0, true)).unwrap();
    let cut = dir.path().join("cut-short.mp4");
    std::fs::write(&cut, &whole[..whole.len() / 4]).unwrap();
    let bad = srv.put_video(&teacher, second["id"].as_i64().unwrap(), &cut).await;
    let mut worker = srv.spawn_worker();
    for v in [good, bad] {
        srv.wait_video(&teacher, v, Duration::from_secs(240)).await;
    }
    worker.kill().await.unwrap();
    rx.until(3).await;
    assert_eq!(rx.types(), ["video.failed", "video.playable", "video.ready"]);
    for body in rx.bodies() {
        let expected = if body["type"] == "video.failed" { bad } else { good };
        assert_eq!(body["data"]["video_id"], expected, "{body}");
        assert_eq!(body["data"]["lecture_id"], body["data"]["video"]["lecture_id"]);
    }
    let ready = rx.bodies().into_iter().find(|b| b["type"] == "video.ready").unwrap();
    assert_eq!(ready["data"]["video"]["status"], "ready");
    assert!(ready["data"]["video"]["duration_seconds"].as_f64().unwrap() > 1.5);
    let failed = rx.bodies().into_iter().find(|b| b["type"] == "video.failed").unwrap();
    assert!(failed["data"]["video"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed}");
    rx.verify_all(hook["secret"].as_str().unwrap());
}

on_both_databases!(
    video_events_tell_the_course_owner_when_a_lecture_is_playable_or_failed,
    endpoints_are_registered_by_instructors_and_admins_with_checked_urls,
    signed_events_reach_the_endpoints_that_may_hear_them,
    failed_deliveries_are_retried_with_backoff_across_a_restart,
    an_endpoint_failing_again_and_again_is_disabled,
);
