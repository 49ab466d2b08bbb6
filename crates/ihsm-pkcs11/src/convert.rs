//! Reading what the application passes: byte ranges, templates, mechanisms with
//! their parameter structures; writing what it gets back. Every pointer is checked
//! here before it is read, and every length before it is trusted.

use core::ffi::c_void;
use core::mem::size_of;

use cryptoki_sys::*;
use ihsm_client::ClientError;
use ihsm_proto::attr::{AttrResult, AttrValue, Attribute, Kind, kind};
use ihsm_proto::mech::{
    CKM_IHSM_TLS13_EXPAND_LABEL, GcmIv, Hash, HkdfParams, HkdfSalt, Mechanism, OaepParams,
    PssParams,
};

use zeroize::Zeroizing;

use crate::R;
use crate::vendor::CK_IHSM_TLS13_EXPAND_LABEL_PARAMS;

/// A client error as the `CK_RV` the specification names.
pub(crate) fn rv(e: &ClientError) -> CK_RV {
    e.ckr()
}

/// A `CK_ULONG` count as a `usize`.
pub(crate) fn count(n: CK_ULONG) -> R<usize> {
    usize::try_from(n).map_err(|_| CKR_ARGUMENTS_BAD)
}

/// The bytes at `p`, `len` long. A null pointer is fine only for no bytes.
///
/// # Safety
/// `p` is null or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const CK_BYTE, len: CK_ULONG) -> R<&'a [u8]> {
    // SAFETY: this function's contract is `items`'s for bytes: `p` null or `len`
    // readable bytes outliving `'a`.
    unsafe { items(p, len) }
}

/// A slice of `n` items at `p`; null only for none.
///
/// A length no buffer can have (more than `isize::MAX` bytes, as
/// `CK_UNAVAILABLE_INFORMATION` is, which C_GetAttributeValue leaves in a template
/// an application may pass on) is refused before any slice is made of it.
///
/// # Safety
/// `p` is null or points to `n` initialized items that outlive `'a`.
pub(crate) unsafe fn items<'a, T>(p: *const T, n: CK_ULONG) -> R<&'a [T]> {
    let n = count(n)?;
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    if n.checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: `p` is non-null (checked above) and the slice's `n * size_of::<T>()`
    // bytes are at most `isize::MAX` (checked above); the caller promises `n`
    // initialized, aligned `T`s there that nothing writes while `'a` lasts.
    Ok(unsafe { core::slice::from_raw_parts(p, n) })
}

/// A non-null output pointer.
pub(crate) fn out<T>(p: *mut T) -> R<*mut T> {
    if p.is_null() {
        Err(CKR_ARGUMENTS_BAD)
    } else {
        Ok(p)
    }
}

/// Writes `value` through a checked output pointer.
///
/// # Safety
/// `p` is null or valid for a write of `T`.
pub(crate) unsafe fn put<T>(p: *mut T, value: T) -> R {
    let p = out(p)?;
    // SAFETY: `p` is non-null (`out` above) and the caller promises it valid for a
    // write of one `T`; written unaligned, and `T` is Copy, so nothing is dropped in
    // its place.
    unsafe { p.write_unaligned(value) };
    Ok(())
}

