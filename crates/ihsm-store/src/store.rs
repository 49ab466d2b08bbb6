//! The store: open/create, reads, and the one atomic write.

use core::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, SecretVec};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableError,
    WriteTransaction,
};

use crate::StoreError;
use crate::backend::OffsetBackend;
use crate::counter;
use crate::header::{Header, StoreId};
use crate::keys::{SealingKeys, StoreOptions};
use crate::records::{
    AUDIT, Generation, INDEX, META, META_EPOCH, META_GENERATION, OBJECTS, PART_STATE, PARTITIONS,
    PartState, audit_ad, decode_epoch, index_key, object_ad, open_generation, open_record,
    partition_ad, seal_generation, split_object,
};
use crate::tx::WriteTx;

/// redb's page cache. Reads fault pages in on demand; this bounds how much of a
/// large store stays in memory.
const CACHE_BYTES: usize = 64 << 20;

/// What [`Store::open`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// True when the store did not exist and was created.
    pub created: bool,
    /// The store's generation (number of committed writes).
    pub generation: u64,
    /// True when the monotonic counter was one write behind the store (a crash
    /// between a commit and the counter update, or a crash between creating the
    /// store and its counter) and was brought up to date.
    pub repaired_counter: bool,
}

/// A database whose closing, which commits redb's allocator state and can meet a
/// damaged file, cannot panic out of a drop.
struct Db(Option<Database>);

impl Db {
    fn get(&self) -> Result<&Database, StoreError> {
        self.0.as_ref().ok_or(StoreError::Database {
            what: "using a closed store",
            source: redb::Error::DatabaseClosed,
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
        }
    }
}

/// The sealed, crash-safe object store of one device.
pub struct Store {
    db: Db,
    keys: SealingKeys,
    options: StoreOptions,
    /// The sealing key's epoch that writes seal under.
    epoch: AtomicU32,
    /// Seals made under that epoch's key; `u64::MAX` while unknown (a store whose
    /// generation record predates the count), which re-keys before the next write.
    seals: AtomicU64,
    store_id: StoreId,
    path: PathBuf,
    counter_path: PathBuf,
    writer: Mutex<()>,
    generation: AtomicU64,
    counter_lags: AtomicBool,
    /// The first I/O error the database met (after it, redb refuses writes).
    io_failure: Mutex<Option<String>>,
    /// Told of every audit entry once its write has committed.
    audit_observer: std::sync::RwLock<Option<AuditObserver>>,
}

/// Called with `(pid, seq, entry)` for each audit entry a write appended, after
/// the write committed (so only durable entries), in order, on the writer's
/// thread: it must not block.
pub type AuditObserver = std::sync::Arc<dyn Fn(u32, u64, &[u8]) + Send + Sync>;

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("counter_path", &self.counter_path)
            .field("generation", &self.generation())
            .field("seal_epoch", &self.seal_epoch())
            .finish_non_exhaustive()
    }
}

/// Runs `f`, turning a panic inside the database (which a damaged file can cause)
/// into [`StoreError::DatabaseDamaged`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the database library panicked".to_owned());
        Err(StoreError::DatabaseDamaged { detail })
    })
}

/// Maps a failure to open a table: a missing table is damage, not a database error.
pub(crate) fn table_err(what: &'static str) -> impl FnOnce(TableError) -> StoreError {
    move |e| match e {
        TableError::TableDoesNotExist(name) => StoreError::DatabaseDamaged {
            detail: format!("table {name} is missing"),
        },
        other => StoreError::db(what)(other.into()),
    }
}

fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(CACHE_BYTES);
    b
}

impl Store {
    /// The SVN the store at `path` was sealed at, read from its unauthenticated
    /// header without any key (`None` if there is no store yet). Works while the
    /// store is open.
    ///
    /// # Errors
    /// [`StoreError::HeaderTruncated`], [`StoreError::HeaderBadMagic`],
    /// [`StoreError::HeaderUnsupportedVersion`], [`StoreError::HeaderDamaged`] or
    /// [`StoreError::Io`].
    pub fn sealed_svn(path: &Path) -> Result<Option<u32>, StoreError> {
        Ok(Header::read(path)?.map(|h| h.svn))
    }

