//! The CBOR and COSE that ihsm signs (docs/attestation.md §2): canonical CBOR
//! heads and the two-COSE_Sign1 envelope, written by hand so that the bytes are
//! exactly the documented ones (and independently of `ihsm-verify`, the checker).
//!
//! The writers append one item to a buffer; a map or array is its head
//! ([`map`], [`array`]) followed by its items, in the order the caller writes them
//! (canonical order is the caller's duty: keys ascending).

use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::mldsa::MlDsa87PrivateKey;

use crate::error::Result;

/// COSE algorithm ES384 (-35): CBOR negative int head 0x38 0x22.
pub(crate) const ES384: [u8; 2] = [0x38, 0x22];
/// COSE algorithm ML-DSA-87 (-50): 0x38 0x31.
pub(crate) const ML_DSA_87: [u8; 2] = [0x38, 0x31];

/// A head of `major` type with argument `n`, in its shortest form (RFC 8949 §4.2.1).
pub fn head(o: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => o.push(m | n as u8),
        24..=0xff => o.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            o.push(m | 25);
            o.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            o.push(m | 26);
            o.extend((n as u32).to_be_bytes());
        }
        _ => {
            o.push(m | 27);
            o.extend(n.to_be_bytes());
        }
    }
}

/// An unsigned integer.
pub fn uint(o: &mut Vec<u8>, n: u64) {
    head(o, 0, n);
}

/// A byte string.
pub fn bstr(o: &mut Vec<u8>, b: &[u8]) {
    head(o, 2, b.len() as u64);
    o.extend_from_slice(b);
}

/// A text string.
pub fn tstr(o: &mut Vec<u8>, s: &str) {
    head(o, 3, s.len() as u64);
    o.extend_from_slice(s.as_bytes());
}

/// A negative integer `-1 - n`.
pub fn nint(o: &mut Vec<u8>, n: u64) {
    head(o, 1, n);
}

/// `true` or `false`.
pub fn boolean(o: &mut Vec<u8>, b: bool) {
    o.push(if b { 0xf5 } else { 0xf4 });
}

/// The head of a map of `n` pairs.
pub fn map(o: &mut Vec<u8>, n: u64) {
    head(o, 5, n);
}

/// The head of an array of `n` items.
pub fn array(o: &mut Vec<u8>, n: u64) {
    head(o, 4, n);
}

/// The two-COSE_Sign1 envelope of docs/attestation.md §2 over `payload`: a tagged
/// COSE_Sign1 signed ES384 by `ecc`, then one signed ML-DSA-87 by `mldsa`, a CBOR
/// sequence.
///
/// # Errors
/// A signing failure.
pub fn envelope(
    payload: &[u8],
    ecc: &EccP384PrivateKey,
    mldsa: &MlDsa87PrivateKey,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2 * payload.len() + 4800);
    let p = protected(ES384);
    let sig = ecc.sign(&sig_structure(&p, payload))?.to_fixed();
    sign1(&mut out, &p, payload, &sig);
    let p = protected(ML_DSA_87);
    let sig = mldsa.sign(&sig_structure(&p, payload))?;
    sign1(&mut out, &p, payload, sig.as_bytes());
    Ok(out)
}

/// `{1: alg, 3: "application/cbor"}` encoded.
pub(crate) fn protected(alg: [u8; 2]) -> Vec<u8> {
    let mut p = Vec::new();
    head(&mut p, 5, 2);
    uint(&mut p, 1);
    p.extend(alg);
    uint(&mut p, 3);
    tstr(&mut p, "application/cbor");
    p
}

/// RFC 9052 §4.4: `["Signature1", protected, h'', payload]`.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    head(&mut s, 4, 4);
    tstr(&mut s, "Signature1");
    bstr(&mut s, protected);
    bstr(&mut s, b"");
    bstr(&mut s, payload);
    s
}

/// Tag 18, `[protected, {}, payload, signature]`.
pub(crate) fn sign1(o: &mut Vec<u8>, protected: &[u8], payload: &[u8], sig: &[u8]) {
    head(o, 6, 18);
    head(o, 4, 4);
    bstr(o, protected);
    head(o, 5, 0);
    bstr(o, payload);
    bstr(o, sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_shortest() {
        let mut o = Vec::new();
        for n in [0, 23, 24, 255, 256, 65535, 65536] {
            uint(&mut o, n);
        }
        // 0, 23, 24, 255, 256, 65535 (19 ffff), 65536 (RFC 8949 §3.1 heads).
        assert_eq!(hex::encode(o), "0017181818ff19010019ffff1a00010000");
        assert_eq!(
            hex::encode(protected(ES384)),
            "a201382203706170706c69636174696f6e2f63626f72"
        );
    }
}
