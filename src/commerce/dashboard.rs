//! The instructor dashboard: sales, refunds, enrollments and watch time per course.
//!
//! Money figures cover a date range (UTC days, both ends included): sales count by the day an
//! order was paid, refunds by the day it was refunded, so `revenue` is net of the refunds made
//! in the range. Enrollments, watch time and completion are as of now.

use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

use super::db::{self, SalesScope};
use crate::accounts::{Caller, Role};
use crate::catalog::CourseStatus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::learning::progress::course_engagement;
use crate::types::{CourseId, Currency};

/// One course's figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct CourseFigures {
    pub course_id: CourseId,
    pub title: String,
    pub status: CourseStatus,
    /// The course's currency; the money fields below are in its minor units.
    pub currency: Currency,
    /// Net revenue: `gross_revenue - refunded_amount`.
    pub revenue: i64,
    /// Prices of the course in orders paid in the range.
    pub gross_revenue: i64,
    /// Prices of the course in orders refunded in the range.
    pub refunded_amount: i64,
    /// Orders paid in the range that include the course (refunded since or not).
    pub paid_orders: i64,
    /// Orders refunded in the range that include the course.
    pub refunds: i64,
    /// Students enrolled now.
    pub enrollments: i64,
    /// Seconds of the course watched by all its students (furthest point per lecture).
    pub watch_seconds: f64,
    /// Enrolled students who completed every lecture.
    pub completed_students: i64,
    /// `completed_students / enrollments`, 0..1 (0 without enrollments).
    pub completion_rate: f64,
}

/// Money over all the courses in one order currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotals {
    pub currency: Currency,
    /// Net revenue: `gross_revenue - refunded_amount`, in minor units.
    pub revenue: i64,
    pub gross_revenue: i64,
    pub refunded_amount: i64,
    /// Distinct orders paid in the range (one with two of the courses counts once).
    pub paid_orders: i64,
    /// Distinct orders refunded in the range.
    pub refunds: i64,
}

/// Sums over all the courses.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardTotals {
    /// Net revenue in minor units of `currency`, when everything (courses and sales) is in one
    /// currency; null otherwise (see `by_currency`).
    pub revenue: Option<i64>,
    /// The one currency of all the courses and sales; null when there are several (or none).
    pub currency: Option<Currency>,
    /// Distinct orders paid in the range.
    pub paid_orders: i64,
    /// Distinct orders refunded in the range.
    pub refunds: i64,
    pub courses: i64,
    pub enrollments: i64,
    pub watch_seconds: f64,
    pub completed_students: i64,
    /// Money per currency (orders are in one currency each); empty without sales in the range.
    pub by_currency: Vec<CurrencyTotals>,
}

/// The dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    /// First day covered (`YYYY-MM-DD`), or null for "from the beginning".
    pub from: Option<String>,
    /// Last day covered (`YYYY-MM-DD`), or null for "until now".
    pub to: Option<String>,
    /// The caller's courses (every course for admins), by id.
    pub courses: Vec<CourseFigures>,
    pub totals: DashboardTotals,
}

/// A day as RFC 3339 writes one (`full-date`: `YYYY-MM-DD`, zero-padded, a real date), as the
/// OpenAPI `date` format says.
fn day(field: &str, value: &str) -> Result<NaiveDate> {
    let bad = |why: String| {
        Error::malformed(
            "invalid_date",
            format!("{field} must be a date such as 2025-03-01 ({why})"),
        )
    };
    let shape = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape {
        return Err(bad("YYYY-MM-DD".into()));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|e| bad(e.to_string()))
}

/// Unix seconds at the start of `d` (UTC).
fn midnight(d: NaiveDate) -> i64 {
    d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp()
}

/// The dashboard of `caller` (an instructor: their courses; an admin: every course) for the
/// days `from..=to` (`YYYY-MM-DD`, either open).
pub async fn dashboard(
    db: &Db,
    caller: &Caller,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Dashboard> {
    let scope = match caller.role {
        Role::Student => {
            return Err(Error::denied(
                "instructors_only",
                "the dashboard is for instructors; become one with POST /api/v1/me/instructor",
            ))
        }
        Role::Instructor => SalesScope::Instructor(caller.user_id),
        Role::Admin => SalesScope::Everything,
    };
    let from = from.map(|f| day("from", f)).transpose()?;
    let to = to.map(|t| day("to", t)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(Error::malformed("invalid_date_range", "from must not be after to"));
        }
    }
    let start = from.map(midnight).unwrap_or(i64::MIN);
    let end = to.map(|t| t.succ_opt().map(midnight).unwrap_or(i64::MAX)).unwrap_or(i64::MAX);
    let courses = course_figures(db, scope, start, end).await?;
    let by_currency = db::sales_by_currency(db, scope, start, end)
        .await?
        .into_iter()
        .filter(|c| c.paid_orders > 0 || c.refunds > 0)
        .map(|c| CurrencyTotals {
            revenue: c.gross_revenue - c.refunded_amount,
            currency: c.currency,
            gross_revenue: c.gross_revenue,
            refunded_amount: c.refunded_amount,
            paid_orders: c.paid_orders,
            refunds: c.refunds,
        })
        .collect::<Vec<_>>();
    let totals = totals(&courses, by_currency);
    Ok(Dashboard {
        from: from.map(|d| d.to_string()),
        to: to.map(|d| d.to_string()),
        courses,
        totals,
    })
}

/// Each course's figures for sales in `[start, end)`.
async fn course_figures(
    db: &Db,
    scope: SalesScope,
    start: i64,
    end: i64,
) -> Result<Vec<CourseFigures>> {
    let mut courses = Vec::new();
    for row in db::course_sales(db, scope, start, end).await? {
        let (watch_seconds, completed_students) = course_engagement(db, row.course_id).await?;
        courses.push(CourseFigures {
            revenue: row.gross_revenue - row.refunded_amount,
            completion_rate: if row.enrollments > 0 {
                completed_students as f64 / row.enrollments as f64
            } else {
                0.0
            },
            course_id: row.course_id,
            title: row.title,
            status: row.status,
            currency: row.currency,
            gross_revenue: row.gross_revenue,
            refunded_amount: row.refunded_amount,
            paid_orders: row.paid_orders,
            refunds: row.refunds,
            enrollments: row.enrollments,
            watch_seconds,
            completed_students,
        });
    }
    Ok(courses)
}

/// The sums over `courses` and the money per currency; one `revenue` only when courses and
/// sales are all in one currency.
fn totals(courses: &[CourseFigures], by_currency: Vec<CurrencyTotals>) -> DashboardTotals {
    let mut currencies: Vec<Currency> =
        courses.iter().map(|c| c.currency).chain(by_currency.iter().map(|c| c.currency)).collect();
    currencies.sort_unstable();
    currencies.dedup();
    let currency = match currencies.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    DashboardTotals {
        revenue: currency.map(|_| by_currency.iter().map(|c| c.revenue).sum()),
        currency,
        paid_orders: by_currency.iter().map(|c| c.paid_orders).sum(),
        refunds: by_currency.iter().map(|c| c.refunds).sum(),
        courses: courses.len() as i64,
        enrollments: courses.iter().map(|c| c.enrollments).sum(),
        watch_seconds: courses.iter().map(|c| c.watch_seconds).sum(),
        completed_students: courses.iter().map(|c| c.completed_students).sum(),
        by_currency,
    }
}
