//! The module across fork, exec, dlclose and C_Finalize, as a C application uses
//! it: `tests/c/fork.c`, compiled here with cc, loads the cdylib with dlopen and
//! runs one scenario per process against a real daemon (see the C file for each
//! mode). A hang fails: each process and child arms alarm(2), and each run here
//! has a timeout of its own.
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

/// The C program, compiled once per test binary; `None` without a C compiler.
fn program() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("fork");
            let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/fork.c");
            let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
            let r = Command::new(&cc)
                .args([
                    "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread", "-o",
                ])
                .arg(&out)
                .arg(&src)
                .arg("-ldl")
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
        })
        .as_ref()
        .map(|(_, p)| p.clone())
}

/// Runs one mode of the C program against a fresh daemon; it must say "ok".
fn run(mode: &[&str]) {
    let Some(prog) = program() else {
        cannot_run("the fork tests need a C compiler (cc, from build-essential)");
        return;
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
}

/// Fork after C_Login; parent and child sign, the child after C_Initialize and
/// C_Login of its own, with the handles the parent found (and finds the same);
/// before its C_Initialize every call answers CKR_CRYPTOKI_NOT_INITIALIZED.
#[test]
fn parent_and_child_sign_after_a_fork() {
    run(&["fork-sign"]);
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
