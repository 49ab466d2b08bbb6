//! Moving a partition to another device of the fleet (docs/fleet.md, "Moves").
//!
//! The core's part is the partition's state on each side, kept durable in the
//! device record so that a crash at any step leaves each side knowing where it
//! stands:
//!
//! - **Outgoing** (source): [`Device::export_partition`] stops the partition
//!   (every call answers `PartitionMoving`), writes `MoveStarted` at the end of
//!   its log and the mark in the same transaction, then seals the whole partition
//!   with HPKE Auth to the destination's attested transfer key. The partition's
//!   data stays here until [`Device::finish_export`] (after the placement flipped)
//!   deletes it and remembers where it went; [`Device::abort_export`] (the move
//!   did not happen) makes it serve again. A move that stops the partition
//!   briefly is two steps: [`Device::stage_export`] writes the same entry and
//!   mark and seals the whole partition while it serves on;
//!   [`Device::freeze_export`] stops it and seals what changed since.
//! - **Incoming** (destination): [`Device::import_partition`] opens the bundle
//!   (only the attested source's transfer key authenticates it), checks every
//!   record in it and stores the partition under its own id, not serving.
//!   [`Device::import_delta`] completes a staged partition with what changed
//!   since. [`Device::activate_import`] (the placement flipped) makes it serve, with
//!   `MovedIn` in its log; [`Device::discard_import`] deletes it.
//!
//! Which of these to call after a crash is the fleet's decision (the placement in
//! etcd); the core only keeps the marks ([`Device::pending_moves`]).

use std::sync::Arc;

use ihsm_crypto::ec::EccP384PublicKey;
use ihsm_crypto::hpke::{self, Sealed};
use ihsm_crypto::{ExposeSecret, SecretVec};
use ihsm_store::{StoreError, WriteTx};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{DEVICE_PID, Device, DeviceRecord};
use crate::audit::{AuditEvent, Head};
use crate::error::{CoreError, Result};
use crate::partition::{self, Bundle, Partition, PartitionInfo};

/// Most partitions remembered as moved away (oldest forgotten first).
const MAX_MOVED: usize = 4096;

/// The device record's moves: what each partition in the middle of a move is
/// waiting for, and where partitions went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Moves {
    incoming: Vec<Mark>,
    outgoing: Vec<Mark>,
    moved: Vec<MovedTo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MovedTo {
    name: String,
    pid: u32,
    host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    pid: u32,
    host: String,
    epoch: u64,
}

/// A partition in the middle of a move, as the device record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMove {
    /// The partition.
    pub name: String,
    /// Its id (the same on every host).
    pub pid: u32,
    /// True when it is arriving here, false when it is leaving.
    pub incoming: bool,
    /// The other host.
    pub host: String,
    /// The placement epoch the move replaces.
    pub epoch: u64,
}

impl DeviceRecord {
    /// Reads the record: its first format's fields, then the moves and the
    /// fleet domain if any.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |_| CoreError::Internal("device record does not parse");
        let (mut rec, rest): (Self, &[u8]) = postcard::take_from_bytes(bytes).map_err(bad)?;
        if !rest.is_empty() {
            let (moves, rest) = postcard::take_from_bytes::<Moves>(rest).map_err(bad)?;
            rec.moves = moves;
            if !rest.is_empty() {
                let (domain, rest) = postcard::take_from_bytes(rest).map_err(bad)?;
                if !rest.is_empty() {
                    return Err(CoreError::Internal("device record does not parse"));
                }
                rec.domain = domain;
            }
        }
        Ok(rec)
    }

    /// The stored form: the first format's fields, then the moves and the fleet
    /// domain unless there are none (so a record without either is byte for
    /// byte the first format). It holds the domain's keys: the store seals it.
    pub(super) fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let enc = |_| CoreError::Internal("device record encoding");
        let mut parts = vec![Zeroizing::new(postcard::to_allocvec(self).map_err(enc)?)];
        if self.moves != Moves::default() || !self.domain.is_empty() {
            parts.push(Zeroizing::new(
                postcard::to_allocvec(&self.moves).map_err(enc)?,
            ));
        }
        if !self.domain.is_empty() {
            parts.push(Zeroizing::new(
                postcard::to_allocvec(&self.domain).map_err(enc)?,
            ));
        }
        // One allocation of the final size: no copy of the keys is left behind.
        let mut out = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
        for p in &parts {
            out.extend_from_slice(p);
        }
        Ok(out)
    }
}

