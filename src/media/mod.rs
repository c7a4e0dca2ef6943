//! Videos: uploads (a streamed `PUT` and tus), the transcode job queue, the workers that run it
//! and the pool that supervises them.
//!
//! A video's life: `uploading` (bytes arriving) → `queued` (source stored, job enqueued) →
//! `processing` (a worker holds the job) → `ready` (outputs published) or `failed` (with a
//! reason). A video turns *playable* while it is processing, as soon as the first segments of
//! its ladder are published (progressive publish, see [`worker`]). Each upload is a new video
//! of its lecture; the lecture switches to it when it is playable, and the one it replaces is
//! removed once the new one is ready (or played again if the new one fails for good).
//!
//! Uploads are bounded per user ([`limits`]) and by an idle timeout on their bodies, and they
//! are crash-safe: storing the source and enqueueing its transcode commit together, and
//! [`housekeeping`] finishes or removes whatever a dead request or process left behind.

pub mod captions;
pub mod chapters;
pub mod child;
pub mod db;
pub mod engine;
pub mod limits;
pub mod queue;
pub mod routes;
pub mod sniff;
pub mod supervisor;
pub mod tus;
pub mod worker;

use crate::types::{LectureId, UserId, VideoId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use self::db::VideoRow;
use crate::accounts::Caller;
use crate::db::{now, rfc3339, Db};
use crate::error::{Error, Result};
use crate::storage::{keys, ByteStream, Storage};

/// The limits and lifetimes uploads run under, taken from the configuration once.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    pub max_upload_bytes: u64,
    pub upload_expiry_secs: u64,
    pub upload_idle_timeout_secs: u64,
    pub job_max_attempts: u32,
    pub upload_max_concurrent: u64,
    pub upload_max_bytes_in_progress: u64,
    pub upload_daily_quota_bytes: u64,
    /// How long after an output is doomed housekeeping deletes it for good: two job leases,
    /// by when an attempt that lost its job has stopped writing to it.
    pub doomed_output_grace_secs: u64,
}

impl UploadSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        UploadSettings {
            max_upload_bytes: cfg.max_upload_bytes,
            upload_expiry_secs: cfg.upload_expiry_secs,
            upload_idle_timeout_secs: cfg.upload_idle_timeout_secs,
            job_max_attempts: cfg.job_max_attempts,
            upload_max_concurrent: cfg.upload_max_concurrent,
            upload_max_bytes_in_progress: cfg.upload_max_bytes_in_progress,
            upload_daily_quota_bytes: cfg.upload_daily_quota_bytes,
            doomed_output_grace_secs: 2 * cfg.job_lease_secs,
        }
    }
}

/// What uploads and their housekeeping work with: the database, the object store and the
/// upload settings. Cheap to clone.
#[derive(Clone)]
pub struct Uploads {
    pub db: Db,
    pub storage: Storage,
    pub cfg: Arc<UploadSettings>,
}

impl Uploads {
    pub fn new(db: Db, storage: Storage, cfg: UploadSettings) -> Self {
        Uploads { db, storage, cfg: Arc::new(cfg) }
    }
}

/// One rendition of a ready video.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RenditionInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Peak bits per second, as in the master playlist.
    pub bandwidth: u64,
}

crate::vocabulary! {
    /// Where a video is in its life (see the module documentation).
    pub enum VideoStatus: "video status" {
        Uploading = "uploading",
        Queued = "queued",
        Processing = "processing",
        Ready = "ready",
        Failed = "failed",
    }
}

