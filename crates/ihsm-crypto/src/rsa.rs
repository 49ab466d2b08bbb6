//! RSA (FIPS 186-5, RFC 8017): PKCS#1 v1.5 and PSS signatures, OAEP encryption, and
//! the PKCS#11 RSA-AES key wrap, through aws-lc-rs.
//!
//! Key sizes: 2048, 3072 and 4096 bits are generated; aws-lc accepts keys of 2048
//! to 8192 bits on import. Hashes: SHA-256, SHA-384 and SHA-512 everywhere; SHA-1
//! also for verifying PKCS#1 v1.5 signatures and for OAEP (legacy inputs). PSS uses
//! MGF1 with the message hash and a salt as long as the hash; OAEP uses MGF1 with
//! its own hash.
//!
//! PKCS#1 v1.5 signing of caller-formatted data (PKCS#11 `CKM_RSA_PKCS`: a
//! DigestInfo of any hash, or anything else up to `k - 11` bytes), and signing
//! with SHA-1 or SHA-224 digests, go to aws-lc itself (`raw`: `RSA_sign_raw`,
//! `RSA_sign_pss_mgf1`), which aws-lc-rs does not expose; aws-lc does the
//! padding and the arithmetic there as everywhere else. The hash-and-sign
//! functions that take a message ([`RsaPrivateKey::sign_pkcs1`],
//! [`RsaPrivateKey::sign_pss`]) still refuse SHA-1 and SHA-224: a legacy
//! signature is made only from a digest the caller computed, deliberately.
//!
//! Gaps left, returned as [`CryptoError::Unsupported`]: PSS with other salt
//! lengths or MGF1 hashes, SHA-3 with RSA, and SHA-224 for OAEP.

use core::fmt;

use aws_lc_rs::digest::Digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    self, KeySize, OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents,
};
use aws_lc_rs::signature::{self, KeyPair, RsaEncoding, RsaParameters, UnparsedPublicKey};
use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode, Sequence};
use spki::SubjectPublicKeyInfoRef;
use zeroize::Zeroizing;

use crate::aes::{self, AesKey};
use crate::hash::{self, HashAlg};
use crate::{CryptoError, ExposeSecret, ExposeSecretMut, SecretVec};

/// The RSA calls aws-lc-rs does not expose, in aws-lc itself (the one crate of
/// ihsm's cryptography with `unsafe` code: this crate forbids it).
use ihsm_awslc as raw;

impl From<raw::RawError> for CryptoError {
    fn from(e: raw::RawError) -> Self {
        match e {
            raw::RawError::InvalidKey(what) => Self::InvalidKey(what),
            raw::RawError::WrongLength {
                what,
                expected,
                actual,
            } => Self::WrongLength {
                what,
                expected,
                actual,
            },
            raw::RawError::Internal(what) => Self::Internal(what),
            raw::RawError::VerificationFailed => Self::VerificationFailed,
        }
    }
}

/// The digest `hash` names, for the raw calls (SHA-1 and SHA-2 only).
fn raw_digest(hash: HashAlg) -> Result<raw::Digest, CryptoError> {
    match hash {
        HashAlg::Sha1 => Ok(raw::Digest::Sha1),
        HashAlg::Sha224 => Ok(raw::Digest::Sha224),
        HashAlg::Sha256 => Ok(raw::Digest::Sha256),
        HashAlg::Sha384 => Ok(raw::Digest::Sha384),
        HashAlg::Sha512 => Ok(raw::Digest::Sha512),
        _ => Err(CryptoError::Unsupported("RSA with SHA-3")),
    }
}

/// rsaEncryption (RFC 8017 A.1).
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The smallest modulus accepted, in bits.
pub const MIN_BITS: usize = 2048;
/// The largest modulus accepted, in bits.
pub const MAX_BITS: usize = 8192;

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
#[derive(Sequence)]
struct RsaPublicKeyAsn1<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

fn pkcs1_params(hash: HashAlg) -> Result<&'static RsaParameters, CryptoError> {
    match hash {
        HashAlg::Sha1 => Ok(&signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY),
        HashAlg::Sha256 => Ok(&signature::RSA_PKCS1_2048_8192_SHA256),
        HashAlg::Sha384 => Ok(&signature::RSA_PKCS1_2048_8192_SHA384),
        HashAlg::Sha512 => Ok(&signature::RSA_PKCS1_2048_8192_SHA512),
        _ => Err(CryptoError::Unsupported(
            "RSA PKCS#1 v1.5 verification hash (SHA-1, SHA-256, SHA-384 or SHA-512)",
        )),
    }
}

fn pss_params(hash: HashAlg) -> Result<&'static RsaParameters, CryptoError> {
    match hash {
        HashAlg::Sha256 => Ok(&signature::RSA_PSS_2048_8192_SHA256),
        HashAlg::Sha384 => Ok(&signature::RSA_PSS_2048_8192_SHA384),
        HashAlg::Sha512 => Ok(&signature::RSA_PSS_2048_8192_SHA512),
        _ => Err(CryptoError::Unsupported(
            "RSA-PSS hash (SHA-256, SHA-384 or SHA-512)",
        )),
    }
}

fn pkcs1_encoding(hash: HashAlg) -> Result<&'static dyn RsaEncoding, CryptoError> {
    match hash {
        HashAlg::Sha256 => Ok(&signature::RSA_PKCS1_SHA256),
        HashAlg::Sha384 => Ok(&signature::RSA_PKCS1_SHA384),
        HashAlg::Sha512 => Ok(&signature::RSA_PKCS1_SHA512),
        _ => Err(CryptoError::Unsupported(
            "RSA PKCS#1 v1.5 signing hash (SHA-256, SHA-384 or SHA-512)",
        )),
    }
}

fn pss_encoding(hash: HashAlg) -> Result<&'static dyn RsaEncoding, CryptoError> {
    match hash {
        HashAlg::Sha256 => Ok(&signature::RSA_PSS_SHA256),
        HashAlg::Sha384 => Ok(&signature::RSA_PSS_SHA384),
        HashAlg::Sha512 => Ok(&signature::RSA_PSS_SHA512),
        _ => Err(CryptoError::Unsupported(
            "RSA-PSS hash (SHA-256, SHA-384 or SHA-512)",
        )),
    }
}

