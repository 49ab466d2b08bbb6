//! The verifier service (`ihsm-verify serve`): a challenge-response API in the
//! shape of Veraison's (`/challenge-response/v1/newSession`, then the evidence
//! posted to the session), answering with a signed EAR (docs/attestation.md, "The
//! verifier service").
//!
//! Everything is bounded: the request body ([`BODY_LIMIT`]), the number of
//! sessions ([`Config::max_sessions`]), a nonce's lifetime, one use per nonce, and
//! the appraisals running at once (one per CPU), the connections
//! ([`BoundedListener`]) and, with TLS ([`TlsListener`], [`load_tls`]), each
//! handshake. Without a certificate the service is plain HTTP, which is why the
//! binary then listens on loopback unless told otherwise.

use std::collections::HashMap;
use std::future::Future as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::appraise::{self, Appraisal, DeviceEvidence, KeyReportEvidence, Policy, TrustInputs};
use crate::chain::TrustAnchor;
use crate::ear::{self, EarSigner};
use crate::keyreport::{KeyPolicy, REPORT_DATA_LEN};
use crate::{MLDSA87_PUBLIC_LEN, P384_POINT_LEN};

/// The evidence media type the session accepts.
pub const EVIDENCE_MEDIA_TYPE: &str = "application/vnd.ihsm.evidence+json";
/// The media type of a session object.
pub const SESSION_MEDIA_TYPE: &str = "application/vnd.ihsm.challenge-response-session+json";
/// Largest request body read (larger: 413).
pub const BODY_LIMIT: usize = 256 * 1024;
/// Longest nonce lifetime a configuration may ask for.
pub const MAX_NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest EAR lifetime a configuration may ask for.
pub const MAX_EAR_LIFETIME: Duration = Duration::from_secs(600);
/// The nonce length: the quotes' (docs/quote.md).
pub const NONCE_LEN: usize = 32;
/// The default for [`Config::request_timeout`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connection is kept, idle or not ([`BoundedListener`]).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Longest a client may take over its TLS handshake ([`TlsListener`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The evidence fields: the eight chain certificates (DER or PEM), the quotes and
/// the PCR log; then the optional key report and its partition certificates.
const CERT_FIELDS: [[&str; 4]; 2] = [
    [
        "idevid_ecc384",
        "ldevid_ecc384",
        "fmc_alias_ecc384",
        "rt_alias_ecc384",
    ],
    [
        "idevid_mldsa87",
        "ldevid_mldsa87",
        "fmc_alias_mldsa87",
        "rt_alias_mldsa87",
    ],
];
const BLOB_FIELDS: [&str; 3] = ["quote_ecc384", "quote_mldsa87", "pcr_log"];
const KEY_REPORT_FIELDS: [&str; 3] = ["key_report", "partition_ecc384", "partition_mldsa87"];

/// Why the service could not be set up from its files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A file's content is not what its option needs.
    #[error("{option} {path}: {reason}")]
    Content {
        /// The option (`--anchor`...).
        option: &'static str,
        /// The file.
        path: String,
        /// What is wrong and what it must be.
        reason: String,
    },
}

/// What the service trusts and how it bounds its work.
#[derive(Debug)]
pub struct Config {
    /// The ECC P-384 chain's anchor (root certificate or pinned IDevID).
    pub anchor_ecc: TrustAnchor,
    /// The ML-DSA-87 chain's anchor.
    pub anchor_mldsa: TrustAnchor,
    /// The vendor's ECC P-384 public key (SEC1 point) for the reference values.
    pub vendor_ecc: Vec<u8>,
    /// The vendor's ML-DSA-87 public key.
    pub vendor_mldsa: Vec<u8>,
    /// The signed reference values.
    pub refvals: Vec<u8>,
    /// The key that signs EARs.
    pub signer: EarSigner,
    /// Whether a development (manufacturing-lifecycle) device may affirm.
    pub accept_development: bool,
    /// Most sessions held at once (waiting or answered, until their nonce expires).
    pub max_sessions: usize,
    /// How long a nonce may be answered (at most [`MAX_NONCE_LIFETIME`]).
    pub nonce_lifetime: Duration,
    /// How long an EAR is valid (at most [`MAX_EAR_LIFETIME`]).
    pub ear_lifetime: Duration,
    /// Longest a request may take, from its head read to its answer, the body
    /// included (else 408): [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
}

