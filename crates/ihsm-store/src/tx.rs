//! The operations of one write transaction.

use core::fmt;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use ihsm_crypto::ExposeSecret;
use ihsm_crypto::seal::SealKey;
use redb::{MultimapTable, ReadableMultimapTable, ReadableTable, Table, WriteTransaction};

use crate::StoreError;
use crate::header::StoreId;
use crate::records::{
    AUDIT, DIGEST_LEN, Generation, INDEX, INDEX_KEY_LEN, META, META_EPOCH, META_GENERATION,
    OBJECTS, PART_STATE, PARTITIONS, PartState, audit_ad, index_bounds, index_key, object_ad,
    open_record, part_state_ad, partition_ad, seal_generation,
};
use crate::store::{db, guarded, table_err};

/// One open write: the operations of [`crate::Store::write`]'s closure. Nothing is
/// visible to readers, or durable, until the closure returns Ok and the write
/// commits.
pub struct WriteTx<'a> {
    sealing: &'a SealKey,
    /// Seals made under `sealing` in this write.
    seals: u64,
    /// Seals `sealing` may still make in this write, the generation record's own
    /// included.
    seal_allowance: u64,
    meta: Table<'a, &'static str, &'static [u8]>,
    partitions: Table<'a, u32, &'static [u8]>,
    objects: Table<'a, (u32, u64), &'static [u8]>,
    index: MultimapTable<'a, &'static [u8; INDEX_KEY_LEN], u64>,
    audit: Table<'a, (u32, u64), &'static [u8]>,
    states: Table<'a, u32, &'static [u8]>,
    /// Partition states read or changed in this write; written back by `finish`.
    cache: BTreeMap<u32, (PartState, bool)>,
    /// The first operation that failed in a way that may have left a partial change.
    abandoned: Option<&'static str>,
    /// The audit entries this write appended, for the store's audit observer once
    /// it commits.
    pub(crate) appended: Vec<(u32, u64, Vec<u8>)>,
}

impl fmt::Debug for WriteTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTx")
            .field("abandoned", &self.abandoned)
            .finish_non_exhaustive()
    }
}

impl<'a> WriteTx<'a> {
    /// Opens the tables of a write.
    ///
    /// Each table opens under its own panic guard, and on a failure the tables
    /// already open are closed one by one under one too: redb panics on some
    /// damaged table definitions, poisoning the transaction's table lock, and
    /// closing a table takes that lock, so a table dropped while the panic
    /// unwound would panic again and abort the process.
    pub(crate) fn new(
        txn: &'a WriteTransaction,
        sealing: &'a SealKey,
        seal_allowance: u64,
    ) -> Result<Self, StoreError> {
        const WHAT: &str = "opening tables";
        let meta = guarded(|| txn.open_table(META).map_err(table_err(WHAT)))?;
        let partitions = match guarded(|| txn.open_table(PARTITIONS).map_err(table_err(WHAT))) {
            Ok(t) => t,
            Err(e) => return Err(close_after(e, (meta,))),
        };
        let objects = match guarded(|| txn.open_table(OBJECTS).map_err(table_err(WHAT))) {
            Ok(t) => t,
            Err(e) => return Err(close_after(e, (meta, partitions))),
        };
        let index = match guarded(|| txn.open_multimap_table(INDEX).map_err(table_err(WHAT))) {
            Ok(t) => t,
            Err(e) => return Err(close_after(e, (meta, partitions, objects))),
        };
        let audit = match guarded(|| txn.open_table(AUDIT).map_err(table_err(WHAT))) {
            Ok(t) => t,
            Err(e) => return Err(close_after(e, (meta, partitions, objects, index))),
        };
        let states = match guarded(|| txn.open_table(PART_STATE).map_err(table_err(WHAT))) {
            Ok(t) => t,
            Err(e) => return Err(close_after(e, (meta, partitions, objects, index, audit))),
        };
        Ok(Self {
            sealing,
            seals: 0,
            seal_allowance,
            meta,
            partitions,
            objects,
            index,
            audit,
            states,
            cache: BTreeMap::new(),
            abandoned: None,
            appended: Vec::new(),
        })
    }

