//! Encryption and decryption, in one part and in several.

use cryptoki_sys::*;
use ihsm_proto::SecretBytes;

use crate::R;
use crate::convert::{bytes, mechanism};
use crate::state::{Kind, Op};

use super::deferred::{deferred, finished, materialize, start};
use super::output::{output, plain};
use super::{ctx, sess};

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
