//! One connection to the daemon: connecting, the handshake, its settings, and
//! one request and its answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ihsm_proto::frame::{self, FrameError, Inbox};
use ihsm_proto::msg::{Endpoint, Hello, HelloReply, SecretBytes};
use ihsm_proto::{ErrorCode, Reply, Request, Response, WireError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use zeroize::Zeroize;

use crate::error::{ClientError, Result};
use crate::ring::ClientRing;
use crate::transport::{Conn, Target, dial};

/// One connection to the daemon.
pub struct Client {
    conn: Conn,
    /// The shared-memory rings of a local connection (ring.rs). Declared
    /// after `conn`, so dropped after it: the socket closes before the region
    /// is wiped, and the daemon takes the wiped ring for a goodbye.
    ring: Option<ClientRing>,
    /// Whether to ask for rings (on a reconnection too): at the second call,
    /// so that a connection that asks once (a CLI command) does not pay for
    /// making and mapping them.
    rings: bool,
    /// Calls made on this connection, up to the second.
    calls: u8,
    /// Why the connection is unusable, once a call failed in the middle (a
    /// timeout, a broken socket or ring, a reply not understood): the answer
    /// to that call may still come, and would be taken for the next one's.
    broken: Option<String>,
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
            .field("ring", &self.ring.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) const CLIENT: &str = concat!("ihsm-client ", env!("CARGO_PKG_VERSION"));

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
        Self::connect_with(path, name, crate::ring::rings_allowed_by_env())
    }

    /// As [`Client::connect_as`], saying whether to use shared-memory rings
    /// with the daemon (when it offers them), whatever `IHSM_TRANSPORT` says.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_with(path: impl AsRef<Path>, name: &str, rings: bool) -> Result<Self> {
        let target = Target::Unix(path.as_ref().to_path_buf());
        let conn = dial(&target)?;
        Self::handshake(conn, target, name, rings)
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
        Self::handshake(conn, target, CLIENT, false)
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

    fn handshake(mut conn: Conn, target: Target, name: &str, rings: bool) -> Result<Self> {
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
            } => {
                // Rings on a local socket, from a daemon that speaks of them.
                let rings = rings && revision >= 6 && matches!(conn, Conn::Unix(_));
                Ok(Self {
                    conn,
                    ring: None,
                    rings,
                    calls: 0,
                    broken: None,
                    target,
                    inbox,
                    revision,
                    daemon,
                    endpoint,
                    name: name.to_owned(),
                })
            }
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
        *self = Self::handshake(conn, self.target.clone(), &self.name.clone(), self.rings)?;
        Ok(())
    }

    /// Whether this connection's requests go through shared-memory rings (asked
    /// for at its second call).
    #[must_use]
    pub fn uses_rings(&self) -> bool {
        self.ring.is_some()
    }

    /// The memfd of this connection's rings, if it has them: for tests that
    /// play a hostile tenant writing its own region (a tenant can always map
    /// its own region again). Not for production use.
    #[doc(hidden)]
    #[must_use]
    pub fn ring_memfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ring.as_ref().map(ClientRing::memfd)
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
                s.sock.0.set_read_timeout(t)?;
                s.sock.0.set_write_timeout(t)?;
            }
        }
        Ok(())
    }

    /// Sends one request and reads its answer.
    ///
    /// # Errors
    /// The HSM's error as [`ClientError::Hsm`]; connection errors.
    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        if let Some(why) = &self.broken {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("this connection failed during an earlier call ({why}); reconnect"),
            )));
        }
        let r = self.exchange(req);
        if let Err(e @ (ClientError::Io(_) | ClientError::Protocol(_))) = &r {
            self.broken = Some(e.to_string());
        }
        r
    }

    /// One request and its answer, on a connection in step.
    fn exchange(&mut self, req: &Request) -> Result<Reply> {
        if self.calls < 2 {
            self.calls += 1;
            if self.calls == 2
                && self.rings
                && let Conn::Unix(s) = &mut self.conn
            {
                self.ring = ClientRing::open(s, &mut self.inbox)?;
            }
        }
        let mut out = frame::encode(req).map_err(|e| match e {
            FrameError::TooLarge { len, max } => ClientError::Hsm(WireError::new(
                ErrorCode::FrameTooLarge,
                format!("request of {len} bytes exceeds the protocol's limit of {max} bytes"),
            )),
            other => other.into(),
        })?;
        if let (Some(ring), Conn::Unix(s)) = (&mut self.ring, &mut self.conn) {
            if !ring.is_own() {
                ihsm_proto::wipe(&mut out);
                return Err(ClientError::Io(std::io::Error::other(
                    "this connection was opened by the parent of this forked process: reconnect",
                )));
            }
            let body = &out[frame::PREFIX..];
            if body.len() <= ring.capacity() {
                let resp = ring.call(body, s, &mut self.inbox);
                ihsm_proto::wipe(&mut out);
                return resp?.map_err(ClientError::Hsm);
            }
        }
        let sent = self.conn.write_all(&out);
        // Requests carry PINs and key values.
        ihsm_proto::wipe(&mut out);
        sent?;
        let resp: Response = self.conn.receive(&mut self.inbox)?;
        resp.map_err(ClientError::Hsm)
    }

    pub(crate) fn expect<T>(
        &mut self,
        req: &Request,
        f: impl FnOnce(Reply) -> Option<T>,
    ) -> Result<T> {
        let name = req.name();
        let reply = self.call(req)?;
        // Only the variant's name: formatting the reply itself would cost a
        // string per byte of every answer and copy decrypted data into the heap.
        let kind = reply.name();
        f(reply).ok_or_else(|| ClientError::Protocol(format!("unexpected reply to {name}: {kind}")))
    }

    pub(crate) fn done(&mut self, req: &Request) -> Result<()> {
        self.expect(req, |r| matches!(r, Reply::Done).then_some(()))
    }

    pub(crate) fn handle(&mut self, req: &Request) -> Result<u64> {
        self.expect(req, |r| match r {
            Reply::Handle(h) => Some(h),
            _ => None,
        })
    }

    pub(crate) fn bytes(&mut self, req: &Request) -> Result<Vec<u8>> {
        self.expect(req, |r| match r {
            Reply::Bytes(b) => Some(b),
            _ => None,
        })
    }

    pub(crate) fn secret(&mut self, req: &Request) -> Result<SecretBytes> {
        self.expect(req, |r| match r {
            Reply::Secret(b) => Some(b),
            _ => None,
        })
    }
}
