//! The store through its public API: round trips, the index, partition deletion,
//! identity, rollback and the monotonic counter, audit, write atomicity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use common::{DEVICE, Dir, digest, key, mac, read_object};
use ihsm_crypto::ExposeSecret;
use ihsm_store::{COUNTER_FILE_LEN, OpenReport, Store, StoreError};

fn counter_value(d: &Dir) -> u64 {
    let b = fs::read(&d.counter).unwrap();
    assert_eq!(b.len(), COUNTER_FILE_LEN);
    u64::from_le_bytes(b[8..16].try_into().unwrap())
}

/// Creates partitions `pids`, each with `n` objects indexed under tag 1.
fn populate(s: &Store, pids: &[u32], n: u64) {
    s.write(|tx| {
        for &pid in pids {
            tx.put_partition(pid, format!("partition {pid}").as_bytes())?;
            let pk = key(pid as u8);
            for _ in 0..n {
                let oid = tx.next_object_id(pid)?;
                tx.put_object(
                    pid,
                    oid,
                    &pk,
                    &digest(oid),
                    format!("object {pid}/{oid}").as_bytes(),
                )?;
                tx.index_add(pid, 1, &mac(oid), oid)?;
            }
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn create_write_reopen_round_trip() {
    let d = Dir::new();
    assert_eq!(Store::sealed_svn(&d.store).unwrap(), None);
    let (s, r) = d.open();
    assert_eq!(
        r,
        OpenReport {
            created: true,
            generation: 0,
            repaired_counter: false
        }
    );
    assert_eq!(counter_value(&d), 0);
    assert_eq!(Store::sealed_svn(&d.store).unwrap(), Some(1));

    let pk = key(7);
    let oid = s
        .write(|tx| {
            tx.put_partition(7, b"partition seven")?;
            let oid = tx.next_object_id(7)?;
            tx.put_object(7, oid, &pk, &digest(oid), b"secret key bytes")?;
            tx.index_add(7, 3, &mac(9), oid)?;
            tx.audit_append(7, 1, b"created")?;
            Ok(oid)
        })
        .unwrap();
    assert_eq!(oid, 1);
    assert_eq!(s.generation(), 1);
    assert_eq!(counter_value(&d), 1);

    let check = |s: &Store| {
        let parts = s.partitions().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, 7);
        assert_eq!(parts[0].1.expose_secret(), b"partition seven");
        assert_eq!(
            s.partition(7).unwrap().unwrap().expose_secret(),
            b"partition seven"
        );
        assert!(s.partition(8).unwrap().is_none());
        assert_eq!(
            read_object(s, 7, 1, &pk),
            Some((digest(1), b"secret key bytes".to_vec()))
        );
        assert!(s.object(7, 2, &pk).unwrap().is_none());
        assert_eq!(s.object_ids(7).unwrap(), vec![1]);
        assert_eq!(s.object_count(7).unwrap(), 1);
        assert_eq!(s.find(7, 3, &mac(9)).unwrap(), vec![1]);
        assert!(s.find(7, 4, &mac(9)).unwrap().is_empty());
        assert_eq!(s.audit(7, 0, 10).unwrap(), vec![(1, b"created".to_vec())]);
    };
    check(&s);
    drop(s);

    let (s, r) = d.open();
    assert_eq!(
        r,
        OpenReport {
            created: false,
            generation: 1,
            repaired_counter: false
        }
    );
    check(&s);

    // Replace: same id, new digest and record; the count does not change.
    s.write(|tx| tx.put_object(7, 1, &pk, &digest(99), b"replaced"))
        .unwrap();
    assert_eq!(
        read_object(&s, 7, 1, &pk),
        Some((digest(99), b"replaced".to_vec()))
    );
    assert_eq!(s.object_count(7).unwrap(), 1);
    assert_eq!(s.generation(), 2);
}

#[test]
fn the_file_holds_no_record_or_attribute_in_clear() {
    let d = Dir::new();
    let (s, _) = d.open();
    let marker_part = b"PARTITION-MARKER-6b1f";
    let marker_obj = b"OBJECT-MARKER-9c2e-key-material";
    let marker_audit = b"AUDIT-MARKER-1d7a";
    s.write(|tx| {
        tx.put_partition(1, marker_part)?;
        for _ in 0..50 {
            let oid = tx.next_object_id(1)?;
            tx.put_object(1, oid, &key(1), &digest(oid), marker_obj)?;
        }
        tx.audit_append(1, 1, marker_audit)
    })
    .unwrap();
    drop(s);
    let bytes = fs::read(&d.store).unwrap();
    for m in [
        &marker_part[..],
        &marker_obj[..],
        &marker_audit[..],
        &[DEVICE; 32],
    ] {
        assert!(
            !bytes.windows(m.len()).any(|w| w == m),
            "plaintext found in the store file"
        );
    }
}

#[test]
fn object_ids_are_never_reused() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 3);
    assert_eq!(s.object_ids(1).unwrap(), vec![1, 2, 3]);
    assert!(s.write(|tx| tx.delete_object(1, 3)).unwrap());
    assert!(!s.write(|tx| tx.delete_object(1, 3)).unwrap());
    assert_eq!(s.object_count(1).unwrap(), 2);
    drop(s);
    let (s, _) = d.open();
    assert_eq!(s.write(|tx| tx.next_object_id(1)).unwrap(), 4);
    // An id put explicitly above the counter moves the counter past it.
    s.write(|tx| tx.put_object(1, 10, &key(1), &digest(10), b"x"))
        .unwrap();
    assert_eq!(s.write(|tx| tx.next_object_id(1)).unwrap(), 11);
    assert_eq!(s.object_count(1).unwrap(), 3);
}

#[test]
fn index_lookups_stay_inside_their_partition() {
    let d = Dir::new();
    let (s, _) = d.open();
    s.write(|tx| {
        for pid in [1, 2] {
            tx.put_partition(pid, b"p")?;
        }
        for (pid, oid) in [(1, 5), (1, 6), (2, 5), (2, 7)] {
            tx.put_object(pid, oid, &key(pid as u8), &digest(oid), b"o")?;
        }
        // The same (tag, mac) in both partitions.
        tx.index_add(1, 9, &mac(0), 5)?;
        tx.index_add(1, 9, &mac(0), 6)?;
        tx.index_add(2, 9, &mac(0), 7)?;
        // Same mac under another tag.
        tx.index_add(2, 8, &mac(0), 5)?;
        // Twice is harmless.
        tx.index_add(1, 9, &mac(0), 5)
    })
    .unwrap();
    assert_eq!(s.find(1, 9, &mac(0)).unwrap(), vec![5, 6]);
    assert_eq!(s.find(2, 9, &mac(0)).unwrap(), vec![7]);
    assert_eq!(s.find(2, 8, &mac(0)).unwrap(), vec![5]);
    assert!(s.find(1, 8, &mac(0)).unwrap().is_empty());
    assert!(s.find(3, 9, &mac(0)).unwrap().is_empty());
    assert!(s.find(1, 9, &mac(1)).unwrap().is_empty());

    s.write(|tx| {
        tx.index_remove(1, 9, &mac(0), 5)?;
        tx.index_remove(1, 9, &mac(0), 99) // absent: harmless
    })
    .unwrap();
    assert_eq!(s.find(1, 9, &mac(0)).unwrap(), vec![6]);
    assert_eq!(s.find(2, 9, &mac(0)).unwrap(), vec![7]);

    // An entry must name a stored object of that partition.
    let e = s.write(|tx| tx.index_add(1, 9, &mac(0), 7)).unwrap_err();
    assert!(
        matches!(e, StoreError::NoSuchObject { pid: 1, oid: 7 }),
        "{e}"
    );
}

#[test]
fn delete_partition_removes_everything_it_owns() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1, 2], 20);
    s.write(|tx| {
        for seq in 1..=5 {
            tx.audit_append(1, seq, b"a1")?;
            tx.audit_append(2, seq, b"a2")?;
        }
        Ok(())
    })
    .unwrap();

    s.write(|tx| tx.delete_partition(1)).unwrap();
    let check = |s: &Store| {
        assert!(s.partition(1).unwrap().is_none());
        assert!(s.object_ids(1).unwrap().is_empty());
        assert_eq!(s.object_count(1).unwrap(), 0);
        for oid in 1..=20 {
            assert!(s.object(1, oid, &key(1)).unwrap().is_none());
            assert!(s.find(1, 1, &mac(oid)).unwrap().is_empty());
        }
        assert!(s.audit(1, 0, 100).unwrap().is_empty());
        // The other partition is untouched.
        assert!(s.partition(2).unwrap().is_some());
        assert_eq!(s.object_ids(2).unwrap(), (1..=20).collect::<Vec<_>>());
        assert_eq!(s.object_count(2).unwrap(), 20);
        assert_eq!(s.find(2, 1, &mac(20)).unwrap(), vec![20]);
        assert_eq!(s.audit(2, 0, 100).unwrap().len(), 5);
        assert_eq!(s.partitions().unwrap().len(), 1);
    };
    check(&s);
    drop(s);
    let (s, _) = d.open();
    check(&s);
    // The id counter went with it: a new partition 1 starts again at 1.
    let oid = s
        .write(|tx| {
            tx.put_partition(1, b"again")?;
            tx.next_object_id(1)
        })
        .unwrap();
    assert_eq!(oid, 1);
    // Objects of a deleted partition cannot be written.
    s.write(|tx| tx.delete_partition(1)).unwrap();
    let e = s
        .write(|tx| tx.put_object(1, 1, &key(1), &digest(1), b"x"))
        .unwrap_err();
    assert!(matches!(e, StoreError::NoSuchPartition { pid: 1 }), "{e}");
}

