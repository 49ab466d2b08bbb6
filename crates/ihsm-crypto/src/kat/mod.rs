//! Power-on known-answer self-tests, one per algorithm, each with its own error and
//! a note on where its vector comes from (as Caliptra's `kat` crate does).
//!
//! [`run_all`] runs every test with the built-in vectors; [`run_with`] takes the
//! vectors as data so that a test can corrupt one and watch exactly that self-test
//! fail.

use thiserror::Error;

use crate::aes::{self, AesKey};
use crate::ec::{
    Curve, EcPrivateKey, EcPublicKey, EccP384PrivateKey, EccP384PublicKey, EccP384Signature,
};
use crate::ed25519::{Ed25519PrivateKey, ed25519_verify};
use crate::hash::{self, HashAlg};
use crate::hash::{sha256, sha384, sha512};
use crate::mldsa::{
    MlDsa87PrivateKey, MlDsa87PublicKey, MlDsa87Signature, MlDsaLevel, MlDsaPrivateKey,
};
use crate::mlkem::{MlKemLevel, MlKemPrivateKey, mlkem_encapsulate};
use crate::rsa::{RsaPrivateKey, RsaPublicKey};
use crate::{ExposeSecret, Secret, drbg, hmac, kdf, pbkdf2};

/// A self-test that failed. The numbers are stable (they appear in boot reports and
/// on the wire) and unique (a test checks it).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KatError {
    /// SHA-256 produced the wrong digest.
    #[error("SHA-256 known-answer test failed")]
    Sha256,
    /// SHA-384 produced the wrong digest.
    #[error("SHA-384 known-answer test failed")]
    Sha384,
    /// SHA-512 produced the wrong digest.
    #[error("SHA-512 known-answer test failed")]
    Sha512,
    /// HMAC-SHA-384 produced the wrong tag.
    #[error("HMAC-SHA-384 known-answer test failed")]
    HmacSha384,
    /// HMAC-SHA-512 produced the wrong tag.
    #[error("HMAC-SHA-512 known-answer test failed")]
    HmacSha512,
    /// The SP 800-108 counter KDF with HMAC-SHA-512 produced the wrong key.
    #[error("KDF (SP 800-108 counter, HMAC-SHA-512) known-answer test failed")]
    KdfHmacSha512,
    /// HMAC_DRBG(SHA-384) produced the wrong output.
    #[error("HMAC_DRBG SHA-384 known-answer test failed")]
    HmacDrbgSha384,
    /// A P-384 private scalar did not give the expected public key.
    #[error("ECC P-384 key derivation known-answer test failed")]
    EccP384KeyDerivation,
    /// A known ECDSA P-384 signature did not verify, or a corrupted one did.
    #[error("ECDSA P-384 verification known-answer test failed")]
    EccP384Verify,
    /// A fresh ECDSA P-384 signature did not verify (pairwise consistency).
    #[error("ECDSA P-384 sign/verify pairwise test failed")]
    EccP384SignVerify,
    /// ML-DSA-87 key generation from a seed gave the wrong public key.
    #[error("ML-DSA-87 key generation known-answer test failed")]
    MlDsa87KeyGen,
    /// A known ML-DSA-87 signature did not verify, or a corrupted one did.
    #[error("ML-DSA-87 verification known-answer test failed")]
    MlDsa87Verify,
    /// A fresh ML-DSA-87 signature did not verify (pairwise consistency).
    #[error("ML-DSA-87 sign/verify pairwise test failed")]
    MlDsa87SignVerify,
    /// SHA3-256 produced the wrong digest.
    #[error("SHA3-256 known-answer test failed")]
    Sha3_256,
    /// HMAC-SHA-256 produced the wrong tag.
    #[error("HMAC-SHA-256 known-answer test failed")]
    HmacSha256,
    /// HKDF-SHA-256 produced the wrong key.
    #[error("HKDF-SHA-256 known-answer test failed")]
    HkdfSha256,
    /// AES-256-GCM produced the wrong ciphertext or tag, or opened a forgery.
    #[error("AES-256-GCM known-answer test failed")]
    AesGcm,
    /// AES-256-CBC produced the wrong ciphertext or plaintext.
    #[error("AES-256-CBC known-answer test failed")]
    AesCbc,
    /// AES-256-CTR produced the wrong ciphertext or plaintext.
    #[error("AES-256-CTR known-answer test failed")]
    AesCtr,
    /// AES-256 key wrap produced the wrong blob or failed to unwrap it.
    #[error("AES key wrap known-answer test failed")]
    AesKeyWrap,
    /// A known ECDSA P-256 signature did not verify, or a corrupted one did.
    #[error("ECDSA P-256 verification known-answer test failed")]
    EcdsaP256Verify,
    /// A known ECDSA P-521 signature did not verify, or a corrupted one did.
    #[error("ECDSA P-521 verification known-answer test failed")]
    EcdsaP521Verify,
    /// A known P-256 key gave the wrong public key, or its fresh signature did not
    /// verify (pairwise consistency).
    #[error("ECDSA P-256 sign/verify pairwise test failed")]
    EcdsaP256SignVerify,
    /// Ed25519 derived the wrong public key or signature, or accepted a forgery.
    #[error("Ed25519 known-answer test failed")]
    Ed25519,
    /// A known RSA-2048 PKCS#1 v1.5 signature did not verify, or a corrupted one
    /// did.
    #[error("RSA PKCS#1 v1.5 verification known-answer test failed")]
    RsaPkcs1Verify,
    /// A fresh RSA-PSS signature by a known key did not verify (pairwise
    /// consistency).
    #[error("RSA-PSS sign/verify pairwise test failed")]
    RsaPssSignVerify,
    /// ML-DSA-44 key generation from a seed gave the wrong public key.
    #[error("ML-DSA-44 key generation known-answer test failed")]
    MlDsa44KeyGen,
    /// ML-DSA-65 key generation from a seed gave the wrong public key.
    #[error("ML-DSA-65 key generation known-answer test failed")]
    MlDsa65KeyGen,
    /// ML-KEM-768 decapsulation gave the wrong shared secret.
    #[error("ML-KEM-768 decapsulation known-answer test failed")]
    MlKem768Decaps,
    /// PBKDF2-HMAC-SHA-256 derived the wrong key, or a wrong password verified.
    #[error("PBKDF2-HMAC-SHA-256 known-answer test failed")]
    Pbkdf2HmacSha256,
    /// ECDH on P-384 gave the wrong shared secret, or accepted an off-curve point.
    #[error("ECDH P-384 known-answer test failed")]
    EcdhP384,
    /// RSA-OAEP (SHA-256, with a label) decrypted a known ciphertext wrongly, or
    /// accepted a corrupted one.
    #[error("RSA-OAEP known-answer test failed")]
    RsaOaep,
    /// AES key wrap with padding (KWP) produced the wrong blob, failed to unwrap
    /// it, or unwrapped a corrupted one.
    #[error("AES key wrap with padding known-answer test failed")]
    AesKeyWrapPad,
    /// ML-KEM-768 encapsulation to a known key did not decapsulate to its secret,
    /// or an invalid encapsulation key was accepted.
    #[error("ML-KEM-768 encapsulation known-answer test failed")]
    MlKem768Encaps,
}

