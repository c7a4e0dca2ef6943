//! Multipart uploads on the filesystem, without copying the object at completion.
//!
//! Parts that arrive in order (part 1, then 2, …, a retried part again in place of itself;
//! what every tus upload does) are appended to one file, `<upload dir>/data`, synced, and their
//! place is written into the etag each returns (`<hash>.<offset>.<length>`). Completing with
//! parts that lie end to end from the start of that file renames it into place, so a 2 GiB
//! upload is written once, not written and then copied. A part that arrives out of order goes
//! to a file of its own (`<upload dir>/00007`) as S3 would allow, and completion then
//! concatenates, reading appended parts from where their etags say.
//!
//! Where the next part goes is looked up in `<upload dir>/appended.json`, which is only a hint
//! and is not synced: the parts list the caller completes with (the etags it recorded) is the
//! record. A part is appended only where nothing unaccounted lies beyond (the data file ends
//! where the hint says); otherwise — after a crash lost the hint, or a write was cut short —
//! parts go to files of their own, and nothing recorded is ever overwritten.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::fs;

use super::{remove_if_there, write_body, FsStore, TempFile};
use crate::storage::{ByteStream, CompletedPart, ObjectKey, ObjectMeta, ObjectStore, StorageError};

const DATA: &str = "data";
const APPENDED: &str = "appended.json";

/// A part stored in the data file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Appended {
    number: i32,
    offset: u64,
    len: u64,
}

/// Where a part goes: appended at `offset` of the data file, or a file of its own.
enum Placement {
    Append { offset: u64 },
    Alone,
}

impl FsStore {
    /// Store part `number` of upload `upload_id` (see the module documentation).
    pub(super) async fn store_part(
        &self,
        upload_id: &str,
        number: i32,
        body: ByteStream,
        len: u64,
    ) -> Result<CompletedPart, StorageError> {
        let dir = self.upload_dir(upload_id)?;
        let _one_at_a_time = self.part_lock(upload_id).lock().await;
        let mut appended = read_appended(&dir, upload_id).await?;
        let end = appended.last().map_or(0, |a| a.offset + a.len);
        let data_len = match fs::metadata(dir.join(DATA)).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        let placement = match appended.last() {
            // Bytes past what the hint accounts for: never write over them.
            _ if data_len != end => Placement::Alone,
            None if number == 1 => Placement::Append { offset: 0 },
            Some(last) if last.number + 1 == number => Placement::Append { offset: end },
            Some(last) if last.number == number => Placement::Append { offset: last.offset },
            _ => Placement::Alone,
        };
        // A part stored again is forgotten before it is overwritten: a failed retry leaves a
        // gap, which the next append refuses to write over.
        let before = appended.len();
        appended.retain(|a| a.number != number);
        if appended.len() != before {
            write_appended(&dir, &appended).await?;
        }
        let etag = match placement {
            Placement::Append { offset } => {
                let data = TempFile::kept(dir.join(DATA));
                let (size, hash) = write_body(&data, body, Some(offset)).await?;
                check_len(number, len, size)?;
                appended.push(Appended { number, offset, len });
                write_appended(&dir, &appended).await?;
                remove_if_there(&dir.join(part_file(number))).await?;
                format!("{hash}.{offset}.{len}")
            }
            Placement::Alone => {
                let (tmp, size, etag) = self.write_temp(body).await?;
                check_len(number, len, size)?;
                tmp.publish(dir.join(part_file(number)), None).await?;
                etag
            }
        };
        Ok(CompletedPart { part_number: number, etag })
    }

