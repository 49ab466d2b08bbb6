//! Moving a partition between two real devices: what travels (keys, PINs,
//! objects, the audit log), what each side serves at every step, what a crash
//! leaves, and every bundle that must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use cryptoki_sys as ck;
use ihsm_core::CoreError;
use ihsm_core::mech::{Hash, Mechanism};
use ihsm_core::session::UserType;

const INFO: &[u8] = b"ihsm partition move v1 test";

fn ec_pair(t: &Tenant, label: &[u8]) -> (u64, u64) {
    t.p.generate_key_pair(
        t.app,
        t.s,
        &Mechanism::EcKeyPairGen,
        &[
            by(ck::CKA_EC_PARAMS, P256),
            b(ck::CKA_TOKEN, true),
            by(ck::CKA_LABEL, label),
        ],
        &[b(ck::CKA_TOKEN, true), by(ck::CKA_LABEL, label)],
    )
    .unwrap()
}

fn sign(t: &Tenant, k: u64, m: &[u8]) -> Vec<u8> {
    t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), k, m)
        .unwrap()
}

fn verify(t: &Tenant, pk: u64, m: &[u8], sig: &[u8]) {
    t.p.sign_init(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), pk, true)
        .unwrap();
    t.p.verify(t.app, t.s, m, sig).unwrap();
}

#[test]
fn a_partition_moves_whole_and_the_source_names_where_it_went() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let t = Tenant::new(&a, "mover");
    let (pk, sk) = ec_pair(&t, b"ec");
    let k = aes_key(&t, "aes", &[]);
    let sig_before = sign(&t, sk, b"before");
    let pid = t.p.id();

    let sealed = a
        .export_partition(
            "mover",
            "host-b",
            7,
            &b_.transfer_public_key().unwrap(),
            INFO,
        )
        .unwrap();
    // Stopped at the source: every call is refused, nothing written.
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), sk, b"x"),
        Err(CoreError::PartitionMoving(_))
    ));
    assert!(matches!(
        a.partition_by_name("mover"),
        Err(CoreError::PartitionMoving(_))
    ));

    let a_key = a.transfer_public_key().unwrap();
    let info = b_
        .import_partition(&a_key, INFO, "mover", &sealed, "host-a", 7)
        .unwrap();
    assert_eq!(info.id, pid, "a partition keeps its id");
    // Arrived, not yet serving.
    assert!(matches!(
        b_.partition_by_name("mover"),
        Err(CoreError::PartitionNotFound(_))
    ));
    assert!(b_.partitions().unwrap().is_empty());
    let pending = b_.pending_moves().unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].incoming && pending[0].host == "host-a" && pending[0].epoch == 7);

    b_.activate_import("mover").unwrap();
    a.finish_export("mover").unwrap();
    assert!(matches!(
        a.partition_by_name("mover"),
        Err(CoreError::PartitionMoved { ref to, .. }) if to == "host-b"
    ));
    // A session open at the source when it left is told where it went.
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), sk, b"x"),
        Err(CoreError::PartitionMoved { .. })
    ));
    assert!(a.pending_moves().unwrap().is_empty());

    // At the destination: the same PIN, the same handles, the same keys.
    let p = b_.partition_by_name("mover").unwrap();
    let s = p.open_session(1, true).unwrap();
    assert!(p.login(1, s, UserType::User, b"wrong-pin-99").is_err());
    p.login(1, s, UserType::User, USER_PIN).unwrap();
    let t2 = Tenant { p, app: 1, s };
    verify(&t2, pk, b"before", &sig_before);
    let sig_after = sign(&t2, sk, b"after");
    verify(&t2, pk, b"after", &sig_after);
    assert_eq!(t2.bytes(k, ck::CKA_LABEL), b"aes");
    assert_eq!(
        t2.p.find(t2.app, t2.s, &[by(ck::CKA_LABEL, b"aes")])
            .unwrap(),
        vec![k]
    );
    // New objects do not reuse ids.
    let k2 = aes_key(&t2, "new", &[]);
    assert!(k2 > k && k2 > sk && k2 > pk);
    // The whole log came along and continues, naming the move on both sides.
    t2.p.audit_verify().unwrap();
    let log = b_.audit_page(pid, 1, 100_000).unwrap();
    let text: Vec<String> = log
        .iter()
        .map(|e| {
            ihsm_verify::audit::Entry::decode(e)
                .map(|e| format!("{:?}", e.event))
                .unwrap()
        })
        .collect();
    let started = text
        .iter()
        .position(|e| e.starts_with("MoveStarted"))
        .unwrap();
    let moved_in = text.iter().position(|e| e.starts_with("MovedIn")).unwrap();
    assert!(started < moved_in, "{text:?}");
    let dev = |d: &ihsm_core::Device| -> String {
        d.device_audit()
            .unwrap()
            .iter()
            .map(|e| format!("{:?}", ihsm_verify::audit::Entry::decode(e).unwrap().event))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(dev(&a).contains("PartitionMovedOut"), "{}", dev(&a));
    assert!(dev(&b_).contains("PartitionMovedIn"), "{}", dev(&b_));

    // And back: a partition that comes home is no longer "moved" there.
    let sealed = b_
        .export_partition(
            "mover",
            "host-a",
            9,
            &a.transfer_public_key().unwrap(),
            INFO,
        )
        .unwrap();
    a.import_partition(
        &b_.transfer_public_key().unwrap(),
        INFO,
        "mover",
        &sealed,
        "host-b",
        9,
    )
    .unwrap();
    a.activate_import("mover").unwrap();
    b_.finish_export("mover").unwrap();
    let back = Tenant::login(a.partition_by_name("mover").unwrap(), 1);
    verify(&back, pk, b"after", &sig_after);
    back.p.audit_verify().unwrap();
}

