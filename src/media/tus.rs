//! tus 1.0.0 resumable uploads: core protocol plus the creation (with deferred length and
//! with upload), termination and expiration extensions.
//!
//! Every byte a PATCH delivers goes to object storage as it arrives, never to RAM beyond one
//! part: full parts (8 MiB) become parts of a multipart upload of the video's source object,
//! and whatever is left when the request ends — normally or by a dropped connection — is kept as
//! a "tail" object and prepended to the next part. The offset a client sees is what storage
//! holds, so a resume after a dropped connection or a server restart continues exactly there,
//! on this server or another. A per-upload lock in the database (a token with a short expiry,
//! extended as data flows) keeps two requests from writing one upload at once.

use std::time::Instant;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::db::{self, UploadRow};
use super::{queue, sniff, UploadError};
use crate::accounts::Caller;
use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::storage::{keys, stream_from_bytes, ByteStream, CompletedPart, ObjectKey};

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
/// Extensions supported, as `Tus-Extension` lists them.
pub const TUS_EXTENSIONS: &str = "creation,creation-defer-length,creation-with-upload,termination,expiration";
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
    Api(#[from] ApiError),
}

/// The state of an upload as HEAD reports it.
pub struct UploadInfo {
    pub id: String,
    pub offset: i64,
    pub length: Option<i64>,
    pub expires_at: i64,
    /// Set once the last byte has arrived.
    pub video_id: Option<i64>,
}

/// Parse `Upload-Metadata`: comma-separated `key base64value` pairs (value optional).
pub fn parse_metadata(header: &str) -> Result<Vec<(String, String)>, ApiError> {
    let bad = || ApiError::bad_request("invalid_metadata", "Upload-Metadata must be comma-separated `key base64value` pairs");
    header
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, ' ');
            let key = it.next().ok_or_else(bad)?.to_string();
            let value = match it.next() {
                Some(v) => {
                    let raw = base64::engine::general_purpose::STANDARD.decode(v.trim()).map_err(|_| bad())?;
                    String::from_utf8(raw).map_err(|_| bad())?
                }
                None => String::new(),
            };
            Ok((key, value))
        })
        .collect()
}

