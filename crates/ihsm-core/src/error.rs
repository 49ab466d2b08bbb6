//! Errors of the HSM core. Each has a stable number (carried on the wire) and is
//! named after the PKCS#11 return value it becomes at the PKCS#11 edge, so that edge
//! is a table and not a judgement.

use ihsm_crypto::CryptoError;
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
    /// The partition name is not acceptable.
    #[error("invalid partition name {0:?}: use 1 to 32 characters of a-z, 0-9, '-' and '_'")]
    PartitionNameInvalid(String),
    /// The device holds as many partitions as it may.
    #[error("the device already holds its maximum of {0} partitions")]
    PartitionLimit(u32),
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
    /// The stable number of this error on the wire.
    #[must_use]
    pub fn code(&self) -> u32 {
        match self {
            Self::Tampered(_) => 0x0100,
            Self::Fatal(_) => 0x0101,
            Self::PartitionNotFound(_) => 0x0200,
            Self::PartitionExists(_) => 0x0201,
            Self::PartitionNameInvalid(_) => 0x0202,
            Self::PartitionLimit(_) => 0x0203,
            Self::QuotaExceeded(_) => 0x0204,
            Self::PinIncorrect { .. } => 0x0300,
            Self::PinLocked => 0x0301,
            Self::PinLenRange { .. } => 0x0302,
            Self::UserPinNotInitialized => 0x0303,
            Self::UserNotLoggedIn => 0x0304,
            Self::UserAlreadyLoggedIn => 0x0305,
            Self::UserAnotherAlreadyLoggedIn => 0x0306,
            Self::SessionReadOnlyExists => 0x0307,
            Self::NotSecurityOfficer => 0x0308,
            Self::SessionHandleInvalid => 0x0400,
            Self::SessionReadOnly => 0x0401,
            Self::OperationActive => 0x0402,
            Self::OperationNotInitialized => 0x0403,
            Self::ObjectHandleInvalid => 0x0500,
            Self::KeyHandleInvalid => 0x0501,
            Self::AttributeTypeInvalid(_) => 0x0502,
            Self::AttributeValueInvalid(_) => 0x0503,
            Self::AttributeReadOnly(_) => 0x0504,
            Self::AttributeSensitive(_) => 0x0505,
            Self::TemplateIncomplete(_) => 0x0506,
            Self::TemplateInconsistent(_) => 0x0507,
            Self::ActionProhibited(_) => 0x0508,
            Self::KeyTypeInconsistent => 0x0509,
            Self::KeyFunctionNotPermitted(_) => 0x050a,
            Self::KeyUnextractable(_) => 0x050b,
            Self::KeySizeRange(_) => 0x050c,
            Self::MechanismInvalid(_) => 0x0600,
            Self::MechanismParamInvalid(_) => 0x0601,
            Self::DataLenRange(_) => 0x0602,
            Self::EncryptedDataInvalid => 0x0603,
            Self::SignatureInvalid => 0x0604,
            Self::WrappedKeyInvalid => 0x0605,
            Self::MaskedKeyInvalid(_) => 0x0606,
            Self::RandomFailure => 0x0607,
            Self::Store(_) => 0x0700,
            Self::Rot(_) => 0x0701,
            Self::Crypto(_) => 0x0702,
            Self::Internal(_) => 0x0703,
            Self::AuditBroken(_) => 0x0704,
        }
    }
}

/// Result alias of the core.
pub type Result<T, E = CoreError> = core::result::Result<T, E>;
