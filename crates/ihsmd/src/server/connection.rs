//! A connection: its limits, its hello, the check of its peer against the
//! endpoint, and the reactor's loop over its requests; and the byte streams a
//! connection runs on.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ihsm_core::partition::Partition;
use ihsm_proto::frame::{self, FrameError, Inbox, Need};
use ihsm_proto::msg::{Endpoint, Hello, HelloReply};
use ihsm_proto::{ErrorCode, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::apps::App;
use super::hot::Hot;
use super::ring::{ServerRing, Took, drain_bell};
use super::step::{Step, frame_error};
use super::{Daemon, LARGE_FRAME};

/// How long a client has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A partition's connection, as the daemon keeps it to cut it.
pub(super) struct Live {
    partition: u32,
    peer: Peer,
    stop: CancellationToken,
}

/// Forgets a [`Live`] connection when it ends.
struct LiveGuard<'a> {
    daemon: &'a Daemon,
    id: u64,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.daemon.live_lock().remove(&self.id);
    }
}

/// What a connection's requests are answered with.
#[derive(Clone)]
pub(super) struct ConnCtx {
    pub(super) peer: Peer,
    pub(super) partition: Option<Arc<Partition>>,
    /// The application the connection acts for: its own, or the one it joined
    /// (shared with the copy a hot connection's thread holds).
    pub(super) app: Arc<AtomicU64>,
    pub(super) label: Arc<str>,
}