impl KatError {
    /// Every self-test error, for uniqueness checks and documentation.
    pub const ALL: [KatError; 34] = [
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
        Self::HmacSha384,
        Self::HmacSha512,
        Self::KdfHmacSha512,
        Self::HmacDrbgSha384,
        Self::EccP384KeyDerivation,
        Self::EccP384Verify,
        Self::EccP384SignVerify,
        Self::MlDsa87KeyGen,
        Self::MlDsa87Verify,
        Self::MlDsa87SignVerify,
        Self::Sha3_256,
        Self::HmacSha256,
        Self::HkdfSha256,
        Self::AesGcm,
        Self::AesCbc,
        Self::AesCtr,
        Self::AesKeyWrap,
        Self::EcdsaP256Verify,
        Self::EcdsaP521Verify,
        Self::EcdsaP256SignVerify,
        Self::Ed25519,
        Self::RsaPkcs1Verify,
        Self::RsaPssSignVerify,
        Self::MlDsa44KeyGen,
        Self::MlDsa65KeyGen,
        Self::MlKem768Decaps,
        Self::Pbkdf2HmacSha256,
        Self::EcdhP384,
        Self::RsaOaep,
        Self::AesKeyWrapPad,
        Self::MlKem768Encaps,
    ];

    /// The stable number of this failure.
    #[must_use]
    pub const fn code(self) -> u32 {
        match self {
            Self::Sha256 => 0x0001,
            Self::Sha384 => 0x0002,
            Self::Sha512 => 0x0003,
            Self::HmacSha384 => 0x0004,
            Self::HmacSha512 => 0x0005,
            Self::KdfHmacSha512 => 0x0006,
            Self::HmacDrbgSha384 => 0x0007,
            Self::EccP384KeyDerivation => 0x0008,
            Self::EccP384Verify => 0x0009,
            Self::EccP384SignVerify => 0x000a,
            Self::MlDsa87KeyGen => 0x000b,
            Self::MlDsa87Verify => 0x000c,
            Self::MlDsa87SignVerify => 0x000d,
            Self::Sha3_256 => 0x000e,
            Self::HmacSha256 => 0x000f,
            Self::HkdfSha256 => 0x0010,
            Self::AesGcm => 0x0011,
            Self::AesCbc => 0x0012,
            Self::AesCtr => 0x0013,
            Self::AesKeyWrap => 0x0014,
            Self::EcdsaP256Verify => 0x0015,
            Self::EcdsaP521Verify => 0x0016,
            Self::EcdsaP256SignVerify => 0x0017,
            Self::Ed25519 => 0x0018,
            Self::RsaPkcs1Verify => 0x0019,
            Self::RsaPssSignVerify => 0x001a,
            Self::MlDsa44KeyGen => 0x001b,
            Self::MlDsa65KeyGen => 0x001c,
            Self::MlKem768Decaps => 0x001d,
            Self::Pbkdf2HmacSha256 => 0x001e,
            Self::EcdhP384 => 0x001f,
            Self::RsaOaep => 0x0020,
            Self::AesKeyWrapPad => 0x0021,
            Self::MlKem768Encaps => 0x0022,
        }
    }
}

