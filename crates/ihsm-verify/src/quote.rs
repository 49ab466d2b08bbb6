//! PCR quotes (docs/quote.md) and the PCR log they are replayed from (docs/boot.md,
//! "PCRs").

use crate::chain::Alg;
use crate::sig;

/// Length of an ECC P-384 quote response.
pub const QUOTE_ECC384_LEN: usize = 1848;
/// Length of an ML-DSA-87 quote response.
pub const QUOTE_MLDSA87_LEN: usize = 6396;
/// Number of PCRs.
pub const PCR_COUNT: usize = 32;
/// Length of one PCR log entry.
pub const PCR_LOG_ENTRY_LEN: usize = 56;
/// Most entries the device logs.
pub const PCR_LOG_MAX: usize = 17;

/// Why a quote was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteRefusal {
    /// Not the algorithm's length.
    #[error("the quote is {got} bytes, not {want}")]
    Length {
        /// Its length.
        got: usize,
        /// The algorithm's.
        want: usize,
    },
    /// The checksum does not sum to zero.
    #[error("the quote's checksum is wrong")]
    Checksum,
    /// The FIPS status is not 0.
    #[error("the quote's FIPS status is not approved (0)")]
    FipsStatus,
    /// The ML-DSA signature's padding byte is not zero.
    #[error("the quote's padding is not zero")]
    Padding,
    /// The nonce is not the verifier's.
    #[error("the quote's nonce is not the verifier's")]
    Nonce,
    /// The digest field is not the digest of the PCRs and nonce.
    #[error("the quote's digest is not SHA-512 of its PCRs and nonce")]
    Digest,
    /// The FMC Alias key does not verify the signature.
    #[error("the quote's signature does not verify with the FMC Alias key")]
    Signature,
}

/// A quote whose signature, digest and nonce were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// Its algorithm.
    pub alg: Alg,
    /// PCR0..PCR31.
    pub pcrs: [[u8; 48]; PCR_COUNT],
    /// The reset counters.
    pub reset_counters: [u32; PCR_COUNT],
}

fn checksum_ok(resp: &[u8]) -> bool {
    let Some((head, rest)) = resp.split_first_chunk::<4>() else {
        return false;
    };
    let sum = rest.iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    u32::from_le_bytes(*head) == 0u32.wrapping_sub(sum)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// Checks a raw `QUOTE_PCRS_*` response: length, checksum, FIPS status, the nonce,
/// the digest, and the signature by `fmc_alias_key` (the FMC Alias public key of
/// `alg`, from a verified chain).
///
/// # Errors
/// The first [`QuoteRefusal`].
pub fn verify_quote(
    alg: Alg,
    resp: &[u8],
    nonce: &[u8; 32],
    fmc_alias_key: &[u8],
) -> Result<VerifiedQuote, QuoteRefusal> {
    let want = match alg {
        Alg::Ecc384 => QUOTE_ECC384_LEN,
        Alg::MlDsa87 => QUOTE_MLDSA87_LEN,
    };
    if resp.len() != want {
        return Err(QuoteRefusal::Length {
            got: resp.len(),
            want,
        });
    }
    if !checksum_ok(resp) {
        return Err(QuoteRefusal::Checksum);
    }
    if le32(resp, 4) != 0 {
        return Err(QuoteRefusal::FipsStatus);
    }
    let pcr_bytes = resp.get(8..1544).ok_or(QuoteRefusal::Length {
        got: resp.len(),
        want,
    })?;
    let got_nonce = resp.get(1544..1576).ok_or(QuoteRefusal::Length {
        got: resp.len(),
        want,
    })?;
    if got_nonce != nonce {
        return Err(QuoteRefusal::Nonce);
    }
    let h = sig::sha512(&[pcr_bytes, nonce]);
    let ok = match alg {
        Alg::Ecc384 => {
            let digest = resp.get(1704..1752).unwrap_or_default();
            if digest != h.get(..48).unwrap_or_default() {
                return Err(QuoteRefusal::Digest);
            }
            sig::ecdsa_prehash(
                fmc_alias_key,
                digest,
                resp.get(1752..1848).unwrap_or_default(),
            )
        }
        Alg::MlDsa87 => {
            let digest = resp.get(1704..1768).unwrap_or_default();
            let mut rev = h;
            rev.reverse();
            if digest != rev {
                return Err(QuoteRefusal::Digest);
            }
            if resp.get(6395) != Some(&0) {
                return Err(QuoteRefusal::Padding);
            }
            sig::mldsa87(
                fmc_alias_key,
                digest,
                resp.get(1768..6395).unwrap_or_default(),
            )
        }
    };
    if !ok {
        return Err(QuoteRefusal::Signature);
    }
    let mut pcrs = [[0u8; 48]; PCR_COUNT];
    for (p, c) in pcrs.iter_mut().zip(pcr_bytes.chunks_exact(48)) {
        p.copy_from_slice(c);
    }
    let mut reset_counters = [0u32; PCR_COUNT];
    for (i, r) in reset_counters.iter_mut().enumerate() {
        *r = le32(resp, 1576 + 4 * i);
    }
    Ok(VerifiedQuote {
        alg,
        pcrs,
        reset_counters,
    })
}

/// What a PCR log entry records (Caliptra's `PcrLogEntryId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcrLogId {
    /// The 9-byte device status.
    DeviceStatus = 1,
    /// The fused vendor key hash.
    VendorPubKeyHash = 2,
    /// The owner key hash.
    OwnerPubKeyHash = 3,
    /// The FMC TCI (image digest).
    FmcTci = 4,
    /// A stashed measurement.
    StashMeasurement = 5,
    /// The RT TCI (configuration digest).
    RtTci = 6,
    /// SHA-384 of the manifest.
    FwImageManifest = 7,
}

