//! OpenSC's `pkcs11-tool --test` on a token holding RSA-2048, EC P-256 and
//! AES-256 keys, on a partition with the default policy (SHA-1 signatures
//! refused) and on one created with `--allow-sha1-signatures`: it passes on
//! both, so it needs no SHA-1. Its RSA tests sign with `CKM_RSA_PKCS` in parts
//! (`C_SignUpdate`/`C_SignFinal`) data the caller formatted, a SHA-1 DigestInfo
//! among them, which `CKM_RSA_PKCS` signs as it is. And `pkcs11-tool --sign
//! --mechanism RSA-PKCS` of a DigestInfo the caller made, which openssl
//! recovers from the signature. (`tests/clients.rs` runs `--test` on EC and AES
//! keys alone, and `--test-ec`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::process::Command;
use std::time::Duration;

use common::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(300);

/// pkcs11-tool on token `token`, logged in.
fn tool(hsm: &Hsm, token: &str, args: &[&str]) -> String {
    let mut c = with_hsm(hsm, "pkcs11-tool");
    c.arg("--module")
        .arg(module())
        .args(["--token-label", token, "--login", "--pin", PIN])
        .args(args);
    ok(&mut c, LIMIT)
}

fn keys(hsm: &Hsm, token: &str) {
    for args in [
        &[
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--label",
            "rsa",
            "--id",
            "01",
        ][..],
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "ec",
            "--id",
            "02",
        ],
        &[
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "aes",
            "--id",
            "03",
        ],
    ] {
        tool(hsm, token, args);
    }
}

