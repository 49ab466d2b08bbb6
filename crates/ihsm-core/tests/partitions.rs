//! Partitions, sessions, login and PINs, as PKCS#11 models them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use ihsm_core::audit::{AuditEntry, AuditEvent};
use ihsm_core::partition::{MAX_PRINCIPALS, Principal};
use ihsm_core::session::{SessionState, UserType};
use ihsm_core::{CoreError, MAX_FAILED_ATTEMPTS};

#[test]
fn create_list_describe_delete() {
    let (_dir, d) = device();
    let a = d.create_partition(spec("alpha")).unwrap();
    let b = d.create_partition(spec("beta")).unwrap();
    assert_ne!(a.id, b.id);
    assert!(matches!(
        d.create_partition(spec("alpha")),
        Err(CoreError::PartitionExists(_))
    ));
    for bad in ["", "Upper", "has space", "x".repeat(33).as_str(), "ümlaut"] {
        assert!(
            matches!(
                d.create_partition(spec(bad)),
                Err(CoreError::PartitionNameInvalid(_))
            ),
            "{bad:?}"
        );
    }
    let names: Vec<String> = d
        .partitions()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let info = d.partition_by_name("beta").unwrap().info().unwrap();
    assert_eq!((info.owner_uid, info.owner_gid), (1000, 1000));
    assert!(info.user_pin_initialized);

    // Deleting removes every object with the partition.
    let t = Tenant::login(d.partition(a.id).unwrap(), 1);
    let k = aes_key(&t, "doomed", &[]);
    assert!(k != 0);
    d.delete_partition(a.id).unwrap();
    assert!(matches!(
        d.partition(a.id),
        Err(CoreError::PartitionNotFound(_))
    ));
    // The handle is dead too: the partition object zeroized its secrets.
    assert!(
        t.p.get_attributes(t.app, t.s, k, &[cryptoki_sys::CKA_LABEL])
            .is_err()
    );
    // A new partition never reuses the id.
    let c = d.create_partition(spec("gamma")).unwrap();
    assert!(c.id > b.id);
}

#[test]
fn a_thousand_and_twenty_four_partitions() {
    let (_dir, d) = device();
    for i in 0..1024 {
        d.create_partition(spec(&format!("p{i}"))).unwrap();
    }
    assert_eq!(d.partitions().unwrap().len(), 1024);
}

#[test]
fn login_states_and_rules() {
    let (_dir, d) = device();
    let info = d.create_partition(spec("t")).unwrap();
    let p = d.partition(info.id).unwrap();
    let ro = p.open_session(1, false).unwrap();
    let rw = p.open_session(1, true).unwrap();
    assert_eq!(
        p.session_state(1, ro).unwrap(),
        SessionState::ReadOnlyPublic
    );
    assert_eq!(
        p.session_state(1, rw).unwrap(),
        SessionState::ReadWritePublic
    );
    // The SO cannot log in while the application has a read-only session.
    assert!(matches!(
        p.login(1, rw, UserType::SecurityOfficer, SO_PIN),
        Err(CoreError::SessionReadOnlyExists)
    ));
    p.login(1, rw, UserType::User, USER_PIN).unwrap();
    assert_eq!(p.session_state(1, ro).unwrap(), SessionState::ReadOnlyUser);
    assert!(matches!(
        p.login(1, ro, UserType::User, USER_PIN),
        Err(CoreError::UserAlreadyLoggedIn)
    ));
    // Login is per application: application 2 is not logged in.
    let other = p.open_session(2, true).unwrap();
    assert_eq!(
        p.session_state(2, other).unwrap(),
        SessionState::ReadWritePublic
    );
    // Sessions belong to their application.
    assert!(matches!(
        p.session_state(2, rw),
        Err(CoreError::SessionHandleInvalid)
    ));
    assert!(matches!(
        p.close_session(2, rw),
        Err(CoreError::SessionHandleInvalid)
    ));
    p.logout(1, ro).unwrap();
    assert!(matches!(p.logout(1, ro), Err(CoreError::UserNotLoggedIn)));
    p.close_session(1, ro).unwrap();
    p.login(1, rw, UserType::SecurityOfficer, SO_PIN).unwrap();
    assert_eq!(
        p.session_state(1, rw).unwrap(),
        SessionState::ReadWriteSecurityOfficer
    );
    assert!(matches!(
        p.open_session(1, false),
        Err(CoreError::SessionReadWriteSoExists)
    ));
    assert!(matches!(
        p.login(1, rw, UserType::User, USER_PIN),
        Err(CoreError::UserAnotherAlreadyLoggedIn)
    ));
    p.close_all_sessions(1).unwrap();
    assert!(matches!(
        p.session_state(1, rw),
        Err(CoreError::SessionHandleInvalid)
    ));
    // A session of another partition is invalid here.
    let q = d
        .partition(d.create_partition(spec("u")).unwrap().id)
        .unwrap();
    let qs = q.open_session(1, true).unwrap();
    assert!(matches!(
        p.session_state(1, qs),
        Err(CoreError::SessionHandleInvalid)
    ));
}