    /// Creates the store at `path` if there is none (recording `sealed_svn` and
    /// creating the monotonic counter at `counter_path`), else opens it.
    /// `sealing` is the device sealing key from the root of trust, derived at
    /// `sealed_svn`.
    ///
    /// Opening checks, in order: the header, the identity record (a wrong key is
    /// [`StoreError::WrongIdentity`] and nothing on disk is changed), the counter
    /// file, the database, the sealed generation against the counter.
    ///
    /// # Errors
    /// Every header, identity, counter and rollback error of [`StoreError`];
    /// [`StoreError::AlreadyOpen`]; [`StoreError::Io`].
    pub fn open(
        path: &Path,
        counter_path: &Path,
        sealing: SealKey,
        sealed_svn: u32,
    ) -> Result<(Store, OpenReport), StoreError> {
        Self::open_with(
            path,
            counter_path,
            sealing,
            sealed_svn,
            StoreOptions::default(),
        )
    }

    /// [`Store::open`] with options other than a device's (a smaller seal budget,
    /// in tests).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(
        path: &Path,
        counter_path: &Path,
        sealing: SealKey,
        sealed_svn: u32,
        options: StoreOptions,
    ) -> Result<(Store, OpenReport), StoreError> {
        let mut created = false;
        let header = match Header::read(path)? {
            Some(h) => h,
            None => {
                created = create(path, counter_path, &sealing, sealed_svn)?;
                Header::read(path)?.ok_or_else(|| StoreError::Io {
                    what: "store vanished right after it was created",
                    path: path.to_owned(),
                    source: std::io::ErrorKind::NotFound.into(),
                })?
            }
        };
        if header.svn != sealed_svn {
            return Err(StoreError::SvnMismatch {
                sealed: header.svn,
                requested: sealed_svn,
            });
        }
        let store_id = header.unseal(&sealing, path)?;
        let keys = SealingKeys::new(sealing, store_id);
        let counter = counter::read(counter_path)?;

        // Nothing has been written so far. The database may now write its own
        // bookkeeping (its recovery flag, allocator state), never our records.
        let backend = OffsetBackend::open(path)?;
        if redb::StorageBackend::len(&backend).map_err(StoreError::io("cannot stat store", path))?
            == 0
        {
            return Err(StoreError::DatabaseDamaged {
                detail: "the database after the header is empty (truncated)".to_owned(),
            });
        }
        let db = Db(Some(guarded(|| {
            builder().create_with_backend(backend).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                    path: path.to_owned(),
                },
                e => StoreError::db("opening the database")(e.into()),
            })
        })?));
        let Generation {
            generation,
            epoch,
            seals,
        } = guarded(|| {
            const WHAT: &str = "reading the generation";
            let txn = db.get()?.begin_read().map_err(self::db(WHAT))?;
            let meta = txn.open_table(META).map_err(table_err(WHAT))?;
            let epoch = decode_epoch(
                meta.get(META_EPOCH)
                    .map_err(self::db(WHAT))?
                    .as_ref()
                    .map(|v| v.value()),
            )?;
            let blob = meta
                .get(META_GENERATION)
                .map_err(self::db(WHAT))?
                .ok_or_else(|| StoreError::corrupt("generation record (missing)", None, None))?;
            open_generation(&*keys.epoch(epoch)?, &store_id, epoch, blob.value())
        })?;

        let repaired_counter = match counter {
            Some(c) if c == generation => false,
            Some(c) if generation < c => {
                return Err(StoreError::Rollback {
                    store: generation,
                    counter: c,
                });
            }
            Some(c) if Some(generation) == c.checked_add(1) => {
                counter::write(counter_path, generation)?;
                true
            }
            Some(c) => {
                return Err(StoreError::CounterBehind {
                    store: generation,
                    counter: c,
                });
            }
            None if generation == 0 => {
                counter::write(counter_path, 0)?;
                true
            }
            None => {
                return Err(StoreError::CounterMissing {
                    path: counter_path.to_owned(),
                    store: generation,
                });
            }
        };
        let store = Store {
            db,
            keys,
            options,
            epoch: AtomicU32::new(epoch),
            seals: AtomicU64::new(seals.unwrap_or(u64::MAX)),
            store_id,
            path: path.to_owned(),
            counter_path: counter_path.to_owned(),
            writer: Mutex::new(()),
            generation: AtomicU64::new(generation),
            counter_lags: AtomicBool::new(false),
            io_failure: Mutex::new(None),
            audit_observer: std::sync::RwLock::new(None),
        };
        Ok((
            store,
            OpenReport {
                created,
                generation,
                repaired_counter,
            },
        ))
    }

    /// The number of writes committed to this store since it was created.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// True when the last write committed but its monotonic counter update failed:
    /// the store is one generation ahead of the counter (as after a crash between
    /// the two; the next open accepts and repairs it). The next [`Store::write`]
    /// retries the update first and fails, committing nothing, while it cannot.
    #[must_use]
    pub fn counter_lags(&self) -> bool {
        self.counter_lags.load(Ordering::Acquire)
    }

    /// The epoch of the sealing key that writes seal under.
    #[must_use]
    pub fn seal_epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Seals made under the current epoch's key (`None` while unknown: a store
    /// written before seals were counted, which re-keys before its next write).
    #[must_use]
    pub fn seals_in_epoch(&self) -> Option<u64> {
        let n = self.seals.load(Ordering::Acquire);
        (n != u64::MAX).then_some(n)
    }

    fn read<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        guarded(|| {
            let txn = self
                .db
                .get()?
                .begin_read()
                .map_err(|e| StoreError::db(what)(e.into()))?;
            f(&txn)
        })
        .map_err(|e| self.halted(e))
    }

    /// The sealing key of the epoch that `txn`'s snapshot was written under (a
    /// reader that began before a re-key committed reads the older epoch's records).
    fn snapshot_key(
        &self,
        txn: &ReadTransaction,
        what: &'static str,
    ) -> Result<Arc<SealKey>, StoreError> {
        let meta = txn.open_table(META).map_err(table_err(what))?;
        let epoch = decode_epoch(
            meta.get(META_EPOCH)
                .map_err(db(what))?
                .as_ref()
                .map(|v| v.value()),
        )?;
        self.keys.epoch(epoch)
    }

    /// Names the cause when the database stops on an I/O error: redb answers every
    /// later write (and every read it must take from the file) with a bare
    /// "previous I/O error", and the operator needs to know it was, say, a full
    /// disk, and what to do.
    fn halted(&self, e: StoreError) -> StoreError {
        let mut first = self
            .io_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cause = match &e {
            StoreError::Database {
                source: redb::Error::Io(io),
                ..
            } => first.get_or_insert_with(|| io.to_string()).clone(),
            StoreError::Database {
                source: redb::Error::PreviousIo,
                ..
            } => first
                .clone()
                .unwrap_or_else(|| "an earlier I/O error".to_owned()),
            _ => return e,
        };
        StoreError::Halted {
            path: self.path.clone(),
            cause,
        }
    }

    /// Every partition record, opened, in partition-id order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a record that fails authentication.
    pub fn partitions(&self) -> Result<Vec<(u32, SecretVec)>, StoreError> {
        const WHAT: &str = "reading partitions";
        self.read(WHAT, |txn| {
            let key = self.snapshot_key(txn, WHAT)?;
            let t = txn.open_table(PARTITIONS).map_err(table_err(WHAT))?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(db(WHAT))? {
                let (k, v) = entry.map_err(db(WHAT))?;
                let pid = k.value();
                let rec = open_record(
                    &key,
                    &partition_ad(pid),
                    v.value(),
                    "partition record",
                    Some(pid),
                    None,
                )?;
                out.push((pid, rec));
            }
            Ok(out)
        })
    }

    /// The record of partition `pid`, opened.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it fails authentication.
    pub fn partition(&self, pid: u32) -> Result<Option<SecretVec>, StoreError> {
        const WHAT: &str = "reading a partition";
        self.read(WHAT, |txn| {
            let t = txn.open_table(PARTITIONS).map_err(table_err(WHAT))?;
            let Some(v) = t.get(pid).map_err(db(WHAT))? else {
                return Ok(None);
            };
            open_record(
                &*self.snapshot_key(txn, WHAT)?,
                &partition_ad(pid),
                v.value(),
                "partition record",
                Some(pid),
                None,
            )
            .map(Some)
        })
    }

    /// Object `oid` of partition `pid`, opened with `key` (the partition master
    /// key): its attribute digest (to be checked by the caller against the
    /// attributes inside the record) and its record.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the record, its digest or its place fails
    /// authentication (including a wrong `key`).
    pub fn object(
        &self,
        pid: u32,
        oid: u64,
        key: &SealKey,
    ) -> Result<Option<([u8; 32], SecretVec)>, StoreError> {
        const WHAT: &str = "reading an object";
        self.read(WHAT, |txn| {
            let t = txn.open_table(OBJECTS).map_err(table_err(WHAT))?;
            let Some(v) = t.get((pid, oid)).map_err(db(WHAT))? else {
                return Ok(None);
            };
            let (digest, blob) = split_object(v.value(), pid, oid)?;
            let rec = open_record(
                key,
                &object_ad(pid, oid, digest),
                blob,
                "object record",
                Some(pid),
                Some(oid),
            )?;
            let mut d = [0u8; 32];
            d.copy_from_slice(digest);
            Ok(Some((d, rec)))
        })
    }

    /// The ids of partition `pid`'s objects, ascending.
    ///
    /// # Errors
    /// Database errors only.
    pub fn object_ids(&self, pid: u32) -> Result<Vec<u64>, StoreError> {
        const WHAT: &str = "listing objects";
        self.read(WHAT, |txn| {
            let t = txn.open_table(OBJECTS).map_err(table_err(WHAT))?;
            let mut out = Vec::new();
            for entry in t.range((pid, 0)..=(pid, u64::MAX)).map_err(db(WHAT))? {
                let (k, _) = entry.map_err(db(WHAT))?;
                out.push(k.value().1);
            }
            Ok(out)
        })
    }

    /// Every object of partition `pid` with the attribute digest stored before
    /// its sealed record, in id order, read in one transaction and without
    /// opening a record: what changed since a list of digests taken earlier.
    /// A digest read here is authenticated only when its record is opened.
    ///
    /// # Errors
    /// Database errors; [`StoreError::Corrupt`] for a value too short to hold a
    /// digest.
    pub fn object_digests(&self, pid: u32) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        const WHAT: &str = "listing object digests";
        self.read(WHAT, |txn| {
            let t = txn.open_table(OBJECTS).map_err(table_err(WHAT))?;
            let mut out = Vec::new();
            for entry in t.range((pid, 0)..=(pid, u64::MAX)).map_err(db(WHAT))? {
                let (k, v) = entry.map_err(db(WHAT))?;
                let oid = k.value().1;
                let (digest, _) = split_object(v.value(), pid, oid)?;
                let mut d = [0u8; 32];
                d.copy_from_slice(digest);
                out.push((oid, d));
            }
            Ok(out)
        })
    }

    /// The number of objects of partition `pid` (kept in its sealed state record,
    /// not counted).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the state record fails authentication.
    pub fn object_count(&self, pid: u32) -> Result<u64, StoreError> {
        const WHAT: &str = "counting objects";
        self.read(WHAT, |txn| {
            let t = txn.open_table(PART_STATE).map_err(table_err(WHAT))?;
            match t.get(pid).map_err(db(WHAT))? {
                Some(v) => {
                    Ok(PartState::open(&*self.snapshot_key(txn, WHAT)?, pid, v.value())?.count)
                }
                None => Ok(0),
            }
        })
    }

    /// The id partition `pid`'s next object will get (1 for a partition that
    /// has stored none).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the state record fails authentication.
    pub fn next_object_id(&self, pid: u32) -> Result<u64, StoreError> {
        const WHAT: &str = "reading the next object id";
        self.read(WHAT, |txn| {
            let t = txn.open_table(PART_STATE).map_err(table_err(WHAT))?;
            match t.get(pid).map_err(db(WHAT))? {
                Some(v) => {
                    Ok(PartState::open(&*self.snapshot_key(txn, WHAT)?, pid, v.value())?.next_oid)
                }
                None => Ok(1),
            }
        })
    }

    /// Index lookup: the ids of partition `pid`'s objects for which
    /// `(tag, value_mac)` was added, ascending. One point lookup.
    ///
    /// The index is not authenticated (its entries hold no secret): a caller must
    /// check each hit against the object's authenticated attributes.
    ///
    /// # Errors
    /// Database errors only.
    pub fn find(&self, pid: u32, tag: u8, value_mac: &[u8; 16]) -> Result<Vec<u64>, StoreError> {
        const WHAT: &str = "searching the index";
        self.read(WHAT, |txn| {
            let t = txn.open_multimap_table(INDEX).map_err(table_err(WHAT))?;
            let mut out = Vec::new();
            for v in t.get(&index_key(pid, tag, value_mac)).map_err(db(WHAT))? {
                out.push(v.map_err(db(WHAT))?.value());
            }
            Ok(out)
        })
    }

    /// Up to `limit` audit entries of partition `pid` from sequence number
    /// `from_seq` on, ascending, opened.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an entry that fails authentication.
    pub fn audit(
        &self,
        pid: u32,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        const WHAT: &str = "reading the audit log";
        self.read(WHAT, |txn| {
            let key = self.snapshot_key(txn, WHAT)?;
            let t = txn.open_table(AUDIT).map_err(table_err(WHAT))?;
            let mut out = Vec::new();
            for entry in t
                .range((pid, from_seq)..=(pid, u64::MAX))
                .map_err(db(WHAT))?
                .take(limit)
            {
                let (k, v) = entry.map_err(db(WHAT))?;
                let seq = k.value().1;
                let plain = open_record(
                    &key,
                    &audit_ad(pid, seq),
                    v.value(),
                    "audit entry",
                    Some(pid),
                    Some(seq),
                )?;
                out.push((seq, plain.expose_secret().to_vec()));
            }
            Ok(out)
        })
    }

    /// One atomic, durable write: either all of `f`'s changes are committed (and
    /// survive a crash once this returns Ok) or none are. Writes are serialized.
    ///
    /// Each write increments the generation, sealed in the store in the same
    /// commit, and then records it in the monotonic counter file.
    ///
    /// `f` must propagate the store errors it gets: if an operation fails with a
    /// database or cryptographic error and `f` still returns Ok, nothing is
    /// committed and the result is [`StoreError::WriteAbandoned`]. (Refusals that
    /// change nothing, such as [`StoreError::AuditSeqExists`], may be handled.)
    ///
    /// `f` may read through this `Store` (it sees the state before the write) but
    /// must not call `write` again: writes do not nest, and it would deadlock.
    ///
    /// # Errors
    /// Whatever `f` returns (nothing is committed), database errors,
    /// [`StoreError::Halted`] once a write has failed on the file's I/O (a full
    /// disk, a read-only file system) until the store is reopened, or
    /// [`StoreError::Io`] when a lagging counter still cannot be written.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_inner(f).map_err(|e| self.halted(e))
    }

    fn write_inner<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.counter_lags() {
            counter::write(&self.counter_path, self.generation())?;
            self.counter_lags.store(false, Ordering::Release);
        }
        if self.seals.load(Ordering::Acquire) >= self.options.rekey_at() {
            self.rekey()?;
        }
        let epoch = self.seal_epoch();
        let key = self.keys.epoch(epoch)?;
        let seals = self.seals.load(Ordering::Acquire);
        let mut appended = Vec::new();
        let out = self.commit(|txn, next| {
            let allowance = self.options.seal_budget.saturating_sub(seals);
            let mut tx = guarded(|| WriteTx::new(txn, &key, allowance))?;
            let result = match f(&mut tx) {
                Ok(v) => tx
                    .finish(&self.store_id, next, epoch, seals)
                    .map(|()| (v, seals.saturating_add(tx.seals()))),
                Err(e) => Err(e),
            };
            appended = std::mem::take(&mut tx.appended);
            Self::close(tx, result)
        })?;
        if !appended.is_empty()
            && let Some(observe) = self
                .audit_observer
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            for (pid, seq, entry) in &appended {
                observe(*pid, *seq, entry);
            }
        }
        Ok(out)
    }

    /// Sets the observer told of every audit entry once it is durable (the
    /// daemon's system-log output).
    pub fn set_audit_observer(&self, observer: AuditObserver) {
        *self
            .audit_observer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(observer);
    }

    /// Moves to the next epoch of the sealing key: one write that seals every
    /// record of the sealing key again under the next epoch's key.
    fn rekey(&self) -> Result<(), StoreError> {
        let from = self.seal_epoch();
        let to = from.checked_add(1).ok_or(StoreError::Exhausted {
            what: "epochs of the sealing key",
        })?;
        let previous = self.keys.epoch(from)?;
        let next = self.keys.epoch(to)?;
        self.commit(|txn, generation| {
            let mut tx = guarded(|| WriteTx::new(txn, &previous, self.options.seal_budget))?;
            let result = tx
                .reseal_all(&previous, &next, &self.store_id, generation, to)
                .map(|()| ((), tx.seals()));
            Self::close(tx, result)
        })?;
        self.epoch.store(to, Ordering::Release);
        Ok(())
    }

    /// Closes `tx`'s tables (under the panic guard) after its work gave `result`.
    fn close<T>(tx: WriteTx<'_>, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match (result, tx.close()) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Runs `body` in one durable write transaction that makes the next generation,
    /// commits it and records the generation in the counter. `body` gets the
    /// transaction and the generation it writes, and returns its value and the
    /// count of seals the epoch's key has made once it commits.
    fn commit<T>(
        &self,
        body: impl FnOnce(&WriteTransaction, u64) -> Result<(T, u64), StoreError>,
    ) -> Result<T, StoreError> {
        let next = self
            .generation()
            .checked_add(1)
            .ok_or(StoreError::Exhausted {
                what: "store generation",
            })?;
        const WHAT: &str = "writing";
        let mut txn = guarded(|| self.db.get()?.begin_write().map_err(db(WHAT)))?;
        txn.set_quick_repair(true);
        txn.set_durability(Durability::Immediate)
            .map_err(db(WHAT))?;
        let (value, seals) = match body(&txn, next) {
            Ok(v) => v,
            Err(e) => {
                let _ = guarded(|| txn.abort().map_err(db(WHAT)));
                return Err(e);
            }
        };
        guarded(|| txn.commit().map_err(db("committing")))?;
        self.generation.store(next, Ordering::Release);
        self.seals.store(seals, Ordering::Release);
        if counter::write(&self.counter_path, next).is_err() {
            // Committed: the caller must be told Ok. The store is now one ahead of
            // the counter, which open accepts; the next write retries the counter.
            self.counter_lags.store(true, Ordering::Release);
        }
        Ok(value)
    }
}