/// A video as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Video {
    pub id: VideoId,
    pub lecture_id: LectureId,
    pub status: VideoStatus,
    /// 0..1, moving forward only while processing; 1 when ready.
    pub progress: f64,
    /// Whether it can be watched: true once the first segments of its ladder are published,
    /// while it is still processing, and from then on (unless it fails for good).
    pub playable: bool,
    /// Seconds of it that are encoded and published (its whole duration when ready).
    pub ready_seconds: f64,
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
        let renditions =
            v.renditions.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        Video {
            id: v.id,
            lecture_id: v.lecture_id,
            status: v.status,
            progress: v.progress,
            playable: v.playable(),
            ready_seconds: v.ready_seconds,
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
pub async fn get_video(db: &Db, caller: &Caller, id: VideoId) -> Result<Video> {
    let video = db::video(db, id).await?.ok_or(Error::not_found("video"))?;
    // Someone who may not edit the lecture learns nothing of its video; any other failure (the
    // database's) stays what it is.
    crate::catalog::editable_lecture(db, caller, video.lecture_id).await.map_err(|e| match e {
        Error::NotFound { .. } | Error::Denied { .. } => Error::not_found("video"),
        other => other,
    })?;
    Ok(video.into())
}

/// Remove the stored objects and the rows of videos that are gone or replaced, in the
/// background (the request that caused it does not wait).
pub fn forget_video_objects(db: &Db, storage: &Storage, videos: Vec<VideoId>) {
    if videos.is_empty() {
        return;
    }
    let (storage, db) = (storage.clone(), db.clone());
    tokio::spawn(async move { remove_videos(&db, &storage, &videos).await });
}

/// Delete the objects and rows of `videos`.
pub async fn remove_videos(db: &Db, storage: &Storage, videos: &[VideoId]) {
    for &id in videos {
        if let Err(e) = storage.delete_prefix(&keys::video(id)).await {
            tracing::warn!(video = %id, error = %e, "could not delete a video's objects; they stay behind");
        }
        if let Err(e) = db::delete_video(db, id).await {
            tracing::warn!(video = %id, error = %e, "could not delete a video row");
        }
    }
}

/// Delete the published outputs under `prefixes` (a failed video's withdrawn output, an
/// attempt's output another took the place of) at once. They are doomed in the database too,
/// so what this misses (a crash, a store error, a put still in flight) housekeeping deletes
/// later ([`delete_doomed_outputs`]).
pub async fn remove_outputs(storage: &Storage, prefixes: impl IntoIterator<Item = String>) {
    for prefix in prefixes.into_iter().filter_map(|p| crate::storage::ObjectKey::new(p).ok()) {
        if let Err(e) = storage.delete_prefix(&prefix).await {
            tracing::warn!(%prefix, error = %e, "could not delete an output; it stays behind");
        }
    }
}

/// Delete the outputs doomed long enough ago that nothing writes to them any more, and forget
/// each once its deletion succeeded (one that fails is tried again next round).
async fn delete_doomed_outputs(st: &Uploads) -> anyhow::Result<()> {
    for prefix in queue::doomed_outputs(&st.db, st.cfg.doomed_output_grace_secs).await? {
        let deleted = match crate::storage::ObjectKey::new(prefix.clone()) {
            Ok(key) => st.storage.delete_prefix(&key).await.map(drop),
            Err(_) => Ok(()), // not a key: there is nothing under it to delete
        };
        match deleted {
            Ok(()) => queue::forget_doomed(&st.db, &prefix).await?,
            Err(e) => tracing::warn!(%prefix, error = %e, "could not delete a doomed output"),
        }
    }
    Ok(())
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
    #[error("no data arrived for {0} seconds; the upload was dropped")]
    Idle(u64),

    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<UploadError> for Error {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge(_) => Error::TooLarge,
            UploadError::NotMedia(_) => {
                Error::UnsupportedMedia { code: "not_a_video", message: e.to_string() }
            }
            UploadError::Empty => Error::malformed("empty_upload", e.to_string()),
            UploadError::Interrupted(_) => Error::malformed("upload_interrupted", e.to_string()),
            UploadError::Idle(_) => {
                Error::Stalled { code: "upload_idle_timeout", message: e.to_string() }
            }
            UploadError::Internal(e) => Error::Internal(e),
        }
    }
}

/// Read the first bytes of `body` for sniffing; returns them and the stream of the rest. The
/// rest is fused: a body shorter than the sniffing window has ended already, and a stream
/// asked again after its end may panic (`unfold` does).
pub async fn peek<S>(body: S) -> Result<(Bytes, futures::stream::Fuse<S>), UploadError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    let mut body = body.fuse();
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

/// Count bytes through a stream into `seen` and fail it once more than `limit` have passed;
/// `over` is set when that happened, so the caller can tell "too large" from a broken
/// connection.
pub fn limited(
    body: ByteStream,
    limit: u64,
    over: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> ByteStream {
    Box::pin(body.map(move |chunk| {
        let chunk = chunk?;
        let total = seen.fetch_add(chunk.len() as u64, Ordering::SeqCst) + chunk.len() as u64;
        if total > limit {
            over.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("upload exceeds the size limit"));
        }
        Ok(chunk)
    }))
}

/// End a stream with a `TimedOut` error when no chunk arrives for `idle`; `stalled` is set
/// when that happened. The timer lives in the stream, so a caller may stop waiting for a
/// chunk (to do other work) and ask again without resetting it.
pub fn idle_limited(body: ByteStream, idle: Duration, stalled: Arc<AtomicBool>) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(body), move |state| {
        let stalled = stalled.clone();
        async move {
            let mut body = state?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(item)) => Some((item, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    stalled.store(true, Ordering::SeqCst);
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the upload body stalled",
                    );
                    Some((Err(e), None))
                }
            }
        }
    }))
}

