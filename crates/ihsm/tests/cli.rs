//! The `ihsm` binary, run for real on a temporary state directory: every command,
//! and every failure as one line on stderr with a non-zero exit. What the tool
//! provisions and signs is checked the way the device boots it, by `ihsmd`
//! (`ihsmd --check`, `ihsmd --burn-svn`, or a running daemon's mailbox): the
//! root of trust runs there and nowhere else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Daemon, ihsmd, output_within};

/// How long one run of a tool may take before the test fails.
const LIMIT: Duration = Duration::from_secs(120);

/// The "firmware" the tool signs for and `ihsmd --check --image` measures: any
/// fixed file will do.
fn image() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn ihsm(state: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_ihsm"))
            .arg("--state")
            .arg(state)
            .args(args)
            .env_remove("IHSM_STATE")
            .env("IHSM_IMAGE", image()),
        LIMIT,
    )
}

/// `ihsmd ARGS` on the state directory.
fn daemon_cmd(state: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(ihsmd())
            .arg("--state")
            .arg(state)
            .args(args)
            .env_remove("IHSM_STATE"),
        LIMIT,
    )
}

/// `ihsmd --check --image IMAGE ARGS`: the device's boot, checked, with the
/// image the tool signed for as its firmware.
fn check(state: &Path, args: &[&str]) -> Output {
    let image = image();
    let mut all = vec!["--check", "--image", image.to_str().unwrap()];
    all.extend_from_slice(args);
    daemon_cmd(state, &all)
}

fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Its one line on stderr, from what must fail.
fn failed(what: &str, out: Output) -> String {
    assert!(!out.status.success(), "{what} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    err.trim_end().to_owned()
}

/// The boot report of a device that boots.
fn boots(state: &Path) -> serde_json::Value {
    serde_json::from_str(&succeeded("ihsmd --check", check(state, &["--json"]))).unwrap()
}

/// Why a device does not boot.
fn refused(state: &Path) -> String {
    failed("ihsmd --check", check(state, &[]))
}

fn burn_svn(state: &Path, svn: &str) -> Output {
    daemon_cmd(state, &["--burn-svn", svn])
}

fn ok(state: &Path, args: &[&str]) -> String {
    let out = ihsm(state, args);
    assert!(
        out.status.success(),
        "ihsm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its single stderr line.
fn fails(state: &Path, args: &[&str]) -> String {
    let out = ihsm(state, args);
    assert!(!out.status.success(), "ihsm {args:?} should have failed");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    err.trim_end().to_owned()
}

fn dev_device() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&dir.path().join("s"), &["provision", "--dev"]);
    dir
}

#[test]
fn without_a_daemon_the_front_door_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&dir.path().join("s"), &[]);
    assert!(
        e.contains("admin.sock") && e.contains("cargo run --release"),
        "{e}"
    );
    let e = fails(&dir.path().join("s"), &["status"]);
    assert!(e.contains("is ihsmd running?"), "{e}");
    let e = fails(&dir.path().join("s"), &["rot", "pcrs"]);
    assert!(e.contains("is ihsmd running?"), "{e}");
}

#[test]
fn provisioning_refuses_twice_unless_wiped() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let e = fails(&s, &["provision", "--dev"]);
    assert!(
        e.contains("already provisioned") && e.contains("--wipe"),
        "{e}"
    );
    let ueid = |s: &Path| boots(s)["device"]["ueid"].as_str().unwrap().to_owned();
    let before = ueid(&s);
    ok(&s, &["provision", "--dev", "--wipe"]);
    assert_ne!(ueid(&s), before, "a wiped device is a new device");
}

#[test]
fn boot_report_json_has_every_stage() {
    let dir = dev_device();
    let j = boots(&dir.path().join("s"));
    let stages: Vec<&str> = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["ROM", "ROM", "ROM", "FMC", "RT"]);
    assert_eq!(j["device"]["lifecycle"], "manufacturing");
    assert_eq!(j["boot_pcrs"].as_array().unwrap().len(), 4);
}

