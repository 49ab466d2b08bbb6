//! Starts the real `ihsmd` binary on a temporary state directory and drives it
//! through the client, as a user would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod certs;

use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use cryptoki_sys as ck;
use ihsm_client::Client;
use ihsm_proto::attr::Attribute;
use ihsm_proto::frame;
use ihsm_proto::mech::Mechanism;
use ihsm_proto::msg::{Hello, HelloReply, PartitionSpec, SecretBytes};
use ihsm_proto::types::{PartitionInfo, UserType};
use ihsm_proto::{Reply, Request, Response};
use ihsm_ring::{Geometry, Region};

pub const SO_PIN: &[u8] = b"so-pin-1234";
pub const USER_PIN: &[u8] = b"user-pin-1234";
pub const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Fast PIN hashing for tests; everything else at its defaults.
pub const TEST_CONFIG: &str = "[daemon]\npin_iterations = 1000\nshutdown_grace_secs = 5\n";

pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether this run must be able to run every test: `IHSM_REQUIRE_ROOT=1`, which
/// CI sets (CI runs as root).
pub fn root_required() -> bool {
    std::env::var("IHSM_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// Whether this run is root, as a test that needs root (mounts, loop devices,
/// another uid's connections, locking memory without limit) asks before it
/// begins; `needs` says what it needs root for. When it is not, the test
/// cannot run: see [`cannot_run`].
pub fn require_root(needs: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    cannot_run(&format!("{needs} needs root; this run is uid {}", euid()))
}

/// A test that cannot run here, and says `why`: with `IHSM_REQUIRE_ROOT=1` it
/// fails (a test that did not run must not pass); otherwise it says SKIPPED,
/// loudly (on the harness's own stderr, which a passing test's output capture
/// would hide), and returns false for the test to return.
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

pub fn egid() -> u32 {
    rustix::process::getegid().as_raw()
}

/// A running daemon; SIGTERM on drop.
pub struct Daemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// Provisions (on first start) and starts a development daemon in `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::try_start(dir, &[]).unwrap_or_else(|log| panic!("ihsmd did not start:\n{log}"))
    }

    /// Starts with extra arguments; on failure, returns what it printed.
    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Self, String> {
        if !dir.join("ihsmd.toml").exists() {
            std::fs::write(dir.join("ihsmd.toml"), TEST_CONFIG).unwrap();
        }
        let log = std::fs::File::create(dir.join("ihsmd.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ihsmd"))
            .arg("--state")
            .arg(dir)
            .arg("--dev")
            .args(if extra.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "ihsmd=debug,warn"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Self {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Client::connect(d.admin_socket())
                && c.ping().is_ok()
            {
                return Ok(d);
            }
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.child = None;
                return Err(format!("exited with {status}:\n{}", d.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("no admin socket after 60 s:\n{}", d.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ihsmd.log")).unwrap_or_default()
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    pub fn socket(&self, partition: &str) -> PathBuf {
        self.dir
            .join("partitions")
            .join(format!("{partition}.sock"))
    }

    pub fn admin(&self) -> Client {
        Client::connect(self.admin_socket()).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Creates a partition owned by `uid`/`gid`, user PIN set.
    pub fn partition_owned(&self, name: &str, uid: u32, gid: u32) -> PartitionInfo {
        self.admin()
            .create_partition(PartitionSpec {
                name: name.into(),
                owner_uid: uid,
                owner_gid: gid,
                so_pin: SecretBytes::new(SO_PIN),
                user_pin: Some(SecretBytes::new(USER_PIN)),
                quotas: None,
                policy: Default::default(),
            })
            .unwrap()
    }

    /// Creates a partition owned by this process's user.
    pub fn partition(&self, name: &str) -> PartitionInfo {
        self.partition_owned(name, euid(), egid())
    }

    /// A logged-in read-write session on `partition`.
    pub fn tenant(&self, partition: &str) -> (Client, u64) {
        let mut c = Client::connect(self.socket(partition)).unwrap();
        let s = c.open_session(true).unwrap();
        c.login(s, UserType::User, USER_PIN).unwrap();
        (c, s)
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(&child, rustix::process::Signal::TERM);
        wait(&mut child, Duration::from_secs(30))
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, rustix::process::Signal::TERM);
            let _ = wait(&mut child, Duration::from_secs(30));
        }
    }
}

pub fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    let _ = rustix::process::kill_process(pid, sig);
}

pub fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ihsmd did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A temporary state directory others may traverse (for tests that connect as
/// another user).
pub fn state_dir() -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("ihsmd-test")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

pub fn attr_bool(ty: u64, v: bool) -> Attribute {
    Attribute::bool(ty, v)
}

/// An EC P-256 signing pair with this label.
pub fn ec_pair(c: &mut Client, s: u64, label: &str) -> (u64, u64) {
    c.generate_key_pair(
        s,
        Mechanism::EcKeyPairGen,
        vec![
            Attribute::bytes(ck::CKA_EC_PARAMS, P256.to_vec()),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bytes(ck::CKA_LABEL, label.as_bytes().to_vec()),
        ],
        vec![
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bytes(ck::CKA_LABEL, label.as_bytes().to_vec()),
        ],
    )
    .unwrap()
}

/// A token AES-256 key with this label.
pub fn aes_key(c: &mut Client, s: u64, label: &str) -> Result<u64, ihsm_client::ClientError> {
    c.generate_key(
        s,
        Mechanism::AesKeyGen,
        vec![
            Attribute::ulong(ck::CKA_VALUE_LEN, 32),
            Attribute::bool(ck::CKA_TOKEN, true),
            Attribute::bytes(ck::CKA_LABEL, label.as_bytes().to_vec()),
        ],
    )
}

pub fn find_label(c: &mut Client, s: u64, label: &str) -> Vec<u64> {
    c.find(
        s,
        vec![Attribute::bytes(ck::CKA_LABEL, label.as_bytes().to_vec())],
    )
    .unwrap()
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

/// A client that speaks the protocol itself (to do what `ihsm-client` would
/// not): its socket to `path`, after the hello.
pub fn raw_hello(path: &Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame::encode(&Hello::new("raw")).unwrap())
        .unwrap();
    let mut buf = Vec::new();
    let hello: HelloReply = frame::read(&mut s, &mut buf).unwrap();
    assert!(matches!(hello, HelloReply::Accepted { .. }), "{hello:?}");
    s
}

/// One request on a raw client's socket, and its answer.
pub fn raw_call(s: &mut UnixStream, req: &Request) -> Response {
    s.write_all(&frame::encode(req).unwrap()).unwrap();
    let mut buf = Vec::new();
    frame::read(s, &mut buf).unwrap()
}

/// A raw client's `OpenRing`: the region (mapped), the doorbell (which must
/// stay open: a client that closes it is gone) and the region's memfd.
pub fn raw_open_ring(s: &mut UnixStream) -> (Region, OwnedFd, OwnedFd) {
    s.write_all(&frame::encode(&Request::OpenRing).unwrap())
        .unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut bytes = [0u8; 256];
    let got = rustix::net::recvmsg(
        &*s,
        &mut [IoSliceMut::new(&mut bytes)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    let body = &bytes[frame::PREFIX..got.bytes];
    let resp: Response = frame::decode(body).unwrap();
    let Ok(Reply::Ring { slots, slot_bytes }) = resp else {
        panic!("{resp:?}");
    };
    assert_eq!(fds.len(), 2);
    let region = Region::attach(&fds[0], Geometry { slots, slot_bytes }).unwrap();
    let bell = fds.pop().unwrap();
    let memfd = fds.pop().unwrap();
    (region, bell, memfd)
}

/// A raw client's request through its submission ring, the doorbell rung if
/// the daemon sleeps.
pub fn raw_submit(region: &Region, bell: &OwnedFd, req: &Request) {
    let body = frame::encode(req).unwrap();
    let waiting = region
        .ring(ihsm_ring::Which::Submission)
        .push(&body[frame::PREFIX..], 0)
        .unwrap();
    if waiting {
        rustix::net::send(bell, &[1], rustix::net::SendFlags::NOSIGNAL).unwrap();
    }
}

/// Stops (SIGSTOP) a process, the daemon, until dropped (SIGCONT): what
/// happens meanwhile is the client's doing alone, and its calls go unanswered.
pub struct Stopped(u32);

impl Stopped {
    /// Returns once every thread of `pid` is stopped (10 s at most).
    pub fn new(pid: u32) -> Self {
        let p = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        rustix::process::kill_process(p, rustix::process::Signal::STOP).unwrap();
        let stopped = Self(pid);
        // Every thread of it, not just the one the signal reached first.
        let started = std::time::Instant::now();
        loop {
            let all = std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .filter_map(Result::ok)
                .all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
                        .unwrap_or(true)
                });
            if all {
                return stopped;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "the daemon did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let p = rustix::process::Pid::from_raw(i32::try_from(self.0).unwrap()).unwrap();
        let _ = rustix::process::kill_process(p, rustix::process::Signal::CONT);
    }
}
