//! Every parser and every operation on attacker-supplied bytes returns an error
//! instead of panicking: random inputs, and valid encodings truncated or with one
//! byte changed (which reach deeper into the parsers than noise does).
//!
//! Not panicking is not enough: each result is checked. An error must be of the
//! kind the input calls for (a wrong length, an invalid key, a failed
//! verification); a success must be well formed (the right length, and a value
//! that re-encodes to its input or undoes the operation). Garbage never verifies,
//! decrypts or unwraps: a forgery by chance is below 2^-64 for every check here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use ihsm_crypto::aes::{self, AesKey, AesMode, AesStream};
use ihsm_crypto::ec::{Curve, EcPrivateKey, EcPublicKey};
use ihsm_crypto::ed25519::{Ed25519PrivateKey, ed25519_verify};
use ihsm_crypto::hash::HashAlg;
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey, mldsa_verify};
use ihsm_crypto::mlkem::{MlKemLevel, MlKemPrivateKey, mlkem_encapsulate};
use ihsm_crypto::rsa::{self, RsaPrivateKey, RsaPublicKey, rsa_aes_unwrap};
use ihsm_crypto::{CryptoError, ExposeSecret, hmac, kdf};
use proptest::prelude::*;

struct Fixtures {
    aes: AesKey,
    ec: Vec<EcPrivateKey>,
    ed: Ed25519PrivateKey,
    rsa: RsaPrivateKey,
    mldsa: MlDsaPrivateKey,
    mlkem: MlKemPrivateKey,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        aes: AesKey::generate(256).unwrap(),
        ec: Curve::ALL
            .iter()
            .map(|c| EcPrivateKey::generate(*c).unwrap())
            .collect(),
        ed: Ed25519PrivateKey::generate().unwrap(),
        rsa: RsaPrivateKey::generate(2048).unwrap(),
        mldsa: MlDsaPrivateKey::generate(MlDsaLevel::L44).unwrap(),
        mlkem: MlKemPrivateKey::generate(MlKemLevel::L512).unwrap(),
    })
}

/// `valid` truncated at `cut` (modulo its length + 1) and with the byte at `at`
/// xored with `x`.
fn mangle(valid: &[u8], cut: usize, at: usize, x: u8) -> Vec<u8> {
    let mut v = valid.to_vec();
    if !v.is_empty() {
        let i = at % v.len();
        v[i] ^= x;
    }
    v.truncate(cut % (valid.len() + 1));
    v
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn wrong_length<T>(r: &Result<T, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::WrongLength { .. }))
}

fn invalid_key<T>(r: &Result<T, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::InvalidKey(_)))
}

fn failed<T>(r: &Result<T, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::VerificationFailed))
}

fn unsupported<T>(r: &Result<T, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::Unsupported(_)))
}

/// The two results are both successes with the same bytes, or both errors of the
/// same kind.
fn same<T: AsRef<[u8]>, U: AsRef<[u8]>>(
    a: &Result<T, CryptoError>,
    b: &Result<U, CryptoError>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.as_ref() == b.as_ref(),
        (Err(a), Err(b)) => core::mem::discriminant(a) == core::mem::discriminant(b),
        _ => false,
    }
}

fn exposed(r: Result<ihsm_crypto::SecretVec, CryptoError>) -> Result<Vec<u8>, CryptoError> {
    r.map(|s| s.expose_secret().to_vec())
}

