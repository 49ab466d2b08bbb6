//! A partition as one bundle, for a move to another device: its sealed record's
//! contents (PINs' verifiers and lockout counts, quotas, principals, policy, the
//! master and identity keys), every token object's record, the next object id,
//! and the whole audit log. The bundle exists only in locked memory, and leaves
//! the device only sealed (HPKE, `device::migrate`).
//!
//! A move sends two: the whole partition while it still serves (the staged
//! bundle), then, once it is stopped, only what changed since (the delta: the
//! objects whose digest differs or that are new, the ids of those gone, the
//! audit entries after the staged ones, and the record again), so that the
//! partition is stopped for the delta's time, not the whole partition's.
//!
//! The object records travel as the core encodes them, so that the destination
//! seals them again under its store's place-binding (the same partition id and
//! object id: a partition keeps its number, and with it its handles and its
//! audit checkpoints, on every host). Sessions, logins and session objects do not
//! travel: they belong to connections, which end at the source.

use ihsm_crypto::{ExposeSecret, ExposeSecretMut, SecretVec};
use ihsm_store::{Store, WriteTx};
use serde::{Deserialize, Serialize};

use super::{Partition, PartitionRecord, RecordKeys};
use crate::error::{CoreError, Result};
use crate::object::{self, Object};

/// The bundle's format version (2: staged and delta bundles).
const BUNDLE_VERSION: u16 = 2;
/// The most objects a bundle may carry.
pub(crate) const MAX_BUNDLE_OBJECTS: usize = 1 << 20;
/// The most audit entries a bundle may carry.
const MAX_BUNDLE_AUDIT: usize = 1 << 24;

#[derive(Serialize)]
struct BundleOut<'a> {
    version: u16,
    pid: u32,
    name: &'a str,
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
    next_oid: u64,
    delta: bool,
    objects: Vec<ObjectOut<'a>>,
    deleted: Vec<u64>,
    audit: Vec<AuditOut<'a>>,
}

#[derive(Serialize)]
struct ObjectOut<'a> {
    oid: u64,
    digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
}

#[derive(Serialize)]
struct AuditOut<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    entry: &'a [u8],
}

/// A bundle as read: every field borrowed from the locked buffer it was opened
/// into.
#[derive(Deserialize)]
pub(crate) struct Bundle<'a> {
    version: u16,
    pub(crate) pid: u32,
    pub(crate) name: &'a str,
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
    next_oid: u64,
    /// Whether it completes a staged bundle (else it is the whole partition).
    pub(crate) delta: bool,
    #[serde(borrow)]
    objects: Vec<ObjectIn<'a>>,
    /// In a delta: the staged objects that are gone.
    deleted: Vec<u64>,
    #[serde(borrow)]
    audit: Vec<AuditIn<'a>>,
}

/// What a staged bundle carried: each object's digest and the last audit
/// entry's number, which the delta that completes it is computed against. It
/// holds no secret.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Staged {
    pub(crate) objects: std::collections::BTreeMap<u64, [u8; 32]>,
    pub(crate) audit_last: u64,
}

#[derive(Deserialize)]
struct ObjectIn<'a> {
    oid: u64,
    digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    record: &'a [u8],
}

#[derive(Deserialize)]
struct AuditIn<'a> {
    seq: u64,
    #[serde(with = "serde_bytes")]
    entry: &'a [u8],
}

impl Partition {
    /// The partition as a bundle, read from `store`: the whole of it when
    /// `since` is `None` (the staged bundle, read while the partition serves:
    /// what changes meanwhile the delta carries), else what changed since
    /// `since` (the delta, read while the partition serves nothing: the caller
    /// stopped it, under its audit lock, so no write is in flight). With it,
    /// what it carried, for a delta after it.
    pub(crate) fn bundle(
        &self,
        store: &Store,
        since: Option<&Staged>,
    ) -> Result<(SecretVec, Staged)> {
        let pid = self.id;
        let record = store
            .partition(pid)?
            .ok_or_else(|| CoreError::PartitionNotFound(self.name.clone()))?;
        let mut objects = Vec::new();
        let mut carried = Staged::default();
        let mut deleted = Vec::new();
        self.with_secrets(|s| {
            match since {
                None => {
                    for oid in store.object_ids(pid)? {
                        if let Some((digest, rec)) = store.object(pid, oid, &s.master)? {
                            carried.objects.insert(oid, digest);
                            objects.push((oid, digest, rec));
                        }
                    }
                }
                Some(staged) => {
                    for (oid, digest) in store.object_digests(pid)? {
                        carried.objects.insert(oid, digest);
                        if staged.objects.get(&oid) == Some(&digest) {
                            continue;
                        }
                        if let Some((digest, rec)) = store.object(pid, oid, &s.master)? {
                            objects.push((oid, digest, rec));
                        }
                    }
                    deleted.extend(
                        staged
                            .objects
                            .keys()
                            .filter(|oid| !carried.objects.contains_key(oid)),
                    );
                }
            }
            Ok(())
        })?;
        let next_oid = store.next_object_id(pid)?;
        let mut audit = Vec::new();
        let mut from = since.map_or(1, |s| s.audit_last.saturating_add(1));
        carried.audit_last = from.saturating_sub(1);
        loop {
            let batch = store.audit(pid, from, 4096)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            carried.audit_last = *last;
            audit.extend(batch);
        }
        let out = BundleOut {
            version: BUNDLE_VERSION,
            pid,
            name: &self.name,
            record: record.expose_secret(),
            next_oid,
            delta: since.is_some(),
            objects: objects
                .iter()
                .map(|(oid, digest, rec)| ObjectOut {
                    oid: *oid,
                    digest: *digest,
                    record: rec.expose_secret(),
                })
                .collect(),
            deleted,
            audit: audit
                .iter()
                .map(|(seq, entry)| AuditOut { seq: *seq, entry })
                .collect(),
        };
        // Encoded straight into locked memory of its exact size.
        let enc = |_| CoreError::Internal("partition bundle encoding");
        let len = postcard::experimental::serialized_size(&out).map_err(enc)?;
        let mut buf = SecretVec::zeroed(len)?;
        postcard::to_slice(&out, buf.expose_secret_mut()).map_err(enc)?;
        Ok((buf, carried))
    }
}

