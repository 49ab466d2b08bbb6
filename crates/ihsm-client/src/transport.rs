//! The byte streams under a connection: a Unix socket read by spinning
//! briefly before sleeping, or mutual TLS over TCP; and dialling either.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ihsm_proto::frame::{self, FrameError, Inbox};
use rustls::pki_types::ServerName;

use crate::error::{ClientError, Result};

/// A Unix socket read by spinning briefly before sleeping: on a virtual machine a
/// sleeping thread takes tens of microseconds to wake, longer than the daemon takes
/// to answer most requests. The window is the configured spin or, if longer, twice
/// what answers have recently taken (at most [`MAX_SPIN`]): an RSA signature
/// takes a few hundred microseconds, and sleeping through it would add a wake-up
/// to each. The socket is non-blocking; waits past the window use poll(2), with
/// the timeout if one is set.
pub(crate) struct SpinUnix {
    s: UnixStream,
    pub(crate) spin: Duration,
    /// A running average of how long answers took to arrive.
    recent: Duration,
    /// Whether the window may grow with `recent`.
    pub(crate) longer: bool,
    pub(crate) timeout: Option<Duration>,
}

/// The longest a Unix-socket client spins for an answer, however slow recent
/// answers were.
pub const MAX_SPIN: Duration = Duration::from_millis(2);

impl SpinUnix {
    /// The socket.
    pub(crate) fn socket(&self) -> &UnixStream {
        &self.s
    }

    /// How long to spin for the next answer (see the type's note).
    pub(crate) fn window(&self) -> Duration {
        if self.longer {
            if self.spin.is_zero() {
                Duration::ZERO
            } else {
                self.spin.max((self.recent * 2).min(MAX_SPIN))
            }
        } else if self.recent > self.spin {
            // No spare core, and answers come slower than the spin: sleep and
            // leave the core to the HSM.
            Duration::ZERO
        } else {
            self.spin
        }
    }

    /// An answer that had to be waited for took `took`.
    pub(crate) fn answered(&mut self, took: Duration) {
        self.recent = (self.recent * 3 + took) / 4;
    }

    fn wait(&self, flags: rustix::event::PollFlags, started: std::time::Instant) -> io::Result<()> {
        let timeout = match self.timeout {
            Some(t) => {
                let left = t.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the HSM did not answer in time",
                    ));
                }
                Some(
                    rustix::time::Timespec::try_from(left)
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
                )
            }
            None => None,
        };
        let mut fds = [rustix::event::PollFd::new(&self.s, flags)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl io::Read for SpinUnix {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = std::time::Instant::now();
        let window = self.window();
        let mut waited = false;
        loop {
            match (&self.s).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    waited = true;
                    if started.elapsed() < window {
                        std::thread::yield_now();
                    } else {
                        self.wait(rustix::event::PollFlags::IN, started)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => {
                    if waited {
                        self.answered(started.elapsed());
                    }
                    return other;
                }
            }
        }
    }
}

impl io::Write for SpinUnix {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = std::time::Instant::now();
        loop {
            match send(&self.s, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(rustix::event::PollFlags::OUT, started)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// send(2) with `MSG_NOSIGNAL`: a write to a daemon that has gone away is an
/// `EPIPE` error, not a SIGPIPE that kills the host process. The PKCS#11 module
/// runs inside C programs that do not ignore SIGPIPE (Rust's runtime ignores it
/// only for Rust executables).
fn send(s: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    rustix::net::send(s, buf, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
}

/// A TCP stream written with [`send`], under rustls.
pub(crate) struct Tcp(pub(crate) TcpStream);

impl io::Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.0, buf)
    }
}

impl io::Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(&self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) enum Conn {
    Unix(SpinUnix),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Tcp>>),
}

impl Conn {
    pub(crate) fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.write_all(b),
            Self::Tls(s) => {
                s.write_all(b)?;
                s.flush()
            }
        }
    }

    /// Reads one answer; decodes it; drops (and zeroes) its bytes.
    pub(crate) fn receive<T: serde::de::DeserializeOwned>(
        &mut self,
        inbox: &mut Inbox,
    ) -> Result<T, FrameError> {
        let r = match self {
            Self::Unix(s) => inbox.read(s)?,
            Self::Tls(s) => inbox.read(s.as_mut())?,
        };
        let msg = frame::decode(&inbox.bytes()[r.clone()]);
        inbox.consume(r.end);
        msg
    }
}

/// Reads one answer from a Unix socket; decodes it; drops (and zeroes) its
/// bytes.
pub(crate) fn receive_unix<T: serde::de::DeserializeOwned>(
    s: &mut SpinUnix,
    inbox: &mut Inbox,
) -> Result<T, FrameError> {
    let r = inbox.read(s)?;
    let msg = frame::decode(&inbox.bytes()[r.clone()]);
    inbox.consume(r.end);
    msg
}

/// Where a client connects.
#[derive(Clone)]
pub(crate) enum Target {
    Unix(PathBuf),
    Tls {
        addr: String,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

/// How long a Unix-socket client waits for an answer before sleeping.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

pub(crate) fn dial(target: &Target) -> Result<Conn> {
    match target {
        Target::Unix(path) => UnixStream::connect(path)
            .and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(Conn::Unix(SpinUnix {
                    s,
                    spin: DEFAULT_SPIN,
                    recent: Duration::ZERO,
                    longer: true,
                    timeout: None,
                }))
            })
            .map_err(|source| {
            let hint = match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    " (is ihsmd running? start it with `cargo run --release` or `ihsmd --state DIR`)"
                }
                io::ErrorKind::PermissionDenied => {
                    " (the socket belongs to another user: connect as the partition's owner)"
                }
                _ => "",
            };
            ClientError::Connect {
                target: path.display().to_string(),
                source,
                hint,
            }
        }),
        Target::Tls {
            addr,
            server_name,
            config,
        } => {
            let tcp = TcpStream::connect(addr).map_err(|source| ClientError::Connect {
                target: addr.clone(),
                source,
                hint: " (is network mode enabled in security.toml?)",
            })?;
            tcp.set_nodelay(true)?;
            let conn = rustls::ClientConnection::new(Arc::clone(config), server_name.clone())
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            let mut tls = rustls::StreamOwned::new(conn, Tcp(tcp));
            // Finish the handshake now, so a refused certificate is reported here.
            while tls.conn.is_handshaking() {
                tls.conn
                    .complete_io(&mut tls.sock)
                    .map_err(|e| ClientError::Tls(format!("handshake with {addr}: {e}")))?;
            }
            Ok(Conn::Tls(Box::new(tls)))
        }
    }
}
