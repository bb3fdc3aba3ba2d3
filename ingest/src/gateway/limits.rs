//! The gateway's limits before authentication: a token bucket of new connections per source
//! address, and a growing lock-out after wrong secrets per device id and per address. Both are
//! bounded maps, fed the time by the caller (`Instant`) so tests need no clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Most keys one map holds; when full, stale entries are dropped, then an arbitrary one.
pub const MAX_KEYS: usize = 65_536;
/// A key without failures for this long starts again from the first delay.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Token buckets, one per key: `rate` tokens a second up to `burst`.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst: f64::from(burst.max(1)), map: HashMap::new() }
    }

    /// Takes a token for `key`; false when its bucket is empty.
    pub fn take(&mut self, key: &K, now: Instant) -> bool {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(key) {
            // A bucket that has refilled holds no information: drop those first.
            let (rate, burst) = (self.rate, self.burst);
            self.map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
            if self.map.len() >= MAX_KEYS
                && let Some(k) = self.map.keys().next().cloned()
            {
                self.map.remove(&k);
            }
        }
        let (tokens, at) = self.map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Instant,
}

/// Consecutive login failures per key, and the lock-out they earn: none for the first `free`
/// (a mistyped secret, or one device among many behind one address), then `base`, doubling with
/// each further one, at most `max`.
#[derive(Debug)]
pub struct Lockouts<K> {
    base: Duration,
    max: Duration,
    free: u32,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Lockouts<K> {
    pub fn new(base: Duration, max: Duration, free: u32) -> Self {
        Self { base, max: max.max(base), free, map: HashMap::new() }
    }

    /// Whether `key` is locked out at `now`.
    pub fn locked(&self, key: &K, now: Instant) -> bool {
        self.map.get(key).is_some_and(|f| now < f.locked_until)
    }

    /// Notes a failure; returns the lock-out it earns.
    pub fn fail(&mut self, key: &K, now: Instant) -> Duration {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(key) {
            self.map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if self.map.len() >= MAX_KEYS
                && let Some(k) = self.map.keys().next().cloned()
            {
                self.map.remove(&k);
            }
        }
        let f = self.map.entry(key.clone()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: now,
        });
        if now.duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let delay = match f.count.checked_sub(self.free + 1) {
            None => Duration::ZERO,
            Some(n) => self.base.saturating_mul(1 << n.min(30)).min(self.max),
        };
        f.locked_until = now + delay;
        delay
    }

    /// Forgets `key`'s failures (it logged in).
    pub fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Buckets::new(2.0, 3);
        let ip = "10.0.0.1";
        assert!((0..3).all(|_| b.take(&ip, t0)), "the burst");
        assert!(!b.take(&ip, t0), "empty after the burst");
        assert!(b.take(&"10.0.0.2", t0), "another address has its own bucket");
        assert!(!b.take(&ip, t0 + Duration::from_millis(400)), "0.8 tokens are not one");
        assert!(b.take(&ip, t0 + Duration::from_millis(500)), "one token after half a second");
        assert!(!b.take(&ip, t0 + Duration::from_millis(500)));
        // Refilled to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(&ip, later)) && !b.take(&ip, later));
    }

    #[test]
    fn buckets_stay_bounded() {
        let t0 = Instant::now();
        let mut b = Buckets::new(1.0, 1);
        for i in 0..MAX_KEYS as u32 + 10 {
            b.take(&i, t0);
        }
        assert!(b.map.len() <= MAX_KEYS);
    }

    #[test]
    fn lockouts_grow_are_capped_and_are_forgotten() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Lockouts::new(s(1), s(5), 0);
        let dev = "fridge-1";
        assert!(!l.locked(&dev, t0));
        let delays: Vec<_> = (0..5).map(|i| l.fail(&dev, t0 + s(10 * i))).collect();
        assert_eq!(delays, [s(1), s(2), s(4), s(5), s(5)]);
        let last = t0 + s(40);
        assert!(l.locked(&dev, last + s(4)) && !l.locked(&dev, last + s(5)));
        assert!(!l.locked(&"other", last), "keys are separate");
        // Long after the last failure it starts from the first delay again.
        assert_eq!(l.fail(&dev, last + FORGET_AFTER), s(1));
        l.clear(&dev);
        assert!(!l.locked(&dev, last + FORGET_AFTER));
        assert_eq!(l.fail(&dev, last + FORGET_AFTER), s(1), "a success resets the count");
        // The free failures earn nothing, the next one the base delay.
        let mut l = Lockouts::new(s(1), s(5), 2);
        assert_eq!([0, 1, 2].map(|_| l.fail(&dev, t0)), [s(0), s(0), s(1)]);
        assert!(l.locked(&dev, t0) && !l.locked(&dev, t0 + s(1)));
        // Thousands of failures neither overflow nor exceed the cap.
        let mut l = Lockouts::new(s(1), s(60), 0);
        for _ in 0..10_000 {
            assert!(l.fail(&dev, t0) <= s(60));
        }
    }

    #[test]
    fn lockouts_stay_bounded() {
        let t0 = Instant::now();
        let mut l = Lockouts::new(Duration::from_secs(1), Duration::from_secs(2), 0);
        for i in 0..MAX_KEYS as u32 + 10 {
            l.fail(&i, t0);
        }
        assert!(l.len() <= MAX_KEYS);
    }
}
