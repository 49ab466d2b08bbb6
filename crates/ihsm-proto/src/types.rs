//! The plain records the HSM reports and takes: login and session states, quotas,
//! partition and device descriptions, audit verification results.

use serde::{Deserialize, Serialize};

/// Who is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserType {
    /// The Security Officer (`CKU_SO`).
    SecurityOfficer,
    /// The normal user (`CKU_USER`).
    User,
}

/// `CKS_*` session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionState {
    /// `CKS_RO_PUBLIC_SESSION`.
    ReadOnlyPublic,
    /// `CKS_RO_USER_FUNCTIONS`.
    ReadOnlyUser,
    /// `CKS_RW_PUBLIC_SESSION`.
    ReadWritePublic,
    /// `CKS_RW_USER_FUNCTIONS`.
    ReadWriteUser,
    /// `CKS_RW_SO_FUNCTIONS`.
    ReadWriteSecurityOfficer,
}

/// A partition's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Most objects (token and session).
    pub max_objects: u64,
    /// Most open sessions.
    pub max_sessions: u32,
    /// Most cryptographic operations per second (0: unlimited).
    pub ops_per_second: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_objects: 2_000_000,
            max_sessions: 1024,
            ops_per_second: 0,
        }
    }
}

/// Someone a partition admits besides its owner: every process of this uid, or
/// every process whose (effective) gid is this one, as `SO_PEERCRED` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Principal {
    /// A user.
    Uid(u32),
    /// A group.
    Gid(u32),
}

impl core::fmt::Display for Principal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Uid(u) => write!(f, "uid {u}"),
            Self::Gid(g) => write!(f, "gid {g}"),
        }
    }
}

impl Principal {
    /// The `ihsm partition allow` option that names it: `--uid 33`.
    #[must_use]
    pub fn option(&self) -> String {
        match self {
            Self::Uid(u) => format!("--uid {u}"),
            Self::Gid(g) => format!("--gid {g}"),
        }
    }
}

/// Most principals a partition admits besides its owner.
pub const MAX_PRINCIPALS: usize = 64;

/// The gid that stands for "no group" in an owner (`u32::MAX`, which no process
/// has); never a principal either.
pub const NO_ID: u32 = u32::MAX;

/// Everyone a partition with this owner and these principals admits: the owner's
/// uid, its gid (unless [`NO_ID`]), then the principals.
#[must_use]
pub fn admitted(owner_uid: u32, owner_gid: u32, principals: &[Principal]) -> Vec<Principal> {
    let mut all = vec![Principal::Uid(owner_uid)];
    if owner_gid != NO_ID {
        all.push(Principal::Gid(owner_gid));
    }
    all.extend_from_slice(principals);
    all
}

/// Principals as people read them: `uid 0, gid 0, uid 33`.
#[must_use]
pub fn list(principals: &[Principal]) -> String {
    principals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a partition allows that the HSM refuses by default. Set when the
/// partition is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPolicy {
    /// Make SHA-1 signatures (`CKM_SHA1_RSA_PKCS`, `CKM_SHA1_RSA_PKCS_PSS`,
    /// `CKM_ECDSA_SHA1`) for legacy clients. Off by default: NIST SP 800-131A
    /// disallows SHA-1 for signature generation.
    pub allow_sha1_signatures: bool,
}

/// What `describe` reports (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition id.
    pub id: u32,
    /// Name (the PKCS#11 token label).
    pub name: String,
    /// Owner uid.
    pub owner_uid: u32,
    /// Owner gid.
    pub owner_gid: u32,
    /// Quotas.
    pub quotas: Quotas,
    /// Token objects.
    pub token_objects: u64,
    /// Session objects.
    pub session_objects: u64,
    /// Open sessions.
    pub sessions: u64,
    /// Whether the user PIN is set.
    pub user_pin_initialized: bool,
    /// Whether the user PIN is locked.
    pub user_pin_locked: bool,
    /// Whether the SO PIN is locked.
    pub so_pin_locked: bool,
    /// Consecutive failed logins with the user PIN since its last success.
    pub user_pin_failures: u32,
    /// Consecutive failed logins with the SO PIN since its last success.
    pub so_pin_failures: u32,
    /// Failed logins in a row that lock a PIN.
    pub max_pin_failures: u32,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Who it admits besides its owner (uid and gid), in order (revision 4).
    pub principals: Vec<Principal>,
    /// Its policy (revision 4).
    pub policy: PartitionPolicy,
}

impl PartitionInfo {
    /// Everyone it admits, its owner first (see [`admitted`]).
    #[must_use]
    pub fn admitted(&self) -> Vec<Principal> {
        admitted(self.owner_uid, self.owner_gid, &self.principals)
    }
}

/// The device's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    /// Starting.
    Booting,
    /// Serving.
    Operational,
    /// A tamper sensor fired; secrets are gone; latched until re-provisioning.
    Tampered(String),
    /// A self-test failed; restart.
    Fatal(String),
}

/// What a tamper does to persistent material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TamperPolicy {
    /// Zeroize volatile secrets and latch TAMPERED; the fuse file stays (only
    /// re-provisioning recovers, and it replaces the fuses).
    Zeroize,
    /// Also destroy the fuse file (UDS, field entropy): nothing sealed by this device
    /// can ever be opened again.
    ZeroizeAndDestroy,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The last sequence number vouched for by a checkpoint (0: none).
    pub verified_through: u64,
    /// Entries after the last checkpoint (chained, but not yet signed).
    pub unsigned_tail: u64,
}