/// Maps any redb error type through [`StoreError::db`].
pub(crate) fn db<E: Into<redb::Error>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::db(what)(e.into())
}

/// Creates a store at `path` atomically: a temporary file beside it holds the
/// header and a database with every table and the generation-0 record, and is
/// linked into place only when complete. Then the counter is created. Returns
/// false when another process created the store first.
fn create(
    path: &Path,
    counter_path: &Path,
    sealing: &SealKey,
    svn: u32,
) -> Result<bool, StoreError> {
    if let Some(c) = counter::read(counter_path)? {
        return Err(StoreError::StoreMissing {
            path: path.to_owned(),
            counter_path: counter_path.to_owned(),
            counter: c,
        });
    }
    let dir = counter::parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.creating"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("cannot remove stale", &tmp)(e)),
    }
    let result = (|| {
        let store_id: StoreId = ihsm_crypto::rand::array()?;
        let header = Header::seal(sealing, svn, &store_id)?;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(StoreError::io("cannot create", &tmp))?;
        f.write_all(&header.encode())
            .map_err(StoreError::io("cannot write", &tmp))?;
        let backend = OffsetBackend::open(&tmp)?;
        guarded(|| {
            let database = Db(Some(
                builder()
                    .create_with_backend(backend)
                    .map_err(db("creating the database"))?,
            ));
            let mut txn = database
                .get()?
                .begin_write()
                .map_err(db("creating the database"))?;
            txn.set_quick_repair(true);
            {
                let mut meta = txn.open_table(META).map_err(db("creating tables"))?;
                txn.open_table(PARTITIONS).map_err(db("creating tables"))?;
                txn.open_table(OBJECTS).map_err(db("creating tables"))?;
                txn.open_multimap_table(INDEX)
                    .map_err(db("creating tables"))?;
                txn.open_table(AUDIT).map_err(db("creating tables"))?;
                txn.open_table(PART_STATE).map_err(db("creating tables"))?;
                // Epoch 0 has sealed the header's identity record and this one.
                let g = seal_generation(
                    sealing,
                    &store_id,
                    &Generation {
                        generation: 0,
                        epoch: 0,
                        seals: Some(2),
                    },
                )?;
                meta.insert(META_GENERATION, g.as_slice())
                    .map_err(db("creating tables"))?;
            }
            txn.commit().map_err(db("creating the database"))
        })?;
        f.sync_all().map_err(StoreError::io("cannot sync", &tmp))?;
        drop(f);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::io("cannot link new store into place", path)(e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    let created = result?;
    counter::sync_dir(dir)?;
    if created {
        counter::write(counter_path, 0)?;
    }
    Ok(created)
}

// Compile-time: the core shares one store between threads.
const _: fn() = || {
    fn assert<T: Send + Sync>() {}
    assert::<Store>();
};
