//! ML-DSA (FIPS 204): tenant keys at every security level ([`MlDsaPrivateKey`],
//! [`mldsa_verify`]), and the root of trust's ML-DSA-87 identity keys as
//! fixed-size types over them ([`MlDsa87PrivateKey`], [`MlDsa87PublicKey`],
//! [`MlDsa87Signature`]). Pure signing with the empty context string.
//!
//! aws-lc-rs offers neither a context string nor HashML-DSA, so neither is here.

use core::fmt;

use aws_lc_rs::signature::{
    self, KeyPair, ParsedPublicKey, PqdsaKeyPair, PqdsaSigningAlgorithm, PqdsaVerificationAlgorithm,
};
use zeroize::Zeroizing;

use crate::{CryptoError, ExposeSecret, Secret};

mod mldsa87;

pub use mldsa87::{MlDsa87PrivateKey, MlDsa87PublicKey, MlDsa87Signature};

/// Length of the key-generation seed ξ.
pub const SEED_LEN: usize = 32;
/// Length of an ML-DSA-87 public key (the level of ihsm's identities; other levels:
/// [`MlDsaLevel::public_key_len`]).
pub const PUBLIC_KEY_LEN: usize = MlDsaLevel::L87.public_key_len();
/// Length of an ML-DSA-87 signature ([`MlDsaLevel::signature_len`] for others).
pub const SIGNATURE_LEN: usize = MlDsaLevel::L87.signature_len();

/// An ML-DSA parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlDsaLevel {
    /// ML-DSA-44 (category 2).
    L44,
    /// ML-DSA-65 (category 3).
    L65,
    /// ML-DSA-87 (category 5).
    L87,
}

impl MlDsaLevel {
    /// Every parameter set.
    pub const ALL: [MlDsaLevel; 3] = [Self::L44, Self::L65, Self::L87];

    /// The public-key length in bytes.
    #[must_use]
    pub const fn public_key_len(self) -> usize {
        match self {
            Self::L44 => 1312,
            Self::L65 => 1952,
            Self::L87 => 2592,
        }
    }

    /// The signature length in bytes.
    #[must_use]
    pub const fn signature_len(self) -> usize {
        match self {
            Self::L44 => 2420,
            Self::L65 => 3309,
            Self::L87 => 4627,
        }
    }

    /// The FIPS 204 name ("ML-DSA-65").
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::L44 => "ML-DSA-44",
            Self::L65 => "ML-DSA-65",
            Self::L87 => "ML-DSA-87",
        }
    }

    fn signing(self) -> &'static PqdsaSigningAlgorithm {
        match self {
            Self::L44 => &signature::ML_DSA_44_SIGNING,
            Self::L65 => &signature::ML_DSA_65_SIGNING,
            Self::L87 => &signature::ML_DSA_87_SIGNING,
        }
    }

    fn verification(self) -> &'static PqdsaVerificationAlgorithm {
        match self {
            Self::L44 => &signature::ML_DSA_44,
            Self::L65 => &signature::ML_DSA_65,
            Self::L87 => &signature::ML_DSA_87,
        }
    }
}

impl fmt::Display for MlDsaLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An ML-DSA private key inside aws-lc. Not `Clone`; `Debug` shows the level and
/// the start of the public key.
pub struct MlDsaPrivateKey {
    level: MlDsaLevel,
    inner: PqdsaKeyPair,
    public: Vec<u8>,
}

impl MlDsaPrivateKey {
    /// A fresh random key, returned only after a pairwise-consistency test.
    ///
    /// # Errors
    /// [`CryptoError::PairwiseConsistency`] if the test fails;
    /// [`CryptoError::Rng`] if the random source fails its health test;
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate(level: MlDsaLevel) -> Result<Self, CryptoError> {
        crate::rand::check_health()?;
        let inner = PqdsaKeyPair::generate(level.signing())
            .map_err(|_| CryptoError::Internal("ML-DSA key generation"))?;
        let key = Self::wrap(level, inner)?;
        key.pairwise_check()?;
        Ok(key)
    }

