//! ECDSA on NIST P-384 with SHA-384: the classical half of every ihsm identity.

use core::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    self, ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use der::Encode;
use der::asn1::UintRef;
use zeroize::Zeroizing;

use crate::{CryptoError, ExposeSecret, Secret};

/// Length of a P-384 private scalar.
pub const SCALAR_LEN: usize = 48;
/// Length of an uncompressed SEC1 P-384 point (`04 || x || y`).
pub const PUBLIC_KEY_LEN: usize = 97;
/// Length of a fixed-size signature (`r || s`).
pub const SIGNATURE_LEN: usize = 96;

/// A P-384 public key, validated to be on the curve.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EccP384PublicKey([u8; PUBLIC_KEY_LEN]);

impl EccP384PublicKey {
    /// Parses an uncompressed SEC1 point and checks it lies on the curve.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for any other input.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 public"))?;
        if arr[0] != 0x04 {
            return Err(CryptoError::InvalidKey("ECC P-384 public"));
        }
        signature::ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, arr.as_slice())
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 public"))?;
        Ok(Self(arr))
    }

    /// The uncompressed SEC1 encoding `04 || x || y`.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The affine x coordinate, big-endian.
    #[must_use]
    pub fn x(&self) -> &[u8] {
        &self.0[1..49]
    }

    /// The affine y coordinate, big-endian.
    #[must_use]
    pub fn y(&self) -> &[u8] {
        &self.0[49..]
    }

    /// Verifies an ECDSA P-384 / SHA-384 signature over `message`.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify(&self, message: &[u8], sig: &EccP384Signature) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, self.0.as_slice())
            .verify(message, &sig.to_fixed())
            .map_err(|_| CryptoError::VerificationFailed)
    }

    /// Verifies an ECDSA P-384 signature over a SHA-384 digest computed elsewhere.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify_prehashed(
        &self,
        digest384: &[u8; 48],
        sig: &EccP384Signature,
    ) -> Result<(), CryptoError> {
        let d = digest::Digest::import_less_safe(digest384, &digest::SHA384)
            .map_err(|_| CryptoError::Internal("digest import"))?;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, self.0.as_slice())
            .verify_digest(&d, &sig.to_fixed())
            .map_err(|_| CryptoError::VerificationFailed)
    }
}

impl fmt::Debug for EccP384PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EccP384PublicKey({})", hex_prefix(&self.0[1..]))
    }
}

pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(19);
    for b in bytes.iter().take(8) {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str("..");
    s
}

/// An ECDSA P-384 signature: the two 48-byte big-endian integers r and s.
#[derive(Clone, PartialEq, Eq)]
pub struct EccP384Signature {
    /// r, big-endian, zero-padded to 48 bytes.
    pub r: [u8; 48],
    /// s, big-endian, zero-padded to 48 bytes.
    pub s: [u8; 48],
}

impl EccP384Signature {
    /// From the fixed-size encoding `r || s`.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] unless `bytes` is 96 bytes.
    pub fn from_fixed(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != SIGNATURE_LEN {
            return Err(CryptoError::WrongLength {
                what: "ECDSA P-384 signature",
                expected: SIGNATURE_LEN,
                actual: bytes.len(),
            });
        }
        let mut r = [0u8; 48];
        let mut s = [0u8; 48];
        r.copy_from_slice(&bytes[..48]);
        s.copy_from_slice(&bytes[48..]);
        Ok(Self { r, s })
    }

    /// The fixed-size encoding `r || s`.
    #[must_use]
    pub fn to_fixed(&self) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out[..48].copy_from_slice(&self.r);
        out[48..].copy_from_slice(&self.s);
        out
    }

    /// The X.509 encoding `SEQUENCE { INTEGER r, INTEGER s }` (RFC 5480).
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if DER encoding fails.
    pub fn to_der(&self) -> Result<Vec<u8>, CryptoError> {
        #[derive(der::Sequence)]
        struct EcdsaSigValue<'a> {
            r: UintRef<'a>,
            s: UintRef<'a>,
        }
        let enc = |e: der::Error| {
            let _ = e;
            CryptoError::Internal("ECDSA signature DER")
        };
        EcdsaSigValue {
            r: UintRef::new(&self.r).map_err(enc)?,
            s: UintRef::new(&self.s).map_err(enc)?,
        }
        .to_der()
        .map_err(enc)
    }
}

impl fmt::Debug for EccP384Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EccP384Signature(r={}, s={})",
            hex_prefix(&self.r),
            hex_prefix(&self.s)
        )
    }
}

/// A P-384 private key inside aws-lc. Not `Clone`; `Debug` shows only the public key.
pub struct EccP384PrivateKey {
    inner: EcdsaKeyPair,
    public: EccP384PublicKey,
}

