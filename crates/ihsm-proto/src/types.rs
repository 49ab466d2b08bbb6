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
