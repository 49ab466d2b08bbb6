//! ECDSA on NIST P-384 with SHA-384, the classical half of every ihsm identity:
//! fixed-size, typed keys and signatures over the general [`EcPrivateKey`] and
//! [`EcPublicKey`] on [`Curve::P384`], which do all the work.

use core::fmt;

use der::Encode;
use der::asn1::UintRef;
use zeroize::Zeroizing;

use super::{Curve, EcPrivateKey, EcPublicKey};
use crate::hash::HashAlg;
use crate::{CryptoError, ExposeSecret, Secret};

/// Length of a P-384 private scalar.
pub const P384_SCALAR_LEN: usize = Curve::P384.scalar_len();
/// Length of an uncompressed SEC1 P-384 point (`04 || x || y`).
pub const P384_PUBLIC_KEY_LEN: usize = Curve::P384.point_len();
/// Length of a fixed-size P-384 signature (`r || s`).
pub const P384_SIGNATURE_LEN: usize = Curve::P384.signature_len();

/// A P-384 public key, validated to be on the curve.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EccP384PublicKey(EcPublicKey);

impl EccP384PublicKey {
    /// Parses an uncompressed SEC1 point and checks it lies on the curve.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for any other input.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, CryptoError> {
        EcPublicKey::from_sec1(Curve::P384, bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 public"))
    }

    /// The uncompressed SEC1 encoding `04 || x || y`.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; P384_PUBLIC_KEY_LEN] {
        // The point was parsed on P-384, so it is exactly this long; were it not,
        // the all-zero value (no point at all) would fail every use.
        self.0
            .as_bytes()
            .first_chunk()
            .unwrap_or(&[0; P384_PUBLIC_KEY_LEN])
    }

    /// The same key as a key on any curve.
    #[must_use]
    pub fn as_ec(&self) -> &EcPublicKey {
        &self.0
    }

    /// The affine x coordinate, big-endian.
    #[must_use]
    pub fn x(&self) -> &[u8] {
        &self.as_bytes()[1..1 + P384_SCALAR_LEN]
    }

    /// The affine y coordinate, big-endian.
    #[must_use]
    pub fn y(&self) -> &[u8] {
        &self.as_bytes()[1 + P384_SCALAR_LEN..]
    }

    /// Verifies an ECDSA P-384 / SHA-384 signature over `message`.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify(&self, message: &[u8], sig: &EccP384Signature) -> Result<(), CryptoError> {
        self.0.verify(HashAlg::Sha384, message, &sig.to_fixed())
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
        self.0.verify_digest(digest384, &sig.to_fixed())
    }

    /// The SubjectPublicKeyInfo DER encoding (RFC 5480: id-ecPublicKey, secp384r1,
    /// the uncompressed point).
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        self.0.to_spki_der()
    }
}

impl fmt::Debug for EccP384PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EccP384PublicKey({})",
            crate::hex_prefix(&self.as_bytes()[1..])
        )
    }
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
        if bytes.len() != P384_SIGNATURE_LEN {
            return Err(CryptoError::WrongLength {
                what: "ECDSA P-384 signature",
                expected: P384_SIGNATURE_LEN,
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
    pub fn to_fixed(&self) -> [u8; P384_SIGNATURE_LEN] {
        let mut out = [0u8; P384_SIGNATURE_LEN];
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
            crate::hex_prefix(&self.r),
            crate::hex_prefix(&self.s)
        )
    }
}

/// A P-384 private key inside aws-lc. Not `Clone`; `Debug` shows only the public key.
pub struct EccP384PrivateKey {
    key: EcPrivateKey,
    public: EccP384PublicKey,
}

impl EccP384PrivateKey {
    /// Builds the key pair for a private scalar (big-endian, 48 bytes, in `[1, n-1]`).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when the scalar is out of range.
    pub fn from_scalar(scalar: &Secret<P384_SCALAR_LEN>) -> Result<Self, CryptoError> {
        let key = EcPrivateKey::from_scalar(Curve::P384, scalar.expose_secret())
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 private"))?;
        Ok(Self::wrap(key))
    }

    /// A fresh random key, returned only after a pairwise-consistency test.
    ///
    /// # Errors
    /// As [`EcPrivateKey::generate`].
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::wrap(EcPrivateKey::generate(Curve::P384)?))
    }

    /// Reads a PKCS#8 (or RFC 5915) DER private key.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when it is not a P-384 private key.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = EcPrivateKey::from_der(Curve::P384, der)
            .map_err(|_| CryptoError::InvalidKey("ECC P-384 private"))?;
        Ok(Self::wrap(key))
    }

    /// The PKCS#8 v1 DER encoding, in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.key.to_pkcs8()
    }

    fn wrap(key: EcPrivateKey) -> Self {
        let public = EccP384PublicKey(key.public_key().clone());
        Self { key, public }
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &EccP384PublicKey {
        &self.public
    }

    /// The same key as a key on any curve.
    #[must_use]
    pub fn as_ec(&self) -> &EcPrivateKey {
        &self.key
    }

    /// ECDSA P-384 with SHA-384 over `message`.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<EccP384Signature, CryptoError> {
        EccP384Signature::from_fixed(&self.key.sign(HashAlg::Sha384, message)?)
    }

    /// ECDSA P-384 over a SHA-384 digest computed elsewhere.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign_prehashed(&self, digest384: &[u8; 48]) -> Result<EccP384Signature, CryptoError> {
        EccP384Signature::from_fixed(&self.key.sign_digest(digest384)?)
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
        // The general key underneath is the same key.
        key.as_ec()
            .public_key()
            .verify(HashAlg::Sha384, b"hello", &sig2.to_fixed())
            .unwrap();
        assert_eq!(key.public_key().as_ec(), key.as_ec().public_key());
        assert_eq!(key.public_key().x(), &key.public_key().as_bytes()[1..49]);
        assert_eq!(key.public_key().y(), &key.public_key().as_bytes()[49..]);
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
        // A point on another curve is not a P-384 key.
        let p256 = EcPrivateKey::generate(Curve::P256).unwrap();
        assert!(EccP384PublicKey::from_sec1(p256.public_key().as_bytes()).is_err());
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
        let p256 = EcPrivateKey::generate(Curve::P256).unwrap();
        assert!(EccP384PrivateKey::from_der(&p256.to_pkcs8().unwrap()).is_err());
    }
}
