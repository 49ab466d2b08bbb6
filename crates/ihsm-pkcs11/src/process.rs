//! What the module keeps per process, and what a fork does to it.
//!
//! The initialized module sits behind one pointer ([`current`]). A child forked
//! after `C_Initialize` must not use its parent's state: its connections are the
//! parent's sockets (a request from the child would interleave with the parent's
//! on the same connection), and any lock of it may have been held by a parent
//! thread at the fork, which no thread of the child will ever release. So a
//! `pthread_atfork(3)` child handler, registered at the first `C_Initialize`,
//! takes the pointer away: in the child every call finds no module and answers
//! `CKR_CRYPTOKI_NOT_INITIALIZED` without touching a lock, and its `C_Initialize`
//! starts afresh (new connections, a new application in the HSM), as PKCS#11 and
//! libp11 expect. The parent's state is leaked in the child, never dropped: no
//! lock of it is taken but with `try_*`, and only the connections that were idle
//! at the fork are let go (their drop only closes the child's copies of the
//! sockets; the parent's connections, and its sessions, stay as they were).
//!
//! The handler does nothing but atomic stores, as a handler in a child of a
//! multi-threaded process must. glibc removes the handlers of a shared object
//! when it is unloaded (`pthread_atfork` is linked from `libc_nonshared.a`,
//! with the module's `__dso_handle`), so a `dlclose` leaves no handler pointing
//! into unmapped code.

use core::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, RwLock};

use crate::state::Module;

/// The state of one process: the module, once initialized.
pub(crate) struct Global {
    pub(crate) module: RwLock<Option<Arc<Module>>>,
}

/// This process's state; null before the first `C_Initialize` and in a forked
/// child until it initializes. Never freed (a few bytes per process).
static CURRENT: AtomicPtr<Global> = AtomicPtr::new(null_mut());

/// A forked child's copy of its parent's state, to be let go of at its first
/// `C_Initialize`.
static INHERITED: AtomicPtr<Global> = AtomicPtr::new(null_mut());

static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Whether the refusal notice was given in this process.
pub(crate) static REFUSAL_SAID: AtomicBool = AtomicBool::new(false);

/// The state of this process, if it was ever initialized here.
pub(crate) fn current() -> Option<&'static Global> {
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: a non-null CURRENT points to a Global leaked by `global`, never
    // freed: it lives for the rest of the process.
    unsafe { p.as_ref() }
}

/// The state of this process, made if there is none.
pub(crate) fn global() -> &'static Global {
    if let Some(g) = current() {
        return g;
    }
    let new = Box::into_raw(Box::new(Global {
        module: RwLock::new(None),
    }));
    match CURRENT.compare_exchange(null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `new` is the Box just leaked, now CURRENT, never freed.
        Ok(_) => unsafe { &*new },
        Err(won) => {
            // SAFETY: `new` was never shared (the exchange failed), so this is its
            // only owner; `won` is another thread's, leaked and never freed.
            unsafe {
                drop(Box::from_raw(new));
                &*won
            }
        }
    }
}

/// In the child of a fork: the parent's state is not this process's.
extern "C" fn child() {
    let parent = CURRENT.swap(null_mut(), Ordering::AcqRel);
    if !parent.is_null() {
        // A grandparent's leftovers, if the parent never initialized, stay leaked.
        INHERITED.store(parent, Ordering::Release);
    }
    REFUSAL_SAID.store(false, Ordering::Relaxed);
}

/// Registers the fork handler, once per load of the module.
pub(crate) fn watch_forks() {
    if REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: `child` is an `extern "C" fn()` of this module that only stores to
    // atomics, safe in a forked child; glibc unregisters it when the module is
    // unloaded (see the module documentation).
    let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
    if rc != 0 {
        // Without the handler a forked child still finds its parent's state
        // foreign by its pid; only a lock held at the fork could then stall it.
        REGISTERED.store(false, Ordering::Release);
        crate::state::debug(&format!("pthread_atfork failed ({rc})"));
    }
}

/// In a forked child, at `C_Initialize`: lets go of the idle connections of
/// the parent's state, if no parent thread held their locks at the fork, and
/// leaks the rest.
pub(crate) fn let_go_of_parent() {
    let p = INHERITED.swap(null_mut(), Ordering::AcqRel);
    // SAFETY: a non-null INHERITED is a Global leaked by `global` in an ancestor
    // process, copied into this one by fork, and never freed.
    let Some(parent) = (unsafe { p.as_ref() }) else {
        return;
    };
    forget_module(&parent.module);
}

/// Takes a module state not this process's out of `slot` (if no thread held
/// its lock at the fork), closes its idle connections and leaks the rest.
pub(crate) fn forget_module(slot: &RwLock<Option<Arc<Module>>>) {
    let Ok(mut w) = slot.try_write() else {
        return;
    };
    if let Some(m) = w.take() {
        m.close_idle_copies();
        // The rest is the parent's: never dropped here.
        core::mem::forget(m);
    }
}

/// Writes a line to standard error without Rust's stderr lock (which a thread
/// of a forked child's parent may have held): one write(2), retried if cut.
pub(crate) fn say(line: &str) {
    let mut b = line.as_bytes();
    while !b.is_empty() {
        // SAFETY: `b` is a live byte slice, its pointer and length passed as is;
        // fd 2 may be closed, which write(2) answers with an error.
        let n = unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => b = &b[n.min(b.len())..],
            _ => {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
        }
    }
}
/// Writes `line` to the system log (syslog(3), `LOG_USER | LOG_ERR`), under the
/// application's own identity: the module does not call `openlog`, which would
/// change it for the whole process.
pub(crate) fn log(line: &str) {
    // A NUL would end the message early; none comes from the daemon, but the
    // text is not the module's own.
    let Ok(c) = std::ffi::CString::new(line.replace('\0', " ")) else {
        return;
    };
    // SAFETY: the format is a constant "%s" taking one C string, and `c` is a
    // live NUL-terminated string.
    unsafe { libc::syslog(libc::LOG_USER | libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr()) };
}

/// The daemon refused this process a connection to a partition (its uid and gid
/// are not admitted): said once per process, on standard error and in the
/// system log, in the daemon's own words, which name the partition, the
/// caller's uid and gid, who is admitted and the command that admits the
/// caller. (A daemon's message carries no secret.) Later refusals in the same
/// process are said only with `IHSM_PKCS11_DEBUG`.
pub(crate) fn refused(daemon_says: &str) {
    if REFUSAL_SAID.swap(true, Ordering::AcqRel) {
        crate::state::debug(daemon_says);
        return;
    }
    let line = format!("ihsm-pkcs11: {daemon_says}");
    say(&format!("{line}\n"));
    log(&line);
}
