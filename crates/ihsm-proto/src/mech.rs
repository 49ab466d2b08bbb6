//! Mechanisms with their parameters, as they cross the wire: what a client asks
//! the HSM to do. The core implements them; the list of what it implements, with
//! key sizes and flags, is the core's (`ihsm_core::mech::MECHANISMS`).

use cryptoki_sys as ck;
use serde::{Deserialize, Serialize};

/// Vendor-defined mechanism: TLS 1.3 HKDF-Expand-Label from a secret key object to
/// a new secret key object (RFC 8446 §7.1), so traffic secrets never leave the HSM.
pub const CKM_IHSM_TLS13_EXPAND_LABEL: u64 = ck::CKM_VENDOR_DEFINED | 0x4948_0001;
/// Vendor-defined mechanism: export a key as a masked blob (see `masked`).
pub const CKM_IHSM_MASKED_KEY: u64 = ck::CKM_VENDOR_DEFINED | 0x4948_0002;
/// Vendor-defined mechanism: a key attestation report (docs/attestation.md §2)
/// through `C_SignInit`/`C_Sign` on the key, the data being the report_data (at
/// most 128 bytes), the "signature" the report. Single-part only; no parameter.
pub const CKM_IHSM_KEY_REPORT: u64 = ck::CKM_VENDOR_DEFINED | 0x4948_0003;
/// Vendor-defined mechanism: secure key release (docs/attestation.md §5) through
/// `C_WrapKey`: the parameter is an EAR (the JWT's bytes), the wrapping-key handle
/// is not used; the key, which must carry a release policy the EAR satisfies, is
/// wrapped with `CKM_RSA_AES_KEY_WRAP` (AES-256, OAEP SHA-256) to the RSA key the
/// EAR attests.
pub const CKM_IHSM_KEY_RELEASE: u64 = ck::CKM_VENDOR_DEFINED | 0x4948_0004;

/// A hash usable in mechanisms (SHA-2 and SHA-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hash {
    /// SHA-1: for OAEP, in a DigestInfo, for verifying legacy signatures, and
    /// for making them in a partition whose policy allows SHA-1 signatures.
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
}

impl Hash {
    /// Output length in bytes.
    #[must_use]
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
            Self::Sha512 | Self::Sha3_512 => 64,
        }
    }

    /// The `CKM_SHA*` digest mechanism of this hash.
    #[must_use]
    pub fn ckm(self) -> u64 {
        match self {
            Self::Sha1 => ck::CKM_SHA_1,
            Self::Sha224 => ck::CKM_SHA224,
            Self::Sha256 => ck::CKM_SHA256,
            Self::Sha384 => ck::CKM_SHA384,
            Self::Sha512 => ck::CKM_SHA512,
            Self::Sha3_256 => ck::CKM_SHA3_256,
            Self::Sha3_384 => ck::CKM_SHA3_384,
            Self::Sha3_512 => ck::CKM_SHA3_512,
        }
    }

    /// From a `CKM_SHA*` mechanism (as PKCS#11 names hashes in parameters).
    #[must_use]
    pub fn from_ckm(m: u64) -> Option<Self> {
        [
            Self::Sha1,
            Self::Sha224,
            Self::Sha256,
            Self::Sha384,
            Self::Sha512,
            Self::Sha3_256,
            Self::Sha3_384,
            Self::Sha3_512,
        ]
        .into_iter()
        .find(|h| h.ckm() == m)
    }

    /// The `CKG_MGF1_*` value of this hash.
    #[must_use]
    pub fn mgf1(self) -> u64 {
        match self {
            Self::Sha1 => ck::CKG_MGF1_SHA1,
            Self::Sha224 => ck::CKG_MGF1_SHA224,
            Self::Sha256 => ck::CKG_MGF1_SHA256,
            Self::Sha384 => ck::CKG_MGF1_SHA384,
            Self::Sha512 => ck::CKG_MGF1_SHA512,
            Self::Sha3_256 => ck::CKG_MGF1_SHA3_256,
            Self::Sha3_384 => ck::CKG_MGF1_SHA3_384,
            Self::Sha3_512 => ck::CKG_MGF1_SHA3_512,
        }
    }
}

