//! SQL for courses, sections and lectures.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::search::{SearchQuery, SearchSql};
use crate::db::Db;

/// A course as stored.
#[derive(Debug, Clone, FromRow)]
pub struct CourseRow {
    pub id: i64,
    pub instructor_id: i64,
    pub instructor_name: String,
    pub category_id: Option<i64>,
    pub title: String,
    pub description: String,
    pub price: i64,
    pub currency: String,
    pub level: String,
    pub status: String,
    pub duration_seconds: f64,
    pub created_at: i64,
    pub published_at: Option<i64>,
    /// Active enrollments, kept by triggers (migration 0007).
    pub enrollment_count: i64,
    /// Number of reviews and their average rating (0 without reviews), kept by triggers.
    pub rating_count: i64,
    pub rating_avg: f64,
}

/// The columns of a [`CourseRow`], over `courses c` joined with `users u`.
macro_rules! course_columns {
    () => {
        "c.id, c.instructor_id, u.name AS instructor_name, c.category_id, c.title, c.description, c.price, \
         c.currency, c.level, c.status, c.duration_seconds, c.created_at, c.published_at, c.enrollment_count, \
         c.rating_count, c.rating_avg"
    };
}

pub(crate) const COURSE_SELECT: &str =
    concat!("SELECT ", course_columns!(), " FROM courses c JOIN users u ON u.id = c.instructor_id");

pub async fn course(db: &Db, id: i64) -> Result<Option<CourseRow>, sqlx::Error> {
    sqlx::query_as(&format!("{COURSE_SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Fields of a new course.
pub struct NewCourse<'a> {
    pub instructor_id: i64,
    pub category_id: Option<i64>,
    pub title: &'a str,
    pub description: &'a str,
    pub price: i64,
    pub currency: &'a str,
    pub level: &'a str,
}

pub async fn insert_course(db: &Db, c: &NewCourse<'_>, now: i64) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO courses (instructor_id, category_id, title, description, price, currency, level, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(c.instructor_id)
    .bind(c.category_id)
    .bind(c.title)
    .bind(c.description)
    .bind(c.price)
    .bind(c.currency)
    .bind(c.level)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok(id)
}

/// Changes to a course; `None` leaves a field alone. `category_id: Some(None)` clears it.
#[derive(Default)]
pub struct CourseChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub currency: Option<String>,
    pub level: Option<String>,
    pub category_id: Option<Option<i64>>,
}

pub async fn update_course(
    db: &Db,
    id: i64,
    ch: &CourseChanges,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (set_cat, cat) = match ch.category_id {
        Some(c) => (1i64, c),
        None => (0, None),
    };
    sqlx::query(
        "UPDATE courses SET title = COALESCE($2, title), description = COALESCE($3, description), \
         price = COALESCE($4, price), currency = COALESCE($5, currency), level = COALESCE($6, level), \
         category_id = CASE WHEN $7 = 1 THEN $8 ELSE category_id END, updated_at = $9 WHERE id = $1",
    )
    .bind(id)
    .bind(ch.title.as_deref())
    .bind(ch.description.as_deref())
    .bind(ch.price)
    .bind(ch.currency.as_deref())
    .bind(ch.level.as_deref())
    .bind(set_cat)
    .bind(cat)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn delete_course(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM courses WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Take course `id`'s write lock for the rest of the transaction, as the transaction's first
/// statement; false when there is no such course.
///
/// Every change to a course's curriculum takes it first, so such changes run one at a time
/// per course: on PostgreSQL it is a row lock; on SQLite, a write as the first statement
/// makes the transaction the writer before it reads anything (a read first would leave it
/// with a snapshot it could not upgrade when another writer got in between).
pub async fn lock_course(conn: &mut AnyConnection, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE courses SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Publish course `id` when it has a lecture; false when it has none.
pub async fn publish_if_not_empty(
    conn: &mut AnyConnection,
    id: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let before: Option<(String,)> = sqlx::query_as("SELECT status FROM courses WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let done = sqlx::query(
        "UPDATE courses SET status = 'published', published_at = COALESCE(published_at, $2), updated_at = $2 \
         WHERE id = $1 AND EXISTS (SELECT 1 FROM lectures WHERE course_id = $1)",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let published = done.rows_affected() == 1;
    // A draft that became published: `course.published`, recorded in the caller's transaction.
    if published && before.is_some_and(|(s,)| s == "draft") {
        let c: CourseRow = sqlx::query_as(&format!("{COURSE_SELECT} WHERE c.id = $1"))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        let course = serde_json::json!({
            "id": c.id, "title": c.title, "status": c.status, "price": c.price, "currency": c.currency,
            "instructor": {"id": c.instructor_id, "name": c.instructor_name}, "published_at": c.published_at.map(crate::db::rfc3339),
        });
        let data = serde_json::json!({"course_id": id, "course": course});
        crate::webhooks::emit(conn, crate::webhooks::EventType::CoursePublished, &[id], data)
            .await?;
    }
    Ok(published)
}

/// Active enrollments in course `id`, counted now (not the trigger-kept figure read earlier).
pub async fn active_enrollments(conn: &mut AnyConnection, id: i64) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM enrollments WHERE course_id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// A category as stored.
#[derive(Debug, Clone, FromRow)]
pub struct CategoryRow {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub name_en: String,
    pub slug: String,
    pub position: i64,
}

const CATEGORY_SELECT: &str = "SELECT id, parent_id, name, name_en, slug, position FROM categories";

/// Every category, each level in position order.
pub async fn categories(db: &Db) -> Result<Vec<CategoryRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CATEGORY_SELECT} ORDER BY position, id")).fetch_all(db.pool()).await
}

pub async fn category<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<CategoryRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CATEGORY_SELECT} WHERE id = $1")).bind(id).fetch_optional(exec).await
}

/// The children of category `id`, in position order.
pub async fn child_categories<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Vec<CategoryRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CATEGORY_SELECT} WHERE parent_id = $1 ORDER BY position, id"))
        .bind(id)
        .fetch_all(exec)
        .await
}

