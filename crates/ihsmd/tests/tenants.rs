//! A hostile tenant against its neighbour: every request of the protocol sent on
//! partition A's socket with partition B's session ids, object handles, masked
//! blobs and application token. Each is refused with the error that says why,
//! and B notices nothing: its session, login, objects and operation in progress
//! are as they were. The list of requests is checked against the protocol's own
//! list, so a request added to the protocol without a case here fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use cryptoki_sys as ck;
use ihsm_client::ClientError;
use ihsm_proto::ErrorCode;
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{GcmIv, Hash, Mechanism};
use ihsm_proto::msg::{Request, SecretBytes, Serves};
use ihsm_proto::types::UserType;

fn code(e: &ClientError) -> ErrorCode {
    e.code()
}

/// Every request a partition socket serves that names a session, with `session`;
/// objects named are `obj` (any object), `key` (a secret key), `sk`/`pk` (a key
/// pair), `blob` a masked blob.
fn with_session(session: u64, key: u64, sk: u64, pk: u64, blob: &[u8]) -> Vec<Request> {
    let secret = |v: &[u8]| SecretBytes::new(v);
    let gcm = Mechanism::AesGcm {
        iv: GcmIv::Supplied(vec![1; 12]),
        aad: vec![],
        tag_bits: 128,
    };
    let ecdsa = Mechanism::EcdsaHash(Hash::Sha256);
    let aes_template = vec![
        Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
        Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
        Attribute::ulong(ck::CKA_VALUE_LEN, 32),
    ];
    vec![
        Request::CloseSession { session },
        Request::SessionState { session },
        Request::Login {
            session,
            user: UserType::User,
            pin: secret(USER_PIN),
        },
        Request::Logout { session },
        Request::InitPin {
            session,
            pin: secret(USER_PIN),
        },
        Request::SetPin {
            session,
            old: secret(USER_PIN),
            new: secret(b"new-pin-5678"),
        },
        Request::CreateObject {
            session,
            template: vec![Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA)],
        },
        Request::CreateObjects {
            session,
            templates: vec![vec![Attribute::ulong(ck::CKA_CLASS, ck::CKO_DATA)]],
        },
        Request::DestroyObject {
            session,
            handle: key,
        },
        Request::GetAttributes {
            session,
            handle: key,
            types: vec![ck::CKA_LABEL],
        },
        Request::SetAttributes {
            session,
            handle: key,
            template: vec![Attribute::bytes(ck::CKA_LABEL, b"mine".to_vec())],
        },
        Request::CopyObject {
            session,
            handle: key,
            template: vec![],
        },
        Request::Find {
            session,
            template: vec![],
        },
        Request::GenerateKey {
            session,
            mech: Mechanism::AesKeyGen,
            template: vec![Attribute::ulong(ck::CKA_VALUE_LEN, 32)],
        },
        Request::GenerateKeyPair {
            session,
            mech: Mechanism::EcKeyPairGen,
            public: vec![Attribute::bytes(ck::CKA_EC_PARAMS, P256.to_vec())],
            private: vec![],
        },
        Request::WrapKey {
            session,
            mech: Mechanism::AesKeyWrapPad,
            wrapping: key,
            key: sk,
        },
        Request::UnwrapKey {
            session,
            mech: Mechanism::AesKeyWrapPad,
            unwrapping: key,
            wrapped: vec![0xa6; 40],
            template: aes_template.clone(),
        },
        Request::DeriveKey {
            session,
            mech: Mechanism::Ecdh {
                public_data: vec![4; 65],
            },
            base: sk,
            template: aes_template.clone(),
        },
        Request::Encapsulate {
            session,
            mech: Mechanism::MlKem,
            public: pk,
            template: aes_template.clone(),
        },
        Request::Decapsulate {
            session,
            mech: Mechanism::MlKem,
            private: sk,
            ciphertext: vec![0; 1088],
            template: aes_template,
        },
        Request::ExportMasked {
            session,
            handle: sk,
        },
        Request::ImportMasked {
            session,
            blob: blob.to_vec(),
        },
        Request::SignInit {
            session,
            mech: ecdsa.clone(),
            key: sk,
            verify: false,
        },
        Request::SignInit {
            session,
            mech: ecdsa.clone(),
            key: pk,
            verify: true,
        },
        Request::Sign {
            session,
            data: b"m".to_vec(),
        },
        Request::SignOnce {
            session,
            mech: ecdsa,
            key: sk,
            data: b"m".to_vec(),
        },
        Request::SignUpdate {
            session,
            data: b"m".to_vec(),
            verify: false,
        },
        Request::SignFinal { session },
        Request::Verify {
            session,
            data: b"m".to_vec(),
            signature: vec![0; 64],
        },
        Request::VerifyFinal {
            session,
            signature: vec![0; 64],
        },
        Request::CryptInit {
            session,
            mech: gcm.clone(),
            key,
            encrypt: true,
        },
        Request::Encrypt {
            session,
            data: secret(b"m"),
        },
        Request::EncryptOnce {
            session,
            mech: gcm,
            key,
            data: secret(b"m"),
        },
        Request::Decrypt {
            session,
            data: vec![0; 32],
        },
        Request::CryptUpdate {
            session,
            data: secret(b"m"),
            encrypt: true,
        },
        Request::EncryptFinal { session },
        Request::DecryptFinal { session },
        Request::DigestInit {
            session,
            mech: Mechanism::Digest(Hash::Sha256),
        },
        Request::DigestUpdate {
            session,
            data: b"m".to_vec(),
        },
        Request::DigestFinal { session },
        Request::Random { session, len: 32 },
        Request::KeyReport {
            session,
            key: sk,
            report_data: vec![7; 32],
        },
        Request::ReplaceReleasePolicy {
            session,
            selector: vec![Attribute::bytes(ck::CKA_LABEL, b"k".to_vec())],
            policy: b"{}".to_vec(),
        },
    ]
}

