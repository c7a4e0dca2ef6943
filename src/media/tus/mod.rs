//! tus 1.0.0 resumable uploads: core protocol plus the creation (with deferred length and
//! with upload), termination and expiration extensions.
//!
//! Every byte a PATCH delivers goes to object storage as it arrives, never to RAM beyond one
//! part: full parts (8 MiB) become parts of a multipart upload of the video's source object,
//! and whatever is left when the request ends — normally or by a dropped connection — is kept as
//! a "tail" object and prepended to the next part. The offset a client sees is what storage
//! holds, so a resume after a dropped connection or a server restart continues exactly there,
//! on this server or another. A per-upload lock in the database (a token with a short expiry,
//! extended while the request lives) keeps two requests from writing one upload at once, and
//! a request reads the upload's state again once it holds the lock.
//!
//! Completion is crash-safe: the last bytes are stored and recorded first (offset = length),
//! then the source object is assembled, and then one transaction marks the upload complete,
//! records the source and enqueues the transcode. A process that dies anywhere in between
//! leaves an upload whose bytes are all stored; [`repair`] (housekeeping) or the client's next
//! PATCH finishes it. Scratch objects (tails) are removed with their upload, and [`sweep_scratch`]
//! removes those a killed request left behind.

use crate::types::{LectureId, UploadId, VideoId};
use std::time::Instant;

use base64::Engine;

use super::db::{self, UploadRow};
use super::limits::{self};
use super::queue;
use super::Uploads;
use crate::accounts::Caller;
use crate::db::now;
use crate::error::{Error, Result};
use crate::storage::{keys, ByteStream, CompletedPart};

mod writer;
use writer::Writer;

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
/// Extensions supported, as `Tus-Extension` lists them.
pub const TUS_EXTENSIONS: &str =
    "creation,creation-defer-length,creation-with-upload,termination,expiration";
/// Size of the multipart parts written to storage.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// How long a write lock lasts without data flowing.
const LOCK_SECS: i64 = 30;
/// How often a streaming request extends its lock.
const LOCK_REFRESH_SECS: u64 = 5;

/// Why a tus request was refused, beyond the common API errors.
#[derive(Debug, thiserror::Error)]
pub enum TusError {
    #[error("Upload-Offset {given} does not match the upload's offset {actual}")]
    OffsetMismatch { given: i64, actual: i64 },
    #[error("this upload has expired")]
    Expired,
    #[error("another request is writing this upload; retry shortly")]
    Locked,
    #[error(transparent)]
    Api(#[from] Error),
}

/// The state of an upload as HEAD reports it.
pub struct UploadInfo {
    pub id: UploadId,
    pub offset: i64,
    pub length: Option<i64>,
    pub expires_at: i64,
    /// Set once the last byte has arrived.
    pub video_id: Option<VideoId>,
}

/// Parse `Upload-Metadata`: comma-separated `key base64value` pairs (value optional).
pub fn parse_metadata(header: &str) -> Result<Vec<(String, String)>, Error> {
    let bad = || {
        Error::malformed(
            "invalid_metadata",
            "Upload-Metadata must be comma-separated `key base64value` pairs",
        )
    };
    header
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, ' ');
            let key = it.next().ok_or_else(bad)?.to_string();
            let value = match it.next() {
                Some(v) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .map_err(|e| undecodable(&key, &e))?;
                    String::from_utf8(raw).map_err(|e| undecodable(&key, &e))?
                }
                None => String::new(),
            };
            Ok((key, value))
        })
        .collect()
}

/// 400 for a metadata value that is not base64 of UTF-8 text.
fn undecodable(key: &str, cause: &dyn std::fmt::Display) -> Error {
    Error::malformed(
        "invalid_metadata",
        format!("Upload-Metadata value of {key:?} is not base64 of UTF-8 text ({cause})"),
    )
}

