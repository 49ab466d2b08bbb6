//! ML-DSA-87 (FIPS 204): the post-quantum half of every ihsm identity.

use core::fmt;

use aws_lc_rs::signature::{KeyPair, ML_DSA_87, ML_DSA_87_SIGNING, ParsedPublicKey, PqdsaKeyPair};
use zeroize::Zeroizing;

use crate::{CryptoError, ExposeSecret, Secret};

/// Length of the ML-DSA key-generation seed ξ.
pub const SEED_LEN: usize = 32;
/// Length of an ML-DSA-87 public key.
pub const PUBLIC_KEY_LEN: usize = 2592;
/// Length of an ML-DSA-87 signature.
pub const SIGNATURE_LEN: usize = 4627;

/// An ML-DSA-87 public key (the FIPS 204 encoding `pk`).
#[derive(Clone, PartialEq, Eq)]
pub struct MlDsa87PublicKey(Box<[u8; PUBLIC_KEY_LEN]>);

impl MlDsa87PublicKey {
    /// Parses the raw FIPS 204 encoding.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] unless it is 2592 bytes that aws-lc accepts.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: Box<[u8; PUBLIC_KEY_LEN]> = bytes
            .to_vec()
            .into_boxed_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 public"))?;
        ParsedPublicKey::new(&ML_DSA_87, arr.as_slice())
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
        ParsedPublicKey::new(&ML_DSA_87, self.0.as_slice())
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 public"))?
            .verify_sig(message, sig.as_bytes())
            .map_err(|_| CryptoError::VerificationFailed)
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
    inner: PqdsaKeyPair,
    public: MlDsa87PublicKey,
}

impl MlDsa87PrivateKey {
    /// ML-DSA.KeyGen_internal(ξ): the same seed always gives the same key pair.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if aws-lc refuses the seed.
    pub fn from_seed(seed: &Secret<SEED_LEN>) -> Result<Self, CryptoError> {
        let inner = PqdsaKeyPair::from_seed(&ML_DSA_87_SIGNING, seed.expose_secret())
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 seed"))?;
        Self::wrap(inner)
    }

    /// A fresh random key.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let inner = PqdsaKeyPair::generate(&ML_DSA_87_SIGNING)
            .map_err(|_| CryptoError::Internal("ML-DSA-87 key generation"))?;
        Self::wrap(inner)
    }

    /// Reads a PKCS#8 private key (seed, expanded or both forms).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when it is not an ML-DSA-87 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let inner = PqdsaKeyPair::from_pkcs8(&ML_DSA_87_SIGNING, der)
            .map_err(|_| CryptoError::InvalidKey("ML-DSA-87 private"))?;
        Self::wrap(inner)
    }

    /// The PKCS#8 v1 DER encoding (seed form), in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = self
            .inner
            .to_pkcs8v1()
            .map_err(|_| CryptoError::Internal("PKCS#8 encoding"))?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    fn wrap(inner: PqdsaKeyPair) -> Result<Self, CryptoError> {
        let public = MlDsa87PublicKey::from_bytes(inner.public_key().as_ref())?;
        Ok(Self { inner, public })
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &MlDsa87PublicKey {
        &self.public
    }

    /// Pure ML-DSA-87 (hedged, empty context) over `message`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<MlDsa87Signature, CryptoError> {
        let mut sig = vec![0u8; SIGNATURE_LEN];
        let n = self
            .inner
            .sign(message, &mut sig)
            .map_err(|_| CryptoError::Internal("ML-DSA-87 signing"))?;
        sig.truncate(n);
        MlDsa87Signature::from_bytes(&sig)
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
    }

    #[test]
    fn pkcs8_roundtrip() {
        let key = MlDsa87PrivateKey::generate().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let back = MlDsa87PrivateKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(key.public_key(), back.public_key());
    }
}
