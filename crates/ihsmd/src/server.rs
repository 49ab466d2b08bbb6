//! Listeners and connections: the admin socket, one socket per partition, and the
//! network listener. Every connection says hello, is checked against its endpoint's
//! owner, then sends requests one at a time; each gets one response.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ihsm_core::partition::{Partition, PartitionInfo};
use ihsm_core::{CoreError, Device, DeviceState};
use ihsm_proto::frame::{self, FrameError, Inbox, Need};
use ihsm_proto::msg::{
    DeviceStatus, Endpoint, Hello, HelloReply, Reply, Request, SecretBytes, Serves,
};
use ihsm_proto::{ErrorCode, WireError};
use ihsm_rot::config::SecurityConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::serve;
use crate::slow::SlowPool;

/// How long a client has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Refusals a partition's socket hands out per second at its connection limit,
/// after a burst of as many. Past them the socket accepts only when a place
/// frees or the next refusal is due, and a flooding client waits in the
/// kernel's backlog, costing no one CPU, instead of being accepted and refused
/// at the daemon's expense.
const REFUSALS_PER_SEC: f64 = 1000.0;

/// A request frame longer than this is large: a partition receives at most
/// [`LARGE_FRAMES_PER_PARTITION`] of them at once, so that partly received
/// frames hold at most that many times [`frame::MAX_FRAME`] of the daemon's
/// memory (plus 1 MiB a connection), not 64 MiB times every connection.
const LARGE_FRAME: usize = 1 << 20;
/// Large frames a partition may have arriving at once; the others wait, unread.
const LARGE_FRAMES_PER_PARTITION: usize = 4;

/// Who is on the other end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// uid (SO_PEERCRED), or the partition owner's for a network client.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// pid, where known.
    pub pid: Option<i32>,
}

/// What a connection reaches.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The admin socket.
    Admin,
    /// A partition's socket (or a network client mapped to it).
    Partition(u32),
    /// A network client whose certificate (this SHA-256, hex) maps to no
    /// partition: refused after its hello, with the reason.
    Unmapped(String),
}

struct PartitionListener {
    stop: CancellationToken,
    path: PathBuf,
}

/// What one partition may hold of the daemon at once, so that one tenant cannot
/// starve the others: connections (refused beyond the limit, with the reason,
/// and at a bounded rate), slow requests running (beyond the limit a request
/// waits its turn, as a task, holding no thread), and large frames being
/// received (beyond the limit the next waits, unread).
struct Limits {
    connections: Arc<Semaphore>,
    slow: Arc<Semaphore>,
    /// Refusals at the connection limit, for the log.
    refused: Throttle,
    /// Refusals at the connection limit, paced.
    pace: Pace,
    /// Large frames being received.
    large: Arc<Semaphore>,
}

/// A token bucket of [`REFUSALS_PER_SEC`].
struct Pace {
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    fn new() -> Self {
        Self {
            state: Mutex::new((REFUSALS_PER_SEC, Instant::now())),
        }
    }

    /// Takes a token: zero, or (taking none) how long until one is due.
    fn take(&self) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        s.0 =
            (s.0 + now.duration_since(s.1).as_secs_f64() * REFUSALS_PER_SEC).min(REFUSALS_PER_SEC);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - s.0) / REFUSALS_PER_SEC)
        }
    }
}

/// Counts events and says when to log them: at most once a second, with how
/// many happened since the last line (a flood of refusals is not a flood of
/// log lines).
#[derive(Default)]
struct Throttle {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    /// One more event; `Some(n)` when a line should say `n` happened.
    fn hit(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last.lock().ok()?;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return None;
        }
        *last = Some(now);
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

/// The running daemon.
pub(crate) struct Daemon {
    pub device: Device,
    pub security: SecurityConfig,
    pub config: Config,
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub partition_dir: PathBuf,
    pub development: bool,
    pub network: Option<String>,
    pub started: Instant,
    pub euid: u32,
    pub metrics: bool,
    /// The boot report, kept: after a tamper the root of trust is gone, and
    /// the status still says what the device was.
    boot_report: String,
    listeners: Mutex<HashMap<u32, PartitionListener>>,
    next_app: AtomicU64,
    /// The PKCS#11 applications on partition sockets, by id.
    apps: Mutex<HashMap<u64, App>>,
    connections: Arc<Semaphore>,
    /// Each partition's [`Limits`], made at its first connection.
    limits: Mutex<HashMap<u32, Arc<Limits>>>,
    /// Where partitions' slow requests run.
    slow_pool: SlowPool,
    /// Refusals at the daemon's connection limit, for the log.
    refused: Throttle,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Daemon {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        device: Device,
        security: SecurityConfig,
        config: Config,
        state_dir: PathBuf,
        development: bool,
        network: Option<String>,
        metrics: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let max = config.daemon.max_connections as usize;
        let boot_report = device.boot_report_json().unwrap_or_else(|_| "{}".into());
        Self {
            boot_report,
            device,
            security,
            config,
            admin_socket: state_dir.join("admin.sock"),
            partition_dir: state_dir.join("partitions"),
            state_dir,
            development,
            network,
            started: Instant::now(),
            euid: rustix::process::geteuid().as_raw(),
            metrics,
            listeners: Mutex::new(HashMap::new()),
            next_app: AtomicU64::new(1),
            apps: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(max)),
            limits: Mutex::new(HashMap::new()),
            // Enough that several partitions' generations and durable writes run
            // side by side; each partition's own share is its limit.
            slow_pool: SlowPool::new(
                std::thread::available_parallelism().map_or(8, |n| (n.get() * 4).max(8)),
            ),
            refused: Throttle::default(),
            tracker: TaskTracker::new(),
            shutdown,
        }
    }

