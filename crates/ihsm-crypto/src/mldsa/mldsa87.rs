//! ML-DSA-87, the post-quantum half of every ihsm identity: fixed-size, typed keys
//! and signatures over the general [`MlDsaPrivateKey`] and [`mldsa_verify`] at
//! [`MlDsaLevel::L87`], which do all the work.

use core::fmt;

use zeroize::Zeroizing;

use super::{MlDsaLevel, MlDsaPrivateKey, PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN};
use crate::{CryptoError, Secret};

const LEVEL: MlDsaLevel = MlDsaLevel::L87;

/// An ML-DSA-87 public key (the FIPS 204 encoding `pk`), one aws-lc accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct MlDsa87PublicKey(Box<[u8; PUBLIC_KEY_LEN]>);

impl MlDsa87PublicKey {
    /// Parses the raw FIPS 204 encoding.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] unless it is 2592 bytes that aws-lc accepts.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| CryptoError::InvalidKey("ML-DSA-87 public");
        super::parse_public(LEVEL, bytes).map_err(bad)?;
        let arr: Box<[u8; PUBLIC_KEY_LEN]> = bytes
            .to_vec()
            .into_boxed_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 public"))?;
        Ok(Self(arr))
    }

    /// The raw encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Verifies a pure ML-DSA-87 signature (empty context) over `message`.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify(&self, message: &[u8], sig: &MlDsa87Signature) -> Result<(), CryptoError> {
        super::mldsa_verify(LEVEL, self.0.as_slice(), message, sig.as_bytes())
    }
}

impl fmt::Debug for MlDsa87PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MlDsa87PublicKey({})",
            crate::hex_prefix(self.0.as_slice())
        )
    }
}

/// An ML-DSA-87 signature.
#[derive(Clone, PartialEq, Eq)]
pub struct MlDsa87Signature(Box<[u8; SIGNATURE_LEN]>);

impl MlDsa87Signature {
    /// From its raw encoding.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] unless it is 4627 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: Box<[u8; SIGNATURE_LEN]> =
            bytes
                .to_vec()
                .into_boxed_slice()
                .try_into()
                .map_err(|_| CryptoError::WrongLength {
                    what: "ML-DSA-87 signature",
                    expected: SIGNATURE_LEN,
                    actual: bytes.len(),
                })?;
        Ok(Self(arr))
    }

    /// The raw encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

impl fmt::Debug for MlDsa87Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MlDsa87Signature({})",
            crate::hex_prefix(self.0.as_slice())
        )
    }
}

/// An ML-DSA-87 private key inside aws-lc. Not `Clone`; `Debug` shows the public key.
pub struct MlDsa87PrivateKey {
    key: MlDsaPrivateKey,
    public: MlDsa87PublicKey,
}

impl MlDsa87PrivateKey {
    /// ML-DSA.KeyGen_internal(ξ): the same seed always gives the same key pair.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if aws-lc refuses the seed.
    pub fn from_seed(seed: &Secret<SEED_LEN>) -> Result<Self, CryptoError> {
        let key = MlDsaPrivateKey::from_seed(LEVEL, seed)
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 seed"))?;
        Self::wrap(key)
    }

    /// A fresh random key, returned only after a pairwise-consistency test.
    ///
    /// # Errors
    /// As [`MlDsaPrivateKey::generate`].
    pub fn generate() -> Result<Self, CryptoError> {
        Self::wrap(MlDsaPrivateKey::generate(LEVEL)?)
    }

    /// Reads a PKCS#8 private key (seed, expanded or both forms).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when it is not an ML-DSA-87 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = MlDsaPrivateKey::from_pkcs8(LEVEL, der)
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 private"))?;
        Self::wrap(key)
    }

    /// The PKCS#8 v1 DER encoding (seed form), in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.key.to_pkcs8()
    }

    fn wrap(key: MlDsaPrivateKey) -> Result<Self, CryptoError> {
        let public = MlDsa87PublicKey::from_bytes(key.public_key())?;
        Ok(Self { key, public })
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &MlDsa87PublicKey {
        &self.public
    }

    /// The same key as a key of any level.
    #[must_use]
    pub fn as_mldsa(&self) -> &MlDsaPrivateKey {
        &self.key
    }

    /// Pure ML-DSA-87 (hedged, empty context) over `message`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<MlDsa87Signature, CryptoError> {
        MlDsa87Signature::from_bytes(&self.key.sign(message)?)
    }
}

impl fmt::Debug for MlDsa87PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlDsa87PrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_deterministic_and_matches_rustcrypto() {
        use ml_dsa::signature::Keypair;
        let seed = [42u8; 32];
        let a = MlDsa87PrivateKey::from_seed(&Secret::from_slice(&seed).unwrap()).unwrap();
        let b = MlDsa87PrivateKey::from_seed(&Secret::from_slice(&seed).unwrap()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let rc = ml_dsa::SigningKey::<ml_dsa::MlDsa87>::from_seed(&seed.into());
        assert_eq!(
            rc.verifying_key().encode().as_slice(),
            a.public_key().as_bytes()
        );
        assert_eq!(a.as_mldsa().public_key(), a.public_key().as_bytes());
        assert_eq!(a.as_mldsa().level(), MlDsaLevel::L87);
    }

    #[test]
    fn signature_verifies_here_and_in_rustcrypto() {
        use ml_dsa::signature::Verifier;
        let key = MlDsa87PrivateKey::generate().unwrap();
        let sig = key.sign(b"msg").unwrap();
        key.public_key().verify(b"msg", &sig).unwrap();
        assert_eq!(
            key.public_key().verify(b"msh", &sig),
            Err(CryptoError::VerificationFailed)
        );
        let vk = ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(
            key.public_key().as_bytes().as_slice().try_into().unwrap(),
        );
        let rs = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(
            sig.as_bytes().as_slice().try_into().unwrap(),
        )
        .unwrap();
        vk.verify(b"msg", &rs).unwrap();
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(MlDsa87PublicKey::from_bytes(&[0; 2591]).is_err());
        assert!(MlDsa87Signature::from_bytes(&[0; 4626]).is_err());
        assert!(MlDsa87PrivateKey::from_pkcs8_der(&[0x30, 0x00]).is_err());
        // An ML-DSA-65 key is not an ML-DSA-87 key.
        let l65 = MlDsaPrivateKey::generate(MlDsaLevel::L65).unwrap();
        assert!(MlDsa87PublicKey::from_bytes(l65.public_key()).is_err());
        assert!(MlDsa87PrivateKey::from_pkcs8_der(&l65.to_pkcs8().unwrap()).is_err());
    }

    #[test]
    fn pkcs8_roundtrip() {
        let key = MlDsa87PrivateKey::generate().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let back = MlDsa87PrivateKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(key.public_key(), back.public_key());
    }
}
