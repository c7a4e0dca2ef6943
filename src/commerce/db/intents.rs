//! Payment-intent SQL: what was sent to the provider and is not settled yet.

use crate::types::{OrderId, UserId};
use sqlx::FromRow;

use crate::commerce::payments::ProviderName;
use crate::db::Db;

crate::vocabulary! {
    /// What a payment intent is about to do to its order.
    pub enum IntentKind: "payment intent kind" {
        /// A pending order's payment was sent for approval.
        Confirming = "confirming",
        /// A paid order's payment was sent for cancellation.
        Refunding = "refunding",
    }
}

/// A confirmation or refund sent to the provider whose outcome is not recorded yet.
#[derive(Debug, Clone, FromRow)]
pub struct IntentRow {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: IntentKind,
    pub provider: ProviderName,
    pub payment_key: String,
    pub amount: i64,
    pub reason: Option<String>,
    pub requested_by: Option<UserId>,
    pub started_at: i64,
    /// Lookups that found no clear answer so far.
    pub checks: i64,
    pub last_error: Option<String>,
    pub next_check_at: i64,
}

const INTENT_SELECT: &str =
    "SELECT order_id, user_id, kind, provider, payment_key, amount, reason, requested_by, \
     started_at, checks, last_error, next_check_at FROM payment_intents";

/// A new payment intent.
pub struct NewIntent<'a> {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: IntentKind,
    pub provider: ProviderName,
    pub payment_key: &'a str,
    pub amount: i64,
    pub reason: Option<&'a str>,
    pub requested_by: Option<UserId>,
    /// When the reconciler may first look at it, should its request never finish.
    pub next_check_at: i64,
}

/// Record that `i` is about to be sent to the provider. One intent per order: a second is a
/// unique violation.
pub async fn insert_intent(db: &Db, i: &NewIntent<'_>, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_intents (order_id, user_id, kind, provider, payment_key, amount, reason, requested_by, started_at, next_check_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(i.order_id)
    .bind(i.user_id)
    .bind(i.kind)
    .bind(i.provider)
    .bind(i.payment_key)
    .bind(i.amount)
    .bind(i.reason)
    .bind(i.requested_by)
    .bind(now)
    .bind(i.next_check_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The intent in flight for an order, if any.
pub async fn intent(db: &Db, order_id: OrderId) -> Result<Option<IntentRow>, sqlx::Error> {
    sqlx::query_as(&format!("{INTENT_SELECT} WHERE order_id = $1"))
        .bind(order_id)
        .fetch_optional(db.pool())
        .await
}

/// The intents in flight for `user_id`'s orders.
pub async fn intents_of_user(db: &Db, user_id: UserId) -> Result<Vec<IntentRow>, sqlx::Error> {
    sqlx::query_as(&format!("{INTENT_SELECT} WHERE user_id = $1"))
        .bind(user_id)
        .fetch_all(db.pool())
        .await
}

/// Intents due for a look at `now`, oldest first.
pub async fn due_intents(db: &Db, now: i64, limit: i64) -> Result<Vec<IntentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{INTENT_SELECT} WHERE next_check_at <= $1 ORDER BY next_check_at, order_id LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// How many intents are open.
pub async fn open_intents(db: &Db) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM payment_intents").fetch_one(db.pool()).await?;
    Ok(n)
}

/// Forget an intent whose outcome left the order as it was (declined, never reached the
/// provider, or given back).
pub async fn drop_intent(db: &Db, order_id: OrderId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM payment_intents WHERE order_id = $1")
        .bind(order_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Note a look that found no clear answer, and when to look again.
pub async fn intent_unsettled(
    db: &Db,
    order_id: OrderId,
    error: &str,
    next_check_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payment_intents SET checks = checks + 1, last_error = $2, next_check_at = $3 WHERE order_id = $1")
        .bind(order_id)
        .bind(error)
        .bind(next_check_at)
        .execute(db.pool())
        .await?;
    Ok(())
}
