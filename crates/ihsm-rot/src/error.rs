//! Errors of the root of trust, each with a stable number.

use std::path::PathBuf;

use ihsm_crypto::CryptoError;
use ihsm_crypto::kat::KatError;
use thiserror::Error;

/// Which signature algorithm an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECC P-384.
    Ecc384,
    /// ML-DSA-87.
    MlDsa87,
}

impl core::fmt::Display for Alg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Ecc384 => "ECC P-384",
            Self::MlDsa87 => "ML-DSA-87",
        })
    }
}

/// Everything that can go wrong in the root of trust. Messages say what was wrong
/// and, where there is one, what to do; none carries secret material.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RotError {
    // ---- fuses ----------------------------------------------------------------
    /// No fuse file: the device has never been provisioned.
    #[error("device is not provisioned: no fuse file at {0} (run `ihsm provision --dev`)")]
    NotProvisioned(PathBuf),
    /// The fuse file is shorter or longer than the format requires.
    #[error(
        "fuse file damaged: {actual} bytes where {expected} are required (truncated or padded)"
    )]
    FusesWrongLength {
        /// Bytes found.
        actual: usize,
        /// Bytes required.
        expected: usize,
    },
    /// The fuse file does not start with the fuse magic.
    #[error("fuse file damaged: bad magic (not an ihsm fuse file)")]
    FusesBadMagic,
    /// The fuse file is of a format this build does not know.
    #[error("fuse file format version {0} is not supported by this build")]
    FusesUnsupportedVersion(u32),
    /// The fuse file's integrity digest does not match its content.
    #[error("fuse file damaged: integrity digest mismatch")]
    FusesDamaged,
    /// The lifecycle field holds no known state.
    #[error("fuse file damaged: unknown lifecycle state {0}")]
    FusesBadLifecycle(u32),
    /// The SVN fuse is not a thermometer code (ones from bit 0 up, then zeros).
    #[error("fuse file damaged: firmware SVN fuse is not a thermometer code")]
    FusesBadSvn,
    /// Provisioning twice without `--wipe`.
    #[error(
        "device is already provisioned (fuses at {0}); pass --wipe to destroy it and start over"
    )]
    AlreadyProvisioned(PathBuf),
    /// Burning an SVN below the one already fused (OTP bits only go from 0 to 1).
    #[error(
        "cannot lower the fused firmware SVN from {fused} to {requested}: fuses only burn upwards"
    )]
    SvnFuseDecrease {
        /// Current fused SVN.
        fused: u32,
        /// Requested SVN.
        requested: u32,
    },
    /// An SVN above the 128 the fuse can hold.
    #[error("firmware SVN {0} exceeds the maximum of 128")]
    SvnTooLarge(u32),

    // ---- manifest format ------------------------------------------------------
    /// The manifest is not of the fixed size of its format.
    #[error("manifest malformed: {actual} bytes where {expected} are required")]
    ManifestWrongLength {
        /// Bytes found.
        actual: usize,
        /// Bytes required.
        expected: usize,
    },
    /// The manifest does not start with the manifest magic.
    #[error("manifest malformed: bad magic (not an ihsm firmware manifest)")]
    ManifestBadMagic,
    /// A field of the manifest holds an impossible value.
    #[error("manifest malformed: {0}")]
    ManifestMalformed(&'static str),

    // ---- boot ----------------------------------------------------------------
    /// A power-on self-test failed.
    #[error("power-on self-test failed: {0}")]
    SelfTest(#[from] KatError),
    /// The vendor key descriptors do not hash to the fused vendor key hash.
    #[error("manifest vendor key descriptors do not match the fused vendor key hash")]
    VendorDescriptorMismatch,
    /// The manifest names a vendor key index the descriptor does not have.
    #[error("manifest names {alg} vendor key {index}, but the descriptor holds {count}")]
    VendorKeyIndexOutOfRange {
        /// Which key.
        alg: Alg,
        /// Index named.
        index: u32,
        /// Keys in the descriptor.
        count: u32,
    },
    /// The signed header and the preamble name different vendor keys.
    #[error("manifest {alg} vendor key index differs between preamble and signed header")]
    VendorKeyIndexMismatch {
        /// Which key.
        alg: Alg,
    },
    /// The active vendor key is not the one the descriptor lists at its index.
    #[error("manifest {alg} vendor key {index} is not the key listed in the fused descriptor")]
    VendorKeyNotInDescriptor {
        /// Which key.
        alg: Alg,
        /// Index.
        index: u32,
    },
    /// A vendor signature does not verify.
    #[error("manifest {alg} signature does not verify with vendor key {index}")]
    VendorSignature {
        /// Which signature.
        alg: Alg,
        /// Vendor key index.
        index: u32,
    },
    /// The owner keys do not hash to the fused owner key hash.
    #[error("manifest owner keys do not match the fused owner key hash")]
    OwnerKeyMismatch,
    /// An owner key hash is fused but the manifest has no owner signature.
    #[error("an owner key hash is fused but the manifest carries no owner signature")]
    OwnerSignatureMissing,
    /// An owner signature does not verify.
    #[error("manifest {0} owner signature does not verify")]
    OwnerSignature(Alg),
    /// The table of contents does not match its signed digest.
    #[error("manifest table of contents does not match its signed digest")]
    TocDigestMismatch,
    /// Anti-rollback: the manifest's SVN is below the fused minimum.
    #[error("SVN rollback: manifest SVN {manifest} is below the fused minimum SVN {fused}")]
    SvnRollback {
        /// SVN in the manifest.
        manifest: u32,
        /// SVN in the fuses.
        fused: u32,
    },
    /// The running firmware image is not the one the manifest signs.
    #[error(
        "firmware image digest does not match the manifest (measured {measured}, signed {signed})"
    )]
    ImageDigestMismatch {
        /// Hex of the measured digest.
        measured: String,
        /// Hex of the signed digest.
        signed: String,
    },
    /// The security configuration is not the one the manifest signs.
    #[error(
        "security configuration digest does not match the manifest (measured {measured}, signed {signed}); re-sign the manifest after changing it"
    )]
    ConfigDigestMismatch {
        /// Hex of the measured digest.
        measured: String,
        /// Hex of the signed digest.
        signed: String,
    },
    /// The security configuration could not be parsed.
    #[error("security configuration invalid: {0}")]
    BadConfig(String),

    // ---- runtime -------------------------------------------------------------
    /// The RoT hit a fatal error earlier and has zeroized its secrets.
    #[error("root of trust is in fatal state ({0}); secrets were zeroized, reboot required")]
    Fatal(String),
    /// A sealing key was requested for an SVN above the running firmware's.
    #[error("key ladder: target SVN {target} is above the running firmware SVN {current}")]
    LadderTargetSvnTooLarge {
        /// Requested SVN.
        target: u32,
        /// Running SVN.
        current: u32,
    },
    /// A certificate or CSR could not be built.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// A cryptographic primitive failed.
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] CryptoError),
    /// A key set directory is missing keys or holds keys that do not belong together.
    #[error("key set {}: {reason}", dir.display())]
    KeySet {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of the state directory could not be read or written.
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
}

