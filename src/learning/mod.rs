//! Enrollments and entitlement: who may watch what.
//!
//! [`may_watch`] is the one answer to "may this person watch this lecture?": yes when they are
//! enrolled in its course, when the lecture is a free preview of a published course (anyone,
//! signed in or not), when they own the course, or when they are an admin.

pub mod progress;
pub mod routes;

use crate::accounts::{Caller, Role};
use crate::catalog::db::{CourseRow, LectureRow};
use crate::db::{now, Db};

/// Why a caller may watch a lecture, or that they may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entitlement {
    Enrolled,
    Preview,
    Owner,
    Admin,
    /// Not signed in, and the lecture is not a preview.
    SignInRequired,
    /// Signed in, but not enrolled.
    NotEntitled,
}

impl Entitlement {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            Entitlement::Enrolled | Entitlement::Preview | Entitlement::Owner | Entitlement::Admin
        )
    }
}

/// May `caller` watch `lecture` of `course`?
pub async fn may_watch(
    db: &Db,
    caller: Option<&Caller>,
    course: &CourseRow,
    lecture: &LectureRow,
) -> Result<Entitlement, sqlx::Error> {
    if let Some(c) = caller {
        if c.role == Role::Admin {
            return Ok(Entitlement::Admin);
        }
        if c.user_id == course.instructor_id {
            return Ok(Entitlement::Owner);
        }
    }
    if lecture.is_preview != 0 && course.status == "published" {
        return Ok(Entitlement::Preview);
    }
    match caller {
        None => Ok(Entitlement::SignInRequired),
        Some(c) if crate::catalog::db::is_enrolled(db, c.user_id, course.id).await? => {
            Ok(Entitlement::Enrolled)
        }
        Some(_) => Ok(Entitlement::NotEntitled),
    }
}

/// Enroll `user_id` in `course_id` (idempotent: an existing active enrollment is kept).
/// `source` says how: `order`, `free`, `admin`. `exec` is a pool or, to enroll as part of a
/// larger change (a payment), a transaction — the duplicate is skipped with `ON CONFLICT`
/// rather than caught, so it never aborts that transaction.
pub async fn enroll<'e, E>(
    exec: E,
    user_id: i64,
    course_id: i64,
    source: &str,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO enrollments (user_id, course_id, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(course_id)
    .bind(source)
    .bind(now())
    .execute(exec)
    .await?;
    Ok(())
}

/// End `user_id`'s enrollment in `course_id` (refunds); watching stops being allowed at once.
/// `exec` is a pool or a transaction, as for [`enroll`].
pub async fn revoke<'e, E>(exec: E, user_id: i64, course_id: i64) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query("UPDATE enrollments SET revoked_at = $3 WHERE user_id = $1 AND course_id = $2 AND revoked_at IS NULL")
        .bind(user_id)
        .bind(course_id)
        .bind(now())
        .execute(exec)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// One page of the courses `user_id` is actively enrolled in, newest enrollment first, with
/// the enrollment time; and how many there are.
pub async fn enrolled_courses(
    db: &Db,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<(Vec<(CourseRow, i64)>, i64), sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(&format!(
        "{} JOIN enrollments e ON e.course_id = c.id WHERE e.user_id = $1 AND e.revoked_at IS NULL \
         ORDER BY e.created_at DESC, e.id DESC LIMIT $2 OFFSET $3",
        crate::catalog::db::COURSE_SELECT.replacen(" FROM courses c", ", e.created_at AS enrolled_at FROM courses c", 1)
    ))
    .bind(user_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push((
            <CourseRow as sqlx::FromRow<_>>::from_row(row)?,
            row.try_get::<i64, _>("enrolled_at")?,
        ));
    }
    let (total,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM enrollments WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(db.pool())
    .await?;
    Ok((out, total))
}
