//! Java's SunPKCS11 provider on the module: `keytool` generates an EC P-256 and
//! an RSA-2048 key pair in the token and lists them, `jarsigner` signs a jar with
//! each token key, and `jarsigner -verify` accepts the signed jars (and, with the
//! token's certificate as its trust anchor, under `-strict`) and refuses a jar
//! changed after signing. `.ci/run` installs Java (openjdk-17-jdk-headless).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(180);

/// The SunPKCS11 configuration: the provider is named `SunPKCS11-ihsm`.
fn config(dir: &Path) -> String {
    let cfg = dir.join("pkcs11.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = ihsm\nlibrary = {}\nslotListIndex = 0\n",
            module().display()
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_owned()
}

/// keytool or jarsigner with the token as its keystore.
fn java(hsm: &Hsm, program: &str, cfg: &str, pin: &str) -> Command {
    let mut c = with_hsm(hsm, program);
    c.args([
        "-J-Duser.language=en",
        "-keystore",
        "NONE",
        "-storetype",
        "PKCS11",
        "-providerclass",
        "sun.security.pkcs11.SunPKCS11",
        "-providerarg",
        cfg,
        "-storepass",
        pin,
    ]);
    c
}

/// A jar of two entries, made by `jar`.
fn make_jar(dir: &Path, name: &str) -> String {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("data")).unwrap();
    std::fs::write(src.join("hello.txt"), b"signed by a key in ihsm\n").unwrap();
    std::fs::write(src.join("data/table.bin"), [7u8; 4096]).unwrap();
    let jar = dir.join(name);
    ok(
        Command::new("jar")
            .arg("cf")
            .arg(&jar)
            .arg("-C")
            .arg(&src)
            .arg("."),
        LIMIT,
    );
    jar.to_str().unwrap().to_owned()
}

/// A copy of `jar` with hello.txt's content changed and everything else (the
/// signature files included) as it was.
fn tamper(jar: &str, out: &str) {
    let script = r#"
import sys, zipfile
src = zipfile.ZipFile(sys.argv[1])
dst = zipfile.ZipFile(sys.argv[2], "w")
for i in src.infolist():
    data = src.read(i.filename)
    if i.filename == "hello.txt":
        data = b"changed after signing\n"
    dst.writestr(i, data)
dst.close()
"#;
    ok(
        Command::new("python3").args(["-c", script, jar, out]),
        LIMIT,
    );
}

