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

pub mod dl;

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
        let mut hsm = Self { dir, child: None };
        let mut admin = hsm.launch();
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

    /// Lets any local user reach partition `name`'s socket, so that only the
    /// daemon's own check of who connects (SO_PEERCRED) stands between another
    /// user and the partition, and a refusal is the daemon's. (The default mode,
    /// 0660, lets only the owner's uid and gid reach it.) Again after a restart.
    pub fn world_connectable(&self, name: &str) {
        let socket = ihsm_proto::layout::partition_socket(self.state(), name);
        std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
    }

    /// An EC P-256 token key pair in partition `name`, with this label and
    /// `CKA_ID` 01, made as its owner (this process).
    pub fn ec_token_pair(&self, name: &str, label: &str) {
        use ihsm_proto::attr::Attribute;
        let mut c =
            Client::connect(ihsm_proto::layout::partition_socket(self.state(), name)).unwrap();
        let s = c.open_session(true).unwrap();
        c.login(s, ihsm_proto::types::UserType::User, PIN.as_bytes())
            .unwrap();
        let common = || {
            vec![
                Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
                Attribute::bytes(cryptoki_sys::CKA_LABEL, label.as_bytes().to_vec()),
                Attribute::bytes(cryptoki_sys::CKA_ID, vec![1]),
            ]
        };
        let mut public = common();
        public.push(Attribute::bytes(cryptoki_sys::CKA_EC_PARAMS, P256.to_vec()));
        c.generate_key_pair(
            s,
            ihsm_proto::mech::Mechanism::EcKeyPairGen,
            public,
            common(),
        )
        .unwrap();
    }

    /// Makes a partition owned by `uid` and `gid` (`u32::MAX`: no group).
    pub fn create_partition(
        &self,
        name: &str,
        uid: u32,
        gid: u32,
    ) -> ihsm_proto::types::PartitionInfo {
        Client::connect(self.dir.path().join("admin.sock"))
            .unwrap()
            .create_partition(PartitionSpec {
                name: name.into(),
                owner_uid: uid,
                owner_gid: gid,
                so_pin: SecretBytes::new(SO_PIN),
                user_pin: Some(SecretBytes::new(PIN)),
                quotas: None,
                policy: Default::default(),
            })
            .unwrap()
    }

    /// Starts the daemon on this state directory; its admin connection once it
    /// answers.
    fn launch(&mut self) -> Client {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("ihsmd.log"))
            .unwrap();
        self.child = Some(
            Command::new(ihsmd())
                .arg("--state")
                .arg(self.dir.path())
                .args(["--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Client::connect(self.dir.path().join("admin.sock"))
                && c.ping().is_ok()
            {
                return c;
            }
            assert!(Instant::now() < deadline, "ihsmd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon (SIGTERM) and starts it again on the same state: every
    /// connection to it breaks, the partitions and their keys stay.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(c.id()).unwrap()).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = c.wait();
        }
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a client program with the module pointed at this HSM; it fails the
    /// test if it has not ended within two minutes.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let child = Command::new(program)
            .args(args)
            .env("IHSM_STATE", self.state())
            .env_remove("IHSM_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} (.ci/run installs it): {e}"));
        wait_output(
            child,
            Duration::from_secs(120),
            &format!("{program} {args:?}"),
        )
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
        self.stop();
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

// ---- What a test may not do: hang, or pass without running ----

/// Runs `f` on a thread of its own and fails the test if it has not finished
/// within `limit`: a call into the module that never returns is a failure, not
/// a hung test run. (The thread left behind ends with the test process.)
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = t.join();
            v
        }
        // The thread panicked: its panic, as the test's.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("{what}: ended without a result"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished after {limit:?}; it hangs")
        }
    }
}

/// Held for the length of a test: if the test has not finished within `limit`,
/// the test process aborts (and so fails) with `what` said on stderr, rather
/// than hang on a call that never returns.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

pub fn watchdog(limit: Duration, what: &'static str) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{what}: not finished after {limit:?}; it hangs: aborting"
            );
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The watchdog's thread wakes up to a closed channel and ends.
        self.0.take();
    }
}

/// Waits for a child process, killing it and failing the test if it has not
/// ended within `limit`; returns its output.
pub fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    use std::io::Read;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = out.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = err.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (o.join().unwrap(), e.join().unwrap());
            panic!(
                "{what}: not finished after {limit:?}; it hangs (killed)\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// Whether this run must be able to run every test: `IHSM_REQUIRE_ROOT=1`, which
/// CI sets (CI runs as root).
pub fn root_required() -> bool {
    std::env::var("IHSM_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// Whether this run is root, as a test that needs root (another uid's process)
/// asks before it begins; `needs` says what it needs root for. When it is not,
/// the test cannot run: see [`cannot_run`].
pub fn require_root(needs: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    cannot_run(&format!(
        "{needs} needs root; this run is uid {}",
        rustix::process::geteuid().as_raw()
    ))
}

/// A test that cannot run here, and says `why`: with `IHSM_REQUIRE_ROOT=1` it
/// fails (a test that did not run must not pass); otherwise it says SKIPPED,
/// loudly, and returns false for the test to return.
pub fn cannot_run(why: &str) -> bool {
    assert!(
        !root_required(),
        "{why}: IHSM_REQUIRE_ROOT=1 says this run must be able to run it, so it fails instead of skipping"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {why} (with IHSM_REQUIRE_ROOT=1 this fails) ***\n"
    );
    false
}
