//! Authenticated encryption of stored records: AES-256-GCM with a random 96-bit
//! nonce per record and caller-chosen associated data. The blob is
//! `nonce (12) || ciphertext || tag (16)`.
//!
//! Random nonces are safe here for up to 2^32 records per key (NIST SP 800-38D
//! §8.3); a partition master key seals far fewer objects than that over its life.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::scratch::Scratch;
use crate::{CryptoError, ExposeSecret, Secret, SecretVec};

/// Overhead of a sealed blob over its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// A 256-bit record-sealing key.
#[derive(Debug)]
pub struct SealKey(Secret<32>);

impl SealKey {
    /// Wraps 32 secret bytes.
    #[must_use]
    pub fn new(key: Secret<32>) -> Self {
        Self(key)
    }

    /// A fresh random key.
    ///
    /// # Errors
    /// [`CryptoError::Rng`].
    pub fn random() -> Result<Self, CryptoError> {
        Ok(Self(Secret::random()?))
    }

    /// The key bytes, to be sealed under another key (the one way out).
    #[must_use]
    pub fn expose(&self) -> &Secret<32> {
        &self.0
    }

    fn aead(&self) -> Result<LessSafeKey, CryptoError> {
        UnboundKey::new(&AES_256_GCM, self.0.expose_secret())
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::Internal("AES-256-GCM key"))
    }

    /// Seals `plaintext` bound to `aad`.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] or [`CryptoError::Internal`].
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce: [u8; NONCE_LEN] = crate::rand::array()?;
        let aead = self.aead()?;
        // The plaintext is copied in before it is encrypted in place: until then the
        // buffer is wiped on drop, so no error path leaves it behind. Allocated once
        // at its final size, so no reallocation leaves a copy either.
        let mut out = Scratch::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                out.get_mut(NONCE_LEN..).unwrap_or_default(),
            )
            .map_err(|_| CryptoError::Internal("AES-256-GCM seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out.release())
    }

    /// Opens a blob sealed with [`SealKey::seal`] under the same `aad`.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`] for a wrong key, wrong `aad`, or any
    /// edited, truncated or extended blob.
    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<SecretVec, CryptoError> {
        if blob.len() < SEAL_OVERHEAD {
            return Err(CryptoError::VerificationFailed);
        }
        let (nonce, rest) = blob.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::VerificationFailed)?;
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let key = self.aead()?;
        SecretVec::try_from_fn(ct.len(), |out| {
            out.copy_from_slice(ct);
            key.open_in_place_separate_tag(nonce, Aad::from(aad), tag, out)
                .map(|_| ())
                .map_err(|_| CryptoError::VerificationFailed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_tamper_fails() {
        let k = SealKey::random().unwrap();
        let blob = k.seal(b"ad", b"secret record").unwrap();
        assert_eq!(blob.len(), 13 + SEAL_OVERHEAD);
        assert_eq!(
            k.open(b"ad", &blob).unwrap().expose_secret(),
            b"secret record"
        );
        assert_eq!(
            k.open(b"ae", &blob).unwrap_err(),
            CryptoError::VerificationFailed
        );
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 1;
            assert!(k.open(b"ad", &b).is_err(), "flip at {i} accepted");
        }
        for n in 0..blob.len() {
            assert!(k.open(b"ad", &blob[..n]).is_err());
        }
        let other = SealKey::random().unwrap();
        assert!(other.open(b"ad", &blob).is_err());
        let empty = k.seal(b"", b"").unwrap();
        assert!(k.open(b"", &empty).unwrap().is_empty());
    }
}
