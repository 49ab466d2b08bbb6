//! The cryptographic operations: a mechanism applied to key material, single-part
//! and multi-part. Usage attributes and key types are checked here, once, before
//! any key is touched.

use cryptoki_sys as ck;
use ihsm_crypto::aes::{self, AesMode, AesStream};
use ihsm_crypto::hash::DigestCtx;
use ihsm_crypto::hmac::HmacCtx;
use ihsm_crypto::{ExposeSecret, SecretVec, ed25519, kdf, mldsa, mlkem, rsa};
use zeroize::Zeroizing;

use crate::error::{CoreError, Result};
use crate::key::{Material, ec_point_raw};
use crate::mech::{GcmIv, Hash, HashExt, HkdfSalt, Mechanism, OaepParams, PssParams};
use crate::object::Object;
use ihsm_proto::types::PartitionPolicy;

/// What `CKM_RSA_PKCS` refuses past `k - 11` bytes.
const RSA_PKCS_TOO_LONG: &str = "CKM_RSA_PKCS signs at most the modulus length less 11 bytes (245 for RSA-2048, 373 for RSA-3072, 501 for RSA-4096)";

/// The largest single input (64 MiB), and the most a multi-part operation buffers.
pub use ihsm_proto::layout::MAX_DATA;

/// What a key is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Wrap,
    Unwrap,
    Derive,
    Encapsulate,
    Decapsulate,
}

impl Usage {
    fn attr(self) -> (u64, &'static str) {
        match self {
            Self::Sign => (ck::CKA_SIGN, "CKA_SIGN"),
            Self::Verify => (ck::CKA_VERIFY, "CKA_VERIFY"),
            Self::Encrypt => (ck::CKA_ENCRYPT, "CKA_ENCRYPT"),
            Self::Decrypt => (ck::CKA_DECRYPT, "CKA_DECRYPT"),
            Self::Wrap => (ck::CKA_WRAP, "CKA_WRAP"),
            Self::Unwrap => (ck::CKA_UNWRAP, "CKA_UNWRAP"),
            Self::Derive => (ck::CKA_DERIVE, "CKA_DERIVE"),
            Self::Encapsulate => (ck::CKA_ENCAPSULATE, "CKA_ENCAPSULATE"),
            Self::Decapsulate => (ck::CKA_DECAPSULATE, "CKA_DECAPSULATE"),
        }
    }
}

/// Checks that `key` permits `usage` and has material.
pub(crate) fn permitted(key: &Object, usage: Usage) -> Result<&Material> {
    let (ty, name) = usage.attr();
    if !key.flag(ty) {
        return Err(CoreError::KeyFunctionNotPermitted(name));
    }
    key.material.as_ref().ok_or(CoreError::KeyHandleInvalid)
}

fn check_len(data: &[u8]) -> Result<()> {
    if data.len() > MAX_DATA {
        Err(CoreError::DataLenRange("input larger than 64 MiB"))
    } else {
        Ok(())
    }
}

fn check_pss(p: &PssParams) -> Result<()> {
    if p.mgf != p.hash.mgf1() {
        return Err(CoreError::MechanismParamInvalid(
            "PSS MGF must use the same hash as the message",
        ));
    }
    if p.salt_len != p.hash.output_len() as u64 {
        return Err(CoreError::MechanismParamInvalid(
            "PSS salt length must equal the hash length",
        ));
    }
    if !matches!(
        p.hash,
        Hash::Sha1 | Hash::Sha256 | Hash::Sha384 | Hash::Sha512
    ) {
        return Err(CoreError::MechanismParamInvalid(
            "PSS hash must be SHA-256, SHA-384 or SHA-512 (or SHA-1, for legacy signatures)",
        ));
    }
    Ok(())
}

/// Whether a signature with `mech` makes a SHA-1 signature: the hash-and-sign
/// mechanisms of SHA-1, and PSS whose parameters name it. (`CKM_RSA_PKCS` and
/// `CKM_ECDSA` sign what the caller hashed, whatever the hash.)
fn sha1_signature(mech: &Mechanism) -> bool {
    match mech {
        Mechanism::EcdsaHash(h) | Mechanism::RsaPkcsHash(h) => *h == Hash::Sha1,
        Mechanism::RsaPss(p) | Mechanism::RsaPssHash(p) => p.hash == Hash::Sha1,
        _ => false,
    }
}

/// The partition's policy on making a signature with `mech`: SHA-1 only where it
/// allows SHA-1 signatures (NIST SP 800-131A disallows them). Verifying one is
/// always allowed (legacy use).
fn policy_allows(mech: &Mechanism, policy: PartitionPolicy) -> Result<()> {
    if sha1_signature(mech) && !policy.allow_sha1_signatures {
        return Err(CoreError::MechanismInvalid(format!(
            "0x{:x}: SHA-1 signatures are refused (NIST SP 800-131A); a partition for legacy clients that need them is created with `ihsm partition create --allow-sha1-signatures`",
            mech.ckm()
        )));
    }
    Ok(())
}

