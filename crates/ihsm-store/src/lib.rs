//! # The ihsm store: at-rest format and storage encryption
//!
//! `ihsm-store` keeps a device's partitions, objects, attribute index and audit
//! log in one file, `store.redb`, beside a 64-byte monotonic counter file kept with
//! the fuses. Nothing secret is in the clear in either: every record is sealed with
//! AES-256-GCM and bound by its associated data to the place it is stored at.
//!
//! ## What it protects, from whom
//!
//! The attacker can read, copy, edit, truncate, replace and restore the state
//! directory at any time, and can kill the daemon at any instant. The attacker
//! cannot read the root of trust's sealing key, which is derived from the device
//! secrets at the firmware SVN ladder position the store was sealed at.
//!
//! - Confidentiality: partition records, object records and audit entries are
//!   sealed. The file shows only structure (see the limits below).
//! - Integrity and place: an edited, truncated, extended, moved or swapped record
//!   fails authentication and is reported as `StoreError::Corrupt { what, pid, oid }`
//!   naming the record. It is never used, and a damaged file never makes the store
//!   panic: failures inside the database library surface as `DatabaseDamaged`. The
//!   `store_record` fuzz target edits store files at random; it found redb 3.1.3
//!   aborting on a page size taken from a damaged file (a 64 GiB allocation), so the
//!   workspace builds redb from `vendor/redb` with that read bounded
//!   (`vendor/redb/IHSM-PATCH.md`) until a release has the bound.
//! - Identity: a store opened with another device's key, a debug-unlocked boot's
//!   key or another SVN's key is refused (`WrongIdentity`) from the file header
//!   alone, before the database is opened, so that open changes nothing on disk.
//! - Rollback: every write increments a generation sealed in the store and then
//!   recorded in the counter file; a store older than the counter is refused
//!   (`Rollback`).
//! - Crash consistency: a write is one durable database transaction; after a crash
//!   (kill -9, power loss) the store holds every write that returned Ok and nothing
//!   of any other.
//!
//! ## Keys
//!
//! | key | from | seals |
//! |---|---|---|
//! | sealing key, epoch 0 | the root of trust (stable-identity ladder, at the store's sealed SVN) | the header's identity record; until the first re-key, everything the sealing key seals |
//! | sealing key, epoch e >= 1 | HKDF-SHA-384 of the epoch-0 key, salt `store_id`, info `ihsm/store/sealing-epoch/v1 \|\| e (4, BE)`, 32 bytes | generation record, partition records, partition state records, audit entries |
//! | partition master key | random per partition; at rest inside its partition record (so sealed under the sealing key), live only in the core's locked memory | that partition's object records |
//!
//! ### The budget of seals, and epochs
//!
//! AES-GCM with random 96-bit nonces is good for 2^32 seals per key (NIST SP
//! 800-38D section 8.3). The store counts every seal the sealing key makes, in the
//! generation record (sealed in the same commit as the seals it counts, so the count
//! is as durable as they are). Before a write, when the current epoch's count has
//! reached half the budget (2^31), the store first commits a re-key: one write that
//! opens every record of the sealing key (partition records, partition states, audit
//! entries) and seals it again under the next epoch's key, with the generation
//! record, and records the new epoch in `meta`. Half, so that neither the write in
//! flight nor the re-seal itself can cross the budget; a single write that would
//! (more than 2^31 seals) is refused with `SealBudget` and commits nothing. A
//! re-key costs one seal per record it re-seals: the whole audit log, so its time
//! grows with the log (a re-key comes once every 2^31 seals, about every 700
//! million writes). A reader whose snapshot began before a re-key committed reads
//! the epoch from its snapshot and opens with that epoch's key. A store whose
//! generation record predates the count (24 bytes) has an unknown count and
//! re-keys before its next write. `StoreOptions { seal_budget }` lowers the budget
//! for tests (`tests/epochs.rs`, and the crash test that kills the writer while it
//! re-keys every few writes).
//!
//! A sealed blob is `nonce (12) || ciphertext || tag (16)`: AES-256-GCM with a
//! random 96-bit nonce per seal and the associated data (AD) given below
//! (`ihsm_crypto::seal::SealKey`). Plaintext read back is returned in `SecretVec`
//! (locked, non-dumpable memory, wiped on drop); audit entries, which the API
//! returns as `Vec<u8>`, are the exception.
//!
//! ## The store file
//!
//! A fixed 4096-byte header, then a redb 3 database. redb sees the file from
//! offset 4096 on; the header is written once, at creation, and never again.
//!
//! ### Header
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IHST` |
//! | 4 | 4 | format version, 1 (LE) |
//! | 8 | 4 | sealed SVN (LE); not authenticated, it only selects the ladder key |
//! | 12 | 4 | reserved, zero |
//! | 16 | 48 | identity record: seal of `store_id (16) \|\| SVN (4, BE)` under the sealing key, AD `ihsm/store/identity/v1` |
//! | 64 | 48 | SHA-384 of bytes 0..64 (integrity against accidents, not against an attacker) |
//! | 112 | 3984 | zero |
//!
//! `Store::sealed_svn` reads the SVN from here without any key, even while the
//! store is open. `store_id` is 16 random bytes chosen at creation; it binds the
//! database to this header (through the generation record). An SVN edited in the
//! clear to match another key is caught because the SVN is also inside the
//! identity record.
//!
//! ### Tables
//!
//! Integers in keys are redb's encoding (little-endian, compared as numbers); a
//! tuple key is its fields concatenated.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"generation"` | generation record: seal of `store_id (16) \|\| generation (8, BE) \|\| epoch (4, BE) \|\| seals (8, BE)`, sealing key of that epoch, AD `ihsm/store/generation/v1`; `seals` counts the seals of the epoch's key, this one included |
//! | `meta` | `"seal_epoch"` | the sealing key's epoch, 4 bytes BE, in the clear (absent: 0): it only selects the key; an edited epoch opens nothing and is `Corrupt` |
//! | `partitions` | pid `u32` | partition record, sealing key, AD `ihsm/partition/v1 \|\| pid (4, BE)` |
//! | `objects` | (pid `u32`, oid `u64`) | `attr_digest (32) \|\| ` object record sealed under the partition master key, AD `ihsm/object/v1 \|\| pid (4, BE) \|\| oid (8, BE) \|\| attr_digest (32)` |
//! | `index` (multimap) | `pid (4, BE) \|\| tag (1) \|\| value_mac (16)` | the set of oids (`u64`) |
//! | `audit` | (pid `u32`, seq `u64`) | audit entry, sealing key, AD `ihsm/audit/v1 \|\| pid (4, BE) \|\| seq (8, BE)` |
//! | `partition_state` | pid `u32` | seal of `next_oid (8, BE) \|\| object_count (8, BE)`, sealing key, AD `ihsm/store/partition-state/v1 \|\| pid (4, BE)` |
//!
//! The AD strings are the ASCII bytes shown, without terminator, followed directly
//! by the big-endian numbers.
//!
//! - The attribute digest is computed by the core over the object's attributes and
//!   stored in the clear beside the blob so that it can go into the AD: editing it,
//!   or moving a blob to another partition or object id, or opening it with another
//!   partition's key, fails authentication. The core checks the digest returned
//!   with the record against the attributes inside the record.
//! - The index holds MACs computed by the core with a key of its own, so it shows
//!   which objects share an attribute value but not the value. `find` is one point
//!   lookup. The index is not authenticated: a hit must be checked against the
//!   object's authenticated attributes.
//! - Object ids come from `partition_state` and are never reused: the next id is
//!   also raised above the highest stored id whenever a state is loaded, so even a
//!   replayed older state record cannot hand out a live id. `delete_partition`
//!   removes the partition's record, objects, index entries, audit entries and
//!   state; a partition created again with the same id starts again at 1.
//!
//! ## The monotonic counter file
//!
//! Kept beside the fuses, 64 bytes, written atomically (temporary file, fsync,
//! rename, fsync of the directory), mode 0600.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IHCT` |
//! | 4 | 4 | format version, 1 (LE) |
//! | 8 | 8 | generation (LE) |
//! | 16 | 48 | SHA-384 of bytes 0..16 |
//!
//! It stands in for a hardware monotonic counter: the store compares against it;
//! it never goes down.
//!
//! ## Creating a store
//!
//! `Store::open` on a path with no file: refuse if a counter file exists
//! (`StoreMissing`: the device had a store, which was deleted or moved; delete the
//! counter deliberately to start over), else write the header and a database with
//! all tables and the generation-0 record into `.NAME.creating` beside the store,
//! fsync, hard-link it into place (atomic, never replacing a file), fsync the
//! directory, then write the counter (generation 0). A crash before the link
//! leaves no store; a crash after it leaves a store at generation 0 without
//! counter, which the next open accepts and repairs.
//!
//! ## Opening a store
//!
//! In this order, stopping at the first failure:
//!
//! 1. Header: length, magic, version, digest, reserved bytes (`HeaderTruncated`,
//!    `HeaderBadMagic`, `HeaderUnsupportedVersion`, `HeaderDamaged`).
//! 2. The caller's SVN against the header's (`SvnMismatch`).
//! 3. The identity record under the sealing key (`WrongIdentity`). Nothing has
//!    been written so far, and nothing is.
//! 4. The counter file: absent, or length, magic, version, digest
//!    (`CounterWrongLength`, `CounterBadMagic`, `CounterUnsupportedVersion`,
//!    `CounterDamaged`).
//! 5. The database, locked exclusively (`AlreadyOpen`). From here redb may write
//!    its own bookkeeping (its open flag and allocator state), never a record.
//! 6. The generation record: present, authentic, of this store (`Corrupt`).
//! 7. Generation against counter: equal, fine; store one ahead (a crash between a
//!    commit and its counter update), accept and rewrite the counter
//!    (`repaired_counter`); store behind, `Rollback { store, counter }`; store more
//!    than one ahead, `CounterBehind`; no counter and generation 0, accept and
//!    write it; no counter otherwise, `CounterMissing`.
//!
//! ## Writing
//!
//! `Store::write(f)` serializes writers, re-keys first when the sealing key's
//! epoch has spent half its budget (above), opens one redb write transaction with
//! `Durability::Immediate` and quick repair, runs `f`, then seals the changed
//! partition states and the next generation record into the same transaction and
//! commits. Only then is the counter file rewritten. If `f` returns an error,
//! nothing is committed. If an operation inside `f` failed with a database or
//! cryptographic error and `f` still returned Ok, nothing is committed either
//! (`WriteAbandoned`); refusals that change nothing (`NoSuchPartition`,
//! `NoSuchObject`, `AuditSeqExists`, `Exhausted`) may be handled by `f`.
//!
//! If the counter update after a commit fails, the write still returns Ok (it is
//! committed and durable), `Store::counter_lags` turns true, and the next write
//! first retries the counter and fails, committing nothing, while it cannot.
//!
//! ## Crash recovery and open time
//!
//! Quick repair makes redb commit in two phases and save its allocator state with
//! every commit, so reopening after a crash reads that state instead of walking the
//! whole file: opening a store of 1,000,000 objects takes milliseconds, crash or
//! not, and memory stays small (redb's page cache is bounded at 64 MiB and filled
//! on demand). `tests/crash.rs` kills a writing process with SIGKILL at random
//! moments and checks that every acknowledged write is there and every other
//! write is all there or absent; `tests/scale.rs` measures open time, memory and
//! lookup latency at 1,000,000 objects.
//!
//! ## What the file still shows, and known limits
//!
//! - Structure: partition ids, object ids and their count per partition, record
//!   sizes, audit sequence numbers, the number of index entries per (tag, MAC)
//!   (hence which objects share an attribute value), the generation, the SVN.
//! - Replaying one older record: a single record copied from an older copy of the
//!   file back to its own place is authentic and is accepted; only whole-store
//!   rollback is detected. Deleting records (an object, an audit entry, an index
//!   entry) is not detected by itself; `object_count` (sealed) against
//!   `object_ids` shows deleted objects. Closing these needs an authenticated
//!   structure over all records (a Merkle tree whose root is sealed with the
//!   generation).
//! - The counter file is only as monotonic as the filesystem: restoring an old
//!   store together with its old counter file defeats the rollback check. A
//!   hardware monotonic counter (or the RoT's NV) closes that.
//! - Random nonces under the partition master keys: the sealing key's budget is
//!   enforced (above); a master key seals its partition's object records, one per
//!   object write, and nothing counts those yet. A partition would need 2^32 object
//!   writes over its life to reach the bound; re-keying a partition means sealing
//!   each of its objects again, which the core would have to do.
#![forbid(unsafe_code)]

mod backend;
mod counter;
mod error;
mod header;
mod keys;
mod records;
mod store;
mod tx;

pub use counter::COUNTER_FILE_LEN;
pub use error::StoreError;
pub use keys::{SEAL_BUDGET, StoreOptions};
pub use store::{AuditObserver, OpenReport, Store};
pub use tx::WriteTx;

#[cfg(test)]
mod tamper_tests;

/// `docs/store.md` is this crate's documentation, for readers without rustdoc;
/// the two must not drift apart.
#[cfg(test)]
#[test]
fn docs_store_md_is_the_crate_documentation() {
    let lib = include_str!("lib.rs");
    let from_lib: Vec<&str> = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect();
    let md: Vec<&str> = include_str!("../../../docs/store.md").lines().collect();
    assert_eq!(
        from_lib, md,
        "docs/store.md and the crate documentation differ"
    );
}
