//! Course categories: a two-level tree (top-level categories and their children), seeded by
//! the migration `0006_community.sql` and changed by admins only.
//!
//! Each category has a Korean `name`, an English `name_en` and an ASCII `slug` (unique).
//! Two levels is a rule, not an accident: a child's parent must be top-level, and a category
//! with children cannot become someone's child. Deleting a category that still has children is
//! refused (409); deleting a leaf leaves its courses uncategorised.

use crate::types::text::TextRule;
use serde::Serialize;
use utoipa::ToSchema;

use super::db::{self, CategoryChanges, CategoryRow};
use super::text;
use crate::accounts::Caller;
use sqlx::AnyConnection;

use crate::db::{is_unique_violation, Db};
use crate::error::{Error, Result};
use crate::types::CategoryId;

/// A category and, for a top-level one, its children (each with `children: []`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Category {
    pub id: CategoryId,
    /// Null for a top-level category.
    pub parent_id: Option<CategoryId>,
    /// Korean name, e.g. `개발·프로그래밍`.
    pub name: String,
    /// English name, e.g. `Development`; may be empty.
    pub name_en: String,
    /// ASCII, unique: lowercase letters, digits and single hyphens.
    pub slug: String,
    /// Sort key among siblings, ascending.
    pub position: i64,
    #[schema(no_recursion)]
    pub children: Vec<Category>,
}

impl From<CategoryRow> for Category {
    fn from(r: CategoryRow) -> Self {
        Category {
            id: r.id,
            parent_id: r.parent_id,
            name: r.name,
            name_en: r.name_en,
            slug: r.slug,
            position: r.position,
            children: Vec::new(),
        }
    }
}

/// The whole tree: top-level categories in order, each with its children in order.
pub async fn tree(db: &Db) -> Result<Vec<Category>> {
    let rows = db::categories(db).await?;
    let (top, children): (Vec<CategoryRow>, Vec<CategoryRow>) =
        rows.into_iter().partition(|r| r.parent_id.is_none());
    let mut tree: Vec<Category> = top.into_iter().map(Category::from).collect();
    for child in children {
        if let Some(parent) = tree.iter_mut().find(|p| Some(p.id) == child.parent_id) {
            parent.children.push(child.into());
        }
    }
    Ok(tree)
}

/// One category with its children; 404 when there is none.
async fn category(db: &Db, id: CategoryId) -> Result<Category> {
    let mut category =
        Category::from(db::category(db.pool(), id).await?.ok_or(Error::not_found("category"))?);
    category.children =
        db::child_categories(db.pool(), id).await?.into_iter().map(Category::from).collect();
    Ok(category)
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(Error::denied("admins_only", "only admins change categories"))
    }
}

fn slug(s: &str) -> Result<String> {
    let ok = (1..=64).contains(&s.len())
        && s.split('-').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::invalid(
            "invalid_slug",
            "slug is 1 to 64 lowercase ASCII letters and digits, words joined by single hyphens",
        ))
    }
}

fn position(p: i64) -> Result<i64> {
    if (1..=1_000_000).contains(&p) {
        Ok(p)
    } else {
        Err(Error::invalid("invalid_position", "position is 1 to 1000000"))
    }
}

/// Check that `parent_id` names a top-level category (inside a transaction that has locked it).
async fn top_level_parent(conn: &mut AnyConnection, parent_id: CategoryId) -> Result<CategoryId> {
    match db::category(conn, parent_id).await? {
        Some(p) if p.parent_id.is_none() => Ok(p.id),
        Some(_) => Err(Error::invalid(
            "invalid_parent",
            "categories have two levels: the parent must be top-level",
        )),
        None => Err(Error::invalid("invalid_parent", format!("there is no category {parent_id}"))),
    }
}

fn slug_taken(e: sqlx::Error) -> Error {
    if is_unique_violation(&e) {
        Error::conflict("slug_taken", "another category has this slug")
    } else {
        e.into()
    }
}

/// A new category from an admin.
pub struct CategoryInput {
    pub name: String,
    pub name_en: Option<String>,
    pub slug: String,
    /// A top-level category to put it under; none makes it top-level.
    pub parent_id: Option<CategoryId>,
    /// Default: after its siblings.
    pub position: Option<i64>,
}

