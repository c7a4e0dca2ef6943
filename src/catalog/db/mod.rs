//! SQL for courses and the published listing; categories and the curriculum (sections and
//! lectures) in their own files.

use sqlx::{AnyConnection, FromRow};

use super::search::{SearchQuery, SearchSql};
use super::{CourseStatus, Level};
use crate::db::{Backend, Db};
use crate::types::{CategoryId, CourseId, Currency, Money, UserId};

mod categories;
pub use categories::*;
mod curriculum;
pub use curriculum::*;

/// A course as stored.
#[derive(Debug, Clone, FromRow)]
pub struct CourseRow {
    pub id: CourseId,
    pub instructor_id: UserId,
    pub instructor_name: String,
    pub category_id: Option<CategoryId>,
    pub title: String,
    pub description: String,
    /// In minor units of `currency`; see [`CourseRow::price`].
    pub price: i64,
    pub currency: Currency,
    pub level: Level,
    pub status: CourseStatus,
    pub duration_seconds: f64,
    pub created_at: i64,
    pub published_at: Option<i64>,
    /// Active enrollments, kept by triggers (migration 0007).
    pub enrollment_count: i64,
    /// Number of reviews and their average rating (0 without reviews), kept by triggers.
    pub rating_count: i64,
    pub rating_avg: f64,
    /// BCP 47 tag of what the course is taught in (captions in it are the default).
    pub language: String,
    /// Its videos transcoded from now on carry the per-viewer forensic watermark (0/1).
    pub forensic_watermark: i64,
}

impl CourseRow {
    /// What the course costs.
    pub fn price(&self) -> Money {
        Money::new(self.price, self.currency)
    }
}

/// The columns of a [`CourseRow`], over `courses c` joined with `users u`.
macro_rules! course_columns {
    () => {
        "c.id, c.instructor_id, u.name AS instructor_name, c.category_id, c.title, c.description, c.price, \
         c.currency, c.level, c.status, c.duration_seconds, c.created_at, c.published_at, c.enrollment_count, \
         c.rating_count, c.rating_avg, c.language, c.forensic_watermark"
    };
}

/// The columns of a [`CourseRow`], over [`COURSE_FROM`].
pub(crate) const COURSE_COLUMNS: &str = course_columns!();
/// The tables a [`CourseRow`] is read from: `c` the course, `u` its instructor.
pub(crate) const COURSE_FROM: &str = "courses c JOIN users u ON u.id = c.instructor_id";
pub(crate) const COURSE_SELECT: &str =
    concat!("SELECT ", course_columns!(), " FROM courses c JOIN users u ON u.id = c.instructor_id");

