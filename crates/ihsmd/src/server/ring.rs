//! A local connection's shared-memory rings (ihsm-ring): made at the client's
//! [`Request::OpenRing`], after its hello and the peer check, and sent to it
//! with `SCM_RIGHTS`; then requests may come in the submission ring as well as
//! on the socket, and each is answered where it came from.
//!
//! The tenant can write the region at any time: a request is copied out of it
//! (ihsm-ring's consumer copies, then zeroes the slot) before it is decoded, and
//! then goes through the same [`Daemon::step`] as a socket's, with the same
//! checks. A ring that is corrupt, or a completion ring the client never
//! drains, is that connection's error: it is closed, and nothing else is.
//!
//! A reply that does not fit a slot goes on the socket, announced by an entry
//! with [`ihsm_ring::FLAG_ON_SOCKET`] (written first, so the client reads the
//! socket while the daemon writes it). The daemon sleeps in the reactor, on the
//! socket and on a doorbell socket the client writes to when it finds the daemon waiting
//! (the submission ring's `waiting` word); while requests come quickly, a hot
//! connection's thread polls the ring instead ([`Daemon::hot`]).
//!
//! [`Request::OpenRing`]: ihsm_proto::Request::OpenRing

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ihsm_proto::frame::{self, PREFIX};
use ihsm_proto::msg::Reply;
use ihsm_proto::{ErrorCode, Request, WireError};
use ihsm_ring::{FLAG_ON_SOCKET, Geometry, Region, RingError, Which};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::connection::ConnCtx;
use super::step::Step;

/// The daemon's side of a connection's rings.
pub(super) struct ServerRing {
    region: Region,
    /// The request being copied out (wiped after decoding).
    buf: Vec<u8>,
}

impl core::fmt::Debug for ServerRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerRing")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What taking from the submission ring gave.
pub(super) enum Took {
    /// Nothing there.
    Empty,
    /// A request, decoded from the daemon's own copy.
    Request(Request),
    /// A request that does not decode: these last words, then close.
    Bad(Step),
}

impl ServerRing {
    /// New rings and their doorbell, sent to the client on `socket` with the
    /// answer's frame; the daemon keeps the returned end of the doorbell (a
    /// socket pair: the client writes a byte to wake it) to wait on.
    pub(super) fn open(
        socket: BorrowedFd<'_>,
    ) -> Result<(Self, std::os::unix::net::UnixStream), WireError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!("cannot open a connection's rings: {what}: {e}");
            WireError::new(
                ErrorCode::DaemonFailed,
                format!("the daemon cannot make shared-memory rings ({what}: {e}); use the socket"),
            )
        };
        let geo = Geometry::default();
        let (region, memfd) = Region::create(geo).map_err(|e| fail("memfd", &e))?;
        let (bell, theirs) = std::os::unix::net::UnixStream::pair()
            .and_then(|(a, b)| {
                a.set_nonblocking(true)?;
                b.set_nonblocking(true)?;
                Ok((a, b))
            })
            .map_err(|e| fail("doorbell", &e))?;
        let reply = frame::encode(&Ok::<Reply, WireError>(Reply::Ring {
            slots: geo.slots,
            slot_bytes: geo.slot_bytes,
        }))
        .map_err(|e| fail("encoding", &e))?;
        send_with_fds(socket, &reply, &[memfd.as_fd(), theirs.as_fd()])
            .map_err(|e| fail("sending the region", &e))?;
        // The daemon's copies of the memfd and of the client's end of the
        // doorbell are not needed: the mapping holds the pages, which the client
        // cannot resize (sealed).
        drop((memfd, theirs));
        Ok((
            Self {
                region,
                buf: Vec::new(),
            },
            bell,
        ))
    }

    /// Whether a request is waiting in the submission ring.
    pub(super) fn ready(&self) -> bool {
        self.region.ring(Which::Submission).ready()
    }

    /// Before sleeping: tells the client to ring the doorbell. `false`: a
    /// request came meanwhile.
    pub(super) fn arm(&self) -> bool {
        self.region.ring(Which::Submission).arm()
    }

    /// Awake: the client need not ring.
    pub(super) fn disarm(&self) {
        self.region.ring(Which::Submission).disarm();
    }

    /// The next request of the submission ring, copied out and decoded.
    ///
    /// # Errors
    /// A corrupt ring (the caller closes the connection).
    pub(super) fn take(&mut self, ctx: &ConnCtx) -> Result<Took, RingError> {
        let got = self.region.ring(Which::Submission).pop(&mut self.buf);
        let took = match got {
            Ok(None) => return Ok(Took::Empty),
            Ok(Some(_flags)) => match frame::decode::<Request>(&self.buf) {
                Ok(r) => Took::Request(r),
                Err(e) => {
                    tracing::info!(endpoint = %ctx.label, error = %e, "malformed request in the ring; connection closed");
                    Took::Bad(Step::Last(
                        frame::encode(&Err::<Reply, _>(super::step::frame_error(&e))).ok(),
                    ))
                }
            },
            Err(e) => Err(e)?,
        };
        // Requests carry PINs and key values.
        ihsm_proto::wipe(&mut self.buf);
        Ok(took)
    }

    /// Answers a request that came in the ring with the frame `out` (its
    /// prefix included): into the completion ring, or announced there and
    /// returned to be sent on the socket.
    ///
    /// # Errors
    /// A corrupt or never drained completion ring (the caller closes the
    /// connection).
    pub(super) fn answer(&self, out: &[u8]) -> Result<bool, RingError> {
        let cq = self.region.ring(Which::Completion);
        let body = out.get(PREFIX..).unwrap_or_default();
        let (waiting, on_socket) = if body.len() <= self.region.capacity() {
            (cq.push(body, 0)?, false)
        } else {
            (cq.push(&[], FLAG_ON_SOCKET)?, true)
        };
        if waiting {
            cq.wake()?;
        }
        Ok(on_socket)
    }
}

/// Sends `bytes` with `fds` attached (SCM_RIGHTS) on a non-blocking socket,
/// waiting a bounded time for room.
fn send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("no room for the descriptors"));
    }
    let until = Instant::now() + Duration::from_secs(1);
    // The descriptors go with the first byte; the rest (if the socket took
    // only part) plainly.
    let mut sent = loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => wait_writable(socket, until)?,
            Err(e) => return Err(e.into()),
        }
    };
    while sent < bytes.len() {
        match rustix::net::send(socket, &bytes[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => wait_writable(socket, until)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn wait_writable(socket: BorrowedFd<'_>, until: Instant) -> std::io::Result<()> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    let ts =
        rustix::time::Timespec::try_from(left).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut fds = [rustix::event::PollFd::new(
        &socket,
        rustix::event::PollFlags::OUT,
    )];
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Empties the doorbell of what the client wrote to it; `false` when the
/// client closed its end (then the connection ends: it can no longer wake the
/// daemon, and an end of file would wake it forever).
pub(super) fn drain_bell(bell: &tokio::net::UnixStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match bell.try_read(&mut b) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}
