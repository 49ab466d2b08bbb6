//! [`super::is_heavy`] against its rule, and the rule against what the core does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cryptoki_sys as ck;
use ihsm_core::quota::Quotas;
use ihsm_core::{Device, DeviceConfig, PartitionSpec};
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{GcmIv, Hash, Mechanism};
use ihsm_proto::types::UserType;
use zeroize::Zeroizing;

use super::*;

const PIN: &[u8] = b"user-pin-1234";

/// One request of each kind the protocol has (the arguments do not matter to
/// the rule).
fn every_request() -> Vec<Request> {
    let t = || vec![Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA)];
    let m = || Mechanism::Digest(Hash::Sha256);
    let pin = || SecretBytes::new(PIN);
    let (session, handle) = (1, 2);
    vec![
        Request::Ping,
        Request::Status,
        Request::CreatePartition(ihsm_proto::msg::PartitionSpec {
            name: "p".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: pin(),
            user_pin: None,
            quotas: None,
            policy: Default::default(),
        }),
        Request::ListPartitions,
        Request::DescribePartition { name: "p".into() },
        Request::DeletePartition { name: "p".into() },
        Request::PartitionCertificate { name: "p".into() },
        Request::Mailbox {
            command: 0,
            payload: vec![],
        },
        Request::Tamper {
            sensor: "lid".into(),
        },
        Request::Info,
        Request::Mechanisms,
        Request::InitToken { so_pin: pin() },
        Request::AuditVerify,
        Request::OpenSession { rw: true },
        Request::CloseSession { session },
        Request::CloseAllSessions,
        Request::SessionState { session },
        Request::Login {
            session,
            user: UserType::User,
            pin: pin(),
        },
        Request::Logout { session },
        Request::InitPin {
            session,
            pin: pin(),
        },
        Request::SetPin {
            session,
            old: pin(),
            new: pin(),
        },
        Request::CreateObject {
            session,
            template: t(),
        },
        Request::CreateObjects {
            session,
            templates: vec![t()],
        },
        Request::DestroyObject { session, handle },
        Request::GetAttributes {
            session,
            handle,
            types: vec![ck::CKA_CLASS],
        },
        Request::SetAttributes {
            session,
            handle,
            template: t(),
        },
        Request::CopyObject {
            session,
            handle,
            template: t(),
        },
        Request::Find {
            session,
            template: t(),
        },
        Request::GenerateKey {
            session,
            mech: m(),
            template: t(),
        },
        Request::GenerateKeyPair {
            session,
            mech: m(),
            public: t(),
            private: t(),
        },
        Request::WrapKey {
            session,
            mech: m(),
            wrapping: handle,
            key: handle,
        },
        Request::UnwrapKey {
            session,
            mech: m(),
            unwrapping: handle,
            wrapped: vec![],
            template: t(),
        },
        Request::DeriveKey {
            session,
            mech: m(),
            base: handle,
            template: t(),
        },
        Request::Encapsulate {
            session,
            mech: m(),
            public: handle,
            template: t(),
        },
        Request::Decapsulate {
            session,
            mech: m(),
            private: handle,
            ciphertext: vec![],
            template: t(),
        },
        Request::ExportMasked { session, handle },
        Request::ImportMasked {
            session,
            blob: vec![],
        },
        Request::SignInit {
            session,
            mech: m(),
            key: handle,
            verify: false,
        },
        Request::Sign {
            session,
            data: vec![],
        },
        Request::SignOnce {
            session,
            mech: m(),
            key: handle,
            data: vec![],
        },
        Request::SignUpdate {
            session,
            data: vec![],
            verify: false,
        },
        Request::SignFinal { session },
        Request::Verify {
            session,
            data: vec![],
            signature: vec![],
        },
        Request::VerifyFinal {
            session,
            signature: vec![],
        },
        Request::CryptInit {
            session,
            mech: m(),
            key: handle,
            encrypt: true,
        },
        Request::Encrypt {
            session,
            data: pin(),
        },
        Request::EncryptOnce {
            session,
            mech: m(),
            key: handle,
            data: pin(),
        },
        Request::Decrypt {
            session,
            data: vec![],
        },
        Request::CryptUpdate {
            session,
            data: pin(),
            encrypt: true,
        },
        Request::EncryptFinal { session },
        Request::DecryptFinal { session },
        Request::DigestInit { session, mech: m() },
        Request::DigestUpdate {
            session,
            data: vec![],
        },
        Request::DigestFinal { session },
        Request::Random { session, len: 1 },
        Request::AppToken,
        Request::JoinApp { token: pin() },
        Request::AllowPrincipal {
            name: "p".into(),
            principal: ihsm_proto::types::Principal::Uid(1),
        },
        Request::RevokePrincipal {
            name: "p".into(),
            principal: ihsm_proto::types::Principal::Uid(1),
        },
        Request::PartitionMlDsaCertificate { name: "p".into() },
        Request::AuditLog {
            partition: None,
            since: 1,
        },
        Request::DeviceAuditCertificate,
        Request::FleetHosts,
        Request::OpenRing,
        Request::MovePartition {
            name: "p".into(),
            to: "h".into(),
        },
        Request::FleetDomain,
        Request::FleetEvict { host: "h".into() },
        Request::ReplaceReleasePolicy {
            session,
            selector: vec![],
            policy: vec![],
        },
        Request::KeyReport {
            session,
            key: handle,
            report_data: vec![],
        },
    ]
}

