//! ML-KEM (FIPS 203) key encapsulation at every security level.
//!
//! Decapsulation keys are the FIPS 203 encoding `dk = dk_PKE || ek || H(ek) || z`.
//! On import, [`MlKemPrivateKey::from_bytes`] runs the FIPS 203 §7.3 decapsulation
//! key check (`H(ek)` must match the embedded `ek`) with aws-lc's SHA3-256, so a
//! corrupted key is refused instead of silently decapsulating to garbage. Keys
//! cannot be generated from a seed: aws-lc-rs does not expose `ML-KEM.KeyGen_internal`.

use core::fmt;

use aws_lc_rs::kem::{self, Ciphertext, DecapsulationKey, EncapsulationKey};
use zeroize::Zeroizing;

use crate::hash::{self, HashAlg};
use crate::{CryptoError, SecretVec};

/// Length of a shared secret.
pub const SHARED_SECRET_LEN: usize = 32;

/// An ML-KEM parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlKemLevel {
    /// ML-KEM-512 (category 1).
    L512,
    /// ML-KEM-768 (category 3).
    L768,
    /// ML-KEM-1024 (category 5).
    L1024,
}

impl MlKemLevel {
    /// Every parameter set.
    pub const ALL: [MlKemLevel; 3] = [Self::L512, Self::L768, Self::L1024];

    /// The module rank k.
    const fn k(self) -> usize {
        match self {
            Self::L512 => 2,
            Self::L768 => 3,
            Self::L1024 => 4,
        }
    }

    /// The encapsulation (public) key length: 384k + 32.
    #[must_use]
    pub const fn public_key_len(self) -> usize {
        384 * self.k() + 32
    }

    /// The decapsulation (private) key length: 768k + 96.
    #[must_use]
    pub const fn private_key_len(self) -> usize {
        768 * self.k() + 96
    }

    /// The ciphertext length.
    #[must_use]
    pub const fn ciphertext_len(self) -> usize {
        match self {
            Self::L512 => 768,
            Self::L768 => 1088,
            Self::L1024 => 1568,
        }
    }

    /// The FIPS 203 name ("ML-KEM-768").
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::L512 => "ML-KEM-512",
            Self::L768 => "ML-KEM-768",
            Self::L1024 => "ML-KEM-1024",
        }
    }

    fn algorithm(self) -> &'static kem::Algorithm<kem::AlgorithmId> {
        match self {
            Self::L512 => &kem::ML_KEM_512,
            Self::L768 => &kem::ML_KEM_768,
            Self::L1024 => &kem::ML_KEM_1024,
        }
    }
}

impl fmt::Display for MlKemLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An ML-KEM decapsulation key inside aws-lc. Not `Clone`; `Debug` shows the level
/// and the start of the public key.
pub struct MlKemPrivateKey {
    level: MlKemLevel,
    inner: DecapsulationKey,
    public: Vec<u8>,
}

impl MlKemPrivateKey {
    /// A fresh random key, returned only after a pairwise-consistency test
    /// (encapsulate to its own public key, decapsulate, compare).
    ///
    /// # Errors
    /// [`CryptoError::PairwiseConsistency`] if the test fails;
    /// [`CryptoError::Rng`] if the random source fails its health test;
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate(level: MlKemLevel) -> Result<Self, CryptoError> {
        crate::rand::check_health()?;
        let inner = DecapsulationKey::generate(level.algorithm())
            .map_err(|_| CryptoError::Internal("ML-KEM key generation"))?;
        let key = Self::wrap(level, inner)?;
        key.pairwise_check()?;
        Ok(key)
    }

