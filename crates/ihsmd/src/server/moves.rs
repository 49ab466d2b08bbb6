//! Partitions moving between hosts of the fleet (docs/fleet.md, "Moves"): the
//! source's `ihsm partition move`, the destination's peer listener, placements
//! in etcd, and the settling of every move a crash left in the middle.
//!
//! The steps, and what a failure at each leaves:
//!
//! 1. The source reads the destination's record (appraised) and the partition's
//!    placement, which must be this host's (claimed now if there is none); its
//!    epoch is the key's `mod_revision`. Failure: nothing happened.
//! 2. The source challenges the destination with a fresh nonce; the evidence
//!    that comes back must be affirmed by the fleet policy, be the device of the
//!    destination's record, have an SVN at least the source's, and certify the
//!    transfer key. Failure: nothing happened.
//! 3. The source seals the whole partition while it serves (core:
//!    `stage_export`; the outgoing mark is durable first). The destination
//!    opens it, checks it, and stores it not serving (core: `import_partition`;
//!    incoming mark). Then the source stops the partition and seals what changed
//!    since (`freeze_export`), with the partition's applications that hold a
//!    token (their sessions, login, session objects, started operations),
//!    which the destination checks against what it staged and writes
//!    (`import_delta`), adopting the applications (`Daemon::adopt_apps`) for
//!    their connections to join. Failure: the source reclaims its
//!    placement (a new epoch, so the destination knows the move cannot
//!    complete) and serves again; the destination discards what it stored.
//! 4. The source flips the placement in one etcd transaction that compares the
//!    epoch, prompts the destination to read it (it serves then), tells its own
//!    callers where the partition went, and deletes its copy.
//!
//! Settling after a crash reads the placement: flipped to the destination (it
//! serves, the source deletes), or still the source's at the move's epoch (the
//! source reclaims it and serves; the destination discards). Anything else, a
//! placement that is not genuine included, settles nothing: the partition stays
//! unserved on both sides rather than served on two.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_crypto::hpke::Sealed;
use ihsm_fleet::peer::{self, PeerReply, PeerRequest};
use ihsm_fleet::placement::{PlacementBody, PlacementRecord, PlacementView};
use ihsm_fleet::registry::{Attester, Registry};
use ihsm_fleet::{FleetPolicy, HostRecord, HostView};
use ihsm_proto::msg::MoveReport;
use ihsm_proto::{ErrorCode, WireError};
use tokio::net::{TcpListener, TcpStream};

use super::Daemon;
use super::fleet::{DeviceAttester, Fleet};

/// How long one etcd exchange of a move may take.
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one peer frame may take (a large partition's bundle included).
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often unsettled moves and unclaimed partitions are looked at.
const SETTLE_EVERY: Duration = Duration::from_secs(2);

/// The moves this process is carrying out now (the settler leaves them alone),
/// and the partitions whose placement it has seen in etcd (not looked up again,
/// so an idle host does not appraise the fleet every few seconds).
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashSet<String>>, Mutex<HashSet<String>>);

struct Claim<'a>(&'a InFlight, String);

impl InFlight {
    fn claim(&self, name: &str) -> Option<Claim<'_>> {
        let mut s = self.0.lock().ok()?;
        s.insert(name.to_owned())
            .then(|| Claim(self, name.to_owned()))
    }

    fn busy(&self, name: &str) -> bool {
        self.0.lock().map(|s| s.contains(name)).unwrap_or(true)
    }

    fn placed(&self, name: &str) -> bool {
        self.1.lock().map(|s| s.contains(name)).unwrap_or(false)
    }

    fn mark_placed(&self, name: &str) {
        if let Ok(mut s) = self.1.lock() {
            s.insert(name.to_owned());
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.0.lock() {
            s.remove(&self.1);
        }
    }
}

fn refused(why: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::MoveRefused, why.into())
}

fn unavailable(e: impl std::fmt::Display) -> WireError {
    WireError::new(
        ErrorCode::FleetUnavailable,
        format!("the fleet is unavailable (the partition stays here, serving): {e}"),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs blocking device work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WireError::new(ErrorCode::DaemonFailed, format!("a move task failed: {e}")))?
}

impl Fleet {
    pub(super) async fn registry(&self) -> Result<Registry, WireError> {
        Registry::connect(&self.endpoints, ETCD_TIMEOUT)
            .await
            .map_err(unavailable)
    }