/// PKCS#11 3.2: C_OpenSession of a read-only session while the SO is logged in
/// answers CKR_SESSION_READ_WRITE_SO_EXISTS; C_Login as SO while a read-only
/// session exists, CKR_SESSION_READ_ONLY_EXISTS. Each per application, and
/// neither one the other's.
#[test]
fn so_and_read_only_sessions_answer_each_other_with_the_right_code() {
    let (_dir, d) = device();
    let p = d
        .partition(d.create_partition(spec("codes")).unwrap().id)
        .unwrap();
    // A read-only session first: the SO cannot log in.
    let ro = p.open_session(1, false).unwrap();
    let rw = p.open_session(1, true).unwrap();
    let e = p
        .login(1, rw, UserType::SecurityOfficer, SO_PIN)
        .unwrap_err();
    assert!(matches!(e, CoreError::SessionReadOnlyExists), "{e}");
    assert_eq!(e.code(), ihsm_proto::ErrorCode::SessionReadOnlyExists);
    assert_eq!(e.code().ckr(), cryptoki_sys::CKR_SESSION_READ_ONLY_EXISTS);
    // Not a wrong PIN: no failure was counted.
    assert_eq!(p.info().unwrap().so_pin_failures, 0);
    // The read-only session closed, the SO logs in; then a read-only session
    // cannot be opened, and a read-write one can.
    p.close_session(1, ro).unwrap();
    p.login(1, rw, UserType::SecurityOfficer, SO_PIN).unwrap();
    let e = p.open_session(1, false).unwrap_err();
    assert!(matches!(e, CoreError::SessionReadWriteSoExists), "{e}");
    assert_eq!(e.code(), ihsm_proto::ErrorCode::SessionReadWriteSoExists);
    assert_eq!(
        e.code().ckr(),
        cryptoki_sys::CKR_SESSION_READ_WRITE_SO_EXISTS
    );
    let rw2 = p.open_session(1, true).unwrap();
    assert_eq!(
        p.session_state(1, rw2).unwrap(),
        SessionState::ReadWriteSecurityOfficer
    );
    // Another application is not the SO's: it opens read-only sessions.
    let other = p.open_session(2, false).unwrap();
    assert_eq!(
        p.session_state(2, other).unwrap(),
        SessionState::ReadOnlyPublic
    );
    // Logged out, the SO's application opens read-only sessions again.
    p.logout(1, rw).unwrap();
    p.open_session(1, false).unwrap();
}

#[test]
fn wrong_pin_lockout_persists_and_the_so_unlocks() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let id = {
        let d = start(dir.path()).unwrap();
        let info = d.create_partition(spec("t")).unwrap();
        let p = d.partition(info.id).unwrap();
        let s = p.open_session(1, true).unwrap();
        for i in 1..MAX_FAILED_ATTEMPTS {
            match p.login(1, s, UserType::User, b"wrong-pin") {
                Err(CoreError::PinIncorrect { remaining }) => {
                    assert_eq!(remaining, MAX_FAILED_ATTEMPTS - i)
                }
                other => panic!("{other:?}"),
            }
        }
        info.id
    };
    // The count survives a restart: one more failure locks.
    let d = start(dir.path()).unwrap();
    let p = d.partition(id).unwrap();
    let s = p.open_session(1, true).unwrap();
    assert!(matches!(
        p.login(1, s, UserType::User, b"wrong-pin"),
        Err(CoreError::PinLocked)
    ));
    assert!(matches!(
        p.login(1, s, UserType::User, USER_PIN),
        Err(CoreError::PinLocked)
    ));
    assert!(p.info().unwrap().user_pin_locked);
    // The SO resets the user PIN, which unlocks it.
    p.login(1, s, UserType::SecurityOfficer, SO_PIN).unwrap();
    p.init_pin(1, s, b"new-user-pin").unwrap();
    p.logout(1, s).unwrap();
    p.login(1, s, UserType::User, b"new-user-pin").unwrap();
    // The user changes it.
    assert!(matches!(
        p.set_pin(1, s, b"not-the-pin", b"other-pin"),
        Err(CoreError::PinIncorrect { .. })
    ));
    p.set_pin(1, s, b"new-user-pin", b"other-pin").unwrap();
    assert!(matches!(
        p.set_pin(1, s, b"other-pin", b"123"),
        Err(CoreError::PinLenRange { .. })
    ));
    // The audit log recorded it all and verifies.
    let r = p.audit_verify().unwrap();
    assert!(r.entries >= u64::from(MAX_FAILED_ATTEMPTS) + 4, "{r:?}");
}

