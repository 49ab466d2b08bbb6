//! The verifier service under load on loopback: clients open a session, quote for
//! its nonce and post the evidence, as many as they can for a while; reported as
//! verifications per second with the p50 and p99 of the evidence round trip,
//! beside the same appraisal (and EAR) made in-process on as many threads, in the
//! same run.
//!
//! `cargo bench -p ihsm-verify --bench service [-- SECONDS CLIENTS] [--tls]` (default
//! 10 s, 2 clients). With `--tls` the service serves HTTPS (its `TlsListener`, an
//! rcgen ECDSA P-256 certificate) and each request is a new TLS 1.3 connection, its
//! full handshake included, as the plain run opens a TCP connection per request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Case;
use ihsm_rot::fuses::Lifecycle;
use ihsm_verify::ear::{self, EarSigner};
use ihsm_verify::service::{self, Config, EVIDENCE_MEDIA_TYPE, ServiceState};
use serde_json::{Map, Value, json};

fn signer() -> EarSigner {
    let k = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    EarSigner::from_pkcs8(k.as_ref()).unwrap()
}

/// Where the clients connect: plain TCP, or TLS with a client that trusts the
/// service's certificate.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Target {
    fn connect(&self) -> Box<dyn Stream> {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        match &self.tls {
            None => Box::new(s),
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
                Box::new(rustls::StreamOwned::new(conn, s))
            }
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status, the lower-cased
/// head and the body.
fn http(to: &Target, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = to.connect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {EVIDENCE_MEDIA_TYPE}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A TLS close without close_notify, after the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => panic!("{method} {path}: {e}"),
    }
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let mut body = out[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut b = &body[..];
        let mut plain = Vec::new();
        loop {
            let i = b.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&b[i + 2..i + 2 + n]);
            b = &b[i + 2 + n + 2..];
        }
        body = plain;
    }
    (status, head, body)
}

fn evidence(c: &Case) -> Vec<u8> {
    let mut m = Map::new();
    for (i, layer) in ["idevid", "ldevid", "fmc_alias", "rt_alias"]
        .iter()
        .enumerate()
    {
        m.insert(
            format!("{layer}_ecc384"),
            json!(STANDARD.encode(&c.evidence.ecc_chain[i])),
        );
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
    serde_json::to_vec(&m).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let tls = std::env::args().any(|a| a == "--tls");
    let case = Case::new(Lifecycle::Production);
    let config = Config {
        anchor_ecc: case.trust.anchor_ecc.clone(),
        anchor_mldsa: case.trust.anchor_mldsa.clone(),
        vendor_ecc: case.trust.vendor_ecc.clone(),
        vendor_mldsa: case.trust.vendor_mldsa.clone(),
        refvals: case.evidence.refvals.clone(),
        signer: signer(),
        accept_development: false,
        max_sessions: 4096,
        nonce_lifetime: Duration::from_secs(60),
        ear_lifetime: Duration::from_secs(300),
        request_timeout: service::REQUEST_TIMEOUT,
    };

    // The reference: the same appraisal and EAR in-process, on `clients` threads.
    let reference = {
        let trust = case.trust.clone();
        let ev = case.evidence.clone();
        let policy = case.policy.clone();
        let signer = Arc::new(signer());
        let until = Instant::now() + Duration::from_secs(secs);
        let done: usize = std::thread::scope(|s| {
            (0..clients)
                .map(|_| {
                    let (trust, ev, policy, signer) = (&trust, &ev, &policy, &signer);
                    s.spawn(move || {
                        let mut n = 0;
                        while Instant::now() < until {
                            let a = ihsm_verify::appraise::appraise_device(trust, ev, policy);
                            let claims = ear::claims(&a, 0, Some(300), "bench");
                            std::hint::black_box(ear::sign(signer, &claims).unwrap());
                            n += 1;
                        }
                        n
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum()
        });
        done as f64 / secs as f64
    };

    // The service, on its own two-thread runtime, as `ihsm-verify serve` runs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let target = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = service::BoundedListener::new(listener, 256, service::CONNECTION_LIFETIME);
        let app = service::router(ServiceState::new(config));
        if !tls {
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            return Target { addr, tls: None };
        }
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let server = service::load_tls(&cert, &key).unwrap();
        let listener = service::TlsListener::new(listener, server, service::HANDSHAKE_TIMEOUT);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Target {
            addr,
            tls: Some(Arc::new(client)),
        }
    });
    let device = Mutex::new(case);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut latencies: Vec<Duration> = std::thread::scope(|s| {
        (0..clients)
            .map(|_| {
                let (device, target) = (&device, &target);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    while Instant::now() < until {
                        let (st, head, b) =
                            http(target, "POST", "/challenge-response/v1/newSession", b"");
                        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
                        let v: Value = serde_json::from_slice(&b).unwrap();
                        let id = head
                            .lines()
                            .find_map(|l| l.strip_prefix("location: session/"))
                            .map(|i| i.trim().to_owned());
                        let nonce: [u8; 32] = STANDARD
                            .decode(v["nonce"].as_str().unwrap())
                            .unwrap()
                            .try_into()
                            .unwrap();
                        let body = {
                            let mut c = device.lock().unwrap();
                            c.quote_for(&nonce);
                            evidence(&c)
                        };
                        let id = id.unwrap_or_else(|| panic!("no session id in {head}"));
                        let t = Instant::now();
                        let (st, _, b) = http(
                            target,
                            "POST",
                            &format!("/challenge-response/v1/session/{id}"),
                            &body,
                        );
                        lat.push(t.elapsed());
                        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
                        let r: Value = serde_json::from_slice(&b).unwrap();
                        assert!(r["result"].is_string(), "{r}");
                    }
                    lat
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    latencies.sort();
    let rate = latencies.len() as f64 / secs as f64;
    println!(
        "verifier service, {clients} clients, {secs} s on loopback, {}: {rate:.0} verifications/s, evidence round trip p50 {:.2} ms, p99 {:.2} ms",
        if tls {
            "HTTPS (a TLS 1.3 handshake per request)"
        } else {
            "plain HTTP"
        },
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "reference, the same appraisal and EAR in-process on {clients} threads: {reference:.0}/s (the service does {:.2}x of it, quoting included on the client side)",
        rate / reference
    );
}
