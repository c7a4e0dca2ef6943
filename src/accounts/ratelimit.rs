//! Login throttling that slows password guessing without letting anyone lock anyone out.
//!
//! Only failures count; a successful login costs nothing. Three leaky buckets of failures:
//!
//! - per client address: `5 × n` per minute across all accounts — one client cannot try many
//!   passwords, whatever accounts it aims at;
//! - per email: `n` per minute from anywhere — when full, the account is under attack;
//! - per (email, client address): drains slowly, `n` per 15 minutes — remembers who failed.
//!
//! A login is refused (429) when its client address is over its budget, when this address has
//! used its `n` guesses at this account, or when the account is under attack and this
//! address is among those failing at it. An address that has not failed at the account —
//! the owner on their usual network, typing the right password — still gets in while others
//! hammer the account. An attacker is left with a guess per address per 1.5 minutes (at the
//! default `n` = 10), where a global per-account limit would have left the owner locked out.
//!
//! Kept in process memory: behind a load balancer each API server throttles on its own.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures per key, each bucket leaking at a steady rate.
struct Leaky<K> {
    capacity: f64,
    /// Units drained per second.
    rate: f64,
    levels: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Leaky<K> {
    fn new(capacity: u32, per: Duration) -> Self {
        let capacity = f64::from(capacity.max(1));
        Leaky { capacity, rate: capacity / per.as_secs_f64(), levels: Mutex::new(HashMap::new()) }
    }

    fn level_at(&self, stored: Option<&(f64, Instant)>, now: Instant) -> f64 {
        stored.map_or(0.0, |(level, at)| {
            (level - now.duration_since(*at).as_secs_f64() * self.rate).max(0.0)
        })
    }

    fn level(&self, key: &K) -> f64 {
        let levels = self.levels.lock().expect("limiter lock");
        self.level_at(levels.get(key), Instant::now())
    }

    /// Seconds until another failure fits, or `None` if one fits now.
    fn full_for(&self, key: &K) -> Option<u64> {
        self.wait_below(key, self.capacity - 1.0)
    }

    /// Seconds until the bucket drains to `target`, or `None` if it is there already.
    fn wait_below(&self, key: &K, target: f64) -> Option<u64> {
        let over = self.level(key) - target;
        (over > 1e-9).then(|| (over / self.rate).ceil().max(1.0) as u64)
    }

    fn add(&self, key: K) {
        let now = Instant::now();
        let mut levels = self.levels.lock().expect("limiter lock");
        let level = self.level_at(levels.get(&key), now);
        levels.insert(key, ((level + 1.0).min(self.capacity), now));
        if levels.len() > 100_000 {
            let rate = self.rate;
            levels.retain(|_, (level, at)| {
                *level - now.duration_since(*at).as_secs_f64() * rate > 0.0
            });
        }
    }
}

/// How long an address's failures at one account are remembered (to drain `n` of them).
const PAIR_MEMORY: Duration = Duration::from_secs(15 * 60);

/// A client address may fail this many times more often than one account may be failed at.
const CLIENT_FACTOR: u32 = 5;

/// The login throttle.
pub struct LoginLimiter {
    per_client: Leaky<IpAddr>,
    per_email: Leaky<String>,
    per_pair: Leaky<(String, IpAddr)>,
}

impl LoginLimiter {
    /// `per_minute` failures per email per minute (and five times that per client address).
    pub fn new(per_minute: u32) -> Self {
        let n = per_minute.max(1);
        LoginLimiter {
            per_client: Leaky::new(n.saturating_mul(CLIENT_FACTOR), Duration::from_secs(60)),
            per_email: Leaky::new(n, Duration::from_secs(60)),
            per_pair: Leaky::new(n, PAIR_MEMORY),
        }
    }

    /// May `client` try a password for `email` now? `Err(seconds)` says how long to wait.
    /// Nothing is counted here; report a wrong password with [`LoginLimiter::failed`].
    pub fn check(&self, email: &str, client: IpAddr) -> Result<(), u64> {
        if let Some(wait) = self.per_client.full_for(&client) {
            return Err(wait);
        }
        let pair = (email.to_string(), client);
        if let Some(wait) = self.per_pair.full_for(&pair) {
            return Err(wait);
        }
        if let Some(account_wait) = self.per_email.full_for(&email.to_string()) {
            // Under attack: only addresses that have not failed here may try.
            if let Some(pair_wait) = self.per_pair.wait_below(&pair, 0.0) {
                return Err(account_wait.min(pair_wait));
            }
        }
        Ok(())
    }

    /// Count a failed attempt (wrong password, or no such account) by `client` at `email`.
    pub fn failed(&self, email: &str, client: IpAddr) {
        self.per_client.add(client);
        self.per_email.add(email.to_string());
        self.per_pair.add((email.to_string(), client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn successes_cost_nothing() {
        let l = LoginLimiter::new(2);
        for _ in 0..50 {
            assert!(l.check("a@x.io", ip("192.0.2.1")).is_ok());
        }
    }

    #[test]
    fn an_attack_on_an_account_does_not_lock_out_a_fresh_address() {
        let l = LoginLimiter::new(3);
        let attacker = ip("192.0.2.66");
        for _ in 0..3 {
            l.check("victim@x.io", attacker).unwrap();
            l.failed("victim@x.io", attacker);
        }
        assert!(l.check("victim@x.io", attacker).unwrap_err() >= 1);
        assert!(
            l.check("victim@x.io", ip("198.51.100.7")).is_ok(),
            "the owner's address never failed here"
        );
        assert!(l.check("other@x.io", attacker).is_ok(), "other accounts are not this one");
        // A second attacker address gets one guess while the account is under attack.
        let second = ip("192.0.2.67");
        l.check("victim@x.io", second).unwrap();
        l.failed("victim@x.io", second);
        assert!(l.check("victim@x.io", second).is_err());
    }

    #[test]
    fn one_address_failing_across_accounts_is_stopped() {
        let l = LoginLimiter::new(2);
        let sprayer = ip("203.0.113.5");
        for n in 0..10 {
            let email = format!("user{n}@x.io");
            l.check(&email, sprayer).unwrap();
            l.failed(&email, sprayer);
        }
        assert!(l.check("fresh@x.io", sprayer).is_err());
        assert!(l.check("fresh@x.io", ip("203.0.113.6")).is_ok());
    }
}