/// How often a streamed PUT in progress touches its video row, so housekeeping can tell it
/// from one whose server died.
const PUT_TOUCH_SECS: u64 = 10;

/// A streamed PUT that has not touched its video for this long is dead: its body has been
/// silent past the idle timeout, or the process holding it is gone.
fn abandoned_put_secs(cfg: &UploadSettings) -> i64 {
    (cfg.upload_idle_timeout_secs.max(PUT_TOUCH_SECS) + 120) as i64
}

/// The video of a streamed PUT in progress. While it lives it keeps the row touched; dropped
/// before [`PutGuard::keep`] — the request failed or was cancelled — it removes the video and
/// its objects.
struct PutGuard {
    st: Uploads,
    video_id: VideoId,
    ticker: tokio::task::JoinHandle<()>,
    armed: bool,
}

impl PutGuard {
    fn new(st: &Uploads, video_id: VideoId, declared: u64, seen: Arc<AtomicU64>) -> PutGuard {
        let db = st.db.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(PUT_TOUCH_SECS));
            every.tick().await;
            loop {
                every.tick().await;
                let held = declared.max(seen.load(Ordering::SeqCst)) as i64;
                if let Err(e) = db::touch_receiving(&db, video_id, held, now()).await {
                    tracing::warn!(video = %video_id, error = %e, "could not mark a streamed upload alive");
                }
            }
        });
        PutGuard { st: st.clone(), video_id, ticker, armed: true }
    }

    /// The upload is stored and recorded: the video stays.
    fn keep(mut self) {
        self.armed = false;
    }

    /// Remove the video now, waiting for it.
    async fn remove(mut self) {
        self.armed = false;
        self.ticker.abort();
        remove_videos(&self.st.db, &self.st.storage, &[self.video_id]).await;
    }
}

impl Drop for PutGuard {
    fn drop(&mut self) {
        self.ticker.abort();
        if self.armed {
            tracing::info!(video = %self.video_id, "streamed upload cancelled; removing its video");
            // Without a runtime (the process is ending) housekeeping removes it later.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (db, storage, id) =
                    (self.st.db.clone(), self.st.storage.clone(), self.video_id);
                rt.spawn(async move { remove_videos(&db, &storage, &[id]).await });
            }
        }
    }
}

/// Why the body of a streamed upload stopped before it was stored.
enum Stopped {
    /// It passed the limit that bound it (`None`: the largest upload).
    OverLimit(Option<limits::Limit>),
    /// It sent nothing for the idle timeout.
    Idle,
    /// The store failed, or the connection broke (an I/O error from the body).
    Store(crate::storage::StorageError),
}

impl Stopped {
    fn error(self, cfg: &UploadSettings) -> Error {
        match self {
            Stopped::OverLimit(Some(limit)) => limit.error(cfg, now()),
            Stopped::OverLimit(None) => UploadError::TooLarge(cfg.max_upload_bytes).into(),
            Stopped::Idle => UploadError::Idle(cfg.upload_idle_timeout_secs).into(),
            Stopped::Store(crate::storage::StorageError::Io(io)) => {
                UploadError::Interrupted(io.to_string()).into()
            }
            Stopped::Store(other) => {
                UploadError::Internal(anyhow::Error::new(other).context("storing an upload")).into()
            }
        }
    }
}