/// The requests that name no session: they act on the caller's own partition.
fn without_session(token: &SecretBytes) -> Vec<Request> {
    vec![
        Request::Ping,
        Request::Info,
        Request::Mechanisms,
        Request::AuditVerify,
        Request::OpenSession { rw: true },
        Request::CloseAllSessions,
        Request::AppToken,
        Request::JoinApp {
            token: token.duplicate(),
        },
        Request::InitToken {
            so_pin: SecretBytes::new(SO_PIN),
        },
        Request::OpenRing,
    ]
}

/// How many requests the protocol has.
const REQUESTS: usize = 69;

/// A number for each request of the protocol: an exhaustive match, so a request
/// added to the protocol does not compile until it gets a number here, and then
/// [`REQUESTS`] grows and the test asks for a case of it.
fn number(r: &Request) -> usize {
    match r {
        Request::Ping => 0,
        Request::Status => 1,
        Request::CreatePartition(_) => 2,
        Request::ListPartitions => 3,
        Request::DescribePartition { .. } => 4,
        Request::DeletePartition { .. } => 5,
        Request::PartitionCertificate { .. } => 6,
        Request::Mailbox { .. } => 7,
        Request::Tamper { .. } => 8,
        Request::Info => 9,
        Request::Mechanisms => 10,
        Request::InitToken { .. } => 11,
        Request::AuditVerify => 12,
        Request::OpenSession { .. } => 13,
        Request::CloseSession { .. } => 14,
        Request::CloseAllSessions => 15,
        Request::SessionState { .. } => 16,
        Request::Login { .. } => 17,
        Request::Logout { .. } => 18,
        Request::InitPin { .. } => 19,
        Request::SetPin { .. } => 20,
        Request::CreateObject { .. } => 21,
        Request::CreateObjects { .. } => 22,
        Request::DestroyObject { .. } => 23,
        Request::GetAttributes { .. } => 24,
        Request::SetAttributes { .. } => 25,
        Request::CopyObject { .. } => 26,
        Request::Find { .. } => 27,
        Request::GenerateKey { .. } => 28,
        Request::GenerateKeyPair { .. } => 29,
        Request::WrapKey { .. } => 30,
        Request::UnwrapKey { .. } => 31,
        Request::DeriveKey { .. } => 32,
        Request::Encapsulate { .. } => 33,
        Request::Decapsulate { .. } => 34,
        Request::ExportMasked { .. } => 35,
        Request::ImportMasked { .. } => 36,
        Request::SignInit { .. } => 37,
        Request::Sign { .. } => 38,
        Request::SignOnce { .. } => 39,
        Request::SignUpdate { .. } => 40,
        Request::SignFinal { .. } => 41,
        Request::Verify { .. } => 42,
        Request::VerifyFinal { .. } => 43,
        Request::CryptInit { .. } => 44,
        Request::Encrypt { .. } => 45,
        Request::EncryptOnce { .. } => 46,
        Request::Decrypt { .. } => 47,
        Request::CryptUpdate { .. } => 48,
        Request::EncryptFinal { .. } => 49,
        Request::DecryptFinal { .. } => 50,
        Request::DigestInit { .. } => 51,
        Request::DigestUpdate { .. } => 52,
        Request::DigestFinal { .. } => 53,
        Request::Random { .. } => 54,
        Request::AppToken => 55,
        Request::JoinApp { .. } => 56,
        Request::AllowPrincipal { .. } => 57,
        Request::RevokePrincipal { .. } => 58,
        Request::PartitionMlDsaCertificate { .. } => 59,
        Request::KeyReport { .. } => 60,
        Request::AuditLog { .. } => 61,
        Request::DeviceAuditCertificate => 62,
        Request::FleetHosts => 63,
        Request::ReplaceReleasePolicy { .. } => 64,
        Request::OpenRing => 65,
        Request::MovePartition { .. } => 66,
        Request::FleetDomain => 67,
        Request::FleetEvict { .. } => 68,
    }
}

