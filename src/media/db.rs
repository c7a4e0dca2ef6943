//! SQL for videos, tus uploads and upload usage. The job queue's SQL lives in [`super::queue`].
//!
//! Functions that take an `exec` run on a pool or inside the caller's transaction, so writes
//! that touch several rows can be made one transaction by the caller.

use crate::types::{CourseId, LectureId, SectionId, UploadId, UserId, VideoId};
use sqlx::{Any, Executor, FromRow};

use super::VideoStatus;
use crate::db::Db;

/// A video as stored.
#[derive(Debug, Clone, FromRow)]
pub struct VideoRow {
    pub id: VideoId,
    pub lecture_id: LectureId,
    pub uploader_id: UserId,
    pub status: VideoStatus,
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
    /// Seconds of every rendition published so far (the whole duration once ready).
    pub ready_seconds: f64,
    /// Its renditions have forensic-watermark twins (`<name>-b/`), 0/1.
    pub watermarked: i64,
    /// The secret its segment names derive from, when it is (being) watermarked (hex).
    pub watermark_secret: Option<String>,
}

impl VideoRow {
    /// Whether players can be given it: ready, or processing with output published (and
    /// still while a retry waits, since that output stays up).
    pub fn playable(&self) -> bool {
        self.output_prefix.is_some()
            && matches!(
                self.status,
                VideoStatus::Ready | VideoStatus::Processing | VideoStatus::Queued
            )
    }
}

/// How many videos there are, and how many of them are done (ready or failed).
pub struct StatusCounts {
    pub total: i64,
    pub ready: i64,
    pub failed: i64,
}

impl StatusCounts {
    /// Ready or failed: nothing more will happen to them.
    pub fn finished(&self) -> i64 {
        self.ready + self.failed
    }
}

pub async fn status_counts(db: &Db) -> Result<StatusCounts, sqlx::Error> {
    let (total, ready, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN status = 'ready' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                CAST(COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT) FROM videos",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(StatusCounts { total, ready, failed })
}

const VIDEO_COLUMNS: &str =
    "id, lecture_id, uploader_id, status, progress, original_filename, source_size, \
     output_prefix, duration_seconds, renditions, hls_key, error, created_at, ready_at, ready_seconds, watermarked, watermark_secret";

pub async fn video(db: &Db, id: VideoId) -> Result<Option<VideoRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {VIDEO_COLUMNS} FROM videos WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// A new video, `uploading`.
pub async fn insert_video<'e, E>(
    exec: E,
    lecture_id: LectureId,
    uploader_id: UserId,
    filename: &str,
    now: i64,
) -> Result<VideoId, sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    insert_receiving_video(exec, lecture_id, uploader_id, filename, 0, now).await
}

/// A new video, `uploading`, holding `receiving_bytes` against its uploader's in-progress limit.
pub async fn insert_receiving_video<'e, E>(
    exec: E,
    lecture_id: LectureId,
    uploader_id: UserId,
    filename: &str,
    receiving_bytes: i64,
    now: i64,
) -> Result<VideoId, sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    let (id,): (VideoId,) = sqlx::query_as(
        "INSERT INTO videos (lecture_id, uploader_id, status, original_filename, receiving_bytes, created_at, updated_at) \
         VALUES ($1, $2, 'uploading', $3, $4, $5, $5) RETURNING id",
    )
    .bind(lecture_id)
    .bind(uploader_id)
    .bind(filename)
    .bind(receiving_bytes)
    .bind(now)
    .fetch_one(exec)
    .await?;
    Ok(id)
}

/// A streamed PUT in progress says it is alive and how many bytes it holds.
pub async fn touch_receiving(
    db: &Db,
    id: VideoId,
    receiving_bytes: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE videos SET receiving_bytes = $2, updated_at = $3 WHERE id = $1 AND status = 'uploading'")
        .bind(id)
        .bind(receiving_bytes)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Record the stored source's size on a video that is still `uploading`. False when it is not
/// (someone else completed or removed it): the caller rolls back.
pub async fn source_stored<'e, E>(
    exec: E,
    id: VideoId,
    size: i64,
    now: i64,
) -> Result<bool, sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    let done = sqlx::query(
        "UPDATE videos SET source_size = $2, receiving_bytes = 0, updated_at = $3 WHERE id = $1 AND status = 'uploading'",
    )
    .bind(id)
    .bind(size)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Streamed PUTs that stopped without a trace: `uploading`, no tus upload, untouched since
