//! `ihsm-bench --tls` for a few handshakes: nginx starts with its key in ihsm,
//! in SoftHSM2 and in a file, the client makes full TLS 1.3 handshakes against
//! each, and the report says what it promises. No timing is checked: this
//! proves the harness works, not how fast anything is. `.ci/run` installs nginx,
//! libp11's engine and SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ihsm-bench"))
}

/// The daemon and the module beside the harness, brought up to date.
fn build_neighbours() {
    let mut b = Command::new(env!("CARGO"));
    b.args(["build", "--locked", "-p", "ihsmd", "-p", "ihsm-pkcs11"]);
    if !cfg!(debug_assertions) {
        b.arg("--release");
    }
    assert!(
        b.status().unwrap().success(),
        "cannot build ihsmd and the module"
    );
}

/// A test that cannot run here: with `IHSM_REQUIRE_ROOT=1` (CI) it fails.
fn cannot_run(why: &str) {
    assert!(
        std::env::var("IHSM_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{why}: IHSM_REQUIRE_ROOT=1 says this run must be able to run it, so it fails instead of skipping"
    );
    eprintln!("\n*** SKIPPED: {why} (with IHSM_REQUIRE_ROOT=1 this fails) ***\n");
}

/// nginx processes serving from one of the harness's prefixes.
fn harness_nginx() -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("nginx") && cmd.contains("ihsm-bench-nginx") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn the_tls_comparison_runs_nginx_with_each_key_and_reports_handshakes() {
    let nginx = Path::new("/usr/sbin/nginx").exists()
        || Command::new("sh")
            .args(["-c", "command -v nginx"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !nginx {
        cannot_run("ihsm-bench --tls needs nginx, which is not installed (.ci/run installs it)");
        return;
    }
    build_neighbours();
    let before = harness_nginx();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tls.json");
    let svg = dir.path().join("tls.svg");
    let mut child = Command::new(bench())
        .args([
            "--tls",
            "--iterations",
            "3",
            "--runs",
            "2",
            "--threads",
            "1,2",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ])
        .env_remove("IHSM_STATE")
        .env_remove("IHSM_SOCKET")
        .stdout(std::fs::File::create(dir.path().join("out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    // The harness's own limits fail a hung handshake; this one fails a hung
    // harness.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ihsm-bench --tls did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = format!(
        "{}{}",
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        std::fs::read_to_string(dir.path().join("err")).unwrap()
    );
    assert!(status.success(), "{out}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(
        report["nginx"]
            .as_str()
            .unwrap()
            .starts_with("nginx version: nginx/"),
        "{report}"
    );
    assert_eq!(report["workers"].as_u64(), Some(2));
    assert!(
        report["load_generator"]
            .as_str()
            .unwrap()
            .contains("full TLS 1.3 handshake"),
        "{report}"
    );
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let rows = report["rows"].as_array().unwrap();
    // Two keys, two client thread counts.
    assert_eq!(rows.len(), 4, "{out}");
    let skipped = report["skipped"].as_array().unwrap();
    for (row, (workload, threads)) in rows.iter().zip([
        ("tls13-ec-p256", 1),
        ("tls13-ec-p256", 2),
        ("tls13-rsa2048", 1),
        ("tls13-rsa2048", 2),
    ]) {
        assert_eq!(row["workload"], workload, "{out}");
        assert_eq!(row["threads"].as_u64(), Some(threads));
        let targets = row["targets"].as_array().unwrap();
        let names: Vec<&str> = targets
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(names.first(), Some(&"ihsm"), "{out}");
        assert_eq!(names.last(), Some(&"file"), "{out}");
        // SoftHSM2 is measured, or the report says why not.
        let softhsm_skipped = skipped
            .iter()
            .any(|s| s["workload"] == workload && s["target"] == "softhsm2");
        assert!(
            names.contains(&"softhsm2") != softhsm_skipped,
            "{workload}: softhsm2 neither measured nor skipped with a reason: {out}"
        );
        for t in targets {
            // Three handshakes per client thread in each of two runs.
            assert_eq!(t["ops"].as_u64(), Some(3 * threads * 2), "{out}");
            assert!(t["ops_per_sec"].as_f64().unwrap() > 0.0);
            assert!(t["p50_us"].as_f64().unwrap() > 0.0);
            assert!(t["p99_us"].as_f64().unwrap() >= t["p50_us"].as_f64().unwrap());
            assert_eq!(t["runs"].as_array().unwrap().len(), 2);
        }
        let ratios = row["ratios"].as_array().unwrap();
        assert_eq!(ratios.len(), targets.len() - 1);
        assert!(ratios.iter().all(|r| r["a"] == "ihsm"));
        assert!(ratios.iter().any(|r| r["b"] == "file"));
    }
    for s in skipped {
        assert!(!s["why"].as_str().unwrap().is_empty());
    }
    assert!(out.contains("ihsm / file: handshakes/s"), "{out}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    // Every nginx the harness started is gone.
    let left: Vec<u32> = harness_nginx()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(left.is_empty(), "nginx left running: {left:?}");
}
