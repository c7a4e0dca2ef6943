//! Videos: uploads (a streamed `PUT` and tus), the transcode job queue, the workers that run it
//! and the pool that supervises them.
//!
//! A video's life: `uploading` (bytes arriving) → `queued` (source stored, job enqueued) →
//! `processing` (a worker holds the job) → `ready` (outputs published) or `failed` (with a
//! reason). Each upload is a new video of its lecture; the lecture switches to it when it is
//! ready, and the one it replaces is removed then.

pub mod child;
pub mod db;
pub mod engine;
pub mod queue;
pub mod routes;
pub mod sniff;
pub mod supervisor;
pub mod tus;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use self::db::VideoRow;
use crate::accounts::Caller;
use crate::db::{now, rfc3339, Db};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::storage::{keys, ByteStream, Storage};

/// One rendition of a ready video.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RenditionInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Peak bits per second, as in the master playlist.
    pub bandwidth: u64,
}

/// A video as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Video {
    pub id: i64,
    pub lecture_id: i64,
    /// `uploading`, `queued`, `processing`, `ready` or `failed`.
    pub status: String,
    /// 0..1, moving forward only while processing; 1 when ready.
    pub progress: f64,
    /// Exact measured duration once ready.
    pub duration_seconds: Option<f64>,
    pub renditions: Vec<RenditionInfo>,
    /// Why it failed, readable.
    pub error: Option<String>,
    pub original_filename: String,
    pub source_size: Option<i64>,
    pub created_at: String,
    pub ready_at: Option<String>,
}

impl From<VideoRow> for Video {
    fn from(v: VideoRow) -> Self {
        let renditions = v.renditions.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        Video {
            id: v.id,
            lecture_id: v.lecture_id,
            status: v.status,
            progress: v.progress,
            duration_seconds: v.duration_seconds,
            renditions,
            error: v.error,
            original_filename: v.original_filename,
            source_size: v.source_size,
            created_at: rfc3339(v.created_at),
            ready_at: v.ready_at.map(rfc3339),
        }
    }
}

/// The video, for its lecture's owner or an admin (404 for anyone else).
pub async fn get_video(db: &Db, caller: &Caller, id: i64) -> ApiResult<Video> {
    let video = db::video(db, id).await?.ok_or(ApiError::not_found("video"))?;
    // Someone who may not edit the lecture learns nothing of its video; any other failure (the
    // database's) stays what it is.
    crate::catalog::editable_lecture(db, caller, video.lecture_id).await.map_err(|e| match e {
        ApiError::NotFound { .. } | ApiError::Forbidden { .. } => ApiError::not_found("video"),
        other => other,
    })?;
    Ok(video.into())
}

/// Remove the stored objects and the rows of videos that are gone or replaced, in the
/// background (the request that caused it does not wait).
pub fn forget_video_objects(st: &AppState, videos: Vec<i64>) {
    if videos.is_empty() {
        return;
    }
    let (storage, db) = (st.storage.clone(), st.db.clone());
    tokio::spawn(async move { remove_videos(&db, &storage, &videos).await });
}

/// Delete the objects and rows of `videos`.
pub async fn remove_videos(db: &Db, storage: &Storage, videos: &[i64]) {
    for &id in videos {
        if let Err(e) = storage.delete_prefix(&keys::video(id)).await {
            tracing::warn!(video = id, error = %e, "could not delete a video's objects; they stay behind");
        }
        if let Err(e) = db::delete_video(db, id).await {
            tracing::warn!(video = id, error = %e, "could not delete a video row");
        }
    }
}

