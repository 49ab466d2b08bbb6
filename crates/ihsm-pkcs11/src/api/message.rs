//! PKCS#11 3.0 message-based signing and verifying, built on the HSM's own
//! signatures.
//!
//! A message-based context is a kind of operation of its own, beside the
//! session's C_SignInit and C_VerifyInit: every message it signs or verifies,
//! whole or in parts, runs on a session of this application in the HSM that only
//! its context uses (the HSM refuses a one-call signature beside the session's
//! own C_SignInit, as it should), opened when first
//! needed and closed at C_MessageSignFinal / C_MessageVerifyFinal, so it never
//! meets the session's own operations there.

use core::ffi::c_void;

use cryptoki_sys::*;
use ihsm_proto::mech::Mechanism;

use crate::R;
use crate::convert::{bytes, mechanism, no_message_param};
use crate::state::{Kind, MessageCtx, Module, Op, Session};

use super::output::{output, plain};
use super::{ctx, sess};

unsafe fn message_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    verify: bool,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `mech` is C_MessageSignInit or C_MessageVerifyInit's pMechanism: null,
    // which `mechanism` refuses, or a CK_MECHANISM whose parameter the application made
    // readable as its mechanism defines: `mechanism`'s contract.
    let mech = unsafe { mechanism(mech) }?;
    let mut st = s.state()?;
    let c = st.message(verify);
    if c.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    *c = Some(MessageCtx {
        mech,
        key,
        aux: None,
        part: false,
    });
    Ok(())
}

/// The context's mechanism and key, and whether a message in parts is under way.
fn context(s: &Session, verify: bool) -> R<(Mechanism, CK_OBJECT_HANDLE, bool)> {
    match s.state()?.message(verify) {
        Some(c) => Ok((c.mech.clone(), c.key, c.part)),
        None => Err(CKR_OPERATION_NOT_INITIALIZED),
    }
}

/// Marks whether a message in parts is under way.
fn set_part(s: &Session, verify: bool, part: bool) -> R {
    if let Some(c) = s.state()?.message(verify) {
        c.part = part;
    }
    Ok(())
}

/// The context's own session in the HSM, opened if it has none yet.
fn aux(m: &Module, s: &Session, verify: bool) -> R<u64> {
    if let Some(Some(a)) = s.state()?.message(verify).as_ref().map(|c| c.aux) {
        return Ok(a);
    }
    let slot = m.slot(s.slot)?;
    let a = slot.call(|c| c.open_session(s.rw))?;
    match s.state()?.message(verify) {
        Some(c) => {
            c.aux = Some(a);
            Ok(a)
        }
        // Ended meanwhile (another thread, which PKCS#11 does not allow on one
        // session): the new session goes at once.
        None => {
            let _ = slot.call(|c| c.close_session(a));
            Err(CKR_OPERATION_NOT_INITIALIZED)
        }
    }
}

/// Runs `f` on the context's own session in the HSM.
fn on_aux<T>(
    m: &Module,
    s: &Session,
    verify: bool,
    f: impl FnOnce(&mut ihsm_client::Client, u64) -> Result<T, ihsm_client::ClientError>,
) -> R<T> {
    let a = aux(m, s, verify)?;
    m.slot(s.slot)?.call(|c| f(c, a))
}

/// Closes the HSM sessions of a session's message-based contexts, which end
/// with it.
pub(crate) fn close_contexts(m: &Module, s: &Session) -> R {
    let aux: Vec<u64> = {
        let mut st = s.state()?;
        [st.message_sign.take(), st.message_verify.take()]
            .into_iter()
            .flatten()
            .filter_map(|c| c.aux)
            .collect()
    };
    let slot = m.slot(s.slot)?;
    for a in aux {
        // Gone already if the application ended in the HSM: closed all the same.
        let _ = slot.call(|c| c.close_session(a));
    }
    Ok(())
}

pub(crate) unsafe fn message_sign_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: `message_init` asks of `mech` exactly what PKCS#11 asks of
    // C_MessageSignInit's pMechanism, which is what this function's caller passes.
    unsafe { message_init(h, mech, key, false) }
}

pub(crate) unsafe fn message_verify_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: `message_init` asks of `mech` exactly what PKCS#11 asks of
    // C_MessageVerifyInit's pMechanism, which is what this function's caller passes.
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
    // SAFETY: `data` and `len` are C_SignMessage's input: null only with a length of
    // 0, else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call. It may also be the output buffer (in-place use,
    // which PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let data = unsafe { bytes(data, len) }?;
    no_message_param(param, param_len)?;
    let (mech, key, part) = context(&s, false)?;
    if part {
        return Err(CKR_OPERATION_ACTIVE);
    }
    // SAFETY: `sig_len` is pulSignatureLen: `give` refuses it null, else it is readable
    // and writable; `sig` is null (a length query) or holds `*sig_len` writable bytes.
    // That is `output`'s contract, as PKCS#11 defines C_SignMessage's output.
    unsafe {
        output(&s, Op::SignMessage, sig, sig_len, || {
            // One call that starts and ends in the HSM, on the context's own
            // session there: the session's C_SignInit signature, if one is under
            // way, is another kind of operation, and the HSM refuses a one-call
            // signature beside it.
            on_aux(&m, &s, false, |c, a| {
                c.sign_once(a, mech, key, data.to_vec())
            })
            .map(plain)
        })
    }
}

