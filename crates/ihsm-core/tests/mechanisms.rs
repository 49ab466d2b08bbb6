//! Every mechanism through the partition API: generation, sign/verify, encrypt/
//! decrypt (single and multi-part), wrap/unwrap, derive, KEM, digest; and the
//! errors a careful caller needs for wrong keys, wrong parameters and bad data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::attr::{AttrResult, AttrValue, Attribute};
use ihsm_core::mech::{GcmIv, Hash, HkdfParams, HkdfSalt, Mechanism, OaepParams, PssParams};
use ihsm_core::session::UserType;
use ihsm_crypto::ExposeSecret;

fn pair(t: &Tenant, mech: &Mechanism, pubt: &[Attribute], privt: &[Attribute]) -> (u64, u64) {
    t.p.generate_key_pair(t.app, t.s, mech, pubt, privt)
        .unwrap()
}

fn sign_verify(t: &Tenant, mech: &Mechanism, sk: u64, vk: u64, data: &[u8]) {
    t.p.sign_init(t.app, t.s, mech, sk, false).unwrap();
    let sig = t.p.sign(t.app, t.s, data).unwrap();
    t.p.sign_init(t.app, t.s, mech, vk, true).unwrap();
    t.p.verify(t.app, t.s, data, &sig).unwrap();
    // A wrong signature is refused.
    let mut bad = sig.clone();
    bad[0] ^= 1;
    t.p.sign_init(t.app, t.s, mech, vk, true).unwrap();
    assert!(
        matches!(
            t.p.verify(t.app, t.s, data, &bad),
            Err(CoreError::SignatureInvalid)
        ),
        "{mech:?}"
    );
    // Multi-part gives a signature the single-part verify accepts (and vice versa).
    t.p.sign_init(t.app, t.s, mech, sk, false).unwrap();
    let (a, b_) = data.split_at(data.len() / 2);
    t.p.sign_update(t.app, t.s, a, false).unwrap();
    t.p.sign_update(t.app, t.s, b_, false).unwrap();
    let sig2 = t.p.sign_final(t.app, t.s).unwrap();
    t.p.sign_init(t.app, t.s, mech, vk, true).unwrap();
    t.p.verify(t.app, t.s, data, &sig2).unwrap();
    t.p.sign_init(t.app, t.s, mech, vk, true).unwrap();
    t.p.sign_update(t.app, t.s, a, true).unwrap();
    t.p.sign_update(t.app, t.s, b_, true).unwrap();
    t.p.verify_final(t.app, t.s, &sig).unwrap();
}

#[test]
fn ecdsa_all_curves_and_hashes() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    for curve in [P256, P384, P521] {
        let (pk, sk) = pair(
            &t,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, curve)],
            &[],
        );
        assert_eq!(t.bytes(pk, ck::CKA_EC_PARAMS), curve);
        let point = t.bytes(pk, ck::CKA_EC_POINT);
        assert_eq!(point[0], 0x04, "DER OCTET STRING");
        for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            sign_verify(
                &t,
                &Mechanism::EcdsaHash(h),
                sk,
                pk,
                b"message to sign, long enough to split",
            );
        }
        // CKM_ECDSA signs a digest the caller made.
        let digest = ihsm_crypto::hash::digest(ihsm_crypto::hash::HashAlg::Sha256, b"m");
        let sig =
            t.p.sign_once(t.app, t.s, &Mechanism::Ecdsa, sk, &digest)
                .unwrap();
        t.p.sign_init(t.app, t.s, &Mechanism::Ecdsa, pk, true)
            .unwrap();
        t.p.verify(t.app, t.s, &digest, &sig).unwrap();
    }
}

#[test]
fn rsa_pkcs1_pss_oaep_and_key_sizes() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    assert!(matches!(
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::RsaKeyPairGen,
            &[u(ck::CKA_MODULUS_BITS, 1024)],
            &[]
        ),
        Err(CoreError::KeySizeRange(_))
    ));
    assert!(matches!(
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::RsaKeyPairGen,
            &[
                u(ck::CKA_MODULUS_BITS, 2048),
                by(ck::CKA_PUBLIC_EXPONENT, &[3])
            ],
            &[]
        ),
        Err(CoreError::AttributeValueInvalid(_))
    ));
    let (pk, sk) = pair(
        &t,
        &Mechanism::RsaKeyPairGen,
        &[
            u(ck::CKA_MODULUS_BITS, 2048),
            by(ck::CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
            b(ck::CKA_ENCRYPT, true),
            b(ck::CKA_WRAP, true),
        ],
        &[b(ck::CKA_DECRYPT, true), b(ck::CKA_UNWRAP, true)],
    );
    assert_eq!(t.bytes(pk, ck::CKA_MODULUS).len(), 256);
    assert_eq!(
        t.get(pk, ck::CKA_MODULUS_BITS),
        AttrResult::Value(AttrValue::Ulong(2048))
    );
    assert_eq!(t.bytes(sk, ck::CKA_PUBLIC_EXPONENT), vec![1, 0, 1]);
    for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
        sign_verify(
            &t,
            &Mechanism::RsaPkcsHash(h),
            sk,
            pk,
            b"rsa message to sign",
        );
        let p = PssParams {
            hash: h,
            mgf: h.mgf1(),
            salt_len: h.output_len() as u64,
        };
        sign_verify(&t, &Mechanism::RsaPssHash(p), sk, pk, b"rsa pss message");
        // Raw PSS over a digest.
        let alg = match h {
            Hash::Sha256 => ihsm_crypto::hash::HashAlg::Sha256,
            Hash::Sha384 => ihsm_crypto::hash::HashAlg::Sha384,
            _ => ihsm_crypto::hash::HashAlg::Sha512,
        };
        let digest = ihsm_crypto::hash::digest(alg, b"x");
        let sig =
            t.p.sign_once(t.app, t.s, &Mechanism::RsaPss(p), sk, &digest)
                .unwrap();
        t.p.sign_init(t.app, t.s, &Mechanism::RsaPss(p), pk, true)
            .unwrap();
        t.p.verify(t.app, t.s, &digest, &sig).unwrap();
        // OAEP.
        let oaep = Mechanism::RsaOaep(OaepParams {
            hash: h,
            mgf: h.mgf1(),
            label: b"lbl".to_vec(),
        });
        t.p.crypt_init(t.app, t.s, &oaep, pk, true).unwrap();
        let (ct, _) = t.p.encrypt(t.app, t.s, b"secret").unwrap();
        t.p.crypt_init(t.app, t.s, &oaep, sk, false).unwrap();
        assert_eq!(
            t.p.decrypt(t.app, t.s, &ct).unwrap().expose_secret(),
            b"secret"
        );
    }
    // CKM_RSA_PKCS over a DigestInfo (the rest: rsa_pkcs_signs_what_the_caller_formatted).
    let di = ihsm_crypto::rsa::digest_info(ihsm_crypto::hash::HashAlg::Sha256, b"m").unwrap();
    let sig =
        t.p.sign_once(t.app, t.s, &Mechanism::RsaPkcs, sk, &di)
            .unwrap();
    t.p.sign_init(t.app, t.s, &Mechanism::RsaPkcs, pk, true)
        .unwrap();
    t.p.verify(t.app, t.s, &di, &sig).unwrap();
    // Bad PSS parameters.
    let bad = PssParams {
        hash: Hash::Sha256,
        mgf: Hash::Sha384.mgf1(),
        salt_len: 32,
    };
    assert!(matches!(
        t.p.sign_init(t.app, t.s, &Mechanism::RsaPssHash(bad), sk, false),
        Err(CoreError::MechanismParamInvalid(_))
    ));
    let bad = PssParams {
        hash: Hash::Sha256,
        mgf: Hash::Sha256.mgf1(),
        salt_len: 20,
    };
    assert!(matches!(
        t.p.sign_init(t.app, t.s, &Mechanism::RsaPssHash(bad), sk, false),
        Err(CoreError::MechanismParamInvalid(_))
    ));
}

