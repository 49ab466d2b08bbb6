//! The client's side of a local connection's shared-memory rings (ihsm-ring):
//! asked for at the connection's second call ([`Request::OpenRing`]: a
//! connection that asks once, as a CLI command does, does not pay for making
//! and mapping them), received with
//! `SCM_RIGHTS`, then used for every request that fits a slot; larger ones go
//! on the socket as before.
//!
//! Waiting for a reply: spin (yielding) for the connection's spin window, the
//! same as a socket's (see [`crate::transport::SpinUnix`]), then sleep on the
//! completion ring's futex in slices of [`SLICE`], looking at the socket after
//! each: a daemon that has gone away closes it, and is noticed within a slice.
//! The request's time limit, if one is set, bounds the whole wait.
//!
//! `IHSM_TRANSPORT=socket` in the environment turns rings off (every request
//! on the socket), as does [`crate::Client::connect_with`].
//!
//! A child forked from the process that opened the rings does not have them
//! (the mapping is `MADV_DONTFORK`), and its calls on such a connection fail
//! at once instead of touching the parent's.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ihsm_proto::frame::{self, FrameError, Inbox, Need};
use ihsm_proto::{Reply, Request, Response};
use ihsm_ring::{FLAG_ON_SOCKET, Geometry, Region, RingError, Which};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags};

use crate::error::{ClientError, Result};
use crate::transport::SpinUnix;

/// How long one futex sleep lasts before the socket is looked at.
pub const SLICE: Duration = Duration::from_millis(50);

/// How long the daemon has to answer [`Request::OpenRing`].
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the environment lets rings be used (`IHSM_TRANSPORT` is not
/// `socket`).
#[must_use]
pub fn rings_allowed_by_env() -> bool {
    std::env::var_os("IHSM_TRANSPORT").is_none_or(|v| v != "socket")
}

/// The client's side of a connection's rings.
pub(crate) struct ClientRing {
    region: Region,
    /// The region's memfd, for [`crate::Client::ring_memfd`].
    memfd: OwnedFd,
    /// The daemon's doorbell: a byte written wakes it when it sleeps.
    bell: UnixStream,
    /// A reply being copied out (wiped after decoding).
    buf: Vec<u8>,
}

impl ClientRing {
    /// Asks the daemon for rings on `s`, just after the hello. `None`: the
    /// daemon declined (the connection goes on, on the socket).
    pub(crate) fn open(s: &mut SpinUnix, inbox: &mut Inbox) -> Result<Option<Self>> {
        use std::io::Write;
        s.write_all(&frame::encode(&Request::OpenRing)?)?;
        let (resp, mut fds) = receive_with_fds(s.socket(), inbox)?;
        match resp {
            Ok(Reply::Ring { slots, slot_bytes }) if fds.len() == 2 => {
                let bell = UnixStream::from(fds.pop().ok_or_else(|| bad("no doorbell"))?);
                let memfd = fds.pop().ok_or_else(|| bad("no region"))?;
                let region = Region::attach(&memfd, Geometry { slots, slot_bytes })
                    .map_err(|e| bad(&e.to_string()))?;
                Ok(Some(Self {
                    region,
                    memfd,
                    bell,
                    buf: Vec::new(),
                }))
            }
            Ok(Reply::Ring { .. }) => Err(bad("the ring's descriptors did not arrive")),
            Ok(other) => Err(ClientError::Protocol(format!(
                "unexpected reply to open_ring: {}",
                other.name()
            ))),
            Err(_declined) => Ok(None),
        }
    }

    /// The region's memfd.
    pub(crate) fn memfd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.memfd.as_fd()
    }

    /// A slot's payload capacity: larger requests go on the socket.
    pub(crate) fn capacity(&self) -> usize {
        self.region.capacity()
    }

    /// Whether this process opened the rings (not a forked child).
    pub(crate) fn is_own(&self) -> bool {
        self.region.is_own()
    }

    /// Sends one request's body through the submission ring and waits for its
    /// answer (in the completion ring, or on the socket when it said so).
    pub(crate) fn call(
        &mut self,
        body: &[u8],
        s: &mut SpinUnix,
        inbox: &mut Inbox,
    ) -> Result<Response> {
        let waiting = self
            .region
            .ring(Which::Submission)
            .push(body, 0)
            .map_err(ring_error)?;
        if waiting {
            match rustix::net::send(&self.bell, &[1], SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
                // Full: the daemon has wake-ups enough waiting.
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(ClientError::Io(e.into())),
            }
        }
        let started = Instant::now();
        let window = s.window();
        let cq = self.region.ring(Which::Completion);
        let mut waited = false;
        loop {
            match cq.pop(&mut self.buf).map_err(ring_error)? {
                Some(flags) => {
                    if waited {
                        s.answered(started.elapsed());
                    }
                    if flags & FLAG_ON_SOCKET != 0 {
                        return Ok(crate::transport::receive_unix(s, inbox)?);
                    }
                    let resp = frame::decode::<Response>(&self.buf);
                    // Replies carry decrypted data and random bytes.
                    ihsm_proto::wipe(&mut self.buf);
                    return Ok(resp?);
                }
                None => waited = true,
            }
            let spent = started.elapsed();
            if spent < window {
                std::thread::yield_now();
                continue;
            }
            let slice = match s.timeout {
                Some(t) if spent >= t => {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the HSM did not answer in time",
                    )));
                }
                Some(t) => SLICE.min(t - spent),
                None => SLICE,
            };
            if cq.arm() {
                let slept = cq.wait(slice);
                cq.disarm();
                slept.map_err(ring_error)?;
            }
            // A daemon that has gone away (or answers on the socket) shows
            // there.
            if !cq.ready() && socket_readable(s.socket())? {
                return Ok(crate::transport::receive_unix(s, inbox)?);
            }
        }
    }
}

