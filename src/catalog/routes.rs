//! HTTP handlers for courses, sections and lectures.

use crate::types::{CategoryId, CourseId, LectureId, SectionId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::Router;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::categories::{Category, CategoryInput, CategoryPatch};
use super::{
    CourseDetail, CourseInput, CoursePatch, CourseSummary, Lecture, LectureInput, LecturePatch,
    Section,
};
use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::error::ErrorBody;
use crate::http::extract::{Auth, Json, PageParams, Paged, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/courses", get(list_courses).post(create_course))
        .route(
            "/api/v1/courses/{course_id}",
            get(get_course).patch(update_course).delete(delete_course),
        )
        .route("/api/v1/courses/{course_id}/publish", post(publish_course))
        .route("/api/v1/courses/{course_id}/sections", post(create_section))
        .route("/api/v1/sections/{section_id}", patch(update_section).delete(delete_section))
        .route("/api/v1/sections/{section_id}/lectures", post(create_lecture))
        .route("/api/v1/lectures/{lecture_id}", patch(update_lecture).delete(delete_lecture))
        .route("/api/v1/categories", get(list_categories).post(create_category))
        .route("/api/v1/categories/{category_id}", patch(update_category).delete(delete_category))
}

/// The category endpoints' part of the OpenAPI document (the course endpoints are listed in
/// [`crate::http::openapi`]).
#[derive(OpenApi)]
#[openapi(paths(list_categories, create_category, update_category, delete_category))]
pub struct CategoriesApi;

/// Filters of the course list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Search text, Korean or English: every word must appear in the title or description, as
    /// a whole word or part of one (`rust` finds "Rustacean", `동영상` finds "동영상을").
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Category id; a top-level category includes its children.
    pub category: Option<CategoryId>,
    /// `newest`, `popular`, `rating`, `price_asc`, `price_desc`, `relevance`. Default:
    /// `relevance` with `q` (title matches first), `newest` without.
    #[param(value_type = Option<String>, pattern = "^(newest|popular|rating|price_asc|price_desc|relevance)$")]
    pub sort: Option<String>,
    /// From 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<i64>,
    /// 1 to 100; default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// Published courses.
#[utoipa::path(get, path = "/api/v1/courses", tag = "catalog", params(ListParams),
    responses((status = 200, body = Paged<CourseSummary>), (status = 400, body = ErrorBody)))]
pub async fn list_courses(
    State(st): State<AppState>,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<Paged<CourseSummary>>> {
    let (page, per_page) = PageParams { page: q.page, per_page: q.per_page }.resolve()?;
    let (items, total) =
        super::list_courses(&st.db, page, per_page, q.sort.as_deref(), q.category, q.q.as_deref())
            .await?;
    Ok(axum::Json(Paged { items, total, page, per_page }))
}

/// A new course.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCourse {
    #[schema(schema_with = crate::types::text::title)]
    pub title: String,
    #[schema(schema_with = crate::types::text::description_or_null)]
    pub description: Option<String>,
    /// Minor units (KRW: won).
    #[schema(minimum = 0, maximum = 1e12)]
    pub price: i64,
    /// ISO 4217; default KRW.
    #[schema(schema_with = crate::types::money::currency_or_null)]
    pub currency: Option<String>,
    pub category_id: Option<CategoryId>,
    /// `all` (default), `beginner`, `intermediate`, `advanced`.
    #[schema(value_type = Option<crate::catalog::Level>)]
    pub level: Option<String>,
    /// BCP 47 tag of the language it is taught in (`ko`, `en`, `pt-BR`; default `ko`): captions
    /// in it are the default track, and detected chapters are named in it.
    #[schema(min_length = 2, max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
    pub language: Option<String>,
}

/// Create a draft course (instructors and admins).
#[utoipa::path(post, path = "/api/v1/courses", tag = "catalog", request_body = CreateCourse, security(("bearer" = [])),
    responses((status = 201, body = CourseDetail), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_course(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<CreateCourse>,
) -> ApiResult<(StatusCode, axum::Json<CourseDetail>)> {
    let input = CourseInput {
        title: req.title,
        description: req.description,
        price: req.price,
        currency: req.currency,
        category_id: req.category_id,
        level: req.level,
        language: req.language,
    };
    Ok((StatusCode::CREATED, axum::Json(super::create_course(&st.db, &caller, input).await?)))
}

/// A course page with its curriculum. Drafts: owner and admins only (404 for others).
#[utoipa::path(get, path = "/api/v1/courses/{course_id}", tag = "catalog", params(("course_id" = i64, Path)),
    responses((status = 200, body = CourseDetail), (status = 404, body = ErrorBody)))]
