//! `--tls`: what a key in the HSM costs a TLS server. Debian's nginx, two worker
//! processes, serves TLS 1.3 with its private key in ihsm and in SoftHSM2 (both
//! through libp11's OpenSSL engine, `ssl_certificate_key "engine:pkcs11:..."`)
//! and in a PEM file, each on its own loopback port, all three running at once.
//! The load generator is this program: client threads that each make one new
//! TCP connection and one full TLS 1.3 handshake after another (rustls with
//! aws-lc-rs, X25519, session resumption off in the client and session tickets
//! and the session cache off in nginx, so every handshake makes the server
//! sign), timed from `connect` to the handshake's end. The targets are measured
//! run by run, A B C A B C ..., for EC P-256 and RSA-2048 keys; the report gives
//! handshakes per second, p50 and p99 handshake latency, and the ratios of ihsm
//! to the others in the same runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use rcgen::{
    CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, KeyPair, PublicKeyData,
    SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;

use crate::measure::{self, Bench, Op, Sample, Summary};
use crate::p11;
use crate::report::{Report, Row, Skip};
use crate::setup;
use crate::{Args, Error, Result};

/// nginx's worker processes, as in the set-up.
pub const WORKERS: usize = 2;
/// What the load generator is, for the report.
pub const LOAD_GENERATOR: &str = "ihsm-bench's own client threads: a new TCP connection and a full \
     TLS 1.3 handshake each time (rustls 0.23 with aws-lc-rs, X25519, resumption off; nginx with \
     ssl_session_tickets and ssl_session_cache off), timed from connect to the handshake's end";
/// Handshakes made on each target before measuring: enough that both workers
/// (connections spread over them by `reuseport`) have opened their sessions and
/// logged in after the fork, which their first handshake does.
const WARM_UP: usize = 16;
/// How long a handshake may take before the run fails (a server that hangs).
const IO_TIMEOUT: Duration = Duration::from_secs(20);

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The two server keys measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    EcP256,
    Rsa2048,
}

impl Kind {
    const ALL: [Self; 2] = [Self::EcP256, Self::Rsa2048];

    fn name(self) -> &'static str {
        match self {
            Self::EcP256 => "tls13-ec-p256",
            Self::Rsa2048 => "tls13-rsa2048",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::EcP256 => "ec-p256",
            Self::Rsa2048 => "rsa2048",
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Setup(format!("making a certificate: {e}"))
}

fn ck(what: &str) -> impl FnOnce(cryptoki::error::Error) -> Error + '_ {
    move |e| Error::Pkcs11(format!("{what}: {e}"))
}

/// nginx, where Debian puts it.
fn nginx_binary() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Setup("nginx is not installed (apt-get install nginx)".into()))
}

/// libp11's engine for OpenSSL 3.
fn engine() -> Result<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so",
        "/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .ok_or_else(|| {
        Error::Setup(
            "libp11's OpenSSL engine is not installed (apt-get install libengine-pkcs11-openssl)"
                .into(),
        )
    })
}

/// `nginx -v`'s answer.
fn nginx_version(nginx: &Path) -> String {
    Command::new(nginx)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

/// Percent-encodes what a PKCS#11 URI's attribute value may not hold as is.
fn uri_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A public key read out of a token, for the certificate the CA issues it.
struct TokenPublicKey {
    /// The subjectPublicKey bits: the EC point, or the DER RSAPublicKey.
    der: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for TokenPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// DER: a tag, a length and the content.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(u8::try_from(n).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of an unsigned big-endian number.
fn der_uint(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|&b| b == 0).collect();
    let mut v = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend(trimmed);
    der_tlv(0x02, &v)
}

/// A key pair made in a token for one server, destroyed at the end.
struct TokenKey<'m> {
    module: &'m p11::Module,
    label: String,
    handles: [ObjectHandle; 2],
    public: TokenPublicKey,
}