fn check_oaep(p: &OaepParams) -> Result<()> {
    if p.mgf != p.hash.mgf1() {
        return Err(CoreError::MechanismParamInvalid(
            "OAEP MGF must use the same hash as OAEP",
        ));
    }
    if !matches!(
        p.hash,
        Hash::Sha1 | Hash::Sha256 | Hash::Sha384 | Hash::Sha512
    ) {
        return Err(CoreError::MechanismParamInvalid(
            "OAEP hash must be SHA-1, SHA-256, SHA-384 or SHA-512",
        ));
    }
    Ok(())
}

fn sig_err(e: ihsm_crypto::CryptoError) -> CoreError {
    match e {
        ihsm_crypto::CryptoError::VerificationFailed
        | ihsm_crypto::CryptoError::WrongLength { .. } => CoreError::SignatureInvalid,
        other => other.into(),
    }
}

/// One-shot sign, as the partition's `policy` allows.
pub(crate) fn sign(
    mech: &Mechanism,
    key: &Object,
    data: &[u8],
    policy: PartitionPolicy,
) -> Result<Vec<u8>> {
    check_len(data)?;
    let m = permitted(key, Usage::Sign)?;
    policy_allows(mech, policy)?;
    let sha1 = |data: &[u8]| ihsm_crypto::hash::digest(Hash::Sha1.alg(), data);
    Ok(match (mech, m) {
        (Mechanism::Ecdsa, Material::EcPrivate(k)) => {
            if data.is_empty() {
                return Err(CoreError::DataLenRange("CKM_ECDSA needs a digest"));
            }
            k.sign_digest(data)?
        }
        // SHA-1 (allowed by the policy above): from the digest, as the
        // hash-and-sign primitives refuse it.
        (Mechanism::EcdsaHash(Hash::Sha1), Material::EcPrivate(k)) => k.sign_digest(&sha1(data))?,
        (Mechanism::EcdsaHash(h), Material::EcPrivate(k)) => k.sign(h.alg(), data)?,
        (Mechanism::RsaPkcs, Material::RsaPrivate(k)) => {
            if data.len() > k.max_pkcs1_raw_len() {
                return Err(CoreError::DataLenRange(RSA_PKCS_TOO_LONG));
            }
            k.sign_pkcs1_raw(data)?
        }
        (Mechanism::RsaPkcsHash(Hash::Sha1), Material::RsaPrivate(k)) => {
            k.sign_pkcs1_digest(Hash::Sha1.alg(), &sha1(data))?
        }
        (Mechanism::RsaPkcsHash(h), Material::RsaPrivate(k)) => k.sign_pkcs1(h.alg(), data)?,
        (Mechanism::RsaPss(p), Material::RsaPrivate(k)) => {
            check_pss(p)?;
            if data.len() != p.hash.output_len() {
                return Err(CoreError::DataLenRange(
                    "CKM_RSA_PKCS_PSS signs a digest of the parameter hash",
                ));
            }
            k.sign_pss_digest(p.hash.alg(), data)?
        }
        (Mechanism::RsaPssHash(p), Material::RsaPrivate(k)) if p.hash == Hash::Sha1 => {
            check_pss(p)?;
            k.sign_pss_digest(Hash::Sha1.alg(), &sha1(data))?
        }
        (Mechanism::RsaPssHash(p), Material::RsaPrivate(k)) => {
            check_pss(p)?;
            k.sign_pss(p.hash.alg(), data)?
        }
        (Mechanism::EdDsa, Material::EdPrivate(k)) => k.try_sign(data)?.to_vec(),
        (Mechanism::MlDsa, Material::MlDsaPrivate(k)) => k.sign(data)?,
        (Mechanism::Hmac(h), Material::Generic(s)) => {
            ihsm_crypto::hmac::hmac_sign(h.alg(), s.expose_secret(), data)?
        }
        (Mechanism::Hmac(h), Material::Aes(k)) => {
            ihsm_crypto::hmac::hmac_sign(h.alg(), k.expose().expose_secret(), data)?
        }
        (m, _) if is_sign_mech(m) => return Err(CoreError::KeyTypeInconsistent),
        _ => {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} cannot sign",
                mech.ckm()
            )));
        }
    })
}

fn is_sign_mech(m: &Mechanism) -> bool {
    matches!(
        m,
        Mechanism::Ecdsa
            | Mechanism::EcdsaHash(_)
            | Mechanism::RsaPkcs
            | Mechanism::RsaPkcsHash(_)
            | Mechanism::RsaPss(_)
            | Mechanism::RsaPssHash(_)
            | Mechanism::EdDsa
            | Mechanism::MlDsa
            | Mechanism::Hmac(_)
    )
}

