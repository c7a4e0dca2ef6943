//! Filesystem backend: one file per object under a root directory.
//!
//! Writes go to a temporary file in `<root>/.tmp` and are renamed into place, so readers see
//! either the old object or the whole new one. Keys are validated [`ObjectKey`]s (no `..`, no
//! empty or absolute segments), and are joined below the root only here. Multipart uploads live
//! in `<root>/.multipart/<upload id>/` until they complete (see [`multipart`]).
//!
//! Content hashes (the etags) are 128-bit XXH3: a validator, not a signature, and at memory
//! speed, so hashing never limits an upload.
//!
//! Hashing and writing a body, and concatenating parts, run on the blocking pool, never on
//! the async runtime's threads: the async side only hands over chunks, a batch at a time. A
//! write whose future is dropped midway removes its temporary file (see [`TempFile`]).

use std::io::{SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use xxhash_rust::xxh3::Xxh3;

mod multipart;

use super::{
    stream_from_reader, within, ByteStream, CompletedPart, GetObject, ListedObject, ObjectKey,
    ObjectMeta, ObjectStore, StorageError,
};

/// Objects as files under `root`.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    /// Parts of one multipart upload are stored one at a time (striped by upload id).
    part_locks: Vec<tokio::sync::Mutex<()>>,
}

const TMP_DIR: &str = ".tmp";
const MULTIPART_DIR: &str = ".multipart";

impl FsStore {
    /// Use (and create if needed) `root`.
    pub async fn open(root: impl Into<PathBuf>) -> std::io::Result<FsStore> {
        let root = root.into();
        fs::create_dir_all(root.join(TMP_DIR)).await?;
        fs::create_dir_all(root.join(MULTIPART_DIR)).await?;
        let root = fs::canonicalize(&root).await?;
        let part_locks = (0..32).map(|_| tokio::sync::Mutex::new(())).collect();
        Ok(FsStore { root, part_locks })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees plain segments, so this join stays below the root.
        self.root.join(key.as_str())
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf, StorageError> {
        if upload_id.is_empty()
            || !upload_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StorageError::NoSuchUpload(upload_id.to_string()));
        }
        Ok(self.root.join(MULTIPART_DIR).join(upload_id))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join(TMP_DIR).join(uuid::Uuid::new_v4().to_string())
    }

    /// Write `body` to a fresh temp file on the blocking pool, hashing it as it goes; returns
    /// the file (removed when dropped unless published), its size and content hash.
    async fn write_temp(&self, body: ByteStream) -> Result<(TempFile, u64, String), StorageError> {
        let tmp = TempFile::new(self.tmp_path());
        let (size, etag) = write_body(&tmp, body, None).await?;
        Ok((tmp, size, etag))
    }
}

/// Write `body` into `file` on the blocking pool, a batch at a time, hashing it as it goes,
/// and sync it: a new file when `at` is `None`, else from byte `at` of the file (created if
/// need be, cut there first). Returns the bytes written and their content hash.
async fn write_body(
    file: &TempFile,
    mut body: ByteStream,
    at: Option<u64>,
) -> Result<(u64, String), StorageError> {
    let mut state: Option<(Option<std::fs::File>, Box<Xxh3>, u64)> =
        Some((None, Box::new(Xxh3::new()), 0));
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0;
    loop {
        let end = match body.next().await {
            Some(Ok(chunk)) => {
                batched += chunk.len();
                batch.push(chunk);
                false
            }
            // Dropping a temporary `file` removes what was written.
            Some(Err(e)) => return Err(e.into()),
            None => true,
        };
        if !end && batched < WRITE_BATCH {
            continue;
        }
        let chunks = std::mem::take(&mut batch);
        batched = 0;
        let (open, mut hasher, mut size) =
            state.take().expect("state is put back after each batch");
        state = Some(
            file.run(move |path| {
                let mut file = match open {
                    Some(f) => f,
                    None => open_at(path, at)?,
                };
                for c in &chunks {
                    hasher.update(c);
                    size += c.len() as u64;
                    file.write_all(c)?;
                }
                if end {
                    file.sync_data()?;
                }
                Ok((Some(file), hasher, size))
            })
            .await?,
        );
        if end {
            break;
        }
    }
    let (_, hasher, size) = state.expect("state after the last batch");
    Ok((size, hex::encode(hasher.digest128().to_be_bytes())))
}

/// `path` opened for writing: a new, empty file, or (`at` given) positioned at byte `at`
/// with everything from there on cut off.
fn open_at(path: &Path, at: Option<u64>) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    match at {
        None => std::fs::File::create(path),
        Some(at) => {
            let mut f =
                std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
            f.set_len(at)?;
            f.seek(SeekFrom::Start(at))?;
            Ok(f)
        }
    }
}

