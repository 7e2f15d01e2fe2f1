//! A token bucket on the packet clock: `rate` tokens a second up to
//! `burst`, one taken per event. Used to limit the ICMP errors eipsim
//! sends per port (RFC 1812 4.3.2.8).

/// One bucket. Tokens are kept in billionths, so `rate` tokens a second
/// add exactly `rate` billionths per nanosecond: no rounding, no floating
/// point.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens now, in billionths of a token.
    nano: u64,
    /// The packet-clock time of the last refill, ns.
    at: u64,
    /// Tokens added per second.
    rate: u64,
    /// The most tokens it holds.
    burst: u64,
}

const NANO: u64 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket: `rate` tokens per second, at most `burst` (a burst
    /// of 0 allows nothing).
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            nano: u64::from(burst) * NANO,
            at: 0,
            rate: u64::from(rate),
            burst: u64::from(burst),
        }
    }

    /// Takes one token at `now` (ns, packet clock) if there is one.
    pub fn take(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.at);
        self.at = self.at.max(now);
        self.nano = self
            .nano
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.burst * NANO);
        if self.nano >= NANO {
            self.nano -= NANO;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10, 3);
        // The burst: three at once, then none.
        assert!((0..3).all(|_| b.take(0)));
        assert!(!b.take(0));
        // 10 a second: one every 100 ms, not before.
        assert!(!b.take(99_999_999));
        assert!(b.take(100_000_000));
        assert!(!b.take(150_000_000));
        // A long pause fills it to the burst, no more.
        assert_eq!((0..10).filter(|_| b.take(60_000_000_000)).count(), 3);
        // A clock that goes back takes nothing extra.
        assert!(!b.take(1));
        // Rate 0: the burst, then never.
        let mut z = TokenBucket::new(0, 1);
        assert!(z.take(0));
        assert!(!z.take(u64::MAX));
    }
}
