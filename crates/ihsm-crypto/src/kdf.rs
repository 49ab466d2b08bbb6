//! Key derivation: HKDF (RFC 5869, SP 800-56C), the TLS 1.3 `HKDF-Expand-Label`
//! (RFC 8446 §7.1), and the SP 800-108 counter-mode KDF with HMAC, over SHA-256,
//! SHA-384 or SHA-512, and [`kdf_hmac512`], the form of the last that Caliptra's
//! key ladder uses. Every output is a secret and lands in a [`SecretVec`] or a
//! [`Secret`].
//!
//! aws-lc-rs keeps the HKDF pseudorandom key opaque, so [`hkdf_extract`] computes
//! it by its definition, `PRK = HMAC-Hash(salt, IKM)` (RFC 5869 §2.2), with aws-lc's
//! HMAC; a unit test checks that extract-then-expand equals aws-lc's one-shot HKDF.

use aws_lc_rs::kdf::{KbkdfCtrHmacAlgorithmId, get_kbkdf_ctr_hmac_algorithm, kbkdf_ctr_hmac};
use aws_lc_rs::{hkdf, hmac};

use crate::hash::HashAlg;
use crate::{CryptoError, Secret, SecretVec};

/// The longest pseudorandom key aws-lc-rs accepts for HKDF-Expand.
pub const MAX_PRK_LEN: usize = 64;

fn hkdf_alg(hash: HashAlg) -> Result<hkdf::Algorithm, CryptoError> {
    match hash {
        HashAlg::Sha256 => Ok(hkdf::HKDF_SHA256),
        HashAlg::Sha384 => Ok(hkdf::HKDF_SHA384),
        HashAlg::Sha512 => Ok(hkdf::HKDF_SHA512),
        _ => Err(CryptoError::Unsupported(
            "KDF hash (SHA-256, SHA-384 or SHA-512 only)",
        )),
    }
}

/// An output length for aws-lc-rs's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn check_len(hash: HashAlg, len: usize) -> Result<(), CryptoError> {
    let max = 255 * hash.output_len();
    if len > max {
        return Err(CryptoError::WrongLength {
            what: "HKDF output (at most 255 hash lengths)",
            expected: max,
            actual: len,
        });
    }
    Ok(())
}

/// HKDF-Extract: the pseudorandom key `HMAC-Hash(salt, ikm)`. An empty salt
/// stands for a hash-length string of zeros (which HMAC makes the same thing).
///
/// # Errors
/// [`CryptoError::Unsupported`] for a hash other than SHA-256/384/512.
pub fn hkdf_extract(hash: HashAlg, salt: &[u8], ikm: &[u8]) -> Result<SecretVec, CryptoError> {
    let alg = hkdf_alg(hash)?.hmac_algorithm();
    let key = hmac::Key::new(alg, salt);
    // Written straight into locked memory: an `hmac::Tag` would leave the
    // pseudorandom key, unwiped, where it was built.
    SecretVec::try_from_fn(hash.output_len(), |out| {
        hmac::sign_to_buffer(&key, ikm, out)
            .map(|_| ())
            .map_err(|_| CryptoError::Internal("HKDF-Extract"))
    })
}

/// HKDF-Expand of `prk` with `info` to `len` bytes.
///
/// # Errors
/// [`CryptoError::WrongLength`] for an empty `prk`, one longer than
/// [`MAX_PRK_LEN`], or `len` above 255 hash lengths; [`CryptoError::Unsupported`]
/// for a hash other than SHA-256/384/512.
pub fn hkdf_expand(
    hash: HashAlg,
    prk: &[u8],
    info: &[u8],
    len: usize,
) -> Result<SecretVec, CryptoError> {
    let alg = hkdf_alg(hash)?;
    if prk.is_empty() || prk.len() > MAX_PRK_LEN {
        return Err(CryptoError::WrongLength {
            what: "HKDF pseudorandom key (1 to 64 bytes)",
            expected: hash.output_len(),
            actual: prk.len(),
        });
    }
    check_len(hash, len)?;
    let prk = hkdf::Prk::new_less_safe(alg, prk);
    let info = [info];
    let okm = prk
        .expand(&info, Len(len))
        .map_err(|_| CryptoError::Internal("HKDF-Expand"))?;
    SecretVec::try_from_fn(len, |out| {
        okm.fill(out)
            .map_err(|_| CryptoError::Internal("HKDF-Expand"))
    })
}

