//! `ihsm rot evidence` from a running daemon, appraised by `ihsm verify evidence`:
//! a genuine device affirms; another nonce, a flipped quote byte and unusable
//! input do not, each with its exit code and reason.
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
    let verify = |quote: &Path, log: &Path, nonce: &str, json: bool| -> Output {
        let args = [
            "verify".to_owned(),
            "evidence".to_owned(),
            "--anchor".to_owned(),
            p(&anchor),
            "--refvals".to_owned(),
            p(&refvals),
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
            "--accept-development".to_owned(),
        ];
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        if json {
            args.push("--json");
        }
        ihsm(&s, &args)
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
}
