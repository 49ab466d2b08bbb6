//! `--topology`: the same ECDSA P-256 signature asked of ihsmd three ways, one
//! request at a time: over the local partition socket (the host HSM), over the
//! network mode with one kept mutual-TLS connection (a central HSM with a pooled
//! client), and with a fresh TLS handshake, session and login per request (how
//! many applications use a central HSM). As root, with the kernel's `netem`, the
//! daemon sits in a network namespace behind a veth pair with a data-centre
//! round trip added; otherwise the network is loopback, and the report says so.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use ihsm_client::Client;
use ihsm_proto::attr::Attribute;
use ihsm_proto::mech::{Hash, Mechanism};
use ihsm_proto::types::UserType;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::Serialize;

use crate::measure::{Sample, Summary, median, quantile_us};
use crate::report::{Machine, plot_latency};
use crate::setup::{self, Daemon, TOKEN};
use crate::{Args, Error, Result};

/// PBKDF2 iterations of the benchmark daemon's PINs: low, so the handshake per
/// request measures the network and TLS, not the PIN hash (the default, 100,000,
/// would add ~40 ms to each fresh connection's login).
const PIN_ITERATIONS: u32 = 1000;
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const HOST_IP: &str = "10.77.0.1";
const HSM_IP: &str = "10.77.0.2";

fn client(what: &str) -> impl FnOnce(ihsm_client::ClientError) -> Error + '_ {
    move |e| Error::Client(format!("{what}: {e}"))
}

fn cert(e: rcgen::Error) -> Error {
    Error::Setup(format!("making test certificates: {e}"))
}

/// A network namespace with the daemon's end of a veth pair, `netem` delaying
/// each direction by half the round trip; deleted on drop.
struct Netns {
    name: String,
    host_if: String,
}

/// Runs a system command; its error output if it fails.
fn command(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    command("ip", args)
}

/// netem delaying everything leaving `dev` (in namespace `netns`, if given).
fn tc(netns: Option<&str>, dev: &str, delay_us: u64) -> Result<(), String> {
    let delay = format!("{delay_us}us");
    let qdisc = [
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "netem",
        "delay",
        delay.as_str(),
    ];
    match netns {
        Some(ns) => ip(&[&["netns", "exec", ns, "tc"][..], &qdisc[..]].concat()),
        None => command("tc", &qdisc),
    }
}