/// A number for each kind of request: a match without a wildcard, so a
/// request added to the protocol does not compile until it has one, and
/// then [`every_request`] must hold it.
fn number(r: &Request) -> usize {
    use Request as R;
    match r {
        R::Ping => 0,
        R::Status => 1,
        R::CreatePartition(_) => 2,
        R::ListPartitions => 3,
        R::DescribePartition { .. } => 4,
        R::DeletePartition { .. } => 5,
        R::PartitionCertificate { .. } => 6,
        R::Mailbox { .. } => 7,
        R::Tamper { .. } => 8,
        R::Info => 9,
        R::Mechanisms => 10,
        R::InitToken { .. } => 11,
        R::AuditVerify => 12,
        R::OpenSession { .. } => 13,
        R::CloseSession { .. } => 14,
        R::CloseAllSessions => 15,
        R::SessionState { .. } => 16,
        R::Login { .. } => 17,
        R::Logout { .. } => 18,
        R::InitPin { .. } => 19,
        R::SetPin { .. } => 20,
        R::CreateObject { .. } => 21,
        R::CreateObjects { .. } => 22,
        R::DestroyObject { .. } => 23,
        R::GetAttributes { .. } => 24,
        R::SetAttributes { .. } => 25,
        R::CopyObject { .. } => 26,
        R::Find { .. } => 27,
        R::GenerateKey { .. } => 28,
        R::GenerateKeyPair { .. } => 29,
        R::WrapKey { .. } => 30,
        R::UnwrapKey { .. } => 31,
        R::DeriveKey { .. } => 32,
        R::Encapsulate { .. } => 33,
        R::Decapsulate { .. } => 34,
        R::ExportMasked { .. } => 35,
        R::ImportMasked { .. } => 36,
        R::SignInit { .. } => 37,
        R::Sign { .. } => 38,
        R::SignOnce { .. } => 39,
        R::SignUpdate { .. } => 40,
        R::SignFinal { .. } => 41,
        R::Verify { .. } => 42,
        R::VerifyFinal { .. } => 43,
        R::CryptInit { .. } => 44,
        R::Encrypt { .. } => 45,
        R::EncryptOnce { .. } => 46,
        R::Decrypt { .. } => 47,
        R::CryptUpdate { .. } => 48,
        R::EncryptFinal { .. } => 49,
        R::DecryptFinal { .. } => 50,
        R::DigestInit { .. } => 51,
        R::DigestUpdate { .. } => 52,
        R::DigestFinal { .. } => 53,
        R::Random { .. } => 54,
        R::AppToken => 55,
        R::JoinApp { .. } => 56,
        R::AllowPrincipal { .. } => 57,
        R::RevokePrincipal { .. } => 58,
        R::PartitionMlDsaCertificate { .. } => 59,
        R::KeyReport { .. } => 60,
        R::AuditLog { .. } => 61,
        R::DeviceAuditCertificate => 62,
        R::FleetHosts => 63,
        R::ReplaceReleasePolicy { .. } => 64,
        R::OpenRing => 65,
        R::MovePartition { .. } => 66,
        R::FleetDomain => 67,
        R::FleetEvict { .. } => 68,
    }
}

/// The rule of [`is_heavy`] as a table: the requests that write durably,
/// hash a PIN, make a key, read the audit log back, may run the self-tests
/// or zeroize the device (a key report writes its audit entry durably).
const HEAVY: &[&str] = &[
    "create_partition",
    "delete_partition",
    "allow_principal",
    "revoke_principal",
    "mailbox",
    "tamper",
    "fleet_hosts",
    "move_partition",
    "fleet_domain",
    "fleet_evict",
    "replace_release_policy",
    "init_token",
    "audit_verify",
    "login",
    "init_pin",
    "set_pin",
    "create_object",
    "create_objects",
    "destroy_object",
    "set_attributes",
    "copy_object",
    "generate_key",
    "generate_key_pair",
    "wrap_key",
    "unwrap_key",
    "derive_key",
    "encapsulate",
    "decapsulate",
    "export_masked",
    "import_masked",
    "key_report",
    "audit_log",
];

