//! Failed-login throttling per username and per client address (in memory, per process:
//! several hubs behind a balancer each count their own).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use common::UnixMs;

/// At most this many keys are tracked; past it, keys whose failures have all expired go first,
/// then the map is cleared (an attacker filling it only resets the count, never locks others).
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct Throttle {
    per_user: u32,
    per_address: u32,
    window_ms: i64,
    failures: Mutex<HashMap<String, VecDeque<UnixMs>>>,
}

impl Throttle {
    pub fn new(per_user: u32, per_address: u32, window: std::time::Duration) -> Self {
        Self {
            per_user,
            per_address,
            window_ms: window.as_millis() as i64,
            failures: Mutex::default(),
        }
    }

    /// When the attempt must wait: the seconds until the oldest counted failure expires, or
    /// `None` when it may proceed.
    pub fn check(&self, user: &str, address: &str, now: UnixMs) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for (key, limit) in [(user_key(user), self.per_user), (addr_key(address), self.per_address)]
        {
            if let Some(q) = map.get_mut(&key) {
                while q.front().is_some_and(|&t| t <= now - self.window_ms) {
                    q.pop_front();
                }
                if q.len() >= limit as usize {
                    let until = q.front().copied().unwrap_or(now) + self.window_ms;
                    let secs = ((until - now).max(1000) / 1000) as u64;
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, user: &str, address: &str, now: UnixMs) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            let horizon = now - self.window_ms;
            map.retain(|_, q| q.back().is_some_and(|&t| t > horizon));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for key in [user_key(user), addr_key(address)] {
            map.entry(key).or_default().push_back(now);
        }
    }

    /// A successful login forgets the user's failures (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&user_key(user));
    }
}

fn user_key(u: &str) -> String {
    format!("u:{u}")
}

fn addr_key(a: &str) -> String {
    format!("a:{a}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failures_throttle_the_user_and_the_address_until_the_window_passes() {
        let t = Throttle::new(3, 5, Duration::from_secs(60));
        for i in 0..3 {
            assert_eq!(t.check("alice", "1.1.1.1", i), None);
            t.failed("alice", "1.1.1.1", i);
        }
        assert_eq!(t.check("alice", "2.2.2.2", 10), Some(59));
        assert_eq!(t.check("bob", "1.1.1.1", 10), None);
        t.failed("bob", "1.1.1.1", 11);
        t.failed("carol", "1.1.1.1", 12);
        // Five from the address: anyone from it waits.
        assert!(t.check("dave", "1.1.1.1", 13).is_some());
        assert_eq!(t.check("dave", "3.3.3.3", 13), None);
        // The window passes.
        assert_eq!(t.check("alice", "2.2.2.2", 60_003), None);
        t.succeeded("alice");
    }
}
