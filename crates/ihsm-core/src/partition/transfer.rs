//! A partition as one bundle, for a move to another device: its sealed record's
//! contents (PINs' verifiers and lockout counts, quotas, principals, policy, the
//! master and identity keys), every token object's record, the next object id,
//! and the whole audit log. The bundle exists only in locked memory, and leaves
//! the device only sealed (HPKE, `device::migrate`).
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

/// The bundle's format version.
const BUNDLE_VERSION: u16 = 1;
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
    objects: Vec<ObjectOut<'a>>,
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
    #[serde(borrow)]
    objects: Vec<ObjectIn<'a>>,
    #[serde(borrow)]
    audit: Vec<AuditIn<'a>>,
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
    /// The partition as a bundle, read from `store` while the partition serves
    /// nothing (the caller stopped it, under its audit lock, so no write is in
    /// flight).
    pub(crate) fn bundle(&self, store: &Store) -> Result<SecretVec> {
        let pid = self.id;
        let record = store
            .partition(pid)?
            .ok_or_else(|| CoreError::PartitionNotFound(self.name.clone()))?;
        let mut objects = Vec::new();
        self.with_secrets(|s| {
            for oid in store.object_ids(pid)? {
                if let Some((digest, rec)) = store.object(pid, oid, &s.master)? {
                    objects.push((oid, digest, rec));
                }
            }
            Ok(())
        })?;
        let next_oid = store.next_object_id(pid)?;
        let mut audit = Vec::new();
        let mut from = 1;
        loop {
            let batch = store.audit(pid, from, 4096)?;
            let Some((last, _)) = batch.last() else { break };
            from = last.saturating_add(1);
            audit.extend(batch);
        }
        let out = BundleOut {
            version: BUNDLE_VERSION,
            pid,
            name: &self.name,
            record: record.expose_secret(),
            next_oid,
            objects: objects
                .iter()
                .map(|(oid, digest, rec)| ObjectOut {
                    oid: *oid,
                    digest: *digest,
                    record: rec.expose_secret(),
                })
                .collect(),
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
        Ok(buf)
    }
}

impl<'a> Bundle<'a> {
    /// Reads a bundle, every count bounded and every record checked: the record
    /// must parse and name the bundle's partition, every object must decode with
    /// its digest, and the audit log must be whole and chained.
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
        let entries: Vec<Vec<u8>> = b.audit.iter().map(|a| a.entry.to_vec()).collect();
        for (i, a) in b.audit.iter().enumerate() {
            if a.seq != i as u64 + 1 {
                return Err(CoreError::BundleInvalid("the audit log has a gap"));
            }
        }
        let identity = ihsm_crypto::ec::EccP384PrivateKey::from_der(keys.identity.expose_secret())
            .map_err(|_| CoreError::BundleInvalid("the identity key does not parse"))?;
        crate::audit::verify(b.pid, &entries, identity.public_key(), 1, [0; 48], None)
            .map_err(|_| CoreError::BundleInvalid("the audit log does not verify"))?;
        Ok((b, rec, keys))
    }

    /// Writes the bundle's partition into `tx` under its own id: the record
    /// (`record_bytes`, re-encoded by the caller), every object sealed under the
    /// master key with its index entries, the next object id and the audit log.
    pub(crate) fn write(
        &self,
        tx: &mut WriteTx<'_>,
        record_bytes: &[u8],
        master: &ihsm_crypto::seal::SealKey,
        index_key: &ihsm_crypto::hmac::HmacKey,
    ) -> core::result::Result<(), ihsm_store::StoreError> {
        let pid = self.pid;
        tx.put_partition(pid, record_bytes)?;
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
