//! The object-store suite, run against the filesystem backend and against S3 (a real
//! S3-compatible server, `s3s-fs`, on loopback).

mod common;

use bytes::Bytes;
use futures::StreamExt;
use lectern::config::Config;
use lectern::storage::{
    fs::FsStore, s3::S3Store, stream_from_bytes, ByteStream, ObjectKey, ObjectStore, StorageError,
    MIN_PART_SIZE,
};

/// A store and whatever keeps it alive.
struct Store {
    store: Box<dyn ObjectStore>,
    _guard: Box<dyn std::any::Any + Send>,
}

async fn fs_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("objects")).await.unwrap();
    Store { store: Box::new(store), _guard: Box::new(dir) }
}

async fn s3_store() -> Store {
    let server = common::s3::S3Server::start().await;
    let mut cfg = Config::default();
    server.configure(&mut cfg, "storage-suite");
    let store = S3Store::from_config(&cfg).await.unwrap();
    store.ensure_bucket().await.unwrap();
    Store { store: Box::new(store), _guard: Box::new(server) }
}

macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fs() { let s = super::fs_store().await; super::$name(&*s.store).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() { let s = super::s3_store().await; super::$name(&*s.store).await }
        }
    )+};
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// Deterministic, non-repeating-looking test data.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A body that arrives in many small, uneven chunks, like a network upload.
fn chunked(bytes: &[u8]) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> =
        bytes.chunks(65_521).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn read_all(mut body: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn put_then_get_returns_the_same_bytes(s: &dyn ObjectStore) {
    let bytes = data(300_000, 1);
    let meta = s.put(&key("videos/1/source"), chunked(&bytes), "video/mp4").await.unwrap();
    assert_eq!(meta.size, bytes.len() as u64);
    assert!(!meta.etag.is_empty());
    let got = s.get(&key("videos/1/source"), None).await.unwrap();
    assert_eq!(got.range, 0..bytes.len() as u64);
    assert_eq!(read_all(got.body).await, bytes);
    let head = s.head(&key("videos/1/source")).await.unwrap();
    assert_eq!(head.size, meta.size);
    assert_eq!(head.etag, meta.etag);
    assert!(head.last_modified > 1_600_000_000);
}

async fn ranged_reads_return_exactly_the_range(s: &dyn ObjectStore) {
    let bytes = data(100_000, 2);
    s.put(&key("r/obj"), stream_from_bytes(bytes.clone()), "application/octet-stream")
        .await
        .unwrap();
    for (a, b) in [(0u64, 1u64), (10, 20_000), (99_999, 100_000), (0, 100_000), (50_000, 50_000)] {
        let got = s.get(&key("r/obj"), Some(a..b)).await.unwrap();
        assert_eq!(got.range, a..b);
        assert_eq!(read_all(got.body).await, &bytes[a as usize..b as usize], "range {a}..{b}");
    }
    let err = s
        .get(&key("r/obj"), Some(99_000..100_001))
        .await
        .err()
        .expect("a range past the end fails");
    assert!(matches!(err, StorageError::InvalidRange { size: 100_000, .. }), "{err:?}");
}

async fn replacing_an_object_changes_its_etag(s: &dyn ObjectStore) {
    let k = key("e/obj");
    let one = s.put(&k, stream_from_bytes(data(1000, 3)), "text/plain").await.unwrap();
    let same = s.put(&k, stream_from_bytes(data(1000, 3)), "text/plain").await.unwrap();
    let other = s.put(&k, stream_from_bytes(data(1000, 4)), "text/plain").await.unwrap();
    assert_eq!(one.etag, same.etag, "same content, same etag");
    assert_ne!(one.etag, other.etag, "new content, new etag");
    assert_eq!(read_all(s.get(&k, None).await.unwrap().body).await, data(1000, 4));
}

async fn missing_objects_are_not_found_and_delete_is_idempotent(s: &dyn ObjectStore) {
    let k = key("gone/obj");
    assert!(matches!(s.head(&k).await, Err(StorageError::NotFound(_))));
    assert!(matches!(s.get(&k, None).await.err(), Some(StorageError::NotFound(_))));
    s.put(&k, stream_from_bytes("x"), "text/plain").await.unwrap();
    s.delete(&k).await.unwrap();
    s.delete(&k).await.unwrap();
    assert!(matches!(s.head(&k).await, Err(StorageError::NotFound(_))));
}

async fn list_is_by_whole_segment_prefix_and_sorted(s: &dyn ObjectStore) {
    for k in ["v/1/b.ts", "v/1/a.ts", "v/1/sub/c.ts", "v/10/x.ts", "v/1x"] {
        s.put(&key(k), stream_from_bytes(k.to_string()), "text/plain").await.unwrap();
    }
    let listed: Vec<String> =
        s.list(&key("v/1")).await.unwrap().into_iter().map(|o| o.key.to_string()).collect();
    assert_eq!(listed, ["v/1/a.ts", "v/1/b.ts", "v/1/sub/c.ts"]);
    assert_eq!(s.list(&key("v/1")).await.unwrap()[0].size, "v/1/a.ts".len() as u64);
    assert!(s.list(&key("nothing/here")).await.unwrap().is_empty());
    assert_eq!(s.delete_prefix(&key("v/1")).await.unwrap(), 3);
    assert!(s.list(&key("v/1")).await.unwrap().is_empty());
    assert_eq!(s.list(&key("v/10")).await.unwrap().len(), 1);
}

async fn multipart_uploads_assemble_parts_in_order(s: &dyn ObjectStore) {
    let k = key("mp/source");
    let p1 = data(MIN_PART_SIZE as usize, 5);
    let p2 = data(MIN_PART_SIZE as usize, 6);
    let p3 = data(12_345, 7);
    let id = s.create_multipart(&k, "video/mp4").await.unwrap();
    // Parts may arrive out of order; completion names the order.
    let c2 = s.upload_part(&k, &id, 2, chunked(&p2), p2.len() as u64).await.unwrap();
    let c1 = s.upload_part(&k, &id, 1, chunked(&p1), p1.len() as u64).await.unwrap();
    let c3 = s.upload_part(&k, &id, 3, chunked(&p3), p3.len() as u64).await.unwrap();
    assert!(
        matches!(s.head(&k).await, Err(StorageError::NotFound(_))),
        "visible before completion"
    );
    let meta = s.complete_multipart(&k, &id, &[c1, c2, c3]).await.unwrap();
    let total = (p1.len() + p2.len() + p3.len()) as u64;
    assert_eq!(meta.size, total);
    let got = s.get(&k, Some(MIN_PART_SIZE - 10..MIN_PART_SIZE + 10)).await.unwrap();
    let mut want = p1[p1.len() - 10..].to_vec();
    want.extend_from_slice(&p2[..10]);
    assert_eq!(read_all(got.body).await, want);
    let all = read_all(s.get(&k, None).await.unwrap().body).await;
    assert_eq!(all.len() as u64, total);
    assert!(
        all[..p1.len()] == p1[..]
            && all[p1.len()..p1.len() + p2.len()] == p2[..]
            && all[p1.len() + p2.len()..] == p3[..]
    );
}

async fn aborted_multipart_leaves_nothing(s: &dyn ObjectStore) {
    let k = key("mp/aborted");
    let id = s.create_multipart(&k, "video/mp4").await.unwrap();
    s.upload_part(&k, &id, 1, stream_from_bytes(data(1000, 8)), 1000).await.unwrap();
    s.abort_multipart(&k, &id).await.unwrap();
    assert!(matches!(s.head(&k).await, Err(StorageError::NotFound(_))));
    // The upload is gone (S3 says NoSuchUpload; some compatible servers say AccessDenied).
    assert!(s.upload_part(&k, &id, 2, stream_from_bytes(data(10, 8)), 10).await.is_err());
    assert!(s.list(&key("mp")).await.unwrap().is_empty());
}

async fn large_streamed_puts_go_up_in_parts(s: &dyn ObjectStore) {
    // Larger than one 8 MiB part, so the S3 backend must switch to multipart mid-stream.
    let bytes = data(19 * 1024 * 1024 + 17, 9);
    let meta = s.put(&key("big/source"), chunked(&bytes), "video/mp4").await.unwrap();
    assert_eq!(meta.size, bytes.len() as u64);
    let tail = s.get(&key("big/source"), Some(meta.size - 1000..meta.size)).await.unwrap();
    assert_eq!(read_all(tail.body).await, &bytes[bytes.len() - 1000..]);
    assert_eq!(read_all(s.get(&key("big/source"), None).await.unwrap().body).await, bytes);
}

async fn a_part_stored_again_replaces_it_and_a_broken_one_leaves_no_trace(s: &dyn ObjectStore) {
    let k = key("mp/retried");
    let (p1, p2_old, p2, p3) = (
        data(MIN_PART_SIZE as usize, 11),
        data(MIN_PART_SIZE as usize, 12),
        data(MIN_PART_SIZE as usize + 3, 13),
        data(777, 14),
    );
    let id = s.create_multipart(&k, "video/mp4").await.unwrap();
    let c1 = s.upload_part(&k, &id, 1, chunked(&p1), p1.len() as u64).await.unwrap();
    s.upload_part(&k, &id, 2, chunked(&p2_old), p2_old.len() as u64).await.unwrap();
    // Part 2 again (a tus PATCH retried after its offset was not recorded): it replaces it.
    let c2 = s.upload_part(&k, &id, 2, chunked(&p2), p2.len() as u64).await.unwrap();
    // Part 3 breaks midway, then goes up whole.
    let broken: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::from(data(500, 15))),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ];
    let err = s.upload_part(&k, &id, 3, Box::pin(futures::stream::iter(broken)), 777).await;
    assert!(err.is_err());
    let c3 = s.upload_part(&k, &id, 3, chunked(&p3), p3.len() as u64).await.unwrap();
    let meta = s.complete_multipart(&k, &id, &[c1, c2, c3]).await.unwrap();
    let want = [p1, p2, p3].concat();
    assert_eq!(meta.size, want.len() as u64);
    assert!(read_all(s.get(&k, None).await.unwrap().body).await == want);
}