#[test]
fn certs_csr_and_quote_files() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let _d = Daemon::start(&s);
    let out = dir.path().join("certs");
    let listed = ok(&s, &["rot", "certs", "--out", out.to_str().unwrap()]);
    for name in ["idevid", "ldevid", "fmc-alias", "rt-alias"] {
        for alg in ["ecc384", "mldsa87"] {
            let f = format!("{name}-{alg}.pem");
            assert!(listed.contains(&f), "{listed}");
            assert!(
                std::fs::read_to_string(out.join(&f))
                    .unwrap()
                    .starts_with("-----BEGIN CERTIFICATE-----")
            );
        }
    }
    let csr = dir.path().join("idevid.csr");
    ok(
        &s,
        &[
            "rot",
            "csr",
            "--alg",
            "mldsa87",
            "--out",
            csr.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read_to_string(&csr)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
    );
    let nonce = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    for (alg, len) in [("ecc384", 1848), ("mldsa87", 6396)] {
        let q = dir.path().join(format!("quote-{alg}.bin"));
        ok(
            &s,
            &[
                "rot",
                "quote",
                "--nonce",
                nonce,
                "--alg",
                alg,
                "--out",
                q.to_str().unwrap(),
            ],
        );
        let bytes = std::fs::read(&q).unwrap();
        assert_eq!(bytes.len(), len);
        assert_eq!(hex::encode(&bytes[1544..1576]), nonce);
    }
    let e = fails(
        &s,
        &[
            "rot",
            "quote",
            "--nonce",
            "abcd",
            "--alg",
            "ecc384",
            "--out",
            "/dev/null",
        ],
    );
    assert!(e.contains("64 hex digits"), "{e}");
}

#[test]
fn pcrs_and_log() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let _d = Daemon::start(&s);
    let pcrs: serde_json::Value =
        serde_json::from_str(&ok(&s, &["rot", "pcrs", "--json"])).unwrap();
    assert_eq!(pcrs.as_array().unwrap().len(), 32);
    assert_eq!(pcrs[0]["value"], pcrs[1]["value"]);
    assert_eq!(pcrs[4]["value"], "0".repeat(96));
    let log = ok(&s, &["rot", "log"]);
    assert!(
        log.contains("DeviceStatus") && log.contains("FwImageManifest"),
        "{log}"
    );
}

#[test]
fn damaged_fuses_are_a_fatal_one_line_error() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let fuses = s.join("fuses.bin");
    let bytes = std::fs::read(&fuses).unwrap();
    std::fs::write(&fuses, &bytes[..100]).unwrap();
    assert_eq!(
        refused(&s),
        "ihsmd: boot refused: fuse file damaged: 100 bytes where 288 are required (truncated or padded)"
    );
    let mut flipped = bytes.clone();
    flipped[50] ^= 1;
    std::fs::write(&fuses, &flipped).unwrap();
    assert_eq!(
        refused(&s),
        "ihsmd: boot refused: fuse file damaged: integrity digest mismatch"
    );
    std::fs::remove_file(&fuses).unwrap();
    assert!(refused(&s).contains("device is not provisioned"));
}

#[test]
fn an_edited_configuration_refuses_to_boot_until_resigned() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let cfg = s.join("security.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("debug_locked = true", "debug_locked = false"),
    )
    .unwrap();
    let e = refused(&s);
    assert!(
        e.starts_with(
            "ihsmd: boot refused: security configuration digest does not match the manifest"
        ),
        "{e}"
    );
    assert!(e.contains("development device"), "{e}");
    // Signed by the vendor, the new configuration boots (and changes the identity).
    let vendor = s.join("dev-keys/vendor");
    let owner = s.join("dev-keys/owner");
    ok(
        &s,
        &[
            "manifest",
            "sign",
            "--vendor-keys",
            vendor.to_str().unwrap(),
            "--owner-keys",
            owner.to_str().unwrap(),
            "--svn",
            "0",
        ],
    );
    assert_eq!(boots(&s)["device"]["debug_locked"], false);
    // A configuration the parser rejects is refused with the key named.
    std::fs::write(&cfg, "[device]\ndebug_locked = true\ncolour = 1\n").unwrap();
    assert!(refused(&s).contains("colour"));
}

#[test]
fn svn_rollback_is_refused_after_the_fuse_is_burnt() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let vendor = s.join("dev-keys/vendor");
    let owner = s.join("dev-keys/owner");
    let sign = |svn: &str| {
        ok(
            &s,
            &[
                "manifest",
                "sign",
                "--vendor-keys",
                vendor.to_str().unwrap(),
                "--owner-keys",
                owner.to_str().unwrap(),
                "--svn",
                svn,
            ],
        )
    };
    sign("2");
    let burnt = succeeded("ihsmd --burn-svn 2", burn_svn(&s, "2"));
    assert_eq!(burnt.trim(), "firmware SVN fuse: 0 -> 2");
    assert_eq!(boots(&s)["device"]["fused_svn"], 2);
    sign("1");
    assert_eq!(
        refused(&s),
        "ihsmd: boot refused: SVN rollback: manifest SVN 1 is below the fused minimum SVN 2"
    );
    assert!(failed("ihsmd --burn-svn 1", burn_svn(&s, "1")).contains("fuses only burn upwards"));
}

