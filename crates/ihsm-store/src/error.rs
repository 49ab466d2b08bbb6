//! Errors of the store, each with a stable number.

use std::path::PathBuf;

use ihsm_crypto::CryptoError;
use thiserror::Error;

/// Everything that can go wrong in the store. Messages say what was wrong and what
/// to do; none carries secret material (record contents, keys, plaintext).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    // ---- files -------------------------------------------------------------
    /// A file of the store could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store file is open in another process or through another handle.
    #[error(
        "store {} is already open (another ihsmd, or a second open in this process); stop the other user first",
        path.display()
    )]
    AlreadyOpen {
        /// The store file.
        path: PathBuf,
    },
    /// The embedded database failed in a way that is not an authentication failure.
    #[error("store database error while {what}: {source}")]
    Database {
        /// What was being done.
        what: &'static str,
        /// The database's error.
        #[source]
        source: redb::Error,
    },
    /// A write failed on the store file's I/O (a full disk, a file system gone
    /// read-only): the database takes no more writes until it is reopened.
    #[error(
        "store {} stopped taking writes after an I/O error on its file ({cause}): this write and every later one fail until ihsmd is restarted; free space or repair the file system that holds it, then restart ihsmd (until then it serves reads from what it holds in memory)",
        path.display()
    )]
    Halted {
        /// The store file.
        path: PathBuf,
        /// The first I/O error.
        cause: String,
    },
    /// The embedded database found its own structures damaged (or failed on them).
    #[error(
        "store database structure is damaged ({detail}); the file was corrupted or edited: restore the device from a backup"
    )]
    DatabaseDamaged {
        /// The database's description (no record content).
        detail: String,
    },

    // ---- header --------------------------------------------------------------
    /// The store file is shorter than its fixed header.
    #[error(
        "store {} damaged: {actual} bytes, shorter than the {expected}-byte header (truncated)",
        path.display()
    )]
    HeaderTruncated {
        /// The store file.
        path: PathBuf,
        /// Bytes found.
        actual: u64,
        /// Bytes the header needs.
        expected: u64,
    },
    /// The store file does not start with the store magic.
    #[error("{} is not an ihsm store (bad magic)", path.display())]
    HeaderBadMagic {
        /// The store file.
        path: PathBuf,
    },
    /// The store is of a format this build does not know.
    #[error(
        "store {} has format version {version}, which this build does not support; run a matching ihsmd",
        path.display()
    )]
    HeaderUnsupportedVersion {
        /// The store file.
        path: PathBuf,
        /// Version found.
        version: u32,
    },
    /// The header's integrity digest does not match, or a reserved field is not zero.
    #[error(
        "store {} damaged: header integrity digest mismatch; restore the device from a backup",
        path.display()
    )]
    HeaderDamaged {
        /// The store file.
        path: PathBuf,
    },
    /// The caller's SVN is not the one the store was sealed at.
    #[error(
        "store was sealed at SVN {sealed} but was opened with a key for SVN {requested}; derive the sealing key at the SVN from Store::sealed_svn"
    )]
    SvnMismatch {
        /// SVN in the header.
        sealed: u32,
        /// SVN passed to open.
        requested: u32,
    },
    /// The identity record does not unseal under the sealing key.
    #[error(
        "store is sealed under a different root-of-trust identity: another device, a debug-unlocked boot, or a different SVN ladder position; nothing was changed on disk"
    )]
    WrongIdentity,

    // ---- records -------------------------------------------------------------
    /// A record failed authentication, or is malformed.
    #[error(
        "store record failed authentication: {what}{}; the store file was damaged or tampered with: treat it as a tamper event and restore the device from a backup",
        location(*pid, *oid)
    )]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Its partition, where it has one.
        pid: Option<u32>,
        /// Its object id, where it has one.
        oid: Option<u64>,
    },

    // ---- rollback and the monotonic counter ------------------------------------
    /// The store is older than the monotonic counter: an old copy was put back.
    #[error(
        "store rollback: the store is at generation {store} but the monotonic counter is at {counter}; an older copy of the store was restored: treat it as a tamper event"
    )]
    Rollback {
        /// Generation sealed in the store.
        store: u64,
        /// Generation in the counter file.
        counter: u64,
    },
    /// The counter is more than one write behind the store.
    #[error(
        "monotonic counter at generation {counter} is more than one write behind the store (generation {store}); an older counter file was restored or the store belongs to another device: treat it as a tamper event"
    )]
    CounterBehind {
        /// Generation sealed in the store.
        store: u64,
        /// Generation in the counter file.
        counter: u64,
    },
    /// The counter file is missing although the store has been written.
    #[error(
        "monotonic counter file {} is missing but the store is at generation {store}; restore the counter file kept beside the fuses",
        path.display()
    )]
    CounterMissing {
        /// The counter file.
        path: PathBuf,
        /// Generation sealed in the store.
        store: u64,
    },
    /// The counter file is not of the fixed size of its format.
    #[error(
        "monotonic counter file {} damaged: {actual} bytes where {expected} are required (truncated or padded)",
        path.display()
    )]
    CounterWrongLength {
        /// The counter file.
        path: PathBuf,
        /// Bytes found.
        actual: u64,
        /// Bytes required.
        expected: u64,
    },
    /// The counter file does not start with the counter magic.
    #[error("{} is not an ihsm monotonic counter file (bad magic)", path.display())]
    CounterBadMagic {
        /// The counter file.
        path: PathBuf,
    },
    /// The counter file is of a format this build does not know.
    #[error(
        "monotonic counter file {} has format version {version}, which this build does not support",
        path.display()
    )]
    CounterUnsupportedVersion {
        /// The counter file.
        path: PathBuf,
        /// Version found.
        version: u32,
    },
    /// The counter file's integrity digest does not match its content.
    #[error(
        "monotonic counter file {} damaged: integrity digest mismatch; treat it as a tamper event",
        path.display()
    )]
    CounterDamaged {
        /// The counter file.
        path: PathBuf,
    },
    /// The store file is gone but the monotonic counter shows the device had one.
    #[error(
        "no store at {} but the monotonic counter {} is at generation {counter}: the store was deleted or moved; restore it, or delete the counter file to start a new, empty store",
        path.display(),
        counter_path.display()
    )]
    StoreMissing {
        /// The store file.
        path: PathBuf,
        /// The counter file.
        counter_path: PathBuf,
        /// Generation in the counter file.
        counter: u64,
    },

    // ---- write transactions ------------------------------------------------------
    /// A record names a partition that has no record.
    #[error("no partition {pid} in the store; put the partition record first")]
    NoSuchPartition {
        /// The partition.
        pid: u32,
    },
    /// An index entry names an object that is not stored.
    #[error("no object {oid} in partition {pid}; put the object before indexing it")]
    NoSuchObject {
        /// The partition.
        pid: u32,
        /// The object.
        oid: u64,
    },
    /// An audit entry with this sequence number exists already.
    #[error(
        "audit entry {seq} of partition {pid} exists already; audit entries are append-only, use the next sequence number"
    )]
    AuditSeqExists {
        /// The partition.
        pid: u32,
        /// The sequence number.
        seq: u64,
    },
    /// A 64-bit counter reached its maximum.
    #[error("{what} exhausted (reached 2^64 - 1); the store cannot take more writes of this kind")]
    Exhausted {
        /// Which counter.
        what: &'static str,
    },
    /// The write would make the sealing key seal more records than its epoch's
    /// budget allows (one write of more than half the budget, which a device never
    /// makes): nothing was committed.
    #[error(
        "this write needs more seals than the sealing key's epoch has left ({allowance}); nothing was committed: split the write"
    )]
    SealBudget {
        /// Seals the epoch's key had left for the write.
        allowance: u64,
    },
    /// An operation inside a write failed, its error was ignored and the write
    /// returned Ok: nothing was committed.
    #[error(
        "an operation of this write ({op}) failed earlier and its error was ignored; nothing was committed: propagate store errors out of the write closure"
    )]
    WriteAbandoned {
        /// The operation that failed.
        op: &'static str,
    },
    /// Sealing or opening a record failed for a reason other than authentication.
    #[error("cryptographic failure in the store: {0}")]
    Crypto(#[from] CryptoError),
}

