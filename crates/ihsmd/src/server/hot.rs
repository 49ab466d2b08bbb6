//! A hot connection: one whose client sends its next request as soon as it has
//! the answer, polled by a thread of its own instead of the reactor.

use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ihsm_proto::frame::{self, FrameError, Inbox, Need};
use tokio_util::sync::CancellationToken;

use std::os::fd::AsFd;

use super::connection::{ConnCtx, already_ringed, corrupt};
use super::ring::{ServerRing, Took};
use super::step::Step;
use super::{Daemon, LARGE_FRAME};

/// How a hot connection's thread ended.
pub(super) enum Hot {
    /// The client paused: back to the reactor.
    Cold,
    /// Closed, broke the protocol, or the daemon stops.
    Closed,
    /// The client asked for rings (on the socket): the reactor's loop makes
    /// them and answers.
    OpenRing,
}

/// What a hot connection's thread found.
enum Came {
    Frame(Result<std::ops::Range<usize>, FrameError>),
    Ring,
}

impl Daemon {
    /// A hot connection's loop, on a thread of its own (see [`Daemon::requests`]);
    /// with rings, it polls the submission ring too, and answers its requests
    /// in the completion ring.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hot(
        self: &Arc<Self>,
        s: &std::os::unix::net::UnixStream,
        inbox: &mut Inbox,
        ctx: &ConnCtx,
        window: Duration,
        stop: &CancellationToken,
        rt: &tokio::runtime::Handle,
        mut ring: Option<&mut ServerRing>,
    ) -> Hot {
        use std::io::{Read, Write};
        loop {
            let deadline = Instant::now() + window;
            let mut tries = 0u32;
            let came = loop {
                match inbox.need() {
                    Err(e) => break Came::Frame(Err(e)),
                    Ok(Need::Frame { start, end }) => break Came::Frame(Ok(start..end)),
                    // A large frame needs its partition's turn: the reactor's.
                    Ok(Need::More)
                        if inbox.partial() >= frame::PREFIX && inbox.announced() > LARGE_FRAME =>
                    {
                        return Hot::Cold;
                    }
                    Ok(Need::More) => {}
                }
                if inbox.partial() == 0 && ring.as_ref().is_some_and(|r| r.ready()) {
                    break Came::Ring;
                }
                // With rings, requests come there: the socket (a large request,
                // the end of the connection) is read on one try in eight, and
                // the others cost no system call but the yield.
                tries = tries.wrapping_add(1);
                if ring.is_some() && inbox.partial() == 0 && !tries.is_multiple_of(8) {
                    if stop.is_cancelled() {
                        return Hot::Closed;
                    }
                    if Instant::now() >= deadline {
                        return Hot::Cold;
                    }
                    std::thread::yield_now();
                    continue;
                }
                match (&*s).read(inbox.spare()) {
                    Ok(0) if inbox.partial() == 0 => break Came::Frame(Err(FrameError::Closed)),
                    Ok(0) => {
                        break Came::Frame(Err(FrameError::Truncated {
                            got: inbox.partial(),
                            want: inbox.announced(),
                        }));
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
                    Err(e) => break Came::Frame(Err(e.into())),
                }
            };
            let via_ring = matches!(came, Came::Ring);
            let step = match came {
                Came::Frame(read) => drive(rt, self.step(read, inbox, ctx, stop)),
                Came::Ring => {
                    let Some(r) = ring.as_deref_mut() else {
                        return Hot::Closed;
                    };
                    match r.take(ctx) {
                        Ok(Took::Empty) => continue,
                        Ok(Took::Request(req)) => drive(rt, self.step_request(req, ctx, stop)),
                        Ok(Took::Bad(step)) => Some(step),
                        Err(e) => {
                            corrupt(self, ctx, &e, Some(s.as_fd()));
                            return Hot::Closed;
                        }
                    }
                }
            };
            let Some(step) = step else {
                return Hot::Closed;
            };
            let (mut out, secret, last) = match step {
                Step::Answer(out, secret) => (out, secret, false),
                Step::Last(Some(out)) => (out, false, true),
                Step::Last(None) => return Hot::Closed,
                Step::OpenRing if ring.is_none() && !via_ring => return Hot::OpenRing,
                Step::OpenRing => (already_ringed(), false, false),
            };
            let to_socket = match (via_ring, ring.as_deref()) {
                (true, Some(r)) => match r.answer(&out) {
                    Ok(on_socket) => on_socket,
                    Err(e) => {
                        corrupt(self, ctx, &e, Some(s.as_fd()));
                        return Hot::Closed;
                    }
                },
                _ => true,
            };
            let mut rest: &[u8] = if to_socket { &out } else { &[] };
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
}

/// Runs `fut` to its end on this thread, a hot connection's own: at once when
/// it needs no waiting, as a quick request's step does (polled once, without
/// entering the runtime, whose entry costs more than such a request); else by
/// blocking in the runtime until it is done (a slow request waiting for its
/// partition's turn, then for the slow pool).
fn drive<F: Future>(rt: &tokio::runtime::Handle, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        // Polled again there with the runtime's waker, which replaces the
        // no-op one wherever the first poll left it.
        Poll::Pending => rt.block_on(fut),
    }
}