/// RSA-PSS parameters (`CK_RSA_PKCS_PSS_PARAMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PssParams {
    /// The message hash.
    pub hash: Hash,
    /// `CKG_MGF1_*`.
    pub mgf: u64,
    /// Salt length in bytes.
    pub salt_len: u64,
}

/// RSA-OAEP parameters (`CK_RSA_PKCS_OAEP_PARAMS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OaepParams {
    /// The hash.
    pub hash: Hash,
    /// `CKG_MGF1_*`.
    pub mgf: u64,
    /// The label (`CKZ_DATA_SPECIFIED` source data), possibly empty.
    #[serde(with = "serde_bytes")]
    pub label: Vec<u8>,
}

/// Where an AES-GCM IV comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GcmIv {
    /// The caller's IV.
    Supplied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The HSM draws a fresh 96-bit IV and returns it with the result.
    Generate,
}

/// HKDF salt (`CKF_HKDF_SALT_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HkdfSalt {
    /// No salt (a string of zeros).
    Null,
    /// Salt bytes.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// HKDF parameters (`CK_HKDF_PARAMS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HkdfParams {
    /// Run HKDF-Extract.
    pub extract: bool,
    /// Run HKDF-Expand.
    pub expand: bool,
    /// The PRF hash.
    pub hash: Hash,
    /// The salt (extract).
    pub salt: HkdfSalt,
    /// The info (expand).
    #[serde(with = "serde_bytes")]
    pub info: Vec<u8>,
}

/// A mechanism with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mechanism {
    /// `CKM_AES_KEY_GEN`.
    AesKeyGen,
    /// `CKM_GENERIC_SECRET_KEY_GEN`.
    GenericSecretKeyGen,
    /// `CKM_EC_KEY_PAIR_GEN` (P-256, P-384, P-521).
    EcKeyPairGen,
    /// `CKM_EC_EDWARDS_KEY_PAIR_GEN` (Ed25519).
    EcEdwardsKeyPairGen,
    /// `CKM_RSA_PKCS_KEY_PAIR_GEN` (2048, 3072, 4096).
    RsaKeyPairGen,
    /// `CKM_ML_DSA_KEY_PAIR_GEN`.
    MlDsaKeyPairGen,
    /// `CKM_ML_KEM_KEY_PAIR_GEN`.
    MlKemKeyPairGen,
    /// `CKM_ECDSA`: the input is a digest.
    Ecdsa,
    /// `CKM_ECDSA_SHA*`.
    EcdsaHash(Hash),
    /// `CKM_RSA_PKCS`: RSASSA-PKCS1-v1_5 of the data as the caller formatted it
    /// (a DigestInfo, usually), at most the modulus length less 11 bytes;
    /// encrypt/decrypt not offered.
    RsaPkcs,
    /// `CKM_SHA*_RSA_PKCS`.
    RsaPkcsHash(Hash),
    /// `CKM_RSA_PKCS_PSS`: the input is a digest.
    RsaPss(PssParams),
    /// `CKM_SHA*_RSA_PKCS_PSS`.
    RsaPssHash(PssParams),
    /// `CKM_EDDSA` (Ed25519, pure).
    EdDsa,
    /// `CKM_ML_DSA` (pure, empty context).
    MlDsa,
    /// `CKM_SHA*_HMAC`.
    Hmac(Hash),
    /// `CKM_AES_GCM`.
    AesGcm {
        /// The IV.
        iv: GcmIv,
        /// Additional authenticated data.
        #[serde(with = "serde_bytes")]
        aad: Vec<u8>,
        /// Tag length in bits.
        tag_bits: u64,
    },
    /// `CKM_AES_CBC` (no padding).
    AesCbc {
        /// 16-byte IV.
        #[serde(with = "serde_bytes")]
        iv: Vec<u8>,
    },
    /// `CKM_AES_CBC_PAD` (PKCS#7 padding).
    AesCbcPad {
        /// 16-byte IV.
        #[serde(with = "serde_bytes")]
        iv: Vec<u8>,
    },
    /// `CKM_AES_CTR`.
    AesCtr {
        /// The 16-byte initial counter block.
        #[serde(with = "serde_bytes")]
        iv: Vec<u8>,
        /// Counter bits (`ulCounterBits`); 128 is supported.
        counter_bits: u64,
    },
    /// `CKM_RSA_PKCS_OAEP`.
    RsaOaep(OaepParams),
    /// `CKM_AES_KEY_WRAP` (RFC 3394).
    AesKeyWrap,
    /// `CKM_AES_KEY_WRAP_KWP` (RFC 5649).
    AesKeyWrapPad,
    /// `CKM_RSA_AES_KEY_WRAP`.
    RsaAesKeyWrap {
        /// Temporary AES key length in bits.
        aes_bits: u64,
        /// OAEP parameters for the temporary key.
        oaep: OaepParams,
    },
    /// `CKM_ECDH1_DERIVE` with `CKD_NULL`.
    Ecdh {
        /// The peer's public point (raw or DER OCTET STRING).
        #[serde(with = "serde_bytes")]
        public_data: Vec<u8>,
    },
    /// `CKM_HKDF_DERIVE`.
    Hkdf(HkdfParams),
    /// `CKM_SP800_108_COUNTER_KDF` with an HMAC PRF and the counter (32-bit,
    /// big-endian) before the fixed input.
    Sp800108Counter {
        /// The PRF hash.
        hash: Hash,
        /// The fixed input data.
        #[serde(with = "serde_bytes")]
        fixed_input: Vec<u8>,
    },
    /// [`CKM_IHSM_TLS13_EXPAND_LABEL`].
    Tls13ExpandLabel {
        /// The hash of the cipher suite.
        hash: Hash,
        /// The label without the "tls13 " prefix.
        #[serde(with = "serde_bytes")]
        label: Vec<u8>,
        /// The context (a transcript hash, or empty).
        #[serde(with = "serde_bytes")]
        context: Vec<u8>,
    },
    /// `CKM_ML_KEM`.
    MlKem,
    /// `CKM_SHA*`.
    Digest(Hash),
    /// [`CKM_IHSM_KEY_REPORT`].
    KeyReport,
    /// [`CKM_IHSM_KEY_RELEASE`].
    KeyRelease {
        /// The EAR (a compact JWS), as bytes.
        #[serde(with = "serde_bytes")]
        ear: Vec<u8>,
    },
}

