//! Cryptography for ihsm: typed wrappers over aws-lc-rs, secret buffers that live in
//! locked, non-dumpable memory and wipe on drop, and the power-on known-answer
//! self-tests.
//!
//! Every algorithm ihsm uses is reached through this crate, so that the rest of the
//! code base handles keys as types (an [`ec::EccP384PrivateKey`], a
//! [`Secret<64>`]) and never as loose byte slices. The one way out of a secret is
//! [`secrecy::ExposeSecret::expose_secret`], which reads loudly at the call site.
//!
//! This crate has no `unsafe` code. The calls into aws-lc itself for the RSA
//! signatures aws-lc-rs does not expose (PKCS#11's `CKM_RSA_PKCS` of
//! caller-formatted data, PSS over SHA-1 digests) are the [`ihsm_awslc`] crate;
//! the locked memory under [`Secret`] and [`SecretVec`] is the [`ihsm_secmem`]
//! crate (re-exported as [`memory`]).
#![forbid(unsafe_code)]

pub mod aes;
pub mod drbg;
pub mod ec;
pub mod ed25519;
mod error;
pub mod file;
pub mod hash;
pub mod hmac;
pub mod hpke;
pub mod kat;
pub mod kdf;
pub mod keyfile;
pub mod mldsa;
pub mod mlkem;
pub mod pbkdf2;
pub mod rand;
pub mod rsa;
mod scratch;
pub mod seal;
mod secret;

pub use error::CryptoError;
/// Locked, non-dumpable memory (the [`ihsm_secmem`] crate), under its old name.
pub use ihsm_secmem as memory;
pub use secrecy::{ExposeSecret, ExposeSecretMut};
pub use secret::{Secret, SecretVec};

/// The first eight bytes of `bytes` in hex and "..": enough of a public key or
/// signature to tell two apart in `Debug` output.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(19);
    for b in bytes.iter().take(8) {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str("..");
    s
}

/// Constant-time equality of two byte strings of equal length.
///
/// Returns false for different lengths (the length itself is not secret).
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