/// The start of a message signed or verified in parts.
fn message_begin(h: CK_SESSION_HANDLE, param: *mut c_void, param_len: CK_ULONG, verify: bool) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    no_message_param(param, param_len)?;
    let (mech, key, part) = context(&s, verify)?;
    if part {
        return Err(CKR_OPERATION_ACTIVE);
    }
    on_aux(&m, &s, verify, |c, a| c.sign_init(a, mech, key, verify))?;
    set_part(&s, verify, true)
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
    // SAFETY: `data` and `len` are C_SignMessageNext's input: null only with a length
    // of 0, else `len` bytes readable for the whole call, which is all `bytes` needs;
    // the slice does not outlive the call. It may also be the output buffer (in-place
    // use, which PKCS#11 allows): its last use is inside `produce`, before `output`
    // writes.
    let data = unsafe { bytes(data, len) }?;
    no_message_param(param, param_len)?;
    if !context(&s, false)?.2 {
        return Err(CKR_OPERATION_NOT_INITIALIZED);
    }
    if sig_len.is_null() {
        // Not the last part.
        let r = on_aux(&m, &s, false, |c, a| c.sign_update(a, data.to_vec(), false));
        if r.is_err() {
            // An error ends the message in the HSM.
            set_part(&s, false, false)?;
        }
        return r;
    }
    // SAFETY: `sig_len` is non-null (the branch above) and C_SignMessageNext's
    // pulSignatureLen then readable and writable; `sig` is null (a length query) or
    // holds `*sig_len` writable bytes: `output`'s contract.
    let r = unsafe {
        output(&s, Op::SignMessageNext, sig, sig_len, || {
            on_aux(&m, &s, false, |c, a| {
                c.sign_update(a, data.to_vec(), false)?;
                c.sign_final(a)
            })
            .map(plain)
        })
    };
    match r {
        // The signature waits for the call that fetches it.
        Ok(()) if sig.is_null() => {}
        Err(CKR_BUFFER_TOO_SMALL) => {}
        _ => set_part(&s, false, false)?,
    }
    r
}

/// The end of a message-based context; it must be the kind the session began.
fn message_final(h: CK_SESSION_HANDLE, verify: bool) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    let c = {
        let mut st = s.state()?;
        let c = st
            .message(verify)
            .take()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        if !verify {
            // A signature not fetched ends with its context.
            st.op(Kind::MessageSign).pending = None;
        }
        c
    };
    if let Some(a) = c.aux {
        let _ = m.slot(s.slot)?.call(|c| c.close_session(a));
    }
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
    // SAFETY: C_VerifyMessage's pData/ulDataLen and pSignature/ulSignatureLen: each
    // null only with a length of 0, else that many readable bytes; both slices are only
    // read, and do not outlive the call.
    let (data, sig) = unsafe { (bytes(data, len)?, bytes(sig, sig_len)?) };
    no_message_param(param, param_len)?;
    let (mech, key, part) = context(&s, true)?;
    if part {
        return Err(CKR_OPERATION_ACTIVE);
    }
    on_aux(&m, &s, true, |c, a| {
        c.sign_init(a, mech, key, true)?;
        c.verify(a, data.to_vec(), sig.to_vec())
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
    // SAFETY: `data` and `len` are C_VerifyMessageNext's input: null only with a
    // length of 0, else `len` bytes readable for the whole call, which is all `bytes`
    // needs; the slice does not outlive the call.
    let data = unsafe { bytes(data, len) }?;
    let sig = if sig.is_null() {
        // A part that is not the last: its length is not read.
        None
    } else {
        // SAFETY: `sig` is non-null, and C_VerifyMessageNext's pSignature then holds
        // `sig_len` readable bytes; they are copied before the call goes on.
        Some(unsafe { bytes(sig, sig_len) }?.to_vec())
    };
    no_message_param(param, param_len)?;
    if !context(&s, true)?.2 {
        return Err(CKR_OPERATION_NOT_INITIALIZED);
    }
    let last = sig.is_some();
    let r = on_aux(&m, &s, true, |c, a| {
        c.sign_update(a, data.to_vec(), true)?;
        match sig {
            Some(sig) => c.verify_final(a, sig),
            None => Ok(()),
        }
    });
    if r.is_err() || last {
        // The last part, or an error: the message has ended in the HSM.
        set_part(&s, true, false)?;
    }
    r
}

pub(crate) unsafe fn message_verify_final(h: CK_SESSION_HANDLE) -> R {
    message_final(h, true)
}