/// HKDF (extract then expand) in one call.
///
/// # Errors
/// As [`hkdf_expand`].
pub fn hkdf(
    hash: HashAlg,
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
) -> Result<SecretVec, CryptoError> {
    let alg = hkdf_alg(hash)?;
    check_len(hash, len)?;
    let prk = hkdf::Salt::new(alg, salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, Len(len))
        .map_err(|_| CryptoError::Internal("HKDF"))?;
    SecretVec::try_from_fn(len, |out| {
        okm.fill(out).map_err(|_| CryptoError::Internal("HKDF"))
    })
}

/// TLS 1.3 `HKDF-Expand-Label(secret, label, context, len)` (RFC 8446 §7.1): HKDF-
/// Expand with `info` the `HkdfLabel` structure
/// `uint16 len || uint8 len("tls13 "+label) || "tls13 " || label || uint8 len(context) || context`.
///
/// # Errors
/// [`CryptoError::InvalidInput`] for an empty label or one longer than 249 bytes
/// (the prefixed label must fit in 7..=255 bytes), a context over 255 bytes, or
/// `len` above 65535; otherwise as [`hkdf_expand`].
pub fn tls13_expand_label(
    hash: HashAlg,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    len: usize,
) -> Result<SecretVec, CryptoError> {
    const PREFIX: &[u8] = b"tls13 ";
    let out_len = u16::try_from(len)
        .map_err(|_| CryptoError::InvalidInput("TLS 1.3 label output over 65535 bytes"))?;
    let label_len = u8::try_from(PREFIX.len() + label.len())
        .ok()
        .filter(|_| !label.is_empty())
        .ok_or(CryptoError::InvalidInput(
            "TLS 1.3 label must be 1 to 249 bytes",
        ))?;
    let context_len = u8::try_from(context.len())
        .map_err(|_| CryptoError::InvalidInput("TLS 1.3 label context over 255 bytes"))?;
    let mut info = Vec::with_capacity(4 + PREFIX.len() + label.len() + context.len());
    info.extend_from_slice(&out_len.to_be_bytes());
    info.push(label_len);
    info.extend_from_slice(PREFIX);
    info.extend_from_slice(label);
    info.push(context_len);
    info.extend_from_slice(context);
    hkdf_expand(hash, secret, &info, len)
}

/// The SP 800-108r1 KDF in counter mode with HMAC-`hash` as PRF: a 32-bit
/// big-endian counter starting at 1, placed before `fixed_input`, no length field
/// of its own (put `L` into `fixed_input` if the protocol needs it).
///
/// # Errors
/// [`CryptoError::WrongLength`] for an empty key or `len` of zero;
/// [`CryptoError::Unsupported`] for a hash other than SHA-256/384/512.
pub fn kbkdf_counter_hmac(
    hash: HashAlg,
    key: &[u8],
    fixed_input: &[u8],
    len: usize,
) -> Result<SecretVec, CryptoError> {
    kbkdf_id(hash)?;
    if key.is_empty() {
        return Err(CryptoError::WrongLength {
            what: "KBKDF key",
            expected: hash.output_len(),
            actual: 0,
        });
    }
    if len == 0 {
        return Err(CryptoError::WrongLength {
            what: "KBKDF output",
            expected: hash.output_len(),
            actual: 0,
        });
    }
    SecretVec::try_from_fn(len, |out| kbkdf_into(hash, key, fixed_input, out))
}

/// One 64-byte block of the SP 800-108r1 counter KDF with HMAC-SHA-512:
/// `HMAC-SHA-512(key, [1]_32be || label || 0x00 || context)`, with the separator
/// and context left out when there is no context — Caliptra's `hmac512_kdf`, the
/// step of the root of trust's key ladder.
///
/// # Errors
/// [`CryptoError::Internal`] or [`CryptoError::SecretMemory`].
pub fn kdf_hmac512(
    key: &[u8],
    label: &[u8],
    context: Option<&[u8]>,
) -> Result<Secret<64>, CryptoError> {
    let info = match context {
        Some(ctx) => crate::scratch::concat(&[label, &[0x00], ctx]),
        None => crate::scratch::concat(&[label]),
    };
    Secret::try_from_fn(|out| kbkdf_into(HashAlg::Sha512, key, &info, out))
}

