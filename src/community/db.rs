//! SQL for reviews and comments.

use crate::types::{CommentId, CourseId, ReviewId, UserId};
use std::collections::HashMap;

use sqlx::{Any, AnyConnection, Executor, FromRow};

use crate::db::Db;

/// A review with its author's name.
#[derive(Debug, Clone, FromRow)]
pub struct ReviewRow {
    pub id: ReviewId,
    pub course_id: CourseId,
    pub user_id: UserId,
    pub user_name: String,
    pub rating: i64,
    pub content: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const REVIEW_SELECT: &str =
    "SELECT r.id, r.course_id, r.user_id, u.name AS user_name, r.rating, r.content, \
     r.created_at, r.updated_at FROM reviews r JOIN users u ON u.id = r.user_id";

/// One page of a course's reviews, newest first, and how many there are.
pub async fn reviews_of_course(
    db: &Db,
    course_id: CourseId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ReviewRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as(&format!(
        "{REVIEW_SELECT} WHERE r.course_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(course_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reviews WHERE course_id = $1")
        .bind(course_id)
        .fetch_one(db.pool())
        .await?;
    Ok((rows, total))
}

pub async fn review(db: &Db, id: ReviewId) -> Result<Option<ReviewRow>, sqlx::Error> {
    sqlx::query_as(&format!("{REVIEW_SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Insert a review by a student actively enrolled in the course, checked in the same
/// statement (a refund landing meanwhile cannot slip a review in). `None` when not enrolled;
/// a second review by the same user for the same course is a unique violation.
pub async fn insert_review(
    db: &Db,
    course_id: CourseId,
    user_id: UserId,
    rating: i64,
    content: &str,
    now: i64,
) -> Result<Option<ReviewId>, sqlx::Error> {
    let row: Option<(ReviewId,)> = sqlx::query_as(
        "INSERT INTO reviews (course_id, user_id, rating, content, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $5 WHERE EXISTS \
           (SELECT 1 FROM enrollments WHERE course_id = $1 AND user_id = $2 AND revoked_at IS NULL) \
         RETURNING id",
    )
    .bind(course_id)
    .bind(user_id)
    .bind(rating)
    .bind(content)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.0))
}

/// Change a review's rating and/or content (`None` leaves a field alone), only while its
/// author is still enrolled in the course: checked in the statement itself. False when
/// nothing was changed (no such review, or its author's enrollment was refunded).
pub async fn update_review(
    db: &Db,
    id: ReviewId,
    rating: Option<i64>,
    content: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE reviews SET rating = COALESCE($2, rating), content = COALESCE($3, content), updated_at = $4 \
         WHERE id = $1 AND EXISTS (SELECT 1 FROM enrollments e \
           WHERE e.course_id = reviews.course_id AND e.user_id = reviews.user_id AND e.revoked_at IS NULL)",
    )
    .bind(id)
    .bind(rating)
    .bind(content)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_review(db: &Db, id: ReviewId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM reviews WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// A comment with its author's name. A deleted one (a tombstone kept for its replies) has
/// `deleted_at` set and empty `content`.
#[derive(Debug, Clone, FromRow)]
pub struct CommentRow {
    pub id: CommentId,
    pub course_id: CourseId,
    pub parent_id: Option<CommentId>,
    pub user_id: UserId,
    pub user_name: String,
    pub content: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

const COMMENT_SELECT: &str =
    "SELECT m.id, m.course_id, m.parent_id, m.user_id, u.name AS user_name, m.content, \
     m.created_at, m.updated_at, m.deleted_at FROM comments m JOIN users u ON u.id = m.user_id";

/// One page of a course's top-level comments and how many there are.
pub async fn threads_of_course(
    db: &Db,
    course_id: CourseId,
    newest_first: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<CommentRow>, i64), sqlx::Error> {
    let order =
        if newest_first { "m.created_at DESC, m.id DESC" } else { "m.created_at ASC, m.id ASC" };
    let rows = sqlx::query_as(&format!(
        "{COMMENT_SELECT} WHERE m.course_id = $1 AND m.parent_id IS NULL ORDER BY {order} LIMIT $2 OFFSET $3"
    ))
    .bind(course_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let (total,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM comments WHERE course_id = $1 AND parent_id IS NULL")
            .bind(course_id)
            .fetch_one(db.pool())
            .await?;
    Ok((rows, total))
}

/// The first `per_thread` replies (oldest first) to each of the comments `parent_ids`, in one
/// query whose cost grows with what it returns, not with the threads' length: each thread's
/// part is its own `LIMIT` over the `(parent_id, created_at)` index.
pub async fn first_replies(
    db: &Db,
    parent_ids: &[CommentId],
    per_thread: i64,
) -> Result<Vec<CommentRow>, sqlx::Error> {
    if parent_ids.is_empty() || per_thread <= 0 {
        return Ok(Vec::new());
    }
    // $1 is the limit; the parents are $2.. .
    let parts: Vec<String> = (2..parent_ids.len() + 2)
        .map(|i| {
            format!("SELECT id FROM (SELECT id FROM comments WHERE parent_id = ${i} ORDER BY created_at ASC, id ASC LIMIT $1) AS t{i}")
        })
        .collect();
    let sql = format!(
        "{COMMENT_SELECT} WHERE m.id IN ({}) ORDER BY m.parent_id, m.created_at ASC, m.id ASC",
        parts.join(" UNION ALL ")
    );
    let mut query = sqlx::query_as(&sql).bind(per_thread);
    for id in parent_ids {
        query = query.bind(*id);
    }
    query.fetch_all(db.pool()).await
}

/// How many replies each of the comments `parent_ids` has (absent: none).
pub async fn reply_counts(
    db: &Db,
    parent_ids: &[CommentId],
) -> Result<HashMap<CommentId, i64>, sqlx::Error> {
    if parent_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders: Vec<String> = (1..=parent_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT parent_id, COUNT(*) FROM comments WHERE parent_id IN ({}) GROUP BY parent_id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, (CommentId, i64)>(&sql);
    for id in parent_ids {
        query = query.bind(*id);
    }
    Ok(query.fetch_all(db.pool()).await?.into_iter().collect())
}

/// One page of the replies to comment `parent_id`, oldest first, and how many there are.
pub async fn replies_page(
    db: &Db,
    parent_id: CommentId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<CommentRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as(&format!(
        "{COMMENT_SELECT} WHERE m.parent_id = $1 ORDER BY m.created_at ASC, m.id ASC LIMIT $2 OFFSET $3"
    ))
    .bind(parent_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM comments WHERE parent_id = $1")
        .bind(parent_id)
        .fetch_one(db.pool())
        .await?;
    Ok((rows, total))
}

pub async fn comment<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: CommentId,
) -> Result<Option<CommentRow>, sqlx::Error> {
    sqlx::query_as(&format!("{COMMENT_SELECT} WHERE m.id = $1")).bind(id).fetch_optional(exec).await
}

/// Take comment `id`'s write lock for the rest of the transaction, as its first statement
/// (see `catalog::db::lock_course` for why first); false when it is gone. A thread's changes
/// (a reply added, a comment deleted or tombstoned) lock the thread's top-level comment, so
/// they run one at a time per thread.
pub async fn lock_comment(conn: &mut AnyConnection, id: CommentId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE comments SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_comment(
    conn: &mut AnyConnection,
    course_id: CourseId,
    user_id: UserId,
    parent_id: Option<CommentId>,
    content: &str,
    now: i64,
) -> Result<CommentId, sqlx::Error> {
    let (id,): (CommentId,) = sqlx::query_as(
        "INSERT INTO comments (course_id, user_id, parent_id, content, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(course_id)
    .bind(user_id)
    .bind(parent_id)
    .bind(content)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Delete comment `id` if nothing replies to it (when `only_tombstone`, only if it is also a
/// tombstone already). True when it was deleted.
pub async fn delete_comment_without_replies(
    conn: &mut AnyConnection,
    id: CommentId,
    only_tombstone: bool,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM comments WHERE id = $1 AND ($2 = 0 OR deleted_at IS NOT NULL) \
         AND NOT EXISTS (SELECT 1 FROM comments r WHERE r.parent_id = $1)",
    )
    .bind(id)
    .bind(only_tombstone as i64)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Turn comment `id` into a tombstone: its text is erased, its place in the thread kept.
pub async fn tombstone_comment(
    conn: &mut AnyConnection,
    id: CommentId,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE comments SET content = '', deleted_at = $2, updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}
