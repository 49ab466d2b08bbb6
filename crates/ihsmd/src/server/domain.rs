//! This host's part in the fleet masking domain (docs/fleet.md, "The masking
//! domain"): drawing the first epoch, handing the current one to every host the
//! fleet policy accepts, taking a newer one from a wrap, and `ihsm fleet evict`.
//!
//! Each look ([`Daemon::domain_tick`], from the settler) reads the domain's keys
//! and the hosts' raw records from etcd, and appraises the fleet only when
//! there is something to do: a wrap to take, or a host without a wrap it can
//! open. What is taken comes only from a wrap that opens with the transfer key
//! of a host the policy accepts now, which is not evicted; the epoch record in
//! etcd only says which epoch to look for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ihsm_crypto::hpke::Sealed;
use ihsm_fleet::HostRecord;
use ihsm_fleet::domain::{self, DomainWrap, EpochRecord};
use ihsm_fleet::record::valid_host_name;
use ihsm_fleet::registry::{DomainKeys, Registry};
use ihsm_proto::msg::DomainView;
use ihsm_proto::{ErrorCode, WireError};
use ihsm_rot::config::OlderEpochs;

use super::Daemon;
use super::moves::{Snapshot, blocking, transfer_key};

/// What the domain's looks remember between them: hosts the policy refused,
/// by the digest of the record it refused (not appraised again until it
/// changes).
#[derive(Default)]
pub(crate) struct DomainState {
    refused: Mutex<BTreeMap<String, [u8; 32]>>,
}

fn refused(why: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::DomainRefused, why.into())
}

fn unavailable(e: impl std::fmt::Display) -> WireError {
    WireError::new(
        ErrorCode::FleetUnavailable,
        format!("the fleet is unavailable (nothing changed): {e}"),
    )
}

fn core(e: ihsm_core::CoreError) -> WireError {
    e.to_wire()
}

/// The transfer certificate a host's record publishes, without appraising it
/// (for matching wraps; what is sealed to comes from an appraised view).
fn published_cert(records: &[(String, i64, Vec<u8>)], host: &str) -> Option<[u8; 32]> {
    let (_, _, bytes) = records.iter().find(|(h, _, _)| h == host)?;
    let (_, body) = HostRecord::decode(bytes).ok()?;
    Some(domain::sha256(&body.transfer_cert))
}

impl Daemon {
    fn keep_older(&self) -> bool {
        self.security
            .fleet
            .as_ref()
            .is_none_or(|f| f.older_masked_epochs == OlderEpochs::Open)
    }

