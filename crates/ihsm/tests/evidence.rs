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

/// Writes `s` to `dir/name` and returns the path as a string.
fn put(dir: &Path, name: &str, s: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p.to_str().unwrap().to_owned()
}

/// The DER inside the first PEM block of `path`.
fn pem_der(path: &Path) -> Vec<u8> {
    pem::parse(std::fs::read(path).unwrap())
        .unwrap()
        .into_contents()
}

/// The raw public key of a certificate, found by `openssl asn1parse` (generic DER,
/// so it reads ML-DSA-87 certificates that OpenSSL 3.0's x509 cannot): the
/// BIT STRING of `len` + 1 bytes (the SEC1 point of a P-384 key, the 2592 bytes
/// of an ML-DSA-87 key, after the unused-bits octet).
fn cert_public_key(cert: &Path, len: usize) -> Vec<u8> {
    let o = common::output_within(
        std::process::Command::new("openssl").args(["asn1parse", "-in", cert.to_str().unwrap()]),
        std::time::Duration::from_secs(60),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let (out, _) = text(&o);
    let want = format!("l={:>4} prim: BIT STRING", len + 1);
    let line = out
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no {want} in {out}"));
    // "  offset:d=2  hl=4 l=2593 prim: BIT STRING"
    let offset: usize = line.split(':').next().unwrap().trim().parse().unwrap();
    let hl: usize = line
        .split("hl=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let der = pem_der(cert);
    der[offset + hl + 1..offset + hl + 1 + len].to_vec()
}

/// Splits a CBOR sequence of two items.
fn two_items(bytes: &[u8]) -> (&[u8], &[u8]) {
    let mut rest = bytes;
    let _: ciborium::Value = ciborium::de::from_reader(&mut rest).unwrap();
    bytes.split_at(bytes.len() - rest.len())
}

/// The payload map's value under integer key `k`, decoded by ciborium.
fn field(payload: &[u8], k: i64) -> ciborium::Value {
    let v: ciborium::Value = ciborium::de::from_reader(payload).unwrap();
    v.as_map()
        .unwrap()
        .iter()
        .find(|(key, _)| key.as_integer() == Some(k.into()))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no field {k}"))
}

#[test]
fn key_reports_from_a_running_device_are_checked_by_code_we_did_not_write() {
    use coset::TaggedCborSerializable as _;
    if !common::require_root("the daemon's locked memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("s");
    common::ihsmd();
    let o = ihsm(&s, &["provision", "--dev"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let mut daemon = Daemon::start(&s);
    let so = put(d, "so", b"so-pin-1234\n");
    let pin = put(d, "pin", b"user-pin-1234\n");
    let run = |args: &[&str]| -> String {
        let o = ihsm(&s, args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {out}{err}");
        out
    };
    for name in ["payments", "other"] {
        run(&[
            "partition",
            "create",
            name,
            "--owner-uid",
            "0",
            "--so-pin-file",
            &so,
            "--pin-file",
            &pin,
        ]);
    }
    let login = |p: &'static str| ["-p", p, "--pin-file", pin.as_str()];
    let gen_key = |p: &'static str, ty: &str, label: &str| {
        let mut a = vec!["key", "generate", "--type", ty, "--label", label];
        a.extend(login(p));
        if label == "sig" {
            a.extend(["--id", "5369672d31"]);
        }
        run(&a);
    };
    gen_key("payments", "ec-p384", "sig");
    gen_key("payments", "aes256", "bulk");
    gen_key("payments", "ed25519", "ed");
    gen_key("payments", "mldsa87", "pq");
    gen_key("other", "ec-p384", "sig");
    let attest = |p: &'static str, which: &[&str], data: &str, out: &str| -> Output {
        let mut a = vec!["key", "attest"];
        a.extend(login(p));
        a.extend(which);
        a.extend(["--report-data", data, "--out", out]);
        ihsm(&s, &a)
    };
    let report = d.join("sig.report");
    let o = attest(
        "payments",
        &["--id", "5369672d31"],
        NONCE,
        report.to_str().unwrap(),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("key report of the private key with id 5369672d31"),
        "{out}"
    );

    // Evidence, reference values, and both partition certificates.
    let ev = d.join("ev");
    run(&[
        "rot",
        "evidence",
        "--nonce",
        NONCE,
        "--out",
        ev.to_str().unwrap(),
    ]);
    let refvals = refvals(&s, &std::fs::read(ev.join("pcr-log.bin")).unwrap(), d);
    let anchor = d.join("anchor.pem");
    let mut a = std::fs::read(ev.join("idevid-ecc384.pem")).unwrap();
    a.extend(std::fs::read(ev.join("idevid-mldsa87.pem")).unwrap());
    std::fs::write(&anchor, a).unwrap();
    let certs = |p: &str| -> std::path::PathBuf {
        let c = d.join(format!("certs-{p}"));
        std::fs::create_dir_all(&c).unwrap();
        for alg in ["ecc384", "mldsa87"] {
            let f = c.join(format!("partition-{alg}.pem"));
            run(&[
                "partition",
                "cert",
                p,
                "--alg",
                alg,
                "--out",
                f.to_str().unwrap(),
            ]);
        }
        c
    };
    let pay_certs = certs("payments");

    let verify_with = |report: &Path,
                       certs: &Path,
                       nonce: &str,
                       extra: &[&str]|
     -> (Option<i32>, serde_json::Value) {
        let p = |x: &Path| x.to_str().unwrap().to_owned();
        let mut args = vec![
            "verify".to_owned(),
            "evidence".to_owned(),
            "--anchor".to_owned(),
            p(&anchor),
            "--refvals".to_owned(),
            p(&refvals),
            "--vendor-ecc".to_owned(),
            p(&d.join("vendor-ecc.pub")),
            "--vendor-mldsa".to_owned(),
            p(&d.join("vendor-mldsa.pub")),
            "--certs".to_owned(),
            p(&ev),
            "--quote".to_owned(),
            p(&ev.join("quote-ecc384.bin")),
            "--log".to_owned(),
            p(&ev.join("pcr-log.bin")),
            "--nonce".to_owned(),
            nonce.to_owned(),
            "--accept-development".to_owned(),
            "--key-report".to_owned(),
            p(report),
            "--partition-certs".to_owned(),
            p(certs),
            "--json".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = ihsm(&s, &args);
        let (out, err) = text(&o);
        let j = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
        (o.status.code(), j)
    };
    let verify = |report: &Path, certs: &Path, nonce: &str| verify_with(report, certs, nonce, &[]);
    let verdict = |j: &serde_json::Value, check: &str| -> (String, String) {
        let row = j
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("no {check} in {j}"));
        (
            row["verdict"].as_str().unwrap().to_owned(),
            row["reason"].as_str().unwrap().to_owned(),
        )
    };

    // Genuine: every check affirms, the key report's with them.
    let (code, j) = verify(&report, &pay_certs, NONCE);
    assert_eq!(code, Some(0), "{j}");
    for check in ["partition-certificates", "key-report", "reference-values"] {
        assert_eq!(verdict(&j, check).0, "affirmed", "{check}: {j}");
    }

    // The attestation result: an EAR signed by the verifier's key (made by
    // openssl), which `ihsm verify ear` checks with the public key alone.
    let ear_key = d.join("ear.key");
    let ear_pub = d.join("ear.pub");
    let openssl = |args: &[&str]| {
        let o = common::output_within(
            std::process::Command::new("openssl").args(args),
            std::time::Duration::from_secs(60),
        );
        assert!(o.status.success(), "openssl {args:?}: {:?}", text(&o));
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        ear_key.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        ear_key.to_str().unwrap(),
        "-pubout",
        "-out",
        ear_pub.to_str().unwrap(),
    ]);
    let ear = d.join("result.ear");
    let ear_args = [
        "--ear-out",
        ear.to_str().unwrap(),
        "--ear-key",
        ear_key.to_str().unwrap(),
    ];
    let (code, _) = verify_with(&report, &pay_certs, NONCE, &ear_args);
    assert_eq!(code, Some(0));
    let check_ear = |key: &Path, json: bool| -> (Option<i32>, String) {
        let mut a = vec![
            "verify",
            "ear",
            ear.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        if json {
            a.push("--json");
        }
        let o = ihsm(&s, &a);
        let (out, err) = text(&o);
        (o.status.code(), format!("{out}{err}"))
    };
    let (code, out) = check_ear(&ear_pub, false);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("status                   affirming"), "{out}");
    assert!(out.contains("\"name\":\"payments\""), "{out}");
    let (code, out) = check_ear(&ear_pub, true);
    assert_eq!(code, Some(0), "{out}");
    let claims: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sub = &claims["claims"]["submods"]["ihsm"];
    assert_eq!(sub["ihsm_checks"]["key-report"]["status"], "affirming");
    assert_eq!(sub["ihsm_attested_key"]["crv"], "P-384");
    // Under another verifier's key: refused by its signature.
    let other_key = d.join("other-ear.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        other_key.to_str().unwrap(),
    ]);
    let (code, out) = check_ear(&other_key, false);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("signature"), "{out}");
    // A lifetime longer than a release accepts is refused before anything.
    let (code, _) = {
        let o = ihsm(
            &s,
            &[
                "verify",
                "evidence",
                "--anchor",
                "x",
                "--refvals",
                "x",
                "--vendor-ecc",
                "x",
                "--vendor-mldsa",
                "x",
                "--certs",
                "x",
                "--quote",
                "x",
                "--log",
                "x",
                "--nonce",
                NONCE,
                "--ear-out",
                "x",
                "--ear-key",
                "x",
                "--ear-lifetime",
                "601",
            ],
        );
        (o.status.code(), ())
    };
    assert_eq!(code, Some(2));

    // By code we did not write: coset splits the messages and builds the
    // Sig_structure; aws-lc-rs checks ES384 with the key openssl reads from the
    // partition certificate; RustCrypto's ml-dsa checks the ML-DSA-87 signature.
    let bytes = std::fs::read(&report).unwrap();
    let (first, second) = two_items(&bytes);
    let m1 = coset::CoseSign1::from_tagged_slice(first).unwrap();
    let m2 = coset::CoseSign1::from_tagged_slice(second).unwrap();
    assert_eq!(
        m1.protected.header.alg,
        Some(coset::iana::Algorithm::ES384.into())
    );
    assert_eq!(m1.payload, m2.payload);
    let ecc = cert_public_key(&pay_certs.join("partition-ecc384.pem"), 97);
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        &ecc,
    )
    .verify(&m1.tbs_data(b""), &m1.signature)
    .expect("ES384 signature");
    {
        use ml_dsa::signature::Verifier as _;
        let key = cert_public_key(&pay_certs.join("partition-mldsa87.pem"), 2592);
        let vk =
            ml_dsa::VerifyingKey::<ml_dsa::MlDsa87>::decode(key.as_slice().try_into().unwrap());
        let sig = ml_dsa::Signature::<ml_dsa::MlDsa87>::decode(
            m2.signature.as_slice().try_into().unwrap(),
        )
        .unwrap();
        vk.verify(&m2.tbs_data(b""), &sig)
            .expect("ML-DSA-87 signature");
    }
    // The attested key is the key `ihsm key public` writes; report_data is the
    // nonce, zero-padded; CKA_ID and the partition are named.
    let payload = m1.payload.clone().unwrap();
    let public = d.join("sig.pub");
    run(&[
        "key",
        "public",
        "-p",
        "payments",
        "--pin-file",
        &pin,
        "--label",
        "sig",
        "--out",
        public.to_str().unwrap(),
    ]);
    let spki = pem_der(&public);
    let point = &spki[spki.len() - 97..];
    let cose_key = field(&payload, 1).into_bytes().unwrap();
    assert_eq!(cose_key.len(), 525);
    let k: ciborium::Value = ciborium::de::from_reader(cose_key.as_slice()).unwrap();
    let kv = |label: i64| {
        k.as_map()
            .unwrap()
            .iter()
            .find(|(l, _)| l.as_integer() == Some(label.into()))
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(kv(-2).into_bytes().unwrap(), point[1..49]);
    assert_eq!(kv(-3).into_bytes().unwrap(), point[49..]);
    let mut want = hex::decode(NONCE).unwrap();
    want.resize(128, 0);
    assert_eq!(field(&payload, 5).into_bytes().unwrap(), want);
    assert_eq!(field(&payload, 104).into_bytes().unwrap(), b"Sig-1");
    assert_eq!(field(&payload, 102).into_text().unwrap(), "payments");
    let counter = |r: &Path| -> u64 {
        let b = std::fs::read(r).unwrap();
        let m = coset::CoseSign1::from_tagged_slice(two_items(&b).0).unwrap();
        u64::try_from(field(&m.payload.unwrap(), 100).into_integer().unwrap()).unwrap()
    };
    let launch = |r: &Path| -> Vec<u8> {
        let b = std::fs::read(r).unwrap();
        let m = coset::CoseSign1::from_tagged_slice(two_items(&b).0).unwrap();
        field(&m.payload.unwrap(), 6).into_bytes().unwrap()
    };

    // The partition certificate chains to the IDevID, as openssl sees it.
    let untrusted = d.join("chain.pem");
    let mut c = Vec::new();
    for l in ["ldevid", "fmc-alias", "rt-alias"] {
        c.extend(std::fs::read(ev.join(format!("{l}-ecc384.pem"))).unwrap());
    }
    std::fs::write(&untrusted, c).unwrap();
    let o = common::output_within(
        std::process::Command::new("openssl").args([
            "verify",
            "-CAfile",
            ev.join("idevid-ecc384.pem").to_str().unwrap(),
            "-untrusted",
            untrusted.to_str().unwrap(),
            pay_certs.join("partition-ecc384.pem").to_str().unwrap(),
        ]),
        std::time::Duration::from_secs(60),
    );
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains(": OK"),
        "openssl verify: {out}{err}"
    );

    // Refused, each by the key-report check: another partition's key under this
    // partition's certificates; another nonce in the report; keys that break the
    // sign-only policy (a secret key: no public key, not a signing pair).
    let foreign = d.join("other.report");
    let o = attest(
        "other",
        &["--label", "sig"],
        NONCE,
        foreign.to_str().unwrap(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let (code, j) = verify(&foreign, &pay_certs, NONCE);
    assert_eq!(code, Some(1));
    let (v, why) = verdict(&j, "key-report");
    assert_eq!(v, "refused");
    assert!(why.contains("signature"), "{why}");
    assert_eq!(verdict(&j, "partition-certificates").0, "affirmed");
    // ... and affirmed under its own partition's certificates.
    let (code, j) = verify(&foreign, &certs("other"), NONCE);
    assert_eq!(code, Some(0), "{j}");

    let stale = d.join("stale.report");
    let other_nonce = format!("ff{}", &NONCE[2..]);
    let o = attest(
        "payments",
        &["--label", "sig"],
        &other_nonce,
        stale.to_str().unwrap(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let (code, j) = verify(&stale, &pay_certs, NONCE);
    assert_eq!(code, Some(1));
    assert!(verdict(&j, "key-report").1.contains("report_data"), "{j}");

    let secret = d.join("secret.report");
    let o = attest(
        "payments",
        &["--label", "bulk"],
        NONCE,
        secret.to_str().unwrap(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("the secret key with label \"bulk\""));
    let (code, j) = verify(&secret, &pay_certs, NONCE);
    assert_eq!(code, Some(1));
    assert_eq!(verdict(&j, "key-report").0, "refused", "{j}");

    // An Ed25519 key's report (an OKP COSE_Key) affirms as a sign-only key.
    let ed = d.join("ed.report");
    let o = attest("payments", &["--label", "ed"], NONCE, ed.to_str().unwrap());
    assert!(o.status.success(), "{:?}", text(&o));
    let (code, j) = verify(&ed, &pay_certs, NONCE);
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(verdict(&j, "key-report").0, "affirmed", "{j}");

    // Refused before anything is signed: a key the format cannot carry (ML-DSA-87:
    // its public key does not fit the 525-byte field), report data over 128
    // bytes, no such key.
    let o = attest(
        "payments",
        &["--label", "pq"],
        NONCE,
        d.join("x").to_str().unwrap(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("KEY_TYPE_INCONSISTENT")
            || text(&o).1.to_lowercase().contains("key type"),
        "{:?}",
        text(&o)
    );
    let o = attest(
        "payments",
        &["--label", "sig"],
        &"ab".repeat(129),
        d.join("x").to_str().unwrap(),
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("at most 128"), "{:?}", text(&o));
    let o = attest(
        "payments",
        &["--label", "nothing"],
        NONCE,
        d.join("x").to_str().unwrap(),
    );
    assert!(!o.status.success());
    assert!(text(&o).1.contains("no key with label"), "{:?}", text(&o));
    assert!(!d.join("x").exists());

    // The counter rises with every report, across a restart of the daemon; the
    // launch id is new at each start.
    let (c1, c2) = (counter(&report), counter(&stale));
    assert!(c2 > c1, "{c1} {c2}");
    let before = launch(&stale);
    drop(daemon);
    daemon = Daemon::start(&s);
    let after = d.join("after.report");
    let o = attest(
        "payments",
        &["--label", "sig"],
        NONCE,
        after.to_str().unwrap(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(counter(&after) > c2);
    assert_ne!(launch(&after), before);
    let (code, j) = verify(&after, &pay_certs, NONCE);
    assert_eq!(code, Some(0), "{j}");
    drop(daemon);
}

/// Secure key release between two devices, each its own `ihsmd` on its own state
/// directory: the destination's unwrap-only RSA key is attested, a verifier
/// appraises the destination into an EAR, the source's Security Officer trusts
/// that verifier, and a key whose release policy the EAR satisfies leaves the
/// source wrapped to the destination key; the destination unwraps the same key
/// (the two compute the same HMAC). Refused: the EAR again (replay), an EAR by
/// another verifier, an expired one, a policy clause that fails, a target whose
/// key report shows a signing key.
#[test]
fn a_key_is_released_to_an_attested_destination_on_another_device() {
    if !common::require_root("the daemons' locked memory") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::ihsmd();
    let (src, dst) = (d.join("src"), d.join("dst"));
    let run = |s: &Path, args: &[&str]| -> String {
        let o = ihsm(s, args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {out}{err}");
        out
    };
    let fails = |s: &Path, args: &[&str]| -> String {
        let o = ihsm(s, args);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail: {out}");
        err
    };
    for s in [&src, &dst] {
        run(s, &["provision", "--dev"]);
    }
    let _a = Daemon::start(&src);
    let _b = Daemon::start(&dst);
    let so = put(d, "so", b"so-pin-1234\n");
    let pin = put(d, "pin", b"user-pin-1234\n");
    for (s, name) in [(&src, "vault"), (&dst, "app")] {
        run(
            s,
            &[
                "partition",
                "create",
                name,
                "--owner-uid",
                "0",
                "--so-pin-file",
                &so,
                "--pin-file",
                &pin,
            ],
        );
    }
    let p = |x: &Path| x.to_str().unwrap().to_owned();

    // The destination: an unwrap-only RSA key, attested for the verifier's nonce.
    run(
        &dst,
        &[
            "key",
            "generate",
            "-p",
            "app",
            "--pin-file",
            &pin,
            "--type",
            "rsa2048",
            "--label",
            "target",
            "--usage",
            "unwrap",
        ],
    );
    run(
        &dst,
        &[
            "key",
            "generate",
            "-p",
            "app",
            "--pin-file",
            &pin,
            "--type",
            "rsa2048",
            "--label",
            "signer",
        ],
    );
    let ev = d.join("ev");
    run(
        &dst,
        &["rot", "evidence", "--nonce", NONCE, "--out", &p(&ev)],
    );
    let refvals = refvals(&dst, &std::fs::read(ev.join("pcr-log.bin")).unwrap(), d);
    let anchor = d.join("anchor.pem");
    let mut a = std::fs::read(ev.join("idevid-ecc384.pem")).unwrap();
    a.extend(std::fs::read(ev.join("idevid-mldsa87.pem")).unwrap());
    std::fs::write(&anchor, a).unwrap();
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    for alg in ["ecc384", "mldsa87"] {
        run(
            &dst,
            &[
                "partition",
                "cert",
                "app",
                "--alg",
                alg,
                "--out",
                &p(&certs.join(format!("partition-{alg}.pem"))),
            ],
        );
    }
    let openssl = |args: &[&str]| {
        let o = common::output_within(
            std::process::Command::new("openssl").args(args),
            std::time::Duration::from_secs(60),
        );
        assert!(o.status.success(), "openssl {args:?}: {:?}", text(&o));
    };
    let keypair = |name: &str| {
        let (k, pubk) = (d.join(format!("{name}.key")), d.join(format!("{name}.pub")));
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            &p(&k),
        ]);
        openssl(&["pkey", "-in", &p(&k), "-pubout", "-out", &p(&pubk)]);
        (k, pubk)
    };
    let (vkey, vpub) = keypair("verifier");
    let (okey, _) = keypair("other-verifier");
    // The verifier's appraisal of the destination, as an EAR.
    let appraise =
        |label: &str, policy: &str, key: &Path, lifetime: &str, name: &str| -> std::path::PathBuf {
            let report = d.join(format!("{name}.report"));
            run(
                &dst,
                &[
                    "key",
                    "attest",
                    "-p",
                    "app",
                    "--pin-file",
                    &pin,
                    "--label",
                    label,
                    "--report-data",
                    NONCE,
                    "--out",
                    &p(&report),
                ],
            );
            let ear = d.join(format!("{name}.ear"));
            let o = ihsm(
                &dst,
                &[
                    "verify",
                    "evidence",
                    "--anchor",
                    &p(&anchor),
                    "--refvals",
                    &p(&refvals),
                    "--vendor-ecc",
                    &p(&d.join("vendor-ecc.pub")),
                    "--vendor-mldsa",
                    &p(&d.join("vendor-mldsa.pub")),
                    "--certs",
                    &p(&ev),
                    "--quote",
                    &p(&ev.join("quote-ecc384.bin")),
                    "--log",
                    &p(&ev.join("pcr-log.bin")),
                    "--nonce",
                    NONCE,
                    "--accept-development",
                    "--key-report",
                    &p(&report),
                    "--partition-certs",
                    &p(&certs),
                    "--key-policy",
                    policy,
                    "--ear-out",
                    &p(&ear),
                    "--ear-key",
                    &p(key),
                    "--ear-lifetime",
                    lifetime,
                ],
            );
            let (out, err) = text(&o);
            assert!(out.contains("key-report"), "{out}{err}");
            ear
        };
    let good = appraise("target", "unwrap-target", &vkey, "300", "good");

    // The source: its SO trusts the verifier; a key whose policy names it.
    let trusted = run(
        &src,
        &[
            "key",
            "trust-verifier",
            "-p",
            "vault",
            "--so-pin-file",
            &so,
            "--key",
            &p(&vpub),
            "--label",
            "verifier",
        ],
    );
    let authority = trusted.trim().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(authority.len(), 43, "{trusted}");
    let policy = |partition: &str| {
        format!(
            r#"{{"version":"1.0.0","anyOf":[{{"authority":"{authority}","allOf":[{{"claim":"submods.ihsm.ear_status","equals":"affirming"}},{{"claim":"submods.ihsm.ihsm_partition.name","equals":"{partition}"}},{{"claim":"submods.ihsm.ihsm_lifecycle","equals":"manufacturing"}}]}}]}}"#
        )
    };
    let pol = put(d, "policy.json", policy("app").as_bytes());
    let elsewhere = put(d, "elsewhere.json", policy("elsewhere").as_bytes());
    run(
        &src,
        &[
            "key",
            "generate",
            "-p",
            "vault",
            "--pin-file",
            &pin,
            "--type",
            "secret",
            "--label",
            "k",
            "--release-policy",
            &pol,
        ],
    );
    run(
        &src,
        &[
            "key",
            "generate",
            "-p",
            "vault",
            "--pin-file",
            &pin,
            "--type",
            "secret",
            "--label",
            "k2",
            "--release-policy",
            &elsewhere,
        ],
    );
    let shown = run(
        &src,
        &[
            "key",
            "release-policy",
            "show",
            "-p",
            "vault",
            "--pin-file",
            &pin,
            "--label",
            "k",
        ],
    );
    assert!(shown.contains(&authority), "{shown}");

    // Released, unwrapped at the destination, the same key.
    let wrapped = d.join("k.wrapped");
    let release = |label: &str, ear: &Path| -> Output {
        ihsm(
            &src,
            &[
                "key",
                "release",
                "-p",
                "vault",
                "--pin-file",
                &pin,
                "--label",
                label,
                "--ear",
                &p(ear),
                "--out",
                &p(&wrapped),
            ],
        )
    };
    let o = release("k", &good);
    assert!(o.status.success(), "{:?}", text(&o));
    run(
        &dst,
        &[
            "key",
            "unwrap",
            "-p",
            "app",
            "--pin-file",
            &pin,
            "--with",
            "target",
            "--in",
            &p(&wrapped),
            "--label",
            "got",
            "--type",
            "secret",
        ],
    );
    let msg = put(d, "msg", b"the same key on both devices?");
    let mac = |s: &Path, partition: &str, label: &str| -> Vec<u8> {
        let out = d.join(format!("{partition}-{label}.mac"));
        run(
            s,
            &[
                "key",
                "sign",
                "-p",
                partition,
                "--pin-file",
                &pin,
                "--label",
                label,
                "--mechanism",
                "hmac-sha256",
                "--in",
                &msg,
                "--out",
                &p(&out),
            ],
        );
        std::fs::read(out).unwrap()
    };
    assert_eq!(mac(&src, "vault", "k"), mac(&dst, "app", "got"));

    // Refused, each for its reason.
    let refused = |o: Output, why: &str| {
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{why}: {out}");
        assert!(err.contains(why), "{why}: {err}");
    };
    refused(release("k", &good), "used before");
    refused(
        release(
            "k2",
            &appraise("target", "unwrap-target", &vkey, "300", "fresh"),
        ),
        "",
    );
    refused(
        release(
            "k",
            &appraise("target", "unwrap-target", &okey, "300", "theirs"),
        ),
        "",
    );
    let short = appraise("target", "unwrap-target", &vkey, "1", "short");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    refused(release("k", &short), "not valid now");
    // A signing key's report does not affirm as a release target, and the EAR
    // made from a sign-only appraisal names a key that is not one.
    refused(
        release(
            "k",
            &appraise("signer", "unwrap-target", &vkey, "300", "signer"),
        ),
        "",
    );
    // The policy only tightens.
    let e = fails(
        &src,
        &[
            "key",
            "release-policy",
            "set",
            "-p",
            "vault",
            "--pin-file",
            &pin,
            "--label",
            "k",
            "--policy",
            &elsewhere,
        ],
    );
    assert!(e.contains("only tightened"), "{e}");
    // ... but the Security Officer, who cannot see the private key, replaces it
    // by its label, and the log records that.
    let out = run(
        &src,
        &[
            "key",
            "release-policy",
            "replace",
            "-p",
            "vault",
            "--so-pin-file",
            &so,
            "--label",
            "k",
            "--policy",
            &elsewhere,
        ],
    );
    assert!(out.contains("replaced by the Security Officer"), "{out}");
    let shown = run(
        &src,
        &[
            "key",
            "release-policy",
            "show",
            "-p",
            "vault",
            "--pin-file",
            &pin,
            "--label",
            "k",
        ],
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&shown).unwrap()
            == serde_json::from_slice::<serde_json::Value>(&std::fs::read(&elsewhere).unwrap())
                .unwrap(),
        "{shown}"
    );
    // Every release, granted or refused, is in the source's audit log.
    let log = run(&src, &["audit", "show", "-p", "vault", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let releases: Vec<&serde_json::Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"]["type"] == "key_released")
        .collect();
    assert_eq!(
        releases
            .iter()
            .filter(|l| l["event"]["granted"] == true)
            .count(),
        1
    );
    assert!(releases.len() >= 5, "{releases:?}");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["event"]["type"] == "release_policy_replaced"),
        "{log:#}"
    );
}