/// What passed, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KatReport {
    /// The name of each self-test that ran and passed.
    pub passed: Vec<&'static str>,
}

mod vectors;

pub use vectors::Vectors;

fn check(ok: bool, err: KatError) -> Result<(), KatError> {
    if ok { Ok(()) } else { Err(err) }
}

/// Runs every self-test with the built-in vectors.
///
/// # Errors
/// The first self-test that fails.
pub fn run_all() -> Result<KatReport, KatError> {
    run_with(&Vectors::default())
}

/// Runs every self-test with `v`.
///
/// # Errors
/// The first self-test that fails.
pub fn run_with(v: &Vectors) -> Result<KatReport, KatError> {
    let mut report = KatReport::default();
    let mut pass = |name| report.passed.push(name);

    check(sha256(v.sha_msg) == v.sha256, KatError::Sha256)?;
    pass("SHA-256");
    check(sha384(v.sha_msg) == v.sha384, KatError::Sha384)?;
    pass("SHA-384");
    check(sha512(v.sha_msg) == v.sha512, KatError::Sha512)?;
    pass("SHA-512");

    let tag = hmac::hmac384(v.hmac384_key, v.hmac384_msg).map_err(|_| KatError::HmacSha384)?;
    check(tag.expose_secret() == &v.hmac384_tag, KatError::HmacSha384)?;
    pass("HMAC-SHA-384");
    let tag = hmac::hmac512(v.hmac512_key, v.hmac512_msg).map_err(|_| KatError::HmacSha512)?;
    check(tag.expose_secret() == &v.hmac512_tag, KatError::HmacSha512)?;
    pass("HMAC-SHA-512");

    let out =
        kdf::kdf_hmac512(v.kdf_key, v.kdf_fixed, None).map_err(|_| KatError::KdfHmacSha512)?;
    check(
        out.expose_secret().get(..40) == Some(v.kdf_out40.as_slice()),
        KatError::KdfHmacSha512,
    )?;
    pass("KDF HMAC-SHA-512 (SP 800-108 counter)");

    let mut drbg = drbg::HmacDrbg384::new(v.drbg_entropy, v.drbg_nonce)
        .map_err(|_| KatError::HmacDrbgSha384)?;
    let mut out = vec![0u8; v.drbg_out.len()];
    drbg.generate(&mut out)
        .map_err(|_| KatError::HmacDrbgSha384)?;
    drbg.generate(&mut out)
        .map_err(|_| KatError::HmacDrbgSha384)?;
    check(out == v.drbg_out, KatError::HmacDrbgSha384)?;
    pass("HMAC_DRBG SHA-384");

    let scalar = Secret::from_slice(&v.ecc_priv).map_err(|_| KatError::EccP384KeyDerivation)?;
    let key =
        EccP384PrivateKey::from_scalar(&scalar).map_err(|_| KatError::EccP384KeyDerivation)?;
    check(
        key.public_key().as_bytes() == &v.ecc_pub,
        KatError::EccP384KeyDerivation,
    )?;
    pass("ECC P-384 key derivation");

    let public = EccP384PublicKey::from_sec1(&v.ecc_pub).map_err(|_| KatError::EccP384Verify)?;
    let sig = EccP384Signature::from_fixed(&v.ecc_sig_zero_digest)
        .map_err(|_| KatError::EccP384Verify)?;
    check(
        public.verify_prehashed(&[0; 48], &sig).is_ok(),
        KatError::EccP384Verify,
    )?;
    let mut bad = sig.clone();
    bad.s[47] ^= 1;
    check(
        public.verify_prehashed(&[0; 48], &bad).is_err(),
        KatError::EccP384Verify,
    )?;
    pass("ECDSA P-384 verify");

    let msg = b"ihsm power-on pairwise test";
    let sig = key.sign(msg).map_err(|_| KatError::EccP384SignVerify)?;
    check(
        key.public_key().verify(msg, &sig).is_ok(),
        KatError::EccP384SignVerify,
    )?;
    pass("ECDSA P-384 sign");

    let seed = Secret::from_slice(&v.mldsa_seed).map_err(|_| KatError::MlDsa87KeyGen)?;
    let mldsa = MlDsa87PrivateKey::from_seed(&seed).map_err(|_| KatError::MlDsa87KeyGen)?;
    check(
        sha512(mldsa.public_key().as_bytes()) == v.mldsa_pk_sha512,
        KatError::MlDsa87KeyGen,
    )?;
    pass("ML-DSA-87 key generation");

    let sig = MlDsa87Signature::from_bytes(v.mldsa_sig).map_err(|_| KatError::MlDsa87Verify)?;
    let public: &MlDsa87PublicKey = mldsa.public_key();
    check(
        public.verify(v.mldsa_msg, &sig).is_ok(),
        KatError::MlDsa87Verify,
    )?;
    check(
        public.verify(b"not the message", &sig).is_err(),
        KatError::MlDsa87Verify,
    )?;
    pass("ML-DSA-87 verify");

    let sig = mldsa.sign(msg).map_err(|_| KatError::MlDsa87SignVerify)?;
    check(
        public.verify(msg, &sig).is_ok(),
        KatError::MlDsa87SignVerify,
    )?;
    pass("ML-DSA-87 sign");

    check(
        hash::digest(HashAlg::Sha3_256, v.sha_msg) == v.sha3_256,
        KatError::Sha3_256,
    )?;
    pass("SHA3-256");

    let tag = hmac::hmac_sign(HashAlg::Sha256, v.hmac256_key, v.hmac256_msg)
        .map_err(|_| KatError::HmacSha256)?;
    check(tag == v.hmac256_tag, KatError::HmacSha256)?;
    pass("HMAC-SHA-256");

    let okm = kdf::hkdf(
        HashAlg::Sha256,
        &v.hkdf_salt,
        &v.hkdf_ikm,
        &v.hkdf_info,
        v.hkdf_okm.len(),
    )
    .map_err(|_| KatError::HkdfSha256)?;
    check(okm.expose_secret() == v.hkdf_okm, KatError::HkdfSha256)?;
    pass("HKDF-SHA-256");

    aes_gcm(v).ok_or(KatError::AesGcm)?;
    pass("AES-256-GCM");
    aes_cbc(v).ok_or(KatError::AesCbc)?;
    pass("AES-256-CBC");
    aes_ctr(v).ok_or(KatError::AesCtr)?;
    pass("AES-256-CTR");
    aes_kw(v).ok_or(KatError::AesKeyWrap)?;
    pass("AES-256 key wrap");

    ecdsa_verify(
        Curve::P256,
        HashAlg::Sha256,
        &v.p256_pub,
        v.p256_msg,
        &v.p256_sig,
    )
    .ok_or(KatError::EcdsaP256Verify)?;
    pass("ECDSA P-256 verify");
    ecdsa_verify(
        Curve::P521,
        HashAlg::Sha512,
        &v.p521_pub,
        v.p521_msg,
        &v.p521_sig,
    )
    .ok_or(KatError::EcdsaP521Verify)?;
    pass("ECDSA P-521 verify");
    ecdsa_p256_pairwise(v, msg).ok_or(KatError::EcdsaP256SignVerify)?;
    pass("ECDSA P-256 sign");

    ed25519(v).ok_or(KatError::Ed25519)?;
    pass("Ed25519");

    rsa_pkcs1_verify(v).ok_or(KatError::RsaPkcs1Verify)?;
    pass("RSA-2048 PKCS#1 v1.5 verify");
    rsa_pss_pairwise(v, msg).ok_or(KatError::RsaPssSignVerify)?;
    pass("RSA-2048 PSS sign");

    mldsa_keygen(MlDsaLevel::L44, &v.mldsa44_seed, &v.mldsa44_pk_sha512)
        .ok_or(KatError::MlDsa44KeyGen)?;
    pass("ML-DSA-44 key generation");
    mldsa_keygen(MlDsaLevel::L65, &v.mldsa65_seed, &v.mldsa65_pk_sha512)
        .ok_or(KatError::MlDsa65KeyGen)?;
    pass("ML-DSA-65 key generation");

    let dk = MlKemPrivateKey::from_bytes(MlKemLevel::L768, v.mlkem768_dk)
        .map_err(|_| KatError::MlKem768Decaps)?;
    let ss = dk
        .decapsulate(v.mlkem768_ct)
        .map_err(|_| KatError::MlKem768Decaps)?;
    check(
        ss.expose_secret() == v.mlkem768_ss,
        KatError::MlKem768Decaps,
    )?;
    pass("ML-KEM-768 decapsulation");

    pbkdf2_sha256(v).ok_or(KatError::Pbkdf2HmacSha256)?;
    pass("PBKDF2-HMAC-SHA-256");
    ecdh_p384(v).ok_or(KatError::EcdhP384)?;
    pass("ECDH P-384");
    rsa_oaep(v).ok_or(KatError::RsaOaep)?;
    pass("RSA-2048 OAEP SHA-256");
    aes_kwp(v).ok_or(KatError::AesKeyWrapPad)?;
    pass("AES-256 key wrap with padding");
    mlkem768_encaps(v).ok_or(KatError::MlKem768Encaps)?;
    pass("ML-KEM-768 encapsulation");

    Ok(report)
}