async fn a_failing_body_stores_nothing(s: &dyn ObjectStore) {
    let k = key("broken/upload");
    let chunks: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::from(data(10_000, 10))),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ];
    let err = s.put(&k, Box::pin(futures::stream::iter(chunks)), "video/mp4").await;
    assert!(err.is_err());
    assert!(matches!(s.head(&k).await, Err(StorageError::NotFound(_))));
    s.check().await.unwrap();
}

on_both_stores!(
    put_then_get_returns_the_same_bytes,
    ranged_reads_return_exactly_the_range,
    replacing_an_object_changes_its_etag,
    missing_objects_are_not_found_and_delete_is_idempotent,
    list_is_by_whole_segment_prefix_and_sorted,
    multipart_uploads_assemble_parts_in_order,
    aborted_multipart_leaves_nothing,
    large_streamed_puts_go_up_in_parts,
    a_failing_body_stores_nothing,
    a_part_stored_again_replaces_it_and_a_broken_one_leaves_no_trace,
);

/// Parts that arrive in order are written once: completing renames the file they were
/// appended to (same inode), instead of copying gigabytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_order_fs_parts_are_not_copied_at_completion() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("objects")).await.unwrap();
    let k = key("mp/in-order");
    let id = store.create_multipart(&k, "video/mp4").await.unwrap();
    let parts = [data(MIN_PART_SIZE as usize, 21), data(1234, 22)];
    let mut done = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        done.push(
            store.upload_part(&k, &id, n as i32 + 1, chunked(p), p.len() as u64).await.unwrap(),
        );
    }
    let data_file = store.root().join(".multipart").join(&id).join("data");
    let inode = std::fs::metadata(&data_file).unwrap().ino();
    store.complete_multipart(&k, &id, &done).await.unwrap();
    let object = std::fs::metadata(store.root().join("mp/in-order")).unwrap();
    assert_eq!(object.ino(), inode, "the object is the file its parts were appended to");
    assert!(read_all(store.get(&k, None).await.unwrap().body).await == parts.concat());
    assert!(!store.root().join(".multipart").join(&id).exists());
}

