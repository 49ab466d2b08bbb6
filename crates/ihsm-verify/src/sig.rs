//! The signature primitives every check uses: ECDSA P-384 with aws-lc-rs, ML-DSA-87
//! with RustCrypto `ml-dsa`, the quote's prehashed ECDSA with RustCrypto `p384`.

use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, UnparsedPublicKey, VerificationAlgorithm,
};
use ml_dsa::signature::Verifier as _;

/// Length of an uncompressed SEC1 P-384 point.
pub const P384_POINT_LEN: usize = 97;
/// Length of an ML-DSA-87 public key.
pub const MLDSA87_PUBLIC_LEN: usize = 2592;
/// Length of an ML-DSA-87 signature.
pub const MLDSA87_SIGNATURE_LEN: usize = 4627;

fn ecdsa(alg: &'static dyn VerificationAlgorithm, point: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    point.len() == P384_POINT_LEN
        && point.first() == Some(&0x04)
        && UnparsedPublicKey::new(alg, point).verify(msg, sig).is_ok()
}

/// ECDSA P-384 with SHA-384 over `msg`, the signature DER (X.509).
pub(crate) fn ecdsa_der(point: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    ecdsa(&ECDSA_P384_SHA384_ASN1, point, msg, sig)
}

/// ECDSA P-384 with SHA-384 over `msg`, the signature `r ‖ s` (COSE).
pub(crate) fn ecdsa_fixed(point: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    sig.len() == 96 && ecdsa(&ECDSA_P384_SHA384_FIXED, point, msg, sig)
}

/// ECDSA P-384 over a 48-byte value used as the hash (the quote's rule).
pub(crate) fn ecdsa_prehash(point: &[u8], digest: &[u8], sig: &[u8]) -> bool {
    use p384::ecdsa::signature::hazmat::PrehashVerifier as _;
    let Ok(vk) = p384::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
        return false;
    };
    let Ok(sig) = p384::ecdsa::Signature::from_slice(sig) else {
        return false;
    };
    vk.verify_prehash(digest, &sig).is_ok()
}

/// Pure ML-DSA-87 with the empty context over `msg`.
pub(crate) fn mldsa87(public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(enc) = public.try_into() else {
        return false;
    };
    let vk = ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(enc);
    let Ok(enc_sig) = sig.try_into() else {
        return false;
    };
    let Some(sig) = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(enc_sig) else {
        return false;
    };
    vk.verify(msg, &sig).is_ok()
}

/// SHA-384.
pub(crate) fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    for p in parts {
        c.update(p);
    }
    let mut out = [0u8; 48];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// SHA-512.
pub(crate) fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA512);
    for p in parts {
        c.update(p);
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(c.finish().as_ref());
    out
}
