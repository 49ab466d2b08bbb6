//! General-purpose functions: C_Initialize, C_Finalize, C_GetInfo,
//! C_GetFunctionList, C_GetInterfaceList, C_GetInterface.

use core::ffi::c_void;

use cryptoki_sys::*;

use crate::R;
use crate::convert::{give_list, out, padded, put};
use crate::state;

use super::ctx;

pub(super) const MANUFACTURER: &str = "ihsm";
const LIBRARY: &str = "ihsm PKCS#11 module";
/// The library's own version (of the crate).
pub(super) fn version() -> CK_VERSION {
    CK_VERSION {
        major: env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
        minor: env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
    }
}

pub(crate) unsafe fn initialize(args: *mut c_void) -> R {
    if !args.is_null() {
        // SAFETY: `args` is non-null, and C_Initialize's argument is then a
        // CK_C_INITIALIZE_ARGS (PKCS#11 5.4); read unaligned, by value. Its fields are
        // integers, pointers and Option<fn>s, for which any bits are a value (null is
        // None).
        let a = unsafe { args.cast::<CK_C_INITIALIZE_ARGS>().read_unaligned() };
        if !a.pReserved.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let callbacks = [
            a.CreateMutex.is_some(),
            a.DestroyMutex.is_some(),
            a.LockMutex.is_some(),
            a.UnlockMutex.is_some(),
        ];
        // All four or none.
        if callbacks.iter().any(|x| *x) && !callbacks.iter().all(|x| *x) {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // With or without the application's callbacks, the module locks with the
        // operating system's primitives, which is what CKF_OS_LOCKING_OK allows and
        // what the callbacks would do on every platform ihsm runs on.
    }
    state::initialize()
}

pub(crate) unsafe fn finalize(reserved: *mut c_void) -> R {
    if !reserved.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    state::finalize()
}

pub(crate) unsafe fn get_info(info: *mut CK_INFO) -> R {
    ctx()?;
    // SAFETY: `info` is C_GetInfo's pInfo: null, which `put` refuses, or a writable
    // CK_INFO.
    unsafe {
        put(
            info,
            CK_INFO {
                cryptokiVersion: CK_VERSION { major: 3, minor: 2 },
                manufacturerID: padded(MANUFACTURER),
                flags: 0,
                libraryDescription: padded(LIBRARY),
                libraryVersion: version(),
            },
        )
    }
}

pub(crate) unsafe fn get_function_list(list: *mut *mut CK_FUNCTION_LIST) -> R {
    let p = (&raw const crate::ffi::FUNCTIONS_2_40).cast_mut();
    // SAFETY: `list` is C_GetFunctionList's ppFunctionList: null, which `put` refuses,
    // or writable for one pointer. The pointer written is to a static the module never
    // writes, and PKCS#11 forbids the application to write through it.
    unsafe { put(list, p) }
}

/// The interfaces, newest first.
struct Interfaces([CK_INTERFACE; 3]);
// SAFETY: CK_INTERFACE holds raw pointers, so is not Sync by itself. These point only
// to `NAME`, a constant, and to ffi's function-list statics, none of which anything
// writes (the module never does, PKCS#11 forbids the application to): threads sharing
// them only read.
unsafe impl Sync for Interfaces {}

const NAME: &[u8; 8] = b"PKCS 11\0";

static INTERFACES: Interfaces = Interfaces([
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr().cast_mut(),
        pFunctionList: (&raw const crate::ffi::FUNCTIONS_3_2).cast_mut().cast(),
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr().cast_mut(),
        pFunctionList: (&raw const crate::ffi::FUNCTIONS_3_0).cast_mut().cast(),
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr().cast_mut(),
        pFunctionList: (&raw const crate::ffi::FUNCTIONS_2_40).cast_mut().cast(),
        flags: 0,
    },
]);

/// The version of an interface's function list.
///
/// # Safety
/// `i.pFunctionList` points to a function list (which starts with its version).
unsafe fn interface_version(i: &CK_INTERFACE) -> CK_VERSION {
    // SAFETY: the caller promises `i.pFunctionList` points to a function list, whose
    // first field is its CK_VERSION: aligned, initialized, and never written.
    unsafe { i.pFunctionList.cast::<CK_VERSION>().read() }
}

pub(crate) unsafe fn get_interface_list(list: *mut CK_INTERFACE, n: *mut CK_ULONG) -> R {
    // SAFETY: `n` is C_GetInterfaceList's pulCount (`give_list` refuses it null, else
    // readable and writable) and `list` null or room for `*n` CK_INTERFACEs:
    // `give_list`'s contract.
    unsafe { give_list(&INTERFACES.0, list, n) }
}

pub(crate) unsafe fn get_interface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    iface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> R {
    out(iface)?;
    if flags != 0 {
        // No interface has flags (none is fork-safe by contract).
        return Err(CKR_ARGUMENTS_BAD);
    }
    if !name.is_null() {
        // SAFETY: `name` is non-null, and C_GetInterface's pInterfaceName is then a
        // NUL-terminated string (PKCS#11 5.4), not written while the call reads it.
        let n = unsafe { core::ffi::CStr::from_ptr(name.cast::<core::ffi::c_char>()) };
        if n.to_bytes() != b"PKCS 11" {
            return Err(CKR_ARGUMENTS_BAD);
        }
    }
    let wanted = if version.is_null() {
        None
    } else {
        // SAFETY: `version` is non-null, and C_GetInterface's pVersion then points to a
        // CK_VERSION (two bytes); read by value.
        Some(unsafe { version.read_unaligned() })
    };
    let found = INTERFACES
        .0
        .iter()
        .find(|i| {
            wanted.is_none_or(|w| {
                // SAFETY: `i` is an element of INTERFACES, each of which points
                // pFunctionList at one of ffi's function-list statics.
                let v = unsafe { interface_version(i) };
                v.major == w.major && v.minor == w.minor
            })
        })
        .ok_or(CKR_ARGUMENTS_BAD)?;
    // SAFETY: `iface` is C_GetInterface's ppInterface, checked non-null by `out` above
    // and writable for one pointer; the pointer written is to an element of INTERFACES,
    // a static.
    unsafe { put(iface, core::ptr::from_ref(found).cast_mut()) }
}
