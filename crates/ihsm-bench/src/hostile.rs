//! `--hostile`: how much one hostile tenant slows another. The harness starts its
//! own ihsmd with two partitions, the victim (the harness's usual one) and
//! `hostile`, and measures the victim's ECDSA P-256 signature, one request at a
//! time, while the hostile partition's owner does nothing (idle) and under each
//! attack in turn: a flood of connections, connections dripping a request a byte
//! a second, sessions opened up to the quota and more asked for, a tight loop
//! of RSA key generations on several connections, and connections whose
//! shared-memory rings (issue 16) the tenant abuses: garbage in the slots,
//! indexes racing the daemon's reads, a completion ring never drained. Runs
//! interleave the attacks (idle, flood, drip, ..., idle, flood, ...), so the
//! machine's drift hits them alike, and every ratio is to the idle latency of
//! the same run.
//!
//! The victim is measured two ways: back to back (its connection stays hot, on
//! a thread of its own in the daemon) and paced, a request every millisecond
//! (the connection sleeps between requests and is served by the daemon's
//! reactor, which the attacks load). `--hostile-without-limits` starts the
//! daemon with the per-partition limits opened wide, to show what they buy.

use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ihsm_client::{Client, ClientError};
use ihsm_proto::attr::Attribute;
use ihsm_proto::frame;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::msg::Hello;
use ihsm_proto::types::UserType;
use ihsm_proto::{Reply, Request, Response};
use ihsm_ring::{Geometry, Region, Which};
use serde::Serialize;

use crate::measure::{Sample, Summary, median, quantile_us};
use crate::report::Machine;
use crate::setup::{self, Daemon, TOKEN};
use crate::{Args, Error, Result};

/// PBKDF2 iterations of the benchmark daemon's PINs (logins are not measured).
const PIN_ITERATIONS: u32 = 1000;
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The hostile tenant's partition.
const HOSTILE: &str = "hostile";
/// The limits opened wide (`--hostile-without-limits`).
const WITHOUT_LIMITS: &str = "max_connections_per_partition = 4096\nframe_timeout_secs = 3600\n\
                              max_slow_requests_per_partition = 1024\n";
/// Connections dripping a request.
const DRIPS: usize = 200;
/// Connections generating RSA keys.
const GENERATORS: usize = 4;
/// The paced victim's pause between requests.
const PACE: Duration = Duration::from_millis(1);
/// How long the daemon has to close a connection whose ring the attacker
/// corrupted (it should at its next look; longer is a failure of the bench).
const RING_CLOSE: Duration = Duration::from_secs(10);

fn client(what: &str) -> impl FnOnce(ClientError) -> Error + '_ {
    move |e| Error::Client(format!("{what}: {e}"))
}

/// What the hostile tenant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Nothing.
    Idle,
    /// Holds every connection its partition may have and keeps asking for more.
    ConnectionFlood,
    /// 200 connections each announce a request and send it a byte a second.
    SlowDrip,
    /// Opens sessions up to the quota, never closes them, keeps asking for more.
    SessionsLeftOpen,
    /// Four connections generate RSA key pairs back to back.
    RsaKeygenLoop,
    /// Three connections at a time abuse their shared-memory rings: one
    /// publishes garbage in its submission slots, one writes its indexes out
    /// of range and moves them while the daemon reads them, one sends requests
    /// and never drains its completion ring. The daemon closes each (the
    /// connection's error); the attacker opens another.
    RingAbuse,
    /// The control: two threads of the tenant's burn CPU and ask the HSM
    /// nothing. On a host HSM tenants share the host's CPUs; this is what any
    /// busy neighbour costs, whatever the daemon does.
    CpuBurn,
}

const ATTACKS: [Attack; 7] = [
    Attack::Idle,
    Attack::ConnectionFlood,
    Attack::SlowDrip,
    Attack::SessionsLeftOpen,
    Attack::RsaKeygenLoop,
    Attack::RingAbuse,
    Attack::CpuBurn,
];

