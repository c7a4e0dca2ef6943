//! Watch progress: resume position, the furthest point reached, completion.
//!
//! Several devices may report for one person at once (a phone and a laptop). Their reports
//! merge instead of fighting: the resume position is the latest report, the furthest point only
//! grows, and completion, once reached, stays. A lecture counts as completed when the client
//! says so or when the furthest point passes 90 % of its duration.

use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use crate::db::{now, rfc3339, Db};

/// Fraction of a lecture past which it counts as completed.
const COMPLETE_AT: f64 = 0.9;

/// One lecture's progress.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct LectureProgress {
    pub lecture_id: i64,
    pub position_seconds: f64,
    pub furthest_seconds: f64,
    #[serde(serialize_with = "as_bool")]
    #[schema(value_type = bool)]
    pub completed: i64,
}

fn as_bool<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*v != 0)
}

/// A course's progress for one person.
#[derive(Debug, Serialize, ToSchema)]
pub struct CourseProgress {
    pub course_id: i64,
    pub lectures: Vec<LectureProgress>,
    pub completed_lectures: i64,
    pub total_lectures: i64,
    /// Completed lectures over all lectures, 0..100.
    pub percent: f64,
    /// Watched share of the course's duration, 0..1 (what the refund policy looks at).
    pub watched_fraction: f64,
    /// The lecture to resume: the one reported last.
    pub last_lecture_id: Option<i64>,
    pub updated_at: Option<String>,
}

/// Record a report for `lecture_id` of `course_id`. `duration` is the lecture's measured length
/// (None before its video is ready).
pub async fn record(
    db: &Db,
    user_id: i64,
    lecture_id: i64,
    course_id: i64,
    position: f64,
    completed: bool,
    duration: Option<f64>,
) -> Result<LectureProgress, sqlx::Error> {
    // Past this point of the furthest position reached, the lecture is completed; none
    // without a measured duration.
    let threshold = duration.filter(|d| *d > 0.0).map_or(f64::MAX, |d| d * COMPLETE_AT);
    let done = (completed || position >= threshold) as i64;
    let t = now();
    // Milliseconds, and past every earlier report of this person in this course even when two
    // land in the same millisecond, so that "the lecture reported last" is well defined.
    let t_ms = chrono::Utc::now().timestamp_millis();
    let reported_at =
        "(SELECT CASE WHEN MAX(updated_at) >= $7 THEN MAX(updated_at) + 1 ELSE $7 END \
                       FROM lecture_progress WHERE user_id = $1 AND course_id = $3)";
    let completed_at = if done == 1 { Some(t) } else { None };
    // One statement: the merge, completion by the furthest point (so a lecture reported in
    // small steps completes too) and the answer, with no moment in between to interleave.
    let furthest = "CASE WHEN excluded.furthest_seconds > lecture_progress.furthest_seconds \
                    THEN excluded.furthest_seconds ELSE lecture_progress.furthest_seconds END";
    sqlx::query_as(&format!(
        "INSERT INTO lecture_progress (user_id, lecture_id, course_id, position_seconds, furthest_seconds, completed, completed_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4, $5, $6, {reported_at}) \
         ON CONFLICT (user_id, lecture_id) DO UPDATE SET \
           position_seconds = excluded.position_seconds, \
           furthest_seconds = {furthest}, \
           completed = CASE WHEN lecture_progress.completed = 1 OR excluded.completed = 1 OR {furthest} >= $8 THEN 1 ELSE 0 END, \
           completed_at = COALESCE(lecture_progress.completed_at, excluded.completed_at, \
                                   CASE WHEN {furthest} >= $8 THEN $9 END), \
           updated_at = excluded.updated_at \
         RETURNING lecture_id, position_seconds, furthest_seconds, completed"
    ))
    .bind(user_id)
    .bind(lecture_id)
    .bind(course_id)
    .bind(position)
    .bind(done)
    .bind(completed_at)
    .bind(t_ms)
    .bind(threshold)
    .bind(t)
    .fetch_one(db.pool())
    .await
}

/// `user_id`'s progress through `course_id`.
pub async fn course_progress(
    db: &Db,
    user_id: i64,
    course_id: i64,
) -> Result<CourseProgress, sqlx::Error> {
    let lectures: Vec<LectureProgress> = sqlx::query_as(
        "SELECT p.lecture_id, p.position_seconds, p.furthest_seconds, p.completed FROM lecture_progress p \
         JOIN lectures l ON l.id = p.lecture_id WHERE p.user_id = $1 AND p.course_id = $2 ORDER BY l.position, l.id",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_all(db.pool())
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM lectures WHERE course_id = $1")
        .bind(course_id)
        .fetch_one(db.pool())
        .await?;
    let last: Option<(i64, i64)> = sqlx::query_as(
        "SELECT lecture_id, updated_at FROM lecture_progress WHERE user_id = $1 AND course_id = $2 ORDER BY updated_at DESC, lecture_id DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_optional(db.pool())
    .await?;
    let completed = lectures.iter().filter(|l| l.completed != 0).count() as i64;
    let percent =
        if total == 0 { 0.0 } else { (completed as f64 * 1000.0 / total as f64).round() / 10.0 };
    Ok(CourseProgress {
        course_id,
        completed_lectures: completed,
        total_lectures: total,
        percent,
        watched_fraction: watched_fraction(db, user_id, course_id).await?,
        last_lecture_id: last.map(|l| l.0),
        updated_at: last.map(|l| rfc3339(l.1 / 1000)),
        lectures,
    })
}

/// The share of `course_id`'s measured duration that `user_id` has watched (furthest point per
/// lecture, capped at the lecture's length), 0..1; 0 for a course without measured duration.
pub async fn watched_fraction(db: &Db, user_id: i64, course_id: i64) -> Result<f64, sqlx::Error> {
    let (watched, total): (f64, f64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN p.furthest_seconds < l.duration_seconds THEN p.furthest_seconds ELSE l.duration_seconds END), 0) AS DOUBLE PRECISION), \
                CAST((SELECT duration_seconds FROM courses WHERE id = $2) AS DOUBLE PRECISION) \
         FROM lecture_progress p JOIN lectures l ON l.id = p.lecture_id \
         WHERE p.user_id = $1 AND p.course_id = $2 AND l.duration_seconds IS NOT NULL",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_one(db.pool())
    .await?;
    Ok(if total > 0.0 { (watched / total).clamp(0.0, 1.0) } else { 0.0 })
}

/// Engagement with a course across all its students: seconds watched (furthest points, capped
/// per lecture) and how many of the actively enrolled students completed every lecture.
pub async fn course_engagement(db: &Db, course_id: i64) -> Result<(f64, i64), sqlx::Error> {
    let (watched,): (f64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN l.duration_seconds IS NOT NULL AND p.furthest_seconds > l.duration_seconds \
                 THEN l.duration_seconds ELSE p.furthest_seconds END), 0) AS DOUBLE PRECISION) \
         FROM lecture_progress p JOIN lectures l ON l.id = p.lecture_id WHERE p.course_id = $1",
    )
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
