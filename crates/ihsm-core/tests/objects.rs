//! Objects: creation, attributes and their rules, visibility, copy, destroy, find,
//! and every handle of another partition refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::attr::{AttrResult, AttrValue};
use ihsm_core::mech::{GcmIv, Hash, Mechanism};
use ihsm_core::session::UserType;

#[test]
fn sensitive_values_are_never_revealed() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    // Defaults: sensitive, unextractable.
    let k = aes_key(&t, "k", &[]);
    assert_eq!(t.get(k, ck::CKA_VALUE), AttrResult::Sensitive);
    assert_eq!(
        t.get(k, ck::CKA_SENSITIVE),
        AttrResult::Value(AttrValue::Bool(true))
    );
    assert_eq!(
        t.get(k, ck::CKA_ALWAYS_SENSITIVE),
        AttrResult::Value(AttrValue::Bool(true))
    );
    assert_eq!(
        t.get(k, ck::CKA_NEVER_EXTRACTABLE),
        AttrResult::Value(AttrValue::Bool(true))
    );
    assert_eq!(
        t.get(k, ck::CKA_LOCAL),
        AttrResult::Value(AttrValue::Bool(true))
    );
    assert_eq!(
        t.get(k, ck::CKA_VALUE_LEN),
        AttrResult::Value(AttrValue::Ulong(32))
    );
    // Extractable but sensitive: still not revealed.
    let k2 = aes_key(&t, "k2", &[b(ck::CKA_EXTRACTABLE, true)]);
    assert_eq!(t.get(k2, ck::CKA_VALUE), AttrResult::Sensitive);
    // Non-sensitive and extractable: revealed.
    let k3 = aes_key(
        &t,
        "k3",
        &[b(ck::CKA_EXTRACTABLE, true), b(ck::CKA_SENSITIVE, false)],
    );
    assert_eq!(t.bytes(k3, ck::CKA_VALUE).len(), 32);
    assert_eq!(
        t.get(k3, ck::CKA_ALWAYS_SENSITIVE),
        AttrResult::Value(AttrValue::Bool(false))
    );
    // Private key material likewise.
    let (_pubk, privk) =
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256)],
            &[],
        )
        .unwrap();
    assert_eq!(t.get(privk, ck::CKA_VALUE), AttrResult::Sensitive);
    assert_eq!(t.get(privk, ck::CKA_PRIVATE_EXPONENT), AttrResult::Invalid);
    // An attribute that does not belong to the class.
    assert_eq!(t.get(k, ck::CKA_MODULUS), AttrResult::Invalid);
    assert_eq!(t.get(k, 0x7777_7777), AttrResult::Invalid);
    // A private key's value is never an attribute, even when the key is
    // extractable and not sensitive: it leaves wrapped or masked only.
    for (mech, public, material) in [
        (
            Mechanism::EcKeyPairGen,
            vec![by(ck::CKA_EC_PARAMS, P256)],
            &[ck::CKA_VALUE][..],
        ),
        (
            Mechanism::RsaKeyPairGen,
            vec![u(ck::CKA_MODULUS_BITS, 2048)],
            &[
                ck::CKA_PRIVATE_EXPONENT,
                ck::CKA_PRIME_1,
                ck::CKA_PRIME_2,
                ck::CKA_EXPONENT_1,
                ck::CKA_EXPONENT_2,
                ck::CKA_COEFFICIENT,
            ][..],
        ),
    ] {
        let (_, open) =
            t.p.generate_key_pair(
                t.app,
                t.s,
                &mech,
                &public,
                &[b(ck::CKA_EXTRACTABLE, true), b(ck::CKA_SENSITIVE, false)],
            )
            .unwrap();
        for ty in material {
            let got = t.get(open, *ty);
            assert!(
                matches!(got, AttrResult::Sensitive | AttrResult::Invalid),
                "0x{ty:x}: {got:?}"
            );
        }
    }
}

