//! What the harness sets up itself so a comparison is one command: a SoftHSM2
//! token in a temporary directory, and an ihsmd with a partition to benchmark.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ihsm_client::Client;
use ihsm_proto::msg::{PartitionSpec, SecretBytes};

use crate::{Error, Result};

/// The SO PIN of every token or partition the harness makes.
pub const SO_PIN: &str = "ihsm-bench-so-pin";
/// The token label and partition name the harness makes.
pub const TOKEN: &str = "ihsm-bench";

/// Where Debian and others install SoftHSM2's module.
const SOFTHSM_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
];

/// SoftHSM2's module, where it is installed.
///
/// # Errors
/// [`Error::Setup`] saying how to install it.
pub fn softhsm_module() -> Result<PathBuf> {
    SOFTHSM_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| Error::Setup("SoftHSM2 is not installed (apt-get install softhsm2)".into()))
}

/// A SoftHSM2 token in a temporary directory, gone on drop.
#[derive(Debug)]
pub struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// Writes a configuration and initializes token [`TOKEN`] with `pin`.
    ///
    /// # Errors
    /// [`Error::Setup`] if `softhsm2-util` is missing or fails.
    pub fn new(pin: &str) -> Result<Self> {
        softhsm_module()?;
        let dir = tempfile::Builder::new()
            .prefix("ihsm-bench-softhsm")
            .tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let s = Self { dir };
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", s.conf())
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                SO_PIN,
                "--pin",
                pin,
            ])
            .output()
            .map_err(|e| Error::Setup(format!("softhsm2-util: {e} (apt-get install softhsm2)")))?;
        if !out.status.success() {
            return Err(Error::Setup(format!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(s)
    }

    /// The configuration file SoftHSM2 reads from `SOFTHSM2_CONF`.
    #[must_use]
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }
}

/// The `ihsmd` binary: `--ihsmd`, else beside this executable.
///
/// # Errors
/// [`Error::Setup`] when neither exists.
pub fn ihsmd_binary(given: Option<&Path>) -> Result<PathBuf> {
    let p = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("ihsmd"),
    };
    if p.exists() {
        Ok(p)
    } else {
        Err(Error::Setup(format!(
            "{} not found: build it (cargo build --release) or pass --ihsmd",
            p.display()
        )))
    }
}

/// An ihsmd of the harness's own on a temporary state directory, with partition
/// [`TOKEN`] owned by this user; stopped (SIGTERM) and removed on drop.
#[derive(Debug)]
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `ihsmd --dev` (development provisioning on this first start) with
    /// `config` as its `ihsmd.toml`, run through `wrapper` (`ip netns exec NS`,
    /// say) if given, and makes the partition.
    ///
    /// # Errors
    /// [`Error::Setup`] with the daemon's log if it does not come up.
    pub fn start(
        binary: &Path,
        pin: &str,
        config: &str,
        prepare: impl FnOnce(&Path) -> Result<()>,
        wrapper: &[&str],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ihsm-bench-state")
            .tempdir()?;
        std::fs::write(dir.path().join("ihsmd.toml"), config)?;
        prepare(dir.path())?;
        let log = std::fs::File::create(dir.path().join("ihsmd.log"))?;
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = cmd
            .arg("--state")
            .arg(dir.path())
            .arg("--dev")
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::Setup(format!("cannot start {}: {e}", binary.display())))?;
        let mut admin = wait_until_up(&mut child, dir.path())?;
        let d = Self {
            dir,
            child: Some(child),
        };
        create_partition(&mut admin, TOKEN, pin)?;
        Ok(d)
    }

    #[must_use]
    pub fn state(&self) -> &Path {
        self.dir.path()
    }
}

/// Makes partition `name` through `admin`, owned by this user, with the SO PIN
/// [`SO_PIN`] and `pin` as its user PIN.
///
/// # Errors
/// [`Error::Setup`] with the daemon's refusal.
pub fn create_partition(admin: &mut Client, name: &str, pin: &str) -> Result<()> {
    admin
        .create_partition(PartitionSpec {
            name: name.into(),
            owner_uid: rustix::process::geteuid().as_raw(),
            owner_gid: u32::MAX,
            so_pin: SecretBytes::new(SO_PIN),
            user_pin: Some(SecretBytes::new(pin)),
            quotas: None,
            policy: Default::default(),
        })
        .map(drop)
        .map_err(|e| Error::Setup(format!("cannot create partition {name}: {e}")))
}

/// Waits (60 s at most) until the ihsmd `child`, started on `state` with its
/// log in `state/ihsmd.log`, answers a ping on its admin socket; a connection
/// to it.
///
/// # Errors
/// [`Error::Setup`] with the daemon's log when it exits or does not come up
/// (it is killed then).
pub fn wait_until_up(child: &mut Child, state: &Path) -> Result<Client> {
    let log = || std::fs::read_to_string(state.join("ihsmd.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Client::connect(ihsm_proto::layout::admin_socket(state))
            && c.ping().is_ok()
        {
            return Ok(c);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Setup(format!("ihsmd exited ({status}):\n{}", log())));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Setup(format!(
                "ihsmd did not start in 60 s:\n{}",
                log()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = i32::try_from(c.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = c.wait();
        }
    }
}