fn kbkdf_id(hash: HashAlg) -> Result<KbkdfCtrHmacAlgorithmId, CryptoError> {
    match hash {
        HashAlg::Sha256 => Ok(KbkdfCtrHmacAlgorithmId::Sha256),
        HashAlg::Sha384 => Ok(KbkdfCtrHmacAlgorithmId::Sha384),
        HashAlg::Sha512 => Ok(KbkdfCtrHmacAlgorithmId::Sha512),
        _ => Err(CryptoError::Unsupported(
            "KDF hash (SHA-256, SHA-384 or SHA-512 only)",
        )),
    }
}

/// The counter KDF into `out`, in place (the one call into aws-lc for both forms).
fn kbkdf_into(
    hash: HashAlg,
    key: &[u8],
    fixed_input: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let alg =
        get_kbkdf_ctr_hmac_algorithm(kbkdf_id(hash)?).ok_or(CryptoError::Internal("KBKDF"))?;
    kbkdf_ctr_hmac(alg, key, fixed_input, out).map_err(|_| CryptoError::Internal("KBKDF"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExposeSecret;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// The ladder's KDF is one HMAC-SHA-512 block of the counter KDF, built by hand
    /// here, and the general counter KDF's first 64 bytes.
    #[test]
    fn kdf_hmac512_matches_hand_built_hmac_and_the_counter_kdf() {
        let key = [7u8; 48];
        let with_ctx = kdf_hmac512(&key, b"label", Some(b"ctx")).unwrap();
        let manual = crate::hmac::hmac512(&key, b"\x00\x00\x00\x01label\x00ctx").unwrap();
        assert!(with_ctx.ct_eq(&manual));
        let no_ctx = kdf_hmac512(&key, b"label", None).unwrap();
        let manual = crate::hmac::hmac512(&key, b"\x00\x00\x00\x01label").unwrap();
        assert!(no_ctx.ct_eq(&manual));
        let general = kbkdf_counter_hmac(HashAlg::Sha512, &key, b"label", 64).unwrap();
        assert_eq!(general.expose_secret(), no_ctx.expose_secret());
    }

    // RFC 5869 A.1 (SHA-256, basic) and A.3 (SHA-256, empty salt and info).
    #[test]
    fn rfc5869_vectors() {
        let ikm = [0x0bu8; 22];
        let salt = h("000102030405060708090a0b0c");
        let info = h("f0f1f2f3f4f5f6f7f8f9");
        let prk = hkdf_extract(HashAlg::Sha256, &salt, &ikm).unwrap();
        assert_eq!(
            prk.expose_secret(),
            h("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
        );
        let okm = h(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
                     34007208d5b887185865",
        );
        let expanded = hkdf_expand(HashAlg::Sha256, prk.expose_secret(), &info, 42).unwrap();
        assert_eq!(expanded.expose_secret(), okm.as_slice());
        let one_shot = hkdf(HashAlg::Sha256, &salt, &ikm, &info, 42).unwrap();
        assert_eq!(one_shot.expose_secret(), okm.as_slice());

        let prk = hkdf_extract(HashAlg::Sha256, &[], &ikm).unwrap();
        assert_eq!(
            prk.expose_secret(),
            h("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04")
        );
        let okm = h(
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d\
                     9d201395faa4b61a96c8",
        );
        let one_shot = hkdf(HashAlg::Sha256, &[], &ikm, &[], 42).unwrap();
        assert_eq!(one_shot.expose_secret(), okm.as_slice());
        let two_step = hkdf_expand(HashAlg::Sha256, prk.expose_secret(), &[], 42).unwrap();
        assert!(two_step.ct_eq(&one_shot));
    }

    #[test]
    fn extract_then_expand_equals_one_shot_for_every_hash() {
        for hash in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
            for salt in [&b""[..], b"salt", &[0xaa; 200]] {
                let prk = hkdf_extract(hash, salt, b"input keying material").unwrap();
                assert_eq!(prk.len(), hash.output_len());
                let a = hkdf_expand(hash, prk.expose_secret(), b"info", 100).unwrap();
                let b = hkdf(hash, salt, b"input keying material", b"info", 100).unwrap();
                assert!(a.ct_eq(&b));
            }
        }
    }

    #[test]
    fn hkdf_limits() {
        let max = 255 * 32;
        assert_eq!(
            hkdf(HashAlg::Sha256, b"", b"k", b"", max).unwrap().len(),
            max
        );
        assert!(matches!(
            hkdf(HashAlg::Sha256, b"", b"k", b"", max + 1),
            Err(CryptoError::WrongLength { .. })
        ));
        assert!(hkdf_expand(HashAlg::Sha256, &[1; 32], b"", max + 1).is_err());
        assert!(hkdf_expand(HashAlg::Sha256, &[], b"", 32).is_err());
        assert!(hkdf_expand(HashAlg::Sha256, &[1; 65], b"", 32).is_err());
        assert!(hkdf_expand(HashAlg::Sha512, &[1; 64], b"", 32).is_ok());
        assert_eq!(hkdf(HashAlg::Sha384, b"s", b"k", b"i", 0).unwrap().len(), 0);
        for hash in [HashAlg::Sha1, HashAlg::Sha224, HashAlg::Sha3_256] {
            assert!(matches!(
                hkdf(hash, b"", b"k", b"", 16),
                Err(CryptoError::Unsupported(_))
            ));
            assert!(hkdf_extract(hash, b"", b"k").is_err());
            assert!(hkdf_expand(hash, &[0; 32], b"", 16).is_err());
            assert!(tls13_expand_label(hash, &[0; 32], b"key", b"", 16).is_err());
            assert!(kbkdf_counter_hmac(hash, b"k", b"", 16).is_err());
        }
    }

    /// RFC 8448 §3 (simple 1-RTT handshake): the server handshake traffic secret
    /// gives the record key and IV through `HKDF-Expand-Label`.
    #[test]
    fn tls13_expand_label_rfc8448() {
        let secret = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
        let key = tls13_expand_label(HashAlg::Sha256, &secret, b"key", b"", 16).unwrap();
        assert_eq!(key.expose_secret(), h("3fce516009c21727d0f2e4e86ee403bc"));
        let iv = tls13_expand_label(HashAlg::Sha256, &secret, b"iv", b"", 12).unwrap();
        assert_eq!(iv.expose_secret(), h("5d313eb2671276ee13000b30"));
    }

    #[test]
    fn tls13_label_is_built_as_rfc8446_says() {
        let secret = [7u8; 48];
        let got = tls13_expand_label(HashAlg::Sha384, &secret, b"derived", b"ctx", 48).unwrap();
        let info = [&[0u8, 48, 13][..], b"tls13 derived", &[3], b"ctx"].concat();
        let manual = hkdf_expand(HashAlg::Sha384, &secret, &info, 48).unwrap();
        assert!(got.ct_eq(&manual));
        let long = [b'a'; 250];
        assert!(matches!(
            tls13_expand_label(HashAlg::Sha256, &[0; 32], &long, b"", 16),
            Err(CryptoError::InvalidInput(_))
        ));
        assert!(tls13_expand_label(HashAlg::Sha256, &[0; 32], &long[..249], b"", 16).is_ok());
        assert!(tls13_expand_label(HashAlg::Sha256, &[0; 32], b"", b"", 16).is_err());
        assert!(tls13_expand_label(HashAlg::Sha256, &[0; 32], b"k", &[0; 256], 16).is_err());
        assert!(tls13_expand_label(HashAlg::Sha256, &[0; 32], b"k", b"", 65536).is_err());
    }

    /// The counter KDF is HMAC(key, [i]_32be || fixed) block by block.
    #[test]
    fn kbkdf_matches_its_definition() {
        for hash in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
            let key = b"kbkdf key";
            let fixed = b"label\x00context";
            let len = hash.output_len() * 2 + 5;
            let out = kbkdf_counter_hmac(hash, key, fixed, len).unwrap();
            let mut manual = Vec::new();
            for i in 1u32..=3 {
                let block = [&i.to_be_bytes()[..], fixed].concat();
                manual.extend(crate::hmac::hmac_sign(hash, key, &block).unwrap());
            }
            assert_eq!(out.expose_secret(), &manual[..len]);
        }
        assert!(kbkdf_counter_hmac(HashAlg::Sha256, b"", b"x", 32).is_err());
        assert!(kbkdf_counter_hmac(HashAlg::Sha256, b"k", b"x", 0).is_err());
    }
}