impl Daemon {
    /// Serves one connection until it closes, breaks the protocol, or the daemon
    /// stops.
    pub(crate) async fn connection<S: Transport>(
        self: Arc<Self>,
        mut s: S,
        peer: Peer,
        target: Target,
        stop: CancellationToken,
    ) {
        // A caller the partition does not admit is told why at once, before it
        // takes any of the partition's places or the daemon's, or is waited for:
        // partition sockets are world-connectable so that every caller refused
        // hears the reason (listen.rs, PARTITION_SOCKET_MODE).
        if let Target::Partition(id) = &target
            && let Err(e) = self.admit(peer, target.clone())
        {
            // At info: a PKCS#11 module says hello on every partition socket it
            // finds, and is refused by each that does not admit it, routinely.
            if let Some(refused) = self.limits(*id).denied.hit() {
                tracing::info!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, refused, "connection refused: {e}");
            }
            let _ = refuse(&mut s, e).await;
            return;
        }
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
        // A partition's connection can be cut alone: when its principal is
        // revoked (Daemon::cut_refused).
        let stop = match &partition {
            Some(p) => {
                self.apps_lock().insert(
                    app,
                    App {
                        connections: 1,
                        token: None,
                        partition: p.id(),
                        uid: peer.uid,
                    },
                );
                let own = stop.child_token();
                self.live_lock().insert(
                    app,
                    Live {
                        partition: p.id(),
                        peer,
                        stop: own.clone(),
                    },
                );
                own
            }
            None => stop,
        };
        let _live = LiveGuard {
            daemon: &self,
            id: app,
        };
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
        // The shared-memory rings, once the client asked (ring.rs), and the
        // doorbell it rings when it finds the daemon asleep.
        let mut ring: Option<ServerRing> = None;
        let mut bell: Option<tokio::net::UnixStream> = None;
        loop {
            let idle = Instant::now();
            let armed = ring.as_ref().map(ServerRing::arm);
            let came = match (armed, &bell) {
                (Some(true), Some(b)) => {
                    let came = tokio::select! {
                        biased;
                        r = read_frame(&mut s, &mut inbox, Some(frame_limit), large.as_ref(), &mut large_turn) => Came::Frame(r),
                        r = b.readable() => {
                            if r.is_err() || !drain_bell(b) {
                                return;
                            }
                            Came::Ring
                        }
                        () = &mut cancelled => return,
                    };
                    if let Some(r) = &ring {
                        r.disarm();
                    }
                    came
                }
                (Some(_), _) => Came::Ring,
                (None, _) => tokio::select! {
                    biased;
                    r = read_frame(&mut s, &mut inbox, Some(frame_limit), large.as_ref(), &mut large_turn) => Came::Frame(r),
                    () = &mut cancelled => return,
                },
            };
            // Two quick requests in a row make a connection hot: a client that
            // connects, asks once and leaves is not worth a thread.
            quick = if !window.is_zero() && idle.elapsed() <= window {
                quick + 1
            } else {
                0
            };
            let hot = quick >= 2;
            let via_ring = matches!(came, Came::Ring);
            let step = match came {
                Came::Frame(read) => self.step(read, &mut inbox, ctx, &stop).await,
                Came::Ring => {
                    let Some(r) = ring.as_mut() else { return };
                    match r.take(ctx) {
                        // The bell rang for nothing (a client may ring it at will).
                        Ok(Took::Empty) => continue,
                        Ok(Took::Request(req)) => self.step_request(req, ctx, &stop).await,
                        Ok(Took::Bad(step)) => Some(step),
                        Err(e) => {
                            corrupt(&self, ctx, &e, s.local_fd());
                            return;
                        }
                    }
                }
            };
            let Some(step) = step else {
                return;
            };
            let step = match step {
                Step::OpenRing if ring.is_none() && !via_ring => {
                    match open_ring(&mut s).await {
                        Ok((r, b)) => {
                            ring = Some(r);
                            bell = Some(b);
                        }
                        Err(out) => {
                            if s.write_all(&out).await.is_err() || s.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                Step::OpenRing => Step::Answer(already_ringed(), false),
                other => other,
            };
            let (mut out, secret, last) = match step {
                Step::Answer(out, secret) => (out, secret, false),
                Step::Last(Some(out)) => (out, false, true),
                Step::Last(None) | Step::OpenRing => return,
            };
            let to_socket = match (via_ring, &ring) {
                (true, Some(r)) => match r.answer(&out) {
                    Ok(on_socket) => on_socket,
                    Err(e) => {
                        corrupt(&self, ctx, &e, s.local_fd());
                        return;
                    }
                },
                _ => true,
            };
            let written =
                !to_socket || (s.write_all(&out).await.is_ok() && s.flush().await.is_ok());
            if secret {
                ihsm_proto::wipe(&mut out);
            }
            if !written || last {
                return;
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
                    let mut r = ring.take();
                    let joined = tokio::task::spawn_blocking(move || {
                        let outcome =
                            d.hot(&std, &mut inbox, &ctx2, window, &stop2, &rt, r.as_mut());
                        (std, inbox, r, outcome)
                    })
                    .await;
                    let Ok((std, back, r, outcome @ (Hot::Cold | Hot::OpenRing))) = joined else {
                        return;
                    };
                    inbox = back;
                    ring = r;
                    quick = 0;
                    let mut back = match S::rejoin_reactor(std) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot return a connection to the reactor; closed");
                            return;
                        }
                    };
                    if matches!(outcome, Hot::OpenRing) {
                        match open_ring(&mut back).await {
                            Ok((r, b)) => {
                                ring = Some(r);
                                bell = Some(b);
                            }
                            Err(out) => {
                                if back.write_all(&out).await.is_err()
                                    || back.flush().await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                    back
                }
            };
        }
    }

    pub(super) fn live_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        // Each change is one insert or remove: consistent whatever a panicking
        // holder did.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the connections to `p` whose peers it no longer admits (after a
    /// revocation), with their sessions; returns how many. A connection's
    /// requests are checked too, so one caught between its check and this
    /// is refused at its next request.
    pub(super) fn cut_refused(&self, p: &Partition) -> usize {
        let live = self.live_lock();
        let mut cut = 0;
        for l in live.values().filter(|l| l.partition == p.id()) {
            if p.authorize(l.peer.uid, l.peer.gid).is_err() {
                l.stop.cancel();
                cut += 1;
            }
        }
        cut
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
}

/// What woke a connection's loop.
enum Came {
    /// A frame on the socket (or why there is none).
    Frame(Result<std::ops::Range<usize>, FrameError>),
    /// The submission ring's doorbell, or an entry already there.
    Ring,
}

/// Makes a connection's rings at its request and sends them; or the error
/// frame to answer instead (network mode has none; the daemon could not make
/// them).
async fn open_ring<S: Transport>(
    s: &mut S,
) -> Result<(ServerRing, tokio::net::UnixStream), Vec<u8>> {
    let err = |e: WireError| frame::encode(&Err::<ihsm_proto::Reply, _>(e)).unwrap_or_default();
    let Some(fd) = s.local_fd() else {
        return Err(err(WireError::new(
            ErrorCode::WrongEndpoint,
            "shared-memory rings are for local (Unix socket) connections only",
        )));
    };
    let (ring, bell) = ServerRing::open(fd).map_err(err)?;
    let bell = tokio::net::UnixStream::from_std(bell).map_err(|e| {
        tracing::warn!(error = %e, "cannot watch a ring's doorbell");
        Vec::new()
    })?;
    Ok((ring, bell))
}

/// The answer to a second [`ihsm_proto::Request::OpenRing`].
pub(super) fn already_ringed() -> Vec<u8> {
    frame::encode(&Err::<ihsm_proto::Reply, _>(WireError::new(
        ErrorCode::Malformed,
        "this connection already has its shared-memory rings",
    )))
    .unwrap_or_default()
}

/// Says that a connection's ring was corrupt (it is closed): a warning,
/// unless the client has closed its socket (it wipes its view of the region
/// after closing the socket, so a ring found zeroed then is its goodbye). A
/// partition's warnings are throttled as its refusals are: a tenant that
/// corrupts ring after ring (`ihsm-bench --hostile`'s ring attack closes
/// thousands a second) gets a line a second, with how many since the last.
pub(super) fn corrupt(
    d: &Daemon,
    ctx: &ConnCtx,
    e: &ihsm_ring::RingError,
    socket: Option<BorrowedFd<'_>>,
) {
    let gone = socket.is_some_and(|fd| {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN | rustix::event::PollFlags::RDHUP,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|n| n > 0)
            && fds[0]
                .revents()
                .intersects(rustix::event::PollFlags::HUP | rustix::event::PollFlags::RDHUP)
    });
    if gone {
        tracing::debug!(endpoint = %ctx.label, "the client closed its connection and wiped its ring");
        return;
    }
    let closed = match &ctx.partition {
        Some(p) => d.limits(p.id()).bad_rings.hit(),
        // The admin socket's clients are the administrators.
        None => Some(1),
    };
    if let Some(closed) = closed {
        tracing::warn!(endpoint = %ctx.label, uid = ctx.peer.uid, pid = ?ctx.peer.pid, error = %e, closed, "bad shared-memory ring; connection closed");
    }
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

    /// The local socket, to send descriptors on; `None` in network mode.
    fn local_fd(&self) -> Option<BorrowedFd<'_>>;
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

    fn local_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
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

    fn local_fd(&self) -> Option<BorrowedFd<'_>> {
        None
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