fn oaep_alg(hash: HashAlg) -> Result<&'static OaepAlgorithm, CryptoError> {
    match hash {
        HashAlg::Sha1 => Ok(&rsa::OAEP_SHA1_MGF1SHA1),
        HashAlg::Sha256 => Ok(&rsa::OAEP_SHA256_MGF1SHA256),
        HashAlg::Sha384 => Ok(&rsa::OAEP_SHA384_MGF1SHA384),
        HashAlg::Sha512 => Ok(&rsa::OAEP_SHA512_MGF1SHA512),
        _ => Err(CryptoError::Unsupported(
            "RSA-OAEP hash (SHA-1, SHA-256, SHA-384 or SHA-512)",
        )),
    }
}

/// The DER prefixes of `DigestInfo` (RFC 8017 §9.2, note 1), one per hash; the
/// digest follows.
const DIGEST_INFO_PREFIXES: [(HashAlg, &[u8]); 5] = [
    (
        HashAlg::Sha1,
        &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
    ),
    (
        HashAlg::Sha224,
        &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
    ),
    (
        HashAlg::Sha256,
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
    ),
    (
        HashAlg::Sha384,
        &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
    ),
    (
        HashAlg::Sha512,
        &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    ),
];

/// Parses a DER `DigestInfo` for SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512 with
/// NULL parameters, the encoding RFC 8017 specifies. DER is canonical, so an exact
/// prefix and length match is a complete parse.
///
/// # Errors
/// [`CryptoError::InvalidInput`] for anything else.
pub fn parse_digest_info(digest_info: &[u8]) -> Result<(HashAlg, &[u8]), CryptoError> {
    DIGEST_INFO_PREFIXES
        .iter()
        .find_map(|(hash, prefix)| {
            let digest = digest_info.strip_prefix(*prefix)?;
            (digest.len() == hash.output_len()).then_some((*hash, digest))
        })
        .ok_or(CryptoError::InvalidInput("unsupported DigestInfo"))
}

/// An RSA public key of 2048 to 8192 bits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RsaPublicKey {
    /// `RSAPublicKey` DER (RFC 8017 A.1.1).
    pkcs1: Vec<u8>,
    /// SubjectPublicKeyInfo DER.
    spki: Vec<u8>,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
    bits: usize,
}

impl RsaPublicKey {
    fn from_aws(key: &rsa::PublicKey) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("RSA public");
        let pkcs1 = key.as_ref().to_vec();
        let spki = key.as_der().map_err(|_| bad)?.as_ref().to_vec();
        let parsed = RsaPublicKeyAsn1::from_der(&pkcs1).map_err(|_| bad)?;
        let modulus = parsed.modulus.as_bytes().to_vec();
        let exponent = parsed.public_exponent.as_bytes().to_vec();
        let first = *modulus.first().ok_or(bad)?;
        let bits = modulus.len() * 8 - first.leading_zeros() as usize;
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(bad);
        }
        Ok(Self {
            pkcs1,
            spki,
            modulus,
            exponent,
            bits,
        })
    }

    /// Parses a SubjectPublicKeyInfo with an `rsaEncryption` key, whose parameters
    /// must be NULL (RFC 3279 §2.3.1; aws-lc would take any value there).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything else, or a modulus outside
    /// 2048..=8192 bits.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("RSA SubjectPublicKeyInfo");
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| bad)?;
        if spki.algorithm.oid != OID_RSA_ENCRYPTION
            || !spki.algorithm.parameters.is_some_and(|p| p.is_null())
        {
            return Err(bad);
        }
        let key = rsa::PublicKey::from_der(der).map_err(|_| bad)?;
        Self::from_aws(&key)
    }

    /// Builds the key from its big-endian modulus and public exponent (PKCS#11
    /// `CKA_MODULUS`, `CKA_PUBLIC_EXPONENT`); leading zero bytes are ignored.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for an invalid key or one outside 2048..=8192 bits.
    pub fn from_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("RSA public components");
        let strip = |b: &[u8]| -> Vec<u8> {
            let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b.get(start..).unwrap_or_default().to_vec()
        };
        let components = PublicKeyComponents {
            n: strip(modulus),
            e: strip(exponent),
        };
        let der = components.as_der().map_err(|_| bad)?;
        Self::from_spki_der(der.as_ref())
    }

    /// The modulus, big-endian, without leading zeros.
    #[must_use]
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// The public exponent, big-endian, without leading zeros.
    #[must_use]
    pub fn exponent(&self) -> &[u8] {
        &self.exponent
    }

    /// The modulus length in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The modulus length in bytes: the length of every signature and ciphertext.
    #[must_use]
    pub fn modulus_len(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// The SubjectPublicKeyInfo DER encoding.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a re-encoding.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, CryptoError> {
        Ok(self.spki.clone())
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature over `msg` (SHA-1 accepted for
    /// legacy signatures).
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`]; [`CryptoError::Unsupported`] for other
    /// hashes.
    pub fn verify_pkcs1(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(pkcs1_params(hash)?, &self.pkcs1)
            .verify(msg, sig)
            .map_err(|_| CryptoError::VerificationFailed)
    }

    /// Verifies an RSASSA-PSS signature over `msg` (MGF1 with `hash`, salt of the
    /// hash length).
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`]; [`CryptoError::Unsupported`] for other
    /// hashes.
    pub fn verify_pss(&self, hash: HashAlg, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(pss_params(hash)?, &self.pkcs1)
            .verify(msg, sig)
            .map_err(|_| CryptoError::VerificationFailed)
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature over a digest computed elsewhere.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`], or [`CryptoError::WrongLength`] for a
    /// digest that is not of `hash`'s length.
    pub fn verify_pkcs1_digest(
        &self,
        hash: HashAlg,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        if hash == HashAlg::Sha224 {
            import_digest(hash, digest)?;
            let mut di = digest_info_prefix(hash)?.to_vec();
            di.extend_from_slice(digest);
            return self.verify_pkcs1_raw(&di, sig);
        }
        let params = pkcs1_params(hash)?;
        let d = import_digest(hash, digest)?;
        UnparsedPublicKey::new(params, &self.pkcs1)
            .verify_digest(&d, sig)
            .map_err(|_| CryptoError::VerificationFailed)
    }

    /// PKCS#11 `CKM_RSA_PKCS` verification of caller-formatted data: `sig` must
    /// be the RSASSA-PKCS1-v1_5 signature of exactly `data` (see
    /// [`RsaPrivateKey::sign_pkcs1_raw`]).
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`].
    pub fn verify_pkcs1_raw(&self, data: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        raw::RawRsa::from_public_pkcs1(&self.pkcs1)?
            .verify_pkcs1(data, sig)
            .map_err(Into::into)
    }

    /// PKCS#11 `CKM_RSA_PKCS` verification: `digest_info` is the DER `DigestInfo`
    /// the signature must carry.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] for an unsupported DigestInfo,
    /// [`CryptoError::VerificationFailed`].
    pub fn verify_pkcs1_digest_info(
        &self,
        digest_info: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        let (hash, digest) = parse_digest_info(digest_info)?;
        self.verify_pkcs1_digest(hash, digest, sig)
    }

    /// Verifies an RSASSA-PSS signature over a digest computed elsewhere.
    ///
    /// # Errors
    /// [`CryptoError::VerificationFailed`], or [`CryptoError::WrongLength`] for a
    /// digest that is not of `hash`'s length.
    pub fn verify_pss_digest(
        &self,
        hash: HashAlg,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        if hash.is_legacy() {
            return raw::RawRsa::from_public_pkcs1(&self.pkcs1)?
                .verify_pss(raw_digest(hash)?, digest, sig)
                .map_err(Into::into);
        }
        let params = pss_params(hash)?;
        let d = import_digest(hash, digest)?;
        UnparsedPublicKey::new(params, &self.pkcs1)
            .verify_digest(&d, sig)
            .map_err(|_| CryptoError::VerificationFailed)
    }

    /// RSAES-OAEP encryption with MGF1(`hash`) and `label` (may be empty).
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for a plaintext over `k - 2·hLen - 2` bytes;
    /// [`CryptoError::Unsupported`] for SHA-224 or SHA-3.
    pub fn oaep_encrypt(
        &self,
        hash: HashAlg,
        label: &[u8],
        pt: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let alg = oaep_alg(hash)?;
        let k = self.modulus_len();
        let max = k.saturating_sub(2 * hash.output_len() + 2);
        if pt.len() > max {
            return Err(CryptoError::WrongLength {
                what: "RSA-OAEP plaintext (at most k - 2 hLen - 2 bytes)",
                expected: max,
                actual: pt.len(),
            });
        }
        let key = PublicEncryptingKey::from_der(&self.spki)
            .map_err(|_| CryptoError::InvalidKey("RSA public"))?;
        let key =
            OaepPublicEncryptingKey::new(key).map_err(|_| CryptoError::InvalidKey("RSA public"))?;
        let mut out = vec![0u8; k];
        let n = key
            .encrypt(alg, pt, &mut out, (!label.is_empty()).then_some(label))
            .map_err(|_| CryptoError::Internal("RSA-OAEP encryption"))?
            .len();
        out.truncate(n);
        Ok(out)
    }
}

