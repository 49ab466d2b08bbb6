//! The fleet masking domain (docs/fleet.md, "The masking domain").
//!
//! A fleet shares one masking key per epoch. Its first host draws it; every host
//! that passes attestation receives it sealed with HPKE Auth from a host that
//! holds it (the fleet code decides who qualifies; the core only seals and opens);
//! `ihsm fleet evict` draws the next epoch's and hands it to every host but the
//! evicted one. A masked blob made under the domain opens in the partition of the
//! same name on any host holding its epoch, and on no other device.
//!
//! The keys are kept in the device record (which the store seals) and in locked
//! memory; they leave the core only sealed to a peer's transfer key. A device
//! keeps at most [`MAX_EPOCHS`] epochs, and with `keep_older` false only the
//! newest: blobs of the epochs it forgot are refused.

use std::sync::Arc;

use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_crypto::hpke::{self, Sealed};
use ihsm_crypto::{ExposeSecret, Secret};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::Device;
use crate::audit::AuditEvent;
use crate::error::{CoreError, Result};

/// Most epochs a device keeps (the newest first kept).
pub const MAX_EPOCHS: usize = 16;
/// Most hosts an epoch names as evicted.
pub const MAX_EVICTED: usize = 256;
/// The longest host name (the fleet's own bound).
const MAX_HOST: usize = 63;
/// The most bytes a sealed epoch may take.
const MAX_OFFER: usize = 32 * 1024;
/// The sealed epoch's format version.
const OFFER_VERSION: u16 = 1;
/// The associated data of a sealed epoch.
const OFFER_AAD: &[u8] = b"ihsm fleet domain epoch v1";

/// One epoch's key as the device record keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EpochKey {
    epoch: u32,
    key: [u8; 32],
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// The domain as the device record keeps it (the store seals the record).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Domain {
    /// Oldest first; the last is the current epoch.
    keys: Vec<EpochKey>,
    /// The host that drew the current epoch.
    issuer: String,
    /// Hosts evicted by this epoch or an earlier one.
    evicted: Vec<String>,
}

impl core::fmt::Debug for Domain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Domain")
            .field(
                "epochs",
                &self.keys.iter().map(|k| k.epoch).collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("evicted", &self.evicted)
            .finish()
    }
}

impl Domain {
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The domain in locked memory, for masking.
pub(crate) struct LiveDomain {
    /// Oldest first; the last is the current epoch.
    keys: Vec<(u32, Secret<32>)>,
}

impl LiveDomain {
    fn load(d: &Domain) -> Result<Option<Arc<Self>>> {
        if d.keys.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(d.keys.len());
        for k in &d.keys {
            keys.push((k.epoch, Secret::from_slice(&k.key)?));
        }
        Ok(Some(Arc::new(Self { keys })))
    }

    /// The current epoch and its key.
    pub(crate) fn current(&self) -> Option<(u32, &Secret<32>)> {
        self.keys.last().map(|(e, k)| (*e, k))
    }

    /// The key of `epoch`, if this device holds it.
    pub(crate) fn key(&self, epoch: u32) -> Option<&Secret<32>> {
        self.keys.iter().find(|(e, _)| *e == epoch).map(|(_, k)| k)
    }
}

/// What a device holds of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// The current epoch.
    pub epoch: u32,
    /// Every epoch held, oldest first.
    pub held: Vec<u32>,
    /// The host that drew the current epoch.
    pub issuer: String,
    /// The hosts evicted so far.
    pub evicted: Vec<String>,
}

/// An epoch not installed yet: drawn here ([`Device::new_fleet_domain`],
/// [`Device::rotate_fleet_domain`]) or opened from a peer's seal
/// ([`Device::open_fleet_domain`]). Its key cannot be read outside the core.
pub struct DomainOffer {
    epoch: u32,
    issuer: String,
    evicted: Vec<String>,
    key: Secret<32>,
}

impl core::fmt::Debug for DomainOffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DomainOffer")
            .field("epoch", &self.epoch)
            .field("issuer", &self.issuer)
            .field("evicted", &self.evicted)
            .finish_non_exhaustive()
    }
}

