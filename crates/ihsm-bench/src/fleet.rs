//! `--fleet`: what moving a partition costs. A real etcd (three members,
//! Debian's `etcd`) and two `ihsmd` hosts of one development fleet, set up as the
//! README's development fleet is. For each `--keys` size: a partition of that
//! many EC P-256 key pairs on host-0, an application signing in a loop through an
//! [`ihsm_client::follow::Follower`] all along, and `--runs` moves back and forth
//! between the hosts. Reported per size: each move's time as the source measured
//! it, and the blackout, the longest one call of the application took from the
//! move's start until a second after the move returned (the call that waited for
//! the partition, followed it and joined its application there), p50 and max
//! over the moves, and how many moves resumed the application (same session,
//! no new login);
//! the application's p50 away from moves for scale. Then the registry's cost on a
//! request served locally: ECDSA P-256 signs on a fleet host's partition against
//! the same binary standing alone, run by run (A B A B ...).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ihsm_client::Client;
use ihsm_client::follow::{Follower, Route};
use ihsm_fleet::testing::{self, EtcdCluster};
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::types::UserType;
use serde::Serialize;

use crate::measure::{self, Sample, Summary, median, quantile_us};
use crate::report::{Machine, write_json};
use crate::setup::{self, Daemon};
use crate::{Args, Error, Result};

/// Hosts in the fleet.
const HOSTS: usize = 2;
/// etcd members.
const MEMBERS: usize = 3;
/// Every wait on another process is bounded by this.
const WAIT: Duration = Duration::from_secs(120);
/// How long after a move returns its blackout may still show.
const AFTER: Duration = Duration::from_secs(1);
/// A move of many keys is one admin call that lasts; bounded by this.
const MOVE_TIMEOUT: Duration = Duration::from_secs(600);
/// The named curve P-256's OID, DER.
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn client(what: &'static str) -> impl Fn(ihsm_client::ClientError) -> Error {
    move |e| Error::Client(format!("{what}: {e}"))
}

fn ecdsa() -> Mechanism {
    Mechanism::EcdsaHash(Hash::Sha256)
}

/// One `ihsmd` of the fleet; SIGTERM and waited for on drop.
#[derive(Debug)]
struct Host {
    child: Option<Child>,
}

