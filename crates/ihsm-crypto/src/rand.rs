//! Random bytes from aws-lc's DRBG (seeded from the operating system).

use crate::CryptoError;

/// Fills `buf` with random bytes.
///
/// # Errors
/// [`CryptoError::Rng`] when the generator fails.
pub fn fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| CryptoError::Rng)
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
