//! Placing orders, reading them, and confirming their payment.

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use std::sync::Arc;

use super::db::{
    self, IntentKind, Movement, NewIntent, NewOrder, OrderItemRow, OrderLine, OrderRow, OrderStatus,
};
use super::payments::{Charge, PaymentError, ProviderName};
use super::reconcile::{self, Settled};
use super::{purchasable_course, with_payment_lock, Payments};
use crate::accounts::Caller;
use crate::db::{is_unique_violation, now, rfc3339, Db};
use crate::error::{Error, Result};
use crate::types::{CourseId, Currency, Money, OrderId};

/// Most courses one order may hold.
const MAX_ITEMS: usize = 100;

/// A line of an order, as it was when the order was placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItem {
    pub course_id: CourseId,
    /// The course's title when ordered.
    pub title: String,
    /// The course's price when ordered, in minor units of the order's currency.
    pub price: i64,
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub status: OrderStatus,
    /// Sum of the items' prices, in minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
    pub items: Vec<OrderItem>,
    /// The order id to give the payment provider's checkout (Toss Payments: `orderId`).
    #[schema(example = "lectern-3f0c9d2e6b7a4c1d8e5f6a7b8c9d0e1f")]
    pub payment_order_id: String,
    /// The provider that took the payment (`dev`, `toss`); null for free orders and until paid.
    pub payment_provider: Option<ProviderName>,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub refunded_at: Option<String>,
    /// A payment operation sent to the provider whose outcome is not known yet: `confirming`
    /// (the order stays `pending` until the provider's answer is in) or `refunding` (it stays
    /// `paid`). Null when nothing is in flight.
    #[schema(example = "confirming")]
    pub payment_intent: Option<IntentKind>,
}

/// An order, its lines and the kind of its payment intent (if any) as the API shows them.
pub fn view(row: OrderRow, items: Vec<OrderItemRow>, intent: Option<IntentKind>) -> Result<Order> {
    Ok(Order {
        status: row.status,
        id: row.id,
        amount: row.amount,
        currency: row.currency,
        items: items
            .into_iter()
            .map(|i| OrderItem { course_id: i.course_id, title: i.title, price: i.price })
            .collect(),
        payment_order_id: row.payment_order_id,
        payment_provider: row.provider,
        created_at: rfc3339(row.created_at),
        paid_at: row.paid_at.map(rfc3339),
        refunded_at: row.refunded_at.map(rfc3339),
        payment_intent: intent,
    })
}

/// The stored order `row` with its lines, as the API shows it.
pub async fn show(db: &Db, row: OrderRow) -> Result<Order> {
    let items = db::items_of(db, row.id).await?;
    let intent = db::intent(db, row.id).await?.map(|i| i.kind);
    view(row, items, intent)
}

/// The order if `caller` may see it: its buyer or an admin. 404 for anyone else.
pub async fn visible_order(db: &Db, caller: &Caller, id: OrderId) -> Result<OrderRow> {
    match db::order(db, id).await? {
        Some(o) if o.user_id == caller.user_id || caller.is_admin() => Ok(o),
        _ => Err(Error::not_found("order")),
    }
}

/// The order if `caller` bought it. 404 for anyone else.
async fn own_order(db: &Db, caller: &Caller, id: OrderId) -> Result<OrderRow> {
    match db::order(db, id).await? {
        Some(o) if o.user_id == caller.user_id => Ok(o),
        _ => Err(Error::not_found("order")),
    }
}

/// What a buyer asks to order.
pub struct PlaceOrder {
    /// The courses; `None` means the cart's.
    pub course_ids: Option<Vec<CourseId>>,
    /// The `Idempotency-Key` header, if sent.
    pub idempotency_key: Option<String>,
}