#[test]
fn a_move_undone_serves_again_and_a_discarded_import_leaves_nothing() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let t = Tenant::new(&a, "stay");
    let (_pk, sk) = ec_pair(&t, b"ec");
    let sealed = a
        .export_partition(
            "stay",
            "host-b",
            3,
            &b_.transfer_public_key().unwrap(),
            INFO,
        )
        .unwrap();
    b_.import_partition(
        &a.transfer_public_key().unwrap(),
        INFO,
        "stay",
        &sealed,
        "host-a",
        3,
    )
    .unwrap();
    b_.discard_import("stay").unwrap();
    assert!(b_.pending_moves().unwrap().is_empty());
    assert!(matches!(
        b_.partition_by_name("stay"),
        Err(CoreError::PartitionNotFound(_))
    ));
    a.abort_export("stay").unwrap();
    sign(&t, sk, b"still here");
    t.p.audit_verify().unwrap();
    // Steps out of order are refused.
    assert!(matches!(
        a.finish_export("stay"),
        Err(CoreError::MoveState { .. })
    ));
    assert!(matches!(
        a.abort_export("stay"),
        Err(CoreError::MoveState { .. })
    ));
    assert!(matches!(
        b_.activate_import("stay"),
        Err(CoreError::PartitionNotFound(_))
    ));
}

#[test]
fn marks_survive_a_restart_on_both_sides() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    provision(a_dir.path());
    provision(b_dir.path());
    {
        let a = start(a_dir.path()).unwrap();
        let b_ = start(b_dir.path()).unwrap();
        let t = Tenant::new(&a, "crash");
        ec_pair(&t, b"ec");
        let sealed = a
            .export_partition(
                "crash",
                "host-b",
                5,
                &b_.transfer_public_key().unwrap(),
                INFO,
            )
            .unwrap();
        b_.import_partition(
            &a.transfer_public_key().unwrap(),
            INFO,
            "crash",
            &sealed,
            "host-a",
            5,
        )
        .unwrap();
        // Both "crash" here.
    }
    let a = start(a_dir.path()).unwrap();
    let b_ = start(b_dir.path()).unwrap();
    assert!(matches!(
        a.partition_by_name("crash"),
        Err(CoreError::PartitionMoving(_))
    ));
    assert!(matches!(
        b_.partition_by_name("crash"),
        Err(CoreError::PartitionNotFound(_))
    ));
    let out = a.pending_moves().unwrap();
    assert!(!out[0].incoming && out[0].host == "host-b" && out[0].epoch == 5);
    let inc = b_.pending_moves().unwrap();
    assert!(inc[0].incoming && inc[0].host == "host-a");
    // The fleet decides (here: the placement flipped).
    b_.activate_import("crash").unwrap();
    a.finish_export("crash").unwrap();
    Tenant::login(b_.partition_by_name("crash").unwrap(), 1);
    drop((a, b_));
    let a = start(a_dir.path()).unwrap();
    assert!(matches!(
        a.partition_by_name("crash"),
        Err(CoreError::PartitionMoved { .. })
    ));
    let b_ = start(b_dir.path()).unwrap();
    let t = Tenant::login(b_.partition_by_name("crash").unwrap(), 1);
    t.p.audit_verify().unwrap();
}

