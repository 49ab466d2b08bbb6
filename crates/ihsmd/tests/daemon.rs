//! The daemon, started for real and driven through its sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use cryptoki_sys as ck;
use ihsm_client::{Client, ClientError};
use ihsm_proto::frame;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::msg::{Endpoint, Hello, HelloReply, MAGIC, REVISION, SecretBytes};
use ihsm_proto::types::DeviceState;
use ihsm_proto::{ErrorCode, Reply, Request, Response};

fn code(e: &ClientError) -> ErrorCode {
    e.code()
}

#[test]
fn a_tenant_signs_through_its_partition_socket() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    let mut admin = d.admin();
    assert_eq!(admin.endpoint(), &Endpoint::Admin);
    assert_eq!(admin.revision(), REVISION);
    d.partition("alpha");
    let status = admin.status().unwrap();
    assert_eq!(status.state, DeviceState::Operational);
    assert!(status.development);
    assert_eq!(status.partitions.len(), 1);
    let report: serde_json::Value = serde_json::from_str(&status.boot_report).unwrap();
    assert!(report["total_micros"].as_u64().unwrap() > 0);

    let (mut c, s) = d.tenant("alpha");
    assert!(matches!(c.endpoint(), Endpoint::Partition { name, .. } if name == "alpha"));
    let (pk, sk) = ec_pair(&mut c, s, "signing-key");
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sig = c.sign_once(s, mech.clone(), sk, b"hello".to_vec()).unwrap();
    assert_eq!(sig.len(), 64);
    c.sign_init(s, mech.clone(), pk, true).unwrap();
    c.verify(s, b"hello".to_vec(), sig.clone()).unwrap();
    c.sign_init(s, mech, pk, true).unwrap();
    let e = c.verify(s, b"hellO".to_vec(), sig).unwrap_err();
    assert_eq!(code(&e), ErrorCode::SignatureInvalid);
    assert_eq!(e.ckr(), ck::CKR_SIGNATURE_INVALID);
    // Multi-part digest and an AES round trip over the wire.
    c.digest_init(s, Mechanism::Digest(Hash::Sha256)).unwrap();
    c.digest_update(s, b"abc".to_vec()).unwrap();
    assert_eq!(
        hex::encode(c.digest_final(s).unwrap()),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let k = aes_key(&mut c, s, "aes").unwrap();
    let gcm = Mechanism::AesGcm {
        iv: ihsm_proto::mech::GcmIv::Generate,
        aad: b"ad".to_vec(),
        tag_bits: 128,
    };
    let (ct, iv) = c.encrypt_once(s, gcm, k, b"secret message").unwrap();
    let iv = iv.unwrap();
    c.crypt_init(
        s,
        Mechanism::AesGcm {
            iv: ihsm_proto::mech::GcmIv::Supplied(iv),
            aad: b"ad".to_vec(),
            tag_bits: 128,
        },
        k,
        false,
    )
    .unwrap();
    assert_eq!(c.decrypt(s, ct).unwrap().expose(), b"secret message");
    assert_eq!(find_label(&mut c, s, "signing-key").len(), 2);
    assert!(c.audit_verify().unwrap().entries > 0);
    // Certificates of the partition identity come from the admin socket.
    let der = admin.partition_certificate("alpha").unwrap();
    assert!(der.len() > 300);
    assert!(d.stop().success());
}

#[test]
fn requests_on_the_wrong_socket_are_refused_and_the_connection_lives() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("p");
    let mut admin = d.admin();
    let e = admin.open_session(true).unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongEndpoint);
    admin.ping().unwrap();
    let (mut c, _) = d.tenant("p");
    let e = c.list_partitions().unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongEndpoint);
    let e = c.tamper("lid").unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongEndpoint);
    c.ping().unwrap();
    // Admin errors are clear too.
    let e = admin.describe_partition("nope").unwrap_err();
    assert_eq!(code(&e), ErrorCode::PartitionNotFound);
    let e = admin.tamper("smoke").unwrap_err();
    assert!(e.to_string().contains("lid, thermal or voltage"), "{e}");
}

