//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes), off the async
//! runtime's threads and at most one hash per CPU at a time.
//!
//! Each hash is ~19 MiB and a CPU-bound few tens of milliseconds. Unbounded, a burst of logins
//! or sign-ups would start one per request on the blocking pool (hundreds of threads), taking
//! memory without limit and every core from the rest of the server. The semaphore makes the
//! excess wait its turn instead; the per-address limits keep that queue short.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// One permit per CPU, shared by every hash and verification in the process.
fn hashing_permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            Arc::new(Semaphore::new(cpus))
        })
        .clone()
}

/// Run `work` on the blocking pool once a permit of `permits` is free. The permit travels
/// with the work, so a request that gives up waiting for the answer does not free its slot
/// while the hash is still being computed.
async fn limited<T: Send + 'static>(
    permits: Arc<Semaphore>,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let permit = permits.acquire_owned().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await?)
}

/// Hash `password` into a PHC string.
pub async fn hash(password: String) -> anyhow::Result<String> {
    limited(hashing_permits(), move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

/// True when `password` matches the PHC string `phc`. A malformed `phc` never matches. With no
/// `phc` (unknown account) the work is done against a dummy hash and the answer is false, so
/// both cases take the same time.
pub async fn verify(password: String, phc: Option<String>) -> anyhow::Result<bool> {
    limited(hashing_permits(), move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| dummy_hash().to_string());
        let ok = PasswordHash::new(&phc)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        known && ok
    })
    .await
}

/// A hash of a password nobody has, verified against when the email is unknown so that a
/// login for a missing account takes as long as one with a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"lectern-no-such-user", &salt)
            .expect("hashing")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_permits() {
        let permits = Arc::new(Semaphore::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (permits, running, peak) = (permits.clone(), running.clone(), peak.clone());
                tokio::spawn(limited(permits, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2, "peak {}", peak.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_process_allows_one_hash_per_cpu() {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(hashing_permits().available_permits(), cpus);
        assert!(verify("pw".into(), Some(hash("pw".into()).await.unwrap())).await.unwrap());
    }
}
