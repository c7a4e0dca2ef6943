//! Refunds and the policy that allows them.
//!
//! The buyer may refund a paid order within `refund_window_days` of payment while less than
//! `refund_max_watched_fraction` of each of its courses has been watched; admins may refund
//! any paid order. The money goes back through the provider that took it; then one transaction
//! marks the order refunded, records the refund and revokes the enrollments.

use super::db::{self, Movement, OrderItemRow, OrderRow};
use super::orders::{view, visible_order, Order, OrderStatus};
use super::payments::{PaymentError, Refund};
use super::{with_payment_lock, Payments};
use crate::accounts::Caller;
use crate::db::{now, Db};
use crate::error::{ApiError, ApiResult};
use crate::learning::progress::watched_fraction;

/// Refund an order (its buyer within policy, or an admin). `reason` is kept by the provider.
pub async fn refund(db: &Db, payments: &Payments, caller: &Caller, id: i64, reason: Option<&str>) -> ApiResult<Order> {
    let order = visible_order(db, caller, id).await?;
    refundable(&order)?;
    let reason = match reason.map(str::trim) {
        None | Some("") if caller.is_admin() => "Refunded by an administrator",
        None | Some("") => "Refund requested by the buyer",
        Some(r) if r.chars().count() > 200 || r.chars().any(char::is_control) => {
            return Err(ApiError::unprocessable("invalid_reason", "reason must be at most 200 characters without control characters"))
        }
        Some(r) => r,
    };
    let items = db::items_of(db, id).await?;
    if !caller.is_admin() {
        within_policy(db, payments, &order, &items).await?;
    }
    with_payment_lock(db, order.user_id, payments.lock_lease, give_back(db, payments, caller, id, reason)).await
}

/// 409 unless the order is paid.
fn refundable(order: &OrderRow) -> ApiResult<()> {
    match OrderStatus::of(order)? {
        OrderStatus::Paid => Ok(()),
        OrderStatus::Pending => Err(ApiError::conflict("order_not_paid", "this order is not paid; there is nothing to refund")),
        OrderStatus::Refunded => Err(ApiError::conflict("order_already_refunded", "this order is already refunded")),
    }
}

/// 403 when the buyer may not refund the order by themselves: too late, or watched too much.
async fn within_policy(db: &Db, payments: &Payments, order: &OrderRow, items: &[OrderItemRow]) -> ApiResult<()> {
    let window = i64::try_from(payments.refund_window.as_secs()).unwrap_or(i64::MAX);
    let paid_at = order.paid_at.unwrap_or(order.created_at);
    if now().saturating_sub(paid_at) > window {
        return Err(ApiError::forbidden(
            "refund_window_expired",
            format!("refunds are possible within {} days of payment", window / (24 * 3600)),
        ));
    }
    for item in items {
        let watched = watched_fraction(db, order.user_id, item.course_id).await?;
        if watched >= payments.refund_max_watched_fraction {
            return Err(ApiError::forbidden(
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
async fn give_back(db: &Db, payments: &Payments, caller: &Caller, id: i64, reason: &str) -> ApiResult<Order> {
    // Read again: a racing refund may have finished while we waited for the lock.
    let order = db::order(db, id).await?.ok_or(ApiError::not_found("order"))?;
    refundable(&order)?;
    let provider = &payments.provider;
    let refund = match (&order.provider, &order.payment_key) {
        (Some(name), Some(key)) => {
            if name != provider.name() {
                return Err(ApiError::conflict(
                    "provider_changed",
                    format!("this order was paid through {name}, which is no longer the configured payment provider"),
                ));
            }
            let refund = Refund { payment_key: key, order_id: &order.payment_order_id, amount: order.amount, reason };
            provider.cancel(&refund).await.map_err(|e| match e {
                PaymentError::Declined { code, message } => {
                    ApiError::conflict("refund_declined", format!("the payment provider refused the refund ({code}: {message})"))
                }
                PaymentError::Unavailable(cause) => {
                    tracing::warn!(order_id = id, %cause, "refund left undone");
                    ApiError::conflict("refund_pending", "the payment provider did not answer; the order is still paid, retry")
                }
                PaymentError::Misconfigured(cause) => ApiError::internal(anyhow::anyhow!("payment provider: {cause}")),
            })?;
            Some(Movement { provider: provider.name(), payment_key: key })
        }
        // A free order: no money moved, none goes back.
        _ => None,
    };
    let items = db::items_of(db, id).await?;
    let course_ids: Vec<i64> = items.iter().map(|i| i.course_id).collect();
    if !db::mark_refunded(db, &order, &course_ids, refund, caller.user_id, now()).await? {
        return Err(ApiError::internal(anyhow::anyhow!("order {id} stopped being paid while its buyer's payment lock was held")));
    }
    let refunded = db::order(db, id).await?.ok_or(ApiError::not_found("order"))?;
    view(refunded, items)
}
