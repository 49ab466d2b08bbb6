//! Per-partition quotas, so that a noisy neighbour cannot starve the others:
//! objects, sessions, and operations per second (a token bucket).

use std::sync::Mutex;
use std::time::Instant;

use crate::error::{CoreError, Result};

pub use ihsm_proto::types::Quotas;

/// A token bucket of `rate` tokens per second holding at most `rate` tokens.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: u32,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            rate,
            state: Mutex::new((f64::from(rate), Instant::now())),
        }
    }

    /// Takes one token, or fails when the partition is over its rate.
    pub(crate) fn take(&self) -> Result<()> {
        if self.rate == 0 {
            return Ok(());
        }
        let mut s = self
            .state
            .lock()
            .map_err(|_| CoreError::Internal("rate limiter lock poisoned"))?;
        let now = Instant::now();
        let rate = f64::from(self.rate);
        let refill = now.duration_since(s.1).as_secs_f64() * rate;
        s.0 = (s.0 + refill).min(rate);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(CoreError::QuotaExceeded("operations per second"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_its_burst_then_refuses() {
        let r = RateLimiter::new(5);
        for _ in 0..5 {
            r.take().unwrap();
        }
        assert!(matches!(r.take(), Err(CoreError::QuotaExceeded(_))));
        let unlimited = RateLimiter::new(0);
        for _ in 0..10_000 {
            unlimited.take().unwrap();
        }
    }
}