impl PcrLogId {
    fn from_u16(n: u16) -> Option<Self> {
        Some(match n {
            1 => Self::DeviceStatus,
            2 => Self::VendorPubKeyHash,
            3 => Self::OwnerPubKeyHash,
            4 => Self::FmcTci,
            5 => Self::StashMeasurement,
            6 => Self::RtTci,
            7 => Self::FwImageManifest,
            _ => return None,
        })
    }

    /// How many bytes of the entry's 48 were extended: 9 for the device status
    /// (the log pads it with zeros), 48 for every other measurement.
    #[must_use]
    pub fn measured_len(self) -> usize {
        match self {
            Self::DeviceStatus => 9,
            _ => 48,
        }
    }
}

/// One PCR log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrLogEntry {
    /// What was measured.
    pub id: PcrLogId,
    /// Bit n set: PCRn was extended.
    pub pcr_mask: u32,
    /// The measured bytes ([`PcrLogId::measured_len`] of them).
    pub data: Vec<u8>,
}

/// Why a PCR log was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PcrLogRefusal {
    /// Not whole 56-byte entries, or more than the device logs.
    #[error("the PCR log is not 1 to 17 whole 56-byte entries")]
    Length,
    /// An entry has an unknown id.
    #[error("PCR log entry {0} has an unknown id")]
    UnknownId(usize),
    /// An entry's reserved field is not zero, or its padding is not.
    #[error("PCR log entry {0} has non-zero reserved or padding bytes")]
    Reserved(usize),
    /// The replayed PCR differs from the quoted one.
    #[error("PCR{0} replayed from the log is not the quoted PCR{0}")]
    Replay(usize),
}

/// Parses the PCR log: the `GET_PCR_LOG` data, whole 56-byte entries
/// (`id u16, reserved u16, pcr mask u32, data[48]`, little-endian).
///
/// # Errors
/// [`PcrLogRefusal`].
pub fn parse_pcr_log(bytes: &[u8]) -> Result<Vec<PcrLogEntry>, PcrLogRefusal> {
    if bytes.is_empty()
        || !bytes.len().is_multiple_of(PCR_LOG_ENTRY_LEN)
        || bytes.len() / PCR_LOG_ENTRY_LEN > PCR_LOG_MAX
    {
        return Err(PcrLogRefusal::Length);
    }
    bytes
        .chunks_exact(PCR_LOG_ENTRY_LEN)
        .enumerate()
        .map(|(i, e)| {
            let id = u16::from_le_bytes([e[0], e[1]]);
            let id = PcrLogId::from_u16(id).ok_or(PcrLogRefusal::UnknownId(i))?;
            if e[2] != 0 || e[3] != 0 {
                return Err(PcrLogRefusal::Reserved(i));
            }
            let n = id.measured_len();
            let (data, pad) = e[8..].split_at(n);
            if pad.iter().any(|b| *b != 0) {
                return Err(PcrLogRefusal::Reserved(i));
            }
            Ok(PcrLogEntry {
                id,
                pcr_mask: le32(e, 4),
                data: data.to_vec(),
            })
        })
        .collect()
}

