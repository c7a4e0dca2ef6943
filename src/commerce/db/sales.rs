//! The dashboard's sales figures, per course.

use crate::types::{CourseId, Currency, UserId};
use sqlx::FromRow;

use crate::catalog::CourseStatus;
use crate::db::Db;

/// Whose sales a dashboard covers: one instructor's courses, or every course (admins).
#[derive(Debug, Clone, Copy)]
pub enum SalesScope {
    Instructor(UserId),
    Everything,
}

impl SalesScope {
    /// `(filter on?, instructor id)` for the `($1 = 0 OR c.instructor_id = $2)` filter.
    fn binds(self) -> (i64, i64) {
        match self {
            SalesScope::Instructor(id) => (1, id.get()),
            SalesScope::Everything => (0, 0),
        }
    }
}

/// One course's sales between two instants (`[from, to)`, Unix seconds).
#[derive(Debug, Clone, FromRow)]
pub struct CourseSalesRow {
    pub course_id: CourseId,
    pub title: String,
    pub status: CourseStatus,
    pub currency: Currency,
    /// Prices of the course in orders paid in the range (in the course's currency).
    pub gross_revenue: i64,
    /// Prices of the course in orders refunded in the range (in the course's currency).
    pub refunded_amount: i64,
    pub paid_orders: i64,
    pub refunds: i64,
    /// Active enrollments now.
    pub enrollments: i64,
}

/// Per-course sales of the scope's courses, by course id.
pub async fn course_sales(
    db: &Db,
    scope: SalesScope,
    from: i64,
    to: i64,
) -> Result<Vec<CourseSalesRow>, sqlx::Error> {
    let (filtered, instructor) = scope.binds();
    sqlx::query_as(
        "SELECT c.id AS course_id, c.title, c.status, c.currency, \
           CAST(COALESCE(SUM(CASE WHEN o.paid_at >= $3 AND o.paid_at < $4 AND o.currency = c.currency THEN i.price ELSE 0 END), 0) AS BIGINT) AS gross_revenue, \
           CAST(COALESCE(SUM(CASE WHEN o.refunded_at >= $3 AND o.refunded_at < $4 AND o.currency = c.currency THEN i.price ELSE 0 END), 0) AS BIGINT) AS refunded_amount, \
           CAST(COALESCE(SUM(CASE WHEN o.paid_at >= $3 AND o.paid_at < $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS paid_orders, \
           CAST(COALESCE(SUM(CASE WHEN o.refunded_at >= $3 AND o.refunded_at < $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS refunds, \
           CAST((SELECT COUNT(*) FROM enrollments e WHERE e.course_id = c.id AND e.revoked_at IS NULL) AS BIGINT) AS enrollments \
         FROM courses c \
         LEFT JOIN order_items i ON i.course_id = c.id \
         LEFT JOIN orders o ON o.id = i.order_id \
         WHERE ($1 = 0 OR c.instructor_id = $2) \
         GROUP BY c.id, c.title, c.status, c.currency ORDER BY c.id",
    )
    .bind(filtered)
    .bind(instructor)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await
}

/// Sales of the scope's courses in one currency between two instants.
#[derive(Debug, Clone, FromRow)]
pub struct CurrencySalesRow {
    pub currency: Currency,
    pub gross_revenue: i64,
    pub refunded_amount: i64,
    /// Distinct orders (an order with two of the courses counts once).
    pub paid_orders: i64,
    pub refunds: i64,
}

/// Sales of the scope's courses per order currency, whatever the courses' currencies are now.
pub async fn sales_by_currency(
    db: &Db,
    scope: SalesScope,
    from: i64,
    to: i64,
) -> Result<Vec<CurrencySalesRow>, sqlx::Error> {
    let (filtered, instructor) = scope.binds();
    sqlx::query_as(
        "SELECT o.currency, \
           CAST(COALESCE(SUM(CASE WHEN o.paid_at >= $3 AND o.paid_at < $4 THEN i.price ELSE 0 END), 0) AS BIGINT) AS gross_revenue, \
           CAST(COALESCE(SUM(CASE WHEN o.refunded_at >= $3 AND o.refunded_at < $4 THEN i.price ELSE 0 END), 0) AS BIGINT) AS refunded_amount, \
           CAST(COUNT(DISTINCT CASE WHEN o.paid_at >= $3 AND o.paid_at < $4 THEN o.id END) AS BIGINT) AS paid_orders, \
           CAST(COUNT(DISTINCT CASE WHEN o.refunded_at >= $3 AND o.refunded_at < $4 THEN o.id END) AS BIGINT) AS refunds \
         FROM order_items i JOIN orders o ON o.id = i.order_id JOIN courses c ON c.id = i.course_id \
         WHERE o.paid_at IS NOT NULL AND ($1 = 0 OR c.instructor_id = $2) \
         GROUP BY o.currency ORDER BY o.currency",
    )
    .bind(filtered)
    .bind(instructor)
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await
}