/// The DER prefix of a `DigestInfo` of `hash`.
fn digest_info_prefix(hash: HashAlg) -> Result<&'static [u8], CryptoError> {
    DIGEST_INFO_PREFIXES
        .iter()
        .find(|(h, _)| *h == hash)
        .map(|(_, p)| *p)
        .ok_or(CryptoError::Unsupported("DigestInfo for SHA-3"))
}

fn import_digest(hash: HashAlg, digest: &[u8]) -> Result<Digest, CryptoError> {
    if digest.len() != hash.output_len() {
        return Err(CryptoError::WrongLength {
            what: "digest",
            expected: hash.output_len(),
            actual: digest.len(),
        });
    }
    Digest::import_less_safe(digest, hash.aws()).map_err(|_| CryptoError::Internal("digest import"))
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RsaPublicKey({} bits, n={})",
            self.bits,
            crate::hex_prefix(&self.modulus)
        )
    }
}

/// An RSA private key inside aws-lc. Not `Clone`; `Debug` shows only the public
/// key.
pub struct RsaPrivateKey {
    signing: rsa::KeyPair,
    decrypting: PrivateDecryptingKey,
    public: RsaPublicKey,
    /// The same key as aws-lc's own `RSA` object, for the operations aws-lc-rs
    /// does not offer; made at its first use.
    raw: std::sync::OnceLock<raw::RawRsa>,
}

