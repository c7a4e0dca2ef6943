//! Category SQL: the two-level tree, its positions and its locks.

use sqlx::{Any, AnyConnection, Executor, FromRow};

use crate::db::Db;
use crate::types::CategoryId;

/// A category as stored.
#[derive(Debug, Clone, FromRow)]
pub struct CategoryRow {
    pub id: CategoryId,
    pub parent_id: Option<CategoryId>,
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
    id: CategoryId,
) -> Result<Option<CategoryRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CATEGORY_SELECT} WHERE id = $1")).bind(id).fetch_optional(exec).await
}

/// The children of category `id`, in position order.
pub async fn child_categories<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: CategoryId,
) -> Result<Vec<CategoryRow>, sqlx::Error> {
    sqlx::query_as(&format!("{CATEGORY_SELECT} WHERE parent_id = $1 ORDER BY position, id"))
        .bind(id)
        .fetch_all(exec)
        .await
}

/// The position after the last sibling under `parent_id` (top level when `None`).
pub async fn next_category_position(
    conn: &mut AnyConnection,
    parent_id: Option<CategoryId>,
) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(MAX(position), 0) + 1 AS BIGINT) FROM categories WHERE COALESCE(parent_id, 0) = $1")
            .bind(parent_id.map_or(0, CategoryId::get))
            .fetch_one(conn)
            .await?;
    Ok(n)
}

/// Insert `c` (its `id` is ignored) and return the new id.
pub async fn insert_category(
    conn: &mut AnyConnection,
    c: &CategoryRow,
) -> Result<CategoryId, sqlx::Error> {
    let (id,): (CategoryId,) = sqlx::query_as(
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
    pub parent_id: Option<Option<CategoryId>>,
    pub position: Option<i64>,
}

pub async fn update_category(
    conn: &mut AnyConnection,
    id: CategoryId,
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
pub async fn delete_category(conn: &mut AnyConnection, id: CategoryId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM categories WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Take the write locks of categories `ids` (smallest id first, so two transactions never
/// wait on each other in a circle), as the transaction's first statements. False when one
/// of them does not exist. Changes that depend on the tree's shape (a parent must be
/// top-level, a category with children cannot become a child) lock every category they
/// look at, so two of them cannot each pass their check and together make three levels.
pub async fn lock_categories(
    conn: &mut AnyConnection,
    ids: &[CategoryId],
) -> Result<bool, sqlx::Error> {
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

pub async fn category_exists(db: &Db, id: CategoryId) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_as::<_, (i64,)>("SELECT id FROM categories WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .is_some())
}

/// The first subcategory (a category with a parent), if any.
pub async fn first_subcategory(db: &Db) -> Result<Option<CategoryId>, sqlx::Error> {
    let row: Option<(CategoryId,)> =
        sqlx::query_as("SELECT id FROM categories WHERE parent_id IS NOT NULL ORDER BY id LIMIT 1")
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|r| r.0))
}
