//! The transcode job queue, kept in the database.
//!
//! A job is `queued` until a worker claims it, which makes it `running` under a lease: the
//! worker's id and an expiry it pushes forward with heartbeats. A worker that dies stops
//! heartbeating; once its lease expires the job is claimable again and the next claim takes it
//! over (counting an attempt). Failures are retried with exponential backoff until
//! `max_attempts`, then the job and its video are `failed` with the reason. Input that can never
//! work (not a video) fails at once. A partial unique index keeps one active job per video.
//!
//! Claiming is the one dialect-specific statement: PostgreSQL uses `FOR UPDATE SKIP LOCKED` so
//! concurrent workers never queue behind each other; SQLite has a single writer, so the same
//! `UPDATE … WHERE id = (SELECT …)` is atomic there as it stands.
//!
//! Only the lease holder can finish a job ([`publish`], [`fail`], [`release`] all check the
//! owner), so a worker that lost its lease can never publish a second output set.
//!
//! Every attempt also has a deadline, its wall-clock budget: set at the claim, moved once the
//! video's duration is known ([`set_deadline`]), and never passed by a heartbeat — a lease
//! extended by a worker whose job is stuck still lapses at the deadline.
//!
//! Every write that touches more than one row (a job and its video) runs in one transaction,
//! and the table's constraints (migration 0009) make half-done states impossible: a job is
//! leased exactly while it runs, only a running attempt has a deadline, attempts stay within
//! `1..=max_attempts`, finished jobs have a finishing time.

use crate::types::{CourseId, JobId, LectureId, VideoId};
use sqlx::FromRow;

use super::VideoStatus;
use crate::db::{now, Backend, Db};
use crate::webhooks::EventType;

/// A claimed job.
#[derive(Debug, Clone, FromRow)]
pub struct Job {
    pub id: JobId,
    pub video_id: VideoId,
    pub attempts: i64,
    pub max_attempts: i64,
}

