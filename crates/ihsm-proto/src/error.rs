//! Stable error numbers: what travels on the wire, what the PKCS#11 module turns
//! into a `CK_RV`, and what scripts may match on. A number, once given, keeps its
//! meaning; a test checks that no two errors share one and that every number
//! round-trips.

use cryptoki_sys as ck;
use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal => $ckr:expr ),* $(,)?) => {
        /// Every error the HSM answers with, by stable number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $num, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [Self] = &[$(Self::$name),*];

            /// The code of a number, if it is one.
            #[must_use]
            pub fn from_u32(n: u32) -> Option<Self> {
                match n {
                    $( $num => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The `CKR_*` the PKCS#11 module returns for this error.
            #[must_use]
            pub fn ckr(self) -> u64 {
                match self {
                    $( Self::$name => $ckr, )*
                }
            }

            /// The name, as logs and `--json` output show it.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$name => stringify!($name), )*
                }
            }
        }
    };
}

codes! {
    // ---- device --------------------------------------------------------------
    /// The device latched TAMPERED.
    Tampered = 0x0100 => ck::CKR_DEVICE_ERROR,
    /// The device is in the fatal state (a self-test failed).
    Fatal = 0x0101 => ck::CKR_DEVICE_ERROR,
    // ---- partitions -------------------------------------------------------------
    /// No such partition.
    PartitionNotFound = 0x0200 => ck::CKR_TOKEN_NOT_PRESENT,
    /// A partition of that name exists.
    PartitionExists = 0x0201 => ck::CKR_ARGUMENTS_BAD,
    /// The partition name is not acceptable.
    PartitionNameInvalid = 0x0202 => ck::CKR_ARGUMENTS_BAD,
    /// The device holds as many partitions as it may.
    PartitionLimit = 0x0203 => ck::CKR_DEVICE_MEMORY,
    /// A quota of the partition is exhausted.
    QuotaExceeded = 0x0204 => ck::CKR_DEVICE_MEMORY,
    /// A principal that cannot be allowed or revoked (the owner; the id no
    /// process has).
    PrincipalInvalid = 0x0205 => ck::CKR_ARGUMENTS_BAD,
    /// The partition admits as many principals as it may.
    PrincipalLimit = 0x0206 => ck::CKR_DEVICE_MEMORY,
    // ---- PINs and login ------------------------------------------------------------
    /// Wrong PIN.
    PinIncorrect = 0x0300 => ck::CKR_PIN_INCORRECT,
    /// PIN locked.
    PinLocked = 0x0301 => ck::CKR_PIN_LOCKED,
    /// PIN of the wrong length.
    PinLenRange = 0x0302 => ck::CKR_PIN_LEN_RANGE,
    /// The user PIN is not set.
    UserPinNotInitialized = 0x0303 => ck::CKR_USER_PIN_NOT_INITIALIZED,
    /// Not logged in.
    UserNotLoggedIn = 0x0304 => ck::CKR_USER_NOT_LOGGED_IN,
    /// Already logged in.
    UserAlreadyLoggedIn = 0x0305 => ck::CKR_USER_ALREADY_LOGGED_IN,
    /// Another user type is logged in.
    UserAnotherAlreadyLoggedIn = 0x0306 => ck::CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
    /// The SO cannot log in while read-only sessions exist.
    SessionReadOnlyExists = 0x0307 => ck::CKR_SESSION_READ_ONLY_EXISTS,
    /// Only the Security Officer may do this.
    NotSecurityOfficer = 0x0308 => ck::CKR_USER_NOT_LOGGED_IN,
    /// A read-only session cannot be opened while the Security Officer is
    /// logged in.
    SessionReadWriteSoExists = 0x0309 => ck::CKR_SESSION_READ_WRITE_SO_EXISTS,
    // ---- sessions ----------------------------------------------------------------
    /// Invalid session handle.
    SessionHandleInvalid = 0x0400 => ck::CKR_SESSION_HANDLE_INVALID,
    /// The session is read-only.
    SessionReadOnly = 0x0401 => ck::CKR_SESSION_READ_ONLY,
    /// An operation is already active.
    OperationActive = 0x0402 => ck::CKR_OPERATION_ACTIVE,
    /// No operation is active.
    OperationNotInitialized = 0x0403 => ck::CKR_OPERATION_NOT_INITIALIZED,
    // ---- objects ---------------------------------------------------------------------
    /// Invalid object handle.
    ObjectHandleInvalid = 0x0500 => ck::CKR_OBJECT_HANDLE_INVALID,
    /// Invalid key handle.
    KeyHandleInvalid = 0x0501 => ck::CKR_KEY_HANDLE_INVALID,
    /// Attribute type not valid for the object.
    AttributeTypeInvalid = 0x0502 => ck::CKR_ATTRIBUTE_TYPE_INVALID,
    /// Attribute value invalid.
    AttributeValueInvalid = 0x0503 => ck::CKR_ATTRIBUTE_VALUE_INVALID,
    /// Attribute cannot be set or changed.
    AttributeReadOnly = 0x0504 => ck::CKR_ATTRIBUTE_READ_ONLY,
    /// Attribute is sensitive.
    AttributeSensitive = 0x0505 => ck::CKR_ATTRIBUTE_SENSITIVE,
    /// Template incomplete.
    TemplateIncomplete = 0x0506 => ck::CKR_TEMPLATE_INCOMPLETE,
    /// Template inconsistent.
    TemplateInconsistent = 0x0507 => ck::CKR_TEMPLATE_INCONSISTENT,
    /// The object may not be changed or destroyed.
    ActionProhibited = 0x0508 => ck::CKR_ACTION_PROHIBITED,
    /// Key type does not match the mechanism.
    KeyTypeInconsistent = 0x0509 => ck::CKR_KEY_TYPE_INCONSISTENT,
    /// The key's attributes forbid this use.
    KeyFunctionNotPermitted = 0x050a => ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
    /// The key cannot leave by this route.
    KeyUnextractable = 0x050b => ck::CKR_KEY_UNEXTRACTABLE,
    /// Key size out of range.
    KeySizeRange = 0x050c => ck::CKR_KEY_SIZE_RANGE,
    /// The key may leave, but not under this wrapping key.
    KeyNotWrappable = 0x050d => ck::CKR_KEY_NOT_WRAPPABLE,
    // ---- mechanisms and data -----------------------------------------------------------
    /// Mechanism not supported.
    MechanismInvalid = 0x0600 => ck::CKR_MECHANISM_INVALID,
    /// Mechanism parameter invalid.
    MechanismParamInvalid = 0x0601 => ck::CKR_MECHANISM_PARAM_INVALID,
    /// Data length out of range.
    DataLenRange = 0x0602 => ck::CKR_DATA_LEN_RANGE,
    /// Encrypted data invalid.
    EncryptedDataInvalid = 0x0603 => ck::CKR_ENCRYPTED_DATA_INVALID,
    /// Signature invalid.
    SignatureInvalid = 0x0604 => ck::CKR_SIGNATURE_INVALID,
    /// Wrapped key invalid.
    WrappedKeyInvalid = 0x0605 => ck::CKR_WRAPPED_KEY_INVALID,
    /// Masked key not importable here.
    MaskedKeyInvalid = 0x0606 => ck::CKR_WRAPPED_KEY_INVALID,
    /// The random source failed its health test.
    RandomFailure = 0x0607 => ck::CKR_DEVICE_ERROR,
    // ---- lower layers ------------------------------------------------------------------
    /// The store failed.
    Store = 0x0700 => ck::CKR_DEVICE_ERROR,
    /// The root of trust failed.
    Rot = 0x0701 => ck::CKR_DEVICE_ERROR,
    /// A cryptographic primitive failed.
    Crypto = 0x0702 => ck::CKR_FUNCTION_FAILED,
    /// An invariant broke inside the HSM; a bug.
    Internal = 0x0703 => ck::CKR_GENERAL_ERROR,
    /// The audit log does not verify.
    AuditBroken = 0x0704 => ck::CKR_DEVICE_ERROR,
    // ---- protocol and daemon -------------------------------------------------------------
    /// Client and daemon share no protocol revision.
    VersionUnsupported = 0x0800 => ck::CKR_DEVICE_ERROR,
    /// A frame that does not decode as the message it should be.
    Malformed = 0x0801 => ck::CKR_GENERAL_ERROR,
    /// A frame longer than the protocol allows.
    FrameTooLarge = 0x0802 => ck::CKR_DATA_LEN_RANGE,
    /// The peer's credentials do not own this endpoint.
    PermissionDenied = 0x0803 => ck::CKR_FUNCTION_REJECTED,
    /// The request is not served on this endpoint (admin versus partition).
    WrongEndpoint = 0x0804 => ck::CKR_FUNCTION_NOT_SUPPORTED,
    /// The daemon is shutting down.
    ShuttingDown = 0x0805 => ck::CKR_DEVICE_REMOVED,
    /// The daemon could not be reached, or the connection broke.
    Connection = 0x0806 => ck::CKR_DEVICE_REMOVED,
    /// The daemon answered with a reply of the wrong kind.
    UnexpectedReply = 0x0807 => ck::CKR_GENERAL_ERROR,
    /// A root-of-trust mailbox command failed (the mailbox code is in the message).
    MailboxFailed = 0x0808 => ck::CKR_DEVICE_ERROR,
    /// A request the daemon could not carry out for a reason of its own (I/O).
    DaemonFailed = 0x0809 => ck::CKR_DEVICE_ERROR,
    /// [`crate::msg::Request::JoinApp`] named no application of this user and
    /// partition.
    AppTokenInvalid = 0x080a => ck::CKR_DEVICE_REMOVED,
    /// A request did not arrive whole within the daemon's time for one frame
    /// (`[daemon] frame_timeout_secs`) once its first byte had.
    FrameTimeout = 0x080b => ck::CKR_DEVICE_REMOVED,
    // ---- fleet -------------------------------------------------------------------------
    /// A fleet request to a host that is not in a fleet.
    NotInFleet = 0x0900 => ck::CKR_FUNCTION_NOT_SUPPORTED,
    /// The fleet's registry (etcd) could not be reached; the host keeps serving.
    FleetUnavailable = 0x0901 => ck::CKR_DEVICE_ERROR,
    /// The partition moved to another host of the fleet; the message names it.
    PartitionMoved = 0x0902 => ck::CKR_DEVICE_REMOVED,
    /// The partition is being moved, or its move is not settled yet: it serves
    /// nothing here until it is (try again, or where the move went).
    PartitionMoving = 0x0903 => ck::CKR_DEVICE_REMOVED,
    /// A move was refused: the destination failed attestation, the placement
    /// is not this host's, or the transfer failed; the partition stays here.
    MoveRefused = 0x0904 => ck::CKR_FUNCTION_FAILED,
    /// A fleet masking domain request was refused (`ihsm fleet evict`): this
    /// host does not hold the current epoch, the host named is this one, or
    /// the fleet's epoch changed meanwhile.
    DomainRefused = 0x0905 => ck::CKR_FUNCTION_FAILED,
}