// Each helper below is one self-test: `Some(())` when it passes. The `?` on
// `.ok()` turns any library error into a failure of that test alone.

fn aes_gcm(v: &Vectors) -> Option<()> {
    let key = AesKey::from_bytes(&v.gcm_key).ok()?;
    let ct = aes::gcm_encrypt(&key, &v.gcm_iv, &v.gcm_aad, &v.gcm_pt, 16).ok()?;
    (ct == v.gcm_ct_tag).then_some(())?;
    let pt = aes::gcm_decrypt(&key, &v.gcm_iv, &v.gcm_aad, &v.gcm_ct_tag, 16).ok()?;
    (pt.expose_secret() == v.gcm_pt).then_some(())?;
    let mut forged = v.gcm_ct_tag;
    forged[75] ^= 1;
    aes::gcm_decrypt(&key, &v.gcm_iv, &v.gcm_aad, &forged, 16)
        .is_err()
        .then_some(())
}

fn aes_cbc(v: &Vectors) -> Option<()> {
    let key = AesKey::from_bytes(&v.aes256_key).ok()?;
    let ct = aes::cbc_encrypt(&key, &v.cbc_iv, false, &v.aes_pt).ok()?;
    (ct == v.cbc_ct).then_some(())?;
    let pt = aes::cbc_decrypt(&key, &v.cbc_iv, false, &v.cbc_ct).ok()?;
    (pt.expose_secret() == v.aes_pt).then_some(())
}