impl Host {
    fn start(ihsmd: &Path, state: &Path, args: &[String]) -> Result<(Self, Client)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("ihsmd.log"))?;
        let mut child = Command::new(ihsmd)
            .arg("--state")
            .arg(state)
            .args([
                "--log-level",
                &std::env::var("IHSM_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::Setup(format!("cannot start {}: {e}", ihsmd.display())))?;
        let admin = setup::wait_until_up(&mut child, state)?;
        Ok((Self { child: Some(child) }, admin))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = i32::try_from(c.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = c.wait();
        }
    }
}

/// `ihsm --state STATE ARGS...`: its standard output, or why it failed.
fn ihsm(bin: &Path, state: &Path, args: &[&str]) -> Result<String> {
    let o = Command::new(bin)
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Setup(format!("cannot run {}: {e}", bin.display())))?;
    if !o.status.success() {
        return Err(Error::Setup(format!(
            "ihsm {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| Error::Setup(format!("{}: not UTF-8", p.display())))
}

/// Development devices under one development vendor, each one's IDevIDs in the
/// trust bundle every host's security.toml pins (the README's steps).
fn provision(dir: &Path, ihsm_bin: &Path, ihsmd: &Path) -> Result<Vec<PathBuf>> {
    let states: Vec<PathBuf> = (0..HOSTS).map(|i| dir.join(format!("host-{i}"))).collect();
    let vendor = states[0].join("dev-keys");
    for (i, s) in states.iter().enumerate() {
        if i == 0 {
            ihsm(ihsm_bin, s, &["provision", "--dev"])?;
        } else {
            ihsm(
                ihsm_bin,
                s,
                &["provision", "--dev", "--vendor-keys", path(&vendor)?],
            )?;
        }
        let (host, _) = Host::start(ihsmd, s, &[])?;
        ihsm(
            ihsm_bin,
            s,
            &["rot", "certs", "--out", path(&s.join("certs"))?],
        )?;
        drop(host);
    }
    let bundle = dir.join("trust.pem");
    let mut args = vec![
        "fleet".to_owned(),
        "trust".into(),
        "--development".into(),
        "--out".into(),
        path(&bundle)?.into(),
        "--vendor-keys".into(),
        path(&vendor.join("vendor"))?.into(),
    ];
    for s in &states {
        args.extend(["--idevid".into(), path(&s.join("certs"))?.to_owned()]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let table = ihsm(ihsm_bin, &states[0], &a)?;
    for s in &states {
        std::fs::create_dir_all(s.join("fleet/refvals"))?;
        std::fs::copy(&bundle, s.join("fleet/trust.pem"))?;
        let mut sec = std::fs::read_to_string(s.join("security.toml"))?;
        sec.push_str(&table);
        std::fs::write(s.join("security.toml"), sec)?;
    }
    Ok(states)
}

/// Each host's reference values (for the manifest its start signed), into
/// every host's `fleet/refvals`.
fn publish_refvals(dir: &Path, ihsm_bin: &Path, states: &[PathBuf]) -> Result<()> {
    for (i, s) in states.iter().enumerate() {
        let out = dir.join(format!("refvals-{i}.cose"));
        ihsm(
            ihsm_bin,
            s,
            &[
                "manifest",
                "refvals",
                "--manifest",
                path(&s.join("manifest.bin"))?,
                "--vendor-keys",
                path(&s.join("dev-keys/vendor"))?,
                "--owner-keys",
                path(&s.join("dev-keys/owner"))?,
                "--lifecycle",
                "development",
                "--min-svn",
                "0",
                "--out",
                path(&out)?,
            ],
        )?;
        for t in states {
            std::fs::copy(&out, t.join(format!("fleet/refvals/host-{i}.cose")))?;
        }
    }
    Ok(())
}

/// Waits (bounded) until every host appraises every host affirmed.
fn until_affirmed(ihsm_bin: &Path, states: &[PathBuf]) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    for s in states {
        loop {
            let seen = ihsm(ihsm_bin, s, &["fleet", "hosts", "--json"])
                .ok()
                .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok())
                .map(|v| {
                    v["hosts"].as_array().map_or(0, |hs| {
                        hs.iter().filter(|h| h["verdict"] == "affirmed").count()
                    })
                })
                .unwrap_or(0);
            if seen == states.len() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Setup(format!(
                    "{} sees {seen} of {} hosts affirmed after {} s",
                    s.display(),
                    states.len(),
                    WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// A logged-in read-write session on `socket`.
fn login(socket: &Path, pin: &[u8]) -> Result<(Client, u64)> {
    let mut c = Client::connect(socket).map_err(client("partition socket"))?;
    let s = c.open_session(true).map_err(client("open session"))?;
    c.login(s, UserType::User, pin).map_err(client("login"))?;
    Ok((c, s))
}

/// `n` EC P-256 token key pairs on two connections at once; the first one's
/// private key handle.
fn make_keys(socket: &Path, pin: &[u8], n: u64) -> Result<(u64, Duration)> {
    const THREADS: u64 = 2;
    let begun = Instant::now();
    let bar = measure::bar(n, &format!("{n} key pairs"));
    let made = AtomicU64::new(0);
    let firsts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (bar, made) = (&bar, &made);
                scope.spawn(move || -> Result<Option<u64>> {
                    let (mut c, s) = login(socket, pin)?;
                    let mut first = None;
                    for i in (t..n).step_by(THREADS as usize) {
                        let label = format!("key-{i}").into_bytes();
                        let (_, sk) = c
                            .generate_key_pair(
                                s,
                                Mechanism::EcKeyPairGen,
                                vec![
                                    Attribute::bytes(cryptoki_sys::CKA_EC_PARAMS, P256.to_vec()),
                                    Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
                                    Attribute::bytes(cryptoki_sys::CKA_LABEL, label.clone()),
                                ],
                                vec![
                                    Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
                                    Attribute::bytes(cryptoki_sys::CKA_LABEL, label),
                                ],
                            )
                            .map_err(client("key generation"))?;
                        first.get_or_insert(sk);
                        made.fetch_add(1, Ordering::Relaxed);
                        bar.inc(1);
                    }
                    Ok(first)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Client("a key maker panicked".into())))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    bar.finish_and_clear();
    let key = firsts
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| Error::Usage("--keys: at least 1".into()))?;
    Ok((key, begun.elapsed()))
}

/// One call of the application: when it began (since the run's start) and how
/// long it took, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Call {
    at: u64,
    took: u64,
}

/// What the application saw over the whole run.
#[derive(Debug, Default)]
struct Seen {
    calls: Vec<Call>,
    failed: Vec<String>,
    followed: u64,
    resumed: u64,
}

/// An application signing in a loop through a follower until stopped.
struct App {
    t0: Instant,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    host: Arc<std::sync::Mutex<String>>,
    thread: std::thread::JoinHandle<Seen>,
}

impl App {
    fn start(routes: Vec<Route>, pin: &[u8], key: u64) -> Self {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let host = Arc::new(std::sync::Mutex::new(String::new()));
        let (flag, count, where_) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&host));
        let mut f = Follower::new(routes, pin, true, WAIT);
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let data = [0x5au8; 32];
            while !flag.load(Ordering::Relaxed) {
                let at = Instant::now();
                let r = f.run(|c, s| c.sign_once(s, ecdsa(), key, data.to_vec()));
                let took = at.elapsed();
                match r {
                    Ok(_) => {
                        seen.calls.push(Call {
                            at: nanos(at - t0),
                            took: nanos(took),
                        });
                        count.fetch_add(1, Ordering::Relaxed);
                        if let (Some(h), Ok(mut w)) = (f.host(), where_.lock())
                            && *w != h
                        {
                            h.clone_into(&mut w);
                        }
                    }
                    Err(e) => seen.failed.push(e.to_string()),
                }
            }
            seen.followed = f.moves();
            seen.resumed = f.resumed();
            seen
        });
        Self {
            t0,
            stop,
            ok,
            host,
            thread,
        }
    }

    fn now(&self) -> u64 {
        nanos(self.t0.elapsed())
    }

    /// Waits (bounded) until the application has signed `calls` more times on
    /// `host`.
    fn signs_on(&self, host: &str, calls: u64) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut from = None;
        loop {
            let on = self.host.lock().is_ok_and(|h| *h == host);
            let n = self.ok.load(Ordering::Relaxed);
            if on {
                let f = *from.get_or_insert(n);
                if n >= f + calls {
                    return Ok(());
                }
            }
            if self.thread.is_finished() || Instant::now() > deadline {
                return Err(Error::Client(format!(
                    "the application does not sign on {host}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> Result<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| Error::Client("the application panicked".into()))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One move as measured.
#[derive(Clone, Debug, Serialize)]
pub struct Move {
    pub from: String,
    pub to: String,
    /// The move's own time, as the source reports it.
    pub move_ms: u64,
    /// The admin call's time, as this program saw it.
    pub call_ms: f64,
    pub bundle_bytes: u64,
    /// The longest application call from the move's start until [`AFTER`]
    /// after it returned.
    pub blackout_ms: f64,
}

/// One partition size.
#[derive(Debug, Serialize)]
pub struct Size {
    pub keys: u64,
    /// Token objects in the partition (a key pair is two).
    pub objects: u64,
    pub make_secs: f64,
    pub moves: Vec<Move>,
    pub move_ms_p50: f64,
    pub move_ms_max: f64,
    pub blackout_ms_p50: f64,
    pub blackout_ms_max: f64,
    /// The application's calls away from any move.
    pub app_p50_us: f64,
    pub app_calls: u64,
    pub app_failed: u64,
    pub app_followed: u64,
    /// Of the moves followed, those where the application resumed (joined
    /// by its token, no new login).
    pub app_resumed: u64,
}

/// What `--fleet` measured.
#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub machine: Machine,
    pub hosts: usize,
    pub etcd_members: usize,
    pub runs: usize,
    pub sizes: Vec<Size>,
    /// ECDSA P-256 signs on a fleet host's partition.
    pub in_fleet: Summary,
    /// The same on the same binary not in a fleet.
    pub alone: Summary,
    /// Median over runs of in-fleet ops/s over alone ops/s.
    pub ops_ratio: f64,
    /// p50 in the fleet over p50 alone, all runs pooled.
    pub p50_ratio: f64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Moves `name` (on host-0) `runs` times between the hosts while an
/// application signs.
fn measure_moves(
    admins: &mut [Client],
    states: &[PathBuf],
    name: &str,
    key: u64,
    pin: &[u8],
    runs: usize,
) -> Result<(Vec<Move>, Seen, Vec<u64>)> {
    let routes = states
        .iter()
        .enumerate()
        .map(|(i, s)| Route {
            host: format!("host-{i}"),
            socket: ihsm_proto::layout::partition_socket(s, name),
        })
        .collect();
    let app = App::start(routes, pin, key);
    app.signs_on("host-0", 2000)?;
    let mut moves = Vec::new();
    let mut windows = Vec::new();
    for r in 0..runs {
        let (from, to) = (r % HOSTS, (r + 1) % HOSTS);
        let to_name = format!("host-{to}");
        let a = app.now();
        let report = admins[from]
            .move_partition(name, &to_name)
            .map_err(client("partition move"))?;
        let b = app.now();
        windows.push((a, b + nanos(AFTER)));
        moves.push(Move {
            from: format!("host-{from}"),
            to: to_name.clone(),
            move_ms: report.millis,
            call_ms: ms(b - a),
            bundle_bytes: report.bundle_bytes,
            blackout_ms: 0.0,
        });
        app.signs_on(&to_name, 2000)?;
        std::thread::sleep(AFTER);
    }
    let seen = app.finish()?;
    for (m, (a, b)) in moves.iter_mut().zip(&windows) {
        m.blackout_ms = ms(seen
            .calls
            .iter()
            .filter(|c| c.at <= *b && c.at + c.took >= *a)
            .map(|c| c.took)
            .max()
            .unwrap_or(0));
    }
    // The application's calls away from any move, sorted.
    let mut quiet: Vec<u64> = seen
        .calls
        .iter()
        .filter(|c| {
            !windows
                .iter()
                .any(|(a, b)| c.at <= *b && c.at + c.took >= *a)
        })
        .map(|c| c.took)
        .collect();
    quiet.sort_unstable();
    Ok((moves, seen, quiet))
}

fn p50_max(mut v: Vec<f64>) -> (f64, f64) {
    let max = v.iter().copied().fold(f64::NAN, f64::max);
    (median(&mut v), max)
}

/// Signs on `socket` for `d`, every latency kept.
fn signs(socket: &Path, pin: &[u8], d: Duration) -> Result<Sample> {
    let (mut c, s) = login(socket, pin)?;
    let (_, key) = c
        .generate_key_pair(
            s,
            Mechanism::EcKeyPairGen,
            vec![Attribute::bytes(cryptoki_sys::CKA_EC_PARAMS, P256.to_vec())],
            vec![],
        )
        .map_err(client("key generation"))?;
    let data = [0x5au8; 32];
    let mut sample = Sample::default();
    let begun = Instant::now();
    while begun.elapsed() < d {
        let t = Instant::now();
        c.sign_once(s, ecdsa(), key, data.to_vec())
            .map_err(client("sign"))?;
        sample.latencies.push(nanos(t.elapsed()));
    }
    sample.elapsed = begun.elapsed();
    sample.ops = sample.latencies.len() as u64;
    Ok(sample)
}

/// Runs the fleet benchmark.
///
/// # Errors
/// When etcd or a host cannot be set up, a move fails, or the application
/// saw a failed call.
pub fn run(args: &Args) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ihsm-bench-fleet")
        .tempdir()?;
    let r = measure(args, dir.path());
    // IHSM_BENCH_LOG=LEVEL: the hosts log at that level, kept here after.
    if std::env::var_os("IHSM_BENCH_LOG").is_some() {
        for i in 0..HOSTS {
            let to = format!("ihsm-bench-fleet-host-{i}.log");
            if std::fs::copy(dir.path().join(format!("host-{i}/ihsmd.log")), &to).is_ok() {
                eprintln!("host-{i}'s log: {to}");
            }
        }
    }
    r
}

fn measure(args: &Args, dir: &Path) -> Result<()> {
    if !testing::etcd_installed() {
        return Err(Error::Setup(
            "--fleet needs etcd on the PATH (Debian: apt-get install etcd-server)".into(),
        ));
    }
    let ihsmd = setup::ihsmd_binary(args.ihsmd.as_deref())?;
    let ihsm_bin = ihsmd.with_file_name("ihsm");
    if !ihsm_bin.exists() {
        return Err(Error::Setup(format!(
            "{} not found: build it (cargo build --release)",
            ihsm_bin.display()
        )));
    }
    let pin = args.pin.as_bytes();
    eprintln!("starting etcd ({MEMBERS} members) and provisioning {HOSTS} development hosts ...");
    let etcd = EtcdCluster::start(dir, MEMBERS).map_err(|e| Error::Setup(format!("etcd: {e}")))?;
    let states = provision(dir, &ihsm_bin, &ihsmd)?;
    let mut hosts = Vec::new();
    let mut admins = Vec::new();
    for (i, s) in states.iter().enumerate() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let (h, mut admin) = Host::start(
            &ihsmd,
            s,
            &[
                "--fleet-etcd".into(),
                etcd.endpoints().join(","),
                "--fleet-host".into(),
                format!("host-{i}"),
                "--fleet-peer".into(),
                format!("127.0.0.1:{port}"),
            ],
        )?;
        admin
            .set_timeout(Some(MOVE_TIMEOUT))
            .map_err(client("admin socket"))?;
        hosts.push(h);
        admins.push(admin);
    }
    publish_refvals(dir, &ihsm_bin, &states)?;
    until_affirmed(&ihsm_bin, &states)?;

    let mut sizes = Vec::new();
    for &n in &args.keys {
        let name = format!("bench-{n}");
        setup::create_partition(&mut admins[0], &name, &args.pin)?;
        let socket = ihsm_proto::layout::partition_socket(&states[0], &name);
        eprintln!("{name}: making {n} EC P-256 key pairs ...");
        let (key, made) = make_keys(&socket, pin, n)?;
        eprintln!(
            "{name}: {n} key pairs in {:.1} s; {} moves while an application signs ...",
            made.as_secs_f64(),
            args.runs
        );
        // A long set-up may have outlasted a lease under load: both hosts back
        // in the fleet first.
        until_affirmed(&ihsm_bin, &states)?;
        let (moves, seen, quiet) = measure_moves(&mut admins, &states, &name, key, pin, args.runs)?;
        if let Some(first) = seen.failed.first() {
            return Err(Error::Client(format!(
                "{name}: {} of the application's calls failed during the moves; the first: {first}",
                seen.failed.len()
            )));
        }
        let (move_ms_p50, move_ms_max) = p50_max(moves.iter().map(|m| m.move_ms as f64).collect());
        let (blackout_ms_p50, blackout_ms_max) =
            p50_max(moves.iter().map(|m| m.blackout_ms).collect());
        let size = Size {
            keys: n,
            objects: 2 * n,
            make_secs: made.as_secs_f64(),
            move_ms_p50,
            move_ms_max,
            blackout_ms_p50,
            blackout_ms_max,
            app_p50_us: quantile_us(&quiet, 0.5),
            app_calls: seen.calls.len() as u64,
            app_failed: seen.failed.len() as u64,
            app_followed: seen.followed,
            app_resumed: seen.resumed,
            moves,
        };
        eprintln!(
            "{name}: move p50 {move_ms_p50:.0} ms, max {move_ms_max:.0} ms; blackout p50 {blackout_ms_p50:.1} ms, max {blackout_ms_max:.1} ms; {} calls, none failed; {} of {} moves resumed the application",
            size.app_calls, size.app_resumed, size.app_followed
        );
        sizes.push(size);
    }

    // The registry's cost on a request served here: the fleet host against the
    // same binary alone.
    eprintln!("ECDSA P-256 signs on a fleet host against the same ihsmd alone ...");
    let alone = Daemon::start(&ihsmd, &args.pin, "", |_| Ok(()), &[])?;
    let name = "bench-local";
    setup::create_partition(&mut admins[0], name, &args.pin)?;
    let fleet_socket = ihsm_proto::layout::partition_socket(&states[0], name);
    let alone_socket = ihsm_proto::layout::partition_socket(alone.state(), setup::TOKEN);
    let per_run = args.duration / u32::try_from(args.runs).unwrap_or(u32::MAX);
    let (mut in_fleet, mut by_itself) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        in_fleet.push(signs(&fleet_socket, pin, per_run)?);
        by_itself.push(signs(&alone_socket, pin, per_run)?);
    }
    let in_fleet_s = Summary::of("in the fleet", &in_fleet);
    let alone_s = Summary::of("alone", &by_itself);
    let report = FleetReport {
        machine: Machine::this(),
        hosts: HOSTS,
        etcd_members: MEMBERS,
        runs: args.runs,
        sizes,
        ops_ratio: measure::median_ratio(&in_fleet_s.runs, &alone_s.runs),
        p50_ratio: in_fleet_s.p50_us / alone_s.p50_us,
        in_fleet: in_fleet_s,
        alone: alone_s,
    };
    drop((alone, hosts, etcd));
    print(&report);
    if let Some(p) = &args.json {
        write_json(p, &report)?;
    }
    Ok(())
}

fn print(r: &FleetReport) {
    println!(
        "fleet: {} hosts, etcd {} members, {} moves per size, back and forth ({}, {} cores)",
        r.hosts, r.etcd_members, r.runs, r.machine.cpu, r.machine.cores
    );
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>14} {:>14} {:>10} {:>8}",
        "keys",
        "bundle",
        "move p50",
        "move max",
        "blackout p50",
        "blackout max",
        "app p50",
        "failed"
    );
    for s in &r.sizes {
        let bundle = s.moves.first().map_or(0, |m| m.bundle_bytes);
        println!(
            "{:>8} {:>8.1}M {:>10.0}ms {:>10.0}ms {:>12.1}ms {:>12.1}ms {:>8.0}us {:>8}",
            s.keys,
            bundle as f64 / 1e6,
            s.move_ms_p50,
            s.move_ms_max,
            s.blackout_ms_p50,
            s.blackout_ms_max,
            s.app_p50_us,
            s.app_failed
        );
    }
    println!(
        "served locally, ECDSA P-256 sign: in the fleet {:.0} ops/s p50 {:.1} us, alone {:.0} ops/s p50 {:.1} us: {:.2}x ops/s, {:.2}x p50",
        r.in_fleet.ops_per_sec,
        r.in_fleet.p50_us,
        r.alone.ops_per_sec,
        r.alone.p50_us,
        r.ops_ratio,
        r.p50_ratio
    );
}
