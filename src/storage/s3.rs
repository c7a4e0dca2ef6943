//! S3 backend on aws-sdk-s3, for AWS, MinIO, NCP Object Storage, R2 and anything else that
//! speaks the protocol: custom endpoint, region and path-style addressing come from the config.
//!
//! Streams stay streams. A `put` of unknown length reads at most one part (8 MiB) ahead: a small
//! body becomes one `PutObject`, a larger one a multipart upload whose parts are sent as they
//! fill. Streaming bodies are sent with `UNSIGNED-PAYLOAD` (the SDK's choice for bodies not in
//! memory), and checksums are only computed where the API requires them, which keeps
//! S3-compatible servers that lack the newer checksum headers working.

use std::ops::Range;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as SdkCompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_types::body::SdkBody;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::{
    ByteStream, CompletedPart, GetObject, ListedObject, ObjectKey, ObjectMeta, ObjectStore,
    StorageError,
};
use crate::config::Config;

/// Size of the parts `put` sends when a body outgrows one request.
const PUT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one `put` uploaded at the same time: enough to fill a network link, while at
/// most `PARTS_IN_FLIGHT + 1` parts are held in memory.
const PARTS_IN_FLIGHT: usize = 4;

/// A bucket on an S3-compatible service.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

impl S3Store {
    /// Build a client from `LECTERN_S3_*`. Without explicit keys, the usual AWS credential chain
    /// (environment, profile, instance role) is used.
    pub async fn from_config(cfg: &Config) -> anyhow::Result<S3Store> {
        let bucket = cfg.s3_bucket.clone().context("LECTERN_S3_BUCKET is not set")?;
        let mut builder = match (&cfg.s3_access_key, cfg.s3_secret_key.is_empty()) {
            (Some(ak), false) => aws_sdk_s3::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(
                    ak,
                    cfg.s3_secret_key.expose(),
                    None,
                    None,
                    "lectern-config",
                )),
            _ => {
                let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
                aws_sdk_s3::config::Builder::from(&shared)
            }
        };
        builder = builder
            .region(Region::new(cfg.s3_region.clone()))
            .force_path_style(cfg.s3_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = cfg.s3_endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3Store { client: Client::from_conf(builder.build()), bucket })
    }

    /// Create the bucket if it does not exist (used by tests and `lectern serve` on first start).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(backend(e, "creating the bucket")),
        }
    }

    /// Begin a multipart upload in a task of its own, so that a `put` dropped while the
    /// request is in flight still learns the upload's id and aborts it.
    async fn create_multipart_owned(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (store, key, content_type) = (self.clone(), key.clone(), content_type.to_string());
        tokio::spawn(async move {
            let created = store.create_multipart(&key, &content_type).await;
            if let Err(Ok(upload_id)) = tx.send(created) {
                let _ = store.abort_multipart(&key, &upload_id).await;
            }
        });
        rx.await.map_err(|_| {
            StorageError::Backend(anyhow::anyhow!("CreateMultipartUpload task ended"))
        })?
    }

    async fn put_bytes(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| backend(e, "PutObject"))?;
        Ok(())
    }
}

fn backend<E>(err: SdkError<E>, what: &'static str) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StorageError::Backend(anyhow::anyhow!(
        "{what}: {}",
        aws_sdk_s3::error::DisplayErrorContext(&err)
    ))
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            se.raw().status().as_u16() == 404
                || matches!(se.err().code(), Some("NoSuchKey") | Some("NotFound"))
        }
        _ => false,
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

/// Read up to `limit` bytes from `body` into one buffer; `carry` holds what the previous call
/// read past its limit.
async fn fill(
    body: &mut ByteStream,
    carry: &mut BytesMut,
    limit: usize,
) -> std::io::Result<(Bytes, bool)> {
    while carry.len() < limit {
        match body.next().await {
            Some(chunk) => carry.extend_from_slice(&chunk?),
            None => {
                let all = carry.split().freeze();
                return Ok((all, true));
            }
        }
    }
    Ok((carry.split_to(limit).freeze(), false))
}

/// The next part upload of `tasks` to finish.
async fn joined(
    tasks: &mut tokio::task::JoinSet<Result<CompletedPart, StorageError>>,
) -> Result<CompletedPart, StorageError> {
    match tasks.join_next().await {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(StorageError::Backend(anyhow::anyhow!("a part upload failed: {e}"))),
        None => Err(StorageError::Backend(anyhow::anyhow!("no part upload in flight"))),
    }
}

