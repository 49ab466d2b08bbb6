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
    /// A freshly generated key failed its pairwise-consistency test (FIPS 140-3,
    /// ISO/IEC 19790 §7.10.3.3): it is discarded, never returned.
    #[error("pairwise-consistency test of a freshly generated key failed")]
    PairwiseConsistency,
    /// An input was rejected for its content rather than its length: an unsupported
    /// DigestInfo, an over-long label, an out-of-range parameter.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A parameter combination that aws-lc-rs (and so ihsm) does not implement, such
    /// as AES-192 key wrap or PKCS#1 v1.5 signing with SHA-1.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}
