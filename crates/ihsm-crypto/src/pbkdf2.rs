//! PBKDF2-HMAC-SHA-256 (NIST SP 800-132) for PIN verifiers.

use core::num::NonZeroU32;

use aws_lc_rs::pbkdf2;

use crate::{CryptoError, Secret};

/// Derives 32 bytes from `password` and `salt` with `iterations` rounds.
///
/// # Errors
/// [`CryptoError::Internal`] when `iterations` is zero.
pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Result<Secret<32>, CryptoError> {
    let n =
        NonZeroU32::new(iterations).ok_or(CryptoError::Internal("PBKDF2 with zero iterations"))?;
    Secret::try_from_fn(|out: &mut [u8; 32]| {
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, out);
        Ok::<(), CryptoError>(())
    })
}

/// Checks `password` against a stored derivation in constant time.
///
/// # Errors
/// [`CryptoError::VerificationFailed`] when it does not match.
pub fn verify(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    expected: &[u8],
) -> Result<(), CryptoError> {
    let n =
        NonZeroU32::new(iterations).ok_or(CryptoError::Internal("PBKDF2 with zero iterations"))?;
    pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, expected)
        .map_err(|_| CryptoError::VerificationFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExposeSecret;

    // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64), first 32 bytes.
    #[test]
    fn rfc7914_vector() {
        let k = derive(b"passwd", b"salt", 1).unwrap();
        assert_eq!(
            hex::encode(k.expose_secret()),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        verify(b"passwd", b"salt", 1, k.expose_secret()).unwrap();
        assert_eq!(
            verify(b"passwe", b"salt", 1, k.expose_secret()),
            Err(CryptoError::VerificationFailed)
        );
        assert!(derive(b"x", b"y", 0).is_err());
    }
}
