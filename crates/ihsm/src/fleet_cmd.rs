//! `ihsm fleet ...`: the fleet as this host sees it (through the admin socket),
//! and the trust bundle a fleet's hosts pin in `security.toml` (docs/fleet.md).

use std::path::PathBuf;

use clap::Subcommand;
use ihsm_fleet::TrustBundle;
use ihsm_rot::keyset::KeySet;
use ihsm_rot::state::StateDir;

use crate::{CliResult, Failure, admin, verify_cmd};

#[derive(Debug, Subcommand)]
pub(crate) enum FleetCommand {
    /// Every host registered in the fleet's etcd, each appraised by this host
    /// against its fleet policy: its verdict (and why not), UEID, SVN, partitions
    /// and load.
    Hosts {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// The fleet masking domain as this host holds it: its epoch, the epochs it
    /// keeps, who drew it, whom it evicts, and the epoch etcd names.
    Domain {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evict a host from the fleet masking domain: a new epoch, sealed to every
    /// other host this one accepts. Masked blobs made from now on do not import
    /// on the evicted host. Run it on a host that holds the current epoch.
    Evict {
        /// The host's fleet name (it need not be in the fleet now).
        host: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a fleet trust bundle (the anchors peers' chains must end in and the
    /// vendor keys that sign reference values) and print the `[fleet]` table of
    /// security.toml that pins it (bundle at `fleet/trust.pem`, reference values
    /// in `fleet/refvals/`).
    Trust {
        /// An anchor: a PEM file holding the ECC P-384 root (or pinned IDevID)
        /// certificate, then the ML-DSA-87 one. Repeatable.
        #[arg(long, value_name = "FILE")]
        anchor: Vec<PathBuf>,
        /// A device's pinned IDevIDs: a directory as `ihsm rot certs --out DIR`
        /// writes it (`idevid-ecc384.pem`, `idevid-mldsa87.pem`). Repeatable.
        #[arg(long, value_name = "DIR")]
        idevid: Vec<PathBuf>,
        /// A vendor key set whose key pair 0 signs reference values (`ihsm
        /// manifest refvals --vendor-keys`). Repeatable.
        #[arg(long, value_name = "DIR", required = true)]
        vendor_keys: Vec<PathBuf>,
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A development fleet: the printed lines accept development devices.
        #[arg(long)]
        development: bool,
    },
}

pub(crate) fn run(state: &StateDir, command: FleetCommand) -> CliResult {
    match command {
        FleetCommand::Hosts { json } => hosts(state, json),
        FleetCommand::Domain { json } => {
            let v = admin(state)?.fleet_domain()?;
            show_domain(&v, json)
        }
        FleetCommand::Evict { host, json } => {
            let v = admin(state)?.fleet_evict(&host)?;
            if !json {
                println!(
                    "evicted {host}: epoch {} sealed to [{}]",
                    v.epoch.unwrap_or(0),
                    v.sealed_to.join(", ")
                );
            }
            show_domain(&v, json)
        }
        FleetCommand::Trust {
            anchor,
            idevid,
            vendor_keys,
            out,
            development,
        } => trust(&anchor, &idevid, &vendor_keys, &out, development),
    }
}

fn show_domain(v: &ihsm_proto::msg::DomainView, json: bool) -> CliResult {
    if json {
        let j = serde_json::json!({
            "this_host": v.this_host,
            "epoch": v.epoch,
            "held": v.held,
            "issuer": v.issuer,
            "evicted": v.evicted,
            "fleet_epoch": v.fleet_epoch,
            "sealed_to": v.sealed_to,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&j).map_err(|e| Failure(e.to_string()))?
        );
        return Ok(());
    }
    let fleet = v.fleet_epoch.map_or_else(
        || "unknown (etcd did not answer)".to_owned(),
        |e| e.to_string(),
    );
    match v.epoch {
        None => println!(
            "{}: holds no fleet masking domain yet (the fleet's epoch: {fleet})",
            v.this_host
        ),
        Some(e) => {
            println!(
                "{}: epoch {e} (drawn by {}), keeps [{}], the fleet's epoch: {fleet}",
                v.this_host,
                v.issuer,
                v.held
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !v.evicted.is_empty() {
                println!("evicted: {}", v.evicted.join(", "));
            }
            // etcd's word only (it is trusted for nothing): a prompt to look.
            if let Some(f) = v.fleet_epoch.filter(|f| *f > e) {
                println!(
                    "behind: the fleet's epoch {f} is not held here (not sealed to this host yet, or this host was evicted)"
                );
            }
        }
    }
    Ok(())
}

fn hosts(state: &StateDir, json: bool) -> CliResult {
    let view = admin(state)?.fleet_hosts()?;
    if json {
        let hosts: Vec<serde_json::Value> = view
            .hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h.host,
                    "peer": h.peer,
                    "verdict": if h.affirmed { "affirmed" } else { "refused" },
                    "refusal": h.refusal,
                    "ueid": h.ueid,
                    "svn": h.svn,
                    "partitions": h.partitions,
                    "connections": h.connections,
                    "issued_at": h.issued_at,
                    "transfer_key_sha256": h.transfer_key_sha256,
                    "checks": h.checks.iter().map(|(c, ok)| serde_json::json!({"check": c, "affirmed": ok})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "this_host": view.this_host,
            "membership": view.membership,
            "hosts": hosts,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Failure(e.to_string()))?
        );
        return Ok(());
    }
    println!("this host: {} ({})", view.this_host, view.membership);
    if view.hosts.is_empty() {
        println!("no host is registered");
    }
    for h in &view.hosts {
        let me = if h.host == view.this_host {
            " (this host)"
        } else {
            ""
        };
        let verdict = if h.affirmed {
            "affirmed".to_owned()
        } else {
            format!("REFUSED: {}", h.refusal.as_deref().unwrap_or("?"))
        };
        println!(
            "{:<16} {:<22} {verdict}{me}",
            h.host,
            if h.peer.is_empty() { "-" } else { &h.peer }
        );
        if h.affirmed {
            println!(
                "{:<16} ueid {} svn {} partitions [{}] connections {}",
                "",
                h.ueid.as_deref().unwrap_or("-"),
                h.svn.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                h.partitions.join(", "),
                h.connections
            );
        }
    }
    Ok(())
}

fn trust(
    anchors: &[PathBuf],
    idevids: &[PathBuf],
    vendor_keys: &[PathBuf],
    out: &PathBuf,
    development: bool,
) -> CliResult {
    let mut b = TrustBundle::default();
    for path in anchors {
        let certs = verify_cmd::certificates(path)?;
        let [ecc, mldsa] = <[Vec<u8>; 2]>::try_from(certs).map_err(|v| {
            Failure(format!(
                "--anchor {} holds {} certificates: it must hold two, the ECC P-384 anchor then the ML-DSA-87 one",
                path.display(),
                v.len()
            ))
        })?;
        b.anchors.push((ecc, mldsa));
    }
    for dir in idevids {
        let one = |name: &str| verify_cmd::one_certificate(&dir.join(name));
        b.anchors
            .push((one("idevid-ecc384.pem")?, one("idevid-mldsa87.pem")?));
    }
    if b.anchors.is_empty() {
        return Err(Failure(
            "no anchor: give --anchor FILE or --idevid DIR at least once".into(),
        ));
    }
    for dir in vendor_keys {
        let k = KeySet::load(dir)?;
        let (Some(ecc), Some(mldsa)) = (k.ecc_public.first(), k.mldsa_public.first()) else {
            return Err(Failure(format!(
                "--vendor-keys {}: no key pair 0",
                dir.display()
            )));
        };
        b.vendors
            .push((ecc.as_bytes().to_vec(), mldsa.as_bytes().to_vec()));
    }
    let text = b.encode();
    // Read back as the daemon will: a bundle it would refuse is not written.
    TrustBundle::decode(text.as_bytes()).map_err(|e| Failure(e.to_string()))?;
    std::fs::write(out, &text)
        .map_err(|e| Failure(format!("cannot write {}: {e}", out.display())))?;
    // Standard output is the `[fleet]` table, ready to append to security.toml.
    eprintln!(
        "{} ({} anchors, {} vendors); append these lines to each host's security.toml",
        out.display(),
        b.anchors.len(),
        b.vendors.len()
    );
    println!();
    println!("[fleet]");
    println!("trust = \"fleet/trust.pem\"");
    println!(
        "trust_sha384 = \"{}\"",
        TrustBundle::digest(text.as_bytes())
    );
    println!("refvals = \"fleet/refvals\"");
    println!("accept_development = {development}");
    Ok(())
}