/// One-shot verify.
pub(crate) fn verify(mech: &Mechanism, key: &Object, data: &[u8], sig: &[u8]) -> Result<()> {
    check_len(data)?;
    let m = permitted(key, Usage::Verify)?;
    match (mech, m) {
        (Mechanism::Ecdsa, Material::EcPublic(k)) => k.verify_digest(data, sig).map_err(sig_err),
        (Mechanism::EcdsaHash(h), Material::EcPublic(k)) => {
            k.verify(h.alg(), data, sig).map_err(sig_err)
        }
        (Mechanism::RsaPkcs, Material::RsaPublic(k)) => {
            if data.len() > k.modulus_len().saturating_sub(11) {
                return Err(CoreError::DataLenRange(RSA_PKCS_TOO_LONG));
            }
            k.verify_pkcs1_raw(data, sig).map_err(sig_err)
        }
        (Mechanism::RsaPkcsHash(h), Material::RsaPublic(k)) => {
            k.verify_pkcs1(h.alg(), data, sig).map_err(sig_err)
        }
        (Mechanism::RsaPss(p), Material::RsaPublic(k)) => {
            check_pss(p)?;
            k.verify_pss_digest(p.hash.alg(), data, sig)
                .map_err(sig_err)
        }
        (Mechanism::RsaPssHash(p), Material::RsaPublic(k)) if p.hash == Hash::Sha1 => {
            check_pss(p)?;
            let d = ihsm_crypto::hash::digest(Hash::Sha1.alg(), data);
            k.verify_pss_digest(Hash::Sha1.alg(), &d, sig)
                .map_err(sig_err)
        }
        (Mechanism::RsaPssHash(p), Material::RsaPublic(k)) => {
            check_pss(p)?;
            k.verify_pss(p.hash.alg(), data, sig).map_err(sig_err)
        }
        (Mechanism::EdDsa, Material::EdPublic(k)) => {
            ed25519::ed25519_verify(k, data, sig).map_err(sig_err)
        }
        (Mechanism::MlDsa, Material::MlDsaPublic(level, k)) => {
            mldsa::mldsa_verify(*level, k, data, sig).map_err(sig_err)
        }
        (Mechanism::Hmac(h), Material::Generic(s)) => {
            ihsm_crypto::hmac::hmac_verify(h.alg(), s.expose_secret(), data, sig).map_err(sig_err)
        }
        (Mechanism::Hmac(h), Material::Aes(k)) => {
            ihsm_crypto::hmac::hmac_verify(h.alg(), k.expose().expose_secret(), data, sig)
                .map_err(sig_err)
        }
        (m, _) if is_sign_mech(m) => Err(CoreError::KeyTypeInconsistent),
        _ => Err(CoreError::MechanismInvalid(format!(
            "0x{:x} cannot verify",
            mech.ckm()
        ))),
    }
}

/// A multi-part sign or verify.
pub(crate) enum SignCtx {
    /// Hash as data arrives, sign the digest at the end.
    Hashing(Box<DigestCtx>),
    /// HMAC as data arrives.
    Hmac(Box<HmacCtx>),
    /// Buffer everything, up to `max` bytes (EdDSA, ML-DSA, and the mechanisms
    /// that sign what the caller formatted: `CKM_ECDSA`, `CKM_RSA_PKCS_PSS`, and
    /// `CKM_RSA_PKCS`, which PKCS#11 lists as single-part but callers send in
    /// parts, as SoftHSM2 accepts, up to `k - 11` bytes).
    Buffer {
        data: Zeroizing<Vec<u8>>,
        max: usize,
        /// What passing `max` answers.
        too_long: &'static str,
    },
}

/// Whether a key's material suits a signature mechanism, so that C_SignInit and
/// C_VerifyInit refuse a mismatch as PKCS#11 says, not the call that finishes.
fn key_fits(mech: &Mechanism, m: &Material, usage: Usage) -> bool {
    let sign = matches!(usage, Usage::Sign);
    match mech {
        Mechanism::Ecdsa | Mechanism::EcdsaHash(_) => {
            matches!(
                (m, sign),
                (Material::EcPrivate(_), true) | (Material::EcPublic(_), false)
            )
        }
        Mechanism::RsaPkcs
        | Mechanism::RsaPkcsHash(_)
        | Mechanism::RsaPss(_)
        | Mechanism::RsaPssHash(_) => {
            matches!(
                (m, sign),
                (Material::RsaPrivate(_), true) | (Material::RsaPublic(_), false)
            )
        }
        Mechanism::EdDsa => {
            matches!(
                (m, sign),
                (Material::EdPrivate(_), true) | (Material::EdPublic(_), false)
            )
        }
        Mechanism::MlDsa => matches!(
            (m, sign),
            (Material::MlDsaPrivate(_), true) | (Material::MlDsaPublic(..), false)
        ),
        Mechanism::Hmac(_) => matches!(m, Material::Generic(_) | Material::Aes(_)),
        _ => false,
    }
}

