//! The writing side of a tus PATCH: the body into parts of the store, the offset kept, and
//! the upload completed once its last byte is in.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::super::db::{self, UploadRow};
use super::super::limits::Allowance;
use super::super::Uploads;
use super::super::{sniff, UploadError};
use super::*;
use crate::db::now;
use crate::error::{Error, Result};
use crate::storage::{keys, read_ahead, stream_from_bytes, ByteStream, CompletedPart, ObjectKey};

/// One PATCH's writing state.
pub(super) struct Writer<'a> {
    pub(super) st: &'a Uploads,
    pub(super) token: &'a str,
    pub(super) u: UploadRow,
    /// The offset the database holds (what has been charged to the uploader's usage).
    pub(super) saved_offset: i64,
    /// The offset this request started at.
    pub(super) start: i64,
    pub(super) allowance: Allowance,
    pub(super) refreshed: Instant,
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
        if !db::lock_upload(&self.st.db, &self.u.id, self.token, t, t + LOCK_SECS)
            .await
            .map_err(Error::from)?
        {
            return Err(TusError::Locked);
        }
        self.refreshed = Instant::now();
        Ok(())
    }

    /// Record the upload's state (and charge what it gained) if we still hold the lock.
    async fn save(&mut self) -> Result<(), TusError> {
        let t = now();
        self.u.expires_at = t + self.st.cfg.upload_expiry_secs as i64;
        let gained = self.u.upload_offset - self.saved_offset;
        if !db::save_upload_state(&self.st.db, &self.u, self.token, gained, t)
            .await
            .map_err(Error::from)?
        {
            return Err(TusError::Locked);
        }
        self.saved_offset = self.u.upload_offset;
        Ok(())
    }

    /// The next chunk of `body`, keeping the lock while the client is silent (the body ends
    /// itself with an error once it has been silent past the idle timeout).
    async fn next_chunk(
        &mut self,
        body: &mut ByteStream,
    ) -> Result<Option<std::io::Result<Bytes>>, TusError> {
        loop {
            match tokio::time::timeout(Duration::from_secs(LOCK_REFRESH_SECS), body.next()).await {
                Ok(chunk) => return Ok(chunk),
                Err(_) => self.refresh_lock().await?,
            }
        }
    }

    pub(super) async fn run(mut self, body: ByteStream) -> Result<Patched, TusError> {
        let stalled = Arc::new(AtomicBool::new(false));
        let body = crate::media::idle_limited(
            body,
            Duration::from_secs(self.st.cfg.upload_idle_timeout_secs),
            stalled,
        );
        // The client goes on sending while a part is stored.
        let mut body = read_ahead(body, PART_SIZE);
        let source = keys::source(self.u.video_id);
        // Start from the tail left by earlier requests.
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        if let Some(tail) = self.u.tail_key.clone() {
            let key = ObjectKey::new(tail).map_err(|e| Error::internal(anyhow::Error::new(e)))?;
            let got = self.st.storage.get(&key, None).await.map_err(Error::internal)?;
            let mut s = got.body;
            while let Some(chunk) = s.next().await {
                buf.extend_from_slice(&chunk.map_err(Error::internal)?);
            }
        }
        // Bytes on record were sniffed before they were recorded.
        let mut sniffed = self.u.upload_offset >= sniff::SNIFF_LEN as i64
            || self.u.length == Some(self.u.upload_offset);
        let mut interrupted = None;
        loop {
            let chunk = match self.next_chunk(&mut body).await? {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    interrupted = Some(e.to_string());
                    break;
                }
            };
            let received = self.parts_bytes() + buf.len() as i64 + chunk.len() as i64;
            if self.u.length.is_some_and(|len| received > len) {
                return Err(
                    Error::malformed("exceeds_length", "the body goes past Upload-Length").into()
                );
            }
            if received as u64 > self.st.cfg.max_upload_bytes {
                return Err(Error::TooLarge.into());
            }
            if let Err(limit) =
                self.allowance.check(received as u64, (received - self.start) as u64)
            {
                return Err(limit.error(&self.st.cfg, now()).into());
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
        let complete =
            self.u.length.is_some_and(|len| self.parts_bytes() + buf.len() as i64 == len);
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
            Ok(Patched {
                offset: self.u.upload_offset,
                expires_at: self.u.expires_at,
                completed_video: None,
            })
        }
    }

    /// Refuse what is clearly not a video, dropping the upload.
    async fn sniff(&mut self, head: &[u8]) -> Result<(), TusError> {
        if let Err(what) = sniff::verdict(head) {
            drop_upload(self.st, &self.u, true).await.map_err(Error::from)?;
            return Err(Error::from(UploadError::NotMedia(what)).into());
        }
        Ok(())
    }

    /// Send one part of the source's multipart upload (beginning it if needed).
    async fn send_part(&mut self, source: &ObjectKey, part: Bytes) -> Result<(), TusError> {
        let storage = &self.st.storage;
        let mp = match &self.u.multipart_id {
            Some(mp) => mp.clone(),
            None => {
                let mp = storage
                    .create_multipart(source, "application/octet-stream")
                    .await
                    .map_err(Error::internal)?;
                self.u.multipart_id = Some(mp.clone());
                mp
            }
        };
        let mut parts = self.parts();
        let len = part.len() as u64;
        let done = storage
            .upload_part(source, &mp, parts.len() as i32 + 1, stream_from_bytes(part), len)
            .await
            .map_err(Error::internal)?;
        parts.push(done);
        self.u.parts = serde_json::to_string(&parts).expect("parts serialize");
        self.u.upload_offset = self.parts_bytes() + len as i64;
        self.u.tail_size = 0;
        Ok(())
    }

    async fn upload_part(&mut self, source: &ObjectKey, part: Bytes) -> Result<(), TusError> {
        // Make sure we still own the upload before writing a part number someone else may use.
        self.refresh_lock().await?;
        // The tail is inside this part now.
        let old_tail = self.u.tail_key.take();
        self.send_part(source, part).await?;
        self.save().await?;
        self.drop_tail(old_tail).await;
        Ok(())
    }

    async fn store_tail(&mut self, tail: Bytes) -> Result<(), TusError> {
        let old = self.u.tail_key.take();
        let size = tail.len() as i64;
        if size > 0 {
            let key = keys::upload_tail(&self.u.id, &uuid::Uuid::new_v4().simple().to_string());
            self.st
                .storage
                .put(&key, stream_from_bytes(tail), "application/octet-stream")
                .await
                .map_err(Error::internal)?;
            self.u.tail_key = Some(key.to_string());
        }
        let base = self.u.upload_offset - self.u.tail_size;
        self.u.tail_size = size;
        self.u.upload_offset = base + size;
        if let Err(e) = self.save().await {
            // Nobody will point at the tail we just wrote.
            if old != self.u.tail_key {
                self.drop_tail(self.u.tail_key.clone()).await;
            }
            return Err(e);
        }
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

    /// The last byte is here: store and record every byte first, then complete.
    async fn finish(&mut self, source: &ObjectKey, last: Bytes) -> Result<Patched, TusError> {
        let old_tail = self.u.tail_key.take();
        if self.u.length == Some(self.saved_offset) {
            // An earlier request stored and recorded every byte but did not get to complete.
        } else if self.u.multipart_id.is_none() {
            // Small enough for one object: it is the source itself.
            let size = last.len() as i64;
            self.st
                .storage
                .put(source, stream_from_bytes(last), "application/octet-stream")
                .await
                .map_err(Error::internal)?;
            self.u.upload_offset = size;
            self.u.tail_size = 0;
        } else if !last.is_empty() {
            self.send_part(source, last).await?;
        } else {
            self.u.tail_size = 0;
        }
        self.save().await?;
        self.drop_tail(old_tail).await;
        let video_id = complete(self.st, &self.u, self.token).await?;
        tracing::info!(upload = %self.u.id, video = %video_id, bytes = self.u.upload_offset, "tus upload complete; transcode queued");
        Ok(Patched {
            offset: self.u.upload_offset,
            expires_at: self.u.expires_at,
            completed_video: Some(video_id),
        })
    }
}
