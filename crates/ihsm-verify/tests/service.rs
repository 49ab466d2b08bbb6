//! The verifier service over real HTTP on a real socket: genuine evidence for the
//! session's nonce affirms (the EAR verifies with the served key), evidence for
//! another nonce does not, every nonce answers once, and every bound holds; the
//! same over TLS, whose handshakes are bounded too. The client is HTTP/1.1
//! written by hand on a TCP stream (or a rustls stream over it); every test is
//! under a timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Case, Signer};
use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_crypto::mldsa::MlDsa87PublicKey;
use ihsm_rot::fuses::Lifecycle;
use ihsm_verify::ear::{self, EarSigner};
use ihsm_verify::keyreport::{self, AttestedKey, KeyReport, flags};
use ihsm_verify::service::{self, BODY_LIMIT, Config, EVIDENCE_MEDIA_TYPE, ServiceState};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs a test body under [`LIMIT`]: nothing hangs.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test did not finish within its time limit");
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn ear_key() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn config(c: &Case) -> Config {
    Config {
        anchor_ecc: c.trust.anchor_ecc.clone(),
        anchor_mldsa: c.trust.anchor_mldsa.clone(),
        vendor_ecc: c.trust.vendor_ecc.clone(),
        vendor_mldsa: c.trust.vendor_mldsa.clone(),
        refvals: c.evidence.refvals.clone(),
        signer: EarSigner::from_pkcs8(&ear_key()).unwrap(),
        accept_development: false,
        max_sessions: 1024,
        nonce_lifetime: Duration::from_secs(60),
        ear_lifetime: Duration::from_secs(300),
        request_timeout: service::REQUEST_TIMEOUT,
    }
}

/// Serves `config` on 127.0.0.1:0 for the rest of the test, through the
/// binary's listener bounds.
async fn start(config: Config) -> (SocketAddr, ServiceState) {
    let state = ServiceState::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = service::BoundedListener::new(listener, 64, service::CONNECTION_LIFETIME);
    let app = service::router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_string()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
}

/// A byte stream to the service: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Where a request goes: a plain address, or a [`Tls`] one.
trait Dial: Copy {
    fn addr(&self) -> SocketAddr;
    fn dial(&self) -> impl Future<Output = Box<dyn Io>> + Send;
}

impl Dial for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }

    async fn dial(&self) -> Box<dyn Io> {
        Box::new(TcpStream::connect(*self).await.unwrap())
    }
}

/// A TLS service: its address and a client that trusts its certificate.
#[derive(Clone)]
struct Tls {
    addr: SocketAddr,
    /// The service's certificate (DER).
    cert: Vec<u8>,
    connector: tokio_rustls::TlsConnector,
}

impl Tls {
    /// A client of `addr` trusting `cert` (DER) for `localhost`, with `versions`.
    fn new(
        addr: SocketAddr,
        cert: &[u8],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(cert.to_vec())).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            addr,
            cert: cert.to_vec(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// A TLS connection, its handshake done: the negotiated version and ALPN.
    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }
}