#[test]
fn always_authenticate_and_the_wrap_and_unwrap_flags() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    // There is no context-specific login, so a private key that would need one
    // is refused rather than made and left unprotected.
    assert!(matches!(
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256)],
            &[b(ck::CKA_ALWAYS_AUTHENTICATE, true)],
        ),
        Err(CoreError::AttributeValueInvalid(
            ck::CKA_ALWAYS_AUTHENTICATE
        ))
    ));
    // A key without CKA_WRAP wraps nothing; without CKA_UNWRAP, unwraps nothing.
    let plain = aes_key(&t, "plain", &[]);
    let target = aes_key(&t, "target", &[b(ck::CKA_EXTRACTABLE, true)]);
    assert!(matches!(
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrap, plain, target),
        Err(CoreError::KeyFunctionNotPermitted(_))
    ));
    let kek = aes_key(&t, "kek", &[b(ck::CKA_WRAP, true)]);
    let wrapped =
        t.p.wrap_key(t.app, t.s, &Mechanism::AesKeyWrap, kek, target)
            .unwrap();
    assert!(matches!(
        t.p.unwrap_key(
            t.app,
            t.s,
            &Mechanism::AesKeyWrap,
            kek,
            &wrapped,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_AES)
            ],
        ),
        Err(CoreError::KeyFunctionNotPermitted(_))
    ));
}

#[test]
fn attribute_rules_on_set_and_copy() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let k = aes_key(&t, "k", &[b(ck::CKA_EXTRACTABLE, true)]);
    let set = |a| t.p.set_attributes(t.app, t.s, k, &[a]);
    // Sensitive may only turn on; extractable only off; wrap-with-trusted only on.
    assert!(matches!(
        set(b(ck::CKA_SENSITIVE, false)),
        Err(CoreError::AttributeReadOnly(_))
    ));
    set(b(ck::CKA_EXTRACTABLE, false)).unwrap();
    assert!(matches!(
        set(b(ck::CKA_EXTRACTABLE, true)),
        Err(CoreError::AttributeReadOnly(_))
    ));
    set(b(ck::CKA_WRAP_WITH_TRUSTED, true)).unwrap();
    assert!(matches!(
        set(b(ck::CKA_WRAP_WITH_TRUSTED, false)),
        Err(CoreError::AttributeReadOnly(_))
    ));
    // HSM-set and creation-only attributes.
    for a in [
        b(ck::CKA_LOCAL, false),
        b(ck::CKA_NEVER_EXTRACTABLE, true),
        u(ck::CKA_KEY_TYPE, ck::CKK_GENERIC_SECRET),
        u(ck::CKA_CLASS, ck::CKO_DATA),
        by(ck::CKA_VALUE, &[0; 32]),
    ] {
        assert!(set(a).is_err());
    }
    // Trusted: only the SO.
    assert!(matches!(
        set(b(ck::CKA_TRUSTED, true)),
        Err(CoreError::AttributeReadOnly(_))
    ));
    // Ordinary attributes.
    set(by(ck::CKA_LABEL, b"renamed")).unwrap();
    assert_eq!(t.bytes(k, ck::CKA_LABEL), b"renamed");
    // Copy cannot make sensitive false or extractable true either.
    assert!(
        t.p.copy_object(t.app, t.s, k, &[b(ck::CKA_EXTRACTABLE, true)])
            .is_err()
    );
    let c =
        t.p.copy_object(
            t.app,
            t.s,
            k,
            &[by(ck::CKA_LABEL, b"copy"), b(ck::CKA_TOKEN, false)],
        )
        .unwrap();
    assert_eq!(
        t.get(c, ck::CKA_TOKEN),
        AttrResult::Value(AttrValue::Bool(false))
    );
    assert_ne!(t.bytes(c, ck::CKA_UNIQUE_ID), t.bytes(k, ck::CKA_UNIQUE_ID));
    // Unmodifiable and uncopyable objects.
    let frozen = aes_key(
        &t,
        "frozen",
        &[
            b(ck::CKA_MODIFIABLE, false),
            b(ck::CKA_COPYABLE, false),
            b(ck::CKA_DESTROYABLE, false),
        ],
    );
    assert!(matches!(
        t.p.set_attributes(t.app, t.s, frozen, &[by(ck::CKA_LABEL, b"x")]),
        Err(CoreError::ActionProhibited("modifiable"))
    ));
    assert!(matches!(
        t.p.copy_object(t.app, t.s, frozen, &[]),
        Err(CoreError::ActionProhibited("copyable"))
    ));
    assert!(matches!(
        t.p.destroy_object(t.app, t.s, frozen),
        Err(CoreError::ActionProhibited("destroyable"))
    ));
}