#[test]
fn a_partition_socket_cannot_reach_another_partition() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    d.partition("b");
    let (mut a, sa) = d.tenant("a");
    let (mut b, sb) = d.tenant("b");
    let (_, b_key) = ec_pair(&mut b, sb, "b-key");
    let b_aes = aes_key(&mut b, sb, "b-aes").unwrap();
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    // b's handles and sessions name nothing on a's socket.
    let e = a
        .sign_once(sa, mech.clone(), b_key, b"x".to_vec())
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::KeyHandleInvalid);
    let e = a
        .get_attributes(sa, b_aes, vec![ck::CKA_LABEL])
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::ObjectHandleInvalid);
    let e = a.destroy_object(sa, b_aes).unwrap_err();
    assert_eq!(code(&e), ErrorCode::ObjectHandleInvalid);
    let e = a.export_masked(sa, b_aes).unwrap_err();
    assert!(matches!(
        code(&e),
        ErrorCode::ObjectHandleInvalid | ErrorCode::KeyHandleInvalid
    ));
    let e = a.sign_once(sb, mech, b_key, b"x".to_vec()).unwrap_err();
    assert_eq!(code(&e), ErrorCode::SessionHandleInvalid);
    assert!(find_label(&mut a, sa, "b-key").is_empty());
    // A masked blob of b's does not import into a.
    let blob = b.export_masked(sb, b_aes).unwrap();
    let e = a.import_masked(sa, blob).unwrap_err();
    assert_eq!(code(&e), ErrorCode::MaskedKeyInvalid);
    // And b still works.
    assert_eq!(find_label(&mut b, sb, "b-key").len(), 2);
}

#[test]
fn connections_joined_to_one_application_share_its_sessions_and_login() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    d.partition("b");
    let (mut first, s) = d.tenant("a");
    let (_, key) = ec_pair(&mut first, s, "shared");
    let token = first.app_token().unwrap();
    assert_eq!(token.expose().len(), 32);
    // The same token each time it is asked.
    assert_eq!(first.app_token().unwrap().expose(), token.expose());
    let mech = Mechanism::EcdsaHash(Hash::Sha256);

    // A second connection joins: the first's session and login are its own.
    let mut second = Client::connect(d.socket("a")).unwrap();
    let own = second.open_session(false).unwrap();
    second.join_app(&token).unwrap();
    second
        .sign_once(s, mech.clone(), key, b"joined".to_vec())
        .unwrap();
    // The session it had before joining ended with its own application.
    let e = second.close_session(own).unwrap_err();
    assert_eq!(code(&e), ErrorCode::SessionHandleInvalid);

    // A wrong token, and a's token on b's socket, join nothing.
    let mut stranger = Client::connect(d.socket("a")).unwrap();
    let e = stranger.join_app(&SecretBytes::new([0u8; 32])).unwrap_err();
    assert_eq!(code(&e), ErrorCode::AppTokenInvalid);
    let e = stranger
        .join_app(&SecretBytes::new(&token.expose()[..31]))
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::AppTokenInvalid);
    let mut other = Client::connect(d.socket("b")).unwrap();
    let e = other.join_app(&token).unwrap_err();
    assert_eq!(code(&e), ErrorCode::AppTokenInvalid);
    // Nor on the admin socket.
    let e = d.admin().join_app(&token).unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongEndpoint);

    // The application outlives its first connection...
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    second
        .sign_once(s, mech.clone(), key, b"still".to_vec())
        .unwrap();
    let mut third = Client::connect(d.socket("a")).unwrap();
    third.join_app(&token).unwrap();
    third
        .sign_once(s, mech.clone(), key, b"third".to_vec())
        .unwrap();
    // ... and ends with its last: its sessions and token are gone.
    drop(second);
    drop(third);
    std::thread::sleep(Duration::from_millis(100));
    let mut late = Client::connect(d.socket("a")).unwrap();
    let e = late.join_app(&token).unwrap_err();
    assert_eq!(code(&e), ErrorCode::AppTokenInvalid);
    let e = late.sign_once(s, mech, key, b"gone".to_vec()).unwrap_err();
    assert_eq!(code(&e), ErrorCode::SessionHandleInvalid);
}

