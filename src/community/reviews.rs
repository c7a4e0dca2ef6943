//! Course reviews: a rating from 1 to 5 and optional text (up to 5,000 characters), at most one
//! per student and course, written and changed only by students enrolled in the course (a
//! refund ends the right to change it; the enrollment is checked in the writing statement). They feed the
//! course page's `rating_avg` and `rating_count` and the `rating` sort of the catalog.

use crate::types::text::TextRule;
use crate::types::{CourseId, ReviewId};
use serde::Serialize;
use utoipa::ToSchema;

use super::db::{self, ReviewRow};
use super::{open_course, Author};
use crate::accounts::Caller;
use crate::catalog::text;
use crate::db::{is_unique_violation, now, rfc3339, Db};
use crate::error::{Error, Result};

/// A review as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Review {
    pub id: ReviewId,
    pub course_id: CourseId,
    /// 1 to 5.
    pub rating: i64,
    pub content: String,
    pub user: Author,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ReviewRow> for Review {
    fn from(r: ReviewRow) -> Self {
        Review {
            id: r.id,
            course_id: r.course_id,
            rating: r.rating,
            content: r.content,
            user: Author { id: r.user_id, name: r.user_name },
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

fn rating(r: i64) -> Result<i64> {
    if (1..=5).contains(&r) {
        Ok(r)
    } else {
        Err(Error::invalid("invalid_rating", "rating is a whole number from 1 to 5"))
    }
}

fn content(c: &str) -> Result<String> {
    text("content", c, TextRule::REVIEW)
}

/// One page of a course's reviews, newest first, and their total.
pub async fn list(
    db: &Db,
    caller: Option<&Caller>,
    course_id: CourseId,
    page: i64,
    per_page: i64,
) -> Result<(Vec<Review>, i64)> {
    crate::catalog::visible_course(db, caller, course_id).await?;
    let (rows, total) =
        db::reviews_of_course(db, course_id, per_page, (page - 1) * per_page).await?;
    Ok((rows.into_iter().map(Review::from).collect(), total))
}

/// Review a course the caller is enrolled in: 403 when not enrolled (or it is their own
/// course), 409 when they have reviewed it already.
pub async fn create(
    db: &Db,
    caller: &Caller,
    course_id: CourseId,
    stars: i64,
    text: Option<&str>,
) -> Result<Review> {
    let course = open_course(db, caller, course_id).await?;
    if course.instructor_id == caller.user_id {
        return Err(Error::denied("own_course", "instructors do not review their own courses"));
    }
    if !crate::learning::is_enrolled(db, caller.user_id, course_id).await? {
        return Err(not_enrolled());
    }
    let stars = rating(stars)?;
    let text = content(text.unwrap_or(""))?;
    match db::insert_review(db, course_id, caller.user_id, stars, &text, now()).await {
        Ok(Some(id)) => find(db, id).await,
        Ok(None) => Err(not_enrolled()),
        Err(e) if is_unique_violation(&e) => Err(Error::conflict(
            "review_exists",
            "you have reviewed this course already; change that review instead",
        )),
        Err(e) => Err(e.into()),
    }
}

fn not_enrolled() -> Error {
    Error::denied("not_enrolled", "only students enrolled in the course may review it")
}

async fn find(db: &Db, id: ReviewId) -> Result<Review> {
    Ok(db::review(db, id).await?.ok_or(Error::not_found("review"))?.into())
}

/// The review `id` if `caller` wrote it (or, with `admin_too`, is an admin); 404 otherwise.
async fn own_review(db: &Db, caller: &Caller, id: ReviewId, admin_too: bool) -> Result<ReviewRow> {
    db::review(db, id)
        .await?
        .filter(|r| r.user_id == caller.user_id || (admin_too && caller.is_admin()))
        .ok_or(Error::not_found("review"))
}

/// Change the caller's own review; absent fields stay as they are. Only while the caller is
/// enrolled: once their enrollment is refunded the review stays as it was (403
/// `not_enrolled`; deleting it is still allowed).
pub async fn update(
    db: &Db,
    caller: &Caller,
    id: ReviewId,
    stars: Option<i64>,
    text: Option<&str>,
) -> Result<Review> {
    own_review(db, caller, id, false).await?;
    let stars = stars.map(rating).transpose()?;
    let text = text.map(content).transpose()?;
    if !db::update_review(db, id, stars, text.as_deref(), now()).await? {
        // Deleted meanwhile is a 404; otherwise the enrollment is what is missing.
        own_review(db, caller, id, false).await?;
        return Err(Error::denied(
            "not_enrolled",
            "your enrollment in this course has ended (refunded); the review can no longer be changed",
        ));
    }
    find(db, id).await
}

/// Delete a review: its author or an admin.
pub async fn delete(db: &Db, caller: &Caller, id: ReviewId) -> Result<()> {
    own_review(db, caller, id, true).await?;
    db::delete_review(db, id).await?;
    Ok(())
}
