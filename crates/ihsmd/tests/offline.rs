//! `ihsmd --check` and `ihsmd --burn-svn`, run for real: what the daemon does to a
//! device without serving it. (`crates/ihsm/tests/cli.rs` checks them against
//! devices the `ihsm` tool provisions and signs for.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use ihsm_rot::state::{StateDir, measure_file};

fn ihsmd(state: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_ihsmd"))
            .arg("--state")
            .arg(state)
            .args(args)
            .env_remove("IHSM_STATE")
            .env_remove("IHSM_FUSES"),
        std::time::Duration::from_secs(120),
    )
}

fn ok(state: &Path, args: &[&str]) -> String {
    let out = ihsmd(state, args);
    assert!(
        out.status.success(),
        "ihsmd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs what must fail; returns its one line on stderr.
fn fails(state: &Path, args: &[&str]) -> String {
    let out = ihsmd(state, args);
    assert!(!out.status.success(), "ihsmd {args:?} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    err.trim_end().to_owned()
}

/// The daemon executable's measurement: what its manifest must name.
fn image() -> [u8; 48] {
    measure_file(Path::new(env!("CARGO_BIN_EXE_ihsmd"))).unwrap()
}

/// A development device provisioned for this build of the daemon.
fn device() -> (tempfile::TempDir, PathBuf) {
    let dir = state_dir();
    let s = dir.path().join("s");
    StateDir::new(&s).provision_dev(false, &image()).unwrap();
    (dir, s)
}

/// Every file in `dir` and its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn check_boots_prints_the_report_and_serves_nothing_changes_nothing() {
    let (_dir, s) = device();
    let before = snapshot(&s);
    let text = ok(&s, &["--check"]);
    assert!(text.contains("the root of trust boots"), "{text}");
    for line in [
        "ROM",
        "FMC",
        "RT",
        "PCR3",
        "rt-alias",
        "from fuses to RT ready",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let j: serde_json::Value = serde_json::from_str(&ok(&s, &["--check", "--json"])).unwrap();
    assert_eq!(j["device"]["lifecycle"], "manufacturing");
    assert_eq!(j["stages"].as_array().unwrap().len(), 5);
    assert_eq!(j["identities"].as_array().unwrap().len(), 8);
    // No socket, no store, no configuration written, the manifest not re-signed.
    assert_eq!(snapshot(&s), before);
    assert!(!s.join("admin.sock").exists() && !s.join("partitions").exists());
}

#[test]
fn check_with_an_image_checks_that_build_and_names_what_is_wrong() {
    let (dir, s) = device();
    let build = dir.path().join("new-build");
    std::fs::write(&build, b"the next release").unwrap();
    let e = fails(&s, &["--check", "--image", build.to_str().unwrap()]);
    assert!(
        e.starts_with("ihsmd: boot refused: firmware image digest does not match the manifest"),
        "{e}"
    );
    assert!(e.contains("development device"), "{e}");
    // Signed for it, that build boots, and this one no longer does.
    StateDir::new(&s)
        .sign_dev_manifest(&measure_file(&build).unwrap(), 0)
        .unwrap();
    ok(&s, &["--check", "--image", build.to_str().unwrap()]);
    assert!(fails(&s, &["--check"]).contains("firmware image digest does not match"));
    // --image is for --check only: a served device is always this executable.
    let out = ihsmd(&s, &["--image", build.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--check"));
}

#[test]
fn check_and_burn_refuse_a_tampered_device() {
    let (_dir, s) = device();
    std::fs::write(s.join("TAMPERED"), "lid sensor\n").unwrap();
    for args in [&["--check"][..], &["--burn-svn", "1"]] {
        let e = fails(&s, args);
        assert!(e.contains("device TAMPERED: lid sensor"), "{e}");
    }
}

#[test]
fn the_svn_fuse_burns_upwards_only_on_a_stopped_device_and_never_past_the_firmware() {
    let (_dir, s) = device();
    let state = StateDir::new(&s);
    state.sign_dev_manifest(&image(), 2).unwrap();
    let fused = |s: &Path| {
        let j: serde_json::Value = serde_json::from_str(&ok(s, &["--check", "--json"])).unwrap();
        j["device"]["fused_svn"].as_u64().unwrap()
    };
    assert_eq!(fused(&s), 0);

    // Running: refused, the fuses untouched.
    let fuses = std::fs::read(state.fuses()).unwrap();
    let d = Daemon::start(&s);
    let e = fails(&s, &["--burn-svn", "2"]);
    assert!(
        e.contains("is running") && e.contains("stop it first"),
        "{e}"
    );
    assert_eq!(std::fs::read(state.fuses()).unwrap(), fuses);
    assert!(d.stop().success());

    // Past the installed firmware's SVN: refused, it would not boot.
    let e = fails(&s, &["--burn-svn", "3"]);
    assert!(e.contains("installed manifest is SVN 2"), "{e}");
    assert_eq!(std::fs::read(state.fuses()).unwrap(), fuses);

    assert_eq!(
        ok(&s, &["--burn-svn", "2"]).trim(),
        "firmware SVN fuse: 0 -> 2"
    );
    assert_eq!(fused(&s), 2);
    assert!(fails(&s, &["--burn-svn", "1"]).contains("fuses only burn upwards"));
    assert!(fails(&s, &["--burn-svn", "129"]).contains("maximum of 128"));
    assert_eq!(fused(&s), 2);

    // The fuse holds: older firmware is refused, by the check and by a start.
    state.sign_dev_manifest(&image(), 1).unwrap();
    assert_eq!(
        fails(&s, &["--check"]),
        "ihsmd: boot refused: SVN rollback: manifest SVN 1 is below the fused minimum SVN 2"
    );
    let e = Daemon::try_start(&s, &[]).map(|_| ()).unwrap_err();
    assert!(e.contains("SVN rollback"), "{e}");
}

#[test]
fn burning_needs_a_readable_fuse_file() {
    let (_dir, s) = device();
    let fuses = s.join("fuses.bin");
    let bytes = std::fs::read(&fuses).unwrap();
    std::fs::write(&fuses, &bytes[..100]).unwrap();
    assert!(fails(&s, &["--burn-svn", "0"]).contains("fuse file damaged"));
    std::fs::remove_file(&fuses).unwrap();
    assert!(fails(&s, &["--burn-svn", "0"]).contains("device is not provisioned"));
}