#[test]
fn audit_sequence_numbers_are_unique() {
    let d = Dir::new();
    let (s, _) = d.open();
    s.write(|tx| {
        tx.audit_append(3, 1, b"one")?;
        tx.audit_append(3, 2, b"two")
    })
    .unwrap();
    let e = s.write(|tx| tx.audit_append(3, 2, b"again")).unwrap_err();
    assert!(
        matches!(e, StoreError::AuditSeqExists { pid: 3, seq: 2 }),
        "{e}"
    );
    // Within one write too; a refusal changes nothing, so the caller may go on.
    s.write(|tx| {
        tx.audit_append(3, 3, b"three")?;
        let again = tx.audit_append(3, 3, b"three again");
        assert!(matches!(again, Err(StoreError::AuditSeqExists { .. })));
        tx.audit_append(3, 4, b"four")
    })
    .unwrap();
    // Another partition has its own sequence.
    s.write(|tx| tx.audit_append(4, 2, b"other")).unwrap();
    assert_eq!(
        s.audit(3, 0, 10).unwrap(),
        vec![
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (3, b"three".to_vec()),
            (4, b"four".to_vec())
        ]
    );
    assert_eq!(s.audit(3, 2, 2).unwrap().len(), 2);
    assert_eq!(s.audit(3, 2, 2).unwrap()[0].0, 2);
    assert_eq!(s.audit(3, 5, 10).unwrap(), vec![]);
    assert_eq!(s.audit(4, 0, 10).unwrap(), vec![(2, b"other".to_vec())]);
}

