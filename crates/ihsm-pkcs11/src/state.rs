//! The module's state between `C_Initialize` and `C_Finalize`: its slots (one per
//! partition the caller may use) and its sessions.
//!
//! A slot keeps a pool of connections to the daemon, all acting for one
//! application there (the first asks for the application's token, the others join
//! with it), so threads of a multi-threaded application each get a connection of
//! their own and share sessions and login as PKCS#11 says.
//!
//! A fork leaves the child with no usable state: every call there answers
//! `CKR_CRYPTOKI_NOT_INITIALIZED` until it calls `C_Initialize` again, which
//! makes its own connections ([`crate::process`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use cryptoki_sys::*;
use ihsm_client::{Client, ClientError};
use ihsm_proto::ErrorCode;
use ihsm_proto::mech::{GcmIv, Mechanism, MechanismInfo};
use ihsm_proto::msg::{Endpoint, SecretBytes};
use zeroize::Zeroizing;

use crate::R;
use crate::convert::rv;

/// The next session handle. Counted for the whole process, not per
/// initialization: a handle kept past C_Finalize (by a thread still calling,
/// say) is invalid after C_Initialize, and never another thread's new session.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Whether this process's connections use shared-memory rings
/// ([`crate::config::rings`]), as found at the last `C_Initialize`.
static RINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The initialized module.
pub(crate) struct Module {
    pid: u32,
    pub(crate) slots: Vec<Slot>,
    sessions: RwLock<HashMap<CK_SESSION_HANDLE, Arc<Session>>>,
}

/// A slot: a partition's socket and the connections to it.
pub(crate) struct Slot {
    /// The slot's id: its partition's id in the HSM, the same for every process
    /// and user that may open it (a server's workers, forked from a master that
    /// may open more partitions than they, find their partition under the id the
    /// master found it under, and never another partition there).
    pub(crate) id: CK_SLOT_ID,
    pub(crate) name: String,
    /// The socket connections go to: in fleet mode, the host that serves the
    /// partition now.
    socket: RwLock<PathBuf>,
    /// Fleet mode: every fleet host's socket for the partition (empty
    /// otherwise).
    routes: Vec<(String, PathBuf)>,
    /// Fleet mode: the login to do again on the host the partition moved to
    /// (the PIN in memory wiped on drop); `None` while logged out.
    login: Mutex<Option<(ihsm_proto::types::UserType, Zeroizing<Vec<u8>>)>>,
    /// Counts the moves followed, so that threads refused at once follow once.
    followed: Mutex<u64>,
    /// Connections not in use, all acting for this application.
    idle: Mutex<Vec<Client>>,
    /// What lets a new connection join the application; `None` until the first
    /// connection asked for it, and again once every connection broke (the
    /// application, and its sessions, then ended in the HSM).
    token: Mutex<Option<SecretBytes>>,
    mechanisms: Mutex<Option<Vec<MechanismInfo>>>,
    /// Starts the HSM accepted while this application was logged in as it is.
    accepted: Mutex<Vec<Started>>,
    /// Calls in flight on this slot.
    busy: std::sync::atomic::AtomicUsize,
}

/// Half the machine's cores (at least one): the waiters that can spin while the
/// HSM has the other half to compute on. (Worked out by whichever thread comes
/// first, without a lock a fork could leave held.)
fn spare_cores() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    match N.load(Ordering::Relaxed) {
        0 => {
            let n = (std::thread::available_parallelism().map_or(1, usize::from) / 2).max(1);
            N.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// An output an application asked the length of (or gave too small a buffer
/// for): it is kept for the call that fetches it, as the HSM already made it.
pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) data: Zeroizing<Vec<u8>>,
    /// The object an encapsulation made.
    pub(crate) handle: CK_OBJECT_HANDLE,
}

/// Which call a [`Pending`] output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Encrypt,
    EncryptUpdate,
    EncryptFinal,
    Decrypt,
    DecryptUpdate,
    DecryptFinal,
    Digest,
    DigestFinal,
    Sign,
    SignFinal,
    Wrap,
    Encapsulate,
    SignMessage,
    SignMessageNext,
}

