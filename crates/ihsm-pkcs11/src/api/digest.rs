//! Message digests.

use cryptoki_sys::*;

use crate::R;
use crate::convert::{bytes, mechanism};
use crate::state::{Kind, Op};

use super::deferred::begin;
use super::output::{output, plain};
use super::{ctx, sess};

pub(crate) unsafe fn digest_init(h: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> R {
    let m = ctx()?;
    let s = sess(&m, h)?;
    // SAFETY: `mech` is C_DigestInit's pMechanism: null, which `mechanism` refuses, or
    // a CK_MECHANISM whose parameter the application made readable as its mechanism
    // defines: `mechanism`'s contract.
    let mech = unsafe { mechanism(mech) }?;
    begin(&m, &s, Kind::Digest, |c, r| c.digest_init(r, mech.clone()))
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
    // SAFETY: `data` and `len` are C_Digest's input: null only with a length of 0,
    // else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call. It may also be the output buffer (in-place use,
    // which PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: `md_len` is pulDigestLen: `give` refuses it null, else it is readable and
    // writable; `md` is null (a length query) or holds `*md_len` writable bytes. That
    // is `output`'s contract, as PKCS#11 defines C_Digest's output.
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
    // SAFETY: `data` and `len` are C_DigestUpdate's input: null only with a length of
    // 0, else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call.
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
    // SAFETY: `md_len` is pulDigestLen: `give` refuses it null, else it is readable and
    // writable; `md` is null (a length query) or holds `*md_len` writable bytes. That
    // is `output`'s contract, as PKCS#11 defines C_DigestFinal's output.
    unsafe {
        output(&s, Op::DigestFinal, md, md_len, || {
            m.call(&s, |c, r| c.digest_final(r)).map(plain)
        })
    }
}
