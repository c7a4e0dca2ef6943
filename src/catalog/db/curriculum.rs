//! Section and lecture SQL: the ordered children of a course and of a section.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use crate::db::Db;
use crate::media::VideoStatus;
use crate::types::{CourseId, LectureId, SectionId, VideoId};

#[derive(Debug, Clone, FromRow)]
pub struct SectionRow {
    pub id: SectionId,
    pub course_id: CourseId,
    pub title: String,
    pub position: i64,
}

pub async fn sections_of(db: &Db, course_id: CourseId) -> Result<Vec<SectionRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, course_id, title, position FROM sections WHERE course_id = $1 ORDER BY position, id")
        .bind(course_id)
        .fetch_all(db.pool())
        .await
}

pub async fn section<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: SectionId,
) -> Result<Option<SectionRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, course_id, title, position FROM sections WHERE id = $1")
        .bind(id)
        .fetch_optional(exec)
        .await
}

/// A lecture with the state of its newest video.
#[derive(Debug, Clone, FromRow)]
pub struct LectureRow {
    pub id: LectureId,
    pub section_id: SectionId,
    pub course_id: CourseId,
    pub title: String,
    pub description: String,
    pub position: i64,
    pub is_preview: i64,
    pub video_id: Option<VideoId>,
    pub duration_seconds: Option<f64>,
    pub newest_video_id: Option<VideoId>,
    pub newest_video_status: Option<VideoStatus>,
    /// The owner's chapters if any, else those found in the video it plays.
    pub chapter_count: i64,
}

const LECTURE_SELECT: &str = "SELECT l.id, l.section_id, l.course_id, l.title, l.description, l.position, l.is_preview, \
     l.video_id, l.duration_seconds, v.id AS newest_video_id, v.status AS newest_video_status, \
     CAST(COALESCE(NULLIF((SELECT COUNT(*) FROM lecture_chapters lc WHERE lc.lecture_id = l.id), 0), \
     (SELECT COUNT(*) FROM video_chapters vc WHERE vc.video_id = l.video_id)) AS BIGINT) AS chapter_count FROM lectures l \
     LEFT JOIN videos v ON v.id = (SELECT MAX(v2.id) FROM videos v2 WHERE v2.lecture_id = l.id)";

pub async fn lectures_of_course(
    db: &Db,
    course_id: CourseId,
) -> Result<Vec<LectureRow>, sqlx::Error> {
    sqlx::query_as(&format!("{LECTURE_SELECT} WHERE l.course_id = $1 ORDER BY l.position, l.id"))
        .bind(course_id)
        .fetch_all(db.pool())
        .await
}

pub async fn lecture<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: LectureId,
) -> Result<Option<LectureRow>, sqlx::Error> {
    sqlx::query_as(&format!("{LECTURE_SELECT} WHERE l.id = $1")).bind(id).fetch_optional(exec).await
}

/// An ordered child table: sections within a course, lectures within a section. Its helpers
/// take either kind's ids as plain keys.
///
/// Positions under one parent are 1..n, unique (migration 0011). They are changed only inside
/// a transaction that holds the course's lock ([`lock_course`]), and always in two phases: the
/// rows that move go to negative positions first, then back to positive ones, so no single
/// statement ever puts two rows on one position, whatever order the database updates rows in
/// (neither backend checks a unique index only at the end of a statement). A row being moved
/// waits at position 0.
#[derive(Clone, Copy)]
pub enum Ordered {
    Section,
    Lecture,
}

impl Ordered {
    fn table(self) -> &'static str {
        match self {
            Ordered::Section => "sections",
            Ordered::Lecture => "lectures",
        }
    }
    fn parent(self) -> &'static str {
        match self {
            Ordered::Section => "course_id",
            Ordered::Lecture => "section_id",
        }
    }
}

