//! A development fleet, for real: a 3-member etcd cluster (Debian's etcd-server)
//! and three `ihsmd` hosts, three development devices with their own fuses under
//! one development vendor (`provision --dev --vendor-keys`), set up as the README
//! says: each host's pinned IDevIDs and the vendor's keys in one trust bundle that
//! every host's security.toml pins, and every host's reference values in every
//! host's `fleet/refvals`.
//!
//! `ihsm fleet hosts` on one host shows all three affirmed; a record written into
//! etcd directly (not by a host) is shown refused; a host killed leaves when its
//! lease ends; with two etcd members down the view is refused quickly while the
//! hosts keep serving, and it heals when they return. A host whose trust bundle is
//! not the pinned one does not start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, ihsm};
use ihsm_fleet::testing::{self, EtcdCluster};
use serde_json::Value;

const HOSTS: usize = 3;
/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(60);

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(state: &Path, args: &[&str]) -> String {
    let o = ihsm(state, args);
    assert!(o.status.success(), "ihsm {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cannot_run(why: &str) {
    assert!(
        std::env::var("IHSM_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{why}: IHSM_REQUIRE_ROOT=1 says this run must be able to run it, so it fails instead of skipping"
    );
    eprintln!("\n*** SKIPPED: {why} (with IHSM_REQUIRE_ROOT=1 this fails) ***\n");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fleet_args(etcd: &EtcdCluster, i: usize, peer: u16) -> Vec<String> {
    vec![
        "--fleet-etcd".into(),
        etcd.endpoints().join(","),
        "--fleet-host".into(),
        format!("host-{i}"),
        "--fleet-peer".into(),
        format!("127.0.0.1:{peer}"),
    ]
}

fn start(state: &Path, args: &[String]) -> Daemon {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_with(state, &a)
}

/// `ihsm fleet hosts --json` on `state`, once it satisfies `pred` (bounded).
fn hosts_until(state: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let o = ihsm(state, &["fleet", "hosts", "--json"]);
        if o.status.success() {
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            if pred(&v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn affirmed(v: &Value) -> Vec<String> {
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["verdict"] == "affirmed")
        .map(|h| h["host"].as_str().unwrap().to_owned())
        .collect()
}

/// Provisions `n` development hosts and writes the fleet's trust into each:
/// the bundle pinned in security.toml. Returns the state directories.
fn provision(dir: &Path, n: usize) -> Vec<PathBuf> {
    let states: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("host-{i}"))).collect();
    // Under keys that are not a development device's: refused, naming them,
    // and nothing provisioned.
    let stray = dir.join("stray");
    let o = ihsm(
        &stray,
        &[
            "provision",
            "--dev",
            "--vendor-keys",
            dir.join("nothing").to_str().unwrap(),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("nothing"),
        "{}",
        text(&o)
    );
    assert!(!stray.join("fuses.bin").exists());
    // The first host provisions a development device on its first run; the
    // others are development devices under its development keys (one vendor
    // for the fleet). Each one's IDevIDs are read back for the bundle.
    for (i, s) in states.iter().enumerate() {
        if i > 0 {
            let keys = states[0].join("dev-keys");
            run(
                s,
                &[
                    "provision",
                    "--dev",
                    "--vendor-keys",
                    keys.to_str().unwrap(),
                ],
            );
            for f in ["vendor/ecc384-0.key.pem", "owner/mldsa87-0.pub.pem"] {
                assert_eq!(
                    std::fs::read(s.join("dev-keys").join(f)).unwrap(),
                    std::fs::read(keys.join(f)).unwrap(),
                    "{f}"
                );
            }
        }
        let d = Daemon::start(s);
        run(
            s,
            &["rot", "certs", "--out", s.join("certs").to_str().unwrap()],
        );
        drop(d);
    }
    let bundle = dir.join("trust.pem");
    let mut args: Vec<String> = vec!["fleet".into(), "trust".into()];
    for s in &states {
        args.extend(["--idevid".into(), s.join("certs").display().to_string()]);
    }
    // One vendor: the first host's development keys, which the others share.
    args.extend([
        "--vendor-keys".into(),
        states[0].join("dev-keys/vendor").display().to_string(),
    ]);
    args.extend([
        "--out".into(),
        bundle.display().to_string(),
        "--development".into(),
    ]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&states[0], &a);
    let pin = out
        .lines()
        .find_map(|l| l.strip_prefix("trust_sha384 = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(pin.len(), 96, "{out}");
    assert!(out.contains("accept_development = true"), "{out}");
    // What `ihsm fleet trust` prints is the table to append, as the README does.
    for s in &states {
        std::fs::create_dir_all(s.join("fleet/refvals")).unwrap();
        std::fs::copy(&bundle, s.join("fleet/trust.pem")).unwrap();
        let mut sec = std::fs::read_to_string(s.join("security.toml")).unwrap();
        sec.push_str(&out);
        std::fs::write(s.join("security.toml"), sec).unwrap();
    }
    states
}

/// Each host's reference values (for the manifest its start re-signed), into
/// every host's `fleet/refvals`.
fn publish_refvals(dir: &Path, states: &[PathBuf]) {
    for (i, s) in states.iter().enumerate() {
        let out = dir.join(format!("refvals-{i}.cose"));
        run(
            s,
            &[
                "manifest",
                "refvals",
                "--manifest",
                s.join("manifest.bin").to_str().unwrap(),
                "--vendor-keys",
                s.join("dev-keys/vendor").to_str().unwrap(),
                "--owner-keys",
                s.join("dev-keys/owner").to_str().unwrap(),
                "--lifecycle",
                "development",
                "--min-svn",
                "0",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        for t in states {
            std::fs::copy(&out, t.join(format!("fleet/refvals/host-{i}.cose"))).unwrap();
        }
    }
}

#[test]
fn a_development_fleet_of_three_hosts_on_a_three_member_etcd() {
    if !testing::etcd_installed() {
        cannot_run("etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(dir.path(), 3).unwrap();
    let states = provision(dir.path(), HOSTS);

    // A host whose bundle is not the pinned one refuses to start, naming it.
    let tampered = dir.path().join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    let mut bundle = std::fs::read_to_string(states[0].join("fleet/trust.pem")).unwrap();
    bundle.push('\n');
    std::fs::write(states[0].join("fleet/trust.pem"), &bundle).unwrap();
    let mut cmd = std::process::Command::new(common::ihsmd());
    cmd.arg("--state").arg(&states[0]);
    cmd.args(fleet_args(&etcd, 0, free_port()));
    let o = common::output_within(&mut cmd, WAIT);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("SHA-384") && text(&o).contains("pins"),
        "{}",
        text(&o)
    );
    bundle.pop();
    std::fs::write(states[0].join("fleet/trust.pem"), &bundle).unwrap();

    let mut daemons: Vec<Option<Daemon>> = states
        .iter()
        .enumerate()
        .map(|(i, s)| Some(start(s, &fleet_args(&etcd, i, free_port()))))
        .collect();
    // Until the reference values are there, no host (not even itself) is
    // accepted: each is listed, refused.
    let v = hosts_until(&states[0], "three hosts are registered", |v| {
        v["hosts"].as_array().unwrap().len() == HOSTS
    });
    assert!(affirmed(&v).is_empty(), "{v:#}");
    publish_refvals(dir.path(), &states);
    let v = hosts_until(&states[0], "three hosts are affirmed", |v| {
        affirmed(v).len() == HOSTS
    });
    assert_eq!(v["this_host"], "host-0");
    assert_eq!(v["membership"], "joined");
    let ueids: std::collections::BTreeSet<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["ueid"].as_str().unwrap())
        .collect();
    assert_eq!(ueids.len(), HOSTS, "three devices, three UEIDs: {v:#}");
    let transfer: std::collections::BTreeSet<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["transfer_key_sha256"].as_str().unwrap())
        .collect();
    assert_eq!(transfer.len(), HOSTS, "three transfer keys: {v:#}");
    // The human form names every host and its verdict.
    let human = run(&states[1], &["fleet", "hosts"]);
    for i in 0..HOSTS {
        assert!(human.contains(&format!("host-{i}")), "{human}");
    }
    assert!(
        human.contains("(this host)") && !human.contains("REFUSED"),
        "{human}"
    );

    // A partition served by host-1 shows in its record.
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "12345678").unwrap();
    run(
        &states[1],
        &[
            "partition",
            "create",
            "tenant-a",
            "--owner-uid",
            "0",
            "--so-pin-file",
            pin.to_str().unwrap(),
        ],
    );
    hosts_until(&states[0], "host-1 serves tenant-a", |v| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == "host-1" && h["partitions"] == serde_json::json!(["tenant-a"]))
    });

    // Someone with etcd access but no attested device writes a host of their
    // own: host-2's genuine record under another name, and garbage.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let reg = ihsm_fleet::Registry::connect(&etcd.endpoints(), Duration::from_secs(5))
            .await
            .unwrap();
        let records = reg.records().await.unwrap();
        let (_, lease, genuine) = records.iter().find(|(h, _, _)| h == "host-2").unwrap();
        reg.put(
            &ihsm_fleet::registry::host_key("intruder"),
            genuine.clone(),
            Some(*lease),
        )
        .await
        .unwrap();
        reg.put(
            &ihsm_fleet::registry::host_key("garbage"),
            b"not a record".to_vec(),
            None,
        )
        .await
        .unwrap();
    });
    let v = hosts_until(&states[0], "the intruders are listed", |v| {
        v["hosts"].as_array().unwrap().len() == HOSTS + 2
    });
    assert_eq!(affirmed(&v).len(), HOSTS, "{v:#}");
    for name in ["intruder", "garbage"] {
        let h = v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == name)
            .unwrap();
        assert_eq!(h["verdict"], "refused", "{h:#}");
        assert!(!h["refusal"].as_str().unwrap().is_empty());
    }

    // host-2 dies: it leaves the fleet when its lease ends.
    daemons[2].take().unwrap().kill();
    hosts_until(&states[0], "host-2 has left", |v| {
        !v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == "host-2")
    });

    // Two etcd members down: no quorum. The view is refused within its
    // timeout; the hosts keep serving their partitions.
    etcd.kill(1);
    etcd.kill(2);
    let started = Instant::now();
    let o = ihsm(&states[0], &["fleet", "hosts"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("unavailable") && text(&o).contains("keeps serving"),
        "{}",
        text(&o)
    );
    assert!(started.elapsed() < WAIT);
    let o = ihsm(&states[1], &["partition", "list"]);
    assert!(
        o.status.success() && text(&o).contains("tenant-a"),
        "{}",
        text(&o)
    );

    // etcd restored: the fleet view heals.
    etcd.restart(1).unwrap();
    etcd.restart(2).unwrap();
    hosts_until(&states[0], "the view healed", |v| {
        let a = affirmed(v);
        a.contains(&"host-0".to_owned()) && a.contains(&"host-1".to_owned())
    });
    drop(daemons);
}

/// Keys a move must carry: made before it, used after it.
const KEYS: usize = 1000;

fn socket(state: &Path, partition: &str) -> PathBuf {
    state.join("partitions").join(format!("{partition}.sock"))
}

/// Creates partition `name` at `state`, owned by uid 0, its SO and user PINs
/// both the one [`tenant_until`] logs in with (a file in `dir`).
fn create_tenant(dir: &Path, state: &Path, name: &str) {
    let pin = dir.join("pin");
    std::fs::write(&pin, "12345678").unwrap();
    let p = pin.to_str().unwrap();
    run(
        state,
        &[
            "partition",
            "create",
            name,
            "--owner-uid",
            "0",
            "--so-pin-file",
            p,
            "--pin-file",
            p,
        ],
    );
}

/// A logged-in session on `partition` at `state`, retried until it serves
/// (bounded): a partition that arrived serves once its host read the flip.
fn tenant_until(state: &Path, partition: &str) -> (ihsm_client::Client, u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = ihsm_client::Client::connect(socket(state, partition)).and_then(|mut c| {
            let s = c.open_session(true)?;
            c.login(s, ihsm_proto::types::UserType::User, b"12345678")?;
            Ok((c, s))
        });
        match r {
            Ok(t) => return t,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{partition} does not serve at {}: {e}",
                state.display()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ecdsa() -> ihsm_proto::mech::Mechanism {
    ihsm_proto::mech::Mechanism::EcdsaHash(ihsm_proto::mech::Hash::Sha256)
}

/// Checks `sig` over `msg` with the public key as read before the move
/// (`CKA_EC_POINT`, a DER OCTET STRING around the point), outside the HSM.
fn verify_outside(point: &[u8], msg: &[u8], sig: &[u8]) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point[2..])
        .verify(msg, sig)
        .unwrap_or_else(|_| panic!("a signature made after the move does not verify"));
}

/// An application signing in a loop through a [`ihsm_client::follow::Follower`]
/// until `stop`: every call's outcome is recorded.
struct Signer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    #[allow(clippy::type_complexity)]
    thread: std::thread::JoinHandle<(
        u64,
        Vec<String>,
        std::collections::BTreeSet<String>,
        u64,
        u64,
    )>,
}