    /// Complete upload `upload_id` as object `key` from `parts`, in their order.
    pub(super) async fn assemble(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta, StorageError> {
        let dir = self.upload_dir(upload_id)?;
        let _one_at_a_time = self.part_lock(upload_id).lock().await;
        if !fs::try_exists(&dir).await? {
            return Err(StorageError::NoSuchUpload(upload_id.to_string()));
        }
        let places: Vec<Option<(u64, u64)>> = parts.iter().map(|p| place(&p.etag)).collect();
        let mut end = 0;
        let in_place = places.iter().all(|p| match p {
            Some((offset, len)) if *offset == end => {
                end += len;
                true
            }
            _ => false,
        });
        let out = if in_place {
            // The parts lie end to end from the start of the data file: it is the object.
            let data = TempFile::kept(dir.join(DATA));
            data.run(move |path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)?;
                if f.metadata()?.len() < end {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the data file is shorter than its parts",
                    ));
                }
                f.set_len(end)?;
                f.sync_data()
            })
            .await
            .map_err(|e| StorageError::NoSuchUpload(format!("{upload_id}: {e}")))?;
            data
        } else {
            self.concatenate(&dir, upload_id, parts, places).await?
        };
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for part in parts {
            hasher.update(part.etag.as_bytes());
        }
        let etag = format!("{}-{}", hex::encode(hasher.digest128().to_be_bytes()), parts.len());
        out.publish(self.path_of(key), Some(etag)).await?;
        let meta = self.head(key).await?;
        fs::remove_dir_all(&dir).await?;
        Ok(meta)
    }

    /// `parts` copied one after another into a new temporary file, from the data file or
    /// their own files (the kernel's work, on the blocking pool).
    async fn concatenate(
        &self,
        dir: &Path,
        upload_id: &str,
        parts: &[CompletedPart],
        places: Vec<Option<(u64, u64)>>,
    ) -> Result<TempFile, StorageError> {
        let tmp = TempFile::new(self.tmp_path());
        let (dir, id) = (dir.to_path_buf(), upload_id.to_string());
        let numbers: Vec<i32> = parts.iter().map(|p| p.part_number).collect();
        tmp.run(move |path| {
            use std::io::{Read, Seek};
            let mut out = std::fs::File::create(path)?;
            for (n, place) in numbers.into_iter().zip(places) {
                let missing = |e: std::io::Error| {
                    std::io::Error::new(
                        e.kind(),
                        format!("multipart upload {id}: part {n} cannot be opened: {e}"),
                    )
                };
                match place {
                    Some((offset, len)) => {
                        let mut f = std::fs::File::open(dir.join(DATA)).map_err(missing)?;
                        f.seek(std::io::SeekFrom::Start(offset))?;
                        if std::io::copy(&mut f.take(len), &mut out)? != len {
                            return Err(missing(std::io::ErrorKind::NotFound.into()));
                        }
                    }
                    None => {
                        let mut f = std::fs::File::open(dir.join(part_file(n))).map_err(missing)?;
                        std::io::copy(&mut f, &mut out)?;
                    }
                }
            }
            out.sync_data()
        })
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::NoSuchUpload(format!("{upload_id}: {e}"))
            } else {
                StorageError::Io(e)
            }
        })?;
        Ok(tmp)
    }

    fn part_lock(&self, upload_id: &str) -> &tokio::sync::Mutex<()> {
        let h = xxhash_rust::xxh3::xxh3_64(upload_id.as_bytes());
        &self.part_locks[(h % self.part_locks.len() as u64) as usize]
    }
}

/// Where an appended part's etag says it lies: `(offset, length)` in the data file.
fn place(etag: &str) -> Option<(u64, u64)> {
    let mut it = etag.rsplitn(3, '.');
    let len = it.next()?.parse().ok()?;
    let offset = it.next()?.parse().ok()?;
    it.next()?;
    Some((offset, len))
}

fn part_file(number: i32) -> String {
    format!("{number:05}")
}

fn check_len(number: i32, expected: u64, got: u64) -> Result<(), StorageError> {
    if got == expected {
        return Ok(());
    }
    Err(StorageError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("part {number}: expected {expected} bytes, got {got}"),
    )))
}

/// The parts in the data file; `NoSuchUpload` when the upload is not there.
async fn read_appended(dir: &Path, upload_id: &str) -> Result<Vec<Appended>, StorageError> {
    if !fs::try_exists(dir).await? {
        return Err(StorageError::NoSuchUpload(upload_id.to_string()));
    }
    match fs::read(dir.join(APPENDED)).await {
        Ok(raw) => serde_json::from_slice(&raw).map_err(|e| {
            StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("multipart upload {upload_id}: {APPENDED} is unreadable: {e}"),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Record `appended` all at once (a new file renamed over the old); a hint, not synced.
async fn write_appended(dir: &Path, appended: &[Appended]) -> Result<(), StorageError> {
    let raw = serde_json::to_vec(appended).expect("parts serialize");
    let (tmp, dest): (PathBuf, PathBuf) = (dir.join("appended.json.new"), dir.join(APPENDED));
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&raw)?;
        std::fs::rename(&tmp, &dest)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(())
}
