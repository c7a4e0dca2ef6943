//! Login throttling: a token bucket per email address, and a looser one per client address, so
//! that neither one account nor one client can try passwords quickly. Kept in process memory:
//! behind a load balancer each API server throttles on its own.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Per-email and per-client login attempt limits.
pub struct LoginLimiter {
    per_email: DefaultKeyedRateLimiter<String>,
    per_client: DefaultKeyedRateLimiter<String>,
}

/// A client address may try this many times more often than one email.
const CLIENT_FACTOR: u32 = 5;

impl LoginLimiter {
    /// `per_minute` attempts per email per minute (burst of the same size).
    pub fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).expect("non-zero");
        let c = NonZeroU32::new(per_minute.max(1).saturating_mul(CLIENT_FACTOR)).expect("non-zero");
        LoginLimiter {
            per_email: RateLimiter::keyed(Quota::per_minute(n)),
            per_client: RateLimiter::keyed(Quota::per_minute(c)),
        }
    }

    /// Count an attempt; `Err(seconds)` says how long to wait when over the limit.
    pub fn check(&self, email: &str, client: &str) -> Result<(), u64> {
        let clock = DefaultClock::default();
        for (limiter, key) in [(&self.per_email, email), (&self.per_client, client)] {
            if let Err(not_until) = limiter.check_key(&key.to_string()) {
                return Err(not_until.wait_time_from(clock.now()).as_secs().max(1));
            }
        }
        if self.per_email.len() > 100_000 {
            self.per_email.retain_recent();
            self.per_client.retain_recent();
        }
        Ok(())
    }
}