    /// The socket path of a partition.
    pub(crate) fn partition_socket(&self, name: &str) -> PathBuf {
        self.partition_dir.join(format!("{name}.sock"))
    }

    /// Binds the admin socket and every partition's, and starts accepting.
    pub(crate) fn listen_all(self: &Arc<Self>) -> io::Result<()> {
        std::fs::create_dir_all(&self.partition_dir)?;
        // Tenants must reach their sockets: the state directory becomes
        // traverse-only for others (its files stay 0600), the socket directory
        // listable. Each socket is owned by its partition's owner.
        std::fs::set_permissions(&self.state_dir, std::fs::Permissions::from_mode(0o711))?;
        std::fs::set_permissions(&self.partition_dir, std::fs::Permissions::from_mode(0o755))?;
        let admin = bind(&self.admin_socket)?;
        let mode = self.security.access.admin_socket_mode;
        if let Some(gid) = self.security.access.admin_gid {
            std::os::unix::fs::chown(&self.admin_socket, None, Some(gid))?;
        }
        std::fs::set_permissions(&self.admin_socket, std::fs::Permissions::from_mode(mode))?;
        let parts = self.device.partitions().map_err(io::Error::other)?;
        for p in &parts {
            self.listen_partition(p)?;
        }
        // The admin socket answers only once every partition's is bound: a
        // client (or a test) that reached the admin socket finds them all, not
        // a stale socket file of the daemon before a restart.
        let d = Arc::clone(self);
        self.tracker.spawn(async move {
            let stop = d.shutdown.clone();
            d.accept_loop(admin, Target::Admin, stop).await;
        });
        Ok(())
    }