    fn fleet_policy(&self) -> Result<FleetPolicy, WireError> {
        self.trust
            .policy()
            .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e))
    }
}

/// What the fleet looks like now: accepted hosts and the policy.
pub(super) struct Snapshot {
    reg: Registry,
    policy: FleetPolicy,
    pub(super) hosts: Vec<HostView>,
}

impl Snapshot {
    pub(super) async fn take(f: &Fleet) -> Result<Self, WireError> {
        let reg = f.registry().await?;
        let policy = f.fleet_policy()?;
        let hosts = reg.hosts(&policy).await.map_err(unavailable)?;
        Ok(Self { reg, policy, hosts })
    }

    pub(super) fn host(&self, name: &str) -> Result<&HostView, WireError> {
        let h = self
            .hosts
            .iter()
            .find(|h| h.host == name)
            .ok_or_else(|| refused(format!("host {name} is not in the fleet")))?;
        if let Err(e) = &h.verdict {
            return Err(refused(format!(
                "host {name} is not accepted by this host's fleet policy: {e}"
            )));
        }
        Ok(h)
    }

    async fn placement(&self, name: &str) -> Result<Option<PlacementView>, WireError> {
        Ok(self
            .reg
            .placement(name)
            .await
            .map_err(unavailable)?
            .map(|(epoch, bytes)| {
                self.policy
                    .appraise_placement(name, epoch, &bytes, &self.hosts, now())
            }))
    }
}

pub(super) fn transfer_key(h: &HostView) -> Result<EccP384PublicKey, WireError> {
    let k = h
        .transfer_key
        .as_ref()
        .ok_or_else(|| refused(format!("host {} shows no transfer key", h.host)))?;
    EccP384PublicKey::from_sec1(k)
        .map_err(|_| refused(format!("host {}'s transfer key is not P-384", h.host)))
}

