//! `ihsm rot evidence` from a running daemon, appraised by `ihsm verify evidence`:
//! a genuine device affirms; another nonce, a flipped quote byte, a development
//! device under a production policy, an SVN below the minimum, another firmware, a
//! PCR log that does not replay, a chain to another anchor and unusable input do
//! not, each with its exit code and the check that refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Daemon, ihsm};
use ihsm_verify::envelope;
use ihsm_verify::quote::{PcrLogId, parse_pcr_log};
use ihsm_verify::refvals::RefValues;

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    for p in parts {
        c.update(p);
    }
    c.finish().as_ref().try_into().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The values the device logged, with the PCRs computed from the log by
/// boot.md's rules (not read from a quote): what `ihsm manifest refvals` must
/// have computed from the manifest alone.
fn logged_values(log: &[u8]) -> RefValues {
    // Each entry's measured bytes, its padding dropped (docs/boot.md's lengths).
    let entries = parse_pcr_log(log).unwrap();
    let m = |id: PcrLogId| -> Vec<u8> {
        let e: Vec<_> = entries.iter().filter(|e| e.id == id).collect();
        assert_eq!(e.len(), 1, "{id:?} logged once");
        e[0].data.clone()
    };
    let d48 = |id| -> [u8; 48] { m(id).try_into().unwrap() };
    let pcr = |i: u32| {
        entries
            .iter()
            .filter(|e| e.pcr_mask & (1 << i) != 0)
            .fold([0u8; 48], |p, e| sha384(&[&p, &e.data]))
    };
    RefValues {
        fmc_fwid: d48(PcrLogId::FmcTci),
        rt_fwids: [d48(PcrLogId::RtTci), d48(PcrLogId::FwImageManifest)],
        pcrs: vec![(0, pcr(0)), (1, pcr(1)), (2, pcr(2)), (3, pcr(3))],
        svn_min: 0,
        vendor_key_hash: d48(PcrLogId::VendorPubKeyHash),
        owner_key_hash: d48(PcrLogId::OwnerPubKeyHash),
        lifecycle: ihsm_verify::refvals::lifecycle::MANUFACTURING,
    }
}

