//! Settling payment intents: confirmations and refunds that were sent to the provider but
//! whose outcome is not recorded, because the provider did not answer in time or the process
//! died mid-call.
//!
//! [`run`] (started by `lectern serve`) looks at every due intent about once per
//! `reconcile_interval_secs`, under the buyer's payment lock (an intent whose request is still
//! running is skipped: its lock is held), asks the provider where the payment stands, and
//! applies what it says:
//!
//! | intent       | the provider says                | then                                            |
//! |--------------|----------------------------------|-------------------------------------------------|
//! | `confirming` | charged the order's amount       | order paid, buyer enrolled                      |
//! | `confirming` | charged another amount           | cancelled at the provider; order stays pending  |
//! | `confirming` | nothing charged                  | intent dropped; order stays pending             |
//! | `refunding`  | cancelled                        | order refunded, access revoked                  |
//! | `refunding`  | still charged                    | the cancel is sent again (the refund was decided)|
//! | either       | no clear answer                  | looked at again later                           |
//!
//! Every outcome is logged and counted in `lectern_payment_intents_settled_total{kind,outcome}`;
//! `lectern_payment_intents_open` is how many wait.

use crate::types::OrderId;
use std::time::Duration;

use tokio::sync::watch;

use super::db::{self, IntentKind, IntentRow, Movement, OrderRow};
use super::payments::{Asked, Lookup, PaymentError, PaymentState, Refund};
use super::{hold_payment_lock, Payments};
use crate::db::{now, Db};
use crate::error::{Error, Result};

/// Where an intent left its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Paid, the buyer enrolled (a confirmation that went through, or a refund that did not
    /// reach the provider and was dropped).
    Paid,
    /// Nothing charged: the order is pending and may be confirmed again.
    Pending,
    /// The money is back and the enrollments are revoked.
    Refunded,
    /// The provider refused the refund; the order stays paid. Why, in the provider's words.
    Refused(String),
    /// No clear answer yet; the intent stays and is looked at again.
    Unknown,
}

impl Settled {
    fn label(&self) -> &'static str {
        match self {
            Settled::Paid => "paid",
            Settled::Pending => "pending",
            Settled::Refunded => "refunded",
            Settled::Refused(_) => "refused",
            Settled::Unknown => "unknown",
        }
    }
}

/// Look at due intents until `shutdown` turns true, once every `every`.
pub async fn run(
    db: Db,
    payments: std::sync::Arc<Payments>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match pass(&db, &payments).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(settled = n, "payment reconciler pass"),
            Err(e) => tracing::warn!(error = %e, "payment reconciler pass failed; retrying"),
        }
        if let Ok(open) = db::open_intents(&db).await {
            metrics::gauge!("lectern_payment_intents_open").set(open as f64);
        }
        if tokio::time::timeout(every, shutdown.changed()).await.is_ok() && *shutdown.borrow() {
            return;
        }
    }
}

/// One look at every due intent whose buyer's lock is free. Answers how many were settled.
pub async fn pass(db: &Db, payments: &Payments) -> Result<usize> {
    let mut settled = 0;
    for due in db::due_intents(db, now(), 100).await? {
        let work = async {
            // Read again under the lock: the request that made it may have finished.
            match db::intent(db, due.order_id).await? {
                Some(intent) => settle(db, payments, &intent).await,
                None => Ok(Settled::Unknown),
            }
        };
        match hold_payment_lock(db, due.user_id, payments.lock_lease, Duration::ZERO, work).await {
            Ok(Some(Settled::Unknown)) | Ok(None) => {}
            Ok(Some(_)) => settled += 1,
            Err(e) => {
                tracing::warn!(order_id = %due.order_id, error = %e, "settling a payment intent failed")
            }
        }
    }
    Ok(settled)
}

