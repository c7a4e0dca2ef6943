//! The cart: courses a buyer means to order, shown at their current titles and prices.

use crate::types::{CourseId, Currency};
use serde::Serialize;
use utoipa::ToSchema;

use super::db::{self, CartRow};
use super::purchasable_course;
use crate::accounts::Caller;
use crate::db::{is_unique_violation, now, rfc3339, Db};
use crate::error::{Error, Result};

/// A course in the cart, at its current title and price.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartItem {
    pub course_id: CourseId,
    pub title: String,
    /// Minor units of `currency`.
    pub price: i64,
    pub currency: Currency,
    pub added_at: String,
}

/// The caller's cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cart {
    /// Oldest first.
    pub items: Vec<CartItem>,
    /// Sum of the prices, in minor units of `currency` (0 for an empty cart).
    pub total: i64,
    /// The cart's one currency; null when the cart is empty.
    pub currency: Option<Currency>,
}

impl From<Vec<CartRow>> for Cart {
    fn from(rows: Vec<CartRow>) -> Cart {
        let currency = rows.first().map(|r| r.currency);
        let total = rows.iter().map(|r| r.price).sum();
        let items = rows
            .into_iter()
            .map(|r| CartItem {
                course_id: r.course_id,
                title: r.title,
                price: r.price,
                currency: r.currency,
                added_at: rfc3339(r.added_at),
            })
            .collect();
        Cart { items, total, currency }
    }
}

pub async fn cart(db: &Db, caller: &Caller) -> Result<Cart> {
    Ok(db::cart(db, caller.user_id).await?.into())
}

/// Put a course in the cart: it must be purchasable by the caller, not in the cart yet (409
/// `already_in_cart`), and in the currency of what is there (409 `mixed_currencies`).
pub async fn add(db: &Db, caller: &Caller, course_id: CourseId) -> Result<Cart> {
    let course = purchasable_course(db, caller, course_id).await?;
    let lines = db::cart(db, caller.user_id).await?;
    if lines.iter().any(|l| l.course_id == course_id) {
        return Err(already_in_cart());
    }
    if let Some(other) = lines.iter().find(|l| l.currency != course.currency) {
        return Err(Error::conflict(
            "mixed_currencies",
            format!(
                "the cart holds {} courses; this one is priced in {}",
                other.currency, course.currency
            ),
        ));
    }
    match db::add_to_cart(db, caller.user_id, course_id, now()).await {
        Ok(()) => cart(db, caller).await,
        Err(e) if is_unique_violation(&e) => Err(already_in_cart()),
        Err(e) => Err(e.into()),
    }
}

fn already_in_cart() -> Error {
    Error::conflict("already_in_cart", "this course is already in your cart")
}

/// Take a course out of the cart (404 when it is not there).
pub async fn remove(db: &Db, caller: &Caller, course_id: CourseId) -> Result<()> {
    if db::remove_from_cart(db, caller.user_id, course_id).await? {
        Ok(())
    } else {
        Err(Error::not_found("cart item"))
    }
}
