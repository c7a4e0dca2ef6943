//! The two migration trees describe one schema: a fresh SQLite and a fresh PostgreSQL database,
//! each migrated by Lectern, have the same tables, columns (types normalised), primary keys,
//! indexes, foreign keys and triggers, and their triggers have the same effects.
//!
//! The search structures are the one designed difference (SQLite: an FTS5 table kept by
//! triggers; PostgreSQL: pg_trgm indexes), listed in [`DIALECT_SEARCH`].

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TempPgDb;
use lectern::config::Secret;
use lectern::db::Db;
use sqlx::{Connection, Row};

/// Dialect-specific search structures (tables, triggers and indexes by name prefix).
const DIALECT_SEARCH: &[&str] = &["courses_fts", "courses_title_trgm", "courses_description_trgm"];

fn is_search(name: &str) -> bool {
    DIALECT_SEARCH.iter().any(|p| name.starts_with(p))
}

/// What a schema consists of, in terms both dialects share.
#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    /// table → column → (type, not null)
    columns: BTreeMap<String, BTreeMap<String, (String, bool)>>,
    /// table → primary-key columns
    primary_keys: BTreeMap<String, Vec<String>>,
    /// (table, columns with `DESC` marks, unique, partial)
    indexes: BTreeSet<(String, String, bool, bool)>,
    /// (table, columns, referenced table, referenced columns, on delete)
    foreign_keys: BTreeSet<(String, String, String, String, String)>,
    /// (table, timing, event)
    triggers: BTreeSet<(String, String, String)>,
}

fn normalise_type(t: &str) -> String {
    match t.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "int" | "int8" => "integer",
        "text" | "character varying" => "text",
        "real" | "double precision" | "float8" => "real",
        "blob" | "bytea" => "blob",
        other => return other.to_string(),
    }
    .to_string()
}

async fn sqlite_schema(url: &str) -> Schema {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let mut s = Schema::default();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in tables.into_iter().filter(|t| !is_search(t)) {
        sqlite_columns(&mut conn, &table, &mut s).await;
        sqlite_indexes(&mut conn, &table, &mut s).await;
        sqlite_foreign_keys(&mut conn, &table, &mut s).await;
    }
    for row in sqlx::query("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
    {
        let (name, table, sql): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if is_search(&name) {
            continue;
        }
        let words: Vec<String> = sql.split_whitespace().map(|w| w.to_ascii_lowercase()).collect();
        let at = words.iter().position(|w| w == "after" || w == "before").expect("trigger timing");
        s.triggers.insert((table, words[at].clone(), words[at + 1].clone()));
    }
    s
}

/// The columns and primary key of `table`.
async fn sqlite_columns(conn: &mut sqlx::SqliteConnection, table: &str, s: &mut Schema) {
    let mut pk: Vec<(i64, String)> = Vec::new();
    for row in sqlx::query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
    {
        let name: String = row.get(0);
        let pk_pos: i64 = row.get(3);
        // A primary key is never null, whatever the declaration says (SQLite lets INTEGER
        // PRIMARY KEY omit NOT NULL).
        let not_null = row.get::<i64, _>(2) == 1 || pk_pos > 0;
        s.columns
            .entry(table.to_string())
            .or_default()
            .insert(name.clone(), (normalise_type(row.get(1)), not_null));
        if pk_pos > 0 {
            pk.push((pk_pos, name));
        }
    }
    pk.sort();
    s.primary_keys.insert(table.to_string(), pk.into_iter().map(|(_, n)| n).collect());
}

/// The indexes of `table` (but the primary key's and search's).
async fn sqlite_indexes(conn: &mut sqlx::SqliteConnection, table: &str, s: &mut Schema) {
    for row in sqlx::query("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?)")
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
    {
        let (name, unique, origin, partial): (String, i64, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if origin == "pk" || is_search(&name) {
            continue;
        }
        let cols: Vec<String> = sqlx::query(
            "SELECT name, \"desc\" FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno",
        )
        .bind(&name)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            if r.get::<i64, _>(1) == 1 {
                format!("{} desc", r.get::<String, _>(0))
            } else {
                r.get(0)
            }
        })
        .collect();
        s.indexes.insert((table.to_string(), cols.join(","), unique == 1, partial == 1));
    }
}

