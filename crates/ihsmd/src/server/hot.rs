//! A hot connection: one whose client sends its next request as soon as it has
//! the answer, polled by a thread of its own instead of the reactor.

use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ihsm_proto::frame::{self, FrameError, Inbox, Need};
use tokio_util::sync::CancellationToken;

use super::connection::ConnCtx;
use super::step::Step;
use super::{Daemon, LARGE_FRAME};

/// How a hot connection's thread ended.
pub(super) enum Hot {
    /// The client paused: back to the reactor.
    Cold,
    /// Closed, broke the protocol, or the daemon stops.
    Closed,
}

impl Daemon {
    /// A hot connection's loop, on a thread of its own (see [`Daemon::requests`]).
    pub(super) fn hot(
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
            let Some(step) = drive(rt, self.step(read, inbox, ctx, stop)) else {
                return Hot::Closed;
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