#[test]
fn eddsa_mldsa_hmac() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let (pk, sk) = pair(&t, &Mechanism::EcEdwardsKeyPairGen, &[], &[]);
    assert_eq!(t.bytes(pk, ck::CKA_EC_POINT).len(), 34);
    sign_verify(&t, &Mechanism::EdDsa, sk, pk, b"ed25519 message");
    for set in 1..=3 {
        let (pk, sk) = pair(
            &t,
            &Mechanism::MlDsaKeyPairGen,
            &[u(ck::CKA_PARAMETER_SET, set)],
            &[],
        );
        assert_eq!(
            t.get(sk, ck::CKA_PARAMETER_SET),
            AttrResult::Value(AttrValue::Ulong(set))
        );
        sign_verify(&t, &Mechanism::MlDsa, sk, pk, b"ml-dsa message");
    }
    assert!(matches!(
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::MlDsaKeyPairGen,
            &[u(ck::CKA_PARAMETER_SET, 9)],
            &[]
        ),
        Err(CoreError::AttributeValueInvalid(_))
    ));
    let k =
        t.p.generate_key(
            t.app,
            t.s,
            &Mechanism::GenericSecretKeyGen,
            &[u(ck::CKA_VALUE_LEN, 32)],
        )
        .unwrap();
    for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
        sign_verify(&t, &Mechanism::Hmac(h), k, k, b"hmac message");
    }
}

#[test]
fn hmac_known_answer_through_the_core() {
    // RFC 4231 test case 2, with the key imported by C_CreateObject.
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let k =
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_GENERIC_SECRET),
                by(ck::CKA_VALUE, b"Jefe"),
                b(ck::CKA_SIGN, true),
            ],
        )
        .unwrap();
    let mac =
        t.p.sign_once(
            t.app,
            t.s,
            &Mechanism::Hmac(Hash::Sha256),
            k,
            b"what do ya want for nothing?",
        )
        .unwrap();
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn aes_modes_single_and_multi_part() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    for len in [16, 24, 32] {
        let k =
            t.p.generate_key(
                t.app,
                t.s,
                &Mechanism::AesKeyGen,
                &[u(ck::CKA_VALUE_LEN, len)],
            )
            .unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        let iv = vec![7u8; 16];
        for mech in [
            Mechanism::AesGcm {
                iv: GcmIv::Supplied(vec![1; 12]),
                aad: b"aad".to_vec(),
                tag_bits: 128,
            },
            Mechanism::AesCbcPad { iv: iv.clone() },
            Mechanism::AesCtr {
                iv: iv.clone(),
                counter_bits: 128,
            },
        ] {
            t.p.crypt_init(t.app, t.s, &mech, k, true).unwrap();
            let (ct, generated) = t.p.encrypt(t.app, t.s, &data).unwrap();
            assert!(generated.is_none());
            t.p.crypt_init(t.app, t.s, &mech, k, false).unwrap();
            assert_eq!(
                t.p.decrypt(t.app, t.s, &ct).unwrap().expose_secret(),
                &data[..]
            );
            // Multi-part in odd pieces gives the same.
            t.p.crypt_init(t.app, t.s, &mech, k, true).unwrap();
            let mut ct2 = Vec::new();
            for chunk in data.chunks(7) {
                ct2.extend(t.p.crypt_update(t.app, t.s, chunk, true).unwrap());
            }
            ct2.extend(t.p.encrypt_final(t.app, t.s).unwrap());
            assert_eq!(ct2, ct, "{mech:?}");
            t.p.crypt_init(t.app, t.s, &mech, k, false).unwrap();
            let mut pt = Vec::new();
            for chunk in ct.chunks(5) {
                pt.extend(t.p.crypt_update(t.app, t.s, chunk, false).unwrap());
            }
            pt.extend(t.p.decrypt_final(t.app, t.s).unwrap().expose_secret());
            assert_eq!(pt, data);
        }
        // Unpadded CBC needs whole blocks.
        let cbc = Mechanism::AesCbc { iv: iv.clone() };
        t.p.crypt_init(t.app, t.s, &cbc, k, true).unwrap();
        assert!(matches!(
            t.p.encrypt(t.app, t.s, &[0; 17]),
            Err(CoreError::DataLenRange(_))
        ));
        t.p.crypt_init(t.app, t.s, &cbc, k, true).unwrap();
        let (ct, _) = t.p.encrypt(t.app, t.s, &[5; 32]).unwrap();
        t.p.crypt_init(t.app, t.s, &cbc, k, false).unwrap();
        assert_eq!(
            t.p.decrypt(t.app, t.s, &ct).unwrap().expose_secret(),
            &[5; 32]
        );
    }
}

#[test]
fn gcm_iv_generated_or_supplied_and_tampering_caught() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let k = aes_key(&t, "k", &[]);
    let gen_mech = Mechanism::AesGcm {
        iv: GcmIv::Generate,
        aad: vec![1, 2],
        tag_bits: 128,
    };
    t.p.crypt_init(t.app, t.s, &gen_mech, k, true).unwrap();
    let (ct, iv) = t.p.encrypt(t.app, t.s, b"plaintext").unwrap();
    let iv = iv.expect("the HSM returns the IV it generated");
    assert_eq!(iv.len(), 12);
    let dec = Mechanism::AesGcm {
        iv: GcmIv::Supplied(iv),
        aad: vec![1, 2],
        tag_bits: 128,
    };
    t.p.crypt_init(t.app, t.s, &dec, k, false).unwrap();
    assert_eq!(
        t.p.decrypt(t.app, t.s, &ct).unwrap().expose_secret(),
        b"plaintext"
    );
    let mut bad = ct.clone();
    bad[0] ^= 1;
    t.p.crypt_init(t.app, t.s, &dec, k, false).unwrap();
    assert!(matches!(
        t.p.decrypt(t.app, t.s, &bad),
        Err(CoreError::EncryptedDataInvalid)
    ));
    // Generated IVs differ.
    t.p.crypt_init(t.app, t.s, &gen_mech, k, true).unwrap();
    let (_, iv2) = t.p.encrypt(t.app, t.s, b"plaintext").unwrap();
    assert_ne!(Some(&ct), None);
    assert_ne!(iv2.unwrap(), vec![0; 12]);
    // Bad parameters: IV length, tag length; decrypt without an IV.
    for bad in [
        Mechanism::AesGcm {
            iv: GcmIv::Supplied(vec![0; 8]),
            aad: vec![],
            tag_bits: 128,
        },
        Mechanism::AesGcm {
            iv: GcmIv::Supplied(vec![0; 12]),
            aad: vec![],
            tag_bits: 96,
        },
    ] {
        assert!(matches!(
            t.p.crypt_init(t.app, t.s, &bad, k, true),
            Err(CoreError::MechanismParamInvalid(_))
        ));
    }
    assert!(matches!(
        t.p.crypt_init(t.app, t.s, &gen_mech, k, false),
        Err(CoreError::MechanismParamInvalid(_))
    ));
    assert!(matches!(
        t.p.crypt_init(t.app, t.s, &Mechanism::AesCbc { iv: vec![0; 15] }, k, true),
        Err(CoreError::MechanismParamInvalid(_))
    ));
}