/// The foreign keys of `table`.
async fn sqlite_foreign_keys(conn: &mut sqlx::SqliteConnection, table: &str, s: &mut Schema) {
    let mut fks: BTreeMap<i64, (Vec<String>, String, Vec<String>, String)> = BTreeMap::new();
    for row in sqlx::query("SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq")
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
    {
        let e = fks.entry(row.get(0)).or_insert_with(|| (Vec::new(), row.get(1), Vec::new(), row.get(4)));
        e.0.push(row.get(2));
        // `REFERENCES users` without a column means its primary key.
        e.2.push(row.get::<Option<String>, _>(3).unwrap_or_else(|| "id".into()));
    }
    for (_, (from, to_table, to, on_delete)) in fks {
        s.foreign_keys.insert((
            table.to_string(),
            from.join(","),
            to_table,
            to.join(","),
            on_delete.to_ascii_lowercase(),
        ));
    }
}

async fn postgres_schema(url: &str) -> Schema {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut s = Schema::default();
    for row in sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable = 'NO' \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    {
        s.columns.entry(row.get(0)).or_default().insert(row.get(1), (normalise_type(row.get(2)), row.get(3)));
    }
    for table in s.columns.keys() {
        s.primary_keys.insert(table.clone(), Vec::new());
    }
    for row in sqlx::query(
        "SELECT t.relname::text, \
           ARRAY(SELECT a.attname::text || CASE WHEN (ix.indoption[k.ord - 1] & 1) = 1 THEN ' desc' ELSE '' END \
                 FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord), \
           ix.indisunique, ix.indpred IS NOT NULL, ix.indisprimary, i.relname::text \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    {
        let (table, cols, unique, partial, primary, name): (String, Vec<String>, bool, bool, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        if primary {
            s.primary_keys.insert(table, cols);
        } else if !is_search(&name) {
            s.indexes.insert((table, cols.join(","), unique, partial));
        }
    }
    for row in sqlx::query(
        "SELECT t.relname::text, \
           ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord), \
           r.relname::text, \
           ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.ord), \
           CASE c.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'd' THEN 'set default' \
                              WHEN 'r' THEN 'restrict' ELSE 'no action' END \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace WHERE c.contype = 'f' AND n.nspname = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    {
        let (from, to): (Vec<String>, Vec<String>) = (row.get(1), row.get(3));
        s.foreign_keys.insert((row.get(0), from.join(","), row.get(2), to.join(","), row.get(4)));
    }
    for row in sqlx::query(
        "SELECT event_object_table::text, lower(action_timing::text), lower(event_manipulation::text), trigger_name::text \
         FROM information_schema.triggers WHERE trigger_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    {
        if !is_search(&row.get::<String, _>(3)) {
            s.triggers.insert((row.get(0), row.get(1), row.get(2)));
        }
    }
    s
}

/// A fresh SQLite database and a fresh PostgreSQL one, both migrated by Lectern.
async fn migrated_twins() -> (tempfile::TempDir, String, TempPgDb) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("twin.db").display());
    let pg = TempPgDb::create().await;
    for url in [&sqlite, &pg.url] {
        let db = Db::connect(&Secret::new(url.clone()), 2).await.unwrap();
        db.migrate().await.unwrap();
        db.close().await;
    }
    (dir, sqlite, pg)
}

/// Report every difference, not just the first.
fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
    out: &mut Vec<String>,
) {
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{what} {k:?}: only in SQLite")),
            Some(w) if w != v => out.push(format!("{what} {k:?}: SQLite {v:?}, PostgreSQL {w:?}")),
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(k)) {
        out.push(format!("{what} {k:?}: only in PostgreSQL"));
    }
}

fn diff_sets<T: Ord + std::fmt::Debug>(
    what: &str,
    a: &BTreeSet<T>,
    b: &BTreeSet<T>,
    out: &mut Vec<String>,
) {
    out.extend(a.difference(b).map(|x| format!("{what} {x:?}: only in SQLite")));
    out.extend(b.difference(a).map(|x| format!("{what} {x:?}: only in PostgreSQL")));
}

