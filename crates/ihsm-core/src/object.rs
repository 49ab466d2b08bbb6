//! Objects: attributes plus (for keys) material, their sealed storage record, the
//! visibility and reveal rules, template matching and the blind index.

use std::collections::BTreeMap;

use cryptoki_sys as ck;
use ihsm_crypto::hash::sha256;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::attr::{self, AttrResult, AttrType, AttrValue, Reveal};
use crate::error::{CoreError, Result};
use crate::key::{Material, MaterialRecord};

/// Bit 63 of a handle marks a session object.
pub(crate) const SESSION_BIT: u64 = 1 << 63;
/// Partition id position in a handle: handles are unique across partitions, so a
/// handle from another partition names nothing here.
const PID_SHIFT: u32 = 40;
const LOCAL_MASK: u64 = (1 << PID_SHIFT) - 1;

/// The handle of object `n` of partition `pid`.
pub(crate) fn handle(pid: u32, n: u64, session: bool) -> u64 {
    (if session { SESSION_BIT } else { 0 }) | (u64::from(pid) << PID_SHIFT) | (n & LOCAL_MASK)
}

/// Splits a handle into `(pid, n, session)`.
pub(crate) fn split_handle(h: u64) -> (u32, u64, bool) {
    let pid = u32::try_from((h & !SESSION_BIT) >> PID_SHIFT).unwrap_or(u32::MAX);
    (pid, h & LOCAL_MASK, h & SESSION_BIT != 0)
}

/// An object.
pub(crate) struct Object {
    pub(crate) handle: u64,
    /// Class bit (see `attr::class`).
    pub(crate) class_bit: u8,
    pub(crate) attrs: BTreeMap<AttrType, AttrValue>,
    pub(crate) material: Option<Material>,
    /// For session objects: the session that owns it.
    pub(crate) session: Option<u64>,
}

impl core::fmt::Debug for Object {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Object")
            .field("handle", &self.handle)
            .field("class", &self.class())
            .field("material", &self.material)
            .finish_non_exhaustive()
    }
}

/// The stored form of an object (encoded, then sealed by the store).
#[derive(Serialize, Deserialize)]
struct ObjectRecord {
    attrs: Vec<(AttrType, AttrValue)>,
    material: Option<MaterialRecord>,
}

/// Tags of the blind index.
pub(crate) mod tag {
    pub(crate) const LABEL: u8 = 1;
    pub(crate) const ID: u8 = 2;
    pub(crate) const CLASS: u8 = 3;
    pub(crate) const KEY_TYPE: u8 = 4;
}

/// The indexed attributes, most selective first.
pub(crate) const INDEXED: [(u8, AttrType); 4] = [
    (tag::LABEL, ck::CKA_LABEL),
    (tag::ID, ck::CKA_ID),
    (tag::KEY_TYPE, ck::CKA_KEY_TYPE),
    (tag::CLASS, ck::CKA_CLASS),
];

/// The index value of an attribute: a keyed MAC, so the store reveals neither
/// labels nor ids.
pub(crate) fn index_mac(
    index_key: &ihsm_crypto::hmac::HmacKey,
    tag: u8,
    value: &AttrValue,
) -> Result<[u8; 16]> {
    let enc = postcard::to_allocvec(value).map_err(|_| CoreError::Internal("index encoding"))?;
    let mac = index_key.sign(&[&[tag], &enc]);
    let mut out = [0u8; 16];
    out.copy_from_slice(
        mac.get(..16)
            .ok_or(CoreError::Internal("index MAC length"))?,
    );
    Ok(out)
}

impl Object {
    /// `CKO_*`.
    pub(crate) fn class(&self) -> u64 {
        match self.attrs.get(&ck::CKA_CLASS) {
            Some(AttrValue::Ulong(c)) => *c,
            _ => u64::MAX,
        }
    }

    /// `CKK_*`, for keys.
    pub(crate) fn key_type(&self) -> Option<u64> {
        match self.attrs.get(&ck::CKA_KEY_TYPE) {
            Some(AttrValue::Ulong(c)) => Some(*c),
            _ => None,
        }
    }

    /// A stored boolean (false when absent).
    pub(crate) fn flag(&self, ty: AttrType) -> bool {
        matches!(self.attrs.get(&ty), Some(AttrValue::Bool(true)))
    }

    /// Whether the object is a token object.
    pub(crate) fn is_token(&self) -> bool {
        self.flag(ck::CKA_TOKEN)
    }

    /// Whether only a logged-in user may see it.
    pub(crate) fn is_private(&self) -> bool {
        self.flag(ck::CKA_PRIVATE)
    }