fn location(pid: Option<u32>, oid: Option<u64>) -> String {
    match (pid, oid) {
        (Some(p), Some(o)) => format!(" (partition {p}, object {o})"),
        (Some(p), None) => format!(" (partition {p})"),
        (None, Some(o)) => format!(" (object {o})"),
        (None, None) => String::new(),
    }
}

impl StoreError {
    /// The stable number of this error (boot reports, exit codes, the wire).
    #[must_use]
    pub fn code(&self) -> u32 {
        match self {
            Self::Io { .. } => 0x0010_0001,
            Self::AlreadyOpen { .. } => 0x0010_0002,
            Self::Database { .. } => 0x0010_0003,
            Self::DatabaseDamaged { .. } => 0x0010_0004,
            Self::Halted { .. } => 0x0010_0005,
            Self::HeaderTruncated { .. } => 0x0011_0001,
            Self::HeaderBadMagic { .. } => 0x0011_0002,
            Self::HeaderUnsupportedVersion { .. } => 0x0011_0003,
            Self::HeaderDamaged { .. } => 0x0011_0004,
            Self::SvnMismatch { .. } => 0x0011_0005,
            Self::WrongIdentity => 0x0011_0006,
            Self::Corrupt { .. } => 0x0012_0001,
            Self::Rollback { .. } => 0x0013_0001,
            Self::CounterBehind { .. } => 0x0013_0002,
            Self::CounterMissing { .. } => 0x0013_0003,
            Self::CounterWrongLength { .. } => 0x0013_0004,
            Self::CounterBadMagic { .. } => 0x0013_0005,
            Self::CounterUnsupportedVersion { .. } => 0x0013_0006,
            Self::CounterDamaged { .. } => 0x0013_0007,
            Self::StoreMissing { .. } => 0x0013_0008,
            Self::NoSuchPartition { .. } => 0x0014_0001,
            Self::NoSuchObject { .. } => 0x0014_0002,
            Self::AuditSeqExists { .. } => 0x0014_0003,
            Self::Exhausted { .. } => 0x0014_0004,
            Self::WriteAbandoned { .. } => 0x0014_0005,
            Self::SealBudget { .. } => 0x0014_0006,
            Self::Crypto(_) => 0x0015_0001,
        }
    }