#[test]
fn a_failed_write_commits_nothing() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 2);
    let g = s.generation();
    let e = s
        .write(|tx| -> Result<(), StoreError> {
            tx.put_partition(2, b"two")?;
            let oid = tx.next_object_id(1)?;
            tx.put_object(1, oid, &key(1), &digest(oid), b"x")?;
            tx.delete_object(1, 1)?;
            tx.audit_append(1, 1, b"a")?;
            Err(StoreError::NoSuchPartition { pid: 42 })
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::NoSuchPartition { pid: 42 }));
    assert_eq!(s.generation(), g);
    assert_eq!(counter_value(&d), g);
    assert!(s.partition(2).unwrap().is_none());
    assert_eq!(s.object_ids(1).unwrap(), vec![1, 2]);
    assert!(s.audit(1, 0, 10).unwrap().is_empty());
    // The id handed out in the failed write is handed out again.
    assert_eq!(s.write(|tx| tx.next_object_id(1)).unwrap(), 3);
}

#[test]
fn wrong_sealing_key_is_wrong_identity_and_changes_nothing() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 5);
    drop(s);
    let before = (
        fs::read(&d.store).unwrap(),
        fs::read(&d.counter).unwrap(),
        fs::metadata(&d.store).unwrap().modified().unwrap(),
        fs::metadata(&d.counter).unwrap().modified().unwrap(),
    );
    // Let any later write show in the modification time.
    std::thread::sleep(Duration::from_millis(20));
    let e = d.open_with(DEVICE ^ 1).unwrap_err();
    assert!(matches!(e, StoreError::WrongIdentity), "{e}");
    assert!(e.to_string().contains("different root-of-trust identity"));
    let after = (
        fs::read(&d.store).unwrap(),
        fs::read(&d.counter).unwrap(),
        fs::metadata(&d.store).unwrap().modified().unwrap(),
        fs::metadata(&d.counter).unwrap().modified().unwrap(),
    );
    assert!(before.0 == after.0, "store bytes changed");
    assert_eq!(before.1, after.1, "counter bytes changed");
    assert_eq!(before.2, after.2);
    assert_eq!(before.3, after.3);
    assert_eq!(fs::read_dir(d.tmp.path()).unwrap().count(), 2);
    assert!(SystemTime::now() > after.2);
    // The right key still opens it.
    let (s, r) = d.open();
    assert_eq!(r.generation, 1);
    assert_eq!(s.object_ids(1).unwrap().len(), 5);
}

