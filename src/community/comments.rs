//! Comments on a course: top-level comments, each the root of a thread with one level of
//! replies. A reply to a reply joins the same thread (its `parent_id` becomes the thread's
//! root), as on most course sites; the answer shows where it went.
//!
//! Threads are listed a page at a time, newest first by default (`sort=oldest` for the other
//! way), with all their replies inside, oldest first so they read as a conversation.
//!
//! Deleting a reply, or a top-level comment nobody has answered, removes it. A top-level comment
//! with replies becomes a tombstone instead (`deleted: true`, no content, no author) so its
//! replies stay readable (and the thread open to new ones); the tombstone goes too once its last
//! reply is deleted.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::db::{self, CommentRow};
use super::{open_course, Author, MAX_CONTENT_CHARS};
use crate::accounts::Caller;
use crate::catalog::text;
use crate::db::{now, rfc3339, Db};
use crate::error::{ApiError, ApiResult};

/// A comment or reply as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Comment {
    pub id: i64,
    pub course_id: i64,
    /// The thread's top-level comment; null for a top-level comment.
    pub parent_id: Option<i64>,
    /// Null once deleted.
    pub content: Option<String>,
    /// Null once deleted.
    pub user: Option<Author>,
    /// A deleted comment kept in place because it has replies.
    pub deleted: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<CommentRow> for Comment {
    fn from(r: CommentRow) -> Self {
        let deleted = r.deleted_at.is_some();
        Comment {
            id: r.id,
            course_id: r.course_id,
            parent_id: r.parent_id,
            content: (!deleted).then_some(r.content),
            user: (!deleted).then_some(Author { id: r.user_id, name: r.user_name }),
            deleted,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// A top-level comment with its replies.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommentThread {
    #[serde(flatten)]
    pub comment: Comment,
    /// Oldest first.
    pub replies: Vec<Comment>,
}

/// The order of threads in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadOrder {
    NewestFirst,
    OldestFirst,
}

/// One page of a course's threads and how many threads there are.
pub async fn list(
    db: &Db,
    caller: Option<&Caller>,
    course_id: i64,
    order: ThreadOrder,
    page: i64,
    per_page: i64,
) -> ApiResult<(Vec<CommentThread>, i64)> {
    crate::catalog::visible_course(db, caller, course_id).await?;
    let newest_first = order == ThreadOrder::NewestFirst;
    let (roots, total) = db::threads_of_course(db, course_id, newest_first, per_page, (page - 1) * per_page).await?;
    let ids: Vec<i64> = roots.iter().map(|r| r.id).collect();
    let mut replies: HashMap<i64, Vec<Comment>> = HashMap::new();
    for reply in db::replies_to(db, &ids).await? {
        if let Some(root) = reply.parent_id {
            replies.entry(root).or_default().push(reply.into());
        }
    }
    let threads = roots
        .into_iter()
        .map(|root| CommentThread { replies: replies.remove(&root.id).unwrap_or_default(), comment: root.into() })
        .collect();
    Ok((threads, total))
}

/// Comment on a published course, or reply to a comment on it (`parent_id`): 422
/// `invalid_parent` when the parent is not a comment of this course.
pub async fn create(db: &Db, caller: &Caller, course_id: i64, content: &str, parent_id: Option<i64>) -> ApiResult<Comment> {
    open_course(db, caller, course_id).await?;
    let content = text("content", content, 1, MAX_CONTENT_CHARS)?;
    let root = match parent_id {
        None => None,
        Some(p) => {
            let parent = db::comment(db, p).await?.filter(|c| c.course_id == course_id).ok_or_else(|| {
                ApiError::unprocessable("invalid_parent", "parent_id must name a comment on the same course")
            })?;
            Some(parent.parent_id.unwrap_or(parent.id))
        }
    };
    let id = db::insert_comment(db, course_id, caller.user_id, root, &content, now()).await?;
    Ok(db::comment(db, id).await?.ok_or(ApiError::not_found("comment"))?.into())
}

/// Delete a comment: its author or an admin (404 for others, and for one already deleted).
pub async fn delete(db: &Db, caller: &Caller, id: i64) -> ApiResult<()> {
    let comment = db::comment(db, id)
        .await?
        .filter(|c| c.deleted_at.is_none() && (c.user_id == caller.user_id || caller.is_admin()))
        .ok_or(ApiError::not_found("comment"))?;
    if !db::delete_comment_without_replies(db, id, false).await? {
        db::tombstone_comment(db, id, now()).await?;
    }
    if let Some(root) = comment.parent_id {
        db::delete_comment_without_replies(db, root, true).await?;
    }
    Ok(())
}