#[test]
fn a_connection_from_another_uid_is_refused() {
    let dir = state_dir();
    // Partition sockets are world-connectable: only the daemon's own
    // credential check stands between another user and a partition.
    let d = Daemon::start(dir.path());
    let other = euid().wrapping_add(4242);
    d.partition_owned("theirs", other, other);
    let e = Client::connect(d.socket("theirs")).unwrap_err();
    assert_eq!(code(&e), ErrorCode::PermissionDenied, "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "partition \"theirs\" admits uid {other}, gid {other}; uid {} gid {} is not among them; to admit it: ihsm partition allow theirs --uid {}",
            euid(),
            egid(),
            euid()
        )
    );
    assert_eq!(e.ckr(), ck::CKR_FUNCTION_REJECTED);
    // The daemon keeps serving.
    d.admin().ping().unwrap();

    // Root can run a real client as the owner: it is accepted, and a non-owner,
    // non-root user is refused the admin socket too.
    if require_root("the positive control (a real client connecting as the owner)") {
        let run = |uid: u32, what: &str| {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--exact",
                "child_connects",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("IHSM_CHILD_SOCKET", d.socket("theirs"))
            .env("IHSM_CHILD_ADMIN", d.admin_socket())
            .env("IHSM_CHILD_EXPECT", what)
            .uid(uid)
            .gid(uid);
            output_within(&mut cmd, Duration::from_secs(120))
        };
        use std::os::unix::process::CommandExt;
        let out = run(other, "partition-ok admin-refused");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Run by `a_connection_from_another_uid_is_refused` as another user.
#[test]
#[ignore = "run as another user by a_connection_from_another_uid_is_refused"]
fn child_connects() {
    let sock = std::env::var("IHSM_CHILD_SOCKET").expect("run by the parent test");
    let expect = std::env::var("IHSM_CHILD_EXPECT").unwrap();
    assert!(expect.contains("partition-ok"));
    let mut c = Client::connect(&sock).unwrap();
    c.ping().unwrap();
    let s = c.open_session(false).unwrap();
    c.login(s, ihsm_proto::types::UserType::User, USER_PIN)
        .unwrap();
    let e = Client::connect(std::env::var("IHSM_CHILD_ADMIN").unwrap()).unwrap_err();
    // The admin socket is 0600 root's: the filesystem or the daemon refuses.
    assert!(
        matches!(
            code(&e),
            ErrorCode::PermissionDenied | ErrorCode::Connection
        ),
        "{e}"
    );
}

/// Sends raw bytes on a fresh connection and returns what comes back until close.
fn raw(path: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn refused(reply: &[u8]) -> ihsm_proto::WireError {
    let mut buf = Vec::new();
    match frame::read::<_, HelloReply>(&mut &reply[..], &mut buf).unwrap() {
        HelloReply::Refused(e) => e,
        other => panic!("{other:?}"),
    }
}

fn hello_bytes(h: &Hello) -> Vec<u8> {
    frame::encode(h).unwrap()
}

#[test]
fn garbage_truncated_oversized_frames_and_old_versions_harm_nothing_else() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("p");
    // A client in the middle of its work, before, during and after the abuse.
    let (mut good, s) = d.tenant("p");
    let (_, sk) = ec_pair(&mut good, s, "k");
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sock = d.socket("p");

    // Garbage as a hello.
    let e = refused(&raw(&sock, b"\x05\x00\x00\x00hello"));
    assert_eq!(e.kind(), Some(ErrorCode::Malformed));
    // An empty frame, a frame over the limit.
    let e = refused(&raw(&sock, &[0, 0, 0, 0]));
    assert_eq!(e.kind(), Some(ErrorCode::Malformed));
    let e = refused(&raw(&sock, &u32::MAX.to_le_bytes()));
    assert_eq!(e.kind(), Some(ErrorCode::FrameTooLarge));
    // A truncated hello: the daemon closes without crashing.
    let mut t = hello_bytes(&Hello::new("t"));
    t.truncate(t.len() - 2);
    let _ = raw(&sock, &t);
    // Wrong magic; a protocol revision from the future.
    let mut h = Hello::new("t");
    h.magic = *b"XXXX";
    assert_eq!(
        refused(&raw(&sock, &hello_bytes(&h))).kind(),
        Some(ErrorCode::Malformed)
    );
    let mut h = Hello::new("future");
    h.min_revision = REVISION + 1;
    h.max_revision = REVISION + 5;
    let e = refused(&raw(&sock, &hello_bytes(&h)));
    assert_eq!(e.kind(), Some(ErrorCode::VersionUnsupported));
    assert!(e.message.contains("revision"), "{}", e.message);
    assert_eq!(MAGIC, *b"IHSM");

    // After a good hello: garbage, an unknown request variant, a truncated and an
    // oversized request each get an error answer and a closed connection.
    for bad in [
        frame::encode(&serde_bytes::ByteBuf::from(vec![0xffu8; 7])).unwrap()[4..].to_vec(),
        vec![0xf0, 0x01],
    ] {
        let mut bytes = hello_bytes(&Hello::new("t"));
        let mut f = u32::try_from(bad.len()).unwrap().to_le_bytes().to_vec();
        f.extend_from_slice(&bad);
        bytes.extend_from_slice(&f);
        let out = raw(&sock, &bytes);
        let mut buf = Vec::new();
        let mut r = &out[..];
        assert!(matches!(
            frame::read::<_, HelloReply>(&mut r, &mut buf).unwrap(),
            HelloReply::Accepted { .. }
        ));
        let resp: Response = frame::read(&mut r, &mut buf).unwrap();
        assert_eq!(resp.unwrap_err().kind(), Some(ErrorCode::Malformed));
    }
    let mut bytes = hello_bytes(&Hello::new("t"));
    bytes.extend_from_slice(&(u32::try_from(frame::MAX_FRAME).unwrap() + 1).to_le_bytes());
    let out = raw(&sock, &bytes);
    let mut buf = Vec::new();
    let mut r = &out[..];
    let _: HelloReply = frame::read(&mut r, &mut buf).unwrap();
    let resp: Response = frame::read(&mut r, &mut buf).unwrap();
    assert_eq!(resp.unwrap_err().kind(), Some(ErrorCode::FrameTooLarge));
    // Announces 1 MiB, sends 3 bytes, hangs up.
    let mut bytes = hello_bytes(&Hello::new("t"));
    bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
    bytes.extend_from_slice(b"abc");
    let _ = raw(&sock, &bytes);

    // The good client never noticed.
    good.sign_once(s, mech, sk, b"still here".to_vec()).unwrap();
    d.admin().ping().unwrap();
    assert!(d.stop().success());
}

#[test]
fn oversized_data_is_refused_by_the_client_and_by_the_daemon() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("p");
    let (mut c, s) = d.tenant("p");
    let big = vec![0u8; frame::MAX_FRAME + 1];
    let e = c.digest_update(s, big).unwrap_err();
    assert_eq!(code(&e), ErrorCode::FrameTooLarge);
    // Under the frame limit but over the core's: the core's clear error.
    let k = aes_key(&mut c, s, "k").unwrap();
    let gcm = Mechanism::AesGcm {
        iv: ihsm_proto::mech::GcmIv::Generate,
        aad: vec![],
        tag_bits: 128,
    };
    let e = c
        .encrypt_once(s, gcm, k, &vec![0u8; ihsm_core::MAX_DATA + 1])
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::DataLenRange);
    c.ping().unwrap();
}