impl SignCtx {
    /// A multi-part operation of `mech` with `key` for `usage`, as the
    /// partition's `policy` allows; also what C_SignInit and C_VerifyInit check.
    pub(crate) fn new(
        mech: &Mechanism,
        key: &Object,
        usage: Usage,
        policy: PartitionPolicy,
    ) -> Result<Self> {
        let m = permitted(key, usage)?;
        if !is_sign_mech(mech) {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} is not a signature mechanism",
                mech.ckm()
            )));
        }
        if !key_fits(mech, m, usage) {
            return Err(CoreError::KeyTypeInconsistent);
        }
        if usage == Usage::Sign {
            policy_allows(mech, policy)?;
        }
        Ok(match (mech, m) {
            (Mechanism::EcdsaHash(h) | Mechanism::RsaPkcsHash(h), _) => {
                Self::Hashing(Box::new(DigestCtx::new(h.alg())))
            }
            (Mechanism::RsaPssHash(p), _) => {
                check_pss(p)?;
                Self::Hashing(Box::new(DigestCtx::new(p.hash.alg())))
            }
            (Mechanism::Hmac(h), Material::Generic(s)) => {
                Self::Hmac(Box::new(HmacCtx::new(h.alg(), s.expose_secret())?))
            }
            (Mechanism::Hmac(h), Material::Aes(k)) => {
                Self::Hmac(Box::new(HmacCtx::new(h.alg(), k.expose().expose_secret())?))
            }
            (Mechanism::RsaPkcs, Material::RsaPrivate(k)) => Self::Buffer {
                data: Zeroizing::new(Vec::new()),
                max: k.max_pkcs1_raw_len(),
                too_long: RSA_PKCS_TOO_LONG,
            },
            (Mechanism::RsaPkcs, Material::RsaPublic(k)) => Self::Buffer {
                data: Zeroizing::new(Vec::new()),
                max: k.modulus_len().saturating_sub(11),
                too_long: RSA_PKCS_TOO_LONG,
            },
            _ => Self::Buffer {
                data: Zeroizing::new(Vec::new()),
                max: MAX_DATA,
                too_long: "multi-part input larger than 64 MiB",
            },
        })
    }

    pub(crate) fn update(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Self::Hashing(d) => d.update(data),
            Self::Hmac(h) => h.update(data),
            Self::Buffer {
                data: b,
                max,
                too_long,
            } => {
                if b.len().saturating_add(data.len()) > *max {
                    return Err(CoreError::DataLenRange(too_long));
                }
                b.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// Finishes a multi-part sign (the policy was checked when it began).
    pub(crate) fn sign(
        self,
        mech: &Mechanism,
        key: &Object,
        policy: PartitionPolicy,
    ) -> Result<Vec<u8>> {
        let m = permitted(key, Usage::Sign)?;
        match (self, mech, m) {
            (Self::Hashing(d), Mechanism::EcdsaHash(_), Material::EcPrivate(k)) => {
                Ok(k.sign_digest(&d.finish())?)
            }
            (Self::Hashing(d), Mechanism::RsaPkcsHash(h), Material::RsaPrivate(k)) => {
                Ok(k.sign_pkcs1_digest(h.alg(), &d.finish())?)
            }
            (Self::Hashing(d), Mechanism::RsaPssHash(p), Material::RsaPrivate(k)) => {
                Ok(k.sign_pss_digest(p.hash.alg(), &d.finish())?)
            }
            (Self::Hmac(h), _, _) => Ok(h.sign()),
            (Self::Buffer { data, .. }, _, _) => sign(mech, key, &data, policy),
            _ => Err(CoreError::KeyTypeInconsistent),
        }
    }

    /// Finishes a multi-part verify.
    pub(crate) fn verify(self, mech: &Mechanism, key: &Object, sig: &[u8]) -> Result<()> {
        let m = permitted(key, Usage::Verify)?;
        match (self, mech, m) {
            (Self::Hashing(d), Mechanism::EcdsaHash(_), Material::EcPublic(k)) => {
                k.verify_digest(&d.finish(), sig).map_err(sig_err)
            }
            (Self::Hashing(d), Mechanism::RsaPkcsHash(h), Material::RsaPublic(k)) => k
                .verify_pkcs1_digest(h.alg(), &d.finish(), sig)
                .map_err(sig_err),
            (Self::Hashing(d), Mechanism::RsaPssHash(p), Material::RsaPublic(k)) => k
                .verify_pss_digest(p.hash.alg(), &d.finish(), sig)
                .map_err(sig_err),
            (Self::Hmac(h), _, _) => h.verify(sig).map_err(sig_err),
            (Self::Buffer { data, .. }, _, _) => verify(mech, key, &data, sig),
            _ => Err(CoreError::KeyTypeInconsistent),
        }
    }
}

fn gcm_params(iv: &GcmIv, tag_bits: u64) -> Result<Option<&[u8]>> {
    if tag_bits != 128 {
        return Err(CoreError::MechanismParamInvalid(
            "AES-GCM tag must be 128 bits",
        ));
    }
    match iv {
        GcmIv::Supplied(v) if v.len() == aes::GCM_IV_LEN => Ok(Some(v)),
        GcmIv::Supplied(_) => Err(CoreError::MechanismParamInvalid(
            "AES-GCM IV must be 12 bytes",
        )),
        GcmIv::Generate => Ok(None),
    }
}

fn ctr_check(iv: &[u8], counter_bits: u64, len: usize) -> Result<()> {
    let iv: [u8; 16] = iv
        .try_into()
        .map_err(|_| CoreError::MechanismParamInvalid("AES-CTR counter block must be 16 bytes"))?;
    if counter_bits == 0 || counter_bits > 128 {
        return Err(CoreError::MechanismParamInvalid(
            "AES-CTR counter bits must be 1 to 128",
        ));
    }
    let mask: u128 = if counter_bits == 128 {
        u128::MAX
    } else {
        (1u128 << counter_bits) - 1
    };
    let low = u128::from_be_bytes(iv) & mask;
    let blocks = (len as u128).div_ceil(16);
    if blocks > 0 && low.checked_add(blocks - 1).is_none_or(|last| last > mask) {
        return Err(CoreError::DataLenRange(
            "AES-CTR counter would wrap within the message",
        ));
    }
    Ok(())
}

fn aes_key(m: &Material) -> Result<&aes::AesKey> {
    match m {
        Material::Aes(k) => Ok(k),
        _ => Err(CoreError::KeyTypeInconsistent),
    }
}

fn data_err(e: ihsm_crypto::CryptoError) -> CoreError {
    match e {
        ihsm_crypto::CryptoError::WrongLength { .. } => {
            CoreError::DataLenRange("length not valid for this mechanism")
        }
        other => other.into(),
    }
}

/// One-shot encrypt. Returns the ciphertext and, for AES-GCM with an HSM-generated
/// IV, the IV.
pub(crate) fn encrypt(
    mech: &Mechanism,
    key: &Object,
    data: &[u8],
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    check_len(data)?;
    let m = permitted(key, Usage::Encrypt)?;
    match mech {
        Mechanism::AesGcm { iv, aad, tag_bits } => {
            let k = aes_key(m)?;
            match gcm_params(iv, *tag_bits)? {
                Some(iv) => Ok((
                    aes::gcm_encrypt(k, iv, aad, data, 16).map_err(data_err)?,
                    None,
                )),
                None => {
                    let iv = ihsm_crypto::rand::array::<12>()?;
                    let ct = aes::gcm_encrypt(k, &iv, aad, data, 16).map_err(data_err)?;
                    Ok((ct, Some(iv.to_vec())))
                }
            }
        }
        Mechanism::AesCbc { iv } => Ok((
            aes::cbc_encrypt(aes_key(m)?, iv, false, data).map_err(data_err)?,
            None,
        )),
        Mechanism::AesCbcPad { iv } => Ok((
            aes::cbc_encrypt(aes_key(m)?, iv, true, data).map_err(data_err)?,
            None,
        )),
        Mechanism::AesCtr { iv, counter_bits } => {
            ctr_check(iv, *counter_bits, data.len())?;
            Ok((
                aes::ctr_crypt(aes_key(m)?, iv, data).map_err(data_err)?,
                None,
            ))
        }
        Mechanism::RsaOaep(p) => {
            check_oaep(p)?;
            match m {
                Material::RsaPublic(k) => Ok((
                    k.oaep_encrypt(p.hash.alg(), &p.label, data)
                        .map_err(data_err)?,
                    None,
                )),
                _ => Err(CoreError::KeyTypeInconsistent),
            }
        }
        _ => Err(CoreError::MechanismInvalid(format!(
            "0x{:x} cannot encrypt",
            mech.ckm()
        ))),
    }
}

fn decrypt_err(e: ihsm_crypto::CryptoError) -> CoreError {
    match e {
        ihsm_crypto::CryptoError::VerificationFailed
        | ihsm_crypto::CryptoError::InvalidInput(_) => CoreError::EncryptedDataInvalid,
        ihsm_crypto::CryptoError::WrongLength { .. } => {
            CoreError::DataLenRange("ciphertext length not valid")
        }
        other => other.into(),
    }
}

/// One-shot decrypt.
pub(crate) fn decrypt(mech: &Mechanism, key: &Object, data: &[u8]) -> Result<SecretVec> {
    check_len(data)?;
    let m = permitted(key, Usage::Decrypt)?;
    match mech {
        Mechanism::AesGcm { iv, aad, tag_bits } => {
            let iv = gcm_params(iv, *tag_bits)?.ok_or(CoreError::MechanismParamInvalid(
                "AES-GCM decryption needs the IV",
            ))?;
            aes::gcm_decrypt(aes_key(m)?, iv, aad, data, 16).map_err(decrypt_err)
        }
        Mechanism::AesCbc { iv } => {
            aes::cbc_decrypt(aes_key(m)?, iv, false, data).map_err(decrypt_err)
        }
        Mechanism::AesCbcPad { iv } => {
            aes::cbc_decrypt(aes_key(m)?, iv, true, data).map_err(decrypt_err)
        }
        Mechanism::AesCtr { iv, counter_bits } => {
            ctr_check(iv, *counter_bits, data.len())?;
            let pt = aes::ctr_crypt(aes_key(m)?, iv, data).map_err(decrypt_err)?;
            let pt = Zeroizing::new(pt);
            Ok(SecretVec::from_slice(&pt)?)
        }
        Mechanism::RsaOaep(p) => {
            check_oaep(p)?;
            match m {
                Material::RsaPrivate(k) => k
                    .oaep_decrypt(p.hash.alg(), &p.label, data)
                    .map_err(decrypt_err),
                _ => Err(CoreError::KeyTypeInconsistent),
            }
        }
        _ => Err(CoreError::MechanismInvalid(format!(
            "0x{:x} cannot decrypt",
            mech.ckm()
        ))),
    }
}

/// A multi-part encrypt or decrypt.
pub(crate) enum CryptCtx {
    /// CBC, CBC-PAD, CTR: streamed.
    Stream(Box<AesStream>),
    /// GCM and RSA-OAEP: buffered, done at the end.
    Buffer(Zeroizing<Vec<u8>>),
}

impl CryptCtx {
    /// Checks at Init what can be checked before data arrives: the key's usage,
    /// type and the parameters (a generated GCM IV is fine for single-part).
    pub(crate) fn validate(mech: &Mechanism, key: &Object, encrypt: bool) -> Result<()> {
        match mech {
            Mechanism::AesGcm { iv, tag_bits, .. } => {
                let m = permitted(
                    key,
                    if encrypt {
                        Usage::Encrypt
                    } else {
                        Usage::Decrypt
                    },
                )?;
                aes_key(m)?;
                let iv = gcm_params(iv, *tag_bits)?;
                if iv.is_none() && !encrypt {
                    return Err(CoreError::MechanismParamInvalid(
                        "AES-GCM decryption needs the IV",
                    ));
                }
                Ok(())
            }
            _ => Self::new(mech, key, encrypt).map(|_| ()),
        }
    }

    pub(crate) fn new(mech: &Mechanism, key: &Object, encrypt: bool) -> Result<Self> {
        let m = permitted(
            key,
            if encrypt {
                Usage::Encrypt
            } else {
                Usage::Decrypt
            },
        )?;
        let stream = |mode, iv: &[u8]| -> Result<Self> {
            Ok(Self::Stream(Box::new(
                AesStream::new(mode, encrypt, aes_key(m)?, iv)
                    .map_err(|_| CoreError::MechanismParamInvalid("AES IV must be 16 bytes"))?,
            )))
        };
        match mech {
            Mechanism::AesCbc { iv } => stream(AesMode::Cbc, iv),
            Mechanism::AesCbcPad { iv } => stream(AesMode::CbcPad, iv),
            Mechanism::AesCtr { iv, counter_bits } => {
                // The whole stream must fit the counter: checked against the most it may carry.
                ctr_check(iv, *counter_bits, 0)?;
                stream(AesMode::Ctr, iv)
            }
            Mechanism::AesGcm { iv, tag_bits, .. } => {
                aes_key(m)?;
                let _ = gcm_params(iv, *tag_bits)?;
                if matches!(iv, GcmIv::Generate) {
                    return Err(CoreError::MechanismParamInvalid(
                        "multi-part AES-GCM needs a supplied IV (the generated IV is returned by single-part encryption)",
                    ));
                }
                Ok(Self::Buffer(Zeroizing::new(Vec::new())))
            }
            Mechanism::RsaOaep(p) => {
                check_oaep(p)?;
                Ok(Self::Buffer(Zeroizing::new(Vec::new())))
            }
            _ => Err(CoreError::MechanismInvalid(format!(
                "0x{:x} cannot encrypt or decrypt",
                mech.ckm()
            ))),
        }
    }

    /// Feeds data; returns whatever output is ready.
    pub(crate) fn update(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::Stream(s) => s.update(data).map_err(decrypt_err),
            Self::Buffer(b) => {
                if b.len().saturating_add(data.len()) > MAX_DATA {
                    return Err(CoreError::DataLenRange(
                        "multi-part input larger than 64 MiB",
                    ));
                }
                b.extend_from_slice(data);
                Ok(Vec::new())
            }
        }
    }

    /// Finishes an encryption.
    pub(crate) fn finish_encrypt(self, mech: &Mechanism, key: &Object) -> Result<Vec<u8>> {
        match self {
            Self::Stream(s) => s.finish().map_err(data_err),
            Self::Buffer(b) => Ok(encrypt(mech, key, &b)?.0),
        }
    }

    /// Finishes a decryption.
    pub(crate) fn finish_decrypt(self, mech: &Mechanism, key: &Object) -> Result<SecretVec> {
        match self {
            Self::Stream(s) => {
                let out = Zeroizing::new(s.finish().map_err(decrypt_err)?);
                Ok(SecretVec::from_slice(&out)?)
            }
            Self::Buffer(b) => decrypt(mech, key, &b),
        }
    }
}