    /// Whether key material may be revealed in clear.
    fn material_revealable(&self) -> bool {
        match self.class_bit {
            attr::class::SECRET | attr::class::PRIV => {
                !self.flag(ck::CKA_SENSITIVE) && self.flag(ck::CKA_EXTRACTABLE)
            }
            _ => true,
        }
    }

    /// C_GetAttributeValue for one type.
    pub(crate) fn get(&self, ty: AttrType) -> Result<AttrResult> {
        let Some(rule) = attr::rule_for(ty, self.class_bit, self.key_type()) else {
            return Ok(AttrResult::Invalid);
        };
        if rule.reveal == Reveal::KeyMaterial && !self.material_revealable() {
            return Ok(AttrResult::Sensitive);
        }
        if let Some(v) = self.attrs.get(&ty) {
            return Ok(AttrResult::Value(v.clone()));
        }
        if rule.derived
            && let Some(m) = &self.material
            && let Some(v) = m.attribute(ty)?
        {
            return Ok(AttrResult::Value(v));
        }
        Ok(AttrResult::Invalid)
    }

    /// Whether every attribute of `template` matches this object (derived values
    /// included; sensitive values never match, so a template cannot probe them).
    pub(crate) fn matches(&self, template: &[(AttrType, AttrValue)]) -> Result<bool> {
        for (ty, want) in template {
            match self.get(*ty)? {
                AttrResult::Value(v) if &v == want => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The encoded record and the digest of its attributes (the store's AD).
    pub(crate) fn encode(&self) -> Result<(Zeroizing<Vec<u8>>, [u8; 32])> {
        let attrs: Vec<(AttrType, AttrValue)> =
            self.attrs.iter().map(|(k, v)| (*k, v.clone())).collect();
        let digest = attrs_digest(&attrs)?;
        let rec = ObjectRecord {
            attrs,
            material: self
                .material
                .as_ref()
                .map(Material::to_record)
                .transpose()?,
        };
        Ok((encode_exact(&rec, "object encoding")?, digest))
    }

    /// Decodes a record, checking its attributes against the stored digest.
    pub(crate) fn decode(handle: u64, bytes: &[u8], digest: &[u8; 32]) -> Result<Self> {
        let rec: ObjectRecord = postcard::from_bytes(bytes)
            .map_err(|_| CoreError::Internal("stored object record does not parse"))?;
        if !ihsm_crypto::ct_eq(&attrs_digest(&rec.attrs)?, digest) {
            return Err(CoreError::Internal(
                "stored object attributes do not match their digest",
            ));
        }
        let attrs: BTreeMap<AttrType, AttrValue> = rec.attrs.iter().cloned().collect();
        let class_bit = match attrs.get(&ck::CKA_CLASS) {
            Some(AttrValue::Ulong(c)) => attr::class_bit(*c),
            _ => None,
        }
        .ok_or(CoreError::Internal("stored object has no class"))?;
        let material = rec
            .material
            .as_ref()
            .map(Material::from_record)
            .transpose()?;
        Ok(Self {
            handle,
            class_bit,
            attrs,
            material,
            session: None,
        })
    }
}

/// The digest of the attributes inside an encoded record (what the store keeps
/// beside it), for the fuzz targets, which make up records.
#[cfg(fuzzing)]
pub(crate) fn record_digest(bytes: &[u8]) -> Result<[u8; 32]> {
    let rec: ObjectRecord = postcard::from_bytes(bytes)
        .map_err(|_| CoreError::Internal("stored object record does not parse"))?;
    attrs_digest(&rec.attrs)
}

fn attrs_digest(attrs: &[(AttrType, AttrValue)]) -> Result<[u8; 32]> {
    Ok(sha256(&encode_exact(attrs, "attribute encoding")?))
}

/// `value` in postcard, in a buffer of its exact size that is wiped on drop. An
/// encoder that grows its buffer as it goes (`to_allocvec`) leaves a copy of what
/// it had written, key material included, in each buffer it outgrows and frees.
pub(crate) fn encode_exact<T: Serialize + ?Sized>(
    value: &T,
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>> {
    let enc = |_| CoreError::Internal(what);
    let len = postcard::experimental::serialized_size(value).map_err(enc)?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    postcard::to_slice(value, &mut out).map_err(enc)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_carry_their_partition() {
        let h = handle(7, 42, false);
        assert_eq!(split_handle(h), (7, 42, false));
        let s = handle(1024, 5, true);
        assert_eq!(split_handle(s), (1024, 5, true));
        assert_ne!(handle(1, 5, false), handle(2, 5, false));
    }
}