    /// `ML-DSA.KeyGen_internal(ξ)`: the same seed always gives the same key.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if aws-lc refuses the seed.
    pub fn from_seed(level: MlDsaLevel, seed: &Secret<SEED_LEN>) -> Result<Self, CryptoError> {
        let inner = PqdsaKeyPair::from_seed(level.signing(), seed.expose_secret())
            .map_err(|_| CryptoError::InvalidKey("ML-DSA seed"))?;
        Self::wrap(level, inner)
    }

    /// Reads a PKCS#8 private key of `level` (seed, expanded or both forms).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything else.
    pub fn from_pkcs8(level: MlDsaLevel, der: &[u8]) -> Result<Self, CryptoError> {
        let inner = PqdsaKeyPair::from_pkcs8(level.signing(), der)
            .map_err(|_| CryptoError::InvalidKey("ML-DSA private (PKCS#8)"))?;
        Self::wrap(level, inner)
    }

    fn wrap(level: MlDsaLevel, inner: PqdsaKeyPair) -> Result<Self, CryptoError> {
        let public = inner.public_key().as_ref().to_vec();
        if public.len() != level.public_key_len() {
            return Err(CryptoError::InvalidKey("ML-DSA private"));
        }
        Ok(Self {
            level,
            inner,
            public,
        })
    }

    fn pairwise_check(&self) -> Result<(), CryptoError> {
        const MSG: &[u8] = b"ihsm ML-DSA pairwise-consistency test";
        let sig = self
            .sign(MSG)
            .map_err(|_| CryptoError::PairwiseConsistency)?;
        mldsa_verify(self.level, &self.public, MSG, &sig)
            .map_err(|_| CryptoError::PairwiseConsistency)
    }

    /// The PKCS#8 v1 DER encoding (the seed form, for a key made from a seed), in a
    /// buffer wiped on drop.
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

    /// The parameter set.
    #[must_use]
    pub fn level(&self) -> MlDsaLevel {
        self.level
    }

    /// The public key (FIPS 204 encoding `pk`).
    #[must_use]
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Pure ML-DSA (hedged, empty context) over `msg`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.level.signature_len()];
        let n = self
            .inner
            .sign(msg, &mut sig)
            .map_err(|_| CryptoError::Internal("ML-DSA signing"))?;
        sig.truncate(n);
        Ok(sig)
    }
}

impl fmt::Debug for MlDsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MlDsaPrivateKey {{ level: {}, public: {}, .. }}",
            self.level,
            crate::hex_prefix(&self.public)
        )
    }
}

