//! The failed-login limiter: a pure state machine keyed by login and by
//! client address, with time passed in.
//!
//! Policy: `max_failures` failures inside `window` lock the key for
//! `base_lock`; each further lock-out of the same key doubles the lock, up
//! to `max_lock` (back-off). A successful login clears the login's record,
//! but not the address's, so an attacker cannot reset an address by logging
//! into an account of their own. Entries that are neither locked nor hold
//! recent failures are dropped by [`LoginLimiter::handle_timeout`], so memory
//! stays bounded by recent attackers.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::names::LoginName;

/// What a failure is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// One login name, whoever tries it.
    Login(LoginName),
    /// One client address, whatever login it tries.
    Ip(IpAddr),
}

/// Limits of the failed-login limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Failures allowed inside `window` before a lock.
    pub max_failures: usize,
    /// Sliding window in which failures are counted.
    pub window: Duration,
    /// Length of the first lock.
    pub base_lock: Duration,
    /// Longest lock after repeated back-off.
    pub max_lock: Duration,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            base_lock: Duration::from_secs(15 * 60),
            max_lock: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Times of failures still inside the window, oldest first.
    failures: VecDeque<SystemTime>,
    /// End of the current lock, if any.
    locked_until: Option<SystemTime>,
    /// Locks so far; drives the back-off, forgotten with the record.
    lockouts: u32,
}

/// Counts failed logins and says when a key is locked.
#[derive(Debug)]
pub struct LoginLimiter {
    policy: LimitPolicy,
    records: HashMap<LimitKey, Record>,
}

impl LoginLimiter {
    /// A limiter with no history.
    pub fn new(policy: LimitPolicy) -> Self {
        Self {
            policy,
            records: HashMap::new(),
        }
    }

    /// `Err(retry_after)` if `key` is locked at `now`.
    pub fn check(&self, key: &LimitKey, now: SystemTime) -> Result<(), Duration> {
        match self.records.get(key).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until.duration_since(now).unwrap_or_default()),
            _ => Ok(()),
        }
    }

    /// Counts a failure against `key`; returns the lock length if this
    /// failure caused a lock.
    pub fn record_failure(&mut self, key: LimitKey, now: SystemTime) -> Option<Duration> {
        let policy = &self.policy;
        let rec = self.records.entry(key).or_default();
        prune(&mut rec.failures, policy.window, now);
        rec.failures.push_back(now);
        if rec.failures.len() < policy.max_failures {
            return None;
        }
        rec.failures.clear();
        let factor = 1u32.checked_shl(rec.lockouts.min(31)).unwrap_or(u32::MAX);
        let lock = policy
            .base_lock
            .checked_mul(factor)
            .unwrap_or(policy.max_lock)
            .min(policy.max_lock);
        rec.lockouts = rec.lockouts.saturating_add(1);
        rec.locked_until = Some(now + lock);
        Some(lock)
    }

    /// Forgets the failures of `key` after a successful login.
    pub fn record_success(&mut self, key: &LimitKey) {
        self.records.remove(key);
    }

    /// Drops records with no lock and no failure inside the window. A lock
    /// that ended keeps its back-off level until the window after it passes.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        let window = self.policy.window;
        self.records.retain(|_, r| {
            prune(&mut r.failures, window, now);
            let lock_recent = r.locked_until.is_some_and(|u| u + window > now);
            lock_recent || !r.failures.is_empty()
        });
    }

    /// Number of keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.records.len()
    }
}

fn prune(failures: &mut VecDeque<SystemTime>, window: Duration, now: SystemTime) {
    while failures.front().is_some_and(|t| *t + window <= now) {
        failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn key() -> LimitKey {
        LimitKey::Login(LoginName::parse("alice").expect("valid"))
    }

    /// Five failures lock for 15 minutes; the lock ends exactly then.
    #[test]
    fn locks_after_five_failures() {
        let mut l = LoginLimiter::new(LimitPolicy::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..4 {
            assert_eq!(l.record_failure(key(), t0 + Duration::from_secs(i)), None);
            assert!(l.check(&key(), t0).is_ok());
        }
        let t = t0 + Duration::from_secs(4);
        assert_eq!(l.record_failure(key(), t), Some(Duration::from_secs(900)));
        assert_eq!(l.check(&key(), t), Err(Duration::from_secs(900)));
        assert_eq!(
            l.check(&key(), t + Duration::from_secs(899)),
            Err(Duration::from_secs(1))
        );
        assert!(l.check(&key(), t + Duration::from_secs(900)).is_ok());
    }

    /// Failures spread wider than the window never lock.
    #[test]
    fn old_failures_expire() {
        let mut l = LoginLimiter::new(LimitPolicy::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..20 {
            let t = t0 + Duration::from_secs(i * 300);
            assert_eq!(l.record_failure(key(), t), None, "failure {i}");
        }
    }

    /// Repeated lock-outs double the lock, capped at `max_lock`.
    #[test]
    fn back_off_doubles_and_caps() {
        let policy = LimitPolicy {
            max_lock: Duration::from_secs(3600),
            ..LimitPolicy::default()
        };
        let mut l = LoginLimiter::new(policy);
        let mut t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut locks = Vec::new();
        for _ in 0..4 {
            let mut lock = None;
            for _ in 0..5 {
                lock = l.record_failure(key(), t);
            }
            let lock = lock.expect("fifth failure locks");
            locks.push(lock.as_secs());
            t += lock;
        }
        assert_eq!(locks, [900, 1800, 3600, 3600]);
    }

    /// Success clears the login; idle records are pruned.
    #[test]
    fn success_and_pruning() {
        let mut l = LoginLimiter::new(LimitPolicy::default());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ip = LimitKey::Ip("192.0.2.7".parse().expect("ip"));
        for _ in 0..3 {
            l.record_failure(key(), t0);
            l.record_failure(ip.clone(), t0);
        }
        l.record_success(&key());
        assert_eq!(l.tracked(), 1);
        l.handle_timeout(t0 + Duration::from_secs(899));
        assert_eq!(l.tracked(), 1);
        l.handle_timeout(t0 + Duration::from_secs(900));
        assert_eq!(l.tracked(), 0);
    }
}