#[test]
fn templates_are_checked() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let gen_key = |tpl: &[ihsm_core::attr::Attribute]| {
        t.p.generate_key(t.app, t.s, &Mechanism::AesKeyGen, tpl)
    };
    assert!(matches!(
        gen_key(&[]),
        Err(CoreError::TemplateIncomplete(ck::CKA_VALUE_LEN))
    ));
    assert!(matches!(
        gen_key(&[u(ck::CKA_VALUE_LEN, 20)]),
        Err(CoreError::KeySizeRange(_))
    ));
    assert!(matches!(
        gen_key(&[u(ck::CKA_VALUE_LEN, 16), u(ck::CKA_KEY_TYPE, ck::CKK_RSA)]),
        Err(CoreError::TemplateInconsistent(_))
    ));
    assert!(matches!(
        gen_key(&[u(ck::CKA_VALUE_LEN, 16), b(ck::CKA_LOCAL, true)]),
        Err(CoreError::AttributeReadOnly(_))
    ));
    assert!(matches!(
        gen_key(&[u(ck::CKA_VALUE_LEN, 16), u(ck::CKA_SIGN, 1)]),
        Err(CoreError::AttributeValueInvalid(_))
    ));
    assert!(gen_key(&[u(ck::CKA_VALUE_LEN, 16), b(ck::CKA_MODULUS_BITS, true)]).is_err());
    assert!(
        gen_key(&[
            u(ck::CKA_VALUE_LEN, 16),
            b(ck::CKA_ALWAYS_AUTHENTICATE, true)
        ])
        .is_err()
    );
    assert!(matches!(
        gen_key(&[
            u(ck::CKA_VALUE_LEN, 16),
            by(ck::CKA_LABEL, b"a"),
            by(ck::CKA_LABEL, b"b")
        ]),
        Err(CoreError::TemplateInconsistent(_))
    ));
    // Creating objects.
    let create = |tpl: &[ihsm_core::attr::Attribute]| t.p.create_object(t.app, t.s, tpl);
    assert!(matches!(
        create(&[]),
        Err(CoreError::TemplateIncomplete(ck::CKA_CLASS))
    ));
    assert!(matches!(
        create(&[u(ck::CKA_CLASS, 0x99)]),
        Err(CoreError::AttributeValueInvalid(_))
    ));
    assert!(matches!(
        create(&[u(ck::CKA_CLASS, ck::CKO_SECRET_KEY)]),
        Err(CoreError::TemplateIncomplete(ck::CKA_KEY_TYPE))
    ));
    assert!(matches!(
        create(&[
            u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_AES),
            by(ck::CKA_VALUE, &[1; 17])
        ]),
        Err(CoreError::AttributeValueInvalid(_))
    ));
    assert!(matches!(
        create(&[
            u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_EC),
            by(ck::CKA_EC_PARAMS, P256),
            by(ck::CKA_EC_POINT, &[4; 65])
        ]),
        Err(CoreError::AttributeValueInvalid(_))
    ));
    let data = create(&[
        u(ck::CKA_CLASS, ck::CKO_DATA),
        by(ck::CKA_VALUE, b"hello"),
        by(ck::CKA_APPLICATION, b"app"),
        b(ck::CKA_TOKEN, true),
    ])
    .unwrap();
    assert_eq!(t.bytes(data, ck::CKA_VALUE), b"hello");
    assert!(matches!(
        create(&[u(ck::CKA_CLASS, ck::CKO_DATA), b(ck::CKA_SIGN, true)]),
        Err(CoreError::AttributeTypeInvalid(_))
    ));
    let imported = create(&[
        u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
        u(ck::CKA_KEY_TYPE, ck::CKK_AES),
        by(ck::CKA_VALUE, &[7; 16]),
    ])
    .unwrap();
    assert_eq!(
        t.get(imported, ck::CKA_LOCAL),
        AttrResult::Value(AttrValue::Bool(false))
    );
    assert_eq!(
        t.get(imported, ck::CKA_ALWAYS_SENSITIVE),
        AttrResult::Value(AttrValue::Bool(false))
    );
}

