//! The module loaded by the `cryptoki` crate, for what the command-line tools
//! cannot reach: ML-DSA, ML-KEM, HKDF, the TLS 1.3 derivation and masked keys as
//! vendor-defined mechanisms, multi-part operations, session objects.
//!
//! One test: a PKCS#11 module is initialized once per process and reads its
//! configuration from the environment, so tests in parallel threads would share
//! one module and race on the variables. A failure's line number names the step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
use cryptoki::mechanism::hkdf::{HkdfParams, HkdfSalt};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, KeyType, MlDsaParameterSetType, MlKemParameterSetType, ObjectClass,
};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ihsm_pkcs11::vendor::{
    CK_IHSM_TLS13_EXPAND_LABEL_PARAMS, CKM_IHSM_KEY_REPORT, CKM_IHSM_MASKED_KEY,
    CKM_IHSM_TLS13_EXPAND_LABEL,
};

fn value(s: &cryptoki::session::Session, h: cryptoki::object::ObjectHandle) -> Vec<u8> {
    match s.get_attributes(h, &[AttributeType::Value]).unwrap().pop() {
        Some(Attribute::Value(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn secret(value: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Value(value.to_vec()),
        Attribute::Derive(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

fn readable(len: u64) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(len.into()),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

#[test]
fn post_quantum_kdfs_vendor_mechanisms_and_session_objects() {
    let _watchdog = watchdog(
        std::time::Duration::from_secs(300),
        "post_quantum_kdfs_vendor_mechanisms_and_session_objects",
    );
    let hsm = Hsm::start();
    // SAFETY: this is the only test in this binary, so no other thread reads the
    // environment while it is set.
    unsafe { std::env::set_var("IHSM_STATE", hsm.state()) };
    let p11 = Pkcs11::new(module()).unwrap();
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let info = p11.get_library_info().unwrap();
    assert_eq!(info.cryptoki_version().major(), 3);
    let slot = p11.get_slots_with_token().unwrap()[0];
    assert_eq!(p11.get_token_info(slot).unwrap().label(), "tok");
    let s = p11.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .unwrap();

    // ML-DSA-65, pure, with the 3.2 mechanism and key type values.
    let (pk, sk) = s
        .generate_key_pair(
            &Mechanism::MlDsaKeyPairGen,
            &[Attribute::ParameterSet(
                MlDsaParameterSetType::ML_DSA_65.into(),
            )],
            &[],
        )
        .unwrap();
    let ctx = SignAdditionalContext::new(HedgeType::Preferred, None);
    let sig = s.sign(&Mechanism::MlDsa(ctx), sk, b"post-quantum").unwrap();
    assert_eq!(sig.len(), 3309);
    s.verify(
        &Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, None)),
        pk,
        b"post-quantum",
        &sig,
    )
    .unwrap();
    assert!(
        s.verify(
            &Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, None)),
            pk,
            b"tampered",
            &sig
        )
        .is_err()
    );

    // ML-KEM-768: both sides derive the same secret.
    let (ek, dk) = s
        .generate_key_pair(
            &Mechanism::MlKemKeyPairGen,
            &[Attribute::ParameterSet(
                MlKemParameterSetType::ML_KEM_768.into(),
            )],
            &[],
        )
        .unwrap();
    let (ct, mine) = s
        .encapsulate_key(&Mechanism::MlKem, ek, &readable(32))
        .unwrap();
    assert_eq!(ct.len(), 1088);
    // The secret decapsulated with a sensitive private key is sensitive too, so
    // the two sides are compared by what they compute, not by reading them.
    let e = s
        .decapsulate_key(&Mechanism::MlKem, dk, &readable(32), &ct)
        .unwrap_err();
    assert!(
        matches!(
            e,
            cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::TemplateInconsistent, _)
        ),
        "{e}"
    );
    let mac_key = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32.into()),
        Attribute::Sign(true),
    ];
    let theirs = s
        .decapsulate_key(&Mechanism::MlKem, dk, &mac_key, &ct)
        .unwrap();
    let mac = |k| s.sign(&Mechanism::Sha256Hmac, k, b"both sides").unwrap();
    let mine_mac = {
        let m = value(&s, mine);
        let k = s
            .create_object(&[&secret(&m)[..], &[Attribute::Sign(true)]].concat())
            .unwrap();
        mac(k)
    };
    assert_eq!(mine_mac, mac(theirs));

    // HKDF, RFC 5869 test case 1.
    let ikm = s.create_object(&secret(&[0x0b; 22])).unwrap();
    let salt: Vec<u8> = (0u8..=0x0c).collect();
    let info: Vec<u8> = (0xf0u8..=0xf9).collect();
    let okm = s
        .derive_key(
            &Mechanism::HkdfDerive(HkdfParams::new(
                MechanismType::SHA256,
                Some(HkdfSalt::Data(&salt)),
                Some(&info),
            )),
            ikm,
            &readable(42),
        )
        .unwrap();
    assert_eq!(
        hex::encode(value(&s, okm)),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );

    // TLS 1.3 (RFC 8448): the early secret, then Derive-Secret(., "derived", "").
    let early = s
        .create_object(&secret(
            &hex::decode("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a")
                .unwrap(),
        ))
        .unwrap();
    let empty_hash =
        hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
    let mut label = b"derived".to_vec();
    let mut context = empty_hash.clone();
    let params = CK_IHSM_TLS13_EXPAND_LABEL_PARAMS {
        prfHashMechanism: cryptoki_sys::CKM_SHA256,
        pLabel: label.as_mut_ptr(),
        ulLabelLen: label.len() as u64,
        pContext: context.as_mut_ptr(),
        ulContextLen: context.len() as u64,
    };
    let tls = MechanismType::new_vendor_defined(CKM_IHSM_TLS13_EXPAND_LABEL).unwrap();
    let derived = s
        .derive_key(
            &Mechanism::VendorDefined(VendorDefinedMechanism::new(tls, Some(&params))),
            early,
            &readable(32),
        )
        .unwrap();
    assert_eq!(
        hex::encode(value(&s, derived)),
        "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba"
    );

    // Masked keys: out through C_WrapKey, back through C_UnwrapKey, still signing.
    let (epk, esk) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(vec![
                0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ])],
            &[Attribute::Token(true), Attribute::Extractable(true)],
        )
        .unwrap();
    let masked = MechanismType::new_vendor_defined(CKM_IHSM_MASKED_KEY).unwrap();
    let m = || Mechanism::VendorDefined(VendorDefinedMechanism::new::<u8>(masked, None));
    // The wrapping-key handle is not used: the partition's masking key wraps.
    let blob = s.wrap_key(&m(), esk, esk).unwrap();
    assert!(blob.starts_with(b"IHMK"));
    s.destroy_object(esk).unwrap();
    let back = s.unwrap_key(&m(), epk, &blob, &[]).unwrap();
    let sig = s.sign(&Mechanism::EcdsaSha256, back, b"masked").unwrap();
    s.verify(&Mechanism::EcdsaSha256, epk, b"masked", &sig)
        .unwrap();
    // A template with a masked key is inconsistent: the blob brings its own.
    assert!(
        s.unwrap_key(&m(), epk, &blob, &[Attribute::Token(true)])
            .is_err()
    );

    // Multi-part AES-GCM decryption and HMAC.
    let aes = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .unwrap();
    let aad = b"aad".to_vec();
    let mut iv = [9u8; 12];
    let enc = Mechanism::AesGcm(
        cryptoki::mechanism::aead::GcmParams::new(&mut iv, &aad, 128.into()).unwrap(),
    );
    let ct = s.encrypt(&enc, aes, &[5u8; 100]).unwrap();
    assert_eq!(ct.len(), 116);
    let mut iv2 = [9u8; 12];
    let dec = Mechanism::AesGcm(
        cryptoki::mechanism::aead::GcmParams::new(&mut iv2, &aad, 128.into()).unwrap(),
    );
    assert_eq!(s.decrypt(&dec, aes, &ct).unwrap(), vec![5u8; 100]);
    let hk = s
        .create_object(
            &[
                &secret(b"hmac key of 32 bytes, exactly!!!")[..],
                &[Attribute::Sign(true), Attribute::Verify(true)],
            ]
            .concat(),
        )
        .unwrap();
    s.sign_init(&Mechanism::Sha256Hmac, hk).unwrap();
    s.sign_update(b"part one, ").unwrap();
    s.sign_update(b"part two").unwrap();
    let mac = s.sign_final().unwrap();
    assert_eq!(
        mac,
        s.sign(&Mechanism::Sha256Hmac, hk, b"part one, part two")
            .unwrap()
    );

    // Key reports through C_SignInit/C_Sign with CKM_IHSM_KEY_REPORT: the data is
    // the report_data, the "signature" the report (docs/pkcs11.md).
    let report = MechanismType::new_vendor_defined(CKM_IHSM_KEY_REPORT).unwrap();
    let r = || Mechanism::VendorDefined(VendorDefinedMechanism::new::<u8>(report, None));
    // (cryptoki's get_mechanism_list drops vendor-defined values; the info is
    // asked for by value.)
    assert!(p11.get_mechanism_info(slot, report).unwrap().sign());
    let (_, rsk) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::EcParams(vec![
                0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22,
            ])],
            &[Attribute::Token(true), Attribute::Sign(true)],
        )
        .unwrap();
    let nonce = [0x5au8; 32];
    let rep = s.sign(&r(), rsk, &nonce).unwrap();
    // A tagged COSE_Sign1 with AziHSM's protected header first; report_data is
    // the nonce, zero-padded to 128 bytes (bstr head 58 80).
    assert_eq!(&rep[..3], &[0xd2, 0x84, 0x56]);
    let mut field = vec![0x58, 0x80];
    field.extend(nonce);
    field.resize(130, 0);
    assert!(rep.windows(130).any(|w| w == field.as_slice()));
    // Of a key that cannot sign (a report signs nothing the caller chose).
    assert!(s.sign(&r(), aes, b"").unwrap().starts_with(&[0xd2, 0x84]));
    let refused = |e: cryptoki::error::Error, want: cryptoki::error::RvError| {
        assert!(
            matches!(e, cryptoki::error::Error::Pkcs11(rv, _) if rv == want),
            "{e}"
        );
    };
    refused(
        s.sign(&r(), rsk, &[0; 129]).unwrap_err(),
        cryptoki::error::RvError::DataLenRange,
    );
    refused(
        s.verify(&r(), rsk, b"", &rep).unwrap_err(),
        cryptoki::error::RvError::MechanismInvalid,
    );
    // Single-part only.
    s.sign_init(&r(), rsk).unwrap();
    assert!(s.sign_update(b"part").is_err());

    // Session objects live with their session.
    let s2 = p11.open_rw_session(slot).unwrap();
    let temp = s2
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(false),
            Attribute::Label(b"scratch".to_vec()),
            Attribute::Private(false),
        ])
        .unwrap();
    let find = |sess: &cryptoki::session::Session| {
        sess.find_objects(&[Attribute::Label(b"scratch".to_vec())])
            .unwrap()
    };
    assert_eq!(find(&s), vec![temp]);
    drop(s2);
    assert!(find(&s).is_empty(), "a session object outlived its session");

    drop(s);
    p11.finalize().unwrap();
}
