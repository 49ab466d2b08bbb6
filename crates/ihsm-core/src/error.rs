//! Errors of the HSM core. Each has a stable number (carried on the wire) and is
//! named after the PKCS#11 return value it becomes at the PKCS#11 edge, so that edge
//! is a table and not a judgement.

use ihsm_crypto::CryptoError;
use ihsm_proto::{ErrorCode, WireError};
use ihsm_rot::RotError;
use ihsm_store::StoreError;
use thiserror::Error;

/// Everything that can go wrong in the core. Messages say what was wrong and, where
/// there is one, what to do; none carries secret material.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoreError {
    // ---- device ------------------------------------------------------------
    /// The device latched TAMPERED: its secrets are gone; only re-provisioning recovers.
    #[error("device TAMPERED ({0}): secrets were zeroized; re-provision the device to recover")]
    Tampered(String),
    /// The device hit a fatal error (a self-test failed).
    #[error("device in fatal state: {0}; restart the HSM")]
    Fatal(String),
    // ---- partitions ---------------------------------------------------------
    /// No partition of that name or id.
    #[error("no such partition: {0}")]
    PartitionNotFound(String),
    /// A partition of that name exists.
    #[error("a partition named {0:?} already exists")]
    PartitionExists(String),
    /// The partition moved to another host of the fleet.
    #[error("partition {name:?} moved to host {to}; connect there")]
    PartitionMoved {
        /// The partition.
        name: String,
        /// The host that serves it now.
        to: String,
    },
    /// The partition is being moved (or its move is not yet settled): it serves
    /// nothing until the move commits or is undone.
    #[error("partition {0:?} is moving between hosts; try again shortly")]
    PartitionMoving(String),
    /// A partition bundle that cannot be imported.
    #[error("partition bundle refused: {0}")]
    BundleInvalid(&'static str),
    /// The partition is not in the state the step of a move needs.
    #[error("partition {name:?}: {why}")]
    MoveState {
        /// The partition.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The partition name is not acceptable.
    #[error("invalid partition name {0:?}: use 1 to 32 characters of a-z, 0-9, '-' and '_'")]
    PartitionNameInvalid(String),
    /// The device holds as many partitions as it may.
    #[error("the device already holds its maximum of {0} partitions")]
    PartitionLimit(u32),
    /// The caller's credentials are not among those the partition admits. The
    /// message is the whole story for an operator: the partition, who it
    /// admits, the caller, and the command that would admit it.
    #[error(
        "partition {partition:?} admits {}; uid {uid} gid {gid} is not among them; to admit it: ihsm partition allow {partition} --uid {uid}",
        ihsm_proto::types::list(.admits)
    )]
    PermissionDenied {
        /// The partition.
        partition: String,
        /// The caller's uid.
        uid: u32,
        /// The caller's gid.
        gid: u32,
        /// Everyone the partition admits, its owner first.
        admits: Vec<ihsm_proto::types::Principal>,
    },
    /// A principal that cannot be allowed or revoked.
    #[error("{0}")]
    PrincipalInvalid(String),
    /// The partition admits as many principals as it may.
    #[error(
        "partition {partition:?} already admits {max} principals besides its owner, the most it may; revoke one first (or admit a group: ihsm partition allow {partition} --gid GID)"
    )]
    PrincipalLimit {
        /// The partition.
        partition: String,
        /// The limit.
        max: usize,
    },
    /// A quota of the partition is exhausted.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(&'static str),
    // ---- PINs and login ------------------------------------------------------
    /// Wrong PIN.
    #[error("incorrect PIN ({remaining} attempts left before lockout)")]
    PinIncorrect {
        /// Attempts left.
        remaining: u32,
    },
    /// Too many wrong PINs.
    #[error("PIN locked after too many failed attempts; the Security Officer must reset it")]
    PinLocked,
    /// PIN of the wrong length.
    #[error("PIN must be {min} to {max} bytes")]
    PinLenRange {
        /// Shortest PIN.
        min: usize,
        /// Longest PIN.
        max: usize,
    },
    /// The user PIN was never set (C_InitPIN).
    #[error("the user PIN is not initialized; the Security Officer must set it first")]
    UserPinNotInitialized,
    /// The operation needs a logged-in user.
    #[error("not logged in")]
    UserNotLoggedIn,
    /// Already logged in as that user.
    #[error("already logged in")]
    UserAlreadyLoggedIn,
    /// Another user type is logged in to this application.
    #[error("another user type is already logged in; log out first")]
    UserAnotherAlreadyLoggedIn,
    /// The Security Officer cannot log in while read-only sessions exist.
    #[error("the Security Officer cannot log in while read-only sessions are open")]
    SessionReadOnlyExists,
    /// A read-only session cannot be opened while the Security Officer is logged in.
    #[error(
        "the Security Officer is logged in: only read-write sessions may be opened; log out first"
    )]
    SessionReadWriteSoExists,
    /// The operation needs the Security Officer.
    #[error("only the Security Officer may do this")]
    NotSecurityOfficer,
    // ---- sessions -------------------------------------------------------------
    /// No such session (or another application's).
    #[error("invalid session handle")]
    SessionHandleInvalid,
    /// The session is read-only.
    #[error("session is read-only")]
    SessionReadOnly,
    /// An operation of that kind is already active in the session.
    #[error("an operation is already active in this session")]
    OperationActive,
    /// No operation of that kind is active in the session.
    #[error("no operation is active in this session; call the Init function first")]
    OperationNotInitialized,
    // ---- objects ----------------------------------------------------------------
    /// No such object visible to this session.
    #[error("invalid object handle")]
    ObjectHandleInvalid,
    /// The key handle is invalid for this use.
    #[error("invalid key handle")]
    KeyHandleInvalid,
    /// An attribute type unknown or not valid for this object.
    #[error("attribute type 0x{0:x} is not valid for this object")]
    AttributeTypeInvalid(u64),
    /// An attribute value of the wrong type or out of range.
    #[error("attribute 0x{0:x} has an invalid value")]
    AttributeValueInvalid(u64),
    /// An attribute value refused, and why (a release policy that does not parse
    /// or loosens).
    #[error("attribute 0x{0:x} has an invalid value: {1}")]
    AttributeValueInvalidWhy(u64, String),
    /// An attribute that may not be changed (now, or in that direction).
    #[error("attribute 0x{0:x} cannot be set or changed")]
    AttributeReadOnly(u64),
    /// A sensitive or unextractable attribute was asked for.
    #[error("attribute 0x{0:x} is sensitive and cannot be revealed")]
    AttributeSensitive(u64),
    /// A required attribute is missing from the template.
    #[error("template incomplete: attribute 0x{0:x} is required")]
    TemplateIncomplete(u64),
    /// The template contradicts itself or the mechanism.
    #[error("template inconsistent: {0}")]
    TemplateInconsistent(&'static str),
    /// The object may not be changed or destroyed.
    #[error("the object is not {0}")]
    ActionProhibited(&'static str),
    /// The key's type does not suit the mechanism.
    #[error("key type does not match the mechanism")]
    KeyTypeInconsistent,
    /// The key's attributes forbid this use.
    #[error("the key is not permitted for this function ({0} is false)")]
    KeyFunctionNotPermitted(&'static str),
    /// The key cannot leave the HSM by this route.
    #[error("key cannot be extracted: {0}")]
    KeyUnextractable(&'static str),
    /// The key may leave the HSM, but not under this wrapping key or mechanism.
    #[error("key cannot be wrapped this way: {0}")]
    KeyNotWrappable(&'static str),
    /// A secure key release was refused: the EAR or the policy says no.
    #[error("release refused: {0}")]
    ReleaseRefused(String),
    /// The key size is not supported.
    #[error("key size out of range: {0}")]
    KeySizeRange(&'static str),
    // ---- mechanisms and data ------------------------------------------------------
    /// Mechanism not supported.
    #[error("mechanism not supported: {0}")]
    MechanismInvalid(String),
    /// Mechanism parameters wrong.
    #[error("invalid mechanism parameter: {0}")]
    MechanismParamInvalid(&'static str),
    /// Input data of the wrong length.
    #[error("data length out of range: {0}")]
    DataLenRange(&'static str),
    /// Ciphertext that does not decrypt (tag, padding, format).
    #[error("encrypted data invalid")]
    EncryptedDataInvalid,
    /// A signature that does not verify.
    #[error("signature invalid")]
    SignatureInvalid,
    /// A wrapped key that does not unwrap.
    #[error("wrapped key invalid")]
    WrappedKeyInvalid,
    /// A masked-key blob that this partition cannot import.
    #[error("masked key invalid: {0}")]
    MaskedKeyInvalid(&'static str),
    /// The random source failed its health test.
    #[error("random number generator failure")]
    RandomFailure,
    // ---- lower layers -------------------------------------------------------------
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The root of trust failed.
    #[error("root of trust: {0}")]
    Rot(#[from] RotError),
    /// A cryptographic primitive failed.
    #[error("cryptographic failure: {0}")]
    Crypto(CryptoError),
    /// The audit log does not verify.
    #[error("audit log broken: {0}")]
    AuditBroken(String),
    /// An invariant of the core broke; a bug.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<CryptoError> for CoreError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Rng => Self::RandomFailure,
            CryptoError::Unsupported(what) => Self::MechanismParamInvalid(what),
            other => Self::Crypto(other),
        }
    }
}

impl CoreError {
    /// The stable code of this error on the wire (`ihsm_proto::ErrorCode`).
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Tampered(_) => ErrorCode::Tampered,
            Self::Fatal(_) => ErrorCode::Fatal,
            Self::PartitionNotFound(_) => ErrorCode::PartitionNotFound,
            Self::PartitionExists(_) => ErrorCode::PartitionExists,
            Self::PartitionNameInvalid(_) => ErrorCode::PartitionNameInvalid,
            Self::PartitionMoved { .. } => ErrorCode::PartitionMoved,
            Self::PartitionMoving(_) => ErrorCode::PartitionMoving,
            Self::BundleInvalid(_) | Self::MoveState { .. } => ErrorCode::MoveRefused,
            Self::PartitionLimit(_) => ErrorCode::PartitionLimit,
            Self::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Self::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Self::PrincipalInvalid(_) => ErrorCode::PrincipalInvalid,
            Self::PrincipalLimit { .. } => ErrorCode::PrincipalLimit,
            Self::PinIncorrect { .. } => ErrorCode::PinIncorrect,
            Self::PinLocked => ErrorCode::PinLocked,
            Self::PinLenRange { .. } => ErrorCode::PinLenRange,
            Self::UserPinNotInitialized => ErrorCode::UserPinNotInitialized,
            Self::UserNotLoggedIn => ErrorCode::UserNotLoggedIn,
            Self::UserAlreadyLoggedIn => ErrorCode::UserAlreadyLoggedIn,
            Self::UserAnotherAlreadyLoggedIn => ErrorCode::UserAnotherAlreadyLoggedIn,
            Self::SessionReadOnlyExists => ErrorCode::SessionReadOnlyExists,
            Self::SessionReadWriteSoExists => ErrorCode::SessionReadWriteSoExists,
            Self::NotSecurityOfficer => ErrorCode::NotSecurityOfficer,
            Self::SessionHandleInvalid => ErrorCode::SessionHandleInvalid,
            Self::SessionReadOnly => ErrorCode::SessionReadOnly,
            Self::OperationActive => ErrorCode::OperationActive,
            Self::OperationNotInitialized => ErrorCode::OperationNotInitialized,
            Self::ObjectHandleInvalid => ErrorCode::ObjectHandleInvalid,
            Self::KeyHandleInvalid => ErrorCode::KeyHandleInvalid,
            Self::AttributeTypeInvalid(_) => ErrorCode::AttributeTypeInvalid,
            Self::AttributeValueInvalid(_) | Self::AttributeValueInvalidWhy(..) => {
                ErrorCode::AttributeValueInvalid
            }
            Self::AttributeReadOnly(_) => ErrorCode::AttributeReadOnly,
            Self::AttributeSensitive(_) => ErrorCode::AttributeSensitive,
            Self::TemplateIncomplete(_) => ErrorCode::TemplateIncomplete,
            Self::TemplateInconsistent(_) => ErrorCode::TemplateInconsistent,
            Self::ActionProhibited(_) => ErrorCode::ActionProhibited,
            Self::KeyTypeInconsistent => ErrorCode::KeyTypeInconsistent,
            Self::KeyFunctionNotPermitted(_) => ErrorCode::KeyFunctionNotPermitted,
            Self::KeyUnextractable(_) => ErrorCode::KeyUnextractable,
            Self::KeyNotWrappable(_) => ErrorCode::KeyNotWrappable,
            Self::ReleaseRefused(_) => ErrorCode::PermissionDenied,
            Self::KeySizeRange(_) => ErrorCode::KeySizeRange,
            Self::MechanismInvalid(_) => ErrorCode::MechanismInvalid,
            Self::MechanismParamInvalid(_) => ErrorCode::MechanismParamInvalid,
            Self::DataLenRange(_) => ErrorCode::DataLenRange,
            Self::EncryptedDataInvalid => ErrorCode::EncryptedDataInvalid,
            Self::SignatureInvalid => ErrorCode::SignatureInvalid,
            Self::WrappedKeyInvalid => ErrorCode::WrappedKeyInvalid,
            Self::MaskedKeyInvalid(_) => ErrorCode::MaskedKeyInvalid,
            Self::RandomFailure => ErrorCode::RandomFailure,
            Self::Store(_) => ErrorCode::Store,
            Self::Rot(_) => ErrorCode::Rot,
            Self::Crypto(_) => ErrorCode::Crypto,
            Self::Internal(_) => ErrorCode::Internal,
            Self::AuditBroken(_) => ErrorCode::AuditBroken,
        }
    }

    /// This error as it travels: its code and its message.
    #[must_use]
    pub fn to_wire(&self) -> WireError {
        WireError::new(self.code(), self.to_string())
    }
}

/// Result alias of the core.
pub type Result<T, E = CoreError> = core::result::Result<T, E>;