/// Wraps `bytes` (a key's value or PKCS#8) under `wrapping`.
pub(crate) fn wrap(mech: &Mechanism, wrapping: &Object, bytes: &[u8]) -> Result<Vec<u8>> {
    let m = permitted(wrapping, Usage::Wrap)?;
    let e = |e: ihsm_crypto::CryptoError| match e {
        ihsm_crypto::CryptoError::WrongLength { .. }
        | ihsm_crypto::CryptoError::InvalidInput(_) => {
            CoreError::KeyNotWrappable("the key's length does not suit this wrapping mechanism")
        }
        other => other.into(),
    };
    match (mech, m) {
        (Mechanism::AesKeyWrap, Material::Aes(k)) => aes::key_wrap(k, bytes).map_err(e),
        (Mechanism::AesKeyWrapPad, Material::Aes(k)) => aes::key_wrap_pad(k, bytes).map_err(e),
        (Mechanism::RsaOaep(p), Material::RsaPublic(k)) => {
            check_oaep(p)?;
            k.oaep_encrypt(p.hash.alg(), &p.label, bytes).map_err(e)
        }
        (Mechanism::RsaAesKeyWrap { aes_bits, oaep }, Material::RsaPublic(k)) => {
            check_oaep(oaep)?;
            if !oaep.label.is_empty() {
                return Err(CoreError::MechanismParamInvalid(
                    "CKM_RSA_AES_KEY_WRAP takes no OAEP label",
                ));
            }
            rsa::rsa_aes_wrap(k, oaep.hash.alg(), *aes_bits as usize, bytes).map_err(e)
        }
        (
            Mechanism::AesKeyWrap
            | Mechanism::AesKeyWrapPad
            | Mechanism::RsaOaep(_)
            | Mechanism::RsaAesKeyWrap { .. },
            _,
        ) => Err(CoreError::KeyTypeInconsistent),
        _ => Err(CoreError::MechanismInvalid(format!(
            "0x{:x} cannot wrap",
            mech.ckm()
        ))),
    }
}