/// A streamed `PUT` of a lecture's video: check the uploader's limits, sniff, store the source
/// without holding it in memory, then record it and enqueue the transcode in one transaction.
/// `declared_len` is the request's Content-Length, if any.
pub async fn upload_streamed(
    st: &Uploads,
    caller: &Caller,
    lecture_id: LectureId,
    filename: &str,
    declared_len: Option<u64>,
    body: ByteStream,
) -> Result<Video> {
    crate::catalog::editable_lecture(&st.db, caller, lecture_id).await?;
    let cfg = &st.cfg;
    if declared_len.is_some_and(|n| n > cfg.max_upload_bytes) {
        return Err(UploadError::TooLarge(cfg.max_upload_bytes).into());
    }
    let allowance = limits::begin(&st.db, cfg, caller.user_id, declared_len, now()).await?;
    let (cap, binding) = allowance.cap(cfg.max_upload_bytes);
    let stalled = Arc::new(AtomicBool::new(false));
    let body =
        idle_limited(body, Duration::from_secs(cfg.upload_idle_timeout_secs), stalled.clone());
    let (head, rest) = peek(body).await.map_err(|e| {
        if stalled.load(Ordering::SeqCst) {
            UploadError::Idle(cfg.upload_idle_timeout_secs)
        } else {
            e
        }
    })?;
    if head.is_empty() {
        return Err(UploadError::Empty.into());
    }
    sniff::verdict(&head).map_err(UploadError::NotMedia)?;

    let declared = declared_len.unwrap_or(0);
    let video_id = db::insert_receiving_video(
        st.db.pool(),
        lecture_id,
        caller.user_id,
        filename,
        declared as i64,
        now(),
    )
    .await?;
    let (over, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let guard = PutGuard::new(st, video_id, declared, seen.clone());
    let whole: ByteStream = Box::pin(futures::stream::once(async move { Ok(head) }).chain(rest));
    let stored = st
        .storage
        .put(
            &keys::source(video_id),
            limited(whole, cap, over.clone(), seen),
            "application/octet-stream",
        )
        .await;
    let meta = match stored {
        Ok(meta) => meta,
        Err(e) => {
            guard.remove().await;
            let why = if over.load(Ordering::SeqCst) {
                Stopped::OverLimit(binding)
            } else if stalled.load(Ordering::SeqCst) {
                Stopped::Idle
            } else {
                Stopped::Store(e)
            };
            return Err(why.error(cfg));
        }
    };
    if !record_source(st, caller.user_id, video_id, meta.size as i64).await? {
        guard.remove().await;
        return Err(Error::internal(anyhow::anyhow!(
            "video {video_id} stopped being an upload while it was stored"
        )));
    }
    guard.keep();
    tracing::info!(
        video = %video_id,
        lecture = %lecture_id,
        bytes = meta.size,
        "video uploaded; transcode queued"
    );
    let row = db::video(&st.db, video_id).await?.ok_or(Error::not_found("video"))?;
    Ok(row.into())
}

/// Record a stored source of `size` bytes, charge it to `uploader` and enqueue its transcode,
/// in one transaction. False (and nothing done) when the video stopped being an upload.
async fn record_source(st: &Uploads, uploader: UserId, video: VideoId, size: i64) -> Result<bool> {
    let t = now();
    let mut tx = st.db.begin().await?;
    if !db::source_stored(&mut *tx, video, size, t).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    db::charge_usage(&mut *tx, uploader, size, t).await?;
    queue::enqueue(&mut *tx, video, st.cfg.job_max_attempts as i64).await?;
    tx.commit().await?;
    Ok(true)
}

/// Remove the videos of streamed PUTs whose request died with its server (nothing touched them
/// past [`abandoned_put_secs`]). Returns how many.
pub async fn remove_abandoned_puts(st: &Uploads) -> anyhow::Result<usize> {
    let dead = db::abandoned_put_videos(&st.db, now() - abandoned_put_secs(&st.cfg)).await?;
    if !dead.is_empty() {
        tracing::info!(videos = ?dead, "removing videos of streamed uploads that never finished");
        remove_videos(&st.db, &st.storage, &dead).await;
    }
    Ok(dead.len())
}

/// Housekeeping for the serving process, every `every` until `shutdown`: see [`housekeeping`].
pub async fn maintenance(
    st: Uploads,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        housekeeping(&st).await;
        if tokio::time::timeout(every, shutdown.changed()).await.is_ok() && *shutdown.borrow() {
            return;
        }
    }
}

/// One round of housekeeping: expire abandoned tus uploads, finish uploads whose completion a
/// crash cut short, remove scratch objects no upload needs and videos of streamed uploads that
/// died, fail jobs whose workers vanished on their last attempt, publish queue depth. Each
/// step logs its own failure and the others still run.
pub async fn housekeeping(st: &Uploads) {
    if let Err(e) = tus::expire(st).await {
        tracing::warn!(error = %e, "expiring uploads failed");
    }
    if let Err(e) = tus::repair(st).await {
        tracing::warn!(error = %e, "repairing interrupted uploads failed");
    }
    if let Err(e) = tus::sweep_scratch(st).await {
        tracing::warn!(error = %e, "removing unused upload scratch objects failed");
    }
    if let Err(e) = remove_abandoned_puts(st).await {
        tracing::warn!(error = %e, "removing abandoned streamed uploads failed");
    }
    match queue::reap_abandoned(&st.db).await {
        Ok(withdrawn) => remove_outputs(&st.storage, withdrawn).await,
        Err(e) => tracing::warn!(error = %e, "reaping abandoned jobs failed"),
    }
    if let Err(e) = delete_doomed_outputs(st).await {
        tracing::warn!(error = %e, "deleting doomed outputs failed");
    }
}

/// 16 bytes written as 32 hex digits (a video's segment key, its watermark secret), or `None`.
pub fn hex16(hex: &str) -> Option<[u8; 16]> {
    hex::decode(hex).ok()?.try_into().ok()
}
