//! Keys, signatures and RoT evidence that come from outside: key files (SPKI DER
//! and PEM public keys, PKCS#8 and PEM private keys, as the CLI and the vendor
//! key set read them), key import (EC points and scalars, RSA SPKI and PKCS#8,
//! Ed25519, ML-DSA and ML-KEM keys), the key a caller wraps and C_UnwrapKey
//! rebuilds (`Material::from_unwrapped`), PKCS#1 DigestInfo, raw signatures and
//! public keys, and the RoT's quote (`Quote::parse` and its verification) and PCR
//! log as the `ihsm` CLI reads them.
//!
//! ihsm parses no X.509 certificate and no CSR: it only issues them (rcgen), so
//! there is nothing of those to drive here.
//!
//! Input: `which u8 | rest`; `which` picks the parser (see the match). Nothing may
//! panic; what parses encodes to what parses again to the same key.
#![no_main]

use ihsm_crypto::ec::{Curve, EcPrivateKey, EcPublicKey};
use ihsm_crypto::ec::{EccP384PrivateKey, EccP384PublicKey, EccP384Signature};
use ihsm_crypto::ed25519::{Ed25519PrivateKey, ed25519_verify};
use ihsm_crypto::keyfile::PublicKey;
use ihsm_crypto::mldsa::{MlDsa87PrivateKey, MlDsa87PublicKey, MlDsa87Signature};
use ihsm_crypto::mldsa::{MlDsaLevel, MlDsaPrivateKey};
use ihsm_crypto::mlkem::{MlKemLevel, MlKemPrivateKey};
use ihsm_crypto::rsa::{RsaPrivateKey, RsaPublicKey, parse_digest_info};
use ihsm_rot::Alg;
use ihsm_rot::mailbox;
use ihsm_rot::pcr::PcrLogEntry;
use ihsm_rot::quote::{QUOTE_ECC384_LEN, QUOTE_MLDSA87_LEN, Quote};
use libfuzzer_sys::fuzz_target;

const CKO_PUBLIC_KEY: u64 = 2;
const CKO_PRIVATE_KEY: u64 = 3;
const CKO_SECRET_KEY: u64 = 4;
const CKK_RSA: u64 = 0;
const CKK_EC: u64 = 3;
const CKK_GENERIC_SECRET: u64 = 0x10;
const CKK_AES: u64 = 0x1f;
const CKK_EC_EDWARDS: u64 = 0x40;
const CKK_HKDF: u64 = 0x42;
const CKK_ML_KEM: u64 = 0x49;
const CKK_ML_DSA: u64 = 0x4a;

