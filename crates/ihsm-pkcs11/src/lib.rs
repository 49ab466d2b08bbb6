//! `libihsm_pkcs11.so`: the PKCS#11 3.2 module of the ihsm host HSM.
//!
//! A thin client of the daemon through `ihsm-client`: every call becomes a request
//! on the partition's socket, and no key material ever enters the application's
//! process. One slot per partition socket the calling user may open; the token
//! label is the partition's name.
//!
//! Layout: [`ffi`] holds the exported entry points (generated, one shim each);
//! [`api`] the inner functions, which check every pointer and return
//! `Result<(), CK_RV>`; [`guard`] turns that into a `CK_RV` inside `catch_unwind`,
//! so a panic answers `CKR_GENERAL_ERROR` and never unwinds into the host.
//! [`convert`] reads templates and mechanism parameters; [`state`] holds the
//! slots and sessions; [`process`] what a process keeps and what a fork does to
//! it; [`config`] finds the partition sockets.
#![deny(unsafe_op_in_unsafe_fn)]

mod api;
mod config;
mod convert;
pub mod ffi;
mod process;
mod state;

use std::panic::{AssertUnwindSafe, catch_unwind};

use cryptoki_sys::{CK_RV, CKR_GENERAL_ERROR, CKR_OK};

/// The result of an inner function: `Err` carries the `CK_RV` to answer (which
/// is not always an error: `CKR_BUFFER_TOO_SMALL` and the attribute codes come with
/// filled-in lengths).
pub(crate) type R<T = ()> = Result<T, CK_RV>;

/// Runs an inner function; its `CK_RV`, or `CKR_GENERAL_ERROR` if it panicked.
pub(crate) fn guard(f: impl FnOnce() -> R) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(rv)) => rv,
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// Vendor-defined mechanism parameters, for C code using the vendor mechanisms.
pub mod vendor {
    use cryptoki_sys::{CK_BYTE, CK_MECHANISM_TYPE, CK_ULONG};

    pub use ihsm_proto::attr::CKA_IHSM_RELEASE_POLICY;
    pub use ihsm_proto::mech::{
        CKM_IHSM_KEY_RELEASE, CKM_IHSM_KEY_REPORT, CKM_IHSM_MASKED_KEY, CKM_IHSM_TLS13_EXPAND_LABEL,
    };

    /// Parameters of [`CKM_IHSM_TLS13_EXPAND_LABEL`]: HKDF-Expand-Label (RFC 8446
    /// §7.1) from the base key to a new secret key of `CKA_VALUE_LEN` bytes.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    #[allow(non_snake_case)]
    pub struct CK_IHSM_TLS13_EXPAND_LABEL_PARAMS {
        /// `CKM_SHA256` or `CKM_SHA384`: the cipher suite's hash.
        pub prfHashMechanism: CK_MECHANISM_TYPE,
        /// The label, without the "tls13 " prefix.
        pub pLabel: *mut CK_BYTE,
        /// Its length.
        pub ulLabelLen: CK_ULONG,
        /// The context (a transcript hash, or empty).
        pub pContext: *mut CK_BYTE,
        /// Its length.
        pub ulContextLen: CK_ULONG,
    }
}

/// Hooks for the cargo-fuzz targets in `fuzz/`, not an API: the module's readers of
/// what an application passes, without a daemon. Compiled only under cargo-fuzz's
/// `--cfg fuzzing`: a build for use has none of it.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz {
    use std::path::PathBuf;

    use cryptoki_sys::{CK_ATTRIBUTE, CK_RV, CK_ULONG};
    use ihsm_proto::attr::{AttrResult, Attribute};

    /// The template reader of C_CreateObject, C_FindObjectsInit and the others.
    ///
    /// # Safety
    /// As the PKCS#11 caller's: `p` is null or points to `n` attributes whose
    /// values are readable for their lengths.
    ///
    /// # Errors
    /// The `CK_RV` the module answers.
    pub unsafe fn template(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<Vec<Attribute>, CK_RV> {
        // SAFETY: this function's contract is `convert::template`'s, word for word,
        // and the caller keeps it.
        unsafe { crate::convert::template(p, n) }
    }

    /// C_GetAttributeValue's filling of the caller's template with the answers.
    ///
    /// # Safety
    /// `tmpl` points to `results.len()` writable attributes, each `pValue` null or
    /// holding `ulValueLen` writable bytes.
    ///
    /// # Errors
    /// The `CK_RV` the module answers.
    pub unsafe fn fill(tmpl: *mut CK_ATTRIBUTE, results: &[AttrResult]) -> Result<(), CK_RV> {
        // SAFETY: this function's contract is `convert::fill`'s, word for word, and
        // the caller keeps it.
        unsafe { crate::convert::fill(tmpl, results) }
    }

    /// `pkcs11.toml`: the state directory and sockets it names.
    ///
    /// # Errors
    /// What the module reports for a bad file.
    pub fn config(text: &str) -> Result<(Option<PathBuf>, Vec<PathBuf>), String> {
        crate::config::parse(text).map(|f| (f.state, f.sockets))
    }
}