#[test]
fn keys_cannot_escape_or_hide() {
    for bad in [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "..",
        ".",
        "a/./b",
        "a/.hidden",
        "a\\b",
        "a/b/",
        "é",
        "a b",
        "a\0b",
        "a%2fb",
    ] {
        assert!(ObjectKey::new(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["a", "videos/12/720p/seg_00001.m4s", "x-y_z.1"] {
        assert!(ObjectKey::new(good).is_ok(), "{good:?} refused");
    }
    assert!(key("a").join("../b").is_err());
}

#[tokio::test]
async fn fs_objects_stay_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("objects")).await.unwrap();
    store.put(&key("a/b/c"), stream_from_bytes("hi"), "text/plain").await.unwrap();
    assert!(dir.path().join("objects/a/b/c").is_file());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "wrote outside the root");
    // The hidden etag sidecar is never listed as an object.
    let listed = store.list(&key("a")).await.unwrap();
    assert_eq!(listed.len(), 1);
}

/// CPU time the calling thread has used so far.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Storing big uploads (hashing them, writing them, assembling multipart parts) is CPU work
/// that must not run on the async runtime's threads: on a one-thread runtime, the thread
/// spends far less CPU on a 256 MiB put, and on a 256 MiB multipart upload, than hashing
/// those bytes alone costs it.
#[tokio::test(flavor = "current_thread")]
async fn big_fs_uploads_are_hashed_and_copied_off_the_runtime_thread() {
    use sha2::Digest;
    let s = fs_store().await;
    let chunk = Bytes::from(data(1 << 20, 3));
    let body = |chunks: usize| -> ByteStream {
        let chunk = chunk.clone();
        Box::pin(futures::stream::iter((0..chunks).map(move |_| Ok(chunk.clone()))))
    };
    let before = thread_cpu();
    let mut hasher = sha2::Sha256::new();
    for _ in 0..256 {
        hasher.update(&chunk);
    }
    std::hint::black_box(hasher.finalize());
    let hashing = thread_cpu() - before;

    let before = thread_cpu();
    s.store.put(&key("big/put"), body(256), "application/octet-stream").await.unwrap();
    let put = thread_cpu() - before;
    assert!(
        put < hashing / 2,
        "the runtime thread spent {put:?} on a put whose hashing alone costs {hashing:?}"
    );

    let before = thread_cpu();
    let target = key("big/multipart");
    let id = s.store.create_multipart(&target, "application/octet-stream").await.unwrap();
    let mut parts = Vec::new();
    for n in 1..=4 {
        parts.push(s.store.upload_part(&target, &id, n, body(64), 64 << 20).await.unwrap());
    }
    s.store.complete_multipart(&target, &id, &parts).await.unwrap();
    let multipart = thread_cpu() - before;
    assert!(
        multipart < hashing / 2,
        "the runtime thread spent {multipart:?} on a multipart upload; hashing costs {hashing:?}"
    );
    assert_eq!(s.store.head(&target).await.unwrap().size, 256 << 20);
}
