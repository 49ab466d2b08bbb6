//! The module across fork, exec, dlclose and C_Finalize, as a C application uses
//! it: `tests/c/fork.c`, compiled here with cc, loads the cdylib with dlopen and
//! runs one scenario per process against a real daemon (see the C file for each
//! mode). A hang fails: each process and child arms alarm(2), and each run here
//! has a timeout of its own.
//!
//! And what a TLS server does: `tests/c/libp11.c` loads a key through OpenSSL's
//! pkcs11 engine (libp11) in a master process and signs with it in forked
//! workers, as nginx does; a worker dropped to a user the partition does not
//! admit is told why.
//!
//! Regressions (issue 13): a child forked while a parent thread was inside
//! C_Initialize waited for ever on the lock that thread held; a child of a
//! process whose threads were mid-call could find a lock of its parent's
//! state held.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// `tests/c/NAME.c` compiled into a temporary directory with `flags`; `None`
/// without a C compiler.
fn compile(name: &str, flags: &[&str], libs: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let r = Command::new(&cc)
        .args(["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(libs)
        .output();
    match r {
        Ok(o) if o.status.success() => Some((dir, out)),
        Ok(o) => panic!(
            "{cc} cannot compile {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => None,
    }
}

/// The fork program, compiled once per test binary; `None` without a C compiler.
fn program() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    BUILT
        .get_or_init(|| compile("fork", &[], &["-ldl"]))
        .as_ref()
        .map(|(_, p)| p.clone())
}

/// The libp11 program, or what is missing to make it.
fn libp11_program() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    let engines = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|d| d.path().join("engines-3/pkcs11.so").exists());
    if !engines {
        return Err("OpenSSL's pkcs11 engine (libengine-pkcs11-openssl)".into());
    }
    if !std::path::Path::new("/usr/include/openssl/engine.h").exists() {
        return Err("OpenSSL's headers (libssl-dev)".into());
    }
    BUILT
        .get_or_init(|| compile("libp11", &["-Wno-deprecated-declarations"], &["-lcrypto"]))
        .as_ref()
        .map(|(_, p)| p.clone())
        .ok_or_else(|| "a C compiler (cc, from build-essential)".into())
}

/// The key's URI for OpenSSL's pkcs11 engine, without its type.
fn uri() -> String {
    format!("pkcs11:token=tok;object=tls;pin-value={PIN}")
}

/// Runs one mode of the C program against a fresh daemon; it must say "ok".
/// Its standard output, `None` when it cannot run.
fn run(mode: &[&str]) -> Option<String> {
    let Some(prog) = program() else {
        cannot_run("the fork tests need a C compiler (cc, from build-essential)");
        return None;
    };
    let hsm = Hsm::start();
    let child = Command::new(&prog)
        .arg(module())
        .args(mode)
        .env("IHSM_STATE", hsm.state())
        .env_remove("IHSM_SOCKET")
        .env_remove("IHSM_PKCS11_DEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(180), &format!("fork {mode:?}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains(&format!("ok {}", mode[0])),
        "fork {mode:?}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}\ndaemon:\n{}",
        out.status,
        std::fs::read_to_string(hsm.state().join("ihsmd.log")).unwrap_or_default()
    );
    Some(stdout.into_owned())
}

/// Fork after C_Login; parent and child sign, the child after C_Initialize and
/// C_Login of its own, with the handles the parent found (and finds the same);
/// before its C_Initialize every call answers CKR_CRYPTOKI_NOT_INITIALIZED.
#[test]
fn parent_and_child_sign_after_a_fork() {
    run(&["fork-sign"]);
}

/// Fork with shared-memory rings (issue 16): a forked child never uses its
/// parent's ring. Seen from the parent, the child maps none of its regions
/// (MADV_DONTFORK); the child's C_Initialize closes the descriptors of them it
/// inherited; it signs on a ring of its own, which the parent does not map,
/// while the parent signs on its own. (With `IHSM_TRANSPORT=socket`, neither
/// has a ring, and both sign.)
#[test]
fn a_forked_child_never_uses_its_parents_ring() {
    let Some(out) = run(&["fork-rings"]) else {
        return;
    };
    // The checks saw rings (the program counts the regions each process maps).
    let want = if std::env::var_os("IHSM_TRANSPORT").is_some_and(|v| v == "socket") {
        "rings: parent 0, child 0"
    } else {
        "rings: parent 1, child 1"
    };
    assert!(out.contains(want), "{out}");
}

