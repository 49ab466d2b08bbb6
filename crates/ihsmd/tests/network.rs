//! Network mode: the same protocol over TCP with mutual TLS 1.3, client
//! certificates mapped to partitions in the measured security configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::certs::{ca, leaf};
use common::*;
use ihsm_client::{Client, ClientError};
use ihsm_proto::ErrorCode;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::msg::Endpoint;
use ihsm_proto::types::UserType;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn mutual_tls_clients_reach_only_their_mapped_partition() {
    let dir = state_dir();
    let s = dir.path();
    let net = s.join("network");
    std::fs::create_dir_all(&net).unwrap();
    let authority = ca("ihsm test CA");
    let (server_pem, server_key, _) = leaf(&authority, &["localhost", "127.0.0.1"], false);
    write(&net, "server.pem", &server_pem);
    write(&net, "server.key", &server_key);
    let ca_pem = write(&net, "client-ca.pem", &authority.pem());
    let (a_pem, a_key, a_der) = leaf(&authority, &["tenant-a"], true);
    let (b_pem, b_key, _) = leaf(&authority, &["stranger"], true);
    let other = ca("another CA");
    let (c_pem, c_key, _) = leaf(&other, &["forged"], true);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let fingerprint = hex::encode(ihsm_crypto::hash::sha256(&a_der));
    let security = ihsm_rot::config::DEFAULT_SECURITY_CONFIG.replace(
        "enabled = false",
        &format!(
            "enabled = true\nlisten = \"{addr}\"\ncertificate = \"network/server.pem\"\nkey = \"network/server.key\"\nclient_ca = \"network/client-ca.pem\"\n[[network.client]]\nfingerprint = \"{fingerprint}\"\npartition = \"net\"\n"
        ),
    );
    std::fs::write(s.join("security.toml"), security).unwrap();
    let d = Daemon::start(s);
    d.partition("net");
    assert_eq!(
        d.admin().status().unwrap().network.as_deref(),
        Some(addr.as_str())
    );

    let files = tempfile::tempdir().unwrap();
    let config = |pem: &str, key: &str| {
        Client::tls_config(
            &ca_pem,
            &write(files.path(), "c.pem", pem),
            &write(files.path(), "c.key", key),
        )
        .unwrap()
    };
    // The mapped client: its partition, over TLS, the whole protocol.
    let mut c = Client::connect_tls(&addr, "localhost", config(&a_pem, &a_key)).unwrap();
    assert!(matches!(c.endpoint(), Endpoint::Partition { name, .. } if name == "net"));
    let sess = c.open_session(true).unwrap();
    c.login(sess, UserType::User, USER_PIN).unwrap();
    let (pk, sk) = ec_pair(&mut c, sess, "over-tls");
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sig = c
        .sign_once(sess, mech.clone(), sk, b"remote".to_vec())
        .unwrap();
    c.sign_init(sess, mech, pk, true).unwrap();
    c.verify(sess, b"remote".to_vec(), sig).unwrap();
    let e = c.list_partitions().unwrap_err();
    assert_eq!(e.code(), ErrorCode::WrongEndpoint);
    // The same keys are on the local socket.
    let (mut local, ls) = d.tenant("net");
    assert_eq!(find_label(&mut local, ls, "over-tls").len(), 2);

    // A certificate of the right CA that maps to no partition: refused, named.
    let e = Client::connect_tls(&addr, "localhost", config(&b_pem, &b_key)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
    assert!(e.to_string().contains("not mapped"), "{e}");
    // A certificate of another CA: the handshake fails.
    let e = Client::connect_tls(&addr, "localhost", config(&c_pem, &c_key)).unwrap_err();
    assert!(matches!(e, ClientError::Tls(_) | ClientError::Io(_)), "{e}");
    // No client certificate at all: the handshake fails.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let anonymous = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let e = Client::connect_tls(&addr, "localhost", anonymous).unwrap_err();
    assert!(matches!(e, ClientError::Tls(_) | ClientError::Io(_)), "{e}");
    // And the client refuses a server whose certificate is not for the name it
    // dialled.
    let e = Client::connect_tls(&addr, "not-the-hsm.example", config(&a_pem, &a_key)).unwrap_err();
    assert!(matches!(e, ClientError::Tls(_) | ClientError::Io(_)), "{e}");
    // The daemon still serves the mapped client.
    c.ping().unwrap();
    assert!(d.stop().success());
}
