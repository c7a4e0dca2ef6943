//! HTTP handlers for a lecture's chapters.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use super::{ChapterEdit, ChapterList};
use crate::app::AppState;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::{Auth, Json, Path};
use crate::types::LectureId;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/lectures/{lecture_id}/chapters",
        get(list_chapters).put(put_chapters).delete(reset_chapters),
    )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(list_chapters, put_chapters, reset_chapters))]
pub struct ChaptersApi;

/// The chapters of a lecture (anyone who may watch it): found where the video's picture
/// changes at once ("Slide N", or "장 N" in a Korean course), or as its owner set them.
#[utoipa::path(get, path = "/api/v1/lectures/{lecture_id}/chapters", tag = "videos",
    params(("lecture_id" = i64, Path)), security((), ("bearer" = [])),
    responses((status = 200, body = ChapterList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn list_chapters(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(lecture_id): Path<LectureId>,
) -> ApiResult<axum::Json<ChapterList>> {
    Ok(axum::Json(super::list(&st.db, caller.as_ref().map(|a| &a.0), lecture_id).await?))
}

/// Set a lecture's chapters (its owner): the first at 0, starts increasing and within the
/// video's duration, each with a title. They replace the detected ones until reset.
#[utoipa::path(put, path = "/api/v1/lectures/{lecture_id}/chapters", tag = "videos",
    params(("lecture_id" = i64, Path)), request_body = ChapterEdit, security(("bearer" = [])),
    responses((status = 200, body = ChapterList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the lecture's video is not ready"),
              (status = 422, body = ErrorBody, description = "not starting at 0, not increasing, past the end, or a missing title")))]
pub async fn put_chapters(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(lecture_id): Path<LectureId>,
    Json(edit): Json<ChapterEdit>,
) -> ApiResult<axum::Json<ChapterList>> {
    Ok(axum::Json(super::put(&st.db, &caller, lecture_id, &edit.items).await?))
}

/// Drop the owner's chapters of a lecture: the detected ones apply again.
#[utoipa::path(delete, path = "/api/v1/lectures/{lecture_id}/chapters", tag = "videos",
    params(("lecture_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = ChapterList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_chapters(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(lecture_id): Path<LectureId>,
) -> ApiResult<axum::Json<ChapterList>> {
    Ok(axum::Json(super::reset(&st.db, &caller, lecture_id).await?))
}
