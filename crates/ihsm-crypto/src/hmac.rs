//! HMAC (FIPS 198-1) with SHA-256, SHA-384 or SHA-512, one-shot and streaming.
//!
//! Tags are compared in constant time, and only whole tags are accepted: a caller
//! that wants a truncated MAC (PKCS#11 `*_HMAC_GENERAL`) must truncate the output of
//! [`hmac_sign`] itself and compare with [`crate::ct_eq`], knowingly.
//!
//! [`hmac384`] and [`hmac512`] are the same HMAC with the output typed as a
//! [`Secret`]: where the tag is itself a secret (the root of trust's CDIs and
//! seeds), it is written straight into locked memory.

use core::fmt;

use aws_lc_rs::hmac;

use crate::hash::HashAlg;
use crate::{CryptoError, Secret};

fn algorithm(alg: HashAlg) -> Result<hmac::Algorithm, CryptoError> {
    match alg {
        HashAlg::Sha256 => Ok(hmac::HMAC_SHA256),
        HashAlg::Sha384 => Ok(hmac::HMAC_SHA384),
        HashAlg::Sha512 => Ok(hmac::HMAC_SHA512),
        _ => Err(CryptoError::Unsupported(
            "HMAC hash (SHA-256, SHA-384 or SHA-512 only)",
        )),
    }
}

/// HMAC-`alg`(`key`, `data`) written into `out`, which is the tag's length.
fn hmac_into(alg: HashAlg, key: &[u8], data: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    let key = hmac::Key::new(algorithm(alg)?, key);
    hmac::sign_to_buffer(&key, data, out)
        .map(|_| ())
        .map_err(|_| CryptoError::Internal("HMAC"))
}

/// HMAC-`alg`(`key`, `data`): the full tag.
///
/// # Errors
/// [`CryptoError::Unsupported`] unless `alg` is SHA-256, SHA-384 or SHA-512.
pub fn hmac_sign(alg: HashAlg, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut tag = vec![0u8; alg.output_len()];
    hmac_into(alg, key, data, &mut tag)?;
    Ok(tag)
}

/// HMAC-SHA-384(`key`, `data`), a secret.
///
/// # Errors
/// [`CryptoError::Internal`] or [`CryptoError::SecretMemory`].
pub fn hmac384(key: &[u8], data: &[u8]) -> Result<Secret<48>, CryptoError> {
    Secret::try_from_fn(|out| hmac_into(HashAlg::Sha384, key, data, out))
}

/// HMAC-SHA-384 over the concatenation of `parts` (assembled in wiped memory).
///
/// # Errors
/// As [`hmac384`].
pub fn hmac384_parts(key: &[u8], parts: &[&[u8]]) -> Result<Secret<48>, CryptoError> {
    hmac384(key, &crate::scratch::concat(parts))
}

/// HMAC-SHA-512(`key`, `data`), a secret.
///
/// # Errors
/// [`CryptoError::Internal`] or [`CryptoError::SecretMemory`].
pub fn hmac512(key: &[u8], data: &[u8]) -> Result<Secret<64>, CryptoError> {
    Secret::try_from_fn(|out| hmac_into(HashAlg::Sha512, key, data, out))
}

/// Checks a full-length HMAC-`alg` tag in constant time.
///
/// # Errors
/// [`CryptoError::VerificationFailed`] when the tag (or its length) is wrong;
/// [`CryptoError::Unsupported`] for a hash other than SHA-256/384/512.
pub fn hmac_verify(alg: HashAlg, key: &[u8], data: &[u8], tag: &[u8]) -> Result<(), CryptoError> {
    let key = hmac::Key::new(algorithm(alg)?, key);
    hmac::verify(&key, data, tag).map_err(|_| CryptoError::VerificationFailed)
}

/// An HMAC key prepared once (the hash states after the inner and outer pads)
/// for many one-shot tags: what a long-lived key such as a blind-index key wants.
/// aws-lc cleanses the state when it is dropped; `Debug` shows only the hash.
pub struct HmacKey {
    alg: HashAlg,
    key: hmac::Key,
}

impl HmacKey {
    /// Prepares `key`.
    ///
    /// # Errors
    /// [`CryptoError::Unsupported`] unless `alg` is SHA-256, SHA-384 or SHA-512.
    pub fn new(alg: HashAlg, key: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            alg,
            key: hmac::Key::new(algorithm(alg)?, key),
        })
    }

    /// The full tag over the concatenation of `parts`.
    #[must_use]
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign().as_ref().to_vec()
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A streaming HMAC: [`HmacCtx::update`] any number of times, then
/// [`HmacCtx::sign`] or [`HmacCtx::verify`]. Not `Clone` (it holds the keyed state);
/// `Debug` shows only the hash.
pub struct HmacCtx {
    alg: HashAlg,
    ctx: hmac::Context,
}

impl HmacCtx {
    /// A context keyed with `key`.
    ///
    /// # Errors
    /// [`CryptoError::Unsupported`] unless `alg` is SHA-256, SHA-384 or SHA-512.
    pub fn new(alg: HashAlg, key: &[u8]) -> Result<Self, CryptoError> {
        let key = hmac::Key::new(algorithm(alg)?, key);
        Ok(Self {
            alg,
            ctx: hmac::Context::with_key(&key),
        })
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// The tag over everything absorbed.
    #[must_use]
    pub fn sign(self) -> Vec<u8> {
        self.ctx.sign().as_ref().to_vec()
    }

    /// Checks `tag` against everything absorbed, in constant time.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify(self, tag: &[u8]) -> Result<(), CryptoError> {
        let computed = self.ctx.sign();
        aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_ref(), tag)
            .map_err(|_| CryptoError::VerificationFailed)
    }
}

