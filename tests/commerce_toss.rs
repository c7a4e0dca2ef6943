//! Payments through the Toss Payments provider, against a fake of its API that checks what the
//! real one requires: declines, outages and late answers, refunds, buyers who hang up, the
//! reconciler settling what lost its answer, on SQLite and PostgreSQL.

mod common;
#[path = "common/fake_toss.rs"]
mod fake_toss;

use common::shop::{
    charges_of, confirm, count, enrolled, get_order, order, playback, published, refund,
};
use common::{assert_error, Backend, TestServer};
use lectern::config::{Secret, StorageKind};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn toss_server(b: Backend, fake: &fake_toss::FakeToss) -> TestServer {
    let base = fake.base.clone();
    TestServer::start_with(b, StorageKind::Fs, move |c| {
        c.payment_provider = lectern::commerce::payments::ProviderName::Toss;
        c.toss_api_base = base;
        c.toss_secret_key = Secret::new(fake_toss::SECRET);
        c.payment_timeout_secs = 1;
    })
    .await
}

/// A declined card (402), a Toss outage (pending) and an approval answered after our timeout
/// (pending, then paid once by the retry with the same key): the paid order.
async fn declines_outages_and_late_answers(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
    student: &str,
    placed: &Value,
    (course, lecture): (i64, i64),
) -> Value {
    // Declined by the card company: 402, still pending.
    let (status, err) = confirm(srv, student, placed, "reject_card").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{err}");
    assert_error(&err, "payment_declined");
    assert!(err["error"]["message"].as_str().unwrap().contains("REJECT_CARD_PAYMENT"), "{err}");

    // Toss is down: pending, retry later.
    let (status, err) = confirm(srv, student, placed, "down_card").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");

    // Toss approves but answers after our timeout: still pending, nothing granted…
    let started = std::time::Instant::now();
    let (status, err) = confirm(srv, student, placed, "slow_card").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");
    assert!(started.elapsed() < fake_toss::SLOW, "the client gave up at payment_timeout_secs");
    assert_eq!(get_order(srv, student, &placed["id"]).await["status"], "pending");
    assert!(!enrolled(srv, student, course).await);
    assert_eq!(playback(srv, student, lecture).await, StatusCode::FORBIDDEN);
    // …and the retry with the same payment key finds the payment done: paid once.
    let (status, paid) = confirm(srv, student, placed, "slow_card").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(
        (paid["status"].as_str(), paid["payment_provider"].as_str()),
        (Some("paid"), Some("toss"))
    );
    assert!(enrolled(srv, student, course).await);
    assert_eq!(fake.with(|l| l.charges), 1);
    paid
}

