//! Courses, their ordered sections and lectures, and the public catalog: its two-level
//! [`categories`] and course [`search`].
//!
//! Visibility: a draft course (and everything in it) exists only for its instructor and for
//! admins; anyone else gets 404, as if it were not there. Changes are for the owner or an admin
//! (403 for others who can see the course).

pub mod categories;
mod curriculum;
pub mod db;
pub mod routes;
pub mod search;

use crate::types::text::TextRule;
use serde::Serialize;
use utoipa::ToSchema;

use self::db::{
    CourseChanges, CourseFilter, CourseRow, CourseSort, LectureRow, NewCourse, NewLecture, Ordered,
    SectionRow,
};
use self::search::SearchQuery;
use crate::accounts::{Caller, Role};
use crate::db::{now, rfc3339, Db};
use crate::error::{Error, Result};
use crate::media::VideoStatus;
use crate::types::{CategoryId, CourseId, Currency, LectureId, Money, SectionId, UserId, VideoId};

pub use curriculum::*;

/// The instructor of a course, as shown on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstructorRef {
    pub id: UserId,
    pub name: String,
}

/// A lecture in a course's curriculum.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lecture {
    pub id: LectureId,
    pub section_id: SectionId,
    pub course_id: CourseId,
    pub title: String,
    pub description: String,
    pub position: i64,
    pub is_preview: bool,
    /// Measured duration of the video being played; null until one is ready.
    pub duration_seconds: Option<f64>,
    /// Status of the newest uploaded video (`uploading`, `queued`, `processing`, `ready`, `failed`), or null.
    pub video_status: Option<VideoStatus>,
    /// The newest video's id; shown to the course owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_id: Option<VideoId>,
    /// How many chapters it has (see `GET /api/v1/lectures/{id}/chapters`); 0 without a video.
    pub chapter_count: i64,
}

impl Lecture {
    fn from_row(r: LectureRow, privileged: bool) -> Lecture {
        Lecture {
            id: r.id,
            section_id: r.section_id,
            course_id: r.course_id,
            title: r.title,
            description: r.description,
            position: r.position,
            is_preview: r.is_preview != 0,
            duration_seconds: r.duration_seconds,
            video_status: r.newest_video_status,
            video_id: if privileged { r.newest_video_id } else { None },
            chapter_count: r.chapter_count,
        }
    }
}

/// A section with its lectures.
#[derive(Debug, Serialize, ToSchema)]
pub struct Section {
    pub id: SectionId,
    pub course_id: CourseId,
    pub title: String,
    pub position: i64,
    pub lectures: Vec<Lecture>,
}

/// A course as a list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CourseSummary {
    pub id: CourseId,
    pub title: String,
    pub description: String,
    /// In minor units of `currency`.
    pub price: i64,
    pub currency: Currency,
    pub level: Level,
    pub status: CourseStatus,
    pub category_id: Option<CategoryId>,
    pub instructor: InstructorRef,
    pub duration_seconds: f64,
    pub created_at: String,
    pub published_at: Option<String>,
    /// BCP 47 tag of the language it is taught in (default `ko`).
    pub language: String,
    /// Its videos carry a per-viewer forensic watermark (those transcoded since it was set).
    pub forensic_watermark: bool,
}

impl From<CourseRow> for CourseSummary {
    fn from(c: CourseRow) -> Self {
        CourseSummary {
            id: c.id,
            title: c.title,
            description: c.description,
            price: c.price,
            currency: c.currency,
            level: c.level,
            status: c.status,
            category_id: c.category_id,
            instructor: InstructorRef { id: c.instructor_id, name: c.instructor_name },
            duration_seconds: c.duration_seconds,
            created_at: rfc3339(c.created_at),
            published_at: c.published_at.map(rfc3339),
            language: c.language,
            forensic_watermark: c.forensic_watermark != 0,
        }
    }
}

/// A course page: the summary plus curriculum and figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct CourseDetail {
    #[serde(flatten)]
    pub course: CourseSummary,
    pub sections: Vec<Section>,
    pub rating_avg: Option<f64>,
    pub rating_count: i64,
    pub enrollment_count: i64,
    /// Whether the caller is enrolled (false when anonymous).
    pub is_enrolled: bool,
}

/// May `caller` change `course`?
pub fn can_edit(caller: &Caller, course: &CourseRow) -> bool {
    caller.role == Role::Admin || caller.user_id == course.instructor_id
}

/// The course if `caller` may see it: published, or theirs, or they are an admin. 404 otherwise.
pub async fn visible_course(db: &Db, caller: Option<&Caller>, id: CourseId) -> Result<CourseRow> {
    let course = db::course(db, id).await?.ok_or(Error::not_found("course"))?;
    if course.status == CourseStatus::Published || caller.is_some_and(|c| can_edit(c, &course)) {
        Ok(course)
    } else {
        Err(Error::not_found("course"))
    }
}