fn meta<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Ids are 32 lower-case hex digits; anything else cannot exist.
fn valid_id(id: &UploadId) -> bool {
    let id = id.as_str();
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `POST /uploads`: a new upload for the lecture named in the metadata.
pub async fn create(
    st: &Uploads,
    caller: &Caller,
    length: Option<i64>,
    metadata: &str,
) -> Result<(UploadId, VideoId)> {
    let pairs = parse_metadata(metadata)?;
    let lecture_id: LectureId = meta(&pairs, "lecture_id")
        .ok_or_else(|| {
            Error::malformed("missing_lecture_id", "Upload-Metadata must carry lecture_id")
        })?
        .trim()
        .parse()
        .map_err(|e| {
            Error::malformed("invalid_lecture_id", format!("lecture_id must be an integer ({e})"))
        })?;
    if let Some(len) = length {
        if len <= 0 {
            return Err(Error::malformed("empty_upload", "Upload-Length must be positive"));
        }
        if len as u64 > st.cfg.max_upload_bytes {
            return Err(Error::TooLarge);
        }
    }
    crate::catalog::editable_lecture(&st.db, caller, lecture_id).await?;
    let t = now();
    limits::begin(&st.db, &st.cfg, caller.user_id, length.map(|l| l as u64), t).await?;
    let filename: String =
        meta(&pairs, "filename").or(meta(&pairs, "name")).unwrap_or("").chars().take(255).collect();
    let id = UploadId::new(uuid::Uuid::new_v4().simple().to_string());
    let mut tx = st.db.begin().await?;
    let video_id = db::insert_video(&mut *tx, lecture_id, caller.user_id, &filename, t).await?;
    let upload = db::NewUpload {
        id: &id,
        video_id,
        user_id: caller.user_id,
        length,
        metadata,
        created_at: t,
        expires_at: t + st.cfg.upload_expiry_secs as i64,
    };
    db::insert_upload(&mut *tx, &upload).await?;
    tx.commit().await?;
    tracing::info!(upload = %id, video = %video_id, lecture = %lecture_id, ?length, "tus upload created");
    Ok((id, video_id))
}

/// The upload, if `caller` made it and it has not expired.
async fn owned(st: &Uploads, caller: &Caller, id: &UploadId) -> Result<UploadRow, TusError> {
    if !valid_id(id) {
        return Err(Error::not_found("upload").into());
    }
    let u = db::upload(&st.db, id).await.map_err(Error::from)?.ok_or(Error::not_found("upload"))?;
    if u.user_id != caller.user_id && !caller.is_admin() {
        return Err(Error::not_found("upload").into());
    }
    if u.completed_at.is_none() && u.expires_at < now() {
        return Err(TusError::Expired);
    }
    Ok(u)
}

/// `HEAD /uploads/{id}`.
pub async fn info(st: &Uploads, caller: &Caller, id: &UploadId) -> Result<UploadInfo, TusError> {
    let u = owned(st, caller, id).await?;
    Ok(UploadInfo {
        id: u.id,
        offset: u.upload_offset,
        length: u.length,
        expires_at: u.expires_at,
        video_id: u.completed_at.map(|_| u.video_id),
    })
}

/// `DELETE /uploads/{id}`: drop what was received. A finished upload's video stays.
pub async fn terminate(st: &Uploads, caller: &Caller, id: &UploadId) -> Result<(), TusError> {
    let u = match owned(st, caller, id).await {
        Ok(u) => u,
        // An expired upload can still be terminated.
        Err(TusError::Expired) => {
            db::upload(&st.db, id).await.map_err(Error::from)?.ok_or(Error::not_found("upload"))?
        }
        Err(e) => return Err(e),
    };
    drop_upload(st, &u, u.completed_at.is_none()).await.map_err(Error::from)?;
    Ok(())
}

/// Remove an upload: its scratch objects and multipart upload, with `with_video` its video's
/// objects, then its row (and the video's) in one transaction.
async fn drop_upload(st: &Uploads, u: &UploadRow, with_video: bool) -> Result<(), sqlx::Error> {
    discard(st, u).await;
    if with_video {
        if let Err(e) = st.storage.delete_prefix(&keys::video(u.video_id)).await {
            tracing::warn!(video = %u.video_id, error = %e, "could not delete a video's objects; they stay behind");
        }
    }
    db::forget_upload(&st.db, &u.id, with_video.then_some(u.video_id)).await
}

/// Remove an upload's scratch objects and abort its multipart upload.
async fn discard(st: &Uploads, u: &UploadRow) {
    if let Some(mp) = &u.multipart_id {
        if let Err(e) = st.storage.abort_multipart(&keys::source(u.video_id), mp).await {
            tracing::warn!(upload = %u.id, error = %e, "aborting a multipart upload failed");
        }
    }
    remove_scratch(st, &u.id).await;
}

async fn remove_scratch(st: &Uploads, id: &UploadId) {
    if let Err(e) = st.storage.delete_prefix(&keys::upload(id)).await {
        tracing::warn!(upload = %id, error = %e, "removing an upload's scratch objects failed");
    }
}

/// Delete uploads that expired unfinished, with their videos. Returns how many.
pub async fn expire(st: &Uploads) -> anyhow::Result<usize> {
    let expired = db::expired_uploads(&st.db, now()).await?;
    for u in &expired {
        drop_upload(st, u, true).await?;
        tracing::info!(upload = %u.id, video = %u.video_id, "expired tus upload removed");
    }
    Ok(expired.len())
}

/// Finish what crashes left half done: uploads whose bytes are all stored but whose completion
/// was cut short are completed, and completed uploads that an older version left without a
/// transcode job get one. Returns how many uploads were repaired.
pub async fn repair(st: &Uploads) -> anyhow::Result<usize> {
    let mut repaired = 0;
    for u in db::received_uploads(&st.db, now()).await? {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let t = now();
        if !db::lock_upload(&st.db, &u.id, &token, t, t + LOCK_SECS).await? {
            continue;
        }
        let result = async {
            // Someone may have finished it between the listing and the lock.
            match db::upload(&st.db, &u.id).await? {
                Some(u) if u.completed_at.is_none() && u.length == Some(u.upload_offset) => {
                    complete(st, &u, &token).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    tracing::info!(upload = %u.id, video = %u.video_id, "interrupted tus upload completed");
                    Ok::<_, anyhow::Error>(1)
                }
                _ => Ok(0),
            }
        }
        .await;
        let _ = db::unlock_upload(&st.db, &u.id, &token).await;
        repaired += result?;
    }
    for video_id in db::completed_uploads_without_job(&st.db).await? {
        let size = match st.storage.head(&keys::source(video_id)).await {
            Ok(meta) => meta.size as i64,
            Err(e) => {
                tracing::warn!(video = %video_id, error = %e, "a completed upload's source cannot be read; left as it is");
                continue;
            }
        };
        let mut tx = st.db.begin().await?;
        if !db::source_stored(&mut *tx, video_id, size, now()).await? {
            tx.rollback().await?;
            continue;
        }
        queue::enqueue(&mut *tx, video_id, st.cfg.job_max_attempts as i64).await?;
        tx.commit().await?;
        tracing::info!(video = %video_id, "completed upload had no transcode job; queued one");
        repaired += 1;
    }
    Ok(repaired)
}

/// Remove scratch prefixes (`uploads/<id>/`) of uploads that are finished or gone: what a
/// request killed after storing a tail, or before removing its prefix, left behind. Returns
/// how many prefixes were removed.
pub async fn sweep_scratch(st: &Uploads) -> anyhow::Result<usize> {
    let root = keys::uploads();
    let mut ids: Vec<UploadId> = st
        .storage
        .list(&root)
        .await?
        .into_iter()
        .filter_map(|o| o.key.as_str().split('/').nth(1).map(UploadId::new))
        .collect();
    ids.dedup();
    let mut removed = 0;
    for id in ids {
        // A row is written before any scratch object, so no row means the upload is gone.
        let finished = match db::upload(&st.db, &id).await? {
            None => true,
            Some(u) => u.completed_at.is_some(),
        };
        if finished {
            st.storage.delete_prefix(&keys::upload(&id)).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The result of a PATCH.
pub struct Patched {
    pub offset: i64,
    pub expires_at: i64,
    /// The video id once this request delivered the last byte.
    pub completed_video: Option<VideoId>,
}

/// Check a PATCH against the upload's state: its offset and any new length. Applies a newly
/// declared length to `u`.
fn check_patch(
    st: &Uploads,
    u: &mut UploadRow,
    offset: i64,
    new_length: Option<i64>,
) -> Result<(), TusError> {
    if u.completed_at.is_none() && u.expires_at < now() {
        return Err(TusError::Expired);
    }
    if offset != u.upload_offset {
        return Err(TusError::OffsetMismatch { given: offset, actual: u.upload_offset });
    }
    if let Some(len) = new_length {
        match u.length {
            Some(existing) if existing != len => {
                return Err(Error::malformed(
                    "length_mismatch",
                    "Upload-Length cannot change once set",
                )
                .into())
            }
            _ if len < u.upload_offset || len <= 0 => {
                return Err(Error::malformed(
                    "invalid_length",
                    "Upload-Length is smaller than what was received",
                )
                .into())
            }
            _ if len as u64 > st.cfg.max_upload_bytes => return Err(Error::TooLarge.into()),
            _ => u.length = Some(len),
        }
    }
    Ok(())
}

/// `PATCH /uploads/{id}` (and the body of a creation-with-upload `POST`): append `body` at
/// `offset`. `new_length` sets a deferred length.
pub async fn append(
    st: &Uploads,
    caller: &Caller,
    id: &UploadId,
    offset: i64,
    new_length: Option<i64>,
    body: ByteStream,
) -> Result<Patched, TusError> {
    let mut u = owned(st, caller, id).await?;
    // Refuse what is wrong already without taking the lock…
    check_patch(st, &mut u, offset, new_length)?;
    if u.completed_at.is_some() {
        return Ok(Patched {
            offset: u.upload_offset,
            expires_at: u.expires_at,
            completed_video: Some(u.video_id),
        });
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let t = now();
    if !db::lock_upload(&st.db, id, &token, t, t + LOCK_SECS).await.map_err(Error::from)? {
        return Err(TusError::Locked);
    }
    let result = async {
        // …and check again on the state as it is under the lock: another request may have
        // written between our first read and the lock.
        let mut u =
            db::upload(&st.db, id).await.map_err(Error::from)?.ok_or(Error::not_found("upload"))?;
        check_patch(st, &mut u, offset, new_length)?;
        if u.completed_at.is_some() {
            return Ok(Patched {
                offset: u.upload_offset,
                expires_at: u.expires_at,
                completed_video: Some(u.video_id),
            });
        }
        let allowance = limits::resume(&st.db, &st.cfg, u.user_id, u.video_id, now()).await?;
        let saved_offset = u.upload_offset;
        let writer = Writer {
            st,
            token: &token,
            u,
            saved_offset,
            start: saved_offset,
            allowance,
            refreshed: Instant::now(),
        };
        writer.run(body).await
    }
    .await;
    let _ = db::unlock_upload(&st.db, id, &token).await;
    result
}

/// upload complete, record the source and enqueue its transcode; then drop its scratch
/// Complete an upload whose every byte is stored and recorded (`u.upload_offset` is its
/// length), under the lock `token`: assemble the source, then in one transaction mark the
/// objects. Safe to run again after a crash at any point: a multipart upload that is already
/// assembled (completing it again fails, with whatever error the store gives for an unknown
/// upload) is recognised by the source object being there, whole. Returns the video id.
async fn complete(st: &Uploads, u: &UploadRow, token: &str) -> Result<VideoId, TusError> {
    let source = keys::source(u.video_id);
    let mut assembling = None;
    if let Some(mp) = &u.multipart_id {
        let parts: Vec<CompletedPart> = serde_json::from_str(&u.parts).unwrap_or_default();
        assembling = st.storage.complete_multipart(&source, mp, &parts).await.err();
    }
    let stored = match st.storage.head(&source).await {
        Ok(meta) => meta,
        Err(e) => return Err(Error::internal(assembling.unwrap_or(e)).into()),
    };
    if stored.size as i64 != u.upload_offset {
        if let Some(e) = assembling {
            return Err(Error::internal(e).into());
        }
        return Err(Error::internal(anyhow::anyhow!(
            "upload {}: the source holds {} bytes, {} were received",
            u.id,
            stored.size,
            u.upload_offset
        ))
        .into());
    }
    let t = now();
    let mut tx = st.db.begin().await.map_err(Error::from)?;
    if !db::mark_upload_complete(&mut *tx, &u.id, token, t).await.map_err(Error::from)? {
        tx.rollback().await.map_err(Error::from)?;
        return Err(TusError::Locked);
    }
    if !db::source_stored(&mut *tx, u.video_id, u.upload_offset, t).await.map_err(Error::from)? {
        tx.rollback().await.map_err(Error::from)?;
        return Err(Error::internal(anyhow::anyhow!(
            "upload {}: its video is no longer uploading",
            u.id
        ))
        .into());
    }
    queue::enqueue(&mut *tx, u.video_id, st.cfg.job_max_attempts as i64)
        .await
        .map_err(Error::from)?;
    tx.commit().await.map_err(Error::from)?;
    remove_scratch(st, &u.id).await;
    Ok(u.video_id)
}
