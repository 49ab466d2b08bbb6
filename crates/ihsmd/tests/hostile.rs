//! One hostile tenant against a real daemon: a flood of connections, oversized and
//! slow-drip frames, sessions left open, a loop of RSA key generations. Meanwhile
//! another partition (the victim) is served, each attack is refused with an error
//! that names the limit it hit, and the daemon stays up. Nothing here asserts how
//! fast anything is (the hostile mode of `ihsm-bench` measures that); deadlines
//! only keep a broken daemon from hanging the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use cryptoki_sys as ck;
use ihsm_client::Client;
use ihsm_proto::attr::Attribute;
use ihsm_proto::frame;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::msg::{Hello, HelloReply};
use ihsm_proto::{ErrorCode, Request, Response};

/// The partition that must keep being served.
struct Victim {
    client: Client,
    session: u64,
    key: u64,
}

impl Victim {
    fn new(d: &Daemon) -> Self {
        d.partition("victim");
        let (mut client, session) = d.tenant("victim");
        let (_, key) = ec_pair(&mut client, session, "victim-key");
        Self {
            client,
            session,
            key,
        }
    }

    /// `n` ECDSA P-256 signatures, each of which must succeed.
    fn signs(&mut self, n: usize) {
        for i in 0..n {
            self.client
                .sign_once(
                    self.session,
                    Mechanism::EcdsaHash(Hash::Sha256),
                    self.key,
                    format!("victim message {i}").into_bytes(),
                )
                .unwrap_or_else(|e| panic!("the victim's signature {i} failed: {e}"));
        }
    }
}

/// Config lines under `[daemon]` added to the tests' usual ones.
fn config(dir: &std::path::Path, daemon_lines: &str) {
    std::fs::write(
        dir.join("ihsmd.toml"),
        format!("{TEST_CONFIG}{daemon_lines}"),
    )
    .unwrap();
}

/// The daemon is up: the admin socket answers, a fresh victim connection signs,
/// and SIGTERM ends it cleanly.
fn still_up(d: Daemon, v: &mut Victim) {
    d.admin().ping().unwrap();
    v.signs(10);
    let (mut fresh, s) = d.tenant("victim");
    fresh.ping().unwrap();
    fresh.close_session(s).unwrap();
    assert!(d.stop().success());
}

/// A raw connection to `path` that has said hello and been accepted.
fn raw_hello(path: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&frame::encode(&Hello::new("hostile")).unwrap())
        .unwrap();
    let mut buf = Vec::new();
    match frame::read::<_, HelloReply>(&mut s, &mut buf).unwrap() {
        HelloReply::Accepted { .. } => s,
        HelloReply::Refused(e) => panic!("hello refused: {e}"),
    }
}

/// The error the daemon answers on `s` before it closes.
fn last_error(s: &mut UnixStream) -> ihsm_proto::WireError {
    let mut buf = Vec::new();
    let resp: Response = frame::read(s, &mut buf).unwrap();
    let e = resp.unwrap_err();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes after the last error");
    e
}

#[test]
fn a_connection_flood_from_one_tenant_is_refused_and_other_partitions_are_served() {
    let dir = state_dir();
    // The defaults: 256 connections per partition, 4096 in all.
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    d.partition("hostile");
    let sock = d.socket("hostile");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..3000 {
        match Client::connect(&sock) {
            Ok(c) => held.push(c),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}");
                let m = e.to_string();
                assert!(
                    m.contains("hostile")
                        && m.contains("maximum of 256 connections")
                        && m.contains("max_connections_per_partition"),
                    "{m}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(held.len(), 256);
    assert_eq!(refused, 3000 - 256);
    // Connections that never say hello count too, and are refused the same way.
    let mut silent: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = Vec::new();
        match frame::read::<_, HelloReply>(s, &mut buf).unwrap() {
            HelloReply::Refused(e) => assert_eq!(e.kind(), Some(ErrorCode::QuotaExceeded)),
            other => panic!("{other:?}"),
        }
    }
    // The held connections are served; so are the victim, a new victim
    // connection and the administrator.
    for c in &mut held {
        c.ping().unwrap();
    }
    v.signs(100);
    let (mut other, s) = d.tenant("victim");
    other.open_session(false).unwrap();
    other.close_session(s).unwrap();
    d.admin().ping().unwrap();
    // Closing one frees its place.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut again = loop {
        match Client::connect(&sock) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the freed place was not given back: {e}"),
        }
    };
    again.ping().unwrap();
    drop(held);
    assert!(
        d.log()
            .contains("connection refused: the partition has its maximum of connections"),
        "no log line for the refusals"
    );
    still_up(d, &mut v);
}