    /// True for the errors that mean the store or its counter was damaged, edited or
    /// rolled back (the core's tamper sensor), as opposed to misuse or I/O trouble.
    #[must_use]
    pub fn is_tamper(&self) -> bool {
        matches!(
            self,
            Self::DatabaseDamaged { .. }
                | Self::HeaderDamaged { .. }
                | Self::Corrupt { .. }
                | Self::Rollback { .. }
                | Self::CounterBehind { .. }
                | Self::CounterMissing { .. }
                | Self::CounterWrongLength { .. }
                | Self::CounterBadMagic { .. }
                | Self::CounterDamaged { .. }
                | Self::StoreMissing { .. }
        )
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }

    /// Classifies a database error: damage is [`StoreError::DatabaseDamaged`],
    /// everything else [`StoreError::Database`].
    pub(crate) fn db(what: &'static str) -> impl FnOnce(redb::Error) -> Self {
        move |source| match source {
            redb::Error::Corrupted(detail) => Self::DatabaseDamaged { detail },
            source => Self::Database { what, source },
        }
    }

    pub(crate) fn corrupt(what: &'static str, pid: Option<u32>, oid: Option<u64>) -> Self {
        Self::Corrupt { what, pid, oid }
    }
}

impl From<ihsm_crypto::file::WriteError> for StoreError {
    fn from(e: ihsm_crypto::file::WriteError) -> Self {
        Self::Io {
            what: e.what,
            path: e.path,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<StoreError> {
        let p = PathBuf::from("x");
        vec![
            StoreError::Io {
                what: "",
                path: p.clone(),
                source: std::io::Error::other("x"),
            },
            StoreError::AlreadyOpen { path: p.clone() },
            StoreError::Database {
                what: "",
                source: redb::Error::DatabaseClosed,
            },
            StoreError::DatabaseDamaged {
                detail: String::new(),
            },
            StoreError::Halted {
                path: p.clone(),
                cause: String::new(),
            },
            StoreError::HeaderTruncated {
                path: p.clone(),
                actual: 0,
                expected: 0,
            },
            StoreError::HeaderBadMagic { path: p.clone() },
            StoreError::HeaderUnsupportedVersion {
                path: p.clone(),
                version: 0,
            },
            StoreError::HeaderDamaged { path: p.clone() },
            StoreError::SvnMismatch {
                sealed: 0,
                requested: 0,
            },
            StoreError::WrongIdentity,
            StoreError::Corrupt {
                what: "",
                pid: None,
                oid: None,
            },
            StoreError::Rollback {
                store: 0,
                counter: 0,
            },
            StoreError::CounterBehind {
                store: 0,
                counter: 0,
            },
            StoreError::CounterMissing {
                path: p.clone(),
                store: 0,
            },
            StoreError::CounterWrongLength {
                path: p.clone(),
                actual: 0,
                expected: 0,
            },
            StoreError::CounterBadMagic { path: p.clone() },
            StoreError::CounterUnsupportedVersion {
                path: p.clone(),
                version: 0,
            },
            StoreError::CounterDamaged { path: p.clone() },
            StoreError::StoreMissing {
                path: p.clone(),
                counter_path: p,
                counter: 0,
            },
            StoreError::NoSuchPartition { pid: 0 },
            StoreError::NoSuchObject { pid: 0, oid: 0 },
            StoreError::AuditSeqExists { pid: 0, seq: 0 },
            StoreError::Exhausted { what: "" },
            StoreError::WriteAbandoned { op: "" },
            StoreError::SealBudget { allowance: 0 },
            StoreError::Crypto(CryptoError::Rng),
        ]
    }

    #[test]
    fn codes_are_unique() {
        let errors = samples();
        let mut codes: Vec<u32> = errors.iter().map(StoreError::code).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "two errors share a code");
    }

    #[test]
    fn corrupt_names_the_record() {
        let e = StoreError::corrupt("object record", Some(7), Some(42));
        let shown = e.to_string();
        assert!(
            shown.contains("object record (partition 7, object 42)"),
            "{shown}"
        );
        assert!(e.is_tamper());
        assert!(!StoreError::WrongIdentity.is_tamper());
    }
}