impl Netns {
    fn new(rtt_us: u64) -> Result<Self, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root".into());
        }
        let pid = std::process::id();
        let ns = Self {
            name: format!("ihsmbench{pid}"),
            host_if: format!("ibh{pid}"),
        };
        let peer = format!("ibn{pid}");
        let (name, host) = (ns.name.as_str(), ns.host_if.as_str());
        ip(&["netns", "add", name])?;
        ip(&["link", "add", host, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", name])?;
        ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", host])?;
        ip(&["link", "set", host, "up"])?;
        ip(&[
            "netns",
            "exec",
            name,
            "ip",
            "addr",
            "add",
            &format!("{HSM_IP}/30"),
            "dev",
            &peer,
        ])?;
        ip(&["netns", "exec", name, "ip", "link", "set", &peer, "up"])?;
        ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"])?;
        tc(None, host, rtt_us / 2)?;
        tc(Some(name), &peer, rtt_us - rtt_us / 2)?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// One way of reaching the HSM.
#[derive(Debug, Serialize)]
pub struct Way {
    pub name: String,
    pub summary: Summary,
}

/// What `--topology` measured.
#[derive(Debug, Serialize)]
pub struct TopologyReport {
    pub machine: Machine,
    /// The round trip netem added, or none (loopback).
    pub added_rtt_us: Option<u64>,
    pub network: String,
    pub pin_iterations: u32,
    pub ways: Vec<Way>,
    /// p50 of each central way over the local p50.
    pub p50_ratios: Vec<(String, f64)>,
}

/// Runs the comparison.
///
/// # Errors
/// When the daemon cannot be set up or a request fails.
pub fn run(args: &Args) -> Result<()> {
    let binary = setup::ihsmd_binary(args.ihsmd.as_deref())?;
    let netns = match Netns::new(args.rtt_us) {
        Ok(n) => Some(n),
        Err(why) => {
            eprintln!(
                "no emulated network ({why}): measuring over loopback only, so both central \
                 cases lack the data-centre round trip a real network adds"
            );
            None
        }
    };
    let (addr, wrapper) = match &netns {
        Some(n) => (
            format!("{HSM_IP}:7443"),
            vec!["ip", "netns", "exec", n.name.as_str()],
        ),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            (format!("127.0.0.1:{port}"), Vec::new())
        }
    };
    let network = match &netns {
        Some(_) => format!(
            "veth pair into a network namespace, netem {} µs round trip",
            args.rtt_us
        ),
        None => "loopback (no netem)".into(),
    };

    // A CA, the daemon's server certificate and one client certificate mapped to
    // the partition in security.toml.
    let authority = ca()?;
    let (server_pem, server_key, _) = leaf(&authority, &["localhost", HSM_IP, "127.0.0.1"], false)?;
    let (client_pem, client_key, client_der) = leaf(&authority, &["ihsm-bench"], true)?;
    let fingerprint = hex::encode(digest(&SHA256, &client_der));
    let security = ihsm_rot::config::DEFAULT_SECURITY_CONFIG.replace(
        "enabled = false",
        &format!(
            "enabled = true\nlisten = \"{addr}\"\ncertificate = \"network/server.pem\"\n\
             key = \"network/server.key\"\nclient_ca = \"network/client-ca.pem\"\n\
             [[network.client]]\nfingerprint = \"{fingerprint}\"\npartition = \"{TOKEN}\"\n"
        ),
    );
    let ca_pem = authority.pem();
    let config = format!("[daemon]\npin_iterations = {PIN_ITERATIONS}\n");
    let write_files = |dir: &Path| -> Result<()> {
        let net = dir.join("network");
        std::fs::create_dir_all(&net)?;
        std::fs::write(net.join("server.pem"), &server_pem)?;
        std::fs::write(net.join("server.key"), &server_key)?;
        std::fs::write(net.join("client-ca.pem"), &ca_pem)?;
        std::fs::write(net.join("client.pem"), &client_pem)?;
        std::fs::write(net.join("client.key"), &client_key)?;
        std::fs::write(dir.join("security.toml"), &security)?;
        Ok(())
    };
    eprintln!("starting ihsmd with network mode on {addr} ...");
    let daemon = Daemon::start(&binary, &args.pin, &config, write_files, &wrapper)?;
    let net = daemon.state().join("network");
    let tls = Client::tls_config(
        &net.join("client-ca.pem"),
        &net.join("client.pem"),
        &net.join("client.key"),
    )
    .map_err(client("TLS configuration"))?;
    let pin = args.pin.as_bytes();

    // The key, made once over the local socket.
    let socket = ihsm_proto::layout::partition_socket(daemon.state(), TOKEN);
    let mut local = Client::connect(&socket).map_err(client("local socket"))?;
    let ls = local.open_session(true).map_err(client("open session"))?;
    local
        .login(ls, UserType::User, pin)
        .map_err(client("login"))?;
    let (_, key) = local
        .generate_key_pair(
            ls,
            Mechanism::EcKeyPairGen,
            vec![
                Attribute::bytes(cryptoki_sys::CKA_EC_PARAMS, P256.to_vec()),
                Attribute::bool(cryptoki_sys::CKA_TOKEN, true),
            ],
            vec![Attribute::bool(cryptoki_sys::CKA_TOKEN, true)],
        )
        .map_err(client("key generation"))?;

    let mut pooled = Client::connect_tls(&addr, "localhost", Arc::clone(&tls))
        .map_err(client("TLS connection"))?;
    let ps = pooled.open_session(false).map_err(client("open session"))?;
    pooled
        .login(ps, UserType::User, pin)
        .map_err(client("login"))?;

    let data = [0x5au8; 32];
    let mech = Mechanism::EcdsaHash(Hash::Sha256);
    let sign = |c: &mut Client, s: u64| -> Result<()> {
        c.sign_once(s, mech.clone(), key, data.to_vec())
            .map(drop)
            .map_err(client("sign"))
    };
    let fresh = || -> Result<()> {
        let mut c = Client::connect_tls(&addr, "localhost", Arc::clone(&tls))
            .map_err(client("TLS connection"))?;
        let s = c.open_session(false).map_err(client("open session"))?;
        c.login(s, UserType::User, pin).map_err(client("login"))?;
        sign(&mut c, s)
    };

    // Interleaved runs: local, pooled, fresh, local, ...
    let names = [
        "host HSM: local partition socket",
        "central HSM: pooled mutual TLS",
        "central HSM: TLS handshake per request",
    ];
    let per_run = args.duration / u32::try_from(args.runs).unwrap_or(u32::MAX);
    let mut samples: [Vec<Sample>; 3] = Default::default();
    let bar = crate::measure::bar((args.runs * 3) as u64, "topology");
    for _ in 0..args.runs {
        samples[0].push(timed(per_run, args.iterations, || sign(&mut local, ls))?);
        samples[1].push(timed(per_run, args.iterations, || sign(&mut pooled, ps))?);
        samples[2].push(timed(per_run, args.iterations, fresh)?);
        bar.inc(3);
    }
    bar.finish_and_clear();
    let ways: Vec<Way> = names
        .iter()
        .zip(&samples)
        .map(|(n, s)| Way {
            name: (*n).to_owned(),
            summary: Summary::of(n, s),
        })
        .collect();
    let local_p50 = ways[0].summary.p50_us;
    let p50_ratios = ways[1..]
        .iter()
        .map(|w| (w.name.clone(), w.summary.p50_us / local_p50))
        .collect();
    let report = TopologyReport {
        machine: Machine::this(),
        added_rtt_us: netns.as_ref().map(|_| args.rtt_us),
        network,
        pin_iterations: PIN_ITERATIONS,
        ways,
        p50_ratios,
    };
    print(&report, args.runs, &samples);
    if let Some(p) = &args.json {
        crate::report::write_json(p, &report)?;
    }
    if let Some(p) = &args.plot {
        let series: Vec<(String, Vec<u64>)> = names
            .iter()
            .zip(&samples)
            .map(|(n, s)| {
                let mut all: Vec<u64> =
                    s.iter().flat_map(|x| x.latencies.iter().copied()).collect();
                all.sort_unstable();
                ((*n).to_owned(), all)
            })
            .collect();
        plot_latency(&series, p)?;
        eprintln!("wrote {}", p.display());
    }
    drop(daemon);
    drop(netns);
    Ok(())
}

fn print(r: &TopologyReport, runs: usize, samples: &[Vec<Sample>; 3]) {
    println!(
        "\nECDSA P-256 sign, one request at a time, {} ({}, PIN hashing {} iterations)",
        r.machine.cpu, r.network, r.pin_iterations
    );
    println!(
        "  {:<40} {:>10} {:>10} {:>10} {:>10}",
        "way", "ops/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for w in &r.ways {
        let s = &w.summary;
        println!(
            "  {:<40} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            w.name, s.ops_per_sec, s.p50_us, s.p99_us, s.p999_us
        );
    }
    for (i, (name, ratio)) in r.p50_ratios.iter().enumerate() {
        // The ratio of p50s run by run, to show its spread.
        let mut per_run: Vec<f64> = samples[i + 1]
            .iter()
            .zip(&samples[0])
            .map(|(c, l)| p50(c) / p50(l))
            .collect();
        println!(
            "  {name} / host: p50 {ratio:.1}x (per run: median {:.1}x over {runs} runs)",
            median(&mut per_run)
        );
    }
}

fn p50(s: &Sample) -> f64 {
    let mut v = s.latencies.clone();
    v.sort_unstable();
    quantile_us(&v, 0.5)
}

/// Calls `op` one request at a time for `d` (or `iterations` times).
fn timed(
    d: Duration,
    iterations: Option<u64>,
    mut op: impl FnMut() -> Result<()>,
) -> Result<Sample> {
    let mut s = Sample::default();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        op()?;
        let done = Instant::now();
        s.latencies
            .push(u64::try_from((done - t).as_nanos()).unwrap_or(u64::MAX));
        let enough = match iterations {
            Some(n) => s.latencies.len() as u64 >= n,
            None => done - start >= d,
        };
        if enough {
            s.ops = s.latencies.len() as u64;
            s.elapsed = done - start;
            return Ok(s);
        }
    }
}

fn ca() -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "ihsm-bench CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().map_err(cert)?).map_err(cert)
}

/// (certificate PEM, key PEM, certificate DER)
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    client: bool,
) -> Result<(String, String, Vec<u8>)> {
    let mut p = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .map_err(cert)?;
    p.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let k = KeyPair::generate().map_err(cert)?;
    let c = p.signed_by(&k, issuer).map_err(cert)?;
    Ok((c.pem(), k.serialize_pem(), c.der().to_vec()))
}