/// Ask the provider about `intent` and apply the answer. The caller holds the buyer's lock.
pub async fn settle(db: &Db, payments: &Payments, intent: &IntentRow) -> Result<Settled> {
    let kind = intent.kind;
    let order = intent_order(db, intent).await?;
    let provider = &payments.provider;
    if intent.provider != provider.name() {
        return unsettled(
            db,
            payments,
            intent,
            &format!("made through {}, which is not the configured provider", intent.provider),
        )
        .await;
    }
    let asked = match kind {
        IntentKind::Confirming => Asked::Confirm,
        IntentKind::Refunding => Asked::Cancel,
    };
    let lookup = Lookup {
        asked,
        order_id: &order.payment_order_id,
        payment_key: &intent.payment_key,
        amount: intent.amount,
    };
    let state = match provider.lookup(&lookup).await {
        Ok(state) => state,
        Err(e) => return unsettled(db, payments, intent, &e.to_string()).await,
    };
    let outcome = match (kind, state) {
        (IntentKind::Confirming, PaymentState::Charged { payment_key, amount })
            if amount == order.amount =>
        {
            let charge = Movement { provider: provider.name(), payment_key: &payment_key };
            if !db::mark_paid(db, &order, Some(charge), now()).await? {
                db::drop_intent(db, order.id).await?;
            }
            Settled::Paid
        }
        (IntentKind::Confirming, PaymentState::Charged { payment_key, amount }) => {
            tracing::error!(
                order_id = %order.id,
                amount,
                expected = order.amount,
                "the provider charged the wrong amount; cancelling it"
            );
            return give_back_wrong_charge(db, payments, &order, &payment_key, amount).await;
        }
        (IntentKind::Confirming, PaymentState::NotCharged | PaymentState::Refunded) => {
            db::drop_intent(db, order.id).await?;
            Settled::Pending
        }
        (IntentKind::Refunding, PaymentState::Refunded) => refunded(db, &order, intent).await?,
        (IntentKind::Refunding, PaymentState::Charged { .. }) => {
            return carry_out_refund(db, payments, intent).await
        }
        (IntentKind::Refunding, PaymentState::NotCharged) => {
            tracing::error!(
                order_id = %order.id,
                "a paid order's payment is unknown to the provider; its refund is dropped"
            );
            db::drop_intent(db, order.id).await?;
            Settled::Refused("the provider knows no such payment".into())
        }
    };
    Ok(counted(kind, order.id, outcome))
}

/// Send (or send again) the cancel a `refunding` intent stands for, and apply the answer.
pub async fn carry_out_refund(db: &Db, payments: &Payments, intent: &IntentRow) -> Result<Settled> {
    let order = intent_order(db, intent).await?;
    let reason = intent.reason.as_deref().unwrap_or("Refund requested by the buyer");
    let refund = Refund {
        payment_key: &intent.payment_key,
        order_id: &order.payment_order_id,
        amount: order.amount,
        reason,
    };
    let outcome = match payments.provider.cancel(&refund).await {
        Ok(()) => refunded(db, &order, intent).await?,
        Err(PaymentError::Declined { code, message }) => {
            tracing::warn!(order_id = %order.id, %code, %message, "the provider refused a refund");
            db::drop_intent(db, order.id).await?;
            Settled::Refused(format!("{code}: {message}"))
        }
        Err(e) => return unsettled(db, payments, intent, &e.to_string()).await,
    };
    Ok(counted(IntentKind::Refunding, order.id, outcome))
}

/// Cancel a payment the provider approved for `amount` instead of `order`'s amount: money that
/// was taken but must not be kept. The order stays pending.
pub async fn give_back_wrong_charge(
    db: &Db,
    payments: &Payments,
    order: &OrderRow,
    payment_key: &str,
    amount: i64,
) -> Result<Settled> {
    let refund = Refund {
        payment_key,
        order_id: &order.payment_order_id,
        amount,
        reason: "The approved amount did not match the order",
    };
    match payments.provider.cancel(&refund).await {
        Ok(()) => {
            db::drop_intent(db, order.id).await?;
            Ok(counted(IntentKind::Confirming, order.id, Settled::Pending))
        }
        Err(e) => {
            let why = format!("cancelling a payment approved for the wrong amount: {e}");
            match db::intent(db, order.id).await? {
                Some(intent) => unsettled(db, payments, &intent, &why).await,
                None => Err(Error::internal(anyhow::anyhow!("order {}: {why}", order.id))),
            }
        }
    }
}

/// Mark the intent's order refunded, by whoever asked for the refund.
async fn refunded(db: &Db, order: &OrderRow, intent: &IntentRow) -> Result<Settled> {
    let refund = Movement { provider: intent.provider, payment_key: &intent.payment_key };
    if !db::mark_refunded(db, order, Some(refund), intent.requested_by, now()).await? {
        db::drop_intent(db, order.id).await?;
    }
    Ok(Settled::Refunded)
}

async fn intent_order(db: &Db, intent: &IntentRow) -> Result<OrderRow> {
    db::order(db, intent.order_id).await?.ok_or_else(|| {
        Error::internal(anyhow::anyhow!("payment intent of the missing order {}", intent.order_id))
    })
}

/// Record a look without a clear answer; the intent is looked at again later.
async fn unsettled(db: &Db, payments: &Payments, intent: &IntentRow, why: &str) -> Result<Settled> {
    tracing::warn!(order_id = %intent.order_id, kind = %intent.kind, checks = intent.checks + 1, why, "payment intent still unsettled");
    db::intent_unsettled(db, intent.order_id, why, now() + payments.recheck_after.as_secs() as i64)
        .await?;
    Ok(counted(intent.kind, intent.order_id, Settled::Unknown))
}

fn counted(kind: IntentKind, order_id: OrderId, outcome: Settled) -> Settled {
    if outcome != Settled::Unknown {
        tracing::info!(
            %order_id,
            kind = kind.as_str(),
            outcome = outcome.label(),
            "payment intent settled"
        );
    }
    metrics::counter!("lectern_payment_intents_settled_total", "kind" => kind.as_str(), "outcome" => outcome.label()).increment(1);
    outcome
}