    /// Reads a FIPS 203 decapsulation key, after the §7.3 hash check and a
    /// pairwise-consistency test (which also catches a `dk_PKE` that does not belong
    /// to the embedded `ek`).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for the wrong length, a failed check, or a key
    /// aws-lc refuses.
    pub fn from_bytes(level: MlKemLevel, bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("ML-KEM decapsulation key");
        if bytes.len() != level.private_key_len() {
            return Err(bad);
        }
        let ek_start = 384 * level.k();
        let ek_end = ek_start + level.public_key_len();
        let embedded_ek = bytes.get(ek_start..ek_end).ok_or(bad)?;
        let embedded_hash = bytes.get(ek_end..ek_end + 32).ok_or(bad)?;
        if hash::digest(HashAlg::Sha3_256, embedded_ek) != embedded_hash {
            return Err(bad);
        }
        let inner = DecapsulationKey::new(level.algorithm(), bytes).map_err(|_| bad)?;
        // aws-lc cannot derive the public key of a key read from raw bytes; the
        // embedded `ek` is the public key by definition (decapsulation re-encrypts
        // with it), and the hash check above vouches for it.
        let key = Self {
            level,
            inner,
            public: embedded_ek.to_vec(),
        };
        key.pairwise_check().map_err(|_| bad)?;
        Ok(key)
    }

    fn wrap(level: MlKemLevel, inner: DecapsulationKey) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("ML-KEM decapsulation key");
        let public = inner
            .encapsulation_key()
            .and_then(|ek| ek.key_bytes())
            .map_err(|_| bad)?
            .as_ref()
            .to_vec();
        if public.len() != level.public_key_len() {
            return Err(bad);
        }
        Ok(Self {
            level,
            inner,
            public,
        })
    }

    fn pairwise_check(&self) -> Result<(), CryptoError> {
        let fail = |_| CryptoError::PairwiseConsistency;
        let (ct, ours) = mlkem_encapsulate(self.level, &self.public).map_err(fail)?;
        let theirs = self.decapsulate(&ct).map_err(fail)?;
        if ours.ct_eq(&theirs) {
            Ok(())
        } else {
            Err(CryptoError::PairwiseConsistency)
        }
    }

    /// The FIPS 203 decapsulation key bytes, in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if aws-lc cannot encode the key.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let bytes = self
            .inner
            .key_bytes()
            .map_err(|_| CryptoError::Internal("ML-KEM key encoding"))?;
        Ok(Zeroizing::new(bytes.as_ref().to_vec()))
    }

    /// The parameter set.
    #[must_use]
    pub fn level(&self) -> MlKemLevel {
        self.level
    }

    /// The encapsulation (public) key.
    #[must_use]
    pub fn public_key(&self) -> Vec<u8> {
        self.public.clone()
    }

    /// `ML-KEM.Decaps`: the shared secret, in locked memory. A well-formed but
    /// altered ciphertext yields a pseudorandom secret (implicit rejection), not an
    /// error.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for a ciphertext of the wrong length;
    /// [`CryptoError::Internal`] if aws-lc fails.
    pub fn decapsulate(&self, ct: &[u8]) -> Result<SecretVec, CryptoError> {
        if ct.len() != self.level.ciphertext_len() {
            return Err(CryptoError::WrongLength {
                what: "ML-KEM ciphertext",
                expected: self.level.ciphertext_len(),
                actual: ct.len(),
            });
        }
        let secret = self
            .inner
            .decapsulate(Ciphertext::from(ct))
            .map_err(|_| CryptoError::Internal("ML-KEM decapsulation"))?;
        SecretVec::from_slice(secret.as_ref())
    }
}

impl fmt::Debug for MlKemPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MlKemPrivateKey {{ level: {}, public: {}, .. }}",
            self.level,
            crate::hex_prefix(&self.public)
        )
    }
}