impl Signer {
    fn start(states: &[PathBuf], key: u64, point: Vec<u8>) -> Self {
        let routes = states
            .iter()
            .enumerate()
            .map(|(i, s)| ihsm_client::follow::Route {
                host: format!("host-{i}"),
                socket: socket(s, "mover"),
            })
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut f = ihsm_client::follow::Follower::new(routes, b"12345678", true, WAIT);
            let (mut ok, mut failed, mut hosts) =
                (0u64, Vec::new(), std::collections::BTreeSet::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let msg = format!("call {ok}").into_bytes();
                match f.run(|c, s| c.sign_once(s, ecdsa(), key, msg.clone())) {
                    Ok(sig) => {
                        verify_outside(&point, &msg, &sig);
                        ok += 1;
                        hosts.insert(f.host().unwrap_or_default().to_owned());
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, hosts, f.moves(), f.resumed())
        });
        Self { stop, thread }
    }

    /// Stops it; every call succeeded, on these hosts.
    fn finish(self, hosts: &[&str]) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed, seen, moves, resumed) = self.thread.join().unwrap();
        assert!(
            failed.is_empty(),
            "{} calls failed: {failed:?}",
            failed.len()
        );
        assert!(ok > 0);
        let want: std::collections::BTreeSet<String> =
            hosts.iter().map(|h| (*h).to_owned()).collect();
        assert_eq!(seen, want, "the application signed on {seen:?}");
        assert_eq!(moves, hosts.len() as u64 - 1, "it followed the partition");
        assert_eq!(
            resumed, moves,
            "the application resumed where the partition went (same session, no new login)"
        );
    }
}