#[test]
fn private_objects_need_a_user_and_token_objects_a_rw_session() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let secret = aes_key(&t, "s", &[]);
    let public =
        t.p.create_object(
            t.app,
            t.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_DATA),
                b(ck::CKA_TOKEN, true),
                b(ck::CKA_PRIVATE, false),
                by(ck::CKA_LABEL, b"pub"),
            ],
        )
        .unwrap();
    // Application 2, not logged in: sees the public object only.
    let s2 = t.p.open_session(2, false).unwrap();
    assert!(matches!(
        t.p.get_attributes(2, s2, secret, &[ck::CKA_LABEL]),
        Err(CoreError::ObjectHandleInvalid)
    ));
    t.p.get_attributes(2, s2, public, &[ck::CKA_LABEL]).unwrap();
    assert_eq!(t.p.find(2, s2, &[]).unwrap(), vec![public]);
    // Read-only session: no token objects, no private objects without login.
    assert!(matches!(
        t.p.create_object(
            2,
            s2,
            &[u(ck::CKA_CLASS, ck::CKO_DATA), b(ck::CKA_TOKEN, true)]
        ),
        Err(CoreError::SessionReadOnly)
    ));
    assert!(matches!(
        t.p.create_object(
            2,
            s2,
            &[u(ck::CKA_CLASS, ck::CKO_DATA), b(ck::CKA_PRIVATE, true)]
        ),
        Err(CoreError::UserNotLoggedIn)
    ));
    // Logged-in user, read-only session: may create session objects only.
    t.p.login(2, s2, UserType::User, USER_PIN).unwrap();
    t.p.create_object(
        2,
        s2,
        &[u(ck::CKA_CLASS, ck::CKO_DATA), b(ck::CKA_PRIVATE, true)],
    )
    .unwrap();
    assert!(matches!(
        t.p.destroy_object(2, s2, secret),
        Err(CoreError::SessionReadOnly)
    ));
}

#[test]
fn session_objects_die_with_their_session() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let s2 = t.p.open_session(t.app, true).unwrap();
    let k =
        t.p.generate_key(
            t.app,
            s2,
            &Mechanism::AesKeyGen,
            &[u(ck::CKA_VALUE_LEN, 16)],
        )
        .unwrap();
    t.p.get_attributes(t.app, t.s, k, &[ck::CKA_LABEL]).unwrap();
    t.p.close_session(t.app, s2).unwrap();
    assert!(matches!(
        t.p.get_attributes(t.app, t.s, k, &[ck::CKA_LABEL]),
        Err(CoreError::ObjectHandleInvalid)
    ));
}

