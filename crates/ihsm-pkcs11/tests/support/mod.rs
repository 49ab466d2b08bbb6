//! What the tests of real servers and tools share, beside `common` (which has
//! `require_root` and `cannot_run`): commands run
//! under a limit that fails the test, servers killed (their whole process group)
//! when the test ends however it ends, a deadline over the whole test, free
//! loopback ports, the OpenSSL engine configuration, and a certificate authority
//! for the keys the HSM holds. Every tool is Debian's; `.ci/run` installs them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::common::{Hsm, PIN, cannot_run, module, target_dir};

/// Whether every program in `tools` is installed; if not, the test cannot run.
pub fn need_tools(test: &str, tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return cannot_run(&format!(
                "{test} needs `{tool}`, which is not installed (.ci/run installs it)"
            ));
        }
    }
    true
}

/// Process groups the tests started and have not reaped: a [`Deadline`] kills them
/// before it ends the test binary.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn register(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
}

fn unregister(pgid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&g| g != pgid);
}

fn kill_group(pgid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = kill_process_group(pid, signal);
    }
}

/// The whole test under a time limit: if it is still running at the limit (a
/// server or a client that hangs despite every other limit), the deadline kills
/// every process group the tests started and ends the test binary with a
/// failure, naming the test. Disarmed on drop.
pub struct Deadline {
    tx: Option<Sender<()>>,
}

impl Deadline {
    pub fn new(test: &'static str, limit: Duration) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "\n*** FAILED: {test} still running after {} s: a hang; killing what it started ***\n",
                    limit.as_secs()
                );
                let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for g in groups {
                    kill_group(g, Signal::KILL);
                }
                std::process::exit(101);
            }
        });
        Self { tx: Some(tx) }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        drop(self.tx.take());
    }
}