impl fmt::Debug for HmacCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacCtx")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231 test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const TAGS: [(HashAlg, &str); 3] = [
        (
            HashAlg::Sha256,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            HashAlg::Sha384,
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            HashAlg::Sha512,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ];

    #[test]
    fn rfc4231_case2_one_shot_and_streaming() {
        for (alg, hex_tag) in TAGS {
            let tag = hmac_sign(alg, KEY, DATA).unwrap();
            assert_eq!(hex::encode(&tag), hex_tag);
            hmac_verify(alg, KEY, DATA, &tag).unwrap();

            let mut ctx = HmacCtx::new(alg, KEY).unwrap();
            for chunk in DATA.chunks(5) {
                ctx.update(chunk);
            }
            assert_eq!(ctx.sign(), tag);

            let mut ctx = HmacCtx::new(alg, KEY).unwrap();
            ctx.update(DATA);
            ctx.verify(&tag).unwrap();

            // A prepared key gives the same tag, over the parts' concatenation,
            // however often it is used.
            let key = HmacKey::new(alg, KEY).unwrap();
            assert_eq!(key.sign(&[DATA]), tag);
            assert_eq!(key.sign(&[&DATA[..7], &[], &DATA[7..]]), tag);
            assert_ne!(key.sign(&[&DATA[..27]]), tag);
        }
    }

    /// The secret-typed functions are the same HMAC; the parts form is the HMAC of
    /// the concatenation.
    #[test]
    fn secret_outputs_are_the_same_hmac() {
        use crate::ExposeSecret;
        let tag = hmac512(KEY, DATA).unwrap();
        assert_eq!(hex::encode(tag.expose_secret()), TAGS[2].1);
        let tag = hmac384(KEY, DATA).unwrap();
        assert_eq!(hex::encode(tag.expose_secret()), TAGS[1].1);
        let parts = hmac384_parts(KEY, &[&DATA[..3], &[], &DATA[3..]]).unwrap();
        assert!(parts.ct_eq(&tag));
        hmac_verify(HashAlg::Sha384, KEY, DATA, tag.expose_secret()).unwrap();
    }

    #[test]
    fn wrong_tags_keys_and_data_fail() {
        let tag = hmac_sign(HashAlg::Sha256, KEY, DATA).unwrap();
        let mut flipped = tag.clone();
        flipped[31] ^= 0x80;
        let fail = Err(CryptoError::VerificationFailed);
        assert_eq!(hmac_verify(HashAlg::Sha256, KEY, DATA, &flipped), fail);
        assert_eq!(hmac_verify(HashAlg::Sha256, b"Jeff", DATA, &tag), fail);
        assert_eq!(hmac_verify(HashAlg::Sha256, KEY, b"what", &tag), fail);
        assert_eq!(hmac_verify(HashAlg::Sha384, KEY, DATA, &tag), fail);
        // Truncated and extended tags are not accepted.
        assert_eq!(hmac_verify(HashAlg::Sha256, KEY, DATA, &tag[..16]), fail);
        assert_eq!(hmac_verify(HashAlg::Sha256, KEY, DATA, &[]), fail);
        let mut longer = tag.clone();
        longer.push(0);
        assert_eq!(hmac_verify(HashAlg::Sha256, KEY, DATA, &longer), fail);
        let mut ctx = HmacCtx::new(HashAlg::Sha256, KEY).unwrap();
        ctx.update(DATA);
        assert_eq!(ctx.verify(&flipped), fail);
    }

    #[test]
    fn other_hashes_are_refused() {
        for alg in [
            HashAlg::Sha1,
            HashAlg::Sha224,
            HashAlg::Sha3_256,
            HashAlg::Sha3_384,
            HashAlg::Sha3_512,
        ] {
            assert!(matches!(
                hmac_sign(alg, KEY, DATA),
                Err(CryptoError::Unsupported(_))
            ));
            assert!(matches!(
                hmac_verify(alg, KEY, DATA, &[0; 32]),
                Err(CryptoError::Unsupported(_))
            ));
            assert!(HmacCtx::new(alg, KEY).is_err());
            assert!(HmacKey::new(alg, KEY).is_err());
        }
    }

    #[test]
    fn empty_and_long_keys_work_and_debug_hides_state() {
        // Keys longer than the block are hashed first (FIPS 198-1); empty keys are legal.
        let long = [0x55u8; 200];
        let tag = hmac_sign(HashAlg::Sha512, &long, b"").unwrap();
        hmac_verify(HashAlg::Sha512, &long, b"", &tag).unwrap();
        let tag = hmac_sign(HashAlg::Sha256, b"", b"x").unwrap();
        hmac_verify(HashAlg::Sha256, b"", b"x", &tag).unwrap();
        let ctx = HmacCtx::new(HashAlg::Sha256, b"secret key").unwrap();
        let shown = format!("{ctx:?}");
        assert!(shown.contains("Sha256") && !shown.contains("secret"));
        let key = HmacKey::new(HashAlg::Sha256, b"secret key").unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("Sha256") && !shown.contains("secret"));
    }
}