    /// Binds one partition's socket and starts accepting on it.
    pub(crate) fn listen_partition(self: &Arc<Self>, info: &PartitionInfo) -> io::Result<()> {
        let path = self.partition_socket(&info.name);
        let listener = bind(&path)?;
        if rustix::process::geteuid().is_root() {
            // u32::MAX is "no group": the socket keeps the daemon's group.
            let gid = Some(info.owner_gid).filter(|g| *g != u32::MAX);
            std::os::unix::fs::chown(&path, Some(info.owner_uid), gid)?;
        }
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(self.security.access.partition_socket_mode),
        )?;
        let stop = self.shutdown.child_token();
        if let Ok(mut l) = self.listeners.lock() {
            l.insert(
                info.id,
                PartitionListener {
                    stop: stop.clone(),
                    path,
                },
            );
        }
        let d = Arc::clone(self);
        let id = info.id;
        self.tracker.spawn(async move {
            d.accept_loop(listener, Target::Partition(id), stop).await;
        });
        Ok(())
    }

    /// A partition's limits.
    fn limits(&self, id: u32) -> Arc<Limits> {
        let mut all = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let d = &self.config.daemon;
        Arc::clone(all.entry(id).or_insert_with(|| {
            Arc::new(Limits {
                connections: Arc::new(Semaphore::new(d.max_connections_per_partition as usize)),
                slow: Arc::new(Semaphore::new(d.slow_requests_per_partition())),
                refused: Throttle::default(),
                pace: Pace::new(),
                large: Arc::new(Semaphore::new(LARGE_FRAMES_PER_PARTITION)),
            })
        }))
    }

    /// The partition's turn for a slow request, or `None` when `req` needs none
    /// (a quick request, or the admin socket's).
    fn slow_turn(&self, req: &Request, ctx: &ConnCtx) -> Option<Arc<Semaphore>> {
        let p = ctx.partition.as_deref()?;
        (matches!(req.serves(), Serves::Partition | Serves::Both) && serve::is_heavy(req))
            .then(|| Arc::clone(&self.limits(p.id()).slow))
    }

    /// Stops a partition's listener and its connections; removes its socket.
    fn unlisten_partition(&self, id: u32) {
        if let Ok(mut l) = self.limits.lock() {
            l.remove(&id);
        }
        let l = self.listeners.lock().ok().and_then(|mut l| l.remove(&id));
        if let Some(l) = l {
            l.stop.cancel();
            let _ = std::fs::remove_file(&l.path);
        }
    }

    /// Removes every socket file (shutdown).
    pub(crate) fn remove_sockets(&self) {
        let _ = std::fs::remove_file(&self.admin_socket);
        if let Ok(l) = self.listeners.lock() {
            for p in l.values() {
                let _ = std::fs::remove_file(&p.path);
            }
        }
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: UnixListener,
        target: Target,
        stop: CancellationToken,
    ) {
        let limits = match target {
            Target::Partition(id) => Some(self.limits(id)),
            Target::Admin | Target::Unmapped(_) => None,
        };
        loop {
            // At its limit, a partition's socket accepts as fast as places free,
            // and refuses at most REFUSALS_PER_SEC.
            while let Some(l) = &limits
                && l.connections.available_permits() == 0
            {
                let wait = l.pace.take();
                if wait.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::timeout(wait, l.connections.acquire()) => {}
                    () = stop.cancelled() => return,
                }
            }
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = stop.cancelled() => return,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let peer = match stream.peer_cred() {
                Ok(c) => Peer {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the peer's credentials; connection dropped");
                    continue;
                }
            };
            let d = Arc::clone(&self);
            let stop = stop.clone();
            let target = target.clone();
            self.tracker.spawn(async move {
                d.connection(stream, peer, target, stop).await;
            });
        }
    }

    /// Serves one connection until it closes, breaks the protocol, or the daemon
    /// stops.
    pub(crate) async fn connection<S: Transport>(
        self: Arc<Self>,
        mut s: S,
        peer: Peer,
        target: Target,
        stop: CancellationToken,
    ) {
        // The partition's own limit first: a tenant over it takes none of the
        // places the daemon has for everyone.
        let _own = match &target {
            Target::Partition(id) => {
                let limits = self.limits(*id);
                if let Ok(p) = Arc::clone(&limits.connections).try_acquire_owned() {
                    Some(p)
                } else {
                    let max = self.config.daemon.max_connections_per_partition;
                    let name = self
                        .device
                        .partition(*id)
                        .map_or_else(|_| format!("#{id}"), |p| p.name().to_owned());
                    if let Some(refused) = limits.refused.hit() {
                        tracing::warn!(uid = peer.uid, partition = %name, max, refused, "connection refused: the partition has its maximum of connections");
                    }
                    let _ = refuse(
                        &mut s,
                        WireError::new(
                            ErrorCode::QuotaExceeded,
                            format!(
                                "partition {name} already has its maximum of {max} connections \
                                 ([daemon] max_connections_per_partition); close one first"
                            ),
                        ),
                    )
                    .await;
                    return;
                }
            }
            Target::Admin | Target::Unmapped(_) => None,
        };
        let Ok(_permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            if let Some(refused) = self.refused.hit() {
                tracing::warn!(
                    uid = peer.uid,
                    refused,
                    "connection refused: too many connections"
                );
            }
            let _ = refuse(
                &mut s,
                WireError::new(
                    ErrorCode::DaemonFailed,
                    format!(
                        "the daemon already serves its maximum of {} connections",
                        self.config.daemon.max_connections
                    ),
                ),
            )
            .await;
            return;
        };
        let mut inbox = Inbox::default();
        // The hello, within a time limit.
        let hello = match tokio::time::timeout(
            HELLO_TIMEOUT,
            read_frame(&mut s, &mut inbox, None, None, &mut None),
        )
        .await
        {
            Ok(Ok(r)) => {
                let h = frame::decode::<Hello>(&inbox.bytes()[r.clone()]);
                inbox.consume(r.end);
                h
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                tracing::debug!(uid = peer.uid, "no hello in time; closed");
                return;
            }
        };
        let hello = match hello {
            Ok(h) => h,
            Err(e) => {
                let _ = refuse(&mut s, frame_error(&e)).await;
                return;
            }
        };
        let revision = match hello.negotiate() {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(uid = peer.uid, client = %hello.client, error = %e, "hello refused");
                let _ = refuse(&mut s, e).await;
                return;
            }
        };
        let (endpoint, partition) = match self.admit(peer, target) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, error = %e, "connection refused");
                let _ = refuse(&mut s, e).await;
                return;
            }
        };
        let accepted = HelloReply::Accepted {
            revision,
            daemon: env!("CARGO_PKG_VERSION").into(),
            endpoint,
        };
        if write_msg(&mut s, &accepted).await.is_err() {
            return;
        }
        let app = self.next_app.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = &partition {
            self.apps_lock().insert(
                app,
                App {
                    connections: 1,
                    token: None,
                    partition: p.id(),
                    uid: peer.uid,
                },
            );
        }
        let label: Arc<str> = partition
            .as_ref()
            .map_or_else(|| Arc::from("admin"), |p| Arc::from(p.name()));
        tracing::debug!(uid = peer.uid, pid = ?peer.pid, client = %hello.client, endpoint = %label, app, "connected");
        let ctx = ConnCtx {
            peer,
            partition,
            app: Arc::new(AtomicU64::new(app)),
            label,
        };
        Arc::clone(&self).requests(s, inbox, &ctx, stop).await;
        let app = ctx.app.load(Ordering::Relaxed);
        let ConnCtx {
            partition, label, ..
        } = ctx;
        if let Some(p) = partition
            && self.leave_app(app)
        {
            let _ = p.close_all_sessions(app);
        }
        tracing::debug!(endpoint = %label, app, "disconnected");
    }

    /// Answers requests until the connection closes, breaks the protocol, or the
    /// daemon stops.
    ///
    /// A connection whose client sent its request within `spin_micros` of the
    /// answer before is hot: it leaves the reactor for a thread of its own that
    /// polls the socket for the next request, yielding between tries, instead of
    /// sleeping. On a virtual machine a sleeping thread takes tens of microseconds
    /// to wake, and every readable event on a registered socket wakes the
    /// runtime's parked thread too; both are longer than a whole request. When
    /// the client pauses longer than the window, the connection returns to the
    /// reactor, and costs nothing while idle.
    async fn requests<S: Transport>(
        self: Arc<Self>,
        mut s: S,
        mut inbox: Inbox,
        ctx: &ConnCtx,
        stop: CancellationToken,
    ) {
        let window = Duration::from_micros(self.config.daemon.spin_micros);
        let frame_limit = Duration::from_secs(self.config.daemon.frame_timeout_secs);
        let cancelled = stop.cancelled();
        tokio::pin!(cancelled);
        let mut quick = 0u32;
        let large = ctx
            .partition
            .as_ref()
            .map(|p| Arc::clone(&self.limits(p.id()).large));
        let mut large_turn = None;
        loop {
            let idle = Instant::now();
            let read = tokio::select! {
                biased;
                r = read_frame(&mut s, &mut inbox, Some(frame_limit), large.as_ref(), &mut large_turn) => r,
                () = &mut cancelled => return,
            };
            // Two quick requests in a row make a connection hot: a client that
            // connects, asks once and leaves is not worth a thread.
            quick = if !window.is_zero() && idle.elapsed() <= window {
                quick + 1
            } else {
                0
            };
            let hot = quick >= 2;
            let step = match self.parse(read, &mut inbox, ctx) {
                Ok(req) => match self.slow_turn(&req, ctx) {
                    None => self.answer(req, ctx),
                    Some(slow) => {
                        // A slow request waits for its partition's turn here, as
                        // a task (waiting holds no thread), then runs in the
                        // slow pool.
                        let turn = match Arc::clone(&slow).try_acquire_owned() {
                            Ok(t) => t,
                            Err(_) => {
                                waiting(
                                    ctx,
                                    &req,
                                    self.config.daemon.slow_requests_per_partition(),
                                );
                                tokio::select! {
                                    t = slow.acquire_owned() => match t {
                                        Ok(t) => t,
                                        Err(_) => return,
                                    },
                                    () = &mut cancelled => return,
                                }
                            }
                        };
                        let (d, c) = (Arc::clone(&self), ctx.clone());
                        let done = self.slow_pool.run(move || {
                            let _turn = turn;
                            d.answer(req, &c)
                        });
                        match done.await {
                            Some(step) => step,
                            None => return,
                        }
                    }
                },
                Err(step) => step,
            };
            match step {
                Step::Answer(mut out, secret) => {
                    let written = s.write_all(&out).await.is_ok() && s.flush().await.is_ok();
                    if secret {
                        ihsm_proto::wipe(&mut out);
                    }
                    if !written {
                        return;
                    }
                }
                Step::Last(out) => {
                    if let Some(out) = out {
                        let _ = s.write_all(&out).await;
                    }
                    return;
                }
            }
            // The frame is answered (and its buffer let go): the next large one
            // of the partition may come in.
            large_turn = None;
            if !hot {
                continue;
            }
            s = match s.leave_reactor() {
                Left::Stay(back) => back,
                Left::Lost(e) => {
                    tracing::warn!(error = %e, "cannot take a connection out of the reactor; closed");
                    return;
                }
                Left::Out(std) => {
                    let d = Arc::clone(&self);
                    let ctx2 = ctx.clone();
                    let stop2 = stop.clone();
                    let rt = tokio::runtime::Handle::current();
                    let joined = tokio::task::spawn_blocking(move || {
                        let outcome = d.hot(&std, &mut inbox, &ctx2, window, &stop2, &rt);
                        (std, inbox, outcome)
                    })
                    .await;
                    let Ok((std, back, Hot::Cold)) = joined else {
                        return;
                    };
                    inbox = back;
                    quick = 0;
                    match S::rejoin_reactor(std) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot return a connection to the reactor; closed");
                            return;
                        }
                    }
                }
            };
        }
    }

    /// The request the reader produced, or the last words of a connection
    /// whose frame was bad (or that closed).
    fn parse(
        &self,
        read: Result<std::ops::Range<usize>, FrameError>,
        inbox: &mut Inbox,
        ctx: &ConnCtx,
    ) -> Result<Request, Step> {
        match read {
            Ok(r) => {
                let req = frame::decode::<Request>(&inbox.bytes()[r.clone()]);
                inbox.consume(r.end);
                req.map_err(|e| {
                    tracing::info!(endpoint = %ctx.label, error = %e, "malformed request; connection closed");
                    Step::Last(frame::encode(&Err::<Reply, _>(frame_error(&e))).ok())
                })
            }
            Err(FrameError::Closed) => Err(Step::Last(None)),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                tracing::warn!(endpoint = %ctx.label, uid = ctx.peer.uid, pid = ?ctx.peer.pid, "slow frame: {e}; connection closed");
                let e = FrameError::Io(e);
                Err(Step::Last(
                    frame::encode(&Err::<Reply, _>(frame_error(&e))).ok(),
                ))
            }
            Err(e) => {
                tracing::info!(endpoint = %ctx.label, error = %e, "bad frame; connection closed");
                Err(Step::Last(
                    frame::encode(&Err::<Reply, _>(frame_error(&e))).ok(),
                ))
            }
        }
    }

    /// One request's answer.
    fn answer(self: &Arc<Self>, req: Request, ctx: &ConnCtx) -> Step {
        let resp = match req {
            Request::AppToken | Request::JoinApp { .. } => self.app_request(req, ctx),
            req => {
                let app = ctx.app.load(Ordering::Relaxed);
                self.handle(req, ctx.peer, ctx.partition.as_deref(), app, &ctx.label)
            }
        };
        let secret = matches!(resp, Ok(Reply::Secret(_)));
        match frame::encode(&resp) {
            Ok(o) => Step::Answer(o, secret),
            Err(e) => Step::Last(frame::encode(&Err::<Reply, _>(frame_error(&e))).ok()),
        }
    }

    fn apps_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, App>> {
        // The map stays consistent whatever a panicking holder did: each change
        // is one insert, update or remove.
        self.apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One connection of `app` closed; whether it was the last.
    fn leave_app(&self, app: u64) -> bool {
        let mut apps = self.apps_lock();
        match apps.get_mut(&app) {
            Some(a) if a.connections > 1 => {
                a.connections -= 1;
                false
            }
            _ => {
                apps.remove(&app);
                true
            }
        }
    }

    /// [`Request::AppToken`] and [`Request::JoinApp`]: several connections acting
    /// for one PKCS#11 application.
    fn app_request(&self, req: Request, ctx: &ConnCtx) -> Result<Reply, WireError> {
        let Some(p) = ctx.partition.as_deref() else {
            return Err(WireError::new(
                ErrorCode::WrongEndpoint,
                format!(
                    "{} is served on a partition's socket, not on the admin socket",
                    req.name()
                ),
            ));
        };
        p.authorize(ctx.peer.uid, ctx.peer.gid)
            .map_err(|e| e.to_wire())?;
        let own = ctx.app.load(Ordering::Relaxed);
        match req {
            Request::AppToken => {
                let mut apps = self.apps_lock();
                let a = apps.get_mut(&own).ok_or_else(|| {
                    WireError::new(ErrorCode::Internal, "connection has no application")
                })?;
                if a.token.is_none() {
                    let mut t = Zeroizing::new([0u8; 32]);
                    ihsm_crypto::rand::fill(&mut t[..])
                        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
                    a.token = Some(t);
                }
                let t = a.token.as_ref().map(|t| t.to_vec()).unwrap_or_default();
                Ok(Reply::Secret(SecretBytes::new(t)))
            }
            Request::JoinApp { token } => {
                let target = {
                    let mut apps = self.apps_lock();
                    let found = apps.iter().find_map(|(id, a)| {
                        let same = a.partition == p.id()
                            && a.uid == ctx.peer.uid
                            && a.token
                                .as_ref()
                                .is_some_and(|t| ihsm_crypto::ct_eq(&t[..], token.expose()));
                        same.then_some(*id)
                    });
                    let target = found.ok_or_else(|| {
                        WireError::new(
                            ErrorCode::AppTokenInvalid,
                            "no application of this user and partition has that token (its last connection may have closed)",
                        )
                    })?;
                    if target != own
                        && let Some(a) = apps.get_mut(&target)
                    {
                        a.connections += 1;
                    }
                    target
                };
                if target != own {
                    ctx.app.store(target, Ordering::Relaxed);
                    if self.leave_app(own) {
                        let _ = p.close_all_sessions(own);
                    }
                    tracing::debug!(endpoint = %ctx.label, app = target, left = own, "connection joined an application");
                }
                Ok(Reply::Done)
            }
            other => Err(WireError::new(
                ErrorCode::Internal,
                format!("{} is not an application request", other.name()),
            )),
        }
    }

    /// A hot connection's loop, on a thread of its own (see [`Daemon::requests`]).
    fn hot(
        self: &Arc<Self>,
        s: &std::os::unix::net::UnixStream,
        inbox: &mut Inbox,
        ctx: &ConnCtx,
        window: Duration,
        stop: &CancellationToken,
        rt: &tokio::runtime::Handle,
    ) -> Hot {
        use std::io::{Read, Write};
        loop {
            let deadline = Instant::now() + window;
            let read = loop {
                match inbox.need() {
                    Err(e) => break Err(e),
                    Ok(Need::Frame { start, end }) => break Ok(start..end),
                    // A large frame needs its partition's turn: the reactor's.
                    Ok(Need::More)
                        if inbox.partial() >= frame::PREFIX && inbox.announced() > LARGE_FRAME =>
                    {
                        return Hot::Cold;
                    }
                    Ok(Need::More) => {}
                }
                match (&*s).read(inbox.spare()) {
                    Ok(0) if inbox.partial() == 0 => break Err(FrameError::Closed),
                    Ok(0) => {
                        break Err(FrameError::Truncated {
                            got: inbox.partial(),
                            want: inbox.announced(),
                        });
                    }
                    Ok(n) => inbox.filled(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if stop.is_cancelled() {
                            return Hot::Closed;
                        }
                        if Instant::now() >= deadline {
                            // Cold (a partial frame stays in the inbox).
                            return Hot::Cold;
                        }
                        std::thread::yield_now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e.into()),
                }
            };
            let step = match self.parse(read, inbox, ctx) {
                Ok(req) => match self.slow_turn(&req, ctx) {
                    None => self.answer(req, ctx),
                    Some(slow) => {
                        // This thread is the connection's own: it may wait here.
                        let turn = match Arc::clone(&slow).try_acquire_owned() {
                            Ok(t) => t,
                            Err(_) => {
                                waiting(
                                    ctx,
                                    &req,
                                    self.config.daemon.slow_requests_per_partition(),
                                );
                                match rt.block_on(slow.acquire_owned()) {
                                    Ok(t) => t,
                                    Err(_) => return Hot::Closed,
                                }
                            }
                        };
                        let (d, c) = (Arc::clone(self), ctx.clone());
                        let done = self.slow_pool.run_blocking(move || {
                            let _turn = turn;
                            d.answer(req, &c)
                        });
                        match done {
                            Some(step) => step,
                            None => return Hot::Closed,
                        }
                    }
                },
                Err(step) => step,
            };
            let (mut out, secret, last) = match step {
                Step::Answer(out, secret) => (out, secret, false),
                Step::Last(Some(out)) => (out, false, true),
                Step::Last(None) => return Hot::Closed,
            };
            let mut rest: &[u8] = &out;
            let mut failed = false;
            while !rest.is_empty() {
                match (&*s).write(rest) {
                    Ok(0) => {
                        failed = true;
                        break;
                    }
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let mut fds =
                            [rustix::event::PollFd::new(s, rustix::event::PollFlags::OUT)];
                        let _ = rustix::event::poll(&mut fds, None);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if secret {
                ihsm_proto::wipe(&mut out);
            }
            if failed || last {
                return Hot::Closed;
            }
            let _ = (&*s).flush();
        }
    }

    /// Checks a new connection's credentials against its endpoint.
    fn admit(
        &self,
        peer: Peer,
        target: Target,
    ) -> Result<(Endpoint, Option<Arc<Partition>>), WireError> {
        match target {
            Target::Admin => {
                let allowed = peer.uid == 0
                    || peer.uid == self.euid
                    || self.security.access.admin_gid == Some(peer.gid);
                if allowed {
                    Ok((Endpoint::Admin, None))
                } else {
                    Err(WireError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "uid {} may not administer this HSM: only root, uid {} (the daemon's) and the configured admin group may",
                            peer.uid, self.euid
                        ),
                    ))
                }
            }
            Target::Unmapped(fingerprint) => Err(WireError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "client certificate SHA-256 {fingerprint} is not mapped to a partition ([[network.client]] in security.toml)"
                ),
            )),
            Target::Partition(id) => {
                let p = self.device.partition(id).map_err(|e| e.to_wire())?;
                p.authorize(peer.uid, peer.gid).map_err(|e| e.to_wire())?;
                Ok((
                    Endpoint::Partition {
                        id,
                        name: p.name().to_owned(),
                    },
                    Some(p),
                ))
            }
        }
    }

    fn handle(
        self: &Arc<Self>,
        req: Request,
        peer: Peer,
        partition: Option<&Partition>,
        app: u64,
        label: &Arc<str>,
    ) -> Result<Reply, WireError> {
        let started = self.metrics.then(Instant::now);
        let name = req.name();
        let mech = req.mechanism().map(ihsm_core::mech::Mechanism::ckm);
        let result = match (req.serves(), partition) {
            (Serves::Both, _) if matches!(req, Request::Ping) => Ok(Reply::Pong),
            (Serves::Admin | Serves::Both, None) => {
                let heavy = !matches!(req, Request::Ping | Request::Status);
                run(heavy, || self.admin(req))
            }
            (Serves::Partition | Serves::Both, Some(p)) => {
                // The core checks the caller again before every request.
                match p.authorize(peer.uid, peer.gid) {
                    Ok(()) => {
                        let svn = self.device.svn().unwrap_or(0);
                        run(serve::is_heavy(&req), || {
                            serve::partition(p, app, svn, req).map_err(|e| e.to_wire())
                        })
                    }
                    Err(e) => Err(e.to_wire()),
                }
            }
            (Serves::Admin, Some(_)) => Err(WireError::new(
                ErrorCode::WrongEndpoint,
                format!("{name} is served on the admin socket, not on a partition's"),
            )),
            (Serves::Partition, None) => Err(WireError::new(
                ErrorCode::WrongEndpoint,
                format!("{name} is served on a partition's socket, not on the admin socket"),
            )),
        };
        if let Some(t) = started {
            crate::metrics::record(label, name, mech, &result, t.elapsed());
        }
        if let Err(e) = &result {
            tracing::debug!(endpoint = %label, request = name, code = e.code, "request failed: {e}");
        }
        result
    }

    fn admin(self: &Arc<Self>, req: Request) -> Result<Reply, WireError> {
        let core = |e: CoreError| e.to_wire();
        match req {
            Request::Status => Ok(Reply::Status(Box::new(self.status()))),
            Request::CreatePartition(spec) => {
                let info = self
                    .device
                    .create_partition(ihsm_core::PartitionSpec {
                        name: spec.name,
                        owner_uid: spec.owner_uid,
                        owner_gid: spec.owner_gid,
                        so_pin: spec.so_pin.into_zeroizing(),
                        user_pin: spec.user_pin.map(SecretBytes::into_zeroizing),
                        quotas: spec.quotas.unwrap_or_else(|| self.config.quotas.quotas()),
                    })
                    .map_err(core)?;
                tracing::info!(partition = %info.name, id = info.id, owner_uid = info.owner_uid, owner_gid = info.owner_gid, "partition created");
                self.listen_partition(&info).map_err(|e| {
                    WireError::new(
                        ErrorCode::DaemonFailed,
                        format!(
                            "partition {} was created but its socket could not be bound: {e}",
                            info.name
                        ),
                    )
                })?;
                Ok(Reply::Partition(info))
            }
            Request::ListPartitions => {
                Ok(Reply::Partitions(self.device.partitions().map_err(core)?))
            }
            Request::DescribePartition { name } => Ok(Reply::Partition(
                self.device
                    .partition_by_name(&name)
                    .map_err(core)?
                    .info()
                    .map_err(core)?,
            )),
            Request::DeletePartition { name } => {
                let p = self.device.partition_by_name(&name).map_err(core)?;
                let id = p.id();
                drop(p);
                self.unlisten_partition(id);
                self.device.delete_partition(id).map_err(core)?;
                tracing::info!(partition = %name, id, "partition deleted and zeroized");
                Ok(Reply::Done)
            }
            Request::PartitionCertificate { name } => {
                let id = self.device.partition_by_name(&name).map_err(core)?.id();
                Ok(Reply::Bytes(
                    self.device.partition_certificate(id).map_err(core)?,
                ))
            }
            Request::Mailbox { command, payload } => {
                match self.device.mailbox(command, &payload).map_err(core)? {
                    Ok(resp) => Ok(Reply::Bytes(resp)),
                    Err(e) => Err(WireError::new(
                        ErrorCode::MailboxFailed,
                        format!(
                            "mailbox command 0x{command:08x} failed: {} (0x{:08x})",
                            e.name(),
                            e.0
                        ),
                    )),
                }
            }
            Request::Tamper { sensor } => {
                if !matches!(sensor.as_str(), "lid" | "thermal" | "voltage") {
                    return Err(WireError::new(
                        ErrorCode::Malformed,
                        format!("unknown sensor {sensor:?}: lid, thermal or voltage"),
                    ));
                }
                let reason = format!("{sensor} sensor");
                tracing::error!(sensor = %sensor, "TAMPER: sensor input; zeroizing");
                self.device.tamper(&reason);
                Ok(Reply::Done)
            }
            _ => Err(WireError::new(
                ErrorCode::Internal,
                "partition request routed to the admin socket",
            )),
        }
    }

    /// The device's status.
    pub(crate) fn status(&self) -> DeviceStatus {
        DeviceStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            state: self.device.state(),
            development: self.development,
            boot_report: self.boot_report.clone(),
            partitions: self.device.partitions().unwrap_or_default(),
            uptime_secs: self.started.elapsed().as_secs(),
            state_dir: self.state_dir.display().to_string(),
            admin_socket: self.admin_socket.display().to_string(),
            partition_dir: self.partition_dir.display().to_string(),
            network: self.network.clone(),
            metrics: self.config.metrics.listen.clone(),
        }
    }

    /// Whether the device is tampered (for metrics and logs).
    pub(crate) fn tampered(&self) -> bool {
        matches!(self.device.state(), DeviceState::Tampered(_))
    }
}

