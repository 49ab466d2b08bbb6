use thiserror::Error;

/// A cryptographic operation failed.
///
/// Deliberately coarse: a signature that does not verify and a malformed signature
/// are the same error to a caller, so nothing about the secret leaks through the
/// error kind.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A signature, MAC or tag did not verify.
    #[error("verification failed")]
    VerificationFailed,
    /// A key was malformed, not on the curve, or of the wrong length.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// An input had the wrong length.
    #[error("{what} must be {expected} bytes, got {actual}")]
    WrongLength {
        /// What was being parsed.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length supplied.
        actual: usize,
    },
    /// The random number generator failed.
    #[error("random number generator failure")]
    Rng,
    /// Locked memory for a secret could not be mapped.
    #[error("cannot map memory for a secret: {0}")]
    SecretMemory(rustix::io::Errno),
    /// The underlying library reported an internal failure.
    #[error("{0} failed inside the cryptographic library")]
    Internal(&'static str),
    /// A PEM or DER key file could not be read.
    #[error("{0}")]
    KeyFile(&'static str),
}
