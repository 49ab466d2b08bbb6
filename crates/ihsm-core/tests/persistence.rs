//! The sealed store across restarts: what survives, what a different identity or
//! a rolled-back store gets, and what a signed upgrade keeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::mech::{Hash, Mechanism};
use ihsm_rot::state::StateDir;
use ihsm_store::StoreError;

#[test]
fn objects_survive_restart_and_find_still_works() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let (pid, k, pk) = {
        let d = start(dir.path()).unwrap();
        let t = Tenant::new(&d, "t");
        let k = aes_key(&t, "persisted", &[]);
        let (pk, sk) =
            t.p.generate_key_pair(
                t.app,
                t.s,
                &Mechanism::EcKeyPairGen,
                &[
                    by(ck::CKA_EC_PARAMS, P256),
                    b(ck::CKA_TOKEN, true),
                    by(ck::CKA_LABEL, b"ec"),
                ],
                &[b(ck::CKA_TOKEN, true), by(ck::CKA_LABEL, b"ec")],
            )
            .unwrap();
        let _ = sk;
        (t.p.id(), k, pk)
    };
    let d = start(dir.path()).unwrap();
    let t = Tenant::login(d.partition(pid).unwrap(), 1);
    assert_eq!(t.bytes(k, ck::CKA_LABEL), b"persisted");
    assert_eq!(
        t.p.find(t.app, t.s, &[by(ck::CKA_LABEL, b"persisted")])
            .unwrap(),
        vec![k]
    );
    let ec =
        t.p.find(
            t.app,
            t.s,
            &[
                by(ck::CKA_LABEL, b"ec"),
                u(ck::CKA_CLASS, ck::CKO_PRIVATE_KEY),
            ],
        )
        .unwrap();
    let sig =
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), ec[0], b"m")
            .unwrap();
    t.p.sign_init(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), pk, true)
        .unwrap();
    t.p.verify(t.app, t.s, b"m", &sig).unwrap();
    // The audit log carried over and still verifies, with a checkpoint per start.
    let r = t.p.audit_verify().unwrap();
    assert!(r.checkpoints >= 2, "{r:?}");
    // The partition certificate is issued by the RT Alias key.
    let cert = d.partition_certificate(pid, false).unwrap();
    assert_eq!(cert[0], 0x30);
}

#[test]
fn a_store_of_another_identity_is_refused_and_left_untouched() {
    let a = tempfile::tempdir().unwrap();
    let b_ = tempfile::tempdir().unwrap();
    provision(a.path());
    provision(b_.path());
    {
        let d = start(a.path()).unwrap();
        Tenant::new(&d, "t");
    }
    for f in ["store.redb", "store.counter"] {
        std::fs::copy(a.path().join(f), b_.path().join(f)).unwrap();
    }
    let before = std::fs::read(b_.path().join("store.redb")).unwrap();
    match start(b_.path()) {
        Err(CoreError::Store(StoreError::WrongIdentity)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(b_.path().join("store.redb")).unwrap(), before);
}

#[test]
fn a_debug_unlocked_boot_cannot_open_the_production_store() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    {
        let d = start(dir.path()).unwrap();
        Tenant::new(&d, "t");
    }
    let state = StateDir::new(dir.path());
    let cfg = state.security_config();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("debug_locked = true", "debug_locked = false"),
    )
    .unwrap();
    state.sign_dev_manifest(&IMAGE, 0).unwrap();
    assert!(matches!(
        start(dir.path()),
        Err(CoreError::Store(StoreError::WrongIdentity))
    ));
}

#[test]
fn a_signed_upgrade_keeps_access_and_a_rollback_of_the_store_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let pid = {
        let d = start(dir.path()).unwrap();
        let t = Tenant::new(&d, "t");
        aes_key(&t, "before", &[]);
        t.p.id()
    };
    // A signed upgrade to SVN 2 (the store stays sealed at SVN 0; the ladder walks down).
    StateDir::new(dir.path())
        .sign_dev_manifest(&IMAGE, 2)
        .unwrap();
    let old = std::fs::read(dir.path().join("store.redb")).unwrap();
    {
        let d = start(dir.path()).unwrap();
        let t = Tenant::login(d.partition(pid).unwrap(), 1);
        assert_eq!(
            t.p.find(t.app, t.s, &[by(ck::CKA_LABEL, b"before")])
                .unwrap()
                .len(),
            1
        );
        aes_key(&t, "after", &[]);
    }
    // Put the older store file back: the monotonic counter beside the fuses says no.
    std::fs::write(dir.path().join("store.redb"), &old).unwrap();
    match start(dir.path()) {
        Err(CoreError::Tampered(reason)) => assert!(
            reason.contains("rollback") || reason.contains("older"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Latched: even with the newer store back, the device stays tampered.
    assert!(dir.path().join("TAMPERED").exists());
    assert!(matches!(start(dir.path()), Err(CoreError::Tampered(_))));
}

#[test]
fn modified_firmware_never_reaches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    // The RoT refuses to boot an image the manifest does not sign, so no sealing key
    // and no Device exist for it.
    let err = StateDir::new(dir.path()).boot(&[0x12; 48]).unwrap_err();
    assert!(
        err.to_string()
            .contains("firmware image digest does not match"),
        "{err}"
    );
}