/// Runs `f`, off the async worker's thread when it may take long.
fn run<T>(heavy: bool, f: impl FnOnce() -> T) -> T {
    if heavy {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Binds a Unix socket, replacing a stale socket file (never another kind of file).
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            // A live daemon would still answer on it: refuse to steal its socket.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: is another ihsmd running on this state directory?",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))
}

/// Says (at debug level) that a slow request waits for its partition's turn.
fn waiting(ctx: &ConnCtx, req: &Request, max: usize) {
    tracing::debug!(endpoint = %ctx.label, request = req.name(), max, "slow request waits its turn: the partition already runs its maximum of slow requests");
}

/// The error a bad frame earns.
fn frame_error(e: &FrameError) -> WireError {
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        FrameError::Io(e) if e.kind() == io::ErrorKind::TimedOut => ErrorCode::FrameTimeout,
        FrameError::Io(_) | FrameError::Closed | FrameError::Truncated { .. } => {
            ErrorCode::Connection
        }
        _ => ErrorCode::Malformed,
    };
    WireError::new(code, e.to_string())
}

async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, e: WireError) -> Result<(), FrameError> {
    write_msg(s, &HelloReply::Refused(e)).await
}

async fn write_msg<S: AsyncWrite + Unpin, T: serde::Serialize>(
    s: &mut S,
    msg: &T,
) -> Result<(), FrameError> {
    s.write_all(&frame::encode(msg)?).await?;
    s.flush().await?;
    Ok(())
}