/// Unwraps with `unwrapping`.
pub(crate) fn unwrap(mech: &Mechanism, unwrapping: &Object, wrapped: &[u8]) -> Result<SecretVec> {
    check_len(wrapped)?;
    let m = permitted(unwrapping, Usage::Unwrap)?;
    let e = |e: ihsm_crypto::CryptoError| match e {
        ihsm_crypto::CryptoError::VerificationFailed
        | ihsm_crypto::CryptoError::WrongLength { .. }
        | ihsm_crypto::CryptoError::InvalidInput(_) => CoreError::WrappedKeyInvalid,
        other => other.into(),
    };
    match (mech, m) {
        (Mechanism::AesKeyWrap, Material::Aes(k)) => aes::key_unwrap(k, wrapped).map_err(e),
        (Mechanism::AesKeyWrapPad, Material::Aes(k)) => aes::key_unwrap_pad(k, wrapped).map_err(e),
        (Mechanism::RsaOaep(p), Material::RsaPrivate(k)) => {
            check_oaep(p)?;
            k.oaep_decrypt(p.hash.alg(), &p.label, wrapped).map_err(e)
        }
        (Mechanism::RsaAesKeyWrap { aes_bits, oaep }, Material::RsaPrivate(k)) => {
            check_oaep(oaep)?;
            if !oaep.label.is_empty() {
                return Err(CoreError::MechanismParamInvalid(
                    "CKM_RSA_AES_KEY_WRAP takes no OAEP label",
                ));
            }
            rsa::rsa_aes_unwrap(k, oaep.hash.alg(), *aes_bits as usize, wrapped).map_err(e)
        }
        (
            Mechanism::AesKeyWrap
            | Mechanism::AesKeyWrapPad
            | Mechanism::RsaOaep(_)
            | Mechanism::RsaAesKeyWrap { .. },
            _,
        ) => Err(CoreError::KeyTypeInconsistent),
        _ => Err(CoreError::MechanismInvalid(format!(
            "0x{:x} cannot unwrap",
            mech.ckm()
        ))),
    }
}