#[test]
fn keytool_makes_keys_in_the_token_and_jarsigner_signs_with_them() {
    let _deadline = Deadline::new("java", Duration::from_secs(900));
    if !need_tools(
        "the SunPKCS11 test",
        &[
            "java",
            "keytool",
            "jarsigner",
            "jar",
            "pkcs11-tool",
            "python3",
        ],
    ) {
        return;
    }
    let hsm = Hsm::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());

    // -providername makes keytool generate with the token's provider: without it
    // keytool takes the first provider that offers the algorithm, and for RSA
    // that is SunRsaSign, in software, which would then import the key.
    for (alias, alg, says) in [
        (
            "ec",
            &["-keyalg", "EC", "-groupname", "secp256r1"][..],
            // "256 bit EC key pair" or, in later JDK 17 updates,
            // "256 bit EC (secp256r1) key pair".
            "256 bit EC",
        ),
        (
            "rsa",
            &["-keyalg", "RSA", "-keysize", "2048"][..],
            "048 bit RSA",
        ),
    ] {
        let mut genkey = java(&hsm, "keytool", &cfg, PIN);
        genkey
            .args([
                "-genkeypair",
                "-providername",
                "SunPKCS11-ihsm",
                "-alias",
                alias,
            ])
            .args(alg)
            .args(["-dname", &format!("CN=ihsm {alias}"), "-validity", "30"]);
        let out = ok(&mut genkey, LIMIT);
        assert!(out.contains(says), "{out}");
    }
    let mut list = java(&hsm, "keytool", &cfg, PIN);
    list.arg("-list");
    let listed = ok(&mut list, LIMIT);
    assert!(
        listed.contains("Keystore provider: SunPKCS11-ihsm"),
        "{listed}"
    );
    assert!(
        listed.contains("Your keystore contains 2 entries"),
        "{listed}"
    );
    for alias in ["ec", "rsa"] {
        assert!(
            listed.contains(&format!("{alias}, PrivateKeyEntry")),
            "{listed}"
        );
    }
    // The private keys were born in the HSM and cannot leave it: SunPKCS11 names
    // each key and certificate by its alias (CKA_ID "ec" = 6563, "rsa" = 727361).
    let objects = pkcs11_tool(&hsm, &["-O"]);
    for (kind, id) in [("EC", "6563"), ("RSA", "727361")] {
        let key = objects
            .split("Private Key Object; ")
            .find(|o| o.starts_with(kind) && o.contains(&format!("ID:         {id}")))
            .unwrap_or_else(|| panic!("no {kind} private key {id}:\n{objects}"));
        let access = key
            .lines()
            .find(|l| l.contains("Access:"))
            .unwrap_or_default();
        assert!(
            access.contains("never extractable") && access.contains("local"),
            "{kind}: {access}\n{objects}"
        );
    }
    assert_eq!(
        objects
            .matches("Certificate Object; type = X.509 cert")
            .count(),
        2,
        "{objects}"
    );

    // The token's EC certificate as a trust anchor for -strict.
    let trust = dir.path().join("trust.p12");
    let ec_pem = dir.path().join("ec.pem");
    let mut export = java(&hsm, "keytool", &cfg, PIN);
    export
        .args(["-exportcert", "-alias", "ec", "-rfc", "-file"])
        .arg(&ec_pem);
    ok(&mut export, LIMIT);
    ok(
        Command::new("keytool")
            .args([
                "-J-Duser.language=en",
                "-importcert",
                "-noprompt",
                "-alias",
                "ec",
            ])
            .arg("-file")
            .arg(&ec_pem)
            .arg("-keystore")
            .arg(&trust)
            .args(["-storetype", "PKCS12", "-storepass", "trust-pass"]),
        LIMIT,
    );

    for (alias, algorithm, bits) in [
        ("ec", "SHA256withECDSA", "256-bit key"),
        ("rsa", "SHA256withRSA", "2048-bit key"),
    ] {
        let jar = make_jar(dir.path(), &format!("app-{alias}.jar"));
        let mut sign = java(&hsm, "jarsigner", &cfg, PIN);
        sign.args([&jar, alias]);
        let signed = ok(&mut sign, LIMIT);
        assert!(signed.contains("jar signed."), "{signed}");
        let verified = ok(
            Command::new("jarsigner").args([
                "-J-Duser.language=en",
                "-verify",
                "-verbose",
                "-certs",
                &jar,
            ]),
            LIMIT,
        );
        assert!(verified.contains("jar verified."), "{alias}: {verified}");
        assert!(
            verified.contains(&format!("Signed by \"CN=ihsm {alias}\"")),
            "{alias}: {verified}"
        );
        assert!(
            verified.contains(&format!("Signature algorithm: {algorithm}, {bits}")),
            "{alias}: {verified}"
        );
        // Every entry is covered by the signature ("s" = signature verified).
        assert!(verified.contains("hello.txt") && verified.contains("table.bin"));

        // Tampered: the digest of the changed entry no longer matches.
        let bad = format!("{jar}.tampered.jar");
        tamper(&jar, &bad);
        let refused = fails(
            Command::new("jarsigner").args(["-J-Duser.language=en", "-verify", &bad]),
            LIMIT,
        );
        assert!(
            refused.contains("digest error for hello.txt"),
            "{alias}: {refused}"
        );
    }

    // -strict: the EC jar's signer chains to the trusted token certificate; with
    // no trust anchor the self-signed signer is an error.
    let ec_jar = dir.path().join("app-ec.jar");
    let ec_jar = ec_jar.to_str().unwrap();
    let strict = ok(
        Command::new("jarsigner")
            .args(["-J-Duser.language=en", "-verify", "-strict", "-keystore"])
            .arg(&trust)
            .args(["-storetype", "PKCS12", "-storepass", "trust-pass", ec_jar]),
        LIMIT,
    );
    assert!(strict.contains("jar verified."), "{strict}");
    let untrusted = fails(
        Command::new("jarsigner").args(["-J-Duser.language=en", "-verify", "-strict", ec_jar]),
        LIMIT,
    );
    assert!(untrusted.contains("self-signed"), "{untrusted}");

    // A wrong PIN: the keystore does not open, and the token says why.
    let mut wrong = java(&hsm, "keytool", &cfg, "wrong-pin-12");
    wrong.args(["-list", "-v"]);
    let refused = fails(&mut wrong, LIMIT);
    assert!(refused.contains("CKR_PIN_INCORRECT"), "{refused}");
}