fn aes_ctr(v: &Vectors) -> Option<()> {
    let key = AesKey::from_bytes(&v.aes256_key).ok()?;
    let ct = aes::ctr_crypt(&key, &v.ctr_iv, &v.aes_pt).ok()?;
    (ct == v.ctr_ct).then_some(())?;
    let pt = aes::ctr_crypt(&key, &v.ctr_iv, &v.ctr_ct).ok()?;
    (pt == v.aes_pt).then_some(())
}

fn aes_kw(v: &Vectors) -> Option<()> {
    let kek = AesKey::from_bytes(&v.kw_kek).ok()?;
    let wrapped = aes::key_wrap(&kek, &v.kw_data).ok()?;
    (wrapped == v.kw_wrapped).then_some(())?;
    let data = aes::key_unwrap(&kek, &v.kw_wrapped).ok()?;
    (data.expose_secret() == v.kw_data).then_some(())
}

/// A known signature verifies and the same signature with one bit flipped does not.
fn ecdsa_verify(curve: Curve, hash: HashAlg, public: &[u8], msg: &[u8], sig: &[u8]) -> Option<()> {
    let public = EcPublicKey::from_sec1(curve, public).ok()?;
    public.verify(hash, msg, sig).ok()?;
    let mut bad = sig.to_vec();
    *bad.last_mut()? ^= 1;
    public.verify(hash, msg, &bad).is_err().then_some(())
}