/// The multipart upload of a `put` in progress: if the `put` future is dropped before it
/// finishes (its request was cancelled), the upload is aborted in the background rather than
/// left holding its parts in the bucket.
struct AbortOnDrop {
    store: S3Store,
    key: ObjectKey,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    /// The `put` ran to its end and deals with the upload itself.
    fn disarm(mut self) {
        self.upload_id = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else { return };
        let (store, key) = (self.store.clone(), self.key.clone());
        // Without a runtime (the process is ending) the bucket's lifecycle rules must do it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.abort_multipart(&key, &upload_id).await {
                    tracing::warn!(key = %key, error = %e, "could not abort the multipart upload of a cancelled put");
                }
            });
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &ObjectKey,
        mut body: ByteStream,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let mut carry = BytesMut::new();
        let (first, done) = fill(&mut body, &mut carry, PUT_PART_SIZE).await?;
        if done {
            self.put_bytes(key, first, content_type).await?;
            return self.head(key).await;
        }
        let upload_id = self.create_multipart_owned(key, content_type).await?;
        let guard = AbortOnDrop {
            store: self.clone(),
            key: key.clone(),
            upload_id: Some(upload_id.clone()),
        };
        let result = async {
            // Parts go up PARTS_IN_FLIGHT at a time while the next one is read, each in a
            // task of its own (dropped, the set aborts them; the guard aborts the upload).
            let mut tasks = tokio::task::JoinSet::new();
            let mut parts = Vec::new();
            let (mut chunk, mut last, mut number) = (first, false, 0);
            loop {
                number += 1;
                let (store, key, id) = (self.clone(), key.clone(), upload_id.clone());
                tasks.spawn(async move {
                    let len = chunk.len() as u64;
                    store.upload_part(&key, &id, number, super::stream_from_bytes(chunk), len).await
                });
                if last {
                    break;
                }
                while tasks.len() >= PARTS_IN_FLIGHT {
                    parts.push(joined(&mut tasks).await?);
                }
                let (next, done) = fill(&mut body, &mut carry, PUT_PART_SIZE).await?;
                if next.is_empty() {
                    break;
                }
                (chunk, last) = (next, done);
            }
            while !tasks.is_empty() {
                parts.push(joined(&mut tasks).await?);
            }
            parts.sort_by_key(|p: &CompletedPart| p.part_number);
            self.complete_multipart(key, &upload_id, &parts).await
        }
        .await;
        guard.disarm();
        if result.is_err() {
            let _ = self.abort_multipart(key, &upload_id).await;
        }
        result
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<GetObject, StorageError> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key.as_str());
        let meta = self.head(key).await?;
        let range = super::within(range, meta.size)?;
        if range.start == range.end {
            // S3 cannot express an empty range; an empty body needs no request.
            return Ok(GetObject { meta, range, body: super::stream_from_bytes(Bytes::new()) });
        }
        if range != (0..meta.size) {
            req = req.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        // Pin the read to the version we just described, so metadata and body agree.
        req = req.if_match(format!("\"{}\"", meta.etag));
        let out = req.send().await.map_err(|e| {
            if is_not_found(&e) {
                StorageError::NotFound(key.clone())
            } else {
                backend(e, "GetObject")
            }
        })?;
        let body = out.body.into_async_read();
        Ok(GetObject { meta, range, body: super::stream_from_reader(body) })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let out =
            self.client.head_object().bucket(&self.bucket).key(key.as_str()).send().await.map_err(
                |e| {
                    if is_not_found(&e) {
                        StorageError::NotFound(key.clone())
                    } else {
                        backend(e, "HeadObject")
                    }
                },
            )?;
        Ok(ObjectMeta {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            last_modified: out.last_modified().map(|t| t.secs()).unwrap_or(0),
            etag: unquote(out.e_tag()),
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self.client.delete_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(e, "DeleteObject")),
        }
    }

    async fn list(&self, prefix: &ObjectKey) -> Result<Vec<ListedObject>, StorageError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}/", prefix.as_str()))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend(e, "ListObjectsV2"))?;
            for obj in page.contents() {
                if let Some(Ok(key)) = obj.key().map(ObjectKey::new) {
                    out.push(ListedObject { key, size: obj.size().unwrap_or(0).max(0) as u64 });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| backend(e, "CreateMultipartUpload"))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            StorageError::Backend(anyhow::anyhow!(
                "CreateMultipartUpload answered without an upload id"
            ))
        })
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        body: ByteStream,
        len: u64,
    ) -> Result<CompletedPart, StorageError> {
        // The SDK wants a `Sync` body; `SyncStream` makes one of a `Send` stream without locks.
        let frames = sync_wrapper::SyncStream::new(body.map_ok(http_body::Frame::data));
        let sdk_body = SdkBody::from_body_1_x(http_body_util::StreamBody::new(frames));
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(len as i64)
            .body(SdkByteStream::new(sdk_body))
            .send()
            .await
            .map_err(|e| {
                if matches!(e.code(), Some("NoSuchUpload")) {
                    StorageError::NoSuchUpload(upload_id.to_string())
                } else {
                    backend(e, "UploadPart")
                }
            })?;
        Ok(CompletedPart { part_number, etag: unquote(out.e_tag()) })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta, StorageError> {
        let parts = parts
            .iter()
            .map(|p| {
                SdkCompletedPart::builder()
                    .part_number(p.part_number)
                    .e_tag(format!("\"{}\"", p.etag))
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| {
                if matches!(e.code(), Some("NoSuchUpload")) {
                    StorageError::NoSuchUpload(upload_id.to_string())
                } else {
                    backend(e, "CompleteMultipartUpload")
                }
            })?;
        self.head(key).await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StorageError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("NoSuchUpload")) || is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(e, "AbortMultipartUpload")),
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| backend(e, "HeadBucket"))?;
        Ok(())
    }
}
