//! The inner functions behind the exported entry points: check the arguments,
//! translate, call the daemon, translate back. `Err` carries the `CK_RV`.
//!
//! # Safety
//! Every function here is `unsafe` because it dereferences the raw pointers the
//! application passed; each checks them for null before use and relies, as the
//! PKCS#11 specification does, on the application for their extent.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use core::ffi::c_void;

use cryptoki_sys::*;
use ihsm_client::Client;
use ihsm_proto::SecretBytes;
use ihsm_proto::mech::{CKM_IHSM_MASKED_KEY, Mechanism};
use ihsm_proto::types::{SessionState, UserType};
use zeroize::Zeroizing;

use crate::R;
use crate::convert::{
    bytes, count, fill, give, give_list, items, mechanism, no_message_param, out, padded, put,
    template,
};
use crate::state::{self, Kind, Module, Op, Pending, Session, Started, module};

const MANUFACTURER: &str = "ihsm";
const LIBRARY: &str = "ihsm PKCS#11 module";
/// The library's own version (of the crate).
fn version() -> CK_VERSION {
    CK_VERSION {
        major: env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
        minor: env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
    }
}

fn ctx() -> R<std::sync::Arc<Module>> {
    module()
}

fn sess(m: &Module, h: CK_SESSION_HANDLE) -> R<std::sync::Arc<Session>> {
    m.session(h)
}

/// Produces an output once and hands it out under PKCS#11's two-call convention:
/// a length query or a short buffer keeps it for the next call, which must be the
/// same call with the same input.
unsafe fn output(
    s: &Session,
    op: Op,
    buf: *mut CK_BYTE,
    len: *mut CK_ULONG,
    produce: impl FnOnce() -> R<Zeroizing<Vec<u8>>>,
) -> R {
    out(len)?;
    let data = {
        let mut st = s.state()?;
        match st.pending.take() {
            Some(p) if p.op == op => p.data,
            _ => {
                drop(st);
                produce()?
            }
        }
    };
    // SAFETY: `len` checked; `buf` is null or holds `*len` bytes (the caller).
    match unsafe { give(&data, buf, len) } {
        Ok(()) if !buf.is_null() => Ok(()),
        r => {
            s.state()?.pending = Some(Pending {
                op,
                data,
                handle: CK_INVALID_HANDLE,
            });
            r
        }
    }
}

fn plain(v: Vec<u8>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(v)
}

// ---- general -------------------------------------------------------------------

pub(crate) unsafe fn initialize(args: *mut c_void) -> R {
    if !args.is_null() {
        // SAFETY: non-null; the application passes a CK_C_INITIALIZE_ARGS.
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
    // SAFETY: checked inside `put`.
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
    // SAFETY: checked inside `put`; the list is static and never written through.
    unsafe { put(list, p) }
}

/// The interfaces, newest first.
struct Interfaces([CK_INTERFACE; 3]);
// SAFETY: the pointers inside point to immutable statics.
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

fn interface_version(i: &CK_INTERFACE) -> CK_VERSION {
    // SAFETY: every pFunctionList above points to a function list, which starts
    // with its CK_VERSION.
    unsafe { i.pFunctionList.cast::<CK_VERSION>().read() }
}

pub(crate) unsafe fn get_interface_list(list: *mut CK_INTERFACE, n: *mut CK_ULONG) -> R {
    // SAFETY: checked inside `give_list`.
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
        // SAFETY: a NUL-terminated string, as the specification says.
        let n = unsafe { core::ffi::CStr::from_ptr(name.cast::<core::ffi::c_char>()) };
        if n.to_bytes() != b"PKCS 11" {
            return Err(CKR_ARGUMENTS_BAD);
        }
    }
    let wanted = if version.is_null() {
        None
    } else {
        // SAFETY: non-null.
        Some(unsafe { version.read_unaligned() })
    };
    let found = INTERFACES
        .0
        .iter()
        .find(|i| {
            wanted.is_none_or(|w| {
                let v = interface_version(i);
                v.major == w.major && v.minor == w.minor
            })
        })
        .ok_or(CKR_ARGUMENTS_BAD)?;
    // SAFETY: checked; the interface is static.
    unsafe { put(iface, core::ptr::from_ref(found).cast_mut()) }
}

// ---- slots and tokens ------------------------------------------------------------

pub(crate) unsafe fn get_slot_list(
    _present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    n: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let ids: Vec<CK_SLOT_ID> = (0..m.slots.len() as CK_SLOT_ID).collect();
    // SAFETY: checked inside.
    unsafe { give_list(&ids, list, n) }
}