fn secret_bytes(m: &Material) -> Result<&[u8]> {
    match m {
        Material::Generic(s) => Ok(s.expose_secret()),
        Material::Aes(k) => Ok(k.expose().expose_secret()),
        _ => Err(CoreError::KeyTypeInconsistent),
    }
}

/// Derives `len` secret bytes from `base`.
pub(crate) fn derive(mech: &Mechanism, base: &Object, len: usize) -> Result<SecretVec> {
    let m = permitted(base, Usage::Derive)?;
    if len == 0 || len > 512 {
        return Err(CoreError::TemplateInconsistent(
            "derived keys are 1 to 512 bytes (CKA_VALUE_LEN)",
        ));
    }
    let hash_ok = |h: Hash| {
        if matches!(h, Hash::Sha256 | Hash::Sha384 | Hash::Sha512) {
            Ok(h.alg())
        } else {
            Err(CoreError::MechanismParamInvalid(
                "the PRF hash must be SHA-256, SHA-384 or SHA-512",
            ))
        }
    };
    let out = match (mech, m) {
        (Mechanism::Ecdh { public_data }, Material::EcPrivate(k)) => {
            let shared = k.ecdh(&ec_point_raw(public_data)).map_err(|_| {
                CoreError::MechanismParamInvalid("the peer public point is not on the key's curve")
            })?;
            if len > shared.len() {
                return Err(CoreError::TemplateInconsistent(
                    "CKA_VALUE_LEN is longer than the ECDH shared secret",
                ));
            }
            SecretVec::from_slice(shared.expose_secret().get(..len).unwrap_or_default())?
        }
        (Mechanism::Ecdh { .. }, _) => return Err(CoreError::KeyTypeInconsistent),
        (Mechanism::Hkdf(p), m) => {
            let ikm = secret_bytes(m)?;
            let hash = hash_ok(p.hash)?;
            let salt: Vec<u8> = match &p.salt {
                HkdfSalt::Null => vec![0; p.hash.output_len()],
                HkdfSalt::Data(s) => s.clone(),
            };
            match (p.extract, p.expand) {
                (true, true) => kdf::hkdf(hash, &salt, ikm, &p.info, len)?,
                (true, false) => {
                    let prk = kdf::hkdf_extract(hash, &salt, ikm)?;
                    if len > prk.len() {
                        return Err(CoreError::TemplateInconsistent(
                            "CKA_VALUE_LEN is longer than the PRK",
                        ));
                    }
                    SecretVec::from_slice(prk.expose_secret().get(..len).unwrap_or_default())?
                }
                (false, true) => kdf::hkdf_expand(hash, ikm, &p.info, len)?,
                (false, false) => {
                    return Err(CoreError::MechanismParamInvalid(
                        "HKDF needs extract, expand or both",
                    ));
                }
            }
        }
        (Mechanism::Sp800108Counter { hash, fixed_input }, m) => {
            kdf::kbkdf_counter_hmac(hash_ok(*hash)?, secret_bytes(m)?, fixed_input, len)?
        }
        (
            Mechanism::Tls13ExpandLabel {
                hash,
                label,
                context,
            },
            m,
        ) => {
            if label.len() > 249 || context.len() > 255 {
                return Err(CoreError::MechanismParamInvalid(
                    "TLS 1.3 label or context too long",
                ));
            }
            kdf::tls13_expand_label(hash_ok(*hash)?, secret_bytes(m)?, label, context, len)?
        }
        _ => {
            return Err(CoreError::MechanismInvalid(format!(
                "0x{:x} cannot derive",
                mech.ckm()
            )));
        }
    };
    Ok(out)
}