#[test]
fn many_concurrent_clients() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("busy");
    let (mut c, s) = d.tenant("busy");
    let (pk, sk) = ec_pair(&mut c, s, "shared");
    let errors = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let sock = d.socket("busy");
            let errors = Arc::clone(&errors);
            std::thread::spawn(move || {
                let run = || -> Result<(), ClientError> {
                    let mut c = Client::connect(&sock)?;
                    let s = c.open_session(false)?;
                    c.login(s, ihsm_proto::types::UserType::User, USER_PIN)?;
                    let mech = Mechanism::EcdsaHash(Hash::Sha256);
                    for j in 0..50 {
                        let msg = format!("thread {i} message {j}").into_bytes();
                        let sig = c.sign_once(s, mech.clone(), sk, msg.clone())?;
                        c.sign_init(s, mech.clone(), pk, true)?;
                        c.verify(s, msg, sig)?;
                    }
                    Ok(())
                };
                if let Err(e) = run() {
                    errors.lock().unwrap().push(format!("thread {i}: {e}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    // Each closed connection took its sessions with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = c.info().unwrap();
        if info.sessions == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sessions left open: {}",
            info.sessions
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_then_restart_keeps_every_key() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("keep");
    let (mut c, s) = d.tenant("keep");
    let (pk, _) = ec_pair(&mut c, s, "kept-ec");
    for i in 0..20 {
        aes_key(&mut c, s, &format!("kept-{i}")).unwrap();
    }
    let public = c.get_attributes(s, pk, vec![ck::CKA_EC_POINT]).unwrap();
    drop(c);
    let status = d.stop();
    assert!(status.success(), "{status}");
    assert!(
        !dir.path().join("admin.sock").exists(),
        "sockets are removed on shutdown"
    );

    let d = Daemon::start(dir.path());
    let (mut c, s) = d.tenant("keep");
    for i in 0..20 {
        assert_eq!(
            find_label(&mut c, s, &format!("kept-{i}")).len(),
            1,
            "kept-{i}"
        );
    }
    let ec = find_label(&mut c, s, "kept-ec");
    assert_eq!(ec.len(), 2);
    let sk = ec
        .iter()
        .copied()
        .find(|h| {
            c.get_attributes(s, *h, vec![ck::CKA_CLASS]).unwrap()
                == vec![ihsm_proto::attr::AttrResult::Value(
                    ihsm_proto::attr::AttrValue::Ulong(ck::CKO_PRIVATE_KEY),
                )]
        })
        .unwrap();
    let pk2 = ec.iter().copied().find(|h| *h != sk).unwrap();
    assert_eq!(
        c.get_attributes(s, pk2, vec![ck::CKA_EC_POINT]).unwrap(),
        public
    );
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sig = c
        .sign_once(s, mech.clone(), sk, b"after restart".to_vec())
        .unwrap();
    c.sign_init(s, mech, pk2, true).unwrap();
    c.verify(s, b"after restart".to_vec(), sig).unwrap();
}

#[test]
fn kill_9_during_key_creation_loses_no_acknowledged_key() {
    let dir = state_dir();
    let mut d = Daemon::start(dir.path());
    d.partition("crash");
    let mut acked: Vec<String> = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..6 {
        let sock = d.socket("crash");
        let writer = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let Ok(mut c) = Client::connect(&sock) else {
                return acked;
            };
            let Ok(s) = c.open_session(true) else {
                return acked;
            };
            if c.login(s, ihsm_proto::types::UserType::User, USER_PIN)
                .is_err()
            {
                return acked;
            }
            for i in 0.. {
                let label = format!("r{round}-k{i}");
                match aes_key(&mut c, s, &label) {
                    Ok(_) => acked.push(label),
                    Err(_) => break,
                }
            }
            acked
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        d.kill9();
        acked.extend(writer.join().unwrap());
        d = Daemon::start(dir.path());
    }
    assert!(
        acked.len() > 20,
        "too few keys were created to mean anything: {}",
        acked.len()
    );
    let (mut c, s) = d.tenant("crash");
    for label in &acked {
        assert_eq!(
            find_label(&mut c, s, label).len(),
            1,
            "acknowledged key {label} was lost"
        );
    }
    println!("{} acknowledged keys survived 6 SIGKILLs", acked.len());
}

#[test]
fn the_state_directory_is_private_and_its_secrets_are_locked_in_memory() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = state_dir();
    let s = dir.path();
    let chmod = |mode| std::fs::set_permissions(s, std::fs::Permissions::from_mode(mode)).unwrap();
    // A directory others may write to is refused before anything is made in it.
    for (mode, says) in [
        (0o777, "writable by everyone"),
        (0o770, "writable by its group"),
    ] {
        chmod(mode);
        let log = Daemon::try_start(s, &[])
            .err()
            .expect("started on a writable directory");
        assert!(log.contains(says) && log.contains("chmod 0700"), "{log}");
        assert!(!s.join("fuses.bin").exists());
    }
    chmod(0o700);
    let d = Daemon::start(s);
    d.partition("p");
    // Secrets are the owner's alone; nothing in the directory is writable by
    // others (sockets aside: connecting needs write permission, and the daemon
    // checks every peer's credentials).
    let mut secrets = 0;
    let mut stack = vec![s.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let name = e.file_name().to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push(e.path());
                if name == "dev-keys" || p.ends_with("dev-keys") {
                    assert_eq!(mode, 0o700, "{}", e.path().display());
                }
                continue;
            }
            if meta.file_type().is_socket() {
                continue;
            }
            assert_eq!(mode & 0o022, 0, "{} is {mode:o}", e.path().display());
            if ["fuses.bin", "store.redb", "store.counter"].contains(&name.as_str())
                || name.ends_with(".key.pem")
            {
                assert_eq!(mode, 0o600, "{} is {mode:o}", e.path().display());
                secrets += 1;
            }
        }
    }
    assert!(secrets >= 4, "found {secrets} secret files");
    // The daemon's secret pages: locked in RAM and left out of core dumps.
    let pid = d.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked > 0, "no locked memory:\n{status}");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let dontdump = smaps
        .lines()
        .filter(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "dd"))
        .count();
    assert!(dontdump > 0, "no MADV_DONTDUMP region");
}