impl RsaPrivateKey {
    /// A fresh key of 2048, 3072 or 4096 bits, returned only after a
    /// pairwise-consistency test (sign/verify and encrypt/decrypt).
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] for another size;
    /// [`CryptoError::PairwiseConsistency`] if the test fails;
    /// [`CryptoError::Rng`] if the random source fails its health test;
    /// [`CryptoError::Internal`] if generation fails.
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => {
                return Err(CryptoError::InvalidInput(
                    "RSA key size must be 2048, 3072 or 4096 bits",
                ));
            }
        };
        crate::rand::check_health()?;
        let signing = rsa::KeyPair::generate(size)
            .map_err(|_| CryptoError::Internal("RSA key generation"))?;
        let pkcs8 = Self::pkcs8_of(&signing)?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .map_err(|_| CryptoError::Internal("RSA key generation"))?;
        let key = Self::wrap(signing, decrypting)?;
        key.pairwise_check()?;
        Ok(key)
    }

    /// Reads a PKCS#8 RSA private key of 2048 to 8192 bits (aws-lc checks its
    /// consistency).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for anything else.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("RSA private (PKCS#8)");
        let signing = rsa::KeyPair::from_pkcs8(der).map_err(|_| bad)?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| bad)?;
        Self::wrap(signing, decrypting)
    }

    fn wrap(signing: rsa::KeyPair, decrypting: PrivateDecryptingKey) -> Result<Self, CryptoError> {
        let public = RsaPublicKey::from_aws(signing.public_key())?;
        if signing.public_modulus_len() != public.modulus_len() {
            return Err(CryptoError::InvalidKey("RSA private"));
        }
        Ok(Self {
            signing,
            decrypting,
            public,
            raw: std::sync::OnceLock::new(),
        })
    }

    /// The key as aws-lc's `RSA` object (made from its PKCS#8 the first time).
    fn raw(&self) -> Result<&raw::RawRsa, CryptoError> {
        if let Some(r) = self.raw.get() {
            return Ok(r);
        }
        let made = raw::RawRsa::from_pkcs8(&self.to_pkcs8()?)?;
        if made.size() != self.signing.public_modulus_len() {
            return Err(CryptoError::Internal("RSA key parsed twice differs"));
        }
        // Another thread may have made it first: either is the same key.
        let _ = self.raw.set(made);
        self.raw
            .get()
            .ok_or(CryptoError::Internal("RSA key object"))
    }

    fn pkcs8_of(signing: &rsa::KeyPair) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let der = signing
            .as_der()
            .map_err(|_| CryptoError::Internal("PKCS#8 encoding"))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    fn pairwise_check(&self) -> Result<(), CryptoError> {
        const MSG: &[u8] = b"ihsm RSA pairwise-consistency test";
        let fail = |_| CryptoError::PairwiseConsistency;
        let sig = self.sign_pkcs1(HashAlg::Sha256, MSG).map_err(fail)?;
        self.public
            .verify_pkcs1(HashAlg::Sha256, MSG, &sig)
            .map_err(fail)?;
        let ct = self
            .public
            .oaep_encrypt(HashAlg::Sha256, b"", MSG)
            .map_err(fail)?;
        let pt = self.oaep_decrypt(HashAlg::Sha256, b"", &ct).map_err(fail)?;
        if pt.expose_secret() != MSG {
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

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// The modulus length in bits.
    #[must_use]
    pub fn bits(&self) -> usize {
        self.public.bits()
    }

    fn signature_buffer(&self) -> Vec<u8> {
        vec![0u8; self.signing.public_modulus_len()]
    }

    /// RSASSA-PKCS1-v1_5 over `msg` hashed with `hash`.
    ///
    /// # Errors
    /// [`CryptoError::Unsupported`] for a hash other than SHA-256/384/512;
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign_pkcs1(&self, hash: HashAlg, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let encoding = pkcs1_encoding(hash)?;
        let mut sig = self.signature_buffer();
        self.signing
            .sign(encoding, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| CryptoError::Internal("RSA PKCS#1 v1.5 signing"))?;
        Ok(sig)
    }

    /// RSASSA-PSS over `msg` hashed with `hash` (MGF1 with `hash`, salt of the hash
    /// length).
    ///
    /// # Errors
    /// [`CryptoError::Unsupported`] for a hash other than SHA-256/384/512;
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign_pss(&self, hash: HashAlg, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let encoding = pss_encoding(hash)?;
        let mut sig = self.signature_buffer();
        self.signing
            .sign(encoding, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| CryptoError::Internal("RSA-PSS signing"))?;
        Ok(sig)
    }

    /// PKCS#11 `CKM_RSA_PKCS` signing: RSASSA-PKCS1-v1_5 of `data` as the caller
    /// formatted it (RFC 8017 §9.2's `T`: a DER DigestInfo of any hash, the
    /// 36-byte MD5 and SHA-1 concatenation of TLS 1.0, or anything else), padded
    /// `00 01 FF .. FF 00 || data` by aws-lc. At most `k - 11` bytes (245 for
    /// RSA-2048).
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for longer data; [`CryptoError::Internal`] if
    /// signing fails.
    pub fn sign_pkcs1_raw(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.raw()?.sign_pkcs1(data)?)
    }

    /// The most [`RsaPrivateKey::sign_pkcs1_raw`] signs: the modulus length less
    /// the 11 bytes of padding.
    #[must_use]
    pub fn max_pkcs1_raw_len(&self) -> usize {
        self.signing.public_modulus_len().saturating_sub(11)
    }

    /// `CKM_RSA_PKCS` signing of a DER `DigestInfo` only: it is parsed (so that
    /// anything else is refused), then signed as it is.
    ///
    /// # Errors
    /// [`CryptoError::InvalidInput`] ("unsupported DigestInfo") unless `digest_info`
    /// is a DigestInfo for SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512;
    /// [`CryptoError::Internal`] if signing fails.
    pub fn sign_pkcs1_digest_info(&self, digest_info: &[u8]) -> Result<Vec<u8>, CryptoError> {
        parse_digest_info(digest_info)?;
        self.sign_pkcs1_raw(digest_info)
    }

    /// RSASSA-PKCS1-v1_5 over a digest computed elsewhere (multi-part
    /// `CKM_SHA*_RSA_PKCS`, and SHA-1 for legacy callers).
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for a digest that is not of `hash`'s length;
    /// [`CryptoError::Unsupported`] for SHA-3.
    pub fn sign_pkcs1_digest(&self, hash: HashAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if hash.is_legacy() {
            // aws-lc-rs has no signing encoding of these: the DigestInfo, signed raw.
            import_digest(hash, digest)?;
            let mut di = digest_info_prefix(hash)?.to_vec();
            di.extend_from_slice(digest);
            return self.sign_pkcs1_raw(&di);
        }
        let encoding = pkcs1_encoding(hash)?;
        let d = import_digest(hash, digest)?;
        let mut sig = self.signature_buffer();
        self.signing
            .sign_digest(encoding, &d, &mut sig)
            .map_err(|_| CryptoError::Internal("RSA PKCS#1 v1.5 signing"))?;
        Ok(sig)
    }

    /// RSASSA-PSS over a digest computed elsewhere (PKCS#11 `CKM_RSA_PKCS_PSS`,
    /// multi-part `CKM_SHA*_RSA_PKCS_PSS`, and SHA-1 for legacy callers).
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] for a digest that is not of `hash`'s length;
    /// [`CryptoError::Unsupported`] for SHA-3.
    pub fn sign_pss_digest(&self, hash: HashAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if hash.is_legacy() {
            return Ok(self.raw()?.sign_pss(raw_digest(hash)?, digest)?);
        }
        let encoding = pss_encoding(hash)?;
        let d = import_digest(hash, digest)?;
        let mut sig = self.signature_buffer();
        self.signing
            .sign_digest(encoding, &d, &mut sig)
            .map_err(|_| CryptoError::Internal("RSA-PSS signing"))?;
        Ok(sig)
    }

    /// RSAES-OAEP decryption with MGF1(`hash`) and `label` (aws-lc-rs supports
    /// labels); the plaintext lands in locked memory.
    ///
    /// # Errors
    /// [`CryptoError::WrongLength`] unless `ct` is as long as the modulus;
    /// [`CryptoError::VerificationFailed`] for any decryption or padding failure
    /// (one error, so as not to become a padding oracle);
    /// [`CryptoError::Unsupported`] for SHA-224 or SHA-3.
    pub fn oaep_decrypt(
        &self,
        hash: HashAlg,
        label: &[u8],
        ct: &[u8],
    ) -> Result<SecretVec, CryptoError> {
        let alg = oaep_alg(hash)?;
        let k = self.public.modulus_len();
        if ct.len() != k {
            return Err(CryptoError::WrongLength {
                what: "RSA-OAEP ciphertext",
                expected: k,
                actual: ct.len(),
            });
        }
        let key = OaepPrivateDecryptingKey::new(self.decrypting.clone())
            .map_err(|_| CryptoError::Internal("RSA-OAEP key"))?;
        let mut buf = SecretVec::zeroed(k)?;
        let plain = key
            .decrypt(
                alg,
                ct,
                buf.expose_secret_mut(),
                (!label.is_empty()).then_some(label),
            )
            .map_err(|_| CryptoError::VerificationFailed)?;
        SecretVec::from_slice(plain)
    }
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaPrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn aes_key_len(aes_bits: usize) -> Result<usize, CryptoError> {
    match aes_bits {
        128 | 192 | 256 => Ok(aes_bits / 8),
        _ => Err(CryptoError::InvalidInput(
            "RSA-AES key wrap AES size must be 128, 192 or 256 bits",
        )),
    }
}

