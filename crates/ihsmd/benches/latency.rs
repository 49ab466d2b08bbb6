//! Round trips to a real `ihsmd` (release build), each beside its reference measured
//! in the same run:
//!
//! - a trivial request (ping) over a partition's Unix socket, against a raw
//!   Unix-socket echo of the same size between two threads of this process, both
//!   sleeping in the kernel between messages and polling (the floor);
//! - ECDSA P-256 sign through the client, against the same sign on the core in
//!   this process (no socket, no daemon);
//! - the same two over the network mode (TLS 1.3 on loopback), on a kept
//!   connection and with a fresh connection per request (TCP, TLS handshake,
//!   hello; for the sign also a session and a login, as a fresh client must).
//!
//! `cargo bench -p ihsmd --bench latency` (IHSM_BENCH_N scales the counts).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki_sys as ck;
use ihsm_client::Client;
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::msg::{PartitionSpec, SecretBytes};
use ihsm_proto::types::UserType;

#[path = "../tests/common/certs.rs"]
mod certs;
use certs::{ca, leaf};

const SO_PIN: &[u8] = b"so-pin-1234";
const PIN: &[u8] = b"user-pin-1234";
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const PIN_ITERATIONS: u32 = 10_000;

fn n(base: usize) -> usize {
    std::env::var("IHSM_BENCH_N")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(base, |f| ((base as f64) * f).max(10.0) as usize)
}

struct Stats {
    p50: f64,
    p99: f64,
    p999: f64,
}

fn measure(count: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..(count / 10).max(5) {
        f();
    }
    let mut lat = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        f();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    Stats {
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
    }
}

fn row(what: &str, s: &Stats, reference: Option<(&str, &Stats)>) {
    let r = reference.map_or_else(String::new, |(name, r)| {
        format!(
            "  | {name}: p50 {:.1} us ({:+.1} us, {:.2}x)",
            r.p50,
            s.p50 - r.p50,
            s.p50 / r.p50
        )
    });
    println!(
        "{what:<60} p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us{r}",
        s.p50, s.p99, s.p999
    );
}

/// A process's user and system CPU time so far, in ms (/proc/PID/stat).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks * 1000 / rustix::param::clock_ticks_per_second()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.0.id()).unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.0.wait();
    }
}