#[test]
fn the_connection_limit_holds_and_frees_with_each_closed_connection() {
    let dir = state_dir();
    let s = dir.path();
    std::fs::write(
        s.join("ihsmd.toml"),
        "[daemon]\npin_iterations = 1000\nshutdown_grace_secs = 5\nmax_connections = 3\n",
    )
    .unwrap();
    let d = Daemon::start(s);
    d.partition("p");
    // Three connections are served (the daemon's own start-up probe has gone).
    std::thread::sleep(Duration::from_millis(200));
    let mut held: Vec<Client> = (0..3)
        .map(|_| Client::connect(d.socket("p")).unwrap())
        .collect();
    for c in &mut held {
        c.ping().unwrap();
    }
    // A fourth is refused at its hello, saying why; the others go on.
    let e = Client::connect(d.socket("p")).unwrap_err();
    assert_eq!(code(&e), ErrorCode::DaemonFailed, "{e}");
    assert!(e.to_string().contains("maximum of 3 connections"), "{e}");
    let e = Client::connect(d.admin_socket()).unwrap_err();
    assert_eq!(code(&e), ErrorCode::DaemonFailed, "{e}");
    for c in &mut held {
        c.ping().unwrap();
    }
    // Closing one frees its place.
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        match Client::connect(d.socket("p")) {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the freed place was not given back: {e}"),
        }
    };
    again.ping().unwrap();
}

