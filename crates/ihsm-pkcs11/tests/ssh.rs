//! OpenSSH logs in with a key in the HSM: `ssh-keygen -D` prints the token's
//! public keys for `authorized_keys`, and `ssh -I libihsm_pkcs11.so` (the PIN
//! from `SSH_ASKPASS`) authenticates to a real `sshd` with the EC P-256 key and
//! with the RSA-2048 key, each signature made in the HSM; a key the token does
//! not hold and a wrong PIN are refused. sshd runs on a free loopback port from
//! a configuration of the test's own, inside a private mount namespace (a
//! tmpfs on /run for its privilege-separation directory), and is killed when
//! the test ends. `.ci/run` installs openssh-server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);
const SSHD: &str = "/usr/sbin/sshd";

/// sshd in its own mount namespace, serving `dir`'s configuration on `port`.
fn start_sshd(dir: &Path, port: u16) -> Server {
    ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("host_key")),
        LIMIT,
    );
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nLogLevel VERBOSE\n"
        ),
    )
    .unwrap();
    let script = "set -e\nmount -t tmpfs -o mode=755 tmpfs /run\nmkdir /run/sshd\n\
                  exec \"$1\" -D -e -f \"$2\"";
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        SSHD,
    ])
    .arg(dir.join("sshd_config"));
    let mut server = Server::start("sshd", &mut cmd, &dir.join("sshd.log"));
    let log = || std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    wait_for_port(port, Duration::from_secs(30), &mut server, log);
    server
}

/// `ssh -I module root@127.0.0.1 -p PORT echo ...`, the PIN given by an askpass
/// program that prints `pin`.
fn ssh(hsm: &Hsm, dir: &Path, port: u16, pin: &str) -> std::process::Output {
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{pin}'\n")).unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut c = with_hsm(hsm, "ssh");
    c.env("HOME", dir)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("SSH_AUTH_SOCK")
        .args(["-F", "none", "-I"])
        .arg(module())
        .args([
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=no",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-p",
            &port.to_string(),
            "root@127.0.0.1",
            "echo",
            "logged-in-with-a-key-in-ihsm",
        ]);
    run(&mut c, LIMIT)
}

/// The line of `ssh-keygen -D` for the key labelled `label`.
fn public_line(hsm: &Hsm, label: &str) -> String {
    let mut c = with_hsm(hsm, "ssh-keygen");
    c.arg("-D").arg(module());
    let keys = ok(&mut c, LIMIT);
    keys.lines()
        .find(|l| l.ends_with(label))
        .unwrap_or_else(|| panic!("ssh-keygen -D lists no {label}:\n{keys}"))
        .to_owned()
}

#[test]
fn ssh_logs_in_with_ec_and_rsa_keys_in_the_hsm() {
    let _deadline = Deadline::new("ssh", Duration::from_secs(600));
    if !require_root("sshd in a mount namespace, logging in as root")
        || !need_tools(
            "the ssh test",
            &[SSHD, "ssh", "ssh-keygen", "unshare", "mount"],
        )
    {
        return;
    }
    let hsm = Hsm::start();
    keypair(&hsm, "EC:prime256v1", "ssh-ec", "71");
    keypair(&hsm, "rsa:2048", "ssh-rsa", "72");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sshd = start_sshd(dir.path(), port);
    let sshd_log = || std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();

    for (label, kind) in [("ssh-ec", "ECDSA"), ("ssh-rsa", "RSA")] {
        // Only this key is authorized: the login proves the HSM signed with it.
        std::fs::write(
            dir.path().join("authorized_keys"),
            public_line(&hsm, label) + "\n",
        )
        .unwrap();
        let o = ssh(&hsm, dir.path(), port, PIN);
        let out = text(&o);
        assert!(
            o.status.success() && out.contains("logged-in-with-a-key-in-ihsm"),
            "{label}: {out}\nsshd:\n{}",
            sshd_log()
        );
        assert!(
            sshd_log().contains("Accepted publickey for root from 127.0.0.1 port"),
            "{}",
            sshd_log()
        );
        assert!(
            sshd_log().contains(&format!("ssh2: {kind} SHA256:")),
            "{label}: {}",
            sshd_log()
        );
    }

    // A key the token does not hold is authorized: refused.
    let other = dir.path().join("other");
    ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
            .arg(&other),
        LIMIT,
    );
    std::fs::copy(
        dir.path().join("other.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    let o = ssh(&hsm, dir.path(), port, PIN);
    assert!(
        !o.status.success() && text(&o).contains("Permission denied (publickey)"),
        "{}",
        text(&o)
    );

    // The right key, the wrong PIN: the module refuses the login, ssh has no key.
    std::fs::write(
        dir.path().join("authorized_keys"),
        public_line(&hsm, "ssh-ec") + "\n",
    )
    .unwrap();
    let o = ssh(&hsm, dir.path(), port, "wrong-pin-12");
    assert!(
        !o.status.success() && !text(&o).contains("logged-in-with-a-key-in-ihsm"),
        "{}",
        text(&o)
    );
    drop(sshd);
}
