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
    // SAFETY: `mech` is C_GenerateKey's pMechanism: null, which `mechanism` refuses, or
    // a CK_MECHANISM whose parameter the application made readable as its mechanism
    // defines: `mechanism`'s contract. `tmpl` and `n` are its template, as `template`
    // requires (null only with a count of 0, each value readable for its length). The
    // template is read first: bad arguments answer before an unknown mechanism.
    let (t, mech) = unsafe { (template(tmpl, n)?, mechanism(mech)?) };
    let k = m.call(&s, |c, r| c.generate_key(r, mech.clone(), t.clone()))?;
    // SAFETY: `key` is C_GenerateKey's CK_OBJECT_HANDLE out-pointer, checked non-null
    // by `out` above; PKCS#11 makes it writable for one.
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
    // SAFETY: `mech` is C_GenerateKeyPair's pMechanism: null, which `mechanism`
    // refuses, or a CK_MECHANISM whose parameter the application made readable as its
    // mechanism defines: `mechanism`'s contract. The two templates are its public and
    // private key templates, each as `template` requires (null only with a count of 0,
    // each value readable for its length). The templates are read first: bad
    // arguments answer before an unknown mechanism.
    let (pt, st, mech) = unsafe {
        (
            template(pub_t, pub_n)?,
            template(priv_t, priv_n)?,
            mechanism(mech)?,
        )
    };
    let (pk, sk) = m.call(&s, |c, r| {
        c.generate_key_pair(r, mech.clone(), pt.clone(), st.clone())
    })?;
    // SAFETY: `pub_h` and `priv_h` are C_GenerateKeyPair's two CK_OBJECT_HANDLE
    // out-pointers, checked non-null by `out` above; PKCS#11 makes each writable for
    // one.
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
    // SAFETY: `mech` is non-null (checked above) and C_WrapKey's pMechanism then points
    // to a CK_MECHANISM, of integers and a pointer; read by value, its parameter not
    // followed.
    let masked = unsafe { mech.read_unaligned() }.mechanism == CKM_IHSM_MASKED_KEY;
    let produce = || -> R<Zeroizing<Vec<u8>>> {
        if masked {
            // The partition's masking key wraps; the wrapping-key handle is not
            // used (CK_INVALID_HANDLE by convention).
            return m.call(&s, |c, r| c.export_masked(r, key)).map(plain);
        }
        // SAFETY: `mech` is C_WrapKey's pMechanism: null, which `mechanism` refuses, or
        // a CK_MECHANISM whose parameter the application made readable as its mechanism
        // defines: `mechanism`'s contract.
        let mech = unsafe { mechanism(mech) }?;
        m.call(&s, |c, r| c.wrap_key(r, mech.clone(), wrapping, key))
            .map(plain)
    };
    // SAFETY: `wrapped_len` is pulWrappedKeyLen: `give` refuses it null, else it is
    // readable and writable; `wrapped` is null (a length query) or holds `*wrapped_len`
    // writable bytes. That is `output`'s contract, as PKCS#11 defines C_WrapKey's
    // output.
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
    // SAFETY: `wrapped` and `wrapped_len` are C_UnwrapKey's wrapped key: null
    // only with a length of 0, else `wrapped_len` bytes readable for the whole call,
    // which is all `bytes` needs; the slice does not outlive the call.
    let wrapped = unsafe { bytes(wrapped, wrapped_len) }?.to_vec();
    // SAFETY: `tmpl` and `n` are C_UnwrapKey's template, as `template` requires (null
    // only with a count of 0, each value readable for its length).
    let t = unsafe { template(tmpl, n) }?;
    // SAFETY: `mech` is non-null (checked above) and C_UnwrapKey's pMechanism then
    // points to a CK_MECHANISM, of integers and a pointer; read by value, its parameter
    // not followed.
    let k = if unsafe { mech.read_unaligned() }.mechanism == CKM_IHSM_MASKED_KEY {
        // The unwrapping-key handle is not used, as for wrapping.
        if !t.is_empty() {
            // A masked key brings its own attributes.
            return Err(CKR_TEMPLATE_INCONSISTENT);
        }
        m.call(&s, |c, r| c.import_masked(r, wrapped.clone()))?
    } else {
        // SAFETY: `mech` is C_UnwrapKey's pMechanism: null, which `mechanism` refuses,
        // or a CK_MECHANISM whose parameter the application made readable as its
        // mechanism defines: `mechanism`'s contract.
        let mech = unsafe { mechanism(mech) }?;
        m.call(&s, |c, r| {
            c.unwrap_key(r, mech.clone(), unwrapping, wrapped.clone(), t.clone())
        })?
    };
    // SAFETY: `key` is C_UnwrapKey's CK_OBJECT_HANDLE out-pointer, checked non-null by
    // `out` above; PKCS#11 makes it writable for one.
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
    // SAFETY: `mech` is C_DeriveKey's pMechanism: null, which `mechanism` refuses, or a
    // CK_MECHANISM whose parameter the application made readable as its mechanism
    // defines: `mechanism`'s contract. `tmpl` and `n` are its template, as `template`
    // requires (null only with a count of 0, each value readable for its length). The
    // template is read first: bad arguments answer before an unknown mechanism.
    let (t, mech) = unsafe { (template(tmpl, n)?, mechanism(mech)?) };
    let k = m.call(&s, |c, r| c.derive_key(r, mech.clone(), base, t.clone()))?;
    // SAFETY: `key` is C_DeriveKey's CK_OBJECT_HANDLE out-pointer, checked non-null by
    // `out` above; PKCS#11 makes it writable for one.
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
    // SAFETY: `mech` is C_EncapsulateKey's pMechanism: null, which `mechanism` refuses,
    // or a CK_MECHANISM whose parameter the application made readable as its mechanism
    // defines: `mechanism`'s contract. `tmpl` and `n` are its template, as `template`
    // requires (null only with a count of 0, each value readable for its length). The
    // template is read first: bad arguments answer before an unknown mechanism.
    let (t, mech) = unsafe { (template(tmpl, n)?, mechanism(mech)?) };
    // The encapsulation makes the secret object: done once, kept for the call
    // that fetches the ciphertext.
    let (data, handle) = {
        let mut st = s.state()?;
        match st.take_pending(Op::Encapsulate) {
            Some(p) => (p.data, p.handle),
            None => {
                drop(st);
                let (c, k) =
                    m.call(&s, |c, r| c.encapsulate(r, mech.clone(), public, t.clone()))?;
                (plain(c), k)
            }
        }
    };
    // SAFETY: `ct_len` is C_EncapsulateKey's pulCiphertextLen, checked non-null by
    // `out` above, readable and writable; `ct` is null (a length query) or holds
    // `*ct_len` writable bytes: `give`'s contract.
    match unsafe { give(&data, ct, ct_len) } {
        Ok(()) if !ct.is_null() => {
            // SAFETY: `key` is C_EncapsulateKey's CK_OBJECT_HANDLE out-pointer, checked
            // non-null by `out` above; PKCS#11 makes it writable for one.
            unsafe { put(key, handle) }
        }
        r => {
            s.state()?.keep(Pending {
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
    // SAFETY: `mech` is C_DecapsulateKey's pMechanism: null, which `mechanism` refuses,
    // or a CK_MECHANISM whose parameter the application made readable as its mechanism
    // defines: `mechanism`'s contract. `tmpl` and `n` are its template (as `template`
    // requires), `ct` and `ct_len` its ciphertext (null only with a length of 0, else
    // readable), copied out before the call goes on.
    let (t, ct, mech) = unsafe {
        (
            template(tmpl, n)?,
            bytes(ct, ct_len)?.to_vec(),
            mechanism(mech)?,
        )
    };
    let k = m.call(&s, |c, r| {
        c.decapsulate(r, mech.clone(), private, ct.clone(), t.clone())
    })?;
    // SAFETY: `key` is C_DecapsulateKey's CK_OBJECT_HANDLE out-pointer, checked
    // non-null by `out` above; PKCS#11 makes it writable for one.
    unsafe { put(key, k) }
}
