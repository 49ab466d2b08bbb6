//! The `ihsm` command line against a real `ihsmd`: the README's tour, as a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, ihsm};

fn ok(state: &Path, args: &[&str]) -> String {
    let out = ihsm(state, args);
    assert!(
        out.status.success(),
        "ihsm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(state: &Path, args: &[&str]) -> String {
    let out = ihsm(state, args);
    assert!(!out.status.success(), "ihsm {args:?} should have failed");
    String::from_utf8(out.stderr).unwrap().trim_end().to_owned()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn uid() -> String {
    rustix::process::geteuid().as_raw().to_string()
}

#[test]
fn the_readme_tour() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("state");
    let d = Daemon::start(&s);
    let f = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(f("so-pin"), "so-pin-1234\n").unwrap();
    std::fs::write(f("pin"), "user-pin-1234\n").unwrap();

    let status = ok(&s, &["status"]);
    assert!(
        status.contains("operational") && status.contains("development device"),
        "{status}"
    );
    assert!(
        status.contains("ROM -> ROM -> ROM -> FMC -> RT"),
        "{status}"
    );
    let front = ok(&s, &[]);
    assert_eq!(
        front,
        status.replace(&uptime_line(&status), &uptime_line(&front))
    );

    // A partition for this user, a key, a signature openssl verifies.
    let created = ok(
        &s,
        &[
            "partition",
            "create",
            "tenant-a",
            "--owner-uid",
            &uid(),
            "--so-pin-file",
            &f("so-pin"),
            "--pin-file",
            &f("pin"),
        ],
    );
    assert!(created.contains("created partition tenant-a"), "{created}");
    let e = fails(
        &s,
        &[
            "partition",
            "create",
            "tenant-a",
            "--owner-uid",
            "1",
            "--so-pin-file",
            &f("so-pin"),
        ],
    );
    assert!(e.contains("already exists"), "{e}");
    let login = ["--partition", "tenant-a", "--pin-file", &f("pin")];
    let made = ok(
        &s,
        &[
            &["key", "generate", "--type", "ec-p256", "--label", "web"][..],
            &login,
        ]
        .concat(),
    );
    assert!(made.contains("web: public key"), "{made}");
    std::fs::write(f("msg"), b"the message").unwrap();
    ok(
        &s,
        &[
            &[
                "key",
                "sign",
                "--label",
                "web",
                "--mechanism",
                "ecdsa-sha256",
                "--der",
                "--in",
                &f("msg"),
                "--out",
                &f("sig"),
            ][..],
            &login,
        ]
        .concat(),
    );
    ok(
        &s,
        &[
            &["key", "public", "--label", "web", "--out", &f("web.pub")][..],
            &login,
        ]
        .concat(),
    );
    let v = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &f("web.pub"),
        "-signature",
        &f("sig"),
        &f("msg"),
    ]);
    assert!(v.contains("Verified OK"), "{v}");

    // Bulk generation, listing, JSON that never shows a secret.
    ok(
        &s,
        &[
            &[
                "key", "generate", "--type", "aes256", "--label", "bulk", "--count", "12",
            ][..],
            &login,
        ]
        .concat(),
    );
    let list: serde_json::Value =
        serde_json::from_str(&ok(&s, &[&["key", "list", "--json"][..], &login].concat())).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 14);
    let shown = ok(
        &s,
        &[&["key", "show", "--label", "bulk-3"][..], &login].concat(),
    );
    assert!(
        shown.contains("sensitive") && shown.contains("AES"),
        "{shown}"
    );
    assert!(!shown.contains("value "), "{shown}");
    let e = fails(
        &s,
        &[&["key", "delete", "--label", "web"][..], &login].concat(),
    );
    assert!(e.contains("--all"), "{e}");
    ok(
        &s,
        &[&["key", "delete", "--label", "bulk-0"][..], &login].concat(),
    );
    let wrong = f("wrong-pin");
    std::fs::write(&wrong, "nope-nope").unwrap();
    let e = fails(
        &s,
        &[
            "key",
            "list",
            "--partition",
            "tenant-a",
            "--pin-file",
            &wrong,
        ],
    );
    assert!(e.contains("incorrect PIN"), "{e}");

    // The root of trust through the mailbox: a quote, the chain, PCRs, the log.
    let nonce = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    ok(
        &s,
        &[
            "rot",
            "quote",
            "--nonce",
            nonce,
            "--alg",
            "ecc384",
            "--out",
            &f("quote.bin"),
        ],
    );
    assert_eq!(std::fs::read(f("quote.bin")).unwrap().len(), 1848);
    ok(&s, &["rot", "certs", "--out", &f("certs")]);
    let c = |n: &str| format!("{}/{n}", f("certs"));
    let chain = [c("ldevid-ecc384.pem"), c("fmc-alias-ecc384.pem")]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    std::fs::write(f("intermediates.pem"), chain).unwrap();
    let v = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &c("idevid-ecc384.pem"),
        "-untrusted",
        &f("intermediates.pem"),
        &c("rt-alias-ecc384.pem"),
    ]);
    assert!(v.contains("OK"), "{v}");
    let pcrs: serde_json::Value =
        serde_json::from_str(&ok(&s, &["rot", "pcrs", "--json"])).unwrap();
    assert_eq!(pcrs.as_array().unwrap().len(), 32);
    let boot: serde_json::Value =
        serde_json::from_str(&ok(&s, &["rot", "boot", "--json"])).unwrap();
    assert_eq!(pcrs[0]["value"], boot["boot_pcrs"][0]);
    assert!(ok(&s, &["rot", "log"]).contains("FmcTci"));
    ok(
        &s,
        &["rot", "csr", "--alg", "ecc384", "--out", &f("idevid.csr")],
    );
    let csr = openssl(&["req", "-in", &f("idevid.csr"), "-noout", "-verify"]);
    assert!(
        csr.contains("verify OK") || csr.contains("Certificate request self-signature verify OK"),
        "{csr}"
    );
    ok(
        &s,
        &[
            "partition",
            "cert",
            "tenant-a",
            "--out",
            &f("partition.pem"),
        ],
    );
    let v = openssl(&[
        "verify",
        "-partial_chain",
        "-CAfile",
        &c("rt-alias-ecc384.pem"),
        &f("partition.pem"),
    ]);
    assert!(v.contains("OK"), "{v}");

    // Partitions as an administrator sees them.
    let parts: serde_json::Value =
        serde_json::from_str(&ok(&s, &["partition", "list", "--json"])).unwrap();
    assert_eq!(parts[0]["name"], "tenant-a");
    assert_eq!(parts[0]["token_objects"], 13);
    assert!(ok(&s, &["partition", "show", "tenant-a"]).contains("tenant-a.sock"));

    // Tamper: the status says so and every partition call fails with the reason.
    ok(&s, &["tamper", "--sensor", "lid"]);
    let st = ok(&s, &["status"]);
    assert!(st.contains("TAMPERED (lid sensor)"), "{st}");
    assert!(
        st.contains("lifecycle manufacturing"),
        "what the device was is still shown: {st}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&s, &["status", "--json"])).unwrap();
    assert!(json["state"]["Tampered"].as_str().unwrap().contains("lid"));
    let e = fails(&s, &[&["key", "list"][..], &login].concat());
    assert!(e.contains("TAMPERED") && e.contains("lid sensor"), "{e}");
    drop(d);
}

