//! A process the partition does not admit is told so once, in the daemon's
//! words, on standard error and in the system log, and its calls fail at once.
//!
//! The partition is owned by root (this test runs as root). A child process,
//! this test binary again running only [`child`], loads the module with dlopen
//! in a mount namespace of its own whose `/dev/log` is a socket of this test (so
//! what the module sends to syslog(3) is read here, and the host's log is not
//! touched), and either
//! - runs as `nobody` from the start: refused at every C_Initialize (slot
//!   discovery), round after round; or
//! - starts as root, initializes and opens a session, drops to `nobody`, and,
//!   once the daemon restarted under it (its connections broke), is refused
//!   when the module dials a new pool connection for C_OpenSession.
//!
//! The child also connects as `nobody` itself and prints the daemon's refusal;
//! its standard error must hold that sentence, prefixed `ihsm-pkcs11: `, exactly
//! once, and the system log exactly one message of it, `LOG_USER | LOG_ERR`.
//!
//! And a partition's slot id is the same for every user: a server's workers,
//! which may open fewer partitions than their master, find theirs under the
//! master's slot id; a process that some partition admits says nothing of the
//! others in the directory that refuse it.
//!
//! Regression (issue 13): a refused socket was passed over in silence, and a
//! refused pool connection answered CKR_DEVICE_REMOVED with nothing said: an
//! nginx worker dropped to its unprivileged user blocked with no word anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use core::ptr::null_mut;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dl::Dl;
use common::*;
use cryptoki_sys::*;

/// `nobody` on Debian, whom the partition does not admit.
const NOBODY: u32 = 65534;
const ROLE: &str = "IHSM_REFUSAL_ROLE";

/// The paths the child's mount namespace is made of, ready before the fork.
struct Jail {
    real_dev: CString,
    real_null: CString,
    log: CString,
}

impl Jail {
    fn new(dir: &Path, log: &Path) -> Self {
        let real_dev = dir.join("real-dev");
        std::fs::create_dir(&real_dev).unwrap();
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        Self {
            real_dev: c(&real_dev),
            real_null: c(&real_dev.join("null")),
            log: c(log),
        }
    }

    /// In the child, before exec: a private mount namespace whose `/dev` holds
    /// only `null` and `log` (the test's socket); then, for `uid`, that user.
    /// Only system calls, as between fork and exec.
    fn enter(&self, uid: Option<u32>) -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        // SAFETY: each call passes NUL-terminated paths that live in `self` (made
        // before the fork) or literals, and null where the kernel takes none.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            let none = core::ptr::null::<libc::c_char>();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                null_mut(),
            ) != 0
            {
                return Err(err());
            }
            if libc::mount(
                c"/dev".as_ptr(),
                self.real_dev.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                null_mut(),
            ) != 0
            {
                return Err(err());
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"mode=0755".as_ptr().cast(),
            ) != 0
            {
                return Err(err());
            }
            for (src, dst) in [(&self.real_null, c"/dev/null"), (&self.log, c"/dev/log")] {
                let fd = libc::open(
                    dst.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o666,
                );
                if fd < 0 {
                    return Err(err());
                }
                libc::close(fd);
                if libc::mount(src.as_ptr(), dst.as_ptr(), none, libc::MS_BIND, null_mut()) != 0 {
                    return Err(err());
                }
            }
            if let Some(uid) = uid {
                become_user(uid)?;
            }
        }
        Ok(())
    }
}

