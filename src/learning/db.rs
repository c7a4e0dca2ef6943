//! Enrollment and watch-progress SQL. Times are Unix seconds, as everywhere.

use crate::types::{CourseId, LectureId, UserId};
use sqlx::{AnyConnection, Row};

use super::progress::LectureProgress;
use crate::catalog::db::{CourseRow, COURSE_COLUMNS, COURSE_FROM};
use crate::db::{now, Db};

/// Enroll `user_id` in `course_id` (idempotent: an existing active enrollment is kept).
/// `source` says how: `order`, `free`, `admin`. `exec` is a pool or, to enroll as part of a
/// larger change (a payment), a transaction — the duplicate is skipped with `ON CONFLICT`
/// rather than caught, so it never aborts that transaction.
pub async fn enroll<'e, E>(
    exec: E,
    user_id: UserId,
    course_id: CourseId,
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
pub async fn revoke<'e, E>(
    exec: E,
    user_id: UserId,
    course_id: CourseId,
) -> Result<bool, sqlx::Error>
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

/// Is `user_id` actively enrolled in `course_id`?
pub async fn is_enrolled(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_as::<_, (i64,)>(
        "SELECT id FROM enrollments WHERE user_id = $1 AND course_id = $2 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_optional(db.pool())
    .await?
    .is_some())
}

/// Active enrollments in course `id`, counted now (not the trigger-kept figure on the course).
pub async fn active_enrollments(
    conn: &mut AnyConnection,
    id: CourseId,
) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM enrollments WHERE course_id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// One page of the courses `user_id` is actively enrolled in, newest enrollment first, with
/// the enrollment time; and how many there are.
pub async fn enrolled_courses(
    db: &Db,
    user_id: UserId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<(CourseRow, i64)>, i64), sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COURSE_COLUMNS}, e.created_at AS enrolled_at FROM {COURSE_FROM} \
         JOIN enrollments e ON e.course_id = c.id WHERE e.user_id = $1 AND e.revoked_at IS NULL \
         ORDER BY e.created_at DESC, e.id DESC LIMIT $2 OFFSET $3"
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

/// One progress report, as [`record_progress`] merges it.
pub struct Report {
    pub user_id: UserId,
    pub lecture_id: LectureId,
    pub course_id: CourseId,
    pub position: f64,
    /// The client says the lecture is done, or the position is past `threshold`.
    pub completed: bool,
    /// The furthest point past which the lecture counts as completed.
    pub threshold: f64,
}

/// Merge a report into the stored progress in one statement: the resume position is the
/// latest report, the furthest point only grows, completion once reached stays (also when the
/// furthest point passes the threshold in small steps), with no moment in between for another
/// report to interleave. Returns the merged progress.
pub async fn record_progress(db: &Db, r: &Report) -> Result<LectureProgress, sqlx::Error> {
    let t = now();
    let done = r.completed as i64;
    let completed_at = if r.completed { Some(t) } else { None };
    // Past every earlier report of this person in this course, so that "the lecture reported
    // last" is well defined.
    let seq = "(SELECT COALESCE(MAX(report_seq), 0) + 1 FROM lecture_progress \
               WHERE user_id = $1 AND course_id = $3)";
    let furthest = "CASE WHEN excluded.furthest_seconds > lecture_progress.furthest_seconds \
                    THEN excluded.furthest_seconds ELSE lecture_progress.furthest_seconds END";
    sqlx::query_as(&format!(
        "INSERT INTO lecture_progress (user_id, lecture_id, course_id, position_seconds, furthest_seconds, completed, completed_at, updated_at, report_seq) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, {seq}) \
         ON CONFLICT (user_id, lecture_id) DO UPDATE SET \
           position_seconds = excluded.position_seconds, \
           furthest_seconds = {furthest}, \
           completed = CASE WHEN lecture_progress.completed = 1 OR excluded.completed = 1 OR {furthest} >= $8 THEN 1 ELSE 0 END, \
           completed_at = COALESCE(lecture_progress.completed_at, excluded.completed_at, \
                                   CASE WHEN {furthest} >= $8 THEN $7 END), \
           updated_at = excluded.updated_at, \
           report_seq = excluded.report_seq \
         RETURNING lecture_id, position_seconds, furthest_seconds, completed"
    ))
    .bind(r.user_id)
    .bind(r.lecture_id)
    .bind(r.course_id)
    .bind(r.position)
    .bind(done)
    .bind(completed_at)
    .bind(t)
    .bind(r.threshold)
    .fetch_one(db.pool())
    .await
}