impl Partition {
    /// The index entries of this staged partition's objects that `delta`
    /// replaces or deletes, read under its keys, which must be the delta's
    /// (`keys`): else the objects it does not touch would no longer open.
    pub(crate) fn replaced_by(
        &self,
        store: &Store,
        delta: &Bundle<'_>,
        keys: &RecordKeys,
    ) -> Result<Vec<(u64, super::IndexEntries)>> {
        let same = self.with_secrets(|s| {
            Ok(s.master.expose().expose_secret() == keys.master.expose_secret())
        })?;
        if !same {
            return Err(CoreError::BundleInvalid(
                "its keys are not the staged partition's",
            ));
        }
        let mut out = Vec::new();
        for oid in delta.touched() {
            let found = self.with_secrets(|s| Ok(store.object(self.id, oid, &s.master)?))?;
            if let Some((digest, rec)) = found {
                let o = Object::decode(
                    object::handle(self.id, oid, false),
                    rec.expose_secret(),
                    &digest,
                )
                .map_err(|_| CoreError::BundleInvalid("a staged object does not decode"))?;
                out.push((oid, self.index_entries(&o)?));
            }
        }
        Ok(out)
    }
}

impl<'a> Bundle<'a> {
    /// Reads a bundle, every count bounded and every record checked: the record
    /// must parse and name the bundle's partition, every object must decode with
    /// its digest, and the audit log must be numbered without a gap; a whole
    /// bundle's log must start at 1 and its chain and checkpoints verify (a
    /// delta's is verified against the staged log it continues:
    /// [`Bundle::verify_audit_after`]).
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<(Self, PartitionRecord, RecordKeys)> {
        let (b, rest): (Self, _) = postcard::take_from_bytes(bytes)
            .map_err(|_| CoreError::BundleInvalid("it does not parse"))?;
        if !rest.is_empty() {
            return Err(CoreError::BundleInvalid("bytes after the bundle"));
        }
        if b.version != BUNDLE_VERSION {
            return Err(CoreError::BundleInvalid("unknown bundle version"));
        }
        if b.objects.len() > MAX_BUNDLE_OBJECTS || b.audit.len() > MAX_BUNDLE_AUDIT {
            return Err(CoreError::BundleInvalid(
                "too many objects or audit entries",
            ));
        }
        if b.pid == 0 || b.pid >= 1 << 23 {
            return Err(CoreError::BundleInvalid("partition id out of range"));
        }
        let (rec, keys) = PartitionRecord::decode(b.record)
            .map_err(|_| CoreError::BundleInvalid("the partition record does not parse"))?;
        if rec.id != b.pid || rec.name != b.name {
            return Err(CoreError::BundleInvalid(
                "the partition record is not the bundle's partition",
            ));
        }
        let mut last = 0u64;
        for o in &b.objects {
            if o.oid <= last || o.oid >= b.next_oid {
                return Err(CoreError::BundleInvalid("object ids out of order"));
            }
            last = o.oid;
            Object::decode(object::handle(b.pid, o.oid, false), o.record, &o.digest)
                .map_err(|_| CoreError::BundleInvalid("an object record does not decode"))?;
        }
        if !b.delta && !b.deleted.is_empty() {
            return Err(CoreError::BundleInvalid(
                "a whole bundle names deleted objects",
            ));
        }
        let mut last = 0u64;
        for &oid in &b.deleted {
            if oid <= last || oid >= b.next_oid {
                return Err(CoreError::BundleInvalid("deleted ids out of order"));
            }
            last = oid;
            if b.objects.binary_search_by_key(&oid, |o| o.oid).is_ok() {
                return Err(CoreError::BundleInvalid(
                    "an object is both carried and deleted",
                ));
            }
        }
        let first = b.audit.first().map_or(1, |a| a.seq);
        if first == 0 || (!b.delta && first != 1) {
            return Err(CoreError::BundleInvalid("the audit log has a gap"));
        }
        for (i, a) in b.audit.iter().enumerate() {
            if Some(a.seq) != first.checked_add(i as u64) {
                return Err(CoreError::BundleInvalid("the audit log has a gap"));
            }
        }
        if !b.delta {
            let identity = identity_public(&keys)?;
            b.verify_audit_from(&identity, 1, [0; 48])?;
        }
        Ok((b, rec, keys))
    }

