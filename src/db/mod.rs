//! Database pools for SQLite and PostgreSQL, migrations, and the few dialect-specific helpers.
//!
//! Queries are written once, in the portable subset both backends share, and run through
//! sqlx's `Any` driver: `$1` placeholders (SQLite accepts them too), `RETURNING`, integer
//! columns for flags and times (Unix seconds), `CAST(... AS BIGINT)` around aggregates.
//! Where the dialects really differ (search, job claiming) the code asks [`Db::backend`].

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::config::Secret;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which SQL engine is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool and the backend it talks to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connect to `url` (`sqlite://…` or `postgres://…`). SQLite gets WAL, foreign keys and a
    /// busy timeout on every connection.
    pub async fn connect(url: &Secret, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = url.expose();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let opts = AnyConnectOptions::from_str(url).context("parsing the database URL")?;
        if backend == Backend::Sqlite {
            create_private_sqlite_file(url).await?;
        }
        let mut pool_opts = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            pool_opts = pool_opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                         PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_opts
            .connect_with(opts)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        Ok(Db { pool, backend })
    }

    /// Bring the schema up to date.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.context("running database migrations")?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begin a transaction that may write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting up to the busy timeout for it): a deferred transaction that reads
    /// first and writes later fails outright (`SQLITE_BUSY_SNAPSHOT`, no waiting helps) when
    /// another connection committed a write in between. On PostgreSQL a plain `BEGIN`.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A trivial round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Create the SQLite file of `url` as 0600 if it does not exist yet, before SQLite creates it
/// with the process umask (0644 as a rule): it holds password hashes and sessions. SQLite
/// gives its `-wal` and `-shm` files the database file's mode. In-memory databases and
/// existing files are left alone.
async fn create_private_sqlite_file(url: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let opts =
        sqlx::sqlite::SqliteConnectOptions::from_str(url).context("parsing the SQLite URL")?;
    let path = opts.get_filename().to_path_buf();
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || url.contains("mode=memory")
    {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A directory that does not exist yet: leave the error to SQLite, which words it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("creating the database file {}", path.display()))),
        }
    })
    .await?
}

/// True when `err` is a unique-constraint violation: the one place that knows how both
/// backends report it, so callers can answer 409 instead of 500.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                // SQLite's extended codes 2067 (UNIQUE) and 1555 (PRIMARY KEY).
                || matches!(db.code().as_deref(), Some("23505") | Some("2067") | Some("1555"))
        }
        _ => false,
    }
}

/// True when `err` says the database is unreachable or unable to serve right now rather than
/// that this query is wrong: the pool timed out or is closed, the connection broke (I/O, TLS,
/// a protocol error), the server is shutting down, out of connections, disk or memory, or
/// the schema this server expects is missing (a database being restored or migrated under
/// it). These answer 503 `unavailable` — retry later — and never pass for "not found".
pub fn is_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // PostgreSQL SQLSTATEs: 08 connection exception, 53 insufficient resources,
            // 57P01..57P05 operator intervention (shutdown, cannot connect now), 58 system
            // error (I/O), 42P01 undefined table.
            let postgres = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code.starts_with("58")
                || code == "42P01";
            // SQLite primary result codes (the low byte of an extended one): BUSY, LOCKED,
            // NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB. A missing table is a
            // plain SQLITE_ERROR, told apart by its message.
            let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some_and(|_| {
                let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(0);
                matches!(primary, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 26)
                    || db.message().starts_with("no such table")
            });
            postgres || sqlite
        }
        _ => false,
    }
}

/// Current time as Unix seconds, the unit every timestamp column uses.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Unix seconds as RFC 3339 UTC, as the API prints times.
pub fn rfc3339(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction that reads, then writes, while another connection commits a write in
    /// between (two progressive-publish steps and a playback heartbeat, say): both must land.
    #[tokio::test]
    async fn a_read_then_write_transaction_survives_a_concurrent_write() {
        let dir = tempfile::tempdir().unwrap();
        let url = Secret::new(format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()));
        let db = Db::connect(&url, 4).await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (id, n) VALUES (1, 0), (2, 0)")
            .execute(db.pool())
            .await
            .unwrap();

        let mut tx = db.begin().await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT n FROM t WHERE id = 1").fetch_one(&mut *tx).await.unwrap();
        let other = tokio::spawn({
            let db = db.clone();
            async move { sqlx::query("UPDATE t SET n = n + 1 WHERE id = 2").execute(db.pool()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("UPDATE t SET n = $1 WHERE id = 1")
            .bind(n + 1)
            .execute(&mut *tx)
            .await
            .expect("the write after the read");
        tx.commit().await.unwrap();
        other.await.unwrap().expect("the other connection's write");
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT n FROM t ORDER BY id").fetch_all(db.pool()).await.unwrap();
        assert_eq!(rows, vec![(1,), (1,)]);
    }
}