/// What a connection's requests are answered with.
#[derive(Clone)]
struct ConnCtx {
    peer: Peer,
    partition: Option<Arc<Partition>>,
    /// The application the connection acts for: its own, or the one it joined
    /// (shared with the copy a hot connection's thread holds).
    app: Arc<AtomicU64>,
    label: Arc<str>,
}

/// A PKCS#11 application: its connections, and the token that lets another
/// connection of the same user on the same partition join it.
struct App {
    connections: usize,
    token: Option<Zeroizing<[u8; 32]>>,
    partition: u32,
    uid: u32,
}

/// One request's outcome.
enum Step {
    /// Send this; `true` when it holds secret bytes (zeroized after sending).
    Answer(Vec<u8>, bool),
    /// Send this, if anything, and close.
    Last(Option<Vec<u8>>),
}

/// How a hot connection's thread ended.
enum Hot {
    /// The client paused: back to the reactor.
    Cold,
    /// Closed, broke the protocol, or the daemon stops.
    Closed,
}

/// A connection's byte stream: a Unix socket, or TLS over TCP.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Reads what is there, bypassing the reactor's readiness cache (which only
    /// the reactor refreshes); `WouldBlock` when nothing is.
    fn read_now(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;

    /// The plain socket, out of the reactor, for a hot connection's thread.
    fn leave_reactor(self) -> Left<Self>
    where
        Self: Sized;

    /// Back into the reactor.
    fn rejoin_reactor(s: std::os::unix::net::UnixStream) -> std::io::Result<Self>
    where
        Self: Sized;
}

