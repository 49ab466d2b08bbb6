//! The tamper drill, alone in its process so that its count of live secret regions
//! means something: after a tamper every secret buffer is gone, no operation
//! succeeds, the state is latched, the fuses are destroyed, and it is audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::audit::{AuditEntry, AuditEvent};
use ihsm_core::mech::{GcmIv, Hash, Mechanism};
use ihsm_core::{CoreError, Device, DeviceState, TamperPolicy};
use ihsm_crypto::memory::live_regions;
use ihsm_rot::state::StateDir;

fn tampered<T: std::fmt::Debug>(r: ihsm_core::Result<T>) -> bool {
    matches!(r, Err(CoreError::Tampered(_)))
}

#[test]
fn tamper_drill() {
    assert_eq!(live_regions(), 0, "secrets exist before the drill starts");

    // 1. Zeroize-only policy first, so the audit entry can be read back.
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let rt = StateDir::new(dir.path()).boot(&IMAGE).unwrap();
    let mut cfg = config(dir.path());
    cfg.tamper_policy = TamperPolicy::Zeroize;
    let d = Device::start(cfg, rt).unwrap();
    let t = Tenant::new(&d, "victim");
    let k = aes_key(&t, "k", &[]);
    let (_pk, sk) =
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256)],
            &[],
        )
        .unwrap();
    t.p.crypt_init(
        t.app,
        t.s,
        &Mechanism::AesGcm {
            iv: GcmIv::Generate,
            aad: vec![],
            tag_bits: 128,
        },
        k,
        true,
    )
    .unwrap();
    t.p.digest_init(t.app, t.s, &Mechanism::Digest(Hash::Sha256))
        .unwrap();
    assert!(live_regions() > 0);

    d.tamper("lid opened");
    assert_eq!(d.state(), DeviceState::Tampered("lid opened".into()));
    // Every secret buffer is gone: partition keys, object keys, the RoT's keys and
    // ladder, the store's sealing key.
    assert_eq!(live_regions(), 0, "secret regions survive the tamper");
    // Nothing works any more, on the device or through a partition held from before.
    assert!(tampered(d.partitions()));
    assert!(tampered(d.partition(t.p.id())));
    assert!(tampered(t.p.encrypt(t.app, t.s, b"x")));
    assert!(tampered(t.p.sign_once(
        t.app,
        t.s,
        &Mechanism::EcdsaHash(Hash::Sha256),
        sk,
        b"x"
    )));
    assert!(tampered(t.p.get_attributes(
        t.app,
        t.s,
        k,
        &[ck::CKA_LABEL]
    )));
    assert!(tampered(t.p.open_session(9, true)));
    assert!(tampered(t.p.find(t.app, t.s, &[])));
    // Every call on a session goes through the one preamble, so every one says
    // why it is refused: the digest calls, logout and the session's state once
    // skipped the device check and answered "session handle invalid".
    assert!(tampered(t.p.digest_update(t.app, t.s, b"x")));
    assert!(tampered(t.p.digest_final(t.app, t.s)));
    assert!(tampered(t.p.session_state(t.app, t.s)));
    assert!(tampered(t.p.logout(t.app, t.s)));
    assert!(tampered(t.p.random(t.app, t.s, 16)));
    assert!(tampered(d.create_partition(spec("new"))));
    // Latched across restarts.
    drop(t);
    drop(d);
    let latch = std::fs::read_to_string(dir.path().join("TAMPERED")).unwrap();
    assert!(latch.contains("lid opened"), "{latch}");
    match start(dir.path()) {
        Err(CoreError::Tampered(reason)) => assert!(reason.contains("lid opened")),
        other => panic!("{other:?}"),
    }
    // Audited: lift the latch by hand (this policy kept the fuses) and read the log.
    std::fs::remove_file(dir.path().join("TAMPERED")).unwrap();
    let d = start(dir.path()).unwrap();
    let log = d.device_audit().unwrap();
    let events: Vec<AuditEvent> = log
        .iter()
        .map(|e| postcard::from_bytes::<AuditEntry>(e).unwrap().event)
        .collect();
    assert!(
        events.contains(&AuditEvent::Tamper {
            source: "lid opened".into()
        }),
        "{events:?}"
    );
    drop(d);

    // 2. The default policy also destroys the fuses: the device is gone for good.
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let d = start(dir.path()).unwrap();
    Tenant::new(&d, "victim");
    d.tamper("voltage glitch");
    assert!(
        !dir.path().join("fuses.bin").exists(),
        "fuses survive a destroying tamper"
    );
    drop(d);
    let err = StateDir::new(dir.path()).boot(&IMAGE).unwrap_err();
    assert!(err.to_string().contains("not provisioned"), "{err}");
    assert_eq!(live_regions(), 0);
}