/// The position after the last sibling under `parent_id` (top level when `None`).
pub async fn next_category_position(
    conn: &mut AnyConnection,
    parent_id: Option<i64>,
) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(MAX(position), 0) + 1 AS BIGINT) FROM categories WHERE COALESCE(parent_id, 0) = $1")
            .bind(parent_id.unwrap_or(0))
            .fetch_one(conn)
            .await?;
    Ok(n)
}

/// Insert `c` (its `id` is ignored) and return the new id.
pub async fn insert_category(
    conn: &mut AnyConnection,
    c: &CategoryRow,
) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO categories (parent_id, name, name_en, slug, position) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(c.parent_id)
    .bind(&c.name)
    .bind(&c.name_en)
    .bind(&c.slug)
    .bind(c.position)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Changes to a category; `None` leaves a field alone. `parent_id: Some(None)` makes it top-level.
#[derive(Default)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub name_en: Option<String>,
    pub slug: Option<String>,
    pub parent_id: Option<Option<i64>>,
    pub position: Option<i64>,
}

pub async fn update_category(
    conn: &mut AnyConnection,
    id: i64,
    ch: &CategoryChanges,
) -> Result<(), sqlx::Error> {
    let (set_parent, parent) = match ch.parent_id {
        Some(p) => (1i64, p),
        None => (0, None),
    };
    sqlx::query(
        "UPDATE categories SET name = COALESCE($2, name), name_en = COALESCE($3, name_en), slug = COALESCE($4, slug), \
         parent_id = CASE WHEN $5 = 1 THEN $6 ELSE parent_id END, position = COALESCE($7, position) WHERE id = $1",
    )
    .bind(id)
    .bind(ch.name.as_deref())
    .bind(ch.name_en.as_deref())
    .bind(ch.slug.as_deref())
    .bind(set_parent)
    .bind(parent)
    .bind(ch.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Delete a category; its courses' `category_id` becomes null.
pub async fn delete_category(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM categories WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Take the write locks of categories `ids` (smallest id first, so two transactions never
/// wait on each other in a circle), as the transaction's first statements. False when one
/// of them does not exist. Changes that depend on the tree's shape (a parent must be
/// top-level, a category with children cannot become a child) lock every category they
/// look at, so two of them cannot each pass their check and together make three levels.
pub async fn lock_categories(conn: &mut AnyConnection, ids: &[i64]) -> Result<bool, sqlx::Error> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let done = sqlx::query("UPDATE categories SET position = position WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn category_exists(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_as::<_, (i64,)>("SELECT id FROM categories WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .is_some())
}

pub async fn is_enrolled(db: &Db, user_id: i64, course_id: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_as::<_, (i64,)>(
        "SELECT id FROM enrollments WHERE user_id = $1 AND course_id = $2 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(course_id)
    .fetch_optional(db.pool())
    .await?
    .is_some())
}

/// How a list of courses is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CourseSort {
    /// Most recently published first.
    Newest,
    /// Most active enrollments first.
    Popular,
    /// Highest average rating first.
    Rating,
    PriceAsc,
    PriceDesc,
    /// Best search match first (see [`super::search`]); without a search, the same as `Newest`.
    Relevance,
}

impl CourseSort {
    /// The `?sort=` names, in the order the API documents them.
    pub const NAMES: &'static [&'static str] =
        &["newest", "popular", "rating", "price_asc", "price_desc", "relevance"];

    /// The sort named `name`, if any.
    pub fn parse(name: &str) -> Option<CourseSort> {
        Some(match name {
            "newest" => CourseSort::Newest,
            "popular" => CourseSort::Popular,
            "rating" => CourseSort::Rating,
            "price_asc" => CourseSort::PriceAsc,
            "price_desc" => CourseSort::PriceDesc,
            "relevance" => CourseSort::Relevance,
            _ => return None,
        })
    }
}

/// Which published courses to list.
pub struct CourseFilter<'a> {
    /// A category; a top-level one includes its children.
    pub category: Option<i64>,
    pub search: Option<&'a SearchQuery>,
    pub sort: CourseSort,
}