#[test]
fn bundles_that_are_not_genuine_are_refused_and_write_nothing() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let (_c_dir, c) = device();
    let t = Tenant::new(&a, "victim");
    ec_pair(&t, b"ec");
    let b_key = b_.transfer_public_key().unwrap();
    let sealed = a
        .export_partition("victim", "host-b", 1, &b_key, INFO)
        .unwrap();
    let a_key = a.transfer_public_key().unwrap();
    let c_key = c.transfer_public_key().unwrap();
    let refused = |r: ihsm_core::Result<_>| {
        assert!(matches!(r, Err(CoreError::BundleInvalid(_))), "{r:?}");
    };
    // Another sender's key, another info, another name.
    refused(b_.import_partition(&c_key, INFO, "victim", &sealed, "host-a", 1));
    refused(b_.import_partition(&a_key, b"other info", "victim", &sealed, "host-a", 1));
    refused(b_.import_partition(&a_key, INFO, "other", &sealed, "host-a", 1));
    // Sealed to B, opened by C.
    refused(c.import_partition(&a_key, INFO, "victim", &sealed, "host-a", 1));
    // Every kind of damage.
    for i in [
        0,
        1,
        sealed.ciphertext.len() / 2,
        sealed.ciphertext.len() - 1,
    ] {
        let mut s = sealed.clone();
        s.ciphertext[i] ^= 0x40;
        refused(b_.import_partition(&a_key, INFO, "victim", &s, "host-a", 1));
    }
    for n in [0, 15, 16, 17, sealed.ciphertext.len() - 1] {
        let mut s = sealed.clone();
        s.ciphertext.truncate(n);
        refused(b_.import_partition(&a_key, INFO, "victim", &s, "host-a", 1));
    }
    let mut s = sealed.clone();
    s.enc = vec![4; 12];
    refused(b_.import_partition(&a_key, INFO, "victim", &s, "host-a", 1));
    // A genuine seal of garbage (a source that is not ihsm): checked, refused.
    let garbage = ihsm_crypto::hpke::seal_auth(
        &b_key,
        &ihsm_crypto::ec::EccP384PrivateKey::generate().unwrap(),
        INFO,
        b"victim",
        b"not a bundle",
    )
    .unwrap();
    refused(b_.import_partition(&a_key, INFO, "victim", &garbage, "host-a", 1));
    assert!(b_.pending_moves().unwrap().is_empty());
    assert!(b_.partitions().unwrap().is_empty());
    // The genuine one still imports (nothing above consumed anything).
    b_.import_partition(&a_key, INFO, "victim", &sealed, "host-a", 1)
        .unwrap();
    // A second time is refused: it is already here.
    assert!(matches!(
        b_.import_partition(&a_key, INFO, "victim", &sealed, "host-a", 1),
        Err(CoreError::PartitionExists(_))
    ));
}

#[test]
fn a_partition_id_in_use_at_the_destination_is_refused() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    Tenant::new(&a, "from-a");
    Tenant::new(&b_, "local-b");
    let sealed = a
        .export_partition(
            "from-a",
            "host-b",
            1,
            &b_.transfer_public_key().unwrap(),
            INFO,
        )
        .unwrap();
    let r = b_.import_partition(
        &a.transfer_public_key().unwrap(),
        INFO,
        "from-a",
        &sealed,
        "host-a",
        1,
    );
    assert!(
        matches!(r, Err(CoreError::PartitionExists(ref m)) if m.contains("id 1")),
        "{r:?}"
    );
    a.abort_export("from-a").unwrap();
    // A partition created after an import skips the imported id.
    let (_c_dir, c) = device();
    let sealed = a
        .export_partition(
            "from-a",
            "host-c",
            2,
            &c.transfer_public_key().unwrap(),
            INFO,
        )
        .unwrap();
    c.import_partition(
        &a.transfer_public_key().unwrap(),
        INFO,
        "from-a",
        &sealed,
        "host-a",
        2,
    )
    .unwrap();
    c.activate_import("from-a").unwrap();
    let fresh = c.create_partition(spec("fresh")).unwrap();
    assert_ne!(fresh.id, 1);
}

