//! `ihsm-verify serve`: the verifier as a challenge-response service
//! (docs/attestation.md, "The verifier service").
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ihsm_verify::service::{self, Config, ServiceState};

#[derive(Debug, Parser)]
#[command(name = "ihsm-verify", version, about = "The ihsm attestation verifier")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the challenge-response API: POST /challenge-response/v1/newSession
    /// for a nonce, then the evidence to the session, answered with a signed EAR.
    /// HTTPS with --tls-cert and --tls-key; plain HTTP otherwise, then on loopback
    /// unless --allow-remote.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7744")]
    listen: SocketAddr,
    /// Listen on a non-loopback address over plain HTTP (behind a TLS proxy).
    /// Not needed with --tls-cert.
    #[arg(long)]
    allow_remote: bool,
    /// Serve HTTPS with this certificate chain (PEM, the service's certificate
    /// first); needs --tls-key. TLS 1.3 and 1.2, ALPN http/1.1.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, SEC1 or PKCS#1); needs
    /// --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The trust anchors: a PEM file holding the ECC P-384 root (or pinned
    /// IDevID) certificate, then the ML-DSA-87 one.
    #[arg(long, value_name = "FILE")]
    anchor: PathBuf,
    /// The signed reference values (the vendor's envelope).
    #[arg(long, value_name = "FILE")]
    refvals: PathBuf,
    /// The vendor's ECC P-384 public key (raw SEC1 uncompressed point, 97 bytes).
    #[arg(long, value_name = "FILE")]
    vendor_ecc: PathBuf,
    /// The vendor's ML-DSA-87 public key (raw, 2592 bytes).
    #[arg(long, value_name = "FILE")]
    vendor_mldsa: PathBuf,
    /// The verifier's EAR signing key: ECC P-384 PKCS#8, PEM or DER (`openssl
    /// genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Accept a development (manufacturing-lifecycle) device.
    #[arg(long)]
    accept_development: bool,
    /// Most sessions held at once; newSession answers 503 beyond.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_sessions: u32,
    /// Most connections held at once, TLS handshakes included (the next waits);
    /// each is closed after 60 s, and a handshake not done in 10 s.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,
    /// Seconds a session's nonce may be answered.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    nonce_lifetime: u64,
    /// Seconds an EAR is valid (at most 600).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    ear_lifetime: u64,
}

/// An unusable start: the message says what and what to do.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Load(#[from] service::LoadError),
    #[error(
        "--listen {0} is not a loopback address: without --tls-cert and --tls-key the service is plain HTTP; give it a certificate, or pass --allow-remote (behind a TLS proxy), to listen there"
    )]
    Remote(SocketAddr),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
    #[error("the server failed: {0}")]
    Serve(String),
}

fn config(a: &ServeArgs) -> Result<Config, StartError> {
    let (anchor_ecc, anchor_mldsa) = service::load_anchors(&a.anchor)?;
    let refvals = std::fs::read(&a.refvals).map_err(|e| service::LoadError::Read {
        path: a.refvals.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Config {
        anchor_ecc,
        anchor_mldsa,
        vendor_ecc: service::load_vendor_ecc(&a.vendor_ecc)?,
        vendor_mldsa: service::load_vendor_mldsa(&a.vendor_mldsa)?,
        refvals,
        signer: service::load_signer(&a.key)?,
        accept_development: a.accept_development,
        max_sessions: usize::try_from(a.max_sessions).unwrap_or(usize::MAX),
        nonce_lifetime: Duration::from_secs(a.nonce_lifetime),
        ear_lifetime: Duration::from_secs(a.ear_lifetime),
        request_timeout: service::REQUEST_TIMEOUT,
    })
}

async fn shutdown() {
    let int = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = int => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = int.await;
    }
}

fn serve(a: &ServeArgs) -> Result<(), StartError> {
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(service::load_tls(cert, key)?),
        // clap requires both or neither.
        _ => None,
    };
    if tls.is_none() && !a.listen.ip().is_loopback() && !a.allow_remote {
        return Err(StartError::Remote(a.listen));
    }
    let state = ServiceState::new(config(a)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(a.listen)
                .await
                .map_err(|e| StartError::Bind {
                    addr: a.listen,
                    reason: e.to_string(),
                })?;
        let addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: a.listen,
            reason: e.to_string(),
        })?;
        // The one line on stdout: how and where it listens (tests read the port
        // from it).
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{addr}");
        eprintln!(
            "ihsm-verify: EAR key {} (GET /.well-known/ihsm-verify/key)",
            hex::encode(state.public_key())
        );
        let max = usize::try_from(a.max_connections).unwrap_or(usize::MAX);
        let listener = service::BoundedListener::new(listener, max, service::CONNECTION_LIFETIME);
        let app = service::router(state);
        match tls {
            Some(config) => {
                let listener =
                    service::TlsListener::new(listener, config, service::HANDSHAKE_TIMEOUT);
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown())
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown())
                    .await
            }
        }
        .map_err(|e| StartError::Serve(e.to_string()))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ihsm-verify: {e}");
            ExitCode::from(2)
        }
    }
}