/// `ihsm manifest refvals` for the development device in `s`, signed by its
/// development vendor keys (whose raw public keys are written to `dir`), checked
/// against what the device logged.
fn refvals(s: &Path, log: &[u8], dir: &Path) -> std::path::PathBuf {
    let path = dir.join("refvals.cose");
    let vendor = s.join("dev-keys/vendor");
    let o = ihsm(
        s,
        &[
            "manifest",
            "refvals",
            "--manifest",
            s.join("manifest.bin").to_str().unwrap(),
            "--vendor-keys",
            vendor.to_str().unwrap(),
            "--lifecycle",
            "development",
            "--owner-keys",
            s.join("dev-keys/owner").to_str().unwrap(),
            "--min-svn",
            "0",
            "--out",
            path.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let keys = ihsm_rot::keyset::KeySet::load(&vendor).unwrap();
    let (ecc, ml) = (
        keys.ecc_public[0].as_bytes().to_vec(),
        keys.mldsa_public[0].as_bytes().to_vec(),
    );
    std::fs::write(dir.join("vendor-ecc.pub"), &ecc).unwrap();
    std::fs::write(dir.join("vendor-mldsa.pub"), &ml).unwrap();
    // Decoded by the verifier's own (independent) decoder.
    let payload = envelope::open(&std::fs::read(&path).unwrap(), &ecc, &ml).unwrap();
    assert_eq!(
        RefValues::from_payload(&payload).unwrap(),
        logged_values(log)
    );
    path
}

#[test]
fn evidence_from_a_running_device_is_appraised() {
    if !common::require_root("the daemon's locked memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    // Built first: a development manifest is signed for the `ihsmd` beside `ihsm`.
    common::ihsmd();
    let o = ihsm(&s, &["provision", "--dev"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let _d = Daemon::start(&s);

    // A nonce of the wrong length is refused before the device is asked.
    let ev = dir.path().join("ev");
    let o = ihsm(
        &s,
        &[
            "rot",
            "evidence",
            "--nonce",
            "abcd",
            "--out",
            ev.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("64 hex digits"), "{:?}", text(&o));

    let o = ihsm(
        &s,
        &[
            "rot",
            "evidence",
            "--nonce",
            NONCE,
            "--out",
            ev.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for f in [
        "idevid-ecc384.pem",
        "rt-alias-mldsa87.pem",
        "quote-ecc384.bin",
        "quote-mldsa87.bin",
        "pcr-log.bin",
    ] {
        assert!(out.contains(f), "{out}");
        assert!(ev.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read(ev.join("quote-ecc384.bin")).unwrap().len(),
        1848
    );
    assert_eq!(
        std::fs::read(ev.join("quote-mldsa87.bin")).unwrap().len(),
        6396
    );

    let refvals = refvals(
        &s,
        &std::fs::read(ev.join("pcr-log.bin")).unwrap(),
        dir.path(),
    );
    // The development device's pinned IDevIDs are the anchors.
    let anchor = dir.path().join("anchor.pem");
    let mut a = std::fs::read(ev.join("idevid-ecc384.pem")).unwrap();
    a.extend(std::fs::read(ev.join("idevid-mldsa87.pem")).unwrap());
    std::fs::write(&anchor, a).unwrap();

    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let verify_with = |refvals: &Path,
                       anchor: &Path,
                       quote: &Path,
                       log: &Path,
                       nonce: &str,
                       json: bool,
                       development: bool|
     -> Output {
        let mut args = vec![
            "verify".to_owned(),
            "evidence".to_owned(),
            "--anchor".to_owned(),
            p(anchor),
            "--refvals".to_owned(),
            p(refvals),
            "--vendor-ecc".to_owned(),
            p(&dir.path().join("vendor-ecc.pub")),
            "--vendor-mldsa".to_owned(),
            p(&dir.path().join("vendor-mldsa.pub")),
            "--certs".to_owned(),
            p(&ev),
            "--quote".to_owned(),
            p(quote),
            "--log".to_owned(),
            p(log),
            "--nonce".to_owned(),
            nonce.to_owned(),
        ];
        if development {
            args.push("--accept-development".to_owned());
        }
        if json {
            args.push("--json".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ihsm(&s, &args)
    };
    let verify = |quote: &Path, log: &Path, nonce: &str, json: bool| -> Output {
        verify_with(&refvals, &anchor, quote, log, nonce, json, true)
    };
    let quote = ev.join("quote-ecc384.bin");
    let log = ev.join("pcr-log.bin");

    // Genuine: every check affirms.
    let o = verify(&quote, &log, NONCE, false);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    for check in [
        "dice-chain-ecc384",
        "dice-chain-mldsa87",
        "quote-ecc384",
        "quote-mldsa87",
        "pcr-log",
        "reference-values",
        "pcrs",
        "lifecycle",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(check) && l.ends_with("affirmed")),
            "{check}: {out}"
        );
    }
    assert!(!out.contains("refused"), "{out}");
    let o = verify(&quote, &log, NONCE, true);
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = j.as_array().unwrap();
    assert!(rows.len() >= 8);
    assert!(
        rows.iter()
            .all(|r| r["verdict"] == "affirmed" && r["reason"] == "")
    );

    // Another nonce: the quotes' nonce check refuses.
    let other = format!("ff{}", &NONCE[2..]);
    let o = verify(&quote, &log, &other, true);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let q = j
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "quote-ecc384")
        .unwrap();
    assert_eq!(q["verdict"], "refused");
    assert!(q["reason"].as_str().unwrap().contains("nonce"), "{q}");

    // One flipped byte in the ECC quote's PCRs (its checksum fixed): refused.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let mut q = std::fs::read(&quote).unwrap();
    q[20] ^= 1;
    let sum = q[4..]
        .iter()
        .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    q[..4].copy_from_slice(&0u32.wrapping_sub(sum).to_le_bytes());
    std::fs::write(bad.join("quote-ecc384.bin"), &q).unwrap();
    std::fs::copy(ev.join("quote-mldsa87.bin"), bad.join("quote-mldsa87.bin")).unwrap();
    let o = verify(&bad.join("quote-ecc384.bin"), &log, NONCE, false);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("quote-ecc384") && l.contains("refused")),
        "{out}"
    );

    // Unusable input: exit 2 with the reason.
    let o = verify(&quote, &dir.path().join("no-such-log"), NONCE, false);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot read") && err.contains("no-such-log"),
        "{err}"
    );
    let o = verify(&quote, &log, "zz", false);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("64 hex digits"), "{err}");
    let o = verify(&ev.join("pcr-log.bin"), &log, NONCE, false);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("ecc384"), "{err}");

    // Each of these is refused by its own check, and only the checks it concerns.
    let refused = |o: &Output, check: &str, want: &str| {
        let (out, err) = text(o);
        assert_eq!(o.status.code(), Some(1), "{check}: {out}{err}");
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let row = j
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("no {check} row: {out}"));
        assert_eq!(row["verdict"], "refused", "{check}: {out}");
        let reason = row["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{check}: {reason}");
        // The genuine chain and quote still affirm: the refusal is this check's
        // (a chain that fails leaves the checks that need its keys unchecked).
        for ok in ["dice-chain-ecc384", "quote-ecc384"] {
            if !check.starts_with("dice-chain") {
                assert!(
                    j.as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r["check"] == ok && r["verdict"] == "affirmed"),
                    "{check}: {ok} should affirm: {out}"
                );
            }
        }
    };
    let make_refvals = |manifest: &Path, extra: &[&str], name: &str| -> std::path::PathBuf {
        let out = dir.path().join(name);
        let vendor = s.join("dev-keys/vendor");
        let owner = s.join("dev-keys/owner");
        let mut args = vec![
            "manifest",
            "refvals",
            "--manifest",
            manifest.to_str().unwrap(),
            "--vendor-keys",
            vendor.to_str().unwrap(),
            "--lifecycle",
            "development",
            "--owner-keys",
            owner.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = ihsm(&s, &args);
        assert!(o.status.success(), "{:?}", text(&o));
        out
    };

    // A development device under a production policy (no --accept-development).
    let o = verify_with(&refvals, &anchor, &quote, &log, NONCE, true, false);
    refused(&o, "lifecycle", "");

    // An SVN below the reference values' minimum.
    let strict = make_refvals(&s.join("manifest.bin"), &["--min-svn", "1"], "svn1.cose");
    let o = verify_with(&strict, &anchor, &quote, &log, NONCE, true, true);
    refused(&o, "svn", "");

    // A device running another firmware than the reference values describe: values
    // made for a manifest of another security configuration (what a modified
    // ihsmd.toml-measured configuration, or a modified build, changes).
    let other_config = dir.path().join("other-security.toml");
    let mut cfg = std::fs::read(s.join("security.toml")).unwrap();
    cfg.extend_from_slice(b"\n# another configuration\n");
    std::fs::write(&other_config, cfg).unwrap();
    let other_manifest = dir.path().join("other-manifest.bin");
    let o = ihsm(
        &s,
        &[
            "manifest",
            "sign",
            "--vendor-keys",
            s.join("dev-keys/vendor").to_str().unwrap(),
            "--svn",
            "0",
            "--config",
            other_config.to_str().unwrap(),
            "--out",
            other_manifest.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let other = make_refvals(&other_manifest, &["--min-svn", "0"], "other.cose");
    let o = verify_with(&other, &anchor, &quote, &log, NONCE, true, true);
    refused(&o, "rt-firmware", "");

    // A PCR log that does not replay to the quoted PCRs: one measured byte of its
    // first entry changed.
    let mut l = std::fs::read(&log).unwrap();
    l[8] ^= 1;
    let bad_log = dir.path().join("bad-log.bin");
    std::fs::write(&bad_log, l).unwrap();
    let o = verify_with(&refvals, &anchor, &quote, &bad_log, NONCE, true, true);
    refused(&o, "pcr-log", "");

    // A chain to another anchor: an ECC P-384 root that did not issue this IDevID.
    let foreign = dir.path().join("foreign.pem");
    let key = dir.path().join("foreign.key");
    let o = common::output_within(
        std::process::Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-subj",
            "/CN=another vendor",
            "-days",
            "1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            foreign.to_str().unwrap(),
        ]),
        std::time::Duration::from_secs(60),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let other_anchor = dir.path().join("other-anchor.pem");
    let mut a = std::fs::read(&foreign).unwrap();
    a.extend(std::fs::read(ev.join("idevid-mldsa87.pem")).unwrap());
    std::fs::write(&other_anchor, a).unwrap();
    let o = verify_with(&refvals, &other_anchor, &quote, &log, NONCE, true, true);
    refused(&o, "dice-chain-ecc384", "");
}