/// `before`.
pub async fn abandoned_put_videos(db: &Db, before: i64) -> Result<Vec<VideoId>, sqlx::Error> {
    let rows: Vec<(VideoId,)> = sqlx::query_as(
        "SELECT v.id FROM videos v WHERE v.status = 'uploading' AND v.updated_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.video_id = v.id) ORDER BY v.id LIMIT 100",
    )
    .bind(before)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn delete_video(db: &Db, id: VideoId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM videos WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// Move progress forward only: concurrent or late reports never make it go back.
pub async fn advance_progress(
    db: &Db,
    id: VideoId,
    progress: f64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE videos SET progress = $2, updated_at = $3 WHERE id = $1 AND progress < $2 AND status = 'processing'")
        .bind(id)
        .bind(progress.clamp(0.0, 1.0))
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_status(
    db: &Db,
    id: VideoId,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE videos SET status = $2, error = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(now)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn set_source_size<'e, E>(
    exec: E,
    id: VideoId,
    size: i64,
    now: i64,
) -> Result<(), sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query("UPDATE videos SET source_size = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(size)
        .bind(now)
        .execute(exec)
        .await?;
    Ok(())
}

pub async fn video_ids_of_lecture(
    db: &Db,
    lecture_id: LectureId,
) -> Result<Vec<VideoId>, sqlx::Error> {
    let rows: Vec<(VideoId,)> = sqlx::query_as("SELECT id FROM videos WHERE lecture_id = $1")
        .bind(lecture_id)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn video_ids_of_section(
    db: &Db,
    section_id: SectionId,
) -> Result<Vec<VideoId>, sqlx::Error> {
    let rows: Vec<(VideoId,)> = sqlx::query_as(
        "SELECT v.id FROM videos v JOIN lectures l ON l.id = v.lecture_id WHERE l.section_id = $1",
    )
    .bind(section_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn video_ids_of_course(
    db: &Db,
    course_id: CourseId,
) -> Result<Vec<VideoId>, sqlx::Error> {
    let rows: Vec<(VideoId,)> = sqlx::query_as(
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
    pub id: UploadId,
    pub video_id: VideoId,
    pub user_id: UserId,
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

const UPLOAD_COLUMNS: &str =
    "id, video_id, user_id, length, upload_offset, metadata, multipart_id, parts, tail_key, \
     tail_size, expires_at, completed_at";

pub async fn upload(db: &Db, id: &UploadId) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

/// A new tus upload's row.
pub struct NewUpload<'a> {
    pub id: &'a UploadId,
    pub video_id: VideoId,
    pub user_id: UserId,
    /// `None` while the client defers the length.
    pub length: Option<i64>,
    /// The `Upload-Metadata` header as sent.
    pub metadata: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert_upload<'e, E>(exec: E, u: &NewUpload<'_>) -> Result<(), sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO uploads (id, video_id, user_id, length, metadata, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(u.id)
    .bind(u.video_id)
    .bind(u.user_id)
    .bind(u.length)
    .bind(u.metadata)
    .bind(u.created_at)
    .bind(u.expires_at)
    .execute(exec)
    .await?;
    Ok(())
}

/// Take (or, with the same `token`, extend) the upload's write lock until `until`. False when
/// another request holds it.
pub async fn lock_upload(
    db: &Db,
    id: &UploadId,
    token: &str,
    now: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
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

pub async fn unlock_upload(db: &Db, id: &UploadId, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE uploads SET lock_token = NULL, locked_until = NULL WHERE id = $1 AND lock_token = $2")
        .bind(id)
        .bind(token)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Record progress of an upload (offset, parts, tail, length, expiry, completion) if `token`
/// still holds its lock, and charge `new_bytes` to its uploader's usage for today, in one
/// transaction. False when the lock was lost: nothing is written.
pub async fn save_upload_state(
    db: &Db,
    u: &UploadRow,
    token: &str,
    new_bytes: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
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
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    if new_bytes > 0 {
        charge_usage(&mut *tx, u.user_id, new_bytes, now).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Mark the upload complete (its bytes all stored, its tail gone) if `token` holds its lock
/// and it was not complete yet. False otherwise: the caller rolls back.
pub async fn mark_upload_complete<'e, E>(
    exec: E,
    id: &UploadId,
    token: &str,
    now: i64,
) -> Result<bool, sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    let done = sqlx::query(
        "UPDATE uploads SET completed_at = $2, tail_key = NULL, tail_size = 0 \
         WHERE id = $1 AND lock_token = $3 AND completed_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(token)
    .execute(exec)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Remove an upload's row and, with `video`, its video's, in one transaction.
pub async fn forget_upload(
    db: &Db,
    id: &UploadId,
    video: Option<VideoId>,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&mut *tx).await?;
    if let Some(v) = video {
        sqlx::query("DELETE FROM videos WHERE id = $1").bind(v).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Uploads whose every byte is stored but whose completion was cut short, and that nobody is
/// writing now.
pub async fn received_uploads(db: &Db, now: i64) -> Result<Vec<UploadRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE completed_at IS NULL AND length IS NOT NULL \
         AND upload_offset = length AND (lock_token IS NULL OR locked_until < $1) LIMIT 100"
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await
}

/// Videos of completed uploads that are still `uploading` with no job: what an older version
/// left when it died between marking an upload complete and enqueueing its transcode.
pub async fn completed_uploads_without_job(db: &Db) -> Result<Vec<VideoId>, sqlx::Error> {
    let rows: Vec<(VideoId,)> = sqlx::query_as(
        "SELECT v.id FROM uploads u JOIN videos v ON v.id = u.video_id WHERE u.completed_at IS NOT NULL \
         AND v.status = 'uploading' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.video_id = v.id) LIMIT 100",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Whether the course of `video`'s lecture wants its videos watermarked per viewer.
pub async fn wants_watermark(db: &Db, video: VideoId) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT c.forensic_watermark FROM videos v JOIN lectures l ON l.id = v.lecture_id \
         JOIN courses c ON c.id = l.course_id WHERE v.id = $1",
    )
    .bind(video)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some_and(|r| r.0 != 0))
}

/// The UTC day `now` falls in, as `upload_usage` counts them.
pub fn usage_day(now: i64) -> i64 {
    now.div_euclid(86_400)
}

/// Add `bytes` to what `user_id` uploaded today.
pub async fn charge_usage<'e, E>(
    exec: E,
    user_id: UserId,
    bytes: i64,
    now: i64,
) -> Result<(), sqlx::Error>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO upload_usage (user_id, day, bytes) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, day) DO UPDATE SET bytes = upload_usage.bytes + excluded.bytes",
    )
    .bind(user_id)
    .bind(usage_day(now))
    .bind(bytes)
    .execute(exec)
    .await?;
    Ok(())
}

/// Bytes `user_id` uploaded today.
pub async fn usage_today(db: &Db, user_id: UserId, now: i64) -> Result<i64, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT bytes FROM upload_usage WHERE user_id = $1 AND day = $2")
            .bind(user_id)
            .bind(usage_day(now))
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map_or(0, |r| r.0))
}

/// `user_id`'s uploads in progress, other than video `except`: how many, and the bytes they
/// hold (a tus upload its length, or its offset while the length is deferred; a streamed PUT
/// its `receiving_bytes`). Expired tus uploads no longer count.
pub async fn uploads_in_progress(
    db: &Db,
    user_id: UserId,
    except: Option<VideoId>,
    now: i64,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(CASE WHEN u.id IS NULL THEN v.receiving_bytes \
         ELSE COALESCE(u.length, u.upload_offset) END), 0) AS BIGINT) \
         FROM videos v LEFT JOIN uploads u ON u.video_id = v.id \
         WHERE v.uploader_id = $1 AND v.status = 'uploading' AND v.id <> $2 \
         AND (u.id IS NULL OR (u.completed_at IS NULL AND u.expires_at >= $3))",
    )
    .bind(user_id)
    .bind(except.map_or(-1, VideoId::get))
    .bind(now)
    .fetch_one(db.pool())
    .await
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