    /// One look at the domain.
    pub(super) async fn domain_tick(self: &Arc<Self>) -> Result<(), WireError> {
        let f = self.fleet_or_refuse()?;
        let me = f.host.clone();
        let reg = f.registry().await?;
        let keys = reg.domain().await.map_err(unavailable)?;
        let local = self.device.fleet_domain().map_err(core)?;
        let rev = keys.epoch.as_ref().map_or(0, |(r, _)| *r);
        let record = keys
            .epoch
            .as_ref()
            .and_then(|(_, b)| EpochRecord::decode(b).ok());
        match (&local, &record) {
            (None, None) => {
                let offer = self.device.new_fleet_domain(&me).map_err(core)?;
                let rec = EpochRecord {
                    version: domain::VERSION,
                    epoch: offer.epoch(),
                    issuer: me.clone(),
                    evicted: Vec::new(),
                };
                let bytes = rec.encode().map_err(|e| refused(e.to_string()))?;
                if reg
                    .replace_epoch(rev, bytes, Vec::new())
                    .await
                    .map_err(unavailable)?
                {
                    let keep = self.keep_older();
                    let d = Arc::clone(self);
                    blocking(move || d.device.install_fleet_domain(offer, keep).map_err(core))
                        .await?;
                    tracing::info!("fleet domain: this host drew its first epoch");
                }
            }
            (Some(l), r) if r.as_ref().is_none_or(|r| r.epoch < l.epoch) => {
                // etcd lost the record, or holds an older one: say what is held.
                let rec = EpochRecord {
                    version: domain::VERSION,
                    epoch: l.epoch,
                    issuer: l.issuer.clone(),
                    evicted: l.evicted.clone(),
                };
                let bytes = rec.encode().map_err(|e| refused(e.to_string()))?;
                reg.replace_epoch(rev, bytes, Vec::new())
                    .await
                    .map_err(unavailable)?;
            }
            (l, Some(r)) if l.as_ref().is_none_or(|l| l.epoch < r.epoch) => {
                self.take_epoch(&reg, &keys, r.epoch, &me).await?;
            }
            (Some(l), Some(r)) if l.epoch == r.epoch => {
                self.hand_epoch(&reg, &keys, l.epoch, &l.evicted, &me)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes epoch `epoch` from the wrap etcd holds for this host, if it opens
    /// with the transfer key of a host the policy accepts.
    async fn take_epoch(
        self: &Arc<Self>,
        reg: &Registry,
        keys: &DomainKeys,
        epoch: u32,
        me: &str,
    ) -> Result<(), WireError> {
        let Some((_, _, bytes)) = keys.wraps.iter().find(|(e, to, _)| *e == epoch && to == me)
        else {
            return Ok(());
        };
        let w = DomainWrap::decode(bytes).map_err(|e| refused(format!("the wrap: {e}")))?;
        if w.epoch != epoch || w.to != me {
            return Err(refused("the wrap names another epoch or host than its key"));
        }
        let records = reg.records().await.map_err(unavailable)?;
        if published_cert(&records, me) != Some(w.to_cert_sha256) {
            // Sealed to an earlier start's transfer key: a holder seals again.
            return Ok(());
        }
        let f = self.fleet_or_refuse()?;
        let snap = Snapshot::take(f).await?;
        let sender = snap.host(&w.from).map_err(|e| refused(e.message))?;
        if sender.body.as_ref().map(|b| &b.transfer_cert) != Some(&w.from_cert) {
            return Ok(());
        }
        let held = self.device.fleet_domain().map_err(core)?;
        if held.as_ref().is_some_and(|h| h.evicted.contains(&w.from)) {
            return Err(refused(format!(
                "the wrap of epoch {epoch} comes from host {}, which an earlier epoch evicted",
                w.from
            )));
        }
        let key = transfer_key(sender)?;
        let keep = self.keep_older();
        let d = Arc::clone(self);
        let from = w.from.clone();
        blocking(move || {
            let sealed = Sealed {
                enc: w.enc.clone(),
                ciphertext: w.ciphertext.clone(),
            };
            let offer = d
                .device
                .open_fleet_domain(&key, &sealed, &w.info())
                .map_err(core)?;
            if offer.epoch() != w.epoch {
                return Err(refused("the sealed epoch is not the wrap's"));
            }
            d.device.install_fleet_domain(offer, keep).map_err(core)
        })
        .await?;
        tracing::info!(%epoch, %from, "fleet domain: took the current epoch");
        Ok(())
    }

    /// Seals the current epoch to every host the policy accepts that has no
    /// wrap it can open.
    async fn hand_epoch(
        self: &Arc<Self>,
        reg: &Registry,
        keys: &DomainKeys,
        epoch: u32,
        evicted: &[String],
        me: &str,
    ) -> Result<(), WireError> {
        let records = reg.records().await.map_err(unavailable)?;
        let covered = |host: &str| -> bool {
            let Some((_, _, bytes)) = keys
                .wraps
                .iter()
                .find(|(e, to, _)| *e == epoch && to == host)
            else {
                return false;
            };
            let Ok(w) = DomainWrap::decode(bytes) else {
                return false;
            };
            Some(w.to_cert_sha256) == published_cert(&records, host)
                && Some(domain::sha256(&w.from_cert)) == published_cert(&records, &w.from)
        };
        let refused_before = |host: &str, bytes: &[u8]| -> bool {
            self.domain
                .refused
                .lock()
                .is_ok_and(|r| r.get(host) == Some(&domain::sha256(bytes)))
        };
        let want: Vec<&str> = records
            .iter()
            .filter(|(h, _, bytes)| {
                h != me && !evicted.contains(h) && !covered(h) && !refused_before(h, bytes)
            })
            .map(|(h, _, _)| h.as_str())
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        let f = self.fleet_or_refuse()?;
        let snap = Snapshot::take(f).await?;
        let Some(from_cert) = snap
            .hosts
            .iter()
            .find(|h| h.host == me)
            .and_then(|h| h.body.as_ref())
            .map(|b| b.transfer_cert.clone())
        else {
            return Ok(());
        };
        for host in want {
            let Some(view) = snap.hosts.iter().find(|h| h.host == host) else {
                continue;
            };
            let body = view.body.as_ref();
            if let (Err(e), Some((_, _, bytes))) =
                (&view.verdict, records.iter().find(|(h, _, _)| h == host))
            {
                tracing::info!(%host, "fleet domain: not handed to a host the policy refuses: {e}");
                if let Ok(mut r) = self.domain.refused.lock() {
                    r.insert(host.to_owned(), domain::sha256(bytes));
                }
                continue;
            }
            let (Ok(key), Some(body)) = (transfer_key(view), body) else {
                continue;
            };
            let mut w = DomainWrap {
                version: domain::VERSION,
                epoch,
                from: me.to_owned(),
                to: host.to_owned(),
                from_cert: from_cert.clone(),
                to_cert_sha256: domain::sha256(&body.transfer_cert),
                enc: Vec::new(),
                ciphertext: Vec::new(),
            };
            let d = Arc::clone(self);
            let info = w.info();
            let sealed =
                blocking(move || d.device.seal_fleet_domain(None, &key, &info).map_err(core))
                    .await?;
            w.enc = sealed.enc;
            w.ciphertext = sealed.ciphertext;
            let bytes = w.encode().map_err(|e| refused(e.to_string()))?;
            reg.put(&domain::wrap_key(epoch, host), bytes, None)
                .await
                .map_err(unavailable)?;
            tracing::info!(%host, %epoch, "fleet domain: sealed the current epoch to a host");
        }
        Ok(())
    }

    /// `ihsm fleet domain`.
    pub(super) fn fleet_domain_view(self: &Arc<Self>) -> Result<DomainView, WireError> {
        let f = self.fleet_or_refuse()?;
        let fleet_epoch = tokio::runtime::Handle::current().block_on(async {
            let reg = f.registry().await.ok()?;
            let keys = reg.domain().await.ok()?;
            keys.epoch
                .and_then(|(_, b)| EpochRecord::decode(&b).ok())
                .map(|r| r.epoch)
        });
        self.domain_view(fleet_epoch, Vec::new())
    }

    fn domain_view(
        &self,
        fleet_epoch: Option<u32>,
        sealed_to: Vec<String>,
    ) -> Result<DomainView, WireError> {
        let f = self.fleet_or_refuse()?;
        let held = self.device.fleet_domain().map_err(core)?;
        Ok(DomainView {
            this_host: f.host.clone(),
            epoch: held.as_ref().map(|h| h.epoch),
            held: held.as_ref().map(|h| h.held.clone()).unwrap_or_default(),
            issuer: held.as_ref().map(|h| h.issuer.clone()).unwrap_or_default(),
            evicted: held.map(|h| h.evicted).unwrap_or_default(),
            fleet_epoch,
            sealed_to,
        })
    }

    /// `ihsm fleet evict HOST`: the next epoch, which evicts `host`, sealed to
    /// every other host the policy accepts, written with the epoch record in one
    /// transaction that compares the record's revision, then taken here.
    pub(super) fn fleet_evict(self: &Arc<Self>, host: &str) -> Result<DomainView, WireError> {
        let f = self.fleet_or_refuse()?;
        if !valid_host_name(host) {
            return Err(refused(format!("{host:?} is not a fleet host name")));
        }
        let me = f.host.clone();
        let d = Arc::clone(self);
        let host = host.to_owned();
        tokio::runtime::Handle::current().block_on(async move {
            let reg = f.registry().await?;
            let keys = reg.domain().await.map_err(unavailable)?;
            let held = d
                .device
                .fleet_domain()
                .map_err(core)?
                .ok_or_else(|| refused("this host holds no fleet masking domain yet"))?;
            let (rev, rec) = keys
                .epoch
                .as_ref()
                .and_then(|(r, b)| Some((*r, EpochRecord::decode(b).ok()?)))
                .ok_or_else(|| {
                    refused("etcd holds no readable epoch record yet; try again in a few seconds")
                })?;
            if rec.epoch != held.epoch {
                return Err(refused(format!(
                    "the fleet is at epoch {}, this host holds epoch {}: evict from a host that holds the current one",
                    rec.epoch, held.epoch
                )));
            }
            let offer = d.device.rotate_fleet_domain(&me, &host).map_err(|e| refused(e.to_string()))?;
            let snap = Snapshot::take(f).await?;
            let from_cert = snap
                .host(&me)
                .map_err(|e| refused(format!("this host's own record: {}", e.message)))?
                .body
                .as_ref()
                .map(|b| b.transfer_cert.clone())
                .ok_or_else(|| refused("this host's own record has no body"))?;
            let mut wraps = Vec::new();
            let mut sealed_to = Vec::new();
            for v in &snap.hosts {
                if v.host == me || offer.evicted().contains(&v.host) || v.verdict.is_err() {
                    continue;
                }
                let (Ok(key), Some(body)) = (transfer_key(v), v.body.as_ref()) else {
                    continue;
                };
                let mut w = DomainWrap {
                    version: domain::VERSION,
                    epoch: offer.epoch(),
                    from: me.clone(),
                    to: v.host.clone(),
                    from_cert: from_cert.clone(),
                    to_cert_sha256: domain::sha256(&body.transfer_cert),
                    enc: Vec::new(),
                    ciphertext: Vec::new(),
                };
                let sealed = d
                    .device
                    .seal_fleet_domain(Some(&offer), &key, &w.info())
                    .map_err(core)?;
                w.enc = sealed.enc;
                w.ciphertext = sealed.ciphertext;
                wraps.push((
                    domain::wrap_key(offer.epoch(), &v.host),
                    w.encode().map_err(|e| refused(e.to_string()))?,
                ));
                sealed_to.push(v.host.clone());
            }
            let record = EpochRecord {
                version: domain::VERSION,
                epoch: offer.epoch(),
                issuer: me.clone(),
                evicted: offer.evicted().to_vec(),
            }
            .encode()
            .map_err(|e| refused(e.to_string()))?;
            let epoch = offer.epoch();
            if !reg
                .replace_epoch(rev, record, wraps)
                .await
                .map_err(unavailable)?
            {
                return Err(refused(
                    "the fleet's epoch changed meanwhile (another eviction?); nothing changed, try again",
                ));
            }
            d.device
                .install_fleet_domain(offer, d.keep_older())
                .map_err(core)?;
            if let Err(e) = reg.delete_wraps_before(epoch).await {
                tracing::debug!("fleet domain: older wraps stay in etcd: {e}");
            }
            tracing::warn!(evicted = %host, %epoch, sealed_to = %sealed_to.join(","), "fleet domain: a host was evicted; new masked blobs use the new epoch");
            d.domain_view(Some(epoch), sealed_to)
        })
    }
}