/// A refund cancels the payment at Toss, with an Idempotency-Key, and revokes access.
async fn a_refund_cancels_the_payment_at_toss(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
    student: &str,
    placed: &Value,
    course: i64,
) {
    let order_id = placed["payment_order_id"].as_str().unwrap();
    let (status, refunded) = refund(srv, student, &placed["id"]).await;
    assert_eq!(
        (status, refunded["status"].as_str()),
        (StatusCode::OK, Some("refunded")),
        "{refunded}"
    );
    assert!(!enrolled(srv, student, course).await);
    fake.with(|l| {
        assert_eq!(l.cancels.len(), 1);
        let (key, body) = &l.cancels[0];
        assert!(
            key.as_deref().is_some_and(|k| k.contains(order_id)),
            "cancel carries an Idempotency-Key: {key:?}"
        );
        assert_eq!(body["cancelAmount"], 55000);
        assert!(body["cancelReason"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(l.payments["slow_card"]["status"], "CANCELED");
        assert!(l.violations.is_empty(), "requests the real API would refuse: {:?}", l.violations);
    });
}

/// Racing confirmations of another order reach Toss once; dollars are refused.
async fn racing_confirmations_reach_toss_once_and_only_won_is_taken(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
    teacher: &str,
    student: &str,
) {
    let (other_course, _) = published(srv, teacher, "SQL", 30000, "KRW").await;
    let second = order(srv, student, &[other_course]).await;
    fake.open_checkout(second["payment_order_id"].as_str().unwrap(), 30000);
    let asked = fake.with(|l| l.confirm_requests);
    let answers =
        futures::future::join_all((0..5).map(|_| confirm(srv, student, &second, "card_race")))
            .await;
    for (status, body) in &answers {
        assert_eq!((*status, body["status"].as_str()), (StatusCode::OK, Some("paid")), "{body}");
    }
    assert_eq!(fake.with(|l| (l.confirm_requests - asked, l.charges)), (1, 2));

    // Toss takes Korean won only.
    let (usd, _) = published(srv, teacher, "In dollars", 1999, "USD").await;
    let dollars = order(srv, student, &[usd]).await;
    let (status, err) = confirm(srv, student, &dollars, "card_usd").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&err, "unsupported_currency");
    assert!(fake.with(|l| l.violations.is_empty()));
}

async fn toss_payments_confirm_and_cancel_as_the_real_api_requires(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server(b, &fake).await;
    let teacher = srv.instructor("teacher@example.com").await;
    let (course, lecture) = published(&srv, &teacher, "Rust", 55000, "KRW").await;
    let (student, _) = srv.new_user("student@example.com").await;
    let placed = order(&srv, &student, &[course]).await;
    fake.open_checkout(placed["payment_order_id"].as_str().unwrap(), 55000);

    let paid =
        declines_outages_and_late_answers(&srv, &fake, &student, &placed, (course, lecture)).await;
    // Confirming again answers from our records without asking Toss.
    let asked = fake.with(|l| l.confirm_requests);
    let (status, again) = confirm(&srv, &student, &placed, "slow_card").await;
    assert_eq!((status, again), (StatusCode::OK, paid));
    assert_eq!(fake.with(|l| l.confirm_requests), asked);

    a_refund_cancels_the_payment_at_toss(&srv, &fake, &student, &placed, course).await;
    racing_confirmations_reach_toss_once_and_only_won_is_taken(&srv, &fake, &teacher, &student)
        .await;
}

/// A Toss-backed server with `payment_timeout_secs` and `reconcile_interval_secs` as given.
async fn toss_server_with(
    b: Backend,
    fake: &fake_toss::FakeToss,
    timeout_secs: u64,
    reconcile_secs: u64,
) -> TestServer {
    let base = fake.base.clone();
    TestServer::start_with(b, StorageKind::Fs, move |c| {
        c.payment_provider = lectern::commerce::payments::ProviderName::Toss;
        c.toss_api_base = base;
        c.toss_secret_key = Secret::new(fake_toss::SECRET);
        c.payment_timeout_secs = timeout_secs;
        c.reconcile_interval_secs = reconcile_secs;
    })
    .await
}

/// A student with a pending Toss order for a new ₩55,000 course, its checkout opened:
/// `(student token, student id, course id, order)`.
async fn toss_order(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
    title: &str,
) -> (String, i64, i64, Value) {
    let teacher = srv.instructor(&format!("teacher-{}@example.com", title.to_lowercase())).await;
    let (course, _) = published(srv, &teacher, title, 55000, "KRW").await;
    let (student, _) = srv.new_user(&format!("student-{}@example.com", title.to_lowercase())).await;
    let placed = order(srv, &student, &[course]).await;
    fake.open_checkout(placed["payment_order_id"].as_str().unwrap(), 55000);
    let id = srv.user_id(&student).await;
    (student, id, course, placed)
}

/// Send `path` with `body` and hang up after `after`, before the answer comes.
async fn hang_up(
    srv: &TestServer,
    token: &str,
    path: &str,
    body: Value,
    after: std::time::Duration,
) {
    let client = reqwest::Client::builder().timeout(after).build().unwrap();
    let sent = client.post(srv.url(path)).bearer_auth(token).json(&body).send().await;
    assert!(
        sent.is_err_and(|e| e.is_timeout()),
        "the request was answered before the client hung up"
    );
}

/// Poll the order until `done` says yes, for up to 20 s; the last order seen.
async fn order_until(
    srv: &TestServer,
    token: &str,
    order_id: &Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = get_order(srv, token, order_id).await;
        if done(&o) || std::time::Instant::now() > deadline {
            return o;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn payment_locks_of(srv: &TestServer, user: i64) -> i64 {
    count(srv, "SELECT COUNT(*) FROM payment_locks WHERE user_id = $1", user).await
}

async fn a_buyer_who_hangs_up_mid_payment_still_gets_what_the_provider_did(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    // No reconciler in this test's time: only the request's own work can settle the payment.
    let srv = toss_server_with(b, &fake, 10, 3600).await;
    let (student, sid, course, placed) = toss_order(&srv, &fake, "Hangup").await;
    fake.set(|l| l.delay = Some(std::time::Duration::from_millis(1500)));

    // Mid-confirm: Toss charges, the buyer is gone before it answers…
    let path = format!("/api/v1/orders/{}/confirm", placed["id"]);
    hang_up(
        &srv,
        &student,
        &path,
        json!({"payment_key": "card_gone", "amount": 55000}),
        std::time::Duration::from_millis(300),
    )
    .await;
    // …and the order is paid and the buyer enrolled all the same.
    let paid = order_until(&srv, &student, &placed["id"], |o| o["status"] == "paid").await;
    assert_eq!(
        (paid["status"].as_str(), paid["payment_intent"].as_str()),
        (Some("paid"), None),
        "{paid}"
    );
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(fake.with(|l| l.charges), 1);
    // The buyer's payment lock went with the work, not with its lease.
    assert_eq!(payment_locks_of(&srv, sid).await, 0);

    // Mid-refund: Toss gives the money back, the buyer is gone before it answers…
    let path = format!("/api/v1/orders/{}/refund", placed["id"]);
    hang_up(&srv, &student, &path, json!({}), std::time::Duration::from_millis(300)).await;
    // …and the order is refunded and access revoked all the same.
    let refunded = order_until(&srv, &student, &placed["id"], |o| o["status"] == "refunded").await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(fake.with(|l| l.payments["card_gone"]["status"].clone()), "CANCELED");
    assert_eq!(payment_locks_of(&srv, sid).await, 0);
}

/// Toss charges but answers 500: pending for now, with the intent on record; the reconciler
/// asks Toss, which says it is paid.
async fn a_charge_answered_with_an_error_is_found_paid(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
) {
    let (student, _, course, placed) = toss_order(srv, fake, "Charged").await;
    fake.set(|l| l.fail_after_work = true);
    let (status, err) = confirm(srv, &student, &placed, "card_charged").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");
    fake.set(|l| l.fail_after_work = false);
    // …then the reconciler asks Toss, which says it is paid: paid and enrolled, no retry needed.
    let paid = order_until(srv, &student, &placed["id"], |o| o["status"] == "paid").await;
    assert_eq!(
        (paid["status"].as_str(), paid["payment_intent"].as_null()),
        (Some("paid"), Some(())),
        "{paid}"
    );
    assert!(enrolled(srv, &student, course).await);
    assert_eq!(charges_of(srv, &placed["id"]).await, 1);
}

/// Toss is down and charges nothing; it stays down for a while, then recovers. Then a refund
/// Toss carries out but answers 500: refunded and revoked by the reconciler.
async fn an_outage_leaves_the_order_to_be_paid_again(srv: &TestServer, fake: &fake_toss::FakeToss) {
    let (student, _, course, placed) = toss_order(srv, fake, "Outage").await;
    fake.set(|l| l.down = true);
    let (status, err) = confirm(srv, &student, &placed, "card_lost").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "payment_pending");
    assert_eq!(get_order(srv, &student, &placed["id"]).await["payment_intent"], "confirming");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // The reconciler could not reach Toss either: still confirming, nothing guessed.
    assert_eq!(get_order(srv, &student, &placed["id"]).await["payment_intent"], "confirming");
    fake.set(|l| l.down = false);
    // Recovered: Toss never saw the payment, so the order is plainly pending again…
    let back = order_until(srv, &student, &placed["id"], |o| o["payment_intent"].is_null()).await;
    assert_eq!(
        (back["status"].as_str(), back["payment_intent"].as_null()),
        (Some("pending"), Some(())),
        "{back}"
    );
    assert!(!enrolled(srv, &student, course).await);
    // …and may be paid again.
    let (status, paid) = confirm(srv, &student, &placed, "card_again").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");

    // A refund Toss carries out but answers 500: refunded and revoked by the reconciler.
    fake.set(|l| l.fail_after_work = true);
    let (status, err) = refund(srv, &student, &placed["id"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_error(&err, "refund_pending");
    fake.set(|l| l.fail_after_work = false);
    let refunded = order_until(srv, &student, &placed["id"], |o| o["status"] == "refunded").await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert!(!enrolled(srv, &student, course).await);
}

/// A refund that never reaches Toss: the reconciler sends it again once Toss is back.
async fn a_refund_that_never_reached_toss_is_sent_again(
    srv: &TestServer,
    fake: &fake_toss::FakeToss,
) {
    let (student, _, course, placed) = toss_order(srv, fake, "Resend").await;
    let (status, paid) = confirm(srv, &student, &placed, "card_resend").await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    fake.set(|l| l.down = true);
    let (status, err) = refund(srv, &student, &placed["id"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(get_order(srv, &student, &placed["id"]).await["payment_intent"], "refunding");
    assert!(enrolled(srv, &student, course).await, "access stays until the money is back");
    fake.set(|l| l.down = false);
    let refunded = order_until(srv, &student, &placed["id"], |o| o["status"] == "refunded").await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert!(!enrolled(srv, &student, course).await);
}

async fn the_reconciler_settles_payments_whose_answers_were_lost(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 2, 1).await;
    a_charge_answered_with_an_error_is_found_paid(&srv, &fake).await;
    an_outage_leaves_the_order_to_be_paid_again(&srv, &fake).await;
    a_refund_that_never_reached_toss_is_sent_again(&srv, &fake).await;

    // Every settlement is counted.
    let metrics = srv.http.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"kind="confirming",outcome="paid""#,
        r#"kind="confirming",outcome="pending""#,
        r#"kind="refunding",outcome="refunded""#,
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with("lectern_payment_intents_settled_total") && l.contains(line)),
            "{line} missing from /metrics"
        );
    }
    assert!(fake.with(|l| l.violations.is_empty()), "{:?}", fake.with(|l| l.violations.clone()));
}

async fn racing_refunds_give_the_money_back_once(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 5, 3600).await;
    let (student, _, course, placed) = toss_order(&srv, &fake, "Race").await;
    let (status, paid) = confirm(&srv, &student, &placed, "card_race_refund").await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    fake.set(|l| l.delay = Some(std::time::Duration::from_millis(300)));
    let answers =
        futures::future::join_all((0..5).map(|_| refund(&srv, &student, &placed["id"]))).await;
    let mut refunded = 0;
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => {
                assert_eq!(body["status"], "refunded");
                refunded += 1;
            }
            StatusCode::CONFLICT => assert_error(body, "order_already_refunded"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(refunded, 1, "{answers:?}");
    assert_eq!(fake.with(|l| l.cancels.len()), 1, "one cancel reached Toss");
    assert_eq!(
        count(
            &srv,
            "SELECT COUNT(*) FROM payments WHERE kind = 'refund' AND order_id = $1",
            placed["id"].as_i64().unwrap()
        )
        .await,
        1
    );
    assert!(!enrolled(&srv, &student, course).await);
}

async fn a_payment_approved_for_the_wrong_amount_is_cancelled(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 2, 1).await;

    // Answered at once: cancelled at Toss, the order stays pending, nothing granted.
    let (student, _, course, placed) = toss_order(&srv, &fake, "Skewed").await;
    fake.set(|l| l.skew = -1000);
    let (status, err) = confirm(&srv, &student, &placed, "card_skewed").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{err}");
    assert_error(&err, "payment_mismatch");
    assert_eq!(fake.with(|l| l.payments["card_skewed"]["status"].clone()), "CANCELED");
    let o = get_order(&srv, &student, &placed["id"]).await;
    assert_eq!(
        (o["status"].as_str(), o["payment_intent"].as_null()),
        (Some("pending"), Some(())),
        "{o}"
    );
    assert!(!enrolled(&srv, &student, course).await);

    // Found by the reconciler after a lost answer: cancelled too.
    let (student, _, course, placed) = toss_order(&srv, &fake, "Skewlost").await;
    fake.set(|l| l.fail_after_work = true);
    let (status, err) = confirm(&srv, &student, &placed, "card_skew_lost").await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    fake.set(|l| l.fail_after_work = false);
    let o = order_until(&srv, &student, &placed["id"], |o| o["payment_intent"].is_null()).await;
    assert_eq!(o["status"], "pending", "{o}");
    assert_eq!(fake.with(|l| l.payments["card_skew_lost"]["status"].clone()), "CANCELED");
    assert!(!enrolled(&srv, &student, course).await);
    assert_eq!(charges_of(&srv, &placed["id"]).await, 0);
}

async fn readiness_names_the_payment_provider(b: Backend) {
    let srv = TestServer::start(b).await;
    let (status, ready) = srv.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (ready["payment_provider"].as_str(), ready["environment"].as_str()),
        (Some("dev"), Some("development"))
    );
    let fake = fake_toss::FakeToss::start().await;
    let toss = toss_server(b, &fake).await;
    assert_eq!(toss.get("/readyz", None).await.1["payment_provider"], "toss");
}

