//! SQL for carts, orders and their items, the payment ledger and the per-buyer payment lock;
//! payment intents and the dashboard's sales figures in their own files.

use crate::types::{CourseId, Currency, Money, OrderId, UserId};
use sqlx::FromRow;

use super::payments::ProviderName;
use crate::db::Db;
use crate::webhooks::{self, EventType};

mod intents;
pub use intents::*;
mod sales;
pub use sales::*;

/// A cart line with the course's current title and price.
#[derive(Debug, Clone, FromRow)]
pub struct CartRow {
    pub course_id: CourseId,
    pub title: String,
    pub price: i64,
    pub currency: Currency,
    pub added_at: i64,
}

/// The caller's cart, oldest line first.
pub async fn cart(db: &Db, user_id: UserId) -> Result<Vec<CartRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.course_id, c.title, c.price, c.currency, k.added_at FROM cart_items k \
         JOIN courses c ON c.id = k.course_id WHERE k.user_id = $1 ORDER BY k.added_at, k.course_id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await
}

/// Add a line; a course already in the cart is a unique violation.
pub async fn add_to_cart(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO cart_items (user_id, course_id, added_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(course_id)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Remove a line; false when it was not there.
pub async fn remove_from_cart(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND course_id = $2")
        .bind(user_id)
        .bind(course_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

crate::vocabulary! {
    /// Where an order is in its life.
    pub enum OrderStatus: "order status" {
        /// Placed, not paid yet; may be confirmed (again, after a declined payment).
        Pending = "pending",
        /// Paid; the buyer is enrolled.
        Paid = "paid",
        /// Paid and refunded; the enrollments are revoked.
        Refunded = "refunded",
    }
}

/// An order as stored.
#[derive(Debug, Clone, FromRow)]
pub struct OrderRow {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub amount: i64,
    pub currency: Currency,
    pub payment_order_id: String,
    pub request_hash: String,
    /// The provider that charged it; null for free orders and until paid.
    pub provider: Option<ProviderName>,
    pub payment_key: Option<String>,
    pub created_at: i64,
    pub paid_at: Option<i64>,
    pub refunded_at: Option<i64>,
}

const ORDER_SELECT: &str =
    "SELECT id, user_id, status, amount, currency, payment_order_id, request_hash, \
     provider, payment_key, created_at, paid_at, refunded_at FROM orders";

/// A line of an order: what was bought, at the title and price of that moment.
#[derive(Debug, Clone, FromRow)]
pub struct OrderItemRow {
    pub order_id: OrderId,
    pub course_id: CourseId,
    pub title: String,
    pub price: i64,
}

/// A new order and its lines.
pub struct NewOrder<'a> {
    pub user_id: UserId,
    /// The sum of the lines' prices.
    pub total: Money,
    pub payment_order_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a str,
    pub items: &'a [OrderLine],
}

/// A course as an order holds it: its title and price when ordered (in the order's currency).
pub struct OrderLine {
    pub course_id: CourseId,
    pub title: String,
    pub price: i64,
}

/// Insert an order with its lines in one transaction. A reused idempotency key is a unique
/// violation.
pub async fn insert_order(db: &Db, o: &NewOrder<'_>, now: i64) -> Result<OrderId, sqlx::Error> {
    let mut tx = db.begin().await?;
    let (id,): (OrderId,) = sqlx::query_as(
        "INSERT INTO orders (user_id, status, amount, currency, payment_order_id, idempotency_key, request_hash, created_at) \
         VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(o.user_id)
    .bind(o.total.amount)
    .bind(o.total.currency)
    .bind(o.payment_order_id)
    .bind(o.idempotency_key)
    .bind(o.request_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    for OrderLine { course_id, title, price } in o.items {
        sqlx::query(
            "INSERT INTO order_items (order_id, course_id, title, price) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(course_id)
        .bind(title)
        .bind(price)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

pub async fn order(db: &Db, id: OrderId) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!("{ORDER_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// The order `user_id` created with `Idempotency-Key: key`, if any.
pub async fn order_by_idempotency_key(
    db: &Db,
    user_id: UserId,
    key: &str,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!("{ORDER_SELECT} WHERE user_id = $1 AND idempotency_key = $2"))
        .bind(user_id)
        .bind(key)
        .fetch_optional(db.pool())
        .await
}

pub async fn items_of(db: &Db, order_id: OrderId) -> Result<Vec<OrderItemRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, course_id, title, price FROM order_items WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(db.pool())
    .await
}

/// One page of `user_id`'s orders, newest first, with their lines; and how many there are.
pub async fn orders_of_user(
    db: &Db,
    user_id: UserId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<OrderRow>, Vec<OrderItemRow>, i64), sqlx::Error> {
    let orders: Vec<OrderRow> = sqlx::query_as(&format!(
        "{ORDER_SELECT} WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(user_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    // The page is a contiguous id range of this user's orders, so one range query finds its lines.
    let items = match (orders.last(), orders.first()) {
        (Some(low), Some(high)) => {
            sqlx::query_as(
                "SELECT i.order_id, i.course_id, i.title, i.price FROM order_items i JOIN orders o ON o.id = i.order_id \
                 WHERE o.user_id = $1 AND o.id BETWEEN $2 AND $3 ORDER BY i.id",
            )
            .bind(user_id)
            .bind(low.id)
            .bind(high.id)
            .fetch_all(db.pool())
            .await?
        }
        _ => Vec::new(),
    };
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db.pool())
        .await?;
    Ok((orders, items, total))
}

/// Take `user_id`'s payment lock for `holder` until `expires_at`, unless someone else holds
/// an unexpired one. One statement, so two takers cannot both win on either backend.
pub async fn try_lock(
    db: &Db,
    user_id: UserId,
    holder: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO payment_locks (user_id, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE payment_locks.expires_at < $4",
    )
    .bind(user_id)
    .bind(holder)
    .bind(expires_at)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Push `holder`'s lease on `user_id`'s lock out to `expires_at`, if it still holds it.
pub async fn renew_lock(
    db: &Db,
    user_id: UserId,
    holder: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payment_locks SET expires_at = $3 WHERE user_id = $1 AND holder = $2")
        .bind(user_id)
        .bind(holder)
        .bind(expires_at)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Release the lock if `holder` still has it.
pub async fn unlock(db: &Db, user_id: UserId, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM payment_locks WHERE user_id = $1 AND holder = $2")
        .bind(user_id)
        .bind(holder)
        .execute(db.pool())
        .await?;
    Ok(())
}

crate::vocabulary! {
    /// Which way money moved, in the payments ledger.
    pub enum PaymentKind: "payment kind" {
        Charge = "charge",
        Refund = "refund",
    }
}

/// Money that moved through a provider, for the ledger.
#[derive(Debug, Clone, Copy)]
pub struct Movement<'a> {
    pub provider: ProviderName,
    pub payment_key: &'a str,
}

/// In one transaction: mark a pending order paid, record the charge (none for a free order),
/// settle its payment intent, enroll the buyer in each course and take them out of the cart. False (and nothing done)
/// when the order was no longer pending.
pub async fn mark_paid(
    db: &Db,
    order: &OrderRow,
    charge: Option<Movement<'_>>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE orders SET status = 'paid', paid_at = $2, provider = $3, payment_key = $4 WHERE id = $1 AND status = 'pending'",
    )
    .bind(order.id)
    .bind(now)
    .bind(charge.map(|c| c.provider))
    .bind(charge.map(|c| c.payment_key))
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    let course_ids = course_ids_of(&mut tx, order.id).await?;
    if let Some(c) = charge {
        record_movement(&mut tx, order, PaymentKind::Charge, c, now).await?;
    }
    sqlx::query("DELETE FROM payment_intents WHERE order_id = $1")
        .bind(order.id)
        .execute(&mut *tx)
        .await?;
    for course_id in &course_ids {
        crate::learning::enroll(&mut *tx, order.user_id, *course_id, "order").await?;
        sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND course_id = $2")
            .bind(order.user_id)
            .bind(course_id)
            .execute(&mut *tx)
            .await?;
        let enrollment = serde_json::json!({"user_id": order.user_id, "course_id": course_id, "source": "order", "order_id": order.id});
        webhooks::emit(&mut tx, EventType::EnrollmentCreated, &[*course_id], enrollment).await?;
    }
    let paid = order_event(order, &course_ids, charge.map(|c| c.provider), now, "paid");
    webhooks::emit(&mut tx, EventType::OrderPaid, &course_ids, paid).await?;
    tx.commit().await?;
    Ok(true)
}

/// In one transaction: mark a paid order refunded (by `refunded_by`), record the refund (none
/// for a free order), settle its payment intent and revoke the buyer's enrollments in its
/// courses. False (and nothing
/// done) when the order was no longer paid.
pub async fn mark_refunded(
    db: &Db,
    order: &OrderRow,
    refund: Option<Movement<'_>>,
    refunded_by: Option<UserId>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("UPDATE orders SET status = 'refunded', refunded_at = $2, refunded_by = $3 WHERE id = $1 AND status = 'paid'")
        .bind(order.id)
        .bind(now)
        .bind(refunded_by)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    let course_ids = course_ids_of(&mut tx, order.id).await?;
    if let Some(r) = refund {
        record_movement(&mut tx, order, PaymentKind::Refund, r, now).await?;
    }
    sqlx::query("DELETE FROM payment_intents WHERE order_id = $1")
        .bind(order.id)
        .execute(&mut *tx)
        .await?;
    for course_id in &course_ids {
        if crate::learning::revoke(&mut *tx, order.user_id, *course_id).await? {
            let enrollment = serde_json::json!({"user_id": order.user_id, "course_id": course_id, "reason": "refund", "order_id": order.id});
            webhooks::emit(&mut tx, EventType::EnrollmentRevoked, &[*course_id], enrollment)
                .await?;
        }
    }
    let refunded = order_event(order, &course_ids, refund.map(|r| r.provider), now, "refunded");
    webhooks::emit(&mut tx, EventType::OrderRefunded, &course_ids, refunded).await?;
    tx.commit().await?;
    Ok(true)
}

/// The courses an order bought, read inside the transaction that acts on them.
async fn course_ids_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    order_id: OrderId,
) -> Result<Vec<CourseId>, sqlx::Error> {
    let rows: Vec<(CourseId,)> =
        sqlx::query_as("SELECT course_id FROM order_items WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The `data` of an `order.paid` / `order.refunded` event: the order as its buyer sees it.
fn order_event(
    order: &OrderRow,
    course_ids: &[CourseId],
    provider: Option<ProviderName>,
    at: i64,
    status: &str,
) -> serde_json::Value {
    let when = crate::db::rfc3339(at);
    serde_json::json!({
        "order_id": order.id,
        "user_id": order.user_id,
        "order": {
            "id": order.id,
            "status": status,
            "amount": order.amount,
            "currency": order.currency,
            "course_ids": course_ids,
            "payment_order_id": order.payment_order_id,
            "payment_provider": provider,
            "created_at": crate::db::rfc3339(order.created_at),
            "paid_at": if status == "paid" { Some(when.clone()) } else { order.paid_at.map(crate::db::rfc3339) },
            "refunded_at": (status == "refunded").then_some(when),
        },
    })
}

async fn record_movement(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    order: &OrderRow,
    kind: PaymentKind,
    m: Movement<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments (order_id, kind, provider, payment_key, amount, currency, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(order.id)
    .bind(kind)
    .bind(m.provider)
    .bind(m.payment_key)
    .bind(order.amount)
    .bind(order.currency)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
