//! PKCS#11 attribute templates through the module's inner functions, as an
//! application passes them: the template reader behind C_CreateObject,
//! C_FindObjectsInit, C_SetAttributeValue and the others
//! (`ihsm_pkcs11::fuzz::template`), C_GetAttributeValue's filling of the caller's
//! template (`fill`), and then the core's attribute table and key import on what
//! was read (`ihsm_core::fuzz::template`: create, generate, modify and copy checks).
//!
//! Input: `flags u8 | attributes`, each `type u8 | shape u8 | len u8 | bytes[len]`.
//! `type` indexes a table of attribute types; past it, 0xff takes a raw `u64` LE
//! from the next 8 bytes and other values name unknown (vendor) types. `shape % 4`:
//! 0 the value where the target owns `len` bytes, 1 a null `pValue` with a non-zero
//! length, 2 a length one short of the bytes, 3 `CK_UNAVAILABLE_INFORMATION` as the
//! length (what C_GetAttributeValue leaves in a template that is then reused).
//! `(shape >> 2) % 3` is the daemon's answer for `fill`: sensitive, invalid, or
//! the value. `flags`: bit 0 a null array with a non-zero count, bits 1-2 the phase
//! of the core's checks, bit 3 the Security Officer, bits 4-5 the existing object
//! of modify and copy.
//!
//! Nothing may panic or read or write outside the buffers; what is read and filled
//! back reads again to the same attributes; `fill` does what PKCS#11 says.
#![no_main]

use cryptoki_sys::*;
use ihsm_proto::attr::{AttrResult, AttrValue, Attribute};
use libfuzzer_sys::fuzz_target;

const TYPES: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_ID,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_DERIVE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
    CKA_PARAMETER_SET,
    CKA_SEED,
    CKA_CERTIFICATE_TYPE,
    CKA_TRUSTED,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_APPLICATION,
    CKA_OBJECT_ID,
    CKA_SUBJECT,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_CHECK_VALUE,
    CKA_UNIQUE_ID,
    CKA_ENCAPSULATE,
    CKA_DECAPSULATE,
    CKA_SIGN_RECOVER,
    CKA_VERIFY_RECOVER,
];

fn ul(v: CK_ULONG) -> AttrValue {
    AttrValue::Ulong(v)
}

/// The existing objects of the modify and copy checks.
fn current(which: u8) -> Vec<Attribute> {
    let a = |ty, value| Attribute { ty, value };
    let t = AttrValue::Bool(true);
    let f = AttrValue::Bool(false);
    match which % 4 {
        0 => vec![
            a(CKA_CLASS, ul(CKO_SECRET_KEY)),
            a(CKA_KEY_TYPE, ul(CKK_AES)),
            a(CKA_TOKEN, t.clone()),
            a(CKA_SENSITIVE, t.clone()),
            a(CKA_EXTRACTABLE, f.clone()),
            a(CKA_ENCRYPT, t.clone()),
            a(CKA_MODIFIABLE, t.clone()),
            a(CKA_LABEL, AttrValue::Bytes(b"aes".to_vec())),
        ],
        1 => vec![
            a(CKA_CLASS, ul(CKO_PRIVATE_KEY)),
            a(CKA_KEY_TYPE, ul(CKK_EC)),
            a(CKA_SIGN, t.clone()),
            a(CKA_EXTRACTABLE, t.clone()),
            a(CKA_SENSITIVE, f.clone()),
        ],
        2 => vec![
            a(CKA_CLASS, ul(CKO_DATA)),
            a(CKA_APPLICATION, AttrValue::Bytes(b"app".to_vec())),
            a(CKA_VALUE, AttrValue::Bytes(vec![1, 2, 3])),
        ],
        _ => vec![
            a(CKA_CLASS, ul(CKO_PUBLIC_KEY)),
            a(CKA_KEY_TYPE, ul(CKK_RSA)),
            a(CKA_VERIFY, t),
            a(CKA_MODIFIABLE, f),
        ],
    }
}

struct Spec {
    ty: CK_ATTRIBUTE_TYPE,
    shape: u8,
    bytes: Vec<u8>,
}

fn parse(mut d: &[u8]) -> Vec<Spec> {
    let mut out = Vec::new();
    while d.len() >= 3 && out.len() < 64 {
        let (sel, shape, len) = (d[0], d[1], usize::from(d[2]));
        d = &d[3..];
        let ty = match usize::from(sel) {
            i if i < TYPES.len() => TYPES[i],
            0xff => {
                if d.len() < 8 {
                    break;
                }
                let t = u64::from_le_bytes(d[..8].try_into().unwrap());
                d = &d[8..];
                t
            }
            i => CKA_VENDOR_DEFINED | i as CK_ULONG,
        };
        let n = len.min(d.len());
        out.push(Spec {
            ty,
            shape,
            bytes: d[..n].to_vec(),
        });
        d = &d[n..];
    }
    out
}

