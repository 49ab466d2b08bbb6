//! Platform configuration registers: 32 SHA-384 PCRs, extend = SHA-384(PCR || data),
//! with reset counters and a PCR log, as in Caliptra 2.x.
//!
//! PCR0/PCR1 (FMC current/journey) are extended by the ROM and PCR2/PCR3 (RT
//! current/journey) by the FMC; they are reserved: `EXTEND_PCR` serves PCR4..=31,
//! and `STASH_MEASUREMENT` extends PCR31.

use ihsm_crypto::hash::sha384_parts;
use serde::Serialize;

use crate::codec::Writer;

/// Number of PCRs.
pub const PCR_COUNT: usize = 32;
/// FMC current PCR.
pub const PCR_FMC_CURRENT: usize = 0;
/// FMC journey PCR.
pub const PCR_FMC_JOURNEY: usize = 1;
/// Runtime current PCR.
pub const PCR_RT_CURRENT: usize = 2;
/// Runtime journey PCR.
pub const PCR_RT_JOURNEY: usize = 3;
/// PCR extended by `STASH_MEASUREMENT`.
pub const PCR_STASH: usize = 31;
/// Most entries the PCR log holds (as Caliptra's `PCR_LOG_MAX_COUNT`).
pub const PCR_LOG_MAX: usize = 17;
/// Encoded size of one log entry.
pub const PCR_LOG_ENTRY_LEN: usize = 56;

/// What a PCR log entry records (Caliptra's `PcrLogEntryId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PcrLogId {
    /// Lifecycle, debug and key-index bytes.
    DeviceStatus = 1,
    /// Fused vendor key-descriptor hash.
    VendorPubKeyHash = 2,
    /// Owner key hash.
    OwnerPubKeyHash = 3,
    /// FMC measurement (the firmware image digest).
    FmcTci = 4,
    /// A measurement stashed through the mailbox.
    StashMeasurement = 5,
    /// Runtime measurement (the security configuration digest).
    RtTci = 6,
    /// SHA-384 of the firmware manifest.
    FwImageManifest = 7,
}

/// One log entry: what was measured into which PCRs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrLogEntry {
    /// What was measured.
    pub id: PcrLogId,
    /// Bit n set: PCRn was extended.
    pub pcr_ids: u32,
    /// The measured bytes (at most 48).
    #[serde(with = "hex_vec")]
    pub data: Vec<u8>,
}

impl PcrLogId {
    /// The id of a number, if it is one.
    #[must_use]
    pub fn from_u16(n: u16) -> Option<Self> {
        [
            Self::DeviceStatus,
            Self::VendorPubKeyHash,
            Self::OwnerPubKeyHash,
            Self::FmcTci,
            Self::StashMeasurement,
            Self::RtTci,
            Self::FwImageManifest,
        ]
        .into_iter()
        .find(|i| *i as u16 == n)
    }
}

impl PcrLogEntry {
    /// Parses GET_PCR_LOG's data: whole 56-byte entries.
    ///
    /// # Errors
    /// A message when the length is not a multiple of 56 or an id is unknown.
    pub fn decode_all(data: &[u8]) -> Result<Vec<Self>, String> {
        if !data.len().is_multiple_of(PCR_LOG_ENTRY_LEN) {
            return Err(format!(
                "PCR log of {} bytes is not whole {PCR_LOG_ENTRY_LEN}-byte entries",
                data.len()
            ));
        }
        data.chunks_exact(PCR_LOG_ENTRY_LEN)
            .map(|e| {
                let id = u16::from_le_bytes([e[0], e[1]]);
                let id =
                    PcrLogId::from_u16(id).ok_or_else(|| format!("unknown PCR log id {id}"))?;
                Ok(Self {
                    id,
                    pcr_ids: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                    data: e[8..].to_vec(),
                })
            })
            .collect()
    }

    /// Caliptra's 56-byte layout: id u16, reserved u16, pcr_ids u32, data 48 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; PCR_LOG_ENTRY_LEN] {
        let mut w = Writer::with_capacity(PCR_LOG_ENTRY_LEN);
        w.u16(self.id as u16)
            .u16(0)
            .u32(self.pcr_ids)
            .bytes(&self.data);
        w.buf.resize(PCR_LOG_ENTRY_LEN, 0);
        let mut out = [0u8; PCR_LOG_ENTRY_LEN];
        out.copy_from_slice(&w.buf[..PCR_LOG_ENTRY_LEN]);
        out
    }
}