#[test]
fn oversized_frames_are_refused_and_harm_no_one_else() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    d.partition("hostile");
    let sock = d.socket("hostile");
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let sock = sock.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) || rounds == 0 {
                    // A hello announcing 4 GiB.
                    let mut s = UnixStream::connect(&sock).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
                    let mut buf = Vec::new();
                    match frame::read::<_, HelloReply>(&mut s, &mut buf).unwrap() {
                        HelloReply::Refused(e) => {
                            assert_eq!(e.kind(), Some(ErrorCode::FrameTooLarge), "{e}");
                        }
                        other => panic!("{other:?}"),
                    }
                    // After a good hello: one byte over the limit, then 4 GiB.
                    for len in [u32::try_from(frame::MAX_FRAME).unwrap() + 1, u32::MAX] {
                        let mut s = raw_hello(&sock);
                        s.write_all(&len.to_le_bytes()).unwrap();
                        let e = last_error(&mut s);
                        assert_eq!(e.kind(), Some(ErrorCode::FrameTooLarge), "{e}");
                        assert!(e.message.contains("exceeds the limit"), "{e}");
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    v.signs(300);
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        assert!(a.join().unwrap() > 0);
    }
    // The largest frame the protocol allows is still served whole.
    let (mut c, s) = d.tenant("hostile");
    c.digest_init(s, Mechanism::Digest(Hash::Sha256)).unwrap();
    c.digest_update(s, vec![0u8; 8 << 20]).unwrap();
    assert_eq!(c.digest_final(s).unwrap().len(), 32);
    still_up(d, &mut v);
}

#[test]
fn slow_drip_frames_are_closed_at_their_deadline_and_others_carry_on() {
    let dir = state_dir();
    config(dir.path(), "frame_timeout_secs = 2\n");
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    d.partition("hostile");
    let sock = d.socket("hostile");
    // Another client of the same tenant, which must not notice either.
    let (mut neighbour, ns) = d.tenant("hostile");

    // 50 connections each announce a request and drip it a byte every 200 ms.
    let request = frame::encode(&Request::Ping).unwrap();
    let mut body = [0u8; 100];
    body[0] = request[4];
    let mut drip: Vec<UnixStream> = (0..50).map(|_| raw_hello(&sock)).collect();
    for s in &mut drip {
        s.write_all(&100u32.to_le_bytes()).unwrap();
        s.set_nonblocking(true).unwrap();
    }
    let dripper = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        // Far longer than the deadline: the daemon must close them first.
        while sent < body.len() && started.elapsed() < Duration::from_secs(60) {
            let mut open = 0;
            for s in &mut drip {
                if s.write_all(&body[sent..=sent]).is_ok() {
                    open += 1;
                }
            }
            sent += 1;
            if open == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for s in &mut drip {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        drip.into_iter()
            .map(|mut s| last_error(&mut s))
            .collect::<Vec<_>>()
    });
    // And one drips its hello: closed when the hello's time is up.
    let hello = frame::encode(&Hello::new("slow")).unwrap();
    let mut slow_hello = UnixStream::connect(&sock).unwrap();
    slow_hello.write_all(&hello[..3]).unwrap();

    // Meanwhile the victim and the neighbour are served.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dripper.is_finished() {
        assert!(Instant::now() < deadline, "the drips were never closed");
        v.signs(5);
        let s = neighbour.open_session(false).unwrap();
        neighbour.close_session(s).unwrap();
    }
    let errors = dripper.join().unwrap();
    assert_eq!(errors.len(), 50);
    for e in errors {
        assert_eq!(e.kind(), Some(ErrorCode::FrameTimeout), "{e}");
        assert!(e.message.contains("frame_timeout_secs"), "{e}");
    }
    slow_hello
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow_hello.write_all(&hello[3..4]);
    let _ = slow_hello.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a reply to a hello that never came");
    assert!(d.log().contains("slow frame"), "no log line for the drips");
    neighbour.close_session(ns).unwrap();
    still_up(d, &mut v);
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn partly_sent_large_frames_hold_little_of_the_daemons_memory() {
    let dir = state_dir();
    config(dir.path(), "frame_timeout_secs = 3\n");
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    d.partition("hostile");
    let sock = d.socket("hostile");
    let before = peak_rss_kib(d.pid());
    // 16 connections each announce a 60 MiB request, send 40 MiB of it (as
    // much as the daemon takes in 3 s) and stall. Held whole, that is 640 MiB;
    // a partition receives 4 large frames at a time, and the others wait unread.
    let senders: Vec<_> = (0..16)
        .map(|_| {
            let mut s = raw_hello(&sock);
            std::thread::spawn(move || {
                s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut sent = 0;
                if s.write_all(&(60u32 << 20).to_le_bytes()).is_ok() {
                    let chunk = vec![0u8; 1 << 20];
                    while sent < 40 && s.write_all(&chunk).is_ok() {
                        sent += 1;
                    }
                }
                (s, sent)
            })
        })
        .collect();
    let streams: Vec<(UnixStream, usize)> =
        senders.into_iter().map(|t| t.join().unwrap()).collect();
    v.signs(50);
    let grown_mib = peak_rss_kib(d.pid()).saturating_sub(before) / 1024;
    let sent: usize = streams.iter().map(|(_, n)| n).sum();
    assert!(
        grown_mib < 320,
        "the daemon's peak memory grew by {grown_mib} MiB for partial frames ({sent} MiB sent)"
    );
    // Each is closed in its turn, saying why.
    for (mut s, _) in streams {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let e = last_error(&mut s);
        assert_eq!(e.kind(), Some(ErrorCode::FrameTimeout), "{e}");
    }
    still_up(d, &mut v);
}