/// One page of published courses and how many match in all.
pub async fn list_published(
    db: &Db,
    limit: i64,
    offset: i64,
    f: &CourseFilter<'_>,
) -> Result<(Vec<CourseRow>, i64), sqlx::Error> {
    const NEWEST: &str = "c.published_at DESC, c.id DESC";
    let mut from = "courses c JOIN users u ON u.id = c.instructor_id".to_string();
    // Without a category the filter is left out entirely (not `$1 = 0 OR …`), so the planner
    // can walk the sort's index and stop at the page.
    let mut filter = if f.category.is_some() {
        "c.status = 'published' AND $1 = 1 AND (c.category_id = $2 OR c.category_id IN \
         (SELECT id FROM categories WHERE parent_id = $2))"
            .to_string()
    } else {
        "c.status = 'published' AND $1 = 0 AND $2 = 0".to_string()
    };
    let (mut filter_args, mut order_args, mut relevance) =
        (Vec::new(), Vec::new(), NEWEST.to_string());
    if let Some(q) = f.search {
        let sql = SearchSql::build(db.backend(), q, 3);
        from = sql.from;
        filter.push_str(&sql.condition);
        (filter_args, order_args, relevance) = (sql.filter_args, sql.order_args, sql.relevance);
    }
    let order = match f.sort {
        CourseSort::Newest => NEWEST,
        CourseSort::PriceAsc => "c.price ASC, c.id DESC",
        CourseSort::PriceDesc => "c.price DESC, c.id DESC",
        // Kept on the course row by triggers (migration 0007), so these sorts use an index.
        CourseSort::Popular => "c.enrollment_count DESC, c.id DESC",
        CourseSort::Rating => "c.rating_avg DESC, c.id DESC",
        CourseSort::Relevance => &relevance,
    };
    // Placeholders: $1, $2 (category), the search filter's, the relevance order's, then the page.
    let (has_cat, cat) = (f.category.is_some() as i64, f.category.unwrap_or(0));
    let order_args = if f.sort == CourseSort::Relevance { order_args } else { Vec::new() };
    let page_at = 3 + filter_args.len() + order_args.len();
    let sql = format!(
        concat!("SELECT ", course_columns!(), " FROM {} WHERE {} ORDER BY {} LIMIT ${} OFFSET ${}"),
        from,
        filter,
        order,
        page_at,
        page_at + 1
    );
    let mut rows = sqlx::query_as(&sql).bind(has_cat).bind(cat);
    for arg in filter_args.iter().chain(&order_args) {
        rows = rows.bind(arg.as_str());
    }
    let rows = rows.bind(limit).bind(offset).fetch_all(db.pool()).await?;
    let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {filter}");
    let mut count = sqlx::query_as(&count_sql).bind(has_cat).bind(cat);
    for arg in &filter_args {
        count = count.bind(arg.as_str());
    }
    let (total,): (i64,) = count.fetch_one(db.pool()).await?;
    Ok((rows, total))
}

