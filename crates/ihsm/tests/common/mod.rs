//! What the tests of the `ihsm` binary share: the `ihsmd` beside it, and a daemon
//! running on a state directory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The daemon binary beside this package's `ihsm`, brought up to date once per
/// test binary (a narrower `cargo test -p ihsm` does not rebuild it).
pub fn ihsmd() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--locked", "-p", "ihsmd"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cannot build ihsmd");
    });
    PathBuf::from(env!("CARGO_BIN_EXE_ihsm")).with_file_name("ihsmd")
}

pub struct Daemon {
    child: Child,
    state: PathBuf,
}

impl Daemon {
    pub fn start(state: &Path) -> Self {
        Self::start_with(state, &[])
    }

    /// Starts the daemon with extra arguments (`--fleet-etcd ...`, say).
    pub fn start_with(state: &Path, args: &[&str]) -> Self {
        Self::start_with_env(state, args, &[])
    }

    /// Starts the daemon with extra arguments and environment variables.
    pub fn start_with_env(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_binary(&ihsmd(), state, args, env)
    }

    /// Starts `binary` (a copy of ihsmd, say, modified) as the daemon.
    pub fn start_binary(binary: &Path, state: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(state).unwrap();
        std::fs::write(
            state.join("ihsmd.toml"),
            "[daemon]\npin_iterations = 1000\n",
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("--state")
            .arg(state)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(state.join("log")).unwrap())
            .spawn()
            .unwrap();
        let d = Self {
            child,
            state: state.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ihsm(state, &["status"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "ihsmd did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("log")).unwrap_or_default()
    }

    /// Kills the daemon (SIGKILL) as a host that dies would; reaped.
    /// Whether the daemon exited by itself within `limit` (reaped if so).
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}

pub fn ihsm(state: &Path, args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_ihsm"))
            .arg("--state")
            .arg(state)
            .args(args)
            .env_remove("IHSM_STATE"),
        Duration::from_secs(120),
    )
}

/// Whether this run is root, as a test that needs root asks before the part
/// that needs it; `needs` says what for. When it is not: with
/// `IHSM_REQUIRE_ROOT=1` (which CI sets) the test fails, a test that did not
/// run must not pass; otherwise it says SKIPPED, loudly, and returns false.
pub fn require_root(needs: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let why = format!(
        "{needs} needs root; this run is uid {}",
        rustix::process::geteuid().as_raw()
    );
    assert!(
        std::env::var("IHSM_REQUIRE_ROOT").map_or(true, |v| v != "1"),
        "{why}: IHSM_REQUIRE_ROOT=1 says this run must be able to run it, so it fails instead of skipping"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {why} (with IHSM_REQUIRE_ROOT=1 this fails) ***\n"
    );
    false
}

/// Waits for `child` at most `limit` (killed, and the test failed, past it); its
/// output.
pub fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "a child did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `cmd`'s output, as `Command::output` gives it, if it exits within `limit`;
/// else it is killed and the test fails (a test must not hang on a process
/// that talks to the daemon).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut pipes.0, &mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut pipes.1, &mut v).unwrap();
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}