impl Op {
    /// Where its output waits: with the operation of its kind, or, for the calls
    /// that are no operation (wrapping, encapsulating), with the call.
    fn holder(self) -> Holder {
        match self {
            Self::Encrypt | Self::EncryptUpdate | Self::EncryptFinal => Holder::Kind(Kind::Encrypt),
            Self::Decrypt | Self::DecryptUpdate | Self::DecryptFinal => Holder::Kind(Kind::Decrypt),
            Self::Digest | Self::DigestFinal => Holder::Kind(Kind::Digest),
            Self::Sign | Self::SignFinal => Holder::Kind(Kind::Sign),
            Self::SignMessage | Self::SignMessageNext => Holder::Kind(Kind::MessageSign),
            Self::Wrap => Holder::Wrap,
            Self::Encapsulate => Holder::Encapsulate,
        }
    }
}

enum Holder {
    Kind(Kind),
    Wrap,
    Encapsulate,
}

/// The kinds of operation a session has, each at most one at a time and each
/// apart from the others: PKCS#11 lets one session digest, sign, verify, encrypt
/// and decrypt at once, and keep message-based contexts beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Digest,
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    /// The outputs of C_SignMessage and the last C_SignMessageNext (the contexts
    /// themselves are [`MessageCtx`]).
    MessageSign,
}

impl Kind {
    const COUNT: usize = 6;

    fn index(self) -> usize {
        self as usize
    }
}

/// What the module keeps of one kind of operation of a session.
#[derive(Default)]
pub(crate) struct OpState {
    /// A start begun without asking the HSM (it accepted the same start before):
    /// sent with the data, in one round trip. Signing and encrypting only.
    pub(crate) deferred: Option<(Mechanism, CK_OBJECT_HANDLE)>,
    /// Whether an operation of this kind may be under way in the HSM: then no
    /// start of this kind is deferred, so the HSM itself answers a second one with
    /// `CKR_OPERATION_ACTIVE`.
    pub(crate) remote: bool,
    /// An output made and not yet fetched: the operation is still active, as
    /// PKCS#11 says, until the call that fetches it.
    pub(crate) pending: Option<Pending>,
}

impl OpState {
    /// Whether the module itself knows the operation is active (a deferred start,
    /// an output not fetched); the HSM knows of the rest.
    pub(crate) fn active_here(&self) -> bool {
        self.deferred.is_some() || self.pending.is_some()
    }
}

/// A message-based context (PKCS#11 3.0): the mechanism and key
/// of `C_MessageSignInit` or `C_MessageVerifyInit`, and the HSM session its
/// messages in parts are signed or verified on.
pub(crate) struct MessageCtx {
    pub(crate) mech: Mechanism,
    pub(crate) key: CK_OBJECT_HANDLE,
    /// A session of this application in the HSM that only this context uses, so
    /// its signature in parts is not the session's own (opened when first
    /// needed, closed at the context's end).
    pub(crate) aux: Option<u64>,
    /// Whether a message in parts is under way.
    pub(crate) part: bool,
}

/// What a session keeps beside the HSM's own state.
#[derive(Default)]
pub(crate) struct SessionState {
    /// Handles of a find, and how many were handed out.
    pub(crate) find: Option<(Vec<CK_OBJECT_HANDLE>, usize)>,
    /// Per kind of operation, apart.
    ops: [OpState; Kind::COUNT],
    /// The output of a C_WrapKey not yet fetched.
    wrap: Option<Pending>,
    /// The output of a C_EncapsulateKey not yet fetched.
    encapsulate: Option<Pending>,
    /// The message-based signing context.
    pub(crate) message_sign: Option<MessageCtx>,
    /// The message-based verifying context.
    pub(crate) message_verify: Option<MessageCtx>,
    /// The signature given to `C_VerifySignatureInit`.
    pub(crate) signature: Option<Vec<u8>>,
}

impl SessionState {
    /// The state of one kind of operation.
    pub(crate) fn op(&mut self, kind: Kind) -> &mut OpState {
        &mut self.ops[kind.index()]
    }