pub(crate) unsafe fn get_slot_info(id: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> R {
    let m = ctx()?;
    let slot = m.slot(id)?;
    // SAFETY: checked inside.
    unsafe {
        put(
            info,
            CK_SLOT_INFO {
                slotDescription: padded(&format!("ihsm partition {}", slot.name)),
                manufacturerID: padded(MANUFACTURER),
                flags: CKF_TOKEN_PRESENT | CKF_HW_SLOT,
                hardwareVersion: version(),
                firmwareVersion: version(),
            },
        )
    }
}

pub(crate) unsafe fn get_token_info(id: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> R {
    let m = ctx()?;
    out(info)?;
    let slot = m.slot(id)?;
    let p = slot.call(Client::info)?;
    let (sessions, rw) = m.slot_sessions(id)?;
    let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED;
    if p.user_pin_initialized {
        flags |= CKF_USER_PIN_INITIALIZED;
    }
    if p.user_pin_locked {
        flags |= CKF_USER_PIN_LOCKED;
    }
    if p.so_pin_locked {
        flags |= CKF_SO_PIN_LOCKED;
    }
    // SAFETY: checked above.
    unsafe {
        put(
            info,
            CK_TOKEN_INFO {
                label: padded(&p.name),
                manufacturerID: padded(MANUFACTURER),
                model: padded("ihsm partition"),
                serialNumber: padded(&format!("{:016}", p.id)),
                flags,
                ulMaxSessionCount: CK_ULONG::from(p.quotas.max_sessions),
                ulSessionCount: sessions,
                ulMaxRwSessionCount: CK_ULONG::from(p.quotas.max_sessions),
                ulRwSessionCount: rw,
                ulMaxPinLen: ihsm_proto_pin_max(),
                ulMinPinLen: 4,
                ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
                ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
                ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
                ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
                hardwareVersion: version(),
                firmwareVersion: version(),
                utcTime: [b' '; 16],
            },
        )
    }
}

/// The longest PIN the HSM takes.
fn ihsm_proto_pin_max() -> CK_ULONG {
    256
}

pub(crate) unsafe fn get_mechanism_list(
    id: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    n: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let mechs: Vec<CK_MECHANISM_TYPE> = m
        .slot(id)?
        .mechanisms()?
        .iter()
        .map(|x| x.mechanism)
        .collect();
    // SAFETY: checked inside.
    unsafe { give_list(&mechs, list, n) }
}

pub(crate) unsafe fn get_mechanism_info(
    id: CK_SLOT_ID,
    ty: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> R {
    let m = ctx()?;
    out(info)?;
    let mi = m
        .slot(id)?
        .mechanisms()?
        .into_iter()
        .find(|x| x.mechanism == ty)
        .ok_or(CKR_MECHANISM_INVALID)?;
    // SAFETY: checked above.
    unsafe {
        put(
            info,
            CK_MECHANISM_INFO {
                ulMinKeySize: mi.min_key,
                ulMaxKeySize: mi.max_key,
                flags: mi.flags,
            },
        )
    }
}

pub(crate) unsafe fn init_token(
    id: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> R {
    let m = ctx()?;
    let slot = m.slot(id)?;
    // SAFETY: the caller's promise.
    let pin = unsafe { bytes(pin, len) }?;
    if label.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    if m.slot_sessions(id)?.0 > 0 {
        return Err(CKR_SESSION_EXISTS);
    }
    slot.call(|c| c.init_token(pin))
}

// ---- sessions ----------------------------------------------------------------------

pub(crate) unsafe fn open_session(
    id: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    h: *mut CK_SESSION_HANDLE,
) -> R {
    let m = ctx()?;
    out(h)?;
    let slot = m.slot(id)?;
    if flags & CKF_SERIAL_SESSION == 0 {
        return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    }
    let rw = flags & CKF_RW_SESSION != 0;
    let remote = slot.call(|c| c.open_session(rw))?;
    let handle = m.add_session(Session {
        slot: id,
        remote,
        rw,
        state: std::sync::Mutex::new(Default::default()),
    })?;
    // SAFETY: checked above.
    unsafe { put(h, handle) }
}

pub(crate) unsafe fn close_session(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let r = m.call(&s, |c, r| c.close_session(r));
    m.remove_session(h)?;
    // The HSM no longer knows it (a broken connection): closed all the same.
    match r {
        Err(CKR_SESSION_HANDLE_INVALID | CKR_DEVICE_ERROR | CKR_DEVICE_REMOVED) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) unsafe fn close_all_sessions(id: CK_SLOT_ID) -> R {
    let m = ctx()?;
    let slot = m.slot(id)?;
    let r = slot.call(Client::close_all_sessions);
    m.remove_slot_sessions(id)?;
    match r {
        Err(CKR_DEVICE_ERROR | CKR_DEVICE_REMOVED) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) unsafe fn get_session_info(h: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> R {
    let m = ctx()?;
    out(info)?;
    let s = sess(&m, h)?;
    let st = m.call(&s, |c, r| c.session_state(r))?;
    let state = match st {
        SessionState::ReadOnlyPublic => CKS_RO_PUBLIC_SESSION,
        SessionState::ReadOnlyUser => CKS_RO_USER_FUNCTIONS,
        SessionState::ReadWritePublic => CKS_RW_PUBLIC_SESSION,
        SessionState::ReadWriteUser => CKS_RW_USER_FUNCTIONS,
        SessionState::ReadWriteSecurityOfficer => CKS_RW_SO_FUNCTIONS,
    };
    let flags = CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 };
    // SAFETY: checked above.
    unsafe {
        put(
            info,
            CK_SESSION_INFO {
                slotID: s.slot,
                state,
                flags,
                ulDeviceError: 0,
            },
        )
    }
}

pub(crate) unsafe fn login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let user = match user {
        CKU_SO => UserType::SecurityOfficer,
        CKU_USER => UserType::User,
        // No key needs a context-specific login (CKA_ALWAYS_AUTHENTICATE is refused).
        CKU_CONTEXT_SPECIFIC => return Err(CKR_OPERATION_NOT_INITIALIZED),
        _ => return Err(CKR_USER_TYPE_INVALID),
    };
    if pin.is_null() {
        // No protected authentication path.
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: the caller's promise.
    let pin = unsafe { bytes(pin, len) }?;
    m.call(&s, |c, r| c.login(r, user, pin))
}

pub(crate) unsafe fn logout(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    m.slot(s.slot)?.forget(None);
    m.call(&s, |c, r| c.logout(r))
}

pub(crate) unsafe fn init_pin(h: CK_SESSION_HANDLE, pin: *mut CK_UTF8CHAR, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    if pin.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: the caller's promise.
    let pin = unsafe { bytes(pin, len) }?;
    m.call(&s, |c, r| c.init_pin(r, pin))
}

pub(crate) unsafe fn set_pin(
    h: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    if old.is_null() || new.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: the caller's promise.
    let (old, new) = unsafe { (bytes(old, old_len)?, bytes(new, new_len)?) };
    m.call(&s, |c, r| c.set_pin(r, old, new))
}

// ---- objects -----------------------------------------------------------------------

pub(crate) unsafe fn create_object(
    h: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    obj: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(obj)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    let handle = m.call(&s, |c, r| c.create_object(r, t))?;
    // SAFETY: checked above.
    unsafe { put(obj, handle) }
}

pub(crate) unsafe fn copy_object(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    new: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(new)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    let handle = m.call(&s, |c, r| c.copy_object(r, obj, t))?;
    // SAFETY: checked above.
    unsafe { put(new, handle) }
}

pub(crate) unsafe fn destroy_object(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    m.slot(s.slot)?.forget(Some(obj));
    m.call(&s, |c, r| c.destroy_object(r, obj))
}

pub(crate) unsafe fn get_object_size(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    out(size)?;
    let s = sess(&m, h)?;
    // The handle must name an object; its size in the store is not meaningful.
    m.call(&s, |c, r| c.get_attributes(r, obj, vec![CKA_CLASS]))?;
    // SAFETY: checked above.
    unsafe { put(size, CK_UNAVAILABLE_INFORMATION) }
}

pub(crate) unsafe fn get_attribute_value(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let n = count(n)?;
    if n > 0 && tmpl.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: the caller's promise.
    let types: Vec<CK_ATTRIBUTE_TYPE> = unsafe { items(tmpl, n as CK_ULONG) }?
        .iter()
        .map(|a| a.type_)
        .collect();
    let results = m.call(&s, |c, r| c.get_attributes(r, obj, types))?;
    if results.len() != n {
        return Err(CKR_GENERAL_ERROR);
    }
    // SAFETY: `n` attributes the caller passed, writable (the spec).
    unsafe { fill(tmpl, &results) }
}

pub(crate) unsafe fn set_attribute_value(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    m.slot(s.slot)?.forget(Some(obj));
    m.call(&s, |c, r| c.set_attributes(r, obj, t))
}

pub(crate) unsafe fn find_objects_init(
    h: CK_SESSION_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    if s.state()?.find.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    let found = m.call(&s, |c, r| c.find(r, t))?;
    s.state()?.find = Some((found, 0));
    Ok(())
}

pub(crate) unsafe fn find_objects(
    h: CK_SESSION_HANDLE,
    objs: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    n: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    out(n)?;
    let s = sess(&m, h)?;
    let max = count(max)?;
    if max > 0 && objs.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let mut st = s.state()?;
    let (found, at) = st.find.as_mut().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
    let take = (found.len() - *at).min(max);
    // SAFETY: `objs` holds `max` >= `take` handles (the caller).
    unsafe { core::ptr::copy_nonoverlapping(found[*at..].as_ptr(), objs, take) };
    *at += take;
    // SAFETY: checked above.
    unsafe { put(n, take as CK_ULONG) }
}

pub(crate) unsafe fn find_objects_final(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    s.state()?
        .find
        .take()
        .map(|_| ())
        .ok_or(CKR_OPERATION_NOT_INITIALIZED)
}

// ---- encryption ---------------------------------------------------------------------

unsafe fn crypt_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    encrypt: bool,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let mech = unsafe { mechanism(mech) }?;
    if encrypt {
        return start(&m, &s, Kind::Encrypt, mech, key);
    }
    s.state()?.pending = None;
    m.call(&s, |c, r| c.crypt_init(r, mech, key, encrypt))
}

/// C_SignInit and C_EncryptInit: asks the HSM, unless it accepted the same start
/// before, in which case the start travels with the data (one round trip, not
/// two). A key destroyed or changed since, by this application, is forgotten; by
/// another, its error comes with the data, as it would from any HSM when a key
/// goes between the start and the data.
fn start(m: &Module, s: &Session, kind: Kind, mech: Mechanism, key: CK_OBJECT_HANDLE) -> R {
    let slot = m.slot(s.slot)?;
    let started = Started::new(kind, key, &mech);
    {
        let mut st = s.state()?;
        st.pending = None;
        if st.deferred.as_ref().is_some_and(|(k, ..)| *k == kind) {
            return Err(CKR_OPERATION_ACTIVE);
        }
        if !st.remote_active && slot.accepted(&started) {
            st.deferred = Some((kind, mech, key));
            return Ok(());
        }
    }
    match kind {
        Kind::Sign => m.call(s, |c, r| c.sign_init(r, mech, key, false))?,
        Kind::Encrypt => m.call(s, |c, r| c.crypt_init(r, mech, key, true))?,
    }
    s.state()?.remote_active = true;
    slot.accept(started);
    Ok(())
}

/// The deferred start of `kind`, if any, taken.
fn deferred(s: &Session, kind: Kind) -> R<Option<(Mechanism, CK_OBJECT_HANDLE)>> {
    let mut st = s.state()?;
    Ok(match st.deferred.take() {
        Some((k, mech, key)) if k == kind => Some((mech, key)),
        other => {
            st.deferred = other;
            None
        }
    })
}

/// Before a multi-part call: a deferred start is made in the HSM now.
fn materialize(m: &Module, s: &Session, kind: Kind) -> R {
    if let Some((mech, key)) = deferred(s, kind)? {
        match kind {
            Kind::Sign => m.call(s, |c, r| c.sign_init(r, mech, key, false))?,
            Kind::Encrypt => m.call(s, |c, r| c.crypt_init(r, mech, key, true))?,
        }
        s.state()?.remote_active = true;
    }
    Ok(())
}

/// After a one-part call or a final: nothing is under way in the HSM.
fn finished<T>(s: &Session, r: R<T>) -> R<T> {
    if r.is_ok() {
        s.state()?.remote_active = false;
    }
    r
}

pub(crate) unsafe fn encrypt_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: the caller's promise.
    unsafe { crypt_init(h, mech, key, true) }
}

pub(crate) unsafe fn decrypt_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: the caller's promise.
    unsafe { crypt_init(h, mech, key, false) }
}

pub(crate) unsafe fn encrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    ct: *mut CK_BYTE,
    ct_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::Encrypt, ct, ct_len, || {
            let r = match deferred(&s, Kind::Encrypt)? {
                Some((mech, key)) => m.call(&s, |c, r| c.encrypt_once(r, mech, key, data)),
                None => m.call(&s, |c, r| c.encrypt(r, data)),
            };
            finished(&s, r.map(|(d, _)| plain(d)))
        })
    }
}