fn bad(what: &str) -> ClientError {
    ClientError::Protocol(format!("the daemon's shared-memory rings: {what}"))
}

fn ring_error(e: RingError) -> ClientError {
    ClientError::Io(io::Error::other(e.to_string()))
}

/// Whether the socket has something to read (or has closed), without waiting.
fn socket_readable(s: &UnixStream) -> Result<bool> {
    let mut fds = [rustix::event::PollFd::new(
        s,
        rustix::event::PollFlags::IN | rustix::event::PollFlags::RDHUP,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(ClientError::Io(e.into())),
    }
}

/// Reads one answer and the descriptors sent with it (at most two).
fn receive_with_fds(s: &UnixStream, inbox: &mut Inbox) -> Result<(Response, Vec<OwnedFd>)> {
    let until = Instant::now() + OPEN_TIMEOUT;
    let mut fds = Vec::new();
    loop {
        if let Need::Frame { start, end } = inbox.need()? {
            let resp = frame::decode::<Response>(&inbox.bytes()[start..end]);
            inbox.consume(end);
            return Ok((resp?, fds));
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            s,
            &mut [IoSliceMut::new(inbox.spare())],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        match got {
            Ok(m) => {
                for msg in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = msg {
                        // Kept only up to two; any more are closed here.
                        for fd in received {
                            if fds.len() < 2 {
                                fds.push(fd);
                            }
                        }
                    }
                }
                if m.bytes == 0 {
                    return Err(FrameError::Closed.into());
                }
                inbox.filled(m.bytes);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the daemon did not answer open_ring in time",
                    )));
                }
                let ts = rustix::time::Timespec::try_from(left)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                let mut p = [rustix::event::PollFd::new(s, rustix::event::PollFlags::IN)];
                match rustix::event::poll(&mut p, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(ClientError::Io(e.into())),
                }
            }
            Err(e) => return Err(ClientError::Io(e.into())),
        }
    }
}
