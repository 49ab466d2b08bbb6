//! Network mode: the same protocol over TCP with mutual TLS 1.3 (rustls on
//! aws-lc-rs), for central HSMs beside host HSMs. A client certificate must chain
//! to the configured client CA and its SHA-256 fingerprint must be mapped to a
//! partition in the measured `security.toml`; that mapping is the authorization,
//! as a socket's owner is locally.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::server::{Daemon, Peer, Target};

/// How long a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The TLS server configuration of `[network]`.
///
/// # Errors
/// Unreadable or unusable certificates and keys, named.
pub(crate) fn server_config(
    net: &ihsm_rot::config::NetworkSection,
    root: &Path,
) -> Result<rustls::ServerConfig, String> {
    let path = |p: &Option<String>, key: &str| {
        p.as_ref()
            .map(|p| root.join(p))
            .ok_or_else(|| format!("network.{key} is required"))
    };
    let chain = load_certs(&path(&net.certificate, "certificate")?)?;
    let key_path = path(&net.key, "key")?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read the private key {}: {e}", key_path.display()))?;
    let mut roots = RootCertStore::empty();
    for c in load_certs(&path(&net.client_ca, "client_ca")?)? {
        roots
            .add(c)
            .map_err(|e| format!("network.client_ca: unusable CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| format!("network.client_ca: {e}"))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("network.certificate/network.key: {e}"))
}

/// Binds the network listener and starts accepting.
///
/// # Errors
/// Configuration and bind errors.
pub(crate) async fn listen(d: &Arc<Daemon>, root: &Path) -> Result<(), String> {
    let net = &d.security.network;
    let config = server_config(net, root)?;
    let mut clients: HashMap<[u8; 32], String> = HashMap::new();
    for c in &net.clients {
        let mut fp = [0u8; 32];
        hex::decode_to_slice(&c.fingerprint, &mut fp)
            .map_err(|_| "network.client.fingerprint: not 64 hex digits".to_owned())?;
        clients.insert(fp, c.partition.clone());
    }
    let addr = net.listen.clone().unwrap_or_default();
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (network.listen): {e}"))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let clients = Arc::new(clients);
    let d2 = Arc::clone(d);
    d.tracker.spawn(async move {
        let shutdown = d2.shutdown.clone();
        loop {
            let (tcp, from) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "network accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let clients = Arc::clone(&clients);
            let d3 = Arc::clone(&d2);
            d2.tracker.spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%from, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%from, "TLS handshake timed out");
                        return;
                    }
                };
                let fingerprint = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| ihsm_crypto::hash::sha256(c.as_ref()));
                let target = fingerprint
                    .and_then(|fp| clients.get(&fp).map(|name| (fp, name)))
                    .and_then(|(fp, name)| match d3.device.partition_by_name(name) {
                        Ok(p) => Some((fp, p)),
                        Err(_) => None,
                    });
                let (peer, target) = match target {
                    Some((_, p)) => {
                        let (uid, gid) = p.owner();
                        (
                            Peer {
                                uid,
                                gid,
                                pid: None,
                            },
                            Target::Partition(p.id()),
                        )
                    }
                    None => (
                        Peer {
                            uid: u32::MAX,
                            gid: u32::MAX,
                            pid: None,
                        },
                        Target::Unmapped(fingerprint.map(hex::encode).unwrap_or_default()),
                    ),
                };
                let stop = d3.shutdown.clone();
                d3.connection(tls, peer, target, stop).await;
            });
        }
    });
    tracing::info!(%addr, clients = net.clients.len(), "network mode: mutual TLS listener up");
    Ok(())
}
