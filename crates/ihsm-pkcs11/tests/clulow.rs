//! The key-extraction attacks on PKCS#11 that Clulow published and Tookan
//! automated, as an application would try them through the module: each ends in
//! the PKCS#11 error that names why, and the sensitive key's value never comes
//! back. The core's tests (`ihsm-core/tests/mechanisms.rs`) go through each rule
//! in detail; this shows the rules hold at the interface attackers use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::hkdf::{HkdfParams, HkdfSalt};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn rv<T: std::fmt::Debug>(r: Result<T, Error>) -> RvError {
    match r {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

fn aes(extra: &[Attribute]) -> Vec<Attribute> {
    let mut t = vec![Attribute::ValueLen(32.into())];
    t.extend_from_slice(extra);
    t
}

#[test]
fn the_clulow_attacks_end_in_errors_through_the_module() {
    let _watchdog = watchdog(
        std::time::Duration::from_secs(300),
        "the_clulow_attacks_end_in_errors_through_the_module",
    );
    let hsm = Hsm::start();
    // SAFETY: this is the only test in this binary, so no other thread reads the
    // environment while it is set.
    unsafe { std::env::set_var("IHSM_STATE", hsm.state()) };
    let p11 = Pkcs11::new(module()).unwrap();
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p11.get_slots_with_token().unwrap()[0];
    let s = p11.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .unwrap();
    let gen_aes = |extra: &[Attribute]| s.generate_key(&Mechanism::AesKeyGen, &aes(extra));

    // The victim: sensitive, and extractable so that it may travel wrapped.
    let victim = gen_aes(&[Attribute::Extractable(true)]).unwrap();
    // (cryptoki turns CKR_ATTRIBUTE_SENSITIVE into an attribute left out.)
    let sensitive = |h| {
        s.get_attributes(h, &[AttributeType::Value])
            .unwrap()
            .is_empty()
    };
    assert!(sensitive(victim));
    // Flip it readable, or a stuck key extractable: one-way attributes.
    assert_eq!(
        rv(s.update_attributes(victim, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    let stuck = gen_aes(&[]).unwrap();
    assert_eq!(
        rv(s.update_attributes(stuck, &[Attribute::Extractable(true)])),
        RvError::AttributeReadOnly
    );
    // Copy it into a readable or extractable object.
    assert_eq!(
        rv(s.copy_object(victim, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(s.copy_object(stuck, &[Attribute::Extractable(true)])),
        RvError::AttributeReadOnly
    );
    // One key that wraps and decrypts: refused when made.
    assert_eq!(
        rv(gen_aes(&[Attribute::Wrap(true), Attribute::Decrypt(true)])),
        RvError::TemplateInconsistent
    );
    // Wrap under a key whose value the attacker chose, to unwrap it at home.
    let known = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![7; 32]),
            Attribute::Wrap(true),
        ])
        .unwrap();
    assert_eq!(
        rv(s.wrap_key(&Mechanism::AesKeyWrap, known, victim)),
        RvError::KeyNotWrappable
    );
    // Wrap under the public half of a pair whose private half decrypts.
    let (rpub, _rpriv) = s
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::ModulusBits(2048.into()), Attribute::Wrap(true)],
            &[Attribute::Decrypt(true)],
        )
        .unwrap();
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ));
    assert_eq!(
        rv(s.wrap_key(&oaep, rpub, victim)),
        RvError::KeyNotWrappable
    );
    // Wrap under a key made here, then unwrap the result as readable.
    let kek = gen_aes(&[Attribute::Wrap(true), Attribute::Unwrap(true)]).unwrap();
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, kek, victim).unwrap();
    assert_eq!(
        rv(s.unwrap_key(
            &Mechanism::AesKeyWrap,
            kek,
            &wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Sensitive(false),
            ],
        )),
        RvError::TemplateInconsistent
    );
    // Or decrypt the wrapping with the key that made it.
    assert_eq!(
        rv(s.decrypt(&Mechanism::AesCbc([0; 16]), kek, &wrapped)),
        RvError::KeyFunctionNotPermitted
    );
    // Derive from the sensitive secret into a readable key.
    let base = s
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[Attribute::ValueLen(32.into()), Attribute::Derive(true)],
        )
        .unwrap();
    let hkdf = Mechanism::HkdfDerive(HkdfParams::new(
        MechanismType::SHA256,
        Some(HkdfSalt::Null),
        Some(b"info"),
    ));
    assert_eq!(
        rv(s.derive_key(
            &hkdf,
            base,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(false),
            ],
        )),
        RvError::TemplateInconsistent
    );
    // After all of it the victim is as it was, and still wraps under the key
    // made for that.
    assert!(sensitive(victim));
    s.wrap_key(&Mechanism::AesKeyWrap, kek, victim).unwrap();
}