pub(crate) unsafe fn encrypt_update(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    ct: *mut CK_BYTE,
    ct_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::EncryptUpdate, ct, ct_len, || {
            materialize(&m, &s, Kind::Encrypt)?;
            m.call(&s, |c, r| c.crypt_update(r, data, true))
                .map(SecretBytes::into_zeroizing)
        })
    }
}

pub(crate) unsafe fn encrypt_final(
    h: CK_SESSION_HANDLE,
    ct: *mut CK_BYTE,
    ct_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::EncryptFinal, ct, ct_len, || {
            materialize(&m, &s, Kind::Encrypt)?;
            finished(&s, m.call(&s, |c, r| c.encrypt_final(r)).map(plain))
        })
    }
}

pub(crate) unsafe fn decrypt(
    h: CK_SESSION_HANDLE,
    ct: *mut CK_BYTE,
    len: CK_ULONG,
    data: *mut CK_BYTE,
    data_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let ct = unsafe { bytes(ct, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::Decrypt, data, data_len, || {
            m.call(&s, |c, r| c.decrypt(r, ct.to_vec()))
                .map(SecretBytes::into_zeroizing)
        })
    }
}

pub(crate) unsafe fn decrypt_update(
    h: CK_SESSION_HANDLE,
    ct: *mut CK_BYTE,
    len: CK_ULONG,
    data: *mut CK_BYTE,
    data_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let ct = unsafe { bytes(ct, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::DecryptUpdate, data, data_len, || {
            m.call(&s, |c, r| c.crypt_update(r, ct, false))
                .map(SecretBytes::into_zeroizing)
        })
    }
}