#[test]
fn init_token_clears_objects_and_user_pin() {
    let (_dir, d) = device();
    let t = Tenant::new(&d, "t");
    aes_key(&t, "k", &[]);
    assert_eq!(t.p.info().unwrap().token_objects, 1);
    assert!(matches!(
        t.p.init_token(SO_PIN),
        Err(CoreError::SessionReadOnlyExists)
    ));
    t.p.close_all_sessions(t.app).unwrap();
    assert!(matches!(
        t.p.init_token(b"not-the-so-pin"),
        Err(CoreError::PinIncorrect { .. })
    ));
    t.p.init_token(SO_PIN).unwrap();
    let info = t.p.info().unwrap();
    assert_eq!(info.token_objects, 0);
    assert!(!info.user_pin_initialized);
    let s = t.p.open_session(1, true).unwrap();
    assert!(matches!(
        t.p.login(1, s, UserType::User, USER_PIN),
        Err(CoreError::UserPinNotInitialized)
    ));
}

#[test]
fn session_quota_holds() {
    let (_dir, d) = device();
    let mut sp = spec("q");
    sp.quotas.max_sessions = 3;
    sp.quotas.max_objects = 2;
    let p = d.partition(d.create_partition(sp).unwrap().id).unwrap();
    for _ in 0..3 {
        p.open_session(7, true).unwrap();
    }
    assert!(matches!(
        p.open_session(7, true),
        Err(CoreError::QuotaExceeded("sessions"))
    ));
    p.close_all_sessions(7).unwrap();
    let t = Tenant::login(p, 1);
    aes_key(&t, "a", &[]);
    aes_key(&t, "b", &[]);
    let r = t.p.generate_key(
        t.app,
        t.s,
        &ihsm_core::mech::Mechanism::AesKeyGen,
        &[u(cryptoki_sys::CKA_VALUE_LEN, 16)],
    );
    assert!(matches!(r, Err(CoreError::QuotaExceeded("objects"))));
}

#[test]
fn operations_per_second_quota_holds_per_partition() {
    use ihsm_core::mech::{GcmIv, Mechanism};
    let (_dir, d) = device();
    let mut sp = spec("slow");
    sp.quotas.ops_per_second = 5;
    let slow = Tenant::login(d.partition(d.create_partition(sp).unwrap().id).unwrap(), 1);
    let fast = Tenant::new(&d, "fast");
    let ks = aes_key(&slow, "k", &[]);
    let kf = aes_key(&fast, "k", &[]);
    let mech = Mechanism::AesGcm {
        iv: GcmIv::Generate,
        aad: vec![],
        tag_bits: 128,
    };
    let mut limited = 0;
    for _ in 0..20 {
        slow.p
            .crypt_init(slow.app, slow.s, &mech, ks, true)
            .unwrap();
        match slow.p.encrypt(slow.app, slow.s, b"x") {
            Ok(_) => {}
            Err(CoreError::QuotaExceeded("operations per second")) => limited += 1,
            Err(e) => panic!("{e}"),
        }
        // The neighbour is never limited.
        fast.p
            .crypt_init(fast.app, fast.s, &mech, kf, true)
            .unwrap();
        fast.p.encrypt(fast.app, fast.s, b"x").unwrap();
    }
    assert!(
        limited >= 10,
        "the slow partition was limited only {limited} times of 20"
    );
}