#[test]
fn wrong_keys_usages_and_operation_states() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let aes = aes_key(&t, "aes", &[]);
    let (pk, sk) = pair(
        &t,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P256)],
        &[b(ck::CKA_SIGN, false)],
    );
    // A key without CKA_SIGN.
    assert!(matches!(
        t.p.sign_init(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), sk, false),
        Err(CoreError::KeyFunctionNotPermitted("CKA_SIGN"))
    ));
    // The wrong key type for the mechanism.
    t.p.set_attributes(t.app, t.s, aes, &[b(ck::CKA_SIGN, true)])
        .unwrap();
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), aes, b"x"),
        Err(CoreError::KeyTypeInconsistent)
    ));
    assert!(matches!(
        t.p.crypt_init(t.app, t.s, &Mechanism::AesCbc { iv: vec![0; 16] }, pk, true),
        Err(CoreError::KeyFunctionNotPermitted("CKA_ENCRYPT"))
    ));
    // A key of the wrong type is refused at C_SignInit, not at C_SignFinal
    // (regression: pkcs11-tool signing with an RSA mechanism and an EC key).
    let (epk, esk) = pair(
        &t,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P256)],
        &[],
    );
    assert!(matches!(
        t.p.sign_init(
            t.app,
            t.s,
            &Mechanism::RsaPkcsHash(Hash::Sha256),
            esk,
            false
        ),
        Err(CoreError::KeyTypeInconsistent)
    ));
    assert!(matches!(
        t.p.sign_init(t.app, t.s, &Mechanism::EdDsa, epk, true),
        Err(CoreError::KeyTypeInconsistent)
    ));
    assert!(matches!(
        t.p.sign_init(t.app, t.s, &Mechanism::AesKeyWrap, epk, true),
        Err(CoreError::MechanismInvalid(_))
    ));
    // An operation used before init, and initialised twice.
    assert!(matches!(
        t.p.sign(t.app, t.s, b"x"),
        Err(CoreError::OperationNotInitialized)
    ));
    t.p.sign_init(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), pk, true)
        .unwrap();
    assert!(matches!(
        t.p.sign_init(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), pk, true),
        Err(CoreError::OperationActive)
    ));
    // A failed verify ends the operation.
    assert!(t.p.verify(t.app, t.s, b"x", &[0; 64]).is_err());
    assert!(matches!(
        t.p.verify(t.app, t.s, b"x", &[0; 64]),
        Err(CoreError::OperationNotInitialized)
    ));
    // A mechanism that is not a signature.
    assert!(
        t.p.sign_once(t.app, t.s, &Mechanism::AesKeyWrap, sk, b"x")
            .is_err()
    );
    // Oversized data.
    let big = vec![0u8; ihsm_core::MAX_DATA + 1];
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &Mechanism::Hmac(Hash::Sha256), aes, &big),
        Err(CoreError::DataLenRange(_))
    ));
    // Random: bounded.
    assert_eq!(t.p.random(t.app, t.s, 64).unwrap().len(), 64);
    assert!(matches!(
        t.p.random(t.app, t.s, 2 << 20),
        Err(CoreError::DataLenRange(_))
    ));
}

#[test]
fn key_separation_refuses_the_clulow_combinations() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let inconsistent =
        |r: Result<u64, CoreError>| matches!(r, Err(CoreError::TemplateInconsistent(_)));
    let generate = |extra: &[Attribute]| {
        let mut tpl = vec![u(ck::CKA_VALUE_LEN, 32)];
        tpl.extend_from_slice(extra);
        t.p.generate_key(t.app, t.s, &Mechanism::AesKeyGen, &tpl)
    };
    // Wrap with decrypt, unwrap with encrypt: refused at generation, creation,
    // and unwrapping.
    assert!(inconsistent(generate(&[
        b(ck::CKA_WRAP, true),
        b(ck::CKA_DECRYPT, true)
    ])));
    assert!(inconsistent(generate(&[
        b(ck::CKA_UNWRAP, true),
        b(ck::CKA_ENCRYPT, true)
    ])));
    let value = [
        u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
        u(ck::CKA_KEY_TYPE, ck::CKK_AES),
        by(ck::CKA_VALUE, &[9u8; 32]),
    ];
    let created =
        |extra: &[Attribute]| t.p.create_object(t.app, t.s, &[&value[..], extra].concat());
    assert!(inconsistent(created(&[
        b(ck::CKA_WRAP, true),
        b(ck::CKA_DECRYPT, true)
    ])));
    // A key-encryption key encrypts no data by default; a data key wraps nothing.
    let kek = generate(&[b(ck::CKA_WRAP, true), b(ck::CKA_UNWRAP, true)]).unwrap();
    for ty in [ck::CKA_ENCRYPT, ck::CKA_DECRYPT] {
        assert_eq!(t.get(kek, ty), AttrResult::Value(AttrValue::Bool(false)));
    }
    let data = generate(&[b(ck::CKA_EXTRACTABLE, true)]).unwrap();
    assert_eq!(
        t.get(data, ck::CKA_WRAP),
        AttrResult::Value(AttrValue::Bool(false))
    );
    // The combinations cannot be reached by changing or copying a key either.
    for (ty, on) in [(ck::CKA_DECRYPT, kek), (ck::CKA_ENCRYPT, kek)] {
        assert!(matches!(
            t.p.set_attributes(t.app, t.s, on, &[b(ty, true)]),
            Err(CoreError::TemplateInconsistent(_))
        ));
        assert!(inconsistent(t.p.copy_object(
            t.app,
            t.s,
            on,
            &[b(ty, true)]
        )));
    }
    for ty in [ck::CKA_WRAP, ck::CKA_UNWRAP] {
        assert!(matches!(
            t.p.set_attributes(t.app, t.s, data, &[b(ty, true)]),
            Err(CoreError::TemplateInconsistent(_))
        ));
    }
    // The attack itself: wrap a key, then decrypt the wrapping with the same key
    // (AES-CBC without padding on the wrapped bytes). Refused where it begins.
    let wrapped =
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrap, kek, data)
            .unwrap();
    let cbc = Mechanism::AesCbc { iv: vec![0; 16] };
    assert!(t.p.crypt_init(t.app, t.s, &cbc, kek, false).is_err());
    // Nor may a wrapped key come back readable (sensitive off), whatever the
    // template says; silent, it comes back sensitive.
    let target = [
        u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
        u(ck::CKA_KEY_TYPE, ck::CKK_AES),
    ];
    assert!(inconsistent(
        t.p.unwrap_key(
            t.app,
            t.s,
            &Mechanism::AesKeyWrap,
            kek,
            &wrapped,
            &[
                &target[..],
                &[b(ck::CKA_SENSITIVE, false), b(ck::CKA_EXTRACTABLE, true)]
            ]
            .concat(),
        )
    ));
    let back =
        t.p.unwrap_key(t.app, t.s, &Mechanism::AesKeyWrap, kek, &wrapped, &target)
            .unwrap();
    assert_eq!(t.get(back, ck::CKA_VALUE), AttrResult::Sensitive);
    // Unwrapping a key must not yield one that breaks the rule either.
    assert!(inconsistent(t.p.unwrap_key(
        t.app,
        t.s,
        &Mechanism::AesKeyWrap,
        kek,
        &wrapped,
        &[
            u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_AES),
            b(ck::CKA_WRAP, true),
            b(ck::CKA_DECRYPT, true),
        ],
    )));
}

