//! PINs: PBKDF2-HMAC-SHA-256 verifiers with a random salt, a failed-attempt
//! counter and lockout. A PIN is never stored, logged or kept after the check;
//! its hash (which a PIN search would start from) lives in locked memory, is
//! compared in constant time, and is wiped with its verifier.

use ihsm_crypto::{ExposeSecret, Secret, pbkdf2};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

pub use ihsm_proto::layout::{MAX_PIN_LEN, MIN_PIN_LEN};
/// Failed attempts before a PIN locks.
pub const MAX_FAILED_ATTEMPTS: u32 = 10;

/// A stored PIN verifier. Not `Clone`: there is one, in its partition's record.
#[derive(Serialize, Deserialize)]
pub(crate) struct PinVerifier {
    salt: [u8; 16],
    iterations: u32,
    #[serde(with = "crate::locked::array")]
    hash: Secret<32>,
    /// Consecutive failed attempts.
    pub(crate) failures: u32,
}

impl core::fmt::Debug for PinVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PinVerifier")
            .field("iterations", &self.iterations)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// Checks a PIN's length.
pub(crate) fn check_len(pin: &[u8]) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(CoreError::PinLenRange {
            min: MIN_PIN_LEN,
            max: MAX_PIN_LEN,
        })
    }
}

impl PinVerifier {
    /// A verifier for `pin`.
    pub(crate) fn new(pin: &[u8], iterations: u32) -> Result<Self> {
        check_len(pin)?;
        let salt: [u8; 16] = ihsm_crypto::rand::array()?;
        let hash = pbkdf2::derive(pin, &salt, iterations)?;
        Ok(Self {
            salt,
            iterations,
            hash,
            failures: 0,
        })
    }

    /// True when locked out.
    pub(crate) fn locked(&self) -> bool {
        self.failures >= MAX_FAILED_ATTEMPTS
    }

    /// Checks `pin`, counting failures. The caller persists the verifier after
    /// every call, success or failure, before answering.
    pub(crate) fn check(&mut self, pin: &[u8]) -> Result<()> {
        if self.locked() {
            return Err(CoreError::PinLocked);
        }
        let ok = pin.len() <= MAX_PIN_LEN
            && pbkdf2::verify(pin, &self.salt, self.iterations, self.hash.expose_secret()).is_ok();
        if ok {
            self.failures = 0;
            Ok(())
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.locked() {
                Err(CoreError::PinLocked)
            } else {
                Err(CoreError::PinIncorrect {
                    remaining: MAX_FAILED_ATTEMPTS - self.failures,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_after_ten_failures_and_reset_on_success() {
        let mut v = PinVerifier::new(b"1234", 1000).unwrap();
        v.check(b"1234").unwrap();
        for i in 1..MAX_FAILED_ATTEMPTS {
            match v.check(b"0000") {
                Err(CoreError::PinIncorrect { remaining }) => {
                    assert_eq!(remaining, MAX_FAILED_ATTEMPTS - i)
                }
                other => panic!("{other:?}"),
            }
        }
        // A success before the limit resets the count.
        v.check(b"1234").unwrap();
        assert_eq!(v.failures, 0);
        for _ in 0..MAX_FAILED_ATTEMPTS - 1 {
            let _ = v.check(b"bad!");
        }
        assert!(matches!(v.check(b"bad!"), Err(CoreError::PinLocked)));
        // Locked: even the right PIN is refused.
        assert!(matches!(v.check(b"1234"), Err(CoreError::PinLocked)));
    }

    #[test]
    fn lengths_are_checked_and_salts_differ() {
        assert!(matches!(
            PinVerifier::new(b"123", 1000),
            Err(CoreError::PinLenRange { .. })
        ));
        assert!(PinVerifier::new(&[b'x'; MAX_PIN_LEN + 1], 1000).is_err());
        let a = PinVerifier::new(b"1234", 1000).unwrap();
        let b = PinVerifier::new(b"1234", 1000).unwrap();
        assert_ne!(a.salt, b.salt);
        assert!(!a.hash.ct_eq(&b.hash));
        assert!(!format!("{a:?}").contains("hash"));
    }
}
