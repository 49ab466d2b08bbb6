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