    /// Closes the tables under the panic guard (see [`WriteTx::new`]); an error if
    /// closing them panicked.
    pub(crate) fn close(self) -> Result<(), StoreError> {
        let Self {
            meta,
            partitions,
            objects,
            index,
            audit,
            states,
            ..
        } = self;
        let mut r = Ok(());
        for close in [
            close_one(meta),
            close_one(partitions),
            close_one(objects),
            close_one(index),
            close_one(audit),
            close_one(states),
        ] {
            r = r.and(close);
        }
        r
    }

    /// Runs one operation under the panic guard, remembering failures that may
    /// have left a partial change so that the write cannot commit them.
    fn op<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let r = guarded(|| f(self));
        if let Err(e) = &r {
            let refusal = matches!(
                e,
                StoreError::NoSuchPartition { .. }
                    | StoreError::NoSuchObject { .. }
                    | StoreError::AuditSeqExists { .. }
                    | StoreError::Exhausted { .. }
            );
            if !refusal && self.abandoned.is_none() {
                self.abandoned = Some(name);
            }
        }
        r
    }

    /// Seals `plain` under the sealing key, counting the seal against the epoch's
    /// budget.
    fn seal(&mut self, ad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        if self.seals >= self.seal_allowance {
            return Err(StoreError::SealBudget {
                allowance: self.seal_allowance,
            });
        }
        self.seals += 1;
        Ok(self.sealing.seal(ad, plain)?)
    }

    /// Seals made under the sealing key so far in this write.
    pub(crate) fn seals(&self) -> u64 {
        self.seals
    }

    fn require_partition(&self, pid: u32) -> Result<(), StoreError> {
        match self
            .partitions
            .get(pid)
            .map_err(db("reading a partition"))?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchPartition { pid }),
        }
    }

    /// The state of partition `pid`, loaded once per write.
    fn state(&mut self, pid: u32) -> Result<&mut (PartState, bool), StoreError> {
        match self.cache.entry(pid) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let loaded = load_state(&self.states, &self.objects, self.sealing, pid)?;
                Ok(e.insert(loaded))
            }
        }
    }

    /// Inserts or replaces partition `pid`'s record, sealed under the sealing key
    /// with AD `b"ihsm/partition/v1" || pid (BE)`.
    ///
    /// # Errors
    /// Database or cryptographic errors.
    pub fn put_partition(&mut self, pid: u32, record: &[u8]) -> Result<(), StoreError> {
        self.op("put_partition", |tx| {
            let blob = tx.seal(&partition_ad(pid), record)?;
            tx.partitions
                .insert(pid, blob.as_slice())
                .map_err(db("writing a partition"))?;
            Ok(())
        })
    }

    /// Removes partition `pid`'s record and all its objects, index entries, audit
    /// entries and its object-id counter (a later partition with the same id starts
    /// again at 1).
    ///
    /// # Errors
    /// Database errors.
    pub fn delete_partition(&mut self, pid: u32) -> Result<(), StoreError> {
        const WHAT: &str = "deleting a partition";
        self.op("delete_partition", |tx| {
            tx.partitions.remove(pid).map_err(db(WHAT))?;
            tx.objects
                .retain_in((pid, 0)..=(pid, u64::MAX), |_, _| false)
                .map_err(db(WHAT))?;
            let (lo, hi) = index_bounds(pid);
            let mut keys = Vec::new();
            for entry in tx
                .index
                .range::<&[u8; INDEX_KEY_LEN]>(&lo..=&hi)
                .map_err(db(WHAT))?
            {
                let (k, _) = entry.map_err(db(WHAT))?;
                keys.push(*k.value());
            }
            for k in &keys {
                tx.index.remove_all(k).map_err(db(WHAT))?;
            }
            tx.audit
                .retain_in((pid, 0)..=(pid, u64::MAX), |_, _| false)
                .map_err(db(WHAT))?;
            tx.states.remove(pid).map_err(db(WHAT))?;
            tx.cache.remove(&pid);
            Ok(())
        })
    }

    /// The next object id of partition `pid`: 1, 2, 3, ... Persistent with the
    /// write and never reused, even after the object is deleted.
    ///
    /// # Errors
    /// [`StoreError::NoSuchPartition`], [`StoreError::Exhausted`], or
    /// [`StoreError::Corrupt`] when the partition state fails authentication.
    pub fn next_object_id(&mut self, pid: u32) -> Result<u64, StoreError> {
        self.op("next_object_id", |tx| {
            tx.require_partition(pid)?;
            let (st, dirty) = tx.state(pid)?;
            let oid = st.next_oid;
            st.next_oid = oid.checked_add(1).ok_or(StoreError::Exhausted {
                what: "object ids of a partition",
            })?;
            *dirty = true;
            Ok(oid)
        })
    }

    /// Makes partition `pid`'s next object id at least `next` (a partition that
    /// arrives from another device keeps the ids it never reused).
    ///
    /// # Errors
    /// [`StoreError::NoSuchPartition`], or [`StoreError::Corrupt`] when the
    /// partition state fails authentication.
    pub fn reserve_object_ids(&mut self, pid: u32, next: u64) -> Result<(), StoreError> {
        self.op("reserve_object_ids", |tx| {
            tx.require_partition(pid)?;
            let (st, dirty) = tx.state(pid)?;
            if next > st.next_oid {
                st.next_oid = next;
                *dirty = true;
            }
            Ok(())
        })
    }

    /// Inserts or replaces object `oid` of partition `pid`: `record` sealed under
    /// `key` with AD `b"ihsm/object/v1" || pid (BE) || oid (BE) || attr_digest`,
    /// stored after `attr_digest`.
    ///
    /// # Errors
    /// [`StoreError::NoSuchPartition`], [`StoreError::Exhausted`] for the id
    /// 2^64 - 1, database or cryptographic errors.
    pub fn put_object(
        &mut self,
        pid: u32,
        oid: u64,
        key: &SealKey,
        attr_digest: &[u8; 32],
        record: &[u8],
    ) -> Result<(), StoreError> {
        const WHAT: &str = "writing an object";
        self.op("put_object", |tx| {
            tx.require_partition(pid)?;
            let after = oid.checked_add(1).ok_or(StoreError::Exhausted {
                what: "object ids of a partition",
            })?;
            let blob = key.seal(&object_ad(pid, oid, attr_digest), record)?;
            let mut value = Vec::with_capacity(DIGEST_LEN + blob.len());
            value.extend_from_slice(attr_digest);
            value.extend_from_slice(&blob);
            let (st, _) = tx.state(pid)?;
            let mut st = *st;
            let existed = tx
                .objects
                .insert((pid, oid), value.as_slice())
                .map_err(db(WHAT))?
                .is_some();
            if !existed {
                st.count = st.count.checked_add(1).ok_or(StoreError::Exhausted {
                    what: "object count of a partition",
                })?;
            }
            st.next_oid = st.next_oid.max(after);
            tx.cache.insert(pid, (st, true));
            Ok(())
        })
    }

    /// Deletes object `oid` of partition `pid`; false when there was none. Its
    /// index entries stay until [`WriteTx::index_remove`] removes them.
    ///
    /// # Errors
    /// Database errors, or [`StoreError::Corrupt`] when the partition state does
    /// not agree with the objects.
    pub fn delete_object(&mut self, pid: u32, oid: u64) -> Result<bool, StoreError> {
        self.op("delete_object", |tx| {
            let (st, _) = tx.state(pid)?;
            let mut st = *st;
            let removed = tx
                .objects
                .remove((pid, oid))
                .map_err(db("deleting an object"))?
                .is_some();
            if removed {
                st.count = st.count.checked_sub(1).ok_or(StoreError::corrupt(
                    "partition state record (object count)",
                    Some(pid),
                    None,
                ))?;
                tx.cache.insert(pid, (st, true));
            }
            Ok(removed)
        })
    }

    /// Adds object `oid` to the index under `(tag, value_mac)` in partition `pid`.
    /// Adding an entry twice is harmless.
    ///
    /// # Errors
    /// [`StoreError::NoSuchObject`] when the object is not stored (put it first).
    pub fn index_add(
        &mut self,
        pid: u32,
        tag: u8,
        value_mac: &[u8; 16],
        oid: u64,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "adding an index entry";
        self.op("index_add", |tx| {
            if tx.objects.get((pid, oid)).map_err(db(WHAT))?.is_none() {
                return Err(StoreError::NoSuchObject { pid, oid });
            }
            tx.index
                .insert(&index_key(pid, tag, value_mac), oid)
                .map_err(db(WHAT))?;
            Ok(())
        })
    }

    /// Removes object `oid` from the index under `(tag, value_mac)`; removing an
    /// absent entry is harmless.
    ///
    /// # Errors
    /// Database errors.
    pub fn index_remove(
        &mut self,
        pid: u32,
        tag: u8,
        value_mac: &[u8; 16],
        oid: u64,
    ) -> Result<(), StoreError> {
        self.op("index_remove", |tx| {
            tx.index
                .remove(&index_key(pid, tag, value_mac), oid)
                .map_err(db("removing an index entry"))?;
            Ok(())
        })
    }

    /// Appends audit entry `seq` of partition `pid`, sealed under the sealing key
    /// with AD `b"ihsm/audit/v1" || pid (BE) || seq (BE)`.
    ///
    /// # Errors
    /// [`StoreError::AuditSeqExists`] when `seq` is taken (nothing is changed).
    pub fn audit_append(&mut self, pid: u32, seq: u64, entry: &[u8]) -> Result<(), StoreError> {
        const WHAT: &str = "appending to the audit log";
        self.op("audit_append", |tx| {
            if tx.audit.get((pid, seq)).map_err(db(WHAT))?.is_some() {
                return Err(StoreError::AuditSeqExists { pid, seq });
            }
            let blob = tx.seal(&audit_ad(pid, seq), entry)?;
            tx.audit
                .insert((pid, seq), blob.as_slice())
                .map_err(db(WHAT))?;
            tx.appended.push((pid, seq, entry.to_vec()));
            Ok(())
        })
    }

    /// Writes back the changed partition states and the new generation record, which
    /// counts this write's seals (its own included) on top of `seals_before`.
    pub(crate) fn finish(
        &mut self,
        id: &StoreId,
        generation: u64,
        epoch: u32,
        seals_before: u64,
    ) -> Result<(), StoreError> {
        if let Some(op) = self.abandoned {
            return Err(StoreError::WriteAbandoned { op });
        }
        const WHAT: &str = "finishing a write";
        guarded(|| {
            let dirty: Vec<(u32, PartState)> = self
                .cache
                .iter()
                .filter(|(_, (_, dirty))| *dirty)
                .map(|(pid, (st, _))| (*pid, *st))
                .collect();
            for (pid, st) in dirty {
                let blob = self.seal(&part_state_ad(pid), &st.plain())?;
                self.states.insert(pid, blob.as_slice()).map_err(db(WHAT))?;
            }
            self.put_generation(id, generation, epoch, seals_before)
        })
    }

    /// Seals the generation record, counting its own seal, and records the epoch.
    fn put_generation(
        &mut self,
        id: &StoreId,
        generation: u64,
        epoch: u32,
        seals_before: u64,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "writing the generation record";
        if self.seals >= self.seal_allowance {
            return Err(StoreError::SealBudget {
                allowance: self.seal_allowance,
            });
        }
        self.seals += 1;
        let g = Generation {
            generation,
            epoch,
            seals: Some(seals_before.saturating_add(self.seals)),
        };
        let blob = seal_generation(self.sealing, id, &g)?;
        self.meta
            .insert(META_GENERATION, blob.as_slice())
            .map_err(db(WHAT))?;
        self.meta
            .insert(META_EPOCH, epoch.to_be_bytes().as_slice())
            .map_err(db(WHAT))?;
        Ok(())
    }

    /// Seals every record of the sealing key again under `next` (the key of epoch
    /// `epoch`), opening each with `previous`: partition records, partition states
    /// and audit entries, then the generation record. This write makes no other
    /// change. Afterwards `self` seals under `next`.
    pub(crate) fn reseal_all(
        &mut self,
        previous: &SealKey,
        next: &'a SealKey,
        id: &StoreId,
        generation: u64,
        epoch: u32,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "re-sealing under a new epoch of the sealing key";
        self.sealing = next;
        guarded(|| {
            // Partition records and states: a few per partition, read in one go.
            let mut parts = Vec::new();
            for entry in self.partitions.iter().map_err(db(WHAT))? {
                let (k, v) = entry.map_err(db(WHAT))?;
                parts.push((k.value(), v.value().to_vec()));
            }
            for (pid, blob) in parts {
                let ad = partition_ad(pid);
                let plain = open_record(previous, &ad, &blob, "partition record", Some(pid), None)?;
                let blob = self.seal(&ad, plain.expose_secret())?;
                self.partitions
                    .insert(pid, blob.as_slice())
                    .map_err(db(WHAT))?;
            }
            let mut states = Vec::new();
            for entry in self.states.iter().map_err(db(WHAT))? {
                let (k, v) = entry.map_err(db(WHAT))?;
                states.push((k.value(), v.value().to_vec()));
            }
            for (pid, blob) in states {
                let st = PartState::open(previous, pid, &blob)?;
                let blob = self.seal(&part_state_ad(pid), &st.plain())?;
                self.states.insert(pid, blob.as_slice()).map_err(db(WHAT))?;
            }
            // Audit entries: any number, taken a batch at a time in key order.
            let mut from = (0u32, 0u64);
            loop {
                let mut batch = Vec::with_capacity(RESEAL_BATCH);
                for entry in self
                    .audit
                    .range(from..)
                    .map_err(db(WHAT))?
                    .take(RESEAL_BATCH)
                {
                    let (k, v) = entry.map_err(db(WHAT))?;
                    batch.push((k.value(), v.value().to_vec()));
                }
                let Some(&((pid, seq), _)) = batch.last() else {
                    break;
                };
                for ((pid, seq), blob) in &batch {
                    let ad = audit_ad(*pid, *seq);
                    let plain =
                        open_record(previous, &ad, blob, "audit entry", Some(*pid), Some(*seq))?;
                    let blob = self.seal(&ad, plain.expose_secret())?;
                    self.audit
                        .insert((*pid, *seq), blob.as_slice())
                        .map_err(db(WHAT))?;
                }
                from = match seq.checked_add(1) {
                    Some(s) => (pid, s),
                    None => match pid.checked_add(1) {
                        Some(p) => (p, 0),
                        None => break,
                    },
                };
            }
            self.put_generation(id, generation, epoch, 0)
        })
    }
}

