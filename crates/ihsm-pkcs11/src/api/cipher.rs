//! Encryption and decryption, in one part and in several.

use cryptoki_sys::*;
use ihsm_proto::SecretBytes;

use crate::R;
use crate::convert::{bytes, mechanism};
use crate::state::{Kind, Op};

use super::deferred::{begin, deferred, finished, materialize, start};
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
    // SAFETY: `mech` is C_EncryptInit or C_DecryptInit's pMechanism: null, which
    // `mechanism` refuses, or a CK_MECHANISM whose parameter the application made
    // readable as its mechanism defines: `mechanism`'s contract.
    let mech = unsafe { mechanism(mech) }?;
    if encrypt {
        return start(&m, &s, Kind::Encrypt, mech, key);
    }
    begin(&m, &s, Kind::Decrypt, |c, r| {
        c.crypt_init(r, mech.clone(), key, false)
    })
}

pub(crate) unsafe fn encrypt_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: `crypt_init` asks of `mech` exactly what PKCS#11 asks of C_EncryptInit's
    // pMechanism, which is what this function's caller passes.
    unsafe { crypt_init(h, mech, key, true) }
}

pub(crate) unsafe fn decrypt_init(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> R {
    // SAFETY: `crypt_init` asks of `mech` exactly what PKCS#11 asks of C_DecryptInit's
    // pMechanism, which is what this function's caller passes.
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
    // SAFETY: `data` and `len` are C_Encrypt's input: null only with a length of 0,
    // else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call. It may also be the output buffer (in-place use,
    // which PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: `ct_len` is pulEncryptedDataLen: `give` refuses it null, else it is
    // readable and writable; `ct` is null (a length query) or holds `*ct_len` writable
    // bytes. That is `output`'s contract, as PKCS#11 defines C_Encrypt's output.
    unsafe {
        output(&s, Op::Encrypt, ct, ct_len, || {
            let r = match deferred(&s, Kind::Encrypt)? {
                Some((mech, key)) => m.call(&s, |c, r| c.encrypt_once(r, mech.clone(), key, data)),
                None => m.call(&s, |c, r| c.encrypt(r, data)),
            };
            finished(&s, Kind::Encrypt, r.map(|(d, _)| plain(d)))
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
    // SAFETY: `data` and `len` are C_EncryptUpdate's input: null only with a length
    // of 0, else `len` bytes readable for the whole call, which is all `bytes` needs;
    // the slice does not outlive the call. It may also be the output buffer (in-place
    // use, which PKCS#11 allows): its last use is inside `produce`, before `output`
    // writes.
    let data = unsafe { bytes(data, len) }?;
    // SAFETY: `ct_len` is pulEncryptedPartLen: `give` refuses it null, else it is
    // readable and writable; `ct` is null (a length query) or holds `*ct_len` writable
    // bytes. That is `output`'s contract, as PKCS#11 defines C_EncryptUpdate's
    // output.
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
    // SAFETY: `ct_len` is pulLastEncryptedPartLen: `give` refuses it null, else it is
    // readable and writable; `ct` is null (a length query) or holds `*ct_len` writable
    // bytes. That is `output`'s contract, as PKCS#11 defines C_EncryptFinal's output.
    unsafe {
        output(&s, Op::EncryptFinal, ct, ct_len, || {
            materialize(&m, &s, Kind::Encrypt)?;
            finished(
                &s,
                Kind::Encrypt,
                m.call(&s, |c, r| c.encrypt_final(r)).map(plain),
            )
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
    // SAFETY: `ct` and `len` are C_Decrypt's input: null only with a length of 0,
    // else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call. It may also be the output buffer (in-place use,
    // which PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let ct = unsafe { bytes(ct, len) }?;
    // SAFETY: `data_len` is pulDataLen: `give` refuses it null, else it is readable and
    // writable; `data` is null (a length query) or holds `*data_len` writable bytes.
    // That is `output`'s contract, as PKCS#11 defines C_Decrypt's output.
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
    // SAFETY: `ct` and `len` are C_DecryptUpdate's input: null only with a length of
    // 0, else `len` bytes readable for the whole call, which is all `bytes` needs; the
    // slice does not outlive the call. It may also be the output buffer (in-place use,
    // which PKCS#11 allows): its last use is inside `produce`, before `output` writes.
    let ct = unsafe { bytes(ct, len) }?;
    // SAFETY: `data_len` is pulPartLen: `give` refuses it null, else it is readable and
    // writable; `data` is null (a length query) or holds `*data_len` writable bytes.
    // That is `output`'s contract, as PKCS#11 defines C_DecryptUpdate's output.
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
    // SAFETY: `data_len` is pulLastPartLen: `give` refuses it null, else it is readable
    // and writable; `data` is null (a length query) or holds `*data_len` writable
    // bytes. That is `output`'s contract, as PKCS#11 defines C_DecryptFinal's output.
    unsafe {
        output(&s, Op::DecryptFinal, data, data_len, || {
            m.call(&s, |c, r| c.decrypt_final(r))
                .map(SecretBytes::into_zeroizing)
        })
    }
}
