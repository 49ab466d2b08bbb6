//! The RSA signature operations PKCS#11 callers need and aws-lc-rs does not
//! expose, called in aws-lc itself (the same library, through its `-sys`
//! crate): RSASSA-PKCS1-v1_5 of caller-formatted data (`RSA_sign_raw` and
//! `RSA_verify_raw` with `RSA_PKCS1_PADDING`, which add and check the
//! `00 01 FF .. FF 00` padding), and RSASSA-PSS over digests of hashes aws-lc-rs
//! has no encoding for (`RSA_sign_pss_mgf1`, `RSA_verify_pss_mgf1`). aws-lc does
//! the padding and the RSA arithmetic (blinded, constant time); nothing of
//! either is written here.
//!
//! The only `unsafe` code of this crate: each block says why it holds.
#![allow(unsafe_code)]

use core::ptr::NonNull;

#[cfg(feature = "fips")]
use aws_lc_fips_sys as sys;
#[cfg(not(feature = "fips"))]
use aws_lc_sys as sys;

use crate::CryptoError;
use crate::hash::HashAlg;

/// An aws-lc `RSA` object this value owns one reference to.
pub(crate) struct RawRsa(NonNull<sys::RSA>);

// SAFETY: aws-lc's rsa.h: "A given object may be used concurrently on multiple
// threads by non-mutating functions", and the signing and verification
// functions called here (RSA_sign_raw, RSA_verify_raw, RSA_sign_pss_mgf1,
// RSA_verify_pss_mgf1; RSA_size takes a const pointer) "are considered
// non-mutating for thread-safety purposes and may be used concurrently". The one
// mutating call, RSA_free, is in Drop, which has the value to itself.
unsafe impl Send for RawRsa {}
// SAFETY: as for Send.
unsafe impl Sync for RawRsa {}

impl Drop for RawRsa {
    fn drop(&mut self) {
        // SAFETY: the pointer is the reference this value owns, given up once.
        // aws-lc's free wipes the key's memory (OPENSSL_free cleanses).
        unsafe { sys::RSA_free(self.0.as_ptr()) }
    }
}

/// Empties this thread's aws-lc error queue after a failed call, so that no
/// stale error is left for a later caller to misread.
fn clear_errors() {
    // SAFETY: no arguments; touches only this thread's error queue.
    unsafe { sys::ERR_clear_error() }
}

/// aws-lc's `EVP_MD` for `hash` (SHA-1 and SHA-2; static objects).
fn md(hash: HashAlg) -> Result<*const sys::EVP_MD, CryptoError> {
    // SAFETY: each returns a pointer to a static, immutable EVP_MD.
    let md = unsafe {
        match hash {
            HashAlg::Sha1 => sys::EVP_sha1(),
            HashAlg::Sha224 => sys::EVP_sha224(),
            HashAlg::Sha256 => sys::EVP_sha256(),
            HashAlg::Sha384 => sys::EVP_sha384(),
            HashAlg::Sha512 => sys::EVP_sha512(),
            _ => return Err(CryptoError::Unsupported("RSA with SHA-3")),
        }
    };
    if md.is_null() {
        return Err(CryptoError::Internal("aws-lc has no such digest"));
    }
    Ok(md)
}