impl Attack {
    fn describe(self, rsa_bits: u32) -> String {
        match self {
            Self::Idle => "none (idle)".into(),
            Self::ConnectionFlood => "connection flood".into(),
            Self::SlowDrip => format!("slow drip ({DRIPS} connections)"),
            Self::SessionsLeftOpen => "sessions left open".into(),
            Self::RsaKeygenLoop => format!("RSA-{rsa_bits} keygen loop ({GENERATORS} conns)"),
            Self::RingAbuse => "ring garbage, races, undrained".into(),
            Self::CpuBurn => "control: 2 threads burn CPU".into(),
        }
    }
}

/// What the attacker saw: requests (or connections) that went through, those
/// refused, and the first refusal's words.
#[derive(Debug, Default, Serialize, Clone)]
pub struct Seen {
    pub ok: u64,
    pub refused: u64,
    pub closed_by_daemon: u64,
    pub refusal: Option<String>,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
    refusal: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn refused(&self, why: &dyn std::fmt::Display) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.refusal.lock()
            && r.is_none()
        {
            *r = Some(why.to_string());
        }
    }

    fn seen(&self) -> Seen {
        Seen {
            ok: self.ok.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            closed_by_daemon: self.closed.load(Ordering::Relaxed),
            refusal: self.refusal.lock().ok().and_then(|r| r.clone()),
        }
    }
}

/// An attack under way.
struct Running {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Running {
    fn end(self) -> Result<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join()
                .map_err(|_| Error::Client("an attacking thread panicked".into()))??;
        }
        Ok(self.tally.seen())
    }
}

/// The hostile tenant's sockets and PIN.
#[derive(Clone)]
struct Tenant {
    socket: PathBuf,
    pin: Vec<u8>,
    rsa_bits: u32,
}

impl Tenant {
    fn session(&self) -> Result<(Client, u64)> {
        let mut c = Client::connect(&self.socket).map_err(client("hostile connection"))?;
        let s = c.open_session(true).map_err(client("hostile session"))?;
        c.login(s, UserType::User, &self.pin)
            .map_err(client("hostile login"))?;
        Ok((c, s))
    }