    /// Checks that a delta's audit entries continue the log whose head is
    /// `head` (the staged partition's), chained and signed by its identity.
    pub(crate) fn verify_audit_after(
        &self,
        head: &crate::audit::Head,
        identity: &ihsm_crypto::ec::EccP384PublicKey,
    ) -> Result<()> {
        if self.audit.first().is_some_and(|a| a.seq != head.next_seq) {
            return Err(CoreError::BundleInvalid(
                "the delta's audit log does not continue the staged one",
            ));
        }
        self.verify_audit_from(identity, head.next_seq, head.prev)
    }

    fn verify_audit_from(
        &self,
        identity: &ihsm_crypto::ec::EccP384PublicKey,
        first_seq: u64,
        first_prev: [u8; 48],
    ) -> Result<()> {
        if self.audit.is_empty() {
            return Ok(());
        }
        let entries: Vec<Vec<u8>> = self.audit.iter().map(|a| a.entry.to_vec()).collect();
        crate::audit::verify(self.pid, &entries, identity, first_seq, first_prev, None)
            .map(drop)
            .map_err(|_| CoreError::BundleInvalid("the audit log does not verify"))
    }

    /// Writes the bundle's partition into `tx` under its own id: the record
    /// (`record_bytes`, re-encoded by the caller), every object sealed under the
    /// master key with its index entries, the next object id and the audit log.
    /// A delta first drops the index entries of the staged objects it replaces
    /// or deletes (`replaced`, read by the caller) and deletes those gone.
    pub(crate) fn write(
        &self,
        tx: &mut WriteTx<'_>,
        record_bytes: &[u8],
        master: &ihsm_crypto::seal::SealKey,
        index_key: &ihsm_crypto::hmac::HmacKey,
        replaced: &[(u64, super::IndexEntries)],
    ) -> core::result::Result<(), ihsm_store::StoreError> {
        let pid = self.pid;
        tx.put_partition(pid, record_bytes)?;
        for (oid, entries) in replaced {
            for (t, mac) in entries {
                tx.index_remove(pid, *t, mac, *oid)?;
            }
        }
        for &oid in &self.deleted {
            tx.delete_object(pid, oid)?;
        }
        for o in &self.objects {
            tx.put_object(pid, o.oid, master, &o.digest, o.record)?;
            let decoded = Object::decode(object::handle(pid, o.oid, false), o.record, &o.digest)
                .map_err(|_| {
                    ihsm_store::StoreError::Crypto(ihsm_crypto::CryptoError::Internal(
                        "object decoding",
                    ))
                })?;
            for (t, ty) in object::INDEXED {
                if let Some(v) = decoded.attrs.get(&ty) {
                    let mac = object::index_mac(index_key, t, v).map_err(|_| {
                        ihsm_store::StoreError::Crypto(ihsm_crypto::CryptoError::Internal(
                            "index MAC",
                        ))
                    })?;
                    tx.index_add(pid, t, &mac, o.oid)?;
                }
            }
        }
        tx.reserve_object_ids(pid, self.next_oid)?;
        for a in &self.audit {
            tx.audit_append(pid, a.seq, a.entry)?;
        }
        Ok(())
    }

    /// The head of the audit log the bundle carries.
    pub(crate) fn audit_tail(&self) -> Option<&'a [u8]> {
        self.audit.last().map(|a| a.entry)
    }

    /// The ids of the staged objects a delta replaces or deletes.
    pub(crate) fn touched(&self) -> impl Iterator<Item = u64> + '_ {
        self.objects
            .iter()
            .map(|o| o.oid)
            .chain(self.deleted.iter().copied())
    }
}

/// The public half of a bundle's partition identity key.
pub(crate) fn identity_public(keys: &RecordKeys) -> Result<ihsm_crypto::ec::EccP384PublicKey> {
    Ok(
        ihsm_crypto::ec::EccP384PrivateKey::from_der(keys.identity.expose_secret())
            .map_err(|_| CoreError::BundleInvalid("the identity key does not parse"))?
            .public_key()
            .clone(),
    )
}

/// The keys a partition's store records need, derived from its master key as
/// [`Partition::load`] derives them.
pub(crate) fn store_keys(
    master: &ihsm_crypto::Secret<32>,
) -> Result<(ihsm_crypto::seal::SealKey, ihsm_crypto::hmac::HmacKey)> {
    let index_key = ihsm_crypto::hmac::HmacKey::new(
        ihsm_crypto::hash::HashAlg::Sha256,
        super::derive32(master, b"ihsm partition index key v1")?.expose_secret(),
    )?;
    let copy = ihsm_crypto::Secret::<32>::from_slice(master.expose_secret())?;
    Ok((ihsm_crypto::seal::SealKey::new(copy), index_key))
}
