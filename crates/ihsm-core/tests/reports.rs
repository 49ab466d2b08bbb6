//! Key reports at the core: refused for what is not this session's key, for
//! over-long report_data and for objects the format cannot describe; each report
//! made is an audit entry whose sequence number is the report's counter; nothing
//! after a tamper. (The reports' content is checked end to end, by a verifier we
//! did not write, in `crates/ihsm/tests/evidence.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::audit::{AuditEntry, AuditEvent};
use ihsm_core::mech::Mechanism;

fn ec_pair(t: &Tenant, label: &str) -> (u64, u64) {
    t.p.generate_key_pair(
        t.app,
        t.s,
        &Mechanism::EcKeyPairGen,
        &[
            by(ck::CKA_EC_PARAMS, P384),
            b(ck::CKA_VERIFY, true),
            b(ck::CKA_TOKEN, true),
        ],
        &[
            by(ck::CKA_LABEL, label.as_bytes()),
            b(ck::CKA_SIGN, true),
            b(ck::CKA_TOKEN, true),
        ],
    )
    .unwrap()
}

/// The counter (field 100) of a report, decoded by ciborium: the first message's
/// payload.
fn counter(report: &[u8]) -> u64 {
    use ciborium::Value;
    let msg: Value = ciborium::de::from_reader(report).unwrap();
    let Value::Tag(18, m) = msg else {
        panic!("not a tagged COSE_Sign1")
    };
    let payload = m.as_array().unwrap()[2].as_bytes().unwrap().clone();
    let map: Value = ciborium::de::from_reader(payload.as_slice()).unwrap();
    let v = map
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_integer() == Some(100.into()))
        .unwrap()
        .1
        .as_integer()
        .unwrap();
    u64::try_from(v).unwrap()
}

#[test]
fn reports_are_made_for_this_sessions_keys_only_and_each_is_audited() {
    let (_dir, d) = device();
    let a = Tenant::new(&d, "alpha");
    let other = Tenant::new(&d, "beta");
    let (public, private) = ec_pair(&a, "sig");
    let aes = aes_key(&a, "bulk", &[]);
    let (_, theirs) = ec_pair(&other, "sig");

    let r1 = a.p.key_report(a.app, a.s, private, b"nonce").unwrap();
    // Tagged COSE_Sign1 with AziHSM's protected header, then the ML-DSA-87 one.
    assert_eq!(&r1[..4], &[0xd2, 0x84, 0x56, 0xa2]);
    let r2 = a.p.key_report(a.app, a.s, public, &[0xab; 128]).unwrap();
    let r3 = a.p.key_report(a.app, a.s, aes, b"").unwrap();
    let (c1, c2, c3) = (counter(&r1), counter(&r2), counter(&r3));
    assert!(c1 < c2 && c2 < c3, "{c1} {c2} {c3}");

    // Each report is the audit entry its counter names, and the log still verifies.
    let reported: Vec<(u64, u64)> =
        a.p.audit_entries()
            .unwrap()
            .iter()
            .map(|e| postcard::from_bytes::<AuditEntry>(e).unwrap())
            .filter_map(|e| match e.event {
                AuditEvent::KeyReported { handle, .. } => Some((e.seq, handle)),
                _ => None,
            })
            .collect();
    assert_eq!(reported, [(c1, private), (c2, public), (c3, aes)]);
    a.p.audit_verify().unwrap();

    // Refused, and nothing audited: 129 bytes of report_data, another
    // partition's key, a handle that names nothing, an object that is not a key.
    let before = a.p.audit_entries().unwrap().len();
    assert!(matches!(
        a.p.key_report(a.app, a.s, private, &[0; 129]),
        Err(CoreError::DataLenRange(_))
    ));
    assert!(matches!(
        a.p.key_report(a.app, a.s, theirs, b""),
        Err(CoreError::ObjectHandleInvalid)
    ));
    assert!(matches!(
        a.p.key_report(a.app, a.s, private ^ 0xffff, b""),
        Err(CoreError::ObjectHandleInvalid)
    ));
    let data =
        a.p.create_object(
            a.app,
            a.s,
            &[
                u(ck::CKA_CLASS, ck::CKO_DATA),
                by(ck::CKA_VALUE, b"not a key"),
            ],
        )
        .unwrap();
    assert!(matches!(
        a.p.key_report(a.app, a.s, data, b""),
        Err(CoreError::KeyTypeInconsistent)
    ));
    // A session that is not this application's.
    assert!(a.p.key_report(a.app + 1, a.s, private, b"").is_err());
    // A private key is not visible without a login.
    a.p.logout(a.app, a.s).unwrap();
    assert!(matches!(
        a.p.key_report(a.app, a.s, private, b""),
        Err(CoreError::ObjectHandleInvalid)
    ));
    assert_eq!(a.p.audit_entries().unwrap().len(), before);

    // After a tamper: no report, whatever the key.
    d.tamper("test");
    assert!(matches!(
        other.p.key_report(other.app, other.s, theirs, b""),
        Err(CoreError::Tampered(_))
    ));
}

/// The first message's payload of a report.
fn payload(report: &[u8]) -> Vec<u8> {
    use ciborium::Value;
    let msg: Value = ciborium::de::from_reader(report).unwrap();
    let Value::Tag(18, m) = msg else {
        panic!("not a tagged COSE_Sign1")
    };
    m.as_array().unwrap()[2].as_bytes().unwrap().clone()
}

#[test]
fn ed25519_keys_are_reported_as_okp_and_ml_dsa_keys_are_refused() {
    use ihsm_verify::keyreport::{AttestedKey, KeyReport};
    let (_dir, d) = device();
    let t = Tenant::new(&d, "alpha");
    let (pk, sk) =
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::EcEdwardsKeyPairGen,
            &[b(ck::CKA_TOKEN, true)],
            &[b(ck::CKA_SIGN, true), b(ck::CKA_TOKEN, true)],
        )
        .unwrap();
    let point = t.bytes(pk, ck::CKA_EC_POINT);
    // CKA_EC_POINT is the DER OCTET STRING of the 32-byte public key.
    assert_eq!(&point[..2], &[0x04, 0x20]);
    for key in [sk, pk] {
        let r = KeyReport::from_payload(&payload(&t.p.key_report(t.app, t.s, key, b"n").unwrap()))
            .unwrap();
        assert_eq!(
            r.public_key,
            AttestedKey::Okp {
                crv: 6,
                x: point[2..].to_vec()
            }
        );
        assert_eq!(r.key_size, 256);
    }
    // ML-DSA-87's public key (2,592 bytes) does not fit the 525-byte field.
    let (mpk, msk) =
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::MlDsaKeyPairGen,
            &[u(ck::CKA_PARAMETER_SET, 3)],
            &[],
        )
        .unwrap();
    for key in [mpk, msk] {
        assert!(matches!(
            t.p.key_report(t.app, t.s, key, b""),
            Err(CoreError::KeyTypeInconsistent)
        ));
    }
}