impl Device {
    /// Runs one durable write of the device: the device record as `update`
    /// leaves it, the device log's `events` (with a checkpoint when due) and
    /// `extra`'s changes.
    pub(super) fn device_write(
        &self,
        update: impl FnOnce(&mut DeviceRecord),
        events: Vec<AuditEvent>,
        extra: impl FnOnce(&mut WriteTx<'_>) -> core::result::Result<(), StoreError>,
    ) -> Result<()> {
        let store = self.shared.store()?;
        let mut head = self
            .shared
            .device_audit
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        let mut next = head.clone();
        let mut rec = Self::device_record(&store)?;
        update(&mut rec);
        let rec_bytes = rec.encode()?;
        let mut entries = Vec::new();
        for ev in events {
            entries.push(next.append(ev)?);
        }
        if next.checkpoint_due() {
            let key = self
                .shared
                .device_audit_key
                .lock()
                .map_err(|_| CoreError::Internal("lock poisoned"))?;
            if let Some(key) = key.as_ref() {
                let cp = next.checkpoint(DEVICE_PID, key)?;
                entries.push(next.append(cp)?);
            }
        }
        store.write(|tx| {
            tx.put_partition(DEVICE_PID, &rec_bytes)?;
            for (seq, bytes) in &entries {
                tx.audit_append(DEVICE_PID, *seq, bytes)?;
            }
            extra(tx)
        })?;
        *head = next;
        Ok(())
    }

    /// The partition named `name` whatever its standing.
    fn any_partition(&self, name: &str) -> Result<Arc<Partition>> {
        self.shared.check()?;
        self.partitions_arc()?
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| CoreError::PartitionNotFound(name.to_owned()))
    }

    /// Where partition `name` went, if it moved away from this device.
    ///
    /// # Errors
    /// Store and device state errors.
    pub fn moved_to(&self, name: &str) -> Result<Option<String>> {
        let store = self.shared.store()?;
        Ok(Self::device_record(&store)?
            .moves
            .moved
            .iter()
            .rev()
            .find(|m| m.name == name)
            .map(|m| m.host.clone()))
    }

    /// The name of partition `pid` and where it went, if it moved away.
    pub(super) fn moved_id(&self, pid: u32) -> Result<Option<(String, String)>> {
        let store = self.shared.store()?;
        Ok(Self::device_record(&store)?
            .moves
            .moved
            .iter()
            .rev()
            .find(|m| m.pid == pid)
            .map(|m| (m.name.clone(), m.host.clone())))
    }