/// The course if `caller` may change it: 404 when they cannot see it, 403 when they can but
/// it is not theirs.
pub async fn editable_course(db: &Db, caller: &Caller, id: CourseId) -> Result<CourseRow> {
    let course = visible_course(db, Some(caller), id).await?;
    if !can_edit(caller, &course) {
        return Err(Error::denied(
            "not_course_owner",
            "only the course's instructor or an admin may change it",
        ));
    }
    Ok(course)
}

/// The lecture and its course, if `caller` may see them; 404 `lecture` otherwise. Only "not
/// found" is renamed: a failing query stays what it is (an outage is a 503, not a 404).
pub async fn visible_lecture(
    db: &Db,
    caller: Option<&Caller>,
    lecture_id: LectureId,
) -> Result<(LectureRow, CourseRow)> {
    let lecture = db::lecture(db.pool(), lecture_id).await?.ok_or(Error::not_found("lecture"))?;
    let course = visible_course(db, caller, lecture.course_id).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::not_found("lecture"),
        other => other,
    })?;
    Ok((lecture, course))
}

/// The lecture and its course, if `caller` may change them.
pub async fn editable_lecture(
    db: &Db,
    caller: &Caller,
    lecture_id: LectureId,
) -> Result<(LectureRow, CourseRow)> {
    let lecture = db::lecture(db.pool(), lecture_id).await?.ok_or(Error::not_found("lecture"))?;
    let course = editable_course(db, caller, lecture.course_id).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::not_found("lecture"),
        other => other,
    })?;
    Ok((lecture, course))
}

/// Check a text field by its `rule` (see [`TextRule`]); the stored, trimmed text.
pub fn text(field: &'static str, value: &str, rule: TextRule) -> Result<String> {
    rule.check(field, value).map_err(|why| Error::invalid("invalid_field", why))
}

fn language(tag: &str) -> Result<String> {
    crate::types::lang::canonical(tag).map_err(|e| Error::invalid("invalid_language", e))
}

fn currency(c: &str) -> Result<Currency> {
    Currency::lenient(c).map_err(|e| Error::invalid("invalid_currency", e.to_string()))
}

fn price(p: i64) -> Result<i64> {
    if (0..=1_000_000_000_000).contains(&p) {
        Ok(p)
    } else {
        Err(Error::invalid("invalid_price", "price must be a non-negative integer in minor units"))
    }
}

crate::vocabulary! {
    /// Whether a course is on sale and visible to everyone.
    pub enum CourseStatus: "course status" {
        Draft = "draft",
        Published = "published",
    }
}

crate::vocabulary! {
    /// Who a course is for.
    pub enum Level: "level" {
        All = "all",
        Beginner = "beginner",
        Intermediate = "intermediate",
        Advanced = "advanced",
    }
}

fn level(l: &str) -> Result<Level> {
    l.parse().map_err(|e: crate::types::UnknownWord| Error::invalid("invalid_level", e.to_string()))
}

async fn category(db: &Db, id: Option<CategoryId>) -> Result<Option<CategoryId>> {
    match id {
        Some(id) if !db::category_exists(db, id).await? => {
            Err(Error::invalid("unknown_category", format!("there is no category {id}")))
        }
        other => Ok(other),
    }
}

/// A new course from an instructor (or admin); it starts as a draft.
pub struct CourseInput {
    pub title: String,
    pub description: Option<String>,
    pub price: i64,
    pub currency: Option<String>,
    pub category_id: Option<CategoryId>,
    pub level: Option<String>,
    pub language: Option<String>,
}

pub async fn create_course(db: &Db, caller: &Caller, input: CourseInput) -> Result<CourseDetail> {
    if caller.role == Role::Student {
        return Err(Error::denied(
            "instructors_only",
            "only instructors create courses; become one with POST /api/v1/me/instructor",
        ));
    }
    let title = text("title", &input.title, TextRule::TITLE)?;
    let description =
        text("description", input.description.as_deref().unwrap_or(""), TextRule::DESCRIPTION)?;
    let currency = input.currency.as_deref().map(currency).transpose()?.unwrap_or(Currency::KRW);
    let level = input.level.as_deref().map(level).transpose()?.unwrap_or(Level::All);
    let category_id = category(db, input.category_id).await?;
    let language = input.language.as_deref().map(language).transpose()?;
    let new = NewCourse {
        instructor_id: caller.user_id,
        category_id,
        title: &title,
        description: &description,
        price: Money::new(price(input.price)?, currency),
        level,
        language: language.as_deref().unwrap_or("ko"),
    };
    let id = db::insert_course(db, &new, now()).await?;
    course_detail(db, Some(caller), id).await
}