pub(crate) unsafe fn decrypt_final(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::DecryptFinal, data, data_len, || {
            m.call(&s, |c, r| c.decrypt_final(r))
                .map(SecretBytes::into_zeroizing)
        })
    }
}

// ---- digests -----------------------------------------------------------------------

pub(crate) unsafe fn digest_init(h: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let mech = unsafe { mechanism(mech) }?;
    s.state()?.pending = None;
    m.call(&s, |c, r| c.digest_init(r, mech))
}

pub(crate) unsafe fn digest(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    md: *mut CK_BYTE,
    md_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::Digest, md, md_len, || {
            m.call(&s, |c, r| {
                c.digest_update(r, data.to_vec())?;
                c.digest_final(r)
            })
            .map(plain)
        })
    }
}

pub(crate) unsafe fn digest_update(h: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    m.call(&s, |c, r| c.digest_update(r, data.to_vec()))
}

pub(crate) unsafe fn digest_final(
    h: CK_SESSION_HANDLE,
    md: *mut CK_BYTE,
    md_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::DigestFinal, md, md_len, || {
            m.call(&s, |c, r| c.digest_final(r)).map(plain)
        })
    }
}

// ---- signatures ---------------------------------------------------------------------

unsafe fn sign_or_verify_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    verify: bool,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let mech = unsafe { mechanism(mech) }?;
    if !verify {
        return start(&m, &s, Kind::Sign, mech, key);
    }
    s.state()?.pending = None;
    m.call(&s, |c, r| c.sign_init(r, mech, key, verify))
}