fn ecdsa_p256_pairwise(v: &Vectors, msg: &[u8]) -> Option<()> {
    let key = EcPrivateKey::from_scalar(Curve::P256, &v.p256_priv).ok()?;
    (key.public_key().as_bytes() == v.p256_pub).then_some(())?;
    let sig = key.sign(HashAlg::Sha256, msg).ok()?;
    key.public_key().verify(HashAlg::Sha256, msg, &sig).ok()
}

fn ed25519(v: &Vectors) -> Option<()> {
    let seed = Secret::from_slice(&v.ed25519_seed).ok()?;
    let key = Ed25519PrivateKey::from_seed(&seed).ok()?;
    (key.public_key() == v.ed25519_pub).then_some(())?;
    let sig = key.try_sign(v.ed25519_msg).ok()?;
    (sig == v.ed25519_sig).then_some(())?;
    ed25519_verify(&v.ed25519_pub, v.ed25519_msg, &v.ed25519_sig).ok()?;
    let mut bad = v.ed25519_sig;
    bad[0] ^= 1;
    ed25519_verify(&v.ed25519_pub, v.ed25519_msg, &bad)
        .is_err()
        .then_some(())
}

fn rsa_pkcs1_verify(v: &Vectors) -> Option<()> {
    let public = RsaPublicKey::from_components(v.rsa_n, v.rsa_e).ok()?;
    public
        .verify_pkcs1(HashAlg::Sha256, v.rsa_msg, v.rsa_sig)
        .ok()?;
    let mut bad = v.rsa_sig.to_vec();
    *bad.last_mut()? ^= 1;
    public
        .verify_pkcs1(HashAlg::Sha256, v.rsa_msg, &bad)
        .is_err()
        .then_some(())
}

fn rsa_pss_pairwise(v: &Vectors, msg: &[u8]) -> Option<()> {
    let key = RsaPrivateKey::from_pkcs8(v.rsa_pss_key).ok()?;
    let sig = key.sign_pss(HashAlg::Sha256, msg).ok()?;
    key.public_key()
        .verify_pss(HashAlg::Sha256, msg, &sig)
        .ok()?;
    key.public_key()
        .verify_pss(HashAlg::Sha256, b"not the message", &sig)
        .is_err()
        .then_some(())
}

