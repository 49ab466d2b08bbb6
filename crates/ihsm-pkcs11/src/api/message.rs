//! PKCS#11 3.0 message-based signing and verifying, built on the HSM's own
//! signatures.

use core::ffi::c_void;

use cryptoki_sys::*;
use ihsm_proto::mech::Mechanism;

use crate::R;
use crate::convert::{bytes, mechanism, no_message_param};
use crate::state::{Op, Session};

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
    no_message_param(param, param_len)?;
    let (mech, key) = message(&s, false)?;
    // SAFETY: `data` and `len` are C_SignMessage's input: null only with a length of
    // 0, else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call. It may also be the output buffer (in-place use,
    // which PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: `sig_len` is pulSignatureLen: `give` refuses it null, else it is readable
    // and writable; `sig` is null (a length query) or holds `*sig_len` writable bytes.
    // That is `output`'s contract, as PKCS#11 defines C_SignMessage's output.
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
    // SAFETY: `data` and `len` are C_SignMessageNext's input: null only with a length
    // of 0, else `len` bytes readable for the whole call, which is all `bytes` needs;
    // the slice does not outlive the call. It may also be the output buffer (in-place
    // use, which PKCS#11 allows): its last use is inside `produce`, before `output`
    // writes.
    let data = unsafe { bytes(data, len) }?;
    if sig_len.is_null() {
        // Not the last part.
        return m.call(&s, |c, r| c.sign_update(r, data.to_vec(), false));
    }
    // SAFETY: `sig_len` is non-null (the branch above) and C_SignMessageNext's
    // pulSignatureLen then readable and writable; `sig` is null (a length query) or
    // holds `*sig_len` writable bytes: `output`'s contract.
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
    // SAFETY: C_VerifyMessage's pData/ulDataLen and pSignature/ulSignatureLen: each
    // null only with a length of 0, else that many readable bytes; both slices are only
    // read, and do not outlive the call.
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
    // SAFETY: `data` and `len` are C_VerifyMessageNext's input: null only with a
    // length of 0, else `len` bytes readable for the whole call, which is all `bytes`
    // needs; the slice does not outlive the call.
    let data = unsafe { bytes(data, len) }?;
    m.call(&s, |c, r| c.sign_update(r, data.to_vec(), true))?;
    if sig.is_null() {
        return Ok(());
    }
    s.state()?.message_part = false;
    // SAFETY: `sig` is non-null (the branch above) and C_VerifyMessageNext's pSignature
    // then holds `sig_len` readable bytes; the slice does not outlive the call.
    let sig = unsafe { bytes(sig, sig_len) }?;
    m.call(&s, |c, r| c.verify_final(r, sig.to_vec()))
}

pub(crate) unsafe fn message_verify_final(h: CK_SESSION_HANDLE) -> R {
    message_final(h, true)
}