    /// Starts `attack`; returns once it is in full swing.
    fn start(&self, attack: Attack) -> Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut threads = Vec::new();
        let ready = Arc::new(AtomicU64::new(0));
        // `n` threads of one attack, each with its own handles to the shared state;
        // returns how many must report ready.
        type Attacker = fn(&Tenant, &AtomicBool, &Tally, &AtomicU64) -> Result<()>;
        let mut launch = |n: usize, attacker: Attacker| {
            for _ in 0..n {
                let (t, stop, tally, ready) = (
                    self.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&tally),
                    Arc::clone(&ready),
                );
                threads.push(std::thread::spawn(move || {
                    attacker(&t, &stop, &tally, &ready)
                }));
            }
            n as u64
        };
        let want_ready = match attack {
            Attack::Idle => 0,
            Attack::ConnectionFlood => launch(2, flood),
            Attack::SlowDrip => launch(1, drip),
            Attack::SessionsLeftOpen => launch(1, sessions),
            Attack::RsaKeygenLoop => launch(GENERATORS, keygen),
            Attack::RingAbuse => {
                launch(1, ring_garbage) + launch(1, ring_race) + launch(1, ring_undrained)
            }
            Attack::CpuBurn => {
                for _ in 0..2 {
                    let stop = Arc::clone(&stop);
                    threads.push(std::thread::spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for i in 0..10_000u64 {
                                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                            }
                        }
                        Ok(())
                    }));
                }
                0
            }
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Relaxed) < want_ready {
            if threads.iter().any(JoinHandle::is_finished) || Instant::now() > deadline {
                let r = Running {
                    stop,
                    tally,
                    threads,
                };
                r.end()?;
                return Err(Error::Client(format!(
                    "the {attack:?} attack did not get going"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Running {
            stop,
            tally,
            threads,
        })
    }
}

/// Holds connections until refused, then keeps connecting.
fn flood(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let mut held = Vec::new();
    let mut full = false;
    while !stop.load(Ordering::Relaxed) {
        match Client::connect(&t.socket) {
            Ok(c) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if held.len() < 4096 {
                    held.push(c);
                } else if !full {
                    full = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tally.refused(&e);
                if !full {
                    full = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// Connections that announce a 64 KiB request and send it a byte a second; a
/// connection the daemon closes is replaced.
fn drip(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let open = || -> Result<UnixStream> {
        let mut s = raw_hello(&t.socket, "drip")?;
        s.write_all(&(64u32 << 10).to_le_bytes())?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    let mut conns = Vec::with_capacity(DRIPS);
    for _ in 0..DRIPS {
        conns.push(open()?);
        tally.ok.fetch_add(1, Ordering::Relaxed);
    }
    ready.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        for c in &mut conns {
            if c.write_all(&[0x42]).is_err() {
                tally.closed.fetch_add(1, Ordering::Relaxed);
                match open() {
                    Ok(s) => {
                        *c = s;
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tally.refused(&e),
                }
            }
        }
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// A connection that speaks the protocol itself, after its hello.
fn raw_hello(socket: &Path, name: &str) -> Result<UnixStream> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(&frame::encode(&Hello::new(name)).map_err(|e| Error::Client(e.to_string()))?)?;
    let mut buf = Vec::new();
    match frame::read::<_, ihsm_proto::HelloReply>(&mut s, &mut buf) {
        Ok(ihsm_proto::HelloReply::Accepted { .. }) => Ok(s),
        Ok(ihsm_proto::HelloReply::Refused(e)) => {
            Err(Error::Client(format!("{name} refused: {e}")))
        }
        Err(e) => Err(Error::Client(format!("{name} hello: {e}"))),
    }
}

/// A hostile tenant's shared-memory rings, asked for as `ihsm-client` does
/// (`Request::OpenRing`, the region and the doorbell received with
/// `SCM_RIGHTS`), then written as no client would.
struct RawRing {
    socket: UnixStream,
    region: Region,
    bell: UnixStream,
    /// xorshift64 state: the attacker's garbage.
    x: u64,
}

impl RawRing {
    /// `None`: the daemon refused (a quota), which the tally counts.
    fn open(t: &Tenant, name: &str, tally: &Tally) -> Result<Option<Self>> {
        let mut socket = match raw_hello(&t.socket, name) {
            Ok(s) => s,
            Err(e) => {
                tally.refused(&e);
                return Ok(None);
            }
        };
        socket.set_read_timeout(Some(RING_CLOSE))?;
        socket.write_all(
            &frame::encode(&Request::OpenRing).map_err(|e| Error::Client(e.to_string()))?,
        )?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut bytes = [0u8; 256];
        let mut got = 0;
        let mut fds: Vec<OwnedFd> = Vec::new();
        // The answer is one small frame; the descriptors come with its first byte.
        let body = loop {
            let m = rustix::net::recvmsg(
                &socket,
                &mut [IoSliceMut::new(&mut bytes[got..])],
                &mut control,
                rustix::net::RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(|e| Error::Client(format!("{name}: open_ring's answer: {e}")))?;
            for msg in control.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(r) = msg {
                    fds.extend(r);
                }
            }
            if m.bytes == 0 {
                return Err(Error::Client(format!("{name}: closed at open_ring")));
            }
            got += m.bytes;
            if got >= frame::PREFIX {
                let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if got >= frame::PREFIX + len.min(bytes.len() - frame::PREFIX) {
                    break &bytes[frame::PREFIX..got];
                }
            }
            if got == bytes.len() {
                return Err(Error::Client(format!(
                    "{name}: open_ring's answer too long"
                )));
            }
        };
        let resp: Response =
            frame::decode(body).map_err(|e| Error::Client(format!("{name}: {e}")))?;
        let geo = match resp {
            Ok(Reply::Ring { slots, slot_bytes }) if fds.len() == 2 => {
                Geometry { slots, slot_bytes }
            }
            Ok(other) => {
                return Err(Error::Client(format!(
                    "{name}: open_ring answered {} with {} descriptors",
                    other.name(),
                    fds.len()
                )));
            }
            Err(e) => {
                tally.refused(&e);
                return Ok(None);
            }
        };
        let bell = UnixStream::from(
            fds.pop()
                .ok_or_else(|| Error::Client("no doorbell".into()))?,
        );
        bell.set_nonblocking(true)?;
        let memfd = fds.pop().ok_or_else(|| Error::Client("no region".into()))?;
        let region =
            Region::attach(&memfd, geo).map_err(|e| Error::Client(format!("{name}: {e}")))?;
        tally.ok.fetch_add(1, Ordering::Relaxed);
        let x = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                & u128::from(u64::MAX),
        )
        .unwrap_or(1)
            | 1;
        Ok(Some(Self {
            socket,
            region,
            bell,
            x,
        }))
    }

    fn random(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }

    /// Rings the daemon's doorbell, whether it sleeps or not (a hostile client
    /// may ring it at will).
    fn ring(&self) {
        let _ = (&self.bell).write(&[1]);
    }

    /// Whether the daemon has closed the connection, looking for `wait` at
    /// most (whatever it wrote on the socket meanwhile is read and dropped).
    fn closed(&mut self, wait: Duration) -> Result<bool> {
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_micros(1))))?;
        let mut b = [0u8; 4096];
        match self.socket.read(&mut b) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// A request's body, as the submission ring carries it.
    fn body(req: &Request) -> Result<Vec<u8>> {
        let mut f = frame::encode(req).map_err(|e| Error::Client(e.to_string()))?;
        Ok(f.split_off(frame::PREFIX))
    }
}

/// Byte offsets in the control page of the words the attacker races
/// (ihsm-ring's layout): the submission ring's head, the completion ring's tail.
const SQ_HEAD: usize = 16 * 4;
const CQ_TAIL: usize = 80 * 4;

/// Runs `abuse` on one ringed connection after another until `stop`, each
/// until the daemon closes it (which it must within [`RING_CLOSE`]); ready
/// once the daemon has closed the first.
fn ring_attacker(
    t: &Tenant,
    name: &str,
    stop: &AtomicBool,
    tally: &Tally,
    ready: &AtomicU64,
    mut abuse: impl FnMut(&mut RawRing) -> Result<()>,
) -> Result<()> {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut r) = RawRing::open(t, name, tally)? else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let started = Instant::now();
        loop {
            abuse(&mut r)?;
            if r.closed(Duration::from_millis(1))? {
                tally.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if started.elapsed() > RING_CLOSE {
                return Err(Error::Client(format!(
                    "{name}: the daemon did not close a connection whose ring it abused for {RING_CLOSE:?}"
                )));
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        if first {
            first = false;
            ready.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Garbage published in the submission ring: random bytes of a random length
/// in slots whose headers are well formed (so they reach the decoder), or
/// random headers too (so the ring's checks catch them).
fn ring_garbage(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let mut round = 0u64;
    ring_attacker(t, "ring-garbage", stop, tally, ready, |r| {
        round += 1;
        let cap = r.region.capacity();
        let len = usize::try_from(r.random()).unwrap_or(0) % (cap + 1);
        let mut junk = Vec::with_capacity(len + 8);
        while junk.len() < len {
            junk.extend_from_slice(&r.random().to_le_bytes());
        }
        junk.truncate(len);
        // Whatever the ring says (full, or corrupt once the daemon has
        // wiped it): the attacker does not care, and looks for the close.
        let _ = r.region.ring(Which::Submission).push(&junk, 0);
        if round.is_multiple_of(2) {
            // The header of the slot just published (or any), at random.
            let slots = r.region.geometry().slots as usize;
            let slot_bytes = r.region.geometry().slot_bytes as usize;
            let page = rustix::param::page_size();
            let at = page + (usize::try_from(r.random()).unwrap_or(0) % slots) * slot_bytes;
            let h = r.random().to_le_bytes();
            r.region.hostile_write(at, &h);
        }
        r.ring();
        Ok(())
    })
}

/// Indexes racing the daemon: a well-formed request published, then the
/// submission head and the completion tail rewritten again and again, out of
/// range or just off the true value, while the daemon reads them.
fn ring_race(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let ping = RawRing::body(&Request::Ping)?;
    ring_attacker(t, "ring-race", stop, tally, ready, |r| {
        let _ = r.region.ring(Which::Submission).push(&ping, 0);
        r.ring();
        for i in 0..256u32 {
            let v = r.random();
            #[allow(clippy::cast_possible_truncation)]
            let (head, tail) = if v & 1 == 0 {
                // Near the true values: racing, not just wrong.
                ((v >> 8) as u32 % 8, (v >> 16) as u32 % 8)
            } else {
                ((v >> 8) as u32, (v >> 40) as u32)
            };
            r.region.hostile_write(SQ_HEAD, &head.to_le_bytes());
            r.region.hostile_write(CQ_TAIL, &tail.to_le_bytes());
            if i % 64 == 63 {
                r.ring();
            }
        }
        Ok(())
    })
}

/// Requests (pings) sent one after another and never an answer taken: the
/// completion ring fills, and the daemon's next answer finds no room.
fn ring_undrained(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let ping = RawRing::body(&Request::Ping)?;
    ring_attacker(t, "ring-undrained", stop, tally, ready, |r| {
        if r.region
            .ring(Which::Submission)
            .push(&ping, 0)
            .unwrap_or(false)
        {
            r.ring();
        }
        Ok(())
    })
}

/// Sessions up to the quota on four connections, then more asked for.
fn sessions(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(Client::connect(&t.socket).map_err(client("hostile connection"))?);
    }
    let mut full = false;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let c = &mut conns[i % 4];
        i += 1;
        match c.open_session(false) {
            Ok(_) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if tally.ok.load(Ordering::Relaxed) > 1_000_000 {
                    return Err(Error::Client("no session quota".into()));
                }
            }
            Err(e) => {
                tally.refused(&e);
                if !full {
                    full = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

/// RSA key pairs (session objects) back to back, each destroyed.
fn keygen(t: &Tenant, stop: &AtomicBool, tally: &Tally, ready: &AtomicU64) -> Result<()> {
    let (mut c, s) = t.session()?;
    ready.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let (pk, sk) = c
            .generate_key_pair(
                s,
                Mechanism::RsaKeyPairGen,
                vec![Attribute::ulong(
                    cryptoki_sys::CKA_MODULUS_BITS,
                    u64::from(t.rsa_bits),
                )],
                vec![],
            )
            .map_err(client("RSA key generation"))?;
        tally.ok.fetch_add(1, Ordering::Relaxed);
        c.destroy_object(s, pk).map_err(client("destroy"))?;
        c.destroy_object(s, sk).map_err(client("destroy"))?;
    }
    Ok(())
}

/// One attack and one way of measuring the victim.
#[derive(Debug, Serialize)]
pub struct Row {
    pub attack: Attack,
    pub victim: String,
    pub summary: Summary,
    /// The median over runs of each run's p50 (p99) over that run's idle p50
    /// (p99): what the report prints. (Pooled latencies weigh a slow run less,
    /// having fewer operations in the same time.)
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    /// p50 and p99 over the idle row's, all runs pooled.
    pub p50_ratio_pooled: f64,
    pub p99_ratio_pooled: f64,
    /// Fresh victim connections (one per run) that were served.
    pub victim_connects_ok: usize,
    pub victim_connect_refusal: Option<String>,
    /// What the attacker saw, all runs together.
    pub attacker: Seen,
}

/// What `--hostile` measured.
#[derive(Debug, Serialize)]
pub struct HostileReport {
    pub machine: Machine,
    pub limits: String,
    pub rsa_bits: u32,
    pub runs: usize,
    pub rows: Vec<Row>,
}

/// Runs the comparison.
///
/// # Errors
/// When the daemon cannot be set up or a victim's request fails.
pub fn run(args: &Args) -> Result<()> {
    let binary = setup::ihsmd_binary(args.ihsmd.as_deref())?;
    let mut config = format!("[daemon]\npin_iterations = {PIN_ITERATIONS}\n");
    let limits = if args.hostile_without_limits {
        config.push_str(WITHOUT_LIMITS);
        "opened wide (--hostile-without-limits)".to_owned()
    } else {
        "the defaults".to_owned()
    };
    eprintln!("starting ihsmd (limits: {limits}) ...");
    let daemon = Daemon::start(&binary, &args.pin, &config, |_| Ok(()), &[])?;
    let pin = args.pin.as_bytes();
    let mut admin = Client::connect(ihsm_proto::layout::admin_socket(daemon.state()))
        .map_err(client("admin socket"))?;
    setup::create_partition(&mut admin, HOSTILE, &args.pin)?;
    let tenant = Tenant {
        socket: ihsm_proto::layout::partition_socket(daemon.state(), HOSTILE),
        pin: pin.to_vec(),
        rsa_bits: args.rsa_bits,
    };

    // The victim: a key, one kept connection, one session.
    let victim_socket = ihsm_proto::layout::partition_socket(daemon.state(), TOKEN);
    let (mut victim, vs) = login(&victim_socket, pin)?;
    let (_, key) = victim
        .generate_key_pair(
            vs,
            Mechanism::EcKeyPairGen,
            vec![
                Attribute::bytes(cryptoki_sys::CKA_EC_PARAMS, P256.to_vec()),
                Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
            ],
            vec![Attribute::bool(cryptoki_sys::CKA_TOKEN, true)],
        )
        .map_err(client("victim key generation"))?;
    let data = [0x5au8; 32];
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sign = |c: &mut Client| -> Result<()> {
        c.sign_once(vs, mech.clone(), key, data.to_vec())
            .map(drop)
            .map_err(client("victim sign"))
    };

    let per_run = args.duration / u32::try_from(args.runs).unwrap_or(u32::MAX);
    let half = per_run / 2;
    // [attack][back to back, paced]
    let mut samples: Vec<[Vec<Sample>; 2]> = ATTACKS.iter().map(|_| Default::default()).collect();
    let mut seen: Vec<Seen> = vec![Seen::default(); ATTACKS.len()];
    let mut connects: Vec<(usize, Option<String>)> = vec![(0, None); ATTACKS.len()];
    let bar = crate::measure::bar((args.runs * ATTACKS.len()) as u64, "hostile");
    for _ in 0..args.runs {
        for (i, attack) in ATTACKS.iter().enumerate() {
            let running = tenant.start(*attack)?;
            samples[i][0].push(timed(half, args.iterations, None, || sign(&mut victim))?);
            samples[i][1].push(timed(half, args.iterations, Some(PACE), || {
                sign(&mut victim)
            })?);
            // A new connection of the victim's, as an application starting.
            match login(&victim_socket, pin) {
                Ok((mut c, s)) => {
                    connects[i].0 += 1;
                    let _ = c.close_session(s);
                }
                Err(e) => connects[i].1 = Some(e.to_string()),
            }
            let s = running.end()?;
            let t = &mut seen[i];
            t.ok += s.ok;
            t.refused += s.refused;
            t.closed_by_daemon += s.closed_by_daemon;
            if t.refusal.is_none() {
                t.refusal = s.refusal;
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let mut rows = Vec::new();
    for (mode, victim_name) in ["back to back", "paced, 1 ms apart"].iter().enumerate() {
        let idle = Summary::of("idle", &samples[0][mode]);
        for (i, attack) in ATTACKS.iter().enumerate() {
            let summary = Summary::of(&attack.describe(args.rsa_bits), &samples[i][mode]);
            let per_run = |q: f64| {
                let mut r: Vec<f64> = samples[i][mode]
                    .iter()
                    .zip(&samples[0][mode])
                    .map(|(a, b)| quantile(a, q) / quantile(b, q))
                    .collect();
                median(&mut r)
            };
            rows.push(Row {
                attack: *attack,
                victim: (*victim_name).to_owned(),
                p50_ratio: per_run(0.5),
                p99_ratio: per_run(0.99),
                p50_ratio_pooled: summary.p50_us / idle.p50_us,
                p99_ratio_pooled: summary.p99_us / idle.p99_us,
                summary,
                victim_connects_ok: connects[i].0,
                victim_connect_refusal: connects[i].1.clone(),
                attacker: seen[i].clone(),
            });
        }
    }
    let report = HostileReport {
        machine: Machine::this(),
        limits,
        rsa_bits: args.rsa_bits,
        runs: args.runs,
        rows,
    };
    print(&report);
    if let Some(p) = &args.json {
        crate::report::write_json(p, &report)?;
    }
    drop(victim);
    drop(daemon);
    Ok(())
}

fn login(socket: &Path, pin: &[u8]) -> Result<(Client, u64)> {
    let mut c = Client::connect(socket).map_err(client("victim connection"))?;
    let s = c.open_session(true).map_err(client("victim session"))?;
    c.login(s, UserType::User, pin)
        .map_err(client("victim login"))?;
    Ok((c, s))
}

fn print(r: &HostileReport) {
    println!(
        "\nThe victim partition's ECDSA P-256 sign while another partition attacks; {} ({} cores), \
         limits: {}, {} runs",
        r.machine.cpu, r.machine.cores, r.limits, r.runs
    );
    println!(
        "  {:<34} {:<18} {:>9} {:>9} {:>11} {:>11}",
        "attack", "victim", "p50 µs", "p99 µs", "p50 / idle", "p99 / idle"
    );
    for row in &r.rows {
        let s = &row.summary;
        println!(
            "  {:<34} {:<18} {:>9.1} {:>9.1} {:>10.2}x {:>10.2}x",
            s.target, row.victim, s.p50_us, s.p99_us, row.p50_ratio, row.p99_ratio,
        );
    }
    println!("  (ratios: the median over runs of each run's quantile over that run's idle one)");
    println!("What the attacker heard, and whether a new victim connection was served:");
    // Each attack once (the rows of the first way of measuring the victim).
    for row in r.rows.iter().take(ATTACKS.len()).skip(1) {
        let a = &row.attacker;
        let saw = match (row.attack, &a.refusal) {
            (Attack::CpuBurn, _) => "(no requests)".to_owned(),
            (Attack::RingAbuse, why) => format!(
                "{} connections with rings, {} closed by the daemon{}",
                a.ok,
                a.closed_by_daemon,
                why.as_ref()
                    .map_or_else(String::new, |w| format!(", {} refused: {w}", a.refused))
            ),
            (_, Some(why)) => format!("{} served, {} refused: {why}{}", a.ok, a.refused, closed(a)),
            (_, None) => format!("{} served, none refused{}", a.ok, closed(a)),
        };
        let victim = match &row.victim_connect_refusal {
            None => format!(
                "victim connected {} of {} times",
                row.victim_connects_ok, r.runs
            ),
            Some(e) => format!("a victim connection was REFUSED: {e}"),
        };
        println!("  {:<34} {saw}; {victim}", row.summary.target);
    }
}

fn closed(a: &Seen) -> String {
    if a.closed_by_daemon == 0 {
        String::new()
    } else {
        format!(", {} closed by the daemon", a.closed_by_daemon)
    }
}

fn quantile(s: &Sample, q: f64) -> f64 {
    let mut v = s.latencies.clone();
    v.sort_unstable();
    quantile_us(&v, q)
}

/// Calls `op` one request at a time for `d` (or `iterations` times), with
/// `pace` between requests if given.
fn timed(
    d: Duration,
    iterations: Option<u64>,
    pace: Option<Duration>,
    mut op: impl FnMut() -> Result<()>,
) -> Result<Sample> {
    let mut s = Sample::default();
    let start = Instant::now();
    let mut busy = Duration::ZERO;
    loop {
        let t = Instant::now();
        op()?;
        let done = Instant::now();
        busy += done - t;
        s.latencies
            .push(u64::try_from((done - t).as_nanos()).unwrap_or(u64::MAX));
        let enough = match iterations {
            Some(n) => s.latencies.len() as u64 >= n,
            None => done - start >= d,
        };
        if enough {
            s.ops = s.latencies.len() as u64;
            // Throughput over the time spent in requests, not in pauses.
            s.elapsed = busy;
            return Ok(s);
        }
        if let Some(p) = pace {
            std::thread::sleep(p);
        }
    }
}