impl Transport for tokio::net::UnixStream {
    fn read_now(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The socket is non-blocking (tokio set it so).
        rustix::io::read(&*self, buf).map_err(std::io::Error::from)
    }

    fn leave_reactor(self) -> Left<Self> {
        // into_std keeps the socket non-blocking.
        match self.into_std() {
            Ok(s) => Left::Out(s),
            Err(e) => Left::Lost(e),
        }
    }

    fn rejoin_reactor(s: std::os::unix::net::UnixStream) -> std::io::Result<Self> {
        Self::from_std(s)
    }
}

/// What leaving the reactor gave.
pub(crate) enum Left<S> {
    /// The plain socket.
    Out(std::os::unix::net::UnixStream),
    /// This stream cannot leave (TLS): here it is back.
    Stay(S),
    /// Deregistering failed; the connection is lost.
    Lost(std::io::Error),
}

impl Transport for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn read_now(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        // TLS records need the TLS state machine.
        Err(std::io::ErrorKind::WouldBlock.into())
    }

    fn leave_reactor(self) -> Left<Self> {
        Left::Stay(self)
    }

    fn rejoin_reactor(_: std::os::unix::net::UnixStream) -> std::io::Result<Self> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// Reads one frame into `inbox`; returns its body's range (consume it after).
