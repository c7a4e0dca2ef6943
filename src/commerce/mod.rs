//! Cart, orders, payments (provider interface: `dev` and Toss Payments), refunds, and the
//! instructor dashboard's figures.
//!
//! # Rules
//!
//! - **What can be bought.** Only published courses, only by someone who does not own them
//!   already and did not make them: an unknown or draft course is 404, one's own course is 403
//!   `own_course`, a course one is enrolled in is 409 `already_owned`. These hold for the cart,
//!   for placing an order and again just before a payment is taken.
//! - **One currency.** A cart or an order holds courses of one currency (`mixed_currencies`).
//! - **Orders are snapshots.** An order keeps each course's title and price as they were when it
//!   was placed; later catalog changes do not touch it. Placing an order does not empty the
//!   cart: paying does (for the courses paid for).
//! - **Idempotent placing.** `Idempotency-Key` + the same buyer + the same request answers the
//!   order made the first time (with `Idempotent-Replayed: true`); the same key with another
//!   request is 422 `idempotency_key_reused`.
//! - **Confirming** (`pending` → `paid`). The amount sent must equal the order's (400
//!   `amount_mismatch`, nothing happens). A payment intent (`confirming`, with the payment
//!   key and when it started) is recorded; the provider takes the payment; then one transaction
//!   marks the order paid, records the charge in the ledger, settles the intent and enrolls
//!   the buyer. A declined payment is 402 `payment_declined`; a payment the provider approved
//!   for another amount or order is cancelled at the provider and answered 402
//!   `payment_mismatch`; a provider that does not answer is 409 `payment_pending`: the intent
//!   stays for the reconciler, and the order stays `pending` and may be confirmed again. A paid
//!   order confirmed again answers the same, without a second charge. Free orders need no
//!   payment key and no provider.
//! - **Money is never in limbo.** The provider call and the database change it implies run in
//!   a task of their own, outside the request: a buyer whose connection drops mid-confirm is
//!   still enrolled, mid-refund still refunded. The request waits for the task and answers
//!   its outcome. An intent left behind (a crash, a provider that did not answer) is settled
//!   by [`reconcile`], which asks the provider what happened.
//! - **One payment operation per buyer at a time.** Confirmations and refunds hold the buyer's
//!   lease in `payment_locks` (it expires on its own if a process dies). A racing confirmation
//!   waits for the first and then answers its result, so a payment is charged and granted once,
//!   even for two orders of the same course.
//! - **Refunds** (`paid` → `refunded`). The buyer may refund within `refund_window_days` of
//!   payment while less than `refund_max_watched_fraction` of every course in the order has been
//!   watched (403 `refund_window_expired` / `refund_course_watched` otherwise); admins may refund
//!   any paid order. A `refunding` intent is recorded, the provider gives the money back; then
//!   one transaction marks the order refunded, records the refund, settles the intent and
//!   revokes the enrollments, so playback stops at once. Refunding an order that is not paid
//!   is 409. A refund whose provider did not answer (409 `refund_pending`) is finished by the
//!   reconciler: once decided, it is carried out.
//!
//! # Layout
//!
//! - [`cart`] — the cart.
//! - [`orders`] — placing, reading and confirming orders.
//! - [`refunds`] — the refund policy and refunds.
//! - [`dashboard`] — sales and engagement figures for instructors.
//! - [`payments`] — the provider interface, the `dev` provider and the Toss Payments client.
//! - [`reconcile`] — settling payment intents whose requests ended without an outcome.
//! - [`db`] — the SQL. [`routes`] — the HTTP handlers.

pub mod cart;
pub mod dashboard;
pub mod db;
pub mod orders;
pub mod payments;
pub mod reconcile;
pub mod refunds;
pub mod routes;

use crate::types::{CourseId, UserId};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::task::TaskTracker;

use self::payments::PaymentProvider;
use crate::accounts::Caller;
use crate::catalog::db::CourseRow;
use crate::config::Config;
use crate::db::{now, Db};
use crate::error::{Error, Result};