    /// Every partition in the middle of a move.
    ///
    /// # Errors
    /// Store and device state errors.
    pub fn pending_moves(&self) -> Result<Vec<PendingMove>> {
        let store = self.shared.store()?;
        let moves = Self::device_record(&store)?.moves;
        let name_of = |pid: u32| -> Option<String> {
            self.shared
                .partitions
                .read()
                .ok()?
                .get(&pid)
                .map(|p| p.name().to_owned())
        };
        let mut out = Vec::new();
        for (incoming, marks) in [(true, &moves.incoming), (false, &moves.outgoing)] {
            for m in marks {
                if let Some(name) = name_of(m.pid) {
                    out.push(PendingMove {
                        name,
                        pid: m.pid,
                        incoming,
                        host: m.host.clone(),
                        epoch: m.epoch,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Marks loaded at start: each partition in a move gets its standing.
    pub(super) fn apply_marks(&self, moves: &Moves) -> Result<()> {
        let parts = self
            .shared
            .partitions
            .read()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        for m in &moves.incoming {
            if let Some(p) = parts.get(&m.pid) {
                p.set_standing(partition::INCOMING, None);
            }
        }
        for m in &moves.outgoing {
            if let Some(p) = parts.get(&m.pid) {
                p.set_standing(partition::OUTGOING, None);
            }
        }
        Ok(())
    }

    /// Stops partition `name` and seals it for host `to`: HPKE Auth to
    /// `recipient` (the destination's attested transfer key) from this start's
    /// transfer key, with `info` (both hosts' identities and the epoch, built by
    /// the fleet) in the key schedule. `MoveStarted` and the outgoing mark are
    /// durable before anything is sealed. The whole partition in one bundle
    /// while it is stopped; [`Device::stage_export`] and
    /// [`Device::freeze_export`] stop it only for what changed meanwhile.
    ///
    /// # Errors
    /// [`CoreError::PartitionNotFound`], [`CoreError::MoveState`] when it does not
    /// serve here, store and cryptographic errors (after which the partition is
    /// outgoing: call [`Device::abort_export`]).
    pub fn export_partition(
        &self,
        name: &str,
        to: &str,
        epoch: u64,
        recipient: &EccP384PublicKey,
        info: &[u8],
    ) -> Result<Sealed> {
        let p = self.begin_export(name, to, epoch, true)?;
        self.seal_bundle(&p, None, recipient, info, &[])
            .map(|(s, _)| s)
    }

    /// The first half of a move that stops the partition briefly: writes
    /// `MoveStarted` and the outgoing mark, then seals the whole partition as
    /// [`Device::export_partition`] does, while it goes on serving. What it
    /// carried comes back with it, for [`Device::freeze_export`].
    ///
    /// # Errors
    /// As [`Device::export_partition`]; after an error the mark stands: call
    /// [`Device::abort_export`].
    pub fn stage_export(
        &self,
        name: &str,
        to: &str,
        epoch: u64,
        recipient: &EccP384PublicKey,
        info: &[u8],
    ) -> Result<(Sealed, partition::Staged)> {
        let p = self.begin_export(name, to, epoch, false)?;
        self.seal_bundle(&p, None, recipient, info, &[])
    }

    /// The second half: stops partition `name` (staged by
    /// [`Device::stage_export`]) and seals only what changed since `staged`
    /// (the delta), for the same destination, with the applications `apps`
    /// that may resume there (their sessions, login and session objects).
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when it is not staged to leave; store and
    /// cryptographic errors (call [`Device::abort_export`]).
    pub fn freeze_export(
        &self,
        name: &str,
        staged: &partition::Staged,
        recipient: &EccP384PublicKey,
        info: &[u8],
        apps: &[partition::Leaving<'_>],
    ) -> Result<Sealed> {
        let p = self.any_partition(name)?;
        let pid = p.id();
        if p.standing() != partition::SERVING
            || !self
                .pending_moves()?
                .iter()
                .any(|m| m.pid == pid && !m.incoming)
        {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not staged to leave this host",
            });
        }
        // From here no new write starts, and holding the audit lock means none
        // is in flight.
        let head = p.audit_head()?;
        p.set_standing(partition::OUTGOING, None);
        drop(head);
        self.seal_bundle(&p, Some(staged), recipient, info, apps)
            .map(|(s, _)| s)
    }

    /// Writes `MoveStarted` and the outgoing mark for partition `name`, stopping
    /// it first when `stop`.
    fn begin_export(&self, name: &str, to: &str, epoch: u64, stop: bool) -> Result<Arc<Partition>> {
        let p = self.any_partition(name)?;
        if p.standing() != partition::SERVING {
            return Err(p.standing_error());
        }
        let pid = p.id();
        if self
            .pending_moves()?
            .iter()
            .any(|m| m.pid == pid && !m.incoming)
        {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is already leaving this host",
            });
        }
        let mut head = p.audit_head()?;
        // Holding the audit lock means no write of the partition is in flight;
        // once stopped, none starts.
        if stop {
            p.set_standing(partition::OUTGOING, None);
        }
        let mut next = head.clone();
        let started = next.append(AuditEvent::MoveStarted {
            to: to.to_owned(),
            epoch,
        });
        let written = started.and_then(|(seq, bytes)| {
            self.device_write(
                |rec| {
                    rec.moves.outgoing.retain(|m| m.pid != pid);
                    rec.moves.outgoing.push(Mark {
                        pid,
                        host: to.to_owned(),
                        epoch,
                    });
                },
                Vec::new(),
                |tx| tx.audit_append(pid, seq, &bytes),
            )
        });
        if let Err(e) = written {
            p.set_standing(partition::SERVING, None);
            return Err(e);
        }
        *head = next;
        drop(head);
        Ok(p)
    }

    fn seal_bundle(
        &self,
        p: &Partition,
        since: Option<&partition::Staged>,
        recipient: &EccP384PublicKey,
        info: &[u8],
        apps: &[partition::Leaving<'_>],
    ) -> Result<(Sealed, partition::Staged)> {
        let store = self.shared.store()?;
        let (bundle, carried) = p.bundle(&store, since, apps)?;
        let sealed = self.with_transfer_key(|k| {
            Ok(hpke::seal_auth(
                recipient,
                k,
                info,
                p.name().as_bytes(),
                bundle.expose_secret(),
            )?)
        })?;
        Ok((sealed, carried))
    }

    /// This start's transfer public key (what [`Device::transfer_certificate`]
    /// certifies).
    ///
    /// # Errors
    /// Device state errors.
    pub fn transfer_public_key(&self) -> Result<EccP384PublicKey> {
        self.shared.check()?;
        self.with_transfer_key(|k| Ok(k.public_key().clone()))
    }

    pub(super) fn with_transfer_key<T>(
        &self,
        f: impl FnOnce(&ihsm_crypto::ec::EccP384PrivateKey) -> Result<T>,
    ) -> Result<T> {
        let k = self
            .shared
            .transfer_key
            .lock()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        f(k.as_ref()
            .ok_or_else(|| CoreError::Fatal("the transfer key is gone".into()))?)
    }

    /// The move of `name` did not happen: it serves here again, with
    /// `MoveAborted` in its log.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when it is not leaving; store errors.
    pub fn abort_export(&self, name: &str) -> Result<()> {
        let p = self.any_partition(name)?;
        // Outgoing, or staged (still serving, with its mark).
        let staged = p.standing() == partition::SERVING
            && self
                .pending_moves()?
                .iter()
                .any(|m| m.pid == p.id() && !m.incoming);
        if p.standing() != partition::OUTGOING && !staged {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not leaving this host",
            });
        }
        let pid = p.id();
        let mut head = p.audit_head()?;
        let to = self
            .pending_moves()?
            .into_iter()
            .find(|m| m.pid == pid && !m.incoming)
            .map(|m| m.host)
            .unwrap_or_default();
        let mut next = head.clone();
        let (seq, bytes) = next.append(AuditEvent::MoveAborted { to })?;
        self.device_write(
            |rec| rec.moves.outgoing.retain(|m| m.pid != pid),
            Vec::new(),
            |tx| tx.audit_append(pid, seq, &bytes),
        )?;
        *head = next;
        drop(head);
        p.set_standing(partition::SERVING, None);
        Ok(())
    }

    /// The placement of `name` flipped to the host it was leaving for: from now
    /// on every call is told where it went, before [`Device::finish_export`]
    /// deletes its data (which takes a while for a large partition, and must not
    /// keep its callers from following it). Nothing is written: after a restart
    /// the outgoing mark still stands and the move settles from etcd.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when it is not leaving.
    pub fn export_flipped(&self, name: &str) -> Result<()> {
        let p = self.any_partition(name)?;
        if p.standing() != partition::OUTGOING {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not leaving this host",
            });
        }
        let pid = p.id();
        let mark = self
            .pending_moves()?
            .into_iter()
            .find(|m| m.pid == pid && !m.incoming)
            .ok_or(CoreError::MoveState {
                name: name.to_owned(),
                why: "no outgoing mark",
            })?;
        p.set_standing(partition::MOVED, Some(mark.host));
        Ok(())
    }