/// The labels of every object found by label `l`.
fn found(t: &Tenant, l: &[u8]) -> Vec<u64> {
    t.p.find(t.app, t.s, &[by(ck::CKA_LABEL, l)]).unwrap()
}

#[test]
fn a_staged_partition_serves_on_and_the_delta_brings_every_change() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let (_c_dir, c) = device();
    let t = Tenant::new(&a, "mover");
    let (pk, sk) = ec_pair(&t, b"ec");
    let kept = aes_key(&t, "kept", &[]);
    let gone = aes_key(&t, "gone", &[]);
    let renamed = aes_key(&t, "renamed", &[]);
    let pid = t.p.id();
    let a_key = a.transfer_public_key().unwrap();
    let b_key = b_.transfer_public_key().unwrap();

    // Staged: sealed whole while it serves on.
    let (staged, carried) = a.stage_export("mover", "host-b", 7, &b_key, INFO).unwrap();
    assert!(matches!(
        a.stage_export("mover", "host-b", 7, &b_key, INFO),
        Err(CoreError::MoveState { .. })
    ));
    b_.import_partition(&a_key, INFO, "mover", &staged, "host-a", 7)
        .unwrap();
    // Meanwhile at the source: a key born, one destroyed, one renamed, a
    // signature, a wrong PIN.
    let sig = sign(&t, sk, b"while staged");
    let born = aes_key(&t, "born", &[]);
    t.p.destroy_object(t.app, t.s, gone).unwrap();
    t.p.set_attributes(t.app, t.s, renamed, &[by(ck::CKA_LABEL, b"renamed-after")])
        .unwrap();
    let s2 = t.p.open_session(2, true).unwrap();
    assert!(t.p.login(2, s2, UserType::User, b"wrong-pin-99").is_err());

    let delta = a
        .freeze_export("mover", &carried, &b_key, INFO, &[])
        .unwrap();
    assert!(matches!(
        t.p.sign_once(t.app, t.s, &Mechanism::EcdsaHash(Hash::Sha256), sk, b"x"),
        Err(CoreError::PartitionMoving(_))
    ));
    assert!(
        delta.ciphertext.len() < staged.ciphertext.len(),
        "the delta carries what changed, not the partition"
    );

    // Refused: a delta where nothing is staged, a delta as a whole bundle, the
    // whole bundle as a delta, another sender, another info, damage.
    assert!(matches!(
        c.import_delta(&a_key, INFO, "mover", &delta, "host-a", 7),
        Err(CoreError::PartitionNotFound(_) | CoreError::MoveState { .. })
    ));
    assert!(matches!(
        b_.import_delta(&a_key, INFO, "mover", &delta, "host-a", 8),
        Err(CoreError::MoveState { .. })
    ));
    let refused = |r: ihsm_core::Result<_>| {
        assert!(matches!(r, Err(CoreError::BundleInvalid(_))), "{r:?}");
    };
    refused(b_.import_delta(&a_key, INFO, "mover", &staged, "host-a", 7));
    refused(b_.import_delta(
        &c.transfer_public_key().unwrap(),
        INFO,
        "mover",
        &delta,
        "host-a",
        7,
    ));
    refused(b_.import_delta(&a_key, b"other info", "mover", &delta, "host-a", 7));
    for i in [0, delta.ciphertext.len() / 2, delta.ciphertext.len() - 1] {
        let mut s = delta.clone();
        s.ciphertext[i] ^= 0x40;
        refused(b_.import_delta(&a_key, INFO, "mover", &s, "host-a", 7));
    }
    let mut s = delta.clone();
    s.ciphertext.truncate(delta.ciphertext.len() - 1);
    refused(b_.import_delta(&a_key, INFO, "mover", &s, "host-a", 7));

    // The genuine delta completes it.
    b_.import_delta(&a_key, INFO, "mover", &delta, "host-a", 7)
        .unwrap();
    assert!(matches!(
        b_.partition_by_name("mover"),
        Err(CoreError::PartitionNotFound(_))
    ));
    b_.activate_import("mover").unwrap();
    a.finish_export("mover").unwrap();

    let p = b_.partition_by_name("mover").unwrap();
    assert_eq!(p.id(), pid);
    let t2 = Tenant::login(p, 1);
    verify(&t2, pk, b"while staged", &sig);
    let after = sign(&t2, sk, b"after");
    verify(&t2, pk, b"after", &after);
    assert_eq!(found(&t2, b"kept"), vec![kept]);
    assert_eq!(found(&t2, b"born"), vec![born]);
    assert!(found(&t2, b"gone").is_empty(), "a destroyed key came back");
    assert!(
        found(&t2, b"renamed").is_empty(),
        "the old label's index entry stayed"
    );
    assert_eq!(found(&t2, b"renamed-after"), vec![renamed]);
    assert!(
        t2.p.get_attributes(t2.app, t2.s, gone, &[ck::CKA_LABEL])
            .is_err()
    );
    // The whole log, staged and delta, chains and names what happened after
    // the staging.
    t2.p.audit_verify().unwrap();
    let text: Vec<String> = b_
        .audit_page(pid, 1, 100_000)
        .unwrap()
        .iter()
        .map(|e| format!("{:?}", ihsm_verify::audit::Entry::decode(e).unwrap().event))
        .collect();
    let started = text
        .iter()
        .position(|e| e.starts_with("MoveStarted"))
        .unwrap();
    let moved_in = text.iter().position(|e| e.starts_with("MovedIn")).unwrap();
    assert!(started < moved_in, "{text:?}");
    assert!(
        text[started..moved_in]
            .iter()
            .any(|e| e.contains("Destroy")),
        "{text:?}"
    );
    // New objects do not reuse ids.
    let k = aes_key(&t2, "new", &[]);
    assert!(k > born);
}