fn curve(b: u8) -> Curve {
    [Curve::P256, Curve::P384, Curve::P521][usize::from(b % 3)]
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (&sub, tail) = rest.split_first().unwrap_or((&0, &[]));
    match which % 16 {
        0 => {
            if let Ok(k) = PublicKey::from_spki_der(rest) {
                let der = k.to_spki_der().unwrap();
                assert_eq!(PublicKey::from_spki_der(&der).unwrap(), k);
                let pem = k.to_pem().unwrap();
                assert_eq!(PublicKey::from_pem(&pem).unwrap(), k);
            }
        }
        1 => {
            if let Some(t) = text(rest) {
                let _ = PublicKey::from_pem(t);
                let _ = EccP384PrivateKey::from_pem(t);
                let _ = MlDsa87PrivateKey::from_pem(t);
            }
        }
        2 => {
            if let Ok(k) = EccP384PrivateKey::from_der(rest) {
                let again = EccP384PrivateKey::from_der(&k.to_pkcs8_der().unwrap()).unwrap();
                assert_eq!(again.public_key(), k.public_key());
            }
        }
        3 => {
            let _ = EcPublicKey::from_sec1(curve(sub), tail);
            if let Ok(k) = EcPublicKey::from_spki_der(rest) {
                let again = EcPublicKey::from_spki_der(&k.to_spki_der().unwrap()).unwrap();
                assert_eq!(again.as_bytes(), k.as_bytes());
            }
        }
        4 => {
            if let Ok(k) = EcPrivateKey::from_pkcs8(curve(sub), tail) {
                let again = EcPrivateKey::from_pkcs8(k.curve(), &k.to_pkcs8().unwrap()).unwrap();
                assert_eq!(again.public_key().as_bytes(), k.public_key().as_bytes());
            }
            let _ = EcPrivateKey::from_scalar(curve(sub), tail);
        }
        5 => {
            if let Ok(k) = RsaPublicKey::from_spki_der(rest) {
                let again = RsaPublicKey::from_spki_der(&k.to_spki_der().unwrap()).unwrap();
                assert_eq!(again.modulus(), k.modulus());
                assert_eq!(again.exponent(), k.exponent());
            }
            let half = usize::from(sub).min(tail.len());
            let _ = RsaPublicKey::from_components(&tail[half..], &tail[..half]);
        }
        6 => {
            if let Ok(k) = RsaPrivateKey::from_pkcs8(rest) {
                let again = RsaPrivateKey::from_pkcs8(&k.to_pkcs8().unwrap()).unwrap();
                assert_eq!(again.public_key().modulus(), k.public_key().modulus());
            }
        }
        7 => {
            if let Ok((alg, digest)) = parse_digest_info(rest) {
                assert_eq!(digest.len(), alg.output_len());
            }
        }
        8 => {
            if let Ok(k) = Ed25519PrivateKey::from_pkcs8(rest) {
                let again = Ed25519PrivateKey::from_pkcs8(&k.to_pkcs8().unwrap()).unwrap();
                assert_eq!(again.public_key(), k.public_key());
            }
        }
        9 => {
            let level = [MlDsaLevel::L44, MlDsaLevel::L65, MlDsaLevel::L87][usize::from(sub % 3)];
            if let Ok(k) = MlDsaPrivateKey::from_pkcs8(level, tail) {
                let again = MlDsaPrivateKey::from_pkcs8(level, &k.to_pkcs8().unwrap()).unwrap();
                assert_eq!(again.public_key(), k.public_key());
            }
            let _ = MlDsa87PrivateKey::from_pkcs8_der(rest);
        }
        10 => {
            let level =
                [MlKemLevel::L512, MlKemLevel::L768, MlKemLevel::L1024][usize::from(sub % 3)];
            if let Ok(k) = MlKemPrivateKey::from_bytes(level, tail) {
                let again = MlKemPrivateKey::from_bytes(level, &k.to_bytes().unwrap()).unwrap();
                assert_eq!(again.public_key(), k.public_key());
            }
        }
        11 => {
            // A quote response as `ihsm rot pcrs` gets it, checksum made right so
            // that the layout is reached: `key (97) | response`.
            if rest.len() < 97 + 4 {
                return;
            }
            let (key, resp) = rest.split_at(97);
            let mut resp = resp.to_vec();
            let sum = mailbox::calc_checksum(0, &resp[4..]);
            resp[..4].copy_from_slice(&sum.to_le_bytes());
            let alg = if resp.len() == QUOTE_MLDSA87_LEN {
                Alg::MlDsa87
            } else {
                Alg::Ecc384
            };
            if let Ok(q) = Quote::parse(&resp, alg) {
                assert!(resp.len() == QUOTE_ECC384_LEN || resp.len() == QUOTE_MLDSA87_LEN);
                assert_eq!(q.pcrs.len(), 32);
                if let Ok(k) = EccP384PublicKey::from_sec1(key) {
                    let _ = q.verify_ecc(&k);
                }
            }
        }
        12 => {
            if let Ok(log) = PcrLogEntry::decode_all(rest) {
                assert_eq!(log.len() * 56, rest.len());
            }
        }
        13 => {
            // The bytes a caller wrapped under a key it knows, as C_UnwrapKey
            // rebuilds them: `kind u8 | parameter set u8 | bytes`.
            const KINDS: [(u64, u64); 8] = [
                (CKO_SECRET_KEY, CKK_AES),
                (CKO_SECRET_KEY, CKK_GENERIC_SECRET),
                (CKO_SECRET_KEY, CKK_HKDF),
                (CKO_PRIVATE_KEY, CKK_EC),
                (CKO_PRIVATE_KEY, CKK_EC_EDWARDS),
                (CKO_PRIVATE_KEY, CKK_RSA),
                (CKO_PRIVATE_KEY, CKK_ML_DSA),
                (CKO_PRIVATE_KEY, CKK_ML_KEM),
            ];
            let Some((&params, bytes)) = tail.split_first() else {
                return;
            };
            let (class, kt) = KINDS[usize::from(sub) % KINDS.len()];
            let params = (params != 0).then_some(u64::from(params % 4));
            let _ = ihsm_core::fuzz::unwrapped(class, kt, bytes, params);
            let _ = ihsm_core::fuzz::unwrapped(CKO_PUBLIC_KEY, kt, bytes, params);
        }
        14 => {
            // Raw signatures and public keys: `sig_len u16 LE | key_len u16 LE |
            // sig | key | message`.
            if tail.len() < 3 {
                return;
            }
            let sig_len = usize::from(u16::from_le_bytes([sub, tail[0]]));
            let key_len = usize::from(u16::from_le_bytes([tail[1], tail[2]]));
            let body = &tail[3..];
            if body.len() < sig_len + key_len {
                return;
            }
            let (sig, body) = body.split_at(sig_len);
            let (key, msg) = body.split_at(key_len);
            if let (Ok(s), Ok(k)) = (
                EccP384Signature::from_fixed(sig),
                EccP384PublicKey::from_sec1(key),
            ) {
                let _ = k.verify(msg, &s);
                assert_eq!(
                    EccP384Signature::from_fixed(&s.to_fixed())
                        .unwrap()
                        .to_fixed(),
                    s.to_fixed()
                );
                let _ = s.to_der();
            }
            if let (Ok(s), Ok(k)) = (
                MlDsa87Signature::from_bytes(sig),
                MlDsa87PublicKey::from_bytes(key),
            ) {
                let _ = k.verify(msg, &s);
            }
            let _ = ed25519_verify(key, msg, sig);
            for c in [Curve::P256, Curve::P384, Curve::P521] {
                if let Ok(k) = EcPublicKey::from_sec1(c, key) {
                    let _ = k.verify_digest(msg, sig);
                }
            }
            if let Ok(k) = RsaPublicKey::from_spki_der(key) {
                let _ = k.verify_pkcs1_digest_info(msg, sig);
            }
        }
        _ => {
            if let Some(t) = text(rest)
                && let Ok(k) = EccP384PrivateKey::from_pem(t)
            {
                let again = EccP384PrivateKey::from_pem(&k.to_pem().unwrap()).unwrap();
                assert_eq!(again.public_key(), k.public_key());
            }
        }
    }
});
