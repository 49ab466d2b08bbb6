//! Session management: opening and closing sessions, their state, login and
//! logout; and the legacy parallel-function calls, which answer for a session.

use core::ffi::c_void;

use cryptoki_sys::*;
use ihsm_client::Client;
use ihsm_proto::types::{SessionState, UserType};

use crate::R;
use crate::convert::{bytes, out, put};
use crate::state::Session;

use super::{ctx, sess};

pub(crate) unsafe fn open_session(
    id: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    h: *mut CK_SESSION_HANDLE,
) -> R {
    let m = ctx()?;
    out(h)?;
    m.slot(id)?;
    if flags & CKF_SERIAL_SESSION == 0 {
        return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    }
    let rw = flags & CKF_RW_SESSION != 0;
    let remote = m.slot_call(id, |c| c.open_session(rw))?;
    let handle = m.add_session(Session {
        slot: id,
        remote: std::sync::atomic::AtomicU64::new(remote),
        rw,
        state: std::sync::Mutex::new(Default::default()),
    })?;
    // SAFETY: `h` is C_OpenSession's CK_SESSION_HANDLE out-pointer, checked non-null by
    // `out` above; PKCS#11 makes it writable for one.
    unsafe { put(h, handle) }
}

pub(crate) unsafe fn close_session(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    super::message::close_contexts(&m, &s)?;
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
    // SAFETY: `info` is C_GetSessionInfo's CK_SESSION_INFO out-pointer, checked
    // non-null by `out` above; PKCS#11 makes it writable for one.
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
    // SAFETY: `pin` is non-null (checked above) and C_Login's pPin then holds `len`
    // readable bytes; the slice does not outlive the call.
    let pin = unsafe { bytes(pin, len) }?;
    m.call(&s, |c, r| c.login(r, user, pin))?;
    // Fleet mode: done again on the host the partition moves to.
    m.slot(s.slot)?.remember_login(Some((user, pin)));
    Ok(())
}

pub(crate) unsafe fn logout(h: CK_SESSION_HANDLE) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    m.slot(s.slot)?.forget(None);
    m.slot(s.slot)?.remember_login(None);
    m.call(&s, |c, r| c.logout(r))
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
