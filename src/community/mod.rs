//! Reviews and threaded comments on courses.
//!
//! - [`reviews`]  — one review (rating 1–5, optional text) per enrolled student and course.
//! - [`comments`] — questions and discussion: top-level comments, each with one level of replies.
//! - [`db`]       — their SQL.
//! - [`routes`]   — the HTTP handlers.
//!
//! Rules both share: anyone may read, signed in or not. Only published courses take reviews and
//! comments; a draft is 404 to everyone but its instructor and admins, who get 409
//! `course_not_published`. A review or comment may be changed or deleted by its author only (an
//! admin may also delete); for anyone else the route answers 404, as if it did not exist.

pub mod comments;
pub mod db;
pub mod reviews;
pub mod routes;

use crate::types::{CourseId, UserId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::Caller;
use crate::catalog::db::CourseRow;
use crate::db::Db;
use crate::error::{Error, Result};

/// Who wrote a review or comment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Author {
    pub id: UserId,
    pub name: String,
}

/// The course `course_id` if `caller` may write a review or comment on it: it must be published.
async fn open_course(db: &Db, caller: &Caller, course_id: CourseId) -> Result<CourseRow> {
    let course = crate::catalog::visible_course(db, Some(caller), course_id).await?;
    if course.status != crate::catalog::CourseStatus::Published {
        return Err(Error::conflict(
            "course_not_published",
            "reviews and comments open when the course is published",
        ));
    }
    Ok(course)
}
