//! Shared-memory rings between a local client and the daemon (issue 16): used
//! by default, off on request, every size of request and reply, and a ring a
//! hostile tenant corrupts is that connection's error only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use ihsm_client::Client;
use ihsm_proto::frame;
use ihsm_proto::mech::{GcmIv, Hash, Mechanism};
use ihsm_proto::{Reply, Request, Response};
use ihsm_ring::{Geometry, Region, Which};

fn gcm() -> Mechanism {
    Mechanism::AesGcm {
        iv: GcmIv::Generate,
        aad: b"aad".to_vec(),
        tag_bits: 128,
    }
}

#[test]
fn rings_are_used_by_default_for_every_size_and_can_be_turned_off() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    // Rings unless the environment says socket (the suite runs both ways).
    let want = ihsm_client::rings_allowed_by_env();
    let (mut c, s) = d.tenant("a");
    assert_eq!(c.uses_rings(), want, "IHSM_TRANSPORT not followed");
    // Rings come at a connection's second call.
    let mut admin = d.admin();
    admin.ping().unwrap();
    assert!(!admin.uses_rings());
    admin.ping().unwrap();
    assert_eq!(admin.uses_rings(), want, "the admin socket has rings too");
    let key = aes_key(&mut c, s, "k").unwrap();
    let (_, ec) = ec_pair(&mut c, s, "ec");
    // Small, slot-sized, larger than a slot both ways, and 1 MiB (a large
    // frame on the socket).
    for len in [0usize, 1, 4096, 8000, 8200, 100_000, 1 << 20] {
        let data = vec![0x5a; len];
        let (ct, iv) = c.encrypt_once(s, gcm(), key, &data).unwrap();
        c.crypt_init(
            s,
            Mechanism::AesGcm {
                iv: GcmIv::Supplied(iv.unwrap()),
                aad: b"aad".to_vec(),
                tag_bits: 128,
            },
            key,
            false,
        )
        .unwrap();
        let pt = c.decrypt(s, ct).unwrap();
        assert_eq!(pt.expose(), &data[..], "{len} bytes");
    }
    for _ in 0..200 {
        c.ping().unwrap();
        c.sign_once(s, Mechanism::EcdsaHash(Hash::Sha256), ec, b"m".to_vec())
            .unwrap();
    }
    // A joined second connection (rings of its own) and one without rings.
    let token = c.app_token().unwrap();
    let mut plain = Client::connect_with(d.socket("a"), "test", false).unwrap();
    assert!(!plain.uses_rings());
    plain.join_app(&token).unwrap();
    plain
        .sign_once(s, Mechanism::EcdsaHash(Hash::Sha256), ec, b"m".to_vec())
        .unwrap();
    // Idle, then asked again: the daemon slept in the reactor and the doorbell
    // woke it.
    std::thread::sleep(Duration::from_millis(300));
    c.ping().unwrap();
    // A second OpenRing on a ringed connection is refused; the connection lives.
    if want {
        let e = c.call(&Request::OpenRing).unwrap_err();
        assert!(e.to_string().contains("already"), "{e}");
        c.ping().unwrap();
    }
}

/// A logged-in session on a connection with rings, whatever the environment.
fn ringed_tenant(d: &Daemon, partition: &str) -> (Client, u64) {
    let mut c = Client::connect_with(d.socket(partition), "test", true).unwrap();
    let s = c.open_session(true).unwrap();
    c.login(s, ihsm_proto::types::UserType::User, USER_PIN)
        .unwrap();
    assert!(c.uses_rings());
    (c, s)
}

#[test]
fn a_corrupted_ring_fails_that_connection_only() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    d.partition("b");
    let (mut victim, s) = ringed_tenant(&d, "a");
    let (_, ec) = ec_pair(&mut victim, s, "ec");
    let token = victim.app_token().unwrap();
    let mut sibling = Client::connect_with(d.socket("a"), "test", true).unwrap();
    sibling.join_app(&token).unwrap();
    sibling.ping().unwrap();
    assert!(sibling.uses_rings());
    let (mut other, _) = ringed_tenant(&d, "b");
    victim.set_timeout(Some(Duration::from_secs(20))).unwrap();

    // The tenant maps its own region again and writes its completion ring's
    // tail far past anything the daemon produced: the daemon's next reply
    // finds the ring corrupt.
    let fd = victim.ring_memfd().unwrap().try_clone_to_owned().unwrap();
    let hostile = Region::attach(&fd, Geometry::default()).unwrap();
    hostile.hostile_write(80 * 4, &0x7fff_0000u32.to_le_bytes());
    let e = victim.ping().unwrap_err();
    eprintln!("the victim's error: {e}");
    // The connection is closed: the next call fails too, without waiting.
    assert!(victim.ping().is_err());

    // The daemon, the tenant's other connection and another partition go on.
    sibling
        .sign_once(s, Mechanism::EcdsaHash(Hash::Sha256), ec, b"m".to_vec())
        .unwrap();
    other.ping().unwrap();
    d.admin().ping().unwrap();
    let log = d.log();
    assert!(log.contains("bad shared-memory ring"), "{log}");
}