#[test]
fn a_sensitive_key_is_wrapped_only_under_a_key_nobody_outside_holds() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let not_wrappable =
        |r: Result<Vec<u8>, CoreError>| matches!(r, Err(CoreError::KeyNotWrappable(_)));
    let aes = |extra: &[Attribute]| {
        let mut tpl = vec![u(ck::CKA_VALUE_LEN, 32)];
        tpl.extend_from_slice(extra);
        t.p.generate_key(t.app, t.s, &Mechanism::AesKeyGen, &tpl)
            .unwrap()
    };
    // The victim: sensitive (by default) but extractable, as a key meant to be
    // moved wrapped is.
    let victim = aes(&[b(ck::CKA_EXTRACTABLE, true)]);
    let readable = aes(&[b(ck::CKA_EXTRACTABLE, true), b(ck::CKA_SENSITIVE, false)]);
    let kw = Mechanism::AesKeyWrapPad;
    // A wrapping key whose value the attacker chose.
    let known =
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_AES),
                by(ck::CKA_VALUE, &[7u8; 32]),
                b(ck::CKA_WRAP, true),
                b(ck::CKA_UNWRAP, true),
            ],
        )
        .unwrap();
    assert!(not_wrappable(t.p.wrap_key(t.app, t.s, &kw, known, victim)));
    // A key that is readable anyway may be wrapped under anything.
    t.p.wrap_key(t.app, t.s, &kw, known, readable).unwrap();
    // A known value unwrapped into a wrapping key ("unwrap a known key as a
    // wrapping key"): the attacker wraps 32 bytes of their choosing under the key
    // they know (the bytes are just AES key wrap, computable outside).
    let planted_wrapped = t.p.wrap_key(t.app, t.s, &kw, known, readable).unwrap();
    let planted =
        t.p.unwrap_key(
            t.app,
            t.s,
            &kw,
            known,
            &planted_wrapped,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_AES),
                b(ck::CKA_WRAP, true),
            ],
        )
        .unwrap();
    assert!(not_wrappable(
        t.p.wrap_key(t.app, t.s, &kw, planted, victim)
    ));
    // A key derived from a secret the attacker knows.
    let derived =
        t.p.derive_key(
            t.app,
            t.s,
            &Mechanism::Hkdf(HkdfParams {
                extract: true,
                expand: true,
                hash: Hash::Sha256,
                salt: HkdfSalt::Null,
                info: vec![],
            }),
            t.p.create_object(
                t.app,
                t.s,
                &[
                    u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                    u(ck::CKA_KEY_TYPE, ck::CKK_GENERIC_SECRET),
                    by(ck::CKA_VALUE, &[5u8; 32]),
                    b(ck::CKA_DERIVE, true),
                ],
            )
            .unwrap(),
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_AES),
                u(ck::CKA_VALUE_LEN, 32),
                b(ck::CKA_WRAP, true),
            ],
        )
        .unwrap();
    assert!(not_wrappable(
        t.p.wrap_key(t.app, t.s, &kw, derived, victim)
    ));
    // A key made here but once extractable (it may have left in the meantime).
    let was_out = aes(&[b(ck::CKA_WRAP, true), b(ck::CKA_EXTRACTABLE, true)]);
    t.p.set_attributes(t.app, t.s, was_out, &[b(ck::CKA_EXTRACTABLE, false)])
        .unwrap();
    assert!(not_wrappable(
        t.p.wrap_key(t.app, t.s, &kw, was_out, victim)
    ));
    // The key-pair form of wrap-and-decrypt: the public half wraps, the private
    // half decrypts OAEP. An untrusted public key wraps no sensitive key, so the
    // decryption never sees one.
    let oaep = OaepParams {
        hash: Hash::Sha256,
        mgf: Hash::Sha256.mgf1(),
        label: vec![],
    };
    let (rpub, rpriv) = pair(
        &t,
        &Mechanism::RsaKeyPairGen,
        &[
            u(ck::CKA_MODULUS_BITS, 2048),
            b(ck::CKA_WRAP, true),
            b(ck::CKA_ENCRYPT, true),
        ],
        &[b(ck::CKA_DECRYPT, true)],
    );
    assert!(not_wrappable(t.p.wrap_key(
        t.app,
        t.s,
        &Mechanism::RsaOaep(oaep.clone()),
        rpub,
        victim
    )));
    let w =
        t.p.wrap_key(
            t.app,
            t.s,
            &Mechanism::RsaOaep(oaep.clone()),
            rpub,
            readable,
        )
        .unwrap();
    t.p.crypt_init(t.app, t.s, &Mechanism::RsaOaep(oaep), rpriv, false)
        .unwrap();
    assert_eq!(t.p.decrypt(t.app, t.s, &w).unwrap().len(), 32);
    // A secret key generated here and never extractable keeps what it wraps.
    let kek = aes(&[b(ck::CKA_WRAP, true)]);
    t.p.wrap_key(t.app, t.s, &kw, kek, victim).unwrap();
}

