//! SQL for videos and tus uploads. The job queue's SQL lives in [`super::queue`].

use sqlx::FromRow;

use crate::db::Db;

/// A video as stored.
#[derive(Debug, Clone, FromRow)]
pub struct VideoRow {
    pub id: i64,
    pub lecture_id: i64,
    pub uploader_id: i64,
    pub status: String,
    pub progress: f64,
    pub original_filename: String,
    pub source_size: Option<i64>,
    pub output_prefix: Option<String>,
    pub duration_seconds: Option<f64>,
    pub renditions: Option<String>,
    pub hls_key: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub ready_at: Option<i64>,
}

const VIDEO_COLUMNS: &str = "id, lecture_id, uploader_id, status, progress, original_filename, source_size, \
     output_prefix, duration_seconds, renditions, hls_key, error, created_at, ready_at";

pub async fn video(db: &Db, id: i64) -> Result<Option<VideoRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = $1")).bind(id).fetch_optional(db.pool()).await
}

pub async fn insert_video(db: &Db, lecture_id: i64, uploader_id: i64, filename: &str, now: i64) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO videos (lecture_id, uploader_id, status, original_filename, created_at, updated_at) \
         VALUES ($1, $2, 'uploading', $3, $4, $4) RETURNING id",
    )
    .bind(lecture_id)
    .bind(uploader_id)
    .bind(filename)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok(id)
}

pub async fn delete_video(db: &Db, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM videos WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// Move progress forward only: concurrent or late reports never make it go back.
pub async fn advance_progress(db: &Db, id: i64, progress: f64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE videos SET progress = $2, updated_at = $3 WHERE id = $1 AND progress < $2 AND status = 'processing'")
        .bind(id)
        .bind(progress.clamp(0.0, 1.0))
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_status(db: &Db, id: i64, status: &str, error: Option<&str>, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE videos SET status = $2, error = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_source_size(db: &Db, id: i64, size: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE videos SET source_size = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(size)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn video_ids_of_lecture(db: &Db, lecture_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM videos WHERE lecture_id = $1").bind(lecture_id).fetch_all(db.pool()).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn video_ids_of_section(db: &Db, section_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT v.id FROM videos v JOIN lectures l ON l.id = v.lecture_id WHERE l.section_id = $1",
    )
    .bind(section_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn video_ids_of_course(db: &Db, course_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT v.id FROM videos v JOIN lectures l ON l.id = v.lecture_id WHERE l.course_id = $1",
    )
    .bind(course_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// A tus upload as stored.
#[derive(Debug, Clone, FromRow)]
pub struct UploadRow {
    pub id: String,
    pub video_id: i64,
    pub user_id: i64,
    pub length: Option<i64>,
    pub upload_offset: i64,
    pub metadata: String,
    pub multipart_id: Option<String>,
    pub parts: String,
    pub tail_key: Option<String>,
    pub tail_size: i64,
    pub expires_at: i64,
    pub completed_at: Option<i64>,
}

const UPLOAD_COLUMNS: &str = "id, video_id, user_id, length, upload_offset, metadata, multipart_id, parts, tail_key, \
     tail_size, expires_at, completed_at";

pub async fn upload(db: &Db, id: &str) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1")).bind(id).fetch_optional(db.pool()).await
}

pub async fn insert_upload(
    db: &Db,
    id: &str,
    video_id: i64,
    user_id: i64,
    length: Option<i64>,
    metadata: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO uploads (id, video_id, user_id, length, metadata, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(video_id)
    .bind(user_id)
    .bind(length)
    .bind(metadata)
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Take (or, with the same `token`, extend) the upload's write lock until `until`. False when
/// another request holds it.
pub async fn lock_upload(db: &Db, id: &str, token: &str, now: i64, until: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE uploads SET lock_token = $2, locked_until = $4 WHERE id = $1 \
         AND (lock_token IS NULL OR lock_token = $2 OR locked_until < $3)",
    )
    .bind(id)
    .bind(token)
    .bind(now)
    .bind(until)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn unlock_upload(db: &Db, id: &str, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET lock_token = NULL, locked_until = NULL WHERE id = $1 AND lock_token = $2")
        .bind(id)
        .bind(token)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Record progress of an upload (offset, parts, tail, length, expiry, completion) if `token`
/// still holds its lock. False when the lock was lost: nothing is written.
pub async fn save_upload_state(db: &Db, u: &UploadRow, token: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE uploads SET upload_offset = $2, multipart_id = $3, parts = $4, tail_key = $5, tail_size = $6, \
         length = $7, expires_at = $8, completed_at = $9 WHERE id = $1 AND lock_token = $10",
    )
    .bind(&u.id)
    .bind(u.upload_offset)
    .bind(u.multipart_id.as_deref())
    .bind(&u.parts)
    .bind(u.tail_key.as_deref())
    .bind(u.tail_size)
    .bind(u.length)
    .bind(u.expires_at)
    .bind(u.completed_at)
    .bind(token)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete_upload(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// Unfinished uploads past their expiry.
pub async fn expired_uploads(db: &Db, now: i64) -> Result<Vec<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE completed_at IS NULL AND expires_at < $1 LIMIT 100"
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await
}
