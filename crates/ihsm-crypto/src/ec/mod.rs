//! ECDSA and ECDH on the NIST curves P-256, P-384 and P-521 (FIPS 186-5,
//! SP 800-56A): tenant keys of any curve ([`EcPrivateKey`], [`EcPublicKey`]), and
//! the root of trust's P-384 identity keys as fixed-size types over them
//! ([`EccP384PrivateKey`], [`EccP384PublicKey`], [`EccP384Signature`]).
//!
//! Signatures are the fixed-size `r || s` form (IEEE P1363, PKCS#11 `CKM_ECDSA`).
//!
//! # Signing a digest computed elsewhere
//!
//! `CKM_ECDSA` hands the HSM a digest of any length. ECDSA turns it into an
//! integer with `bits2int`: the leftmost `qlen` bits, where `qlen` is the bit
//! length of the group order (FIPS 186-5 §6.4.1, RFC 6979 §2.3.2). aws-lc-rs signs
//! only a digest of the curve's native hash, so [`EcPrivateKey::sign_digest`]
//! first maps the input to that length, and the mapping is exact:
//!
//! - P-256 and P-384 have `qlen` = 256 and 384, exactly 8 × the native digest
//!   length (32 and 48 bytes). Keeping the leftmost 32 (48) bytes of a longer digest
//!   is `bits2int` itself; left-padding a shorter one with zero bytes leaves its
//!   integer value, and so `bits2int`, unchanged.
//! - P-521 has `qlen` = 521 and the native digest is SHA-512's 64 bytes (512 bits).
//!   Left-padding a shorter digest is exact as above, and a 64-byte digest is taken
//!   whole by both. A digest *longer* than 64 bytes would need 521 of its bits,
//!   which no 64-byte value can carry, so it is refused rather than signed wrongly
//!   ([`CryptoError::WrongLength`]); no standard hash is that long.

use core::fmt;

use aws_lc_rs::agreement;
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair,
    ParsedPublicKey, UnparsedPublicKey,
};
use der::Decode;
use der::asn1::ObjectIdentifier;
use spki::SubjectPublicKeyInfoRef;
use zeroize::Zeroizing;

use crate::hash::{self, HashAlg};
use crate::{CryptoError, SecretVec};

mod ecc384;

pub use ecc384::{
    EccP384PrivateKey, EccP384PublicKey, EccP384Signature, P384_PUBLIC_KEY_LEN, P384_SCALAR_LEN,
    P384_SIGNATURE_LEN,
};

/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// A NIST prime curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// P-256 (secp256r1, prime256v1).
    P256,
    /// P-384 (secp384r1).
    P384,
    /// P-521 (secp521r1).
    P521,
}

impl Curve {
    /// Every supported curve.
    pub const ALL: [Curve; 3] = [Self::P256, Self::P384, Self::P521];

    /// The length of a private scalar and of each coordinate, in bytes.
    #[must_use]
    pub const fn scalar_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The length of an uncompressed SEC1 point `04 || x || y`.
    #[must_use]
    pub const fn point_len(self) -> usize {
        1 + 2 * self.scalar_len()
    }

    /// The length of a fixed-size signature `r || s`.
    #[must_use]
    pub const fn signature_len(self) -> usize {
        2 * self.scalar_len()
    }