#[test]
fn wrap_and_unwrap_rules() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let kek = aes_key(&t, "kek", &[b(ck::CKA_WRAP, true), b(ck::CKA_UNWRAP, true)]);
    let target = aes_key(&t, "target", &[b(ck::CKA_EXTRACTABLE, true)]);
    let stuck = aes_key(&t, "stuck", &[]);
    for mech in [Mechanism::AesKeyWrap, Mechanism::AesKeyWrapPad] {
        let wrapped = t.p.wrap_key(t.app, t.s, &mech, kek, target).unwrap();
        let h =
            t.p.unwrap_key(
                t.app,
                t.s,
                &mech,
                kek,
                &wrapped,
                &[
                    u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                    u(ck::CKA_KEY_TYPE, ck::CKK_AES),
                    b(ck::CKA_ENCRYPT, true),
                    b(ck::CKA_DECRYPT, true),
                ],
            )
            .unwrap();
        // The unwrapped key works like the original.
        let gcm = Mechanism::AesGcm {
            iv: GcmIv::Supplied(vec![9; 12]),
            aad: vec![],
            tag_bits: 128,
        };
        t.p.crypt_init(t.app, t.s, &gcm, target, true).unwrap();
        let (ct, _) = t.p.encrypt(t.app, t.s, b"same key").unwrap();
        t.p.crypt_init(t.app, t.s, &gcm, h, false).unwrap();
        assert_eq!(
            t.p.decrypt(t.app, t.s, &ct).unwrap().expose_secret(),
            b"same key"
        );
        assert_eq!(
            t.get(h, ck::CKA_LOCAL),
            AttrResult::Value(AttrValue::Bool(false))
        );
        assert_eq!(
            t.get(h, ck::CKA_ALWAYS_SENSITIVE),
            AttrResult::Value(AttrValue::Bool(false))
        );
        // Garbage does not unwrap.
        let mut bad = wrapped.clone();
        bad[3] ^= 1;
        assert!(matches!(
            t.p.unwrap_key(
                t.app,
                t.s,
                &mech,
                kek,
                &bad,
                &[
                    u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                    u(ck::CKA_KEY_TYPE, ck::CKK_AES)
                ]
            ),
            Err(CoreError::WrappedKeyInvalid)
        ));
    }
    // Unextractable keys do not leave; nor does a key wrap itself.
    assert!(matches!(
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrapPad, kek, stuck),
        Err(CoreError::KeyUnextractable(_))
    ));
    assert!(matches!(
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrapPad, kek, kek),
        Err(CoreError::KeyUnextractable(_))
    ));
    // Wrap-with-trusted needs a trusted wrapping key.
    let guarded = aes_key(
        &t,
        "g",
        &[
            b(ck::CKA_EXTRACTABLE, true),
            b(ck::CKA_WRAP_WITH_TRUSTED, true),
        ],
    );
    assert!(matches!(
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrapPad, kek, guarded),
        Err(CoreError::KeyNotWrappable(_))
    ));
    // A private key wraps as PKCS#8 and comes back usable.
    let (pk, sk) = pair(
        &t,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P384)],
        &[b(ck::CKA_EXTRACTABLE, true)],
    );
    let w =
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrapPad, kek, sk)
            .unwrap();
    let sk2 =
        t.p.unwrap_key(
            t.app,
            t.s,
            &Mechanism::AesKeyWrapPad,
            kek,
            &w,
            &[
                u(ck::CKA_CLASS, ck::CKO_PRIVATE_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_EC),
                b(ck::CKA_SIGN, true),
            ],
        )
        .unwrap();
    let sig =
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha384), sk2, b"m")
            .unwrap();
    t.p.sign_init(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha384), pk, true)
        .unwrap();
    t.p.verify(t.app, t.s, b"m", &sig).unwrap();
    // RSA-OAEP and RSA-AES key wrap, under a public key the Security Officer
    // trusts (a token object, so the SO's session sees it).
    let (rpub, rpriv) = pair(
        &t,
        &Mechanism::RsaKeyPairGen,
        &[
            u(ck::CKA_MODULUS_BITS, 2048),
            b(ck::CKA_WRAP, true),
            b(ck::CKA_TOKEN, true),
        ],
        &[b(ck::CKA_UNWRAP, true)],
    );
    let oaep = OaepParams {
        hash: Hash::Sha256,
        mgf: Hash::Sha256.mgf1(),
        label: vec![],
    };
    assert!(matches!(
        t.p.wrap_key(t.app, t.s, &Mechanism::RsaOaep(oaep.clone()), rpub, target),
        Err(CoreError::KeyNotWrappable(_))
    ));
    let so = t.p.open_session(2, true).unwrap();
    t.p.login(2, so, UserType::SecurityOfficer, SO_PIN).unwrap();
    t.p.set_attributes(2, so, rpub, &[b(ck::CKA_TRUSTED, true)])
        .unwrap();
    for mech in [
        Mechanism::RsaOaep(oaep.clone()),
        Mechanism::RsaAesKeyWrap {
            aes_bits: 256,
            oaep: oaep.clone(),
        },
    ] {
        let w = t.p.wrap_key(t.app, t.s, &mech, rpub, target).unwrap();
        t.p.unwrap_key(
            t.app,
            t.s,
            &mech,
            rpriv,
            &w,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_AES),
            ],
        )
        .unwrap();
    }
    let w =
        t.p.wrap_key(
            t.app,
            t.s,
            &Mechanism::RsaAesKeyWrap {
                aes_bits: 256,
                oaep: oaep.clone(),
            },
            rpub,
            sk,
        )
        .unwrap();
    t.p.unwrap_key(
        t.app,
        t.s,
        &Mechanism::RsaAesKeyWrap {
            aes_bits: 256,
            oaep,
        },
        rpriv,
        &w,
        &[
            u(ck::CKA_CLASS, ck::CKO_PRIVATE_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_EC),
        ],
    )
    .unwrap();
    // The wrong mechanism for the wrapping key.
    assert!(matches!(
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrap, rpub, target),
        Err(CoreError::KeyTypeInconsistent)
    ));
}

#[test]
fn derive_ecdh_hkdf_kbkdf_tls13_and_policy() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let (pa, sa) = pair(
        &t,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P256)],
        &[b(ck::CKA_DERIVE, true)],
    );
    let (pb, sb) = pair(
        &t,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P256)],
        &[b(ck::CKA_DERIVE, true)],
    );
    let tpl = [
        u(ck::CKA_VALUE_LEN, 32),
        u(ck::CKA_KEY_TYPE, ck::CKK_AES),
        b(ck::CKA_ENCRYPT, true),
        b(ck::CKA_DECRYPT, true),
    ];
    let ka =
        t.p.derive_key(
            t.app,
            t.s,
            &Mechanism::Ecdh {
                public_data: t.bytes(pb, ck::CKA_EC_POINT),
            },
            sa,
            &tpl,
        )
        .unwrap();
    let kb =
        t.p.derive_key(
            t.app,
            t.s,
            &Mechanism::Ecdh {
                public_data: t.bytes(pa, ck::CKA_EC_POINT),
            },
            sb,
            &tpl,
        )
        .unwrap();
    let gcm = Mechanism::AesGcm {
        iv: GcmIv::Supplied(vec![3; 12]),
        aad: vec![],
        tag_bits: 128,
    };
    t.p.crypt_init(t.app, t.s, &gcm, ka, true).unwrap();
    let (ct, _) = t.p.encrypt(t.app, t.s, b"agreed").unwrap();
    t.p.crypt_init(t.app, t.s, &gcm, kb, false).unwrap();
    assert_eq!(
        t.p.decrypt(t.app, t.s, &ct).unwrap().expose_secret(),
        b"agreed"
    );
    // A peer point not on the curve.
    assert!(matches!(
        t.p.derive_key(
            t.app,
            t.s,
            &Mechanism::Ecdh {
                public_data: vec![4; 65]
            },
            sa,
            &tpl
        ),
        Err(CoreError::MechanismParamInvalid(_))
    ));
    // HKDF, SP 800-108, TLS 1.3 from a generic secret; derived keys inherit sensitivity.
    let base =
        t.p.generate_key(
            t.app,
            t.s,
            &Mechanism::GenericSecretKeyGen,
            &[u(ck::CKA_VALUE_LEN, 32), b(ck::CKA_DERIVE, true)],
        )
        .unwrap();
    let hkdf = Mechanism::Hkdf(HkdfParams {
        extract: true,
        expand: true,
        hash: Hash::Sha256,
        salt: HkdfSalt::Data(b"salt".to_vec()),
        info: b"info".to_vec(),
    });
    for mech in [
        hkdf,
        Mechanism::Hkdf(HkdfParams {
            extract: true,
            expand: false,
            hash: Hash::Sha384,
            salt: HkdfSalt::Null,
            info: vec![],
        }),
        Mechanism::Sp800108Counter {
            hash: Hash::Sha512,
            fixed_input: b"label\0context".to_vec(),
        },
        Mechanism::Tls13ExpandLabel {
            hash: Hash::Sha256,
            label: b"c hs traffic".to_vec(),
            context: vec![0; 32],
        },
    ] {
        let h =
            t.p.derive_key(t.app, t.s, &mech, base, &[u(ck::CKA_VALUE_LEN, 32)])
                .unwrap();
        assert_eq!(
            t.get(h, ck::CKA_SENSITIVE),
            AttrResult::Value(AttrValue::Bool(true))
        );
        assert_eq!(t.get(h, ck::CKA_VALUE), AttrResult::Sensitive, "{mech:?}");
        // A derived key may not be less protected than its base.
        assert!(matches!(
            t.p.derive_key(
                t.app,
                t.s,
                &mech,
                base,
                &[u(ck::CKA_VALUE_LEN, 32), b(ck::CKA_SENSITIVE, false)]
            ),
            Err(CoreError::TemplateInconsistent(_))
        ));
        assert!(matches!(
            t.p.derive_key(
                t.app,
                t.s,
                &mech,
                base,
                &[u(ck::CKA_VALUE_LEN, 32), b(ck::CKA_EXTRACTABLE, true)]
            ),
            Err(CoreError::TemplateInconsistent(_))
        ));
    }
    // TLS 1.3 known answer (RFC 8448 simple 1-RTT, "derived" from the early secret):
    // an extractable, non-sensitive base lets the test read the result.
    let early =
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_GENERIC_SECRET),
                by(
                    ck::CKA_VALUE,
                    &hex::decode(
                        "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a",
                    )
                    .unwrap(),
                ),
                b(ck::CKA_DERIVE, true),
                b(ck::CKA_SENSITIVE, false),
                b(ck::CKA_EXTRACTABLE, true),
            ],
        )
        .unwrap();
    let empty_hash =
        hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
    let derived =
        t.p.derive_key(
            t.app,
            t.s,
            &Mechanism::Tls13ExpandLabel {
                hash: Hash::Sha256,
                label: b"derived".to_vec(),
                context: empty_hash,
            },
            early,
            &[
                u(ck::CKA_VALUE_LEN, 32),
                b(ck::CKA_SENSITIVE, false),
                b(ck::CKA_EXTRACTABLE, true),
            ],
        )
        .unwrap();
    assert_eq!(
        hex::encode(t.bytes(derived, ck::CKA_VALUE)),
        "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba"
    );
    // No CKA_DERIVE, no derivation.
    let noderive =
        t.p.generate_key(
            t.app,
            t.s,
            &Mechanism::GenericSecretKeyGen,
            &[u(ck::CKA_VALUE_LEN, 32)],
        )
        .unwrap();
    assert!(matches!(
        t.p.derive_key(
            t.app,
            t.s,
            &Mechanism::Sp800108Counter {
                hash: Hash::Sha256,
                fixed_input: vec![]
            },
            noderive,
            &[u(ck::CKA_VALUE_LEN, 16)]
        ),
        Err(CoreError::KeyFunctionNotPermitted("CKA_DERIVE"))
    ));
}