fn start(state: &Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_ihsmd"))
        .arg("--state")
        .arg(state)
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Owned (and reaped) from here on.
    let d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Client::connect(state.join("admin.sock"))
            && c.ping().is_ok()
        {
            return d;
        }
        assert!(Instant::now() < deadline, "ihsmd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ec_key(c: &mut Client, s: u64) -> u64 {
    let (_, sk) = c
        .generate_key_pair(
            s,
            Mechanism::EcKeyPairGen,
            vec![
                Attribute::bytes(ck::CKA_EC_PARAMS, P256.to_vec()),
                Attribute::bytes(ck::CKA_LABEL, b"bench".to_vec()),
                Attribute::bool(ck::CKA_TOKEN, true),
            ],
            vec![
                Attribute::bytes(ck::CKA_LABEL, b"bench".to_vec()),
                Attribute::bool(ck::CKA_TOKEN, true),
            ],
        )
        .unwrap();
    sk
}

/// The core's own ECDSA P-256 sign, in this process.
fn core_sign(count: usize) -> Stats {
    use ihsm_core::{Device, DeviceConfig, PartitionSpec};
    let dir = tempfile::tempdir().unwrap();
    let state = ihsm_rot::state::StateDir::new(dir.path());
    state.provision_dev(false, &[3; 48]).unwrap();
    let mut cfg = DeviceConfig::new(dir.path());
    cfg.pin_iterations = 1000;
    let d = Device::start(cfg, state.boot(&[3; 48]).unwrap()).unwrap();
    let info = d
        .create_partition(PartitionSpec {
            name: "core".into(),
            owner_uid: 0,
            owner_gid: 0,
            so_pin: zeroize::Zeroizing::new(SO_PIN.to_vec()),
            user_pin: Some(zeroize::Zeroizing::new(PIN.to_vec())),
            quotas: ihsm_core::quota::Quotas::default(),
            policy: Default::default(),
        })
        .unwrap();
    let p = d.partition(info.id).unwrap();
    let s = p.open_session(1, true).unwrap();
    p.login(1, s, UserType::User, PIN).unwrap();
    let (_, sk) = p
        .generate_key_pair(
            1,
            s,
            &Mechanism::EcKeyPairGen,
            &[Attribute::bytes(ck::CKA_EC_PARAMS, P256.to_vec())],
            &[],
        )
        .unwrap();
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let msg = [0x5a; 64];
    measure(count, || {
        std::hint::black_box(p.sign_once(1, s, &mech, sk, &msg).unwrap());
    })
}

/// Reads exactly `buf.len()` bytes, sleeping in the kernel or polling without
/// sleeping (yielding between tries), as the client and daemon do.
fn read_all(s: &mut UnixStream, buf: &mut [u8], spin: bool) -> std::io::Result<()> {
    if !spin {
        return s.read_exact(buf);
    }
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A raw round trip of `len` bytes between two threads over a Unix socket pair.
fn echo(count: usize, len: usize, spin: bool) -> Stats {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.set_nonblocking(spin).unwrap();
    b.set_nonblocking(spin).unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = vec![0u8; len];
        while read_all(&mut b, &mut buf, spin).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let out = vec![7u8; len];
    let mut back = vec![0u8; len];
    let s = measure(count, || {
        a.write_all(&out).unwrap();
        read_all(&mut a, &mut back, spin).unwrap();
    });
    drop(a);
    server.join().unwrap();
    s
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    std::fs::write(
        state.join("ihsmd.toml"),
        format!("[daemon]\npin_iterations = {PIN_ITERATIONS}\n"),
    )
    .unwrap();
    // Network mode on loopback, with one client certificate mapped to the partition.
    let net = state.join("network");
    std::fs::create_dir_all(&net).unwrap();
    let authority = ca("bench CA");
    let (spem, skey, _) = leaf(&authority, &["localhost"], false);
    std::fs::write(net.join("server.pem"), spem).unwrap();
    std::fs::write(net.join("server.key"), skey).unwrap();
    std::fs::write(net.join("ca.pem"), authority.pem()).unwrap();
    let (cpem, ckey, cder) = leaf(&authority, &["bench-client"], true);
    std::fs::write(net.join("client.pem"), cpem).unwrap();
    std::fs::write(net.join("client.key"), ckey).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(
        state.join("security.toml"),
        ihsm_rot::config::DEFAULT_SECURITY_CONFIG.replace(
            "enabled = false",
            &format!(
                "enabled = true\nlisten = \"{addr}\"\ncertificate = \"network/server.pem\"\nkey = \"network/server.key\"\nclient_ca = \"network/ca.pem\"\n[[network.client]]\nfingerprint = \"{}\"\npartition = \"bench\"\n",
                hex::encode(ihsm_crypto::hash::sha256(&cder))
            ),
        ),
    )
    .unwrap();
    let daemon = start(state);
    let uid = rustix::process::geteuid().as_raw();
    Client::connect(state.join("admin.sock"))
        .unwrap()
        .create_partition(PartitionSpec {
            name: "bench".into(),
            owner_uid: uid,
            owner_gid: u32::MAX,
            so_pin: SecretBytes::new(SO_PIN),
            user_pin: Some(SecretBytes::new(PIN)),
            quotas: None,
            policy: Default::default(),
        })
        .unwrap();
    let sock = state.join("partitions/bench.sock");
    let mut c = Client::connect(&sock).unwrap();
    let s = c.open_session(true).unwrap();
    c.login(s, UserType::User, PIN).unwrap();
    let sk = ec_key(&mut c, s);
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let msg = vec![0x5a; 64];

    println!(
        "ihsmd round trips ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The ping request and reply frames are 5 and 5 bytes; the echo sends 5.
    let sleeping = echo(n(20_000), 5, false);
    row(
        "raw Unix-socket echo, 5 bytes, threads sleep",
        &sleeping,
        None,
    );
    let floor = echo(n(20_000), 5, true);
    row(
        "raw Unix-socket echo, 5 bytes, threads poll (floor)",
        &floor,
        None,
    );
    // The same application on a second connection that keeps every request on
    // the socket (IHSM_TRANSPORT=socket), measured beside the rings'.
    assert!(c.uses_rings(), "no shared-memory rings");
    let token = c.app_token().unwrap();
    let mut cs = Client::connect_with(&sock, "bench socket", false).unwrap();
    cs.join_app(&token).unwrap();
    let ping_socket = measure(n(20_000), || cs.ping().unwrap());
    row(
        "ping over the partition socket (IHSM_TRANSPORT=socket)",
        &ping_socket,
        Some(("polling echo", &floor)),
    );
    let ping = measure(n(20_000), || c.ping().unwrap());
    row(
        "ping through the shared-memory rings",
        &ping,
        Some(("socket", &ping_socket)),
    );
    let core = core_sign(n(10_000));
    row("ECDSA P-256 sign in the core, in-process", &core, None);
    let sign_socket = measure(n(10_000), || {
        std::hint::black_box(cs.sign_once(s, mech.clone(), sk, msg.clone()).unwrap());
    });
    row(
        "ECDSA P-256 sign through the client (Unix socket)",
        &sign_socket,
        Some(("core", &core)),
    );
    let sign = measure(n(10_000), || {
        std::hint::black_box(c.sign_once(s, mech.clone(), sk, msg.clone()).unwrap());
    });
    row(
        "ECDSA P-256 sign through the client (rings)",
        &sign,
        Some(("socket", &sign_socket)),
    );
    let aes = c
        .generate_key(
            s,
            Mechanism::AesKeyGen,
            vec![
                Attribute::ulong(ck::CKA_VALUE_LEN, 32),
                Attribute::bool(ck::CKA_TOKEN, true),
            ],
        )
        .unwrap();
    let gcm = Mechanism::AesGcm {
        iv: ihsm_proto::mech::GcmIv::Generate,
        aad: Vec::new(),
        tag_bits: 128,
    };
    let block = vec![0x5a; 4096];
    let gcm_socket = measure(n(10_000), || {
        std::hint::black_box(cs.encrypt_once(s, gcm.clone(), aes, &block).unwrap());
    });
    row(
        "AES-256-GCM 4 KiB encrypt through the client (Unix socket)",
        &gcm_socket,
        None,
    );
    let gcm_ring = measure(n(10_000), || {
        std::hint::black_box(c.encrypt_once(s, gcm.clone(), aes, &block).unwrap());
    });
    row(
        "AES-256-GCM 4 KiB encrypt through the client (rings)",
        &gcm_ring,
        Some(("socket", &gcm_socket)),
    );
    let fresh_unix = measure(n(2_000), || {
        let mut c = Client::connect(&sock).unwrap();
        c.ping().unwrap();
    });
    row(
        "fresh Unix connection + hello + ping",
        &fresh_unix,
        Some(("ping", &ping)),
    );
    let fresh_socket = measure(n(2_000), || {
        let mut c = Client::connect_with(&sock, "bench", false).unwrap();
        c.ping().unwrap();
    });
    row(
        "fresh Unix connection + hello + ping, no rings",
        &fresh_socket,
        Some(("with rings", &fresh_unix)),
    );
    // Idle: both connections open (one with rings), nothing asked.
    let idle = Duration::from_secs(5);
    let (d0, c0) = (cpu_ms(daemon.0.id()), cpu_ms(std::process::id()));
    std::thread::sleep(idle);
    let (d1, c1) = (cpu_ms(daemon.0.id()), cpu_ms(std::process::id()));
    println!(
        "idle {} s, connected with rings: daemon CPU {} ms, client CPU {} ms",
        idle.as_secs(),
        d1 - d0,
        c1 - c0
    );

    let tls = Client::tls_config(
        &net.join("ca.pem"),
        &net.join("client.pem"),
        &net.join("client.key"),
    )
    .unwrap();
    let mut t = Client::connect_tls(&addr, "localhost", Arc::clone(&tls)).unwrap();
    let ts = t.open_session(true).unwrap();
    t.login(ts, UserType::User, PIN).unwrap();
    let tping = measure(n(10_000), || t.ping().unwrap());
    row(
        "ping over TLS 1.3 loopback, kept connection",
        &tping,
        Some(("Unix ping", &ping)),
    );
    let tsign = measure(n(5_000), || {
        std::hint::black_box(t.sign_once(ts, mech.clone(), sk, msg.clone()).unwrap());
    });
    row(
        "ECDSA P-256 sign over TLS, kept connection",
        &tsign,
        Some(("core", &core)),
    );
    let tfresh = measure(n(500), || {
        let mut c = Client::connect_tls(&addr, "localhost", Arc::clone(&tls)).unwrap();
        c.ping().unwrap();
    });
    row(
        "ping over TLS, fresh connection (TCP + handshake)",
        &tfresh,
        Some(("Unix ping", &ping)),
    );
    let tfresh_sign = measure(n(300), || {
        let mut c = Client::connect_tls(&addr, "localhost", Arc::clone(&tls)).unwrap();
        let s = c.open_session(false).unwrap();
        c.login(s, UserType::User, PIN).unwrap();
        std::hint::black_box(c.sign_once(s, mech.clone(), sk, msg.clone()).unwrap());
    });
    row(
        "ECDSA sign over TLS, fresh connection + session + login",
        &tfresh_sign,
        Some(("core", &core)),
    );
    println!(
        "(login hashes the PIN: PBKDF2-HMAC-SHA-256 with {PIN_ITERATIONS} iterations in this run)"
    );
}