#[test]
fn every_request_is_classified_as_the_rule_says() {
    let all = every_request();
    let numbers: BTreeSet<usize> = all.iter().map(number).collect();
    assert_eq!(numbers.len(), all.len(), "a request kind twice");
    assert_eq!(numbers, (0..=68).collect(), "a request kind missing");
    for r in &all {
        assert_eq!(is_heavy(r), HEAVY.contains(&r.name()), "{}", r.name());
    }
    // A key report asked for as the PKCS#11 module does (C_SignInit + C_Sign).
    assert!(is_heavy(&Request::SignOnce {
        session: 1,
        mech: ihsm_proto::mech::Mechanism::KeyReport,
        key: 2,
        data: vec![],
    }));
}

/// Every file of the state directory, by its SHA-256.
fn files(dir: &Path) -> BTreeMap<PathBuf, [u8; 32]> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p);
            } else if meta.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p, ihsm_crypto::hash::sha256(&bytes));
            }
        }
    }
    out
}

fn reply_bytes(r: Reply) -> Vec<u8> {
    match r {
        Reply::Bytes(b) => b,
        Reply::Encrypted { data, .. } => data,
        other => panic!("bytes expected, got {other:?}"),
    }
}

/// The rule against what the core does: each quick request, carried out on a
/// real device, succeeds and leaves every file of the state directory as it
/// was; and the requests that change no object but audit (a login, a key
/// wrap, a masked export) do write, which is why they are heavy.
#[test]
fn a_quick_request_writes_nothing_and_an_audited_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let image = [0x11; 48];
    let state = ihsm_rot::state::StateDir::new(dir.path());
    state.provision_dev(false, &image).unwrap();
    let rt = state.boot(&image).unwrap();
    let mut config = DeviceConfig::new(dir.path());
    config.pin_iterations = 1000;
    let device = Device::start(config, rt).unwrap();
    let info = device
        .create_partition(PartitionSpec {
            name: "p".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: Zeroizing::new(b"so-pin-1234".to_vec()),
            user_pin: Some(Zeroizing::new(PIN.to_vec())),
            quotas: Quotas::default(),
            policy: Default::default(),
        })
        .unwrap();
    let p = device.partition(info.id).unwrap();
    let svn = device.svn().unwrap();
    let app = 1;
    let run = |req: Request| {
        let name = req.name();
        partition(&p, app, svn, req).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let handle = |r: Reply| match r {
        Reply::Handle(h) => h,
        other => panic!("a handle expected, got {other:?}"),
    };
    let s = handle(run(Request::OpenSession { rw: true }));
    let on = |ty| Attribute::bool(ty, true);
    let aes = |extra: Vec<Attribute>| {
        let mut t = vec![Attribute::ulong(ck::CKA_VALUE_LEN, 32), on(ck::CKA_TOKEN)];
        t.extend(extra);
        Request::GenerateKey {
            session: s,
            mech: Mechanism::AesKeyGen,
            template: t,
        }
    };

    // Heavy, and writes though it makes nothing: a login.
    let before = files(dir.path());
    run(Request::Login {
        session: s,
        user: UserType::User,
        pin: SecretBytes::new(PIN),
    });
    assert_ne!(files(dir.path()), before, "a login writes its audit entry");

    let key = handle(run(aes(vec![
        on(ck::CKA_ENCRYPT),
        on(ck::CKA_DECRYPT),
        on(ck::CKA_EXTRACTABLE),
        Attribute::bool(ck::CKA_SENSITIVE, false),
    ])));
    let kek = handle(run(aes(vec![on(ck::CKA_WRAP), on(ck::CKA_UNWRAP)])));
    let (pk, sk) = match run(Request::GenerateKeyPair {
        session: s,
        mech: Mechanism::EcKeyPairGen,
        public: vec![
            Attribute::bytes(
                ck::CKA_EC_PARAMS,
                [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07].to_vec(),
            ),
            on(ck::CKA_TOKEN),
            on(ck::CKA_VERIFY),
        ],
        private: vec![on(ck::CKA_TOKEN), on(ck::CKA_SIGN)],
    }) {
        Reply::KeyPair(pk, sk) => (pk, sk),
        other => panic!("a key pair expected, got {other:?}"),
    };

    // Heavy, and writes though they change no object: the audited reads.
    for req in [
        Request::WrapKey {
            session: s,
            mech: Mechanism::AesKeyWrapPad,
            wrapping: kek,
            key,
        },
        Request::ExportMasked {
            session: s,
            handle: key,
        },
    ] {
        let name = req.name();
        assert!(is_heavy(&req), "{name}");
        let before = files(dir.path());
        run(req);
        assert_ne!(files(dir.path()), before, "{name} writes its audit entry");
    }

    // Quick, one after another as a client sends them: each succeeds and
    // writes nothing.
    let quick = |req: Request| {
        let name = req.name();
        assert!(!is_heavy(&req), "{name}");
        let before = files(dir.path());
        let reply = run(req);
        assert_eq!(
            files(dir.path()),
            before,
            "{name} wrote to the state directory"
        );
        reply
    };
    let ecdsa = || Mechanism::EcdsaHash(Hash::Sha256);
    let cbc = || Mechanism::AesCbcPad { iv: vec![7; 16] };
    let data = b"what the rule says".to_vec();
    quick(Request::Ping);
    quick(Request::Info);
    quick(Request::Mechanisms);
    quick(Request::SessionState { session: s });
    let ro = handle(quick(Request::OpenSession { rw: false }));
    quick(Request::CloseSession { session: ro });
    quick(Request::GetAttributes {
        session: s,
        handle: key,
        types: vec![ck::CKA_CLASS, ck::CKA_VALUE],
    });
    quick(Request::Find {
        session: s,
        template: vec![],
    });
    quick(Request::SignInit {
        session: s,
        mech: ecdsa(),
        key: sk,
        verify: false,
    });
    let sig = reply_bytes(quick(Request::Sign {
        session: s,
        data: data.clone(),
    }));
    quick(Request::SignOnce {
        session: s,
        mech: ecdsa(),
        key: sk,
        data: data.clone(),
    });
    quick(Request::SignInit {
        session: s,
        mech: ecdsa(),
        key: sk,
        verify: false,
    });
    quick(Request::SignUpdate {
        session: s,
        data: data.clone(),
        verify: false,
    });
    quick(Request::SignFinal { session: s });
    quick(Request::SignInit {
        session: s,
        mech: ecdsa(),
        key: pk,
        verify: true,
    });
    quick(Request::Verify {
        session: s,
        data: data.clone(),
        signature: sig.clone(),
    });
    quick(Request::SignInit {
        session: s,
        mech: ecdsa(),
        key: pk,
        verify: true,
    });
    quick(Request::SignUpdate {
        session: s,
        data: data.clone(),
        verify: true,
    });
    quick(Request::VerifyFinal {
        session: s,
        signature: sig,
    });
    quick(Request::EncryptOnce {
        session: s,
        mech: Mechanism::AesGcm {
            iv: GcmIv::Generate,
            aad: vec![],
            tag_bits: 128,
        },
        key,
        data: SecretBytes::new(data.clone()),
    });
    quick(Request::CryptInit {
        session: s,
        mech: cbc(),
        key,
        encrypt: true,
    });
    let ct = reply_bytes(quick(Request::Encrypt {
        session: s,
        data: SecretBytes::new(data.clone()),
    }));
    quick(Request::CryptInit {
        session: s,
        mech: cbc(),
        key,
        encrypt: false,
    });
    quick(Request::Decrypt {
        session: s,
        data: ct.clone(),
    });
    quick(Request::CryptInit {
        session: s,
        mech: cbc(),
        key,
        encrypt: true,
    });
    quick(Request::CryptUpdate {
        session: s,
        data: SecretBytes::new(data.clone()),
        encrypt: true,
    });
    quick(Request::EncryptFinal { session: s });
    quick(Request::CryptInit {
        session: s,
        mech: cbc(),
        key,
        encrypt: false,
    });
    quick(Request::CryptUpdate {
        session: s,
        data: SecretBytes::new(ct),
        encrypt: false,
    });
    quick(Request::DecryptFinal { session: s });
    quick(Request::DigestInit {
        session: s,
        mech: Mechanism::Digest(Hash::Sha256),
    });
    quick(Request::DigestUpdate {
        session: s,
        data: data.clone(),
    });
    quick(Request::DigestFinal { session: s });
    quick(Request::Random {
        session: s,
        len: 32,
    });
    quick(Request::Logout { session: s });
    quick(Request::CloseAllSessions);
    // The admin socket's quick ones (the daemon's own requests aside: the
    // status, and the application token and join, touch only its memory).
    let before = files(dir.path());
    device.partitions().unwrap();
    device.partition_certificate(info.id, false).unwrap();
    assert_eq!(
        files(dir.path()),
        before,
        "the partition list or certificate wrote"
    );
}
