//! This host in a fleet: its registration in etcd (`ihsm-fleet`'s membership,
//! with the device's own evidence) and the fleet view the admin socket serves.
//!
//! The fleet is optional and never in a request's path: a partition request is
//! served without consulting etcd, and an etcd that is gone leaves the host
//! serving what it holds (docs/fleet.md).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ihsm_fleet::registry::{self, Attester, MemberConfig, MemberState, Membership, Registry};
use ihsm_fleet::{AppraisalCache, Evidence, FleetPolicy, TrustBundle};
use ihsm_proto::msg::{FleetHost, FleetView};
use ihsm_proto::{ErrorCode, WireError};
use ihsm_rot::Alg;
use ihsm_rot::certs::Layer;
use ihsm_rot::mailbox::{self, cmd};

use super::Daemon;

/// How long a fleet view waits for etcd.
const VIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Most reference-value files read from the `[fleet] refvals` directory.
const MAX_REFVALS: usize = 64;

/// The running fleet membership.
pub(crate) struct Fleet {
    pub host: String,
    pub endpoints: Vec<String>,
    pub(super) trust: Trust,
    membership: Membership,
}

/// What the host trusts: the pinned bundle, read once at start, and the
/// reference values, read again for each appraisal so that a vendor's new
/// release is taken without a restart.
pub(super) struct Trust {
    bundle: TrustBundle,
    refvals: std::path::PathBuf,
    accept_development: bool,
    max_age: u64,
    /// The appraisals of peers' evidence, reused by the policies built in turn.
    appraisals: Arc<AppraisalCache>,
}

impl Trust {
    pub(super) fn policy(&self) -> Result<FleetPolicy, String> {
        let refvals = read_refvals(&self.refvals)?;
        let mut p = FleetPolicy::new(
            &self.bundle,
            &refvals,
            self.accept_development,
            self.max_age,
        )
        .map_err(|e| format!("security.toml [fleet]: {e}"))?;
        p.cache = Some(Arc::clone(&self.appraisals));
        Ok(p)
    }
}

/// Starts the membership when `[fleet]` names etcd endpoints.
///
/// # Errors
/// A configuration that cannot work: a missing host name or peer address, no
/// `[fleet]` in security.toml, a trust bundle that is not the pinned one,
/// reference values no vendor of it signed.
pub(crate) fn start(d: &Arc<Daemon>) -> Result<(), String> {
    let cfg = &d.config.fleet;
    if cfg.etcd_endpoints.is_empty() {
        return Ok(());
    }
    let host = cfg
        .host
        .clone()
        .ok_or("[fleet] host (or --fleet-host NAME) is required with etcd endpoints")?;
    let peer = cfg
        .peer_listen
        .clone()
        .ok_or("[fleet] peer_listen (or --fleet-peer ADDR) is required with etcd endpoints")?;
    let trust = load_trust(d)?;
    // Checked now, so that a bad file is named at start.
    let policy = trust.policy()?;
    let membership = Membership::start(
        MemberConfig {
            endpoints: cfg.etcd_endpoints.clone(),
            host: host.clone(),
            peer,
            ttl: Duration::from_secs(cfg.lease_ttl_secs),
            // Each refresh quotes (an audit entry each): a few times per evidence
            // age, at most once per lease period.
            refresh: Duration::from_secs((policy.max_age / 4).clamp(cfg.lease_ttl_secs, 3600)),
        },
        Arc::new(DeviceAttester(Arc::downgrade(d))),
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(%host, etcd = %cfg.etcd_endpoints.join(","), anchors = policy.anchors.len(), refvals = policy.refvals.len(), "fleet: joining");
    if policy.refvals.is_empty() {
        tracing::warn!(dir = %trust.refvals.display(), "fleet: no reference values yet; no peer is accepted until the vendor's are there");
    }
    let fleet = Fleet {
        host,
        endpoints: cfg.etcd_endpoints.clone(),
        trust,
        membership,
    };
    let peer = fleet_peer(d);
    d.fleet
        .set(fleet)
        .map_err(|_| "the fleet was started twice".to_owned())?;
    super::moves::start(d, &peer)
}

fn fleet_peer(d: &Daemon) -> String {
    d.config.fleet.peer_listen.clone().unwrap_or_default()
}

fn load_trust(d: &Daemon) -> Result<Trust, String> {
    let sec = d.security.fleet.as_ref().ok_or(
        "[fleet] etcd endpoints are set but security.toml has no [fleet]: say which peers this host trusts (docs/fleet.md)",
    )?;
    let root = &d.state_dir;
    let bundle_path = root.join(&sec.trust);
    let bundle = std::fs::read(&bundle_path).map_err(|e| {
        format!(
            "security.toml [fleet] trust: cannot read {}: {e}",
            bundle_path.display()
        )
    })?;
    let bundle = TrustBundle::pinned(&bundle, &sec.trust_sha384)
        .map_err(|e| format!("security.toml [fleet] ({}): {e}", bundle_path.display()))?;
    Ok(Trust {
        bundle,
        refvals: root.join(&sec.refvals),
        accept_development: sec.accept_development,
        max_age: sec.max_evidence_age_secs,
        appraisals: Arc::default(),
    })
}

/// Every regular file of the reference-values directory (or the one file); an
/// empty directory is no reference values (no peer is accepted yet).
fn read_refvals(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let err = |e: std::io::Error| {
        format!(
            "security.toml [fleet] refvals: cannot read {}: {e}",
            path.display()
        )
    };
    let mut files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    if files.len() > MAX_REFVALS {
        return Err(format!(
            "security.toml [fleet] refvals: {} holds {} files; at most {MAX_REFVALS} signed reference values (`ihsm manifest refvals`)",
            path.display(),
            files.len()
        ));
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::read(&f)
                .map(|b| (f.display().to_string(), b))
                .map_err(err)
        })
        .collect()
}

