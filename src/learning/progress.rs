//! Watch progress: resume position, the furthest point reached, completion.
//!
//! Several devices may report for one person at once (a phone and a laptop). Their reports
//! merge instead of fighting: the resume position is the latest report, the furthest point only
//! grows, and completion, once reached, stays. A lecture counts as completed when the client
//! says so or when the furthest point passes 90 % of its duration.

use crate::types::{CourseId, LectureId, UserId};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;

use crate::db::{rfc3339, Db};

/// Fraction of a lecture past which it counts as completed.
const COMPLETE_AT: f64 = 0.9;

/// One lecture's progress.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct LectureProgress {
    pub lecture_id: LectureId,
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
    pub course_id: CourseId,
    pub lectures: Vec<LectureProgress>,
    pub completed_lectures: i64,
    pub total_lectures: i64,
    /// Completed lectures over all lectures, 0..100.
    pub percent: f64,
    /// Watched share of the course's duration, 0..1 (what the refund policy looks at).
    pub watched_fraction: f64,
    /// The lecture to resume: the one reported last.
    pub last_lecture_id: Option<LectureId>,
    pub updated_at: Option<String>,
}

/// Record a report for `lecture_id` of `course_id`. `duration` is the lecture's measured length
/// (None before its video is ready).
pub async fn record(
    db: &Db,
    user_id: UserId,
    lecture_id: LectureId,
    course_id: CourseId,
    position: f64,
    completed: bool,
    duration: Option<f64>,
) -> Result<LectureProgress, sqlx::Error> {
    // Past this point of the furthest position reached, the lecture is completed; none
    // without a measured duration.
    let threshold = duration.filter(|d| *d > 0.0).map_or(f64::MAX, |d| d * COMPLETE_AT);
    let report = super::db::Report {
        user_id,
        lecture_id,
        course_id,
        position,
        completed: completed || position >= threshold,
        threshold,
    };
    super::db::record_progress(db, &report).await
}

/// `user_id`'s progress through `course_id`.
pub async fn course_progress(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<CourseProgress, sqlx::Error> {
    let lectures = super::db::lecture_progress(db, user_id, course_id).await?;
    let total = super::db::lecture_count(db, course_id).await?;
    let last = super::db::last_report(db, user_id, course_id).await?;
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
        updated_at: last.map(|l| rfc3339(l.1)),
        lectures,
    })
}

/// The share of `course_id`'s measured duration that `user_id` has watched (furthest point per
/// lecture, capped at the lecture's length), 0..1; 0 for a course without measured duration.
pub async fn watched_fraction(
    db: &Db,
    user_id: UserId,
    course_id: CourseId,
) -> Result<f64, sqlx::Error> {
    let (watched, total) = super::db::watched_and_total(db, user_id, course_id).await?;
    Ok(if total > 0.0 { (watched / total).clamp(0.0, 1.0) } else { 0.0 })
}

pub use super::db::course_engagement;