/// Fork while another thread is inside C_Initialize, blocked on a socket that
/// never answers: the child initializes and signs all the same.
#[test]
fn a_fork_while_a_thread_is_inside_c_initialize() {
    run(&["fork-in-init"]);
}

/// Twenty forks while three threads sign without pause: every child
/// initializes, logs in and signs.
#[test]
fn forks_while_other_threads_are_mid_call() {
    run(&["fork-busy"]);
}

/// Fork and exec: nothing of the parent's connections crosses exec, and the new
/// program loads the module and signs.
#[test]
fn exec_after_fork() {
    run(&["exec"]);
}

/// dlopen, C_Initialize, sign, C_Finalize, dlclose, twenty times: no socket
/// left open, and a fork after it all (no fork handler of an unloaded module).
#[test]
fn dlopen_dlclose_cycles() {
    run(&["cycles", "20"]);
}

/// Four threads open sessions, log in and sign while the main thread finalizes
/// and initializes forty times: every call answers a code of the race (never a
/// panic's CKR_GENERAL_ERROR), none hangs, and the module works after.
#[test]
fn calls_racing_c_finalize() {
    run(&["finalize-race"]);
}

/// A master loads the key through libp11 and signs; three forked workers sign
/// with the key object they inherited (libp11 calls C_Initialize and C_Login
/// again in each), and the master signs on between them.
#[test]
fn libp11_signs_in_forked_workers() {
    let prog = match libp11_program() {
        Ok(p) => p,
        Err(why) => {
            cannot_run(&format!("the libp11 test needs {why}"));
            return;
        }
    };
    let hsm = Hsm::start();
    hsm.ec_token_pair("tok", "tls");
    let child = Command::new(&prog)
        .arg(module())
        .arg(uri())
        .arg("fork")
        .env("IHSM_STATE", hsm.state())
        .env_remove("IHSM_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(180), "libp11 fork");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("ok fork"),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("ihsm-pkcs11: "), "{stderr}");
}

/// nginx with `user nobody;`: the master (root) loads the key, the worker drops
/// to nobody, whom the partition does not admit, and signs. The module says so
/// once on the worker's standard error (nginx's error log), at the C_Initialize
/// libp11 makes in the worker; libp11 0.4.12 then waits for ever in its session
/// pool, so the test ends the workers once the line is there.
#[test]
fn a_libp11_worker_the_partition_refuses_is_told_why() {
    if !require_root("a worker of another uid") {
        return;
    }
    let prog = match libp11_program() {
        Ok(p) => p,
        Err(why) => {
            cannot_run(&format!("the libp11 test needs {why}"));
            return;
        }
    };
    let hsm = Hsm::start();
    hsm.world_connectable("tok");
    hsm.ec_token_pair("tok", "tls");
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(&prog)
            .arg(module())
            .arg(uri())
            .args(["refused", "65534"])
            .env("IHSM_STATE", hsm.state())
            .env_remove("IHSM_SOCKET")
            .env_remove("IHSM_PKCS11_DEBUG")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let told = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with("ihsm-pkcs11: ") => {
                lines.push(l.clone());
                break Some(l);
            }
            Ok(l) => lines.push(l),
            Err(_) => break None,
        }
    };
    // The master and its worker, whatever they are doing.
    let pgid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    let _ = child.wait();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(l);
    }
    let all = lines.join("\n");
    let told = told.unwrap_or_else(|| panic!("the worker was not told why:\n{all}"));
    assert!(
        told.contains("uid 65534") && told.contains("\"tok\""),
        "{told}"
    );
    assert_eq!(all.matches("ihsm-pkcs11: ").count(), 1, "{all}");
    assert!(!all.contains(PIN), "{all}");
}
