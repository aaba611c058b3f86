//! Per-peer token buckets: how many requests of one kind a peer may make.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

/// Token buckets keyed by peer.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<PeerId, (f64, Instant)>,
}

impl RateLimiter {
    /// `per_second` sustained, up to `burst` at once.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `peer`; false when it has none left.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.buckets.len() > 10_000 {
            // Forget full buckets so that many peers cannot grow this map without bound.
            let (rate, burst) = (self.per_second, self.burst);
            self.buckets
                .retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = self.buckets.entry(peer).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let mut r = RateLimiter::new(10.0, 5.0);
        let p = PeerId::random();
        let t = Instant::now();
        assert_eq!((0..10).filter(|_| r.allow(p, t)).count(), 5);
        assert!(r.allow(p, t + Duration::from_millis(100)));
        assert!(!r.allow(p, t + Duration::from_millis(100)));
        assert!(r.allow(PeerId::random(), t), "buckets are per peer");
    }
}