#[tokio::test]
async fn both_migration_trees_build_the_same_schema() {
    let (_dir, sqlite, pg) = migrated_twins().await;
    let (a, b) = (sqlite_schema(&sqlite).await, postgres_schema(&pg.url).await);
    for s in [&a, &b] {
        assert!(
            s.columns.contains_key("users") && s.columns.contains_key("orders"),
            "{:?}",
            s.columns.keys()
        );
        assert!(
            s.indexes.len() > 10 && s.foreign_keys.len() > 10 && s.triggers.len() > 4,
            "{s:#?}"
        );
        assert_eq!(s.primary_keys["users"], ["id"]);
    }
    let mut out = Vec::new();
    let cols = |s: &Schema| -> BTreeMap<(String, String), (String, bool)> {
        s.columns
            .iter()
            .flat_map(|(t, cs)| cs.iter().map(move |(c, v)| ((t.clone(), c.clone()), v.clone())))
            .collect()
    };
    diff("column", &cols(&a), &cols(&b), &mut out);
    diff("primary key of", &a.primary_keys, &b.primary_keys, &mut out);
    diff_sets("index", &a.indexes, &b.indexes, &mut out);
    diff_sets("foreign key", &a.foreign_keys, &b.foreign_keys, &mut out);
    diff_sets("trigger", &a.triggers, &b.triggers, &mut out);
    assert!(out.is_empty(), "the migration trees drifted apart:\n{}", out.join("\n"));
}

/// The same writes through each database's triggers leave the same figures.
#[tokio::test]
async fn triggers_keep_the_same_figures_on_both_databases() {
    let (_dir, sqlite, pg) = migrated_twins().await;
    let mut figures = Vec::new();
    for url in [&sqlite, &pg.url] {
        let db = Db::connect(&Secret::new(url.clone()), 2).await.unwrap();
        let pool = db.pool();
        for sql in [
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (1, 't@x', 'T', 'h', 0, 0)",
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (2, 'a@x', 'A', 'h', 0, 0)",
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (3, 'b@x', 'B', 'h', 0, 0)",
            "INSERT INTO courses (id, instructor_id, title, price, currency, created_at, updated_at) VALUES (10, 1, 'One', 0, 'KRW', 0, 0)",
            "INSERT INTO courses (id, instructor_id, title, price, currency, created_at, updated_at) VALUES (11, 1, 'Two', 0, 'KRW', 0, 0)",
            "INSERT INTO enrollments (user_id, course_id, source, created_at) VALUES (2, 10, 'order', 0)",
            "INSERT INTO enrollments (user_id, course_id, source, created_at) VALUES (3, 10, 'order', 0)",
            "INSERT INTO reviews (course_id, user_id, rating, content, created_at, updated_at) VALUES (10, 2, 5, '', 0, 0)",
            "INSERT INTO reviews (course_id, user_id, rating, content, created_at, updated_at) VALUES (10, 3, 2, '', 0, 0)",
            "UPDATE enrollments SET revoked_at = 1 WHERE user_id = 2",
            "UPDATE reviews SET rating = 4 WHERE user_id = 2",
            // Rows that move from one course to another must leave both courses right.
            "UPDATE enrollments SET course_id = 11 WHERE user_id = 3",
            "UPDATE reviews SET course_id = 11 WHERE user_id = 3",
        ] {
            sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let rows = sqlx::query(
            "SELECT id, enrollment_count, rating_count, rating_avg FROM courses ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        figures.push(
            rows.iter()
                .map(|r| {
                    (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2), r.get::<f64, _>(3))
                })
                .collect::<Vec<_>>(),
        );
        db.close().await;
    }
    assert_eq!(figures[0], vec![(10, 0, 1, 4.0), (11, 1, 1, 2.0)], "SQLite");
    assert_eq!(figures[1], vec![(10, 0, 1, 4.0), (11, 1, 1, 2.0)], "PostgreSQL");
}
