//! The sealing key's budget of seals, enforced: with a budget small enough that the
//! store moves to a new epoch of its sealing key every few writes, every record
//! (partition records, partition states, objects, index entries, audit entries)
//! still opens after each change, after a reopen, and under the default options; a
//! write too large for what an epoch has left commits nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{DEVICE, Dir, digest, key, mac, read_object};
use ihsm_crypto::ExposeSecret;
use ihsm_store::{SEAL_BUDGET, Store, StoreError, StoreOptions};

const PARTITIONS: u32 = 3;

fn open(d: &Dir, seal_budget: u64) -> Store {
    Store::open_with(
        &d.store,
        &d.counter,
        key(DEVICE),
        1,
        StoreOptions { seal_budget },
    )
    .unwrap()
    .0
}

fn partition_record(pid: u32) -> Vec<u8> {
    format!("partition {pid}").into_bytes()
}

fn object_record(pid: u32, oid: u64) -> Vec<u8> {
    format!("object {oid} of partition {pid}").into_bytes()
}

fn audit_entry(pid: u32, seq: u64) -> Vec<u8> {
    format!("audit {seq} of partition {pid}").into_bytes()
}

/// Every record written so far opens, with the contents it was written with.
fn check_all(s: &Store, writes: u64) {
    let parts = s.partitions().unwrap();
    assert_eq!(parts.len(), PARTITIONS as usize);
    for (pid, rec) in &parts {
        assert_eq!(rec.expose_secret(), partition_record(*pid).as_slice());
    }
    for pid in 1..=PARTITIONS {
        let n = writes / u64::from(PARTITIONS)
            + u64::from(u64::from(pid) <= writes % u64::from(PARTITIONS));
        assert_eq!(s.object_count(pid).unwrap(), n, "partition {pid}");
        let pk = key(pid as u8);
        for oid in 1..=n {
            assert_eq!(
                read_object(s, pid, oid, &pk),
                Some((digest(oid), object_record(pid, oid)))
            );
            assert_eq!(s.find(pid, 7, &mac(oid)).unwrap(), vec![oid]);
        }
        let audit = s.audit(pid, 0, usize::MAX).unwrap();
        assert_eq!(audit.len() as u64, n);
        for (seq, entry) in audit {
            assert_eq!(entry, audit_entry(pid, seq));
        }
    }
}

#[test]
fn every_record_opens_across_many_epochs_of_the_sealing_key() {
    let d = Dir::new();
    // Half of 256 is spent after about forty writes at first, and sooner as the
    // audit log that each re-key seals again grows.
    let budget = 256;
    let s = open(&d, budget);
    s.write(|tx| {
        for pid in 1..=PARTITIONS {
            tx.put_partition(pid, &partition_record(pid))?;
        }
        Ok(())
    })
    .unwrap();
    let mut epochs = vec![s.seal_epoch()];
    let writes = 90;
    for w in 1..=writes {
        let pid = (w - 1) % u64::from(PARTITIONS) + 1;
        let pid = pid as u32;
        s.write(|tx| {
            let oid = tx.next_object_id(pid)?;
            tx.put_object(
                pid,
                oid,
                &key(pid as u8),
                &digest(oid),
                &object_record(pid, oid),
            )?;
            tx.index_add(pid, 7, &mac(oid), oid)?;
            tx.audit_append(pid, oid, &audit_entry(pid, oid))
        })
        .unwrap();
        let seals = s.seals_in_epoch().unwrap();
        assert!(seals <= budget, "{seals} seals under one key");
        if *epochs.last().unwrap() != s.seal_epoch() {
            epochs.push(s.seal_epoch());
            // Right after a re-key, everything written before it opens.
            check_all(&s, w);
        }
    }
    assert!(epochs.len() >= 4, "too few re-keys: {epochs:?}");
    assert_eq!(
        epochs,
        (0..epochs.len() as u32).collect::<Vec<_>>(),
        "epochs go up by one"
    );
    check_all(&s, writes);
    let (epoch, generation) = (s.seal_epoch(), s.generation());
    drop(s);

    // Reopened under the same small budget, and under a device's: the epoch and
    // every record are still there, and writes go on.
    let s = open(&d, budget);
    assert_eq!((s.seal_epoch(), s.generation()), (epoch, generation));
    check_all(&s, writes);
    drop(s);
    let s = open(&d, SEAL_BUDGET);
    assert_eq!(s.seal_epoch(), epoch);
    check_all(&s, writes);
    s.write(|tx| tx.audit_append(1, 1_000, b"later")).unwrap();
    assert_eq!(s.seal_epoch(), epoch, "a device's budget is far away");
}

#[test]
fn a_write_larger_than_an_epoch_allows_commits_nothing_and_the_store_goes_on() {
    let d = Dir::new();
    let s = open(&d, 16);
    s.write(|tx| tx.put_partition(1, b"one")).unwrap();
    let generation = s.generation();
    let e = s
        .write(|tx| {
            for seq in 0..20 {
                tx.audit_append(1, seq, b"too many")?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::SealBudget { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was committed"), "{e}");
    assert_eq!(s.generation(), generation);
    assert!(s.audit(1, 0, 100).unwrap().is_empty());
    // Ignoring the refusal inside the closure does not commit the rest either.
    let e = s
        .write(|tx| {
            for seq in 0..20 {
                let _ = tx.audit_append(1, seq, b"too many");
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::WriteAbandoned { .. }), "{e:?}");
    assert!(s.audit(1, 0, 100).unwrap().is_empty());
    // Writes that fit go on, across re-keys.
    for seq in 0..10 {
        s.write(|tx| tx.audit_append(1, seq, b"fits")).unwrap();
    }
    assert_eq!(s.audit(1, 0, 100).unwrap().len(), 10);
    assert!(s.seal_epoch() >= 1);
}