#[test]
fn another_svn_is_refused_before_the_key_is_tried() {
    let d = Dir::new();
    drop(d.open());
    let e = Store::open(&d.store, &d.counter, key(DEVICE), 2).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::SvnMismatch {
                sealed: 1,
                requested: 2
            }
        ),
        "{e}"
    );
}

#[test]
fn an_old_copy_of_the_store_is_a_rollback() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 2);
    drop(s);
    let old = d.tmp.path().join("old");
    fs::copy(&d.store, &old).unwrap();
    let (s, _) = d.open();
    s.write(|tx| tx.delete_object(1, 1)).unwrap();
    s.write(|tx| tx.delete_object(1, 2)).unwrap();
    drop(s);
    fs::copy(&old, &d.store).unwrap();
    let e = d.open_with(DEVICE).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Rollback {
                store: 1,
                counter: 3
            }
        ),
        "{e}"
    );
    assert!(e.is_tamper());
    // The counter was not lowered by the refused open.
    assert_eq!(counter_value(&d), 3);
}

#[test]
fn a_crash_between_commit_and_counter_is_repaired() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 1);
    drop(s);
    // The counter as it was before the next write's counter update.
    let saved = fs::read(&d.counter).unwrap();
    let (s, _) = d.open();
    s.write(|tx| tx.audit_append(1, 1, b"x")).unwrap();
    drop(s);
    fs::write(&d.counter, &saved).unwrap();
    assert_eq!(counter_value(&d), 1);
    let (s, r) = d.open();
    assert_eq!(
        r,
        OpenReport {
            created: false,
            generation: 2,
            repaired_counter: true
        }
    );
    assert_eq!(counter_value(&d), 2);
    assert_eq!(s.audit(1, 0, 10).unwrap().len(), 1);
    drop(s);
    assert!(!d.open().1.repaired_counter);
}

#[test]
fn a_counter_more_than_one_behind_is_refused() {
    let d = Dir::new();
    let (s, _) = d.open();
    let saved = fs::read(&d.counter).unwrap();
    populate(&s, &[1], 1);
    s.write(|tx| tx.audit_append(1, 1, b"x")).unwrap();
    drop(s);
    fs::write(&d.counter, &saved).unwrap();
    let e = d.open_with(DEVICE).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::CounterBehind {
                store: 2,
                counter: 0
            }
        ),
        "{e}"
    );
}