/// `CKF_*` capability flags of a mechanism.
pub mod flags {
    use cryptoki_sys as ck;
    /// Encrypt.
    pub const ENCRYPT: u64 = ck::CKF_ENCRYPT;
    /// Decrypt.
    pub const DECRYPT: u64 = ck::CKF_DECRYPT;
    /// Digest.
    pub const DIGEST: u64 = ck::CKF_DIGEST;
    /// Sign.
    pub const SIGN: u64 = ck::CKF_SIGN;
    /// Verify.
    pub const VERIFY: u64 = ck::CKF_VERIFY;
    /// Generate.
    pub const GENERATE: u64 = ck::CKF_GENERATE;
    /// Generate a key pair.
    pub const GENERATE_KEY_PAIR: u64 = ck::CKF_GENERATE_KEY_PAIR;
    /// Wrap.
    pub const WRAP: u64 = ck::CKF_WRAP;
    /// Unwrap.
    pub const UNWRAP: u64 = ck::CKF_UNWRAP;
    /// Derive.
    pub const DERIVE: u64 = ck::CKF_DERIVE;
    /// Encapsulate.
    pub const ENCAPSULATE: u64 = ck::CKF_ENCAPSULATE;
    /// Decapsulate.
    pub const DECAPSULATE: u64 = ck::CKF_DECAPSULATE;
    /// Hardware (the whole HSM is the device).
    pub const HW: u64 = ck::CKF_HW;
    /// Elliptic curves over F_p, uncompressed points, named curves.
    pub const EC: u64 = ck::CKF_EC_F_P | ck::CKF_EC_NAMEDCURVE | ck::CKF_EC_UNCOMPRESS;
}

/// What `C_GetMechanismInfo` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MechanismInfo {
    /// `CKM_*`.
    pub mechanism: u64,
    /// Smallest key size (bits, or bytes for secret keys as PKCS#11 says).
    pub min_key: u64,
    /// Largest key size.
    pub max_key: u64,
    /// `CKF_*`.
    pub flags: u64,
}