/// ML-KEM encapsulation to `public`: (ciphertext, shared secret).
pub(crate) fn encapsulate(key: &Object) -> Result<(Vec<u8>, SecretVec)> {
    match permitted(key, Usage::Encapsulate)? {
        Material::MlKemPublic(level, k) => Ok(mlkem::mlkem_encapsulate(*level, k)?),
        _ => Err(CoreError::KeyTypeInconsistent),
    }
}

/// ML-KEM decapsulation with `private`.
pub(crate) fn decapsulate(key: &Object, ct: &[u8]) -> Result<SecretVec> {
    match permitted(key, Usage::Decapsulate)? {
        Material::MlKemPrivate(k) => k
            .decapsulate(ct)
            .map_err(|_| CoreError::EncryptedDataInvalid),
        _ => Err(CoreError::KeyTypeInconsistent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctr_counter_wrap_is_refused() {
        let mut iv = [0u8; 16];
        iv[15] = 0xff;
        // 8 counter bits, starting at 255: one block fits, two wrap.
        ctr_check(&iv, 8, 16).unwrap();
        assert!(ctr_check(&iv, 8, 17).is_err());
        ctr_check(&[0xff; 16], 128, 16).unwrap();
        assert!(ctr_check(&[0xff; 16], 128, 17).is_err());
        assert!(ctr_check(&[0; 15], 128, 1).is_err());
        assert!(ctr_check(&[0; 16], 0, 1).is_err());
    }
}