/// The PKCS#11 module (the cdylib), brought up to date once.
fn module() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "--locked", "-p", "ihsm-pkcs11"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        assert!(
            build.status().unwrap().success(),
            "cannot build ihsm-pkcs11"
        );
    });
    PathBuf::from(env!("CARGO_BIN_EXE_ihsm")).with_file_name("libihsm_pkcs11.so")
}

/// A C-style application in its own process: this test binary again, running
/// [`module_signer_child`] with the module in fleet mode (`IHSM_FLEET`), signing
/// in a loop until `stop` exists.
struct ModuleApp {
    child: std::process::Child,
    stop: PathBuf,
}

impl ModuleApp {
    fn start(dir: &Path, states: &[PathBuf], label: &str) -> Self {
        let routes: Vec<String> = states
            .iter()
            .enumerate()
            .map(|(i, s)| format!("host-{i}={}", socket(s, "mover").display()))
            .collect();
        let stop = dir.join(format!("stop-{label}"));
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "module_signer_child", "--nocapture"])
            .env("IHSM_FLEET", routes.join(","))
            .env("IHSM_TEST_MODULE", module())
            .env("IHSM_TEST_STOP", &stop)
            .env("IHSM_TEST_LABEL", label)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child, stop }
    }

    /// How many calls succeeded so far.
    fn count(&self) -> u64 {
        std::fs::read_to_string(self.stop.with_extension("count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until it signed again (on whichever host serves the partition now).
    fn signs_on(&self) {
        let before = self.count();
        let deadline = Instant::now() + WAIT;
        while self.count() <= before + 16 {
            assert!(
                Instant::now() < deadline,
                "the module application stopped signing"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it: every call it made succeeded.
    fn finish(self) {
        std::fs::write(&self.stop, b"").unwrap();
        let mut child = self.child;
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the module application did not stop within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let line = out
            .lines()
            .find(|l| l.starts_with("SIGNER "))
            .unwrap_or_else(|| panic!("the module application said nothing: {out}"));
        assert!(line.contains(" failed=0 "), "{line}");
        let ok: u64 = line
            .split(" ok=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(ok > 0, "{line}");
    }
}

/// The module application (run by [`ModuleApp`], not on its own): C_Initialize
/// in fleet mode, a user login, a session key pair, then C_Sign in a loop with
/// the token key and the session key in turn, every signature checked outside
/// the HSM, until the stop file exists.
#[test]
#[ignore = "run by ModuleApp as its own process"]
fn module_signer_child() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let Some(stop) = std::env::var_os("IHSM_TEST_STOP").map(PathBuf::from) else {
        return;
    };
    let label = std::env::var("IHSM_TEST_LABEL").unwrap();
    let p11 = Pkcs11::new(std::env::var_os("IHSM_TEST_MODULE").unwrap()).unwrap();
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p11.get_slots_with_token().unwrap()[0];
    let s = p11.open_rw_session(slot).unwrap();
    s.login(
        cryptoki::session::UserType::User,
        Some(&cryptoki::types::AuthPin::new("12345678".into())),
    )
    .unwrap();
    let find = |class| {
        s.find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.clone().into_bytes()),
        ])
        .unwrap()[0]
    };
    let (sk, pk) = (
        find(ObjectClass::PRIVATE_KEY),
        find(ObjectClass::PUBLIC_KEY),
    );
    let point = match s
        .get_attributes(pk, &[AttributeType::EcPoint])
        .unwrap()
        .remove(0)
    {
        Attribute::EcPoint(p) => p,
        other => panic!("{other:?}"),
    };
    // A session key, which exists only in this application's session: it
    // signs on every host only if the session travelled with the partition.
    let (spk, ssk) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
                Attribute::Verify(true),
            ],
            &[Attribute::Token(false), Attribute::Sign(true)],
        )
        .unwrap();
    let session_point = match s
        .get_attributes(spk, &[AttributeType::EcPoint])
        .unwrap()
        .remove(0)
    {
        Attribute::EcPoint(p) => p,
        other => panic!("{other:?}"),
    };
    let (mut ok, mut failed, mut first_failure) = (0u64, 0u64, String::new());
    while !stop.exists() {
        let msg = format!("module call {ok}");
        let (key, point) = if ok % 2 == 0 {
            (sk, &point)
        } else {
            (ssk, &session_point)
        };
        match s.sign(&Mechanism::EcdsaSha256, key, msg.as_bytes()) {
            Ok(sig) => {
                verify_outside(point, msg.as_bytes(), &sig);
                ok += 1;
                if ok % 16 == 0 {
                    std::fs::write(stop.with_extension("count"), ok.to_string()).unwrap();
                }
            }
            Err(e) => {
                failed += 1;
                if first_failure.is_empty() {
                    first_failure = e.to_string();
                }
            }
        }
    }
    println!("SIGNER ok={ok} failed={failed} first={first_failure:?}");
}