/// Put a transcode job for `video_id` on the queue and mark the video `queued`. `db` is a pool
/// or a connection, or the caller's transaction (the two writes then run in a savepoint of it,
/// so they commit or roll back with the caller's own).
pub async fn enqueue<'a, A>(
    db: A,
    video_id: VideoId,
    max_attempts: i64,
) -> Result<JobId, sqlx::Error>
where
    A: sqlx::Acquire<'a, Database = sqlx::Any>,
{
    let t = now();
    let mut tx = db.begin().await?;
    let (id,): (JobId,) = sqlx::query_as(
        "INSERT INTO jobs (video_id, status, max_attempts, run_after, created_at, updated_at) \
         VALUES ($1, 'queued', $2, $3, $3, $3) RETURNING id",
    )
    .bind(video_id)
    .bind(max_attempts.max(1))
    .bind(t)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE videos SET status = 'queued', progress = 0, error = NULL, updated_at = $2 WHERE id = $1")
        .bind(video_id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// Claim the next runnable job (queued and due, or running with an expired lease) for
/// `worker`, leased for `lease_secs`, with `budget_secs` until its deadline. The job and its
/// video change together.
pub async fn claim(
    db: &Db,
    worker: &str,
    lease_secs: i64,
    budget_secs: i64,
) -> Result<Option<Job>, sqlx::Error> {
    let t = now();
    let lock = match db.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
         deadline_at = $4, updated_at = $3 WHERE id = (SELECT id FROM jobs WHERE attempts < max_attempts AND \
         ((status = 'queued' AND run_after <= $3) OR (status = 'running' AND lease_expires_at < $3)) \
         ORDER BY run_after, id LIMIT 1 {lock}) RETURNING id, video_id, attempts, max_attempts"
    );
    let mut tx = db.begin().await?;
    let job: Option<Job> = sqlx::query_as(&sql)
        .bind(worker)
        .bind(t + lease_secs.min(budget_secs))
        .bind(t)
        .bind(t + budget_secs)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(job) = &job {
        sqlx::query("UPDATE videos SET status = 'processing', updated_at = $2 WHERE id = $1 AND status <> 'ready'")
            .bind(job.video_id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(job)
}

/// Extend the lease by `lease_secs`, but never past the attempt's deadline. False when
/// `worker` no longer holds it (it expired and was taken over).
pub async fn heartbeat(
    db: &Db,
    job: JobId,
    worker: &str,
    lease_secs: i64,
) -> Result<bool, sqlx::Error> {
    let t = now();
    let done = sqlx::query(
        "UPDATE jobs SET lease_expires_at = CASE WHEN deadline_at IS NOT NULL AND deadline_at < $3 THEN deadline_at \
         ELSE $3 END, updated_at = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(job)
    .bind(worker)
    .bind(t + lease_secs)
    .bind(t)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Move the running attempt's deadline to `deadline` (Unix seconds), once the budget is known.
/// False when `worker` no longer holds the job.
pub async fn set_deadline(
    db: &Db,
    job: JobId,
    worker: &str,
    deadline: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET deadline_at = $3, updated_at = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(job)
    .bind(worker)
    .bind(deadline)
    .bind(now())
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a finished transcode publishes.
pub struct Published<'a> {
    pub output_prefix: &'a str,
    pub duration_seconds: f64,
    pub renditions_json: &'a str,
    /// The AES-128 key (hex) the segments were encrypted with, if they were.
    pub hls_key: Option<&'a str>,
    /// How long the attempt took, start to publish.
    pub attempt_seconds: f64,
    /// Where the picture changes at once (chapter starts, seconds; the first at 0).
    pub chapters: &'a [f64],
    /// Every rendition has its forensic-watermark twin (`<name>-b/`).
    pub watermarked: bool,
}

/// Atomically: mark the job done (if `worker` still holds it), the video ready with its
/// outputs, the lecture pointed at the new video with its duration, and the course total
/// recomputed. [`PublishOutcome::LeaseLost`] when another worker holds the job now.
pub async fn publish(
    db: &Db,
    job: &Job,
    worker: &str,
    out: &Published<'_>,
) -> Result<PublishOutcome, sqlx::Error> {
    let t = now();
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE jobs SET status = 'done', finished_at = $3, updated_at = $3, lease_owner = NULL, lease_expires_at = NULL, \
         deadline_at = NULL, failure_reason = NULL, attempt_seconds = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(t)
    .bind(out.attempt_seconds)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(PublishOutcome::LeaseLost);
    }
    let shown_before: (Option<String>,) =
        sqlx::query_as("SELECT output_prefix FROM videos WHERE id = $1")
            .bind(job.video_id)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query(
        "UPDATE videos SET status = 'ready', progress = 1, output_prefix = $2, duration_seconds = $3, renditions = $4, \
         error = NULL, ready_at = $5, updated_at = $5, hls_key = $6, ready_seconds = $3, watermarked = $7 WHERE id = $1",
    )
    .bind(job.video_id)
    .bind(out.output_prefix)
    .bind(out.duration_seconds)
    .bind(out.renditions_json)
    .bind(t)
    .bind(out.hls_key)
    .bind(i64::from(out.watermarked))
    .execute(&mut *tx)
    .await?;
    point_lecture(&mut tx, job.video_id, out.duration_seconds).await?;
    store_chapters(&mut tx, job.video_id, out.chapters, out.duration_seconds).await?;
    // Ready videos a newer ready one supersedes are no longer needed.
    let replaced: Vec<(VideoId,)> = sqlx::query_as(
        "SELECT v.id FROM videos v WHERE v.status = 'ready' AND v.lecture_id = (SELECT lecture_id FROM videos WHERE id = $1) \
         AND v.id < (SELECT MAX(n.id) FROM videos n WHERE n.lecture_id = v.lecture_id AND n.status = 'ready')",
    )
    .bind(job.video_id)
    .fetch_all(&mut *tx)
    .await?;
    if shown_before.0.is_none() {
        // Published whole without having been playable before (no segment reached the store
        // ahead of the end).
        video_event(&mut tx, EventType::VideoPlayable, job.video_id).await?;
    }
    video_event(&mut tx, EventType::VideoReady, job.video_id).await?;
    tx.commit().await?;
    Ok(PublishOutcome::Published { replaced: replaced.into_iter().map(|(id,)| id).collect() })
}

/// Keep the chapter starts found in `video_id` (0 first, whatever was found) and drop the
/// owner's chapters of its lecture that now start past its end (if it plays that video).
async fn store_chapters(
    conn: &mut sqlx::AnyConnection,
    video_id: VideoId,
    starts: &[f64],
    duration: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM video_chapters WHERE video_id = $1")
        .bind(video_id)
        .execute(&mut *conn)
        .await?;
    let mut ms: Vec<i64> = std::iter::once(0)
        .chain(starts.iter().map(|s| (s * 1000.0).round() as i64))
        .filter(|&m| m == 0 || (m > 0 && (m as f64) < duration * 1000.0))
        .collect();
    ms.sort_unstable();
    ms.dedup();
    for m in ms {
        sqlx::query("INSERT INTO video_chapters (video_id, start_ms) VALUES ($1, $2)")
            .bind(video_id)
            .bind(m)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "DELETE FROM lecture_chapters WHERE start_ms > 0 AND start_ms >= $2 \
         AND lecture_id = (SELECT id FROM lectures WHERE video_id = $1)",
    )
    .bind(video_id)
    .bind((duration * 1000.0).floor() as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Point the lecture of `video_id` at it if it is the newest video the lecture could play
/// ("newest wins": an older upload finishing late does not take over), with `duration` as the
/// lecture's, and recompute the course's total.
async fn point_lecture(
    conn: &mut sqlx::AnyConnection,
    video_id: VideoId,
    duration: f64,
) -> Result<(), sqlx::Error> {
    let lecture: Option<(LectureId, CourseId, Option<VideoId>)> = sqlx::query_as(
        "SELECT l.id, l.course_id, l.video_id FROM lectures l JOIN videos v ON v.lecture_id = l.id WHERE v.id = $1",
    )
    .bind(video_id)
    .fetch_optional(&mut *conn)
    .await?;
    match lecture {
        Some((lecture_id, course_id, current)) if current.is_none_or(|c| c <= video_id) => {
            set_lecture_video(conn, lecture_id, course_id, Some((video_id, duration))).await
        }
        _ => Ok(()),
    }
}

/// Make `video` (and its duration) what `lecture_id` plays, or nothing, and recompute the
/// course's total duration.
async fn set_lecture_video(
    conn: &mut sqlx::AnyConnection,
    lecture_id: LectureId,
    course_id: CourseId,
    video: Option<(VideoId, f64)>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE lectures SET video_id = $2, duration_seconds = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(lecture_id)
    .bind(video.map(|v| v.0))
    .bind(video.map(|v| v.1))
    .bind(now())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE courses SET duration_seconds = (SELECT CAST(COALESCE(SUM(duration_seconds), 0) AS DOUBLE PRECISION) \
         FROM lectures WHERE course_id = $1) WHERE id = $1",
    )
    .bind(course_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A video that failed for good plays nothing: its published output is withdrawn, and a
/// lecture that had switched to it (when it turned playable) goes back to the newest other
/// video it can play, or to none. Returns the prefix of the output withdrawn, for deletion
/// (also recorded as doomed, in the same transaction).
async fn withdraw_failed(
    conn: &mut sqlx::AnyConnection,
    video_id: VideoId,
) -> Result<Option<String>, sqlx::Error> {
    let (prefix,): (Option<String>,) =
        sqlx::query_as("SELECT output_prefix FROM videos WHERE id = $1")
            .bind(video_id)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query("UPDATE videos SET output_prefix = NULL, ready_seconds = 0 WHERE id = $1")
        .bind(video_id)
        .execute(&mut *conn)
        .await?;
    let lecture: Option<(LectureId, CourseId)> = sqlx::query_as(
        "SELECT l.id, l.course_id FROM lectures l JOIN videos v ON v.lecture_id = l.id \
         WHERE v.id = $1 AND l.video_id = v.id",
    )
    .bind(video_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((lecture_id, course_id)) = lecture {
        let fallback: Option<(VideoId, f64)> = sqlx::query_as(
            "SELECT id, CAST(COALESCE(duration_seconds, 0) AS DOUBLE PRECISION) FROM videos WHERE lecture_id = $1 \
             AND id <> $2 AND output_prefix IS NOT NULL AND status <> 'failed' ORDER BY id DESC LIMIT 1",
        )
        .bind(lecture_id)
        .bind(video_id)
        .fetch_optional(&mut *conn)
        .await?;
        set_lecture_video(conn, lecture_id, course_id, fallback).await?;
    }
    if let Some(prefix) = &prefix {
        doom_output(conn, prefix).await?;
    }
    Ok(prefix)
}

/// Record that the output under `prefix` is referenced no more and is to be deleted, in the
/// transaction that stops referencing it (see [`doomed_outputs`]).
async fn doom_output(conn: &mut sqlx::AnyConnection, prefix: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO doomed_outputs (prefix, doomed_at) VALUES ($1, $2) \
         ON CONFLICT (prefix) DO UPDATE SET doomed_at = excluded.doomed_at",
    )
    .bind(prefix)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Outputs doomed at least `grace_secs` ago: no attempt can still be adding to them (an
/// attempt that lost its job stops within a lease), so one more deletion leaves them empty.
pub async fn doomed_outputs(db: &Db, grace_secs: u64) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT prefix FROM doomed_outputs WHERE doomed_at <= $1 ORDER BY doomed_at LIMIT 100",
    )
    .bind(now() - grace_secs as i64)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// Forget a doomed output whose objects are deleted.
pub async fn forget_doomed(db: &Db, prefix: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM doomed_outputs WHERE prefix = $1")
        .bind(prefix)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// What [`show_progress`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    /// The attempt's output is the video's visible one; `replaced` names the output of an
    /// earlier attempt it took the place of (now unreferenced, to delete).
    Visible { replaced: Option<String> },
    /// An earlier attempt's output is further along; this one stays hidden until it has
    /// caught up, so a viewer never sees the video shrink.
    Hidden,
    /// Another worker holds the job now; nothing was changed.
    LeaseLost,
}

/// Publish the progress of a running attempt: its output under `prefix` holds the first
/// `ready_seconds` of every rendition (the media playlists say so), encrypted with `hls_key`.
///
/// The first time any attempt does, the video turns playable: its lecture switches to it
/// (newest wins, with `duration_estimate` as its duration until the exact one is known) and
/// `video.playable` is emitted. A later attempt (after a takeover or a retry) takes over the
/// visible output only once it has as much.
pub async fn show_progress(
    db: &Db,
    job: &Job,
    worker: &str,
    prefix: &str,
    ready_seconds: f64,
    duration_estimate: f64,
    hls_key: Option<&str>,
) -> Result<Shown, sqlx::Error> {
    let mut tx = db.begin().await?;
    let (held,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .fetch_one(&mut *tx)
    .await?;
    if held != 1 {
        return Ok(Shown::LeaseLost);
    }
    let (shown, shown_seconds, status): (Option<String>, f64, VideoStatus) = sqlx::query_as(
        "SELECT output_prefix, CAST(ready_seconds AS DOUBLE PRECISION), status FROM videos WHERE id = $1",
    )
    .bind(job.video_id)
    .fetch_one(&mut *tx)
    .await?;
    let ours = shown.as_deref() == Some(prefix);
    if matches!(status, VideoStatus::Ready | VideoStatus::Failed)
        || (!ours && shown.is_some() && shown_seconds > ready_seconds)
    {
        return Ok(Shown::Hidden);
    }
    sqlx::query(
        "UPDATE videos SET output_prefix = $2, ready_seconds = $3, hls_key = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(job.video_id)
    .bind(prefix)
    .bind(ready_seconds)
    .bind(hls_key)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    if shown.is_none() {
        point_lecture(&mut tx, job.video_id, duration_estimate).await?;
        video_event(&mut tx, EventType::VideoPlayable, job.video_id).await?;
    }
    let replaced = shown.filter(|_| !ours);
    if let Some(replaced) = &replaced {
        doom_output(&mut tx, replaced).await?;
    }
    tx.commit().await?;
    Ok(Shown::Visible { replaced })
}

/// A per-video secret a transcode attempt needs the same as every earlier attempt of the
/// video chose it.
#[derive(Debug, Clone, Copy)]
pub enum VideoSecret {
    /// The AES-128 key of its segments: a viewer of an earlier attempt's output keeps the key
    /// it holds.
    SegmentKey,
    /// What its watermarked segments are named after: a segment stored by an earlier attempt
    /// keeps its name.
    WatermarkNames,
}

/// `video_id`'s `secret` (hex): the one an earlier attempt chose, or else `fresh`.
pub async fn video_secret(
    db: &Db,
    video_id: VideoId,
    secret: VideoSecret,
    fresh: &str,
) -> Result<String, sqlx::Error> {
    let column = match secret {
        VideoSecret::SegmentKey => "hls_key",
        VideoSecret::WatermarkNames => "watermark_secret",
    };
    sqlx::query(&format!("UPDATE videos SET {column} = $2 WHERE id = $1 AND {column} IS NULL"))
        .bind(video_id)
        .bind(fresh)
        .execute(db.pool())
        .await?;
    let (stored,): (Option<String>,) =
        sqlx::query_as(&format!("SELECT {column} FROM videos WHERE id = $1"))
            .bind(video_id)
            .fetch_one(db.pool())
            .await?;
    Ok(stored.unwrap_or_else(|| fresh.to_owned()))
}

/// Record a `video.*` webhook event about `video_id` in the transaction `conn` that changed it:
/// the video as its owner's `GET /videos/{id}` shows its status, duration and error.
async fn video_event(
    conn: &mut sqlx::AnyConnection,
    kind: EventType,
    video_id: VideoId,
) -> Result<(), sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        lecture_id: LectureId,
        course_id: CourseId,
        status: VideoStatus,
        duration_seconds: Option<f64>,
        error: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT v.lecture_id, l.course_id, v.status, v.duration_seconds, v.error FROM videos v \
         JOIN lectures l ON l.id = v.lecture_id WHERE v.id = $1",
    )
    .bind(video_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(Row { lecture_id, course_id, status, duration_seconds, error }) = row else {
        return Ok(());
    };
    let video = serde_json::json!({
        "id": video_id, "lecture_id": lecture_id, "status": status, "duration_seconds": duration_seconds, "error": error,
    });
    let data = serde_json::json!({"video_id": video_id, "lecture_id": lecture_id, "course_id": course_id, "video": video});
    crate::webhooks::emit(conn, kind, &[course_id], data).await
}

/// The result of [`publish`].
#[derive(Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Published; `replaced` are videos whose outputs are no longer needed.
    Published { replaced: Vec<VideoId> },
    /// Another worker holds the job now; nothing was changed.
    LeaseLost,
}

crate::vocabulary! {
    /// Why a transcode attempt failed, for operators' figures (`failure_reason` on the job).
    pub enum FailureReason: "transcode failure reason" {
        /// The source is not usable media.
        InvalidMedia = "invalid_media",
        /// FFmpeg refuses this work every time.
        Unprocessable = "unprocessable",
        /// The configured transcode options are unusable.
        Misconfigured = "misconfigured",
        /// Over the job's wall-clock or CPU-time budget.
        OverTime = "over_time",
        /// Over the job's scratch-space budget.
        OverScratch = "over_scratch",
        /// The transcoder crashed without a result.
        Crashed = "crashed",
        /// Anything else: storage, database, I/O, FFmpeg internals.
        Internal = "internal",
        /// The worker stopped responding on every attempt.
        WorkerLost = "worker_lost",
    }
}

/// Why an attempt failed: what the video's owner may read, and what operators need.
pub struct Failure<'a> {
    /// Shown on the video (`error`): readable, and free of paths, endpoints and credentials.
    pub public: &'a str,
    /// Kept on the job (`last_error`) for operators.
    pub internal: &'a str,
    /// Retrying cannot help (bad input, over budget): fail at once.
    pub permanent: bool,
    pub reason: FailureReason,
}

/// How [`fail`] recorded a failure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FailRecorded {
    /// The job (and its video) failed for good.
    pub final_failure: bool,
    /// The published output the video no longer shows (it failed for good), to delete.
    pub withdrawn: Option<String>,
}

/// Record a failure. Permanent failures and those on the last attempt fail the job and its
/// video (withdrawing whatever it had published while it was processing); others go back on
/// the queue after a backoff, leaving what is published of the video playable.
pub async fn fail(
    db: &Db,
    job: &Job,
    worker: &str,
    failure: &Failure<'_>,
) -> Result<FailRecorded, sqlx::Error> {
    let permanent = failure.permanent;
    let t = now();
    let final_failure = permanent || job.attempts >= job.max_attempts;
    let mut tx = db.begin().await?;
    let done = if final_failure {
        sqlx::query(
            "UPDATE jobs SET status = 'failed', last_error = $3, finished_at = $4, updated_at = $4, lease_owner = NULL, \
             lease_expires_at = NULL, deadline_at = NULL, failure_reason = $5 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(failure.internal)
        .bind(t)
        .bind(failure.reason)
        .execute(&mut *tx)
        .await?
    } else {
        sqlx::query(
            "UPDATE jobs SET status = 'queued', last_error = $3, run_after = $4, updated_at = $5, lease_owner = NULL, \
             lease_expires_at = NULL, deadline_at = NULL, failure_reason = $6 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(worker)
        .bind(failure.internal)
        .bind(t + backoff_secs(job.attempts))
        .bind(t)
        .bind(failure.reason)
        .execute(&mut *tx)
        .await?
    };
    let mut withdrawn = None;
    if done.rows_affected() == 1 {
        let (status, error) = if final_failure {
            (VideoStatus::Failed, Some(failure.public))
        } else {
            (VideoStatus::Queued, None)
        };
        let marked = sqlx::query("UPDATE videos SET status = $2, error = $3, updated_at = $4 WHERE id = $1 AND status <> 'ready'")
            .bind(job.video_id)
            .bind(status)
            .bind(error)
            .bind(t)
            .execute(&mut *tx)
            .await?;
        if final_failure && marked.rows_affected() == 1 {
            withdrawn = withdraw_failed(&mut tx, job.video_id).await?;
            video_event(&mut tx, EventType::VideoFailed, job.video_id).await?;
        }
    }
    tx.commit().await?;
    Ok(FailRecorded { final_failure: final_failure && done.rows_affected() == 1, withdrawn })
}

/// Seconds to wait before retry number `attempts + 1`: 5 s, 20 s, 80 s, … capped at 10 min.
pub fn backoff_secs(attempts: i64) -> i64 {
    (5i64 * 4i64.saturating_pow(attempts.saturating_sub(1).clamp(0, 10) as u32)).min(600)
}

/// Give a job back without counting the attempt (graceful worker shutdown); the job and its
/// video change together.
pub async fn release(db: &Db, job: &Job, worker: &str) -> Result<(), sqlx::Error> {
    let t = now();
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = attempts - 1, run_after = $3, updated_at = $3, lease_owner = NULL, \
         lease_expires_at = NULL, deadline_at = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        sqlx::query("UPDATE videos SET status = 'queued', updated_at = $2 WHERE id = $1 AND status = 'processing'")
            .bind(job.video_id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Fail jobs whose workers vanished on their last attempt (lease expired, no attempts left).
/// Returns the prefixes of the outputs the failed videos no longer show, to delete.
pub async fn reap_abandoned(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let mut withdrawn = Vec::new();
    let t = now();
    let abandoned: Vec<(JobId, VideoId)> = sqlx::query_as(
        "SELECT id, video_id FROM jobs WHERE status = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts",
    )
    .bind(t)
    .fetch_all(db.pool())
    .await?;
    let reason = "the transcoding worker stopped responding on every attempt";
    for (id, video_id) in &abandoned {
        let mut tx = db.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', last_error = $2, finished_at = $3, updated_at = $3, lease_owner = NULL, \
             lease_expires_at = NULL, deadline_at = NULL, failure_reason = $4 WHERE id = $1 AND status = 'running' AND lease_expires_at < $3",
        )
        .bind(id)
        .bind(reason)
        .bind(t)
        .bind(FailureReason::WorkerLost)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            let marked = sqlx::query("UPDATE videos SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1 AND status <> 'ready'")
                .bind(video_id)
                .bind(reason)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            if marked.rows_affected() == 1 {
                withdrawn.extend(withdraw_failed(&mut tx, *video_id).await?);
                video_event(&mut tx, EventType::VideoFailed, *video_id).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(withdrawn)
}

/// The transcode queue as operators chart it (see [`figures`]).
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub queued: i64,
    pub running: i64,
    /// Seconds the longest-due queued job has been due (0: none): since it was enqueued, or
    /// since its retry time.
    pub oldest_due_secs: i64,
    /// Jobs done, and failed for good by reason, since the job table began.
    pub done: i64,
    pub failed: Vec<(FailureReason, i64)>,
    /// Video seconds per second of transcoding over the jobs done in the last hour, and how
    /// many those were.
    pub recent_speed: Option<f64>,
    pub recent_done: i64,
}

/// The queue's figures, read from the database: the same whichever process transcoded.
pub async fn figures(db: &Db) -> Result<Figures, sqlx::Error> {
    let t = now();
    let (queued, running, oldest): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         MIN(CASE WHEN status = 'queued' AND run_after <= $1 THEN run_after END) FROM jobs \
         WHERE status IN ('queued', 'running')",
    )
    .bind(t)
    .fetch_one(db.pool())
    .await?;
    let ended: Vec<(String, Option<FailureReason>, i64)> = sqlx::query_as(
        "SELECT status, failure_reason, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE status IN ('done', 'failed') \
         GROUP BY status, failure_reason",
    )
    .fetch_all(db.pool())
    .await?;
    let (video_secs, attempt_secs, recent_done): (Option<f64>, Option<f64>, i64) = sqlx::query_as(
        "SELECT CAST(SUM(v.duration_seconds) AS DOUBLE PRECISION), CAST(SUM(j.attempt_seconds) AS DOUBLE PRECISION), \
         CAST(COUNT(*) AS BIGINT) FROM jobs j JOIN videos v ON v.id = j.video_id \
         WHERE j.status = 'done' AND j.finished_at >= $1 AND j.attempt_seconds > 0 AND v.duration_seconds IS NOT NULL",
    )
    .bind(t - 3600)
    .fetch_one(db.pool())
    .await?;
    let mut figures = Figures {
        queued,
        running,
        oldest_due_secs: oldest.map_or(0, |o| (t - o).max(0)),
        recent_speed: video_secs.zip(attempt_secs).map(|(v, a)| v / a),
        recent_done,
        ..Figures::default()
    };
    for (status, reason, n) in ended {
        if status == "done" {
            figures.done += n;
        } else {
            // Jobs failed before reasons were recorded count as internal.
            let reason = reason.unwrap_or(FailureReason::Internal);
            match figures.failed.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, total)) => *total += n,
                None => figures.failed.push((reason, n)),
            }
        }
    }
    Ok(figures)
}
