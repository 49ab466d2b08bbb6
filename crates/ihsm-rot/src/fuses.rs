//! The fuse file: ihsm's one-time-programmable memory.
//!
//! Written once by provisioning, atomically (temporary file, fsync, rename, fsync of
//! the directory), mode 0600. Its layout is fixed and little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IHFU` |
//! | 4 | 4 | format version (1) |
//! | 8 | 4 | lifecycle (1 manufacturing, 3 production) |
//! | 12 | 64 | UDS (unique device secret) |
//! | 76 | 32 | field entropy |
//! | 108 | 48 | vendor key-descriptor hash (SHA-384) |
//! | 156 | 48 | owner key hash (SHA-384; all zero = not fused) |
//! | 204 | 16 | firmware SVN, 128-bit thermometer code (bit i = byte i/8, bit i%8) |
//! | 220 | 17 | UEID (type byte, then 16 bytes) |
//! | 237 | 3 | reserved, zero |
//! | 240 | 48 | SHA-384 of bytes 0..240 (integrity, not secrecy) |
//!
//! Total 288 bytes. Anything else is a fatal error that says what is wrong.

use core::fmt;
use std::fs;
use std::path::Path;

use ihsm_crypto::hash::sha384;
use ihsm_crypto::{ExposeSecret, Secret};

use crate::error::{Result, RotError};

/// Size of the fuse file.
pub const FUSE_FILE_LEN: usize = 288;
const MAGIC: [u8; 4] = *b"IHFU";
const VERSION: u32 = 1;
const BODY_LEN: usize = 240;

/// The highest firmware SVN the thermometer fuse can hold.
pub const MAX_SVN: u32 = 128;

/// Device lifecycle, with Caliptra's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Never provisioned (no fuse file).
    Unprovisioned = 0,
    /// Manufacturing: development devices and devices before their IDevID is endorsed.
    Manufacturing = 1,
    /// Production.
    Production = 3,
}

impl Lifecycle {
    /// From the fused value.
    ///
    /// # Errors
    /// [`RotError::FusesBadLifecycle`] for unknown values.
    pub fn from_u32(v: u32) -> Result<Self> {
        match v {
            1 => Ok(Self::Manufacturing),
            3 => Ok(Self::Production),
            other => Err(RotError::FusesBadLifecycle(other)),
        }
    }

    /// The fused value.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unprovisioned => "unprovisioned",
            Self::Manufacturing => "manufacturing",
            Self::Production => "production",
        })
    }
}

/// The 128-bit thermometer-coded firmware SVN fuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvnFuse([u8; 16]);

impl SvnFuse {
    /// The fuse with the lowest `svn` bits burnt.
    ///
    /// # Errors
    /// [`RotError::SvnTooLarge`] above 128.
    pub fn from_svn(svn: u32) -> Result<Self> {
        if svn > MAX_SVN {
            return Err(RotError::SvnTooLarge(svn));
        }
        // svn ones from bit 0 up: all ones shifted right by 128 - svn (none for 0).
        let bits = u128::MAX.checked_shr(MAX_SVN - svn).unwrap_or(0);
        Ok(Self(bits.to_le_bytes()))
    }

    /// Parses raw fuse bits; they must be ones from bit 0 upwards, then zeros.
    ///
    /// # Errors
    /// [`RotError::FusesBadSvn`] otherwise.
    pub fn from_bits(raw: [u8; 16]) -> Result<Self> {
        let v = u128::from_le_bytes(raw);
        // A thermometer code plus one is a power of two (or zero on overflow).
        if v.wrapping_add(1) & v != 0 {
            return Err(RotError::FusesBadSvn);
        }
        Ok(Self(raw))
    }

    /// The SVN: the number of burnt bits.
    #[must_use]
    pub fn svn(&self) -> u32 {
        u128::from_le_bytes(self.0).count_ones()
    }

    /// The raw bits.
    #[must_use]
    pub fn bits(&self) -> [u8; 16] {
        self.0
    }
}

