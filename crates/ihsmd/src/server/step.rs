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

use super::connection::ConnCtx;
use super::{Daemon, Peer};
use crate::serve;

/// One request's outcome.
pub(super) enum Step {
    /// Send this; `true` when it holds secret bytes (zeroized after sending).
    Answer(Vec<u8>, bool),
    /// Send this, if anything, and close.
    Last(Option<Vec<u8>>),
}

impl Daemon {
    /// The partition's turn for a slow request, or `None` when `req` needs none
    /// (a quick request, or the admin socket's).
    pub(super) fn slow_turn(&self, req: &Request, ctx: &ConnCtx) -> Option<Arc<Semaphore>> {
        let p = ctx.partition.as_deref()?;
        (matches!(req.serves(), Serves::Partition | Serves::Both) && serve::is_heavy(req))
            .then(|| Arc::clone(&self.limits(p.id()).slow))
    }

    /// The request the reader produced, or the last words of a connection
    /// whose frame was bad (or that closed).
    pub(super) fn parse(
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
    pub(super) fn answer(self: &Arc<Self>, req: Request, ctx: &ConnCtx) -> Step {
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

    pub(super) fn handle(
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
pub(super) fn waiting(ctx: &ConnCtx, req: &Request, max: usize) {
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
