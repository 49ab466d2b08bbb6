//! Ed25519 (RFC 8032, FIPS 186-5): pure EdDSA over edwards25519.

use core::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::{CryptoError, ExposeSecret, Secret};

/// Length of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of the private seed.
pub const SEED_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 private key inside aws-lc. Not `Clone`; `Debug` shows only the
/// public key.
pub struct Ed25519PrivateKey {
    inner: Ed25519KeyPair,
    public: [u8; PUBLIC_KEY_LEN],
}

impl Ed25519PrivateKey {
    /// A fresh random key, returned only after a pairwise-consistency test.
    ///
    /// # Errors
    /// [`CryptoError::PairwiseConsistency`] if the test fails;
    /// [`CryptoError::Rng`] if the random source fails its health test;
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate() -> Result<Self, CryptoError> {
        crate::rand::check_health()?;
        let inner = Ed25519KeyPair::generate()
            .map_err(|_| CryptoError::Internal("Ed25519 key generation"))?;
        let key = Self::wrap(inner)?;
        key.pairwise_check()?;
        Ok(key)
    }

    /// The key for a 32-byte private seed (RFC 8032 §5.1.5; PKCS#11 `CKA_VALUE`).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if aws-lc refuses the seed.
    pub fn from_seed(seed: &Secret<SEED_LEN>) -> Result<Self, CryptoError> {
        let inner = Ed25519KeyPair::from_seed_unchecked(seed.expose_secret())
            .map_err(|_| CryptoError::InvalidKey("Ed25519 seed"))?;
        Self::wrap(inner)
    }

    /// Reads a PKCS#8 v1 or v2 private key (RFC 8410); a v2 public key must match.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything but an Ed25519 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let inner = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| CryptoError::InvalidKey("Ed25519 private (PKCS#8)"))?;
        Self::wrap(inner)
    }

    fn wrap(inner: Ed25519KeyPair) -> Result<Self, CryptoError> {
        let public = inner
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::Internal("Ed25519 public key"))?;
        Ok(Self { inner, public })
    }

    fn pairwise_check(&self) -> Result<(), CryptoError> {
        const MSG: &[u8] = b"ihsm Ed25519 pairwise-consistency test";
        let sig = self
            .try_sign(MSG)
            .map_err(|_| CryptoError::PairwiseConsistency)?;
        ed25519_verify(&self.public, MSG, &sig).map_err(|_| CryptoError::PairwiseConsistency)
    }

    /// The PKCS#8 v1 DER encoding (RFC 8410, seed only), in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = self
            .inner
            .to_pkcs8v1()
            .map_err(|_| CryptoError::Internal("PKCS#8 encoding"))?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// The public key `A` (RFC 8032 encoding).
    #[must_use]
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public
    }

    /// The signature of `msg` (deterministic).
    ///
    /// aws-lc-rs's infallible signer: it can fail only if aws-lc itself cannot
    /// allocate, in which case it panics like any failed allocation. Use
    /// [`Ed25519PrivateKey::try_sign`] where even that must be an error.
    #[must_use]
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let sig = self.inner.sign(msg);
        // aws-lc-rs always returns 64 bytes; were it not to, the all-zero value
        // left here would fail verification under this (prime-order) public key,
        // so the failure is safe.
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(
            sig.as_ref()
                .get(..SIGNATURE_LEN)
                .unwrap_or(&[0; SIGNATURE_LEN]),
        );
        out
    }

    /// The signature of `msg`, with aws-lc failures as errors.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn try_sign(&self, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        let sig = self
            .inner
            .try_sign(msg)
            .map_err(|_| CryptoError::Internal("Ed25519 signing"))?;
        sig.as_ref()
            .try_into()
            .map_err(|_| CryptoError::Internal("Ed25519 signature length"))
    }
}

impl fmt::Debug for Ed25519PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ed25519PrivateKey {{ public: {}, .. }}",
            crate::hex_prefix(&self.public)
        )
    }
}

/// Verifies an Ed25519 signature (aws-lc rejects non-canonical `S` and malformed
/// public keys).
///
/// # Errors
/// [`CryptoError::InvalidKey`] unless `public` is 32 bytes;
/// [`CryptoError::VerificationFailed`] otherwise.
pub fn ed25519_verify(public: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    if public.len() != PUBLIC_KEY_LEN {
        return Err(CryptoError::InvalidKey("Ed25519 public"));
    }
    if sig.len() != SIGNATURE_LEN {
        return Err(CryptoError::VerificationFailed);
    }
    UnparsedPublicKey::new(&ED25519, public)
        .verify(msg, sig)
        .map_err(|_| CryptoError::VerificationFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // RFC 8032 §7.1, TEST 1 and TEST 3.
    #[test]
    fn rfc8032_vectors() {
        for (seed, public, msg, sig) in [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                 5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
                 18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ] {
            let key = Ed25519PrivateKey::from_seed(&Secret::from_slice(&h(seed)).unwrap()).unwrap();
            assert_eq!(key.public_key().as_slice(), h(public));
            let got = key.sign(&h(msg));
            assert_eq!(got.as_slice(), h(sig));
            assert_eq!(key.try_sign(&h(msg)).unwrap(), got);
            ed25519_verify(&h(public), &h(msg), &got).unwrap();
        }
    }

    #[test]
    fn generate_roundtrip_and_failures() {
        let key = Ed25519PrivateKey::generate().unwrap();
        let sig = key.sign(b"msg");
        ed25519_verify(&key.public_key(), b"msg", &sig).unwrap();
        let fail = Err(CryptoError::VerificationFailed);
        assert_eq!(ed25519_verify(&key.public_key(), b"msh", &sig), fail);
        for i in [0, 31, 32, 63] {
            let mut bad = sig;
            bad[i] ^= 1;
            assert_eq!(ed25519_verify(&key.public_key(), b"msg", &bad), fail);
        }
        assert_eq!(ed25519_verify(&key.public_key(), b"msg", &sig[..63]), fail);
        assert_eq!(ed25519_verify(&key.public_key(), b"msg", &[]), fail);
        assert!(ed25519_verify(&key.public_key()[..31], b"msg", &sig).is_err());
        assert!(ed25519_verify(&[], b"msg", &sig).is_err());
        let other = Ed25519PrivateKey::generate().unwrap();
        assert_eq!(ed25519_verify(&other.public_key(), b"msg", &sig), fail);

        let der = key.to_pkcs8().unwrap();
        let back = Ed25519PrivateKey::from_pkcs8(&der).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(back.sign(b"x"), key.sign(b"x"));
        for n in 0..der.len() {
            assert!(Ed25519PrivateKey::from_pkcs8(&der[..n]).is_err());
        }
        assert!(Ed25519PrivateKey::from_pkcs8(b"not a key").is_err());
        let ec = crate::ec::EcPrivateKey::generate(crate::ec::Curve::P256).unwrap();
        assert!(Ed25519PrivateKey::from_pkcs8(&ec.to_pkcs8().unwrap()).is_err());
        let shown = format!("{key:?}");
        assert!(shown.starts_with("Ed25519PrivateKey { public: "));
    }

    #[test]
    fn pairwise_check_catches_a_mismatched_public_key() {
        let key = Ed25519PrivateKey::generate().unwrap();
        let other = Ed25519PrivateKey::generate().unwrap();
        let broken = Ed25519PrivateKey {
            public: other.public,
            ..key
        };
        assert_eq!(
            broken.pairwise_check(),
            Err(CryptoError::PairwiseConsistency)
        );
    }
}