async fn what_a_dead_process_left_in_flight_is_settled_once_its_lock_lapses(b: Backend) {
    let fake = fake_toss::FakeToss::start().await;
    let srv = toss_server_with(b, &fake, 2, 1).await;
    let (student, sid, course, placed) = toss_order(&srv, &fake, "Crash").await;
    let payment_order_id = placed["payment_order_id"].as_str().unwrap();
    // A process recorded its intent, reached Toss (which charged), and died: its lock is still
    // on record for a few seconds, its answer never recorded.
    let charged = reqwest::Client::new()
        .post(format!("{}/v1/payments/confirm", fake.base))
        .basic_auth(fake_toss::SECRET, Some(""))
        .json(&json!({"paymentKey": "card_crash", "orderId": payment_order_id, "amount": 55000}))
        .send()
        .await
        .unwrap();
    assert_eq!(charged.status(), StatusCode::OK);
    let now = chrono::Utc::now().timestamp();
    let pool = srv.app_state.db.pool();
    sqlx::query(
        "INSERT INTO payment_intents (order_id, user_id, kind, provider, payment_key, amount, started_at, next_check_at) \
         VALUES ($1, $2, 'confirming', 'toss', 'card_crash', 55000, $3, $3)",
    )
    .bind(placed["id"].as_i64().unwrap())
    .bind(sid)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payment_locks (user_id, holder, expires_at) VALUES ($1, 'dead-process', $2)",
    )
    .bind(sid)
    .bind(now + 3)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(get_order(&srv, &student, &placed["id"]).await["payment_intent"], "confirming");
    // While the dead holder's lease runs, nobody touches it; once it lapses the reconciler asks
    // Toss and finishes the payment.
    let paid = order_until(&srv, &student, &placed["id"], |o| o["status"] == "paid").await;
    assert_eq!(
        (paid["status"].as_str(), paid["payment_intent"].as_null()),
        (Some("paid"), Some(())),
        "{paid}"
    );
    assert!(enrolled(&srv, &student, course).await);
    assert_eq!(
        fake.with(|l| (l.charges, l.confirm_requests)),
        (1, 1),
        "settled by looking, not by charging again"
    );
}

on_both_databases!(
    toss_payments_confirm_and_cancel_as_the_real_api_requires,
    a_buyer_who_hangs_up_mid_payment_still_gets_what_the_provider_did,
    the_reconciler_settles_payments_whose_answers_were_lost,
    racing_refunds_give_the_money_back_once,
    a_payment_approved_for_the_wrong_amount_is_cancelled,
    readiness_names_the_payment_provider,
    what_a_dead_process_left_in_flight_is_settled_once_its_lock_lapses,
);