/// The UEID: a type byte (0x01 = RAND, as in EAT) and 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ueid(pub [u8; 17]);

impl Ueid {
    /// A random UEID of type RAND.
    ///
    /// # Errors
    /// [`RotError::Crypto`] if the RNG fails.
    pub fn random() -> Result<Self> {
        let mut u = [0u8; 17];
        u[0] = 0x01;
        ihsm_crypto::rand::fill(&mut u[1..])?;
        Ok(Self(u))
    }
}

impl fmt::Display for Ueid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The device fuses. Secrets (UDS, field entropy) live in locked memory.
pub struct Fuses {
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    uds: Secret<64>,
    field_entropy: Secret<32>,
    /// SHA-384 of the vendor key descriptors the manifest must carry.
    pub vendor_key_hash: [u8; 48],
    /// SHA-384 of the owner keys, or zeros when no owner is fused.
    pub owner_key_hash: [u8; 48],
    /// Minimum firmware SVN (anti-rollback).
    pub svn: SvnFuse,
    /// Device serial.
    pub ueid: Ueid,
}

impl fmt::Debug for Fuses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fuses")
            .field("lifecycle", &self.lifecycle)
            .field("uds", &"[REDACTED]")
            .field("field_entropy", &"[REDACTED]")
            .field("vendor_key_hash", &hex::encode(self.vendor_key_hash))
            .field("owner_key_hash", &hex::encode(self.owner_key_hash))
            .field("svn", &self.svn.svn())
            .field("ueid", &self.ueid.to_string())
            .finish()
    }
}

/// What provisioning writes into fresh fuses.
#[derive(Debug, Clone)]
pub struct FuseSpec {
    /// Lifecycle to fuse.
    pub lifecycle: Lifecycle,
    /// Vendor key-descriptor hash.
    pub vendor_key_hash: [u8; 48],
    /// Owner key hash (zeros: none).
    pub owner_key_hash: [u8; 48],
    /// Initial minimum SVN.
    pub svn: u32,
}

impl Fuses {
    /// Fresh fuses: random UDS, field entropy and UEID.
    ///
    /// # Errors
    /// [`RotError::Crypto`] or [`RotError::SvnTooLarge`].
    pub fn generate(spec: &FuseSpec) -> Result<Self> {
        Ok(Self {
            lifecycle: spec.lifecycle,
            uds: Secret::random()?,
            field_entropy: Secret::random()?,
            vendor_key_hash: spec.vendor_key_hash,
            owner_key_hash: spec.owner_key_hash,
            svn: SvnFuse::from_svn(spec.svn)?,
            ueid: Ueid::random()?,
        })
    }

    /// Fuses from explicit secrets (tests, benchmarks and golden vectors).
    ///
    /// # Errors
    /// [`RotError::SvnTooLarge`].
    pub fn from_parts(
        spec: &FuseSpec,
        uds: Secret<64>,
        field_entropy: Secret<32>,
        ueid: Ueid,
    ) -> Result<Self> {
        Ok(Self {
            lifecycle: spec.lifecycle,
            uds,
            field_entropy,
            vendor_key_hash: spec.vendor_key_hash,
            owner_key_hash: spec.owner_key_hash,
            svn: SvnFuse::from_svn(spec.svn)?,
            ueid,
        })
    }

    /// The unique device secret.
    pub(crate) fn uds(&self) -> &Secret<64> {
        &self.uds
    }

    /// The field entropy.
    pub(crate) fn field_entropy(&self) -> &Secret<32> {
        &self.field_entropy
    }

    /// True when an owner key hash is fused.
    #[must_use]
    pub fn owner_fused(&self) -> bool {
        self.owner_key_hash != [0; 48]
    }