/// The device answering for the registry: quotes through its mailbox, chains,
/// the PCR log, and what it serves.
pub(super) struct DeviceAttester(pub(super) Weak<Daemon>);

impl DeviceAttester {
    fn var(d: &Daemon, command: u32) -> Result<Vec<u8>, String> {
        let resp = d
            .device
            .mailbox(command, &mailbox::request(command, &[]))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.name().to_owned())?;
        mailbox::var_data(&resp)
            .map(<[u8]>::to_vec)
            .map_err(|e| e.name().to_owned())
    }
}

impl Attester for DeviceAttester {
    fn evidence(&self, nonce: &[u8; 32]) -> Result<Evidence, String> {
        let d = self.0.upgrade().ok_or("the daemon is stopping")?;
        let chain = |alg| -> Result<[serde_bytes::ByteBuf; 4], String> {
            let mut out: [serde_bytes::ByteBuf; 4] = Default::default();
            for (slot, layer) in out.iter_mut().zip(Layer::ALL) {
                *slot =
                    serde_bytes::ByteBuf::from(Self::var(&d, mailbox::cert_command(layer, alg))?);
            }
            Ok(out)
        };
        let quote = |command| -> Result<Vec<u8>, String> {
            d.device
                .mailbox(command, &mailbox::request(command, nonce))
                .map_err(|e| e.to_string())?
                .map_err(|e| e.name().to_owned())
        };
        Ok(Evidence {
            ecc_chain: chain(Alg::Ecc384)?,
            mldsa_chain: chain(Alg::MlDsa87)?,
            quote_ecc: quote(cmd::QUOTE_PCRS_ECC384)?,
            quote_mldsa: quote(cmd::QUOTE_PCRS_MLDSA87)?,
            pcr_log: Self::var(&d, cmd::GET_PCR_LOG)?,
        })
    }

    fn transfer_certificate(&self) -> Result<Vec<u8>, String> {
        let d = self.0.upgrade().ok_or("the daemon is stopping")?;
        d.device.transfer_certificate().map_err(|e| e.to_string())
    }

    fn serving(&self) -> (Vec<String>, u32) {
        let Some(d) = self.0.upgrade() else {
            return (Vec::new(), 0);
        };
        let names = d
            .device
            .partitions()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.name)
            .collect();
        let open = u32::try_from(d.live_lock().len()).unwrap_or(u32::MAX);
        (names, open)
    }
}

impl Daemon {
    /// The fleet as this host sees it (`ihsm fleet hosts`).
    pub(super) fn fleet_view(&self) -> Result<FleetView, WireError> {
        let f = self.fleet.get().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotInFleet,
                "this host is not in a fleet: [fleet] etcd_endpoints (or --fleet-etcd) is empty",
            )
        })?;
        let membership = match f.membership.state() {
            MemberState::Joining => "joining".to_owned(),
            MemberState::Joined { .. } => "joined".to_owned(),
            MemberState::Cut { reason } => format!("cut off: {reason}"),
        };
        let unavailable = |e: registry::FleetError| {
            WireError::new(
                ErrorCode::FleetUnavailable,
                format!("the fleet view is unavailable (this host keeps serving): {e}"),
            )
        };
        let policy = f
            .trust
            .policy()
            .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e))?;
        let views = tokio::runtime::Handle::current()
            .block_on(async {
                let reg = Registry::connect(&f.endpoints, VIEW_TIMEOUT).await?;
                reg.hosts(&policy).await
            })
            .map_err(unavailable)?;
        let hosts = views
            .into_iter()
            .map(|v| {
                let body = v.body.as_ref();
                FleetHost {
                    host: v.host.clone(),
                    peer: body.map(|b| b.peer.clone()).unwrap_or_default(),
                    affirmed: v.verdict.is_ok(),
                    refusal: v.verdict.as_ref().err().map(ToString::to_string),
                    ueid: v.ueid.map(hex::encode),
                    svn: v.svn,
                    partitions: body.map(|b| b.partitions.clone()).unwrap_or_default(),
                    connections: body.map_or(0, |b| b.connections),
                    issued_at: body.map_or(0, |b| b.issued_at),
                    checks: v
                        .checks
                        .iter()
                        .map(|(c, ok)| ((*c).to_owned(), *ok))
                        .collect(),
                    transfer_key_sha256: v
                        .transfer_key
                        .as_ref()
                        .map(|k| hex::encode(ihsm_crypto::hash::sha256(k))),
                }
            })
            .collect();
        Ok(FleetView {
            this_host: f.host.clone(),
            membership,
            hosts,
        })
    }
}