pub async fn course(db: &Db, id: CourseId) -> Result<Option<CourseRow>, sqlx::Error> {
    sqlx::query_as(&format!("{COURSE_SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// Fields of a new course.
pub struct NewCourse<'a> {
    pub instructor_id: UserId,
    pub category_id: Option<CategoryId>,
    pub title: &'a str,
    pub description: &'a str,
    pub price: Money,
    pub level: Level,
    pub language: &'a str,
}

pub async fn insert_course(db: &Db, c: &NewCourse<'_>, now: i64) -> Result<CourseId, sqlx::Error> {
    let (id,): (CourseId,) = sqlx::query_as(
        "INSERT INTO courses (instructor_id, category_id, title, description, price, currency, level, created_at, updated_at, language) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id",
    )
    .bind(c.instructor_id)
    .bind(c.category_id)
    .bind(c.title)
    .bind(c.description)
    .bind(c.price.amount)
    .bind(c.price.currency)
    .bind(c.level)
    .bind(now)
    .bind(c.language)
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
    pub currency: Option<Currency>,
    pub level: Option<Level>,
    pub category_id: Option<Option<CategoryId>>,
    pub language: Option<String>,
    pub forensic_watermark: Option<bool>,
}

pub async fn update_course(
    db: &Db,
    id: CourseId,
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
         category_id = CASE WHEN $7 = 1 THEN $8 ELSE category_id END, updated_at = $9, language = COALESCE($10, language), \
         forensic_watermark = COALESCE($11, forensic_watermark) WHERE id = $1",
    )
    .bind(id)
    .bind(ch.title.as_deref())
    .bind(ch.description.as_deref())
    .bind(ch.price)
    .bind(ch.currency)
    .bind(ch.level)
    .bind(set_cat)
    .bind(cat)
    .bind(now)
    .bind(ch.language.as_deref())
    .bind(ch.forensic_watermark.map(i64::from))
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn delete_course(conn: &mut AnyConnection, id: CourseId) -> Result<(), sqlx::Error> {
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
pub async fn lock_course(conn: &mut AnyConnection, id: CourseId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE courses SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Publish course `id` when it has a lecture; false when it has none.
pub async fn publish_if_not_empty(
    conn: &mut AnyConnection,
    id: CourseId,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let before: Option<(CourseStatus,)> =
        sqlx::query_as("SELECT status FROM courses WHERE id = $1")
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
    if published && before.is_some_and(|(s,)| s == CourseStatus::Draft) {
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
    pub category: Option<CategoryId>,
    pub search: Option<&'a SearchQuery>,
    pub sort: CourseSort,
}

/// How many of the best coarse matches a PostgreSQL relevance search re-ranks by trigram
/// similarity (at least the requested page's end): word similarity costs a pass over each
/// title and description, so it is computed for these candidates only, not for every match.
const RANKED_CANDIDATES: i64 = 200;

/// A page row and the number of matches in all (`COUNT(*) OVER ()`, from the same scan; -1
/// where the backend counts separately).
#[derive(FromRow)]
struct Counted {
    #[sqlx(flatten)]
    course: CourseRow,
    total: i64,
}

/// One page of published courses and how many match in all.
///
/// Without a search, a page's ids come from the sort's index alone (the offset is walked in
/// the index, not over course rows), then only those rows are read; the total is the sum of
/// the trigger-kept `published_counts` rows (migration 0015), not a `COUNT(*)`. With a search,
/// one scan of the matches yields both the page and the total.
pub async fn list_published(
    db: &Db,
    limit: i64,
    offset: i64,
    f: &CourseFilter<'_>,
) -> Result<(Vec<CourseRow>, i64), sqlx::Error> {
    const NEWEST: &str = "c.published_at DESC, c.id DESC";
    // Without a category the filter is left out entirely (not `$1 = 0 OR …`), so the planner
    // can walk the sort's index and stop at the page.
    let mut filter = if f.category.is_some() {
        "c.status = 'published' AND $1 = 1 AND (c.category_id = $2 OR c.category_id IN \
         (SELECT id FROM categories WHERE parent_id = $2))"
            .to_string()
    } else {
        "c.status = 'published' AND $1 = 0 AND $2 = 0".to_string()
    };
    let order = match f.sort {
        CourseSort::Newest | CourseSort::Relevance => NEWEST,
        CourseSort::PriceAsc => "c.price ASC, c.id DESC",
        CourseSort::PriceDesc => "c.price DESC, c.id DESC",
        // Kept on the course row by triggers (migration 0007), so these sorts use an index.
        CourseSort::Popular => "c.enrollment_count DESC, c.id DESC",
        CourseSort::Rating => "c.rating_avg DESC, c.id DESC",
    };
    let (has_cat, cat) = (f.category.is_some() as i64, f.category.map_or(0, CategoryId::get));

    let Some(q) = f.search else {
        let page_ids = format!(
            "SELECT c.id FROM courses c WHERE {filter} ORDER BY {order} LIMIT $3 OFFSET $4"
        );
        let ids = match db.backend() {
            // An array keeps the planner on the primary key whatever LIMIT it guesses.
            Backend::Postgres => format!("c.id = ANY(ARRAY({page_ids}))"),
            Backend::Sqlite => format!("c.id IN ({page_ids})"),
        };
        let rows = sqlx::query_as(&format!("{COURSE_SELECT} WHERE {ids} ORDER BY {order}"))
            .bind(has_cat)
            .bind(cat)
            .bind(limit)
            .bind(offset)
            .fetch_all(db.pool())
            .await?;
        let (total,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(courses), 0) AS BIGINT) FROM published_counts \
             WHERE $1 = 0 OR category_id = $2 OR category_id IN \
             (SELECT id FROM categories WHERE parent_id = $2)",
        )
        .bind(has_cat)
        .bind(cat)
        .fetch_one(db.pool())
        .await?;
        return Ok((rows, total));
    };

    let search = SearchSql::build(db.backend(), q, 3);
    let from = search.from;
    filter.push_str(&search.condition);
    let relevant = f.sort == CourseSort::Relevance;
    let order = if relevant { search.relevance.as_str() } else { order };
    let order_args = if relevant { search.order_args } else { Vec::new() };
    // Placeholders: $1, $2 (category), the search filter's, the relevance order's, then the page.
    let mut at = 3 + search.filter_args.len() + order_args.len();
    let mut next = || {
        at += 1;
        at - 1
    };
    let coarse = if relevant { search.candidates.as_deref() } else { None };
    // SQLite cannot compute a window beside FTS5's bm25(): it counts the matches on its own.
    let counted = match db.backend() {
        Backend::Postgres => "COUNT(*) OVER ()",
        Backend::Sqlite => "-1",
    };
    let sql = match coarse {
        Some(coarse) => {
            let (k, l, o) = (next(), next(), next());
            format!(
                concat!(
                    "WITH m AS (SELECT c.id, COUNT(*) OVER () AS total FROM {from} WHERE {filter} ",
                    "ORDER BY {coarse} LIMIT ${k}) ",
                    "SELECT ", course_columns!(), ", m.total FROM m JOIN courses c ON c.id = m.id ",
                    "JOIN users u ON u.id = c.instructor_id ORDER BY {order} LIMIT ${l} OFFSET ${o}"
                ),
                from = from,
                filter = filter,
                coarse = coarse,
                order = order,
                k = k,
                l = l,
                o = o
            )
        }
        None => {
            let (l, o) = (next(), next());
            format!(
                concat!(
                    "SELECT ",
                    course_columns!(),
                    ", {} AS total FROM {} WHERE {} ",
                    "ORDER BY {} LIMIT ${} OFFSET ${}"
                ),
                counted, from, filter, order, l, o
            )
        }
    };
    let mut page = sqlx::query_as::<_, Counted>(&sql).bind(has_cat).bind(cat);
    for arg in search.filter_args.iter().chain(&order_args) {
        page = page.bind(arg.as_str());
    }
    if coarse.is_some() {
        page = page.bind(RANKED_CANDIDATES.max(offset.saturating_add(limit)));
    }
    let page = page.bind(limit).bind(offset).fetch_all(db.pool()).await?;
    let total = match page.first() {
        Some(row) if row.total >= 0 => row.total,
        None if offset == 0 => 0,
        // Past the last page, or on SQLite: the matches are counted on their own.
        _ => {
            let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {filter}");
            let mut count = sqlx::query_as(&count_sql).bind(has_cat).bind(cat);
            for arg in &search.filter_args {
                count = count.bind(arg.as_str());
            }
            let (total,): (i64,) = count.fetch_one(db.pool()).await?;
            total
        }
    };
    Ok((page.into_iter().map(|r| r.course).collect(), total))
}
