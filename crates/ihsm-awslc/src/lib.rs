//! The RSA signature operations PKCS#11 callers need and aws-lc-rs does not
//! expose, called in aws-lc itself (the same library, through its `-sys`
//! crate): RSASSA-PKCS1-v1_5 of caller-formatted data (`RSA_sign_raw` and
//! `RSA_verify_raw` with `RSA_PKCS1_PADDING`, which add and check the
//! `00 01 FF .. FF 00` padding), and RSASSA-PSS over digests of hashes aws-lc-rs
//! has no encoding for (`RSA_sign_pss_mgf1`, `RSA_verify_pss_mgf1`). aws-lc does
//! the padding and the RSA arithmetic (blinded, constant time); nothing of
//! either is written here.
//!
//! ihsm-crypto, which forbids `unsafe`, reaches these through its `rsa` module
//! only; this crate is nothing but those calls, each block with the reason it
//! holds, so that the FFI is reviewed in one file.

use core::ptr::NonNull;

#[cfg(feature = "fips")]
use aws_lc_fips_sys as sys;
#[cfg(not(feature = "fips"))]
use aws_lc_sys as sys;

/// What went wrong in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// A key's encoding aws-lc did not accept.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// An input of the wrong length.
    #[error("{what}: {actual} bytes where {expected} are required")]
    WrongLength {
        /// What the input is.
        what: &'static str,
        /// The length required (for a PKCS#1 v1.5 input: the most allowed).
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// aws-lc failed where it should not.
    #[error("aws-lc: {0} failed")]
    Internal(&'static str),
    /// A signature that does not verify.
    #[error("signature verification failed")]
    VerificationFailed,
}

/// The digests these signatures are made over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-1 (legacy signatures only, where a partition's policy allows them).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Digest {
    /// The digest's length in bytes.
    #[must_use]
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// An aws-lc `RSA` object this value owns one reference to.
pub struct RawRsa(NonNull<sys::RSA>);

// SAFETY: aws-lc's rsa.h: "A given object may be used concurrently on multiple
// threads by non-mutating functions", and the signing and verification
// functions called here (RSA_sign_raw, RSA_verify_raw, RSA_sign_pss_mgf1,
// RSA_verify_pss_mgf1; RSA_size takes a const pointer) "are considered
// non-mutating for thread-safety purposes and may be used concurrently". The one
// mutating call, RSA_free, is in Drop, which has the value to itself.
unsafe impl Send for RawRsa {}
// SAFETY: as for Send.
unsafe impl Sync for RawRsa {}

impl core::fmt::Debug for RawRsa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // A private key's numbers are never printed.
        f.write_str("RawRsa(..)")
    }
}

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
fn md(hash: Digest) -> Result<*const sys::EVP_MD, RawError> {
    // SAFETY: each returns a pointer to a static, immutable EVP_MD.
    let md = unsafe {
        match hash {
            Digest::Sha1 => sys::EVP_sha1(),
            Digest::Sha224 => sys::EVP_sha224(),
            Digest::Sha256 => sys::EVP_sha256(),
            Digest::Sha384 => sys::EVP_sha384(),
            Digest::Sha512 => sys::EVP_sha512(),
        }
    };
    if md.is_null() {
        return Err(RawError::Internal("aws-lc has no such digest"));
    }
    Ok(md)
}

impl RawRsa {
    /// The key of a PKCS#8 `PrivateKeyInfo` (which aws-lc parses).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, RawError> {
        let bad = RawError::InvalidKey("RSA private (PKCS#8)");
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
    pub fn from_public_pkcs1(der: &[u8]) -> Result<Self, RawError> {
        // SAFETY: reads `der.len()` bytes of `der`; returns a new RSA or null.
        let rsa = unsafe { sys::RSA_public_key_from_bytes(der.as_ptr(), der.len()) };
        NonNull::new(rsa).map(Self).ok_or_else(|| {
            clear_errors();
            RawError::InvalidKey("RSA public (PKCS#1)")
        })
    }

    /// The modulus length in bytes (`k`).
    pub fn size(&self) -> usize {
        // SAFETY: a valid RSA; RSA_size reads it only.
        unsafe { sys::RSA_size(self.0.as_ptr()) as usize }
    }

    /// RSASSA-PKCS1-v1_5 of `data` as it is (`T` of RFC 8017 §9.2: a DigestInfo,
    /// or whatever the caller formatted), at most `k - 11` bytes.
    pub fn sign_pkcs1(&self, data: &[u8]) -> Result<Vec<u8>, RawError> {
        let k = self.size();
        if data.len() + 11 > k {
            return Err(RawError::WrongLength {
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
            return Err(RawError::Internal("RSA PKCS#1 v1.5 signing"));
        }
        Ok(out)
    }

    /// Checks that `sig` is the RSASSA-PKCS1-v1_5 signature of `data` as it is.
    pub fn verify_pkcs1(&self, data: &[u8], sig: &[u8]) -> Result<(), RawError> {
        let k = self.size();
        if sig.len() != k {
            return Err(RawError::VerificationFailed);
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
            return Err(RawError::VerificationFailed);
        }
        // What the padding held is public: a plain comparison.
        if out.get(..len) == Some(data) {
            Ok(())
        } else {
            Err(RawError::VerificationFailed)
        }
    }

    /// RSASSA-PSS of `digest` (of `hash`), MGF1 with `hash`, a salt of the hash's
    /// length.
    pub fn sign_pss(&self, hash: Digest, digest: &[u8]) -> Result<Vec<u8>, RawError> {
        if digest.len() != hash.output_len() {
            return Err(RawError::WrongLength {
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
            return Err(RawError::Internal("RSA-PSS signing"));
        }
        Ok(out)
    }

    /// Checks an RSASSA-PSS signature of `digest` as [`RawRsa::sign_pss`] makes
    /// them.
    pub fn verify_pss(&self, hash: Digest, digest: &[u8], sig: &[u8]) -> Result<(), RawError> {
        if digest.len() != hash.output_len() {
            return Err(RawError::WrongLength {
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
            Err(RawError::VerificationFailed)
        }
    }
}