#[test]
fn ml_kem_encapsulate_decapsulate() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    for set in 1..=3 {
        let (pk, sk) = pair(
            &t,
            &Mechanism::MlKemKeyPairGen,
            &[u(ck::CKA_PARAMETER_SET, set)],
            &[],
        );
        let tpl = [
            u(ck::CKA_KEY_TYPE, ck::CKK_AES),
            u(ck::CKA_VALUE_LEN, 32),
            b(ck::CKA_ENCRYPT, true),
            b(ck::CKA_DECRYPT, true),
        ];
        let (ct, k1) =
            t.p.encapsulate(t.app, t.s, &Mechanism::MlKem, pk, &tpl)
                .unwrap();
        let k2 =
            t.p.decapsulate(t.app, t.s, &Mechanism::MlKem, sk, &ct, &tpl)
                .unwrap();
        let gcm = Mechanism::AesGcm {
            iv: GcmIv::Supplied(vec![1; 12]),
            aad: vec![],
            tag_bits: 128,
        };
        t.p.crypt_init(t.app, t.s, &gcm, k1, true).unwrap();
        let (c, _) = t.p.encrypt(t.app, t.s, b"kem").unwrap();
        t.p.crypt_init(t.app, t.s, &gcm, k2, false).unwrap();
        assert_eq!(t.p.decrypt(t.app, t.s, &c).unwrap().expose_secret(), b"kem");
        // The decapsulated secret is as protected as the private key (sensitive,
        // unextractable by default): never readable.
        assert_eq!(t.get(k2, ck::CKA_VALUE), AttrResult::Sensitive);
        assert_eq!(
            t.get(k2, ck::CKA_SENSITIVE),
            AttrResult::Value(AttrValue::Bool(true))
        );
        for loose in [b(ck::CKA_SENSITIVE, false), b(ck::CKA_EXTRACTABLE, true)] {
            let t2 = [&tpl[..], &[loose]].concat();
            assert!(matches!(
                t.p.decapsulate(t.app, t.s, &Mechanism::MlKem, sk, &ct, &t2),
                Err(CoreError::TemplateInconsistent(_))
            ));
        }
        assert!(
            t.p.decapsulate(t.app, t.s, &Mechanism::MlKem, sk, &ct[1..], &tpl)
                .is_err()
        );
        // The public key round-trips through C_CreateObject.
        let value = t.bytes(pk, ck::CKA_VALUE);
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_ML_KEM),
                u(ck::CKA_PARAMETER_SET, set),
                by(ck::CKA_VALUE, &value),
            ],
        )
        .unwrap();
    }
}

#[test]
fn digests_single_and_multi_part() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    for (h, abc) in [
        (
            Hash::Sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            Hash::Sha3_256,
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
        ),
    ] {
        t.p.digest_init(t.app, t.s, &Mechanism::Digest(h)).unwrap();
        t.p.digest_update(t.app, t.s, b"a").unwrap();
        t.p.digest_update(t.app, t.s, b"bc").unwrap();
        assert_eq!(hex::encode(t.p.digest_final(t.app, t.s).unwrap()), abc);
    }
    assert!(t.p.digest_init(t.app, t.s, &Mechanism::AesKeyGen).is_err());
    assert!(matches!(
        t.p.digest_final(t.app, t.s),
        Err(CoreError::OperationNotInitialized)
    ));
}

#[test]
fn imported_keys_of_every_type_work() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    // EC: export the public point of a generated key and import it as a new public key.
    let (pk, sk) = pair(
        &t,
        &Mechanism::EcKeyPairGen,
        &[by(ck::CKA_EC_PARAMS, P521)],
        &[],
    );
    let imported =
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_EC),
                by(ck::CKA_EC_PARAMS, P521),
                by(ck::CKA_EC_POINT, &t.bytes(pk, ck::CKA_EC_POINT)),
                b(ck::CKA_VERIFY, true),
            ],
        )
        .unwrap();
    let sig =
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha512), sk, b"m")
            .unwrap();
    t.p.sign_init(
        t.app,
        t.s,
        &Mechanism::EcdsaHash(Hash::Sha512),
        imported,
        true,
    )
    .unwrap();
    t.p.verify(t.app, t.s, b"m", &sig).unwrap();
    // RSA public key from modulus and exponent.
    let (rpk, rsk) = pair(
        &t,
        &Mechanism::RsaKeyPairGen,
        &[u(ck::CKA_MODULUS_BITS, 2048)],
        &[],
    );
    let rimp =
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_RSA),
                by(ck::CKA_MODULUS, &t.bytes(rpk, ck::CKA_MODULUS)),
                by(ck::CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(ck::CKA_VERIFY, true),
            ],
        )
        .unwrap();
    let sig =
        t.p.sign_once(t.app, t.s, &Mechanism::RsaPkcsHash(Hash::Sha256), rsk, b"m")
            .unwrap();
    t.p.sign_init(
        t.app,
        t.s,
        &Mechanism::RsaPkcsHash(Hash::Sha256),
        rimp,
        true,
    )
    .unwrap();
    t.p.verify(t.app, t.s, b"m", &sig).unwrap();
    // Ed25519 and ML-DSA public keys, SPKI present on all.
    let (epk, _) = pair(&t, &Mechanism::EcEdwardsKeyPairGen, &[], &[]);
    t.p.create_object(
        t.app,
        t.s,
        &[
            u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_EC_EDWARDS),
            by(ck::CKA_EC_PARAMS, &[0x06, 0x03, 0x2b, 0x65, 0x70]),
            by(ck::CKA_EC_POINT, &t.bytes(epk, ck::CKA_EC_POINT)),
        ],
    )
    .unwrap();
    let (mpk, _) = pair(
        &t,
        &Mechanism::MlDsaKeyPairGen,
        &[u(ck::CKA_PARAMETER_SET, 2)],
        &[],
    );
    t.p.create_object(
        t.app,
        t.s,
        &[
            u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_ML_DSA),
            u(ck::CKA_PARAMETER_SET, 2),
            by(ck::CKA_VALUE, &t.bytes(mpk, ck::CKA_VALUE)),
        ],
    )
    .unwrap();
    for h in [pk, rpk, epk, mpk] {
        assert!(t.bytes(h, ck::CKA_PUBLIC_KEY_INFO).starts_with(&[0x30]));
    }
    // Wrong lengths are refused with the attribute named.
    assert!(matches!(
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_ML_DSA),
                u(ck::CKA_PARAMETER_SET, 2),
                by(ck::CKA_VALUE, &[0; 100])
            ]
        ),
        Err(CoreError::AttributeValueInvalid(ck::CKA_VALUE))
    ));
}