pub(crate) unsafe fn sign_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: the caller's promise.
    unsafe { sign_or_verify_init(h, mech, key, false) }
}

pub(crate) unsafe fn verify_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: the caller's promise.
    unsafe { sign_or_verify_init(h, mech, key, true) }
}

pub(crate) unsafe fn sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::Sign, sig, sig_len, || {
            let r = match deferred(&s, Kind::Sign)? {
                Some((mech, key)) => m.call(&s, |c, r| c.sign_once(r, mech, key, data.to_vec())),
                None => m.call(&s, |c, r| c.sign(r, data.to_vec())),
            };
            finished(&s, r.map(plain))
        })
    }
}

pub(crate) unsafe fn sign_update(h: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    materialize(&m, &s, Kind::Sign)?;
    m.call(&s, |c, r| c.sign_update(r, data.to_vec(), false))
}

pub(crate) unsafe fn sign_final(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::SignFinal, sig, sig_len, || {
            materialize(&m, &s, Kind::Sign)?;
            finished(&s, m.call(&s, |c, r| c.sign_final(r)).map(plain))
        })
    }
}

pub(crate) unsafe fn verify(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (data, sig) = unsafe { (bytes(data, len)?, bytes(sig, sig_len)?) };
    m.call(&s, |c, r| c.verify(r, data.to_vec(), sig.to_vec()))
}