/// Place an order: every course must be purchasable by the caller and of one currency. Answers
/// the order and whether it was made by an earlier request with the same idempotency key.
pub async fn place(db: &Db, caller: &Caller, req: PlaceOrder) -> Result<(Order, bool)> {
    let key = req.idempotency_key.as_deref().map(idempotency_key).transpose()?;
    let course_ids = req.course_ids.map(|ids| distinct(&ids));
    let fingerprint = fingerprint(course_ids.as_deref());
    if let Some(key) = key {
        if let Some(earlier) = db::order_by_idempotency_key(db, caller.user_id, key).await? {
            return replay(db, earlier, &fingerprint).await;
        }
    }
    let course_ids = match course_ids {
        Some(ids) if ids.is_empty() => return Err(no_courses()),
        Some(ids) => ids,
        None => {
            let ids: Vec<CourseId> =
                db::cart(db, caller.user_id).await?.into_iter().map(|l| l.course_id).collect();
            if ids.is_empty() {
                return Err(Error::invalid(
                    "cart_empty",
                    "your cart is empty; add courses or send course_ids",
                ));
            }
            ids
        }
    };
    if course_ids.len() > MAX_ITEMS {
        return Err(Error::invalid(
            "too_many_courses",
            format!("an order holds at most {MAX_ITEMS} courses"),
        ));
    }
    let (items, total) = order_lines(db, caller, course_ids).await?;
    let payment_order_id = format!("lectern-{}", uuid::Uuid::new_v4().simple());
    let new = NewOrder {
        user_id: caller.user_id,
        total,
        payment_order_id: &payment_order_id,
        idempotency_key: key,
        request_hash: &fingerprint,
        items: &items,
    };
    match db::insert_order(db, &new, now()).await {
        Ok(id) => {
            let row = db::order(db, id).await?.ok_or(Error::not_found("order"))?;
            Ok((show(db, row).await?, false))
        }
        Err(e) => match key {
            // A concurrent request with the same key won the race: answer what it made.
            Some(key) if is_unique_violation(&e) => {
                let earlier = db::order_by_idempotency_key(db, caller.user_id, key)
                    .await?
                    .ok_or_else(|| {
                        Error::internal(
                            anyhow::Error::new(e)
                                .context("idempotency key taken but no order has it"),
                        )
                    })?;
                replay(db, earlier, &fingerprint).await
            }
            _ => Err(e.into()),
        },
    }
}

/// The lines of an order for `course_ids` (each purchasable by `caller`) and their total, in
/// the one currency they all share.
async fn order_lines(
    db: &Db,
    caller: &Caller,
    course_ids: Vec<CourseId>,
) -> Result<(Vec<OrderLine>, Money)> {
    let mut lines = Vec::with_capacity(course_ids.len());
    let mut total: Option<Money> = None;
    for id in course_ids {
        let course = purchasable_course(db, caller, id).await?;
        let price = course.price();
        total = Some(match total {
            None => price,
            Some(sum) if sum.currency != price.currency => {
                return Err(Error::invalid(
                    "mixed_currencies",
                    format!(
                        "an order is paid in one currency; it holds {} and {} courses",
                        sum.currency, price.currency
                    ),
                ))
            }
            Some(sum) => sum.checked_add(price).ok_or_else(|| {
                Error::invalid("order_too_large", "the order's total is too large")
            })?,
        });
        lines.push(OrderLine { course_id: course.id, title: course.title, price: price.amount });
    }
    // `place` refuses an empty list first; an empty one here must not invent a currency.
    let total = total.ok_or_else(no_courses)?;
    Ok((lines, total))
}

fn no_courses() -> Error {
    Error::invalid("no_courses", "course_ids must name at least one course")
}

/// Answer an earlier request's order again, if the request was the same.
async fn replay(db: &Db, earlier: OrderRow, fingerprint: &str) -> Result<(Order, bool)> {
    if earlier.request_hash != fingerprint {
        return Err(Error::invalid(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different order request",
        ));
    }
    Ok((show(db, earlier).await?, true))
}

/// A checked `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(key: &str) -> Result<&str> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(key)
    } else {
        Err(Error::malformed(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ))
    }
}

