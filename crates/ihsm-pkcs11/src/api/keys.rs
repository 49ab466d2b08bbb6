//! Key management: generating keys and key pairs, wrapping, unwrapping,
//! deriving, encapsulating and decapsulating.

use cryptoki_sys::*;
use ihsm_proto::mech::CKM_IHSM_MASKED_KEY;
use zeroize::Zeroizing;

use crate::R;
use crate::convert::{bytes, give, mechanism, out, put, template};
use crate::state::{Op, Pending};

use super::output::{output, plain};
use super::{ctx, sess};

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
