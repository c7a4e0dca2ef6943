//! HTTP handlers for the reviews and comments.

use crate::types::{CommentId, CourseId, ReviewId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch};
use axum::Router;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::comments::{Comment, CommentThread, ThreadOrder, INLINE_REPLIES, MAX_INLINE_REPLIES};
use super::reviews::Review;
use crate::error::Error;
use crate::http::error::{ApiResult, ErrorBody};

use crate::app::AppState;
use crate::http::extract::{Auth, Json, PageParams, Paged, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/courses/{course_id}/reviews", get(list_reviews).post(create_review))
        .route("/api/v1/reviews/{review_id}", patch(update_review).delete(delete_review))
        .route("/api/v1/courses/{course_id}/comments", get(list_comments).post(create_comment))
        .route("/api/v1/comments/{comment_id}", delete(delete_comment))
        .route("/api/v1/comments/{comment_id}/replies", get(list_replies))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_reviews, create_review, update_review, delete_review, list_comments, list_replies, create_comment, delete_comment),
    tags((name = "community", description = "Course reviews and comment threads"))
)]
pub struct CommunityApi;

/// A course's reviews, newest first. Drafts: owner and admins only (404 for others).
#[utoipa::path(get, path = "/api/v1/courses/{course_id}/reviews", tag = "community",
    params(("course_id" = i64, Path), PageParams),
    responses((status = 200, body = Paged<Review>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_reviews(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(course_id): Path<CourseId>,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Paged<Review>>> {
    let (page, per_page) = p.resolve()?;
    let (items, total) =
        super::reviews::list(&st.db, caller.as_ref().map(|a| &a.0), course_id, page, per_page)
            .await?;
    Ok(axum::Json(Paged { items, total, page, per_page }))
}

/// A new review.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateReview {
    /// A whole number from 1 to 5.
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i64,
    /// Up to 5,000 characters; may be empty.
    #[schema(schema_with = crate::types::text::review_or_null)]
    pub content: Option<String>,
}

/// Review a published course the caller is enrolled in; one review per student and course.
/// Reviews, review edits and comments share a per-user quota (`LECTERN_POSTS_PER_USER_PER_MINUTE`).
#[utoipa::path(post, path = "/api/v1/courses/{course_id}/reviews", tag = "community", request_body = CreateReview,
    params(("course_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 201, body = Review), (status = 401, body = ErrorBody),
        (status = 403, description = "not enrolled (`not_enrolled`), or the caller's own course (`own_course`)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "reviewed already (`review_exists`), or a draft (`course_not_published`)", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, description = "posting too fast (`rate_limited`)", body = ErrorBody)))]
pub async fn create_review(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(course_id): Path<CourseId>,
    Json(req): Json<CreateReview>,
) -> ApiResult<(StatusCode, axum::Json<Review>)> {
    st.quotas.post(caller.user_id)?;
    let review =
        super::reviews::create(&st.db, &caller, course_id, req.rating, req.content.as_deref())
            .await?;
    Ok((StatusCode::CREATED, axum::Json(review)))
}

/// Changes to a review; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateReview {
    #[schema(minimum = 1, maximum = 5)]
    pub rating: Option<i64>,
    #[schema(schema_with = crate::types::text::review_or_null)]
    pub content: Option<String>,
}

/// Change the caller's own review (404 for anyone else's) while still enrolled in the course:
/// after a refund the review can be deleted but no longer changed (403 `not_enrolled`).
#[utoipa::path(patch, path = "/api/v1/reviews/{review_id}", tag = "community", request_body = UpdateReview,
    params(("review_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Review), (status = 401, body = ErrorBody),
        (status = 403, description = "the caller's enrollment has ended (`not_enrolled`)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "posting too fast (`rate_limited`)", body = ErrorBody)))]
pub async fn update_review(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<ReviewId>,
    Json(req): Json<UpdateReview>,
) -> ApiResult<axum::Json<Review>> {
    st.quotas.post(caller.user_id)?;
    Ok(axum::Json(
        super::reviews::update(&st.db, &caller, id, req.rating, req.content.as_deref()).await?,
    ))
}

/// Delete a review: its author or an admin (404 for anyone else).
#[utoipa::path(delete, path = "/api/v1/reviews/{review_id}", tag = "community", params(("review_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_review(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<ReviewId>,
) -> ApiResult<StatusCode> {
    super::reviews::delete(&st.db, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging and order of a course's comment threads.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CommentListParams {
    /// Order of the threads: `newest` (default) or `oldest`. Replies are always oldest first.
    #[param(pattern = "^(newest|oldest)$")]
    pub sort: Option<String>,
    /// From 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<i64>,
    /// 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
    /// Replies shown inside each thread, 0 to 100 (default 10); the rest are paged with
    /// `GET /api/v1/comments/{comment_id}/replies`.
    #[param(minimum = 0, maximum = 100)]
    pub replies_per_thread: Option<i64>,
}

/// A course's comment threads: a page of top-level comments, each with its first `replies`
/// (oldest first, at most `replies_per_thread`) and its `reply_count`; when `reply_count` is
/// larger, page the rest with `GET /api/v1/comments/{comment_id}/replies?page=`. Drafts:
/// owner and admins only (404 for others).
#[utoipa::path(get, path = "/api/v1/courses/{course_id}/comments", tag = "community",
    params(("course_id" = i64, Path), CommentListParams),
    responses((status = 200, body = Paged<CommentThread>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_comments(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(course_id): Path<CourseId>,
    Query(q): Query<CommentListParams>,
) -> ApiResult<axum::Json<Paged<CommentThread>>> {
    let (page, per_page) = PageParams { page: q.page, per_page: q.per_page }.resolve()?;
    let order = match q.sort.as_deref() {
        None | Some("newest") => ThreadOrder::NewestFirst,
        Some("oldest") => ThreadOrder::OldestFirst,
        Some(_) => return Err(Error::malformed("invalid_sort", "sort is newest or oldest")),
    };
    let inline = q.replies_per_thread.unwrap_or(INLINE_REPLIES);
    if !(0..=MAX_INLINE_REPLIES).contains(&inline) {
        return Err(Error::malformed(
            "invalid_replies_per_thread",
            "replies_per_thread is 0 to 100",
        ));
    }
    let caller = caller.as_ref().map(|a| &a.0);
    let (items, total) =
        super::comments::list(&st.db, caller, course_id, order, page, per_page, inline).await?;
    Ok(axum::Json(Paged { items, total, page, per_page }))
}

/// The replies to a comment, a page at a time, oldest first: the rest of a thread whose
/// `reply_count` is larger than the replies its list entry shows. 404 when the comment does
/// not exist or its course is a draft the caller may not see.
#[utoipa::path(get, path = "/api/v1/comments/{comment_id}/replies", tag = "community",
    params(("comment_id" = i64, Path), PageParams),
    responses((status = 200, body = Paged<Comment>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_replies(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(id): Path<CommentId>,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<Paged<Comment>>> {
    let (page, per_page) = p.resolve()?;
    let (items, total) =
        super::comments::replies(&st.db, caller.as_ref().map(|a| &a.0), id, page, per_page).await?;
    Ok(axum::Json(Paged { items, total, page, per_page }))
}

/// A new comment, or a reply.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateComment {
    /// 1 to 5,000 characters.
    #[schema(schema_with = crate::types::text::comment)]
    pub content: String,
    /// Reply to this comment of the same course. A reply to a reply joins the same thread: the
    /// answer's `parent_id` is then the thread's top-level comment.
    pub parent_id: Option<CommentId>,
}

/// Comment on a published course, or reply to a comment on it (any signed-in user), within
/// the per-user posting quota.
#[utoipa::path(post, path = "/api/v1/courses/{course_id}/comments", tag = "community", request_body = CreateComment,
    params(("course_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 201, body = Comment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "a draft (`course_not_published`)", body = ErrorBody),
        (status = 422, description = "bad content, or `invalid_parent`", body = ErrorBody),
        (status = 429, description = "posting too fast (`rate_limited`)", body = ErrorBody)))]
pub async fn create_comment(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(course_id): Path<CourseId>,
    Json(req): Json<CreateComment>,
) -> ApiResult<(StatusCode, axum::Json<Comment>)> {
    st.quotas.post(caller.user_id)?;
    let comment =
        super::comments::create(&st.db, &caller, course_id, &req.content, req.parent_id).await?;
    Ok((StatusCode::CREATED, axum::Json(comment)))
}

/// Delete a comment: its author or an admin (404 for anyone else). One with replies stays in
/// its thread as `deleted: true` without content or author.
#[utoipa::path(delete, path = "/api/v1/comments/{comment_id}", tag = "community", params(("comment_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_comment(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<CommentId>,
) -> ApiResult<StatusCode> {
    super::comments::delete(&st.db, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