const HMAC_HASHES: [HashAlg; 3] = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn aes_inputs(bytes in proptest::collection::vec(any::<u8>(), 0..80), tag in 0usize..20) {
        let key = &fixtures().aes;
        let n = bytes.len();
        match AesKey::from_bytes(&bytes) {
            Ok(k) => prop_assert!(matches!(n, 16 | 24 | 32) && k.bits() == n * 8),
            Err(e) => {
                let refused = matches!(e, CryptoError::WrongLength { actual, .. } if actual == n);
                prop_assert!(refused && !matches!(n, 16 | 24 | 32));
            }
        }

        let iv = bytes.get(..12).unwrap_or(&bytes);
        let gcm_ok = tag == 16 && iv.len() == 12;
        // Random bytes under a random key never authenticate.
        let r = aes::gcm_decrypt(key, iv, &bytes, &bytes, tag);
        prop_assert!(if gcm_ok { failed(&r) } else { wrong_length(&r) }, "{r:?}");
        let r = aes::gcm_encrypt(key, iv, &bytes, &bytes, tag);
        if gcm_ok {
            let ct = r.unwrap();
            prop_assert_eq!(ct.len(), n + 16);
            let pt = aes::gcm_decrypt(key, iv, &bytes, &ct, 16).unwrap();
            prop_assert_eq!(pt.expose_secret(), bytes.as_slice());
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }

        let iv16 = bytes.get(..16).unwrap_or(&bytes);
        let iv_ok = iv16.len() == 16;
        for pad in [false, true] {
            let r = aes::cbc_decrypt(key, iv16, pad, &bytes);
            match &r {
                _ if !iv_ok || n % 16 != 0 || (pad && n == 0) => prop_assert!(wrong_length(&r)),
                Ok(pt) if pad => prop_assert!(pt.len() < n && pt.len() + 16 >= n),
                Ok(pt) => prop_assert_eq!(pt.len(), n),
                // Bad padding is the one way CBC-PAD decryption of garbage fails.
                Err(_) => prop_assert!(pad && failed(&r), "{r:?}"),
            }
            let r = aes::cbc_encrypt(key, iv16, pad, &bytes);
            if !iv_ok || (!pad && n % 16 != 0) {
                prop_assert!(wrong_length(&r), "{r:?}");
            } else {
                let ct = r.unwrap();
                prop_assert_eq!(ct.len(), if pad { (n / 16 + 1) * 16 } else { n });
                let back = aes::cbc_decrypt(key, iv16, pad, &ct).unwrap();
                prop_assert_eq!(back.expose_secret(), bytes.as_slice());
            }
        }
        let r = aes::ctr_crypt(key, iv16, &bytes);
        if iv_ok {
            let out = r.unwrap();
            prop_assert_eq!(out.len(), n);
            prop_assert_eq!(aes::ctr_crypt(key, iv16, &out).unwrap(), bytes.clone());
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }

        // Garbage never passes the key-wrap integrity checks.
        let r = aes::key_unwrap(key, &bytes);
        prop_assert!(failed(&r), "{r:?}");
        let r = aes::key_unwrap_pad(key, &bytes);
        prop_assert!(failed(&r), "{r:?}");
        let r = aes::key_wrap(key, &bytes);
        if n >= 16 && n % 8 == 0 {
            let w = r.unwrap();
            prop_assert_eq!(w.len(), n + 8);
            let back = aes::key_unwrap(key, &w).unwrap();
            prop_assert_eq!(back.expose_secret(), bytes.as_slice());
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }
        let r = aes::key_wrap_pad(key, &bytes);
        if n > 0 {
            let w = r.unwrap();
            prop_assert_eq!(w.len(), n.next_multiple_of(8) + 8);
            let back = aes::key_unwrap_pad(key, &w).unwrap();
            prop_assert_eq!(back.expose_secret(), bytes.as_slice());
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }

        // A stream gives what the one-shot function gives for the whole input.
        let half = &bytes[n / 2..];
        let whole = [bytes.as_slice(), half].concat();
        for mode in [AesMode::Cbc, AesMode::CbcPad, AesMode::Ctr] {
            for encrypt in [false, true] {
                let s = AesStream::new(mode, encrypt, key, iv16);
                if !iv_ok {
                    prop_assert!(wrong_length(&s), "{s:?}");
                    continue;
                }
                let mut s = s.unwrap();
                let mut out = s.update(&bytes).unwrap();
                out.extend(s.update(half).unwrap());
                let streamed = s.finish().map(|last| [out, last].concat());
                let one_shot = match (mode, encrypt) {
                    (AesMode::Ctr, _) => aes::ctr_crypt(key, iv16, &whole),
                    (_, true) => aes::cbc_encrypt(key, iv16, mode == AesMode::CbcPad, &whole),
                    (_, false) => exposed(aes::cbc_decrypt(key, iv16, mode == AesMode::CbcPad, &whole)),
                };
                // Unpadded CBC decryption of nothing is nothing; the stream agrees.
                prop_assert!(same(&streamed, &one_shot), "{mode:?} {encrypt}: {streamed:?} vs {one_shot:?}");
            }
        }
    }

    #[test]
    fn ec_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        cut in any::<usize>(), at in any::<usize>(), x in 1u8..,
    ) {
        for key in &fixtures().ec {
            let curve = key.curve();
            let n = bytes.len();
            let r = EcPublicKey::from_sec1(curve, &bytes);
            match &r {
                Ok(k) => prop_assert_eq!(k.as_bytes(), bytes.as_slice()),
                Err(_) => prop_assert!(invalid_key(&r)),
            }
            let r = EcPublicKey::from_spki_der(&bytes);
            match &r {
                Ok(k) => prop_assert_eq!(k.to_spki_der().unwrap(), bytes.clone()),
                Err(_) => prop_assert!(invalid_key(&r)),
            }
            let r = EcPrivateKey::from_pkcs8(curve, &bytes);
            match &r {
                Ok(k) => prop_assert_eq!(k.curve(), curve),
                Err(_) => prop_assert!(invalid_key(&r)),
            }
            let significant = bytes.iter().skip_while(|b| **b == 0).count();
            let r = EcPrivateKey::from_scalar(curve, &bytes);
            match &r {
                Ok(k) => {
                    prop_assert!(significant > 0 && significant <= curve.scalar_len());
                    prop_assert!(EcPublicKey::from_sec1(curve, k.public_key().as_bytes()).is_ok());
                }
                Err(_) => prop_assert!(invalid_key(&r)),
            }
            let r = key.ecdh(&bytes);
            match &r {
                Ok(s) => prop_assert_eq!(s.len(), curve.scalar_len()),
                Err(_) => prop_assert!(invalid_key(&r)),
            }
            // Any digest signs (as its bits2int), but one longer than P-521's 64 bytes.
            let r = key.sign_digest(&bytes);
            if curve == Curve::P521 && n > 64 {
                prop_assert!(wrong_length(&r), "{r:?}");
            } else {
                let sig = r.unwrap();
                prop_assert_eq!(sig.len(), curve.signature_len());
                prop_assert!(key.public_key().verify_digest(&bytes, &sig).is_ok());
            }
            let r = key.public_key().verify_digest(&bytes, &bytes);
            let long_p521 = curve == Curve::P521 && n == curve.signature_len();
            prop_assert!(if long_p521 { wrong_length(&r) } else { failed(&r) }, "{r:?}");
            let r = key.public_key().verify(HashAlg::Sha1, &bytes, &bytes);
            prop_assert!(failed(&r), "{r:?}");

            // A changed or truncated point is off the curve or of the wrong length.
            let point = mangle(key.public_key().as_bytes(), cut, at, x);
            let r = EcPublicKey::from_sec1(curve, &point);
            prop_assert!(invalid_key(&r), "{r:?}");
            let r = key.ecdh(&point);
            prop_assert!(invalid_key(&r), "{r:?}");
            let spki = key.public_key().to_spki_der().unwrap();
            let spki = mangle(&spki, cut, at, x);
            match EcPublicKey::from_spki_der(&spki) {
                Ok(k) => prop_assert_eq!(k.to_spki_der().unwrap(), spki),
                Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
            }
            // aws-lc checks the public key a PKCS#8 carries against the private one,
            // so a change that still parses is one that changes nothing that matters.
            let p8 = key.to_pkcs8().unwrap();
            match EcPrivateKey::from_pkcs8(curve, &mangle(&p8, cut, at, x)) {
                Ok(k) => prop_assert_eq!(k.public_key(), key.public_key()),
                Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
            }
            let sig = key.sign(HashAlg::Sha256, b"m").unwrap();
            let bad = mangle(&sig, cut, at, x);
            prop_assert!(key.public_key().verify(HashAlg::Sha256, b"m", &bad).is_err());
        }
    }

    #[test]
    fn ed25519_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..100),
        cut in any::<usize>(), at in any::<usize>(), x in 1u8..,
    ) {
        let key = &fixtures().ed;
        let r = Ed25519PrivateKey::from_pkcs8(&bytes);
        prop_assert!(invalid_key(&r), "{r:?}");
        let r = ed25519_verify(&bytes, &bytes, &bytes);
        prop_assert!(if bytes.len() == 32 { failed(&r) } else { invalid_key(&r) }, "{r:?}");
        // A changed seed is another valid key; whatever parses re-encodes to itself.
        let p8 = key.to_pkcs8().unwrap();
        match Ed25519PrivateKey::from_pkcs8(&mangle(&p8, cut, at, x)) {
            Ok(k) => {
                let again = Ed25519PrivateKey::from_pkcs8(&k.to_pkcs8().unwrap()).unwrap();
                prop_assert_eq!(again.public_key(), k.public_key());
            }
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
        }
        let sig = key.sign(b"m");
        prop_assert!(ed25519_verify(&key.public_key(), b"m", &mangle(&sig, cut, at, x)).is_err());
        let public = mangle(&key.public_key(), cut, at, x);
        let r = ed25519_verify(&public, b"m", &sig);
        prop_assert!(if public.len() == 32 { failed(&r) } else { invalid_key(&r) }, "{r:?}");
    }

    #[test]
    fn rsa_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        cut in any::<usize>(), at in any::<usize>(), x in 1u8..,
    ) {
        let key = &fixtures().rsa;
        let public = key.public_key();
        let n = bytes.len();
        let r = RsaPublicKey::from_spki_der(&bytes);
        prop_assert!(invalid_key(&r), "{r:?}");
        // An exponent as long as the modulus is refused (aws-lc caps it at 33 bits).
        let r = RsaPublicKey::from_components(&bytes, &bytes);
        prop_assert!(invalid_key(&r), "{r:?}");
        let r = RsaPrivateKey::from_pkcs8(&bytes);
        prop_assert!(invalid_key(&r), "{r:?}");
        match rsa::parse_digest_info(&bytes) {
            Ok((hash, digest)) => {
                prop_assert_eq!(digest.len(), hash.output_len());
                prop_assert!(bytes.ends_with(digest));
            }
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidInput(_))),
        }
        let r = key.sign_pkcs1_digest_info(&bytes);
        match &r {
            Ok(sig) => prop_assert!(public.verify_pkcs1_digest_info(&bytes, sig).is_ok()),
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidInput(_) | CryptoError::Unsupported(_))),
        }
        let r = key.sign_pss_digest(HashAlg::Sha256, &bytes);
        if n == 32 {
            prop_assert!(public.verify_pss_digest(HashAlg::Sha256, &bytes, &r.unwrap()).is_ok());
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }
        let r = key.oaep_decrypt(HashAlg::Sha256, &bytes, &bytes);
        prop_assert!(if n == 256 { failed(&r) } else { wrong_length(&r) }, "{r:?}");
        let r = public.oaep_encrypt(HashAlg::Sha512, &bytes, &bytes);
        if n <= 256 - 2 * 64 - 2 {
            let ct = r.unwrap();
            prop_assert_eq!(ct.len(), 256);
            let pt = key.oaep_decrypt(HashAlg::Sha512, &bytes, &ct).unwrap();
            prop_assert_eq!(pt.expose_secret(), bytes.as_slice());
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }
        let r = public.verify_pkcs1(HashAlg::Sha256, &bytes, &bytes);
        prop_assert!(failed(&r), "{r:?}");
        let r = public.verify_pss(HashAlg::Sha256, &bytes, &bytes);
        prop_assert!(failed(&r), "{r:?}");
        let r = rsa_aes_unwrap(key, HashAlg::Sha256, 256, &bytes);
        prop_assert!(if n < 256 + 16 { wrong_length(&r) } else { failed(&r) }, "{r:?}");

        let spki = mangle(&public.to_spki_der().unwrap(), cut, at, x);
        match RsaPublicKey::from_spki_der(&spki) {
            Ok(k) => prop_assert_eq!(k.to_spki_der().unwrap(), spki),
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
        }
        // aws-lc checks an RSA private key's consistency: what still parses is the
        // same key.
        let p8 = key.to_pkcs8().unwrap();
        match RsaPrivateKey::from_pkcs8(&mangle(&p8, cut / 7, at, x)) {
            Ok(k) => prop_assert_eq!(k.public_key(), public),
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
        }
        let ct = public.oaep_encrypt(HashAlg::Sha256, b"", b"secret").unwrap();
        prop_assert!(key.oaep_decrypt(HashAlg::Sha256, b"", &mangle(&ct, cut, at, x)).is_err());
        let di = mangle(&rsa::digest_info(HashAlg::Sha384, b"m").unwrap(), cut, at, x);
        match key.sign_pkcs1_digest_info(&di) {
            Ok(sig) => prop_assert!(public.verify_pkcs1_digest_info(&di, &sig).is_ok()),
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidInput(_) | CryptoError::Unsupported(_))),
        }
    }

    #[test]
    fn pq_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        cut in any::<usize>(), at in any::<usize>(), x in 1u8..,
    ) {
        let f = fixtures();
        for level in MlDsaLevel::ALL {
            let r = MlDsaPrivateKey::from_pkcs8(level, &bytes);
            prop_assert!(invalid_key(&r), "{r:?}");
            // No public key is 64 bytes or shorter.
            let r = mldsa_verify(level, &bytes, &bytes, &bytes);
            prop_assert!(invalid_key(&r), "{r:?}");
        }
        let sig = f.mldsa.sign(b"m").unwrap();
        let bad = mangle(&sig, cut, at, x);
        prop_assert!(mldsa_verify(MlDsaLevel::L44, f.mldsa.public_key(), b"m", &bad).is_err());
        let public = mangle(f.mldsa.public_key(), cut, at, x);
        let r = mldsa_verify(MlDsaLevel::L44, &public, b"m", &sig);
        prop_assert!(failed(&r) || invalid_key(&r), "{r:?}");
        // The seed form: a changed seed is another valid key, which re-encodes.
        let p8 = f.mldsa.to_pkcs8().unwrap();
        match MlDsaPrivateKey::from_pkcs8(MlDsaLevel::L44, &mangle(&p8, cut, at, x)) {
            Ok(k) => {
                let again = MlDsaPrivateKey::from_pkcs8(MlDsaLevel::L44, &k.to_pkcs8().unwrap()).unwrap();
                prop_assert_eq!(again.public_key(), k.public_key());
            }
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
        }

        for level in MlKemLevel::ALL {
            let r = MlKemPrivateKey::from_bytes(level, &bytes);
            prop_assert!(invalid_key(&r), "{r:?}");
            let r = mlkem_encapsulate(level, &bytes);
            prop_assert!(invalid_key(&r), "{r:?}");
        }
        let r = f.mlkem.decapsulate(&bytes);
        prop_assert!(wrong_length(&r), "{r:?}");
        // dk_PKE, ek and H(ek) are checked on import; z (the implicit-rejection
        // seed) cannot be, so a changed z is a key that re-encodes to its input.
        let dk = mangle(&f.mlkem.to_bytes().unwrap(), cut, at, x);
        match MlKemPrivateKey::from_bytes(MlKemLevel::L512, &dk) {
            Ok(k) => {
                let again = k.to_bytes().unwrap();
                prop_assert_eq!(again.as_slice(), dk.as_slice());
                prop_assert_eq!(k.public_key(), f.mlkem.public_key());
            }
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
        }
        // A changed coefficient that stays below q is another valid key.
        match mlkem_encapsulate(MlKemLevel::L512, &mangle(&f.mlkem.public_key(), cut, at, x)) {
            Ok((ct, ss)) => prop_assert!(ct.len() == 768 && ss.len() == 32),
            Err(e) => prop_assert!(matches!(e, CryptoError::InvalidKey(_))),
        }
        // An altered ciphertext of the right length decapsulates, to another secret.
        let (ct, ss) = mlkem_encapsulate(MlKemLevel::L512, &f.mlkem.public_key()).unwrap();
        let altered = mangle(&ct, cut, at, x);
        let r = f.mlkem.decapsulate(&altered);
        if altered.len() == ct.len() {
            let other = r.unwrap();
            prop_assert!(other.len() == 32 && !other.ct_eq(&ss));
        } else {
            prop_assert!(wrong_length(&r), "{r:?}");
        }
    }

    #[test]
    fn mac_and_kdf_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        len in 0usize..20_000,
    ) {
        let n = bytes.len();
        for hash in HashAlg::ALL {
            let ok = HMAC_HASHES.contains(&hash);
            let max = 255 * hash.output_len();
            let r = hmac::hmac_sign(hash, &bytes, &bytes);
            match &r {
                Ok(tag) => prop_assert!(ok && tag.len() == hash.output_len()),
                Err(_) => prop_assert!(!ok && unsupported(&r)),
            }
            let r = hmac::hmac_verify(hash, &bytes, &bytes, &bytes);
            prop_assert!(if ok { failed(&r) } else { unsupported(&r) }, "{r:?}");

            let r = exposed(kdf::hkdf(hash, &bytes, &bytes, &bytes, len));
            if !ok {
                prop_assert!(unsupported(&r), "{r:?}");
            } else if len > max {
                prop_assert!(wrong_length(&r), "{r:?}");
            } else {
                // One-shot HKDF is extract, then expand.
                let prk = kdf::hkdf_extract(hash, &bytes, &bytes).unwrap();
                prop_assert_eq!(prk.len(), hash.output_len());
                let two_step = exposed(kdf::hkdf_expand(hash, prk.expose_secret(), &bytes, len));
                prop_assert!(r.as_ref().is_ok_and(|okm| okm.len() == len));
                prop_assert!(same(&r, &two_step));
            }
            let r = kdf::hkdf_extract(hash, &bytes, &bytes);
            prop_assert!(if ok { r.is_ok() } else { unsupported(&r) }, "{r:?}");
            let prk_ok = (1..=kdf::MAX_PRK_LEN).contains(&n);
            let r = kdf::hkdf_expand(hash, &bytes, &bytes, len);
            match &r {
                _ if !ok => prop_assert!(unsupported(&r)),
                _ if !prk_ok || len > max => prop_assert!(wrong_length(&r)),
                Ok(okm) => prop_assert_eq!(okm.len(), len),
                Err(e) => prop_assert!(false, "{e:?}"),
            }
            // The label is checked (1 to 249 bytes, context up to 255) before the
            // hash and the lengths.
            let r = kdf::tls13_expand_label(hash, &bytes, &bytes, &bytes, len);
            match &r {
                _ if n == 0 || n > 249 => prop_assert!(matches!(r, Err(CryptoError::InvalidInput(_)))),
                _ if !ok => prop_assert!(unsupported(&r)),
                _ if !prk_ok || len > max => prop_assert!(wrong_length(&r)),
                Ok(okm) => prop_assert_eq!(okm.len(), len),
                Err(e) => prop_assert!(false, "{e:?}"),
            }
            let out_len = len % 2000;
            let r = kdf::kbkdf_counter_hmac(hash, &bytes, &bytes, out_len);
            match &r {
                _ if !ok => prop_assert!(unsupported(&r)),
                _ if n == 0 || out_len == 0 => prop_assert!(wrong_length(&r)),
                Ok(out) => prop_assert_eq!(out.len(), out_len),
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
    }
}