#[test]
fn the_delta_brings_the_applications_that_resume() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let t = Tenant::new(&a, "mover");
    let (spk, ssk) =
        t.p.generate_key_pair(
            t.app,
            t.s,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256), b(ck::CKA_TOKEN, false)],
            &[b(ck::CKA_TOKEN, false), b(ck::CKA_PRIVATE, true)],
        )
        .unwrap();
    let read_only = t.p.open_session(t.app, false).unwrap();
    // Another application, which will not be said to travel.
    let stays = t.p.open_session(99, true).unwrap();
    let token = [7u8; 32];
    let a_key = a.transfer_public_key().unwrap();
    let b_key = b_.transfer_public_key().unwrap();
    let (staged, carried) = a.stage_export("mover", "host-b", 7, &b_key, INFO).unwrap();
    b_.import_partition(&a_key, INFO, "mover", &staged, "host-a", 7)
        .unwrap();
    let sig = sign(&t, ssk, b"made at the source");
    // Operations started and given no data travel; one under way does not.
    let ecdsa = Mechanism::EcdsaHash(Hash::Sha256);
    t.p.sign_init(t.app, read_only, &ecdsa, ssk, false).unwrap();
    t.p.sign_init(t.app, t.s, &ecdsa, spk, true).unwrap();
    let busy = t.p.open_session(t.app, true).unwrap();
    t.p.sign_init(t.app, busy, &ecdsa, ssk, false).unwrap();
    t.p.sign_update(t.app, busy, b"part", false).unwrap();
    let leaving = [
        ihsm_core::partition::Leaving {
            app: t.app,
            token: &token,
            uid: 1000,
        },
        // An application with no session brings nothing.
        ihsm_core::partition::Leaving {
            app: 55,
            token: &[8; 32],
            uid: 1000,
        },
    ];
    let delta = a
        .freeze_export("mover", &carried, &b_key, INFO, &leaving)
        .unwrap();
    let (_, mut arrived) = b_
        .import_delta(&a_key, INFO, "mover", &delta, "host-a", 7)
        .unwrap();
    assert_eq!(arrived.len(), 1, "{arrived:?}");
    let came = arrived.pop().unwrap();
    assert_eq!(*came.token, token);
    assert_eq!(came.uid, 1000);
    assert_eq!(came.sessions(), 3);
    b_.adopt_app("mover", 500, came).unwrap();
    b_.activate_import("mover").unwrap();
    a.finish_export("mover").unwrap();
    check_resumed(&b_, [t.s, read_only, busy], stays, [spk, ssk], &sig);
}

