//! Per-address and per-user quotas on the writes that are cheap to send and dear to serve:
//! sign-ups and password changes (each an argon2 hash, and an account spammer's tool), and
//! comments and reviews (spam). Each is a token bucket (`governor`): a burst of the quota,
//! refilled evenly over its period. Past it the request is a 429 with `Retry-After`. Handlers
//! check before calling the domain, so the CLI and the demo seeder are never limited.
//!
//! Kept in process memory, like the login throttle: behind a load balancer each server
//! counts on its own. Callers pass client addresses as `http::client::ClientAddr::limit_key`
//! gives them (IPv6 per /64).

use crate::types::UserId;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::error::Error;
use crate::error::Result;

/// One quota over many keys; `None` when the quota is 0 (unlimited).
struct Bucket<K: Hash + Eq + Clone>(Option<DefaultKeyedRateLimiter<K>>);

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(per_period: u32, period: Duration) -> Self {
        Bucket(NonZeroU32::new(per_period).map(|n| {
            let quota =
                Quota::with_period(period / n.get()).expect("non-zero period").allow_burst(n);
            RateLimiter::keyed(quota)
        }))
    }

    fn take(&self, key: K) -> Result<()> {
        let Some(limiter) = &self.0 else { return Ok(()) };
        let checked = limiter.check_key(&key);
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        checked.map_err(|not_until| Error::RateLimited {
            retry_after_secs: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        })
    }
}

/// The quotas, built once from the configuration.
pub struct Quotas {
    signups: Bucket<IpAddr>,
    password_changes_per_address: Bucket<IpAddr>,
    password_changes_per_user: Bucket<UserId>,
    posts: Bucket<UserId>,
}

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

impl Quotas {
    pub fn new(cfg: &Config) -> Quotas {
        Quotas {
            signups: Bucket::new(cfg.signups_per_address_per_hour, HOUR),
            password_changes_per_address: Bucket::new(
                cfg.password_changes_per_address_per_hour,
                HOUR,
            ),
            password_changes_per_user: Bucket::new(cfg.password_changes_per_address_per_hour, HOUR),
            posts: Bucket::new(cfg.posts_per_user_per_minute, MINUTE),
        }
    }

    /// One sign-up from `client`.
    pub fn signup(&self, client: IpAddr) -> Result<()> {
        self.signups.take(client)
    }

    /// One password change by `user_id` from `client`: both are counted.
    pub fn password_change(&self, client: IpAddr, user_id: UserId) -> Result<()> {
        self.password_changes_per_address.take(client)?;
        self.password_changes_per_user.take(user_id)
    }

    /// One comment, review or review edit by `user_id`.
    pub fn post(&self, user_id: UserId) -> Result<()> {
        self.posts.take(user_id)
    }
}