impl<'m> TokenKey<'m> {
    fn generate(module: &'m p11::Module, kind: Kind) -> Result<Self> {
        let s = module.session()?;
        let label = format!("ihsm-bench-tls-{}-{}", kind.short(), std::process::id());
        let id = label.as_bytes().to_vec();
        let common = |public: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Label(label.clone().into_bytes()),
                Attribute::Id(id.clone()),
                if public {
                    Attribute::Verify(true)
                } else {
                    Attribute::Sign(true)
                },
            ]
        };
        let mut public = common(true);
        let mut private = common(false);
        private.extend([Attribute::Sensitive(true), Attribute::Private(true)]);
        let mechanism = match kind {
            Kind::EcP256 => {
                public.push(Attribute::EcParams(P256.to_vec()));
                Mechanism::EccKeyPairGen
            }
            Kind::Rsa2048 => {
                public.extend([
                    Attribute::ModulusBits(2048.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                ]);
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (pk, sk) = s
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(ck("C_GenerateKeyPair"))?;
        let der = match kind {
            Kind::EcP256 => {
                let attrs = s
                    .get_attributes(pk, &[AttributeType::EcPoint])
                    .map_err(ck("C_GetAttributeValue"))?;
                let Some(Attribute::EcPoint(point)) = attrs.into_iter().next() else {
                    return Err(Error::Pkcs11("the public key has no CKA_EC_POINT".into()));
                };
                // CKA_EC_POINT is the point inside a DER OCTET STRING.
                match point.as_slice() {
                    [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
                    p if p.len() == 65 => p.to_vec(),
                    _ => {
                        return Err(Error::Pkcs11(format!(
                            "CKA_EC_POINT of {} bytes is not a P-256 point",
                            point.len()
                        )));
                    }
                }
            }
            Kind::Rsa2048 => {
                let attrs = s
                    .get_attributes(pk, &[AttributeType::Modulus, AttributeType::PublicExponent])
                    .map_err(ck("C_GetAttributeValue"))?;
                let (mut n, mut e) = (None, None);
                for a in attrs {
                    match a {
                        Attribute::Modulus(v) => n = Some(v),
                        Attribute::PublicExponent(v) => e = Some(v),
                        _ => {}
                    }
                }
                let (Some(n), Some(e)) = (n, e) else {
                    return Err(Error::Pkcs11(
                        "the public key lacks its modulus or exponent".into(),
                    ));
                };
                der_tlv(0x30, &[der_uint(&n), der_uint(&e)].concat())
            }
        };
        Ok(Self {
            module,
            label,
            handles: [pk, sk],
            public: TokenPublicKey {
                der,
                alg: kind.algorithm(),
            },
        })
    }
}

impl Drop for TokenKey<'_> {
    fn drop(&mut self) {
        if let Ok(s) = self.module.session() {
            for h in self.handles {
                let _ = s.destroy_object(h);
            }
        }
    }
}

/// An nginx of the harness's own in a temporary prefix; its process group gets
/// SIGTERM on drop, then SIGKILL for whatever is left (a worker blocked in a
/// wait does not answer SIGTERM).
struct Nginx {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The error log's lines that say something went wrong, the last few.
    fn errors(&self) -> String {
        let log = self.error_log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["[emerg]", "[alert]", "[crit]", "[error]"]
                    .iter()
                    .any(|w| l.contains(w))
                    || !l.starts_with(|c: char| c.is_ascii_digit())
            })
            .collect();
        let from = bad.len().saturating_sub(6);
        bad[from..].join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = i32::try_from(c.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(g) = group {
                let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
            }
            let _ = c.wait();
        }
    }
}