#[test]
fn pkcs11_tool_test_passes_with_rsa_ec_and_aes_keys_and_needs_no_sha1() {
    let _deadline = Deadline::new("pkcs11-tool --test", Duration::from_secs(900));
    if !need_tools("pkcs11-tool --test", &["pkcs11-tool"]) {
        return;
    }
    let hsm = Hsm::start();
    let dir = tempfile::tempdir().unwrap();
    let (so, user) = (dir.path().join("so.pin"), dir.path().join("user.pin"));
    std::fs::write(&so, format!("{SO_PIN}\n")).unwrap();
    std::fs::write(&user, format!("{PIN}\n")).unwrap();
    let uid = rustix::process::geteuid().as_raw().to_string();
    ok(
        Command::new(ihsm_cli())
            .arg("--state")
            .arg(hsm.state())
            .args(["partition", "create", "legacy", "--owner-uid", &uid])
            .arg("--so-pin-file")
            .arg(&so)
            .arg("--pin-file")
            .arg(&user)
            .arg("--allow-sha1-signatures"),
        LIMIT,
    );
    for token in ["tok", "legacy"] {
        keys(&hsm, token);
        let out = tool(&hsm, token, &["--test"]);
        for want in [
            "all 4 digest functions seem to work",
            "all 4 signature functions seem to work",
            "RSA-PKCS: OK",
            "SHA256-RSA-PKCS: OK",
            "testing key 0 (rsa)",
            "No errors",
        ] {
            assert!(out.contains(want), "{token}: {want:?} missing:\n{out}");
        }
        // Signature, verification and OAEP decryption with the RSA key.
        assert!(
            out.matches("RSA-PKCS: OK").count() >= 2,
            "{token}: sign and verify:\n{out}"
        );
        assert!(out.contains("RSA-PKCS-OAEP"), "{token}:\n{out}");
        assert!(!out.contains("CKR_"), "{token}:\n{out}");
    }
    // SHA-1 signatures through PKCS#11: refused by the default policy, made
    // where the partition allows them (ECDSA-SHA1 and SHA1-RSA-PKCS).
    let msg = dir.path().join("msg");
    std::fs::write(&msg, b"legacy client").unwrap();
    for (mech, id) in [("ECDSA-SHA1", "02"), ("SHA1-RSA-PKCS", "01")] {
        let sig = dir.path().join(format!("{mech}.sig"));
        let sign = |token: &str| {
            let mut c = with_hsm(&hsm, "pkcs11-tool");
            c.arg("--module")
                .arg(module())
                .args(["--token-label", token, "--login", "--pin", PIN])
                .args(["--sign", "--mechanism", mech, "--id", id, "-i"])
                .arg(&msg)
                .arg("-o")
                .arg(&sig);
            run(&mut c, LIMIT)
        };
        let refused = sign("tok");
        assert!(!refused.status.success(), "{mech} signed on tok");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("CKR_MECHANISM_INVALID"),
            "{mech} on tok: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let made = sign("legacy");
        assert!(
            made.status.success(),
            "{mech} on legacy: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        assert!(std::fs::metadata(&sig).unwrap().len() >= 64, "{mech}");
    }
    // The SHA-1 policy shows in the mechanism lists: signature mechanisms of
    // SHA-1 only where the partition allows them.
    let mechs = |token| tool(&hsm, token, &["-M"]);
    assert!(!mechs("tok").contains("SHA1-RSA-PKCS"), "{}", mechs("tok"));
    assert!(
        mechs("legacy").contains("SHA1-RSA-PKCS"),
        "{}",
        mechs("legacy")
    );
}

#[test]
fn pkcs11_tool_signs_a_caller_made_digest_info_with_rsa_pkcs() {
    let _deadline = Deadline::new("RSA-PKCS", Duration::from_secs(600));
    if !need_tools("RSA-PKCS through pkcs11-tool", &["pkcs11-tool", "openssl"]) {
        return;
    }
    let hsm = Hsm::start();
    tool(
        &hsm,
        "tok",
        &[
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--label",
            "raw",
            "--id",
            "21",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // DER DigestInfo of SHA-256("ihsm"), made by the caller.
    let digest = ok(
        Command::new("sh").args([
            "-c",
            "printf ihsm | openssl dgst -sha256 -binary | od -An -tx1 | tr -d ' \\n'",
        ]),
        LIMIT,
    );
    let info = format!("3031300d060960864801650304020105000420{}", digest.trim());
    std::fs::write(f("info"), hex::decode(&info).unwrap()).unwrap();
    // pkcs11-tool sends it with C_SignUpdate/C_SignFinal.
    tool(
        &hsm,
        "tok",
        &[
            "--sign",
            "--mechanism",
            "RSA-PKCS",
            "--id",
            "21",
            "-i",
            &f("info"),
            "-o",
            &f("sig"),
        ],
    );
    assert_eq!(std::fs::read(f("sig")).unwrap().len(), 256);
    tool(
        &hsm,
        "tok",
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            "21",
            "-o",
            &f("pub.der"),
        ],
    );
    ok(
        Command::new("openssl").args([
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            &f("pub.der"),
            "-out",
            &f("pub.pem"),
        ]),
        LIMIT,
    );
    ok(
        Command::new("openssl").args([
            "pkeyutl",
            "-verifyrecover",
            "-pubin",
            "-inkey",
            &f("pub.pem"),
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-in",
            &f("sig"),
            "-out",
            &f("recovered"),
        ]),
        LIMIT,
    );
    assert_eq!(
        hex::encode(std::fs::read(f("recovered")).unwrap()),
        info,
        "openssl recovers the DigestInfo pkcs11-tool signed"
    );
    // And openssl verifies it as a SHA-256 signature of the data itself.
    std::fs::write(f("data"), b"ihsm").unwrap();
    let v = ok(
        Command::new("openssl").args([
            "dgst",
            "-sha256",
            "-verify",
            &f("pub.pem"),
            "-signature",
            &f("sig"),
            &f("data"),
        ]),
        LIMIT,
    );
    assert!(v.contains("Verified OK"), "{v}");
    // More than k - 11 bytes: the specification's data length error.
    std::fs::write(f("long"), [0x42u8; 246]).unwrap();
    let mut c = with_hsm(&hsm, "pkcs11-tool");
    c.arg("--module").arg(module()).args([
        "--token-label",
        "tok",
        "--login",
        "--pin",
        PIN,
        "--sign",
        "--mechanism",
        "RSA-PKCS",
        "--id",
        "21",
        "-i",
        &f("long"),
        "-o",
        &f("junk"),
    ]);
    let refused = fails(&mut c, LIMIT);
    assert!(refused.contains("CKR_DATA_LEN_RANGE"), "{refused}");
}
