//! Mechanisms: what the core can do, with typed parameters, and the truthful list
//! (key sizes, flags) the PKCS#11 module reports.

use cryptoki_sys as ck;
use ihsm_crypto::hash::HashAlg;

pub use ihsm_proto::mech::*;

/// The ihsm_crypto hash of a mechanism hash.
pub(crate) trait HashExt {
    /// The primitive.
    fn alg(self) -> HashAlg;
}

impl HashExt for Hash {
    fn alg(self) -> HashAlg {
        match self {
            Self::Sha1 => HashAlg::Sha1,
            Self::Sha224 => HashAlg::Sha224,
            Self::Sha256 => HashAlg::Sha256,
            Self::Sha384 => HashAlg::Sha384,
            Self::Sha512 => HashAlg::Sha512,
            Self::Sha3_256 => HashAlg::Sha3_256,
            Self::Sha3_384 => HashAlg::Sha3_384,
            Self::Sha3_512 => HashAlg::Sha3_512,
        }
    }
}

const fn info(mechanism: u64, min_key: u64, max_key: u64, flags: u64) -> MechanismInfo {
    MechanismInfo {
        mechanism,
        min_key,
        max_key,
        flags: flags | flags::HW,
    }
}

use flags::*;

/// Every mechanism the core implements, with its key sizes and flags. This list is
/// what the PKCS#11 module reports; a test drives each entry.
pub static MECHANISMS: &[MechanismInfo] = &[
    info(ck::CKM_AES_KEY_GEN, 16, 32, GENERATE),
    info(ck::CKM_GENERIC_SECRET_KEY_GEN, 1, 512, GENERATE),
    info(ck::CKM_EC_KEY_PAIR_GEN, 256, 521, GENERATE_KEY_PAIR | EC),
    info(ck::CKM_EC_EDWARDS_KEY_PAIR_GEN, 255, 255, GENERATE_KEY_PAIR),
    info(ck::CKM_RSA_PKCS_KEY_PAIR_GEN, 2048, 4096, GENERATE_KEY_PAIR),
    info(ck::CKM_ML_DSA_KEY_PAIR_GEN, 0, 0, GENERATE_KEY_PAIR),
    info(ck::CKM_ML_KEM_KEY_PAIR_GEN, 0, 0, GENERATE_KEY_PAIR),
    info(ck::CKM_ECDSA, 256, 521, SIGN | VERIFY | EC),
    info(ck::CKM_ECDSA_SHA256, 256, 521, SIGN | VERIFY | EC),
    info(ck::CKM_ECDSA_SHA384, 256, 521, SIGN | VERIFY | EC),
    info(ck::CKM_ECDSA_SHA512, 256, 521, SIGN | VERIFY | EC),
    info(ck::CKM_RSA_PKCS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA256_RSA_PKCS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA384_RSA_PKCS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA512_RSA_PKCS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_RSA_PKCS_PSS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA256_RSA_PKCS_PSS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA384_RSA_PKCS_PSS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA512_RSA_PKCS_PSS, 2048, 4096, SIGN | VERIFY),
    info(
        ck::CKM_RSA_PKCS_OAEP,
        2048,
        4096,
        ENCRYPT | DECRYPT | WRAP | UNWRAP,
    ),
    info(ck::CKM_RSA_AES_KEY_WRAP, 2048, 4096, WRAP | UNWRAP),
    info(ck::CKM_EDDSA, 255, 255, SIGN | VERIFY),
    info(ck::CKM_ML_DSA, 0, 0, SIGN | VERIFY),
    info(ck::CKM_SHA256_HMAC, 16, 512, SIGN | VERIFY),
    info(ck::CKM_SHA384_HMAC, 16, 512, SIGN | VERIFY),
    info(ck::CKM_SHA512_HMAC, 16, 512, SIGN | VERIFY),
    info(ck::CKM_AES_GCM, 16, 32, ENCRYPT | DECRYPT),
    info(ck::CKM_AES_CBC, 16, 32, ENCRYPT | DECRYPT),
    info(ck::CKM_AES_CBC_PAD, 16, 32, ENCRYPT | DECRYPT),
    info(ck::CKM_AES_CTR, 16, 32, ENCRYPT | DECRYPT),
    info(ck::CKM_AES_KEY_WRAP, 16, 32, WRAP | UNWRAP),
    info(ck::CKM_AES_KEY_WRAP_KWP, 16, 32, WRAP | UNWRAP),
    info(ck::CKM_ECDH1_DERIVE, 256, 521, DERIVE | EC),
    info(ck::CKM_HKDF_DERIVE, 1, 512, DERIVE),
    info(ck::CKM_SP800_108_COUNTER_KDF, 1, 512, DERIVE),
    info(CKM_IHSM_TLS13_EXPAND_LABEL, 1, 512, DERIVE),
    info(CKM_IHSM_KEY_REPORT, 0, 0, SIGN),
    info(CKM_IHSM_KEY_RELEASE, 0, 0, WRAP),
    info(ck::CKM_ML_KEM, 0, 0, ENCAPSULATE | DECAPSULATE),
    info(ck::CKM_SHA256, 0, 0, DIGEST),
    info(ck::CKM_SHA384, 0, 0, DIGEST),
    info(ck::CKM_SHA512, 0, 0, DIGEST),
    info(ck::CKM_SHA3_256, 0, 0, DIGEST),
    info(ck::CKM_SHA3_384, 0, 0, DIGEST),
    info(ck::CKM_SHA3_512, 0, 0, DIGEST),
];

/// The SHA-1 signature mechanisms, which a partition offers only when its
/// policy allows SHA-1 signatures (`ihsm partition create
/// --allow-sha1-signatures`). Without it they still verify, unlisted.
pub static SHA1_SIGNATURES: &[MechanismInfo] = &[
    info(ck::CKM_ECDSA_SHA1, 256, 521, SIGN | VERIFY | EC),
    info(ck::CKM_SHA1_RSA_PKCS, 2048, 4096, SIGN | VERIFY),
    info(ck::CKM_SHA1_RSA_PKCS_PSS, 2048, 4096, SIGN | VERIFY),
];

/// The info of a `CKM_*`, if the core implements it.
#[must_use]
pub fn mechanism_info(ckm: u64) -> Option<MechanismInfo> {
    MECHANISMS.iter().copied().find(|m| m.mechanism == ckm)
}
