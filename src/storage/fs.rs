//! Filesystem backend: one file per object under a root directory.
//!
//! Writes go to a temporary file in `<root>/.tmp` and are renamed into place, so readers see
//! either the old object or the whole new one. Keys are validated [`ObjectKey`]s (no `..`, no
//! empty or absolute segments), and are joined below the root only here. Multipart parts live in
//! `<root>/.multipart/<upload id>/` until completion concatenates them.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    stream_from_reader, ByteStream, CompletedPart, GetObject, ListedObject, ObjectKey, ObjectMeta, ObjectStore,
    StorageError,
};

/// Objects as files under `root`.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
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
        Ok(FsStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees plain segments, so this join stays below the root.
        self.root.join(key.as_str())
    }

    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf, StorageError> {
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StorageError::NoSuchUpload(upload_id.to_string()));
        }
        Ok(self.root.join(MULTIPART_DIR).join(upload_id))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join(TMP_DIR).join(uuid::Uuid::new_v4().to_string())
    }

    /// Write `body` to a fresh temp file; returns its path, size and content hash.
    async fn write_temp(&self, mut body: ByteStream) -> Result<(PathBuf, u64, String), StorageError> {
        let tmp = self.tmp_path();
        let result = async {
            let mut file = fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.sync_data().await?;
            Ok::<_, std::io::Error>((size, hex::encode(&hasher.finalize()[..16])))
        }
        .await;
        match result {
            Ok((size, etag)) => Ok((tmp, size, etag)),
            Err(e) => {
                let _ = fs::remove_file(&tmp).await;
                Err(e.into())
            }
        }
    }

    async fn publish(&self, tmp: &Path, key: &ObjectKey, etag: &str) -> Result<ObjectMeta, StorageError> {
        let dest = self.path_of(key);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).await?;
        }
        fs::rename(tmp, &dest).await?;
        write_etag(&dest, etag).await?;
        self.head(key).await
    }
}

/// The etag (a content hash) is kept in a hidden sidecar `<dir>/.etag.<name>`; keys never start
/// with a dot, so no object can collide with it, and `list` skips it.
fn etag_path(object: &Path) -> PathBuf {
    let name = object.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    object.with_file_name(format!(".etag.{name}"))
}

async fn write_etag(object: &Path, etag: &str) -> std::io::Result<()> {
    fs::write(etag_path(object), etag).await
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
    async fn put(&self, key: &ObjectKey, body: ByteStream, _content_type: &str) -> Result<ObjectMeta, StorageError> {
        let (tmp, _size, etag) = self.write_temp(body).await?;
        let published = self.publish(&tmp, key, &etag).await;
        if published.is_err() {
            let _ = fs::remove_file(&tmp).await;
        }
        published
    }

    async fn get(&self, key: &ObjectKey, range: Option<Range<u64>>) -> Result<GetObject, StorageError> {
        let path = self.path_of(key);
        let mut file = fs::File::open(&path).await.map_err(not_found_as(key))?;
        let meta = meta_of(&path, &file).await.map_err(not_found_as(key))?;
        let range = match range {
            Some(r) if r.start > r.end || r.end > meta.size => {
                return Err(StorageError::InvalidRange { start: r.start, end: r.end, size: meta.size })
            }
            Some(r) => r,
            None => 0..meta.size,
        };
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
        for p in [etag_path(&path), path] {
            match fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ListedObject>, StorageError> {
        let mut out = Vec::new();
        let mut stack = vec![self.path_of(prefix)];
        while let Some(dir) = stack.pop() {
            let mut entries = match fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => continue,
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
                    let rel = entry.path().strip_prefix(&self.root).map(|p| p.to_string_lossy().into_owned());
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

    async fn create_multipart(&self, _key: &ObjectKey, _content_type: &str) -> Result<String, StorageError> {
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
        let dir = self.upload_dir(upload_id)?;
        if !fs::try_exists(&dir).await? {
            return Err(StorageError::NoSuchUpload(upload_id.to_string()));
        }
        let (tmp, size, etag) = self.write_temp(body).await?;
        if size != len {
            let _ = fs::remove_file(&tmp).await;
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("part {part_number}: expected {len} bytes, got {size}"),
            )));
        }
        fs::rename(&tmp, dir.join(format!("{part_number:05}"))).await?;
        Ok(CompletedPart { part_number, etag })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta, StorageError> {
        let dir = self.upload_dir(upload_id)?;
        if !fs::try_exists(&dir).await? {
            return Err(StorageError::NoSuchUpload(upload_id.to_string()));
        }
        let tmp = self.tmp_path();
        let mut out = fs::File::create(&tmp).await?;
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.etag.as_bytes());
            let mut f = fs::File::open(dir.join(format!("{:05}", part.part_number)))
                .await
                .map_err(|_| StorageError::NoSuchUpload(format!("{upload_id} part {}", part.part_number)))?;
            tokio::io::copy(&mut f, &mut out).await?;
        }
        out.flush().await?;
        out.sync_data().await?;
        drop(out);
        let etag = format!("{}-{}", hex::encode(&hasher.finalize()[..16]), parts.len());
        let meta = self.publish(&tmp, key, &etag).await?;
        fs::remove_dir_all(&dir).await?;
        Ok(meta)
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