/// How payments and refunds are configured, and the work they have in flight. Shared by every
/// request of a process (`AppState::payments`).
pub struct Payments {
    pub provider: Box<dyn PaymentProvider>,
    /// How long the buyer's payment lock outlives its holder's last heartbeat. A running
    /// confirmation or refund renews it every third of this; a process that dies leaves it
    /// for at most this long, so the reconciler settles what it left well within a minute.
    pub lock_lease: Duration,
    /// Refunds by the buyer are possible this long after payment.
    pub refund_window: Duration,
    /// …and while less than this share of each course has been watched.
    pub refund_max_watched_fraction: f64,
    /// How soon an intent whose request ended without an outcome is looked at again.
    pub recheck_after: Duration,
    /// Provider calls running outside the requests that started them; shutdown waits for them.
    pub tasks: TaskTracker,
}

impl Payments {
    pub fn from_config(cfg: &Config) -> Payments {
        let timeout = cfg.payment_timeout_secs.max(1);
        Payments {
            provider: payments::from_config(cfg),
            lock_lease: Duration::from_secs(2 * timeout + 10),
            refund_window: Duration::from_secs(cfg.refund_window_days.saturating_mul(24 * 3600)),
            refund_max_watched_fraction: cfg.refund_max_watched_fraction,
            recheck_after: Duration::from_secs(cfg.reconcile_interval_secs.max(1)),
            tasks: TaskTracker::new(),
        }
    }

    /// Run `work` (a provider call and the database change it implies) in a task of its own and
    /// wait for its answer. Dropping the returned future (the client hung up) does not cancel
    /// the work: it finishes, and its outcome is recorded all the same.
    pub async fn detached<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.tasks.spawn(work).await {
            Ok(answer) => answer,
            Err(e) => Err(Error::internal(anyhow::Error::new(e).context("a payment task failed"))),
        }
    }
}

/// The course if `caller` may buy it: it exists and is published (404), is not theirs (403)
/// and they are not enrolled in it (409).
pub async fn purchasable_course(
    db: &Db,
    caller: &Caller,
    course_id: CourseId,
) -> Result<CourseRow> {
    let course =
        crate::catalog::db::course(db, course_id).await?.ok_or(Error::not_found("course"))?;
    if course.instructor_id == caller.user_id {
        return Err(Error::denied("own_course", "an instructor cannot buy their own course"));
    }
    if course.status != crate::catalog::CourseStatus::Published {
        return Err(Error::not_found("course"));
    }
    if crate::learning::is_enrolled(db, caller.user_id, course_id).await? {
        return Err(Error::conflict(
            "already_owned",
            format!("you are already enrolled in course {course_id}"),
        ));
    }
    Ok(course)
}

/// Run `work` while holding `user_id`'s payment lock, waiting up to one lease for a holder to
/// finish (409 `payment_in_progress` after that). The lock is renewed while `work` runs and
/// released as soon as it ends, whatever it returns, even if it panics; only a process that
/// dies leaves it to its lease.
async fn with_payment_lock<T>(
    db: &Db,
    user_id: UserId,
    lease: Duration,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    hold_payment_lock(db, user_id, lease, lease, work).await?.ok_or_else(|| {
        Error::conflict(
            "payment_in_progress",
            "another payment or refund of yours is in progress; retry in a moment",
        )
    })
}

/// [`with_payment_lock`], waiting at most `patience` for the lock: `None` (and `work` not run)
/// when someone else held it all that time.
async fn hold_payment_lock<T>(
    db: &Db,
    user_id: UserId,
    lease: Duration,
    patience: Duration,
    work: impl Future<Output = Result<T>>,
) -> Result<Option<T>> {
    let holder = uuid::Uuid::new_v4().simple().to_string();
    let lease_secs = i64::try_from(lease.as_secs()).unwrap_or(i64::MAX / 2);
    let deadline = Instant::now() + patience;
    loop {
        let t = now();
        if db::try_lock(db, user_id, &holder, t, t + lease_secs).await? {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let work = std::panic::AssertUnwindSafe(work).catch_unwind();
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval(lease / 3);
    heartbeat.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = heartbeat.tick() => {
                if let Err(e) = db::renew_lock(db, user_id, &holder, now() + lease_secs).await {
                    tracing::warn!(%user_id, error = %e, "could not renew a payment lock");
                }
            }
        }
    };
    if let Err(e) = db::unlock(db, user_id, &holder).await {
        tracing::warn!(%user_id, error = %e, "could not release a payment lock; it expires on its own");
    }
    match result {
        Ok(answer) => answer.map(Some),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
