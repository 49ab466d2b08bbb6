//! An attacker with write access to the store file: records copied, swapped,
//! edited or truncated through a raw redb handle, as a tool that understands the
//! format would. Every change must fail authentication with a precise error and
//! never be used silently. (Random bit flips in the file: `tests/flips.rs`.)

use std::path::{Path, PathBuf};

use ihsm_crypto::seal::SealKey;
use ihsm_crypto::{ExposeSecret, Secret};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::backend::OffsetBackend;
use crate::records::{
    AD_GENERATION, AUDIT, META, META_EPOCH, META_GENERATION, OBJECTS, PART_STATE, PARTITIONS,
};
use crate::{Store, StoreError, StoreOptions};

fn key(seed: u8) -> SealKey {
    SealKey::new(Secret::from_slice(&[seed; 32]).unwrap())
}

const DEVICE: u8 = 0x5e;

struct Files {
    _tmp: tempfile::TempDir,
    store: PathBuf,
    counter: PathBuf,
}

impl Files {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        let counter = tmp.path().join("counter");
        Self {
            _tmp: tmp,
            store,
            counter,
        }
    }

    fn open(&self) -> Result<Store, StoreError> {
        Store::open(&self.store, &self.counter, key(DEVICE), 0).map(|(s, _)| s)
    }

    /// The database inside the store file, as an attacker's tool would open it.
    fn raw(&self) -> Database {
        raw(&self.store)
    }
}

fn raw(path: &Path) -> Database {
    let backend = OffsetBackend::open(path).unwrap();
    Database::builder().create_with_backend(backend).unwrap()
}

fn corrupt_at(r: Result<impl core::fmt::Debug, StoreError>, p: Option<u32>, o: Option<u64>) {
    match r {
        Err(StoreError::Corrupt { pid, oid, .. }) if pid == p && oid == o => {}
        other => panic!("expected Corrupt at {p:?}/{o:?}, got {other:?}"),
    }
}

/// Partitions 1 (key 0xa1) and 2 (key 0xa2), objects 1..=n in partition 1.
fn populated(n: u64) -> Files {
    let f = Files::new();
    let s = f.open().unwrap();
    s.write(|tx| {
        tx.put_partition(1, b"one")?;
        tx.put_partition(2, b"two")?;
        for _ in 0..n {
            let oid = tx.next_object_id(1)?;
            tx.put_object(1, oid, &key(0xa1), &[oid as u8; 32], b"sixteen byte rec")?;
        }
        tx.audit_append(1, 1, b"audit one")?;
        tx.audit_append(1, 2, b"audit two")
    })
    .unwrap();
    f
}

fn copy_object(db: &Database, from: (u32, u64), to: (u32, u64)) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(OBJECTS).unwrap();
        let v = t.get(from).unwrap().unwrap().value().to_vec();
        t.insert(to, v.as_slice()).unwrap();
    }
    w.commit().unwrap();
}

fn edit_object(db: &Database, at: (u32, u64), edit: impl FnOnce(&mut Vec<u8>)) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(OBJECTS).unwrap();
        let mut v = t.get(at).unwrap().unwrap().value().to_vec();
        edit(&mut v);
        t.insert(at, v.as_slice()).unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn an_object_is_bound_to_its_key_partition_and_id() {
    let f = populated(1);
    {
        let db = f.raw();
        copy_object(&db, (1, 1), (1, 2));
        copy_object(&db, (1, 1), (2, 1));
    }
    let s = f.open().unwrap();
    let (a, b) = (key(0xa1), key(0xa2));
    // In place and with the right key: fine.
    let (d, r) = s.object(1, 1, &a).unwrap().unwrap();
    assert_eq!(d, [1; 32]);
    assert_eq!(r.expose_secret(), b"sixteen byte rec");
    // Partition B's key does not open partition A's object.
    corrupt_at(s.object(1, 1, &b), Some(1), Some(1));
    // Moved to another id, or to another partition, under either key.
    corrupt_at(s.object(1, 2, &a), Some(1), Some(2));
    corrupt_at(s.object(2, 1, &a), Some(2), Some(1));
    corrupt_at(s.object(2, 1, &b), Some(2), Some(1));
}