/// Runs `cmd` to its end, in its own process group, with stdin closed; after
/// `limit` the group is killed and the test fails with what it printed.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} (.ci/run installs it): {e}"));
    let pgid = i32::try_from(child.id()).unwrap();
    register(pgid);
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Whatever it left behind in its group goes with it.
    kill_group(pgid, Signal::KILL);
    let status = status.unwrap_or_else(|| child.wait().unwrap());
    unregister(pgid);
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    if Instant::now() > deadline {
        panic!(
            "{what} did not finish in {} s:\n{}{}",
            limit.as_secs(),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs and requires success; returns stdout and stderr together.
pub fn ok(cmd: &mut Command, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let o = run(cmd, limit);
    let t = text(&o);
    assert!(o.status.success(), "{what} failed ({}):\n{t}", o.status);
    t
}

/// Runs and requires failure; returns stdout and stderr together.
pub fn fails(cmd: &mut Command, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let o = run(cmd, limit);
    let t = text(&o);
    assert!(!o.status.success(), "{what} should have failed:\n{t}");
    t
}

/// A command with the module pointed at `hsm`.
pub fn with_hsm(hsm: &Hsm, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("IHSM_STATE", hsm.state()).env_remove("IHSM_SOCKET");
    c
}

/// `pkcs11-tool --module <ours> --login --pin PIN ARGS` under a limit.
pub fn pkcs11_tool(hsm: &Hsm, args: &[&str]) -> String {
    let mut c = with_hsm(hsm, "pkcs11-tool");
    c.arg("--module")
        .arg(module())
        .args(["--login", "--pin", PIN])
        .args(args);
    ok(&mut c, Duration::from_secs(120))
}

/// A key pair made in the token by pkcs11-tool: `kind` is `EC:prime256v1` or
/// `rsa:2048`.
pub fn keypair(hsm: &Hsm, kind: &str, label: &str, id: &str) {
    pkcs11_tool(
        hsm,
        &[
            "--keypairgen",
            "--key-type",
            kind,
            "--label",
            label,
            "--id",
            id,
        ],
    );
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`, or fails the
/// test after `limit` with `log()`.
pub fn wait_for_port(port: u16, limit: Duration, server: &mut Server, log: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    loop {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = server.exited() {
            panic!(
                "{} exited ({status}) before listening on {port}:\n{}",
                server.name,
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {port} in {} s:\n{}",
            server.name,
            limit.as_secs(),
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server the test started, in a process group of its own: on drop, however
/// the test ends, the group gets SIGTERM, then SIGKILL for whatever is left
/// (a worker stuck in a wait does not answer SIGTERM).
pub struct Server {
    pub name: String,
    child: Option<Child>,
    pgid: i32,
}

impl Server {
    pub fn start(name: &str, cmd: &mut Command, stdout: &Path) -> Self {
        let log = std::fs::File::create(stdout).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (.ci/run installs it): {e}"));
        let pgid = i32::try_from(child.id()).unwrap();
        register(pgid);
        Self {
            name: name.to_owned(),
            child: Some(child),
            pgid,
        }
    }

    /// The pid of the server's first process (nginx's master, Apache's parent).
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pgid).unwrap()
    }

    /// Whether the first process has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(self.pgid, Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(self.pgid, Signal::KILL);
            let _ = c.wait();
            unregister(self.pgid);
        }
    }
}

/// The processes whose parent is `pid` (from `/proc/PID/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(Result::ok) {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The real uid of process `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    status_id(pid, "Uid:")
}

/// The real gid of process `pid`.
pub fn gid_of(pid: u32) -> Option<u32> {
    status_id(pid, "Gid:")
}

fn status_id(pid: u32, field: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// The uid and gid of a user of this system (`id -u`, `id -g`).
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, user]).output().ok()?;
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// libp11's engine for OpenSSL 3 (Debian's `libengine-pkcs11-openssl`).
pub fn engine() -> PathBuf {
    [
        "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so",
        "/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("libp11's pkcs11 engine (libengine-pkcs11-openssl; .ci/run installs it)")
}

/// An `OPENSSL_CONF` that loads libp11's engine with `module` and initializes it
/// (a server's `ENGINE_load_private_key` needs an initialized engine; `init`
/// must come last, after `MODULE_PATH`).
pub fn openssl_conf(dir: &Path, module: &Path) -> PathBuf {
    let conf = dir.join("openssl.cnf");
    std::fs::write(
        &conf,
        format!(
            "openssl_conf = openssl_init\n\
             [openssl_init]\nengines = engine_section\n\
             [engine_section]\npkcs11 = pkcs11_section\n\
             [pkcs11_section]\nengine_id = pkcs11\ndynamic_path = {}\nMODULE_PATH = {}\ninit = 1\n\
             [req]\ndistinguished_name = dn\n[dn]\n",
            engine().display(),
            module.display()
        ),
    )
    .unwrap();
    conf
}

/// The engine URI of a private key in the token `token` labelled `label`.
pub fn key_uri(token: &str, label: &str) -> String {
    format!("pkcs11:token={token};object={label};type=private;pin-value={PIN}")
}

/// A certificate authority in files (its key in software: it stands for whoever
/// issues the server's certificate, not for the server).
pub struct Ca {
    pub dir: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path) -> Self {
        let dir = dir.to_path_buf();
        ok(
            Command::new("openssl").current_dir(&dir).args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=ihsm test CA",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:true",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ]),
            Duration::from_secs(60),
        );
        Self { dir }
    }

    pub fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `localhost` and 127.0.0.1 whose key is the token's
    /// `label`: the request is signed in the HSM through the engine (`conf`), the
    /// certificate by this CA. Returns its path.
    pub fn issue_for_token_key(&self, hsm: &Hsm, conf: &Path, token: &str, label: &str) -> PathBuf {
        let csr = self.dir.join(format!("{label}.csr"));
        let mut req = with_hsm(hsm, "openssl");
        req.env("OPENSSL_CONF", conf).args([
            "req",
            "-new",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-key",
            &key_uri(token, label),
            "-subj",
            "/CN=localhost",
            "-out",
        ]);
        req.arg(&csr);
        ok(&mut req, Duration::from_secs(60));
        let ext = self.dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let cert = self.dir.join(format!("{label}.pem"));
        ok(
            Command::new("openssl")
                .current_dir(&self.dir)
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .args([
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                ])
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
            Duration::from_secs(60),
        );
        cert
    }
}

/// `curl` one HTTPS GET of `https://localhost:PORT/` on a new connection,
/// checking the chain against `ca`; returns (status line code, body) or the
/// error curl printed.
pub fn https_get(ca: &Path, port: u16) -> Result<(String, String), String> {
    let o = run(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--tlsv1.3"])
            .arg("--cacert")
            .arg(ca)
            .args([
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
                "--write-out",
                "\n%{http_code}",
                &format!("https://localhost:{port}/"),
            ]),
        Duration::from_secs(30),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        return Err(format!(
            "curl ({}): {}{out}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    Ok((code.to_owned(), body.to_owned()))
}

/// The `ihsm` command line, brought up to date once per test binary.
pub fn ihsm_cli() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let mut b = Command::new(env!("CARGO"));
        b.args(["build", "--locked", "-p", "ihsm"]);
        if !cfg!(debug_assertions) {
            b.arg("--release");
        }
        assert!(b.status().unwrap().success(), "cannot build ihsm");
    });
    target_dir().join("ihsm")
}

/// Makes `path` and every directory above it up to the temporary directory
/// traversable (and a file readable) by other users, as a server's unprivileged
/// workers need.
pub fn open_up(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    let mut p = Some(path);
    while let Some(dir) = p {
        if !dir.starts_with(&tmp) || dir == tmp {
            break;
        }
        let meta = std::fs::metadata(dir).unwrap();
        let mode = meta.permissions().mode();
        let want = if meta.is_dir() { 0o011 } else { 0o044 };
        if mode & want != want {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | want)).unwrap();
        }
        p = dir.parent();
    }
}