/// Runs `openssl` with `args` in `dir` (within a minute, or the test fails); its
/// standard output.
fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    use std::time::{Duration, Instant};
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (Debian's openssl package) is needed to check ihsm's signatures");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A 2048-bit RSA pair that signs and verifies, and its public key's
/// SubjectPublicKeyInfo in `dir/pub.der`.
fn rsa_pair(t: &Tenant, dir: &std::path::Path) -> (u64, u64) {
    let (pk, sk) = pair(
        t,
        &Mechanism::RsaKeyPairGen,
        &[u(ck::CKA_MODULUS_BITS, 2048)],
        &[],
    );
    std::fs::write(dir.join("pub.der"), t.bytes(pk, ck::CKA_PUBLIC_KEY_INFO)).unwrap();
    (pk, sk)
}

/// `CKM_RSA_PKCS` as callers use it (pkcs11-tool --sign --mechanism RSA-PKCS,
/// its --test, TLS 1.0's MD5+SHA-1, an engine's DigestInfo): RSASSA-PKCS1-v1_5
/// of the data as it is, up to k - 11 bytes, in one part or several, and each
/// signature checked by OpenSSL, which recovers exactly the data.
#[test]
fn rsa_pkcs_signs_what_the_caller_formatted_up_to_k_minus_11_in_one_part_or_several() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let files = tempfile::tempdir().unwrap();
    let (pk, sk) = rsa_pair(&t, files.path());
    let m = Mechanism::RsaPkcs;
    let sha1_di = ihsm_crypto::rsa::digest_info(ihsm_crypto::hash::HashAlg::Sha1, b"m").unwrap();
    let cases: [&[u8]; 6] = [b"", b"x", &[0x5a; 36], &sha1_di, &[0xff; 100], &[1; 245]];
    for data in cases {
        let one = t.p.sign_once(t.app, t.s, &m, sk, data).unwrap();
        t.p.sign_init(t.app, t.s, &m, sk, false).unwrap();
        let single = t.p.sign(t.app, t.s, data).unwrap();
        // Several parts, as pkcs11-tool sends them: the same signature (the
        // scheme is deterministic).
        t.p.sign_init(t.app, t.s, &m, sk, false).unwrap();
        for part in data.chunks(7) {
            t.p.sign_update(t.app, t.s, part, false).unwrap();
        }
        let parts = t.p.sign_final(t.app, t.s).unwrap();
        assert_eq!(one, single);
        assert_eq!(one, parts);
        assert_eq!(one.len(), 256);
        t.p.sign_init(t.app, t.s, &m, pk, true).unwrap();
        t.p.verify(t.app, t.s, data, &one).unwrap();
        t.p.sign_init(t.app, t.s, &m, pk, true).unwrap();
        for part in data.chunks(100) {
            t.p.sign_update(t.app, t.s, part, true).unwrap();
        }
        t.p.verify_final(t.app, t.s, &one).unwrap();
        // Another datum does not verify.
        let mut other = data.to_vec();
        match other.first_mut() {
            Some(b) => *b ^= 1,
            None => other.push(0),
        }
        t.p.sign_init(t.app, t.s, &m, pk, true).unwrap();
        assert!(matches!(
            t.p.verify(t.app, t.s, &other, &one),
            Err(CoreError::SignatureInvalid)
        ));
        // OpenSSL agrees: its PKCS#1 v1.5 verification recovers the data.
        std::fs::write(files.path().join("data"), data).unwrap();
        std::fs::write(files.path().join("sig"), &one).unwrap();
        let recovered = openssl(
            files.path(),
            &[
                "pkeyutl",
                "-verifyrecover",
                "-pubin",
                "-keyform",
                "DER",
                "-inkey",
                "pub.der",
                "-pkeyopt",
                "rsa_padding_mode:pkcs1",
                "-in",
                "sig",
            ],
        );
        assert_eq!(recovered, data);
        if data.is_empty() || data.len() > 64 {
            // pkeyutl -verify takes 1 to 64 bytes ("looks too long to be a
            // hash"); the recovery above is the check for the others.
            continue;
        }
        let said = openssl(
            files.path(),
            &[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-keyform",
                "DER",
                "-inkey",
                "pub.der",
                "-pkeyopt",
                "rsa_padding_mode:pkcs1",
                "-in",
                "data",
                "-sigfile",
                "sig",
            ],
        );
        assert!(
            String::from_utf8_lossy(&said).contains("Signature Verified Successfully"),
            "{}",
            String::from_utf8_lossy(&said)
        );
    }
    // A SHA-256 DigestInfo signed raw is CKM_SHA256_RSA_PKCS's signature.
    let di = ihsm_crypto::rsa::digest_info(ihsm_crypto::hash::HashAlg::Sha256, b"tls").unwrap();
    assert_eq!(
        t.p.sign_once(t.app, t.s, &m, sk, &di).unwrap(),
        t.p.sign_once(
            t.app,
            t.s,
            &Mechanism::RsaPkcsHash(Hash::Sha256),
            sk,
            b"tls"
        )
        .unwrap()
    );

    // Past k - 11: CKR_DATA_LEN_RANGE, single-part or at the part that passes
    // it; either ends the operation.
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &m, sk, &[1; 246]),
        Err(CoreError::DataLenRange(_))
    ));
    t.p.sign_init(t.app, t.s, &m, sk, false).unwrap();
    assert!(matches!(
        t.p.sign(t.app, t.s, &[1; 246]),
        Err(CoreError::DataLenRange(_))
    ));
    assert!(matches!(
        t.p.sign(t.app, t.s, b"x"),
        Err(CoreError::OperationNotInitialized)
    ));
    t.p.sign_init(t.app, t.s, &m, sk, false).unwrap();
    t.p.sign_update(t.app, t.s, &[1; 200], false).unwrap();
    t.p.sign_update(t.app, t.s, &[1; 45], false).unwrap();
    let e = t.p.sign_update(t.app, t.s, &[1; 1], false).unwrap_err();
    assert!(matches!(e, CoreError::DataLenRange(_)), "{e}");
    assert!(e.to_string().contains("245 for RSA-2048"), "{e}");
    assert!(matches!(
        t.p.sign_final(t.app, t.s),
        Err(CoreError::OperationNotInitialized)
    ));
    t.p.sign_init(t.app, t.s, &m, pk, true).unwrap();
    assert!(matches!(
        t.p.verify(t.app, t.s, &[1; 246], &[0; 256]),
        Err(CoreError::DataLenRange(_))
    ));
    t.p.sign_init(t.app, t.s, &m, pk, true).unwrap();
    assert!(matches!(
        t.p.sign_update(t.app, t.s, &[1; 246], true),
        Err(CoreError::DataLenRange(_))
    ));
    // A signature of the wrong length is invalid, not a crash.
    t.p.sign_init(t.app, t.s, &m, pk, true).unwrap();
    assert!(matches!(
        t.p.verify(t.app, t.s, b"x", &[0; 255]),
        Err(CoreError::SignatureInvalid)
    ));
    // RSA-4096: 501 bytes.
    let (pk4, sk4) = pair(
        &t,
        &Mechanism::RsaKeyPairGen,
        &[u(ck::CKA_MODULUS_BITS, 4096)],
        &[],
    );
    let sig = t.p.sign_once(t.app, t.s, &m, sk4, &[3; 501]).unwrap();
    t.p.sign_init(t.app, t.s, &m, pk4, true).unwrap();
    t.p.verify(t.app, t.s, &[3; 501], &sig).unwrap();
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &m, sk4, &[3; 502]),
        Err(CoreError::DataLenRange(_))
    ));
}

