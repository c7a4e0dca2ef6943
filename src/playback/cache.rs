//! The origin shield: published HLS objects (playlists, segments, tracks) kept in memory.
//!
//! Published outputs never change (a new upload is a new video under a new prefix), so what
//! was read once can be served again from memory: as shared [`Bytes`], so a whole-segment or a
//! ranged answer is a slice of the same buffer, with no read of the store, no copy and, on S3,
//! no round trip. Concurrent misses on one object wait for a single load, so 500 viewers of a
//! new lecture cost one store GET per object per node. The cache is bounded by bytes
//! (`hls_cache_bytes`, TinyLFU admission with LRU eviction, from `moka`); objects larger than
//! `hls_cache_max_object_bytes` are streamed from the store as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::playlist::Template;
use crate::storage::{ObjectKey, ObjectMeta, Storage, StorageError};

/// A stored object, whole, in memory.
#[derive(Debug)]
pub struct CachedObject {
    pub meta: ObjectMeta,
    pub body: Bytes,
    /// For a playlist: its rewriting templates (private and public segments), made on first use.
    templates: [OnceLock<Option<Arc<Template>>>; 2],
}

impl CachedObject {
    pub fn new(meta: ObjectMeta, body: Bytes) -> CachedObject {
        CachedObject { meta, body, templates: Default::default() }
    }

    /// This playlist as a [`Template`] for rewriting; `None` when it is not a playlist.
    /// `key_refresh_secs` is the process's setting: it is made once with it.
    pub fn template(&self, public_segments: bool, key_refresh_secs: u64) -> Option<Arc<Template>> {
        self.templates[public_segments as usize]
            .get_or_init(|| {
                Template::new(&self.body, public_segments, key_refresh_secs).map(Arc::new)
            })
            .clone()
    }
}

/// Why an object did not come from the cache.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheMiss {
    /// Larger than the cache takes (or the cache is off): read it from the store instead.
    #[error("not cached")]
    Uncacheable,
    /// The store has no such object.
    #[error("no such object")]
    NotFound,
    /// The store failed; every waiter of the failed load hears the same cause.
    #[error("{0}")]
    Failed(String),
}

impl From<StorageError> for CacheMiss {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) | StorageError::InvalidKey(_) => CacheMiss::NotFound,
            other => CacheMiss::Failed(format!("{other:#}")),
        }
    }
}

/// Published objects by key, bounded by their total size.
pub struct ObjectCache {
    cache: Option<moka::future::Cache<ObjectKey, Arc<CachedObject>>>,
    max_object: u64,
    loads: AtomicU64,
}

impl ObjectCache {
    /// A cache of at most `capacity` bytes holding objects of at most `max_object` bytes;
    /// `capacity == 0` turns it off.
    pub fn new(capacity: u64, max_object: u64) -> ObjectCache {
        let cache = (capacity > 0 && max_object > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(capacity)
                // A playlist's template, made later, is about its size again: playlists are
                // a sliver of what is cached, so it is not weighed.
                .weigher(|key: &ObjectKey, v: &Arc<CachedObject>| {
                    u32::try_from(v.body.len() + key.as_str().len() + 128).unwrap_or(u32::MAX)
                })
                .build()
        });
        ObjectCache {
            cache,
            max_object: max_object.min(u32::MAX as u64 / 2),
            loads: AtomicU64::new(0),
        }
    }

    /// How many times an object was read from the store into the cache.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// The published object `key`, from memory or (once, however many ask at the same time)
    /// from `storage`.
    pub async fn get(
        &self,
        storage: &Storage,
        key: &ObjectKey,
    ) -> Result<Arc<CachedObject>, CacheMiss> {
        let Some(cache) = &self.cache else { return Err(CacheMiss::Uncacheable) };
        if let Some(hit) = cache.get(key).await {
            metrics::counter!("lectern_hls_cache_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        let loaded = cache
            .try_get_with_by_ref(key, async {
                metrics::counter!("lectern_hls_cache_total", "result" => "miss").increment(1);
                self.loads.fetch_add(1, Ordering::Relaxed);
                self.load(storage, key).await.map(Arc::new)
            })
            .await;
        loaded.map_err(|e| (*e).clone())
    }

    async fn load(&self, storage: &Storage, key: &ObjectKey) -> Result<CachedObject, CacheMiss> {
        read_whole(storage, key, self.max_object).await
    }
}

/// The stored object `key`, read whole into memory: [`CacheMiss::Uncacheable`] when it is
/// larger than `max` bytes, a failure when the store delivers fewer bytes than it announced.
pub async fn read_whole(
    storage: &Storage,
    key: &ObjectKey,
    max: u64,
) -> Result<CachedObject, CacheMiss> {
    let got = storage.get(key, None).await?;
    if got.meta.size > max {
        return Err(CacheMiss::Uncacheable);
    }
    let mut body = BytesMut::with_capacity(got.meta.size as usize);
    let mut stream = got.body;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(
            &chunk.map_err(|e| CacheMiss::Failed(format!("reading {key}: {e}")))?,
        );
    }
    if body.len() as u64 != got.meta.size {
        return Err(CacheMiss::Failed(format!(
            "{key}: read {} bytes of {}",
            body.len(),
            got.meta.size
        )));
    }
    Ok(CachedObject::new(got.meta, body.freeze()))
}