impl Dial for &Tls {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn dial(&self) -> Box<dyn Io> {
        Box::new(self.connect().await)
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`). The body is
/// written beside the read, so a server that answers before reading all of it
/// (413) is still heard.
async fn http<D: Dial>(
    to: D,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let addr = to.addr();
    let (mut rd, mut wr) = tokio::io::split(to.dial().await);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = content_type {
        head.push_str(&format!("Content-Type: {t}\r\n"));
    }
    head.push_str("\r\n");
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_ok() {
            let _ = wr.write_all(&body).await;
        }
        wr
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer (the server closed with the body unread).
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
    drop(writer.await);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head: {:?}", String::from_utf8_lossy(&raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if reply
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(&reply.body);
    }
    reply
}

async fn new_session<D: Dial>(addr: D) -> (String, [u8; 32]) {
    let r = http(
        addr,
        "POST",
        "/challenge-response/v1/newSession",
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let loc = r.header("location").unwrap();
    let id = loc.strip_prefix("session/").unwrap().to_string();
    let v = r.json();
    assert_eq!(v["status"], "waiting");
    assert_eq!(v["accept"], json!([EVIDENCE_MEDIA_TYPE]));
    assert!(v["expiry"].as_str().unwrap().ends_with('Z'), "{v}");
    let nonce: [u8; 32] = STANDARD
        .decode(v["nonce"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (id, nonce)
}

/// The evidence body: the ECC chain as PEM, the ML-DSA chain as DER (both are
/// accepted), the quotes and the log.
fn evidence(c: &Case) -> Map<String, Value> {
    let mut m = Map::new();
    let layers = ["idevid", "ldevid", "fmc_alias", "rt_alias"];
    for (i, layer) in layers.iter().enumerate() {
        let pem = pem::encode(&pem::Pem::new(
            "CERTIFICATE",
            c.evidence.ecc_chain[i].clone(),
        ));
        m.insert(format!("{layer}_ecc384"), json!(STANDARD.encode(pem)));
        m.insert(
            format!("{layer}_mldsa87"),
            json!(STANDARD.encode(&c.evidence.mldsa_chain[i])),
        );
    }
    m.insert(
        "quote_ecc384".into(),
        json!(STANDARD.encode(&c.evidence.quote_ecc)),
    );
    m.insert(
        "quote_mldsa87".into(),
        json!(STANDARD.encode(&c.evidence.quote_mldsa)),
    );
    m.insert(
        "pcr_log".into(),
        json!(STANDARD.encode(&c.evidence.pcr_log)),
    );
    m
}

async fn submit<D: Dial>(addr: D, id: &str, body: Vec<u8>) -> Reply {
    http(
        addr,
        "POST",
        &format!("/challenge-response/v1/session/{id}"),
        Some(EVIDENCE_MEDIA_TYPE),
        body,
    )
    .await
}

async fn submit_json<D: Dial>(addr: D, id: &str, m: &Map<String, Value>) -> Reply {
    submit(addr, id, serde_json::to_vec(m).unwrap()).await
}

async fn served_key<D: Dial>(addr: D) -> Vec<u8> {
    let r = http(addr, "GET", "/.well-known/ihsm-verify/key", None, vec![]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["alg"], "ES384");
    assert_eq!(v["jwk"]["kty"], "EC");
    assert_eq!(v["jwk"]["crv"], "P-384");
    let sec1 = hex::decode(v["sec1"].as_str().unwrap()).unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(v["jwk"]["x"].as_str().unwrap())
            .unwrap(),
        sec1[1..49]
    );
    sec1
}

/// The EAR of a complete answer, verified with the served key; its ihsm submodule.
async fn ear_of<D: Dial>(addr: D, r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["status"], "complete");
    let claims = ear::verify_ear(
        v["result"].as_str().unwrap(),
        &served_key(addr).await,
        now(),
    )
    .unwrap();
    let exp = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(exp, 300);
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_evidence_for_the_session_nonce_affirms_once() {
    bounded(async {
        let mut c = Case::new(Lifecycle::Production);
        let (addr, state) = start(config(&c)).await;
        assert_eq!(served_key(addr).await, state.public_key());
        let (id, nonce) = new_session(addr).await;
        c.quote_for(&nonce);
        let r = submit_json(addr, &id, &evidence(&c)).await;
        let claims = ear_of(addr, &r).await;
        assert_eq!(claims["eat_nonce"], URL_SAFE_NO_PAD.encode(nonce));
        let sub = &claims["submods"]["ihsm"];
        assert_eq!(sub["ear_status"], "affirming", "{sub}");
        assert_eq!(sub["ear_appraisal_policy_ids"], json!(["ihsm/production"]));
        assert_eq!(sub["ihsm_ueid"], URL_SAFE_NO_PAD.encode(c.rt.ueid()));
        let verdicts = r.json()["verdicts"].as_array().unwrap().clone();
        assert_eq!(verdicts.len(), 12);
        assert!(
            verdicts.iter().all(|v| v["verdict"] == "affirmed"),
            "{verdicts:?}"
        );

        // The session now shows its result.
        let g = http(
            addr,
            "GET",
            &format!("/challenge-response/v1/session/{id}"),
            None,
            vec![],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["status"], "complete");
        assert_eq!(g.json()["result"], r.json()["result"]);

        // The nonce answers once.
        let again = submit_json(addr, &id, &evidence(&c)).await;
        assert_eq!(again.status, 410);
        assert!(again.error().contains("already used"), "{}", again.error());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_for_another_nonce_is_contraindicated() {
    bounded(async {
        let mut c = Case::new(Lifecycle::Production);
        let (addr, _) = start(config(&c)).await;
        let (id, nonce) = new_session(addr).await;
        let mut other = nonce;
        other[31] ^= 1;
        c.quote_for(&other);
        let r = submit_json(addr, &id, &evidence(&c)).await;
        let claims = ear_of(addr, &r).await;
        // The EAR names the session's nonce, not the one the quotes carry.
        assert_eq!(claims["eat_nonce"], URL_SAFE_NO_PAD.encode(nonce));
        let sub = &claims["submods"]["ihsm"];
        assert_eq!(sub["ear_status"], "contraindicated");
        for q in ["quote-ecc384", "quote-mldsa87"] {
            assert_eq!(sub["ihsm_checks"][q]["status"], "contraindicated");
            assert_eq!(
                sub["ihsm_checks"][q]["reason"],
                "the quote's nonce is not the verifier's"
            );
        }
        let verdicts = r.json()["verdicts"].clone();
        let q = verdicts
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["check"] == "quote-ecc384")
            .unwrap();
        assert_eq!(q["verdict"], "refused");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_report_for_the_nonce_affirms_and_names_the_key() {
    bounded(async {
        const NAME: &str = "payments";
        let mut c = Case::new(Lifecycle::Production);
        let (addr, _) = start(config(&c)).await;
        let partition = Signer::new();
        let ecc_cert =
            c.rt.certify_partition_key(
                NAME,
                2,
                &EccP384PublicKey::from_sec1(&partition.ecc_public()).unwrap(),
            )
            .unwrap();
        let mldsa_cert =
            c.rt.certify_partition_mldsa_key(
                NAME,
                2,
                &MlDsa87PublicKey::from_bytes(&partition.mldsa_public()).unwrap(),
            )
            .unwrap();
        let key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let tcb = c.rt.tcb_fwids();
        let report = |report_data: [u8; 128]| KeyReport {
            public_key: AttestedKey::Ec2 {
                crv: 2,
                x: point[1..49].to_vec(),
                y: point[49..].to_vec(),
            },
            key_size: 384,
            flags: flags::GENERATED | flags::SIGN | flags::VERIFY,
            app_id: [0xab; 16],
            report_data,
            launch_id: [0x5a; 16],
            counter: 1,
            tcb,
            partition_name: NAME.into(),
            partition_id: 2,
            cka_id: b"sig-1".to_vec(),
            attributes_digest: keyreport::attributes_digest(&[(0, vec![0, 0, 0, 0, 0, 0, 0, 3])])
                .unwrap(),
            never_extractable: true,
            always_sensitive: true,
            local: true,
        };
        let with_report = |c: &Case, report_data: [u8; 128]| {
            let mut m = evidence(c);
            let sealed = partition.seal(&report(report_data).to_payload().unwrap());
            m.insert("key_report".into(), json!(STANDARD.encode(sealed)));
            m.insert("partition_ecc384".into(), json!(STANDARD.encode(&ecc_cert)));
            m.insert(
                "partition_mldsa87".into(),
                json!(STANDARD.encode(&mldsa_cert)),
            );
            m
        };

        // report_data: the session's nonce, zero-padded to 128 bytes.
        let (id, nonce) = new_session(addr).await;
        c.quote_for(&nonce);
        let mut rd = [0u8; 128];
        rd[..32].copy_from_slice(&nonce);
        let r = submit_json(addr, &id, &with_report(&c, rd)).await;
        let claims = ear_of(addr, &r).await;
        let sub = &claims["submods"]["ihsm"];
        assert_eq!(sub["ear_status"], "affirming", "{sub}");
        assert_eq!(sub["ihsm_checks"]["key-report"]["status"], "affirming");
        assert_eq!(sub["ihsm_partition"], json!({"name": NAME, "id": 2}));
        assert_eq!(
            sub["ihsm_attested_key"]["x"],
            URL_SAFE_NO_PAD.encode(&point[1..49])
        );

        // A report made for another challenge.
        let (id, nonce) = new_session(addr).await;
        c.quote_for(&nonce);
        let r = submit_json(addr, &id, &with_report(&c, rd)).await;
        let sub = ear_of(addr, &r).await["submods"]["ihsm"].clone();
        assert_eq!(sub["ear_status"], "contraindicated");
        assert_eq!(
            sub["ihsm_checks"]["key-report"]["reason"],
            "key report's report_data is not the verifier's"
        );
        assert_eq!(sub["ihsm_checks"]["quote-ecc384"]["status"], "affirming");

        // A partition certificate without a report.
        let (id, _) = new_session(addr).await;
        let mut m = evidence(&c);
        m.insert("partition_ecc384".into(), json!(STANDARD.encode(&ecc_cert)));
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("`partition_ecc384`"), "{}", r.error());
        // A report without its certificates.
        let mut m = with_report(&c, rd);
        m.remove("partition_mldsa87");
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), "missing field `partition_mldsa87`");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_expired_sessions_are_refused() {
    bounded(async {
        let c = Case::new(Lifecycle::Production);
        let (addr, _) = start(config(&c)).await;
        let path = "/challenge-response/v1/session/00112233445566778899aabbccddeeff";
        let r = http(addr, "GET", path, None, vec![]).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.error(), "no such session");
        let r = submit_json(addr, "00112233445566778899aabbccddeeff", &evidence(&c)).await;
        assert_eq!(r.status, 404);
        let r = http(addr, "DELETE", path, None, vec![]).await;
        assert_eq!(r.status, 404);
        let r = http(addr, "GET", "/challenge-response/v2/nothing", None, vec![]).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.error(), "no such endpoint");

        // A nonce lifetime of zero: every session has expired when it is answered.
        let mut cfg = config(&c);
        cfg.nonce_lifetime = Duration::ZERO;
        let (addr, state) = start(cfg).await;
        let (id, _) = new_session(addr).await;
        let r = submit_json(addr, &id, &evidence(&c)).await;
        assert_eq!(r.status, 410);
        assert!(r.error().contains("expired"), "{}", r.error());
        // And it was removed.
        assert_eq!(state.session_count(), 0);
        let r = submit_json(addr, &id, &evidence(&c)).await;
        assert_eq!(r.status, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_naming_the_field_and_keep_the_session() {
    bounded(async {
        let mut c = Case::new(Lifecycle::Production);
        let (addr, _) = start(config(&c)).await;
        let (id, nonce) = new_session(addr).await;

        // Over the limit: 413.
        let r = submit(addr, &id, vec![b' '; BODY_LIMIT + 1]).await;
        assert_eq!(r.status, 413);
        // Not JSON, not an object.
        let r = submit(addr, &id, b"{\"pcr_log\": ".to_vec()).await;
        assert_eq!(r.status, 400);
        assert!(
            r.error().starts_with("the body is not JSON"),
            "{}",
            r.error()
        );
        let r = submit(addr, &id, b"[1, 2]".to_vec()).await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("JSON object"), "{}", r.error());
        // A missing field, a bad base64 one, one that is not a string, an unknown one.
        let mut m = evidence(&c);
        m.remove("pcr_log");
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), "missing field `pcr_log`");
        let mut m = evidence(&c);
        m.insert("quote_mldsa87".into(), json!("not base64!"));
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert!(
            r.error().starts_with("field `quote_mldsa87` is not base64"),
            "{}",
            r.error()
        );
        let mut m = evidence(&c);
        m.insert("rt_alias_mldsa87".into(), json!(7));
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.error(),
            "field `rt_alias_mldsa87` must be a base64 string"
        );
        let mut m = evidence(&c);
        m.insert("quote".into(), json!(""));
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), "unknown field `quote`");
        // Two certificates where one belongs.
        let mut m = evidence(&c);
        let two = format!(
            "{}{}",
            pem::encode(&pem::Pem::new(
                "CERTIFICATE",
                c.evidence.ecc_chain[0].clone()
            )),
            pem::encode(&pem::Pem::new(
                "CERTIFICATE",
                c.evidence.ecc_chain[1].clone()
            ))
        );
        m.insert("idevid_ecc384".into(), json!(STANDARD.encode(two)));
        let r = submit_json(addr, &id, &m).await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("`idevid_ecc384`"), "{}", r.error());
        // Another media type.
        let r = http(
            addr,
            "POST",
            &format!("/challenge-response/v1/session/{id}"),
            Some("application/json"),
            serde_json::to_vec(&evidence(&c)).unwrap(),
        )
        .await;
        assert_eq!(r.status, 415);

        // None of these used the nonce: genuine evidence still affirms.
        c.quote_for(&nonce);
        let r = submit_json(addr, &id, &evidence(&c)).await;
        assert_eq!(
            ear_of(addr, &r).await["submods"]["ihsm"]["ear_status"],
            "affirming"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_sessions_than_the_maximum_are_refused() {
    bounded(async {
        let c = Case::new(Lifecycle::Production);
        let mut cfg = config(&c);
        cfg.max_sessions = 2;
        let (addr, state) = start(cfg).await;
        let (a, _) = new_session(addr).await;
        let (b, _) = new_session(addr).await;
        assert_ne!(a, b);
        let r = http(
            addr,
            "POST",
            "/challenge-response/v1/newSession",
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
        assert!(r.error().contains("2 sessions"), "{}", r.error());
        assert_eq!(state.session_count(), 2);
        // A session given up frees its place.
        let r = http(
            addr,
            "DELETE",
            &format!("/challenge-response/v1/session/{a}"),
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 204);
        new_session(addr).await;

        // Expired sessions are swept to make room.
        let mut cfg = config(&c);
        cfg.max_sessions = 1;
        cfg.nonce_lifetime = Duration::ZERO;
        let (addr, state) = start(cfg).await;
        for _ in 0..3 {
            new_session(addr).await;
            assert_eq!(state.session_count(), 1);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_and_an_idle_one_is_closed() {
    bounded(async {
        let c = Case::new(Lifecycle::Production);
        let serve = |lifetime: Duration| {
            let state = ServiceState::new(config(&c));
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let listener = service::BoundedListener::new(listener, 1, lifetime);
                let app = service::router(state);
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
                addr
            }
        };
        const KEY: &str = "/.well-known/ihsm-verify/key";

        // One connection that says nothing holds the only place: the next is not
        // served while it is open, and is once it closes.
        let addr = serve(Duration::from_secs(600)).await;
        let idle = TcpStream::connect(addr).await.unwrap();
        let next = tokio::spawn(http(addr, "GET", KEY, None, vec![]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!next.is_finished(), "a second connection was served");
        drop(idle);
        assert_eq!(next.await.unwrap().status, 200);

        // A connection's lifetime is bounded: the server closes an idle one, then
        // serves the next.
        let addr = serve(Duration::from_secs(1)).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let r = http(addr, "GET", KEY, None, vec![]).await;
        assert_eq!(r.status, 200);
        let mut buf = [0u8; 64];
        assert!(matches!(idle.read(&mut buf).await, Ok(0) | Err(_)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_come_times_out() {
    bounded(async {
        let c = Case::new(Lifecycle::Production);
        let mut cfg = config(&c);
        cfg.request_timeout = Duration::from_secs(1);
        let (addr, _) = start(cfg).await;
        let (id, _) = new_session(addr).await;
        // The head promises 100 bytes; none follow.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /challenge-response/v1/session/{id} HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: {EVIDENCE_MEDIA_TYPE}\r\nContent-Length: 100\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed without an answer");
            raw.extend_from_slice(&buf[..n]);
        }
        assert!(
            raw.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    })
    .await;
}

/// Kills the child when the test ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pkcs8_pem(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ear-key.pem");
    // openssl's own key when it is installed; aws-lc-rs's PKCS#8 otherwise.
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
        ])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", ear_key()));
        std::fs::write(&path, pem).unwrap();
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_from_its_files() {
    bounded(async {
        let mut c = Case::new(Lifecycle::Production);
        let dir = tempfile::tempdir().unwrap();
        let anchor = format!(
            "{}{}",
            pem::encode(&pem::Pem::new(
                "CERTIFICATE",
                c.evidence.ecc_chain[0].clone()
            )),
            pem::encode(&pem::Pem::new(
                "CERTIFICATE",
                c.evidence.mldsa_chain[0].clone()
            ))
        );
        let files = [
            ("anchor.pem", anchor.into_bytes()),
            ("refvals.cose", c.evidence.refvals.clone()),
            ("vendor-ecc.pub", c.trust.vendor_ecc.clone()),
            ("vendor-mldsa.pub", c.trust.vendor_mldsa.clone()),
        ];
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let key = pkcs8_pem(dir.path());
        let signer = service::load_signer(&key).unwrap();
        let bin = env!("CARGO_BIN_EXE_ihsm-verify");
        let args = |listen: &str, vendor_ecc: &str| {
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .args(["--listen", listen])
                .arg("--anchor")
                .arg(dir.path().join("anchor.pem"))
                .arg("--refvals")
                .arg(dir.path().join("refvals.cose"))
                .arg("--vendor-ecc")
                .arg(dir.path().join(vendor_ecc))
                .arg("--vendor-mldsa")
                .arg(dir.path().join("vendor-mldsa.pub"))
                .arg("--key")
                .arg(&key);
            cmd
        };

        // Not loopback without --allow-remote: refused before anything is read.
        let out = args("0.0.0.0:0", "vendor-ecc.pub").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--allow-remote"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A vendor key of the wrong length.
        let out = args("127.0.0.1:0", "vendor-mldsa.pub").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--vendor-ecc")
                && String::from_utf8_lossy(&out.stderr).contains("97 bytes"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut child = args("127.0.0.1:0", "vendor-ecc.pub")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let child = Reaper(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        assert_eq!(served_key(addr).await, signer.public_key());
        let (id, nonce) = new_session(addr).await;
        c.quote_for(&nonce);
        let r = submit_json(addr, &id, &evidence(&c)).await;
        assert_eq!(
            ear_of(addr, &r).await["submods"]["ihsm"]["ear_status"],
            "affirming"
        );
        drop(child);

        // TLS: both files or neither.
        let (cert, key) = tls_files(dir.path(), "tls");
        let (other_cert, _) = tls_files(dir.path(), "other");
        let out = args("127.0.0.1:0", "vendor-ecc.pub")
            .arg("--tls-cert")
            .arg(&cert)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A key that is not the certificate's: refused at start, naming the key.
        let out = args("127.0.0.1:0", "vendor-ecc.pub")
            .arg("--tls-cert")
            .arg(&other_cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--tls-key") && err.contains(&*key.to_string_lossy()),
            "{err}"
        );
        assert!(err.contains("is not the key of"), "{err}");

        // With a certificate it serves HTTPS, on any address without --allow-remote.
        let mut child = args("0.0.0.0:0", "vendor-ecc.pub")
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let child = Reaper(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let listen: SocketAddr = line
            .trim()
            .strip_prefix("listening on https://")
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        assert!(listen.ip().is_unspecified(), "{listen}");
        let addr = SocketAddr::from(([127, 0, 0, 1], listen.port()));
        let der = CertificateDer::from_pem_file(&cert).unwrap();
        let tls = Tls::new(addr, &der, rustls::DEFAULT_VERSIONS);
        assert_eq!(served_key(&tls).await, signer.public_key());
        let (id, nonce) = new_session(&tls).await;
        c.quote_for(&nonce);
        let r = submit_json(&tls, &id, &evidence(&c)).await;
        assert_eq!(
            ear_of(&tls, &r).await["submods"]["ihsm"]["ear_status"],
            "affirming"
        );
        drop(child);
    })
    .await;
}

/// A self-signed certificate for `localhost` and its PKCS#8 key, as PEM files
/// `NAME.crt` and `NAME.key` in `dir`.
fn tls_files(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Serves `config` over TLS on 127.0.0.1:0 for the rest of the test, through the
/// binary's listener bounds, with at most `max` connections and handshakes of at
/// most `handshake`; a client trusting its certificate.
async fn start_tls(config: Config, max: usize, handshake: Duration) -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_files(dir.path(), "service");
    let tls = service::load_tls(&cert, &key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = service::BoundedListener::new(listener, max, service::CONNECTION_LIFETIME);
    let listener = service::TlsListener::new(listener, tls, handshake);
    let app = service::router(ServiceState::new(config));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let der = CertificateDer::from_pem_file(&cert).unwrap();
    Tls::new(addr, &der, rustls::DEFAULT_VERSIONS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_genuine_evidence_affirms() {
    bounded(async {
        let mut c = Case::new(Lifecycle::Production);
        let tls = start_tls(config(&c), 64, service::HANDSHAKE_TIMEOUT).await;
        // TLS 1.3 by default, http/1.1 negotiated.
        let conn = tls.connect().await;
        let (_, session) = conn.get_ref();
        assert_eq!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        drop(conn);

        let key = served_key(&tls).await;
        let (id, nonce) = new_session(&tls).await;
        c.quote_for(&nonce);
        let r = submit_json(&tls, &id, &evidence(&c)).await;
        let claims = ear_of(&tls, &r).await;
        assert_eq!(claims["eat_nonce"], URL_SAFE_NO_PAD.encode(nonce));
        assert_eq!(claims["submods"]["ihsm"]["ear_status"], "affirming");
        let g = http(
            &tls,
            "GET",
            &format!("/challenge-response/v1/session/{id}"),
            None,
            vec![],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["result"], r.json()["result"]);

        // A TLS 1.2 client is served too.
        let tls12 = Tls::new(tls.addr, &tls.cert, &[&rustls::version::TLS12]);
        let conn = tls12.connect().await;
        assert_eq!(
            conn.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        drop(conn);
        assert_eq!(served_key(&tls12).await, key);
    })
    .await;
}

/// What the service says, until it closes, to `sent` on a new TCP connection.
async fn raw_exchange(addr: SocketAddr, sent: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(sent).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_refused_and_serving_goes_on() {
    bounded(async {
        let c = Case::new(Lifecycle::Production);
        let tls = start_tls(config(&c), 64, service::HANDSHAKE_TIMEOUT).await;
        let head = format!(
            "POST /challenge-response/v1/newSession HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            tls.addr
        );
        // The service closes (at most with a TLS alert): never an HTTP answer.
        let said = raw_exchange(tls.addr, head.as_bytes()).await;
        assert!(
            !said.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&said)
        );
        // Nor to garbage that looks like a handshake record.
        let said = raw_exchange(tls.addr, &[0x16, 0x03, 0x01, 0x00, 0x04, 1, 2, 3, 4]).await;
        assert!(!said.starts_with(b"HTTP/"), "{said:?}");
        // And it keeps serving.
        let r = http(
            &tls,
            "POST",
            "/challenge-response/v1/newSession",
            None,
            vec![],
        )
        .await;
        assert_eq!(r.status, 201);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_handshakes_does_not_stop_others() {
    bounded(async {
        let c = Case::new(Lifecycle::Production);
        const KEY: &str = "/.well-known/ihsm-verify/key";

        // Three places, a handshake timeout far beyond the test's: a silent
        // connection and one stalled in its ClientHello hold one place each
        // while their handshakes wait; a third client needs the next place, so
        // it is served only because handshakes run beside the accepting.
        let tls = start_tls(config(&c), 3, Duration::from_secs(600)).await;
        let silent = TcpStream::connect(tls.addr).await.unwrap();
        let mut stalled = TcpStream::connect(tls.addr).await.unwrap();
        stalled
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();
        let r = http(&tls, "GET", KEY, None, vec![]).await;
        assert_eq!(r.status, 200);
        let r = http(&tls, "GET", KEY, None, vec![]).await;
        assert_eq!(r.status, 200);
        drop((silent, stalled));

        // Handshakes count against the connection limit, and a handshake that
        // does not come in time frees its place: with one place, a silent
        // connection holds it until its handshake times out, then the next
        // client is served and the silent one has been closed.
        let tls = start_tls(config(&c), 1, Duration::from_secs(1)).await;
        let mut silent = TcpStream::connect(tls.addr).await.unwrap();
        let tls2 = tls.clone();
        let next = tokio::spawn(async move { http(&tls2, "GET", KEY, None, vec![]).await.status });
        let mut buf = [0u8; 64];
        assert!(matches!(silent.read(&mut buf).await, Ok(0) | Err(_)));
        assert_eq!(next.await.unwrap(), 200);
    })
    .await;
}

#[test]
fn unusable_tls_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_files(dir.path(), "a");
    let (other_cert, other_key) = tls_files(dir.path(), "b");
    assert!(service::load_tls(&cert, &key).is_ok());
    assert!(service::load_tls(&other_cert, &other_key).is_ok());
    let err = |cert: &std::path::Path, key: &std::path::Path| {
        service::load_tls(cert, key).unwrap_err().to_string()
    };

    // A key that is not the certificate's.
    let e = err(&cert, &other_key);
    assert!(e.starts_with("--tls-key "), "{e}");
    assert!(e.contains(&*other_key.to_string_lossy()), "{e}");
    assert!(
        e.contains("is not the key of the first certificate in"),
        "{e}"
    );
    assert!(e.contains(&*cert.to_string_lossy()), "{e}");

    // A file that is not there.
    let missing = dir.path().join("missing.pem");
    let e = err(&missing, &key);
    assert!(e.starts_with("cannot read "), "{e}");
    assert!(e.contains(&*missing.to_string_lossy()), "{e}");
    let e = err(&cert, &missing);
    assert!(e.contains(&*missing.to_string_lossy()), "{e}");

    // A certificate file with no certificate; the key given as the certificate.
    let e = err(&key, &key);
    assert!(e.starts_with("--tls-cert "), "{e}");
    assert!(e.contains("holds no PEM `CERTIFICATE`"), "{e}");
    // A key file with no key (the certificate given as the key).
    let e = err(&cert, &cert);
    assert!(e.starts_with("--tls-key "), "{e}");
    assert!(e.contains("holds no PEM private key"), "{e}");
    // A key whose PEM is damaged: named, its text not repeated.
    let broken = dir.path().join("broken.key");
    let text = std::fs::read_to_string(&key).unwrap();
    let cut = text.replace("-----END PRIVATE KEY-----", "");
    std::fs::write(&broken, &cut).unwrap();
    let e = err(&cert, &broken);
    assert!(e.starts_with("--tls-key "), "{e}");
    let body = cut.lines().nth(1).unwrap();
    assert!(!e.contains(body), "{e}");
    // A certificate that is not one.
    let bad = dir.path().join("bad.crt");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = err(&bad, &key);
    assert!(e.starts_with("--tls-cert "), "{e}");
    assert!(e.contains("unusable"), "{e}");
}