impl Daemon {
    pub(super) fn fleet_or_refuse(&self) -> Result<&Fleet, WireError> {
        self.fleet.get().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotInFleet,
                "this host is not in a fleet: [fleet] etcd_endpoints (or --fleet-etcd) is empty",
            )
        })
    }

    /// A placement body signed by this device: its evidence over the body.
    async fn sign_placement(self: &Arc<Self>, body: PlacementBody) -> Result<Vec<u8>, WireError> {
        let bytes = body
            .encode()
            .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e.to_string()))?;
        let d = Arc::clone(self);
        blocking(move || {
            let evidence = DeviceAttester(Arc::downgrade(&d))
                .evidence(&PlacementRecord::nonce(&bytes))
                .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e))?;
            PlacementRecord {
                body: bytes,
                evidence,
            }
            .encode()
            .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e.to_string()))
        })
        .await
    }

    /// This host's UEID, as its own record proves it to its own policy.
    fn own_ueid(&self, snap: &Snapshot, me: &str) -> Result<[u8; 17], WireError> {
        snap.host(me)
            .map_err(|e| refused(format!("this host's own record: {}", e.message)))?
            .ueid
            .ok_or_else(|| refused("this host's own record shows no UEID"))
    }

    /// Claims the placement of a partition this host holds and nobody placed:
    /// the new epoch, or `None` when someone else's placement is there.
    async fn claim_placement(
        self: &Arc<Self>,
        snap: &Snapshot,
        me: &str,
        name: &str,
        expected: u64,
    ) -> Result<Option<u64>, WireError> {
        let body = PlacementBody {
            version: ihsm_fleet::placement::VERSION,
            partition: name.to_owned(),
            host: me.to_owned(),
            from: None,
            previous: expected,
            bundle_sha256: [0; 32],
            signer_ueid: self.own_ueid(snap, me)?,
            issued_at: u64::try_from(now()).unwrap_or(0),
        };
        let rec = self.sign_placement(body).await?;
        snap.reg
            .replace_placement(name, expected, rec)
            .await
            .map_err(unavailable)
    }

    /// `ihsm partition move NAME --to HOST`.
    pub(super) fn move_partition(
        self: &Arc<Self>,
        name: &str,
        to: &str,
    ) -> Result<MoveReport, WireError> {
        let f = self.fleet_or_refuse()?;
        if to == f.host {
            return Err(refused(format!("partition {name} is on {to} already")));
        }
        // The partition must serve here (this names a moved one's host).
        self.device
            .partition_by_name(name)
            .map_err(|e| e.to_wire())?;
        let _claim = self
            .moves
            .claim(name)
            .ok_or_else(|| refused(format!("partition {name} is already moving")))?;
        let d = Arc::clone(self);
        tokio::runtime::Handle::current().block_on(d.move_steps(name, to))
    }

    async fn move_steps(self: Arc<Self>, name: &str, to: &str) -> Result<MoveReport, WireError> {
        let started = Instant::now();
        let f = self.fleet_or_refuse()?;
        let me = f.host.clone();
        let snap = Snapshot::take(f).await?;
        let dest = snap.host(to)?.clone();
        if self
            .device
            .fleet_domain()
            .map_err(|e| e.to_wire())?
            .is_some_and(|d| d.evicted.iter().any(|h| h == to))
        {
            return Err(refused(format!(
                "host {to} was evicted from the fleet masking domain (ihsm fleet evict)"
            )));
        }
        let my_ueid = self.own_ueid(&snap, &me)?;
        let my_svn = snap.host(&me)?.svn.unwrap_or(0);
        // 1. The placement must be this host's.
        let epoch = match snap.placement(name).await? {
            None => self
                .claim_placement(&snap, &me, name, 0)
                .await?
                .ok_or_else(|| {
                    refused(format!("partition {name} was just placed by another host"))
                })?,
            Some(v) => match v.valid() {
                Some(b) if b.host == me => v.epoch,
                Some(b) => {
                    return Err(refused(format!(
                        "the placement of {name} names host {}, not this one",
                        b.host
                    )));
                }
                None => {
                    return Err(refused(format!(
                        "the placement of {name} in etcd is not genuine ({}); it is not obeyed, and this host keeps serving the partition",
                        v.verdict.err().unwrap_or_default()
                    )));
                }
            },
        };
        // 2. Fresh evidence from the destination, over our nonce.
        let addr = dest
            .body
            .as_ref()
            .map(|b| b.peer.clone())
            .ok_or_else(|| refused(format!("host {to} has no peer address")))?;
        let mut link = tokio::time::timeout(PEER_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| refused(format!("host {to} ({addr}) did not answer in time")))?
            .map_err(|e| refused(format!("host {to} ({addr}): {e}")))?;
        let _ = link.set_nodelay(true);
        let nonce: [u8; 32] = ihsm_crypto::rand::array()
            .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e.to_string()))?;
        let reply = exchange(&mut link, &PeerRequest::Challenge { nonce }).await?;
        let PeerReply::Evidence {
            transfer_cert,
            evidence,
        } = reply
        else {
            return Err(refused(format!(
                "host {to} did not answer the challenge: {reply:?}"
            )));
        };
        let record = HostRecord {
            body: Vec::new(),
            evidence: *evidence,
        };
        let a = snap.policy.appraise_evidence(
            &record,
            peer::evidence_nonce(&nonce, &transfer_cert),
            now(),
        );
        if !a.affirms() {
            return Err(refused(format!(
                "host {to}'s evidence was refused: {}",
                a.verdicts
                    .iter()
                    .filter_map(|(c, v)| v.as_ref().err().map(|e| format!("{}: {e}", c.name())))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        if a.ueid != dest.ueid {
            return Err(refused(format!(
                "the device that answered at {addr} is not host {to}'s"
            )));
        }
        let svn = a.svn.unwrap_or(0);
        if svn < my_svn {
            return Err(refused(format!(
                "host {to} runs firmware SVN {svn}, below this host's {my_svn}"
            )));
        }
        let (ecc, _) = a.chains().ok_or_else(|| refused("no verified chain"))?;
        let dest_key = ihsm_verify::chain::verify_transfer_cert(ecc, &transfer_cert, now())
            .map_err(|e| refused(format!("host {to}'s transfer key: {e}")))?;
        let dest_key = EccP384PublicKey::from_sec1(&dest_key)
            .map_err(|_| refused(format!("host {to}'s transfer key is not P-384")))?;
        let my_key = self.device.transfer_public_key().map_err(|e| e.to_wire())?;
        let info = peer::move_info(&me, my_key.as_bytes(), to, dest_key.as_bytes(), name, epoch);
        // 3. Stage: the whole partition, sealed and taken while it serves.
        let checked = started.elapsed();
        let d = Arc::clone(&self);
        let (n, t, k, i) = (
            name.to_owned(),
            to.to_owned(),
            dest_key.clone(),
            info.clone(),
        );
        let staged = blocking(move || {
            d.device
                .stage_export(&n, &t, epoch, &k, &i)
                .map_err(|e| e.to_wire())
        })
        .await;
        let (sealed, carried) = match staged {
            Ok(s) => s,
            Err(e) => {
                self.undo(&snap, &me, name, epoch).await;
                return Err(e);
            }
        };
        let mut bundle_bytes = (sealed.enc.len() + sealed.ciphertext.len()) as u64;
        let staged_sha256 = ihsm_crypto::hash::sha256(&sealed.ciphertext);
        crash_point("offer");
        let sealed_at = started.elapsed();
        let offer = PeerRequest::Offer {
            from: me.clone(),
            partition: name.to_owned(),
            epoch,
            enc: serde_bytes::ByteBuf::from(sealed.enc),
            ciphertext: serde_bytes::ByteBuf::from(sealed.ciphertext),
        };
        if let Err(e) = self.offer(&mut link, &offer, to).await {
            self.undo(&snap, &me, name, epoch).await;
            return Err(e);
        }
        let staged_at = started.elapsed();
        // 4. Stop, seal what changed since, send it: the partition serves
        // nothing from here until it serves at the destination.
        let d = Arc::clone(&self);
        let (n, k, i) = (name.to_owned(), dest_key.clone(), info.clone());
        let delta = blocking(move || {
            let pid = d
                .device
                .partition_by_name(&n)
                .map_err(|e| e.to_wire())?
                .id();
            let apps = d.leaving_apps(pid);
            let leaving: Vec<ihsm_core::partition::Leaving<'_>> = apps
                .iter()
                .map(|(app, token, uid)| ihsm_core::partition::Leaving {
                    app: *app,
                    token,
                    uid: *uid,
                })
                .collect();
            d.device
                .freeze_export(&n, &carried, &k, &i, &leaving)
                .map_err(|e| e.to_wire())
        })
        .await;
        let delta = match delta {
            Ok(s) => s,
            Err(e) => {
                self.undo(&snap, &me, name, epoch).await;
                return Err(e);
            }
        };
        bundle_bytes += (delta.enc.len() + delta.ciphertext.len()) as u64;
        let mut both = staged_sha256.to_vec();
        both.extend_from_slice(&ihsm_crypto::hash::sha256(&delta.ciphertext));
        let bundle_sha256 = ihsm_crypto::hash::sha256(&both);
        crash_point("delta");
        let frozen_at = started.elapsed();
        let delta = PeerRequest::Delta {
            from: me.clone(),
            partition: name.to_owned(),
            epoch,
            enc: serde_bytes::ByteBuf::from(delta.enc),
            ciphertext: serde_bytes::ByteBuf::from(delta.ciphertext),
        };
        if let Err(e) = self.offer(&mut link, &delta, to).await {
            self.undo(&snap, &me, name, epoch).await;
            return Err(e);
        }
        crash_point("flip");
        let offered = started.elapsed();
        // 4. The flip.
        let body = PlacementBody {
            version: ihsm_fleet::placement::VERSION,
            partition: name.to_owned(),
            host: to.to_owned(),
            from: Some(me.clone()),
            previous: epoch,
            bundle_sha256,
            signer_ueid: my_ueid,
            issued_at: u64::try_from(now()).unwrap_or(0),
        };
        let rec = match self.sign_placement(body).await {
            Ok(r) => r,
            Err(e) => {
                self.undo(&snap, &me, name, epoch).await;
                return Err(e);
            }
        };
        let new_epoch = match snap.reg.replace_placement(name, epoch, rec).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                self.undo(&snap, &me, name, epoch).await;
                return Err(refused(format!(
                    "the placement of {name} changed while it moved; the move is undone"
                )));
            }
            Err(e) => {
                // Whether it was written is unknown: settled later, from etcd.
                return Err(WireError::new(
                    ErrorCode::FleetUnavailable,
                    format!(
                        "etcd failed while the placement flipped ({e}); partition {name} serves nowhere until the move settles from etcd"
                    ),
                ));
            }
        };
        crash_point("finish");
        let flipped = started.elapsed();
        // The destination serves once it reads the flip: tell it first, then
        // send this host's callers there, then delete the partition here (the
        // longest step for a large one, which nobody waits for).
        let _ = exchange(
            &mut link,
            &PeerRequest::Settle {
                partition: name.to_owned(),
            },
        )
        .await;
        let settled = started.elapsed();
        let d = Arc::clone(&self);
        let n = name.to_owned();
        blocking(move || {
            d.device.export_flipped(&n).map_err(|e| e.to_wire())?;
            d.device.finish_export(&n).map_err(|e| e.to_wire())
        })
        .await?;
        // Its socket stays until the next start: connections on it, open
        // or new, are told where it went.
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::info!(
            partition = %name, to = %to, epoch, new_epoch,
            checked_ms = ms(checked),
            sealed_ms = ms(sealed_at - checked),
            staged_ms = ms(staged_at - sealed_at),
            frozen_ms = ms(frozen_at - staged_at),
            delta_ms = ms(offered - frozen_at),
            flipped_ms = ms(flipped - offered),
            settled_ms = ms(settled - flipped),
            finished_ms = ms(started.elapsed() - settled),
            "partition moved"
        );
        Ok(MoveReport {
            partition: name.to_owned(),
            from: me,
            to: to.to_owned(),
            epoch,
            new_epoch,
            bundle_bytes,
            to_ueid: a.ueid.map(hex::encode).unwrap_or_default(),
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Sends an offer or a delta to the destination; it must answer
    /// `Imported`.
    async fn offer(
        &self,
        link: &mut TcpStream,
        req: &PeerRequest,
        to: &str,
    ) -> Result<(), WireError> {
        match exchange(link, req).await? {
            PeerReply::Imported => Ok(()),
            other => Err(refused(format!(
                "host {to} refused the partition: {}",
                reply_text(&other)
            ))),
        }
    }

    /// A move that failed before the flip: reclaim the placement (so the
    /// destination sees the move cannot complete) and serve again. When etcd
    /// cannot be reached the partition stays stopped; the settler retries.
    async fn undo(self: &Arc<Self>, snap: &Snapshot, me: &str, name: &str, epoch: u64) {
        match self.claim_placement(snap, me, name, epoch).await {
            Ok(Some(_)) => {
                let d = Arc::clone(self);
                let n = name.to_owned();
                if let Err(e) =
                    blocking(move || d.device.abort_export(&n).map_err(|e| e.to_wire())).await
                {
                    tracing::error!(partition = %name, "undoing a move: {}", e.message);
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(partition = %name, "a failed move could not reclaim its placement yet; the partition serves nowhere until it settles");
            }
        }
    }

    /// Settles the moves a crash (or a failure) left in the middle, from the
    /// placements in etcd, and claims the placements of partitions nobody placed.
    async fn settle_all(self: &Arc<Self>) -> Result<(), WireError> {
        let f = self.fleet_or_refuse()?;
        let me = f.host.clone();
        let pending = self.device.pending_moves().map_err(|e| e.to_wire())?;
        let serving: Vec<String> = self
            .device
            .partitions()
            .map_err(|e| e.to_wire())?
            .into_iter()
            .map(|p| p.name)
            .filter(|n| !self.moves.placed(n))
            .collect();
        if pending.is_empty() && serving.is_empty() {
            return Ok(());
        }
        let snap = Snapshot::take(f).await?;
        for m in pending {
            if self.moves.busy(&m.name) {
                continue;
            }
            let Some(_claim) = self.moves.claim(&m.name) else {
                continue;
            };
            let Some(v) = snap.placement(&m.name).await? else {
                continue;
            };
            let Some(b) = v.valid() else {
                tracing::warn!(partition = %m.name, "the placement in etcd is not genuine; the move stays unsettled");
                continue;
            };
            let d = Arc::clone(self);
            let n = m.name.clone();
            if m.incoming {
                if b.host == me
                    && b.previous == m.epoch
                    && b.from.as_deref() == Some(m.host.as_str())
                {
                    let info = blocking(move || {
                        d.device.activate_import(&n).map_err(|e| e.to_wire())?;
                        d.device
                            .partition_by_name(&n)
                            .and_then(|p| p.info())
                            .map_err(|e| e.to_wire())
                    })
                    .await?;
                    if let Err(e) = self.listen_partition(&info) {
                        tracing::error!(partition = %m.name, "its socket: {e}");
                    }
                    tracing::info!(partition = %m.name, from = %m.host, "partition arrived and serves");
                } else if b.host != me && v.epoch != m.epoch {
                    blocking(move || d.device.discard_import(&n).map_err(|e| e.to_wire())).await?;
                    tracing::info!(partition = %m.name, from = %m.host, "a move that did not happen was discarded");
                }
            } else if b.host == m.host
                && b.previous == m.epoch
                && b.from.as_deref() == Some(me.as_str())
            {
                blocking(move || d.device.finish_export(&n).map_err(|e| e.to_wire())).await?;
                tracing::info!(partition = %m.name, to = %m.host, "a move settled: the partition left");
            } else if b.host == me && v.epoch == m.epoch {
                self.undo(&snap, &me, &m.name, m.epoch).await;
                tracing::info!(partition = %m.name, to = %m.host, "a move that did not happen was undone");
            }
        }
        for name in serving {
            if self.moves.busy(&name) {
                continue;
            }
            if snap.placement(&name).await?.is_some() {
                self.moves.mark_placed(&name);
                continue;
            }
            match self.claim_placement(&snap, &me, &name, 0).await {
                Ok(claimed) => {
                    self.moves.mark_placed(&name);
                    if let Some(epoch) = claimed {
                        tracing::info!(partition = %name, epoch, "placement claimed");
                    }
                }
                Err(e) => {
                    tracing::debug!(partition = %name, "claiming its placement: {}", e.message);
                }
            }
        }
        Ok(())
    }

    /// Answers one peer request.
    async fn peer_request(self: &Arc<Self>, req: PeerRequest) -> PeerReply {
        match self.peer_inner(req).await {
            Ok(r) => r,
            Err(e) => PeerReply::Refused { reason: e.message },
        }
    }

    async fn peer_inner(self: &Arc<Self>, req: PeerRequest) -> Result<PeerReply, WireError> {
        let f = self.fleet_or_refuse()?;
        let me = f.host.clone();
        let is_delta = matches!(req, PeerRequest::Delta { .. });
        match req {
            PeerRequest::Challenge { nonce } => {
                let d = Arc::clone(self);
                blocking(move || {
                    let cert = d.device.transfer_certificate().map_err(|e| e.to_wire())?;
                    let evidence = DeviceAttester(Arc::downgrade(&d))
                        .evidence(&peer::evidence_nonce(&nonce, &cert))
                        .map_err(|e| WireError::new(ErrorCode::DaemonFailed, e))?;
                    Ok(PeerReply::Evidence {
                        transfer_cert: serde_bytes::ByteBuf::from(cert),
                        evidence: Box::new(evidence),
                    })
                })
                .await
            }
            PeerRequest::Offer {
                from,
                partition,
                epoch,
                enc,
                ciphertext,
            }
            | PeerRequest::Delta {
                from,
                partition,
                epoch,
                enc,
                ciphertext,
            } => {
                let begun = Instant::now();
                let snap = Snapshot::take(f).await?;
                let appraised = begun.elapsed();
                let src = snap.host(&from)?;
                let src_key = transfer_key(src)?;
                // Only a partition placed at the source, at this epoch, is taken.
                match snap.placement(&partition).await? {
                    Some(v) if v.epoch == epoch && v.valid().is_some_and(|b| b.host == from) => {}
                    Some(v) => {
                        return Err(refused(format!(
                            "the placement of {partition} is not host {from}'s at epoch {epoch} (it is epoch {}: {})",
                            v.epoch,
                            v.valid().map_or_else(
                                || v.verdict.clone().err().unwrap_or_default(),
                                |b| format!("host {}", b.host)
                            )
                        )));
                    }
                    None => return Err(refused(format!("partition {partition} has no placement"))),
                }
                let placed = begun.elapsed();
                let my_key = self.device.transfer_public_key().map_err(|e| e.to_wire())?;
                let info = peer::move_info(
                    &from,
                    src_key.as_bytes(),
                    &me,
                    my_key.as_bytes(),
                    &partition,
                    epoch,
                );
                let d = Arc::clone(self);
                blocking(move || {
                    let sealed = Sealed {
                        enc: enc.into_vec(),
                        ciphertext: ciphertext.into_vec(),
                    };
                    let mut resumable = 0;
                    if is_delta {
                        let (info, arrived) = d
                            .device
                            .import_delta(&src_key, &info, &partition, &sealed, &from, epoch)
                            .map_err(|e| e.to_wire())?;
                        resumable = d.adopt_apps(&partition, info.id, arrived);
                    } else {
                        d.device
                            .import_partition(&src_key, &info, &partition, &sealed, &from, epoch)
                            .map_err(|e| e.to_wire())?;
                    }
                    let ms = |d: Duration| d.as_secs_f64() * 1e3;
                    tracing::info!(
                        %partition, %from, delta = is_delta, resumable,
                        appraised_ms = ms(appraised),
                        placement_ms = ms(placed - appraised),
                        imported_ms = ms(begun.elapsed() - placed),
                        "partition offered and imported"
                    );
                    if is_delta {
                        crash_point("imported");
                    }
                    Ok(PeerReply::Imported)
                })
                .await
            }
            PeerRequest::Settle { partition } => {
                let begun = Instant::now();
                self.settle_all().await?;
                tracing::info!(%partition, settled_ms = begun.elapsed().as_secs_f64() * 1e3, "settled on the source's word");
                let serving = self.device.partition_by_name(&partition).is_ok();
                Ok(PeerReply::Settled { serving })
            }
        }
    }
}

fn reply_text(r: &PeerReply) -> String {
    match r {
        PeerReply::Refused { reason } => reason.clone(),
        PeerReply::Evidence { .. } => "evidence".into(),
        PeerReply::Imported => "imported".into(),
        PeerReply::Settled { serving } => format!("settled (serving: {serving})"),
    }
}

async fn exchange(link: &mut TcpStream, req: &PeerRequest) -> Result<PeerReply, WireError> {
    let fail = |e: peer::PeerError| refused(e.to_string());
    peer::write_frame(link, req, PEER_TIMEOUT)
        .await
        .map_err(fail)?;
    peer::read_frame(link, PEER_TIMEOUT)
        .await
        .map_err(fail)?
        .ok_or_else(|| refused("the peer closed the link"))
}

/// A test hook: `IHSM_TEST_MOVE_CRASH=STEP` makes the process die (as SIGKILL
/// would) at that step of a move, so the tests can prove every step survives a
/// crash. Compiled into debug builds only.
fn crash_point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("IHSM_TEST_MOVE_CRASH").is_ok_and(|s| s == step) {
        tracing::warn!(step, "IHSM_TEST_MOVE_CRASH: dying here");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

/// Serves the peer address and settles moves every [`SETTLE_EVERY`].
pub(crate) fn start(d: &Arc<Daemon>, addr: &str) -> Result<(), String> {
    let bind = |e: std::io::Error| format!("[fleet] peer_listen {addr}: {e}");
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let listener = TcpListener::from_std(std_listener).map_err(bind)?;
    let d1 = Arc::clone(d);
    d.tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = d1.shutdown.cancelled() => return,
            };
            let Ok((mut stream, from)) = accepted else {
                continue;
            };
            // Small requests and answers, each waited for.
            let _ = stream.set_nodelay(true);
            let d2 = Arc::clone(&d1);
            d1.tracker.spawn(async move {
                loop {
                    let req: PeerRequest = match peer::read_frame(&mut stream, PEER_TIMEOUT).await {
                        Ok(Some(r)) => r,
                        Ok(None) => return,
                        Err(e) => {
                            tracing::debug!(%from, "peer link: {e}");
                            return;
                        }
                    };
                    let reply = d2.peer_request(req).await;
                    if peer::write_frame(&mut stream, &reply, PEER_TIMEOUT)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let d1 = Arc::clone(d);
    d.tracker.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SETTLE_EVERY) => {}
                () = d1.shutdown.cancelled() => return,
            }
            if let Err(e) = d1.settle_all().await {
                tracing::debug!("settling moves: {}", e.message);
            }
            if let Err(e) = d1.domain_tick().await {
                tracing::debug!("fleet domain: {}", e.message);
            }
        }
    });
    Ok(())
}