fn mldsa_keygen(level: MlDsaLevel, seed: &[u8; 32], pk_sha512: &[u8; 64]) -> Option<()> {
    let seed = Secret::from_slice(seed).ok()?;
    let key = MlDsaPrivateKey::from_seed(level, &seed).ok()?;
    (sha512(key.public_key()) == *pk_sha512).then_some(())
}

/// The known derivation, and `verify` accepting it and refusing another password.
fn pbkdf2_sha256(v: &Vectors) -> Option<()> {
    let (password, salt, n) = (v.pbkdf2_password, v.pbkdf2_salt, v.pbkdf2_iterations);
    let dk = pbkdf2::derive(password, salt, n).ok()?;
    (dk.expose_secret() == &v.pbkdf2_dk).then_some(())?;
    pbkdf2::verify(password, salt, n, &v.pbkdf2_dk).ok()?;
    pbkdf2::verify(b"not the password", salt, n, &v.pbkdf2_dk)
        .is_err()
        .then_some(())
}

/// The known shared secret, and the peer point with its last bit flipped (off the
/// curve) refused.
fn ecdh_p384(v: &Vectors) -> Option<()> {
    let key = EcPrivateKey::from_scalar(Curve::P384, &v.ecdh_p384_priv).ok()?;
    let shared = key.ecdh(&v.ecdh_p384_peer).ok()?;
    (shared.expose_secret() == v.ecdh_p384_shared).then_some(())?;
    let mut off_curve = v.ecdh_p384_peer;
    off_curve[96] ^= 1;
    key.ecdh(&off_curve).is_err().then_some(())
}

/// The known ciphertext decrypts to its message, and the same ciphertext with one
/// bit flipped is refused. (The encrypting direction is the public-key operation,
/// checked by the pairwise test of every RSA key generated; a round trip here would
/// add a third private-key operation to every boot.)
fn rsa_oaep(v: &Vectors) -> Option<()> {
    let key = RsaPrivateKey::from_pkcs8(v.rsa_oaep_key).ok()?;
    let label = v.rsa_oaep_label;
    let pt = key
        .oaep_decrypt(HashAlg::Sha256, label, v.rsa_oaep_ct)
        .ok()?;
    (pt.expose_secret() == v.rsa_oaep_msg).then_some(())?;
    let mut bad = v.rsa_oaep_ct.to_vec();
    *bad.last_mut()? ^= 1;
    key.oaep_decrypt(HashAlg::Sha256, label, &bad)
        .is_err()
        .then_some(())
}

/// The known wrapping, its unwrapping, and a corrupted blob refused.
fn aes_kwp(v: &Vectors) -> Option<()> {
    let kek = AesKey::from_bytes(&v.kwp_kek).ok()?;
    let wrapped = aes::key_wrap_pad(&kek, v.kwp_data).ok()?;
    (wrapped == v.kwp_wrapped).then_some(())?;
    let data = aes::key_unwrap_pad(&kek, &v.kwp_wrapped).ok()?;
    (data.expose_secret() == v.kwp_data).then_some(())?;
    let mut bad = v.kwp_wrapped;
    bad[0] ^= 1;
    aes::key_unwrap_pad(&kek, &bad).is_err().then_some(())
}

/// Encapsulation to the known `ek` decapsulates, under the known `dk`, to the same
/// secret; the invalid `ek` is refused.
fn mlkem768_encaps(v: &Vectors) -> Option<()> {
    let level = MlKemLevel::L768;
    let dk = MlKemPrivateKey::from_bytes(level, v.mlkem768_dk).ok()?;
    let (ct, ours) = mlkem_encapsulate(level, v.mlkem768_ek).ok()?;
    (ct.len() == level.ciphertext_len()).then_some(())?;
    let theirs = dk.decapsulate(&ct).ok()?;
    ours.ct_eq(&theirs).then_some(())?;
    mlkem_encapsulate(level, v.mlkem768_ek_invalid)
        .is_err()
        .then_some(())
}

#[cfg(test)]
mod tests;