#[test]
fn garbage_over_a_whole_ring_mid_call_harms_nothing_else() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    d.partition("b");
    let (mut victim, s) = ringed_tenant(&d, "a");
    let (_, ec) = ec_pair(&mut victim, s, "ec");
    let token = victim.app_token().unwrap();
    let mut sibling = Client::connect_with(d.socket("a"), "test", true).unwrap();
    sibling.join_app(&token).unwrap();
    sibling.ping().unwrap();
    assert!(sibling.uses_rings());
    let (mut other, _) = ringed_tenant(&d, "b");
    victim.set_timeout(Some(Duration::from_secs(5))).unwrap();
    let fd = victim.ring_memfd().unwrap().try_clone_to_owned().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let hostile = Region::attach(&fd, Geometry::default()).unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // xorshift: garbage anywhere, indexes racing the honest side.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % hostile.len();
                hostile.hostile_write(at & !3, &x.to_le_bytes()[..4]);
            }
        });
        let started = Instant::now();
        let mut failed = false;
        while started.elapsed() < Duration::from_secs(20) {
            if victim
                .sign_once(s, Mechanism::EcdsaHash(Hash::Sha256), ec, b"m".to_vec())
                .is_err()
            {
                failed = true;
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            failed,
            "20 s of garbage over the ring and every call succeeded"
        );
    });
    sibling
        .sign_once(s, Mechanism::EcdsaHash(Hash::Sha256), ec, b"m".to_vec())
        .unwrap();
    other.ping().unwrap();
    d.admin().ping().unwrap();
}

/// A client that speaks the protocol itself: hello, OpenRing, the descriptors.
fn raw_ring_client(path: &std::path::Path) -> (UnixStream, Region, OwnedFd) {
    let mut s = raw_hello(path);
    let (region, bell, _memfd) = raw_open_ring(&mut s);
    (s, region, bell)
}

#[test]
fn the_daemon_wipes_a_ring_when_its_connection_closes() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    let (mut s, region, bell) = raw_ring_client(&d.socket("a"));
    // A request through the ring (the daemon is asleep: its bell is rung by
    // the socket's next frame instead, so ask on the socket first to wake it
    // and let the ring's answer come while it is hot).
    region
        .ring(Which::Submission)
        .push(&frame::encode(&Request::Ping).unwrap()[frame::PREFIX..], 0)
        .unwrap();
    s.write_all(&frame::encode(&Request::Ping).unwrap())
        .unwrap();
    let mut buf = Vec::new();
    let pong: Response =
        frame::read(&mut s, &mut buf).unwrap_or_else(|e| panic!("{e}: {}", d.log()));
    assert!(matches!(pong, Ok(Reply::Pong)));
    let cq = region.ring(Which::Completion);
    let started = Instant::now();
    let mut reply = Vec::new();
    while cq.pop(&mut reply).unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no reply in the ring"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let resp: Response = frame::decode(&reply).unwrap();
    assert!(matches!(resp, Ok(Reply::Pong)));
    // A mark in the region that the daemon's wipe must clear.
    region.hostile_write(64 * 4 + 4, &[0xAA; 4]);
    assert!(!region.is_zeroed());
    // The client goes; its mapping stays, and shows the daemon's wipe.
    drop((s, bell));
    let started = Instant::now();
    while !region.is_zeroed() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the daemon did not wipe the region"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Regression: a call that timed out left its answer to come, and the
/// connection's next call took it for its own (a random of 32 bytes answered
/// with the 16 asked before; a signature of the message before). Now the
/// connection is unusable after a call failed midway, and says so. Ring and
/// socket alike.
#[test]
fn after_a_timed_out_call_the_connection_refuses_rather_than_answer_late() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("a");
    for rings in [true, false] {
        let mut c = Client::connect_with(d.socket("a"), "test", rings).unwrap();
        let s = c.open_session(true).unwrap();
        assert_eq!(c.random(s, 16).unwrap().expose().len(), 16);
        assert_eq!(c.uses_rings(), rings);
        c.set_timeout(Some(Duration::from_millis(200))).unwrap();
        let stopped = Stopped::new(d.pid());
        let e = c.random(s, 16).unwrap_err();
        assert!(e.to_string().contains("in time"), "{e}");
        drop(stopped);
        // The late answer has come back by now (or is on its way).
        std::thread::sleep(Duration::from_millis(300));
        c.set_timeout(Some(Duration::from_secs(20))).unwrap();
        let e = c.random(s, 32).unwrap_err();
        assert!(e.to_string().contains("reconnect"), "rings {rings}: {e}");
        c.reconnect().unwrap();
        let s = c.open_session(true).unwrap();
        assert_eq!(c.random(s, 32).unwrap().expose().len(), 32);
    }
}