/// `ids` without repeats, in their first order.
fn distinct(ids: &[CourseId]) -> Vec<CourseId> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// What an order request asked for, independent of order and repeats: "the cart", or a set of
/// courses. Two requests under one idempotency key must agree on it.
fn fingerprint(course_ids: Option<&[CourseId]>) -> String {
    let text = match course_ids {
        None => "cart".to_string(),
        Some(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            format!("courses:{}", ids.iter().map(CourseId::to_string).collect::<Vec<_>>().join(","))
        }
    };
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// One order of the caller's.
pub async fn get(db: &Db, caller: &Caller, id: OrderId) -> Result<Order> {
    let row = visible_order(db, caller, id).await?;
    show(db, row).await
}

/// One page of the caller's orders, newest first, and how many there are.
pub async fn list_mine(
    db: &Db,
    caller: &Caller,
    page: i64,
    per_page: i64,
) -> Result<(Vec<Order>, i64)> {
    let (rows, items, total) =
        db::orders_of_user(db, caller.user_id, per_page, (page - 1) * per_page).await?;
    let intents = db::intents_of_user(db, caller.user_id).await?;
    let orders = rows
        .into_iter()
        .map(|row| {
            let mine = items.iter().filter(|i| i.order_id == row.id).cloned().collect();
            let intent = intents.iter().find(|i| i.order_id == row.id).map(|i| i.kind);
            view(row, mine, intent)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((orders, total))
}

/// A payment confirmation from the buyer.
pub struct Confirm {
    /// The provider's key for the payment; not needed for a free order.
    pub payment_key: Option<String>,
    /// What the buyer was shown and paid; must equal the order's amount.
    pub amount: i64,
}

/// Confirm an order's payment: record the intent, take the payment through the provider,
/// then mark the order paid and enroll the buyer in one transaction. Confirming a paid order
/// answers it again. The provider call and what follows run outside this future (see
/// [`Payments::detached`]): a caller that goes away does not stop them.
pub async fn confirm(
    db: &Db,
    payments: &Arc<Payments>,
    caller: &Caller,
    id: OrderId,
    req: Confirm,
) -> Result<Order> {
    let order = own_order(db, caller, id).await?;
    if req.amount < 0 {
        return Err(Error::invalid(
            "invalid_amount",
            "amount must be a non-negative integer in minor units",
        ));
    }
    if req.amount != order.amount {
        return Err(Error::malformed(
            "amount_mismatch",
            format!(
                "amount {} does not match the order's amount {} {}",
                req.amount, order.amount, order.currency
            ),
        ));
    }
    match order.status {
        OrderStatus::Paid => return show(db, order).await,
        OrderStatus::Refunded => return Err(refunded()),
        OrderStatus::Pending => {}
    }
    let payment_key = if order.amount == 0 {
        None
    } else {
        Some(checked_payment_key(req.payment_key.as_deref())?.to_string())
    };
    if payment_key.is_some() && !payments.provider.supports_currency(order.currency) {
        return Err(Error::invalid(
            "unsupported_currency",
            format!(
                "the payment provider {} cannot take {} payments",
                payments.provider.name(),
                order.currency
            ),
        ));
    }
    let (db, shared) = (db.clone(), payments.clone());
    payments
        .detached(async move {
            with_payment_lock(
                &db,
                order.user_id,
                shared.lock_lease,
                settle(&db, &shared, id, payment_key.as_deref()),
            )
            .await
        })
        .await
}

/// The part of [`confirm`] done under the buyer's payment lock.
async fn settle(
    db: &Db,
    payments: &Payments,
    id: OrderId,
    payment_key: Option<&str>,
) -> Result<Order> {
    // An intent left by an earlier confirmation that lost its answer: find out what happened
    // before anything else is sent.
    if let Some(intent) = db::intent(db, id).await? {
        if reconcile::settle(db, payments, &intent).await? == Settled::Unknown {
            return Err(payment_pending());
        }
    }
    // Read again: a racing confirmation may have finished while we waited for the lock.
    let order = db::order(db, id).await?.ok_or(Error::not_found("order"))?;
    match order.status {
        OrderStatus::Paid => return show(db, order).await,
        OrderStatus::Refunded => return Err(refunded()),
        OrderStatus::Pending => {}
    }
    let items = db::items_of(db, id).await?;
    still_purchasable(db, &order, &items).await?;
    let Some(key) = payment_key else {
        // A free order: nothing to take.
        if !db::mark_paid(db, &order, None, now()).await? {
            return Err(Error::internal(anyhow::anyhow!(
                "order {id} stopped being pending while its buyer's payment lock was held"
            )));
        }
        return show(db, db::order(db, id).await?.ok_or(Error::not_found("order"))?).await;
    };
    charge(db, payments, order, items, key).await
}

/// 409 when a course of the order is gone or its buyer owns one of them by now.
async fn still_purchasable(db: &Db, order: &OrderRow, items: &[OrderItemRow]) -> Result<()> {
    for item in items {
        if crate::catalog::db::course(db, item.course_id).await?.is_none() {
            return Err(Error::conflict(
                "course_unavailable",
                format!("“{}” is no longer offered; place a new order", item.title),
            ));
        }
        if crate::learning::is_enrolled(db, order.user_id, item.course_id).await? {
            return Err(Error::conflict(
                "already_owned",
                format!(
                    "you are already enrolled in “{}”; place a new order without it",
                    item.title
                ),
            ));
        }
    }
    Ok(())
}

/// Take the payment of pending `order` with the provider's `key`: the intent is recorded
/// first, so an answer that never comes is settled later by the reconciler.
async fn charge(
    db: &Db,
    payments: &Payments,
    order: OrderRow,
    items: Vec<OrderItemRow>,
    key: &str,
) -> Result<Order> {
    let (id, provider) = (order.id, &payments.provider);
    let intent = NewIntent {
        order_id: id,
        user_id: order.user_id,
        kind: IntentKind::Confirming,
        provider: provider.name(),
        payment_key: key,
        amount: order.amount,
        reason: None,
        requested_by: None,
        next_check_at: now() + payments.lock_lease.as_secs() as i64,
    };
    db::insert_intent(db, &intent, now()).await?;
    let charge =
        Charge { payment_key: key, order_id: &order.payment_order_id, amount: order.amount };
    match provider.confirm(&charge).await {
        Ok(()) => {
            let charge = Movement { provider: provider.name(), payment_key: key };
            if !db::mark_paid(db, &order, Some(charge), now()).await? {
                return Err(Error::internal(anyhow::anyhow!(
                    "order {id} stopped being pending while its buyer's payment lock was held"
                )));
            }
            view(db::order(db, id).await?.ok_or(Error::not_found("order"))?, items, None)
        }
        Err(PaymentError::Declined { code, message }) => {
            db::drop_intent(db, id).await?;
            Err(Error::payment_declined(
                "payment_declined",
                format!("the payment was declined ({code}: {message}); the order is still pending and may be paid another way"),
            ))
        }
        Err(PaymentError::WrongCharge { payment_key, amount }) => {
            tracing::error!(
                order_id = %id,
                amount,
                expected = order.amount,
                "the provider approved a payment for the wrong amount or order; cancelling it"
            );
            if reconcile::give_back_wrong_charge(db, payments, &order, &payment_key, amount).await?
                == Settled::Unknown
            {
                return Err(payment_pending());
            }
            Err(Error::payment_declined(
                "payment_mismatch",
                format!("the payment provider approved {amount} instead of the order's {} {}; that payment was cancelled and the order is still pending", order.amount, order.currency),
            ))
        }
        Err(PaymentError::Unavailable(cause)) => {
            tracing::warn!(order_id = %id, %cause, "payment confirmation without an answer; the reconciler will settle it");
            db::intent_unsettled(db, id, &cause, now() + payments.recheck_after.as_secs() as i64)
                .await?;
            Err(payment_pending())
        }
        Err(PaymentError::Misconfigured(cause)) => {
            // Refused before anything was charged: our credentials or address are wrong.
            db::drop_intent(db, id).await?;
            Err(Error::internal(anyhow::anyhow!("payment provider: {cause}")))
        }
    }
}

fn payment_pending() -> Error {
    Error::conflict(
        "payment_pending",
        "the payment provider has not answered yet; the order stays pending until it does (retry, or check the order shortly)",
    )
}

fn refunded() -> Error {
    Error::conflict("order_refunded", "this order was refunded; place a new one")
}

/// A checked payment key: present, 1 to 200 characters, no control characters.
fn checked_payment_key(key: Option<&str>) -> Result<&str> {
    let key = key.map(str::trim).filter(|k| !k.is_empty()).ok_or_else(|| {
        Error::invalid(
            "payment_key_required",
            "payment_key is required for an order that is not free",
        )
    })?;
    if key.chars().count() > 200 || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_payment_key",
            "payment_key must be 1 to 200 characters without control characters",
        ));
    }
    Ok(key)
}
