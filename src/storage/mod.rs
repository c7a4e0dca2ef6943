//! The object-store interface and its two backends: the local filesystem ([`fs`], the embedded
//! default) and S3 through aws-sdk-s3 ([`s3`]).
//!
//! Bodies are streams of [`Bytes`] both ways: no backend ever holds a whole object in memory.
//! Keys are [`ObjectKey`]s, validated once when made, so a key can never climb out of the
//! filesystem root or smuggle a path separator trick into S3.

pub mod fs;
pub mod s3;

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::config::{Config, StorageKind};

/// A stream of body chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// Wrap any `AsyncRead` as a [`ByteStream`].
pub fn stream_from_reader(r: impl tokio::io::AsyncRead + Send + 'static) -> ByteStream {
    Box::pin(tokio_util::io::ReaderStream::with_capacity(r, 256 * 1024))
}

/// Wrap bytes already in hand (small objects: playlists, test data) as a [`ByteStream`].
pub fn stream_from_bytes(b: impl Into<Bytes>) -> ByteStream {
    let b: Bytes = b.into();
    Box::pin(futures::stream::once(async move { Ok(b) }))
}

/// Keep reading `body` in a task of its own, up to about `bytes` ahead of the consumer, so
/// a client goes on sending while what it sent before is written (an upload's part synced to
/// disk, or sent to S3). The task stops when the consumer drops the stream.
pub fn read_ahead(mut body: ByteStream, bytes: usize) -> ByteStream {
    use futures::StreamExt;
    use tokio::sync::{OwnedSemaphorePermit, Semaphore};
    // Permits are KiB of chunks read and not yet taken.
    let kib = (bytes / 1024).max(1);
    let room = Arc::new(Semaphore::new(kib));
    let (tx, rx) =
        tokio::sync::mpsc::channel::<(std::io::Result<Bytes>, OwnedSemaphorePermit)>(4096);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                _ = tx.closed() => return,
                item = body.next() => item,
            };
            let Some(item) = item else { return };
            let cost = item.as_ref().map_or(0, |b| b.len().div_ceil(1024)).min(kib);
            let permit = tokio::select! {
                _ = tx.closed() => return,
                p = room.clone().acquire_many_owned(cost as u32) => p.expect("never closed"),
            };
            let failed = item.is_err();
            if tx.send((item, permit)).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        // Taking a chunk gives its room back.
        let (item, _room) = rx.recv().await?;
        Some((item, rx))
    }))
}

/// A validated object key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty and none
/// starting with a dot (so no `.` or `..`, and no clash with a backend's own hidden files), at
/// most 1024 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