impl RawRsa {
    /// The key of a PKCS#8 `PrivateKeyInfo` (which aws-lc parses).
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::InvalidKey("RSA private (PKCS#8)");
        let mut cbs = sys::CBS {
            data: der.as_ptr(),
            len: der.len(),
        };
        // SAFETY: `cbs` reads `der`, which outlives the call; aws-lc returns a
        // new EVP_PKEY we own, or null.
        let pkey =
            NonNull::new(unsafe { sys::EVP_parse_private_key(&raw mut cbs) }).ok_or_else(|| {
                clear_errors();
                bad
            })?;
        // SAFETY: `pkey` is valid; get1 returns a new reference to its RSA key
        // (null if it is not one), which then outlives the EVP_PKEY freed here.
        let rsa = unsafe { sys::EVP_PKEY_get1_RSA(pkey.as_ptr()) };
        // SAFETY: `pkey` is ours and used no more.
        unsafe { sys::EVP_PKEY_free(pkey.as_ptr()) };
        NonNull::new(rsa).map(Self).ok_or_else(|| {
            clear_errors();
            bad
        })
    }

    /// The key of a PKCS#1 `RSAPublicKey`.
    pub(crate) fn from_public_pkcs1(der: &[u8]) -> Result<Self, CryptoError> {
        // SAFETY: reads `der.len()` bytes of `der`; returns a new RSA or null.
        let rsa = unsafe { sys::RSA_public_key_from_bytes(der.as_ptr(), der.len()) };
        NonNull::new(rsa).map(Self).ok_or_else(|| {
            clear_errors();
            CryptoError::InvalidKey("RSA public (PKCS#1)")
        })
    }

    /// The modulus length in bytes (`k`).
    pub(crate) fn size(&self) -> usize {
        // SAFETY: a valid RSA; RSA_size reads it only.
        unsafe { sys::RSA_size(self.0.as_ptr()) as usize }
    }

    /// RSASSA-PKCS1-v1_5 of `data` as it is (`T` of RFC 8017 §9.2: a DigestInfo,
    /// or whatever the caller formatted), at most `k - 11` bytes.
    pub(crate) fn sign_pkcs1(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let k = self.size();
        if data.len() + 11 > k {
            return Err(CryptoError::WrongLength {
                what: "PKCS#1 v1.5 signature input (at most the modulus length - 11)",
                expected: k.saturating_sub(11),
                actual: data.len(),
            });
        }
        let mut out = vec![0u8; k];
        let mut len = 0usize;
        // SAFETY: `out` has `k` = RSA_size bytes, the `max_out` passed; `data`
        // is valid for its length; `len` is a valid place for the length.
        let ok = unsafe {
            sys::RSA_sign_raw(
                self.0.as_ptr(),
                &raw mut len,
                out.as_mut_ptr(),
                out.len(),
                data.as_ptr(),
                data.len(),
                sys::RSA_PKCS1_PADDING,
            )
        };
        if ok != 1 || len != k {
            clear_errors();
            return Err(CryptoError::Internal("RSA PKCS#1 v1.5 signing"));
        }
        Ok(out)
    }

    /// Checks that `sig` is the RSASSA-PKCS1-v1_5 signature of `data` as it is.
    pub(crate) fn verify_pkcs1(&self, data: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let k = self.size();
        if sig.len() != k {
            return Err(CryptoError::VerificationFailed);
        }
        let mut out = vec![0u8; k];
        let mut len = 0usize;
        // SAFETY: `out` has `k` bytes, the `max_out` passed; `sig` is valid for
        // its length; `len` is a valid place for the length.
        let ok = unsafe {
            sys::RSA_verify_raw(
                self.0.as_ptr(),
                &raw mut len,
                out.as_mut_ptr(),
                out.len(),
                sig.as_ptr(),
                sig.len(),
                sys::RSA_PKCS1_PADDING,
            )
        };
        if ok != 1 {
            clear_errors();
            return Err(CryptoError::VerificationFailed);
        }
        // What the padding held is public: a plain comparison.
        if out.get(..len) == Some(data) {
            Ok(())
        } else {
            Err(CryptoError::VerificationFailed)
        }
    }

    /// RSASSA-PSS of `digest` (of `hash`), MGF1 with `hash`, a salt of the hash's
    /// length.
    pub(crate) fn sign_pss(&self, hash: HashAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if digest.len() != hash.output_len() {
            return Err(CryptoError::WrongLength {
                what: "RSA-PSS digest",
                expected: hash.output_len(),
                actual: digest.len(),
            });
        }
        let md = md(hash)?;
        let k = self.size();
        let mut out = vec![0u8; k];
        let mut len = 0usize;
        // SAFETY: `out` has `k` bytes, the `max_out` passed; `digest` is valid
        // for its length; `md` is a static EVP_MD (null `mgf1_md`: the same).
        let ok = unsafe {
            sys::RSA_sign_pss_mgf1(
                self.0.as_ptr(),
                &raw mut len,
                out.as_mut_ptr(),
                out.len(),
                digest.as_ptr(),
                digest.len(),
                md,
                core::ptr::null(),
                sys::RSA_PSS_SALTLEN_DIGEST,
            )
        };
        if ok != 1 || len != k {
            clear_errors();
            return Err(CryptoError::Internal("RSA-PSS signing"));
        }
        Ok(out)
    }

    /// Checks an RSASSA-PSS signature of `digest` as [`RawRsa::sign_pss`] makes
    /// them.
    pub(crate) fn verify_pss(
        &self,
        hash: HashAlg,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        if digest.len() != hash.output_len() {
            return Err(CryptoError::WrongLength {
                what: "RSA-PSS digest",
                expected: hash.output_len(),
                actual: digest.len(),
            });
        }
        let md = md(hash)?;
        // SAFETY: `digest` and `sig` are valid for their lengths; `md` is a
        // static EVP_MD (null `mgf1_md`: the same).
        let ok = unsafe {
            sys::RSA_verify_pss_mgf1(
                self.0.as_ptr(),
                digest.as_ptr(),
                digest.len(),
                md,
                core::ptr::null(),
                sys::RSA_PSS_SALTLEN_DIGEST,
                sig.as_ptr(),
                sig.len(),
            )
        };
        if ok == 1 {
            Ok(())
        } else {
            clear_errors();
            Err(CryptoError::VerificationFailed)
        }
    }
}
