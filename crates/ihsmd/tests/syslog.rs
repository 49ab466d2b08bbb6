//! `[audit] syslog = true`: a daemon writes each audit entry, once durable, as one
//! line to the system log's datagram socket (here a socket the test binds), in
//! the export's JSON, and never a secret: not the PINs, not a key's value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use cryptoki_sys as ck;
use ihsm_proto::attr::Attribute;

#[test]
fn audit_entries_reach_the_system_log_as_lines_without_secrets() {
    let dir = state_dir();
    let socket = dir.path().join("log.sock");
    let log = UnixDatagram::bind(&socket).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::fs::write(
        dir.path().join("ihsmd.toml"),
        format!(
            "{TEST_CONFIG}\n[audit]\nsyslog = true\nsyslog_socket = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(dir.path());
    d.partition("t");
    let (mut c, s) = d.tenant("t");
    let value = [0x5cu8; 32];
    c.create_object(
        s,
        vec![
            Attribute::ulong(ck::CKA_CLASS, ck::CKO_SECRET_KEY),
            Attribute::ulong(ck::CKA_KEY_TYPE, ck::CKK_AES),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bytes(ck::CKA_VALUE, value.to_vec()),
        ],
    )
    .unwrap();

    // The device's start (self-test, checkpoint), the partition's creation, the
    // login, the object: each a line.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline
        && !lines
            .iter()
            .any(|l: &String| l.contains("\"object_created\""))
    {
        let n = log.recv(&mut buf).expect("a line within 10 s");
        lines.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    for event in [
        "self_test",
        "checkpoint",
        "partition_created",
        "login",
        "object_created",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("\"type\":\"{event}\""))),
            "{event}: {lines:#?}"
        );
    }
    for l in &lines {
        // authpriv.info, the daemon's tag, the export's JSON without the entry.
        let json = l
            .strip_prefix("<86>ihsmd[")
            .and_then(|r| r.split_once("]: ihsm-audit "))
            .map(|(_, j)| j)
            .unwrap_or_else(|| panic!("not a syslog line: {l}"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(v.get("entry").is_none() && v["hash"].is_string(), "{v}");
        for secret in [SO_PIN, USER_PIN, &value[..]] {
            assert!(
                !l.as_bytes().windows(secret.len()).any(|w| w == secret),
                "a secret in {l}"
            );
        }
        assert!(!l.contains(&hex::encode(value)), "a key value in {l}");
    }
}
