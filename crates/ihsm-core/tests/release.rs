//! Secure key release at the core, with real EARs signed by a verifier key: a key
//! with a release policy leaves wrapped to the RSA key an EAR attests, and the
//! destination partition unwraps the same key; refused for a policy clause that
//! fails, a replayed, expired or not-affirming EAR, an unknown verifier, an EAR
//! without an attested RSA key; never by an ordinary wrap or a masked export; the
//! policy only tightens; every release, granted or refused, is audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::attr::CKA_IHSM_RELEASE_POLICY;
use ihsm_core::audit::{AuditEntry, AuditEvent};
use ihsm_core::mech::{GcmIv, Hash, Mechanism, OaepParams};
use ihsm_core::session::UserType;
use ihsm_verify::ear::{self, EarSigner};
use serde_json::json;

fn verifier() -> EarSigner {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    EarSigner::from_pkcs8(pkcs8.as_ref()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An EAR as `ihsm verify evidence --ear-out` writes one, for a destination
/// partition and RSA key.
fn ear_for(
    signer: &EarSigner,
    partition: &str,
    n: &[u8],
    e: &[u8],
    edit: impl Fn(&mut serde_json::Value),
) -> Vec<u8> {
    let t = now();
    let mut claims = json!({
        "eat_profile": ear::EAR_PROFILE,
        "iat": t,
        "exp": t + 300,
        "submods": {"ihsm": {
            "ear_status": "affirming",
            "ihsm_partition": {"name": partition, "id": 2},
            "ihsm_attested_key": {"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)},
            "ihsm_attested_key_attributes": {"flags": 0x1c4, "generated": true, "unwrap": true,
                "never_extractable": true, "always_sensitive": true, "local": true,
                "session": false, "imported": false, "sign": false, "decrypt": false,
                "derive": false},
        }},
    });
    edit(&mut claims);
    ear::sign(signer, &claims).unwrap().into_bytes()
}

fn gcm() -> Mechanism {
    Mechanism::AesGcm {
        iv: GcmIv::Supplied(vec![3; 12]),
        aad: vec![],
        tag_bits: 128,
    }
}

#[test]
fn a_key_leaves_only_to_an_attested_destination_its_policy_admits() {
    let (_dir, d) = device();
    let src = Tenant::new(&d, "source");
    let dst = Tenant::new(&d, "dest");
    let signer = verifier();
    let authority = ihsm_verify::release::verifier_authority(&signer.public_key()).unwrap();

    // The destination's unwrap-only RSA key, which never leaves it.
    let (rsa_pub, rsa_priv) = dst
        .p
        .generate_key_pair(
            dst.app,
            dst.s,
            &Mechanism::RsaKeyPairGen,
            &[
                u(ck::CKA_MODULUS_BITS, 2048),
                b(ck::CKA_WRAP, true),
                b(ck::CKA_TOKEN, true),
            ],
            &[
                b(ck::CKA_UNWRAP, true),
                b(ck::CKA_SENSITIVE, true),
                b(ck::CKA_EXTRACTABLE, false),
                b(ck::CKA_TOKEN, true),
            ],
        )
        .unwrap();
    let n = dst.bytes(rsa_pub, ck::CKA_MODULUS);
    let e = dst.bytes(rsa_pub, ck::CKA_PUBLIC_EXPONENT);

    // The source's Security Officer trusts the verifier: a P-384 public key
    // object marked CKA_TRUSTED (only the SO may).
    let so = src.p.open_session(7, true).unwrap();
    src.p
        .login(7, so, UserType::SecurityOfficer, SO_PIN)
        .unwrap();
    let mut point = vec![0x04, 0x61];
    point.extend(signer.public_key());
    let trust = [
        u(ck::CKA_CLASS, ck::CKO_PUBLIC_KEY),
        u(ck::CKA_KEY_TYPE, ck::CKK_EC),
        by(ck::CKA_EC_PARAMS, P384),
        by(ck::CKA_EC_POINT, &point),
        b(ck::CKA_VERIFY, true),
        b(ck::CKA_TRUSTED, true),
        b(ck::CKA_TOKEN, true),
    ];
    src.p.create_object(7, so, &trust).unwrap();
    // The user cannot make a trusted key of their own.
    assert!(src.p.create_object(src.app, src.s, &trust).is_err());

    let policy = |name: &str, extra: &str| {
        format!(
            r#"{{"version":"1.0.0","anyOf":[{{"authority":"{authority}","allOf":[{{"claim":"submods.ihsm.ear_status","equals":"affirming"}},{{"claim":"submods.ihsm.ihsm_partition.name","equals":"{name}"}}{extra}]}}]}}"#
        )
    };
    let key = aes_key(
        &src,
        "released",
        &[
            b(ck::CKA_EXTRACTABLE, true),
            b(ck::CKA_ENCRYPT, true),
            by(CKA_IHSM_RELEASE_POLICY, policy("dest", "").as_bytes()),
        ],
    );
    let release = |ear: Vec<u8>| {
        src.p
            .wrap_key(src.app, src.s, &Mechanism::KeyRelease { ear }, 0, key)
    };
    let refused = |r: ihsm_core::Result<Vec<u8>>, why: &str| match r {
        Err(CoreError::ReleaseRefused(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("{why}: {other:?}"),
    };

    // Granted: the destination unwraps the same key.
    let good = ear_for(&signer, "dest", &n, &e, |_| {});
    let wrapped = release(good.clone()).unwrap();
    let oaep = OaepParams {
        hash: Hash::Sha256,
        mgf: Hash::Sha256.mgf1(),
        label: vec![],
    };
    let got = dst
        .p
        .unwrap_key(
            dst.app,
            dst.s,
            &Mechanism::RsaAesKeyWrap {
                aes_bits: 256,
                oaep,
            },
            rsa_priv,
            &wrapped,
            &[
                u(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
                u(ck::CKA_KEY_TYPE, ck::CKK_AES),
                b(ck::CKA_ENCRYPT, true),
                b(ck::CKA_TOKEN, true),
            ],
        )
        .unwrap();
    let enc = |t: &Tenant, k: u64| {
        t.p.encrypt_once(t.app, t.s, &gcm(), k, b"same key?")
            .unwrap()
            .0
    };
    assert_eq!(enc(&src, key), enc(&dst, got));

    // Refused, each for its own reason.
    refused(release(good), "used before");
    refused(release(ear_for(&signer, "other", &n, &e, |_| {})), "");
    refused(
        release(ear_for(&verifier(), "dest", &n, &e, |_| {})),
        "signature",
    );
    refused(
        release(ear_for(&signer, "dest", &n, &e, |c| {
            c["iat"] = json!(now() - 1000);
            c["exp"] = json!(now() - 700);
        })),
        "not valid now",
    );
    refused(
        release(ear_for(&signer, "dest", &n, &e, |c| {
            c["submods"]["ihsm"]["ear_status"] = json!("contraindicated");
        })),
        "not affirming",
    );
    refused(
        release(ear_for(&signer, "dest", &n, &e, |c| {
            c["submods"]["ihsm"]
                .as_object_mut()
                .unwrap()
                .remove("ihsm_attested_key");
        })),
        "RSA key",
    );
    refused(
        release(ear_for(&signer, "dest", &n, &e, |c| {
            c["submods"]["ihsm"]["ihsm_attested_key_attributes"]["never_extractable"] =
                json!(false);
        })),
        "not a release target",
    );
    refused(release(b"not a token".to_vec()), "");

    // No other way out: an ordinary wrap, a masked export.
    let kek = aes_key(&src, "kek", &[b(ck::CKA_WRAP, true)]);
    assert!(matches!(
        src.p
            .wrap_key(src.app, src.s, &Mechanism::AesKeyWrapPad, kek, key),
        Err(CoreError::KeyUnextractable(_))
    ));
    assert!(matches!(
        src.p.export_masked(src.app, src.s, key, 0),
        Err(CoreError::KeyUnextractable(_))
    ));
    // A key without a policy cannot be released, nor given one afterwards.
    let plain = aes_key(&src, "plain", &[b(ck::CKA_EXTRACTABLE, true)]);
    assert!(matches!(
        src.p.wrap_key(
            src.app,
            src.s,
            &Mechanism::KeyRelease {
                ear: ear_for(&signer, "dest", &n, &e, |_| {})
            },
            0,
            plain
        ),
        Err(CoreError::KeyUnextractable(_))
    ));
    let set = |h: u64, p: &str| {
        src.p.set_attributes(
            src.app,
            src.s,
            h,
            &[by(CKA_IHSM_RELEASE_POLICY, p.as_bytes())],
        )
    };
    assert!(matches!(
        set(plain, &policy("dest", "")),
        Err(CoreError::AttributeReadOnly(_))
    ));

    // The policy only tightens: one more condition is accepted, dropping one is
    // not; garbage is refused at creation with the parser's reason.
    let tighter = policy(
        "dest",
        r#",{"claim":"submods.ihsm.ihsm_lifecycle","equals":"production"}"#,
    );
    set(key, &tighter).unwrap();
    match set(key, &policy("dest", "")) {
        Err(CoreError::AttributeValueInvalidWhy(_, why)) => {
            assert!(why.contains("tightened"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // Now the lifecycle claim is required too.
    refused(release(ear_for(&signer, "dest", &n, &e, |_| {})), "");
    let r = src.p.generate_key(
        src.app,
        src.s,
        &Mechanism::AesKeyGen,
        &[
            u(ck::CKA_VALUE_LEN, 32),
            by(CKA_IHSM_RELEASE_POLICY, b"{\"version\":\"2\"}"),
        ],
    );
    match r {
        Err(CoreError::AttributeValueInvalidWhy(_, why)) => {
            assert!(why.contains("release policy"), "{why}")
        }
        other => panic!("{other:?}"),
    }

    // Every release, granted or refused, is in the audit log, naming the verifier.
    let releases: Vec<(String, bool)> = src
        .p
        .audit_entries()
        .unwrap()
        .iter()
        .filter_map(
            |e| match postcard::from_bytes::<AuditEntry>(e).unwrap().event {
                AuditEvent::KeyReleased {
                    authority, granted, ..
                } => Some((authority, granted)),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        releases.iter().filter(|(_, g)| *g).count(),
        1,
        "{releases:?}"
    );
    assert!(releases.len() >= 8, "{releases:?}");
    assert_eq!(releases[0], (authority.clone(), true));
    src.p.audit_verify().unwrap();
}

#[test]
fn the_security_officer_replaces_a_private_keys_policy_by_name_and_it_is_audited() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "source");
    let strict = r#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"x","equals":"1"},{"claim":"y","equals":"2"}]}]}"#;
    let loose =
        r#"{"version":"1.0.0","anyOf":[{"authority":"a","allOf":[{"claim":"x","equals":"1"}]}]}"#;
    let key = aes_key(
        &t,
        "released",
        &[
            b(ck::CKA_EXTRACTABLE, true),
            by(ck::CKA_ID, b"k1"),
            by(CKA_IHSM_RELEASE_POLICY, strict.as_bytes()),
        ],
    );
    // Another key of the same label, without a policy, is not a candidate.
    aes_key(&t, "released", &[]);
    // The user may not loosen it.
    assert!(matches!(
        t.p.set_attributes(
            t.app,
            t.s,
            key,
            &[by(CKA_IHSM_RELEASE_POLICY, loose.as_bytes())]
        ),
        Err(CoreError::AttributeValueInvalidWhy(..))
    ));
    let label = [by(ck::CKA_LABEL, b"released")];
    // Only the SO replaces, and only by label or id.
    assert!(matches!(
        t.p.replace_release_policy(t.app, t.s, &label, loose.as_bytes()),
        Err(CoreError::UserNotLoggedIn)
    ));
    let so = t.p.open_session(9, true).unwrap();
    t.p.login(9, so, UserType::SecurityOfficer, SO_PIN).unwrap();
    // The SO cannot see the private key.
    assert!(t.p.find(9, so, &label).unwrap().is_empty());
    for (selector, what) in [
        (vec![], "no selector"),
        (vec![b(ck::CKA_ENCRYPT, true)], "another attribute"),
    ] {
        assert!(
            matches!(
                t.p.replace_release_policy(9, so, &selector, loose.as_bytes()),
                Err(CoreError::TemplateInconsistent(_))
            ),
            "{what}"
        );
    }
    assert!(matches!(
        t.p.replace_release_policy(9, so, &[by(ck::CKA_LABEL, b"nothing")], loose.as_bytes()),
        Err(CoreError::ObjectHandleInvalid)
    ));
    assert!(
        t.p.replace_release_policy(9, so, &label, b"not a policy")
            .is_err()
    );
    let before = t.p.audit_entries().unwrap().len();
    let h =
        t.p.replace_release_policy(9, so, &[by(ck::CKA_ID, b"k1")], loose.as_bytes())
            .unwrap();
    assert_eq!(h, key);
    assert_eq!(
        t.bytes(key, CKA_IHSM_RELEASE_POLICY),
        loose.as_bytes().to_vec()
    );
    let last: Vec<AuditEvent> = t.p.audit_entries().unwrap()[before..]
        .iter()
        .map(|e| postcard::from_bytes::<AuditEntry>(e).unwrap().event)
        .collect();
    assert!(
        last.contains(&AuditEvent::ReleasePolicyReplaced {
            handle: key,
            policy_sha384: ihsm_crypto::hash::sha384(loose.as_bytes()),
        }),
        "{last:?}"
    );
    t.p.audit_verify().unwrap();
    // Two keys match: refused, nothing changed.
    aes_key(
        &t,
        "released",
        &[
            b(ck::CKA_EXTRACTABLE, true),
            by(CKA_IHSM_RELEASE_POLICY, strict.as_bytes()),
        ],
    );
    assert!(matches!(
        t.p.replace_release_policy(9, so, &label, strict.as_bytes()),
        Err(CoreError::ObjectHandleInvalid)
    ));
}
