//! Random bytes from aws-lc's DRBG (seeded from the operating system), behind a
//! continuous health test.
//!
//! # The continuous test
//!
//! FIPS 140-3 (ISO/IEC 19790 §7.10.3 and SP 800-90B §4.4.1, the repetition count
//! test with a cutoff of one block) asks that a random source be watched while it
//! runs. [`fill`] splits its output into 16-byte blocks and fails with
//! [`CryptoError::Rng`] when a block equals the one before it, across calls as well
//! as within one (a call shorter than a block draws a whole block and hands out its
//! prefix, so every call is checked). A failure latches: every later call fails
//! too, as a module in its error state must.
//!
//! What it catches: a generator stuck on one output, or cycling with period one
//! block, the classic failure of a broken seed or a zeroed state. What it cannot:
//! bias, low entropy, a long cycle, output that is predictable yet never repeats
//! (an attacker-known seed), or repetition of blocks that are not adjacent. For a
//! working 128-bit source a false alarm has probability 2^-128 per block. Deeper
//! assurance comes from aws-lc itself (its DRBG self-tests and, built with the
//! `fips` feature, the validated module's own entropy health tests).
//!
//! The previous block is remembered as a SHA-256 fingerprint, not in the clear,
//! so no past output (which may have become part of a key) lingers in memory.
//!
//! The test sees the bytes drawn through this module. aws-lc draws its own
//! randomness inside key generation and signing; before each key generation this
//! crate calls [`check_health`], which passes one fresh block through the test (and
//! refuses if it has ever tripped), so a stuck generator stops key generation too.

use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::CryptoError;

/// The unit the continuous test compares.
const BLOCK: usize = 16;

type Fingerprint = [u8; BLOCK];

/// The state of the continuous health test.
#[derive(Default)]
struct Health {
    /// Fingerprint of the last block handed out.
    last: Option<Fingerprint>,
    /// Latched once a repetition has been seen.
    failed: bool,
}

static HEALTH: Mutex<Health> = Mutex::new(Health {
    last: None,
    failed: false,
});

fn fingerprint(block: &[u8]) -> Fingerprint {
    let d = digest::digest(&digest::SHA256, block);
    let mut fp = [0u8; BLOCK];
    if let Some(prefix) = d.as_ref().get(..BLOCK) {
        fp.copy_from_slice(prefix);
    }
    fp
}

/// Checks `out` (at least one block long) against `health` and records its last
/// block. Consecutive blocks inside `out` are compared directly, in constant time.
fn check(health: &mut Health, out: &[u8]) -> Result<(), CryptoError> {
    if health.failed {
        return Err(CryptoError::Rng);
    }
    let mut blocks = out.chunks_exact(BLOCK);
    let Some(first) = blocks.next() else {
        return Ok(());
    };
    let mut repeated = health
        .last
        .is_some_and(|last| crate::ct_eq(&last, &fingerprint(first)));
    let mut previous = first;
    for block in blocks {
        repeated |= crate::ct_eq(previous, block);
        previous = block;
    }
    if repeated {
        health.failed = true;
        health.last = None;
        return Err(CryptoError::Rng);
    }
    health.last = Some(fingerprint(previous));
    Ok(())
}

/// Fills `buf` with random bytes that have passed the continuous health test.
///
/// # Errors
/// [`CryptoError::Rng`] when the generator fails or the health test has tripped
/// (now or earlier in the life of the process).
pub fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    if buf.is_empty() {
        return Ok(());
    }
    // The generator runs outside the lock; only the comparison is serialised.
    let lock = || HEALTH.lock().unwrap_or_else(PoisonError::into_inner);
    if buf.len() < BLOCK {
        let mut block = Zeroizing::new([0u8; BLOCK]);
        aws_lc_rs::rand::fill(block.as_mut_slice()).map_err(|_| CryptoError::Rng)?;
        check(&mut lock(), block.as_slice())?;
        buf.copy_from_slice(block.get(..buf.len()).ok_or(CryptoError::Rng)?);
        return Ok(());
    }
    aws_lc_rs::rand::fill(buf).map_err(|_| CryptoError::Rng)?;
    let verdict = check(&mut lock(), buf);
    if verdict.is_err() {
        zeroize::Zeroize::zeroize(buf);
    }
    verdict
}

/// `N` random bytes (for public values: nonces, serials, identifiers).
///
/// # Errors
/// [`CryptoError::Rng`] when the generator fails.
pub fn array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

/// Passes one fresh block of the generator through the continuous test and
/// discards it: called before every key generation.
///
/// # Errors
/// [`CryptoError::Rng`] when the generator fails or the test has tripped.
pub fn check_health() -> Result<(), CryptoError> {
    let mut block = Zeroizing::new([0u8; BLOCK]);
    fill(block.as_mut_slice())
}

/// True once the continuous health test has failed; the process must then stop
/// offering cryptographic services.
#[must_use]
pub fn health_test_failed() -> bool {
    HEALTH.lock().unwrap_or_else(PoisonError::into_inner).failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_gives_distinct_output_of_every_length() {
        for len in [0, 1, 15, 16, 17, 32, 100] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            fill(&mut a).unwrap();
            fill(&mut b).unwrap();
            if len >= 8 {
                assert_ne!(a, b);
            }
        }
        let x: [u8; 32] = array().unwrap();
        let y: [u8; 32] = array().unwrap();
        assert_ne!(x, y);
        assert!(!health_test_failed());
    }

    #[test]
    fn a_repeated_block_trips_and_latches() {
        let mut health = Health::default();
        let a = [0x11u8; 32];
        let mut fresh = [0u8; 32];
        fresh[..16].copy_from_slice(&[1; 16]);
        fresh[16..].copy_from_slice(&[2; 16]);
        check(&mut health, &fresh).unwrap();
        // The same block again, in the next call.
        assert_eq!(check(&mut health, &[2; 16]), Err(CryptoError::Rng));
        // Latched: even good output is refused now.
        assert_eq!(check(&mut health, &[3; 16]), Err(CryptoError::Rng));

        // Within one call: two equal adjacent blocks.
        let mut health = Health::default();
        assert_eq!(check(&mut health, &a), Err(CryptoError::Rng));
        assert!(health.failed);

        // A trailing partial block is not compared; non-adjacent repeats are not
        // caught (documented limit).
        let mut health = Health::default();
        let mut buf = [0u8; 48];
        buf[..16].copy_from_slice(&[5; 16]);
        buf[16..32].copy_from_slice(&[6; 16]);
        buf[32..].copy_from_slice(&[5; 16]);
        check(&mut health, &buf).unwrap();
        check(&mut health, &[6; 8]).unwrap();
        assert!(!health.failed);
    }
}
