//! p11-kit finds the module through `packaging/ihsm.module`, installed as the
//! packaging says: the file, unchanged, in p11-kit's module configuration
//! directory and the module in p11-kit's module directory. p11-kit ignores a
//! user's own configuration when it runs as root, so the test installs both in
//! a private mount namespace (`unshare -m`), bound over the system's
//! directories for the one command and seen by nothing else on the host. Then
//! `p11-kit list-modules`, GnuTLS's `p11tool` and OpenSC's `pkcs11-tool`
//! through `p11-kit-proxy.so` see the ihsm token and use it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

fn packaged() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/ihsm.module")
}

/// The multiarch library directory holding `p11-kit-proxy.so`; p11-kit's module
/// directory is its `pkcs11/`.
fn libdir() -> Option<PathBuf> {
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.join("p11-kit-proxy.so").exists() && d.join("pkcs11").is_dir())
}

/// A command run in its own mount namespace where p11-kit's configuration
/// directory holds only `configs` and its module directory only `modules`.
struct Installed {
    configs: PathBuf,
    modules: PathBuf,
    libdir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Installed {
    fn new(libdir: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let configs = dir.path().join("modules-configs");
        let modules = dir.path().join("modules");
        std::fs::create_dir(&configs).unwrap();
        std::fs::create_dir(&modules).unwrap();
        std::fs::copy(packaged(), configs.join("ihsm.module")).unwrap();
        std::fs::copy(module(), modules.join("libihsm_pkcs11.so")).unwrap();
        Self {
            configs,
            modules,
            libdir,
            _dir: dir,
        }
    }

    fn command(&self, hsm: &Hsm, args: &[&str]) -> Command {
        // /etc/pkcs11/modules, where an administrator registers modules, is
        // emptied too if the host has one, so only ours is registered.
        let script = "set -e\n\
             mount --bind \"$1\" /usr/share/p11-kit/modules\n\
             mount --bind \"$2\" \"$3\"\n\
             if [ -d /etc/pkcs11/modules ]; then mount --bind \"$1\" /etc/pkcs11/modules; fi\n\
             shift 3\n\
             exec \"$@\"";
        let mut c = with_hsm(hsm, "unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&self.configs)
            .arg(&self.modules)
            .arg(self.libdir.join("pkcs11"))
            .args(args);
        c
    }

    fn ok(&self, hsm: &Hsm, args: &[&str]) -> String {
        ok(&mut self.command(hsm, args), LIMIT)
    }
}

#[test]
fn the_packaged_module_file_names_the_module_by_its_installed_name() {
    let text = std::fs::read_to_string(packaged()).unwrap();
    let modules: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("module:"))
        .map(str::trim)
        .collect();
    // A bare name: p11-kit looks it up in its module directory, whatever the
    // architecture's.
    assert_eq!(modules, ["libihsm_pkcs11.so"], "{text}");
    for l in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let l = l.trim();
        assert!(
            l.is_empty() || l.contains(':'),
            "not a pkcs11.conf line: {l:?}"
        );
    }
}

#[test]
fn p11_kit_gnutls_and_the_proxy_find_the_token_through_the_packaged_file() {
    let _deadline = Deadline::new("p11-kit", Duration::from_secs(600));
    if !require_root("installing a p11-kit module in a mount namespace")
        || !need_tools(
            "p11-kit",
            &["p11-kit", "p11tool", "pkcs11-tool", "unshare", "mount"],
        )
    {
        return;
    }
    let Some(libdir) = libdir() else {
        cannot_run("p11-kit-proxy.so not found (p11-kit-modules; .ci/run installs p11-kit)");
        return;
    };
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .output()
        .unwrap();
    if !probe.status.success() {
        cannot_run(&format!(
            "cannot make a mount namespace (unshare -m): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
        return;
    }
    let hsm = Hsm::start();
    let p11 = Installed::new(libdir.clone());

    // p11-kit loads the file's bare name from its module directory.
    let mut list = p11.command(&hsm, &["p11-kit", "list-modules"]);
    list.env("P11_KIT_DEBUG", "lib");
    let listed = ok(&mut list, LIMIT);
    let installed = libdir.join("pkcs11/libihsm_pkcs11.so");
    assert!(
        listed.contains(&format!(
            "loading module ihsm from path: {}",
            installed.display()
        )),
        "{listed}"
    );
    for want in [
        "ihsm: libihsm_pkcs11.so",
        "library-description: ihsm PKCS#11 module",
        "token: tok",
        "model: ihsm partition",
        "token-initialized",
    ] {
        assert!(listed.contains(want), "{want:?} missing:\n{listed}");
    }

    // GnuTLS asks p11-kit for the registered modules.
    let tokens = p11.ok(&hsm, &["p11tool", "--list-tokens"]);
    assert!(
        tokens.contains("Label: tok") && tokens.contains("Manufacturer: ihsm"),
        "{tokens}"
    );
    assert!(tokens.contains("token=tok"), "{tokens}");

    // p11-kit-proxy.so, one module standing for every registered one: a key made,
    // a signature and its verification through it.
    let proxy = libdir.join("p11-kit-proxy.so");
    let proxy = proxy.to_str().unwrap();
    let slots = p11.ok(&hsm, &["pkcs11-tool", "--module", proxy, "-L"]);
    assert!(slots.contains("token label        : tok"), "{slots}");
    let login = ["pkcs11-tool", "--module", proxy, "--login", "--pin", PIN];
    let made = p11.ok(
        &hsm,
        &[
            &login[..],
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                "via-proxy",
                "--id",
                "51",
            ],
        ]
        .concat(),
    );
    assert!(made.contains("Key pair generated"), "{made}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sig = dir.path().join("sig");
    std::fs::write(&data, b"signed through p11-kit's proxy").unwrap();
    let (data, sig) = (data.to_str().unwrap(), sig.to_str().unwrap());
    p11.ok(
        &hsm,
        &[
            &login[..],
            &[
                "--sign",
                "--mechanism",
                "ECDSA-SHA256",
                "--id",
                "51",
                "-i",
                data,
                "-o",
                sig,
            ],
        ]
        .concat(),
    );
    let verified = p11.ok(
        &hsm,
        &[
            &login[..],
            &[
                "--verify",
                "--mechanism",
                "ECDSA-SHA256",
                "--id",
                "51",
                "-i",
                data,
                "--signature-file",
                sig,
            ],
        ]
        .concat(),
    );
    assert!(verified.contains("Signature is valid"), "{verified}");
    // And GnuTLS sees the key the proxy made, by its URI.
    let all = p11.ok(&hsm, &["p11tool", "--list-all", "pkcs11:token=tok"]);
    assert!(all.contains("object=via-proxy"), "{all}");

    // A daemon with no partition for this user: the module is still registered,
    // with no token.
    drop(hsm);
    let gone = Hsm::with_partitions(&[]);
    let listed = p11.ok(&gone, &["p11-kit", "list-modules"]);
    assert!(
        listed.contains("ihsm: libihsm_pkcs11.so") && !listed.contains("token: tok"),
        "{listed}"
    );
}