/// Why an upload body was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("this is {0}, not a video")]
    NotMedia(&'static str),
    #[error("the upload is empty")]
    Empty,
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge(_) => ApiError::PayloadTooLarge,
            UploadError::NotMedia(_) => ApiError::UnsupportedMediaType { code: "not_a_video", message: e.to_string() },
            UploadError::Empty => ApiError::bad_request("empty_upload", e.to_string()),
            UploadError::Interrupted(_) => ApiError::bad_request("upload_interrupted", e.to_string()),
            UploadError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// Read the first bytes of `body` for sniffing; returns them and the stream of the rest.
pub async fn peek<S>(mut body: S) -> Result<(Bytes, S), UploadError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    let mut head = BytesMut::new();
    while head.len() < sniff::SNIFF_LEN {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(UploadError::Interrupted(e.to_string())),
            None => break,
        }
    }
    Ok((head.freeze(), body))
}

/// Count bytes through a stream and fail it once more than `limit` have passed; `over` is set
/// when that happened, so the caller can tell "too large" from a broken connection.
pub fn limited(body: ByteStream, limit: u64, over: Arc<AtomicBool>) -> ByteStream {
    let mut seen = 0u64;
    Box::pin(body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > limit {
            over.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("upload exceeds the size limit"));
        }
        Ok(chunk)
    }))
}

/// A streamed `PUT` of a lecture's video: sniff, store the source without holding it in
/// memory, enqueue the transcode. `declared_len` is the request's Content-Length, if any.
pub async fn upload_streamed(
    st: &AppState,
    caller: &Caller,
    lecture_id: i64,
    filename: &str,
    declared_len: Option<u64>,
    body: ByteStream,
) -> ApiResult<Video> {
    crate::catalog::editable_lecture(&st.db, caller, lecture_id).await?;
    let limit = st.cfg.max_upload_bytes;
    if declared_len.is_some_and(|n| n > limit) {
        return Err(UploadError::TooLarge(limit).into());
    }
    let (head, rest) = peek(body).await?;
    if head.is_empty() {
        return Err(UploadError::Empty.into());
    }
    sniff::verdict(&head).map_err(UploadError::NotMedia)?;

    let video_id = db::insert_video(&st.db, lecture_id, caller.user_id, filename, now()).await?;
    let over = Arc::new(AtomicBool::new(false));
    let whole: ByteStream = Box::pin(futures::stream::once(async move { Ok(head) }).chain(rest));
    let stored = st.storage.put(&keys::source(video_id), limited(whole, limit, over.clone()), "application/octet-stream").await;
    let meta = match stored {
        Ok(meta) => meta,
        Err(e) => {
            remove_videos(&st.db, &st.storage, &[video_id]).await;
            return Err(if over.load(Ordering::SeqCst) {
                UploadError::TooLarge(limit)
            } else {
                match e {
                    crate::storage::StorageError::Io(io) => UploadError::Interrupted(io.to_string()),
                    other => UploadError::Internal(anyhow::Error::new(other).context("storing an upload")),
                }
            }
            .into());
        }
    };
    db::set_source_size(&st.db, video_id, meta.size as i64, now()).await?;
    queue::enqueue(&st.db, video_id, st.cfg.job_max_attempts as i64).await?;
    tracing::info!(video = video_id, lecture = lecture_id, bytes = meta.size, "video uploaded; transcode queued");
    let row = db::video(&st.db, video_id).await?.ok_or(ApiError::not_found("video"))?;
    Ok(row.into())
}

/// Housekeeping for the serving process, every `every` until `shutdown`: expire abandoned tus
/// uploads, fail jobs whose workers vanished on their last attempt, publish queue depth.
pub async fn maintenance(st: AppState, every: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = tus::expire(&st).await {
            tracing::warn!(error = %e, "expiring uploads failed");
        }
        if let Err(e) = queue::reap_abandoned(&st.db).await {
            tracing::warn!(error = %e, "reaping abandoned jobs failed");
        }
        if let Ok((queued, running)) = queue::depth(&st.db).await {
            metrics::gauge!("lectern_jobs", "status" => "queued").set(queued as f64);
            metrics::gauge!("lectern_jobs", "status" => "running").set(running as f64);
        }
        if tokio::time::timeout(every, shutdown.changed()).await.is_ok() && *shutdown.borrow() {
            return;
        }
    }
}