/// Why a string is not an [`ObjectKey`].
#[derive(Debug, thiserror::Error)]
#[error("invalid object key {0:?}")]
pub struct InvalidKey(pub String);

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        if is_valid_key(&key) {
            Ok(ObjectKey(key))
        } else {
            Err(InvalidKey(key))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/segment`, with `segment` checked like any key.
    pub fn join(&self, rest: &str) -> Result<ObjectKey, InvalidKey> {
        ObjectKey::new(format!("{}/{}", self.0, rest))
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1024
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

/// The object keys Lectern uses, made in one place.
pub mod keys {
    use super::ObjectKey;
    use crate::types::{JobId, UploadId, VideoId};

    fn key(s: String) -> ObjectKey {
        ObjectKey::new(s).expect("keys built from ids are valid")
    }

    /// Everything stored for a video.
    pub fn video(video_id: VideoId) -> ObjectKey {
        key(format!("videos/{video_id}"))
    }

    /// The uploaded original.
    pub fn source(video_id: VideoId) -> ObjectKey {
        key(format!("videos/{video_id}/source"))
    }

    /// Where one transcode attempt writes its HLS output; it becomes the published prefix
    /// only when the attempt completes.
    pub fn hls_output(video_id: VideoId, job_id: JobId, attempt: i64) -> ObjectKey {
        key(format!("videos/{video_id}/hls-{job_id}-{attempt}"))
    }

    /// Where every tus upload keeps its scratch objects.
    pub fn uploads() -> ObjectKey {
        key("uploads".to_string())
    }

    /// Scratch objects of a tus upload in progress.
    pub fn upload(upload_id: &UploadId) -> ObjectKey {
        key(format!("uploads/{upload_id}"))
    }

    /// Bytes of a tus upload received past its last full multipart part. Each write gets a
    /// new `nonce`, so a stale writer can never overwrite the tail the upload row points at.
    pub fn upload_tail(upload_id: &UploadId, nonce: &str) -> ObjectKey {
        key(format!("uploads/{upload_id}/tail-{nonce}"))
    }
}

/// The media type of a stored HLS output file, by its name's extension; used both when the
/// worker stores it and when the segment server serves it.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        Some("m4s") | Some("mp4") => "video/mp4",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("vtt") => "text/vtt; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What the store knows about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// Unix seconds.
    pub last_modified: i64,
    /// A strong validator for the object's content, without quotes.
    pub etag: String,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: ObjectKey,
    pub size: u64,
}

/// An object body (or a byte range of it) being read.
pub struct GetObject {
    pub meta: ObjectMeta,
    /// The bytes delivered: the requested range, or `0..size`.
    pub range: Range<u64>,
    pub body: ByteStream,
}

/// The bytes a `get` of an object of `size` bytes delivers: `range`, which must lie within it,
/// or the whole object.
pub(crate) fn within(range: Option<Range<u64>>, size: u64) -> Result<Range<u64>, StorageError> {
    match range {
        Some(r) if r.start > r.end || r.end > size => {
            Err(StorageError::InvalidRange { start: r.start, end: r.end, size })
        }
        Some(r) => Ok(r),
        None => Ok(0..size),
    }
}

/// A part uploaded to a multipart upload, to be named again at completion.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompletedPart {
    pub part_number: i32,
    pub etag: String,
}

/// Failures of the object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {0} not found")]
    NotFound(ObjectKey),
    #[error("range {start}..{end} is outside an object of {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },
    #[error("multipart upload {0} not found")]
    NoSuchUpload(String),
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage backend: {0:#}")]
    Backend(anyhow::Error),
}

/// Smallest part size S3 accepts for every part but the last (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// The object-store interface both backends implement.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Store `body` under `key`, replacing any object there. Large bodies go up in parts
    /// (S3 multipart) without ever being held whole. Readers never see a partial object.
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError>;

    /// Read the object, or the byte range `range` of it (which must lie within it).
    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, StorageError>;

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError>;

    /// Remove the object; removing a missing object succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// Every object whose key starts with `prefix` (a whole-segment prefix: `a/b` lists
    /// `a/b/…`, not `a/bc`), sorted by key.
    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ListedObject>, StorageError>;

    /// Begin a multipart upload to `key`; returns its upload id.
    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StorageError>;

    /// Upload part `part_number` (1-based). Every part but the last must be at least
    /// [`MIN_PART_SIZE`] bytes.
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: ByteStream,
        len: u64,
    ) -> Result<CompletedPart, StorageError>;

    /// Assemble the parts, in order, into the object at `key`.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta, StorageError>;

    /// Drop a multipart upload and its parts.
    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError>;

    /// Reachability check for `/readyz`.
    async fn check(&self) -> Result<(), StorageError>;

    /// Remove everything under `prefix`.
    async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<usize, StorageError> {
        let objects = self.list(prefix).await?;
        for o in &objects {
            self.delete(&o.key).await?;
        }
        Ok(objects.len())
    }
}

/// The store in use, shared.
pub type Storage = Arc<dyn ObjectStore>;

/// Open the backend the configuration names.
pub async fn open(cfg: &Config) -> anyhow::Result<Storage> {
    Ok(match cfg.storage {
        StorageKind::Fs => Arc::new(fs::FsStore::open(cfg.data_dir.join("objects")).await?),
        StorageKind::S3 => {
            let store = s3::S3Store::from_config(cfg).await?;
            store.ensure_bucket().await?;
            Arc::new(store)
        }
    })
}