    /// The placement of `name` flipped to the host it was leaving for: its data is
    /// deleted here in one transaction (with `PartitionMovedOut` in the device
    /// log), its secrets zeroized, and every later call is told where it went.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when it is not leaving; store errors.
    pub fn finish_export(&self, name: &str) -> Result<()> {
        let p = self.any_partition(name)?;
        if !matches!(p.standing(), partition::OUTGOING | partition::MOVED) {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not leaving this host",
            });
        }
        let pid = p.id();
        let mark = self
            .pending_moves()?
            .into_iter()
            .find(|m| m.pid == pid && !m.incoming)
            .ok_or(CoreError::MoveState {
                name: name.to_owned(),
                why: "no outgoing mark",
            })?;
        let pname = name.to_owned();
        let to = mark.host.clone();
        self.device_write(
            |rec| {
                rec.moves.outgoing.retain(|m| m.pid != pid);
                rec.moves.moved.retain(|m| m.name != pname && m.pid != pid);
                rec.moves.moved.push(MovedTo {
                    name: pname.clone(),
                    pid,
                    host: to.clone(),
                });
                let excess = rec.moves.moved.len().saturating_sub(MAX_MOVED);
                rec.moves.moved.drain(..excess);
            },
            vec![AuditEvent::PartitionMovedOut {
                pid,
                to: mark.host.clone(),
                epoch: mark.epoch,
            }],
            |tx| tx.delete_partition(pid),
        )?;
        p.zeroize();
        p.set_standing(partition::MOVED, Some(mark.host));
        self.shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .remove(&pid);
        Ok(())
    }

    /// Opens a partition sealed by host `from`'s device (`sender`, its attested
    /// transfer key, with the same `info`) and stores it under its own id, not
    /// serving until [`Device::activate_import`]. Nothing is written unless every
    /// record of the bundle checks.
    ///
    /// # Errors
    /// [`CoreError::BundleInvalid`] for a bundle that does not open or check;
    /// [`CoreError::PartitionExists`] when a partition of its name or id is here.
    pub fn import_partition(
        &self,
        sender: &EccP384PublicKey,
        info: &[u8],
        name: &str,
        sealed: &Sealed,
        from: &str,
        epoch: u64,
    ) -> Result<PartitionInfo> {
        let plain: SecretVec = self.with_transfer_key(|k| {
            hpke::open_auth(k, sender, info, name.as_bytes(), sealed)
                .map_err(|_| CoreError::BundleInvalid("it does not open with the sender's key"))
        })?;
        let (bundle, record, keys) = Bundle::decode(plain.expose_secret())?;
        if bundle.name != name {
            return Err(CoreError::BundleInvalid("it holds another partition"));
        }
        if bundle.delta {
            return Err(CoreError::BundleInvalid(
                "it is a delta, and no staged bundle came before it",
            ));
        }
        let pid = bundle.pid;
        let mut parts = self
            .shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        if parts.values().any(|p| p.name() == name) || parts.contains_key(&pid) {
            return Err(CoreError::PartitionExists(format!(
                "{name} (partition id {pid}): this host already holds a partition of that name or id"
            )));
        }
        if parts.len() >= self.shared.config.max_partitions as usize {
            return Err(CoreError::PartitionLimit(self.shared.config.max_partitions));
        }
        let store = self.shared.store()?;
        let rec_bytes = record.encode(&keys.master, keys.identity.expose_secret())?;
        let (master, index_key) = partition::store_keys(&keys.master)?;
        let pname = name.to_owned();
        let host = from.to_owned();
        self.device_write(
            |rec| {
                rec.moves.incoming.retain(|m| m.pid != pid);
                rec.moves.incoming.push(Mark {
                    pid,
                    host: host.clone(),
                    epoch,
                });
                rec.moves.moved.retain(|m| m.name != pname && m.pid != pid);
                if rec.next_pid <= pid {
                    rec.next_pid = pid.saturating_add(1);
                }
            },
            vec![AuditEvent::PartitionMovedIn {
                pid,
                from: from.to_owned(),
                epoch,
            }],
            |tx| bundle.write(tx, rec_bytes.expose_secret(), &master, &index_key, &[]),
        )?;
        let tail = bundle.audit_tail().map(<[u8]>::to_vec);
        drop(plain);
        let p = Arc::new(Partition::load(
            record,
            keys,
            &store,
            Arc::downgrade(&self.shared),
        )?);
        debug_assert_eq!(
            Head::after(tail.as_deref()).map(|h| h.next_seq).ok(),
            p.audit_head().map(|h| h.next_seq).ok()
        );
        p.set_standing(partition::INCOMING, None);
        let info = p.info()?;
        parts.insert(pid, p);
        Ok(info)
    }

    /// Completes partition `name`, staged here by [`Device::import_partition`]
    /// from host `from` at `epoch`, with the delta its source sealed once it
    /// stopped it ([`Device::freeze_export`]): the same sender, `info` and
    /// checks, and the delta must be of the same partition and keys, and its
    /// audit entries must continue the staged log. Written in one transaction;
    /// the partition still waits for [`Device::activate_import`]. With it, the
    /// applications the delta brought, for [`Device::adopt_app`].
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when nothing from `from` at `epoch` is staged
    /// here; [`CoreError::BundleInvalid`] for a delta that does not open, check
    /// or fit; store errors. Nothing is written then.
    pub fn import_delta(
        &self,
        sender: &EccP384PublicKey,
        info: &[u8],
        name: &str,
        sealed: &Sealed,
        from: &str,
        epoch: u64,
    ) -> Result<(PartitionInfo, Vec<partition::Arrived>)> {
        let staged = self.any_partition(name)?;
        let pid = staged.id();
        let marked = self
            .pending_moves()?
            .into_iter()
            .any(|m| m.pid == pid && m.incoming && m.host == from && m.epoch == epoch);
        if staged.standing() != partition::INCOMING || !marked {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "nothing of it is staged here from that host at that epoch",
            });
        }
        let plain: SecretVec = self.with_transfer_key(|k| {
            hpke::open_auth(k, sender, info, name.as_bytes(), sealed)
                .map_err(|_| CoreError::BundleInvalid("it does not open with the sender's key"))
        })?;
        let (delta, record, keys) = Bundle::decode(plain.expose_secret())?;
        if !delta.delta || delta.name != name || delta.pid != pid {
            return Err(CoreError::BundleInvalid(
                "it is not a delta of the staged partition",
            ));
        }
        let identity = partition::identity_public(&keys)?;
        if &identity != staged.identity_public() {
            return Err(CoreError::BundleInvalid(
                "its keys are not the staged partition's",
            ));
        }
        delta.verify_audit_after(&staged.audit_head()?.clone(), &identity)?;
        let arrived = delta.arrived()?;
        let store = self.shared.store()?;
        let replaced = staged.replaced_by(&store, &delta, &keys)?;
        let (master, index_key) = partition::store_keys(&keys.master)?;
        let rec_bytes = record.encode(&keys.master, keys.identity.expose_secret())?;
        self.device_write(
            |_| {},
            Vec::new(),
            |tx| {
                delta.write(
                    tx,
                    rec_bytes.expose_secret(),
                    &master,
                    &index_key,
                    &replaced,
                )
            },
        )?;
        drop(plain);
        let p = Arc::new(Partition::load(
            record,
            keys,
            &store,
            Arc::downgrade(&self.shared),
        )?);
        p.set_standing(partition::INCOMING, None);
        let info = p.info()?;
        let mut parts = self
            .shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?;
        staged.zeroize();
        parts.insert(pid, p);
        Ok((info, arrived))
    }

    /// Gives an application that arrived with partition `name`'s delta
    /// ([`Device::import_delta`]) the daemon's id `app`: its sessions, login
    /// and session objects are that application's from now on.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when the partition is not arriving; quota
    /// errors; [`CoreError::BundleInvalid`] for handles already taken.
    pub fn adopt_app(&self, name: &str, app: u64, arrived: partition::Arrived) -> Result<()> {
        let p = self.any_partition(name)?;
        if p.standing() != partition::INCOMING {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not arriving on this host",
            });
        }
        p.adopt(app, arrived)
    }

    /// The placement of `name` flipped to this host: it serves here, with
    /// `MovedIn` after the log it brought.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when it is not arriving; store errors.
    pub fn activate_import(&self, name: &str) -> Result<()> {
        let p = self.any_partition(name)?;
        if p.standing() != partition::INCOMING {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not arriving on this host",
            });
        }
        let pid = p.id();
        let mark = self
            .pending_moves()?
            .into_iter()
            .find(|m| m.pid == pid && m.incoming)
            .ok_or(CoreError::MoveState {
                name: name.to_owned(),
                why: "no incoming mark",
            })?;
        let mut head = p.audit_head()?;
        let mut next = head.clone();
        let (seq, bytes) = next.append(AuditEvent::MovedIn {
            from: mark.host,
            epoch: mark.epoch,
        })?;
        self.device_write(
            |rec| rec.moves.incoming.retain(|m| m.pid != pid),
            Vec::new(),
            |tx| tx.audit_append(pid, seq, &bytes),
        )?;
        *head = next;
        drop(head);
        p.set_standing(partition::SERVING, None);
        p.audit_checkpoint()?;
        Ok(())
    }

    /// The move of `name` to this host did not happen: what arrived is deleted.
    ///
    /// # Errors
    /// [`CoreError::MoveState`] when it is not arriving; store errors.
    pub fn discard_import(&self, name: &str) -> Result<()> {
        let p = self.any_partition(name)?;
        if p.standing() != partition::INCOMING {
            return Err(CoreError::MoveState {
                name: name.to_owned(),
                why: "it is not arriving on this host",
            });
        }
        let pid = p.id();
        self.device_write(
            |rec| rec.moves.incoming.retain(|m| m.pid != pid),
            vec![AuditEvent::PartitionDeleted { pid }],
            |tx| tx.delete_partition(pid),
        )?;
        p.zeroize();
        self.shared
            .partitions
            .write()
            .map_err(|_| CoreError::Internal("lock poisoned"))?
            .remove(&pid);
        Ok(())
    }
}