/// Drops every group and becomes `uid` (with its own number as gid), for good.
fn become_user(uid: u32) -> std::io::Result<()> {
    // SAFETY: plain system calls on this process's credentials (glibc applies
    // them to every thread).
    unsafe {
        if libc::setgroups(0, core::ptr::null()) != 0
            || libc::setresgid(uid, uid, uid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the child saw and said.
struct Seen {
    stdout: String,
    stderr: String,
    syslog: Vec<String>,
}

/// Runs this test binary's [`child`] in `role`, in a jail; `between` is run
/// when the child says it is ready, before it goes on.
fn run_child(hsm: &mut Hsm, role: &str, as_nobody: bool, between: impl FnOnce(&mut Hsm)) -> Seen {
    let dir = tempfile::Builder::new()
        .prefix("ihsm-refusal")
        .tempdir()
        .unwrap();
    let log_path = dir.path().join("log.sock");
    let log = UnixDatagram::bind(&log_path).unwrap();
    std::fs::set_permissions(
        &log_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let jail = Jail::new(dir.path(), &log_path);
    let socket = ihsm_proto::layout::partition_socket(hsm.state(), "tok");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("IHSM_TEST_STATE", hsm.state());
    cmd.args([
        "--exact",
        "child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .current_dir("/")
    .env(ROLE, role)
    .env("IHSM_SOCKET", &socket)
    .env("IHSM_TEST_MODULE", module())
    .env_remove("IHSM_STATE")
    .env_remove("IHSM_PKCS11_DEBUG")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let uid = as_nobody.then_some(NOBODY);
    // SAFETY: `enter` makes only system calls, on data made before the fork.
    unsafe { cmd.pre_exec(move || jail.enter(uid)) };
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // The child's stdout, line by line, to know when it is ready.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // After libtest's "test child ... ", on the same line.
            Ok(l) if l.ends_with("READY") => break,
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                drop(stdin);
                child.stdout = None;
                let out = wait_output(child, Duration::from_secs(10), role);
                panic!(
                    "the {role} child never got ready:\n{}\n{}",
                    lines.join("\n"),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    between(hsm);
    writeln!(stdin, "GO").unwrap();
    drop(stdin);
    child.stdout = None;
    let out = wait_output(
        child,
        Duration::from_secs(120),
        &format!("the {role} child"),
    );
    // What is left of its stdout.
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(l);
    }
    log.set_nonblocking(true).unwrap();
    let mut syslog = Vec::new();
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = log.recv(&mut buf) {
        syslog.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let seen = Seen {
        stdout: lines.join("\n"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        syslog,
    };
    assert!(
        out.status.success() && seen.stdout.contains("1 passed"),
        "the {role} child failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        seen.stdout,
        seen.stderr
    );
    seen
}

/// The sentence the child printed after `prefix` (what the daemon, or the
/// client for the socket, said to it).
fn printed<'a>(seen: &'a Seen, prefix: &str) -> &'a str {
    seen.stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("the child did not print {prefix:?}:\n{}", seen.stdout))
}

/// Checks that the module told `said` (a part of its line) exactly once on
/// stderr and in the system log, said nothing else, and no PIN.
fn check_told_once(seen: &Seen, said: &str) {
    assert!(said.len() > 20, "{said}");
    assert_eq!(
        seen.stderr.matches(said).count(),
        1,
        "the refusal, once on stderr:\n{}",
        seen.stderr
    );
    let lines: Vec<_> = seen
        .stderr
        .lines()
        .filter(|l| l.starts_with("ihsm-pkcs11: "))
        .collect();
    assert_eq!(lines.len(), 1, "one line from the module:\n{}", seen.stderr);
    assert!(lines[0].contains(said), "{}", lines[0]);
    let logged: Vec<_> = seen.syslog.iter().filter(|m| m.contains(said)).collect();
    assert_eq!(logged.len(), 1, "once in the system log: {:?}", seen.syslog);
    // <11>: LOG_USER (8) | LOG_ERR (3).
    assert!(logged[0].starts_with("<11>"), "{}", logged[0]);
    assert!(logged[0].contains(lines[0]), "{} / {}", logged[0], lines[0]);
    for text in [&seen.stderr, &seen.syslog.join("\n")] {
        assert!(
            !text.contains(PIN) && !text.contains(SO_PIN),
            "a PIN: {text}"
        );
    }
}

#[test]
fn a_refused_process_is_told_once_at_c_initialize() {
    if !require_root("running the module as another uid") {
        return;
    }
    let mut hsm = Hsm::start();
    hsm.world_connectable("tok");
    let seen = run_child(&mut hsm, "initialize", true, |_| {});
    let said = printed(&seen, "DAEMON SAYS: ");
    assert!(
        seen.stderr.contains(&format!("ihsm-pkcs11: {said}")),
        "{}",
        seen.stderr
    );
    check_told_once(&seen, said);
}

/// A socket whose mode an operator narrowed (the daemon makes it 0666 and
/// admits by SO_PEERCRED): the daemon never sees the connection, so the module
/// says what the socket refuses, once.
#[test]
fn a_process_the_socket_refuses_is_told_once() {
    if !require_root("running the module as another uid") {
        return;
    }
    let mut hsm = Hsm::start();
    let socket = ihsm_proto::layout::partition_socket(hsm.state(), "tok");
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    let seen = run_child(&mut hsm, "initialize", true, |_| {});
    assert!(printed(&seen, "CLIENT SAYS: ").contains("ermission denied"));
    check_told_once(
        &seen,
        &format!(
            "partition \"tok\" refuses uid {NOBODY} gid {NOBODY} before the daemon sees them: its socket {} is uid 0 gid 0 mode 0660",
            socket.display()
        ),
    );
}

#[test]
fn a_refused_pool_connection_is_told_once_and_fails_at_once() {
    if !require_root("running the module as another uid") {
        return;
    }
    let mut hsm = Hsm::start();
    hsm.world_connectable("tok");
    let seen = run_child(&mut hsm, "dial", false, |hsm| {
        hsm.restart();
        hsm.world_connectable("tok");
    });
    let said = printed(&seen, "DAEMON SAYS: ");
    assert!(
        seen.stderr.contains(&format!("ihsm-pkcs11: {said}")),
        "{}",
        seen.stderr
    );
    check_told_once(&seen, said);
}

/// The child's part, run by the two tests above in another process (without
/// their environment it does nothing).
#[test]
#[ignore = "run by the refusal tests, as another uid"]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let socket = std::env::var("IHSM_SOCKET").unwrap();
    let dl = Dl::load(Path::new(&std::env::var("IHSM_TEST_MODULE").unwrap()));
    let wait_for_go = || {
        println!("READY");
        std::io::stdout().flush().unwrap();
        let mut l = String::new();
        std::io::stdin().read_line(&mut l).unwrap();
        assert_eq!(l.trim(), "GO");
    };
    let daemon_says = || match ihsm_client::Client::connect(&socket) {
        Err(ihsm_client::ClientError::Hsm(w)) => {
            assert_eq!(w.kind(), Some(ihsm_proto::ErrorCode::PermissionDenied));
            println!("DAEMON SAYS: {}", w.message);
        }
        Err(e @ ihsm_client::ClientError::Connect { .. }) => println!("CLIENT SAYS: {e}"),
        other => panic!("nobody connected: {other:?}"),
    };
    let mut slots = [0 as CK_SLOT_ID; 4];
    // SAFETY: every call passes pointers to live locals.
    unsafe {
        match role.as_str() {
            "initialize" => {
                wait_for_go();
                daemon_says();
                for _ in 0..5 {
                    assert_eq!(p11!(dl, C_Initialize(null_mut())), CKR_OK);
                    let mut n: CK_ULONG = 4;
                    assert_eq!(
                        p11!(dl, C_GetSlotList(0, slots.as_mut_ptr(), &mut n)),
                        CKR_OK
                    );
                    assert_eq!(n, 0, "no slot for a refused user");
                    let mut h = 0;
                    assert_eq!(
                        p11!(
                            dl,
                            C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h)
                        ),
                        CKR_SLOT_ID_INVALID
                    );
                    assert_eq!(p11!(dl, C_Finalize(null_mut())), CKR_OK);
                }
            }
            "dial" => {
                assert_eq!(p11!(dl, C_Initialize(null_mut())), CKR_OK);
                let mut n: CK_ULONG = 4;
                assert_eq!(
                    p11!(dl, C_GetSlotList(1, slots.as_mut_ptr(), &mut n)),
                    CKR_OK
                );
                assert_eq!(n, 1);
                let mut h = 0;
                let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
                assert_eq!(
                    p11!(dl, C_OpenSession(slots[0], rw, null_mut(), None, &mut h)),
                    CKR_OK
                );
                let mut pin = PIN.as_bytes().to_vec();
                let len = pin.len() as CK_ULONG;
                assert_eq!(
                    p11!(dl, C_Login(h, CKU_USER, pin.as_mut_ptr(), len)),
                    CKR_OK
                );
                // Like a server's worker: the privileges go after the module was
                // set up; then the daemon restarts and every connection breaks.
                become_user(NOBODY).unwrap();
                wait_for_go();
                daemon_says();
                let mut answers = Vec::new();
                for _ in 0..10 {
                    let mut h2 = 0;
                    answers.push(p11!(
                        dl,
                        C_OpenSession(slots[0], rw, null_mut(), None, &mut h2)
                    ));
                }
                // The broken connection first, then the refusal, promptly, every time.
                assert!(
                    answers[1..].iter().all(|rv| *rv == CKR_FUNCTION_REJECTED),
                    "{answers:x?}"
                );
                assert!(
                    matches!(answers[0], CKR_DEVICE_ERROR | CKR_FUNCTION_REJECTED),
                    "{answers:x?}"
                );
                assert_eq!(p11!(dl, C_Finalize(null_mut())), CKR_OK);
            }
            "slots" => {
                // Every socket of the state directory, as a server's would be.
                // (This process runs this one test: nothing else reads its
                // environment meanwhile.)
                std::env::remove_var("IHSM_SOCKET");
                std::env::set_var("IHSM_STATE", std::env::var("IHSM_TEST_STATE").unwrap());
                wait_for_go();
                assert_eq!(p11!(dl, C_Initialize(null_mut())), CKR_OK);
                let mut n: CK_ULONG = 4;
                assert_eq!(
                    p11!(dl, C_GetSlotList(1, slots.as_mut_ptr(), &mut n)),
                    CKR_OK
                );
                for slot in &slots[..n as usize] {
                    let mut info: CK_TOKEN_INFO = core::mem::zeroed();
                    assert_eq!(p11!(dl, C_GetTokenInfo(*slot, &mut info)), CKR_OK);
                    let label = String::from_utf8_lossy(&info.label).trim_end().to_owned();
                    println!("SLOT {slot} {label}");
                }
                assert_eq!(p11!(dl, C_Finalize(null_mut())), CKR_OK);
            }
            other => panic!("no role {other}"),
        }
    }
}

/// The slots a child listed: (id, label).
fn slots_of(seen: &Seen) -> Vec<(u64, String)> {
    seen.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SLOT "))
        .map(|l| {
            let (id, label) = l.split_once(' ').unwrap();
            (id.parse().unwrap(), label.to_owned())
        })
        .collect()
}

/// "tok" (root's) and "web", which root (by its group) and nobody (its owner)
/// may both open: root lists both, nobody only "web", under the same slot id,
/// which is the partition's id.
#[test]
fn a_partition_has_the_same_slot_id_for_every_user() {
    if !require_root("running the module as another uid") {
        return;
    }
    let mut hsm = Hsm::start();
    let web = hsm.create_partition("web", NOBODY, 0);
    let tok =
        ihsm_client::Client::connect(ihsm_proto::layout::partition_socket(hsm.state(), "tok"))
            .unwrap()
            .info()
            .unwrap();
    assert_ne!(tok.id, web.id);
    let master = run_child(&mut hsm, "slots", false, |_| {});
    let worker = run_child(&mut hsm, "slots", true, |_| {});
    let (tok_id, web_id) = (u64::from(tok.id), u64::from(web.id));
    assert_eq!(
        slots_of(&master),
        vec![(tok_id, "tok".to_owned()), (web_id, "web".to_owned())],
        "{}",
        master.stdout
    );
    assert_eq!(
        slots_of(&worker),
        vec![(web_id, "web".to_owned())],
        "{}",
        worker.stdout
    );
    // Refused by "tok" but admitted to "web": another tenant's socket in the
    // directory is no news to the operator, so nothing is said.
    assert!(
        !worker.stderr.contains("ihsm-pkcs11: ") && worker.syslog.is_empty(),
        "a worker with a partition warned of another's:\n{}\n{:?}",
        worker.stderr,
        worker.syslog
    );
}