#[test]
fn swapped_objects_fail() {
    let f = populated(2);
    {
        let db = f.raw();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(OBJECTS).unwrap();
            let v1 = t.get((1, 1)).unwrap().unwrap().value().to_vec();
            let v2 = t.get((1, 2)).unwrap().unwrap().value().to_vec();
            t.insert((1, 1), v2.as_slice()).unwrap();
            t.insert((1, 2), v1.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    let s = f.open().unwrap();
    corrupt_at(s.object(1, 1, &key(0xa1)), Some(1), Some(1));
    corrupt_at(s.object(1, 2, &key(0xa1)), Some(1), Some(2));
}

#[test]
fn every_edited_byte_of_an_object_fails() {
    // digest (32) + nonce (12) + record (16) + tag (16)
    const LEN: usize = 76;
    let f = populated(LEN as u64);
    {
        let db = f.raw();
        for i in 0..LEN {
            edit_object(&db, (1, i as u64 + 1), |v| {
                assert_eq!(v.len(), LEN);
                v[i] ^= 0x04;
            });
        }
    }
    let s = f.open().unwrap();
    for oid in 1..=LEN as u64 {
        corrupt_at(s.object(1, oid, &key(0xa1)), Some(1), Some(oid));
    }
}

#[test]
fn truncated_and_extended_objects_fail() {
    let f = populated(4);
    {
        let db = f.raw();
        edit_object(&db, (1, 1), |v| v.truncate(10));
        edit_object(&db, (1, 2), |v| v.truncate(50));
        edit_object(&db, (1, 3), |v| v.push(0));
        edit_object(&db, (1, 4), Vec::clear);
    }
    let s = f.open().unwrap();
    for oid in 1..=4 {
        corrupt_at(s.object(1, oid, &key(0xa1)), Some(1), Some(oid));
    }
}

#[test]
fn swapped_partition_records_fail() {
    let f = populated(0);
    {
        let db = f.raw();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(PARTITIONS).unwrap();
            let v1 = t.get(1).unwrap().unwrap().value().to_vec();
            t.insert(2, v1.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    let s = f.open().unwrap();
    assert_eq!(s.partition(1).unwrap().unwrap().expose_secret(), b"one");
    corrupt_at(s.partition(2), Some(2), None);
    corrupt_at(s.partitions(), Some(2), None);
}

#[test]
fn a_moved_audit_entry_fails() {
    let f = populated(0);
    {
        let db = f.raw();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(AUDIT).unwrap();
            let v = t.get((1, 1)).unwrap().unwrap().value().to_vec();
            t.insert((1, 2), v.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    let s = f.open().unwrap();
    assert_eq!(s.audit(1, 1, 1).unwrap(), vec![(1, b"audit one".to_vec())]);
    corrupt_at(s.audit(1, 0, 10), Some(1), Some(2));
}

#[test]
fn an_edited_or_replayed_partition_state_is_caught() {
    let f = populated(3);
    let old_state = {
        let db = f.raw();
        let r = db.begin_read().unwrap();
        let t = r.open_table(PART_STATE).unwrap();
        t.get(1).unwrap().unwrap().value().to_vec()
    };
    {
        let s = f.open().unwrap();
        s.write(|tx| {
            for _ in 0..3 {
                let oid = tx.next_object_id(1)?;
                tx.put_object(1, oid, &key(0xa1), &[0; 32], b"more")?;
            }
            Ok(())
        })
        .unwrap();
    }
    // Replaying the older (authentic) state record cannot make ids be reused.
    {
        let db = f.raw();
        let w = db.begin_write().unwrap();
        w.open_table(PART_STATE)
            .unwrap()
            .insert(1, old_state.as_slice())
            .unwrap();
        w.commit().unwrap();
    }
    {
        let s = f.open().unwrap();
        assert_eq!(s.write(|tx| tx.next_object_id(1)).unwrap(), 7);
    }
    // An edited one fails.
    {
        let db = f.raw();
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(PART_STATE).unwrap();
            let mut v = t.get(1).unwrap().unwrap().value().to_vec();
            v[20] ^= 1;
            t.insert(1, v.as_slice()).unwrap();
        }
        w.commit().unwrap();
    }
    let s = f.open().unwrap();
    corrupt_at(s.object_count(1), Some(1), None);
    corrupt_at(s.write(|tx| tx.next_object_id(1)), Some(1), None);
}

fn set_generation(path: &Path, blob: Option<&[u8]>) {
    let db = raw(path);
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(META).unwrap();
        match blob {
            Some(b) => {
                t.insert(META_GENERATION, b).unwrap();
            }
            None => {
                t.remove(META_GENERATION).unwrap();
            }
        }
    }
    w.commit().unwrap();
}

fn generation_blob(path: &Path) -> Vec<u8> {
    let db = raw(path);
    let r = db.begin_read().unwrap();
    let t = r.open_table(META).unwrap();
    t.get(META_GENERATION).unwrap().unwrap().value().to_vec()
}

#[test]
fn an_edited_missing_or_foreign_generation_record_fails() {
    let f = populated(1);
    let good = generation_blob(&f.store);

    let mut edited = good.clone();
    edited[15] ^= 1;
    set_generation(&f.store, Some(&edited));
    corrupt_at(f.open(), None, None);

    set_generation(&f.store, None);
    corrupt_at(f.open(), None, None);

    // The generation record of another store sealed under the same device key.
    let other = Files::new();
    drop(other.open().unwrap());
    set_generation(&f.store, Some(&generation_blob(&other.store)));
    match f.open() {
        Err(StoreError::Corrupt { what, .. }) => assert!(what.contains("another store")),
        other => panic!("{other:?}"),
    }

    // An older record of this store: the counter catches it.
    set_generation(&f.store, Some(&good));
    drop(f.open().unwrap());
}

#[test]
fn an_older_generation_record_spliced_in_is_a_rollback() {
    let f = populated(1);
    let old = generation_blob(&f.store);
    {
        let s = f.open().unwrap();
        s.write(|tx| tx.audit_append(1, 3, b"x")).unwrap();
        s.write(|tx| tx.audit_append(1, 4, b"y")).unwrap();
    }
    set_generation(&f.store, Some(&old));
    assert!(matches!(
        f.open(),
        Err(StoreError::Rollback {
            store: 1,
            counter: 3
        })
    ));
}

fn set_epoch(path: &Path, epoch: Option<&[u8]>) {
    let db = raw(path);
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(META).unwrap();
        match epoch {
            Some(e) => {
                t.insert(META_EPOCH, e).unwrap();
            }
            None => {
                t.remove(META_EPOCH).unwrap();
            }
        }
    }
    w.commit().unwrap();
}

#[test]
fn an_edited_or_removed_sealing_key_epoch_fails() {
    let f = populated(1);
    let small = StoreOptions { seal_budget: 16 };
    {
        let (s, _) = Store::open_with(&f.store, &f.counter, key(DEVICE), 0, small).unwrap();
        for seq in 3..8 {
            s.write(|tx| tx.audit_append(1, seq, b"e")).unwrap();
        }
        assert!(s.seal_epoch() >= 1, "no re-key");
    }
    let db = raw(&f.store);
    let epoch = {
        let r = db.begin_read().unwrap();
        let t = r.open_table(META).unwrap();
        t.get(META_EPOCH).unwrap().unwrap().value().to_vec()
    };
    drop(db);
    for bad in [
        None,
        Some(&[0u8, 0, 0, 0][..]),
        Some(&[0xff, 0, 0, 0][..]),
        Some(&[0, 0, 1][..]),
    ] {
        set_epoch(&f.store, bad);
        corrupt_at(f.open(), None, None);
    }
    set_epoch(&f.store, Some(&epoch));
    let s = f.open().unwrap();
    assert_eq!(s.audit(1, 0, 100).unwrap().len(), 7);
}

#[test]
fn a_store_whose_seals_were_never_counted_re_keys_before_its_next_write() {
    let f = populated(1);
    // The generation record as stores wrote it before seals were counted:
    // store_id || generation, sealed under the root key.
    let store_id = {
        let h = crate::header::Header::read(&f.store).unwrap().unwrap();
        h.unseal(&key(DEVICE), &f.store).unwrap()
    };
    let mut plain = [0u8; 24];
    plain[..16].copy_from_slice(&store_id);
    plain[16..].copy_from_slice(&1u64.to_be_bytes());
    set_generation(
        &f.store,
        Some(&key(DEVICE).seal(AD_GENERATION, &plain).unwrap()),
    );
    set_epoch(&f.store, None);
    let s = f.open().unwrap();
    assert_eq!((s.seal_epoch(), s.seals_in_epoch()), (0, None));
    s.write(|tx| tx.audit_append(1, 3, b"after")).unwrap();
    assert_eq!(s.seal_epoch(), 1);
    // Two partitions, a state, three audit entries and two generation records
    // under epoch 1.
    assert_eq!(s.seals_in_epoch(), Some(2 + 1 + 2 + 1 + 1 + 1));
    drop(s);
    let s = f.open().unwrap();
    assert_eq!(s.seal_epoch(), 1);
    assert_eq!(s.audit(1, 0, 10).unwrap().len(), 3);
    assert_eq!(s.partition(2).unwrap().unwrap().expose_secret(), b"two");
}

#[test]
fn a_dropped_table_is_damage() {
    let f = populated(1);
    {
        let db = f.raw();
        let w = db.begin_write().unwrap();
        w.delete_table(PARTITIONS).unwrap();
        w.commit().unwrap();
    }
    let s = f.open().unwrap();
    assert!(matches!(
        s.partitions(),
        Err(StoreError::DatabaseDamaged { .. })
    ));
}

/// Regression (found by the `store_record` fuzz target): edits that damage a
/// table definition made redb panic while `WriteTx::new` opened the tables; the
/// tables already open were dropped while that panic unwound, their drop took the
/// transaction's lock the panic had poisoned, panicked again, and the process
/// aborted. A damaged file must give an error, not end the daemon. (The abort
/// reproduces in release builds: `cargo test --release -p ihsm-store`.)
#[test]
fn a_damaged_table_definition_is_an_error_not_an_abort() {
    let f = Files::new();
    let store = f.open().unwrap();
    let master = key(0x6f);
    store
        .write(|tx| {
            tx.put_partition(1, b"partition one")?;
            tx.put_partition(2, b"partition two")?;
            for i in 0..6u8 {
                let oid = tx.next_object_id(1)?;
                tx.put_object(1, oid, &master, &[i; 32], &[i; 40])?;
                tx.index_add(1, i % 3, &[i; 16], oid)?;
            }
            for seq in 1..=5u64 {
                tx.audit_append(1, seq, &[seq as u8; 30])?;
            }
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| tx.delete_object(1, 2).map(|_| ()))
        .unwrap();
    drop(store);
    // The fuzzer's edits: `offset u32 LE | len u8 | bytes`, at the offset modulo
    // the file's length.
    let edits: &[u8] = &[
        0x00, 0x01, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x20, 0x3a, 0x01, 0x00, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x02, 0x04, 0x00, 0x01, 0x02, 0x80, 0x02, 0x01, 0x40, 0x80, 0x03, 0x02, 0x05, 0x06,
        0x03, 0x2b, 0x65, 0x70, 0x81, 0x03, 0x02, 0x20, 0x12, 0xe2, 0x58, 0xd7, 0x5f, 0xc0, 0x79,
        0x23, 0xfc, 0xf6, 0x4d, 0xfb, 0xf4, 0x55, 0x30, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81,
        0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x8d, 0x0d, 0x3a, 0xa8, 0x8b, 0xe0, 0x4f, 0xd0,
        0x93, 0xdb, 0x56, 0x32, 0x52, 0xfb, 0x1c, 0x99, 0xdb, 0x01, 0x05, 0x20, 0x12, 0xe2, 0x58,
        0xd7, 0x5f, 0xc0, 0x79, 0x23, 0xfc, 0xf6, 0x4d, 0xfb, 0xf4, 0x55, 0x30, 0x8d, 0x0d, 0x3a,
        0xa8, 0x8b, 0xe0, 0x4f, 0xd0, 0x93, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01, 0x01,
        0xdb, 0x56, 0x32, 0x52, 0xfb, 0x1c, 0x99, 0xdb, 0x00, 0x00, 0x01,
    ];
    let mut image = std::fs::read(&f.store).unwrap();
    let mut d = edits;
    while d.len() >= 5 && d.len() - 5 >= usize::from(d[4]) {
        let off = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize % image.len();
        let bytes = &d[5..5 + usize::from(d[4])];
        let n = bytes.len().min(image.len() - off);
        image[off..off + n].copy_from_slice(&bytes[..n]);
        d = &d[5 + bytes.len()..];
    }
    std::fs::write(&f.store, &image).unwrap();
    // Built with overflow checks (debug), redb already fails at open, on the
    // generation record; built without (release, as the daemon ships), it opens and
    // fails on the partitions table, reading and writing.
    let store = match f.open() {
        Err(StoreError::DatabaseDamaged { .. }) if cfg!(debug_assertions) => return,
        r => r.unwrap(),
    };
    assert!(matches!(
        store.partitions(),
        Err(StoreError::DatabaseDamaged { .. })
    ));
    for _ in 0..2 {
        let r = store.write(|tx| tx.put_partition(3, b"three"));
        assert!(
            matches!(r, Err(StoreError::DatabaseDamaged { .. })),
            "{r:?}"
        );
    }
}
