//! Blocking client of the ihsm daemon: one [`Client`] is one connection, kept and
//! reused for every request, over a partition's or the admin Unix socket, or over
//! the network mode's mutual TLS. No async runtime, so the PKCS#11 module can
//! embed it; this is the only way the CLI and the module reach the HSM.
//!
//! A connection is one PKCS#11 application: its sessions and login live as long as
//! it does. Errors keep the daemon's stable code ([`ClientError::code`]) and
//! message.
//!
//! ```no_run
//! use ihsm_client::Client;
//! use ihsm_proto::types::UserType;
//! let mut c = Client::connect("ihsm-state/partitions/tenant.sock")?;
//! let s = c.open_session(true)?;
//! c.login(s, UserType::User, b"user-pin")?;
//! # Ok::<(), ihsm_client::ClientError>(())
//! ```
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ihsm_proto::attr::{AttrResult, AttrType, Attribute};
use ihsm_proto::frame::{self, FrameError, Inbox};
use ihsm_proto::mech::{Mechanism, MechanismInfo};
use ihsm_proto::msg::{DeviceStatus, Endpoint, Hello, HelloReply, PartitionSpec, SecretBytes};
use ihsm_proto::types::{AuditReport, PartitionInfo, SessionState, UserType};
use ihsm_proto::{ErrorCode, Reply, Request, Response, WireError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use zeroize::Zeroize;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The HSM answered with an error.
    #[error("{0}")]
    Hsm(WireError),
    /// The daemon could not be reached.
    #[error("cannot connect to {target}: {source}{hint}")]
    Connect {
        /// Socket path or address.
        target: String,
        /// Why.
        source: io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The connection failed or broke.
    #[error("connection to the HSM failed: {0}")]
    Io(#[from] io::Error),
    /// The daemon said something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// TLS set-up.
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// The stable code of this error.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Hsm(e) => e.kind().unwrap_or(ErrorCode::Internal),
            Self::Connect { .. } | Self::Io(_) | Self::Tls(_) => ErrorCode::Connection,
            Self::Protocol(_) => ErrorCode::UnexpectedReply,
        }
    }

    /// The `CKR_*` for this error.
    #[must_use]
    pub fn ckr(&self) -> u64 {
        match self {
            Self::Hsm(e) => e.ckr(),
            other => other.code().ckr(),
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(io) => Self::Io(io),
            FrameError::Closed => Self::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection",
            )),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Result of the client.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;

/// A Unix socket read by spinning briefly before sleeping: on a virtual machine a
/// sleeping thread takes tens of microseconds to wake, longer than the daemon takes
/// to answer most requests. The window is the configured spin or, if longer, twice
/// what answers have recently taken (at most [`MAX_SPIN`]): an RSA signature
/// takes a few hundred microseconds, and sleeping through it would add a wake-up
/// to each. The socket is non-blocking; waits past the window use poll(2), with
/// the timeout if one is set.
struct SpinUnix {
    s: UnixStream,
    spin: Duration,
    /// A running average of how long answers took to arrive.
    recent: Duration,
    /// Whether the window may grow with `recent`.
    longer: bool,
    timeout: Option<Duration>,
}

/// The longest a Unix-socket client spins for an answer, however slow recent
/// answers were.
pub const MAX_SPIN: Duration = Duration::from_millis(2);

impl SpinUnix {
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
        let window = if self.longer {
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
        };
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
                        self.recent = (self.recent * 3 + started.elapsed()) / 4;
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
            match (&self.s).write(buf) {
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

enum Conn {
    Unix(SpinUnix),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.write_all(b),
            Self::Tls(s) => {
                s.write_all(b)?;
                s.flush()
            }
        }
    }

    /// Reads one answer; decodes it; drops (and zeroes) its bytes.
    fn receive<T: serde::de::DeserializeOwned>(
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

/// Where a client connects.
#[derive(Clone)]
enum Target {
    Unix(PathBuf),
    Tls {
        addr: String,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

/// One connection to the daemon.
pub struct Client {
    conn: Conn,
    target: Target,
    inbox: Inbox,
    revision: u16,
    daemon: String,
    endpoint: Endpoint,
    name: String,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

const CLIENT: &str = concat!("ihsm-client ", env!("CARGO_PKG_VERSION"));

/// How long a Unix-socket client waits for an answer before sleeping.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

impl Client {
    /// Connects to a Unix socket (a partition's, or the admin socket).
    ///
    /// # Errors
    /// [`ClientError::Connect`] when nothing listens there; the daemon's refusal
    /// (wrong owner, protocol revision) as [`ClientError::Hsm`].
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect_as(path, CLIENT)
    }

    /// As [`Client::connect`], naming the caller in the daemon's log.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_as(path: impl AsRef<Path>, name: &str) -> Result<Self> {
        let target = Target::Unix(path.as_ref().to_path_buf());
        let conn = dial(&target)?;
        Self::handshake(conn, target, name)
    }

    /// Connects to the network mode's TLS listener.
    ///
    /// # Errors
    /// As [`Client::connect`], and TLS failures.
    pub fn connect_tls(
        addr: &str,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| ClientError::Tls(format!("server name {server_name:?}: {e}")))?;
        let target = Target::Tls {
            addr: addr.to_owned(),
            server_name,
            config,
        };
        let conn = dial(&target)?;
        Self::handshake(conn, target, CLIENT)
    }

    /// A TLS 1.3 client configuration: trust `ca_pem` for the server, present the
    /// certificate chain `cert_pem` with the PKCS#8 key `key_pem`.
    ///
    /// # Errors
    /// [`ClientError::Tls`] naming the unreadable file.
    pub fn tls_config(
        ca_pem: &Path,
        cert_pem: &Path,
        key_pem: &Path,
    ) -> Result<Arc<rustls::ClientConfig>> {
        let tls = |e: String| ClientError::Tls(e);
        let certs = |p: &Path| -> Result<Vec<CertificateDer<'static>>> {
            CertificateDer::pem_file_iter(p)
                .map_err(|e| tls(format!("{}: {e}", p.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(format!("{}: {e}", p.display())))
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca_pem)? {
            roots
                .add(c)
                .map_err(|e| tls(format!("{}: {e}", ca_pem.display())))?;
        }
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .map_err(|e| tls(format!("{}: {e}", key_pem.display())))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs(cert_pem)?, key)
            .map_err(|e| tls(e.to_string()))?;
        Ok(Arc::new(config))
    }

    fn handshake(mut conn: Conn, target: Target, name: &str) -> Result<Self> {
        let mut hello = frame::encode(&Hello::new(name))?;
        let sent = conn.write_all(&hello);
        hello.zeroize();
        let mut inbox = Inbox::default();
        // A daemon that refuses at once (too many connections) answers and
        // closes before reading the hello, so sending it may fail: its answer,
        // if it is there to read, says why.
        let reply = match (sent, conn.receive::<HelloReply>(&mut inbox)) {
            (_, Ok(r)) => r,
            (Err(e), Err(_)) => return Err(e.into()),
            (Ok(()), Err(e)) => return Err(e.into()),
        };
        match reply {
            HelloReply::Accepted {
                revision,
                daemon,
                endpoint,
            } => Ok(Self {
                conn,
                target,
                inbox,
                revision,
                daemon,
                endpoint,
                name: name.to_owned(),
            }),
            HelloReply::Refused(e) => Err(ClientError::Hsm(e)),
        }
    }

    /// Drops this connection (and with it its sessions) and opens a new one to the
    /// same place.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn reconnect(&mut self) -> Result<()> {
        let conn = dial(&self.target)?;
        *self = Self::handshake(conn, self.target.clone(), &self.name.clone())?;
        Ok(())
    }

    /// What this connection reaches.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The agreed protocol revision.
    #[must_use]
    pub fn revision(&self) -> u16 {
        self.revision
    }

    /// The daemon's version.
    #[must_use]
    pub fn daemon_version(&self) -> &str {
        &self.daemon
    }

    /// How long to wait for an answer without sleeping, on a Unix socket (default
    /// 100 µs; zero to always sleep). Spinning trades a little CPU for not paying a
    /// thread wake-up on every request.
    pub fn set_spin(&mut self, spin: Duration) {
        if let Conn::Unix(s) = &mut self.conn {
            s.spin = spin;
        }
    }

    /// Whether the spin may grow past [`Client::set_spin`]'s to twice what recent
    /// answers took (default: yes). A caller with more requests in flight than
    /// spare cores says no: spinners would take the cores the HSM computes on;
    /// then, when recent answers took longer than the spin, it does not spin.
    pub fn set_spin_longer(&mut self, allow: bool) {
        if let Conn::Unix(s) = &mut self.conn {
            s.longer = allow;
        }
    }

    /// Limits how long a request may wait for its answer (`None`: no limit).
    ///
    /// # Errors
    /// Socket errors.
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        match &mut self.conn {
            Conn::Unix(s) => s.timeout = t,
            Conn::Tls(s) => {
                s.sock.set_read_timeout(t)?;
                s.sock.set_write_timeout(t)?;
            }
        }
        Ok(())
    }

    /// Sends one request and reads its answer.
    ///
    /// # Errors
    /// The HSM's error as [`ClientError::Hsm`]; connection errors.
    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        let mut out = frame::encode(req).map_err(|e| match e {
            FrameError::TooLarge { len, max } => ClientError::Hsm(WireError::new(
                ErrorCode::FrameTooLarge,
                format!("request of {len} bytes exceeds the protocol's limit of {max} bytes"),
            )),
            other => other.into(),
        })?;
        let sent = self.conn.write_all(&out);
        // Requests carry PINs and key values.
        ihsm_proto::wipe(&mut out);
        sent?;
        let resp: Response = self.conn.receive(&mut self.inbox)?;
        resp.map_err(ClientError::Hsm)
    }

    fn expect<T>(&mut self, req: &Request, f: impl FnOnce(Reply) -> Option<T>) -> Result<T> {
        let name = req.name();
        let reply = self.call(req)?;
        // Only the variant's name: formatting the reply itself would cost a
        // string per byte of every answer and copy decrypted data into the heap.
        let kind = reply.name();
        f(reply).ok_or_else(|| ClientError::Protocol(format!("unexpected reply to {name}: {kind}")))
    }

    fn done(&mut self, req: &Request) -> Result<()> {
        self.expect(req, |r| matches!(r, Reply::Done).then_some(()))
    }

    fn handle(&mut self, req: &Request) -> Result<u64> {
        self.expect(req, |r| match r {
            Reply::Handle(h) => Some(h),
            _ => None,
        })
    }

    fn bytes(&mut self, req: &Request) -> Result<Vec<u8>> {
        self.expect(req, |r| match r {
            Reply::Bytes(b) => Some(b),
            _ => None,
        })
    }

    fn secret(&mut self, req: &Request) -> Result<SecretBytes> {
        self.expect(req, |r| match r {
            Reply::Secret(b) => Some(b),
            _ => None,
        })
    }

    // ---- both endpoints -----------------------------------------------------------

    /// A secret naming this connection's application, for [`Client::join_app`] on
    /// another connection (protocol revision 2).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn app_token(&mut self) -> Result<SecretBytes> {
        self.secret(&Request::AppToken)
    }

    /// Makes this connection act for the application `token` names: its sessions
    /// and login (protocol revision 2). This connection's own sessions end.
    ///
    /// # Errors
    /// [`ErrorCode::AppTokenInvalid`] when the application has ended; as
    /// [`Client::call`].
    pub fn join_app(&mut self, token: &SecretBytes) -> Result<()> {
        self.done(&Request::JoinApp {
            token: token.duplicate(),
        })
    }

    /// A round trip that does nothing.
    ///
    /// # Errors
    /// Connection errors.
    pub fn ping(&mut self) -> Result<()> {
        self.expect(&Request::Ping, |r| matches!(r, Reply::Pong).then_some(()))
    }

    // ---- admin ---------------------------------------------------------------------

    /// The device's status.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn status(&mut self) -> Result<DeviceStatus> {
        self.expect(&Request::Status, |r| match r {
            Reply::Status(s) => Some(*s),
            _ => None,
        })
    }

    /// Creates a partition.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_partition(&mut self, spec: PartitionSpec) -> Result<PartitionInfo> {
        self.expect(&Request::CreatePartition(spec), |r| match r {
            Reply::Partition(p) => Some(p),
            _ => None,
        })
    }

    /// Every partition.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_partitions(&mut self) -> Result<Vec<PartitionInfo>> {
        self.expect(&Request::ListPartitions, |r| match r {
            Reply::Partitions(p) => Some(p),
            _ => None,
        })
    }

    /// One partition.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn describe_partition(&mut self, name: &str) -> Result<PartitionInfo> {
        self.expect(
            &Request::DescribePartition { name: name.into() },
            |r| match r {
                Reply::Partition(p) => Some(p),
                _ => None,
            },
        )
    }

    /// Deletes a partition (and zeroizes everything in it).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn delete_partition(&mut self, name: &str) -> Result<()> {
        self.done(&Request::DeletePartition { name: name.into() })
    }

    /// A partition identity certificate (DER).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn partition_certificate(&mut self, name: &str) -> Result<Vec<u8>> {
        self.bytes(&Request::PartitionCertificate { name: name.into() })
    }

    /// A root-of-trust mailbox command; the raw response.
    ///
    /// # Errors
    /// As [`Client::call`]; [`ErrorCode::MailboxFailed`] with the mailbox's code.
    pub fn mailbox(&mut self, command: u32, payload: Vec<u8>) -> Result<Vec<u8>> {
        self.bytes(&Request::Mailbox { command, payload })
    }

    /// Fires a tamper sensor: lid, thermal or voltage.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn tamper(&mut self, sensor: &str) -> Result<()> {
        self.done(&Request::Tamper {
            sensor: sensor.into(),
        })
    }

    // ---- partition: token, sessions, login --------------------------------------------

    /// This partition's description.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn info(&mut self) -> Result<PartitionInfo> {
        self.expect(&Request::Info, |r| match r {
            Reply::Partition(p) => Some(p),
            _ => None,
        })
    }

    /// The mechanisms the HSM implements.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn mechanisms(&mut self) -> Result<Vec<MechanismInfo>> {
        self.expect(&Request::Mechanisms, |r| match r {
            Reply::Mechanisms(m) => Some(m),
            _ => None,
        })
    }

    /// C_InitToken.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn init_token(&mut self, so_pin: &[u8]) -> Result<()> {
        self.done(&Request::InitToken {
            so_pin: SecretBytes::new(so_pin),
        })
    }

    /// Verifies this partition's audit log.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn audit_verify(&mut self) -> Result<AuditReport> {
        self.expect(&Request::AuditVerify, |r| match r {
            Reply::Audit(a) => Some(a),
            _ => None,
        })
    }

    /// C_OpenSession.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn open_session(&mut self, rw: bool) -> Result<u64> {
        self.handle(&Request::OpenSession { rw })
    }

    /// C_CloseSession.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn close_session(&mut self, session: u64) -> Result<()> {
        self.done(&Request::CloseSession { session })
    }

    /// C_CloseAllSessions.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn close_all_sessions(&mut self) -> Result<()> {
        self.done(&Request::CloseAllSessions)
    }

    /// C_GetSessionInfo's state.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn session_state(&mut self, session: u64) -> Result<SessionState> {
        self.expect(&Request::SessionState { session }, |r| match r {
            Reply::SessionState(s) => Some(s),
            _ => None,
        })
    }

    /// C_Login.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn login(&mut self, session: u64, user: UserType, pin: &[u8]) -> Result<()> {
        self.done(&Request::Login {
            session,
            user,
            pin: SecretBytes::new(pin),
        })
    }

    /// C_Logout.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn logout(&mut self, session: u64) -> Result<()> {
        self.done(&Request::Logout { session })
    }

    /// C_InitPIN.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn init_pin(&mut self, session: u64, pin: &[u8]) -> Result<()> {
        self.done(&Request::InitPin {
            session,
            pin: SecretBytes::new(pin),
        })
    }

    /// C_SetPIN.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn set_pin(&mut self, session: u64, old: &[u8], new: &[u8]) -> Result<()> {
        self.done(&Request::SetPin {
            session,
            old: SecretBytes::new(old),
            new: SecretBytes::new(new),
        })
    }

    // ---- objects -------------------------------------------------------------------------

    /// C_CreateObject.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_object(&mut self, session: u64, template: Vec<Attribute>) -> Result<u64> {
        self.handle(&Request::CreateObject { session, template })
    }

    /// Many objects in one durable transaction.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_objects(
        &mut self,
        session: u64,
        templates: Vec<Vec<Attribute>>,
    ) -> Result<Vec<u64>> {
        self.expect(
            &Request::CreateObjects { session, templates },
            |r| match r {
                Reply::Handles(h) => Some(h),
                _ => None,
            },
        )
    }

    /// C_DestroyObject.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn destroy_object(&mut self, session: u64, handle: u64) -> Result<()> {
        self.done(&Request::DestroyObject { session, handle })
    }

    /// C_GetAttributeValue.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn get_attributes(
        &mut self,
        session: u64,
        handle: u64,
        types: Vec<AttrType>,
    ) -> Result<Vec<AttrResult>> {
        self.expect(
            &Request::GetAttributes {
                session,
                handle,
                types,
            },
            |r| match r {
                Reply::Attributes(a) => Some(a),
                _ => None,
            },
        )
    }

    /// C_SetAttributeValue.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn set_attributes(
        &mut self,
        session: u64,
        handle: u64,
        template: Vec<Attribute>,
    ) -> Result<()> {
        self.done(&Request::SetAttributes {
            session,
            handle,
            template,
        })
    }

    /// C_CopyObject.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn copy_object(
        &mut self,
        session: u64,
        handle: u64,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::CopyObject {
            session,
            handle,
            template,
        })
    }

    /// C_FindObjects: every match.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn find(&mut self, session: u64, template: Vec<Attribute>) -> Result<Vec<u64>> {
        self.expect(&Request::Find { session, template }, |r| match r {
            Reply::Handles(h) => Some(h),
            _ => None,
        })
    }

    // ---- keys --------------------------------------------------------------------------------

    /// C_GenerateKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn generate_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::GenerateKey {
            session,
            mech,
            template,
        })
    }

    /// C_GenerateKeyPair: (public, private).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn generate_key_pair(
        &mut self,
        session: u64,
        mech: Mechanism,
        public: Vec<Attribute>,
        private: Vec<Attribute>,
    ) -> Result<(u64, u64)> {
        self.expect(
            &Request::GenerateKeyPair {
                session,
                mech,
                public,
                private,
            },
            |r| match r {
                Reply::KeyPair(a, b) => Some((a, b)),
                _ => None,
            },
        )
    }

    /// C_WrapKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn wrap_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        wrapping: u64,
        key: u64,
    ) -> Result<Vec<u8>> {
        self.bytes(&Request::WrapKey {
            session,
            mech,
            wrapping,
            key,
        })
    }

    /// C_UnwrapKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn unwrap_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        unwrapping: u64,
        wrapped: Vec<u8>,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::UnwrapKey {
            session,
            mech,
            unwrapping,
            wrapped,
            template,
        })
    }

    /// C_DeriveKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn derive_key(
        &mut self,
        session: u64,
        mech: Mechanism,
        base: u64,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::DeriveKey {
            session,
            mech,
            base,
            template,
        })
    }

    /// C_EncapsulateKey: (ciphertext, secret handle).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encapsulate(
        &mut self,
        session: u64,
        mech: Mechanism,
        public: u64,
        template: Vec<Attribute>,
    ) -> Result<(Vec<u8>, u64)> {
        self.expect(
            &Request::Encapsulate {
                session,
                mech,
                public,
                template,
            },
            |r| match r {
                Reply::Encapsulated { ciphertext, handle } => Some((ciphertext, handle)),
                _ => None,
            },
        )
    }

    /// C_DecapsulateKey.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn decapsulate(
        &mut self,
        session: u64,
        mech: Mechanism,
        private: u64,
        ciphertext: Vec<u8>,
        template: Vec<Attribute>,
    ) -> Result<u64> {
        self.handle(&Request::Decapsulate {
            session,
            mech,
            private,
            ciphertext,
            template,
        })
    }

    /// A masked blob of a key (this device and partition only).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn export_masked(&mut self, session: u64, handle: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::ExportMasked { session, handle })
    }

    /// Imports a masked blob.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn import_masked(&mut self, session: u64, blob: Vec<u8>) -> Result<u64> {
        self.handle(&Request::ImportMasked { session, blob })
    }

    // ---- signatures -------------------------------------------------------------------------

    /// C_SignInit (or C_VerifyInit).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_init(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        verify: bool,
    ) -> Result<()> {
        self.done(&Request::SignInit {
            session,
            mech,
            key,
            verify,
        })
    }

    /// C_Sign.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign(&mut self, session: u64, data: Vec<u8>) -> Result<Vec<u8>> {
        self.bytes(&Request::Sign { session, data })
    }

    /// C_SignInit + C_Sign in one round trip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_once(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        data: Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.bytes(&Request::SignOnce {
            session,
            mech,
            key,
            data,
        })
    }

    /// C_SignUpdate (or C_VerifyUpdate).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_update(&mut self, session: u64, data: Vec<u8>, verify: bool) -> Result<()> {
        self.done(&Request::SignUpdate {
            session,
            data,
            verify,
        })
    }

    /// C_SignFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn sign_final(&mut self, session: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::SignFinal { session })
    }

    /// C_Verify.
    ///
    /// # Errors
    /// [`ErrorCode::SignatureInvalid`] and the rest.
    pub fn verify(&mut self, session: u64, data: Vec<u8>, signature: Vec<u8>) -> Result<()> {
        self.done(&Request::Verify {
            session,
            data,
            signature,
        })
    }

    /// C_VerifyFinal.
    ///
    /// # Errors
    /// As [`Client::verify`].
    pub fn verify_final(&mut self, session: u64, signature: Vec<u8>) -> Result<()> {
        self.done(&Request::VerifyFinal { session, signature })
    }

    // ---- encryption ---------------------------------------------------------------------------

    /// C_EncryptInit (or C_DecryptInit).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn crypt_init(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        encrypt: bool,
    ) -> Result<()> {
        self.done(&Request::CryptInit {
            session,
            mech,
            key,
            encrypt,
        })
    }

    fn encrypted(&mut self, req: &Request) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.expect(req, |r| match r {
            Reply::Encrypted { data, iv } => Some((data, iv.map(serde_bytes::ByteBuf::into_vec))),
            _ => None,
        })
    }

    /// C_Encrypt: the ciphertext and, if the HSM drew it, the IV.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encrypt(&mut self, session: u64, data: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.encrypted(&Request::Encrypt {
            session,
            data: SecretBytes::new(data),
        })
    }

    /// C_EncryptInit + C_Encrypt in one round trip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encrypt_once(
        &mut self,
        session: u64,
        mech: Mechanism,
        key: u64,
        data: &[u8],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        self.encrypted(&Request::EncryptOnce {
            session,
            mech,
            key,
            data: SecretBytes::new(data),
        })
    }

    /// C_Decrypt: the plaintext.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn decrypt(&mut self, session: u64, data: Vec<u8>) -> Result<SecretBytes> {
        self.secret(&Request::Decrypt { session, data })
    }

    /// C_EncryptUpdate (ciphertext) or C_DecryptUpdate (plaintext).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn crypt_update(
        &mut self,
        session: u64,
        data: &[u8],
        encrypt: bool,
    ) -> Result<SecretBytes> {
        let req = Request::CryptUpdate {
            session,
            data: SecretBytes::new(data),
            encrypt,
        };
        self.expect(&req, |r| match r {
            Reply::Secret(b) => Some(b),
            Reply::Bytes(b) => Some(SecretBytes::new(b)),
            _ => None,
        })
    }

    /// C_EncryptFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn encrypt_final(&mut self, session: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::EncryptFinal { session })
    }

    /// C_DecryptFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn decrypt_final(&mut self, session: u64) -> Result<SecretBytes> {
        self.secret(&Request::DecryptFinal { session })
    }

    // ---- digest and random ---------------------------------------------------------------------

    /// C_DigestInit.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn digest_init(&mut self, session: u64, mech: Mechanism) -> Result<()> {
        self.done(&Request::DigestInit { session, mech })
    }

    /// C_DigestUpdate.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn digest_update(&mut self, session: u64, data: Vec<u8>) -> Result<()> {
        self.done(&Request::DigestUpdate { session, data })
    }

    /// C_DigestFinal.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn digest_final(&mut self, session: u64) -> Result<Vec<u8>> {
        self.bytes(&Request::DigestFinal { session })
    }

    /// C_GenerateRandom.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn random(&mut self, session: u64, len: u32) -> Result<SecretBytes> {
        self.secret(&Request::Random { session, len })
    }
}

fn dial(target: &Target) -> Result<Conn> {
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
            let mut tls = rustls::StreamOwned::new(conn, tcp);
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