impl Mechanism {
    /// The `CKM_*` value.
    #[must_use]
    pub fn ckm(&self) -> u64 {
        match self {
            Self::AesKeyGen => ck::CKM_AES_KEY_GEN,
            Self::GenericSecretKeyGen => ck::CKM_GENERIC_SECRET_KEY_GEN,
            Self::EcKeyPairGen => ck::CKM_EC_KEY_PAIR_GEN,
            Self::EcEdwardsKeyPairGen => ck::CKM_EC_EDWARDS_KEY_PAIR_GEN,
            Self::RsaKeyPairGen => ck::CKM_RSA_PKCS_KEY_PAIR_GEN,
            Self::MlDsaKeyPairGen => ck::CKM_ML_DSA_KEY_PAIR_GEN,
            Self::MlKemKeyPairGen => ck::CKM_ML_KEM_KEY_PAIR_GEN,
            Self::Ecdsa => ck::CKM_ECDSA,
            Self::EcdsaHash(Hash::Sha256) => ck::CKM_ECDSA_SHA256,
            Self::EcdsaHash(Hash::Sha384) => ck::CKM_ECDSA_SHA384,
            Self::EcdsaHash(Hash::Sha512) => ck::CKM_ECDSA_SHA512,
            Self::EcdsaHash(Hash::Sha224) => ck::CKM_ECDSA_SHA224,
            Self::EcdsaHash(Hash::Sha1) => ck::CKM_ECDSA_SHA1,
            Self::EcdsaHash(_) => ck::CKM_ECDSA,
            Self::RsaPkcs => ck::CKM_RSA_PKCS,
            Self::RsaPkcsHash(Hash::Sha256) => ck::CKM_SHA256_RSA_PKCS,
            Self::RsaPkcsHash(Hash::Sha384) => ck::CKM_SHA384_RSA_PKCS,
            Self::RsaPkcsHash(Hash::Sha512) => ck::CKM_SHA512_RSA_PKCS,
            Self::RsaPkcsHash(Hash::Sha224) => ck::CKM_SHA224_RSA_PKCS,
            Self::RsaPkcsHash(Hash::Sha1) => ck::CKM_SHA1_RSA_PKCS,
            Self::RsaPkcsHash(_) => ck::CKM_RSA_PKCS,
            Self::RsaPss(_) => ck::CKM_RSA_PKCS_PSS,
            Self::RsaPssHash(p) => match p.hash {
                Hash::Sha1 => ck::CKM_SHA1_RSA_PKCS_PSS,
                Hash::Sha224 => ck::CKM_SHA224_RSA_PKCS_PSS,
                Hash::Sha384 => ck::CKM_SHA384_RSA_PKCS_PSS,
                Hash::Sha512 => ck::CKM_SHA512_RSA_PKCS_PSS,
                _ => ck::CKM_SHA256_RSA_PKCS_PSS,
            },
            Self::EdDsa => ck::CKM_EDDSA,
            Self::MlDsa => ck::CKM_ML_DSA,
            Self::Hmac(Hash::Sha384) => ck::CKM_SHA384_HMAC,
            Self::Hmac(Hash::Sha512) => ck::CKM_SHA512_HMAC,
            Self::Hmac(_) => ck::CKM_SHA256_HMAC,
            Self::AesGcm { .. } => ck::CKM_AES_GCM,
            Self::AesCbc { .. } => ck::CKM_AES_CBC,
            Self::AesCbcPad { .. } => ck::CKM_AES_CBC_PAD,
            Self::AesCtr { .. } => ck::CKM_AES_CTR,
            Self::RsaOaep(_) => ck::CKM_RSA_PKCS_OAEP,
            Self::AesKeyWrap => ck::CKM_AES_KEY_WRAP,
            Self::AesKeyWrapPad => ck::CKM_AES_KEY_WRAP_KWP,
            Self::RsaAesKeyWrap { .. } => ck::CKM_RSA_AES_KEY_WRAP,
            Self::Ecdh { .. } => ck::CKM_ECDH1_DERIVE,
            Self::Hkdf(_) => ck::CKM_HKDF_DERIVE,
            Self::Sp800108Counter { .. } => ck::CKM_SP800_108_COUNTER_KDF,
            Self::Tls13ExpandLabel { .. } => CKM_IHSM_TLS13_EXPAND_LABEL,
            Self::MlKem => ck::CKM_ML_KEM,
            Self::Digest(h) => h.ckm(),
            Self::KeyReport => CKM_IHSM_KEY_REPORT,
            Self::KeyRelease { .. } => CKM_IHSM_KEY_RELEASE,
        }
    }
}
