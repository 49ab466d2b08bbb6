//! Every parser and every operation on attacker-supplied bytes returns an error
//! instead of panicking: random inputs, and valid encodings truncated or with one
//! byte changed (which reach deeper into the parsers than noise does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use ihsm_crypto::aes::{self, AesKey, AesMode, AesStream};
use ihsm_crypto::ec::{Curve, EcPrivateKey, EcPublicKey};
use ihsm_crypto::ed25519::{Ed25519PrivateKey, ed25519_verify};
use ihsm_crypto::hash::HashAlg;
use ihsm_crypto::mldsa_any::{MlDsaLevel, MlDsaPrivateKey, mldsa_verify};
use ihsm_crypto::mlkem::{MlKemLevel, MlKemPrivateKey, mlkem_encapsulate};
use ihsm_crypto::rsa::{self, RsaPrivateKey, RsaPublicKey, rsa_aes_unwrap};
use ihsm_crypto::{hmac, kdf};
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn aes_inputs(bytes in proptest::collection::vec(any::<u8>(), 0..80), tag in 0usize..20) {
        let key = &fixtures().aes;
        let _ = AesKey::from_bytes(&bytes);
        let iv = bytes.get(..12).unwrap_or(&bytes);
        let _ = aes::gcm_decrypt(key, iv, &bytes, &bytes, tag);
        let _ = aes::gcm_encrypt(key, iv, &bytes, &bytes, tag);
        let iv16 = bytes.get(..16).unwrap_or(&bytes);
        for pad in [false, true] {
            let _ = aes::cbc_decrypt(key, iv16, pad, &bytes);
            let _ = aes::cbc_encrypt(key, iv16, pad, &bytes);
        }
        let _ = aes::ctr_crypt(key, iv16, &bytes);
        let _ = aes::key_unwrap(key, &bytes);
        let _ = aes::key_unwrap_pad(key, &bytes);
        let _ = aes::key_wrap(key, &bytes);
        let _ = aes::key_wrap_pad(key, &bytes);
        for mode in [AesMode::Cbc, AesMode::CbcPad, AesMode::Ctr] {
            for encrypt in [false, true] {
                if let Ok(mut s) = AesStream::new(mode, encrypt, key, iv16) {
                    let _ = s.update(&bytes);
                    let _ = s.update(&bytes[bytes.len() / 2..]);
                    let _ = s.finish();
                }
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
            let _ = EcPublicKey::from_sec1(curve, &bytes);
            let _ = EcPublicKey::from_spki_der(&bytes);
            let _ = EcPrivateKey::from_pkcs8(curve, &bytes);
            let _ = EcPrivateKey::from_scalar(curve, &bytes);
            let _ = key.ecdh(&bytes);
            let _ = key.sign_digest(&bytes);
            let _ = key.public_key().verify_digest(&bytes, &bytes);
            let _ = key.public_key().verify(HashAlg::Sha1, &bytes, &bytes);

            let point = mangle(key.public_key().as_bytes(), cut, at, x);
            let _ = EcPublicKey::from_sec1(curve, &point);
            let _ = key.ecdh(&point);
            let spki = key.public_key().to_spki_der().unwrap();
            let _ = EcPublicKey::from_spki_der(&mangle(&spki, cut, at, x));
            let p8 = key.to_pkcs8().unwrap();
            let _ = EcPrivateKey::from_pkcs8(curve, &mangle(&p8, cut, at, x));
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
        let _ = Ed25519PrivateKey::from_pkcs8(&bytes);
        let _ = ed25519_verify(&bytes, &bytes, &bytes);
        let p8 = key.to_pkcs8().unwrap();
        let _ = Ed25519PrivateKey::from_pkcs8(&mangle(&p8, cut, at, x));
        let sig = key.sign(b"m");
        prop_assert!(ed25519_verify(&key.public_key(), b"m", &mangle(&sig, cut, at, x)).is_err());
        let _ = ed25519_verify(&mangle(&key.public_key(), cut, at, x), b"m", &sig);
    }

    #[test]
    fn rsa_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        cut in any::<usize>(), at in any::<usize>(), x in 1u8..,
    ) {
        let key = &fixtures().rsa;
        let public = key.public_key();
        let _ = RsaPublicKey::from_spki_der(&bytes);
        let _ = RsaPublicKey::from_components(&bytes, &bytes);
        let _ = RsaPrivateKey::from_pkcs8(&bytes);
        let _ = rsa::parse_digest_info(&bytes);
        let _ = key.sign_pkcs1_digest_info(&bytes);
        let _ = key.sign_pss_digest(HashAlg::Sha256, &bytes);
        let _ = key.oaep_decrypt(HashAlg::Sha256, &bytes, &bytes);
        let _ = public.oaep_encrypt(HashAlg::Sha512, &bytes, &bytes);
        let _ = public.verify_pkcs1(HashAlg::Sha256, &bytes, &bytes);
        let _ = public.verify_pss(HashAlg::Sha256, &bytes, &bytes);
        let _ = rsa_aes_unwrap(key, HashAlg::Sha256, 256, &bytes);

        let spki = public.to_spki_der().unwrap();
        let _ = RsaPublicKey::from_spki_der(&mangle(&spki, cut, at, x));
        let p8 = key.to_pkcs8().unwrap();
        let _ = RsaPrivateKey::from_pkcs8(&mangle(&p8, cut / 7, at, x));
        let ct = public.oaep_encrypt(HashAlg::Sha256, b"", b"secret").unwrap();
        prop_assert!(key.oaep_decrypt(HashAlg::Sha256, b"", &mangle(&ct, cut, at, x)).is_err());
        let di = rsa::digest_info(HashAlg::Sha384, b"m").unwrap();
        let _ = key.sign_pkcs1_digest_info(&mangle(&di, cut, at, x));
    }

    #[test]
    fn pq_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        cut in any::<usize>(), at in any::<usize>(), x in 1u8..,
    ) {
        let f = fixtures();
        for level in MlDsaLevel::ALL {
            let _ = MlDsaPrivateKey::from_pkcs8(level, &bytes);
            let _ = mldsa_verify(level, &bytes, &bytes, &bytes);
        }
        let sig = f.mldsa.sign(b"m").unwrap();
        let bad = mangle(&sig, cut, at, x);
        prop_assert!(mldsa_verify(MlDsaLevel::L44, f.mldsa.public_key(), b"m", &bad).is_err());
        let _ = mldsa_verify(MlDsaLevel::L44, &mangle(f.mldsa.public_key(), cut, at, x), b"m", &sig);
        let p8 = f.mldsa.to_pkcs8().unwrap();
        let _ = MlDsaPrivateKey::from_pkcs8(MlDsaLevel::L44, &mangle(&p8, cut, at, x));

        for level in MlKemLevel::ALL {
            let _ = MlKemPrivateKey::from_bytes(level, &bytes);
            let _ = mlkem_encapsulate(level, &bytes);
        }
        let _ = f.mlkem.decapsulate(&bytes);
        let dk = f.mlkem.to_bytes().unwrap();
        let _ = MlKemPrivateKey::from_bytes(MlKemLevel::L512, &mangle(&dk, cut, at, x));
        let _ = mlkem_encapsulate(MlKemLevel::L512, &mangle(&f.mlkem.public_key(), cut, at, x));
        let (ct, _) = mlkem_encapsulate(MlKemLevel::L512, &f.mlkem.public_key()).unwrap();
        let _ = f.mlkem.decapsulate(&mangle(&ct, cut, at, x));
    }

    #[test]
    fn mac_and_kdf_inputs(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        len in 0usize..20_000,
    ) {
        for hash in HashAlg::ALL {
            let _ = hmac::hmac_sign(hash, &bytes, &bytes);
            let _ = hmac::hmac_verify(hash, &bytes, &bytes, &bytes);
            let _ = kdf::hkdf(hash, &bytes, &bytes, &bytes, len);
            let _ = kdf::hkdf_extract(hash, &bytes, &bytes);
            let _ = kdf::hkdf_expand(hash, &bytes, &bytes, len);
            let _ = kdf::tls13_expand_label(hash, &bytes, &bytes, &bytes, len);
            let _ = kdf::kbkdf_counter_hmac(hash, &bytes, &bytes, len % 2000);
        }
    }
}
