//! Enrollments and entitlement: who may watch what.
//!
//! [`may_watch`] is the one answer to "may this person watch this lecture?": yes when they are
//! enrolled in its course, when the lecture is a free preview of a published course (anyone,
//! signed in or not), when they own the course, or when they are an admin.

pub mod db;
pub mod progress;
pub mod routes;

use crate::accounts::{Caller, Role};
use crate::catalog::db::{CourseRow, LectureRow};
use crate::db::Db;

/// Why a caller may watch a lecture, or that they may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entitlement {
    Enrolled,
    Preview,
    Owner,
    Admin,
    /// Not signed in, and the lecture is not a preview.
    SignInRequired,
    /// Signed in, but not enrolled.
    NotEntitled,
}

impl Entitlement {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            Entitlement::Enrolled | Entitlement::Preview | Entitlement::Owner | Entitlement::Admin
        )
    }
}

/// May `caller` watch `lecture` of `course`?
pub async fn may_watch(
    db: &Db,
    caller: Option<&Caller>,
    course: &CourseRow,
    lecture: &LectureRow,
) -> Result<Entitlement, sqlx::Error> {
    if let Some(c) = caller {
        if c.role == Role::Admin {
            return Ok(Entitlement::Admin);
        }
        if c.user_id == course.instructor_id {
            return Ok(Entitlement::Owner);
        }
    }
    if lecture.is_preview != 0 && course.status == crate::catalog::CourseStatus::Published {
        return Ok(Entitlement::Preview);
    }
    match caller {
        None => Ok(Entitlement::SignInRequired),
        Some(c) if db::is_enrolled(db, c.user_id, course.id).await? => Ok(Entitlement::Enrolled),
        Some(_) => Ok(Entitlement::NotEntitled),
    }
}

/// [`may_watch`], with its refusals as the errors callers get: `wanted` says what they asked
/// for ("watch this lecture"), for the messages.
pub async fn require_watch(
    db: &Db,
    caller: Option<&Caller>,
    course: &CourseRow,
    lecture: &LectureRow,
    wanted: &str,
) -> crate::error::Result<Entitlement> {
    use crate::error::Error;
    match may_watch(db, caller, course, lecture).await? {
        Entitlement::SignInRequired => Err(Error::unauthenticated(
            "sign_in_required",
            format!("sign in and enroll to {wanted}"),
        )),
        Entitlement::NotEntitled => {
            Err(Error::denied("not_enrolled", format!("enroll in this course to {wanted}")))
        }
        allowed => Ok(allowed),
    }
}

pub use db::{enroll, enrolled_courses, is_enrolled, revoke};