/// Whatever has arrived is read without waiting first: a small request is one
/// system call, and no trip through the reactor.
///
/// With a `limit`, the frame must be whole within it of its first byte (or of
/// this call, for bytes already buffered); a client dripping it gets an
/// [`io::ErrorKind::TimedOut`] error. An idle connection waits without limit.
///
/// With `large`, a frame over [`LARGE_FRAME`] is read on only once `turn` holds
/// one of its permits (the caller drops it when the frame is answered); the
/// time limit starts again when it does.
pub(crate) async fn read_frame<S: Transport>(
    s: &mut S,
    inbox: &mut Inbox,
    limit: Option<Duration>,
    large: Option<&Arc<Semaphore>>,
    turn: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<std::ops::Range<usize>, FrameError> {
    let mut deadline = limit
        .filter(|_| inbox.partial() > 0)
        .map(|l| Instant::now() + l);
    loop {
        if let Need::Frame { start, end } = inbox.need()? {
            return Ok(start..end);
        }
        if let Some(large) = large
            && turn.is_none()
            && inbox.partial() >= frame::PREFIX
            && inbox.announced() > LARGE_FRAME
        {
            *turn = Some(
                Arc::clone(large)
                    .acquire_owned()
                    .await
                    .map_err(|_| FrameError::Closed)?,
            );
            deadline = limit.map(|l| Instant::now() + l);
        }
        let n = match s.read_now(inbox.spare()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match deadline {
                None => s.read(inbox.spare()).await?,
                Some(t) => match tokio::time::timeout_at(t.into(), s.read(inbox.spare())).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(FrameError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the request did not arrive within {} s of its first byte \
                                     ({} of {} bytes; [daemon] frame_timeout_secs)",
                                limit.unwrap_or_default().as_secs(),
                                inbox.partial(),
                                inbox.announced()
                            ),
                        )));
                    }
                },
            },
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(if inbox.partial() == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated {
                    got: inbox.partial(),
                    want: inbox.announced(),
                }
            });
        }
        inbox.filled(n);
        if deadline.is_none() {
            deadline = limit.map(|l| Instant::now() + l);
        }
    }
}
