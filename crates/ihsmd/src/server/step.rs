//! One request, from its frame to its answer: decoded, routed to the endpoint
//! that serves it, carried out (off the async worker when it may take long),
//! counted in the metrics, and encoded.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ihsm_core::partition::Partition;
use ihsm_proto::frame::{self, FrameError, Inbox};
use ihsm_proto::msg::{Reply, Request, Serves};
use ihsm_proto::{ErrorCode, WireError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Daemon;
use super::connection::ConnCtx;
use crate::serve;

/// One request's outcome.
pub(super) enum Step {
    /// Send this; `true` when it holds secret bytes (zeroized after sending).
    Answer(Vec<u8>, bool),
    /// Send this, if anything, and close.
    Last(Option<Vec<u8>>),
    /// The client asks for shared-memory rings (it passed the per-request
    /// check): the connection's loop makes them (ring.rs).
    OpenRing,
}

impl Daemon {
    /// One request, from what the reader produced to what to send: the request
    /// decoded, and answered at once when it is quick; a slow one first waits
    /// for its partition's turn (so that one tenant cannot occupy every CPU),
    /// then runs in the slow pool, off the threads that answer quick requests.
    ///
    /// Both loops of a connection run it: the reactor's task awaits it (a
    /// slow request waiting for its turn holds no thread), and a hot
    /// connection's thread drives it (it is the connection's own, and may
    /// wait). `None`: the connection ends without another word, because the
    /// daemon stops or the request panicked in the slow pool.
    pub(super) async fn step(
        self: &Arc<Self>,
        read: Result<std::ops::Range<usize>, FrameError>,
        inbox: &mut Inbox,
        ctx: &ConnCtx,
        stop: &CancellationToken,
    ) -> Option<Step> {
        match self.parse(read, inbox, ctx) {
            Ok(req) => self.step_request(req, ctx, stop).await,
            Err(step) => Some(step),
        }
    }

    /// As [`Daemon::step`], for a request already decoded (from the daemon's
    /// own copy of a ring entry, or of a frame).
    pub(super) async fn step_request(
        self: &Arc<Self>,
        req: Request,
        ctx: &ConnCtx,
        stop: &CancellationToken,
    ) -> Option<Step> {
        let Some(slow) = self.slow_turn(&req, ctx) else {
            return Some(self.answer(req, ctx));
        };
        let turn = match Arc::clone(&slow).try_acquire_owned() {
            Ok(t) => t,
            Err(_) => {
                waiting(ctx, &req, self.config.daemon.slow_requests_per_partition());
                tokio::select! {
                    t = slow.acquire_owned() => t.ok()?,
                    () = stop.cancelled() => return None,
                }
            }
        };
        let (d, c) = (Arc::clone(self), ctx.clone());
        self.slow_pool
            .run(move || {
                let _turn = turn;
                d.answer(req, &c)
            })
            .await
    }

    /// The partition's turn for a slow request, or `None` when `req` needs none
    /// (a quick request, or the admin socket's).
    fn slow_turn(&self, req: &Request, ctx: &ConnCtx) -> Option<Arc<Semaphore>> {
        let p = ctx.partition.as_deref()?;
        (matches!(req.serves(), Serves::Partition | Serves::Both) && serve::is_heavy(req))
            .then(|| Arc::clone(&self.limits(p.id()).slow))
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

    /// One request's answer. On a partition's connection, the caller is first
    /// checked again against who the partition admits: a connection whose
    /// principal was revoked gets the refusal and is closed.
    fn answer(self: &Arc<Self>, req: Request, ctx: &ConnCtx) -> Step {
        if let Some(p) = ctx.partition.as_deref()
            && let Err(e) = p.authorize(ctx.peer.uid, ctx.peer.gid)
        {
            tracing::warn!(endpoint = %ctx.label, uid = ctx.peer.uid, gid = ctx.peer.gid, pid = ?ctx.peer.pid, "request refused; connection closed: {e}");
            return Step::Last(frame::encode(&Err::<Reply, _>(e.to_wire())).ok());
        }
        let resp = match req {
            Request::OpenRing => return Step::OpenRing,
            Request::AppToken | Request::JoinApp { .. } => self.app_request(req, ctx),
            req => {
                let app = ctx.app.load(Ordering::Relaxed);
                self.handle(req, ctx.partition.as_deref(), app, &ctx.label)
            }
        };
        let secret = matches!(resp, Ok(Reply::Secret(_)));
        match frame::encode(&resp) {
            Ok(o) => Step::Answer(o, secret),
            Err(e) => Step::Last(frame::encode(&Err::<Reply, _>(frame_error(&e))).ok()),
        }
    }

    fn handle(
        self: &Arc<Self>,
        req: Request,
        partition: Option<&Partition>,
        app: u64,
        label: &Arc<str>,
    ) -> Result<Reply, WireError> {
        let started = self.metrics.then(Instant::now);
        let name = req.name();
        let mech = req.mechanism().map(ihsm_core::mech::Mechanism::ckm);
        let result = match (req.serves(), partition) {
            (Serves::Both, _) if matches!(req, Request::Ping) => Ok(Reply::Pong),
            (Serves::Admin | Serves::Both, None) => run(serve::is_heavy(&req), || self.admin(req)),
            (Serves::Partition | Serves::Both, Some(p)) => {
                // The caller was checked in `answer`.
                let svn = self.device.svn().unwrap_or(0);
                run(serve::is_heavy(&req), || {
                    serve::partition(p, app, svn, req).map_err(|e| e.to_wire())
                })
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
}

/// Runs `f`, off the async worker's thread when it may take long.
fn run<T>(heavy: bool, f: impl FnOnce() -> T) -> T {
    if heavy {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Says (at debug level) that a slow request waits for its partition's turn.
fn waiting(ctx: &ConnCtx, req: &Request, max: usize) {
    tracing::debug!(endpoint = %ctx.label, request = req.name(), max, "slow request waits its turn: the partition already runs its maximum of slow requests");
}

/// The error a bad frame earns.
pub(super) fn frame_error(e: &FrameError) -> WireError {
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