fn meta<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Ids are 32 lower-case hex digits; anything else cannot exist.
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `POST /uploads`: a new upload for the lecture named in the metadata.
pub async fn create(st: &AppState, caller: &Caller, length: Option<i64>, metadata: &str) -> ApiResult<(String, i64)> {
    let pairs = parse_metadata(metadata)?;
    let lecture_id: i64 = meta(&pairs, "lecture_id")
        .ok_or_else(|| ApiError::bad_request("missing_lecture_id", "Upload-Metadata must carry lecture_id"))?
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_lecture_id", "lecture_id must be an integer"))?;
    if let Some(len) = length {
        if len <= 0 {
            return Err(ApiError::bad_request("empty_upload", "Upload-Length must be positive"));
        }
        if len as u64 > st.cfg.max_upload_bytes {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    crate::catalog::editable_lecture(&st.db, caller, lecture_id).await?;
    let filename: String = meta(&pairs, "filename").or(meta(&pairs, "name")).unwrap_or("").chars().take(255).collect();
    let t = now();
    let video_id = db::insert_video(&st.db, lecture_id, caller.user_id, &filename, t).await?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    db::insert_upload(&st.db, &id, video_id, caller.user_id, length, metadata, t, t + st.cfg.upload_expiry_secs as i64)
        .await?;
    tracing::info!(upload = %id, video = video_id, lecture = lecture_id, ?length, "tus upload created");
    Ok((id, video_id))
}

/// The upload, if `caller` made it and it has not expired.
async fn owned(st: &AppState, caller: &Caller, id: &str) -> Result<UploadRow, TusError> {
    if !valid_id(id) {
        return Err(ApiError::not_found("upload").into());
    }
    let u = db::upload(&st.db, id).await.map_err(ApiError::from)?.ok_or(ApiError::not_found("upload"))?;
    if u.user_id != caller.user_id && !caller.is_admin() {
        return Err(ApiError::not_found("upload").into());
    }
    if u.completed_at.is_none() && u.expires_at < now() {
        return Err(TusError::Expired);
    }
    Ok(u)
}

/// `HEAD /uploads/{id}`.
pub async fn info(st: &AppState, caller: &Caller, id: &str) -> Result<UploadInfo, TusError> {
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
pub async fn terminate(st: &AppState, caller: &Caller, id: &str) -> Result<(), TusError> {
    let u = match owned(st, caller, id).await {
        Ok(u) => u,
        // An expired upload can still be terminated.
        Err(TusError::Expired) => db::upload(&st.db, id).await.map_err(ApiError::from)?.ok_or(ApiError::not_found("upload"))?,
        Err(e) => return Err(e),
    };
    discard(st, &u).await;
    if u.completed_at.is_none() {
        super::remove_videos(&st.db, &st.storage, &[u.video_id]).await;
    }
    db::delete_upload(&st.db, &u.id).await.map_err(ApiError::from)?;
    Ok(())
}

/// Remove an upload's scratch objects and abort its multipart upload.
async fn discard(st: &AppState, u: &UploadRow) {
    if let Some(mp) = &u.multipart_id {
        if let Err(e) = st.storage.abort_multipart(&keys::source(u.video_id), mp).await {
            tracing::warn!(upload = %u.id, error = %e, "aborting a multipart upload failed");
        }
    }
    if let Err(e) = st.storage.delete_prefix(&keys::upload(&u.id)).await {
        tracing::warn!(upload = %u.id, error = %e, "removing an upload's scratch objects failed");
    }
}

/// Delete uploads that expired unfinished, with their videos. Returns how many.
pub async fn expire(st: &AppState) -> anyhow::Result<usize> {
    let expired = db::expired_uploads(&st.db, now()).await?;
    for u in &expired {
        discard(st, u).await;
        super::remove_videos(&st.db, &st.storage, &[u.video_id]).await;
        db::delete_upload(&st.db, &u.id).await?;
        tracing::info!(upload = %u.id, video = u.video_id, "expired tus upload removed");
    }
    Ok(expired.len())
}

/// The result of a PATCH.
pub struct Patched {
    pub offset: i64,
    pub expires_at: i64,
    /// The video id once this request delivered the last byte.
    pub completed_video: Option<i64>,
}

/// `PATCH /uploads/{id}` (and the body of a creation-with-upload `POST`): append `body` at
/// `offset`. `new_length` sets a deferred length.
pub async fn append(
    st: &AppState,
    caller: &Caller,
    id: &str,
    offset: i64,
    new_length: Option<i64>,
    body: ByteStream,
) -> Result<Patched, TusError> {
    let mut u = owned(st, caller, id).await?;
    if offset != u.upload_offset {
        return Err(TusError::OffsetMismatch { given: offset, actual: u.upload_offset });
    }
    if let Some(len) = new_length {
        match u.length {
            Some(existing) if existing != len => {
                return Err(ApiError::bad_request("length_mismatch", "Upload-Length cannot change once set").into())
            }
            _ if len < u.upload_offset || len <= 0 => {
                return Err(ApiError::bad_request("invalid_length", "Upload-Length is smaller than what was received").into())
            }
            _ if len as u64 > st.cfg.max_upload_bytes => return Err(ApiError::PayloadTooLarge.into()),
            _ => u.length = Some(len),
        }
    }
    if u.completed_at.is_some() {
        return Ok(Patched { offset: u.upload_offset, expires_at: u.expires_at, completed_video: Some(u.video_id) });
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let t = now();
    if !db::lock_upload(&st.db, id, &token, t, t + LOCK_SECS).await.map_err(ApiError::from)? {
        return Err(TusError::Locked);
    }
    let result = Writer { st, token: &token, u, refreshed: Instant::now() }.run(body).await;
    let _ = db::unlock_upload(&st.db, id, &token).await;
    result
}

/// One PATCH's writing state.
struct Writer<'a> {
    st: &'a AppState,
    token: &'a str,
    u: UploadRow,
    refreshed: Instant,
}

impl Writer<'_> {
    fn parts(&self) -> Vec<CompletedPart> {
        serde_json::from_str(&self.u.parts).unwrap_or_default()
    }

    /// Bytes already in completed parts.
    fn parts_bytes(&self) -> i64 {
        self.u.upload_offset - self.u.tail_size
    }

    /// Extend the lock if it is due for it.
    async fn keep_lock(&mut self) -> Result<(), TusError> {
        if self.refreshed.elapsed().as_secs() >= LOCK_REFRESH_SECS {
            self.refresh_lock().await?;
        }
        Ok(())
    }

    /// Extend the lock now; `Locked` when another request has taken it over.
    async fn refresh_lock(&mut self) -> Result<(), TusError> {
        let t = now();
        if !db::lock_upload(&self.st.db, &self.u.id, self.token, t, t + LOCK_SECS).await.map_err(ApiError::from)? {
            return Err(TusError::Locked);
        }
        self.refreshed = Instant::now();
        Ok(())
    }

    async fn save(&mut self) -> Result<(), TusError> {
        self.u.expires_at = now() + self.st.cfg.upload_expiry_secs as i64;
        if !db::save_upload_state(&self.st.db, &self.u, self.token).await.map_err(ApiError::from)? {
            return Err(TusError::Locked);
        }
        Ok(())
    }

    async fn run(mut self, mut body: ByteStream) -> Result<Patched, TusError> {
        let source = keys::source(self.u.video_id);
        // Start from the tail left by earlier requests.
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        if let Some(tail) = self.u.tail_key.clone() {
            let key = ObjectKey::new(tail).map_err(|e| ApiError::internal(anyhow::Error::new(e)))?;
            let got = self.st.storage.get(&key, None).await.map_err(ApiError::internal)?;
            let mut s = got.body;
            while let Some(chunk) = s.next().await {
                buf.extend_from_slice(&chunk.map_err(ApiError::internal)?);
            }
        }
        let mut sniffed = self.u.upload_offset >= sniff::SNIFF_LEN as i64;
        let mut interrupted = None;
        loop {
            let chunk = match body.next().await {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    interrupted = Some(e.to_string());
                    break;
                }
            };
            let received = self.parts_bytes() + buf.len() as i64 + chunk.len() as i64;
            if self.u.length.is_some_and(|len| received > len) {
                return Err(ApiError::bad_request("exceeds_length", "the body goes past Upload-Length").into());
            }
            if received as u64 > self.st.cfg.max_upload_bytes {
                return Err(ApiError::PayloadTooLarge.into());
            }
            buf.extend_from_slice(&chunk);
            if !sniffed && (buf.len() >= sniff::SNIFF_LEN) {
                self.sniff(&buf).await?;
                sniffed = true;
            }
            while buf.len() >= PART_SIZE {
                let part = buf.split_to(PART_SIZE).freeze();
                self.upload_part(&source, part).await?;
            }
            self.keep_lock().await?;
        }
        let complete = self.u.length.is_some_and(|len| self.parts_bytes() + buf.len() as i64 == len);
        if complete && !sniffed {
            self.sniff(&buf).await?;
        }
        if complete {
            self.finish(&source, buf.freeze()).await
        } else {
            if !buf.is_empty() || self.u.tail_key.is_some() {
                self.store_tail(buf.freeze()).await?;
            } else {
                self.save().await?;
            }
            if let Some(why) = interrupted {
                tracing::info!(upload = %self.u.id, offset = self.u.upload_offset, "tus PATCH interrupted ({why}); progress kept");
            }
            Ok(Patched { offset: self.u.upload_offset, expires_at: self.u.expires_at, completed_video: None })
        }
    }

    /// Refuse what is clearly not a video, dropping the upload.
    async fn sniff(&mut self, head: &[u8]) -> Result<(), TusError> {
        if let Err(what) = sniff::verdict(head) {
            let u = self.u.clone();
            discard(self.st, &u).await;
            super::remove_videos(&self.st.db, &self.st.storage, &[u.video_id]).await;
            let _ = db::delete_upload(&self.st.db, &u.id).await;
            return Err(ApiError::from(UploadError::NotMedia(what)).into());
        }
        Ok(())
    }

    async fn upload_part(&mut self, source: &ObjectKey, part: Bytes) -> Result<(), TusError> {
        // Make sure we still own the upload before writing a part number someone else may use.
        self.refresh_lock().await?;
        let storage = &self.st.storage;
        let mp = match &self.u.multipart_id {
            Some(mp) => mp.clone(),
            None => {
                let mp = storage.create_multipart(source, "application/octet-stream").await.map_err(ApiError::internal)?;
                self.u.multipart_id = Some(mp.clone());
                mp
            }
        };
        let mut parts = self.parts();
        let len = part.len() as u64;
        let done = storage
            .upload_part(source, &mp, parts.len() as i32 + 1, stream_from_bytes(part), len)
            .await
            .map_err(ApiError::internal)?;
        parts.push(done);
        let old_tail = self.u.tail_key.take();
        self.u.parts = serde_json::to_string(&parts).expect("parts serialize");
        self.u.upload_offset = self.parts_bytes() + len as i64;
        self.u.tail_size = 0;
        self.save().await?;
        self.drop_tail(old_tail).await;
        Ok(())
    }

    async fn store_tail(&mut self, tail: Bytes) -> Result<(), TusError> {
        let old = self.u.tail_key.take();
        let size = tail.len() as i64;
        if size > 0 {
            let key = keys::upload_tail(&self.u.id, &uuid::Uuid::new_v4().simple().to_string());
            self.st.storage.put(&key, stream_from_bytes(tail), "application/octet-stream").await.map_err(ApiError::internal)?;
            self.u.tail_key = Some(key.to_string());
        }
        let base = self.u.upload_offset - self.u.tail_size;
        self.u.tail_size = size;
        self.u.upload_offset = base + size;
        self.save().await?;
        if old != self.u.tail_key {
            self.drop_tail(old).await;
        }
        Ok(())
    }

    async fn drop_tail(&self, key: Option<String>) {
        if let Some(Ok(key)) = key.map(ObjectKey::new) {
            let _ = self.st.storage.delete(&key).await;
        }
    }

    /// The last byte is here: assemble the source, enqueue the transcode.
    async fn finish(&mut self, source: &ObjectKey, last: Bytes) -> Result<Patched, TusError> {
        let storage = &self.st.storage;
        let size = self.parts_bytes() + last.len() as i64;
        match self.u.multipart_id.clone() {
            None => {
                storage.put(source, stream_from_bytes(last), "application/octet-stream").await.map_err(ApiError::internal)?;
            }
            Some(mp) => {
                let mut parts = self.parts();
                if !last.is_empty() {
                    let len = last.len() as u64;
                    parts.push(
                        storage
                            .upload_part(source, &mp, parts.len() as i32 + 1, stream_from_bytes(last), len)
                            .await
                            .map_err(ApiError::internal)?,
                    );
                }
                storage.complete_multipart(source, &mp, &parts).await.map_err(ApiError::internal)?;
                self.u.parts = serde_json::to_string(&parts).expect("parts serialize");
            }
        }
        let t = now();
        let old_tail = self.u.tail_key.take();
        self.u.upload_offset = size;
        self.u.tail_size = 0;
        self.u.completed_at = Some(t);
        self.save().await?;
        self.drop_tail(old_tail).await;
        let db = &self.st.db;
        db::set_source_size(db, self.u.video_id, size, t).await.map_err(ApiError::from)?;
        queue::enqueue(db, self.u.video_id, self.st.cfg.job_max_attempts as i64).await.map_err(ApiError::from)?;
        tracing::info!(upload = %self.u.id, video = self.u.video_id, bytes = size, "tus upload complete; transcode queued");
        Ok(Patched { offset: size, expires_at: self.u.expires_at, completed_video: Some(self.u.video_id) })
    }
}