impl DomainOffer {
    /// Its epoch.
    #[must_use]
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The host that drew it.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The hosts it evicts (with every earlier epoch's).
    #[must_use]
    pub fn evicted(&self) -> &[String] {
        &self.evicted
    }

    fn check(&self) -> Result<()> {
        let bad_name =
            |h: &String| h.is_empty() || h.len() > MAX_HOST || h.chars().any(|c| c.is_control());
        if self.epoch == 0
            || bad_name(&self.issuer)
            || self.evicted.len() > MAX_EVICTED
            || self.evicted.iter().any(bad_name)
        {
            return Err(CoreError::BundleInvalid(
                "a fleet domain epoch out of bounds",
            ));
        }
        Ok(())
    }
}

/// The sealed plaintext of an epoch.
#[derive(Serialize, Deserialize)]
struct OfferWire {
    version: u16,
    epoch: u32,
    issuer: String,
    evicted: Vec<String>,
    key: [u8; 32],
}

impl Drop for OfferWire {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// Reads the plaintext of a sealed epoch, every field bounded.
pub(crate) fn parse_offer(plain: &[u8]) -> Result<DomainOffer> {
    if plain.len() > MAX_OFFER {
        return Err(CoreError::BundleInvalid(
            "a fleet domain epoch over its size",
        ));
    }
    let (wire, rest): (OfferWire, _) = postcard::take_from_bytes(plain)
        .map_err(|_| CoreError::BundleInvalid("the fleet domain does not parse"))?;
    if !rest.is_empty() || wire.version != OFFER_VERSION {
        return Err(CoreError::BundleInvalid("the fleet domain does not parse"));
    }
    let offer = DomainOffer {
        epoch: wire.epoch,
        issuer: wire.issuer.clone(),
        evicted: wire.evicted.clone(),
        key: Secret::from_slice(&wire.key)?,
    };
    offer.check()?;
    Ok(offer)
}

impl Device {
    /// What this device holds of the fleet domain, if anything.
    ///
    /// # Errors
    /// Store and device state errors.
    pub fn fleet_domain(&self) -> Result<Option<DomainInfo>> {
        self.shared.check()?;
        let store = self.shared.store()?;
        let d = Self::device_record(&store)?.domain;
        Ok(d.keys.last().map(|cur| DomainInfo {
            epoch: cur.epoch,
            held: d.keys.iter().map(|k| k.epoch).collect(),
            issuer: d.issuer.clone(),
            evicted: d.evicted.clone(),
        }))
    }

    /// Draws a fleet's first epoch, for the first host of a fleet (installed
    /// once the fleet agreed that it is the first).
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when this device already holds a domain.
    pub fn new_fleet_domain(&self, issuer: &str) -> Result<DomainOffer> {
        if self.fleet_domain()?.is_some() {
            return Err(CoreError::MoveState {
                name: "fleet domain".into(),
                why: "this device already holds a fleet domain",
            });
        }
        let offer = DomainOffer {
            epoch: 1,
            issuer: issuer.to_owned(),
            evicted: Vec::new(),
            key: Secret::random()?,
        };
        offer.check()?;
        Ok(offer)
    }

    /// Draws the epoch after the current one, which evicts `evict` (and every
    /// host the current one evicts).
    ///
    /// # Errors
    /// [`CoreError::MoveState`] without a domain or when `evict` is `issuer`.
    pub fn rotate_fleet_domain(&self, issuer: &str, evict: &str) -> Result<DomainOffer> {
        let info = self.fleet_domain()?.ok_or(CoreError::MoveState {
            name: "fleet domain".into(),
            why: "this device holds no fleet domain",
        })?;
        if evict == issuer {
            return Err(CoreError::MoveState {
                name: evict.to_owned(),
                why: "a host cannot evict itself: evict it from another host",
            });
        }
        let mut evicted = info.evicted;
        if !evicted.iter().any(|h| h == evict) {
            evicted.push(evict.to_owned());
        }
        let offer = DomainOffer {
            epoch: info.epoch.checked_add(1).ok_or(CoreError::MoveState {
                name: "fleet domain".into(),
                why: "the epoch counter is exhausted",
            })?,
            issuer: issuer.to_owned(),
            evicted,
            key: Secret::random()?,
        };
        offer.check()?;
        Ok(offer)
    }