#[test]
fn bad_configurations_refuse_to_start_and_say_which_key() {
    let dir = state_dir();
    std::fs::write(
        dir.path().join("ihsmd.toml"),
        "[daemon]\nmax_conections = 5\n",
    )
    .unwrap();
    let e = Daemon::try_start(dir.path(), &[]).err().unwrap();
    assert!(e.contains("max_conections"), "{e}");
    std::fs::write(
        dir.path().join("ihsmd.toml"),
        "[metrics]\nlisten = \"0.0.0.0:9464\"\n",
    )
    .unwrap();
    let e = Daemon::try_start(dir.path(), &[]).err().unwrap();
    assert!(e.contains("loopback"), "{e}");
    std::fs::write(dir.path().join("ihsmd.toml"), TEST_CONFIG).unwrap();
    // The measured configuration: a wrong key stops the boot and is named.
    let d = Daemon::start(dir.path());
    drop(d);
    std::fs::write(
        dir.path().join("security.toml"),
        "[device]\ndebug_locked = true\n[tamper]\npolicy = \"explode\"\n",
    )
    .unwrap();
    let e = Daemon::try_start(dir.path(), &[]).err().unwrap();
    assert!(e.contains("explode"), "{e}");
    // A production start refuses a development device.
    std::fs::write(
        dir.path().join("security.toml"),
        ihsm_rot::config::DEFAULT_SECURITY_CONFIG,
    )
    .unwrap();
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_ihsmd"))
            .arg("--state")
            .arg(dir.path())
            .arg("--production"),
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("development device"));
    // An explicit configuration file that does not exist is an error.
    let e = Daemon::try_start(dir.path(), &["--config", "/nonexistent/ihsmd.toml"])
        .err()
        .unwrap();
    assert!(e.contains("/nonexistent/ihsmd.toml"), "{e}");
}