/// The PCR bank.
#[derive(Debug, Clone)]
pub struct PcrBank {
    pcrs: [[u8; 48]; PCR_COUNT],
    reset_counters: [u32; PCR_COUNT],
    log: Vec<PcrLogEntry>,
}

impl Default for PcrBank {
    fn default() -> Self {
        Self {
            pcrs: [[0; 48]; PCR_COUNT],
            reset_counters: [0; PCR_COUNT],
            log: Vec::new(),
        }
    }
}

impl PcrBank {
    /// `PCR[idx] = SHA-384(PCR[idx] || data)`. Out-of-range indices are ignored
    /// (callers validate; the mailbox reports them).
    pub fn extend(&mut self, idx: usize, data: &[u8]) {
        if let Some(pcr) = self.pcrs.get_mut(idx) {
            *pcr = sha384_parts(&[pcr.as_slice(), data]);
        }
    }

    /// Extends every PCR in `pcrs` with `data` and logs it once (while the log has room).
    pub fn extend_logged(&mut self, pcrs: &[usize], id: PcrLogId, data: &[u8]) {
        let mut mask = 0u32;
        for &p in pcrs {
            self.extend(p, data);
            mask |= 1u32
                .checked_shl(u32::try_from(p).unwrap_or(32))
                .unwrap_or(0);
        }
        if self.log.len() < PCR_LOG_MAX {
            self.log.push(PcrLogEntry {
                id,
                pcr_ids: mask,
                data: data.get(..data.len().min(48)).unwrap_or_default().to_vec(),
            });
        }
    }

    /// The value of one PCR.
    #[must_use]
    pub fn read(&self, idx: usize) -> Option<&[u8; 48]> {
        self.pcrs.get(idx)
    }

    /// All PCR values.
    #[must_use]
    pub fn all(&self) -> &[[u8; 48]; PCR_COUNT] {
        &self.pcrs
    }

    /// Reset counters.
    #[must_use]
    pub fn reset_counters(&self) -> &[u32; PCR_COUNT] {
        &self.reset_counters
    }

    /// Increments a reset counter; false on overflow or bad index.
    pub fn increment_reset_counter(&mut self, idx: usize) -> bool {
        match self
            .reset_counters
            .get_mut(idx)
            .and_then(|c| c.checked_add(1).map(|n| (c, n)))
        {
            Some((c, n)) => {
                *c = n;
                true
            }
            None => false,
        }
    }

    /// The log.
    #[must_use]
    pub fn log(&self) -> &[PcrLogEntry] {
        &self.log
    }
}

mod hex_vec {
    pub(crate) fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ihsm_crypto::hash::sha384;

    #[test]
    fn extend_is_sha384_of_old_and_data() {
        let mut bank = PcrBank::default();
        bank.extend(5, b"abc");
        let mut buf = [0u8; 51];
        buf[48..].copy_from_slice(b"abc");
        assert_eq!(bank.read(5).unwrap(), &sha384(&buf));
        bank.extend(32, b"ignored");
        assert!(bank.read(32).is_none());
    }

    #[test]
    fn log_is_bounded_and_encodes_56_bytes() {
        let mut bank = PcrBank::default();
        for _ in 0..40 {
            bank.extend_logged(&[0, 1], PcrLogId::FmcTci, &[7; 48]);
        }
        assert_eq!(bank.log().len(), PCR_LOG_MAX);
        let e = bank.log()[0].encode();
        assert_eq!(&e[..8], &[4, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&e[8..], &[7; 48]);
        let mut all = Vec::new();
        for entry in bank.log() {
            all.extend_from_slice(&entry.encode());
        }
        assert_eq!(PcrLogEntry::decode_all(&all).unwrap(), bank.log());
        assert!(PcrLogEntry::decode_all(&all[..55]).is_err());
        let mut bad = e;
        bad[0] = 99;
        assert!(PcrLogEntry::decode_all(&bad).unwrap_err().contains("99"));
    }

    #[test]
    fn reset_counters_saturate_with_an_error() {
        let mut bank = PcrBank::default();
        assert!(bank.increment_reset_counter(7));
        assert_eq!(bank.reset_counters()[7], 1);
        bank.reset_counters[7] = u32::MAX;
        assert!(!bank.increment_reset_counter(7));
        assert!(!bank.increment_reset_counter(32));
    }
}