    /// The NIST name ("P-256").
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }

    /// The named-curve OID (RFC 5480).
    #[must_use]
    pub const fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            Self::P384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
            Self::P521 => ObjectIdentifier::new_unwrap("1.3.132.0.35"),
        }
    }

    /// The hash aws-lc-rs pairs with the curve, whose digest length
    /// [`EcPrivateKey::sign_digest`] maps its input to.
    #[must_use]
    pub const fn native_hash(self) -> HashAlg {
        match self {
            Self::P256 => HashAlg::Sha256,
            Self::P384 => HashAlg::Sha384,
            Self::P521 => HashAlg::Sha512,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == oid)
    }

    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Self::P256 => &agreement::ECDH_P256,
            Self::P384 => &agreement::ECDH_P384,
            Self::P521 => &agreement::ECDH_P521,
        }
    }

    /// Maps a digest of any length to the native digest (see the module docs).
    fn native_digest(self, digest: &[u8]) -> Result<Digest, CryptoError> {
        let hash = self.native_hash();
        let n = hash.output_len();
        let mut buf = [0u8; digest::MAX_OUTPUT_LEN];
        let native = buf
            .get_mut(..n)
            .ok_or(CryptoError::Internal("ECDSA digest"))?;
        if digest.len() >= n {
            if self == Self::P521 && digest.len() > n {
                return Err(CryptoError::WrongLength {
                    what: "ECDSA P-521 digest (at most 64 bytes)",
                    expected: n,
                    actual: digest.len(),
                });
            }
            native.copy_from_slice(digest.get(..n).unwrap_or_default());
        } else {
            let pad = n - digest.len();
            native
                .get_mut(pad..)
                .unwrap_or_default()
                .copy_from_slice(digest);
        }
        Digest::import_less_safe(native, hash.aws())
            .map_err(|_| CryptoError::Internal("ECDSA digest import"))
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key on a NIST curve, validated to be a point of the group.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EcPublicKey {
    curve: Curve,
    point: Vec<u8>,
}

impl EcPublicKey {
    /// Parses an uncompressed SEC1 point `04 || x || y` and checks that it lies on
    /// `curve` (and is not the point at infinity).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything else, compressed points included.
    pub fn from_sec1(curve: Curve, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != curve.point_len() || bytes.first() != Some(&0x04) {
            return Err(CryptoError::InvalidKey("EC public"));
        }
        ParsedPublicKey::new(curve.verification(), bytes)
            .map_err(|_| CryptoError::InvalidKey("EC public"))?;
        Ok(Self {
            curve,
            point: bytes.to_vec(),
        })
    }

    /// Parses a SubjectPublicKeyInfo (RFC 5480) with a named curve and an
    /// uncompressed point; explicit curve parameters are refused.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything else.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("EC SubjectPublicKeyInfo");
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| bad)?;
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(bad);
        }
        let params = spki.algorithm.parameters.ok_or(bad)?;
        let oid = params.decode_as::<ObjectIdentifier>().map_err(|_| bad)?;
        let curve = Curve::from_oid(oid).ok_or(bad)?;
        let point = spki.subject_public_key.as_bytes().ok_or(bad)?;
        Self::from_sec1(curve, point)
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The uncompressed SEC1 encoding `04 || x || y`.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.point
    }

    /// Verifies a fixed-size `r || s` signature over a digest of any length (the
    /// mapping of [`EcPrivateKey::sign_digest`]).
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`]; [`CryptoError::WrongLength`] for a P-521
    /// digest over 64 bytes.
    pub fn verify_digest(&self, digest: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != self.curve.signature_len() {
            return Err(CryptoError::VerificationFailed);
        }
        let d = self.curve.native_digest(digest)?;
        UnparsedPublicKey::new(self.curve.verification(), &self.point)
            .verify_digest(&d, sig)
            .map_err(|_| CryptoError::VerificationFailed)
    }

    /// Verifies a fixed-size signature over `msg` hashed with `hash` (any
    /// [`HashAlg`], SHA-1 included, for legacy signatures).
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.verify_digest(&hash::digest(hash, msg), sig)
    }

    /// The SubjectPublicKeyInfo DER encoding (named curve, uncompressed point).
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        let parsed = ParsedPublicKey::new(self.curve.verification(), &self.point)
            .map_err(|_| CryptoError::Internal("EC SPKI encoding"))?;
        let der = parsed
            .as_der()
            .map_err(|_| CryptoError::Internal("EC SPKI encoding"))?;
        Ok(der.as_ref().to_vec())
    }
}

impl fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EcPublicKey({}, {})",
            self.curve,
            crate::hex_prefix(self.point.get(1..).unwrap_or_default())
        )
    }
}

/// An ECDSA/ECDH private key inside aws-lc. Not `Clone`; `Debug` shows only the
/// public key.
pub struct EcPrivateKey {
    curve: Curve,
    signing: EcdsaKeyPair,
    /// The same private key, loaded for key agreement when first needed: most keys
    /// only sign (the root of trust derives several per boot), and loading it costs
    /// an encoding and a scalar multiplication.
    agreement: std::sync::OnceLock<agreement::PrivateKey>,
    public: EcPublicKey,
}

impl EcPrivateKey {
    /// A fresh random key, returned only after a pairwise-consistency test.
    ///
    /// # Errors
    /// [`CryptoError::PairwiseConsistency`] if the test fails;
    /// [`CryptoError::Rng`] if the random source fails its health test;
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate(curve: Curve) -> Result<Self, CryptoError> {
        crate::rand::check_health()?;
        let signing = EcdsaKeyPair::generate(curve.signing())
            .map_err(|_| CryptoError::Internal("EC key generation"))?;
        let key = Self::wrap(curve, signing)?;
        key.pairwise_check()?;
        Ok(key)
    }

    /// Reads a PKCS#8 private key on `curve` (aws-lc checks that the public key,
    /// when present, matches).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything but a `curve` private key.
    pub fn from_pkcs8(curve: Curve, der: &[u8]) -> Result<Self, CryptoError> {
        let signing = EcdsaKeyPair::from_pkcs8(curve.signing(), der)
            .map_err(|_| CryptoError::InvalidKey("EC private (PKCS#8)"))?;
        Self::wrap(curve, signing)
    }

    /// Reads a PKCS#8 or RFC 5915 (`ECPrivateKey`) private key on `curve`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything but a `curve` private key.
    pub fn from_der(curve: Curve, der: &[u8]) -> Result<Self, CryptoError> {
        let signing = EcdsaKeyPair::from_private_key_der(curve.signing(), der)
            .map_err(|_| CryptoError::InvalidKey("EC private"))?;
        Self::wrap(curve, signing)
    }

    /// Builds the key for a big-endian private scalar in `[1, n-1]` (PKCS#11
    /// `CKA_VALUE`); leading zero bytes are optional. The caller wipes its copy.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] when the scalar is zero, too long, or not below
    /// the group order.
    pub fn from_scalar(curve: Curve, scalar: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("EC private scalar");
        let start = scalar.iter().position(|b| *b != 0).unwrap_or(scalar.len());
        let significant = scalar.get(start..).unwrap_or_default();
        let n = curve.scalar_len();
        if significant.is_empty() || significant.len() > n {
            return Err(bad);
        }
        // RFC 5915 ECPrivateKey without the optional public key, which aws-lc
        // computes (and checks the scalar against the group order):
        // SEQUENCE { INTEGER 1, OCTET STRING d (n bytes), [0] { OID curve } }.
        // Every length is below 128, so each is one byte.
        let oid = curve.oid();
        let oid = oid.as_bytes();
        let params_len = 2 + oid.len();
        let body_len = 3 + 2 + n + 2 + params_len;
        let len = |l: usize| u8::try_from(l).map_err(|_| bad);
        let head = [0x30, len(body_len)?, 0x02, 0x01, 0x01, 0x04, len(n)?];
        const ZEROS: [u8; 66] = [0; 66];
        let pad = ZEROS.get(..n - significant.len()).ok_or(bad)?;
        let tail = [0xa0, len(params_len)?, 0x06, len(oid.len())?];
        let der = crate::scratch::concat(&[&head, pad, significant, &tail, oid]);
        let signing = EcdsaKeyPair::from_private_key_der(curve.signing(), &der).map_err(|_| bad)?;
        Self::wrap(curve, signing)
    }

    fn wrap(curve: Curve, signing: EcdsaKeyPair) -> Result<Self, CryptoError> {
        let public = EcPublicKey::from_sec1(curve, signing.public_key().as_ref())?;
        Ok(Self {
            curve,
            signing,
            agreement: std::sync::OnceLock::new(),
            public,
        })
    }

    /// The key-agreement half, loaded on first use.
    fn agreement(&self) -> Result<&agreement::PrivateKey, CryptoError> {
        if let Some(a) = self.agreement.get() {
            return Ok(a);
        }
        let pkcs8 = Self::pkcs8_of(&self.signing)?;
        let a = agreement::PrivateKey::from_private_key_der(self.curve.agreement(), &pkcs8)
            .map_err(|_| CryptoError::InvalidKey("EC private (agreement)"))?;
        Ok(self.agreement.get_or_init(|| a))
    }

    fn pkcs8_of(signing: &EcdsaKeyPair) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let doc = signing
            .to_pkcs8v1()
            .map_err(|_| CryptoError::Internal("PKCS#8 encoding"))?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// Signs a fixed digest and verifies it with the public key, and checks that the
    /// key-agreement half derives the same public key.
    fn pairwise_check(&self) -> Result<(), CryptoError> {
        let fail = |_| CryptoError::PairwiseConsistency;
        let digest = [0xa5u8; 32];
        let sig = self.sign_digest(&digest).map_err(fail)?;
        self.public.verify_digest(&digest, &sig).map_err(fail)?;
        let derived = self
            .agreement()
            .and_then(|a| {
                a.compute_public_key()
                    .map_err(|_| CryptoError::PairwiseConsistency)
            })
            .map_err(|_| CryptoError::PairwiseConsistency)?;
        if derived.as_ref() != self.public.as_bytes() {
            return Err(CryptoError::PairwiseConsistency);
        }
        Ok(())
    }

    /// The PKCS#8 v1 DER encoding, in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`CryptoError::Internal`] if encoding fails.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Self::pkcs8_of(&self.signing)
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &EcPublicKey {
        &self.public
    }

    /// ECDSA over a digest computed elsewhere, of any length (PKCS#11 `CKM_ECDSA`;
    /// see the module docs for the exact mapping). Returns `r || s`.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for a P-521 digest over 64 bytes;
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let d = self.curve.native_digest(digest)?;
        let sig = self
            .signing
            .sign_digest(&d)
            .map_err(|_| CryptoError::Internal("ECDSA signing"))?;
        Ok(sig.as_ref().to_vec())
    }

    /// ECDSA over `msg` hashed with `hash`. Returns `r || s`.
    ///
    /// # Errors
    /// [`CryptoError::Unsupported`] for SHA-1 and SHA-224, kept for verifying legacy
    /// signatures only; otherwise as [`EcPrivateKey::sign_digest`].
    pub fn sign(&self, hash: HashAlg, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if hash.is_legacy() {
            return Err(CryptoError::Unsupported(
                "ECDSA signing with SHA-1 or SHA-224",
            ));
        }
        self.sign_digest(&hash::digest(hash, msg))
    }

    /// ECDH (SP 800-56A ECC CDH): the x coordinate of `d * Q` for the peer's
    /// uncompressed point `Q`, which is validated first.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for a malformed, compressed, off-curve or
    /// wrong-curve point; [`CryptoError::Internal`] if the agreement fails.
    pub fn ecdh(&self, peer_point: &[u8]) -> Result<SecretVec, CryptoError> {
        let peer = EcPublicKey::from_sec1(self.curve, peer_point)
            .map_err(|_| CryptoError::InvalidKey("ECDH peer public"))?;
        agreement::agree(
            self.agreement()?,
            agreement::UnparsedPublicKey::new(self.curve.agreement(), peer.as_bytes()),
            CryptoError::Internal("ECDH"),
            SecretVec::from_slice,
        )
    }
}

impl fmt::Debug for EcPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcPrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExposeSecret;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    #[test]
    fn generate_sign_verify_every_curve_and_hash() {
        for curve in Curve::ALL {
            let key = EcPrivateKey::generate(curve).unwrap();
            assert_eq!(key.curve(), curve);
            let public = key.public_key();
            assert_eq!(public.as_bytes().len(), curve.point_len());
            for hash in [
                HashAlg::Sha256,
                HashAlg::Sha384,
                HashAlg::Sha512,
                HashAlg::Sha3_256,
                HashAlg::Sha3_512,
            ] {
                let sig = key.sign(hash, b"message").unwrap();
                assert_eq!(sig.len(), curve.signature_len());
                public.verify(hash, b"message", &sig).unwrap();
                assert_eq!(
                    public.verify(hash, b"messagf", &sig),
                    Err(CryptoError::VerificationFailed)
                );
                let mut bad = sig.clone();
                bad[3] ^= 1;
                assert!(public.verify(hash, b"message", &bad).is_err());
                // The digest path agrees with the message path.
                let d = hash::digest(hash, b"message");
                public.verify_digest(&d, &sig).unwrap();
            }
            assert!(key.sign(HashAlg::Sha1, b"m").is_err());
            assert!(key.sign(HashAlg::Sha224, b"m").is_err());
            let other = EcPrivateKey::generate(curve).unwrap();
            let sig = key.sign(HashAlg::Sha256, b"m").unwrap();
            assert!(
                other
                    .public_key()
                    .verify(HashAlg::Sha256, b"m", &sig)
                    .is_err()
            );
        }
    }

    /// The digest mapping is `bits2int`: a longer digest signs as its leftmost
    /// bytes, a shorter one as itself left-padded with zeros.
    #[test]
    fn digest_mapping_is_bits2int() {
        for curve in Curve::ALL {
            let key = EcPrivateKey::generate(curve).unwrap();
            let n = curve.native_hash().output_len();
            let short = [0x42u8; 20];
            let sig = key.sign_digest(&short).unwrap();
            let mut padded = vec![0u8; n - 20];
            padded.extend_from_slice(&short);
            key.public_key().verify_digest(&padded, &sig).unwrap();
            key.public_key()
                .verify_digest(&[0, 0, 0x42], &key.sign_digest(&[0x42]).unwrap())
                .unwrap();
            if curve != Curve::P521 {
                let long: Vec<u8> = (0..64u8).collect();
                let sig = key.sign_digest(&long).unwrap();
                key.public_key().verify_digest(&long[..n], &sig).unwrap();
                key.public_key().verify_digest(&long, &sig).unwrap();
            } else {
                assert!(matches!(
                    key.sign_digest(&[1; 65]),
                    Err(CryptoError::WrongLength { .. })
                ));
                assert!(key.public_key().verify_digest(&[1; 66], &[0; 132]).is_err());
            }
            // An empty digest is the integer zero; it signs and verifies.
            let sig = key.sign_digest(&[]).unwrap();
            key.public_key().verify_digest(&vec![0; n], &sig).unwrap();
        }
    }

    /// The truncation of a longer digest, checked against an independent answer:
    /// RFC 6979 A.2.5's P-256 signature over SHA-384("sample").
    #[test]
    fn rfc6979_p256_sha384_signature_verifies() {
        let key = EcPrivateKey::from_scalar(
            Curve::P256,
            &h("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721"),
        )
        .unwrap();
        let public = h(
            "04 60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6\
                        7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299",
        );
        assert_eq!(key.public_key().as_bytes(), public.as_slice());
        let sig = h(
            "0EAFEA039B20E9B42309FB1D89E213057CBF973DC0CFC8F129EDDDC800EF7719\
                     4861F0491E6998B9455193E34E7B0D284DDD7149A74B95B9261F13ABDE940954",
        );
        key.public_key()
            .verify(HashAlg::Sha384, b"sample", &sig)
            .unwrap();
    }

    #[test]
    fn pkcs8_and_scalar_roundtrips() {
        for curve in Curve::ALL {
            let key = EcPrivateKey::generate(curve).unwrap();
            let der = key.to_pkcs8().unwrap();
            let back = EcPrivateKey::from_pkcs8(curve, &der).unwrap();
            assert_eq!(back.public_key(), key.public_key());
            for n in 0..der.len() {
                assert!(EcPrivateKey::from_pkcs8(curve, &der[..n]).is_err());
            }
            for other in Curve::ALL {
                if other != curve {
                    assert!(EcPrivateKey::from_pkcs8(other, &der).is_err());
                }
            }
            assert!(EcPrivateKey::from_pkcs8(curve, b"garbage").is_err());
            assert!(EcPrivateKey::from_pkcs8(curve, &[]).is_err());

            let mut one = vec![0u8; curve.scalar_len()];
            *one.last_mut().unwrap() = 1;
            let k1 = EcPrivateKey::from_scalar(curve, &one).unwrap();
            let k1b = EcPrivateKey::from_scalar(curve, &[0, 0, 1]).unwrap();
            assert_eq!(k1.public_key(), k1b.public_key());
            assert!(EcPrivateKey::from_scalar(curve, &[]).is_err());
            assert!(EcPrivateKey::from_scalar(curve, &[0; 70]).is_err());
            assert!(EcPrivateKey::from_scalar(curve, &vec![0xff; curve.scalar_len()]).is_err());
            assert!(EcPrivateKey::from_scalar(curve, &vec![1; curve.scalar_len() + 1]).is_err());
        }
    }

    #[test]
    fn public_key_parsing_rejects_garbage() {
        for curve in Curve::ALL {
            let key = EcPrivateKey::generate(curve).unwrap();
            let good = key.public_key().as_bytes().to_vec();
            EcPublicKey::from_sec1(curve, &good).unwrap();
            for n in 0..good.len() {
                assert!(EcPublicKey::from_sec1(curve, &good[..n]).is_err());
            }
            let mut off_curve = good.clone();
            *off_curve.last_mut().unwrap() ^= 1;
            assert!(EcPublicKey::from_sec1(curve, &off_curve).is_err());
            let mut compressed = vec![0x02 | (good[good.len() - 1] & 1)];
            compressed.extend_from_slice(&good[1..=curve.scalar_len()]);
            assert!(EcPublicKey::from_sec1(curve, &compressed).is_err());
            let mut wrong_tag = good.clone();
            wrong_tag[0] = 0x06;
            assert!(EcPublicKey::from_sec1(curve, &wrong_tag).is_err());
            assert!(EcPublicKey::from_sec1(curve, &vec![0; curve.point_len()]).is_err());
            for other in Curve::ALL {
                if other != curve {
                    assert!(EcPublicKey::from_sec1(other, &good).is_err());
                }
            }

            let spki = key.public_key().to_spki_der().unwrap();
            assert_eq!(
                &EcPublicKey::from_spki_der(&spki).unwrap(),
                key.public_key()
            );
            for n in 0..spki.len() {
                assert!(EcPublicKey::from_spki_der(&spki[..n]).is_err());
            }
            assert!(EcPublicKey::from_spki_der(&good).is_err());
            let shown = format!("{:?}", key.public_key());
            assert!(shown.starts_with(&format!("EcPublicKey({curve}, ")));
            assert!(format!("{key:?}").starts_with("EcPrivateKey { public: EcPublicKey("));
        }
    }

    #[test]
    fn spki_matches_the_p384_crate() {
        use p384::pkcs8::DecodePublicKey;
        let key = EcPrivateKey::generate(Curve::P384).unwrap();
        let spki = key.public_key().to_spki_der().unwrap();
        let parsed = p384::PublicKey::from_public_key_der(&spki).unwrap();
        assert_eq!(parsed.to_sec1_bytes().as_ref(), key.public_key().as_bytes());
    }

    #[test]
    fn ecdh_agrees_and_rejects_bad_points() {
        for curve in Curve::ALL {
            let a = EcPrivateKey::generate(curve).unwrap();
            let b = EcPrivateKey::generate(curve).unwrap();
            let ab = a.ecdh(b.public_key().as_bytes()).unwrap();
            let ba = b.ecdh(a.public_key().as_bytes()).unwrap();
            assert_eq!(ab.len(), curve.scalar_len());
            assert!(ab.ct_eq(&ba));
            let c = EcPrivateKey::generate(curve).unwrap();
            assert!(!ab.ct_eq(&a.ecdh(c.public_key().as_bytes()).unwrap()));
            let mut bad = b.public_key().as_bytes().to_vec();
            bad[5] ^= 1;
            assert!(matches!(a.ecdh(&bad), Err(CryptoError::InvalidKey(_))));
            assert!(a.ecdh(&[]).is_err());
            assert!(a.ecdh(&[4]).is_err());
            for other in Curve::ALL {
                if other != curve {
                    let o = EcPrivateKey::generate(other).unwrap();
                    assert!(a.ecdh(o.public_key().as_bytes()).is_err());
                }
            }
        }
    }

    /// ECDH against RustCrypto p384: `x(d_theirs * Q_ours)` is our shared secret.
    #[test]
    fn ecdh_matches_the_p384_crate() {
        use p384::elliptic_curve::sec1::ToSec1Point;
        let ours = EcPrivateKey::generate(Curve::P384).unwrap();
        let theirs = p384::SecretKey::from_slice(&[0x17; 48]).unwrap();
        let their_point = theirs.public_key().to_sec1_point(false);
        let ours_secret = ours.ecdh(their_point.as_bytes()).unwrap();
        let our_public = p384::PublicKey::from_sec1_bytes(ours.public_key().as_bytes()).unwrap();
        let shared = (our_public.to_projective() * *theirs.to_nonzero_scalar()).to_affine();
        let shared = shared.to_sec1_point(false);
        assert_eq!(ours_secret.expose_secret(), shared.x().unwrap().as_slice());
    }

    #[test]
    fn pairwise_check_catches_a_mismatched_public_key() {
        let key = EcPrivateKey::generate(Curve::P256).unwrap();
        let other = EcPrivateKey::generate(Curve::P256).unwrap();
        let broken = EcPrivateKey {
            public: other.public.clone(),
            ..key
        };
        assert_eq!(
            broken.pairwise_check(),
            Err(CryptoError::PairwiseConsistency)
        );
        other.pairwise_check().unwrap();
    }
}