pub async fn get_course(
    State(st): State<AppState>,
    caller: Option<Auth>,
    Path(id): Path<CourseId>,
) -> ApiResult<axum::Json<CourseDetail>> {
    Ok(axum::Json(super::course_detail(&st.db, caller.as_ref().map(|a| &a.0), id).await?))
}

/// Changes to a course; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateCourse {
    #[schema(schema_with = crate::types::text::title_or_null)]
    pub title: Option<String>,
    #[schema(schema_with = crate::types::text::description_or_null)]
    pub description: Option<String>,
    #[schema(minimum = 0, maximum = 1e12)]
    pub price: Option<i64>,
    #[schema(schema_with = crate::types::money::currency_or_null)]
    pub currency: Option<String>,
    #[schema(value_type = Option<crate::catalog::Level>)]
    pub level: Option<String>,
    /// A category id, or null to clear it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub category_id: Option<Option<CategoryId>>,
    /// BCP 47 tag of the language it is taught in (`ko`, `en`, `pt-BR`; default `ko`): captions
    /// in it are the default track, and detected chapters are named in it.
    #[schema(min_length = 2, max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
    pub language: Option<String>,
    /// Mark every viewer's stream with a forensic watermark `lectern watermark identify` reads
    /// back from a leaked copy; applies to videos transcoded after it is set.
    pub forensic_watermark: Option<bool>,
}

/// Distinguish an absent field (`None`) from an explicit null (`Some(None)`).
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/api/v1/courses/{course_id}", tag = "catalog", request_body = UpdateCourse,
    params(("course_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = CourseDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_course(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<CourseId>,
    Json(req): Json<UpdateCourse>,
) -> ApiResult<axum::Json<CourseDetail>> {
    let patch = CoursePatch {
        title: req.title,
        description: req.description,
        price: req.price,
        currency: req.currency,
        level: req.level,
        category_id: req.category_id,
        language: req.language,
        forensic_watermark: req.forensic_watermark,
    };
    Ok(axum::Json(super::update_course(&st.db, &caller, id, patch).await?))
}

/// Delete a course and its stored videos (not possible once students are enrolled: 409).
#[utoipa::path(delete, path = "/api/v1/courses/{course_id}", tag = "catalog", params(("course_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn delete_course(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<CourseId>,
) -> ApiResult<StatusCode> {
    let videos = super::delete_course(&st.db, &caller, id).await?;
    crate::media::forget_video_objects(&st.db, &st.storage, videos);
    Ok(StatusCode::NO_CONTENT)
}