#[test]
fn tamper_zeroizes_and_every_call_says_so() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("t");
    let (mut c, s) = d.tenant("t");
    let (_, sk) = ec_pair(&mut c, s, "k");
    d.admin().tamper("lid").unwrap();
    let e = c
        .sign_once(s, Mechanism::EcdsaHash(Hash::Sha256), sk, b"x".to_vec())
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::Tampered);
    assert!(e.to_string().contains("lid sensor"), "{e}");
    let status = d.admin().status().unwrap();
    assert!(matches!(status.state, DeviceState::Tampered(ref r) if r.contains("lid")));
    // New connections to the partition are refused with the same reason.
    let e = Client::connect(d.socket("t")).unwrap_err();
    assert_eq!(code(&e), ErrorCode::Tampered);
    assert!(d.stop().success());
    // The latch holds: the daemon will not start again on this state.
    let e = Daemon::try_start(dir.path(), &[]).err().unwrap();
    assert!(e.to_lowercase().contains("tamper"), "{e}");
}

#[test]
fn mailbox_commands_reach_the_root_of_trust() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    let mut a = d.admin();
    let cmd = ihsm_rot::mailbox::cmd::QUOTE_PCRS_ECC384;
    let nonce = [7u8; 32];
    let req = ihsm_rot::mailbox::request(cmd, &nonce);
    let resp = a.mailbox(cmd, req).unwrap();
    assert_eq!(resp.len(), 1848);
    // A bad checksum is the mailbox's own error, named.
    let e = a.mailbox(cmd, vec![0; 36]).unwrap_err();
    assert_eq!(code(&e), ErrorCode::MailboxFailed);
    assert!(e.to_string().to_lowercase().contains("checksum"), "{e}");
    let reply = a.call(&Request::Ping).unwrap();
    assert_eq!(reply, Reply::Pong);
}