/// The adopted application (500) at the destination: the same sessions, still
/// logged in, the operations started there going on, its session key signing
/// and verifying; nothing of the application that did not travel.
fn check_resumed(
    b_: &ihsm_core::Device,
    [s, read_only, busy]: [u64; 3],
    stays: u64,
    [spk, ssk]: [u64; 2],
    sig: &[u8],
) {
    use ihsm_core::session::SessionState;
    let p = b_.partition_by_name("mover").unwrap();
    p.verify(500, s, b"made at the source", sig).unwrap();
    let started = p.sign(500, read_only, b"started there").unwrap();
    assert!(matches!(
        p.sign_final(500, busy),
        Err(CoreError::OperationNotInitialized)
    ));
    assert_eq!(
        p.session_state(500, s).unwrap(),
        SessionState::ReadWriteUser
    );
    assert_eq!(
        p.session_state(500, read_only).unwrap(),
        SessionState::ReadOnlyUser
    );
    assert!(
        p.session_state(99, stays).is_err(),
        "an application that did not travel"
    );
    assert!(
        p.session_state(1, s).is_err(),
        "a session is its application's only"
    );
    let t2 = Tenant { p, app: 500, s };
    verify(&t2, spk, b"made at the source", sig);
    verify(&t2, spk, b"started there", &started);
    let after = sign(&t2, ssk, b"after");
    verify(&t2, spk, b"after", &after);
    // New sessions and session objects do not reuse handles.
    let s3 = t2.p.open_session(500, true).unwrap();
    assert!(s3 != s && s3 != read_only);
    let (pk2, sk2) =
        t2.p.generate_key_pair(
            500,
            s,
            &Mechanism::EcKeyPairGen,
            &[by(ck::CKA_EC_PARAMS, P256), b(ck::CKA_TOKEN, false)],
            &[b(ck::CKA_TOKEN, false)],
        )
        .unwrap();
    for h in [pk2, sk2] {
        assert!(h != spk && h != ssk, "a session object handle was reused");
    }
    // Closing the application's sessions ends its session objects.
    t2.p.close_all_sessions(500).unwrap();
    let s4 = t2.p.open_session(600, true).unwrap();
    t2.p.login(600, s4, UserType::User, USER_PIN).unwrap();
    let t3 = Tenant {
        p: std::sync::Arc::clone(&t2.p),
        app: 600,
        s: s4,
    };
    assert!(
        t3.p.sign_once(t3.app, t3.s, &Mechanism::EcdsaHash(Hash::Sha256), ssk, b"x")
            .is_err()
    );
}

#[test]
fn a_staged_move_that_does_not_happen_serves_on() {
    let (_a_dir, a) = device();
    let (_b_dir, b_) = device();
    let t = Tenant::new(&a, "mover");
    let (_, sk) = ec_pair(&t, b"ec");
    let b_key = b_.transfer_public_key().unwrap();
    let (staged, _) = a.stage_export("mover", "host-b", 3, &b_key, INFO).unwrap();
    b_.import_partition(
        &a.transfer_public_key().unwrap(),
        INFO,
        "mover",
        &staged,
        "host-a",
        3,
    )
    .unwrap();
    a.abort_export("mover").unwrap();
    assert!(a.pending_moves().unwrap().is_empty());
    sign(&t, sk, b"still here");
    b_.discard_import("mover").unwrap();
    assert!(b_.pending_moves().unwrap().is_empty());
    // A new stage after the abort is taken.
    a.stage_export("mover", "host-b", 4, &b_key, INFO).unwrap();
}