fn move_json(state: &Path, partition: &str, to: &str) -> Result<Value, String> {
    let o = ihsm(
        state,
        &["partition", "move", partition, "--to", to, "--json"],
    );
    if o.status.success() {
        Ok(serde_json::from_slice(&o.stdout).unwrap())
    } else {
        Err(text(&o))
    }
}

fn serves(state: &Path, partition: &str) -> bool {
    let o = ihsm(state, &["partition", "list"]);
    o.status.success() && String::from_utf8_lossy(&o.stdout).contains(partition)
}

#[test]
fn a_partition_moves_between_attested_hosts_and_survives_a_crash_at_each_step() {
    if !testing::etcd_installed() {
        cannot_run("etcd is not installed (apt-get install etcd-server)");
        return;
    }
    use ihsm_proto::attr::Attribute;
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(dir.path(), 3).unwrap();
    let states = provision(dir.path(), HOSTS);
    let ports: Vec<u16> = (0..HOSTS).map(|_| free_port()).collect();
    let mut daemons: Vec<Option<Daemon>> = states
        .iter()
        .enumerate()
        .map(|(i, s)| Some(start(s, &fleet_args(&etcd, i, ports[i]))))
        .collect();
    publish_refvals(dir.path(), &states);
    hosts_until(&states[0], "three hosts are affirmed", |v| {
        affirmed(v).len() == HOSTS
    });

    // host-0 serves "mover": a partition with keys, made and used before the move.
    create_tenant(dir.path(), &states[0], "mover");
    let (mut c, s) = tenant_until(&states[0], "mover");
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let label = format!("key-{i}").into_bytes();
        let (pk, sk) = c
            .generate_key_pair(
                s,
                ihsm_proto::mech::Mechanism::EcKeyPairGen,
                vec![
                    Attribute::bytes(
                        cryptoki_sys::CKA_EC_PARAMS,
                        vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                    ),
                    Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
                    Attribute::bytes(cryptoki_sys::CKA_LABEL, label.clone()),
                ],
                vec![
                    Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
                    Attribute::bytes(cryptoki_sys::CKA_LABEL, label),
                ],
            )
            .unwrap();
        let point = match c
            .get_attributes(s, pk, vec![cryptoki_sys::CKA_EC_POINT])
            .unwrap()
            .remove(0)
        {
            ihsm_proto::attr::AttrResult::Value(ihsm_proto::attr::AttrValue::Bytes(ref b)) => {
                b.clone()
            }
            other => panic!("EC_POINT: {other:?}"),
        };
        let sig = c.sign_once(s, ecdsa(), sk, b"before".to_vec()).unwrap();
        verify_outside(&point, b"before", &sig);
        keys.push((sk, point));
    }

    // Refusals that leave everything where it was.
    for (to, why) in [("nowhere", "not in the fleet"), ("host-0", "already")] {
        let e = move_json(&states[0], "mover", to).unwrap_err();
        assert!(e.contains(why), "move to {to}: {e}");
    }
    let e = move_json(&states[0], "absent", "host-1").unwrap_err();
    assert!(e.contains("absent"), "{e}");
    c.sign_once(s, ecdsa(), keys[0].0, b"still".to_vec())
        .unwrap();

    // The move: host-1 proves itself, the partition goes, host-0 names where;
    // an application signing through a follower all along sees no error.
    let app = Signer::start(&states, keys[5].0, keys[5].1.clone());
    let c_app = ModuleApp::start(dir.path(), &states, "key-7");
    c_app.signs_on();
    let r = move_json(&states[0], "mover", "host-1").unwrap();
    assert_eq!(r["to"], "host-1");
    assert_eq!(r["from"], "host-0");
    assert!(
        r["new_epoch"].as_u64().unwrap() > r["epoch"].as_u64().unwrap(),
        "{r}"
    );
    let e = c
        .sign_once(s, ecdsa(), keys[0].0, b"x".to_vec())
        .unwrap_err();
    assert_eq!(e.code(), ihsm_proto::ErrorCode::PartitionMoved, "{e}");
    assert!(e.to_string().contains("host-1"), "{e}");
    let e = ihsm_client::Client::connect(socket(&states[0], "mover"))
        .and_then(|mut c| c.open_session(true))
        .unwrap_err();
    assert!(e.to_string().contains("host-1"), "a new connection: {e}");
    assert!(!serves(&states[0], "mover"));
    drop(c);
    // At host-1: the same PIN, handles and keys, signing as before.
    let (mut c, s) = tenant_until(&states[1], "mover");
    for (sk, point) in &keys {
        let sig = c.sign_once(s, ecdsa(), *sk, b"after".to_vec()).unwrap();
        verify_outside(point, b"after", &sig);
    }
    app.finish(&["host-0", "host-1"]);
    c_app.signs_on();
    c_app.finish();
    let audit = run(&states[1], &["audit", "show", "-p", "mover", "--json"]);
    assert!(
        audit.contains("move_started") && audit.contains("moved_in"),
        "{audit}"
    );
    drop(c);

    // Someone with etcd access writes the placement: not obeyed by anyone.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let genuine = rt.block_on(async {
        let reg = ihsm_fleet::Registry::connect(&etcd.endpoints(), Duration::from_secs(5))
            .await
            .unwrap();
        let (_, genuine) = reg.placement("mover").await.unwrap().unwrap();
        reg.put(
            &ihsm_fleet::placement::placement_key("mover"),
            b"host-2 serves it now".to_vec(),
            None,
        )
        .await
        .unwrap();
        genuine
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!serves(&states[2], "mover"));
    let (mut c, s) = tenant_until(&states[1], "mover");
    c.sign_once(s, ecdsa(), keys[1].0, b"served".to_vec())
        .unwrap();
    let e = move_json(&states[1], "mover", "host-2").unwrap_err();
    assert!(e.contains("not genuine"), "{e}");
    c.sign_once(s, ecdsa(), keys[1].0, b"served".to_vec())
        .unwrap();
    drop(c);
    rt.block_on(async {
        let reg = ihsm_fleet::Registry::connect(&etcd.endpoints(), Duration::from_secs(5))
            .await
            .unwrap();
        reg.put(
            &ihsm_fleet::placement::placement_key("mover"),
            genuine,
            None,
        )
        .await
        .unwrap();
    });

    // A crash of the source after the destination imported, before the flip:
    // the source serves again, the destination discards.
    let state1 = states[1].clone();
    let args1 = fleet_args(&etcd, 1, ports[1]);
    drop(daemons[1].take());
    let a: Vec<&str> = args1.iter().map(String::as_str).collect();
    let mut dying = Daemon::start_with_env(&state1, &a, &[("IHSM_TEST_MOVE_CRASH", "flip")]);
    hosts_until(&state1, "host-1 rejoined", |v| affirmed(v).len() == HOSTS);
    let e = move_json(&states[1], "mover", "host-2").unwrap_err();
    assert!(
        dying.exited_within(WAIT),
        "the crash hook did not fire: {e}"
    );
    daemons[1] = Some(start(&state1, &args1));
    hosts_until(&state1, "host-1 rejoined", |v| affirmed(v).len() == HOSTS);
    let (mut c, s) = tenant_until(&states[1], "mover");
    c.sign_once(s, ecdsa(), keys[2].0, b"back".to_vec())
        .unwrap();
    drop(c);
    let deadline = Instant::now() + WAIT;
    let device_log = |s: &Path| text(&ihsm(s, &["audit", "show", "--device", "--json"]));
    while !(device_log(&states[2]).contains("partition_moved_in")
        && device_log(&states[2]).contains("partition_deleted"))
    {
        assert!(Instant::now() < deadline, "host-2 kept what never moved");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!serves(&states[2], "mover"));

    // A crash of the source once it stopped the partition, before it sent the
    // delta (the destination holds the staged copy): the source, back,
    // reclaims and serves; the destination discards what was staged.
    drop(daemons[1].take());
    let mut dying = Daemon::start_with_env(&state1, &a, &[("IHSM_TEST_MOVE_CRASH", "delta")]);
    hosts_until(&state1, "host-1 rejoined", |v| affirmed(v).len() == HOSTS);
    tenant_until(&states[1], "mover");
    let e = move_json(&states[1], "mover", "host-2").unwrap_err();
    assert!(
        dying.exited_within(WAIT),
        "the crash hook did not fire: {e}"
    );
    daemons[1] = Some(start(&state1, &args1));
    hosts_until(&state1, "host-1 rejoined", |v| affirmed(v).len() == HOSTS);
    let (mut c, s) = tenant_until(&states[1], "mover");
    c.sign_once(s, ecdsa(), keys[2].0, b"back again".to_vec())
        .unwrap();
    drop(c);
    let deadline = Instant::now() + WAIT;
    while device_log(&states[2]).matches("partition_deleted").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "host-2 kept what was only staged: {}",
            device_log(&states[2])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!serves(&states[2], "mover"));

    // A crash of the destination once it stored the partition, before it
    // answered: the source undoes the move and serves; the destination, back,
    // discards what it stored.
    let state2 = states[2].clone();
    let args2 = fleet_args(&etcd, 2, ports[2]);
    let a2: Vec<&str> = args2.iter().map(String::as_str).collect();
    drop(daemons[2].take());
    let mut dying = Daemon::start_with_env(&state2, &a2, &[("IHSM_TEST_MOVE_CRASH", "imported")]);
    hosts_until(&state2, "host-2 rejoined", |v| affirmed(v).len() == HOSTS);
    let e = move_json(&states[1], "mover", "host-2").unwrap_err();
    assert!(
        dying.exited_within(WAIT),
        "the crash hook did not fire: {e}"
    );
    let (mut c, s) = tenant_until(&states[1], "mover");
    c.sign_once(s, ecdsa(), keys[4].0, b"undone".to_vec())
        .unwrap();
    drop(c);
    daemons[2] = Some(start(&state2, &args2));
    let deadline = Instant::now() + WAIT;
    while device_log(&states[2]).matches("partition_deleted").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "host-2 kept what never moved: {}",
            device_log(&states[2])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!serves(&states[2], "mover"));

    // A crash of the source after the flip, before it deleted its copy: the
    // destination serves, the restarted source lets go.
    drop(daemons[1].take());
    let mut dying = Daemon::start_with_env(&state1, &a, &[("IHSM_TEST_MOVE_CRASH", "finish")]);
    hosts_until(&state1, "host-1 rejoined", |v| affirmed(v).len() == HOSTS);
    tenant_until(&states[1], "mover");
    let e = move_json(&states[1], "mover", "host-2").unwrap_err();
    assert!(
        dying.exited_within(WAIT),
        "the crash hook did not fire: {e}"
    );
    let (mut c, s) = tenant_until(&states[2], "mover");
    c.sign_once(s, ecdsa(), keys[3].0, b"on host-2".to_vec())
        .unwrap();
    drop(c);
    daemons[1] = Some(start(&state1, &args1));
    let deadline = Instant::now() + WAIT;
    loop {
        let e = ihsm_client::Client::connect(socket(&states[1], "mover"))
            .and_then(|mut c| c.open_session(true));
        if e.is_err() && !serves(&states[1], "mover") {
            break;
        }
        assert!(Instant::now() < deadline, "host-1 still holds mover");
        std::thread::sleep(Duration::from_millis(300));
    }

    // And home: host-2 to host-0, where it started, with an application
    // signing all along.
    let app = Signer::start(&states, keys[6].0, keys[6].1.clone());
    let c_app = ModuleApp::start(dir.path(), &states, "key-8");
    c_app.signs_on();
    move_json(&states[2], "mover", "host-0").unwrap();
    let (mut c, s) = tenant_until(&states[0], "mover");
    std::thread::sleep(Duration::from_millis(500));
    app.finish(&["host-0", "host-2"]);
    c_app.signs_on();
    c_app.finish();
    for (sk, point) in &keys {
        let sig = c.sign_once(s, ecdsa(), *sk, b"home".to_vec()).unwrap();
        verify_outside(point, b"home", &sig);
    }
    c.call(&ihsm_proto::Request::AuditVerify).unwrap();
    drop(daemons);
}

