//! Random bit flips in the database part of the store file (a failing disk, a
//! careless editor): opening and reading must either fail with an error or return
//! exactly what was written, and never panic out of the store. The database
//! library does panic on some damaged structures; the store turns those into
//! `StoreError::DatabaseDamaged`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Dir, key};
use ihsm_crypto::ExposeSecret;

/// xorshift64*: reproducible positions without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_bit_flips_never_panic_and_never_yield_wrong_data() {
    // Panics inside the database library are expected here and caught by the
    // store; count them instead of printing hundreds of backtraces. Any other
    // panic (an assertion of this test) is reported as usual.
    let caught = Arc::new(AtomicUsize::new(0));
    let default_hook = std::panic::take_hook();
    let counter = caught.clone();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info.location().is_some_and(|l| l.file().contains("/redb-"));
        if in_redb {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            default_hook(info);
        }
    }));

    let d = Dir::new();
    let (s, _) = d.open();
    s.write(|tx| {
        tx.put_partition(1, b"one")?;
        tx.put_partition(2, b"two")?;
        for _ in 0..40 {
            let oid = tx.next_object_id(1)?;
            tx.put_object(1, oid, &key(1), &[oid as u8; 32], b"sixteen byte rec")?;
            tx.index_add(1, 1, &[oid as u8; 16], oid)?;
        }
        tx.audit_append(1, 1, b"audit")
    })
    .unwrap();
    drop(s);

    let good = fs::read(&d.store).unwrap();
    let good_counter = fs::read(&d.counter).unwrap();
    // Flip bits where there is data (most of the file is preallocated zeros).
    let used: Vec<usize> = (4096..good.len()).filter(|&i| good[i] != 0).collect();
    let seed = 0x1234_5678_9abc_def1;
    let mut rng = Rng(seed);
    let (mut refused, mut read_errors, mut clean) = (0, 0, 0);
    for _ in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = used[(rng.next() as usize) % used.len()];
            bytes[at] ^= 1 << (rng.next() % 8);
        }
        fs::write(&d.store, &bytes).unwrap();
        fs::write(&d.counter, &good_counter).unwrap();
        let Ok((s, _)) = d.open_with(common::DEVICE) else {
            refused += 1;
            continue;
        };
        let mut errors = 0;
        match s.partitions() {
            Ok(p) => {
                for (pid, r) in p {
                    let want: &[u8] = if pid == 1 { b"one" } else { b"two" };
                    assert_eq!(r.expose_secret(), want, "wrong partition data used");
                }
            }
            Err(_) => errors += 1,
        }
        for oid in 1..=40u64 {
            match s.object(1, oid, &key(1)) {
                Ok(Some((d, r))) => {
                    assert_eq!(d, [oid as u8; 32], "wrong digest used");
                    assert_eq!(r.expose_secret(), b"sixteen byte rec", "wrong data used");
                }
                Ok(None) | Err(_) => errors += 1,
            }
            if s.find(1, 1, &[oid as u8; 16]).is_err() {
                errors += 1;
            }
        }
        match s.audit(1, 0, 10) {
            Ok(a) => assert!(a.iter().all(|(seq, e)| *seq == 1 && e == b"audit")),
            Err(_) => errors += 1,
        }
        if s.object_ids(1).is_err() {
            errors += 1;
        }
        if errors == 0 {
            clean += 1;
        } else {
            read_errors += 1;
        }
    }
    let _ = std::panic::take_hook();
    println!(
        "bit flips (seed {seed:#x}, nonces random): {refused} refused at open, {read_errors} \
         with read errors, {clean} clean; {} database panics caught",
        caught.load(Ordering::Relaxed)
    );
    // The flips reached live structures, so the checks above were exercised.
    assert!(refused + read_errors > 0);
}
