//! The module as an application loads it: `dlopen(3)` of the cdylib and its
//! PKCS#11 3.0 function list from `C_GetInterface`, every call through it.

use core::ffi::c_void;
use core::ptr::null_mut;
use std::ffi::CString;
use std::path::Path;

use cryptoki_sys::*;

/// The loaded module and its 3.0 function list.
pub struct Dl {
    handle: *mut c_void,
    /// The function list, valid while the module is loaded.
    pub f: &'static CK_FUNCTION_LIST_3_0,
}

/// Calls a function of the list, which the module always fills in.
#[macro_export]
macro_rules! p11 {
    ($dl:expr, $name:ident ( $($arg:expr),* $(,)? )) => {
        ($dl.f.$name.expect(stringify!($name)))($($arg),*)
    };
}

impl Dl {
    /// Loads the module at `path` (`RTLD_NOW | RTLD_LOCAL`, as OpenSSL's engine and
    /// p11-kit do).
    pub fn load(path: &Path) -> Self {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path; the module's constructors are Rust's,
        // which are sound to run at load.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen {}", path.display());
        // SAFETY: `handle` is a live handle from dlopen, the name NUL-terminated.
        let sym = unsafe { libc::dlsym(handle, c"C_GetInterface".as_ptr()) };
        assert!(!sym.is_null(), "no C_GetInterface");
        // SAFETY: the module exports C_GetInterface with PKCS#11 3.0's signature.
        let get: unsafe extern "C" fn(
            *mut CK_UTF8CHAR,
            *mut CK_VERSION,
            *mut *mut CK_INTERFACE,
            CK_FLAGS,
        ) -> CK_RV = unsafe { core::mem::transmute(sym) };
        let mut name = *b"PKCS 11\0";
        let mut version = CK_VERSION { major: 3, minor: 0 };
        let mut iface: *mut CK_INTERFACE = null_mut();
        // SAFETY: the name is NUL-terminated, the version and the out-pointer live.
        let rv = unsafe { get(name.as_mut_ptr(), &mut version, &mut iface, 0) };
        assert_eq!(rv, CKR_OK, "C_GetInterface");
        // SAFETY: on CKR_OK `iface` points to the module's static interface, whose
        // function list for version 3.0 is a CK_FUNCTION_LIST_3_0 that lives as long
        // as the module stays loaded, which `Dl` keeps it until it drops.
        let f = unsafe { &*(*iface).pFunctionList.cast::<CK_FUNCTION_LIST_3_0>() };
        Self { handle, f }
    }
}

impl Dl {
    /// An exported symbol of the module (for the 3.2 functions, which the 3.0 list
    /// does not hold); null if there is none.
    pub fn sym(&self, name: &core::ffi::CStr) -> *mut c_void {
        // SAFETY: `handle` is live while `self` is, the name NUL-terminated.
        unsafe { libc::dlsym(self.handle, name.as_ptr()) }
    }
}

impl Drop for Dl {
    fn drop(&mut self) {
        // SAFETY: `handle` came from dlopen and is closed once; nothing of the list
        // is used after (`f` goes with `self`).
        unsafe { libc::dlclose(self.handle) };
    }
}