#[derive(Debug, Clone, FromRow)]
pub struct SectionRow {
    pub id: i64,
    pub course_id: i64,
    pub title: String,
    pub position: i64,
}

pub async fn sections_of(db: &Db, course_id: i64) -> Result<Vec<SectionRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, course_id, title, position FROM sections WHERE course_id = $1 ORDER BY position, id")
        .bind(course_id)
        .fetch_all(db.pool())
        .await
}

pub async fn section<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<SectionRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, course_id, title, position FROM sections WHERE id = $1")
        .bind(id)
        .fetch_optional(exec)
        .await
}

/// A lecture with the state of its newest video.
#[derive(Debug, Clone, FromRow)]
pub struct LectureRow {
    pub id: i64,
    pub section_id: i64,
    pub course_id: i64,
    pub title: String,
    pub description: String,
    pub position: i64,
    pub is_preview: i64,
    pub video_id: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub newest_video_id: Option<i64>,
    pub newest_video_status: Option<String>,
}

const LECTURE_SELECT: &str = "SELECT l.id, l.section_id, l.course_id, l.title, l.description, l.position, l.is_preview, \
     l.video_id, l.duration_seconds, v.id AS newest_video_id, v.status AS newest_video_status FROM lectures l \
     LEFT JOIN videos v ON v.id = (SELECT MAX(v2.id) FROM videos v2 WHERE v2.lecture_id = l.id)";

pub async fn lectures_of_course(db: &Db, course_id: i64) -> Result<Vec<LectureRow>, sqlx::Error> {
    sqlx::query_as(&format!("{LECTURE_SELECT} WHERE l.course_id = $1 ORDER BY l.position, l.id"))
        .bind(course_id)
        .fetch_all(db.pool())
        .await
}

pub async fn lecture<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
) -> Result<Option<LectureRow>, sqlx::Error> {
    sqlx::query_as(&format!("{LECTURE_SELECT} WHERE l.id = $1")).bind(id).fetch_optional(exec).await
}

/// An ordered child table: sections within a course, lectures within a section.
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
    parent: i64,
) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM {} WHERE {} = $1",
        kind.table(),
        kind.parent()
    ))
    .bind(parent)
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
    parent: i64,
    position: i64,
) -> Result<(), sqlx::Error> {
    shift(conn, kind, parent, ">=", position, 1).await
}

/// Close the hole left at `position` under `parent`.
pub async fn close_gap(
    conn: &mut AnyConnection,
    kind: Ordered,
    parent: i64,
    position: i64,
) -> Result<(), sqlx::Error> {
    shift(conn, kind, parent, ">", position, -1).await
}

/// Put row `id` at (`parent`, `position`). To move a row: `place` it at position 0 of its
/// parent, close its gap, open one at the target, then `place` it there.
pub async fn place(
    conn: &mut AnyConnection,
    kind: Ordered,
    id: i64,
    parent: i64,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE {t} SET {p} = $2, position = $3 WHERE id = $1",
        t = kind.table(),
        p = kind.parent()
    ))
    .bind(id)
    .bind(parent)
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_section(
    conn: &mut AnyConnection,
    course_id: i64,
    title: &str,
    position: i64,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) =
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
    id: i64,
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
    id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", kind.table()))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub struct NewLecture<'a> {
    pub section_id: i64,
    pub course_id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub position: i64,
    pub is_preview: bool,
}

pub async fn insert_lecture(
    conn: &mut AnyConnection,
    l: &NewLecture<'_>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
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
    id: i64,
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
    course_id: i64,
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