    /// Where outputs of `op` wait.
    fn holder(&mut self, op: Op) -> &mut Option<Pending> {
        match op.holder() {
            Holder::Kind(k) => &mut self.ops[k.index()].pending,
            Holder::Wrap => &mut self.wrap,
            Holder::Encapsulate => &mut self.encapsulate,
        }
    }

    /// The output kept for `op`, taken. An output of another call of the same
    /// kind is dropped: that call was not repeated, the operation has ended. The
    /// outputs of other kinds stay where they are.
    pub(crate) fn take_pending(&mut self, op: Op) -> Option<Pending> {
        self.holder(op).take().filter(|p| p.op == op)
    }

    /// Keeps an output for the call that fetches it.
    pub(crate) fn keep(&mut self, p: Pending) {
        let op = p.op;
        *self.holder(op) = Some(p);
    }

    /// The message-based context of signing (`verify` false) or verifying.
    pub(crate) fn message(&mut self, verify: bool) -> &mut Option<MessageCtx> {
        if verify {
            &mut self.message_verify
        } else {
            &mut self.message_sign
        }
    }
}

/// A start the HSM accepted: the kind, the key, and the mechanism with what
/// changes per call and is checked only with the data (GCM's IV bytes and AAD)
/// left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    kind: Kind,
    key: CK_OBJECT_HANDLE,
    mech: Mechanism,
}

impl Started {
    pub(crate) fn new(kind: Kind, key: CK_OBJECT_HANDLE, mech: &Mechanism) -> Self {
        let mech = match mech {
            Mechanism::AesGcm { iv, tag_bits, .. } => Mechanism::AesGcm {
                iv: match iv {
                    GcmIv::Supplied(v) => GcmIv::Supplied(vec![0; v.len()]),
                    GcmIv::Generate => GcmIv::Generate,
                },
                aad: Vec::new(),
                tag_bits: *tag_bits,
            },
            other => other.clone(),
        };
        Self { kind, key, mech }
    }
}

/// A session of the application.
pub(crate) struct Session {
    pub(crate) slot: CK_SLOT_ID,
    /// The HSM's handle of the session (another once the session followed its
    /// partition to another host).
    pub(crate) remote: AtomicU64,
    pub(crate) rw: bool,
    pub(crate) state: Mutex<SessionState>,
}

impl Session {
    /// The HSM's handle of the session.
    pub(crate) fn remote(&self) -> u64 {
        self.remote.load(Ordering::Acquire)
    }

    pub(crate) fn state(&self) -> R<MutexGuard<'_, SessionState>> {
        self.state.lock().map_err(|_| CKR_GENERAL_ERROR)
    }
}

/// Whether PKCS#11 diagnostics go to stderr (`IHSM_PKCS11_DEBUG=1`).
pub(crate) fn debug(msg: &str) {
    if std::env::var_os("IHSM_PKCS11_DEBUG").is_some() {
        crate::process::say(&format!("ihsm-pkcs11: {msg}\n"));
    }
}