#[test]
fn damaged_counter_files_are_refused_precisely() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 1);
    drop(s);
    let good = fs::read(&d.counter).unwrap();

    type Expect = fn(&StoreError) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (good[..40].to_vec(), |e| {
            matches!(
                e,
                StoreError::CounterWrongLength {
                    actual: 40,
                    expected: 64,
                    ..
                }
            )
        }),
        (Vec::new(), |e| {
            matches!(e, StoreError::CounterWrongLength { actual: 0, .. })
        }),
        ([&good[..], b"x"].concat(), |e| {
            matches!(e, StoreError::CounterWrongLength { actual: 65, .. })
        }),
        ([b"XXXX", &good[4..]].concat(), |e| {
            matches!(e, StoreError::CounterBadMagic { .. })
        }),
        ([&good[..4], &[2, 0, 0, 0], &good[8..]].concat(), |e| {
            matches!(e, StoreError::CounterUnsupportedVersion { version: 2, .. })
        }),
        // The generation edited without fixing the digest.
        (
            [&good[..8], &5u64.to_le_bytes(), &good[16..]].concat(),
            |e| matches!(e, StoreError::CounterDamaged { .. }),
        ),
    ];
    for (bytes, expected) in cases {
        fs::write(&d.counter, &bytes).unwrap();
        let e = d.open_with(DEVICE).unwrap_err();
        assert!(expected(&e), "{e}");
        assert!(e.is_tamper() || matches!(e, StoreError::CounterUnsupportedVersion { .. }));
    }

    fs::remove_file(&d.counter).unwrap();
    let e = d.open_with(DEVICE).unwrap_err();
    assert!(
        matches!(e, StoreError::CounterMissing { store: 1, .. }),
        "{e}"
    );

    fs::write(&d.counter, &good).unwrap();
    assert_eq!(d.open().1.generation, 1);
}

#[test]
fn a_missing_counter_is_accepted_only_for_a_store_never_written() {
    let d = Dir::new();
    drop(d.open());
    fs::remove_file(&d.counter).unwrap();
    let (s, r) = d.open();
    assert_eq!(
        r,
        OpenReport {
            created: false,
            generation: 0,
            repaired_counter: true
        }
    );
    assert_eq!(counter_value(&d), 0);
    drop(s);
}

#[test]
fn a_deleted_store_with_a_live_counter_is_not_silently_recreated() {
    let d = Dir::new();
    let (s, _) = d.open();
    populate(&s, &[1], 1);
    drop(s);
    fs::remove_file(&d.store).unwrap();
    let e = d.open_with(DEVICE).unwrap_err();
    assert!(
        matches!(e, StoreError::StoreMissing { counter: 1, .. }),
        "{e}"
    );
    assert!(!d.store.exists());
    // Deleting the counter too is the deliberate way to start over.
    fs::remove_file(&d.counter).unwrap();
    let (_, r) = d.open();
    assert!(r.created);
}

#[test]
fn a_damaged_header_is_refused_precisely() {
    let d = Dir::new();
    drop(d.open());
    let good = fs::read(&d.store).unwrap();
    let mut edited = good.clone();
    edited[0] = b'X';
    fs::write(&d.store, &edited).unwrap();
    assert!(matches!(
        Store::sealed_svn(&d.store),
        Err(StoreError::HeaderBadMagic { .. })
    ));
    let mut edited = good.clone();
    edited[40] ^= 1;
    fs::write(&d.store, &edited).unwrap();
    assert!(matches!(
        d.open_with(DEVICE),
        Err(StoreError::HeaderDamaged { .. })
    ));
    fs::write(&d.store, &good[..100]).unwrap();
    assert!(matches!(
        Store::sealed_svn(&d.store),
        Err(StoreError::HeaderTruncated { actual: 100, .. })
    ));
    // A header with nothing after it.
    fs::write(&d.store, &good[..4096]).unwrap();
    let e = d.open_with(DEVICE).unwrap_err();
    assert!(matches!(e, StoreError::DatabaseDamaged { .. }), "{e}");
}

#[test]
fn a_store_opens_once() {
    let d = Dir::new();
    let (s, _) = d.open();
    let e = d.open_with(DEVICE).unwrap_err();
    assert!(matches!(e, StoreError::AlreadyOpen { .. }), "{e}");
    // The SVN can be read while it is open.
    assert_eq!(Store::sealed_svn(&d.store).unwrap(), Some(1));
    drop(s);
    drop(d.open());
}

#[test]
fn store_is_shared_between_threads() {
    let d = Dir::new();
    let (s, _) = d.open();
    s.write(|tx| tx.put_partition(1, b"p")).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..10 {
                    s.write(|tx| {
                        let oid = tx.next_object_id(1)?;
                        tx.put_object(1, oid, &key(1), &digest(oid), b"t")
                    })
                    .unwrap();
                    assert!(!s.object_ids(1).unwrap().is_empty());
                }
            });
        }
    });
    assert_eq!(s.object_ids(1).unwrap(), (1..=40).collect::<Vec<_>>());
    assert_eq!(s.generation(), 41);
    assert_eq!(counter_value(&d), 41);
}
