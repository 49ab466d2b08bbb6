//! What the store reads back from disk, where an attacker can edit every byte: the
//! store file (header, redb database, sealed records), the counter file, and the
//! core's decoders of the records that authenticate (partition records, object
//! records, audit entries).
//!
//! Input: `mode u8 | rest`, by `mode % 4`:
//! - 0: edits to a real store (built once per process under a fixed sealing key,
//!   with a partition, objects, index entries and audit entries) and its counter
//!   file: `flags u8 | [length u32 LE] if flags bit 0 | patches`, each patch
//!   `offset u32 LE | len u8 | bytes`, at the offset modulo the file's length (the
//!   counter file's with flags bit 1), the file first cut to `length` modulo its
//!   length. The result is opened with `Store::open` on a tmpfs and read
//!   throughout (partitions, object ids, objects, index, audit, partition state),
//!   then written to once.
//! - 1, 2, 3: `rest` is a partition record, an object record or an audit entry, as
//!   the core decodes them once the store has opened them.
//!
//! Nothing may panic out of the store or the core. The store turns a panic inside
//! redb (a damaged file can cause one) into `StoreError::DatabaseDamaged` by
//! design (`catch_unwind` in `ihsm-store`), so this target replaces libFuzzer's
//! abort-on-any-panic hook with one that stays quiet inside those calls; a panic
//! that escapes still aborts and is a finding. A record that decodes encodes to a
//! record that decodes to the same.
#![no_main]

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::OnceLock;

use ihsm_core::fuzz;
use ihsm_crypto::Secret;
use ihsm_crypto::seal::SealKey;
use ihsm_store::Store;
use libfuzzer_sys::fuzz_target;

const SVN: u32 = 2;
const KEY: [u8; 32] = [0x5e; 32];
const MASTER: [u8; 32] = [0x6f; 32];

struct Fixture {
    dir: PathBuf,
    image: Vec<u8>,
    counter: Vec<u8>,
}

thread_local! {
    static IN_STORE: Cell<bool> = const { Cell::new(false) };
}

fn key() -> SealKey {
    SealKey::new(Secret::from_slice(&KEY).unwrap())
}

fn master() -> SealKey {
    SealKey::new(Secret::from_slice(&MASTER).unwrap())
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_STORE.with(Cell::get) {
                default(info);
            }
        }));
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        // Directories left by runs that stopped at a finding.
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("ihsm-fuzz-store-")
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = PathBuf::from(format!("{base}/ihsm-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (store, _) =
            Store::open(&dir.join("store.redb"), &dir.join("counter"), key(), SVN).unwrap();
        store
            .write(|tx| {
                tx.put_partition(1, b"partition one")?;
                tx.put_partition(2, b"partition two")?;
                for i in 0..6u8 {
                    let oid = tx.next_object_id(1)?;
                    tx.put_object(1, oid, &master(), &[i; 32], &[i; 40])?;
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
        let image = std::fs::read(dir.join("store.redb")).unwrap();
        let counter = std::fs::read(dir.join("counter")).unwrap();
        // Each input makes the directory again and removes it, so none is left.
        std::fs::remove_dir_all(&dir).unwrap();
        Fixture {
            dir,
            image,
            counter,
        }
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (a, b) = data.split_at(n);
    *data = b;
    Some(a)
}

fn store_file(f: &Fixture, mut d: &[u8]) {
    let Some(&[flags]) = take(&mut d, 1) else {
        return;
    };
    let mut image = f.image.clone();
    let mut counter = f.counter.clone();
    if flags & 1 == 1 {
        let Some(n) = take(&mut d, 4) else { return };
        let n = u32::from_le_bytes(n.try_into().unwrap()) as usize;
        let file = if flags & 2 == 2 {
            &mut counter
        } else {
            &mut image
        };
        let len = file.len();
        file.truncate(n % (len + 1));
    }
    while let Some(h) = take(&mut d, 5) {
        let off = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let Some(bytes) = take(&mut d, usize::from(h[4])) else {
            break;
        };
        let file = if flags & 2 == 2 {
            &mut counter
        } else {
            &mut image
        };
        if file.is_empty() {
            break;
        }
        let off = off % file.len();
        let n = bytes.len().min(file.len() - off);
        file[off..off + n].copy_from_slice(&bytes[..n]);
    }
    std::fs::create_dir_all(&f.dir).unwrap();
    let path = f.dir.join("store.redb");
    let counter_path = f.dir.join("counter");
    std::fs::write(&path, &image).unwrap();
    std::fs::write(&counter_path, &counter).unwrap();
    IN_STORE.with(|c| c.set(true));
    let _ = Store::sealed_svn(&path);
    if let Ok((store, _)) = Store::open(&path, &counter_path, key(), SVN) {
        if let Ok(parts) = store.partitions() {
            for (pid, _) in parts {
                let _ = store.partition(pid);
                let _ = store.object_count(pid);
                for oid in store.object_ids(pid).unwrap_or_default() {
                    let _ = store.object(pid, oid, &master());
                }
                for tag in 0..3u8 {
                    let _ = store.find(pid, tag, &[tag; 16]);
                }
                let _ = store.audit(pid, 1, 100);
            }
        }
        let _ = store.write(|tx| {
            let oid = tx.next_object_id(1)?;
            tx.put_object(1, oid, &master(), &[9; 32], b"new")?;
            tx.audit_append(1, 6, b"entry")?;
            tx.delete_object(1, 1)?;
            Ok(())
        });
    }
    IN_STORE.with(|c| c.set(false));
    std::fs::remove_dir_all(&f.dir).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => store_file(f, rest),
        1 => {
            if let Ok(again) = fuzz::partition_record(rest) {
                assert_eq!(fuzz::partition_record(&again).unwrap(), again);
            }
        }
        2 => {
            if let Ok(again) = fuzz::object_record(rest) {
                assert_eq!(fuzz::object_record(&again).unwrap(), again);
            }
        }
        _ => {
            let _ = fuzz::audit_head(rest);
        }
    }
});
