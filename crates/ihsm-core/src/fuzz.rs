//! Hooks for the cargo-fuzz targets in `fuzz/`, not an API: the core's decoders of
//! bytes that come from outside, run as the core runs them but without a device.
//! Each returns what was decoded, encoded again, so that a target can check that a
//! second decode gives the same.

use std::collections::BTreeMap;

use cryptoki_sys as ck;
use ihsm_crypto::ExposeSecret;
use ihsm_crypto::ec::EccP384PrivateKey;
use ihsm_crypto::seal::SealKey;

use crate::attr::{self, AttrType, AttrValue, Attribute, Phase, class};
use crate::audit::Head;
use crate::error::{CoreError, Result};
use crate::key::{self, Material};
use crate::object::{self, Object};
use crate::partition::PartitionRecord;

/// Reads every attribute the rule table knows from `o`, as C_GetAttributeValue
/// would (derived values included).
fn read_all(o: &Object) -> Result<()> {
    for r in attr::RULES {
        o.get(r.ty)?;
    }
    Ok(())
}

/// Opens a masked blob as C_UnwrapKey with the masked-key mechanism does (for
/// partition `pid` at firmware `svn`), reads the object's attributes and returns
/// its record encoded again.
///
/// # Errors
/// Whatever the import refuses.
pub fn unmask(pid: u32, svn: u32, blob: &[u8], key: &SealKey) -> Result<Vec<u8>> {
    let o = crate::masked::unmask(pid, svn, blob, key)?;
    read_all(&o)?;
    Ok(o.encode()?.0.to_vec())
}

/// A masked blob of `pid` at `svn` under `key` around an arbitrary `record`, with
/// the attribute digest of the record itself (zeros when it does not parse), so
/// that a fuzzer's records reach the decoder behind the authentication.
///
/// # Errors
/// Cryptographic errors.
pub fn mask_record(pid: u32, svn: u32, record: &[u8], key: &SealKey) -> Result<Vec<u8>> {
    let digest = object::record_digest(record).unwrap_or([0; 32]);
    crate::masked::seal(pid, svn, record, &digest, key)
}

/// Decodes an object record as the store hands it back (the digest the store keeps
/// beside it taken from the record itself, else every record would fail the digest
/// check first), reads every attribute and returns the record encoded again.
///
/// # Errors
/// Whatever loading a stored object refuses.
pub fn object_record(bytes: &[u8]) -> Result<Vec<u8>> {
    let digest = object::record_digest(bytes)?;
    let o = Object::decode(object::handle(1, 1, false), bytes, &digest)?;
    read_all(&o)?;
    Ok(o.encode()?.0.to_vec())
}

/// Decodes a partition record as the device does at start, with the keys in it,
/// and returns it encoded again.
///
/// # Errors
/// Whatever loading a partition refuses before it reads the store.
pub fn partition_record(bytes: &[u8]) -> Result<Vec<u8>> {
    let (rec, keys) = PartitionRecord::decode(bytes)?;
    EccP384PrivateKey::from_der(keys.identity.expose_secret())?;
    Ok(rec
        .encode(&keys.master, keys.identity.expose_secret())?
        .expose_secret()
        .to_vec())
}

/// Checks a partition bundle (the plaintext of a move) as a destination does
/// before it writes anything; returns the partition's name.
///
/// # Errors
/// Whatever an import refuses.
pub fn partition_bundle(bytes: &[u8]) -> Result<String> {
    let (b, _, _) = crate::partition::Bundle::decode(bytes)?;
    Ok(b.name.to_owned())
}

/// Reads the plaintext of a sealed fleet domain epoch as a device does after
/// opening it; returns its epoch.
///
/// # Errors
/// Whatever an open refuses.
pub fn domain_epoch(bytes: &[u8]) -> Result<u32> {
    crate::device::parse_offer(bytes).map(|o| o.epoch())
}

/// The next sequence number after a stored audit entry, as a partition's audit
/// head is rebuilt at start.
///
/// # Errors
/// An entry that does not decode.
pub fn audit_head(last: &[u8]) -> Result<u64> {
    Ok(Head::after(Some(last))?.next_seq)
}

/// Runs a caller's template through the attribute table as C_CreateObject (phase
/// 0), key generation (1), C_SetAttributeValue (2) or C_CopyObject (3) checks each
/// attribute, builds key material from it as key import does, and reads every
/// attribute back from the object made of it. `current` is the object's template
/// for the modify and copy phases. Returns the object's stored record.
///
/// # Errors
/// Whatever the checks refuse.
pub fn template(t: &[Attribute], current: &[Attribute], phase: u8, so: bool) -> Result<Vec<u8>> {
    let phase = match phase % 4 {
        0 => Phase::Create,
        1 => Phase::Generate,
        2 => Phase::Modify,
        _ => Phase::Copy,
    };
    let cur = attr::to_map(current)?;
    let m = attr::to_map(t)?;
    let base = if matches!(phase, Phase::Modify | Phase::Copy) {
        &cur
    } else {
        &m
    };
    let class = attr::get_ulong(base, ck::CKA_CLASS)?
        .ok_or(CoreError::TemplateIncomplete(ck::CKA_CLASS))?;
    let class_bit =
        attr::class_bit(class).ok_or(CoreError::AttributeValueInvalid(ck::CKA_CLASS))?;
    let key_type = attr::get_ulong(base, ck::CKA_KEY_TYPE)?;
    for (ty, v) in &m {
        attr::check_settable(class_bit, key_type, *ty, v, phase, cur.get(ty), so)?;
    }
    let material = match (class_bit & class::KEY != 0, phase, key_type) {
        (true, Phase::Create, Some(kt)) => Some(key::import(class, kt, &m)?),
        _ => None,
    };
    let mut attrs: BTreeMap<AttrType, AttrValue> = cur;
    attrs.extend(m);
    let o = Object {
        handle: object::handle(1, 1, false),
        class_bit,
        attrs,
        material,
        session: None,
    };
    read_all(&o)?;
    let pairs: Vec<(AttrType, AttrValue)> = t.iter().map(|a| (a.ty, a.value.clone())).collect();
    o.matches(&pairs)?;
    Ok(o.encode()?.0.to_vec())
}

/// Rebuilds key material from unwrapped bytes as C_UnwrapKey does (the bytes are
/// whatever the caller wrapped under a key it knows), and returns its stored form
/// after a round trip through the store's encoding.
///
/// # Errors
/// Whatever the unwrap refuses.
pub fn unwrapped(class: u64, key_type: u64, bytes: &[u8], params: Option<u64>) -> Result<Vec<u8>> {
    let m = Material::from_unwrapped(class, key_type, bytes, params)?;
    let again = Material::from_record(&m.to_record()?)?;
    if m.key_type() != again.key_type() {
        return Err(CoreError::Internal("unwrapped key changed type in storage"));
    }
    let bytes = match again.wrap_bytes() {
        Ok(b) => b.to_vec(),
        Err(_) => Vec::new(),
    };
    let _ = again.public_half().map(|p| p.key_type());
    Ok(bytes)
}
