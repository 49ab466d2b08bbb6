//! Message digests.

use cryptoki_sys::*;

use crate::R;
use crate::convert::{bytes, mechanism};
use crate::state::Op;

use super::output::{output, plain};
use super::{ctx, sess};

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