/// Number of rows under `parent`.
pub async fn child_count(
    conn: &mut AnyConnection,
    kind: Ordered,
    parent: impl Into<i64>,
) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM {} WHERE {} = $1",
        kind.table(),
        kind.parent()
    ))
    .bind(parent.into())
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// Move every row under `parent` whose position satisfies `which` (`>= $2` or `> $2`) by
/// `delta`, in the two phases described on [`Ordered`].
async fn shift(
    conn: &mut AnyConnection,
    kind: Ordered,
    parent: i64,
    which: &str,
    position: i64,
    delta: i64,
) -> Result<(), sqlx::Error> {
    let (t, p) = (kind.table(), kind.parent());
    sqlx::query(&format!(
        "UPDATE {t} SET position = -(position + $3) WHERE {p} = $1 AND position {which} $2"
    ))
    .bind(parent)
    .bind(position)
    .bind(delta)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!("UPDATE {t} SET position = -position WHERE {p} = $1 AND position < 0"))
        .bind(parent)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Make room at `position` (1-based) under `parent` by shifting later rows down.
pub async fn open_gap(
    conn: &mut AnyConnection,
    kind: Ordered,
    parent: impl Into<i64>,
    position: i64,
) -> Result<(), sqlx::Error> {
    shift(conn, kind, parent.into(), ">=", position, 1).await
}

/// Close the hole left at `position` under `parent`.
pub async fn close_gap(
    conn: &mut AnyConnection,
    kind: Ordered,
    parent: impl Into<i64>,
    position: i64,
) -> Result<(), sqlx::Error> {
    shift(conn, kind, parent.into(), ">", position, -1).await
}

/// Put row `id` at (`parent`, `position`). To move a row: `place` it at position 0 of its
/// parent, close its gap, open one at the target, then `place` it there.
pub async fn place(
    conn: &mut AnyConnection,
    kind: Ordered,
    id: impl Into<i64>,
    parent: impl Into<i64>,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {t} SET {p} = $2, position = $3 WHERE id = $1",
        t = kind.table(),
        p = kind.parent()
    ))
    .bind(id.into())
    .bind(parent.into())
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_section(
    conn: &mut AnyConnection,
    course_id: CourseId,
    title: &str,
    position: i64,
    now: i64,
) -> Result<SectionId, sqlx::Error> {
    let (id,): (SectionId,) =
        sqlx::query_as("INSERT INTO sections (course_id, title, position, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(course_id)
            .bind(title)
            .bind(position)
            .bind(now)
            .fetch_one(conn)
            .await?;
    Ok(id)
}

pub async fn rename_section(
    conn: &mut AnyConnection,
    id: SectionId,
    title: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sections SET title = $2 WHERE id = $1")
        .bind(id)
        .bind(title)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_row(
    conn: &mut AnyConnection,
    kind: Ordered,
    id: impl Into<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", kind.table()))
        .bind(id.into())
        .execute(conn)
        .await?;
    Ok(())
}

pub struct NewLecture<'a> {
    pub section_id: SectionId,
    pub course_id: CourseId,
    pub title: &'a str,
    pub description: &'a str,
    pub position: i64,
    pub is_preview: bool,
}

pub async fn insert_lecture(
    conn: &mut AnyConnection,
    l: &NewLecture<'_>,
    now: i64,
) -> Result<LectureId, sqlx::Error> {
    let (id,): (LectureId,) = sqlx::query_as(
        "INSERT INTO lectures (section_id, course_id, title, description, position, is_preview, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(l.section_id)
    .bind(l.course_id)
    .bind(l.title)
    .bind(l.description)
    .bind(l.position)
    .bind(l.is_preview as i64)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

pub async fn update_lecture_text(
    conn: &mut AnyConnection,
    id: LectureId,
    title: Option<&str>,
    description: Option<&str>,
    is_preview: Option<bool>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE lectures SET title = COALESCE($2, title), description = COALESCE($3, description), \
         is_preview = COALESCE($4, is_preview), updated_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .bind(description)
    .bind(is_preview.map(|b| b as i64))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Recompute a course's total duration from its lectures' measured durations.
pub async fn refresh_course_duration<'e>(
    exec: impl Executor<'e, Database = Any>,
    course_id: CourseId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE courses SET duration_seconds = \
         (SELECT CAST(COALESCE(SUM(duration_seconds), 0) AS DOUBLE PRECISION) FROM lectures WHERE course_id = $1) WHERE id = $1",
    )
    .bind(course_id)
    .execute(exec)
    .await?;
    Ok(())
}