/// The course page as `caller` may see it.
pub async fn course_detail(db: &Db, caller: Option<&Caller>, id: CourseId) -> Result<CourseDetail> {
    // Three reads at once: the curriculum of a course the caller may not see is dropped.
    let (course, lectures, sections) = tokio::try_join!(
        visible_course(db, caller, id),
        async { Ok(db::lectures_of_course(db, id).await?) },
        async { Ok::<_, Error>(db::sections_of(db, id).await?) },
    )?;
    let privileged = caller.is_some_and(|c| can_edit(c, &course));
    let sections = sections
        .into_iter()
        .map(|s: SectionRow| {
            let mine: Vec<Lecture> = lectures
                .iter()
                .filter(|l| l.section_id == s.id)
                .cloned()
                .map(|l| Lecture::from_row(l, privileged))
                .collect();
            Section {
                id: s.id,
                course_id: s.course_id,
                title: s.title,
                position: s.position,
                lectures: mine,
            }
        })
        .collect();
    let (rating_count, enrollment_count) = (course.rating_count, course.enrollment_count);
    let rating_avg = (rating_count > 0).then(|| (course.rating_avg * 100.0).round() / 100.0);
    let is_enrolled = match caller {
        Some(c) => crate::learning::is_enrolled(db, c.user_id, id).await?,
        None => false,
    };
    Ok(CourseDetail {
        course: course.into(),
        sections,
        rating_avg,
        rating_count,
        enrollment_count,
        is_enrolled,
    })
}

/// Changes to a course from its owner.
#[derive(Default)]
pub struct CoursePatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub currency: Option<String>,
    pub level: Option<String>,
    pub category_id: Option<Option<CategoryId>>,
    pub language: Option<String>,
    pub forensic_watermark: Option<bool>,
}

pub async fn update_course(
    db: &Db,
    caller: &Caller,
    id: CourseId,
    p: CoursePatch,
) -> Result<CourseDetail> {
    editable_course(db, caller, id).await?;
    let changes = CourseChanges {
        title: p.title.as_deref().map(|t| text("title", t, TextRule::TITLE)).transpose()?,
        description: p
            .description
            .as_deref()
            .map(|d| text("description", d, TextRule::DESCRIPTION))
            .transpose()?,
        price: p.price.map(price).transpose()?,
        currency: p.currency.as_deref().map(currency).transpose()?,
        level: p.level.as_deref().map(level).transpose()?,
        category_id: match p.category_id {
            Some(c) => Some(category(db, c).await?),
            None => None,
        },
        language: p.language.as_deref().map(language).transpose()?,
        forensic_watermark: p.forensic_watermark,
    };
    db::update_course(db, id, &changes, now()).await?;
    course_detail(db, Some(caller), id).await
}

/// Publish: needs at least one lecture. Checked in the statement that publishes, under the
/// course's lock, so a lecture deleted meanwhile cannot leave an empty course published.
pub async fn publish_course(db: &Db, caller: &Caller, id: CourseId) -> Result<CourseDetail> {
    editable_course(db, caller, id).await?;
    let mut tx = db.begin().await?;
    if !db::lock_course(&mut tx, id).await? {
        return Err(Error::not_found("course"));
    }
    if !db::publish_if_not_empty(&mut tx, id, now()).await? {
        return Err(Error::conflict(
            "course_empty",
            "a course needs at least one lecture before it is published",
        ));
    }
    tx.commit().await?;
    course_detail(db, Some(caller), id).await
}

/// Delete a course. One that students are enrolled in cannot be deleted (409): counted under
/// the course's lock, just before the delete. Returns the ids of its videos, whose stored
/// objects the caller removes.
pub async fn delete_course(db: &Db, caller: &Caller, id: CourseId) -> Result<Vec<VideoId>> {
    editable_course(db, caller, id).await?;
    let videos = crate::media::db::video_ids_of_course(db, id).await?;
    let mut tx = db.begin().await?;
    if !db::lock_course(&mut tx, id).await? {
        return Err(Error::not_found("course"));
    }
    if crate::learning::db::active_enrollments(&mut tx, id).await? > 0 {
        return Err(Error::conflict(
            "course_has_students",
            "students are enrolled in this course; it cannot be deleted",
        ));
    }
    db::delete_course(&mut tx, id).await?;
    tx.commit().await?;
    Ok(videos)
}

/// One page of published courses, filtered by category and search text (`q`), ordered by
/// `sort` (default: relevance when searching, newest otherwise).
pub async fn list_courses(
    db: &Db,
    page: i64,
    per_page: i64,
    sort: Option<&str>,
    category: Option<CategoryId>,
    q: Option<&str>,
) -> Result<(Vec<CourseSummary>, i64)> {
    let search = q.map(SearchQuery::parse).transpose()?.flatten();
    let sort = match sort {
        Some(name) => CourseSort::parse(name).ok_or_else(|| {
            Error::malformed(
                "invalid_sort",
                format!("sort is one of {}", CourseSort::NAMES.join(", ")),
            )
        })?,
        None if search.is_some() => CourseSort::Relevance,
        None => CourseSort::Newest,
    };
    let filter = CourseFilter { category, search: search.as_ref(), sort };
    let (rows, total) = db::list_published(db, per_page, (page - 1) * per_page, &filter).await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}
