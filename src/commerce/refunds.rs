//! Refunds and the policy that allows them.
//!
//! The buyer may refund a paid order within `refund_window_days` of payment while less than
//! `refund_max_watched_fraction` of each of its courses has been watched; admins may refund
//! any paid order. A `refunding` intent is recorded, the money goes back through the provider
//! that took it; then one transaction marks the order refunded, records the refund, settles
//! the intent and revokes the enrollments. The provider call and what follows run outside the
//! request (see [`Payments::detached`]), and a refund whose answer is lost is finished by the
//! reconciler.

use crate::types::text::TextRule;
use crate::types::{OrderId, UserId};
use std::sync::Arc;

use super::db::OrderStatus;
use super::db::{self, IntentKind, NewIntent, OrderItemRow, OrderRow};
use super::orders::{show, visible_order, Order};
use super::reconcile::{self, Settled};
use super::{with_payment_lock, Payments};
use crate::accounts::Caller;
use crate::db::{now, Db};
use crate::error::{Error, Result};
use crate::learning::progress::watched_fraction;

/// Refund an order (its buyer within policy, or an admin). `reason` is kept by the provider.
pub async fn refund(
    db: &Db,
    payments: &Arc<Payments>,
    caller: &Caller,
    id: OrderId,
    reason: Option<&str>,
) -> Result<Order> {
    let order = visible_order(db, caller, id).await?;
    refundable(&order)?;
    let reason = reason
        .map(|r| TextRule::REASON.check("reason", r))
        .transpose()
        .map_err(|why| Error::invalid("invalid_reason", why))?;
    let reason = match reason.as_deref() {
        None | Some("") if caller.is_admin() => "Refunded by an administrator".to_string(),
        None | Some("") => "Refund requested by the buyer".to_string(),
        Some(r) => r.to_string(),
    };
    let items = db::items_of(db, id).await?;
    if !caller.is_admin() {
        within_policy(db, payments, &order, &items).await?;
    }
    let (db, shared, by) = (db.clone(), payments.clone(), caller.user_id);
    payments
        .detached(async move {
            with_payment_lock(
                &db,
                order.user_id,
                shared.lock_lease,
                give_back(&db, &shared, by, id, &reason),
            )
            .await
        })
        .await
}

/// 409 unless the order is paid.
fn refundable(order: &OrderRow) -> Result<()> {
    match order.status {
        OrderStatus::Paid => Ok(()),
        OrderStatus::Pending => Err(Error::conflict(
            "order_not_paid",
            "this order is not paid; there is nothing to refund",
        )),
        OrderStatus::Refunded => {
            Err(Error::conflict("order_already_refunded", "this order is already refunded"))
        }
    }
}

/// 403 when the buyer may not refund the order by themselves: too late, or watched too much.
async fn within_policy(
    db: &Db,
    payments: &Payments,
    order: &OrderRow,
    items: &[OrderItemRow],
) -> Result<()> {
    let window = i64::try_from(payments.refund_window.as_secs()).unwrap_or(i64::MAX);
    let paid_at = order.paid_at.unwrap_or(order.created_at);
    if now().saturating_sub(paid_at) > window {
        return Err(Error::denied(
            "refund_window_expired",
            format!("refunds are possible within {} days of payment", window / (24 * 3600)),
        ));
    }
    for item in items {
        let watched = watched_fraction(db, order.user_id, item.course_id).await?;
        if watched >= payments.refund_max_watched_fraction {
            return Err(Error::denied(
                "refund_course_watched",
                format!(
                    "{:.0}% of “{}” has been watched; refunds are possible while less than {:.0}% is",
                    watched * 100.0,
                    item.title,
                    payments.refund_max_watched_fraction * 100.0
                ),
            ));
        }
    }
    Ok(())
}

/// The part of [`refund`] done under the buyer's payment lock.
async fn give_back(
    db: &Db,
    payments: &Payments,
    refunded_by: UserId,
    id: OrderId,
    reason: &str,
) -> Result<Order> {
    let provider = &payments.provider;
    if db::intent(db, id).await?.is_none() {
        // Read again: a racing refund may have finished while we waited for the lock.
        let order = db::order(db, id).await?.ok_or(Error::not_found("order"))?;
        refundable(&order)?;
        match (&order.provider, &order.payment_key) {
            (Some(name), Some(key)) => {
                if *name != provider.name() {
                    return Err(Error::conflict(
                        "provider_changed",
                        format!("this order was paid through {name}, which is no longer the configured payment provider"),
                    ));
                }
                let intent = NewIntent {
                    order_id: id,
                    user_id: order.user_id,
                    kind: IntentKind::Refunding,
                    provider: provider.name(),
                    payment_key: key,
                    amount: order.amount,
                    reason: Some(reason),
                    requested_by: Some(refunded_by),
                    next_check_at: now() + payments.lock_lease.as_secs() as i64,
                };
                db::insert_intent(db, &intent, now()).await?;
            }
            // A free order: no money moved, none goes back.
            _ => {
                if !db::mark_refunded(db, &order, None, Some(refunded_by), now()).await? {
                    return Err(Error::internal(anyhow::anyhow!(
                        "order {id} stopped being paid while its buyer's payment lock was held"
                    )));
                }
                return refunded_view(db, id).await;
            }
        }
    }
    // The refund is decided and recorded: carry it out (or go on with one an earlier request
    // started), exactly as the reconciler would.
    let intent = db::intent(db, id).await?.ok_or_else(|| {
        Error::internal(anyhow::anyhow!("the refund intent of order {id} vanished under its lock"))
    })?;
    match reconcile::carry_out_refund(db, payments, &intent).await? {
        Settled::Refunded => refunded_view(db, id).await,
        Settled::Unknown => Err(Error::conflict(
            "refund_pending",
            "the payment provider has not answered yet; the refund is recorded and will be completed as soon as it does",
        )),
        Settled::Refused(why) => Err(Error::conflict("refund_declined", format!("the payment provider refused the refund ({why})"))),
        Settled::Paid | Settled::Pending => Err(Error::internal(anyhow::anyhow!("order {id}: a refund intent settled as not refunded"))),
    }
}

async fn refunded_view(db: &Db, id: OrderId) -> Result<Order> {
    show(db, db::order(db, id).await?.ok_or(Error::not_found("order"))?).await
}