/// `ihsm fleet domain --json` on `state`, once it satisfies `pred` (bounded).
fn domain_until(state: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let o = ihsm(state, &["fleet", "domain", "--json"]);
        if o.status.success() {
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            if pred(&v) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A P-256 key pair in the tenant's session: (private handle, public point).
fn ec_key(c: &mut ihsm_client::Client, s: u64) -> (u64, Vec<u8>) {
    use ihsm_proto::attr::{AttrResult, AttrValue, Attribute};
    let (pk, sk) = c
        .generate_key_pair(
            s,
            ihsm_proto::mech::Mechanism::EcKeyPairGen,
            vec![
                Attribute::bytes(
                    cryptoki_sys::CKA_EC_PARAMS,
                    vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                ),
                Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
            ],
            vec![Attribute::bool(cryptoki_sys::CKA_TOKEN, true)],
        )
        .unwrap();
    match c
        .get_attributes(s, pk, vec![cryptoki_sys::CKA_EC_POINT])
        .unwrap()
        .remove(0)
    {
        AttrResult::Value(AttrValue::Bytes(ref b)) => (sk, b.clone()),
        other => panic!("EC_POINT: {other:?}"),
    }
}

#[test]
fn masked_keys_open_on_every_host_of_the_fleet_and_not_on_an_evicted_one() {
    if !testing::etcd_installed() {
        cannot_run("etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(dir.path(), 3).unwrap();
    // Three hosts of the fleet, and a fourth device of the same vendor (its
    // IDevIDs in the bundle: genuine) that never joins it.
    let states = provision(dir.path(), HOSTS + 1);
    let ports: Vec<u16> = (0..HOSTS).map(|_| free_port()).collect();
    let _daemons: Vec<Daemon> = (0..HOSTS)
        .map(|i| start(&states[i], &fleet_args(&etcd, i, ports[i])))
        .collect();
    let outside = &states[HOSTS];
    let _outside = Daemon::start(outside);
    publish_refvals(dir.path(), &states[..HOSTS]);
    hosts_until(&states[0], "three hosts are affirmed", |v| {
        affirmed(v).len() == HOSTS
    });
    // One host draws the first epoch; every host takes it.
    let mut issuers = Vec::new();
    for s in &states[..HOSTS] {
        let v = domain_until(s, "the host holds epoch 1", |v| v["epoch"] == 1);
        issuers.push(v["issuer"].as_str().unwrap().to_owned());
    }
    issuers.dedup();
    assert_eq!(issuers.len(), 1, "one host drew it: {issuers:?}");
    let o = ihsm(outside, &["fleet", "domain"]);
    assert!(!o.status.success() && text(&o).contains("not in a fleet"));

    // The tenant's partition, by name, on every device.
    for s in &states {
        create_tenant(dir.path(), s, "tenant");
    }
    let mut t: Vec<(ihsm_client::Client, u64)> =
        states.iter().map(|s| tenant_until(s, "tenant")).collect();
    let (sk, point) = {
        let (c, s) = &mut t[0];
        ec_key(c, *s)
    };
    let blob = {
        let (c, s) = &mut t[0];
        c.export_masked(*s, sk).unwrap()
    };
    // On host-1 and host-2 it is the same key; on the device outside, nothing.
    for (c, s) in &mut t[1..HOSTS] {
        let h = c.import_masked(*s, blob.clone()).unwrap();
        let sig = c.sign_once(*s, ecdsa(), h, b"elsewhere".to_vec()).unwrap();
        verify_outside(&point, b"elsewhere", &sig);
    }
    let (c, s) = &mut t[HOSTS];
    let e = c.import_masked(*s, blob.clone()).unwrap_err();
    assert!(e.to_string().contains("does not hold"), "{e}");

    // host-0 evicts host-2: epoch 2, sealed to host-1 only.
    let refused = ihsm(&states[0], &["fleet", "evict", "host-0"]);
    assert!(
        !refused.status.success() && text(&refused).contains("cannot evict itself"),
        "{}",
        text(&refused)
    );
    let v: Value =
        serde_json::from_str(&run(&states[0], &["fleet", "evict", "host-2", "--json"])).unwrap();
    assert_eq!(v["epoch"], 2, "{v}");
    assert_eq!(v["sealed_to"], serde_json::json!(["host-1"]), "{v}");
    assert_eq!(v["evicted"], serde_json::json!(["host-2"]), "{v}");
    domain_until(&states[1], "host-1 holds epoch 2", |v| v["epoch"] == 2);
    let new = {
        let (c, s) = &mut t[0];
        c.export_masked(*s, sk).unwrap()
    };
    {
        let (c, s) = &mut t[1];
        let h = c.import_masked(*s, new.clone()).unwrap();
        let sig = c.sign_once(*s, ecdsa(), h, b"epoch 2".to_vec()).unwrap();
        verify_outside(&point, b"epoch 2", &sig);
        // The older epoch's blob still opens (older_masked_epochs = "open").
        c.import_masked(*s, blob.clone()).unwrap();
    }
    // A wrap for host-2 written into etcd by someone who is not a host.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reg = rt.block_on(async {
        ihsm_fleet::Registry::connect(&etcd.endpoints(), Duration::from_secs(5))
            .await
            .unwrap()
    });
    let forged = ihsm_fleet::domain::DomainWrap {
        version: ihsm_fleet::domain::VERSION,
        epoch: 2,
        from: "host-1".into(),
        to: "host-2".into(),
        from_cert: vec![0x30; 600],
        to_cert_sha256: [0; 32],
        enc: vec![4; 97],
        ciphertext: vec![0; 64],
    }
    .encode()
    .unwrap();
    let wrap_key = ihsm_fleet::domain::wrap_key(2, "host-2");
    rt.block_on(reg.put(&wrap_key, forged.clone(), None))
        .unwrap();
    // The device outside joins the fleet now, as host-3: it takes epoch 2 from
    // a host that holds it, whose look at the fleet then passed host-2 by (the
    // forged wrap is still there, untouched).
    drop(_outside);
    publish_refvals(dir.path(), &states);
    let _joined = start(outside, &fleet_args(&etcd, HOSTS, free_port()));
    domain_until(outside, "host-3 holds epoch 2", |v| v["epoch"] == 2);
    let wraps = rt.block_on(reg.domain()).unwrap().wraps;
    let held_for_2 = wraps
        .iter()
        .find(|(e, to, _)| *e == 2 && to == "host-2")
        .map(|(_, _, b)| b.clone());
    assert!(
        held_for_2 == Some(forged),
        "a host sealed epoch 2 to the evicted host-2"
    );
    let v = domain_until(&states[2], "host-2 answers", |_| true);
    assert_eq!(v["epoch"], 1, "the evicted host took nothing: {v}");
    let said = run(&states[2], &["fleet", "domain"]);
    assert!(
        said.contains("behind: the fleet's epoch 2 is not held here"),
        "{said}"
    );
    {
        let (c, s) = &mut t[2];
        let e = c.import_masked(*s, new.clone()).unwrap_err();
        assert!(
            e.to_string().contains("epoch this device does not hold"),
            "{e}"
        );
        c.import_masked(*s, blob.clone()).unwrap();
        // A host that joined after the eviction opens the new epoch's blobs.
        let (c, s) = &mut t[HOSTS];
        let (c2, s2) = tenant_until(outside, "tenant");
        *c = c2;
        *s = s2;
        let h = c.import_masked(*s, new.clone()).unwrap();
        let sig = c.sign_once(*s, ecdsa(), h, b"joined".to_vec()).unwrap();
        verify_outside(&point, b"joined", &sig);
    }
    // And no partition moves to it.
    let e = move_json(&states[0], "tenant", "host-2").unwrap_err();
    assert!(e.contains("evicted"), "{e}");
    let audit = run(&states[1], &["audit", "show", "--device", "--json"]);
    assert!(audit.contains("fleet_domain"), "{audit}");
}

/// A logged-in session on "mover" at host-0 signs, and host-0 still lists it.
fn still_serves(c: &mut ihsm_client::Client, s: u64, k: u64, state: &Path) {
    c.sign_once(s, ecdsa(), k, b"still here".to_vec()).unwrap();
    assert!(serves(state, "mover"));
}

#[test]
fn moves_to_a_destination_that_cannot_prove_itself_are_refused_and_nothing_leaves() {
    if !testing::etcd_installed() {
        cannot_run("etcd is not installed (apt-get install etcd-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(dir.path(), 3).unwrap();
    let states = provision(dir.path(), HOSTS);
    // host-0 and host-1 run firmware of SVN 1 (a signed upgrade), host-2 of SVN 0.
    for s in &states[..2] {
        let keys = s.join("dev-keys");
        run(
            s,
            &[
                "manifest",
                "sign",
                "--vendor-keys",
                keys.join("vendor").to_str().unwrap(),
                "--owner-keys",
                keys.join("owner").to_str().unwrap(),
                "--svn",
                "1",
            ],
        );
    }
    // host-3: a development device of another vendor, whose IDevIDs no host
    // pins, configured to join the same fleet.
    let other = dir.path().join("host-3");
    run(&other, &["provision", "--dev"]);
    drop(Daemon::start(&other));
    let sec0 = std::fs::read_to_string(states[0].join("security.toml")).unwrap();
    let table = &sec0[sec0.find("\n[fleet]").unwrap()..];
    std::fs::create_dir_all(other.join("fleet/refvals")).unwrap();
    std::fs::copy(
        states[0].join("fleet/trust.pem"),
        other.join("fleet/trust.pem"),
    )
    .unwrap();
    let mut sec = std::fs::read_to_string(other.join("security.toml")).unwrap();
    sec.push_str(table);
    std::fs::write(other.join("security.toml"), sec).unwrap();

    let ports: Vec<u16> = (0..=HOSTS).map(|_| free_port()).collect();
    let mut daemons: Vec<Option<Daemon>> = (0..2)
        .map(|i| Some(start(&states[i], &fleet_args(&etcd, i, ports[i]))))
        .collect();
    // host-2 first runs once as built, so that the reference values published
    // are its genuine build's; then it runs a modified ihsmd (one byte more).
    drop(start(&states[2], &[]));
    publish_refvals(dir.path(), &states);
    let modified = dir.path().join("ihsmd-modified");
    let mut bin = std::fs::read(common::ihsmd()).unwrap();
    bin.push(0);
    std::fs::write(&modified, bin).unwrap();
    std::fs::set_permissions(
        &modified,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let args2 = fleet_args(&etcd, 2, ports[2]);
    let a2: Vec<&str> = args2.iter().map(String::as_str).collect();
    let mut host2 = Some(Daemon::start_binary(&modified, &states[2], &a2, &[]));
    let _host3 = start(&other, &fleet_args(&etcd, 3, ports[3]));
    hosts_until(
        &states[0],
        "host-0 and host-1 affirmed, host-2 and host-3 listed",
        |v| affirmed(v) == ["host-0", "host-1"] && v["hosts"].as_array().unwrap().len() == 4,
    );

    create_tenant(dir.path(), &states[0], "mover");
    let (mut c, s) = tenant_until(&states[0], "mover");
    let (k, _) = ec_key(&mut c, s);
    let no_move_started = |state: &Path| {
        let log = run(state, &["audit", "show", "-p", "mover", "--json"]);
        assert!(!log.contains("move_started"), "{log}");
    };

    // Another vendor's device, and a modified ihsmd: their own records are
    // refused, so nothing is even asked of them.
    let e = move_json(&states[0], "mover", "host-3").unwrap_err();
    assert!(e.contains("not accepted") && e.contains("anchor"), "{e}");
    let e = move_json(&states[0], "mover", "host-2").unwrap_err();
    assert!(e.contains("not accepted") && e.contains("reference"), "{e}");
    still_serves(&mut c, s, k, &states[0]);
    no_move_started(&states[0]);

    // One etcd member stopped: a move works (and back).
    etcd.kill(2);
    let r = move_json(&states[0], "mover", "host-1").unwrap();
    assert_eq!(r["to"], "host-1", "{r}");
    let r = move_json(&states[1], "mover", "host-0").unwrap();
    assert_eq!(r["to"], "host-0", "{r}");
    let (mut c, s) = tenant_until(&states[0], "mover");
    // Two stopped: refused quickly, and serving goes on where it is.
    etcd.kill(1);
    let t0 = Instant::now();
    let e = move_json(&states[0], "mover", "host-1").unwrap_err();
    assert!(e.contains("unavailable"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    still_serves(&mut c, s, k, &states[0]);
    etcd.restart(1).unwrap();
    etcd.restart(2).unwrap();
    hosts_until(&states[0], "etcd healed", |v| affirmed(v).len() == 2);
    let log_before = run(&states[0], &["audit", "show", "-p", "mover", "--json"]);

    // host-2 as built again (affirmed): its SVN is below host-0's; then
    // tampered, it cannot prove itself.
    drop(host2.take());
    host2 = Some(start(&states[2], &args2));
    // Its start re-signed its manifest (as every development start after a
    // change does): the vendor's reference values for it, again.
    publish_refvals(dir.path(), &states);
    hosts_until(&states[0], "host-2 affirmed as built", |v| {
        affirmed(v).contains(&"host-2".to_owned())
    });
    let e = move_json(&states[0], "mover", "host-2").unwrap_err();
    assert!(e.contains("SVN 0, below this host's 1"), "{e}");
    still_serves(&mut c, s, k, &states[0]);
    run(&states[2], &["tamper", "--sensor", "lid"]);
    let e = move_json(&states[0], "mover", "host-2").unwrap_err();
    assert!(
        e.contains("host-2") && e.to_lowercase().contains("tamper"),
        "{e}"
    );
    still_serves(&mut c, s, k, &states[0]);
    drop(host2);

    // host-1's genuine evidence, over a nonce of an earlier challenge, replayed
    // by whoever answers at its address once it is gone.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = format!("127.0.0.1:{}", ports[1]);
    let captured: ihsm_fleet::peer::PeerReply = rt.block_on(async {
        let mut link = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = ihsm_fleet::peer::PeerRequest::Challenge { nonce: [7; 32] };
        ihsm_fleet::peer::write_frame(&mut link, &req, WAIT)
            .await
            .unwrap();
        ihsm_fleet::peer::read_frame(&mut link, WAIT)
            .await
            .unwrap()
            .unwrap()
    });
    assert!(matches!(
        captured,
        ihsm_fleet::peer::PeerReply::Evidence { .. }
    ));
    daemons[1].take().unwrap().kill();
    let listener = rt.block_on(tokio::net::TcpListener::bind(&addr)).unwrap();
    let replayer = rt.spawn(async move {
        while let Ok((mut link, _)) = listener.accept().await {
            while let Ok(Some(_)) =
                ihsm_fleet::peer::read_frame::<_, ihsm_fleet::peer::PeerRequest>(&mut link, WAIT)
                    .await
            {
                if ihsm_fleet::peer::write_frame(&mut link, &captured, WAIT)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    });
    let e = move_json(&states[0], "mover", "host-1").unwrap_err();
    assert!(
        e.contains("host-1's evidence was refused") && e.contains("nonce"),
        "{e}"
    );
    replayer.abort();
    still_serves(&mut c, s, k, &states[0]);
    // None of the refusals wrote a move into the partition's log.
    let log_after = run(&states[0], &["audit", "show", "-p", "mover", "--json"]);
    assert_eq!(
        log_after.matches("move_started").count(),
        log_before.matches("move_started").count(),
        "{log_after}"
    );
    drop(daemons);
}