/// Replays the log from zeroed PCRs: `PCR[i] = SHA-384(PCR[i] ‖ data)` for each
/// entry and each PCR in its mask, in log order.
#[must_use]
pub fn replay(log: &[PcrLogEntry]) -> [[u8; 48]; PCR_COUNT] {
    let mut pcrs = [[0u8; 48]; PCR_COUNT];
    for e in log {
        for (i, p) in pcrs.iter_mut().enumerate() {
            if e.pcr_mask & (1 << i) != 0 {
                *p = sig::sha384(&[p.as_slice(), &e.data]);
            }
        }
    }
    pcrs
}

/// Checks that the log replays to the quoted PCRs. Only PCRs the log touches are
/// compared, except PCR0..=3, which the boot always extends and are always compared;
/// PCR4..=30 may also be extended unlogged through `EXTEND_PCR` (docs/boot.md).
///
/// # Errors
/// [`PcrLogRefusal::Replay`] naming the first PCR that differs.
pub fn check_replay(
    log: &[PcrLogEntry],
    quoted: &[[u8; 48]; PCR_COUNT],
) -> Result<(), PcrLogRefusal> {
    let replayed = replay(log);
    let touched = log.iter().fold(0x0fu32, |m, e| m | e.pcr_mask);
    for i in 0..PCR_COUNT {
        if touched & (1 << i) != 0 && replayed.get(i) != quoted.get(i) {
            return Err(PcrLogRefusal::Replay(i));
        }
    }
    Ok(())
}

/// What the boot measured, read from a replayed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootMeasurements {
    /// The 9-byte device status.
    pub device_status: [u8; 9],
    /// The fused vendor key hash.
    pub vendor_key_hash: [u8; 48],
    /// The owner key hash (zeros: none).
    pub owner_key_hash: [u8; 48],
    /// The FMC TCI: the image digest.
    pub fmc_tci: [u8; 48],
    /// The RT TCI: the configuration digest.
    pub rt_tci: [u8; 48],
    /// SHA-384 of the manifest.
    pub manifest_digest: [u8; 48],
}

impl BootMeasurements {
    /// The lifecycle byte (1 manufacturing, 3 production).
    #[must_use]
    pub fn lifecycle(&self) -> u8 {
        self.device_status[0]
    }

    /// Whether debug is locked.
    #[must_use]
    pub fn debug_locked(&self) -> bool {
        self.device_status[1] == 1
    }

    /// The firmware SVN the boot measured.
    #[must_use]
    pub fn firmware_svn(&self) -> u8 {
        self.device_status[4]
    }
}

/// Reads the six boot measurements: each exactly once, with the PCRs docs/boot.md
/// extends (PCR0 and PCR1 for the ROM's four, PCR2 and PCR3 for the FMC's two).
#[must_use]
pub fn boot_measurements(log: &[PcrLogEntry]) -> Option<BootMeasurements> {
    fn one<const N: usize>(log: &[PcrLogEntry], id: PcrLogId, mask: u32) -> Option<[u8; N]> {
        let mut it = log.iter().filter(|e| e.id == id);
        let e = it.next()?;
        if it.next().is_some() || e.pcr_mask != mask {
            return None;
        }
        e.data.as_slice().try_into().ok()
    }
    Some(BootMeasurements {
        device_status: one(log, PcrLogId::DeviceStatus, 0b0011)?,
        vendor_key_hash: one(log, PcrLogId::VendorPubKeyHash, 0b0011)?,
        owner_key_hash: one(log, PcrLogId::OwnerPubKeyHash, 0b0011)?,
        fmc_tci: one(log, PcrLogId::FmcTci, 0b0011)?,
        rt_tci: one(log, PcrLogId::RtTci, 0b1100)?,
        manifest_digest: one(log, PcrLogId::FwImageManifest, 0b1100)?,
    })
}