/// The admin socket's requests: refused on a partition socket.
fn admin_requests() -> Vec<Request> {
    vec![
        Request::Status,
        Request::CreatePartition(ihsm_proto::msg::PartitionSpec {
            name: "c".into(),
            owner_uid: euid(),
            owner_gid: egid(),
            so_pin: SecretBytes::new(SO_PIN),
            user_pin: None,
            quotas: None,
            policy: Default::default(),
        }),
        Request::ListPartitions,
        Request::DescribePartition { name: "b".into() },
        Request::DeletePartition { name: "b".into() },
        Request::PartitionCertificate { name: "b".into() },
        Request::PartitionMlDsaCertificate { name: "b".into() },
        Request::AuditLog {
            partition: Some("b".into()),
            since: 1,
        },
        Request::DeviceAuditCertificate,
        Request::FleetHosts,
        Request::MovePartition {
            name: "b".into(),
            to: "elsewhere".into(),
        },
        Request::FleetDomain,
        Request::FleetEvict {
            host: "elsewhere".into(),
        },
        Request::Mailbox {
            command: 0,
            payload: vec![],
        },
        Request::Tamper {
            sensor: "lid".into(),
        },
        Request::AllowPrincipal {
            name: "b".into(),
            principal: ihsm_proto::types::Principal::Uid(4242),
        },
        Request::RevokePrincipal {
            name: "a".into(),
            principal: ihsm_proto::types::Principal::Uid(euid()),
        },
    ]
}