#[test]
fn sessions_left_open_stop_at_the_quota_with_a_clear_error() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    // The default quota: 1,024 sessions.
    d.partition("hostile");
    let mut conns: Vec<Client> = (0..4)
        .map(|_| Client::connect(d.socket("hostile")).unwrap())
        .collect();
    let mut opened = 0;
    let err = 'open: loop {
        for c in &mut conns {
            match c.open_session(false) {
                Ok(_) => opened += 1,
                Err(e) => break 'open e,
            }
        }
        assert!(opened <= 1024, "past the quota");
    };
    assert_eq!(opened, 1024);
    assert_eq!(err.code(), ErrorCode::QuotaExceeded, "{err}");
    assert!(err.to_string().contains("sessions"), "{err}");
    // Every connection of the tenant hears the same; the victim does not.
    for c in &mut conns {
        assert_eq!(
            c.open_session(true).unwrap_err().code(),
            ErrorCode::QuotaExceeded
        );
    }
    for _ in 0..100 {
        let s = v.client.open_session(false).unwrap();
        v.client.close_session(s).unwrap();
    }
    v.signs(100);
    // A closed connection takes its sessions with it.
    drop(conns.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match conns[0].open_session(false) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the closed connection's sessions were kept: {e}"),
        }
    }
    still_up(d, &mut v);
}

/// An RSA key pair of `bits`, session objects.
fn rsa_pair(c: &mut Client, s: u64, bits: u64) -> Result<(u64, u64), ihsm_client::ClientError> {
    c.generate_key_pair(
        s,
        Mechanism::RsaKeyPairGen,
        vec![Attribute::ulong(ck::CKA_MODULUS_BITS, bits)],
        vec![],
    )
}