#[test]
fn a_development_device_re_signs_its_manifest_when_its_configuration_changes() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("p");
    let before = d.admin().status().unwrap().boot_report;
    assert!(d.stop().success());
    // A measured setting changes: the next start re-signs (development only) and
    // the runtime measurement, hence the RT Alias identity, changes with it.
    let cfg = dir.path().join("security.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("policy = \"zeroize-and-destroy\"", "policy = \"zeroize\""),
    )
    .unwrap();
    let d = Daemon::start(dir.path());
    let after = d.admin().status().unwrap().boot_report;
    let pcr = |r: &str| {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        v["boot_pcrs"][2].as_str().unwrap().to_owned()
    };
    assert_ne!(pcr(&before), pcr(&after), "PCR2 measures the configuration");
    // The store, sealed to the stable identity, still opens: the keys are there.
    let (mut c, s) = d.tenant("p");
    assert_eq!(c.info().unwrap().name, "p");
    c.close_session(s).unwrap();
}

#[test]
fn metrics_on_loopback_and_logs_without_secrets() {
    let dir = state_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("ihsmd.toml"),
        format!("{TEST_CONFIG}[metrics]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\nlevel = \"trace\"\n"),
    )
    .unwrap();
    let d = Daemon::try_start(dir.path(), &["--log-level", "trace"]).unwrap();
    d.partition("m");
    let (mut c, s) = d.tenant("m");
    let (_, sk) = ec_pair(&mut c, s, "metered");
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    for _ in 0..3 {
        c.sign_once(s, mech.clone(), sk, b"x".to_vec()).unwrap();
    }
    let mut other = Client::connect(d.socket("m")).unwrap();
    let os = other.open_session(false).unwrap();
    let e = other
        .login(os, ihsm_proto::types::UserType::User, b"wrong-pin-zz9")
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::PinIncorrect);
    // A key value imported in clear must not reach the log either.
    let secret_value = [0x5eu8; 32];
    c.create_object(
        s,
        vec![
            ihsm_proto::attr::Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            ihsm_proto::attr::Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            ihsm_proto::attr::Attribute::bytes(ck::CKA_VALUE, secret_value.to_vec()),
        ],
    )
    .unwrap();
    let scrape = || {
        let mut t = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        t.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        t.read_to_string(&mut body).unwrap();
        body
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let b = scrape();
        // Gauges are refreshed every second.
        if b.contains("ihsm_sessions{endpoint=\"m\"}") || std::time::Instant::now() > deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = body
        .lines()
        .find(|l| l.starts_with("ihsm_requests_total") && l.contains("request=\"sign_once\""))
        .unwrap_or_else(|| panic!("no sign_once counter in:\n{body}"));
    assert!(
        line.contains("endpoint=\"m\"") && line.contains("result=\"ok\"") && line.ends_with(" 3"),
        "{line}"
    );
    assert!(body.contains("result=\"PinIncorrect\""), "{body}");
    assert!(body.contains("ihsm_request_duration_seconds"), "{body}");
    assert!(body.contains("ihsm_device_tampered 0"), "{body}");
    assert!(body.contains("ihsm_partitions 1"), "{body}");
    assert!(body.contains("ihsm_sessions{endpoint=\"m\"}"), "{body}");
    drop(c);
    assert!(d.stop().success());
    // JSON lines, and none of the secrets.
    let log = std::fs::read_to_string(dir.path().join("ihsmd.log")).unwrap();
    assert!(
        log.lines()
            .filter(|l| !l.is_empty())
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{log}"
    );
    assert!(
        log.contains("\"request\":\"sign_once\"") || log.contains("connected"),
        "{log}"
    );
    for secret in [
        String::from_utf8_lossy(USER_PIN).into_owned(),
        String::from_utf8_lossy(SO_PIN).into_owned(),
        "wrong-pin-zz9".to_owned(),
        hex::encode(secret_value),
        "94, 94, 94".to_owned(),
    ] {
        assert!(!log.contains(&secret), "the log holds {secret:?}");
    }
}