#[test]
fn every_request_with_another_partitions_ids_is_refused_and_the_other_partition_notices_nothing() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    d.partition("b");
    // B: a logged-in session with keys, a masked blob, an application token and
    // a signature in progress.
    let (mut b, sb) = d.tenant("b");
    let (pk, sk) = ec_pair(&mut b, sb, "b-pair");
    let key = aes_key(&mut b, sb, "b-aes").unwrap();
    let blob = b.export_masked(sb, sk).unwrap();
    let token = b.app_token().unwrap();
    b.sign_init(sb, Mechanism::EcdsaHash(Hash::Sha256), sk, false)
        .unwrap();
    let b_objects = b.find(sb, vec![]).unwrap();

    // A: its own logged-in session, and no objects, so no handle of B's can
    // name one of A's by chance.
    let (mut a, sa) = d.tenant("a");
    assert_ne!(sa, sb);
    assert!(a.find(sa, vec![]).unwrap().is_empty());

    let mut seen = BTreeSet::new();
    // The admin socket's requests: not served here at all.
    for r in admin_requests() {
        assert_eq!(r.serves(), Serves::Admin);
        seen.insert(number(&r));
        let e = a.call(&r).expect_err(r.name());
        assert_eq!(code(&e), ErrorCode::WrongEndpoint, "{}: {e}", r.name());
    }
    // B's session on A's socket: nothing to act on.
    for r in with_session(sb, key, sk, pk, &blob) {
        seen.insert(number(&r));
        let e = a.call(&r).expect_err(r.name());
        assert_eq!(
            code(&e),
            ErrorCode::SessionHandleInvalid,
            "{}: {e}",
            r.name()
        );
    }
    // A's own session with B's objects and blob: no such object here. (Requests
    // that name no object cannot carry B's ids; they are A's own.)
    for r in with_session(sa, key, sk, pk, &blob) {
        let refused = match r.name() {
            "import_masked" => ErrorCode::MaskedKeyInvalid,
            "destroy_object" | "get_attributes" | "set_attributes" | "copy_object" => {
                ErrorCode::ObjectHandleInvalid
            }
            "wrap_key" | "unwrap_key" | "derive_key" | "encapsulate" | "decapsulate"
            | "export_masked" | "sign_init" | "verify_init" | "sign_once" | "crypt_init"
            | "encrypt_once" => ErrorCode::KeyHandleInvalid,
            _ => continue,
        };
        let e = a.call(&r).expect_err(r.name());
        assert_eq!(code(&e), refused, "{}: {e}", r.name());
    }
    // B's application token joins nothing on A's socket.
    let e = a.join_app(&token).unwrap_err();
    assert_eq!(code(&e), ErrorCode::AppTokenInvalid, "{e}");
    assert!(a.find(sa, vec![]).unwrap().is_empty(), "A gained an object");
    // The requests without a session act on A alone, the most destructive
    // included: closing all sessions and re-initializing the token.
    for r in without_session(&token) {
        seen.insert(number(&r));
        match r {
            // Rings are the connection's own, in memory only it and the daemon
            // map; tests/rings.rs corrupts them.
            Request::JoinApp { .. } | Request::OpenRing => {}
            Request::InitToken { .. } => {
                a.call(&Request::CloseAllSessions).unwrap();
                a.call(&r).unwrap();
            }
            Request::Info => {
                let info = a.info().unwrap();
                assert_eq!(info.name, "a");
            }
            r => {
                a.call(&r).unwrap();
            }
        }
    }
    let missing: Vec<usize> = (0..REQUESTS).filter(|n| !seen.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "requests numbered {missing:?} have no case here"
    );

    // B noticed nothing: the same session, still logged in, the same objects, the
    // signature it started still finishes and verifies.
    assert_eq!(b.find(sb, vec![]).unwrap(), b_objects);
    assert_eq!(find_label(&mut b, sb, "b-aes"), vec![key]);
    let sig = b.sign(sb, b"after".to_vec()).unwrap();
    b.sign_init(sb, Mechanism::EcdsaHash(Hash::Sha256), pk, true)
        .unwrap();
    b.verify(sb, b"after".to_vec(), sig).unwrap();
    b.logout(sb).unwrap();
    b.login(sb, UserType::User, USER_PIN).unwrap();
}

#[test]
fn an_application_token_is_useless_to_another_uid_even_in_the_owners_group() {
    if !require_root("connecting as another uid") {
        return;
    }
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    // The group may connect; the other user is in it.
    let (other, group) = (4242, 4243);
    d.partition_owned("shared", euid(), group);
    let (mut owner, s) = d.tenant("shared");
    let token = owner.app_token().unwrap();
    let out = {
        use std::os::unix::process::CommandExt;
        output_within(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "joins_as_another_uid",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("IHSM_CHILD_SOCKET", d.socket("shared"))
                .env("IHSM_CHILD_TOKEN", hex(token.expose()))
                .uid(other)
                .gid(group),
            std::time::Duration::from_secs(120),
        )
    };
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The owner's application is untouched.
    owner.session_state(s).unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Run by `an_application_token_is_useless_to_another_uid_even_in_the_owners_group`
/// as another uid in the partition's group.
#[test]
#[ignore = "run as another uid by an_application_token_is_useless_to_another_uid_even_in_the_owners_group"]
fn joins_as_another_uid() {
    let sock = std::env::var("IHSM_CHILD_SOCKET").expect("run by the parent test");
    let token: Vec<u8> = {
        let h = std::env::var("IHSM_CHILD_TOKEN").unwrap();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut c = ihsm_client::Client::connect(&sock).unwrap();
    // Reached the partition as a member of its group: a session of its own works.
    let s = c.open_session(false).unwrap();
    c.login(s, UserType::User, USER_PIN).unwrap();
    let e = c.join_app(&SecretBytes::new(token)).unwrap_err();
    assert_eq!(code(&e), ErrorCode::AppTokenInvalid, "{e}");
}
