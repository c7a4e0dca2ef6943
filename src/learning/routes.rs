//! HTTP handlers for watch progress and "my courses".

use crate::types::{CourseId, LectureId};
use axum::extract::State;
use axum::routing::{get, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::progress::{self, CourseProgress, LectureProgress};
use crate::catalog::CourseSummary;
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};

use crate::app::AppState;
use crate::http::extract::{Auth, Json, PageParams, Paged, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lectures/{lecture_id}/progress", put(put_progress))
        .route("/api/v1/courses/{course_id}/progress", get(get_progress))
        .route("/api/v1/me/courses", get(my_courses))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(put_progress, get_progress, my_courses))]
pub struct LearningApi;

/// A progress report from a player.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProgressReport {
    /// Where the viewer is now (the resume point), in seconds.
    pub position_seconds: f64,
    /// The viewer finished the lecture.
    #[serde(default)]
    pub completed: bool,
}

/// Report watch progress for a lecture (anyone allowed to watch it, signed in). Reports from
/// several devices merge: the furthest point only grows and completion sticks.
#[utoipa::path(put, path = "/api/v1/lectures/{lecture_id}/progress", tag = "learning", request_body = ProgressReport,
    params(("lecture_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = LectureProgress), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_progress(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(lecture_id): Path<LectureId>,
    Json(report): Json<ProgressReport>,
) -> ApiResult<axum::Json<LectureProgress>> {
    let (lecture, course) =
        crate::catalog::visible_lecture(&st.db, Some(&caller), lecture_id).await?;
    if !super::may_watch(&st.db, Some(&caller), &course, &lecture).await?.allowed() {
        return Err(Error::denied("not_enrolled", "enroll in this course to record progress"));
    }
    let limit = lecture.duration_seconds.map_or(86_400.0, |d| d + 5.0);
    let p = report.position_seconds;
    if !p.is_finite() || p < 0.0 || p > limit {
        return Err(Error::invalid(
            "invalid_position",
            format!("position_seconds must be between 0 and the lecture's length ({limit:.0} s)"),
        ));
    }
    let saved = progress::record(
        &st.db,
        caller.user_id,
        lecture.id,
        course.id,
        p,
        report.completed,
        lecture.duration_seconds,
    )
    .await?;
    Ok(axum::Json(saved))
}

/// The caller's progress through a course: per lecture, and the course percentage.
#[utoipa::path(get, path = "/api/v1/courses/{course_id}/progress", tag = "learning", params(("course_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = CourseProgress), (status = 403, body = ErrorBody)))]
pub async fn get_progress(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(course_id): Path<CourseId>,
) -> ApiResult<axum::Json<CourseProgress>> {
    let course = crate::catalog::visible_course(&st.db, Some(&caller), course_id).await?;
    let enrolled = crate::learning::is_enrolled(&st.db, caller.user_id, course_id).await?;
    if !enrolled && !crate::catalog::can_edit(&caller, &course) {
        return Err(Error::denied("not_enrolled", "you are not enrolled in this course"));
    }
    Ok(axum::Json(progress::course_progress(&st.db, caller.user_id, course_id).await?))
}

/// A course the caller is enrolled in, with their progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyCourse {
    pub course: CourseSummary,
    /// RFC 3339.
    pub enrolled_at: String,
    pub percent: f64,
    pub completed_lectures: i64,
    pub total_lectures: i64,
    /// The lecture to resume.
    pub last_lecture_id: Option<LectureId>,
}

/// The caller's enrolled courses, most recently enrolled first, with progress.
#[utoipa::path(get, path = "/api/v1/me/courses", tag = "learning", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = Paged<MyCourse>)))]
pub async fn my_courses(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Query(page): Query<PageParams>,
) -> ApiResult<axum::Json<Paged<MyCourse>>> {
    let (page, per_page) = page.resolve()?;
    let (rows, total) =
        super::enrolled_courses(&st.db, caller.user_id, per_page, (page - 1) * per_page).await?;
    let mut items = Vec::with_capacity(rows.len());
    for (course, enrolled_at) in rows {
        let p = progress::course_progress(&st.db, caller.user_id, course.id).await?;
        items.push(MyCourse {
            course: course.into(),
            enrolled_at: crate::db::rfc3339(enrolled_at),
            percent: p.percent,
            completed_lectures: p.completed_lectures,
            total_lectures: p.total_lectures,
            last_lecture_id: p.last_lecture_id,
        });
    }
    Ok(axum::Json(Paged { items, total, page, per_page }))
}
