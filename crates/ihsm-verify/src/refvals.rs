//! Reference values (docs/attestation.md, "Reference values"): what a genuine
//! device of one firmware measures, signed by the vendor keys that signed its
//! manifest, in the two-signature envelope.

use ciborium::Value;

use crate::cbor;
use crate::envelope::{self, EnvelopeRefusal};

/// The version this crate reads and writes.
pub const VERSION: u64 = 1;

/// Payload map keys.
pub mod keys {
    /// version (uint, 1).
    pub const VERSION: i64 = 0;
    /// FMC FWID: the image digest (bstr 48).
    pub const FMC_FWID: i64 = 1;
    /// RT FWIDs: [RT TCI, SHA-384 of the manifest] (array of two bstr 48).
    pub const RT_FWIDS: i64 = 2;
    /// PCRs as the boot extends them: map {index 0..=3: bstr 48}, any subset.
    pub const PCRS: i64 = 3;
    /// Minimum firmware SVN (uint).
    pub const SVN_MIN: i64 = 4;
    /// Vendor key hash as fused (bstr 48).
    pub const VENDOR_KEY_HASH: i64 = 5;
    /// Owner key hash (bstr 48, zeros: no owner).
    pub const OWNER_KEY_HASH: i64 = 6;
    /// Expected lifecycle (uint: 1 manufacturing, 3 production).
    pub const LIFECYCLE: i64 = 7;
}

/// Lifecycle values (Caliptra's numbering, docs/boot.md).
pub mod lifecycle {
    /// Manufacturing: development devices.
    pub const MANUFACTURING: u8 = 1;
    /// Production.
    pub const PRODUCTION: u8 = 3;
}

/// The reference values of one firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefValues {
    /// The image digest (FMC TCI).
    pub fmc_fwid: [u8; 48],
    /// [RT TCI (configuration digest), SHA-384 of the manifest].
    pub rt_fwids: [[u8; 48]; 2],
    /// PCR0..=3 values, where given.
    pub pcrs: Vec<(u8, [u8; 48])>,
    /// The minimum firmware SVN.
    pub svn_min: u32,
    /// The fused vendor key hash.
    pub vendor_key_hash: [u8; 48],
    /// The owner key hash.
    pub owner_key_hash: [u8; 48],
    /// The lifecycle of genuine devices.
    pub lifecycle: u8,
}

/// Why reference values were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefValuesRefusal {
    /// The envelope or a vendor signature.
    #[error("reference values: {0}")]
    Envelope(#[from] EnvelopeRefusal),
    /// The payload is not the documented map.
    #[error("reference values payload is malformed (field {0})")]
    Malformed(i64),
    /// Another version.
    #[error("reference values version {0} is not {VERSION}")]
    Version(u64),
}

impl RefValues {
    /// The canonical encoding (keys ascending, PCR indices ascending).
    #[must_use]
    pub fn to_payload(&self) -> Vec<u8> {
        use cbor::{bytes, int};
        let mut pcrs = self.pcrs.clone();
        pcrs.sort_by_key(|(i, _)| *i);
        let v = Value::Map(vec![
            (int(keys::VERSION), int(1)),
            (int(keys::FMC_FWID), bytes(&self.fmc_fwid)),
            (
                int(keys::RT_FWIDS),
                Value::Array(self.rt_fwids.iter().map(|d| bytes(d)).collect()),
            ),
            (
                int(keys::PCRS),
                Value::Map(
                    pcrs.iter()
                        .map(|(i, d)| (int(i64::from(*i)), bytes(d)))
                        .collect(),
                ),
            ),
            (int(keys::SVN_MIN), int(i64::from(self.svn_min))),
            (int(keys::VENDOR_KEY_HASH), bytes(&self.vendor_key_hash)),
            (int(keys::OWNER_KEY_HASH), bytes(&self.owner_key_hash)),
            (int(keys::LIFECYCLE), int(i64::from(self.lifecycle))),
        ]);
        cbor::encode(&v)
    }

    /// Decodes a payload strictly (every field, no other, canonical bytes).
    ///
    /// # Errors
    /// [`RefValuesRefusal::Malformed`] naming the field (-1: the structure).
    pub fn from_payload(bytes: &[u8]) -> Result<Self, RefValuesRefusal> {
        use RefValuesRefusal::Malformed;
        let v = cbor::decode(bytes).ok_or(Malformed(-1))?;
        let m = cbor::int_map(&v).ok_or(Malformed(-1))?;
        let f = |k: i64| cbor::get(&m, k).ok_or(Malformed(k));
        let version = cbor::as_u64(f(keys::VERSION)?).ok_or(Malformed(keys::VERSION))?;
        if version != VERSION {
            return Err(RefValuesRefusal::Version(version));
        }
        if m.len() != 8 {
            return Err(Malformed(-1));
        }
        let h48 = |k| f(k).and_then(|v| cbor::as_array::<48>(v).ok_or(Malformed(k)));
        let rt_fwids = match f(keys::RT_FWIDS)? {
            Value::Array(a) if a.len() == 2 => {
                let mut t = [[0u8; 48]; 2];
                for (d, s) in t.iter_mut().zip(a) {
                    *d = cbor::as_array(s).ok_or(Malformed(keys::RT_FWIDS))?;
                }
                t
            }
            _ => return Err(Malformed(keys::RT_FWIDS)),
        };
        let pm = cbor::int_map(f(keys::PCRS)?).ok_or(Malformed(keys::PCRS))?;
        let mut pcrs = Vec::with_capacity(pm.len());
        for (i, d) in pm {
            let i = u8::try_from(i)
                .ok()
                .filter(|i| *i <= 3)
                .ok_or(Malformed(keys::PCRS))?;
            pcrs.push((i, cbor::as_array(d).ok_or(Malformed(keys::PCRS))?));
        }
        let r = Self {
            fmc_fwid: h48(keys::FMC_FWID)?,
            rt_fwids,
            pcrs,
            svn_min: cbor::as_u64(f(keys::SVN_MIN)?)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= 128)
                .ok_or(Malformed(keys::SVN_MIN))?,
            vendor_key_hash: h48(keys::VENDOR_KEY_HASH)?,
            owner_key_hash: h48(keys::OWNER_KEY_HASH)?,
            lifecycle: cbor::as_u64(f(keys::LIFECYCLE)?)
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| [lifecycle::MANUFACTURING, lifecycle::PRODUCTION].contains(n))
                .ok_or(Malformed(keys::LIFECYCLE))?,
        };
        if r.to_payload() != bytes {
            return Err(Malformed(-1));
        }
        Ok(r)
    }

    /// Opens signed reference values with the vendor's ECC P-384 point and
    /// ML-DSA-87 key (both signatures must verify).
    ///
    /// # Errors
    /// [`RefValuesRefusal`].
    pub fn open(
        bytes: &[u8],
        vendor_ecc: &[u8],
        vendor_mldsa: &[u8],
    ) -> Result<Self, RefValuesRefusal> {
        let payload = envelope::open(bytes, vendor_ecc, vendor_mldsa)?;
        Self::from_payload(&payload)
    }
}

/// The raw public key of a DER SubjectPublicKeyInfo (an ECC P-384 point or an
/// ML-DSA-87 key), as the manifest tools write them (`*.pub.pem`, decoded).
#[must_use]
pub fn spki_public_key(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der).ok()?;
    rest.is_empty()
        .then(|| spki.subject_public_key.data.to_vec())
}