pub async fn create(db: &Db, caller: &Caller, input: CategoryInput) -> Result<Category> {
    require_admin(caller)?;
    let name = text("name", &input.name, TextRule::NAME)?;
    let name_en = text("name_en", input.name_en.as_deref().unwrap_or(""), TextRule::OPTIONAL_NAME)?;
    let slug = slug(&input.slug)?;
    let position = input.position.map(position).transpose()?;
    let (parent_id, position, mut tx) = match input.parent_id {
        // Under a parent: lock it first (it must stay top-level while the child goes in).
        Some(p) => {
            let mut tx = db.begin().await?;
            if !db::lock_categories(&mut tx, &[p]).await? {
                return Err(Error::invalid("invalid_parent", format!("there is no category {p}")));
            }
            let parent = top_level_parent(&mut tx, p).await?;
            let position = match position {
                Some(pos) => pos,
                None => db::next_category_position(&mut tx, Some(parent)).await?,
            };
            (Some(parent), position, tx)
        }
        // At the top level nothing constrains the insert; positions are sort keys, not unique.
        None => {
            let position = match position {
                Some(pos) => pos,
                None => db::next_category_position(&mut *db.pool().acquire().await?, None).await?,
            };
            (None, position, db.begin().await?)
        }
    };
    let row = CategoryRow { id: CategoryId::new(0), parent_id, name, name_en, slug, position };
    let id = db::insert_category(&mut tx, &row).await.map_err(slug_taken)?;
    tx.commit().await?;
    category(db, id).await
}

/// Changes to a category; `None` leaves a field alone. `parent_id: Some(None)` makes it top-level.
#[derive(Default)]
pub struct CategoryPatch {
    pub name: Option<String>,
    pub name_en: Option<String>,
    pub slug: Option<String>,
    pub parent_id: Option<Option<CategoryId>>,
    pub position: Option<i64>,
}

pub async fn update(
    db: &Db,
    caller: &Caller,
    id: CategoryId,
    p: CategoryPatch,
) -> Result<Category> {
    require_admin(caller)?;
    let mut changes = CategoryChanges {
        name: p.name.as_deref().map(|n| text("name", n, TextRule::NAME)).transpose()?,
        name_en: p
            .name_en
            .as_deref()
            .map(|n| text("name_en", n, TextRule::OPTIONAL_NAME))
            .transpose()?,
        slug: p.slug.as_deref().map(slug).transpose()?,
        parent_id: None,
        position: p.position.map(position).transpose()?,
    };
    let new_parent = match p.parent_id {
        Some(Some(parent)) if parent == id => {
            return Err(Error::invalid("invalid_parent", "a category cannot be its own parent"));
        }
        Some(Some(parent)) => Some(parent),
        _ => None,
    };
    let mut tx = db.begin().await?;
    let locked: Vec<CategoryId> = std::iter::once(id).chain(new_parent).collect();
    if !db::lock_categories(&mut tx, &locked).await? {
        return Err(match db::category(&mut *tx, id).await? {
            None => Error::not_found("category"),
            Some(_) => Error::invalid(
                "invalid_parent",
                format!("there is no category {}", new_parent.map_or(0, CategoryId::get)),
            ),
        });
    }
    changes.parent_id = match (p.parent_id, new_parent) {
        (Some(Some(_)), Some(parent)) => {
            let parent = top_level_parent(&mut tx, parent).await?;
            if !db::child_categories(&mut *tx, id).await?.is_empty() {
                return Err(Error::invalid(
                    "invalid_parent",
                    "this category has children; categories have two levels",
                ));
            }
            Some(Some(parent))
        }
        (other, _) => other,
    };
    db::update_category(&mut tx, id, &changes).await.map_err(slug_taken)?;
    tx.commit().await?;
    category(db, id).await
}

/// Delete a category without children; its courses become uncategorised. A child being added
/// meanwhile locks it too, so the check and the delete see the same children.
pub async fn delete(db: &Db, caller: &Caller, id: CategoryId) -> Result<()> {
    require_admin(caller)?;
    let mut tx = db.begin().await?;
    if !db::lock_categories(&mut tx, &[id]).await? {
        return Err(Error::not_found("category"));
    }
    if !db::child_categories(&mut *tx, id).await?.is_empty() {
        return Err(Error::conflict(
            "category_has_children",
            "move or delete this category's children first",
        ));
    }
    db::delete_category(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}
