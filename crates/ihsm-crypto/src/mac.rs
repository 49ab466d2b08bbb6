//! HMAC and the SP 800-108 counter-mode KDF that Caliptra's key ladder is built on.
//!
//! Outputs are secrets (CDIs, seeds), so they are written straight into [`Secret`]
//! buffers; inputs that carry secret material are assembled in zeroizing buffers.

use aws_lc_rs::hmac;
use aws_lc_rs::kdf::{KbkdfCtrHmacAlgorithmId, get_kbkdf_ctr_hmac_algorithm, kbkdf_ctr_hmac};
use zeroize::Zeroizing;

use crate::{CryptoError, Secret};

fn hmac_into(
    alg: hmac::Algorithm,
    key: &[u8],
    data: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let key = hmac::Key::new(alg, key);
    hmac::sign_to_buffer(&key, data, out)
        .map(|_| ())
        .map_err(|_| CryptoError::Internal("HMAC"))
}

/// HMAC-SHA-384(`key`, `data`).
///
/// # Errors
/// [`CryptoError::Internal`] or [`CryptoError::SecretMemory`].
pub fn hmac384(key: &[u8], data: &[u8]) -> Result<Secret<48>, CryptoError> {
    Secret::try_from_fn(|out| hmac_into(hmac::HMAC_SHA384, key, data, out))
}

/// HMAC-SHA-384 over the concatenation of `parts` (assembled in wiped memory).
///
/// # Errors
/// As [`hmac384`].
pub fn hmac384_parts(key: &[u8], parts: &[&[u8]]) -> Result<Secret<48>, CryptoError> {
    let data = concat(parts);
    hmac384(key, &data)
}

/// HMAC-SHA-512(`key`, `data`).
///
/// # Errors
/// [`CryptoError::Internal`] or [`CryptoError::SecretMemory`].
pub fn hmac512(key: &[u8], data: &[u8]) -> Result<Secret<64>, CryptoError> {
    Secret::try_from_fn(|out| hmac_into(hmac::HMAC_SHA512, key, data, out))
}

/// Verifies an HMAC-SHA-256/384/512 tag in constant time.
///
/// # Errors
/// [`CryptoError::VerificationFailed`] when the tag does not match.
pub fn hmac_verify(
    alg: hmac::Algorithm,
    key: &[u8],
    data: &[u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let key = hmac::Key::new(alg, key);
    hmac::verify(&key, data, tag).map_err(|_| CryptoError::VerificationFailed)
}

pub use aws_lc_rs::hmac::{HMAC_SHA256, HMAC_SHA384, HMAC_SHA512};

/// One 64-byte block of the NIST SP 800-108r1 KDF in counter mode with HMAC-SHA-512:
/// `HMAC-SHA-512(key, [1]_32be || label || 0x00 || context)`, with the separator and
/// context left out when there is no context — Caliptra's `hmac512_kdf`.
///
/// # Errors
/// [`CryptoError::Internal`] or [`CryptoError::SecretMemory`].
pub fn kdf_hmac512(
    key: &[u8],
    label: &[u8],
    context: Option<&[u8]>,
) -> Result<Secret<64>, CryptoError> {
    let info = match context {
        Some(ctx) => concat(&[label, &[0x00], ctx]),
        None => concat(&[label]),
    };
    let alg = get_kbkdf_ctr_hmac_algorithm(KbkdfCtrHmacAlgorithmId::Sha512)
        .ok_or(CryptoError::Internal("KBKDF"))?;
    Secret::try_from_fn(|out| {
        kbkdf_ctr_hmac(alg, key, &info, out).map_err(|_| CryptoError::Internal("KBKDF"))
    })
}

/// Concatenates into a buffer that is wiped on drop, allocated once at its final size
/// so no stale copy is left behind by a reallocation.
pub(crate) fn concat(parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut v = Zeroizing::new(Vec::with_capacity(len));
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExposeSecret;

    // RFC 4231, test case 2.
    #[test]
    fn hmac512_rfc4231_case2() {
        let tag = hmac512(b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex::encode(tag.expose_secret()),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn kdf_matches_hand_built_hmac() {
        let key = [7u8; 48];
        let with_ctx = kdf_hmac512(&key, b"label", Some(b"ctx")).unwrap();
        let manual = hmac512(&key, b"\x00\x00\x00\x01label\x00ctx").unwrap();
        assert!(with_ctx.ct_eq(&manual));
        let no_ctx = kdf_hmac512(&key, b"label", None).unwrap();
        let manual = hmac512(&key, b"\x00\x00\x00\x01label").unwrap();
        assert!(no_ctx.ct_eq(&manual));
    }

    #[test]
    fn verify_refuses_a_flipped_tag() {
        let tag = hmac384(b"k", b"d").unwrap();
        let mut bad = *tag.expose_secret();
        hmac_verify(HMAC_SHA384, b"k", b"d", &bad).unwrap();
        bad[0] ^= 1;
        assert_eq!(
            hmac_verify(HMAC_SHA384, b"k", b"d", &bad),
            Err(CryptoError::VerificationFailed)
        );
    }
}