pub(crate) unsafe fn verify_update(h: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    m.call(&s, |c, r| c.sign_update(r, data.to_vec(), true))
}

pub(crate) unsafe fn verify_final(h: CK_SESSION_HANDLE, sig: *mut CK_BYTE, sig_len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let sig = unsafe { bytes(sig, sig_len) }?;
    m.call(&s, |c, r| c.verify_final(r, sig.to_vec()))
}

// ---- PKCS#11 3.2: signature given at initialization -----------------------------------

pub(crate) unsafe fn verify_signature_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (mech, sig) = unsafe { (mechanism(mech)?, bytes(sig, sig_len)?.to_vec()) };
    if s.state()?.signature.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    m.call(&s, |c, r| c.sign_init(r, mech, key, true))?;
    s.state()?.signature = Some(sig);
    Ok(())
}

fn take_signature(s: &Session) -> R<Vec<u8>> {
    s.state()?
        .signature
        .take()
        .ok_or(CKR_OPERATION_NOT_INITIALIZED)
}

pub(crate) unsafe fn verify_signature(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    let sig = take_signature(&s)?;
    m.call(&s, |c, r| c.verify(r, data.to_vec(), sig))
}

pub(crate) unsafe fn verify_signature_update(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    if s.state()?.signature.is_none() {
        return Err(CKR_OPERATION_NOT_INITIALIZED);
    }
    let r = m.call(&s, |c, r| c.sign_update(r, data.to_vec(), true));
    if r.is_err() {
        s.state()?.signature = None;
    }
    r
}

pub(crate) unsafe fn verify_signature_final(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let sig = take_signature(&s)?;
    m.call(&s, |c, r| c.verify_final(r, sig))
}

// ---- PKCS#11 3.0 message-based signatures ---------------------------------------------

unsafe fn message_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    verify: bool,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let mech = unsafe { mechanism(mech) }?;
    let mut st = s.state()?;
    if st.message.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    st.message = Some((mech, key, verify));
    st.message_part = false;
    Ok(())
}

fn message(s: &Session, verify: bool) -> R<(Mechanism, CK_OBJECT_HANDLE)> {
    match &s.state()?.message {
        Some((m, k, v)) if *v == verify => Ok((m.clone(), *k)),
        _ => Err(CKR_OPERATION_NOT_INITIALIZED),
    }
}

pub(crate) unsafe fn message_sign_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: the caller's promise.
    unsafe { message_init(h, mech, key, false) }
}

pub(crate) unsafe fn message_verify_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: the caller's promise.
    unsafe { message_init(h, mech, key, true) }
}

pub(crate) unsafe fn sign_message(
    h: CK_SESSION_HANDLE,
    param: *mut c_void,
    param_len: CK_ULONG,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    no_message_param(param, param_len)?;
    let (mech, key) = message(&s, false)?;
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: the caller's promise.
    unsafe {
        output(&s, Op::SignMessage, sig, sig_len, || {
            m.call(&s, |c, r| c.sign_once(r, mech, key, data.to_vec()))
                .map(plain)
        })
    }
}

/// The start of a message signed or verified in parts.
fn message_begin(h: CK_SESSION_HANDLE, param: *mut c_void, param_len: CK_ULONG, verify: bool) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    no_message_param(param, param_len)?;
    let (mech, key) = message(&s, verify)?;
    m.call(&s, |c, r| c.sign_init(r, mech, key, verify))?;
    s.state()?.message_part = true;
    Ok(())
}

pub(crate) unsafe fn sign_message_begin(
    h: CK_SESSION_HANDLE,
    param: *mut c_void,
    param_len: CK_ULONG,
) -> R {
    message_begin(h, param, param_len, false)
}

pub(crate) unsafe fn sign_message_next(
    h: CK_SESSION_HANDLE,
    param: *mut c_void,
    param_len: CK_ULONG,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    no_message_param(param, param_len)?;
    message(&s, false)?;
    if !s.state()?.message_part {
        return Err(CKR_OPERATION_NOT_INITIALIZED);
    }
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    if sig_len.is_null() {
        // Not the last part.
        return m.call(&s, |c, r| c.sign_update(r, data.to_vec(), false));
    }
    // SAFETY: the caller's promise.
    let r = unsafe {
        output(&s, Op::SignMessageNext, sig, sig_len, || {
            m.call(&s, |c, r| {
                c.sign_update(r, data.to_vec(), false)?;
                c.sign_final(r)
            })
            .map(plain)
        })
    };
    if !sig.is_null() && r.is_ok() {
        s.state()?.message_part = false;
    }
    r
}

