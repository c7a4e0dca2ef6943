//! Comments on a course: top-level comments, each the root of a thread with one level of
//! replies. A reply to a reply joins the same thread (its `parent_id` becomes the thread's
//! root), as on most course sites; the answer shows where it went.
//!
//! Threads are listed a page at a time, newest first by default (`sort=oldest` for the other
//! way), each with its first replies inside (oldest first, so they read as a conversation; at
//! most [`INLINE_REPLIES`] by default) and its `reply_count`. The rest of a long thread is
//! paged with [`replies`] (`GET /api/v1/comments/{id}/replies`): a thread of 100,000 replies
//! costs a list request no more than one of ten.
//!
//! Changes to a thread (a reply, a deletion) run in a transaction holding the thread's
//! top-level comment locked, so a reply cannot land on a comment being deleted.
//!
//! Deleting a reply, or a top-level comment nobody has answered, removes it. A top-level comment
//! with replies becomes a tombstone instead (`deleted: true`, no content, no author) so its
//! replies stay readable (and the thread open to new ones); the tombstone goes too once its last
//! reply is deleted.

use crate::types::text::TextRule;
use crate::types::{CommentId, CourseId};
use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::db::{self, CommentRow};
use super::{open_course, Author};
use crate::accounts::Caller;
use crate::catalog::text;
use crate::db::{now, rfc3339, Db};
use crate::error::{Error, Result};

/// A comment or reply as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Comment {
    pub id: CommentId,
    pub course_id: CourseId,
    /// The thread's top-level comment; null for a top-level comment.
    pub parent_id: Option<CommentId>,
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

/// Replies shown inside each thread of a list unless the request asks for another number.
pub const INLINE_REPLIES: i64 = 10;

/// Most replies a list may show inside each thread.
pub const MAX_INLINE_REPLIES: i64 = 100;

/// A top-level comment with its first replies.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommentThread {
    #[serde(flatten)]
    pub comment: Comment,
    /// The first replies, oldest first: all of them when `reply_count` is no larger than their
    /// number; page the rest with `GET /api/v1/comments/{id}/replies`.
    pub replies: Vec<Comment>,
    /// How many replies the thread has in all.
    pub reply_count: i64,
}

/// The order of threads in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadOrder {
    NewestFirst,
    OldestFirst,
}

/// One page of a course's threads, each with up to `inline_replies` of its replies, and how
/// many threads there are.
pub async fn list(
    db: &Db,
    caller: Option<&Caller>,
    course_id: CourseId,
    order: ThreadOrder,
    page: i64,
    per_page: i64,
    inline_replies: i64,
) -> Result<(Vec<CommentThread>, i64)> {
    crate::catalog::visible_course(db, caller, course_id).await?;
    let newest_first = order == ThreadOrder::NewestFirst;
    let (roots, total) =
        db::threads_of_course(db, course_id, newest_first, per_page, (page - 1) * per_page).await?;
    let ids: Vec<CommentId> = roots.iter().map(|r| r.id).collect();
    let mut replies: HashMap<CommentId, Vec<Comment>> = HashMap::new();
    for reply in db::first_replies(db, &ids, inline_replies).await? {
        if let Some(root) = reply.parent_id {
            replies.entry(root).or_default().push(reply.into());
        }
    }
    let counts = db::reply_counts(db, &ids).await?;
    let threads = roots
        .into_iter()
        .map(|root| CommentThread {
            replies: replies.remove(&root.id).unwrap_or_default(),
            reply_count: counts.get(&root.id).copied().unwrap_or(0),
            comment: root.into(),
        })
        .collect();
    Ok((threads, total))
}

/// One page of the replies to comment `id` (oldest first) and how many there are; 404 when
/// the comment does not exist or its course is hidden from `caller`. A reply has no replies
/// of its own: its page is empty.
pub async fn replies(
    db: &Db,
    caller: Option<&Caller>,
    id: CommentId,
    page: i64,
    per_page: i64,
) -> Result<(Vec<Comment>, i64)> {
    let comment = db::comment(db.pool(), id).await?.ok_or(Error::not_found("comment"))?;
    crate::catalog::visible_course(db, caller, comment.course_id).await.map_err(|e| match e {
        Error::NotFound { .. } => Error::not_found("comment"),
        other => other,
    })?;
    let (rows, total) = db::replies_page(db, id, per_page, (page - 1) * per_page).await?;
    Ok((rows.into_iter().map(Comment::from).collect(), total))
}

/// Comment on a published course, or reply to a comment on it (`parent_id`): 422
/// `invalid_parent` when the parent is not a comment of this course.
pub async fn create(
    db: &Db,
    caller: &Caller,
    course_id: CourseId,
    content: &str,
    parent_id: Option<CommentId>,
) -> Result<Comment> {
    open_course(db, caller, course_id).await?;
    let content = text("content", content, TextRule::COMMENT)?;
    let bad_parent =
        || Error::invalid("invalid_parent", "parent_id must name a comment on the same course");
    let root = match parent_id {
        None => None,
        Some(p) => {
            let parent = db::comment(db.pool(), p)
                .await?
                .filter(|c| c.course_id == course_id)
                .ok_or_else(bad_parent)?;
            Some(parent.parent_id.unwrap_or(parent.id))
        }
    };
    let mut tx = db.begin().await?;
    if let Some(root) = root {
        // The thread may have been deleted since it was read.
        if !db::lock_comment(&mut tx, root).await? {
            return Err(bad_parent());
        }
    }
    let id = db::insert_comment(&mut tx, course_id, caller.user_id, root, &content, now()).await?;
    tx.commit().await?;
    Ok(db::comment(db.pool(), id).await?.ok_or(Error::not_found("comment"))?.into())
}

/// Delete a comment: its author or an admin (404 for others, and for one already deleted).
/// Removing it, or keeping it as a tombstone, and removing a tombstone left without replies
/// are one change.
pub async fn delete(db: &Db, caller: &Caller, id: CommentId) -> Result<()> {
    let gone = || Error::not_found("comment");
    let seen = db::comment(db.pool(), id).await?.ok_or_else(gone)?;
    let mut tx = db.begin().await?;
    if !db::lock_comment(&mut tx, seen.parent_id.unwrap_or(id)).await? {
        return Err(gone());
    }
    let comment = db::comment(&mut *tx, id)
        .await?
        .filter(|c| c.deleted_at.is_none() && (c.user_id == caller.user_id || caller.is_admin()))
        .ok_or_else(gone)?;
    if !db::delete_comment_without_replies(&mut tx, id, false).await? {
        db::tombstone_comment(&mut tx, id, now()).await?;
    }
    if let Some(root) = comment.parent_id {
        db::delete_comment_without_replies(&mut tx, root, true).await?;
    }
    tx.commit().await?;
    Ok(())
}