/// `user_id`'s progress rows in `course_id`, in curriculum order.
pub async fn lecture_progress(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<Vec<LectureProgress>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.lecture_id, p.position_seconds, p.furthest_seconds, p.completed FROM lecture_progress p \
         JOIN lectures l ON l.id = p.lecture_id WHERE p.user_id = $1 AND p.course_id = $2 ORDER BY l.position, l.id",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_all(db.pool())
    .await
}

/// How many lectures `course_id` has.
pub async fn lecture_count(db: &Db, course_id: CourseId) -> Result<i64, sqlx::Error> {
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM lectures WHERE course_id = $1")
        .bind(course_id)
        .fetch_one(db.pool())
        .await?;
    Ok(total)
}

/// The lecture of `course_id` that `user_id` reported on last, and when (Unix seconds).
pub async fn last_report(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<Option<(LectureId, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT lecture_id, updated_at FROM lecture_progress WHERE user_id = $1 AND course_id = $2 \
         ORDER BY report_seq DESC, lecture_id DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_optional(db.pool())
    .await
}

/// How far each user got into each lecture of the course bound as `course` (a placeholder,
/// `$1`, `$2`): the larger of what their player reported (`lecture_progress`) and what the
/// server saw it fetch (`playback_sessions`), per `(user_id, lecture_id)`, as `seconds`.
fn watched(course: &str) -> String {
    format!(
        "SELECT user_id, lecture_id, MAX(seconds) AS seconds FROM ( \
         SELECT user_id, lecture_id, furthest_seconds AS seconds FROM lecture_progress WHERE course_id = {course} \
         UNION ALL SELECT user_id, lecture_id, served_seconds AS seconds FROM playback_sessions \
         WHERE course_id = {course} AND user_id IS NOT NULL) seen GROUP BY user_id, lecture_id"
    )
}

/// Seconds of `course_id` that `user_id` has watched (furthest point per lecture, reported or
/// served, capped at the lecture's length), and the course's measured duration (0 when none).
pub async fn watched_and_total(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<(f64, f64), sqlx::Error> {
    let (watched, total): (f64, Option<f64>) = sqlx::query_as(&format!(
        "SELECT CAST(COALESCE(SUM(CASE WHEN w.seconds < l.duration_seconds THEN w.seconds ELSE l.duration_seconds END), 0) AS DOUBLE PRECISION), \
                CAST((SELECT duration_seconds FROM courses WHERE id = $2) AS DOUBLE PRECISION) \
         FROM ({}) w JOIN lectures l ON l.id = w.lecture_id \
         WHERE w.user_id = $1 AND l.duration_seconds IS NOT NULL",
        watched("$2")
    ))
    .bind(user_id)
    .bind(course_id)
    .fetch_one(db.pool())
    .await?;
    Ok((watched, total.unwrap_or(0.0)))
}

/// Engagement with a course across all its students: seconds watched (furthest points, capped
/// per lecture) and how many of the actively enrolled students completed every lecture.
pub async fn course_engagement(db: &Db, course_id: CourseId) -> Result<(f64, i64), sqlx::Error> {
    // Students' watching only: the instructor's own playback is not watch time.
    let (watched,): (f64,) = sqlx::query_as(&format!(
        "SELECT CAST(COALESCE(SUM(CASE WHEN l.duration_seconds IS NOT NULL AND w.seconds > l.duration_seconds \
                 THEN l.duration_seconds ELSE w.seconds END), 0) AS DOUBLE PRECISION) \
         FROM ({}) w JOIN lectures l ON l.id = w.lecture_id \
         WHERE w.user_id IN (SELECT user_id FROM enrollments WHERE course_id = $1) \
             OR w.user_id IN (SELECT user_id FROM lecture_progress WHERE course_id = $1)",
        watched("$1")
    ))
    .bind(course_id)
    .fetch_one(db.pool())
    .await?;
    let (finished,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM enrollments e WHERE e.course_id = $1 AND e.revoked_at IS NULL \
         AND (SELECT COUNT(*) FROM lectures WHERE course_id = $1) > 0 \
         AND (SELECT COUNT(*) FROM lecture_progress p WHERE p.user_id = e.user_id AND p.course_id = $1 AND p.completed = 1) \
             >= (SELECT COUNT(*) FROM lectures WHERE course_id = $1)",
    )
    .bind(course_id)
    .fetch_one(db.pool())
    .await?;
    Ok((watched, finished))
}