/// The module, if initialized in this process.
pub(crate) fn module() -> R<Arc<Module>> {
    let g = crate::process::current().ok_or(CKR_CRYPTOKI_NOT_INITIALIZED)?;
    let m = g.module.read().map_err(|_| CKR_GENERAL_ERROR)?;
    match &*m {
        Some(m) if m.pid == std::process::id() => Ok(Arc::clone(m)),
        _ => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// Whether the module is initialized in this process.
fn initialized(g: &crate::process::Global) -> R<bool> {
    let m = g.module.read().map_err(|_| CKR_GENERAL_ERROR)?;
    Ok(m.as_ref().is_some_and(|m| m.pid == std::process::id()))
}

/// `C_Initialize`: finds the partitions this user may open.
///
/// The sockets are tried with no lock held: a slow daemon does not hold up the
/// application's other threads, nor a fork meanwhile the child.
pub(crate) fn initialize() -> R {
    crate::process::watch_forks();
    crate::process::let_go_of_parent();
    let g = crate::process::global();
    if initialized(g)? {
        return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    let module = discover()?;
    let mut w = g.module.write().map_err(|_| CKR_GENERAL_ERROR)?;
    match w.take() {
        // Another thread's C_Initialize came first; this one's connections close.
        Some(m) if m.pid == std::process::id() => {
            *w = Some(m);
            return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
        // A parent's, forked without the fork handler: not this process's to use
        // nor to drop.
        Some(m) => core::mem::forget(m),
        None => {}
    }
    *w = Some(Arc::new(module));
    Ok(())
}

/// The slots: each candidate socket whose partition this user may open.
fn discover() -> R<Module> {
    let sockets = crate::config::sockets().map_err(|e| {
        debug(&e.0);
        CKR_GENERAL_ERROR
    })?;
    RINGS.store(crate::config::rings(), Ordering::Relaxed);
    let routes = crate::config::fleet().map_err(|e| {
        debug(&e.0);
        CKR_GENERAL_ERROR
    })?;
    let mut slots = Vec::new();
    // Why the first partition that refused this process did: told only if none
    // admits it, as a process admitted to the partitions it needs must not warn
    // about every other tenant's socket in the directory at each start.
    let mut refusal = None;
    for socket in sockets {
        match Client::connect_with(&socket, "ihsm-pkcs11", RINGS.load(Ordering::Relaxed)) {
            Ok(c) => {
                if let Endpoint::Partition { id, name } = c.endpoint().clone() {
                    let slot = Slot {
                        id: CK_SLOT_ID::from(id),
                        name,
                        socket: RwLock::new(socket),
                        routes: routes.clone(),
                        login: Mutex::new(None),
                        followed: Mutex::new(0),
                        idle: Mutex::new(Vec::new()),
                        token: Mutex::new(None),
                        mechanisms: Mutex::new(None),
                        accepted: Mutex::new(Vec::new()),
                        busy: std::sync::atomic::AtomicUsize::new(0),
                    };
                    let c = slot.first(c)?;
                    slot.idle.lock().map_err(|_| CKR_GENERAL_ERROR)?.push(c);
                    slots.push(slot);
                }
            }
            // Not this user's partition, or no daemon: not a slot.
            Err(e) => {
                debug(&format!("{}: {e}", socket.display()));
                if refusal.is_none() {
                    refusal = refused_by(&socket, &e);
                }
            }
        }
    }
    if let (true, Some(why)) = (slots.is_empty(), refusal) {
        crate::process::refused(&why);
    }
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    // Partitions of two daemons may have the same id: the later (by name) gets it
    // with a count above the partition ids' 32 bits.
    let mut taken = std::collections::HashSet::new();
    for s in &mut slots {
        let mut id = s.id;
        let mut k: CK_SLOT_ID = 1;
        while !taken.insert(id) {
            id = s.id | (k << 32);
            k += 1;
        }
        s.id = id;
    }
    Ok(Module {
        pid: std::process::id(),
        slots,
        sessions: RwLock::new(HashMap::new()),
    })
}

/// A new connection to a partition's socket. The daemon's refusal of this
/// process's uid and gid is told to the operator ([`crate::process::refused`]):
/// without it a worker process dropped to a user the partition does not admit
/// would only see its calls fail.
fn connect(socket: &Path) -> Result<Client, ClientError> {
    let r = Client::connect_with(socket, "ihsm-pkcs11", RINGS.load(Ordering::Relaxed));
    if let Err(e) = &r
        && let Some(why) = refused_by(socket, e)
    {
        crate::process::refused(&why);
    }
    r
}

/// What to tell the operator when `e` is a refusal of this process's uid and
/// gid: the daemon's own sentence, or what the socket's permissions refuse.
fn refused_by(socket: &Path, e: &ClientError) -> Option<String> {
    match e {
        ClientError::Hsm(w) if w.kind() == Some(ErrorCode::PermissionDenied) => {
            Some(w.message.clone())
        }
        ClientError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Some(socket_refuses(socket))
        }
        _ => None,
    }
}

/// What to tell the operator when the socket's own permissions refuse this
/// process (the daemon never sees the connection, so it has nothing to say).
fn socket_refuses(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) and getegid(2) cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let name = ihsm_proto::layout::partition_of(socket).unwrap_or("?");
    let mode = std::fs::metadata(socket).map_or_else(
        |e| format!("its permissions cannot be read: {e}"),
        |m| {
            format!(
                "uid {} gid {} mode {:04o}",
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            )
        },
    );
    format!(
        "partition \"{name}\" refuses uid {uid} gid {gid} before the daemon sees them: its socket {} is {mode}. The daemon makes its sockets 0666 and admits callers by uid and gid: restore that mode, and admit this user with `ihsm partition allow {name} --uid {uid}`",
        socket.display()
    )
}

/// `C_Finalize`: drops the connections (the HSM closes their sessions and
/// destroys their session objects). Calls still in flight keep the module until
/// they return; their connections close then.
pub(crate) fn finalize() -> R {
    let g = crate::process::current().ok_or(CKR_CRYPTOKI_NOT_INITIALIZED)?;
    let m = {
        let mut w = g.module.write().map_err(|_| CKR_GENERAL_ERROR)?;
        match w.take() {
            Some(m) if m.pid == std::process::id() => m,
            Some(m) => {
                core::mem::forget(m);
                return Err(CKR_CRYPTOKI_NOT_INITIALIZED);
            }
            None => return Err(CKR_CRYPTOKI_NOT_INITIALIZED),
        }
    };
    // Dropped with no lock held: closing the connections waits for nothing else.
    drop(m);
    Ok(())
}

impl Module {
    /// In a forked child, of its parent's module: closes the child's copies of
    /// the connections that were idle at the fork, whose pool no parent thread
    /// held (a `Client` sends nothing when dropped: it closes its socket, and the
    /// parent's copy stays open). The connections in use at the fork, and
    /// everything else, are left alone.
    pub(crate) fn close_idle_copies(&self) {
        for slot in &self.slots {
            if let Ok(mut idle) = slot.idle.try_lock() {
                drop(core::mem::take(&mut *idle));
            }
        }
    }

    pub(crate) fn slot(&self, id: CK_SLOT_ID) -> R<&Slot> {
        self.slots
            .iter()
            .find(|s| s.id == id)
            .ok_or(CKR_SLOT_ID_INVALID)
    }

    pub(crate) fn session(&self, h: CK_SESSION_HANDLE) -> R<Arc<Session>> {
        self.sessions
            .read()
            .map_err(|_| CKR_GENERAL_ERROR)?
            .get(&h)
            .cloned()
            .ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    pub(crate) fn add_session(&self, s: Session) -> R<CK_SESSION_HANDLE> {
        let h = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        self.sessions
            .write()
            .map_err(|_| CKR_GENERAL_ERROR)?
            .insert(h, Arc::new(s));
        Ok(h)
    }

    /// Forgets a session. The slot's last one logs the application out, and
    /// with it go the starts the HSM accepted.
    pub(crate) fn remove_session(&self, h: CK_SESSION_HANDLE) -> R<Arc<Session>> {
        let mut all = self.sessions.write().map_err(|_| CKR_GENERAL_ERROR)?;
        let s = all.remove(&h).ok_or(CKR_SESSION_HANDLE_INVALID)?;
        if !all.values().any(|x| x.slot == s.slot) {
            self.slot(s.slot)?.forget(None);
            self.slot(s.slot)?.remember_login(None);
        }
        Ok(s)
    }

    /// Forgets every session of a slot (and so its login).
    pub(crate) fn remove_slot_sessions(&self, slot: CK_SLOT_ID) -> R {
        self.sessions
            .write()
            .map_err(|_| CKR_GENERAL_ERROR)?
            .retain(|_, s| s.slot != slot);
        self.slot(slot)?.forget(None);
        self.slot(slot)?.remember_login(None);
        Ok(())
    }

    /// Whether a slot has sessions open in this application.
    pub(crate) fn slot_sessions(&self, slot: CK_SLOT_ID) -> R<(u64, u64)> {
        let s = self.sessions.read().map_err(|_| CKR_GENERAL_ERROR)?;
        let all = s.values().filter(|x| x.slot == slot);
        let (mut n, mut rw) = (0, 0);
        for x in all {
            n += 1;
            rw += u64::from(x.rw);
        }
        Ok((n, rw))
    }

    /// Runs `f` on the session's slot connection, with the HSM's session handle;
    /// in fleet mode it follows the partition when it moves.
    pub(crate) fn call<T>(
        &self,
        s: &Session,
        mut f: impl FnMut(&mut Client, u64) -> Result<T, ClientError>,
    ) -> R<T> {
        self.slot_call(s.slot, |c| f(c, s.remote()))
    }

    /// Runs `f` on a connection of slot `id`; in fleet mode, a call refused
    /// because the partition is moving waits, and one refused because it moved
    /// follows it (both refusals mean the call did nothing, so it runs again).
    pub(crate) fn slot_call<T>(
        &self,
        id: CK_SLOT_ID,
        mut f: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> R<T> {
        let slot = self.slot(id)?;
        if slot.routes.is_empty() {
            return slot.call(f);
        }
        let deadline = std::time::Instant::now() + FOLLOW_PATIENCE;
        let mut backoff = ihsm_client::follow::Backoff::default();
        loop {
            let seen = *slot.followed.lock().map_err(|_| CKR_GENERAL_ERROR)?;
            let refused = match slot.call_raw(&mut f) {
                Ok(v) => return Ok(v),
                Err(Raw::Rv(rv)) => return Err(rv),
                Err(r) => r,
            };
            if std::time::Instant::now() >= deadline {
                return Err(CKR_DEVICE_REMOVED);
            }
            match refused {
                Raw::Moved(to) => self.follow(slot, seen, &to, deadline)?,
                _ => backoff.wait(),
            }
        }
    }

    /// Moves slot `slot` to host `to`: the application joined again there by
    /// its token (the partition's delta carried its sessions, login and session
    /// objects), else a new application, every session of the slot opened again
    /// (same module handles, new HSM handles) and the login done again. Done once
    /// for all the threads refused at once.
    fn follow(&self, slot: &Slot, seen: u64, to: &str, deadline: std::time::Instant) -> R<()> {
        let mut followed = slot.followed.lock().map_err(|_| CKR_GENERAL_ERROR)?;
        if *followed != seen {
            return Ok(());
        }
        let path = slot
            .routes
            .iter()
            .find(|(h, _)| h == to)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                debug(&format!(
                    "{}: moved to host {to}, which no fleet route names",
                    slot.name
                ));
                CKR_DEVICE_REMOVED
            })?;
        debug(&format!(
            "{}: following it to {to} ({})",
            slot.name,
            path.display()
        ));
        // The destination serves once it read the flip: wait for it.
        let mut backoff = ihsm_client::follow::Backoff::default();
        let c = loop {
            match connect(&path) {
                Ok(c) => break c,
                Err(e) if std::time::Instant::now() < deadline => {
                    debug(&format!("{}: {e}", path.display()));
                    backoff.wait();
                }
                Err(_) => return Err(CKR_DEVICE_REMOVED),
            }
        };
        *slot.socket.write().map_err(|_| CKR_GENERAL_ERROR)? = path;
        slot.idle.lock().map_err(|_| CKR_GENERAL_ERROR)?.clear();
        slot.forget(None);
        // The application travelled with the partition: join it there, with
        // its sessions (same handles), login and session objects.
        let token = slot
            .token
            .lock()
            .map_err(|_| CKR_GENERAL_ERROR)?
            .as_ref()
            .map(SecretBytes::duplicate);
        let mut c = c;
        if let Some(t) = token {
            match c.join_app(&t) {
                Ok(()) => {
                    debug(&format!("{}: resumed the application at {to}", slot.name));
                    slot.idle.lock().map_err(|_| CKR_GENERAL_ERROR)?.push(c);
                    *followed += 1;
                    return Ok(());
                }
                Err(e) => debug(&format!(
                    "{}: the application did not resume at {to} ({e}); opening its sessions again",
                    slot.name
                )),
            }
        }
        *slot.token.lock().map_err(|_| CKR_GENERAL_ERROR)? = None;
        let mut c = slot.first(c)?;
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .read()
            .map_err(|_| CKR_GENERAL_ERROR)?
            .values()
            .filter(|x| x.slot == slot.id)
            .cloned()
            .collect();
        for x in &sessions {
            let r = c.open_session(x.rw).map_err(|e| rv(&e))?;
            x.remote.store(r, Ordering::Release);
        }
        let login = slot.login.lock().map_err(|_| CKR_GENERAL_ERROR)?;
        if let (Some((user, pin)), Some(x)) = (login.as_ref(), sessions.first()) {
            c.login(x.remote(), *user, pin).map_err(|e| rv(&e))?;
        }
        drop(login);
        slot.idle.lock().map_err(|_| CKR_GENERAL_ERROR)?.push(c);
        *followed += 1;
        Ok(())
    }
}

/// How long a call in fleet mode waits for its partition to settle on a host.
const FOLLOW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Why a call did not complete, for the fleet mode.
pub(crate) enum Raw {
    /// The partition moved to this host.
    Moved(String),
    /// It is moving.
    Moving,
    /// Any other answer.
    Rv(CK_RV),
}

impl Slot {
    /// Runs `f` on a connection of this slot's application: an idle one, else a
    /// new one joined to the application. A connection that broke is dropped; if
    /// it was the last, the HSM ended the application, its sessions answer
    /// "invalid handle", and the next connection starts a new one.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, ClientError>) -> R<T> {
        self.call_raw(f).map_err(|r| match r {
            Raw::Rv(rv) => rv,
            Raw::Moved(_) | Raw::Moving => CKR_DEVICE_REMOVED,
        })
    }

    /// Whether the module follows this slot's partition across the fleet.
    pub(crate) fn fleet_mode(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Keeps (fleet mode) or forgets the login to do again after a move.
    pub(crate) fn remember_login(&self, login: Option<(ihsm_proto::types::UserType, &[u8])>) {
        if !self.fleet_mode() {
            return;
        }
        if let Ok(mut l) = self.login.lock() {
            *l = login.map(|(u, p)| (u, Zeroizing::new(p.to_vec())));
        }
    }

    fn socket(&self) -> PathBuf {
        self.socket.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// [`Slot::call`], telling a partition that moved or is moving apart.
    fn call_raw<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, ClientError>) -> Result<T, Raw> {
        let idle = self
            .idle
            .lock()
            .map_err(|_| Raw::Rv(CKR_GENERAL_ERROR))?
            .pop();
        let mut c = match idle {
            Some(c) => c,
            None => self.dial_raw()?,
        };
        // Waiting through a slow answer without sleeping pays only with a spare
        // core for the waiter: with more calls in flight than half the cores,
        // spinners would take the cores the HSM computes on.
        let busy = self.busy.fetch_add(1, Ordering::Relaxed) + 1;
        c.set_spin_longer(busy <= spare_cores());
        let r = f(&mut c);
        self.busy.fetch_sub(1, Ordering::Relaxed);
        let idle = |c| {
            self.idle
                .lock()
                .map(|mut i| i.push(c))
                .map_err(|_| Raw::Rv(CKR_GENERAL_ERROR))
        };
        match r {
            Ok(v) => {
                idle(c)?;
                Ok(v)
            }
            Err(e @ (ClientError::Io(_) | ClientError::Protocol(_))) => {
                debug(&format!("{}: {e}", self.socket().display()));
                Err(Raw::Rv(CKR_DEVICE_ERROR))
            }
            Err(e) if self.fleet_mode() && ihsm_client::follow::moved_to(&e).is_some() => {
                // This connection's host serves the partition no more.
                Err(Raw::Moved(
                    ihsm_client::follow::moved_to(&e).unwrap_or_default(),
                ))
            }
            Err(e) if self.fleet_mode() && e.code() == ErrorCode::PartitionMoving => {
                idle(c)?;
                Err(Raw::Moving)
            }
            Err(e) => {
                idle(c)?;
                Err(Raw::Rv(rv(&e)))
            }
        }
    }

    /// A new connection, joined to the application if there is one; in fleet
    /// mode, a partition that moved or is moving is told apart.
    fn dial_raw(&self) -> Result<Client, Raw> {
        let socket = self.socket();
        let mut c = connect(&socket).map_err(|e| {
            debug(&format!("{}: {e}", socket.display()));
            if self.fleet_mode() {
                if let Some(to) = ihsm_client::follow::moved_to(&e) {
                    return Raw::Moved(to);
                }
                if matches!(
                    e.code(),
                    ErrorCode::PartitionMoving
                        | ErrorCode::PartitionNotFound
                        | ErrorCode::Connection
                ) {
                    return Raw::Moving;
                }
            }
            Raw::Rv(match e {
                // Refused (this process's uid is not, or no longer, admitted):
                // the daemon's code, at once; the operator was told why.
                ClientError::Hsm(w) => w.ckr(),
                _ => CKR_DEVICE_REMOVED,
            })
        })?;
        let mut token = self.token.lock().map_err(|_| Raw::Rv(CKR_GENERAL_ERROR))?;
        if let Some(t) = &*token {
            match c.join_app(t) {
                Ok(()) => return Ok(c),
                // Every earlier connection broke: the application ended.
                Err(e) if e.code() == ErrorCode::AppTokenInvalid => {
                    *token = None;
                }
                Err(e) => return Err(Raw::Rv(rv(&e))),
            }
        }
        drop(token);
        self.first(c).map_err(Raw::Rv)
    }

    /// Makes `c` the first connection of a new application: keeps the token
    /// others join with.
    fn first(&self, mut c: Client) -> R<Client> {
        if c.revision() < 2 {
            debug(
                "the daemon predates protocol revision 2 (one application over several connections); upgrade ihsmd",
            );
            return Err(CKR_DEVICE_ERROR);
        }
        let t = c.app_token().map_err(|e| rv(&e))?;
        *self.token.lock().map_err(|_| CKR_GENERAL_ERROR)? = Some(t);
        Ok(c)
    }

    /// Whether the HSM accepted this start before (and nothing since could
    /// have changed its answer: the key's destruction or attributes, a logout).
    pub(crate) fn accepted(&self, st: &Started) -> bool {
        self.accepted.lock().is_ok_and(|a| a.contains(st))
    }

    /// Remembers a start the HSM accepted (a few at most: an application signs
    /// with a handful of keys; the oldest goes first).
    pub(crate) fn accept(&self, st: Started) {
        if let Ok(mut a) = self.accepted.lock()
            && !a.contains(&st)
        {
            if a.len() >= 64 {
                a.remove(0);
            }
            a.push(st);
        }
    }

    /// Forgets the starts of `key` (destroyed or changed), or of every key.
    pub(crate) fn forget(&self, key: Option<CK_OBJECT_HANDLE>) {
        if let Ok(mut a) = self.accepted.lock() {
            match key {
                Some(k) => a.retain(|st| st.key != k),
                None => a.clear(),
            }
        }
    }

    /// The HSM's mechanisms (asked once).
    pub(crate) fn mechanisms(&self) -> R<Vec<MechanismInfo>> {
        let mut cached = self.mechanisms.lock().map_err(|_| CKR_GENERAL_ERROR)?;
        if let Some(m) = &*cached {
            return Ok(m.clone());
        }
        let mut m = self.call(Client::mechanisms)?;
        // The module builds the 3.0 message-based signatures on the HSM's own.
        for x in &mut m {
            if x.flags & CKF_SIGN != 0 {
                x.flags |= CKF_MESSAGE_SIGN;
            }
            if x.flags & CKF_VERIFY != 0 {
                x.flags |= CKF_MESSAGE_VERIFY;
            }
        }
        // Masked keys travel through C_WrapKey / C_UnwrapKey.
        m.push(MechanismInfo {
            mechanism: ihsm_proto::mech::CKM_IHSM_MASKED_KEY,
            min_key: 0,
            max_key: 0,
            flags: CKF_WRAP | CKF_UNWRAP | CKF_HW,
        });
        *cached = Some(m.clone());
        Ok(m)
    }
}