/// Bytes handed to the blocking pool at a time.
const WRITE_BATCH: usize = 1024 * 1024;

/// A temporary file being written on the blocking pool. Dropped before it is published (the
/// write failed, or its future was dropped), it is removed; a blocking step still running
/// then removes it itself when it ends, so a cancelled write never leaves a file behind.
struct TempFile {
    path: PathBuf,
    cancelled: Arc<AtomicBool>,
    published: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> TempFile {
        TempFile { path, cancelled: Arc::new(AtomicBool::new(false)), published: false }
    }

    /// A file that is not temporary (a multipart upload's data): never removed by us.
    fn kept(path: PathBuf) -> TempFile {
        TempFile { path, cancelled: Arc::new(AtomicBool::new(false)), published: true }
    }

    /// Run `step` on the file's path on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        step: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let (path, cancelled) = (self.path.clone(), self.cancelled.clone());
        tokio::task::spawn_blocking(move || {
            let out = step(&path);
            if cancelled.load(Ordering::SeqCst) {
                let _ = std::fs::remove_file(&path);
            }
            out
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Rename the file to `dest` (on the blocking pool), making dirs as needed, and write
    /// `etag` beside it; then it is no longer temporary.
    async fn publish(mut self, dest: PathBuf, etag: Option<String>) -> std::io::Result<()> {
        self.run(move |path| {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(path, &dest)?;
            if let Some(etag) = etag {
                std::fs::write(etag_path(&dest), etag)?;
            }
            Ok(())
        })
        .await?;
        self.published = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            self.cancelled.store(true, Ordering::SeqCst);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The etag (a content hash) is kept in a hidden sidecar `<dir>/.etag.<name>`; keys never start
/// with a dot, so no object can collide with it, and `list` skips it.
fn etag_path(object: &Path) -> PathBuf {
    let name = object.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    object.with_file_name(format!(".etag.{name}"))
}

/// Remove the file at `path`; a file that is not there is already removed.
async fn remove_if_there(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn not_found_as(key: &ObjectKey) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound(key.clone())
        } else {
            StorageError::Io(e)
        }
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        _content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let (tmp, _size, etag) = self.write_temp(body).await?;
        tmp.publish(self.path_of(key), Some(etag)).await?;
        self.head(key).await
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, StorageError> {
        let path = self.path_of(key);
        let mut file = fs::File::open(&path).await.map_err(not_found_as(key))?;
        let meta = meta_of(&path, &file).await.map_err(not_found_as(key))?;
        let range = within(range, meta.size)?;
        file.seek(SeekFrom::Start(range.start)).await?;
        let body = stream_from_reader(file.take(range.end - range.start));
        Ok(GetObject { meta, range, body })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let path = self.path_of(key);
        let file = fs::File::open(&path).await.map_err(not_found_as(key))?;
        meta_of(&path, &file).await.map_err(not_found_as(key))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let path = self.path_of(key);
        remove_if_there(&etag_path(&path)).await?;
        remove_if_there(&path).await
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ListedObject>, StorageError> {
        let mut out = Vec::new();
        let mut stack = vec![self.path_of(prefix)];
        while let Some(dir) = stack.pop() {
            let mut entries = match fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let ft = entry.file_type().await?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".etag.") {
                    continue;
                }
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if ft.is_file() {
                    let rel = entry
                        .path()
                        .strip_prefix(&self.root)
                        .map(|p| p.to_string_lossy().into_owned());
                    if let Ok(rel) = rel {
                        if let Ok(key) = ObjectKey::new(rel) {
                            out.push(ListedObject { key, size: entry.metadata().await?.len() });
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn create_multipart(
        &self,
        _key: &ObjectKey,
        _content_type: &str,
    ) -> Result<String, StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        fs::create_dir_all(self.upload_dir(&id)?).await?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: ByteStream,
        len: u64,
    ) -> Result<CompletedPart, StorageError> {
        self.store_part(upload_id, part_number, body, len).await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta, StorageError> {
        self.assemble(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, _key: &ObjectKey, upload_id: &str) -> Result<(), StorageError> {
        let dir = self.upload_dir(upload_id)?;
        match fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        let probe = self.tmp_path();
        fs::write(&probe, b"ok").await?;
        fs::remove_file(&probe).await?;
        Ok(())
    }
}

async fn meta_of(path: &Path, file: &fs::File) -> std::io::Result<ObjectMeta> {
    let md = file.metadata().await?;
    if !md.is_file() {
        return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    }
    let mtime = md.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let etag = match fs::read_to_string(etag_path(path)).await {
        Ok(s) => s.trim().to_string(),
        // An object put there by hand: size and time are the best validator we have.
        Err(_) => format!("{:x}-{:x}", md.len(), mtime),
    };
    Ok(ObjectMeta { size: md.len(), last_modified: mtime, etag })
}