/// Audit entries re-sealed per pass of [`WriteTx::reseal_all`].
const RESEAL_BATCH: usize = 1024;

/// Drops one table under the panic guard.
fn close_one<T>(t: T) -> Result<(), StoreError> {
    guarded(move || {
        drop(t);
        Ok(())
    })
}

/// Closes the tables opened before `e`, each under the panic guard, and gives `e`.
fn close_after<T: Tables>(e: StoreError, tables: T) -> StoreError {
    tables.close();
    e
}

/// Tables opened so far, to be closed one by one.
trait Tables {
    fn close(self);
}

macro_rules! tables {
    ($($t:ident),+) => {
        impl<$($t),+> Tables for ($($t,)+) {
            #[allow(non_snake_case)]
            fn close(self) {
                let ($($t,)+) = self;
                $(let _ = close_one($t);)+
            }
        }
    };
}
tables!(A);
tables!(A, B);
tables!(A, B, C);
tables!(A, B, C, D);
tables!(A, B, C, D, E);

/// Loads partition `pid`'s state (fresh when it has none). Its next object id is
/// raised above every stored object id, so that ids are never reused even if an
/// older state record were put back; the second value says whether it was raised.
fn load_state(
    states: &Table<'_, u32, &'static [u8]>,
    objects: &Table<'_, (u32, u64), &'static [u8]>,
    sealing: &SealKey,
    pid: u32,
) -> Result<(PartState, bool), StoreError> {
    const WHAT: &str = "reading a partition state";
    let mut st = match states.get(pid).map_err(db(WHAT))? {
        Some(v) => PartState::open(sealing, pid, v.value())?,
        None => PartState::FRESH,
    };
    let last = objects
        .range((pid, 0)..=(pid, u64::MAX))
        .map_err(db(WHAT))?
        .next_back()
        .transpose()
        .map_err(db(WHAT))?
        .map(|(k, _)| k.value().1);
    match last {
        Some(last) if last >= st.next_oid => {
            st.next_oid = last.checked_add(1).ok_or(StoreError::Exhausted {
                what: "object ids of a partition",
            })?;
            Ok((st, true))
        }
        _ => Ok((st, false)),
    }
}
