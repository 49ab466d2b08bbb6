//! The harness runs every workload for a few iterations against ihsm (its own
//! daemon), SoftHSM2 (its own token) and the raw ceiling, the topology
//! comparison and the hostile-tenant one, and writes what it promises.
//! Benchmarks themselves never run in tests: these prove the harness works, not
//! how fast anything is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ihsm-bench"))
}

/// The daemon and the module beside the harness, brought up to date (a narrower
/// `cargo test -p ihsm-bench` does not build them).
fn build_neighbours() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let mut b = Command::new(env!("CARGO"));
        b.args(["build", "--locked", "-p", "ihsmd", "-p", "ihsm-pkcs11"]);
        if !cfg!(debug_assertions) {
            b.arg("--release");
        }
        assert!(
            b.status().unwrap().success(),
            "cannot build ihsmd and the module"
        );
    });
}

fn run(args: &[&str]) -> Output {
    build_neighbours();
    Command::new(bench())
        .args(args)
        .env_remove("IHSM_STATE")
        .env_remove("IHSM_SOCKET")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_workload_runs_against_ihsm_softhsm2_and_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let svg = dir.path().join("out.svg");
    let workloads = "ecdsa-p256,ecdsa-p384,ed25519,rsa2048-pkcs1,rsa2048-pss,rsa2048-oaep-decrypt,\
                     aes-gcm-64,aes-gcm-4k,aes-gcm-1m,hmac-sha256-1k,ml-dsa-65,ml-kem-768-decap,\
                     random-32,find-100,gen-aes256,gen-ec-p256";
    let o = run(&[
        "--vs",
        "softhsm2",
        "--raw",
        "--workload",
        workloads,
        "--threads",
        "1,2",
        "--iterations",
        "3",
        "--runs",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let n_workloads = workloads.split(',').count();
    assert_eq!(rows.len(), n_workloads * 2, "{out}");
    for row in rows {
        let w = row["workload"].as_str().unwrap();
        let targets = row["targets"].as_array().unwrap();
        let names: Vec<&str> = targets
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(names[0], "ihsm", "{w}: ihsm runs every workload");
        for t in targets {
            // Three operations per thread, in each of two runs.
            let threads = row["threads"].as_u64().unwrap();
            assert_eq!(t["ops"].as_u64().unwrap(), 3 * threads * 2, "{w}");
            assert!(t["ops_per_sec"].as_f64().unwrap() > 0.0, "{w}");
            assert!(t["p50_us"].as_f64().unwrap() > 0.0, "{w}");
            assert_eq!(t["runs"].as_array().unwrap().len(), 2);
        }
        // The ceiling has nothing to find; everything else it does.
        assert_eq!(
            names.contains(&"raw aws-lc-rs"),
            !w.starts_with("find-"),
            "{w}"
        );
        assert_eq!(row["ratios"].as_array().unwrap().len(), targets.len() - 1);
    }
    // SoftHSM2 2.6 has no ML-DSA or ML-KEM: said, not failed.
    let skipped = report["skipped"].as_array().unwrap();
    let softhsm_skips: Vec<&str> = skipped
        .iter()
        .filter(|s| s["target"] == "softhsm2")
        .map(|s| s["workload"].as_str().unwrap())
        .collect();
    for w in ["ml-dsa-65", "ml-kem-768-decap"] {
        assert!(softhsm_skips.contains(&w), "{out}");
    }
    assert!(rows.iter().any(|r| {
        r["workload"] == "ecdsa-p256"
            && r["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["target"] == "softhsm2")
    }));
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("softhsm2") && chart.contains("ihsm"));
    assert!(out.contains("ihsm / softhsm2"), "{out}");

    // A saved report prints and draws again without measuring; garbage is refused.
    let again = dir.path().join("again.svg");
    let o = run(&[
        "--from",
        json.to_str().unwrap(),
        "--plot",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ihsm / softhsm2"));
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&svg).unwrap());
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"{\"rows\": 7}").unwrap();
    let o = run(&["--from", junk.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains("not a report"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_topology_comparison_runs_and_says_what_network_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("topology.json");
    let svg = dir.path().join("topology.svg");
    let o = run(&[
        "--topology",
        "--iterations",
        "5",
        "--runs",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let ways = report["ways"].as_array().unwrap();
    assert_eq!(ways.len(), 3);
    for w in ways {
        assert_eq!(w["summary"]["ops"].as_u64().unwrap(), 10, "{out}");
    }
    assert_eq!(report["p50_ratios"].as_array().unwrap().len(), 2);
    // Either netem was there and the report names the round trip, or it says
    // loopback.
    match report["added_rtt_us"].as_u64() {
        Some(rtt) => assert_eq!(rtt, 200),
        None => assert!(out.contains("loopback only"), "{out}"),
    }
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .contains("central HSM")
    );
}

#[test]
fn the_hostile_tenant_comparison_runs_every_attack_and_hears_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("hostile.json");
    let o = run(&[
        "--hostile",
        "--iterations",
        "20",
        "--runs",
        "2",
        "--rsa-bits",
        "2048",
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    // Seven attacks (idle and the control included), the victim measured two ways.
    assert_eq!(rows.len(), 14, "{out}");
    for r in rows {
        assert_eq!(r["summary"]["ops"].as_u64().unwrap(), 40, "{out}");
        assert!(r["p50_ratio"].as_f64().unwrap() > 0.0, "{out}");
        // The victim's new connections were served under every attack.
        assert_eq!(r["victim_connects_ok"].as_u64().unwrap(), 2, "{out}");
    }
    let refusal = |attack: &str| {
        rows.iter()
            .find(|r| r["attack"] == attack)
            .and_then(|r| r["attacker"]["refusal"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        refusal("connection-flood").contains("max_connections_per_partition"),
        "{out}"
    );
    assert!(refusal("sessions-left-open").contains("sessions"), "{out}");
    // The ring attack's connections were closed by the daemon (each of its
    // three attackers' at least once before the victim was measured), and
    // every connection it opened got its rings.
    let ring = rows.iter().find(|r| r["attack"] == "ring-abuse").unwrap();
    let closed = ring["attacker"]["closed_by_daemon"].as_u64().unwrap();
    assert!(closed >= 6, "{out}");
    assert!(ring["attacker"]["ok"].as_u64().unwrap() >= closed, "{out}");
    assert_eq!(ring["attacker"]["refused"].as_u64().unwrap(), 0, "{out}");
    assert!(out.contains("closed by the daemon"), "{out}");
    assert!(out.contains("p50 / idle"), "{out}");
}

#[test]
fn bad_arguments_get_a_clear_error_and_no_setup() {
    for (args, says) in [
        (&["--workload", "nonsense"][..], "unknown workload"),
        (&["--workload", "find-0"][..], "unknown workload"),
        (&["--threads", "0"][..], "at least 1"),
        (&["--runs", "0"][..], "at least 1"),
        (&["--duration", "0s"][..], "more than zero"),
        (&["--duration", "5 parsecs"][..], "unit"),
        (&["--module", "/no/such/module.so"][..], "no such file"),
        (
            &["--vs", "/no/such/module.so", "--module", "/bin/true"][..],
            "",
        ),
    ] {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
}