#[test]
fn the_owner_and_the_principals_allowed_are_authorized_and_no_one_else() {
    let (_dir, d) = device();
    let p = d
        .partition(d.create_partition(spec("own")).unwrap().id)
        .unwrap();
    // spec() makes uid 1000, gid 1000 the owner.
    p.authorize(1000, 1000).unwrap();
    p.authorize(1000, 5).unwrap();
    p.authorize(5, 1000).unwrap();
    let e = p.authorize(1001, 1001).unwrap_err();
    assert!(matches!(e, CoreError::PermissionDenied { uid: 1001, .. }));
    assert_eq!(e.code(), ihsm_proto::ErrorCode::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "partition \"own\" admits uid 1000, gid 1000; uid 1001 gid 1001 is not among them; \
         to admit it: ihsm partition allow own --uid 1001"
    );
    // Root is not the owner of a tenant's partition.
    assert!(p.authorize(0, 0).is_err());

    // A uid allowed is admitted whatever its group; a gid allowed whatever its uid.
    assert!(p.allow(Principal::Uid(33)).unwrap());
    assert!(p.allow(Principal::Gid(44)).unwrap());
    p.authorize(33, 65534).unwrap();
    p.authorize(65534, 44).unwrap();
    let e = p.authorize(65534, 65534).unwrap_err();
    assert_eq!(
        e.to_string(),
        "partition \"own\" admits uid 1000, gid 1000, uid 33, gid 44; uid 65534 gid 65534 is not among \
         them; to admit it: ihsm partition allow own --uid 65534"
    );
    // Twice is once; the owner is admitted already.
    assert!(!p.allow(Principal::Uid(33)).unwrap());
    assert!(!p.allow(Principal::Uid(1000)).unwrap());
    assert!(!p.allow(Principal::Gid(1000)).unwrap());
    let info = p.info().unwrap();
    assert_eq!(info.principals, [Principal::Uid(33), Principal::Gid(44)]);
    assert_eq!(
        info.admitted(),
        [
            Principal::Uid(1000),
            Principal::Gid(1000),
            Principal::Uid(33),
            Principal::Gid(44)
        ]
    );
    // Nonsense is refused, saying why.
    for owner in [Principal::Uid(1000), Principal::Gid(1000)] {
        let e = p.revoke(owner).unwrap_err();
        assert_eq!(e.code(), ihsm_proto::ErrorCode::PrincipalInvalid, "{e}");
        assert!(e.to_string().contains("cannot be revoked"), "{e}");
    }
    for none in [Principal::Uid(u32::MAX), Principal::Gid(u32::MAX)] {
        let e = p.allow(none).unwrap_err();
        assert_eq!(e.code(), ihsm_proto::ErrorCode::PrincipalInvalid, "{e}");
    }
    assert!(!p.revoke(Principal::Uid(77)).unwrap());
    // Revoked, refused again.
    assert!(p.revoke(Principal::Uid(33)).unwrap());
    assert!(matches!(
        p.authorize(33, 65534),
        Err(CoreError::PermissionDenied { uid: 33, .. })
    ));
    p.authorize(65534, 44).unwrap();
    assert_eq!(p.info().unwrap().principals, [Principal::Gid(44)]);
}

#[test]
fn the_set_is_capped_and_a_partition_without_a_group_admits_no_group() {
    let (_dir, d) = device();
    let mut s = spec("capped");
    s.owner_gid = u32::MAX;
    let p = d.partition(d.create_partition(s).unwrap().id).unwrap();
    let e = p.authorize(2000, 2000).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("partition \"capped\" admits uid 1000; uid 2000"),
        "{e}"
    );
    for i in 0..MAX_PRINCIPALS as u32 {
        assert!(p.allow(Principal::Uid(2000 + i)).unwrap());
    }
    let e = p.allow(Principal::Gid(1)).unwrap_err();
    assert_eq!(e.code(), ihsm_proto::ErrorCode::PrincipalLimit);
    assert!(e.to_string().contains("the most it may"), "{e}");
    // Allowing one already there is no addition, and still answers.
    assert!(!p.allow(Principal::Uid(2000)).unwrap());
    assert_eq!(p.info().unwrap().principals.len(), MAX_PRINCIPALS);
    // The group "none" is never admitted by the owner's missing group.
    assert!(p.authorize(5, u32::MAX).is_err());
}

#[test]
fn principals_persist_across_restarts_and_each_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path());
    let d = start(dir.path()).unwrap();
    let id = d.create_partition(spec("kept")).unwrap().id;
    let p = d.partition(id).unwrap();
    p.allow(Principal::Uid(33)).unwrap();
    p.allow(Principal::Gid(44)).unwrap();
    p.allow(Principal::Uid(55)).unwrap();
    p.revoke(Principal::Uid(55)).unwrap();
    // Unchanged sets write nothing.
    p.allow(Principal::Uid(33)).unwrap();
    p.revoke(Principal::Uid(55)).unwrap();
    drop(p);
    d.stop();
    drop(d);

    let d = start(dir.path()).unwrap();
    let p = d.partition(id).unwrap();
    assert_eq!(
        p.info().unwrap().principals,
        [Principal::Uid(33), Principal::Gid(44)]
    );
    p.authorize(33, 1).unwrap();
    p.authorize(1, 44).unwrap();
    assert!(p.authorize(55, 1).is_err());
    let events: Vec<AuditEvent> = p
        .audit_entries()
        .unwrap()
        .iter()
        .map(|e| postcard::from_bytes::<AuditEntry>(e).unwrap().event)
        .filter(|e| {
            matches!(
                e,
                AuditEvent::PrincipalAllowed(_) | AuditEvent::PrincipalRevoked(_)
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            AuditEvent::PrincipalAllowed(Principal::Uid(33)),
            AuditEvent::PrincipalAllowed(Principal::Gid(44)),
            AuditEvent::PrincipalAllowed(Principal::Uid(55)),
            AuditEvent::PrincipalRevoked(Principal::Uid(55)),
        ]
    );
    p.audit_verify().unwrap();
}