/// Verifies a pure ML-DSA signature (empty context) over `msg`.
///
/// # Errors
/// [`CryptoError::InvalidKey`] for a public key aws-lc refuses;
/// [`CryptoError::VerificationFailed`] otherwise.
pub fn mldsa_verify(
    level: MlDsaLevel,
    public: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Result<(), CryptoError> {
    if public.len() != level.public_key_len() {
        return Err(CryptoError::InvalidKey("ML-DSA public"));
    }
    if sig.len() != level.signature_len() {
        return Err(CryptoError::VerificationFailed);
    }
    parse_public(level, public)?
        .verify_sig(msg, sig)
        .map_err(|_| CryptoError::VerificationFailed)
}

/// A public key of `level` that aws-lc accepts.
fn parse_public(level: MlDsaLevel, public: &[u8]) -> Result<ParsedPublicKey, CryptoError> {
    if public.len() != level.public_key_len() {
        return Err(CryptoError::InvalidKey("ML-DSA public"));
    }
    ParsedPublicKey::new(level.verification(), public)
        .map_err(|_| CryptoError::InvalidKey("ML-DSA public"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rustcrypto_public(level: MlDsaLevel, seed: [u8; 32]) -> Vec<u8> {
        use ml_dsa::signature::Keypair;
        match level {
            MlDsaLevel::L44 => ml_dsa::SigningKey::<ml_dsa::MlDsa44>::from_seed(&seed.into())
                .verifying_key()
                .encode()
                .to_vec(),
            MlDsaLevel::L65 => ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&seed.into())
                .verifying_key()
                .encode()
                .to_vec(),
            MlDsaLevel::L87 => ml_dsa::SigningKey::<ml_dsa::MlDsa87>::from_seed(&seed.into())
                .verifying_key()
                .encode()
                .to_vec(),
        }
    }

    #[test]
    fn seeds_are_deterministic_and_match_rustcrypto() {
        for level in MlDsaLevel::ALL {
            let seed = [level.public_key_len() as u8; 32];
            let a = MlDsaPrivateKey::from_seed(level, &Secret::from_slice(&seed).unwrap()).unwrap();
            let b = MlDsaPrivateKey::from_seed(level, &Secret::from_slice(&seed).unwrap()).unwrap();
            assert_eq!(a.public_key(), b.public_key());
            assert_eq!(a.public_key(), rustcrypto_public(level, seed).as_slice());
            assert_eq!(a.level(), level);
            // The PKCS#8 encoding carries the seed.
            let der = a.to_pkcs8().unwrap();
            assert!(der.windows(32).any(|w| w == seed));
            let back = MlDsaPrivateKey::from_pkcs8(level, &der).unwrap();
            assert_eq!(back.public_key(), a.public_key());
        }
    }

    #[test]
    fn sign_verify_and_failures_every_level() {
        for level in MlDsaLevel::ALL {
            let key = MlDsaPrivateKey::generate(level).unwrap();
            let sig = key.sign(b"msg").unwrap();
            assert_eq!(sig.len(), level.signature_len());
            mldsa_verify(level, key.public_key(), b"msg", &sig).unwrap();
            let fail = Err(CryptoError::VerificationFailed);
            assert_eq!(mldsa_verify(level, key.public_key(), b"msh", &sig), fail);
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert_eq!(mldsa_verify(level, key.public_key(), b"msg", &bad), fail);
            assert_eq!(
                mldsa_verify(level, key.public_key(), b"msg", &sig[1..]),
                fail
            );
            assert!(mldsa_verify(level, &key.public_key()[1..], b"msg", &sig).is_err());
            assert!(mldsa_verify(level, &[], b"msg", &sig).is_err());
            let other = MlDsaPrivateKey::generate(level).unwrap();
            assert_eq!(mldsa_verify(level, other.public_key(), b"msg", &sig), fail);
            for other_level in MlDsaLevel::ALL {
                if other_level != level {
                    assert!(mldsa_verify(other_level, key.public_key(), b"msg", &sig).is_err());
                    let der = key.to_pkcs8().unwrap();
                    assert!(MlDsaPrivateKey::from_pkcs8(other_level, &der).is_err());
                }
            }
            let der = key.to_pkcs8().unwrap();
            for n in 0..der.len() {
                assert!(MlDsaPrivateKey::from_pkcs8(level, &der[..n]).is_err());
            }
            assert!(MlDsaPrivateKey::from_pkcs8(level, b"junk").is_err());
            assert!(format!("{key:?}").starts_with(&format!("MlDsaPrivateKey {{ level: {level}")));
        }
    }

    /// Signatures made here verify under RustCrypto's independent implementation.
    #[test]
    fn signatures_verify_in_rustcrypto() {
        use ml_dsa::signature::Verifier;
        let key = MlDsaPrivateKey::generate(MlDsaLevel::L65).unwrap();
        let sig = key.sign(b"cross-check").unwrap();
        let vk =
            ml_dsa::VerifyingKey::<ml_dsa::MlDsa65>::decode(key.public_key().try_into().unwrap());
        let rs = ml_dsa::Signature::<ml_dsa::MlDsa65>::decode(sig.as_slice().try_into().unwrap())
            .unwrap();
        vk.verify(b"cross-check", &rs).unwrap();
    }

    #[test]
    fn pairwise_check_catches_a_mismatched_public_key() {
        let key = MlDsaPrivateKey::generate(MlDsaLevel::L44).unwrap();
        let other = MlDsaPrivateKey::generate(MlDsaLevel::L44).unwrap();
        let broken = MlDsaPrivateKey {
            public: other.public.clone(),
            ..key
        };
        assert_eq!(
            broken.pairwise_check(),
            Err(CryptoError::PairwiseConsistency)
        );
    }
}