#[test]
fn an_rsa_key_generation_loop_waits_its_turn_while_another_partition_signs() {
    let dir = state_dir();
    // One slow request of a partition at a time.
    config(dir.path(), "max_slow_requests_per_partition = 1\n");
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    d.partition("hostile");
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..6)
        .map(|_| {
            let (mut c, s) = d.tenant("hostile");
            let stop = Arc::clone(&stop);
            let made = Arc::clone(&made);
            std::thread::spawn(move || {
                let mut mine = 0;
                while !stop.load(Ordering::Relaxed) || mine < 2 {
                    let (pk, sk) = rsa_pair(&mut c, s, 2048).unwrap();
                    c.destroy_object(s, pk).unwrap();
                    c.destroy_object(s, sk).unwrap();
                    mine += 1;
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The victim signs, and makes keys of its own (slow requests of its own
    // partition, which do not wait behind the hostile tenant's).
    let deadline = Instant::now() + Duration::from_secs(120);
    while made.load(Ordering::Relaxed) < 12 {
        assert!(Instant::now() < deadline, "the key generations never ran");
        v.signs(20);
    }
    for i in 0..3 {
        let (c, s) = (&mut v.client, v.session);
        ec_pair(c, s, &format!("victim-extra-{i}"));
        let (pk, sk) = rsa_pair(c, s, 2048).unwrap();
        c.destroy_object(s, pk).unwrap();
        c.destroy_object(s, sk).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let log = d.log();
    let waits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("slow request waits its turn"))
        .collect();
    assert!(
        waits.iter().any(|l| l.contains("hostile")),
        "the hostile tenant's generations never queued"
    );
    assert!(
        !waits.iter().any(|l| l.contains("victim")),
        "the victim waited behind another partition: {waits:?}"
    );
    still_up(d, &mut v);
}

/// How a hostile tenant abuses its shared-memory rings (issue 16), as
/// `ihsm-bench --hostile`'s ring attack does.
#[derive(Debug, Clone, Copy)]
enum RingAbuse {
    /// Random bytes published in the submission ring, sometimes with a random
    /// slot header too.
    Garbage,
    /// A request published, then the submission head and the completion tail
    /// rewritten again and again while the daemon reads them.
    RacingIndexes,
    /// Requests and never an answer taken: the completion ring fills.
    NeverDrained,
}

/// Opens ringed connections to `path` one after another and abuses each until
/// the daemon closes it (10 s at most, else the test fails), until `stop` and
/// at least three; returns how many the daemon closed.
fn abuse_rings(path: &std::path::Path, how: RingAbuse, stop: &AtomicBool) -> usize {
    const SQ_HEAD: usize = 16 * 4;
    const CQ_TAIL: usize = 80 * 4;
    let ping = frame::encode(&Request::Ping).unwrap()[frame::PREFIX..].to_vec();
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ how as u64;
    let mut random = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut closed = 0;
    while !stop.load(Ordering::Relaxed) || closed < 3 {
        let mut s = raw_hello(path);
        let (region, bell, _memfd) = common::raw_open_ring(&mut s);
        let bell = UnixStream::from(bell);
        bell.set_nonblocking(true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let sq = region.ring(ihsm_ring::Which::Submission);
        let started = Instant::now();
        let mut round = 0u64;
        loop {
            round += 1;
            // Whatever the ring says (full; corrupt once the daemon wiped it).
            match how {
                RingAbuse::Garbage => {
                    let len = usize::try_from(random()).unwrap() % (region.capacity() + 1);
                    let junk: Vec<u8> = (0..len).map(|_| random() as u8).collect();
                    let _ = sq.push(&junk, 0);
                    if round.is_multiple_of(2) {
                        let at = usize::try_from(random()).unwrap() % region.len();
                        region.hostile_write(at, &random().to_le_bytes());
                    }
                }
                RingAbuse::RacingIndexes => {
                    let _ = sq.push(&ping, 0);
                    for _ in 0..256 {
                        let v = random();
                        region.hostile_write(SQ_HEAD, &((v >> 8) as u32 % 8).to_le_bytes());
                        region.hostile_write(CQ_TAIL, &((v >> 40) as u32).to_le_bytes());
                    }
                }
                RingAbuse::NeverDrained => {
                    let _ = sq.push(&ping, 0);
                }
            }
            let _ = (&bell).write(&[1]);
            let mut b = [0u8; 4096];
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "{e}"
                ),
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{how:?}: the daemon did not close the connection in 10 s"
            );
        }
        closed += 1;
    }
    closed
}

#[test]
fn a_tenant_abusing_its_rings_is_closed_and_others_carry_on() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    let mut v = Victim::new(&d);
    d.partition("hostile");
    // The hostile tenant's own honest connection, with rings, lives through it.
    let mut honest = Client::connect_with(d.socket("hostile"), "test", true).unwrap();
    // Rings come at a connection's second call.
    honest.ping().unwrap();
    honest.ping().unwrap();
    assert!(honest.uses_rings());
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let attackers: Vec<_> = [
        RingAbuse::Garbage,
        RingAbuse::RacingIndexes,
        RingAbuse::NeverDrained,
    ]
    .into_iter()
    .map(|how| {
        let path = d.socket("hostile");
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || (how, abuse_rings(&path, how, &stop)))
    })
    .collect();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        v.signs(20);
        honest.ping().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut closed = 0;
    for a in attackers {
        let (how, n) = a.join().unwrap();
        eprintln!("{how:?}: {n} connections closed by the daemon");
        closed += n;
    }
    // Named in the log, and not a line per connection: a line a second at
    // most, saying how many.
    let log = d.log();
    let lines = log.matches("bad shared-memory ring").count();
    let secs = began.elapsed().as_secs() as usize;
    eprintln!("{lines} log lines for {closed} connections in {secs} s");
    assert!(lines >= 1, "{log}");
    assert!(lines <= secs + 2, "{lines} lines in {secs} s:\n{log}");
    assert!(log.contains("closed="), "{log}");
    honest.ping().unwrap();
    let (mut fresh, _) = d.tenant("hostile");
    fresh.ping().unwrap();
    still_up(d, &mut v);
}
