//! Reconnection delays with jitter, for every source that reconnects (cameras, the external
//! broker, the dynamic-security admin client).

use std::time::Duration;

use rand::Rng;

/// Delays from `first`, doubling up to `max`, each with up to 25 % jitter (so that sources that
/// failed together do not retry in step).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, current: first }
    }

    /// The next wait.
    pub(crate) fn next(&mut self) -> Duration {
        let jitter = rand::thread_rng().gen_range(0..=self.current.as_millis() as u64 / 4);
        let wait = self.current + Duration::from_millis(jitter);
        self.current = (self.current * 2).min(self.max);
        wait
    }

    /// Back to the first delay (the connection worked).
    pub(crate) fn reset(&mut self) {
        self.current = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_limit_with_bounded_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let waits: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        for (w, base) in waits.iter().zip([200u128, 400, 800, 1000, 1000]) {
            assert!((base..=base + base / 4).contains(w), "{waits:?}");
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(250));
    }
}