impl EccP384PrivateKey {
    /// Builds the key pair for a private scalar (big-endian, 48 bytes, in `[1, n-1]`).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when the scalar is out of range.
    pub fn from_scalar(scalar: &Secret<SCALAR_LEN>) -> Result<Self, CryptoError> {
        // RFC 5915 ECPrivateKey without the optional public key; aws-lc recomputes it.
        // SEQUENCE { INTEGER 1, OCTET STRING d, [0] { OID secp384r1 } }
        const PREFIX: [u8; 7] = [0x30, 0x3e, 0x02, 0x01, 0x01, 0x04, 0x30];
        const SUFFIX: [u8; 9] = [0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let der = crate::scratch::concat(&[&PREFIX, scalar.expose_secret(), &SUFFIX]);
        let inner = EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, &der)
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 private"))?;
        Self::wrap(inner)
    }

    /// A fresh random key.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let inner = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|_| CryptoError::Internal("ECC P-384 key generation"))?;
        Self::wrap(inner)
    }

    /// Reads a PKCS#8 (or RFC 5915) DER private key.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when it is not a P-384 private key.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let inner = EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 private"))?;
        Self::wrap(inner)
    }

    /// The PKCS#8 v1 DER encoding, in a buffer wiped on drop.
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

    fn wrap(inner: EcdsaKeyPair) -> Result<Self, CryptoError> {
        let public = EccP384PublicKey::from_sec1(inner.public_key().as_ref())?;
        Ok(Self { inner, public })
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &EccP384PublicKey {
        &self.public
    }

    /// ECDSA P-384 with SHA-384 over `message`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<EccP384Signature, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self
            .inner
            .sign(&rng, message)
            .map_err(|_| CryptoError::Internal("ECDSA P-384 signing"))?;
        EccP384Signature::from_fixed(sig.as_ref())
    }

    /// ECDSA P-384 over a SHA-384 digest computed elsewhere.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign_prehashed(&self, digest384: &[u8; 48]) -> Result<EccP384Signature, CryptoError> {
        let d = digest::Digest::import_less_safe(digest384, &digest::SHA384)
            .map_err(|_| CryptoError::Internal("digest import"))?;
        let sig = self
            .inner
            .sign_digest(&d)
            .map_err(|_| CryptoError::Internal("ECDSA P-384 signing"))?;
        EccP384Signature::from_fixed(sig.as_ref())
    }
}

impl fmt::Debug for EccP384PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EccP384PrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_roundtrip_and_sign_verify() {
        let k = Secret::<48>::from_slice(&[0x11; 48]).unwrap();
        let key = EccP384PrivateKey::from_scalar(&k).unwrap();
        let again = EccP384PrivateKey::from_scalar(&k).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let sig = key.sign(b"hello").unwrap();
        key.public_key().verify(b"hello", &sig).unwrap();
        assert_eq!(
            key.public_key().verify(b"hellp", &sig),
            Err(CryptoError::VerificationFailed)
        );
        let d = crate::hash::sha384(b"hello");
        key.public_key().verify_prehashed(&d, &sig).unwrap();
        let sig2 = key.sign_prehashed(&d).unwrap();
        key.public_key().verify(b"hello", &sig2).unwrap();
    }

    #[test]
    fn out_of_range_scalars_are_refused() {
        let zero = Secret::<48>::zeroed().unwrap();
        assert!(EccP384PrivateKey::from_scalar(&zero).is_err());
        let big = Secret::<48>::from_slice(&[0xff; 48]).unwrap();
        assert!(EccP384PrivateKey::from_scalar(&big).is_err());
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(EccP384PublicKey::from_sec1(&[4; 97]).is_err());
        assert!(EccP384PublicKey::from_sec1(&[4; 96]).is_err());
        assert!(EccP384PublicKey::from_sec1(&[]).is_err());
        let good = EccP384PrivateKey::generate().unwrap();
        let mut bytes = *good.public_key().as_bytes();
        EccP384PublicKey::from_sec1(&bytes).unwrap();
        bytes[0] = 2;
        assert!(EccP384PublicKey::from_sec1(&bytes).is_err());
    }

    #[test]
    fn der_signature_matches_p384_crate() {
        use p384::ecdsa::signature::Verifier;
        let key = EccP384PrivateKey::generate().unwrap();
        let sig = key.sign(b"msg").unwrap();
        let der = sig.to_der().unwrap();
        let parsed = p384::ecdsa::Signature::from_der(&der).unwrap();
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(key.public_key().as_bytes()).unwrap();
        vk.verify(b"msg", &parsed).unwrap();
    }

    #[test]
    fn pkcs8_roundtrip() {
        let key = EccP384PrivateKey::generate().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let back = EccP384PrivateKey::from_der(&der).unwrap();
        assert_eq!(key.public_key(), back.public_key());
        assert!(EccP384PrivateKey::from_der(&der[..der.len() - 1]).is_err());
    }
}