/// `ML-KEM.Encaps` to `public`: the ciphertext and the shared secret (in locked
/// memory). The public key passes the FIPS 203 §7.2 modulus check inside aws-lc.
///
/// # Errors
/// [`CryptoError::InvalidKey`] for a public key of the wrong length or one that
/// fails the check.
pub fn mlkem_encapsulate(
    level: MlKemLevel,
    public: &[u8],
) -> Result<(Vec<u8>, SecretVec), CryptoError> {
    let bad = CryptoError::InvalidKey("ML-KEM encapsulation key");
    if public.len() != level.public_key_len() {
        return Err(bad);
    }
    let ek = EncapsulationKey::new(level.algorithm(), public).map_err(|_| bad)?;
    let (ct, secret) = ek.encapsulate().map_err(|_| bad)?;
    Ok((
        ct.as_ref().to_vec(),
        SecretVec::from_slice(secret.as_ref())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExposeSecret;

    #[test]
    fn roundtrip_every_level() {
        for level in MlKemLevel::ALL {
            let key = MlKemPrivateKey::generate(level).unwrap();
            assert_eq!(key.level(), level);
            let public = key.public_key();
            assert_eq!(public.len(), level.public_key_len());
            let (ct, ss) = mlkem_encapsulate(level, &public).unwrap();
            assert_eq!(ct.len(), level.ciphertext_len());
            assert_eq!(ss.len(), SHARED_SECRET_LEN);
            assert!(key.decapsulate(&ct).unwrap().ct_eq(&ss));

            let bytes = key.to_bytes().unwrap();
            assert_eq!(bytes.len(), level.private_key_len());
            let back = MlKemPrivateKey::from_bytes(level, &bytes).unwrap();
            assert_eq!(back.public_key(), public);
            assert!(back.decapsulate(&ct).unwrap().ct_eq(&ss));
            assert!(format!("{key:?}").starts_with(&format!("MlKemPrivateKey {{ level: {level}")));
        }
    }

    #[test]
    fn altered_ciphertexts_are_implicitly_rejected() {
        let key = MlKemPrivateKey::generate(MlKemLevel::L768).unwrap();
        let (ct, ss) = mlkem_encapsulate(MlKemLevel::L768, &key.public_key()).unwrap();
        let mut bad = ct.clone();
        bad[0] ^= 1;
        let other = key.decapsulate(&bad).unwrap();
        assert!(!other.ct_eq(&ss));
        // Deterministic: the same altered ciphertext gives the same secret.
        assert!(key.decapsulate(&bad).unwrap().ct_eq(&other));
        for n in [0, 1, ct.len() - 1] {
            assert!(matches!(
                key.decapsulate(&ct[..n]),
                Err(CryptoError::WrongLength { .. })
            ));
        }
        let mut longer = ct.clone();
        longer.push(0);
        assert!(key.decapsulate(&longer).is_err());
        let stranger = MlKemPrivateKey::generate(MlKemLevel::L768).unwrap();
        assert!(!stranger.decapsulate(&ct).unwrap().ct_eq(&ss));
    }

    #[test]
    fn garbage_keys_are_refused() {
        for level in MlKemLevel::ALL {
            let key = MlKemPrivateKey::generate(level).unwrap();
            let bytes = key.to_bytes().unwrap();
            for n in [0, 1, bytes.len() - 1] {
                assert!(MlKemPrivateKey::from_bytes(level, &bytes[..n]).is_err());
            }
            // A flipped bit in the embedded ek or in H(ek) fails the §7.3 check; one
            // in dk_PKE fails the pairwise test.
            let ek_start = 384 * level.k();
            for i in [0, 100, ek_start, ek_start + level.public_key_len()] {
                let mut bad = bytes.to_vec();
                bad[i] ^= 1;
                assert!(matches!(
                    MlKemPrivateKey::from_bytes(level, &bad),
                    Err(CryptoError::InvalidKey(_))
                ));
            }
            for other in MlKemLevel::ALL {
                if other != level {
                    assert!(MlKemPrivateKey::from_bytes(other, &bytes).is_err());
                    assert!(mlkem_encapsulate(other, &key.public_key()).is_err());
                }
            }
            let public = key.public_key();
            assert!(mlkem_encapsulate(level, &public[1..]).is_err());
            assert!(mlkem_encapsulate(level, &[]).is_err());
            // Coefficients must be below q = 3329: 0xff 0xff encodes 4095.
            let mut unreduced = public.clone();
            unreduced[0] = 0xff;
            unreduced[1] = 0xff;
            assert!(mlkem_encapsulate(level, &unreduced).is_err());
        }
    }

    #[test]
    fn pairwise_check_catches_a_mismatched_public_key() {
        let key = MlKemPrivateKey::generate(MlKemLevel::L512).unwrap();
        let other = MlKemPrivateKey::generate(MlKemLevel::L512).unwrap();
        let broken = MlKemPrivateKey {
            public: other.public.clone(),
            ..key
        };
        assert_eq!(
            broken.pairwise_check(),
            Err(CryptoError::PairwiseConsistency)
        );
        let secret = other.decapsulate(&vec![0; 768]).unwrap();
        assert_eq!(secret.expose_secret().len(), 32);
    }
}
