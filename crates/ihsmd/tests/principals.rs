//! A partition admits a set of principals: its owner, and the uids and gids
//! `ihsm partition allow` adds. Checked for real: the daemon started, and
//! clients run as other users (child processes of this test binary, with
//! their uid and gid set), admitted, refused with the sentence that says what to
//! do, and cut off when revoked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use ihsm_client::Client;
use ihsm_proto::ErrorCode;
use ihsm_proto::types::{MAX_PRINCIPALS, Principal, UserType};

/// Users no process of this machine runs as.
const WORKER: u32 = 60_001;
const OTHER: u32 = 60_003;
const GROUP: u32 = 60_002;

/// How long a child may take before the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// This test binary, run as `uid`/`gid`, running the ignored test `child` with
/// `env`.
fn child(uid: u32, gid: u32, name: &str, env: &[(&str, String)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .uid(uid)
    .gid(gid)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Waits for `c` within [`CHILD_LIMIT`] (killing it and failing past it);
/// its output.
fn finish(mut c: Child) -> (bool, String) {
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        if c.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let out = c.wait_with_output().unwrap();
            panic!(
                "a child did not finish within {CHILD_LIMIT:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && text.contains("1 passed"), text)
}

/// Runs [`as_another_user`] as `uid`/`gid` on `socket`, expecting `expect`:
/// `admitted`, or the refusal's whole text.
fn connect_as(uid: u32, gid: u32, socket: &std::path::Path, expect: &str) {
    let c = child(
        uid,
        gid,
        "as_another_user",
        &[
            ("IHSM_CHILD_SOCKET", socket.display().to_string()),
            ("IHSM_CHILD_EXPECT", expect.to_owned()),
        ],
    )
    .spawn()
    .unwrap();
    let (ok, out) = finish(c);
    assert!(ok, "uid {uid} gid {gid}, expecting {expect:?}:\n{out}");
}

fn refusal(name: &str, admits: &str, uid: u32, gid: u32) -> String {
    format!(
        "partition \"{name}\" admits {admits}; uid {uid} gid {gid} is not among them; to admit it: ihsm partition allow {name} --uid {uid}"
    )
}

#[test]
fn a_worker_user_allowed_connects_revoked_is_cut_off_and_refused_with_what_to_do() {
    if !require_root("connecting as other users (setuid children)") {
        return;
    }
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    // nginx's case: the master (root) owns the partition, its workers run as
    // another user.
    d.partition_owned("web", 0, 0);
    let sock = d.socket("web");
    // Anyone may connect to the socket; the daemon decides who is admitted.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);

    // Not admitted: refused, in words that say what to do, and logged.
    let text = refusal("web", "uid 0, gid 0", WORKER, WORKER);
    connect_as(WORKER, WORKER, &sock, &text);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains(&text) {
        assert!(Instant::now() < deadline, "not in the log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // Allowed: admitted.
    let (changed, info) = d
        .admin()
        .allow_principal("web", Principal::Uid(WORKER))
        .unwrap();
    assert!(changed);
    assert_eq!(info.principals, [Principal::Uid(WORKER)]);
    connect_as(WORKER, WORKER, &sock, "admitted");
    // Allowing again changes nothing, and says so.
    let (changed, _) = d
        .admin()
        .allow_principal("web", Principal::Uid(WORKER))
        .unwrap();
    assert!(!changed);

    // A worker connected and logged in when it is revoked loses its
    // connection: it makes no request after the revocation.
    let mut held = child(
        WORKER,
        WORKER,
        "holds_a_connection",
        &[("IHSM_CHILD_SOCKET", sock.display().to_string())],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let lines = {
        let out = held.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains("LOGGED IN") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = held.kill();
                panic!("the holding child never logged in: {e}");
            }
        }
    }
    let (changed, info) = d
        .admin()
        .revoke_principal("web", Principal::Uid(WORKER))
        .unwrap();
    assert!(changed);
    assert!(info.principals.is_empty());
    // Its sessions went with its connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.admin().describe_partition("web").unwrap().sessions != 0 {
        assert!(
            Instant::now() < deadline,
            "the revoked connection's session is still open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    writeln!(held.stdin.take().unwrap(), "go").unwrap();
    // Its standard output is the reader thread's: the verdict is there.
    let (_, err) = finish(held);
    let mut out = Vec::new();
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(10)) {
        out.push(l);
    }
    assert!(
        out.iter().any(|l| l.contains("1 passed")),
        "{}\n{err}",
        out.join("\n")
    );
    assert!(d.log().contains("principal revoked"), "{}", d.log());

    // Revoked: refused again.
    connect_as(WORKER, WORKER, &sock, &text);

    // A group: any uid whose gid it is.
    d.admin()
        .allow_principal("web", Principal::Gid(GROUP))
        .unwrap();
    connect_as(OTHER, GROUP, &sock, "admitted");
    connect_as(
        OTHER,
        OTHER,
        &sock,
        &refusal("web", &format!("uid 0, gid 0, gid {GROUP}"), OTHER, OTHER),
    );

    // The set persists across a restart of the daemon.
    d.stop();
    let d = Daemon::start(dir.path());
    let info = d.admin().describe_partition("web").unwrap();
    assert_eq!(info.principals, [Principal::Gid(GROUP)]);
    connect_as(OTHER, GROUP, &d.socket("web"), "admitted");
    connect_as(
        WORKER,
        WORKER,
        &d.socket("web"),
        &refusal("web", &format!("uid 0, gid 0, gid {GROUP}"), WORKER, WORKER),
    );
}

#[test]
fn allow_and_revoke_refuse_nonsense_with_a_reason() {
    let dir = state_dir();
    let d = Daemon::start(dir.path());
    d.partition("p");
    let mut a = d.admin();
    let e = a
        .allow_principal("nope", Principal::Uid(WORKER))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PartitionNotFound, "{e}");
    let e = a.revoke_principal("p", Principal::Uid(euid())).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PrincipalInvalid, "{e}");
    assert!(e.to_string().contains("cannot be revoked"), "{e}");
    let e = a
        .allow_principal("p", Principal::Gid(u32::MAX))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PrincipalInvalid, "{e}");
    let (changed, _) = a.revoke_principal("p", Principal::Uid(WORKER)).unwrap();
    assert!(!changed);
    for i in 0..MAX_PRINCIPALS as u32 {
        assert!(
            a.allow_principal("p", Principal::Uid(70_000 + i))
                .unwrap()
                .0
        );
    }
    let e = a.allow_principal("p", Principal::Gid(1)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PrincipalLimit, "{e}");
    assert!(e.to_string().contains("revoke one first"), "{e}");
    // Admin requests only: a partition's socket does not serve them.
    let mut t = Client::connect(d.socket("p")).unwrap();
    let e = t.allow_principal("p", Principal::Uid(WORKER)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::WrongEndpoint, "{e}");
    // The owner still works, and the set is shown.
    let (mut c, s) = d.tenant("p");
    c.random(s, 8).unwrap();
    let info = a.describe_partition("p").unwrap();
    assert_eq!(info.principals.len(), MAX_PRINCIPALS);
    assert_eq!(info.admitted()[0], Principal::Uid(euid()));
}

/// Run as another user: connects to `IHSM_CHILD_SOCKET` and checks the outcome is
/// `IHSM_CHILD_EXPECT` (`admitted`, or the refusal's whole text).
#[test]
#[ignore = "run as another user by the tests above"]
fn as_another_user() {
    let sock = std::env::var("IHSM_CHILD_SOCKET").expect("run by the parent test");
    let expect = std::env::var("IHSM_CHILD_EXPECT").unwrap();
    match Client::connect(&sock) {
        Ok(mut c) => {
            assert_eq!(expect, "admitted", "admitted, expecting a refusal");
            let s = c.open_session(true).unwrap();
            c.login(s, UserType::User, USER_PIN).unwrap();
            assert_eq!(c.random(s, 16).unwrap().expose().len(), 16);
        }
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
            // The client gets the daemon's sentence, whole.
            assert_eq!(e.to_string(), expect);
        }
    }
}

/// Run as another user: connects, logs in, says `LOGGED IN`, waits for a line
/// on standard input, then finds its connection gone: no request is answered
/// but with a refusal, and the connection closes.
#[test]
#[ignore = "run as another user by the tests above"]
fn holds_a_connection() {
    let sock = std::env::var("IHSM_CHILD_SOCKET").expect("run by the parent test");
    let mut c = Client::connect(&sock).unwrap();
    let s = c.open_session(true).unwrap();
    c.login(s, UserType::User, USER_PIN).unwrap();
    c.random(s, 8).unwrap();
    println!("LOGGED IN");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let e = c.random(s, 8).unwrap_err();
    assert!(
        matches!(
            e.code(),
            ErrorCode::PermissionDenied | ErrorCode::Connection
        ),
        "{e}"
    );
    let e = c.random(s, 8).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Connection, "{e}");
}