fn sha1_pss() -> PssParams {
    PssParams {
        hash: Hash::Sha1,
        mgf: Hash::Sha1.mgf1(),
        salt_len: 20,
    }
}

/// SHA-1 signatures: refused by default (NIST SP 800-131A), made where the
/// partition's policy allows them, and checked by OpenSSL; verifying one works
/// either way; the mechanism list offers them only with the policy.
#[test]
fn sha1_signatures_only_where_the_partition_policy_allows_them() {
    let (_dir, d) = device();
    let strict = Tenant::new(&d, "strict");
    let mut spec = spec("legacy");
    spec.policy.allow_sha1_signatures = true;
    let info = d.create_partition(spec).unwrap();
    assert!(info.policy.allow_sha1_signatures);
    let legacy = Tenant::login(d.partition(info.id).unwrap(), 1);
    let sha1 = [
        Mechanism::RsaPkcsHash(Hash::Sha1),
        Mechanism::RsaPssHash(sha1_pss()),
        Mechanism::EcdsaHash(Hash::Sha1),
    ];
    let ckms = [
        ck::CKM_SHA1_RSA_PKCS,
        ck::CKM_SHA1_RSA_PKCS_PSS,
        ck::CKM_ECDSA_SHA1,
    ];
    for (m, ckm) in sha1.iter().zip(ckms) {
        assert_eq!(m.ckm(), ckm);
        assert!(!strict.p.mechanisms().iter().any(|i| i.mechanism == ckm));
        let offered = legacy.p.mechanisms();
        let i = offered.iter().find(|i| i.mechanism == ckm).unwrap();
        assert_eq!(
            i.flags & (ck::CKF_SIGN | ck::CKF_VERIFY),
            ck::CKF_SIGN | ck::CKF_VERIFY
        );
    }
    let files = tempfile::tempdir().unwrap();
    let (spk, ssk) = rsa_pair(&strict, files.path());
    let (lpk, lsk) = rsa_pair(&legacy, files.path());
    let ec = |t: &Tenant| {
        pair(
            t,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256)],
            &[],
        )
    };
    let (sepk, sesk) = ec(&strict);
    let (lepk, lesk) = ec(&legacy);
    let msg = b"a legacy client's message";

    for m in &sha1 {
        let (sk, esk) = (ssk, sesk);
        let key = if matches!(m, Mechanism::EcdsaHash(_)) {
            esk
        } else {
            sk
        };
        // Refused by default: at C_SignInit, single-part and in the fast path.
        let e = strict
            .p
            .sign_init(strict.app, strict.s, m, key, false)
            .unwrap_err();
        assert!(matches!(e, CoreError::MechanismInvalid(_)), "{m:?}: {e}");
        assert!(e.to_string().contains("--allow-sha1-signatures"), "{e}");
        assert!(matches!(
            strict.p.sign_once(strict.app, strict.s, m, key, msg),
            Err(CoreError::MechanismInvalid(_))
        ));
        // Allowed by the policy, single- and multi-part; and the signature
        // verifies in both partitions (verifying SHA-1 is legacy use).
        let key = if matches!(m, Mechanism::EcdsaHash(_)) {
            lesk
        } else {
            lsk
        };
        let vk = if matches!(m, Mechanism::EcdsaHash(_)) {
            lepk
        } else {
            lpk
        };
        let sig = legacy
            .p
            .sign_once(legacy.app, legacy.s, m, key, msg)
            .unwrap();
        sign_verify(&legacy, m, key, vk, msg);
        legacy
            .p
            .sign_init(legacy.app, legacy.s, m, vk, true)
            .unwrap();
        legacy.p.verify(legacy.app, legacy.s, msg, &sig).unwrap();
        let _ = (spk, sepk);
    }
    // OpenSSL checks the RSA ones against SHA-1 of the message.
    std::fs::write(files.path().join("msg"), msg).unwrap();
    for (m, opts) in [
        (
            Mechanism::RsaPkcsHash(Hash::Sha1),
            &["-pkeyopt", "rsa_padding_mode:pkcs1"][..],
        ),
        (
            Mechanism::RsaPssHash(sha1_pss()),
            &[
                "-pkeyopt",
                "rsa_padding_mode:pss",
                "-pkeyopt",
                "rsa_pss_saltlen:20",
                "-pkeyopt",
                "rsa_mgf1_md:sha1",
            ][..],
        ),
    ] {
        let sig = legacy
            .p
            .sign_once(legacy.app, legacy.s, &m, lsk, msg)
            .unwrap();
        std::fs::write(files.path().join("sig"), &sig).unwrap();
        std::fs::write(
            files.path().join("digest"),
            ihsm_crypto::hash::digest(ihsm_crypto::hash::HashAlg::Sha1, msg),
        )
        .unwrap();
        let mut args = vec![
            "pkeyutl",
            "-verify",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            "pub.der",
            "-in",
            "digest",
            "-sigfile",
            "sig",
            "-pkeyopt",
            "digest:sha1",
        ];
        args.extend_from_slice(opts);
        let said = openssl(files.path(), &args);
        assert!(
            String::from_utf8_lossy(&said).contains("Signature Verified Successfully"),
            "{m:?}: {}",
            String::from_utf8_lossy(&said)
        );
    }
    // CKM_RSA_PKCS signs a SHA-1 DigestInfo whatever the policy: it signs what it is given.
    let di = ihsm_crypto::rsa::digest_info(ihsm_crypto::hash::HashAlg::Sha1, msg).unwrap();
    let sig = strict
        .p
        .sign_once(strict.app, strict.s, &Mechanism::RsaPkcs, ssk, &di)
        .unwrap();
    strict
        .p
        .sign_init(
            strict.app,
            strict.s,
            &Mechanism::RsaPkcsHash(Hash::Sha1),
            spk,
            true,
        )
        .unwrap();
    strict.p.verify(strict.app, strict.s, msg, &sig).unwrap();
    // The policy outlives a restart of the device.
    let lid = legacy.p.id();
    drop((strict, legacy));
    let dir = _dir;
    d.stop();
    drop(d);
    let d = start(dir.path()).unwrap();
    let p = d.partition(lid).unwrap();
    assert!(p.policy().allow_sha1_signatures);
    assert!(p.info().unwrap().policy.allow_sha1_signatures);
}