fn uptime_line(status: &str) -> String {
    status
        .lines()
        .find(|l| l.trim_start().starts_with("uptime"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn partition_delete_needs_confirmation_and_zeroizes() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("state");
    let _d = Daemon::start(&s);
    let so = dir.path().join("so");
    std::fs::write(&so, "so-pin-1234").unwrap();
    ok(
        &s,
        &[
            "partition",
            "create",
            "gone",
            "--owner-uid",
            &uid(),
            "--so-pin-file",
            so.to_str().unwrap(),
        ],
    );
    let e = fails(&s, &["partition", "delete", "gone"]);
    assert!(e.contains("--yes"), "{e}");
    let out = ok(&s, &["partition", "delete", "gone", "--yes"]);
    assert!(out.contains("deleted partition gone"), "{out}");
    assert!(!s.join("partitions/gone.sock").exists());
    let e = fails(&s, &["partition", "show", "gone"]);
    assert!(e.contains("no such partition"), "{e}");
    let e = fails(
        &s,
        &[
            "partition",
            "create",
            "Bad Name",
            "--owner-uid",
            "1",
            "--so-pin-file",
            so.to_str().unwrap(),
        ],
    );
    assert!(e.contains("invalid partition name"), "{e}");
}

/// The id of `name` in `/etc/passwd` or `/etc/group`, as the CLI looks it up.
fn id_of(db: &str, name: &str) -> Option<u32> {
    std::fs::read_to_string(db).ok()?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
    })
}

