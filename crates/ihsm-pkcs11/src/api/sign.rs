//! Signing and verifying, in one part and in several; and PKCS#11 3.2's
//! verification with the signature given at initialization.

use cryptoki_sys::*;

use crate::R;
use crate::convert::{bytes, mechanism};
use crate::state::{Kind, Op, Session};

use super::deferred::{begin, deferred, finished, materialize, start};
use super::output::{output, plain};
use super::{ctx, sess};

unsafe fn sign_or_verify_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    verify: bool,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `mech` is C_SignInit or C_VerifyInit's pMechanism: null, which
    // `mechanism` refuses, or a CK_MECHANISM whose parameter the application made
    // readable as its mechanism defines: `mechanism`'s contract.
    let mech = unsafe { mechanism(mech) }?;
    if !verify {
        return start(&m, &s, Kind::Sign, mech, key);
    }
    begin(&m, &s, Kind::Verify, |c, r| {
        c.sign_init(r, mech.clone(), key, true)
    })
}

pub(crate) unsafe fn sign_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: `sign_or_verify_init` asks of `mech` exactly what PKCS#11 asks of
    // C_SignInit's pMechanism, which is what this function's caller passes.
    unsafe { sign_or_verify_init(h, mech, key, false) }
}

pub(crate) unsafe fn verify_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: `sign_or_verify_init` asks of `mech` exactly what PKCS#11 asks of
    // C_VerifyInit's pMechanism, which is what this function's caller passes.
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
    // SAFETY: `data` and `len` are C_Sign's input: null only with a length of 0, else
    // `len` bytes readable for the whole call, which is all `bytes` needs; the slice
    // does not outlive the call. It may also be the output buffer (in-place use, which
    // PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: `sig_len` is pulSignatureLen: `give` refuses it null, else it is readable
    // and writable; `sig` is null (a length query) or holds `*sig_len` writable bytes.
    // That is `output`'s contract, as PKCS#11 defines C_Sign's output.
    unsafe {
        output(&s, Op::Sign, sig, sig_len, || {
            let r = match deferred(&s, Kind::Sign)? {
                Some((mech, key)) => {
                    m.call(&s, |c, r| c.sign_once(r, mech.clone(), key, data.to_vec()))
                }
                None => m.call(&s, |c, r| c.sign(r, data.to_vec())),
            };
            finished(&s, Kind::Sign, r.map(plain))
        })
    }
}

pub(crate) unsafe fn sign_update(h: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `data` and `len` are C_SignUpdate's input: null only with a length of
    // 0, else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call.
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
    // SAFETY: `sig_len` is pulSignatureLen: `give` refuses it null, else it is readable
    // and writable; `sig` is null (a length query) or holds `*sig_len` writable bytes.
    // That is `output`'s contract, as PKCS#11 defines C_SignFinal's output.
    unsafe {
        output(&s, Op::SignFinal, sig, sig_len, || {
            materialize(&m, &s, Kind::Sign)?;
            finished(
                &s,
                Kind::Sign,
                m.call(&s, |c, r| c.sign_final(r)).map(plain),
            )
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
    // SAFETY: C_Verify's pData/ulDataLen and pSignature/ulSignatureLen: each null only
    // with a length of 0, else that many readable bytes; both slices are only read, and
    // do not outlive the call.
    let (data, sig) = unsafe { (bytes(data, len)?, bytes(sig, sig_len)?) };
    m.call(&s, |c, r| c.verify(r, data.to_vec(), sig.to_vec()))
}

pub(crate) unsafe fn verify_update(h: CK_SESSION_HANDLE, data: *mut CK_BYTE, len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `data` and `len` are C_VerifyUpdate's input: null only with a length of
    // 0, else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call.
    let data = unsafe { bytes(data, len) }?;
    m.call(&s, |c, r| c.sign_update(r, data.to_vec(), true))
}

pub(crate) unsafe fn verify_final(h: CK_SESSION_HANDLE, sig: *mut CK_BYTE, sig_len: CK_ULONG) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `sig` and `sig_len` are C_VerifyFinal's signature: null only with
    // a length of 0, else `sig_len` bytes readable for the whole call, which is all
    // `bytes` needs; the slice does not outlive the call.
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
    // SAFETY: `mech` is C_VerifySignatureInit's pMechanism: null, which `mechanism`
    // refuses, or a CK_MECHANISM whose parameter the application made readable as its
    // mechanism defines: `mechanism`'s contract. `sig` and `sig_len` are its signature,
    // null only with a length of 0, else readable; it is copied before the call
    // returns.
    let (sig, mech) = unsafe { (bytes(sig, sig_len)?.to_vec(), mechanism(mech)?) };
    if s.state()?.signature.is_some() {
        return Err(CKR_OPERATION_ACTIVE);
    }
    m.call(&s, |c, r| c.sign_init(r, mech.clone(), key, true))?;
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
    // SAFETY: `data` and `len` are C_VerifySignature's input: null only with a length
    // of 0, else `len` bytes readable for the whole call, which is all `bytes` needs;
    // the slice does not outlive the call.
    let data = unsafe { bytes(data, len) }?;
    let sig = take_signature(&s)?;
    m.call(&s, |c, r| c.verify(r, data.to_vec(), sig.clone()))
}

pub(crate) unsafe fn verify_signature_update(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `data` and `len` are C_VerifySignatureUpdate's input: null only with a
    // length of 0, else `len` bytes readable for the whole call, which is all `bytes`
    // needs; the slice does not outlive the call.
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
    m.call(&s, |c, r| c.verify_final(r, sig.clone()))
}