/// PKCS#11 `CKM_RSA_AES_KEY_WRAP` (PKCS#11 3.x §2.1.21): a fresh temporary AES key
/// of `aes_bits` wraps `key_data` with KWP (RFC 5649), and is itself encrypted under
/// `public` with OAEP(`oaep_hash`, empty label). The result is
/// `OAEP(temporary key) || KWP(temporary key, key_data)`; the temporary key is wiped.
///
/// # Errors
/// [`CryptoError::InvalidInput`] for an AES size other than 128/192/256;
/// [`CryptoError::Unsupported`] for AES-192 (aws-lc-rs key wrap) or an OAEP hash it
/// lacks; errors of [`aes::key_wrap_pad`] and [`RsaPublicKey::oaep_encrypt`].
pub fn rsa_aes_wrap(
    public: &RsaPublicKey,
    oaep_hash: HashAlg,
    aes_bits: usize,
    key_data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    aes_key_len(aes_bits)?;
    oaep_alg(oaep_hash)?;
    let temporary = AesKey::generate(aes_bits)?;
    let wrapped = aes::key_wrap_pad(&temporary, key_data)?;
    let mut out = public.oaep_encrypt(oaep_hash, b"", temporary.expose().expose_secret())?;
    drop(temporary);
    out.extend_from_slice(&wrapped);
    Ok(out)
}

/// Reverses [`rsa_aes_wrap`]: OAEP-decrypts the temporary AES key (which must be
/// `aes_bits` long), unwraps the key material with KWP, and wipes the temporary key.
///
/// # Errors
/// [`CryptoError::WrongLength`] for a blob shorter than the modulus plus one KWP
/// block; [`CryptoError::VerificationFailed`] when either layer fails to open;
/// otherwise as [`rsa_aes_wrap`].
pub fn rsa_aes_unwrap(
    private: &RsaPrivateKey,
    oaep_hash: HashAlg,
    aes_bits: usize,
    wrapped: &[u8],
) -> Result<SecretVec, CryptoError> {
    let aes_len = aes_key_len(aes_bits)?;
    let k = private.public_key().modulus_len();
    if wrapped.len() < k + 16 {
        return Err(CryptoError::WrongLength {
            what: "RSA-AES wrapped key",
            expected: k + 16,
            actual: wrapped.len(),
        });
    }
    let (oaep, kwp) = wrapped.split_at(k);
    let temporary = private.oaep_decrypt(oaep_hash, b"", oaep)?;
    if temporary.len() != aes_len {
        return Err(CryptoError::VerificationFailed);
    }
    let temporary = AesKey::from_bytes(temporary.expose_secret())?;
    aes::key_unwrap_pad(&temporary, kwp)
}