/// The end of a message-based operation; it must be the kind the session began.
fn message_final(h: CK_SESSION_HANDLE, verify: bool) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let mut st = s.state()?;
    if !matches!(&st.message, Some((_, _, v)) if *v == verify) {
        return Err(CKR_OPERATION_NOT_INITIALIZED);
    }
    st.message = None;
    st.message_part = false;
    Ok(())
}

pub(crate) unsafe fn message_sign_final(h: CK_SESSION_HANDLE) -> R {
    message_final(h, false)
}

pub(crate) unsafe fn verify_message(
    h: CK_SESSION_HANDLE,
    param: *mut c_void,
    param_len: CK_ULONG,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    no_message_param(param, param_len)?;
    let (mech, key) = message(&s, true)?;
    // SAFETY: the caller's promise.
    let (data, sig) = unsafe { (bytes(data, len)?, bytes(sig, sig_len)?) };
    m.call(&s, |c, r| {
        c.sign_init(r, mech, key, true)?;
        c.verify(r, data.to_vec(), sig.to_vec())
    })
}

pub(crate) unsafe fn verify_message_begin(
    h: CK_SESSION_HANDLE,
    param: *mut c_void,
    param_len: CK_ULONG,
) -> R {
    message_begin(h, param, param_len, true)
}

pub(crate) unsafe fn verify_message_next(
    h: CK_SESSION_HANDLE,
    param: *mut c_void,
    param_len: CK_ULONG,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    no_message_param(param, param_len)?;
    message(&s, true)?;
    if !s.state()?.message_part {
        return Err(CKR_OPERATION_NOT_INITIALIZED);
    }
    // SAFETY: the caller's promise.
    let data = unsafe { bytes(data, len) }?;
    m.call(&s, |c, r| c.sign_update(r, data.to_vec(), true))?;
    if sig.is_null() {
        return Ok(());
    }
    s.state()?.message_part = false;
    // SAFETY: the caller's promise.
    let sig = unsafe { bytes(sig, sig_len) }?;
    m.call(&s, |c, r| c.verify_final(r, sig.to_vec()))
}

pub(crate) unsafe fn message_verify_final(h: CK_SESSION_HANDLE) -> R {
    message_final(h, true)
}

// ---- keys ------------------------------------------------------------------------------

pub(crate) unsafe fn generate_key(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(key)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (mech, t) = unsafe { (mechanism(mech)?, template(tmpl, n)?) };
    let k = m.call(&s, |c, r| c.generate_key(r, mech, t))?;
    // SAFETY: checked above.
    unsafe { put(key, k) }
}

pub(crate) unsafe fn generate_key_pair(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    pub_t: *mut CK_ATTRIBUTE,
    pub_n: CK_ULONG,
    priv_t: *mut CK_ATTRIBUTE,
    priv_n: CK_ULONG,
    pub_h: *mut CK_OBJECT_HANDLE,
    priv_h: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(pub_h)?;
    out(priv_h)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (mech, pt, st) = unsafe {
        (
            mechanism(mech)?,
            template(pub_t, pub_n)?,
            template(priv_t, priv_n)?,
        )
    };
    let (pk, sk) = m.call(&s, |c, r| c.generate_key_pair(r, mech, pt, st))?;
    // SAFETY: checked above.
    unsafe {
        put(pub_h, pk)?;
        put(priv_h, sk)
    }
}

pub(crate) unsafe fn wrap_key(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    wrapped: *mut CK_BYTE,
    wrapped_len: *mut CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    if mech.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null, a CK_MECHANISM (the caller).
    let masked = unsafe { mech.read_unaligned() }.mechanism == CKM_IHSM_MASKED_KEY;
    let produce = || -> R<Zeroizing<Vec<u8>>> {
        if masked {
            // The partition's masking key wraps; the wrapping-key handle is not
            // used (CK_INVALID_HANDLE by convention).
            return m.call(&s, |c, r| c.export_masked(r, key)).map(plain);
        }
        // SAFETY: the caller's promise.
        let mech = unsafe { mechanism(mech) }?;
        m.call(&s, |c, r| c.wrap_key(r, mech, wrapping, key))
            .map(plain)
    };
    // SAFETY: the caller's promise.
    unsafe { output(&s, Op::Wrap, wrapped, wrapped_len, produce) }
}