/// PKCS#11's two-call convention for an output buffer: a null `buf` asks for the
/// length; a short one gets `CKR_BUFFER_TOO_SMALL` and the length; otherwise the
/// bytes are copied.
///
/// # Safety
/// `len` is valid for reads and writes; `buf` is null or holds `*len` bytes.
pub(crate) unsafe fn give(data: &[u8], buf: *mut CK_BYTE, len: *mut CK_ULONG) -> R {
    let len = out(len)?;
    let need = CK_ULONG::try_from(data.len()).map_err(|_| CKR_GENERAL_ERROR)?;
    // SAFETY: `len` is non-null (`out` above) and the caller promises it readable and
    // writable for a CK_ULONG.
    let have = unsafe { len.read_unaligned() };
    // SAFETY: the same `len`, now written: the length the output needs.
    unsafe { len.write_unaligned(need) };
    if buf.is_null() {
        return Ok(());
    }
    if have < need {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    // SAFETY: `buf` is non-null, and the caller promises it holds `have` writable
    // bytes, which is at least `need` = `data.len()` (checked above); `data` is this
    // module's own buffer, which cannot overlap the application's.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    Ok(())
}

/// Fills a `CK_ULONG`-sized list with PKCS#11's two-call convention.
///
/// # Safety
/// As [`give`], for `T`s.
pub(crate) unsafe fn give_list<T: Copy>(items: &[T], buf: *mut T, n: *mut CK_ULONG) -> R {
    let n = out(n)?;
    let need = CK_ULONG::try_from(items.len()).map_err(|_| CKR_GENERAL_ERROR)?;
    // SAFETY: `n` is non-null (`out` above) and the caller promises it readable and
    // writable for a CK_ULONG.
    let have = unsafe { n.read_unaligned() };
    // SAFETY: the same `n`, now written: the number of items the list needs.
    unsafe { n.write_unaligned(need) };
    if buf.is_null() {
        return Ok(());
    }
    if have < need {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    // SAFETY: `buf` is non-null, and the caller promises room for `have` `T`s, at least
    // `need` = `items.len()` (checked above); `items` is this module's own slice, which
    // cannot overlap the application's.
    unsafe { core::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    Ok(())
}

/// A blank-padded fixed-width PKCS#11 string.
pub(crate) fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let b = s.as_bytes();
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Decodes a template.
///
/// # Safety
/// `p` is null or points to `n` attributes whose values are readable.
pub(crate) unsafe fn template(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> R<Vec<Attribute>> {
    // SAFETY: the caller promises `p` null only with `n` 0, else `n` readable, aligned
    // attributes: `items`'s contract. They are only read.
    let attrs = unsafe { items(p, n) }?;
    let mut out = Vec::with_capacity(attrs.len());
    for a in attrs {
        // SAFETY: `a` is one of the caller's attributes, whose `pValue` the caller
        // promises null only with a `ulValueLen` of 0, else readable for `ulValueLen`
        // bytes: `bytes`'s contract; the value is copied out below.
        let v = unsafe { bytes(a.pValue.cast::<u8>(), a.ulValueLen) }?;
        let value = match kind(a.type_) {
            Kind::Bool => match v {
                [b] => AttrValue::Bool(*b != 0),
                _ => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
            },
            Kind::Ulong => match <[u8; size_of::<CK_ULONG>()]>::try_from(v) {
                Ok(raw) => AttrValue::Ulong(CK_ULONG::from_ne_bytes(raw)),
                Err(_) => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
            },
            Kind::Bytes => AttrValue::Bytes(v.to_vec()),
        };
        out.push(Attribute { ty: a.type_, value });
    }
    Ok(out)
}

/// An attribute value as the bytes of its `CK_ATTRIBUTE`.
pub(crate) fn encode(v: &AttrValue) -> Vec<u8> {
    match v {
        AttrValue::Bool(b) => vec![CK_BBOOL::from(*b)],
        AttrValue::Ulong(u) => u.to_ne_bytes().to_vec(),
        AttrValue::Bytes(b) => b.clone(),
    }
}

/// Fills a C_GetAttributeValue template with the daemon's answers, one per
/// attribute: a null `pValue` gets the length, a short buffer
/// `CK_UNAVAILABLE_INFORMATION` and `CKR_BUFFER_TOO_SMALL`, an attribute that is
/// sensitive or unknown `CK_UNAVAILABLE_INFORMATION` and its code; the other
/// attributes are still filled.
///
/// # Safety
/// `tmpl` points to `results.len()` writable attributes, each `pValue` null or
/// holding `ulValueLen` writable bytes.
pub(crate) unsafe fn fill(tmpl: *mut CK_ATTRIBUTE, results: &[AttrResult]) -> R {
    let mut rv = CKR_OK;
    for (i, result) in results.iter().enumerate() {
        // SAFETY: `i` < `results.len()`, the number of attributes the caller
        // promises at `tmpl`, so the offset stays inside the template.
        let p = unsafe { tmpl.add(i) };
        // SAFETY: `p` is one of those attributes, readable. It is copied, not
        // borrowed: no reference into the application's template is alive while
        // a value is written through its `pValue`, wherever that points.
        let a = unsafe { p.read_unaligned() };
        let len = match result {
            AttrResult::Sensitive => {
                rv = CKR_ATTRIBUTE_SENSITIVE;
                CK_UNAVAILABLE_INFORMATION
            }
            AttrResult::Invalid => {
                rv = CKR_ATTRIBUTE_TYPE_INVALID;
                CK_UNAVAILABLE_INFORMATION
            }
            AttrResult::Value(v) => {
                let bytes = Zeroizing::new(encode(v));
                let len = bytes.len() as CK_ULONG;
                if a.pValue.is_null() {
                    len
                } else if a.ulValueLen >= len {
                    // SAFETY: a non-null `pValue` holds `ulValueLen` writable bytes
                    // (the caller's promise), at least the `len` copied; the source
                    // is this function's own buffer, so the two cannot overlap.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            a.pValue.cast::<u8>(),
                            bytes.len(),
                        );
                    }
                    len
                } else {
                    rv = CKR_BUFFER_TOO_SMALL;
                    CK_UNAVAILABLE_INFORMATION
                }
            }
        };
        // SAFETY: `p` is a writable attribute (the caller's promise); the field is
        // reached without making a reference, and written after the value, so a
        // `pValue` pointing into the template cannot undo the length.
        unsafe { (&raw mut (*p).ulValueLen).write_unaligned(len) };
    }
    if rv == CKR_OK { Ok(()) } else { Err(rv) }
}

/// Reads a mechanism parameter structure of exactly `T`'s size.
///
/// # Safety
/// `m.pParameter` is null or points to `m.ulParameterLen` readable bytes; `T` is a
/// C structure of integers and pointers, for which any bytes are a value.
unsafe fn param<T: Copy>(m: &CK_MECHANISM) -> R<T> {
    if m.pParameter.is_null() || count(m.ulParameterLen)? != size_of::<T>() {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    // SAFETY: `pParameter` is non-null and `ulParameterLen` is exactly `size_of::<T>()`
    // (both checked above), which the caller promises readable; read unaligned, as an
    // application need not align it, and `T` is a C structure of integers and pointers,
    // for which any bytes are a value.
    Ok(unsafe { m.pParameter.cast::<T>().read_unaligned() })
}

/// Whether the mechanism has no parameter.
fn none(m: &CK_MECHANISM) -> R {
    if m.ulParameterLen == 0 {
        Ok(())
    } else {
        Err(CKR_MECHANISM_PARAM_INVALID)
    }
}

/// The bytes of a parameter's pointer and length, as a parameter error.
///
/// # Safety
/// As [`bytes`].
unsafe fn pbytes(p: *const CK_BYTE, len: CK_ULONG) -> R<Vec<u8>> {
    // SAFETY: this function's contract is `bytes`'s: `p` null only with `len` 0, else
    // `len` readable bytes; they are copied out before it returns.
    unsafe { bytes(p, len) }
        .map(<[u8]>::to_vec)
        .map_err(|_| CKR_MECHANISM_PARAM_INVALID)
}

fn hash(ckm: CK_MECHANISM_TYPE) -> R<Hash> {
    Hash::from_ckm(ckm).ok_or(CKR_MECHANISM_PARAM_INVALID)
}

/// OAEP parameters.
///
/// # Safety
/// With `CKZ_DATA_SPECIFIED`, `p.pSourceData` is null only with a
/// `p.ulSourceDataLen` of 0, else holds that many readable bytes.
unsafe fn oaep(p: &CK_RSA_PKCS_OAEP_PARAMS) -> R<OaepParams> {
    let label = match p.source {
        0 => Vec::new(),
        // SAFETY: with CKZ_DATA_SPECIFIED, pSourceData and ulSourceDataLen are the
        // label the caller promises readable (null only with a length of 0): `pbytes`'s
        // contract.
        CKZ_DATA_SPECIFIED => unsafe { pbytes(p.pSourceData.cast::<u8>(), p.ulSourceDataLen) }?,
        _ => return Err(CKR_MECHANISM_PARAM_INVALID),
    };
    Ok(OaepParams {
        hash: hash(p.hashAlg)?,
        mgf: p.mgf,
        label,
    })
}

/// Decodes a mechanism and its parameters.
///
/// # Safety
/// `p` is null or points to a `CK_MECHANISM` whose parameter (and what it points
/// to) is readable as the specification defines for that mechanism.
#[allow(clippy::too_many_lines)]
pub(crate) unsafe fn mechanism(p: *const CK_MECHANISM) -> R<Mechanism> {
    if p.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: `p` is non-null (checked above) and the caller promises it points to a
    // CK_MECHANISM; read unaligned, by value: integers and a pointer.
    let m = unsafe { p.read_unaligned() };
    let h = |x| Hash::from_ckm(x).ok_or(CKR_MECHANISM_INVALID);
    let simple = |mech: Mechanism| none(&m).map(|()| mech);
    match m.mechanism {
        CKM_AES_KEY_GEN => simple(Mechanism::AesKeyGen),
        CKM_GENERIC_SECRET_KEY_GEN => simple(Mechanism::GenericSecretKeyGen),
        CKM_EC_KEY_PAIR_GEN => simple(Mechanism::EcKeyPairGen),
        CKM_EC_EDWARDS_KEY_PAIR_GEN => simple(Mechanism::EcEdwardsKeyPairGen),
        CKM_RSA_PKCS_KEY_PAIR_GEN => simple(Mechanism::RsaKeyPairGen),
        CKM_ML_DSA_KEY_PAIR_GEN => simple(Mechanism::MlDsaKeyPairGen),
        CKM_ML_KEM_KEY_PAIR_GEN => simple(Mechanism::MlKemKeyPairGen),
        CKM_ECDSA => simple(Mechanism::Ecdsa),
        CKM_ECDSA_SHA1 | CKM_ECDSA_SHA256 | CKM_ECDSA_SHA384 | CKM_ECDSA_SHA512 => {
            let hash = match m.mechanism {
                // SHA-1 signs only where the partition's policy allows it; the HSM
                // decides.
                CKM_ECDSA_SHA1 => Hash::Sha1,
                CKM_ECDSA_SHA256 => Hash::Sha256,
                CKM_ECDSA_SHA384 => Hash::Sha384,
                _ => Hash::Sha512,
            };
            simple(Mechanism::EcdsaHash(hash))
        }
        CKM_RSA_PKCS => simple(Mechanism::RsaPkcs),
        CKM_SHA1_RSA_PKCS => simple(Mechanism::RsaPkcsHash(Hash::Sha1)),
        CKM_SHA256_RSA_PKCS => simple(Mechanism::RsaPkcsHash(Hash::Sha256)),
        CKM_SHA384_RSA_PKCS => simple(Mechanism::RsaPkcsHash(Hash::Sha384)),
        CKM_SHA512_RSA_PKCS => simple(Mechanism::RsaPkcsHash(Hash::Sha512)),
        CKM_RSA_PKCS_PSS
        | CKM_SHA1_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS => {
            // SAFETY: for the RSA-PSS mechanisms PKCS#11 makes pParameter a
            // CK_RSA_PKCS_PSS_PARAMS; `m` is the application's mechanism, its parameter
            // readable for ulParameterLen bytes (`mechanism`'s contract), and `param`
            // reads only exactly CK_RSA_PKCS_PSS_PARAMS's size, a structure of integers
            // and pointers.
            let pp: CK_RSA_PKCS_PSS_PARAMS = unsafe { param(&m) }?;
            let params = PssParams {
                hash: hash(pp.hashAlg)?,
                mgf: pp.mgf,
                salt_len: pp.sLen,
            };
            let expect = match m.mechanism {
                CKM_SHA1_RSA_PKCS_PSS => Some(Hash::Sha1),
                CKM_SHA256_RSA_PKCS_PSS => Some(Hash::Sha256),
                CKM_SHA384_RSA_PKCS_PSS => Some(Hash::Sha384),
                CKM_SHA512_RSA_PKCS_PSS => Some(Hash::Sha512),
                _ => None,
            };
            match expect {
                None => Ok(Mechanism::RsaPss(params)),
                Some(e) if e == params.hash => Ok(Mechanism::RsaPssHash(params)),
                Some(_) => Err(CKR_MECHANISM_PARAM_INVALID),
            }
        }
        CKM_EDDSA => {
            if m.ulParameterLen != 0 {
                // SAFETY: for CKM_EDDSA (when it has one) PKCS#11 makes pParameter a
                // CK_EDDSA_PARAMS; `m` is the application's mechanism, its parameter
                // readable for ulParameterLen bytes (`mechanism`'s contract), and
                // `param` reads only exactly CK_EDDSA_PARAMS's size, a structure of
                // integers and pointers.
                let e: CK_EDDSA_PARAMS = unsafe { param(&m) }?;
                if e.phFlag != 0 || e.ulContextDataLen != 0 {
                    return Err(CKR_MECHANISM_PARAM_INVALID);
                }
            }
            Ok(Mechanism::EdDsa)
        }
        CKM_ML_DSA => {
            if m.ulParameterLen != 0 {
                // SAFETY: for CKM_ML_DSA (when it has one) PKCS#11 makes pParameter a
                // CK_SIGN_ADDITIONAL_CONTEXT; `m` is the application's mechanism, its
                // parameter readable for ulParameterLen bytes (`mechanism`'s contract),
                // and `param` reads only exactly CK_SIGN_ADDITIONAL_CONTEXT's size, a
                // structure of integers and pointers.
                let c: CK_SIGN_ADDITIONAL_CONTEXT = unsafe { param(&m) }?;
                if c.ulContextLen != 0 {
                    return Err(CKR_MECHANISM_PARAM_INVALID);
                }
            }
            Ok(Mechanism::MlDsa)
        }
        CKM_SHA256_HMAC => simple(Mechanism::Hmac(Hash::Sha256)),
        CKM_SHA384_HMAC => simple(Mechanism::Hmac(Hash::Sha384)),
        CKM_SHA512_HMAC => simple(Mechanism::Hmac(Hash::Sha512)),
        CKM_AES_GCM => {
            // SAFETY: for CKM_AES_GCM PKCS#11 makes pParameter a CK_GCM_PARAMS; `m` is
            // the application's mechanism, its parameter readable for ulParameterLen
            // bytes (`mechanism`'s contract), and `param` reads only exactly
            // CK_GCM_PARAMS's size, a structure of integers and pointers.
            let g: CK_GCM_PARAMS = unsafe { param(&m) }?;
            // SAFETY: the IV: `g.pIv` and `g.ulIvLen` come from the CK_GCM_PARAMS the
            // application made readable as its mechanism defines: null only with a
            // length of 0, else that many readable bytes, copied out by `pbytes`.
            let iv = unsafe { pbytes(g.pIv, g.ulIvLen) }?;
            // SAFETY: the AAD: `g.pAAD` and `g.ulAADLen` come from the CK_GCM_PARAMS
            // the application made readable as its mechanism defines: null only with a
            // length of 0, else that many readable bytes, copied out by `pbytes`.
            let aad = unsafe { pbytes(g.pAAD, g.ulAADLen) }?;
            Ok(Mechanism::AesGcm {
                iv: GcmIv::Supplied(iv),
                aad,
                tag_bits: g.ulTagBits,
            })
        }
        CKM_AES_CBC | CKM_AES_CBC_PAD => {
            // SAFETY: for CBC the parameter is the IV itself: pParameter and
            // ulParameterLen, which the caller promises readable (null only with a
            // length of 0): `pbytes`'s contract.
            let iv = unsafe { pbytes(m.pParameter.cast::<u8>(), m.ulParameterLen) }?;
            Ok(if m.mechanism == CKM_AES_CBC {
                Mechanism::AesCbc { iv }
            } else {
                Mechanism::AesCbcPad { iv }
            })
        }
        CKM_AES_CTR => {
            // SAFETY: for CKM_AES_CTR PKCS#11 makes pParameter a CK_AES_CTR_PARAMS; `m`
            // is the application's mechanism, its parameter readable for ulParameterLen
            // bytes (`mechanism`'s contract), and `param` reads only exactly
            // CK_AES_CTR_PARAMS's size, a structure of integers and pointers.
            let c: CK_AES_CTR_PARAMS = unsafe { param(&m) }?;
            Ok(Mechanism::AesCtr {
                iv: c.cb.to_vec(),
                counter_bits: c.ulCounterBits,
            })
        }
        CKM_RSA_PKCS_OAEP => {
            // SAFETY: for CKM_RSA_PKCS_OAEP PKCS#11 makes pParameter a
            // CK_RSA_PKCS_OAEP_PARAMS; `m` is the application's mechanism, its
            // parameter readable for ulParameterLen bytes (`mechanism`'s contract), and
            // `param` reads only exactly CK_RSA_PKCS_OAEP_PARAMS's size, a structure of
            // integers and pointers.
            let o: CK_RSA_PKCS_OAEP_PARAMS = unsafe { param(&m) }?;
            // SAFETY: `o` is a copy of the application's OAEP parameters, whose label
            // (pSourceData) it made readable as PKCS#11 defines: `oaep`'s contract.
            Ok(Mechanism::RsaOaep(unsafe { oaep(&o) }?))
        }
        CKM_AES_KEY_WRAP => simple(Mechanism::AesKeyWrap),
        CKM_AES_KEY_WRAP_KWP => simple(Mechanism::AesKeyWrapPad),
        CKM_RSA_AES_KEY_WRAP => {
            // SAFETY: for CKM_RSA_AES_KEY_WRAP PKCS#11 makes pParameter a
            // CK_RSA_AES_KEY_WRAP_PARAMS; `m` is the application's mechanism, its
            // parameter readable for ulParameterLen bytes (`mechanism`'s contract), and
            // `param` reads only exactly CK_RSA_AES_KEY_WRAP_PARAMS's size, a structure
            // of integers and pointers.
            let w: CK_RSA_AES_KEY_WRAP_PARAMS = unsafe { param(&m) }?;
            if w.pOAEPParams.is_null() {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            // SAFETY: `pOAEPParams` is non-null (checked above), and PKCS#11 makes it
            // point to a CK_RSA_PKCS_OAEP_PARAMS the application made readable; read
            // unaligned, by value: integers and a pointer.
            let o = unsafe { w.pOAEPParams.read_unaligned() };
            Ok(Mechanism::RsaAesKeyWrap {
                aes_bits: w.ulAESKeyBits,
                // SAFETY: `o` is a copy of those OAEP parameters, whose label it made
                // readable as PKCS#11 defines: `oaep`'s contract.
                oaep: unsafe { oaep(&o) }?,
            })
        }
        CKM_ECDH1_DERIVE => {
            // SAFETY: for CKM_ECDH1_DERIVE PKCS#11 makes pParameter a
            // CK_ECDH1_DERIVE_PARAMS; `m` is the application's mechanism, its parameter
            // readable for ulParameterLen bytes (`mechanism`'s contract), and `param`
            // reads only exactly CK_ECDH1_DERIVE_PARAMS's size, a structure of integers
            // and pointers.
            let e: CK_ECDH1_DERIVE_PARAMS = unsafe { param(&m) }?;
            if e.kdf != CKD_NULL || e.ulSharedDataLen != 0 {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            Ok(Mechanism::Ecdh {
                // SAFETY: the peer's public value: `e.pPublicData` and
                // `e.ulPublicDataLen` come from the CK_ECDH1_DERIVE_PARAMS the
                // application made readable as its mechanism defines: null only with a
                // length of 0, else that many readable bytes, copied out by `pbytes`.
                public_data: unsafe { pbytes(e.pPublicData, e.ulPublicDataLen) }?,
            })
        }
        CKM_HKDF_DERIVE => {
            // SAFETY: for CKM_HKDF_DERIVE PKCS#11 makes pParameter a CK_HKDF_PARAMS;
            // `m` is the application's mechanism, its parameter readable for
            // ulParameterLen bytes (`mechanism`'s contract), and `param` reads only
            // exactly CK_HKDF_PARAMS's size, a structure of integers and pointers.
            let k: CK_HKDF_PARAMS = unsafe { param(&m) }?;
            let salt = match k.ulSaltType {
                CKF_HKDF_SALT_NULL => HkdfSalt::Null,
                // SAFETY: the salt (CKF_HKDF_SALT_DATA): `k.pSalt` and `k.ulSaltLen`
                // come from the CK_HKDF_PARAMS the application made readable as its
                // mechanism defines: null only with a length of 0, else that many
                // readable bytes, copied out by `pbytes`.
                CKF_HKDF_SALT_DATA => HkdfSalt::Data(unsafe { pbytes(k.pSalt, k.ulSaltLen) }?),
                _ => return Err(CKR_MECHANISM_PARAM_INVALID),
            };
            Ok(Mechanism::Hkdf(HkdfParams {
                extract: k.bExtract != 0,
                expand: k.bExpand != 0,
                hash: hash(k.prfHashMechanism)?,
                salt,
                // SAFETY: the info: `k.pInfo` and `k.ulInfoLen` come from the
                // CK_HKDF_PARAMS the application made readable as its mechanism
                // defines: null only with a length of 0, else that many readable bytes,
                // copied out by `pbytes`.
                info: unsafe { pbytes(k.pInfo, k.ulInfoLen) }?,
            }))
        }
        CKM_SP800_108_COUNTER_KDF => {
            // SAFETY: for CKM_SP800_108_COUNTER_KDF PKCS#11 makes pParameter a
            // CK_SP800_108_KDF_PARAMS; `m` is the application's mechanism, its
            // parameter readable for ulParameterLen bytes (`mechanism`'s contract), and
            // `param` reads only exactly CK_SP800_108_KDF_PARAMS's size, a structure of
            // integers and pointers.
            let k: CK_SP800_108_KDF_PARAMS = unsafe { param(&m) }?;
            let prf = match k.prfType {
                CKM_SHA256_HMAC => Hash::Sha256,
                CKM_SHA384_HMAC => Hash::Sha384,
                CKM_SHA512_HMAC => Hash::Sha512,
                _ => return Err(CKR_MECHANISM_PARAM_INVALID),
            };
            if k.ulAdditionalDerivedKeys != 0 {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            // SAFETY: pDataParams and ulNumberOfDataParams are the data parameters the
            // application made readable with the CK_SP800_108_KDF_PARAMS: null only
            // with a count of 0, else that many aligned CK_PRF_DATA_PARAMs, `items`'s
            // contract; only read, within this call.
            let data = unsafe { items(k.pDataParams, k.ulNumberOfDataParams) }
                .map_err(|_| CKR_MECHANISM_PARAM_INVALID)?;
            // ihsm's layout: a 32-bit big-endian counter, then the fixed input.
            let [counter, fixed] = data else {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            };
            if counter.type_ != CK_SP800_108_ITERATION_VARIABLE
                || fixed.type_ != CK_SP800_108_BYTE_ARRAY
                || count(counter.ulValueLen)? != size_of::<CK_SP800_108_COUNTER_FORMAT>()
                || counter.pValue.is_null()
            {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            // SAFETY: the counter's pValue is non-null and its ulValueLen exactly one
            // CK_SP800_108_COUNTER_FORMAT (both checked above), readable as the
            // application promises of every data parameter; read unaligned, by value:
            // integers.
            let f = unsafe {
                counter
                    .pValue
                    .cast::<CK_SP800_108_COUNTER_FORMAT>()
                    .read_unaligned()
            };
            if f.bLittleEndian != 0 || f.ulWidthInBits != 32 {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            Ok(Mechanism::Sp800108Counter {
                hash: prf,
                // SAFETY: the fixed input: `fixed.pValue` and `fixed.ulValueLen` come
                // from the byte-array data parameter the application made readable as
                // its mechanism defines: null only with a length of 0, else that many
                // readable bytes, copied out by `pbytes`.
                fixed_input: unsafe { pbytes(fixed.pValue.cast::<u8>(), fixed.ulValueLen) }?,
            })
        }
        CKM_IHSM_TLS13_EXPAND_LABEL => {
            // SAFETY: for CKM_IHSM_TLS13_EXPAND_LABEL PKCS#11 makes pParameter a
            // CK_IHSM_TLS13_EXPAND_LABEL_PARAMS; `m` is the application's mechanism,
            // its parameter readable for ulParameterLen bytes (`mechanism`'s contract),
            // and `param` reads only exactly CK_IHSM_TLS13_EXPAND_LABEL_PARAMS's size,
            // a structure of integers and pointers.
            let t: CK_IHSM_TLS13_EXPAND_LABEL_PARAMS = unsafe { param(&m) }?;
            Ok(Mechanism::Tls13ExpandLabel {
                hash: hash(t.prfHashMechanism)?,
                // SAFETY: the label: `t.pLabel` and `t.ulLabelLen` come from the
                // CK_IHSM_TLS13_EXPAND_LABEL_PARAMS the application made readable as
                // its mechanism defines: null only with a length of 0, else that many
                // readable bytes, copied out by `pbytes`.
                label: unsafe { pbytes(t.pLabel, t.ulLabelLen) }?,
                // SAFETY: the context: `t.pContext` and `t.ulContextLen` come from the
                // CK_IHSM_TLS13_EXPAND_LABEL_PARAMS the application made readable as
                // its mechanism defines: null only with a length of 0, else that many
                // readable bytes, copied out by `pbytes`.
                context: unsafe { pbytes(t.pContext, t.ulContextLen) }?,
            })
        }
        CKM_ML_KEM => simple(Mechanism::MlKem),
        ihsm_proto::mech::CKM_IHSM_KEY_REPORT => simple(Mechanism::KeyReport),
        ihsm_proto::mech::CKM_IHSM_KEY_RELEASE => {
            // The parameter is the EAR itself: a JWT of at most 64 KiB.
            if m.ulParameterLen == 0 || m.ulParameterLen > 64 * 1024 {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            Ok(Mechanism::KeyRelease {
                // SAFETY: for CKM_IHSM_KEY_RELEASE pParameter is the EAR's bytes;
                // `m` is the application's mechanism, its parameter readable for
                // ulParameterLen bytes (`mechanism`'s contract), which `pbytes`
                // copies out.
                ear: unsafe { pbytes(m.pParameter.cast::<u8>(), m.ulParameterLen) }?,
            })
        }
        CKM_SHA256 | CKM_SHA384 | CKM_SHA512 | CKM_SHA3_256 | CKM_SHA3_384 | CKM_SHA3_512 => {
            simple(Mechanism::Digest(h(m.mechanism)?))
        }
        other => {
            crate::state::debug(&format!("mechanism 0x{other:x} is not supported"));
            Err(CKR_MECHANISM_INVALID)
        }
    }
}

/// The raw parameter of a message-based call, which ihsm's signature mechanisms
/// do not take: it must be absent.
pub(crate) fn no_message_param(p: *const c_void, len: CK_ULONG) -> R {
    if p.is_null() && len == 0 {
        Ok(())
    } else {
        Err(CKR_MECHANISM_PARAM_INVALID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a template reused after C_GetAttributeValue carries
    /// `CK_UNAVAILABLE_INFORMATION` as a length; reading it made a slice of 2^64 - 1
    /// bytes (undefined behaviour, then a panic copying it). Found by the `template`
    /// fuzz target.
    #[test]
    fn impossible_lengths_are_refused_before_reading() {
        let value = [1u8; 4];
        let t = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: value.as_ptr() as *mut c_void,
            ulValueLen: CK_UNAVAILABLE_INFORMATION,
        }];
        // SAFETY: `t` is one live attribute whose pValue points to `value`; its length,
        // CK_UNAVAILABLE_INFORMATION, must be refused before anything is read.
        let r = unsafe { template(t.as_ptr(), 1) };
        assert_eq!(r, Err(CKR_ARGUMENTS_BAD));
        // SAFETY: `value` is live; the length, larger than any buffer can be, must be
        // refused before a slice is made of it.
        let r = unsafe { bytes(value.as_ptr(), CK_ULONG::MAX / 2 + 1) };
        assert_eq!(r, Err(CKR_ARGUMENTS_BAD));
        // SAFETY: `t` is live, and the count of `CK_ULONG::MAX / 2` items of 8 bytes
        // overflows `isize::MAX` bytes: it must be refused before a slice is made of
        // it.
        let r = unsafe { items(t.as_ptr().cast::<u64>(), CK_ULONG::MAX / 2) };
        assert_eq!(r.map(<[u64]>::len), Err(CKR_ARGUMENTS_BAD));
        // SAFETY: `value` holds exactly the 4 bytes asked for, readable.
        let r = unsafe { bytes(value.as_ptr(), 4) };
        assert_eq!(r, Ok(&value[..]));
    }
}