impl RotError {
    /// The stable number of this error (boot reports, exit codes, the wire).
    #[must_use]
    pub fn code(&self) -> u32 {
        match self {
            Self::NotProvisioned(_) => 0x0001_0001,
            Self::FusesWrongLength { .. } => 0x0001_0002,
            Self::FusesBadMagic => 0x0001_0003,
            Self::FusesUnsupportedVersion(_) => 0x0001_0004,
            Self::FusesDamaged => 0x0001_0005,
            Self::FusesBadLifecycle(_) => 0x0001_0006,
            Self::FusesBadSvn => 0x0001_0007,
            Self::AlreadyProvisioned(_) => 0x0001_0008,
            Self::SvnFuseDecrease { .. } => 0x0001_0009,
            Self::SvnTooLarge(_) => 0x0001_000a,
            Self::ManifestWrongLength { .. } => 0x0002_0001,
            Self::ManifestBadMagic => 0x0002_0002,
            Self::ManifestMalformed(_) => 0x0002_0003,
            Self::SelfTest(k) => 0x0003_0000 | k.code(),
            Self::VendorDescriptorMismatch => 0x0004_0001,
            Self::VendorKeyIndexOutOfRange { .. } => 0x0004_0002,
            Self::VendorKeyIndexMismatch { .. } => 0x0004_0003,
            Self::VendorKeyNotInDescriptor { .. } => 0x0004_0004,
            Self::VendorSignature {
                alg: Alg::Ecc384, ..
            } => 0x0004_0005,
            Self::VendorSignature {
                alg: Alg::MlDsa87, ..
            } => 0x0004_0006,
            Self::OwnerKeyMismatch => 0x0004_0007,
            Self::OwnerSignatureMissing => 0x0004_0008,
            Self::OwnerSignature(Alg::Ecc384) => 0x0004_0009,
            Self::OwnerSignature(Alg::MlDsa87) => 0x0004_000a,
            Self::TocDigestMismatch => 0x0004_000b,
            Self::SvnRollback { .. } => 0x0004_000c,
            Self::ImageDigestMismatch { .. } => 0x0004_000d,
            Self::ConfigDigestMismatch { .. } => 0x0004_000e,
            Self::BadConfig(_) => 0x0004_000f,
            Self::Fatal(_) => 0x0005_0001,
            Self::LadderTargetSvnTooLarge { .. } => 0x0005_0002,
            Self::Certificate(_) => 0x0005_0003,
            Self::Crypto(_) => 0x0005_0004,
            Self::Io { .. } => 0x0006_0001,
            Self::KeySet { .. } => 0x0006_0002,
        }
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

impl From<ihsm_crypto::file::WriteError> for RotError {
    fn from(e: ihsm_crypto::file::WriteError) -> Self {
        Self::Io {
            what: e.what,
            path: e.path,
            source: e.source,
        }
    }
}

/// Result alias for the root of trust.
pub type Result<T, E = RotError> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<RotError> {
        let p = PathBuf::from("x");
        let mut v = vec![
            RotError::NotProvisioned(p.clone()),
            RotError::FusesWrongLength {
                actual: 0,
                expected: 0,
            },
            RotError::FusesBadMagic,
            RotError::FusesUnsupportedVersion(0),
            RotError::FusesDamaged,
            RotError::FusesBadLifecycle(0),
            RotError::FusesBadSvn,
            RotError::AlreadyProvisioned(p.clone()),
            RotError::SvnFuseDecrease {
                fused: 0,
                requested: 0,
            },
            RotError::SvnTooLarge(0),
            RotError::ManifestWrongLength {
                actual: 0,
                expected: 0,
            },
            RotError::ManifestBadMagic,
            RotError::ManifestMalformed(""),
            RotError::VendorDescriptorMismatch,
            RotError::VendorKeyIndexOutOfRange {
                alg: Alg::Ecc384,
                index: 0,
                count: 0,
            },
            RotError::VendorKeyIndexMismatch { alg: Alg::Ecc384 },
            RotError::VendorKeyNotInDescriptor {
                alg: Alg::Ecc384,
                index: 0,
            },
            RotError::VendorSignature {
                alg: Alg::Ecc384,
                index: 0,
            },
            RotError::VendorSignature {
                alg: Alg::MlDsa87,
                index: 0,
            },
            RotError::OwnerKeyMismatch,
            RotError::OwnerSignatureMissing,
            RotError::OwnerSignature(Alg::Ecc384),
            RotError::OwnerSignature(Alg::MlDsa87),
            RotError::TocDigestMismatch,
            RotError::SvnRollback {
                manifest: 0,
                fused: 0,
            },
            RotError::ImageDigestMismatch {
                measured: String::new(),
                signed: String::new(),
            },
            RotError::ConfigDigestMismatch {
                measured: String::new(),
                signed: String::new(),
            },
            RotError::BadConfig(String::new()),
            RotError::Fatal(String::new()),
            RotError::LadderTargetSvnTooLarge {
                target: 0,
                current: 0,
            },
            RotError::Certificate(String::new()),
            RotError::Crypto(CryptoError::Rng),
            RotError::KeySet {
                dir: p.clone(),
                reason: String::new(),
            },
            RotError::Io {
                what: "",
                path: p,
                source: std::io::Error::other("x"),
            },
        ];
        v.extend(KatError::ALL.iter().map(|k| RotError::SelfTest(*k)));
        v
    }

    #[test]
    fn codes_are_unique() {
        let errors = samples();
        let mut codes: Vec<u32> = errors.iter().map(RotError::code).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "two errors share a code");
    }
}