#[test]
fn find_by_template() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let a = aes_key(&t, "alpha", &[by(ck::CKA_ID, b"1")]);
    let b1 = aes_key(&t, "beta", &[by(ck::CKA_ID, b"2")]);
    let b2 = aes_key(
        &t,
        "beta",
        &[by(ck::CKA_ID, b"3"), b(ck::CKA_EXTRACTABLE, true)],
    );
    let (pubk, privk) =
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::EcKeyPairGen,
            &[
                by(ck::CKA_EC_PARAMS, P384),
                b(ck::CKA_TOKEN, true),
                by(ck::CKA_LABEL, b"ec"),
            ],
            &[b(ck::CKA_TOKEN, true), by(ck::CKA_LABEL, b"ec")],
        )
        .unwrap();
    let find = |tpl: &[ihsm_core::attr::Attribute]| {
        let mut v = t.p.find(t.app, t.s, tpl).unwrap();
        v.sort_unstable();
        v
    };
    assert_eq!(find(&[by(ck::CKA_LABEL, b"alpha")]), vec![a]);
    assert_eq!(find(&[by(ck::CKA_LABEL, b"beta")]), vec![b1, b2]);
    assert_eq!(
        find(&[by(ck::CKA_LABEL, b"beta"), b(ck::CKA_EXTRACTABLE, true)]),
        vec![b2]
    );
    assert_eq!(find(&[by(ck::CKA_ID, b"2")]), vec![b1]);
    assert_eq!(find(&[u(ck::CKA_CLASS, ck::CKO_PRIVATE_KEY)]), vec![privk]);
    assert_eq!(find(&[u(ck::CKA_KEY_TYPE, ck::CKK_EC)]), vec![pubk, privk]);
    assert_eq!(
        find(&[
            by(ck::CKA_EC_PARAMS, P384),
            u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY)
        ]),
        vec![pubk]
    );
    assert_eq!(find(&[by(ck::CKA_LABEL, b"nothing")]), Vec::<u64>::new());
    assert_eq!(find(&[]).len(), 5);
    // A sensitive value cannot be probed by template.
    assert_eq!(find(&[by(ck::CKA_VALUE, &[0; 32])]), Vec::<u64>::new());
    // Renaming moves the index entry.
    t.p.set_attributes(t.app, t.s, a, &[by(ck::CKA_LABEL, b"gamma")])
        .unwrap();
    assert_eq!(find(&[by(ck::CKA_LABEL, b"alpha")]), Vec::<u64>::new());
    assert_eq!(find(&[by(ck::CKA_LABEL, b"gamma")]), vec![a]);
    t.p.destroy_object(t.app, t.s, a).unwrap();
    assert_eq!(find(&[by(ck::CKA_LABEL, b"gamma")]), Vec::<u64>::new());
}

#[test]
fn another_partitions_handles_are_refused_everywhere() {
    let (_dir, d) = device();
    let a = Tenant::new(&d, "a");
    let b_ = Tenant::new(&d, "b");
    let ka = aes_key(&a, "mine", &[b(ck::CKA_EXTRACTABLE, true)]);
    let (pa, sa) =
        a.p.generate_key_pair(
            a.app,
            a.s,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256), b(ck::CKA_TOKEN, true)],
            &[b(ck::CKA_TOKEN, true)],
        )
        .unwrap();
    let kb = aes_key(&b_, "theirs", &[b(ck::CKA_WRAP, true)]);
    let p = &b_.p;
    let (app, s) = (b_.app, b_.s);
    let gcm = Mechanism::AesGcm {
        iv: GcmIv::Generate,
        aad: vec![],
        tag_bits: 128,
    };
    for h in [ka, pa, sa] {
        assert!(matches!(
            p.get_attributes(app, s, h, &[ck::CKA_LABEL]),
            Err(CoreError::ObjectHandleInvalid)
        ));
        assert!(matches!(
            p.set_attributes(app, s, h, &[by(ck::CKA_LABEL, b"x")]),
            Err(CoreError::ObjectHandleInvalid)
        ));
        assert!(matches!(
            p.copy_object(app, s, h, &[]),
            Err(CoreError::ObjectHandleInvalid)
        ));
        assert!(matches!(
            p.destroy_object(app, s, h),
            Err(CoreError::ObjectHandleInvalid)
        ));
        assert!(matches!(
            p.sign_init(app, s, &Mechanism::EcdsaHash(Hash::Sha256), h, false),
            Err(CoreError::KeyHandleInvalid)
        ));
        assert!(matches!(
            p.sign_once(app, s, &Mechanism::Ecdsa, h, &[0; 32]),
            Err(CoreError::KeyHandleInvalid)
        ));
        assert!(matches!(
            p.crypt_init(app, s, &gcm, h, true),
            Err(CoreError::KeyHandleInvalid)
        ));
        assert!(matches!(
            p.wrap_key(app, s, &Mechanism::AesKeyWrapPad, kb, h),
            Err(CoreError::KeyHandleInvalid)
        ));
        assert!(matches!(
            p.wrap_key(app, s, &Mechanism::AesKeyWrapPad, h, kb),
            Err(CoreError::KeyHandleInvalid)
        ));
        assert!(matches!(
            p.derive_key(
                app,
                s,
                &Mechanism::Ecdh {
                    public_data: vec![4; 65]
                },
                h,
                &[u(ck::CKA_VALUE_LEN, 16)]
            ),
            Err(CoreError::KeyHandleInvalid)
        ));
        assert!(matches!(
            p.export_masked(app, s, h, 0),
            Err(CoreError::KeyHandleInvalid)
        ));
    }
    // Finds never return another partition's objects.
    assert!(
        p.find(app, s, &[by(ck::CKA_LABEL, b"mine")])
            .unwrap()
            .is_empty()
    );
    // A's session handle means nothing to B.
    assert!(matches!(
        p.find(app, a.s, &[]),
        Err(CoreError::SessionHandleInvalid)
    ));
    // Masked blobs of A do not import into B.
    let blob = a.p.export_masked(a.app, a.s, ka, 0).unwrap();
    assert!(matches!(
        p.import_masked(app, s, &blob, 0),
        Err(CoreError::MaskedKeyInvalid(_))
    ));
}