pub(crate) unsafe fn unwrap_key(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    unwrapping: CK_OBJECT_HANDLE,
    wrapped: *mut CK_BYTE,
    wrapped_len: CK_ULONG,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(key)?;
    let s = sess(&m, h)?;
    if mech.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: the caller's promise.
    let wrapped = unsafe { bytes(wrapped, wrapped_len) }?.to_vec();
    // SAFETY: the caller's promise.
    let t = unsafe { template(tmpl, n) }?;
    // SAFETY: non-null, a CK_MECHANISM (the caller).
    let k = if unsafe { mech.read_unaligned() }.mechanism == CKM_IHSM_MASKED_KEY {
        // The unwrapping-key handle is not used, as for wrapping.
        if !t.is_empty() {
            // A masked key brings its own attributes.
            return Err(CKR_TEMPLATE_INCONSISTENT);
        }
        m.call(&s, |c, r| c.import_masked(r, wrapped))?
    } else {
        // SAFETY: the caller's promise.
        let mech = unsafe { mechanism(mech) }?;
        m.call(&s, |c, r| c.unwrap_key(r, mech, unwrapping, wrapped, t))?
    };
    // SAFETY: checked above.
    unsafe { put(key, k) }
}

pub(crate) unsafe fn derive_key(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(key)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (mech, t) = unsafe { (mechanism(mech)?, template(tmpl, n)?) };
    let k = m.call(&s, |c, r| c.derive_key(r, mech, base, t))?;
    // SAFETY: checked above.
    unsafe { put(key, k) }
}

pub(crate) unsafe fn encapsulate_key(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    public: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    ct: *mut CK_BYTE,
    ct_len: *mut CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(ct_len)?;
    out(key)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (mech, t) = unsafe { (mechanism(mech)?, template(tmpl, n)?) };
    // The encapsulation makes the secret object: done once, kept for the call
    // that fetches the ciphertext.
    let (data, handle) = {
        let mut st = s.state()?;
        match st.pending.take() {
            Some(p) if p.op == Op::Encapsulate => (p.data, p.handle),
            _ => {
                drop(st);
                let (c, k) = m.call(&s, |c, r| c.encapsulate(r, mech, public, t))?;
                (plain(c), k)
            }
        }
    };
    // SAFETY: checked above; `ct` is null or holds `*ct_len` bytes.
    match unsafe { give(&data, ct, ct_len) } {
        Ok(()) if !ct.is_null() => {
            // SAFETY: checked above.
            unsafe { put(key, handle) }
        }
        r => {
            s.state()?.pending = Some(Pending {
                op: Op::Encapsulate,
                data,
                handle,
            });
            r
        }
    }
}

pub(crate) unsafe fn decapsulate_key(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    private: CK_OBJECT_HANDLE,
    tmpl: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    ct: *mut CK_BYTE,
    ct_len: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> R {
    let m = ctx()?;
    out(key)?;
    let s = sess(&m, h)?;
    // SAFETY: the caller's promise.
    let (mech, t, ct) = unsafe {
        (
            mechanism(mech)?,
            template(tmpl, n)?,
            bytes(ct, ct_len)?.to_vec(),
        )
    };
    let k = m.call(&s, |c, r| c.decapsulate(r, mech, private, ct, t))?;
    // SAFETY: checked above.
    unsafe { put(key, k) }
}

// ---- random and the rest ----------------------------------------------------------------

pub(crate) unsafe fn seed_random(h: CK_SESSION_HANDLE, seed: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    sess(&m, h)?;
    // SAFETY: the caller's promise.
    unsafe { bytes(seed, len) }?;
    // The HSM's generator is seeded from its own entropy only.
    Err(CKR_RANDOM_SEED_NOT_SUPPORTED)
}

pub(crate) unsafe fn generate_random(h: CK_SESSION_HANDLE, buf: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let len = count(len)?;
    if len == 0 {
        return Ok(());
    }
    if buf.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    const CHUNK: usize = 1 << 20;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK);
        let r = m.call(&s, |c, r| c.random(r, n as u32))?;
        if r.expose().len() != n {
            return Err(CKR_GENERAL_ERROR);
        }
        // SAFETY: `buf` holds `len` writable bytes (the caller).
        unsafe { core::ptr::copy_nonoverlapping(r.expose().as_ptr(), buf.add(done), n) };
        done += n;
    }
    Ok(())
}

pub(crate) unsafe fn get_function_status(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    sess(&m, h)?;
    Err(CKR_FUNCTION_NOT_PARALLEL)
}

pub(crate) unsafe fn cancel_function(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    sess(&m, h)?;
    Err(CKR_FUNCTION_NOT_PARALLEL)
}
