//! SQL for users, sessions and refresh tokens.

use sqlx::{Any, Executor, FromRow};

use super::Role;
use crate::db::Db;
use crate::types::UserId;

/// A user as stored.
#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub headline: String,
    pub bio: String,
    pub created_at: i64,
}

const USER_COLUMNS: &str = "id, email, name, password_hash, role, headline, bio, created_at";

pub async fn insert_user(
    db: &Db,
    email: &str,
    name: &str,
    password_hash: &str,
    role: Role,
    now: i64,
) -> Result<UserRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO users (email, name, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {USER_COLUMNS}"
    ))
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(role)
    .bind(now)
    .fetch_one(db.pool())
    .await
}

/// How many accounts there are.
pub async fn user_count(db: &Db) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(db.pool()).await?;
    Ok(n)
}

pub async fn user_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(db.pool())
        .await
}

pub async fn user_by_id<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: UserId,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(exec)
        .await
}

/// Set the given profile fields, leaving `None`s as they are.
pub async fn update_profile(
    db: &Db,
    id: UserId,
    name: Option<&str>,
    headline: Option<&str>,
    bio: Option<&str>,
    now: i64,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE users SET name = COALESCE($2, name), headline = COALESCE($3, headline), \
         bio = COALESCE($4, bio), updated_at = $5 WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(headline)
    .bind(bio)
    .bind(now)
    .fetch_optional(db.pool())
    .await
}

pub async fn set_password_hash<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: UserId,
    hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .bind(now)
        .execute(exec)
        .await?;
    Ok(())
}

/// Make a student an instructor (other roles stay) and set the profile text, in one
/// statement. `None` when there is no such user.
pub async fn become_instructor(
    db: &Db,
    id: UserId,
    headline: &str,
    bio: &str,
    now: i64,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE users SET role = CASE WHEN role = 'student' THEN 'instructor' ELSE role END, \
         headline = $2, bio = $3, updated_at = $4 WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(headline)
    .bind(bio)
    .bind(now)
    .fetch_optional(db.pool())
    .await
}

pub async fn create_session<'e>(
    exec: impl Executor<'e, Database = Any>,
    sid: &str,
    user_id: UserId,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES ($1, $2, $3)")
        .bind(sid)
        .bind(user_id)
        .bind(now)
        .execute(exec)
        .await?;
    Ok(())
}

/// True when the session exists and has not been revoked.
pub async fn session_is_active(db: &Db, sid: &str) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL")
            .bind(sid)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}

pub async fn revoke_session(db: &Db, sid: &str, reason: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
        .bind(sid)
        .bind(now)
        .bind(reason)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Revoke every live session of `user_id` except `keep`.
pub async fn revoke_other_sessions<'e>(
    exec: impl Executor<'e, Database = Any>,
    user_id: UserId,
    keep: &str,
    reason: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $3, revoke_reason = $4 \
         WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(keep)
    .bind(now)
    .bind(reason)
    .execute(exec)
    .await?;
    Ok(done.rows_affected())
}

pub async fn insert_refresh_token<'e>(
    exec: impl Executor<'e, Database = Any>,
    sid: &str,
    hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refresh_tokens (session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sid)
        .bind(hash)
        .bind(now)
        .bind(expires_at)
        .execute(exec)
        .await?;
    Ok(())
}

/// A refresh token as stored, with the state of its session.
#[derive(Debug, FromRow)]
pub struct RefreshRow {
    pub id: i64,
    pub session_id: String,
    pub user_id: UserId,
    pub expires_at: i64,
    pub spent_at: Option<i64>,
    pub session_revoked_at: Option<i64>,
}

pub async fn find_refresh_token(db: &Db, hash: &str) -> Result<Option<RefreshRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.session_id, s.user_id, r.expires_at, r.spent_at, s.revoked_at AS session_revoked_at \
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(db.pool())
    .await
}

/// Mark the token spent. False when it was already spent (a concurrent or repeated use).
pub async fn spend_refresh_token<'e>(
    exec: impl Executor<'e, Database = Any>,
    id: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE refresh_tokens SET spent_at = $2 WHERE id = $1 AND spent_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(exec)
            .await?;
    Ok(done.rows_affected() == 1)
}