    /// Serializes into the fixed layout (in a buffer wiped on drop).
    #[must_use]
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut b = zeroize::Zeroizing::new(Vec::with_capacity(FUSE_FILE_LEN));
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&u32::from(self.lifecycle.as_u8()).to_le_bytes());
        b.extend_from_slice(self.uds.expose_secret());
        b.extend_from_slice(self.field_entropy.expose_secret());
        b.extend_from_slice(&self.vendor_key_hash);
        b.extend_from_slice(&self.owner_key_hash);
        b.extend_from_slice(&self.svn.bits());
        b.extend_from_slice(&self.ueid.0);
        b.extend_from_slice(&[0; 3]);
        let digest = sha384(&b);
        b.extend_from_slice(&digest);
        b
    }

    /// Parses the fixed layout, checking length, magic, version, digest, lifecycle
    /// and SVN encoding, in that order.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let b: &[u8; FUSE_FILE_LEN] = bytes.try_into().map_err(|_| RotError::FusesWrongLength {
            actual: bytes.len(),
            expected: FUSE_FILE_LEN,
        })?;
        let (body, digest) = b.split_at(BODY_LEN);
        if body[0..4] != MAGIC {
            return Err(RotError::FusesBadMagic);
        }
        let version = le32(&body[4..8]);
        if version != VERSION {
            return Err(RotError::FusesUnsupportedVersion(version));
        }
        if !ihsm_crypto::ct_eq(&sha384(body), digest) {
            return Err(RotError::FusesDamaged);
        }
        let lifecycle = Lifecycle::from_u32(le32(&body[8..12]))?;
        let mut svn = [0u8; 16];
        svn.copy_from_slice(&body[204..220]);
        let svn = SvnFuse::from_bits(svn)?;
        if body[237..240] != [0; 3] {
            return Err(RotError::FusesDamaged);
        }
        let mut vendor_key_hash = [0u8; 48];
        vendor_key_hash.copy_from_slice(&body[108..156]);
        let mut owner_key_hash = [0u8; 48];
        owner_key_hash.copy_from_slice(&body[156..204]);
        let mut ueid = [0u8; 17];
        ueid.copy_from_slice(&body[220..237]);
        Ok(Self {
            lifecycle,
            uds: Secret::from_slice(&body[12..76])?,
            field_entropy: Secret::from_slice(&body[76..108])?,
            vendor_key_hash,
            owner_key_hash,
            svn,
            ueid: Ueid(ueid),
        })
    }

    /// Reads the fuse file at `path`.
    ///
    /// # Errors
    /// [`RotError::NotProvisioned`] when absent, else as [`Fuses::decode`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match fs::read(path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RotError::NotProvisioned(path.to_owned()));
            }
            Err(e) => return Err(RotError::io("cannot read fuse file", path)(e)),
        };
        Self::decode(&bytes)
    }

    /// Writes the fuses to `path` atomically with mode 0600. Refuses to replace an
    /// existing fuse file unless `replace` is set (only `burn_svn` and `--wipe` do).
    ///
    /// # Errors
    /// [`RotError::AlreadyProvisioned`] or [`RotError::Io`].
    pub fn store(&self, path: &Path, replace: bool) -> Result<()> {
        if !replace && path.exists() {
            return Err(RotError::AlreadyProvisioned(path.to_owned()));
        }
        write_atomic(path, &self.encode(), 0o600)
    }

    /// Burns the firmware SVN fuse up to `svn` (never down), in memory.
    ///
    /// # Errors
    /// [`RotError::SvnFuseDecrease`] or [`RotError::SvnTooLarge`].
    pub fn burn_svn(&mut self, svn: u32) -> Result<()> {
        let fused = self.svn.svn();
        if svn < fused {
            return Err(RotError::SvnFuseDecrease {
                fused,
                requested: svn,
            });
        }
        self.svn = SvnFuse::from_svn(svn)?;
        Ok(())
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Writes `data` to `path` so that a crash leaves either the old file or the new
/// one ([`ihsm_crypto::file::write_atomic`], which the store's counter uses too).
///
/// # Errors
/// [`RotError::Io`] naming the step that failed.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    Ok(ihsm_crypto::file::write_atomic(path, data, mode)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FuseSpec {
        FuseSpec {
            lifecycle: Lifecycle::Production,
            vendor_key_hash: [0xaa; 48],
            owner_key_hash: [0; 48],
            svn: 3,
        }
    }

    #[test]
    fn roundtrip() {
        let f = Fuses::generate(&spec()).unwrap();
        let bytes = f.encode();
        assert_eq!(bytes.len(), FUSE_FILE_LEN);
        let g = Fuses::decode(&bytes).unwrap();
        assert_eq!(g.lifecycle, Lifecycle::Production);
        assert!(g.uds().ct_eq(f.uds()));
        assert!(g.field_entropy().ct_eq(f.field_entropy()));
        assert_eq!(g.svn.svn(), 3);
        assert_eq!(g.ueid, f.ueid);
        assert!(!g.owner_fused());
    }

    #[test]
    fn every_truncation_is_refused_with_the_length() {
        let bytes = Fuses::generate(&spec()).unwrap().encode();
        for n in 0..FUSE_FILE_LEN {
            match Fuses::decode(&bytes[..n]) {
                Err(RotError::FusesWrongLength { actual, expected }) => {
                    assert_eq!((actual, expected), (n, FUSE_FILE_LEN));
                }
                other => panic!("truncation to {n} gave {other:?}"),
            }
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(
            Fuses::decode(&long),
            Err(RotError::FusesWrongLength { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = Fuses::generate(&spec()).unwrap().encode();
        for i in 0..FUSE_FILE_LEN * 8 {
            let mut b = bytes.to_vec();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Fuses::decode(&b).is_err(), "bit {i} flip accepted");
        }
    }

    #[test]
    fn specific_damage_gets_specific_errors() {
        let bytes = Fuses::generate(&spec()).unwrap().encode();
        let mut b = bytes.to_vec();
        b[0] = b'X';
        assert!(matches!(Fuses::decode(&b), Err(RotError::FusesBadMagic)));
        let mut b = bytes.to_vec();
        b[4] = 9;
        assert!(matches!(
            Fuses::decode(&b),
            Err(RotError::FusesUnsupportedVersion(9))
        ));
        let mut b = bytes.to_vec();
        b[20] ^= 1;
        assert!(matches!(Fuses::decode(&b), Err(RotError::FusesDamaged)));
    }

    #[test]
    fn svn_thermometer() {
        for svn in 0..=MAX_SVN {
            let f = SvnFuse::from_svn(svn).unwrap();
            assert_eq!(f.svn(), svn);
            assert_eq!(SvnFuse::from_bits(f.bits()).unwrap(), f);
        }
        assert!(SvnFuse::from_svn(129).is_err());
        assert!(SvnFuse::from_bits([0b10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(SvnFuse::from_bits([0b101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn svn_burns_only_upwards() {
        let mut f = Fuses::generate(&spec()).unwrap();
        f.burn_svn(5).unwrap();
        assert_eq!(f.svn.svn(), 5);
        assert!(matches!(
            f.burn_svn(4),
            Err(RotError::SvnFuseDecrease {
                fused: 5,
                requested: 4
            })
        ));
    }

    #[test]
    fn store_is_atomic_0600_and_refuses_twice() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuses.bin");
        let f = Fuses::generate(&spec()).unwrap();
        f.store(&path, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            f.store(&path, false),
            Err(RotError::AlreadyProvisioned(_))
        ));
        let back = Fuses::load(&path).unwrap();
        assert!(back.uds().ct_eq(f.uds()));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn missing_file_says_not_provisioned() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Fuses::load(&dir.path().join("fuses.bin")),
            Err(RotError::NotProvisioned(_))
        ));
    }

    #[test]
    fn debug_redacts_secrets() {
        let f = Fuses::generate(&spec()).unwrap();
        let s = format!("{f:?}");
        assert!(s.contains("[REDACTED]"));
        assert!(!s.contains(&hex::encode(f.uds().expose_secret())));
    }
}