impl Config {
    /// The EAR policy id: the policy this service appraises under.
    #[must_use]
    pub fn policy_id(&self) -> &'static str {
        if self.accept_development {
            "ihsm/development"
        } else {
            "ihsm/production"
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn content(option: &'static str, path: &Path, reason: impl Into<String>) -> LoadError {
    LoadError::Content {
        option,
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The DER certificates of PEM bytes (`CERTIFICATE` blocks), or the bytes
/// themselves when they are not PEM.
fn certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !bytes.trim_ascii_start().starts_with(b"-----") {
        return Ok(vec![bytes.to_vec()]);
    }
    let blocks = pem::parse_many(bytes).map_err(|e| format!("not PEM: {e}"))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect())
}

/// Reads `--anchor`: one PEM file with two certificates, the ECC P-384 anchor then
/// the ML-DSA-87 one (as `ihsm verify evidence` reads it).
///
/// # Errors
/// [`LoadError`] naming the file and what it must hold.
pub fn load_anchors(path: &Path) -> Result<(TrustAnchor, TrustAnchor), LoadError> {
    const OPT: &str = "--anchor";
    let certs = certificates(&read(path)?).map_err(|e| content(OPT, path, e))?;
    let [ecc, mldsa] = <[Vec<u8>; 2]>::try_from(certs).map_err(|v| {
        content(
            OPT,
            path,
            format!(
                "holds {} certificates: it must hold two, the ECC P-384 anchor then the ML-DSA-87 one",
                v.len()
            ),
        )
    })?;
    let anchor = |der: &[u8], which: &str| {
        TrustAnchor::from_der(der)
            .map_err(|e| content(OPT, path, format!("the {which} anchor: {e}")))
    };
    Ok((anchor(&ecc, "ECC P-384")?, anchor(&mldsa, "ML-DSA-87")?))
}

/// Reads a vendor public key: raw, `len` bytes (97 for the SEC1 P-384 point, 2592
/// for ML-DSA-87).
///
/// # Errors
/// [`LoadError`] when unreadable or not `len` bytes.
pub fn load_vendor_key(
    option: &'static str,
    path: &Path,
    len: usize,
) -> Result<Vec<u8>, LoadError> {
    let key = read(path)?;
    if key.len() != len {
        return Err(content(
            option,
            path,
            format!("{} bytes: the raw public key is {len} bytes", key.len()),
        ));
    }
    Ok(key)
}

/// Reads the vendor's ECC P-384 key ([`load_vendor_key`] of 97 bytes).
///
/// # Errors
/// [`LoadError`].
pub fn load_vendor_ecc(path: &Path) -> Result<Vec<u8>, LoadError> {
    load_vendor_key("--vendor-ecc", path, P384_POINT_LEN)
}

/// Reads the vendor's ML-DSA-87 key ([`load_vendor_key`] of 2592 bytes).
///
/// # Errors
/// [`LoadError`].
pub fn load_vendor_mldsa(path: &Path) -> Result<Vec<u8>, LoadError> {
    load_vendor_key("--vendor-mldsa", path, MLDSA87_PUBLIC_LEN)
}

/// Reads `--key`: the verifier's ECC P-384 PKCS#8 private key, PEM (`PRIVATE
/// KEY`, as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`
/// writes it) or DER. The buffers holding it are wiped.
///
/// # Errors
/// [`LoadError`], never with the key's bytes.
pub fn load_signer(path: &Path) -> Result<EarSigner, LoadError> {
    const OPT: &str = "--key";
    let file = Zeroizing::new(read(path)?);
    let mut buf = Zeroizing::new(vec![0u8; file.len()]);
    let der: &[u8] = if file.trim_ascii_start().starts_with(b"-----") {
        let (label, der) = pem_rfc7468::decode(file.trim_ascii(), &mut buf)
            .map_err(|e| content(OPT, path, format!("not PEM: {e}")))?;
        if label != "PRIVATE KEY" {
            return Err(content(
                OPT,
                path,
                format!("a PEM `{label}`: it must be a PKCS#8 `PRIVATE KEY`"),
            ));
        }
        der
    } else {
        &file
    };
    EarSigner::from_pkcs8(der).map_err(|e| content(OPT, path, e.to_string()))
}

/// Reads `--tls-cert` (a PEM chain, the service's certificate first) and
/// `--tls-key` (its PEM private key: PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`
/// or PKCS#1 `RSA PRIVATE KEY`) into the service's TLS configuration: TLS 1.3 and
/// 1.2 (rustls on aws-lc-rs), ALPN `http/1.1`, no client certificates. The
/// buffer holding the key file is wiped.
///
/// # Errors
/// [`LoadError`] naming the file and what it must hold (a key that is not the
/// certificate's included), never with the key's bytes.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, LoadError> {
    use rustls_pki_types::pem::{self, PemObject as _};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    const CERT: &str = "--tls-cert";
    const KEY: &str = "--tls-key";

    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            content(
                CERT,
                cert,
                format!("not a PEM certificate chain ({e}): it must hold `CERTIFICATE` blocks, the service's own first"),
            )
        })?;
    if chain.is_empty() {
        return Err(content(
            CERT,
            cert,
            "holds no PEM `CERTIFICATE`: it must hold the service's certificate chain, its own first",
        ));
    }
    let file = Zeroizing::new(read(key)?);
    // The PEM error is not repeated: it could quote the key's text.
    let der = PrivateKeyDer::from_pem_slice(&file).map_err(|e| {
        let what = match e {
            pem::Error::NoItemsFound => "holds no PEM private key",
            _ => "is not a readable PEM private key",
        };
        content(
            KEY,
            key,
            format!("{what}: it must be a PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(der.clone_key())
        .map_err(|_| {
            content(
                KEY,
                key,
                "an unusable private key: it must be an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key",
            )
        })?;
    match rustls::sign::CertifiedKey::new(chain.clone(), signing).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(content(
                KEY,
                key,
                format!(
                    "is not the key of the first certificate in {}: give the private key of the service's own certificate",
                    cert.display()
                ),
            ));
        }
        Err(e) => {
            return Err(content(
                CERT,
                cert,
                format!(
                    "the first certificate is unusable ({e}): it must be the service's X.509 certificate"
                ),
            ));
        }
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| content(CERT, cert, format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, der)
        .map_err(|e| content(CERT, cert, format!("with {}: {e}", key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug, Clone)]
enum Status {
    Waiting,
    Processing,
    Complete { result: String, verdicts: Value },
    Failed { reason: String },
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Processing => "processing",
            Self::Complete { .. } => "complete",
            Self::Failed { .. } => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    nonce: [u8; NONCE_LEN],
    /// Monotonic: when the nonce may no longer be answered.
    deadline: Instant,
    /// The same, as Unix seconds, for the client.
    expiry: i64,
    status: Status,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("nonce".into(), json!(STANDARD.encode(self.nonce)));
        m.insert("expiry".into(), json!(rfc3339(self.expiry)));
        m.insert("accept".into(), json!([EVIDENCE_MEDIA_TYPE]));
        m.insert("status".into(), json!(self.status.name()));
        match &self.status {
            Status::Complete { result, verdicts } => {
                m.insert("result".into(), json!(result));
                m.insert("verdicts".into(), verdicts.clone());
            }
            Status::Failed { reason } => {
                m.insert("error".into(), json!(reason));
            }
            Status::Waiting | Status::Processing => {}
        }
        Value::Object(m)
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct Inner {
    config: Config,
    sessions: Mutex<HashMap<String, Session>>,
    appraisals: tokio::sync::Semaphore,
    rng: SystemRandom,
}

impl Inner {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave a session half-written (each
        // update is one assignment): the map is usable.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The service's shared state: the configuration and the sessions.
#[derive(Debug, Clone)]
pub struct ServiceState {
    inner: Arc<Inner>,
}

impl ServiceState {
    /// A service with no sessions. The lifetimes are capped at
    /// [`MAX_NONCE_LIFETIME`] and [`MAX_EAR_LIFETIME`], and `max_sessions` is at
    /// least 1.
    #[must_use]
    pub fn new(mut config: Config) -> Self {
        config.nonce_lifetime = config.nonce_lifetime.min(MAX_NONCE_LIFETIME);
        config.ear_lifetime = config.ear_lifetime.min(MAX_EAR_LIFETIME);
        config.max_sessions = config.max_sessions.max(1);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            inner: Arc::new(Inner {
                config,
                sessions: Mutex::new(HashMap::new()),
                appraisals: tokio::sync::Semaphore::new(cpus),
                rng: SystemRandom::new(),
            }),
        }
    }

    /// The verifier's public key (SEC1 point), which verifies its EARs.
    #[must_use]
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.config.signer.public_key()
    }

    /// The sessions held now (waiting or answered, not yet swept).
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.inner.sessions().len()
    }
}

/// The routes: `POST /challenge-response/v1/newSession`, `GET`, `POST` and
/// `DELETE /challenge-response/v1/session/{id}`, `GET
/// /.well-known/ihsm-verify/key`; every body at most [`BODY_LIMIT`] bytes.
pub fn router(state: ServiceState) -> Router {
    Router::new()
        .route("/challenge-response/v1/newSession", post(new_session))
        .route(
            "/challenge-response/v1/session/{id}",
            get(get_session).post(submit).delete(delete_session),
        )
        .route("/.well-known/ihsm-verify/key", get(public_key))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .with_state(state)
}

async fn request_timeout(
    State(s): State<ServiceState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = s.inner.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took over {} s: send the body at once",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A TCP listener that holds at most `max` connections at once (the next waits
/// to be accepted) and closes each after `lifetime`, whatever it is doing: a
/// client that opens connections and sends nothing cannot hold them.
#[derive(Debug)]
pub struct BoundedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    lifetime: Duration,
}

impl BoundedListener {
    /// Bounds `inner`: at most `max` (at least 1) connections, each at most
    /// `lifetime`.
    #[must_use]
    pub fn new(inner: tokio::net::TcpListener, max: usize, lifetime: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            lifetime,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // The semaphore is never closed; should it be, wait a little and retry.
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let _ = io.set_nodelay(true);
            let stream = BoundedStream {
                io,
                deadline: Box::pin(tokio::time::sleep(self.lifetime)),
                _permit: permit,
            };
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of a [`BoundedListener`]: its permit, and reads and writes that
/// fail once its lifetime is over.
#[derive(Debug)]
pub struct BoundedStream {
    io: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl BoundedStream {
    /// Ready(error) once the lifetime is over; otherwise registers the waker so
    /// an idle connection is woken (and closed) then.
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        self.deadline.as_mut().poll(cx).map(|()| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection's lifetime is over",
            )
        })
    }
}

impl tokio::io::AsyncRead for BoundedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let std::task::Poll::Ready(e) = self.expired(cx) {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let std::task::Poll::Ready(e) = self.expired(cx) {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A TLS stream of a [`TlsListener`].
pub type TlsStream = tokio_rustls::server::TlsStream<BoundedStream>;

/// TLS over a [`BoundedListener`]: each connection it accepts (and so holds a
/// place and has its lifetime) is handshaken on its own task, within
/// `handshake_timeout`, so that a slow or garbage handshake does not hold up
/// the others; axum is given the connections whose handshake succeeded. A failed
/// or timed-out handshake closes its connection and frees its place.
pub struct TlsListener {
    inner: BoundedListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    handshakes: tokio::task::JoinSet<Option<(TlsStream, std::net::SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("inner", &self.inner)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// TLS with `config` ([`load_tls`]) on `inner`, each handshake within
    /// `handshake_timeout` ([`HANDSHAKE_TIMEOUT`]).
    #[must_use]
    pub fn new(
        inner: BoundedListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout,
            handshakes: tokio::task::JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Both branches are cancel-safe: a connection accepted is handed to the
        // join set at once, and a finished handshake stays there until taken.
        loop {
            tokio::select! {
                (io, addr) = axum::serve::Listener::accept(&mut self.inner) => {
                    let acceptor = self.acceptor.clone();
                    let limit = self.handshake_timeout;
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(limit, acceptor.accept(io)).await {
                            Ok(Ok(tls)) => Some((tls, addr)),
                            Ok(Err(_)) | Err(_) => None,
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An error answer: the status and `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(json!({"error": self.message}))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn session_response(status: StatusCode, session: &Session, location: Option<&str>) -> Response {
    let mut r = (status, axum::Json(session.to_json())).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SESSION_MEDIA_TYPE),
    );
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert(header::LOCATION, l);
    }
    r
}

async fn new_session(State(s): State<ServiceState>) -> Result<Response, ApiError> {
    let inner = &s.inner;
    let mut nonce = [0u8; NONCE_LEN];
    let mut id = [0u8; 16];
    inner
        .rng
        .fill(&mut nonce)
        .and_then(|()| inner.rng.fill(&mut id))
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the random number generator failed",
            )
        })?;
    let id = hex::encode(id);
    let now = Instant::now();
    let lifetime = inner.config.nonce_lifetime;
    let session = Session {
        nonce,
        deadline: now + lifetime,
        expiry: unix_now().saturating_add(secs(lifetime)),
        status: Status::Waiting,
    };
    let mut sessions = inner.sessions();
    if sessions.len() >= inner.config.max_sessions {
        sessions.retain(|_, v| !v.expired(now));
    }
    if sessions.len() >= inner.config.max_sessions {
        let soonest = sessions
            .values()
            .map(|v| v.deadline.saturating_duration_since(now).as_secs() + 1)
            .min()
            .unwrap_or(1);
        return Err(ApiError {
            retry_after: Some(soonest),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} sessions are open, the most this verifier holds: retry when one expires",
                    sessions.len()
                ),
            )
        });
    }
    sessions.insert(id.clone(), session.clone());
    drop(sessions);
    Ok(session_response(
        StatusCode::CREATED,
        &session,
        Some(&format!("session/{id}")),
    ))
}

fn unknown() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such session")
}

/// The session, if known and not expired (an expired one is removed).
fn live_session(s: &ServiceState, id: &str) -> Result<Session, ApiError> {
    let mut sessions = s.inner.sessions();
    let session = sessions.get(id).cloned().ok_or_else(unknown)?;
    if session.expired(Instant::now()) {
        sessions.remove(id);
        return Err(ApiError::new(
            StatusCode::GONE,
            "the session's nonce expired: start a new session",
        ));
    }
    Ok(session)
}

async fn get_session(
    State(s): State<ServiceState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let session = live_session(&s, &id)?;
    Ok(session_response(StatusCode::OK, &session, None))
}

async fn delete_session(
    State(s): State<ServiceState>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    s.inner
        .sessions()
        .remove(&id)
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(unknown)
}

async fn public_key(State(s): State<ServiceState>) -> Response {
    let signer = &s.inner.config.signer;
    axum::Json(json!({
        "alg": "ES384",
        "jwk": signer.public_jwk(),
        "sec1": hex::encode(signer.public_key()),
    }))
    .into_response()
}

fn used() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "the session's nonce was already used: start a new session",
    )
}

async fn submit(
    State(s): State<ServiceState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Unknown, expired or used sessions first, whatever the body.
    if !matches!(live_session(&s, &id)?.status, Status::Waiting) {
        return Err(used());
    }
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media.is_some_and(|m| m.eq_ignore_ascii_case(EVIDENCE_MEDIA_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the evidence must be sent as Content-Type: {EVIDENCE_MEDIA_TYPE}"),
        ));
    }
    let submitted = Submitted::parse(&body)?;

    // Take the nonce: one use, checked again under the lock.
    let nonce = {
        let mut sessions = s.inner.sessions();
        let session = sessions.get_mut(&id).ok_or_else(unknown)?;
        if session.expired(Instant::now()) {
            return Err(ApiError::new(
                StatusCode::GONE,
                "the session's nonce expired: start a new session",
            ));
        }
        if !matches!(session.status, Status::Waiting) {
            return Err(used());
        }
        session.status = Status::Processing;
        session.nonce
    };

    // The appraisal and its record run on their own task: a client that goes away
    // (or a request that times out) still leaves the result in the session.
    tokio::spawn(appraise_and_record(s, id, submitted, nonce))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the appraisal failed"))?
}

async fn appraise_and_record(
    s: ServiceState,
    id: String,
    submitted: Submitted,
    nonce: [u8; NONCE_LEN],
) -> Result<Response, ApiError> {
    let outcome = appraise_bounded(&s, submitted, nonce).await;
    let mut sessions = s.inner.sessions();
    let Some(session) = sessions.get_mut(&id) else {
        // Deleted while it was appraised: answer anyway.
        return outcome.map(|(result, verdicts)| {
            axum::Json(json!({"status": "complete", "result": result, "verdicts": verdicts}))
                .into_response()
        });
    };
    match outcome {
        Ok((result, verdicts)) => {
            session.status = Status::Complete { result, verdicts };
            Ok(session_response(StatusCode::OK, session, None))
        }
        Err(e) => {
            session.status = Status::Failed {
                reason: e.message.clone(),
            };
            Err(e)
        }
    }
}

/// Runs the appraisal on a blocking thread, at most one per CPU at once.
async fn appraise_bounded(
    s: &ServiceState,
    submitted: Submitted,
    nonce: [u8; NONCE_LEN],
) -> Result<(String, Value), ApiError> {
    let internal = |what: &str| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what);
    let _permit = s
        .inner
        .appraisals
        .acquire()
        .await
        .map_err(|_| internal("the verifier is shutting down"))?;
    let inner = Arc::clone(&s.inner);
    tokio::task::spawn_blocking(move || appraise_evidence(&inner.config, &submitted, nonce))
        .await
        .map_err(|_| internal("the appraisal failed"))?
}

fn appraise_evidence(
    config: &Config,
    ev: &Submitted,
    nonce: [u8; NONCE_LEN],
) -> Result<(String, Value), ApiError> {
    let trust = TrustInputs {
        anchor_ecc: config.anchor_ecc.clone(),
        anchor_mldsa: config.anchor_mldsa.clone(),
        vendor_ecc: config.vendor_ecc.clone(),
        vendor_mldsa: config.vendor_mldsa.clone(),
        nonce,
    };
    let now = unix_now();
    let policy = Policy {
        now,
        accept_development: config.accept_development,
        key_policy: KeyPolicy::sign_only_generated(),
    };
    let mut a: Appraisal = appraise::appraise_device(&trust, &ev.device(&config.refvals), &policy);
    if let Some(kr) = &ev.key_report {
        // The key report answers the same challenge: report_data is the nonce,
        // zero-padded (as `ihsm verify evidence --key-report` expects).
        let mut report_data = [0u8; REPORT_DATA_LEN];
        report_data.iter_mut().zip(nonce).for_each(|(d, s)| *d = s);
        let kev = KeyReportEvidence {
            report: kr.report.clone(),
            ecc_partition_cert: kr.ecc_cert.clone(),
            mldsa_partition_cert: kr.mldsa_cert.clone(),
            report_data,
            partition_id: None,
            app_id: None,
        };
        appraise::appraise_key_report(&mut a, &kev, &policy);
    }
    let claims = ear::claims(
        &a,
        now,
        Some(now.saturating_add(secs(config.ear_lifetime))),
        config.policy_id(),
    );
    let token = ear::sign(&config.signer, &claims).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the EAR could not be signed",
        )
    })?;
    let verdicts: Vec<Value> = a
        .verdicts
        .iter()
        .map(|(check, v)| match v {
            Ok(()) => json!({"check": check.name(), "verdict": "affirmed", "reason": ""}),
            Err(e) => json!({"check": check.name(), "verdict": "refused", "reason": e.to_string()}),
        })
        .collect();
    Ok((token, Value::Array(verdicts)))
}

#[derive(Debug)]
struct SubmittedKeyReport {
    report: Vec<u8>,
    ecc_cert: Vec<u8>,
    mldsa_cert: Vec<u8>,
}

/// The evidence body, decoded.
#[derive(Debug)]
struct Submitted {
    ecc_chain: [Vec<u8>; 4],
    mldsa_chain: [Vec<u8>; 4],
    quote_ecc: Vec<u8>,
    quote_mldsa: Vec<u8>,
    pcr_log: Vec<u8>,
    key_report: Option<SubmittedKeyReport>,
}

/// Standard base64, padded or not.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The evidence body's parser alone, for the fuzz target (built with `--cfg
/// fuzzing` only): `Err` with the message a client would get.
///
/// # Errors
/// What the service answers 400 with.
#[cfg(fuzzing)]
pub fn fuzz_parse_body(body: &[u8]) -> Result<(), String> {
    Submitted::parse(body).map(|_| ()).map_err(|e| e.message)
}

impl Submitted {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(ApiError::bad(
                "the body must be a JSON object of base64 fields",
            ));
        };
        let known = |k: &str| {
            CERT_FIELDS.iter().flatten().any(|f| *f == k)
                || BLOB_FIELDS.contains(&k)
                || KEY_REPORT_FIELDS.contains(&k)
        };
        if let Some(k) = obj.keys().find(|k| !known(k)) {
            return Err(ApiError::bad(format!("unknown field `{k}`")));
        }
        let blob = |name: &str| -> Result<Option<Vec<u8>>, ApiError> {
            let Some(v) = obj.get(name) else {
                return Ok(None);
            };
            let s = v
                .as_str()
                .ok_or_else(|| ApiError::bad(format!("field `{name}` must be a base64 string")))?;
            let bytes = B64
                .decode(s)
                .map_err(|e| ApiError::bad(format!("field `{name}` is not base64: {e}")))?;
            if bytes.is_empty() {
                return Err(ApiError::bad(format!("field `{name}` is empty")));
            }
            Ok(Some(bytes))
        };
        let required = |name: &str| {
            blob(name)?.ok_or_else(|| ApiError::bad(format!("missing field `{name}`")))
        };
        let cert = |name: &str| -> Result<Vec<u8>, ApiError> {
            let mut certs = certificates(&required(name)?)
                .map_err(|e| ApiError::bad(format!("field `{name}`: {e}")))?;
            if certs.len() != 1 {
                return Err(ApiError::bad(format!(
                    "field `{name}` holds {} PEM certificates, not one",
                    certs.len()
                )));
            }
            Ok(certs.remove(0))
        };
        let chain = |names: &[&str; 4]| -> Result<[Vec<u8>; 4], ApiError> {
            Ok([
                cert(names[0])?,
                cert(names[1])?,
                cert(names[2])?,
                cert(names[3])?,
            ])
        };
        let [ecc_names, mldsa_names] = &CERT_FIELDS;
        let ecc_chain = chain(ecc_names)?;
        let mldsa_chain = chain(mldsa_names)?;
        let [quote_ecc, quote_mldsa, pcr_log] = BLOB_FIELDS.map(required);
        let [report, ecc_p, mldsa_p] = KEY_REPORT_FIELDS;
        let key_report = match blob(report)? {
            Some(report) => Some(SubmittedKeyReport {
                report,
                ecc_cert: cert(ecc_p)?,
                mldsa_cert: cert(mldsa_p)?,
            }),
            None => {
                if let Some(p) = [ecc_p, mldsa_p].into_iter().find(|p| obj.contains_key(*p)) {
                    return Err(ApiError::bad(format!(
                        "field `{p}` without `key_report`: a partition certificate comes with a key report"
                    )));
                }
                None
            }
        };
        Ok(Self {
            ecc_chain,
            mldsa_chain,
            quote_ecc: quote_ecc?,
            quote_mldsa: quote_mldsa?,
            pcr_log: pcr_log?,
            key_report,
        })
    }

    fn device(&self, refvals: &[u8]) -> DeviceEvidence {
        DeviceEvidence {
            ecc_chain: self.ecc_chain.clone(),
            mldsa_chain: self.mldsa_chain.clone(),
            quote_ecc: self.quote_ecc.clone(),
            quote_mldsa: self.quote_mldsa.clone(),
            pcr_log: self.pcr_log.clone(),
            refvals: refvals.to_vec(),
        }
    }
}