impl ErrorCode {
    /// The number.
    #[must_use]
    pub fn number(self) -> u32 {
        self as u32
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (0x{:04x})", self.name(), self.number())
    }
}

/// An error as it travels: the stable number and a message for people. The
/// message says what was wrong and what to do; it never carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// [`ErrorCode`] number (kept raw so a newer daemon's codes still travel).
    pub code: u32,
    /// What went wrong.
    pub message: String,
}

impl WireError {
    /// An error of a known code.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.number(),
            message: message.into(),
        }
    }

    /// The code, if this build knows it.
    #[must_use]
    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_u32(self.code)
    }

    /// The `CKR_*` for this error (`CKR_GENERAL_ERROR` for an unknown code).
    #[must_use]
    pub fn ckr(&self) -> u64 {
        self.kind().map_or(ck::CKR_GENERAL_ERROR, ErrorCode::ckr)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.number()), "{c} used twice");
            assert!(names.insert(c.name()), "{} named twice", c.name());
            assert_eq!(ErrorCode::from_u32(c.number()), Some(*c));
            assert_ne!(c.ckr(), ck::CKR_OK, "{c} must not map to CKR_OK");
        }
        assert_eq!(ErrorCode::from_u32(0), None);
        assert_eq!(ErrorCode::from_u32(0xffff_ffff), None);
        // Numbers already given keep their meaning.
        assert_eq!(ErrorCode::Tampered.number(), 0x0100);
        assert_eq!(ErrorCode::PinIncorrect.number(), 0x0300);
        assert_eq!(ErrorCode::MechanismInvalid.number(), 0x0600);
        assert_eq!(ErrorCode::VersionUnsupported.number(), 0x0800);
        assert_eq!(ErrorCode::SessionReadOnlyExists.number(), 0x0307);
        assert_eq!(
            ErrorCode::SessionReadWriteSoExists.ckr(),
            ck::CKR_SESSION_READ_WRITE_SO_EXISTS
        );
        assert_eq!(ErrorCode::PrincipalInvalid.number(), 0x0205);
        assert_eq!(ErrorCode::PrincipalLimit.number(), 0x0206);
    }

    #[test]
    fn unknown_codes_still_travel() {
        let e = WireError {
            code: 0x7777,
            message: "from a newer daemon".into(),
        };
        assert_eq!(e.kind(), None);
        assert_eq!(e.ckr(), ck::CKR_GENERAL_ERROR);
        let e = WireError::new(ErrorCode::PinLocked, "locked");
        assert_eq!(e.ckr(), ck::CKR_PIN_LOCKED);
        assert_eq!(e.to_string(), "locked");
        assert_eq!(ErrorCode::PinLocked.to_string(), "PinLocked (0x0301)");
    }
}