#[test]
fn partitions_admit_principals_by_number_or_name_and_show_them() {
    let dir = tempfile::tempdir().unwrap();
    // Others may traverse to the socket (the uid allowed below connects).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = dir.path().join("state");
    let d = Daemon::start(&s);
    let so = dir.path().join("so");
    std::fs::write(&so, "so-pin-1234").unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "user-pin-1234").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (so, pin) = (so.to_str().unwrap(), pin.to_str().unwrap());
    let me = uid();
    ok(
        &s,
        &[
            "partition",
            "create",
            "web",
            "--owner-uid",
            &me,
            "--so-pin-file",
            so,
            "--pin-file",
            pin,
            "--allow-sha1-signatures",
        ],
    );
    let shown = ok(&s, &["partition", "show", "web"]);
    assert!(
        shown.contains(&format!("admits       uid {me}\n")),
        "{shown}"
    );
    assert!(
        shown.contains("SHA-1 signatures allowed (--allow-sha1-signatures)"),
        "{shown}"
    );

    // By number, by name; twice is once, and says so.
    let out = ok(&s, &["partition", "allow", "web", "--uid", "60001"]);
    assert_eq!(
        out.trim(),
        format!("partition web now admits uid 60001 (it admits uid {me}, uid 60001)")
    );
    let out = ok(&s, &["partition", "allow", "web", "--uid", "60001"]);
    assert!(
        out.contains("already admits uid 60001; nothing changed"),
        "{out}"
    );
    let nobody = id_of("/etc/passwd", "nobody").expect("a Debian system has nobody");
    let out = ok(&s, &["partition", "allow", "web", "--uid", "nobody"]);
    assert!(out.contains(&format!("now admits uid {nobody}")), "{out}");
    let nogroup = id_of("/etc/group", "nogroup").expect("a Debian system has nogroup");
    let out = ok(&s, &["partition", "allow", "web", "--gid", "nogroup"]);
    assert!(out.contains(&format!("now admits gid {nogroup}")), "{out}");
    let shown = ok(&s, &["partition", "show", "web"]);
    assert!(
        shown.contains(&format!(
            "admits       uid {me}, uid 60001, uid {nobody}, gid {nogroup}\n"
        )),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&s, &["partition", "show", "web", "--json"])).unwrap();
    assert_eq!(
        json["principals"],
        serde_json::json!([{"uid": 60001}, {"uid": nobody}, {"gid": nogroup}])
    );
    assert_eq!(json["policy"]["allow_sha1_signatures"], true);

    // Revoked; and what cannot be done, refused with the reason.
    let out = ok(&s, &["partition", "revoke", "web", "--uid", "nobody"]);
    assert!(
        out.contains(&format!("no longer admits uid {nobody}")),
        "{out}"
    );
    let out = ok(&s, &["partition", "revoke", "web", "--uid", "nobody"]);
    assert!(out.contains("did not admit"), "{out}");
    let e = fails(&s, &["partition", "revoke", "web", "--uid", &me]);
    assert!(e.contains("cannot be revoked"), "{e}");
    let e = fails(
        &s,
        &["partition", "allow", "web", "--uid", "no-such-user-here"],
    );
    assert!(e.contains("no user named \"no-such-user-here\""), "{e}");
    let e = fails(&s, &["partition", "allow", "nope", "--uid", "1"]);
    assert!(e.contains("no such partition"), "{e}");
    let e = fails(&s, &["partition", "allow", "web"]);
    assert!(e.contains("--uid") && e.contains("--gid"), "{e}");
    let e = fails(
        &s,
        &["partition", "allow", "web", "--uid", "1", "--gid", "1"],
    );
    assert!(e.contains("cannot be used with"), "{e}");
    // A partition made without the flag refuses SHA-1 signatures.
    ok(
        &s,
        &[
            "partition",
            "create",
            "plain",
            "--owner-uid",
            &me,
            "--so-pin-file",
            so,
        ],
    );
    let shown = ok(&s, &["partition", "show", "plain"]);
    assert!(shown.contains("SHA-1 signatures refused"), "{shown}");

    // A user the partition does not admit reads, from the CLI, what to do.
    if !common::require_root("running ihsm as another user") {
        return;
    }
    let as_user = |uid: u32| {
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_ihsm"))
            .args(["--state", s.to_str().unwrap(), "key", "list"])
            .args(["--partition", "web", "--pin-file", pin])
            .env_remove("IHSM_STATE")
            .uid(uid)
            .gid(uid)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::finish(child, Duration::from_secs(60))
    };
    let out = as_user(60001);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_user(60002);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "ihsm: partition \"web\" admits uid {me}, uid 60001, gid {nogroup}; uid 60002 gid 60002 is not among them; to admit it: ihsm partition allow web --uid 60002"
        )
    );
    drop(d);
}