/// The digest of `msg` as a PKCS#1 `DigestInfo` (for tests and callers that build
/// `CKM_RSA_PKCS` input).
///
/// # Errors
/// [`CryptoError::Unsupported`] for SHA-3, which has no DigestInfo here.
pub fn digest_info(hash: HashAlg, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = digest_info_prefix(hash)?.to_vec();
    out.extend_from_slice(&hash::digest(hash, msg));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// One 2048-bit key for the whole module: generation takes a while.
    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::generate(2048).unwrap())
    }

    const HASHES: [HashAlg; 3] = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

    #[test]
    fn generate_reports_sizes_and_refuses_others() {
        let key = key();
        assert_eq!(key.bits(), 2048);
        assert_eq!(key.public_key().modulus().len(), 256);
        assert_eq!(key.public_key().exponent(), &[1, 0, 1]);
        for bad in [0, 1024, 2047, 2049, 8192] {
            assert!(matches!(
                RsaPrivateKey::generate(bad),
                Err(CryptoError::InvalidInput(_))
            ));
        }
        let shown = format!("{key:?}");
        assert!(shown.starts_with("RsaPrivateKey { public: RsaPublicKey(2048 bits, n="));
    }

    #[test]
    fn pkcs1_and_pss_sign_verify() {
        let key = key();
        let public = key.public_key();
        for hash in HASHES {
            let sig = key.sign_pkcs1(hash, b"msg").unwrap();
            assert_eq!(sig.len(), 256);
            public.verify_pkcs1(hash, b"msg", &sig).unwrap();
            assert!(public.verify_pkcs1(hash, b"msh", &sig).is_err());
            assert!(public.verify_pss(hash, b"msg", &sig).is_err());
            // PKCS#1 v1.5 is deterministic.
            assert_eq!(key.sign_pkcs1(hash, b"msg").unwrap(), sig);

            let sig = key.sign_pss(hash, b"msg").unwrap();
            public.verify_pss(hash, b"msg", &sig).unwrap();
            assert!(public.verify_pss(hash, b"msh", &sig).is_err());
            assert!(public.verify_pkcs1(hash, b"msg", &sig).is_err());
            let d = hash::digest(hash, b"msg");
            public.verify_pss_digest(hash, &d, &sig).unwrap();
            let sig = key.sign_pss_digest(hash, &d).unwrap();
            public.verify_pss(hash, b"msg", &sig).unwrap();
            assert!(key.sign_pss_digest(hash, &d[1..]).is_err());

            let mut bad = sig.clone();
            bad[100] ^= 1;
            assert_eq!(
                public.verify_pss(hash, b"msg", &bad),
                Err(CryptoError::VerificationFailed)
            );
            assert!(public.verify_pss(hash, b"msg", &sig[1..]).is_err());
            assert!(public.verify_pss(hash, b"msg", &[]).is_err());
        }
        for hash in [HashAlg::Sha1, HashAlg::Sha224, HashAlg::Sha3_256] {
            assert!(matches!(
                key.sign_pkcs1(hash, b"m"),
                Err(CryptoError::Unsupported(_))
            ));
            assert!(key.sign_pss(hash, b"m").is_err());
        }
    }

    /// PSS signatures verify in RustCrypto-free fashion: aws-lc's own PSS verifier
    /// with an explicit salt length equal to the hash length accepts them.
    #[test]
    fn pss_salt_is_the_hash_length() {
        use aws_lc_rs::rsa::RsaPssSaltLength;
        const SHA384_SALT48: RsaParameters =
            signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Custom(48));
        const SHA384_SALT32: RsaParameters =
            signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Custom(32));
        let sig = key().sign_pss(HashAlg::Sha384, b"m").unwrap();
        let pk = &key().public_key().pkcs1;
        UnparsedPublicKey::new(&SHA384_SALT48, pk)
            .verify(b"m", &sig)
            .unwrap();
        assert!(
            UnparsedPublicKey::new(&SHA384_SALT32, pk)
                .verify(b"m", &sig)
                .is_err()
        );
    }

    #[test]
    fn digest_info_signing_equals_message_signing() {
        let key = key();
        for hash in HASHES {
            let di = digest_info(hash, b"hello").unwrap();
            assert_eq!(parse_digest_info(&di).unwrap().0, hash);
            let sig = key.sign_pkcs1_digest_info(&di).unwrap();
            assert_eq!(sig, key.sign_pkcs1(hash, b"hello").unwrap());
            // Truncated, extended or edited DigestInfos are refused.
            for n in 0..di.len() {
                assert!(matches!(
                    key.sign_pkcs1_digest_info(&di[..n]),
                    Err(CryptoError::InvalidInput(_))
                ));
            }
            let mut longer = di.clone();
            longer.push(0);
            assert!(key.sign_pkcs1_digest_info(&longer).is_err());
            let mut edited = di.clone();
            edited[3] ^= 1;
            assert!(key.sign_pkcs1_digest_info(&edited).is_err());
        }
        // SHA-1 and SHA-224 DigestInfos sign too (raw, in aws-lc): a SHA-1 one
        // verifies under aws-lc-rs's own legacy SHA-1 verifier of the message.
        for hash in [HashAlg::Sha1, HashAlg::Sha224] {
            let di = digest_info(hash, b"hello").unwrap();
            assert_eq!(
                parse_digest_info(&di).unwrap(),
                (hash, &di[di.len() - hash.output_len()..])
            );
            let sig = key.sign_pkcs1_digest_info(&di).unwrap();
            key.public_key()
                .verify_pkcs1_digest_info(&di, &sig)
                .unwrap();
            if hash == HashAlg::Sha1 {
                key.public_key()
                    .verify_pkcs1(HashAlg::Sha1, b"hello", &sig)
                    .unwrap();
            }
        }
        assert!(digest_info(HashAlg::Sha3_256, b"x").is_err());
        assert!(key.sign_pkcs1_digest_info(&[0x30; 51]).is_err());
        assert!(key.sign_pkcs1_digest_info(&[]).is_err());
        // A bare digest (no DigestInfo) is not accepted.
        assert!(key.sign_pkcs1_digest_info(&[0; 32]).is_err());
    }

    #[test]
    fn pkcs1_digest_paths_agree_with_message_paths() {
        let key = key();
        let public = key.public_key();
        for hash in HASHES {
            let d = hash::digest(hash, b"multi-part");
            let sig = key.sign_pkcs1_digest(hash, &d).unwrap();
            assert_eq!(sig, key.sign_pkcs1(hash, b"multi-part").unwrap());
            public.verify_pkcs1_digest(hash, &d, &sig).unwrap();
            public.verify_pkcs1(hash, b"multi-part", &sig).unwrap();
            let di = digest_info(hash, b"multi-part").unwrap();
            public.verify_pkcs1_digest_info(&di, &sig).unwrap();
            assert_eq!(
                public.verify_pkcs1_digest(hash, &hash::digest(hash, b"other"), &sig),
                Err(CryptoError::VerificationFailed)
            );
            assert!(matches!(
                public.verify_pkcs1_digest(hash, &d[1..], &sig),
                Err(CryptoError::WrongLength { .. })
            ));
            assert!(key.sign_pkcs1_digest(hash, &d[1..]).is_err());
            assert!(matches!(
                public.verify_pkcs1_digest_info(&di[1..], &sig),
                Err(CryptoError::InvalidInput(_))
            ));
            let mut bad = sig.clone();
            bad[0] ^= 1;
            assert!(public.verify_pkcs1_digest_info(&di, &bad).is_err());
        }
        // SHA-1 from a digest (legacy callers; the message API refuses it).
        let d = hash::digest(HashAlg::Sha1, b"legacy");
        let sig = key.sign_pkcs1_digest(HashAlg::Sha1, &d).unwrap();
        public.verify_pkcs1(HashAlg::Sha1, b"legacy", &sig).unwrap();
        assert!(key.sign_pkcs1_digest(HashAlg::Sha1, &d[1..]).is_err());
        assert!(key.sign_pkcs1(HashAlg::Sha1, b"legacy").is_err());
        assert!(
            public
                .verify_pkcs1_digest_info(&digest_info(HashAlg::Sha224, b"x").unwrap(), &[0; 256])
                .is_err()
        );
    }

    #[test]
    fn oaep_roundtrips_with_labels_and_rejects_tampering() {
        let key = key();
        let public = key.public_key();
        for hash in [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            for label in [&b""[..], b"label"] {
                let max = 256 - 2 * hash.output_len() - 2;
                let pt = vec![0x5a; max];
                let ct = public.oaep_encrypt(hash, label, &pt).unwrap();
                assert_eq!(ct.len(), 256);
                let back = key.oaep_decrypt(hash, label, &ct).unwrap();
                assert_eq!(back.expose_secret(), pt.as_slice());
                assert!(matches!(
                    public.oaep_encrypt(hash, label, &vec![0; max + 1]),
                    Err(CryptoError::WrongLength { .. })
                ));
                let fail = Err(CryptoError::VerificationFailed);
                let mut bad = ct.clone();
                bad[200] ^= 1;
                assert_eq!(key.oaep_decrypt(hash, label, &bad).map(|_| ()), fail);
                assert_eq!(key.oaep_decrypt(hash, b"other", &ct).map(|_| ()), fail);
                assert!(key.oaep_decrypt(hash, label, &ct[1..]).is_err());
            }
            let empty = public.oaep_encrypt(hash, b"", b"").unwrap();
            assert!(key.oaep_decrypt(hash, b"", &empty).unwrap().is_empty());
        }
        let ct = public.oaep_encrypt(HashAlg::Sha256, b"", b"x").unwrap();
        assert!(key.oaep_decrypt(HashAlg::Sha384, b"", &ct).is_err());
        assert!(public.oaep_encrypt(HashAlg::Sha224, b"", b"x").is_err());
        assert!(key.oaep_decrypt(HashAlg::Sha3_256, b"", &ct).is_err());
    }

    #[test]
    fn public_key_encodings_roundtrip_and_reject_garbage() {
        let public = key().public_key();
        let spki = public.to_spki_der().unwrap();
        assert_eq!(&RsaPublicKey::from_spki_der(&spki).unwrap(), public);
        let again = RsaPublicKey::from_components(public.modulus(), public.exponent()).unwrap();
        assert_eq!(&again, public);
        let mut padded = vec![0, 0];
        padded.extend_from_slice(public.modulus());
        assert_eq!(
            &RsaPublicKey::from_components(&padded, &[0, 1, 0, 1]).unwrap(),
            public
        );
        for n in (0..spki.len()).step_by(7) {
            assert!(RsaPublicKey::from_spki_der(&spki[..n]).is_err());
        }
        // PKCS#1 RSAPublicKey is not an SPKI.
        assert!(RsaPublicKey::from_spki_der(&public.pkcs1).is_err());
        // The parameters are NULL (05 00 after the OID), nothing else: a property
        // test found another tag of length 0 accepted there.
        let null_at = spki.windows(2).position(|w| w == [0x05, 0x00]).unwrap();
        let mut other = spki.clone();
        other[null_at] = 0x7e;
        assert!(RsaPublicKey::from_spki_der(&other).is_err());
        let ec = crate::ec::EcPrivateKey::generate(crate::ec::Curve::P256).unwrap();
        assert!(RsaPublicKey::from_spki_der(&ec.public_key().to_spki_der().unwrap()).is_err());
        assert!(RsaPublicKey::from_components(&[], &[1, 0, 1]).is_err());
        assert!(RsaPublicKey::from_components(&public.modulus()[..128], &[1, 0, 1]).is_err());
        assert!(RsaPublicKey::from_components(public.modulus(), &[]).is_err());
        assert!(format!("{public:?}").starts_with("RsaPublicKey(2048 bits, n="));
    }

    #[test]
    fn pkcs8_roundtrip_and_garbage() {
        let key = key();
        let der = key.to_pkcs8().unwrap();
        let back = RsaPrivateKey::from_pkcs8(&der).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        for n in (0..der.len()).step_by(37) {
            assert!(RsaPrivateKey::from_pkcs8(&der[..n]).is_err());
        }
        assert!(RsaPrivateKey::from_pkcs8(&[]).is_err());
        assert!(RsaPrivateKey::from_pkcs8(b"garbage").is_err());
        let ec = crate::ec::EcPrivateKey::generate(crate::ec::Curve::P256).unwrap();
        assert!(RsaPrivateKey::from_pkcs8(&ec.to_pkcs8().unwrap()).is_err());
    }

    #[test]
    fn rsa_aes_wrap_roundtrip_and_failures() {
        let key = key();
        let data = [0x11u8; 40];
        for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
            for bits in [128, 256] {
                let wrapped = rsa_aes_wrap(key.public_key(), hash, bits, &data).unwrap();
                assert_eq!(wrapped.len(), 256 + 48);
                let back = rsa_aes_unwrap(key, hash, bits, &wrapped).unwrap();
                assert_eq!(back.expose_secret(), &data);
                // Wrong AES size, wrong hash, tampering in either half.
                let other_bits = if bits == 128 { 256 } else { 128 };
                assert!(rsa_aes_unwrap(key, hash, other_bits, &wrapped).is_err());
                let other_hash = if hash == HashAlg::Sha256 {
                    HashAlg::Sha512
                } else {
                    HashAlg::Sha256
                };
                assert!(rsa_aes_unwrap(key, other_hash, bits, &wrapped).is_err());
                for i in [10, 270] {
                    let mut bad = wrapped.clone();
                    bad[i] ^= 1;
                    assert_eq!(
                        rsa_aes_unwrap(key, hash, bits, &bad).unwrap_err(),
                        CryptoError::VerificationFailed
                    );
                }
                assert!(rsa_aes_unwrap(key, hash, bits, &wrapped[..256 + 15]).is_err());
            }
        }
        assert!(matches!(
            rsa_aes_wrap(key.public_key(), HashAlg::Sha256, 192, &data),
            Err(CryptoError::Unsupported(_))
        ));
        assert!(matches!(
            rsa_aes_wrap(key.public_key(), HashAlg::Sha256, 512, &data),
            Err(CryptoError::InvalidInput(_))
        ));
        assert!(rsa_aes_wrap(key.public_key(), HashAlg::Sha224, 128, &data).is_err());
        assert!(rsa_aes_unwrap(key, HashAlg::Sha256, 100, &[0; 300]).is_err());
    }

    #[test]
    fn pairwise_check_catches_a_mismatched_public_key() {
        let good = RsaPrivateKey::from_pkcs8(&key().to_pkcs8().unwrap()).unwrap();
        let other = RsaPrivateKey::generate(2048).unwrap();
        let broken = RsaPrivateKey {
            public: other.public.clone(),
            ..good
        };
        assert_eq!(
            broken.pairwise_check(),
            Err(CryptoError::PairwiseConsistency)
        );
        other.pairwise_check().unwrap();
    }

    /// `CKM_RSA_PKCS`: any data up to k - 11 bytes, signed as it is. A SHA-256
    /// DigestInfo signed raw is aws-lc-rs's own PKCS#1 v1.5 signature of the
    /// message, byte for byte (the scheme is deterministic).
    #[test]
    fn raw_pkcs1_signs_what_the_caller_formatted_up_to_k_minus_11() {
        let key = key();
        let public = key.public_key();
        assert_eq!(key.max_pkcs1_raw_len(), 245);
        for data in [&b""[..], b"x", &[0xa5; 36], &[7; 245]] {
            let sig = key.sign_pkcs1_raw(data).unwrap();
            assert_eq!(sig.len(), 256);
            public.verify_pkcs1_raw(data, &sig).unwrap();
            assert_eq!(key.sign_pkcs1_raw(data).unwrap(), sig);
            let mut other = data.to_vec();
            other.push(0);
            assert_eq!(
                public.verify_pkcs1_raw(&other, &sig),
                Err(CryptoError::VerificationFailed)
            );
            let mut bad = sig.clone();
            bad[17] ^= 1;
            assert_eq!(
                public.verify_pkcs1_raw(data, &bad),
                Err(CryptoError::VerificationFailed)
            );
            assert!(public.verify_pkcs1_raw(data, &sig[1..]).is_err());
        }
        assert!(matches!(
            key.sign_pkcs1_raw(&[7; 246]),
            Err(CryptoError::WrongLength {
                expected: 245,
                actual: 246,
                ..
            })
        ));
        for hash in HASHES {
            let di = digest_info(hash, b"tls").unwrap();
            let sig = key.sign_pkcs1_raw(&di).unwrap();
            assert_eq!(sig, key.sign_pkcs1(hash, b"tls").unwrap());
            public.verify_pkcs1(hash, b"tls", &sig).unwrap();
            public
                .verify_pkcs1_raw(&di, &key.sign_pkcs1(hash, b"tls").unwrap())
                .unwrap();
        }
    }

    /// PSS over SHA-1 and SHA-224 digests (raw, in aws-lc) verifies, and not
    /// with a wrong digest, hash or salt; the SHA-2 paths agree with aws-lc-rs.
    #[test]
    fn pss_over_legacy_digests_signs_and_verifies() {
        let key = key();
        let public = key.public_key();
        for hash in [HashAlg::Sha1, HashAlg::Sha224] {
            let d = hash::digest(hash, b"legacy");
            let sig = key.sign_pss_digest(hash, &d).unwrap();
            public.verify_pss_digest(hash, &d, &sig).unwrap();
            let e = hash::digest(hash, b"other");
            assert_eq!(
                public.verify_pss_digest(hash, &e, &sig),
                Err(CryptoError::VerificationFailed)
            );
            assert!(key.sign_pss_digest(hash, &d[1..]).is_err());
            assert!(public.verify_pss_digest(hash, &d[1..], &sig).is_err());
            assert!(key.sign_pss(hash, b"legacy").is_err());
        }
        let d = hash::digest(HashAlg::Sha1, b"legacy");
        let sig = key.sign_pss_digest(HashAlg::Sha1, &d).unwrap();
        let mut padded = vec![0; 12];
        padded.extend_from_slice(&d);
        assert!(
            public
                .verify_pss_digest(HashAlg::Sha256, &padded, &sig)
                .is_err()
        );
        // The raw object answers as aws-lc-rs does for SHA-256.
        let d = hash::digest(HashAlg::Sha256, b"m");
        let sig = key
            .raw()
            .unwrap()
            .sign_pss(raw::Digest::Sha256, &d)
            .unwrap();
        public.verify_pss(HashAlg::Sha256, b"m", &sig).unwrap();
        let sig = key.sign_pss(HashAlg::Sha256, b"m").unwrap();
        raw::RawRsa::from_public_pkcs1(&public.pkcs1)
            .unwrap()
            .verify_pss(raw::Digest::Sha256, &d, &sig)
            .unwrap();
    }
}