/// The bulk path makes objects through the same checks as C_CreateObject: each
/// template the single path refuses, the bulk path refuses with the same error,
/// and creates nothing of its batch (it once took certificates of any type, and
/// without a value).
#[test]
fn bulk_creation_refuses_what_single_creation_refuses() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    let token = b(ck::CKA_TOKEN, true);
    let cert = |extra: &[ihsm_core::attr::Attribute]| {
        let mut v = vec![
            token.clone(),
            u(ck::CKA_CLASS, ck::CKO_CERTIFICATE),
            by(ck::CKA_LABEL, b"cert"),
        ];
        v.extend_from_slice(extra);
        v
    };
    let aes = |extra: &[ihsm_core::attr::Attribute]| {
        let mut v = vec![
            token.clone(),
            u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_AES),
            by(ck::CKA_VALUE, &[7; 32]),
        ];
        v.extend_from_slice(extra);
        v
    };
    let good = aes(&[by(ck::CKA_LABEL, b"good")]);
    let refused = [
        // A certificate type other than X.509.
        cert(&[
            u(ck::CKA_CERTIFICATE_TYPE, 0x8000_0000),
            by(ck::CKA_VALUE, b"der"),
        ]),
        // A certificate without its type, or without its value.
        cert(&[by(ck::CKA_VALUE, b"der")]),
        cert(&[u(ck::CKA_CERTIFICATE_TYPE, ck::CKC_X_509)]),
        // CKA_TRUSTED is the Security Officer's to set.
        aes(&[b(ck::CKA_TRUSTED, true)]),
        // Key separation: wrap and decrypt in one secret key.
        aes(&[b(ck::CKA_WRAP, true), b(ck::CKA_DECRYPT, true)]),
        // A key value of a length AES does not have.
        vec![
            token.clone(),
            u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            u(ck::CKA_KEY_TYPE, ck::CKK_AES),
            by(ck::CKA_VALUE, &[7; 31]),
        ],
        // An HSM-set attribute.
        aes(&[b(ck::CKA_LOCAL, true)]),
    ];
    for template in &refused {
        let single = t.p.create_object(t.app, t.s, template).unwrap_err();
        let bulk =
            t.p.create_objects(t.app, t.s, &[good.clone(), template.clone()])
                .unwrap_err();
        assert_eq!(format!("{single:?}"), format!("{bulk:?}"), "{template:?}");
    }
    // Nothing of a refused batch was made; a good batch is.
    assert!(
        t.p.find(t.app, t.s, &[by(ck::CKA_LABEL, b"good")])
            .unwrap()
            .is_empty()
    );
    let made =
        t.p.create_objects(t.app, t.s, &[good.clone(), good])
            .unwrap();
    assert_eq!(made.len(), 2);
    assert_eq!(
        t.p.find(t.app, t.s, &[by(ck::CKA_LABEL, b"good")])
            .unwrap()
            .len(),
        2
    );
    // And a private object without a user logged in is refused on both paths.
    let s2 = t.p.open_session(2, true).unwrap();
    let e1 = t.p.create_object(2, s2, &aes(&[])).unwrap_err();
    let e2 = t.p.create_objects(2, s2, &[aes(&[])]).unwrap_err();
    assert!(matches!(e1, CoreError::UserNotLoggedIn), "{e1:?}");
    assert!(matches!(e2, CoreError::UserNotLoggedIn), "{e2:?}");
}
