//! NSS on the module: `modutil -add` registers it in an NSS database, `certutil
//! -K`/`-L` list the token's keys and certificates, `certutil -R` makes
//! certificate requests signed by keys in the token (an existing one and a new
//! one) that `openssl req -verify` accepts, and `certutil -S` makes a
//! self-signed certificate in the token whose signature openssl checks.
//! `.ci/run` installs NSS's tools (libnss3-tools).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

/// certutil or modutil on the database in `db` (`sql:` format).
fn nss(hsm: &Hsm, program: &str, db: &Path) -> Command {
    let mut c = with_hsm(hsm, program);
    let flag = if program == "modutil" { "-dbdir" } else { "-d" };
    c.arg(flag).arg(format!("sql:{}", db.display()));
    c
}

/// The public key of token object `id`, as PEM (through pkcs11-tool and openssl).
fn token_public_key(hsm: &Hsm, dir: &Path, id: &str) -> String {
    let der = dir.join(format!("pub-{id}.der"));
    pkcs11_tool(
        hsm,
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            id,
            "-o",
            der.to_str().unwrap(),
        ],
    );
    ok(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&der),
        LIMIT,
    )
}

#[test]
fn certutil_lists_the_token_and_signs_requests_and_certificates_with_its_keys() {
    let _deadline = Deadline::new("nss", Duration::from_secs(600));
    if !need_tools(
        "the NSS test",
        &["certutil", "modutil", "pkcs11-tool", "openssl"],
    ) {
        return;
    }
    let hsm = Hsm::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let pw = dir.path().join("pin");
    std::fs::write(&pw, format!("{PIN}\n")).unwrap();
    let noise = dir.path().join("noise");
    std::fs::write(&noise, [0x5au8; 64]).unwrap();
    ok(
        nss(&hsm, "certutil", &db).args(["-N", "--empty-password"]),
        LIMIT,
    );

    let m = module();
    let added = ok(
        nss(&hsm, "modutil", &db)
            .args(["-add", "ihsm", "-libfile"])
            .arg(&m)
            .arg("-force"),
        LIMIT,
    );
    assert!(
        added.contains("Module \"ihsm\" added to database."),
        "{added}"
    );
    let listed = ok(
        nss(&hsm, "modutil", &db).args(["-list", "ihsm", "-force"]),
        LIMIT,
    );
    for want in [
        "Library file: ",
        "Slot: ihsm partition tok",
        "Token Name: tok ",
        "Token Manufacturer: ihsm ",
        "User Pin: Initialized",
    ] {
        assert!(listed.contains(want), "{want}: {listed}");
    }
    assert!(listed.contains(m.to_str().unwrap()), "{listed}");

    // Two keys made by another tool; NSS finds them by label and CKA_ID.
    keypair(&hsm, "EC:prime256v1", "nss-ec", "61");
    keypair(&hsm, "rsa:2048", "nss-rsa", "62");
    let certutil = || {
        let mut c = nss(&hsm, "certutil", &db);
        c.args(["-h", "tok", "-f"]).arg(&pw);
        c
    };
    let keys = ok(certutil().arg("-K"), LIMIT);
    assert!(keys.contains("Checking token \"tok\""), "{keys}");
    for (kind, label) in [("ec", "nss-ec"), ("rsa", "nss-rsa")] {
        assert!(
            keys.lines()
                .any(|l| l.contains(&format!("> {kind} ")) && l.ends_with(label)),
            "{label}: {keys}"
        );
    }

    // Requests signed by the existing keys (-k CKA_ID): verified by openssl, and
    // carrying the token key's public half.
    for (id, subject) in [("61", "CN=nss ec request"), ("62", "CN=nss rsa request")] {
        let csr = dir.path().join(format!("{id}.csr"));
        ok(
            certutil()
                .args(["-R", "-k", id, "-s", subject, "-a", "-o"])
                .arg(&csr),
            LIMIT,
        );
        let verified = ok(
            Command::new("openssl")
                .args(["req", "-noout", "-verify", "-pubkey", "-in"])
                .arg(&csr),
            LIMIT,
        );
        assert!(
            verified.contains("Certificate request self-signature verify OK")
                || verified.contains("verify OK"),
            "{id}: {verified}"
        );
        let public = token_public_key(&hsm, dir.path(), id);
        assert!(
            verified.contains(public.trim()),
            "{id}: the request's key is not the token's:\n{verified}\n{public}"
        );
    }

    // A request with a key pair certutil makes in the token, RSA-2048.
    let csr = dir.path().join("new.csr");
    ok(
        certutil()
            .args([
                "-R",
                "-k",
                "rsa",
                "-g",
                "2048",
                "-s",
                "CN=nss new key",
                "-z",
            ])
            .arg(&noise)
            .args(["-a", "-o"])
            .arg(&csr),
        LIMIT,
    );
    let verified = ok(
        Command::new("openssl")
            .args(["req", "-noout", "-verify", "-in"])
            .arg(&csr),
        LIMIT,
    );
    assert!(verified.contains("verify OK"), "{verified}");

    // A self-signed certificate made in the token: key, signature and certificate.
    ok(
        certutil()
            .args([
                "-S",
                "-x",
                "-n",
                "nss-self",
                "-s",
                "CN=nss self",
                "-t",
                "CTu,,",
                "-k",
                "ec",
                "-q",
                "nistp256",
                "-v",
                "12",
                "-z",
            ])
            .arg(&noise),
        LIMIT,
    );
    let certs = ok(certutil().arg("-L"), LIMIT);
    assert!(certs.contains("tok:nss-self"), "{certs}");
    let keys = ok(certutil().arg("-K"), LIMIT);
    assert!(keys.contains("tok:nss-self"), "{keys}");
    let pem = ok(certutil().args(["-L", "-n", "tok:nss-self", "-a"]), LIMIT);
    let start = pem
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a PEM certificate");
    let cert = dir.path().join("self.pem");
    std::fs::write(&cert, &pem[start..]).unwrap();
    let checked = ok(
        Command::new("openssl")
            .args(["verify", "-check_ss_sig", "-partial_chain", "-CAfile"])
            .arg(&cert)
            .arg(&cert),
        LIMIT,
    );
    assert!(checked.contains(": OK"), "{checked}");
    let text = ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-text", "-in"])
            .arg(&cert),
        LIMIT,
    );
    assert!(
        text.contains("CN = nss self") && text.contains("ecdsa-with-SHA256"),
        "{text}"
    );

    // A wrong PIN: certutil cannot log in to list private keys.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "wrong-pin-12\n").unwrap();
    let refused = fails(
        nss(&hsm, "certutil", &db)
            .args(["-K", "-h", "tok", "-f"])
            .arg(&wrong),
        LIMIT,
    );
    assert!(
        refused.contains("SEC_ERROR_BAD_PASSWORD") || refused.contains("authenticate"),
        "{refused}"
    );
}