    /// Seals `offer` (or, with `None`, the current epoch) for `recipient` (a
    /// peer's attested transfer key): HPKE Auth from this start's transfer key,
    /// with `info` (both hosts' identities, built by the fleet) in the key
    /// schedule.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] without a domain; cryptographic errors.
    pub fn seal_fleet_domain(
        &self,
        offer: Option<&DomainOffer>,
        recipient: &EccP384PublicKey,
        info: &[u8],
    ) -> Result<Sealed> {
        self.shared.check()?;
        let wire = match offer {
            Some(o) => OfferWire {
                version: OFFER_VERSION,
                epoch: o.epoch,
                issuer: o.issuer.clone(),
                evicted: o.evicted.clone(),
                key: *o.key.expose_secret(),
            },
            None => {
                let store = self.shared.store()?;
                let d = Self::device_record(&store)?.domain;
                let cur = d.keys.last().ok_or(CoreError::MoveState {
                    name: "fleet domain".into(),
                    why: "this device holds no fleet domain",
                })?;
                OfferWire {
                    version: OFFER_VERSION,
                    epoch: cur.epoch,
                    issuer: d.issuer.clone(),
                    evicted: d.evicted.clone(),
                    key: cur.key,
                }
            }
        };
        let plain = Zeroizing::new(
            postcard::to_allocvec(&wire)
                .map_err(|_| CoreError::Internal("fleet domain encoding"))?,
        );
        self.with_transfer_key(|k| Ok(hpke::seal_auth(recipient, k, info, OFFER_AAD, &plain)?))
    }

    /// Opens an epoch a peer sealed with [`Device::seal_fleet_domain`]; only
    /// `sender` (the peer's attested transfer key) authenticates it.
    ///
    /// # Errors
    /// [`CoreError::BundleInvalid`] for a seal that does not open or parse.
    pub fn open_fleet_domain(
        &self,
        sender: &EccP384PublicKey,
        sealed: &Sealed,
        info: &[u8],
    ) -> Result<DomainOffer> {
        self.shared.check()?;
        if sealed.ciphertext.len() > MAX_OFFER {
            return Err(CoreError::BundleInvalid(
                "a fleet domain seal over its size",
            ));
        }
        let plain = self.with_transfer_key(|k| {
            hpke::open_auth(k, sender, info, OFFER_AAD, sealed).map_err(|_| {
                CoreError::BundleInvalid("the fleet domain does not open with the sender's key")
            })
        })?;
        parse_offer(plain.expose_secret())
    }

    /// Makes `offer` the current epoch, durably, with `FleetDomain` in the
    /// device log. Older epochs are kept (up to [`MAX_EPOCHS`]) when
    /// `keep_older`, else forgotten.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] for an epoch not newer than the current one, or
    /// one that no longer evicts a host the current one does.
    pub fn install_fleet_domain(&self, offer: DomainOffer, keep_older: bool) -> Result<()> {
        self.shared.check()?;
        let mut live = self
            .shared
            .domain
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let store = self.shared.store()?;
        let mut domain = Self::device_record(&store)?.domain;
        if let Some(cur) = domain.keys.last() {
            if offer.epoch <= cur.epoch {
                return Err(CoreError::MoveState {
                    name: "fleet domain".into(),
                    why: "the epoch is not newer than the one this device holds",
                });
            }
            if !domain.evicted.iter().all(|h| offer.evicted.contains(h)) {
                return Err(CoreError::MoveState {
                    name: "fleet domain".into(),
                    why: "the epoch readmits a host an earlier epoch evicted",
                });
            }
        }
        if !keep_older {
            domain.keys.clear();
        }
        domain.keys.push(EpochKey {
            epoch: offer.epoch,
            key: *offer.key.expose_secret(),
        });
        let excess = domain.keys.len().saturating_sub(MAX_EPOCHS);
        domain.keys.drain(..excess);
        domain.issuer.clone_from(&offer.issuer);
        domain.evicted.clone_from(&offer.evicted);
        let next = LiveDomain::load(&domain)?;
        let event = AuditEvent::FleetDomain {
            epoch: offer.epoch,
            issuer: offer.issuer.clone(),
        };
        self.device_write(|rec| rec.domain = domain, vec![event], |_| Ok(()))?;
        *live = next;
        Ok(())
    }

    /// Loads the record's domain into memory at start.
    pub(super) fn load_domain(&self, d: &Domain) -> Result<()> {
        *self
            .shared
            .domain
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))? = LiveDomain::load(d)?;
        Ok(())
    }
}