/// Where a server's key lives.
enum KeyPlace<'a> {
    /// In a token, through libp11's engine with this module.
    Token {
        module: &'a Path,
        token: String,
        label: String,
        pin: &'a str,
    },
    /// In a PEM file.
    File(String),
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts nginx serving `cert` with the key at `place`, and waits until it listens.
fn start_nginx(nginx: &Path, target: &str, cert_pem: &str, place: &KeyPlace<'_>) -> Result<Nginx> {
    let dir = tempfile::Builder::new()
        .prefix("ihsm-bench-nginx")
        .tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("cert.pem"), cert_pem)?;
    let (key, openssl) = match place {
        KeyPlace::Token {
            module,
            token,
            label,
            pin,
        } => (
            format!(
                "\"engine:pkcs11:pkcs11:token={};object={};type=private;pin-value={}\"",
                uri_value(token),
                uri_value(label),
                uri_value(pin)
            ),
            format!(
                "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n\
                 [engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n\
                 dynamic_path = {}\nMODULE_PATH = {}\ninit = 1\n",
                engine()?.display(),
                module.display()
            ),
        ),
        KeyPlace::File(pem) => {
            let path = d.join("key.pem");
            std::fs::write(&path, pem)?;
            (
                path.display().to_string(),
                "openssl_conf = openssl_init\n[openssl_init]\n".to_owned(),
            )
        }
    };
    std::fs::write(d.join("openssl.cnf"), openssl)?;
    let port = free_port()?;
    // As root, workers would become `nobody`; the benchmark measures the key's
    // place, not the principals, so they run as the harness's user.
    let user = if rustix::process::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}worker_processes {WORKERS};\n\
         error_log {dir}/error.log warn;\n\
         pid {dir}/nginx.pid;\n\
         env IHSM_STATE;\nenv IHSM_SOCKET;\nenv SOFTHSM2_CONF;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  server {{\n\
         listen 127.0.0.1:{port} ssl reuseport;\n\
         ssl_protocols TLSv1.3;\n\
         ssl_session_cache off;\n\
         ssl_session_tickets off;\n\
         ssl_certificate {dir}/cert.pem;\n\
         ssl_certificate_key {key};\n\
         location / {{ return 200 \"ihsm-bench tls {target}\\n\"; }}\n  }}\n}}\n",
        dir = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf)?;
    let out = std::fs::File::create(d.join("stderr.log"))?;
    let child = Command::new(nginx)
        .arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .arg("-e")
        .arg(d.join("error.log"))
        .args(["-g", "daemon off;"])
        .env("OPENSSL_CONF", d.join("openssl.cnf"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Setup(format!("cannot start {}: {e}", nginx.display())))?;
    let mut n = Nginx {
        dir,
        child: Some(child),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(n);
        }
        if let Some(c) = n.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            n.child = None;
            let stderr =
                std::fs::read_to_string(n.dir.path().join("stderr.log")).unwrap_or_default();
            return Err(Error::Setup(format!(
                "nginx for {target} exited ({status}):\n{}{}",
                stderr.trim(),
                n.errors()
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Setup(format!(
                "nginx for {target} did not listen on {port} in 30 s:\n{}",
                n.errors()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One target: a running nginx and the certificate it must present.
struct Target {
    name: String,
    nginx: Nginx,
    cert_der: Vec<u8>,
    client: Arc<rustls::ClientConfig>,
}

/// One full handshake on a new connection; the connection, to use or close.
fn handshake(
    client: &Arc<rustls::ClientConfig>,
    port: u16,
) -> Result<(TcpStream, rustls::ClientConnection)> {
    let io = |e: std::io::Error| Error::Setup(format!("TLS to 127.0.0.1:{port}: {e}"));
    let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
    sock.set_nodelay(true).map_err(io)?;
    sock.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    sock.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let name = ServerName::try_from("localhost").map_err(|e| Error::Setup(e.to_string()))?;
    let mut conn = rustls::ClientConnection::new(Arc::clone(client), name)
        .map_err(|e| Error::Setup(format!("TLS client: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(io)?;
    }
    // The client's Finished.
    while conn.wants_write() {
        conn.write_tls(&mut sock).map_err(io)?;
    }
    Ok((sock, conn))
}

impl Target {
    /// One request before measuring: the handshake works, the server presents
    /// the certificate made for it, and the body is nginx's; then the warm-up.
    fn probe(&self) -> Result<()> {
        let (mut sock, mut conn) = handshake(&self.client, self.nginx.port)?;
        let presented = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        if presented.as_deref() != Some(self.cert_der.as_slice()) {
            return Err(Error::Setup(format!(
                "{}: nginx presented another certificate",
                self.name
            )));
        }
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut body = Vec::new();
        match tls.read_to_end(&mut body) {
            Ok(_) => {}
            // nginx closes without close_notify after Connection: close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(Error::Io(e)),
        }
        let body = String::from_utf8_lossy(&body);
        let want = format!("ihsm-bench tls {}", self.name);
        if body.starts_with("HTTP/1.1 200") && body.contains(&want) {
            for _ in 0..WARM_UP {
                HandshakeOp { target: self }.once()?;
            }
            Ok(())
        } else {
            Err(Error::Setup(format!(
                "{}: unexpected answer: {body}",
                self.name
            )))
        }
    }
}

struct HandshakeOp<'a> {
    target: &'a Target,
}

impl Op for HandshakeOp<'_> {
    fn once(&mut self) -> Result<()> {
        let (mut sock, mut conn) =
            handshake(&self.target.client, self.target.nginx.port).map_err(|e| {
                Error::Setup(format!(
                    "{e}\nnginx's error log:\n{}",
                    self.target.nginx.errors()
                ))
            })?;
        conn.send_close_notify();
        let _ = conn.write_tls(&mut sock);
        Ok(())
    }
}

impl Bench for Target {
    fn name(&self) -> &str {
        &self.name
    }

    fn worker(&self, _index: usize) -> Result<Box<dyn Op + Send + '_>> {
        Ok(Box::new(HandshakeOp { target: self }))
    }
}

/// The client configuration: TLS 1.3 only, X25519 only (the key exchange is
/// the same for every target; rustls would also offer ML-KEM, which nginx's
/// OpenSSL 3.0 does not know), the test CA as the only root, no resumption.
fn client_config(ca_der: &[u8]) -> Result<Arc<rustls::ClientConfig>> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| Error::Setup(format!("the test CA: {e}")))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Setup(format!("TLS client: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

fn ca() -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "ihsm-bench TLS CA");
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().map_err(cert_err)?).map_err(cert_err)
}

/// A server certificate for `localhost` and 127.0.0.1 over `public`.
fn server_cert(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    public: &impl PublicKeyData,
) -> Result<rcgen::Certificate> {
    let mut p = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(cert_err)?;
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.signed_by(public, issuer).map_err(cert_err)
}

/// Notes in the report that `target` was not measured for `workload`, and why.
fn skip(report: &mut Report, workload: &str, target: &str, why: String) {
    eprintln!("{workload}: skipping {target}: {why}");
    report.skipped.push(Skip {
        workload: workload.to_owned(),
        target: target.to_owned(),
        why,
    });
}

/// What `--tls` measured, as `--json` writes it (a [`Report`] with the set-up).
#[derive(Debug, Serialize)]
pub struct TlsReport {
    #[serde(flatten)]
    pub report: Report,
    pub nginx: String,
    pub workers: usize,
    pub load_generator: String,
}

/// The modules whose tokens hold a server key: ihsm's (the first), and
/// SoftHSM2's when the harness made a token for it.
struct Modules {
    ihsm: (p11::Module, PathBuf),
    softhsm: Option<(p11::Module, PathBuf)>,
}

/// Runs the comparison with ihsm's module at `module`.
///
/// # Errors
/// When nginx, the engine or a token cannot be set up, or a handshake fails in
/// a target that worked at first.
pub fn run(args: &Args, module: &Path) -> Result<()> {
    let nginx = nginx_binary()?;
    engine()?;
    let own = std::env::var_os(crate::OWN_STATE).is_some();
    let ihsm = p11::Module::load("ihsm", module, &args.pin, args.token.as_deref(), own)?;
    let mut report = Report::new(args.duration, args.runs);
    // The harness's SoftHSM2 token (made by `rerun` when SoftHSM2 is installed).
    let softhsm = match (setup::softhsm_module(), std::env::var_os("SOFTHSM2_CONF")) {
        (Ok(path), Some(_)) => Some((
            p11::Module::load("softhsm2", &path, &args.pin, Some(setup::TOKEN), true)?,
            path,
        )),
        (Err(e), _) => {
            for k in Kind::ALL {
                skip(&mut report, k.name(), "softhsm2", e.to_string());
            }
            None
        }
        (Ok(_), None) => None,
    };
    let modules = Modules {
        ihsm: (ihsm, module.to_path_buf()),
        softhsm,
    };
    let issuer = ca()?;
    let client = client_config(issuer.der())?;
    for kind in Kind::ALL {
        let w = kind.name();
        eprintln!("{w}: starting nginx with the key in ihsm, SoftHSM2 and a file ...");
        let mut keys = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut token_modules: Vec<&(p11::Module, PathBuf)> = vec![&modules.ihsm];
        token_modules.extend(modules.softhsm.as_ref());
        for (m, path) in token_modules {
            let key = TokenKey::generate(m, kind)?;
            let cert = server_cert(&issuer, &key.public)?;
            let place = KeyPlace::Token {
                module: path,
                token: m.token_label()?,
                label: key.label.clone(),
                pin: &args.pin,
            };
            let started = start_nginx(&nginx, &m.name, &cert.pem(), &place).and_then(|n| {
                let t = Target {
                    name: m.name.clone(),
                    nginx: n,
                    cert_der: cert.der().to_vec(),
                    client: Arc::clone(&client),
                };
                t.probe().map(|()| t)
            });
            keys.push(key);
            match started {
                Ok(t) => targets.push(t),
                // ihsm must work; another module may fail this set-up, and the
                // report says how.
                Err(e) if m.name != "ihsm" => skip(&mut report, w, &m.name, e.to_string()),
                Err(e) => return Err(e),
            }
        }
        let file_key = KeyPair::generate_for(kind.algorithm()).map_err(cert_err)?;
        let cert = server_cert(&issuer, &file_key)?;
        let n = start_nginx(
            &nginx,
            "file",
            &cert.pem(),
            &KeyPlace::File(file_key.serialize_pem()),
        )?;
        let t = Target {
            name: "file".into(),
            nginx: n,
            cert_der: cert.der().to_vec(),
            client: Arc::clone(&client),
        };
        t.probe()?;
        targets.push(t);

        for &threads in &args.threads {
            let per_run = args.duration / u32::try_from(args.runs).unwrap_or(u32::MAX);
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); targets.len()];
            let bar = measure::bar(
                (args.runs * targets.len()) as u64,
                &format!("{w} x{threads}"),
            );
            for _ in 0..args.runs {
                for (t, s) in targets.iter().zip(samples.iter_mut()) {
                    let sample = measure::run(t, threads, per_run, args.iterations)
                        .map_err(|e| Error::Setup(format!("{}: {w}: {e}", t.name)))?;
                    s.push(sample);
                    bar.inc(1);
                }
            }
            bar.finish_and_clear();
            let summaries: Vec<Summary> = targets
                .iter()
                .zip(&samples)
                .map(|(t, s)| Summary::of(&t.name, s))
                .collect();
            let row = Row::named(w.to_owned(), threads, None, summaries);
            print_row(&row);
            report.rows.push(row);
        }
        drop(targets);
        drop(keys);
    }
    let nginx_v = nginx_version(&nginx);
    print_summary(&report, &nginx_v);
    let full = TlsReport {
        report,
        nginx: nginx_v,
        workers: WORKERS,
        load_generator: LOAD_GENERATOR.into(),
    };
    if let Some(p) = &args.json {
        crate::report::write_json(p, &full)?;
    }
    if let Some(p) = &args.plot {
        crate::report::plot(&full.report, p)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn print_row(row: &Row) {
    let plural = if row.threads == 1 { "" } else { "s" };
    println!(
        "\n{}, {} client thread{plural}, nginx with {WORKERS} workers",
        row.workload, row.threads
    );
    println!(
        "  {:<10} {:>14} {:>10} {:>10}",
        "key in", "handshakes/s", "p50 µs", "p99 µs"
    );
    for t in &row.targets {
        println!(
            "  {:<10} {:>14.1} {:>10.1} {:>10.1}",
            t.target, t.ops_per_sec, t.p50_us, t.p99_us
        );
    }
    let first = row.targets.first();
    for r in &row.ratios {
        let other = row.targets.iter().find(|t| t.target == r.b);
        let (p50, p99) = match (first, other) {
            (Some(a), Some(b)) => (a.p50_us / b.p50_us, a.p99_us / b.p99_us),
            _ => (f64::NAN, f64::NAN),
        };
        println!(
            "  {} / {}: handshakes/s {:.2}x (median of {} runs side by side; {:.2}–{:.2}), p50 {p50:.2}x, p99 {p99:.2}x",
            r.a,
            r.b,
            r.median,
            first.map_or(0, |t| t.runs.len()),
            r.min,
            r.max
        );
    }
}

fn print_summary(report: &Report, nginx: &str) {
    println!(
        "\n{} ({} cores, Linux {}); {nginx}, {WORKERS} workers, TLS 1.3 full handshakes on \
         loopback; {} s per target and client thread count in {} interleaved runs",
        report.machine.cpu,
        report.machine.cores,
        report.machine.kernel,
        report.duration_secs,
        report.runs
    );
    for row in &report.rows {
        for r in &row.ratios {
            println!(
                "  {:<14} x{:<2} {:>6} / {:<9} {:>6.2}x handshakes/s",
                row.workload, row.threads, r.a, r.b, r.median
            );
        }
    }
    for s in &report.skipped {
        println!("  {}: {} skipped: {}", s.workload, s.target, s.why);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn der_of_an_rsa_public_key() {
        // Leading zeros go; a high bit gets its zero byte.
        assert_eq!(der_uint(&[0, 0, 1, 0, 1]), [2, 3, 1, 0, 1]);
        assert_eq!(der_uint(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[]), [2, 1, 0]);
        let long = der_tlv(0x30, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn uri_values_are_escaped() {
        assert_eq!(uri_value("ihsm-bench_1.x~"), "ihsm-bench_1.x~");
        assert_eq!(uri_value("a;b=c d%"), "a%3Bb%3Dc%20d%25");
    }
}