#[test]
fn a_foreign_vendor_or_modified_image_is_refused() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let stranger = dir.path().join("stranger");
    ok(
        &s,
        &[
            "manifest",
            "keygen",
            "--out",
            stranger.to_str().unwrap(),
            "--count",
            "2",
        ],
    );
    ok(
        &s,
        &[
            "manifest",
            "sign",
            "--vendor-keys",
            stranger.to_str().unwrap(),
            "--svn",
            "0",
        ],
    );
    assert_eq!(
        refused(&s),
        "ihsmd: boot refused: manifest vendor key descriptors do not match the fused vendor key hash"
    );
    // The device's own vendor signing a different image: the running binary differs.
    let other_image = dir.path().join("other");
    std::fs::write(&other_image, b"not the daemon").unwrap();
    let vendor = s.join("dev-keys/vendor");
    let owner = s.join("dev-keys/owner");
    ok(
        &s,
        &[
            "manifest",
            "sign",
            "--vendor-keys",
            vendor.to_str().unwrap(),
            "--owner-keys",
            owner.to_str().unwrap(),
            "--svn",
            "0",
            "--image",
            other_image.to_str().unwrap(),
        ],
    );
    let e = refused(&s);
    assert!(
        e.starts_with("ihsmd: boot refused: firmware image digest does not match the manifest"),
        "{e}"
    );
}

#[test]
fn manifest_show_and_hashes() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let shown = ok(
        &s,
        &["manifest", "show", s.join("manifest.bin").to_str().unwrap()],
    );
    assert!(
        shown.contains("SVN 0") && shown.contains("countersigned"),
        "{shown}"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(
        &s,
        &[
            "manifest",
            "show",
            "--json",
            s.join("manifest.bin").to_str().unwrap(),
        ],
    ))
    .unwrap();
    let hashes = ok(
        &s,
        &[
            "manifest",
            "hashes",
            "--vendor-keys",
            s.join("dev-keys/vendor").to_str().unwrap(),
        ],
    );
    assert!(
        hashes.contains(j["vendor_key_hash"].as_str().unwrap()),
        "{hashes}"
    );
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"junk").unwrap();
    assert_eq!(
        fails(&s, &["manifest", "show", junk.to_str().unwrap()]),
        "ihsm: manifest malformed: 4 bytes where 15512 are required"
    );
}

#[test]
fn production_provisioning_from_public_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    let vendor = dir.path().join("vendor");
    ok(
        &s,
        &[
            "manifest",
            "keygen",
            "--out",
            vendor.to_str().unwrap(),
            "--count",
            "2",
        ],
    );
    // The device is fused from a copy with public keys only.
    let public = dir.path().join("vendor-public");
    std::fs::create_dir(&public).unwrap();
    for f in std::fs::read_dir(&vendor).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().ends_with(".pub.pem") {
            std::fs::copy(f.path(), public.join(f.file_name())).unwrap();
        }
    }
    let out = ok(
        &s,
        &[
            "provision",
            "--vendor-keys",
            public.to_str().unwrap(),
            "--svn",
            "1",
        ],
    );
    assert!(out.contains("provisioned a production device"), "{out}");
    let e = fails(
        &s,
        &[
            "manifest",
            "sign",
            "--vendor-keys",
            public.to_str().unwrap(),
            "--svn",
            "1",
        ],
    );
    assert!(e.contains("no private key ecc384-0.key.pem"), "{e}");
    ok(
        &s,
        &[
            "manifest",
            "sign",
            "--vendor-keys",
            vendor.to_str().unwrap(),
            "--ecc-index",
            "1",
            "--mldsa-index",
            "1",
            "--svn",
            "1",
        ],
    );
    let j = boots(&s);
    assert_eq!(j["device"]["lifecycle"], "production");
    assert_eq!(j["manifest"]["vendor_ecc_key_index"], 1);
}

#[test]
fn the_tool_neither_boots_the_root_of_trust_nor_burns_fuses() {
    let dir = dev_device();
    let s = dir.path().join("s");
    let fuses = std::fs::read(s.join("fuses.bin")).unwrap();
    for args in [
        &["rot", "boot", "--offline"][..],
        &[
            "rot",
            "quote",
            "--offline",
            "--nonce",
            "00",
            "--alg",
            "ecc384",
            "--out",
            "q",
        ],
        &["rot", "certs", "--offline", "--out", "c"],
        &["rot", "burn-svn", "1"],
    ] {
        let out = ihsm(&s, args);
        assert!(!out.status.success(), "ihsm {args:?} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unexpected argument") || err.contains("unrecognized subcommand"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(s.join("fuses.bin")).unwrap(), fuses);
}