/// The CK_ATTRIBUTE array of `specs`, pointing into `bufs` (which the caller keeps).
fn array(specs: &[Spec], bufs: &mut [Vec<u8>]) -> Vec<CK_ATTRIBUTE> {
    specs
        .iter()
        .zip(bufs.iter_mut())
        .map(|(s, b)| {
            let len = b.len() as CK_ULONG;
            let (p, n) = match s.shape % 4 {
                0 => (b.as_mut_ptr(), len),
                1 => (std::ptr::null_mut(), len.max(1)),
                2 => (b.as_mut_ptr(), len.saturating_sub(1)),
                _ => (b.as_mut_ptr(), CK_UNAVAILABLE_INFORMATION),
            };
            CK_ATTRIBUTE {
                type_: s.ty,
                pValue: p.cast(),
                ulValueLen: n,
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let specs = parse(rest);

    // Reading a template.
    let mut bufs: Vec<Vec<u8>> = specs.iter().map(|s| s.bytes.clone()).collect();
    let attrs = array(&specs, &mut bufs);
    let n = attrs.len() as CK_ULONG;
    if flags & 1 == 1 && n > 0 {
        // SAFETY: a null array; the reader must refuse it without reading.
        assert_eq!(
            unsafe { ihsm_pkcs11::fuzz::template(std::ptr::null(), n) },
            Err(CKR_ARGUMENTS_BAD)
        );
    }
    // SAFETY: `attrs` points into `bufs`, each non-null `pValue` with at least
    // `ulValueLen` bytes, or a length no buffer can have.
    let read = unsafe { ihsm_pkcs11::fuzz::template(attrs.as_ptr(), n) };
    if let Ok(template) = &read {
        assert_eq!(template.len(), specs.len());
        // Filled back into buffers of the lengths the values need, the values
        // read again the same.
        let results: Vec<AttrResult> = template
            .iter()
            .map(|a| AttrResult::Value(a.value.clone()))
            .collect();
        let mut out: Vec<Vec<u8>> = vec![vec![0u8; 8]; template.len()];
        let mut tmpl: Vec<CK_ATTRIBUTE> = template
            .iter()
            .zip(out.iter_mut())
            .map(|(a, b)| {
                let len = match &a.value {
                    AttrValue::Bool(_) => 1,
                    AttrValue::Ulong(_) => 8,
                    AttrValue::Bytes(v) => v.len(),
                };
                b.resize(len, 0);
                CK_ATTRIBUTE {
                    type_: a.ty,
                    pValue: b.as_mut_ptr().cast(),
                    ulValueLen: len as CK_ULONG,
                }
            })
            .collect();
        // SAFETY: each entry points to `ulValueLen` writable bytes of `out`.
        unsafe { ihsm_pkcs11::fuzz::fill(tmpl.as_mut_ptr(), &results) }.unwrap();
        // SAFETY: as above, now filled.
        let again =
            unsafe { ihsm_pkcs11::fuzz::template(tmpl.as_ptr(), tmpl.len() as CK_ULONG) }.unwrap();
        assert_eq!(&again, template);

        // The core's checks on what was read.
        let phase = (flags >> 1) & 3;
        let _ = ihsm_core::fuzz::template(template, &current(flags >> 4), phase, flags & 8 != 0);
    }

    // Filling a C_GetAttributeValue template with the daemon's answers.
    let results: Vec<AttrResult> = specs
        .iter()
        .map(|s| match (s.shape >> 2) % 3 {
            0 => AttrResult::Sensitive,
            1 => AttrResult::Invalid,
            _ => AttrResult::Value(AttrValue::Bytes(s.bytes.iter().rev().copied().collect())),
        })
        .collect();
    let mut bufs: Vec<Vec<u8>> = specs.iter().map(|s| vec![0xa5; s.bytes.len()]).collect();
    let mut tmpl = array(&specs, &mut bufs);
    for a in &mut tmpl {
        if a.ulValueLen == CK_UNAVAILABLE_INFORMATION {
            // What a reused template carries; the module cannot know the buffer's
            // size, so the caller's part of the contract is a null pointer here.
            a.pValue = std::ptr::null_mut();
        }
    }
    let before: Vec<(bool, CK_ULONG)> = tmpl
        .iter()
        .map(|a| (a.pValue.is_null(), a.ulValueLen))
        .collect();
    // SAFETY: each non-null `pValue` holds at least `ulValueLen` bytes of `bufs`.
    let rv = unsafe { ihsm_pkcs11::fuzz::fill(tmpl.as_mut_ptr(), &results) };
    let mut expect = CKR_OK;
    for (i, r) in results.iter().enumerate() {
        let (null, claimed) = before[i];
        let got = tmpl[i].ulValueLen;
        match r {
            AttrResult::Sensitive => {
                assert_eq!(got, CK_UNAVAILABLE_INFORMATION);
                expect = CKR_ATTRIBUTE_SENSITIVE;
            }
            AttrResult::Invalid => {
                assert_eq!(got, CK_UNAVAILABLE_INFORMATION);
                expect = CKR_ATTRIBUTE_TYPE_INVALID;
            }
            AttrResult::Value(AttrValue::Bytes(v)) => {
                let len = v.len() as CK_ULONG;
                if null {
                    assert_eq!(got, len);
                } else if claimed >= len {
                    assert_eq!(got, len);
                    assert_eq!(&bufs[i][..v.len()], v.as_slice());
                } else {
                    assert_eq!(got, CK_UNAVAILABLE_INFORMATION);
                    assert!(bufs[i].iter().all(|&b| b == 0xa5));
                    expect = CKR_BUFFER_TOO_SMALL;
                }
            }
            AttrResult::Value(_) => unreachable!(),
        }
    }
    assert_eq!(
        rv,
        if expect == CKR_OK {
            Ok(())
        } else {
            Err(expect)
        }
    );
});