/// Publish a course (it needs at least one lecture).
#[utoipa::path(post, path = "/api/v1/courses/{course_id}/publish", tag = "catalog", params(("course_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = CourseDetail), (status = 409, body = ErrorBody)))]
pub async fn publish_course(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<CourseId>,
) -> ApiResult<axum::Json<CourseDetail>> {
    Ok(axum::Json(super::publish_course(&st.db, &caller, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSection {
    #[schema(schema_with = crate::types::text::title)]
    pub title: String,
    /// 1-based; default: last.
    #[schema(minimum = 1)]
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/courses/{course_id}/sections", tag = "catalog", request_body = CreateSection,
    params(("course_id" = i64, Path)), security(("bearer" = [])), responses((status = 201, body = Section)))]
pub async fn create_section(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(course_id): Path<CourseId>,
    Json(req): Json<CreateSection>,
) -> ApiResult<(StatusCode, axum::Json<Section>)> {
    let s = super::create_section(&st.db, &caller, course_id, &req.title, req.position).await?;
    Ok((StatusCode::CREATED, axum::Json(s)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateSection {
    #[schema(schema_with = crate::types::text::title_or_null)]
    pub title: Option<String>,
    /// Move to this 1-based position.
    #[schema(minimum = 1)]
    pub position: Option<i64>,
}

#[utoipa::path(patch, path = "/api/v1/sections/{section_id}", tag = "catalog", request_body = UpdateSection,
    params(("section_id" = i64, Path)), security(("bearer" = [])), responses((status = 200, body = Section)))]
pub async fn update_section(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<SectionId>,
    Json(req): Json<UpdateSection>,
) -> ApiResult<axum::Json<Section>> {
    Ok(axum::Json(
        super::update_section(&st.db, &caller, id, req.title.as_deref(), req.position).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/sections/{section_id}", tag = "catalog", params(("section_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204)))]
pub async fn delete_section(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<SectionId>,
) -> ApiResult<StatusCode> {
    let videos = super::delete_section(&st.db, &caller, id).await?;
    crate::media::forget_video_objects(&st.db, &st.storage, videos);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateLecture {
    #[schema(schema_with = crate::types::text::title)]
    pub title: String,
    #[schema(schema_with = crate::types::text::description_or_null)]
    pub description: Option<String>,
    /// Free preview: playable by anyone once the course is published.
    #[serde(default)]
    pub is_preview: bool,
    #[schema(minimum = 1)]
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/sections/{section_id}/lectures", tag = "catalog", request_body = CreateLecture,
    params(("section_id" = i64, Path)), security(("bearer" = [])), responses((status = 201, body = Lecture)))]
pub async fn create_lecture(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(section_id): Path<SectionId>,
    Json(req): Json<CreateLecture>,
) -> ApiResult<(StatusCode, axum::Json<Lecture>)> {
    let input = LectureInput {
        title: req.title,
        description: req.description,
        is_preview: req.is_preview,
        position: req.position,
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(super::create_lecture(&st.db, &caller, section_id, input).await?),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateLecture {
    #[schema(schema_with = crate::types::text::title_or_null)]
    pub title: Option<String>,
    #[schema(schema_with = crate::types::text::description_or_null)]
    pub description: Option<String>,
    pub is_preview: Option<bool>,
    #[schema(minimum = 1)]
    pub position: Option<i64>,
    /// Move to another section of the same course.
    pub section_id: Option<SectionId>,
}

#[utoipa::path(patch, path = "/api/v1/lectures/{lecture_id}", tag = "catalog", request_body = UpdateLecture,
    params(("lecture_id" = i64, Path)), security(("bearer" = [])), responses((status = 200, body = Lecture)))]
pub async fn update_lecture(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<LectureId>,
    Json(req): Json<UpdateLecture>,
) -> ApiResult<axum::Json<Lecture>> {
    let patch = LecturePatch {
        title: req.title,
        description: req.description,
        is_preview: req.is_preview,
        position: req.position,
        section_id: req.section_id,
    };
    Ok(axum::Json(super::update_lecture(&st.db, &caller, id, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/lectures/{lecture_id}", tag = "catalog", params(("lecture_id" = i64, Path)),
    security(("bearer" = [])), responses((status = 204)))]
pub async fn delete_lecture(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<LectureId>,
) -> ApiResult<StatusCode> {
    let videos = super::delete_lecture(&st.db, &caller, id).await?;
    crate::media::forget_video_objects(&st.db, &st.storage, videos);
    Ok(StatusCode::NO_CONTENT)
}

/// The category tree: top-level categories, each with its `children`.
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog", responses((status = 200, body = Vec<Category>)))]
pub async fn list_categories(State(st): State<AppState>) -> ApiResult<axum::Json<Vec<Category>>> {
    Ok(axum::Json(super::categories::tree(&st.db).await?))
}

/// A new category.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCategory {
    /// Korean name.
    #[schema(schema_with = crate::types::text::name)]
    pub name: String,
    /// English name.
    #[schema(schema_with = crate::types::text::optional_name_or_null)]
    pub name_en: Option<String>,
    /// Unique; lowercase ASCII letters, digits and hyphens.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: String,
    /// A top-level category to put this one under.
    pub parent_id: Option<CategoryId>,
    /// Sort key among siblings; default: last.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub position: Option<i64>,
}

/// Create a category (admins).
#[utoipa::path(post, path = "/api/v1/categories", tag = "catalog", request_body = CreateCategory, security(("bearer" = [])),
    responses((status = 201, body = Category), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_category(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<CreateCategory>,
) -> ApiResult<(StatusCode, axum::Json<Category>)> {
    let input = CategoryInput {
        name: req.name,
        name_en: req.name_en,
        slug: req.slug,
        parent_id: req.parent_id,
        position: req.position,
    };
    Ok((StatusCode::CREATED, axum::Json(super::categories::create(&st.db, &caller, input).await?)))
}

/// Changes to a category; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateCategory {
    #[schema(schema_with = crate::types::text::name_or_null)]
    pub name: Option<String>,
    #[schema(schema_with = crate::types::text::optional_name_or_null)]
    pub name_en: Option<String>,
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    /// A top-level category, or null to make this one top-level.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub parent_id: Option<Option<CategoryId>>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub position: Option<i64>,
}

/// Change a category (admins).
#[utoipa::path(patch, path = "/api/v1/categories/{category_id}", tag = "catalog", request_body = UpdateCategory,
    params(("category_id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Category), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_category(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<CategoryId>,
    Json(req): Json<UpdateCategory>,
) -> ApiResult<axum::Json<Category>> {
    let patch = CategoryPatch {
        name: req.name,
        name_en: req.name_en,
        slug: req.slug,
        parent_id: req.parent_id,
        position: req.position,
    };
    Ok(axum::Json(super::categories::update(&st.db, &caller, id, patch).await?))
}

/// Delete a category that has no children (admins); its courses become uncategorised.
#[utoipa::path(delete, path = "/api/v1/categories/{category_id}", tag = "catalog", params(("category_id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_category(
    State(st): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<CategoryId>,
) -> ApiResult<StatusCode> {
    super::categories::delete(&st.db, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
