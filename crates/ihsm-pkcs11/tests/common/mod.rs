//! A real `ihsmd` on a temporary state directory, a partition owned by this user,
//! and the module's path: what every test of the module starts from.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::c_void;
use core::ptr::null_mut;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cryptoki_sys::{CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_MECHANISM, CK_MECHANISM_TYPE, CK_ULONG};
use ihsm_client::Client;
use ihsm_proto::msg::{PartitionSpec, SecretBytes};

pub const SO_PIN: &str = "so-pin-1234";
pub const PIN: &str = "user-pin-1234";

/// `target/<profile>`, from this test executable in `target/<profile>/deps`.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn build(package: &str) {
    let mut b = Command::new(env!("CARGO"));
    b.args(["build", "--locked", "-p", package]);
    if !cfg!(debug_assertions) {
        b.arg("--release");
    }
    assert!(b.status().unwrap().success(), "cannot build {package}");
}

/// The module under test: the cdylib built with this test, beside it in
/// `deps/` (`cargo test` does not refresh the copy in `target/<profile>`).
pub fn module() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .with_file_name("libihsm_pkcs11.so")
}

/// The daemon binary, brought up to date once per test binary (a narrower
/// `cargo test -p ihsm-pkcs11` does not rebuild it).
pub fn ihsmd() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| build("ihsmd"));
    target_dir().join("ihsmd")
}

/// A running daemon with one partition, "tok", owned by this user.
pub struct Hsm {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Hsm {
    pub fn start() -> Self {
        Self::with_partitions(&["tok"])
    }

    pub fn with_partitions(names: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ihsm-p11")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("ihsmd.toml"),
            "[daemon]\npin_iterations = 1000\n",
        )
        .unwrap();
        let child = Command::new(ihsmd())
            .arg("--state")
            .arg(dir.path())
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("ihsmd.log")).unwrap())
            .spawn()
            .unwrap();
        let hsm = Self {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin = loop {
            if let Ok(mut c) = Client::connect(hsm.dir.path().join("admin.sock"))
                && c.ping().is_ok()
            {
                break c;
            }
            assert!(Instant::now() < deadline, "ihsmd did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let uid = rustix::process::geteuid().as_raw();
        for name in names {
            admin
                .create_partition(PartitionSpec {
                    name: (*name).into(),
                    owner_uid: uid,
                    owner_gid: u32::MAX,
                    so_pin: SecretBytes::new(SO_PIN),
                    user_pin: Some(SecretBytes::new(PIN)),
                    quotas: None,
                    policy: Default::default(),
                })
                .unwrap();
        }
        hsm
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a client program with the module pointed at this HSM.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("IHSM_STATE", self.state())
            .env_remove("IHSM_SOCKET")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (.ci/run installs it): {e}"))
    }

    /// Runs and requires success; returns stdout and stderr together.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
        text
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(c.id()).unwrap()).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = c.wait();
        }
    }
}

// ---- C-level helpers for the tests that call the exported functions ----

/// DER of the P-256 curve OID (`CKA_EC_PARAMS`).
pub const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A `CK_ATTRIBUTE` pointing at `v`.
pub fn attr<T>(ty: CK_ATTRIBUTE_TYPE, v: &T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: core::ptr::from_ref(v).cast_mut().cast::<c_void>(),
        ulValueLen: size_of::<T>() as CK_ULONG,
    }
}

/// A `CK_ATTRIBUTE` pointing at bytes.
pub fn bytes_attr(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v.as_ptr().cast_mut().cast::<c_void>(),
        ulValueLen: v.len() as CK_ULONG,
    }
}

/// A mechanism without parameters.
pub fn mech(m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: m,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}
